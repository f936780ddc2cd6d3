//! Restart: the newest valid snapshot, then every journal record after it.
//!
//! Each record is fed to the restored engine exactly as the router fed it
//! live (same `now`, same command), and its facts and effects go through the
//! same store functions the router uses ([`crate::store::apply_effect`] and
//! friends), so the rebuilt engine and store are the ones that were running.
//! Afterwards [`agents_offline`] turns every agent that was connected into a
//! disconnected one, which gives it the usual reconnect grace to come back
//! and find its conversations. This module must never invent state: a record
//! the engine refuses on replay is logged and skipped, never patched up.

use super::journal::{self, ReplayStats};
use super::record::{Record, Seq};
use super::recorder::Sequencer;
use super::snapshot::{self, Contents, SnapshotBody, SnapshotError, SnapshotFile};
use super::DurabilityError;
use crate::clock;
use crate::routing::{AgentStatus, Command, Engine, Millis, RestoreError, RoutingSettings};
use crate::store::codec::StoreBuilder;
use crate::store::{apply_command, apply_effect, apply_fact, Store};
use std::path::{Path, PathBuf};

/// What a restart rebuilt.
#[derive(Debug)]
pub struct Restored {
    pub engine: Engine,
    pub store: Store,
    /// The last sequence number in the state (the next record gets +1).
    pub last_seq: Seq,
    /// The snapshot it started from, if any.
    pub snapshot: Option<(Seq, PathBuf)>,
    /// Damaged snapshot files skipped.
    pub skipped_snapshots: usize,
    pub replay: ReplayStats,
    /// Journal records the engine refused on replay (should be 0).
    pub refused: u64,
    /// Where the time went, in milliseconds.
    pub timings: RestoreTimings,
}

/// Milliseconds spent in each step of [`restore`].
#[derive(Debug, Default, Clone, Copy)]
pub struct RestoreTimings {
    /// Reading the snapshot file and checking its checksum and framing.
    pub load_ms: f64,
    /// Decoding and rebuilding the engine and the store (in parallel, so
    /// about the larger of the two).
    pub rebuild_ms: f64,
    /// Of which: decoding the core's section and `Engine::restore`.
    pub engine_ms: f64,
    /// Of which: decoding the store's section into the maps (the last
    /// thread done, plus sorting the customer lists and adding the agents).
    pub store_ms: f64,
    /// Replaying the journal.
    pub replay_ms: f64,
}

/// Applies one record to an engine and its store, as the router did live.
pub fn apply_record(
    engine: &mut Engine,
    store: &Store,
    settings: &RoutingSettings,
    record: Record,
) -> Result<(), crate::routing::CommandError> {
    match record {
        Record::Handle {
            now,
            command,
            facts,
        } => {
            let result = engine.handle(now, command.clone());
            if result.is_ok() {
                for fact in &facts {
                    apply_fact(store, fact);
                }
            }
            while let Some(effect) = engine.poll_effect() {
                apply_effect(store, settings, now, &effect);
            }
            result?;
            apply_command(store, &command);
        }
        Record::Timeout { now } => {
            engine.handle_timeout(now);
            while let Some(effect) = engine.poll_effect() {
                apply_effect(store, settings, now, &effect);
            }
        }
        Record::Fact(fact) => apply_fact(store, &fact),
    }
    Ok(())
}

/// An engine and a store rebuilt from a snapshot file.
#[derive(Debug)]
pub struct Rebuilt {
    pub engine: Engine,
    pub store: Store,
    pub seq: Seq,
    pub path: PathBuf,
    /// Newer snapshot files skipped as damaged.
    pub skipped: usize,
}

/// Rebuilds the engine and the store from the newest snapshot in `dir` that
/// checks out and decodes, on `threads` threads; a damaged one (failed
/// checks, or a section that does not decode) is logged and the next older
/// one tried. `Ok(None)` when there is none. A snapshot the engine refuses
/// under these settings (changed channels) is an error, not skipped.
pub fn rebuild_newest(
    dir: &Path,
    settings: &RoutingSettings,
    threads: usize,
    timings: &mut RestoreTimings,
) -> Result<Option<Rebuilt>, DurabilityError> {
    let mut skipped = 0;
    for (_, path) in snapshot::list(dir)?.into_iter().rev() {
        let start = clock::instant();
        let file = snapshot::read(&path);
        timings.load_ms += clock::elapsed_secs(start) * 1e3;
        let rebuilt = file.and_then(|file| {
            let start = clock::instant();
            let seq = file.seq;
            let r = rebuild(file, settings, threads, timings);
            timings.rebuild_ms += clock::elapsed_secs(start) * 1e3;
            r.map(|r| r.map(|(engine, store)| (engine, store, seq)))
        });
        match rebuilt {
            Ok(Ok((engine, store, seq))) => {
                return Ok(Some(Rebuilt {
                    engine,
                    store,
                    seq,
                    path,
                    skipped,
                }))
            }
            Ok(Err(source)) => return Err(DurabilityError::Restore { path, source }),
            Err(e) => {
                tracing::error!(error = %e, "skipping a damaged snapshot; trying the next older one");
                skipped += 1;
            }
        }
    }
    Ok(None)
}

/// Decodes one checked file into an engine and a store. The outer error is
/// a damaged file; the inner one the engine refusing the snapshot.
fn rebuild(
    file: SnapshotFile,
    settings: &RoutingSettings,
    threads: usize,
    timings: &mut RestoreTimings,
) -> Result<Result<(Engine, Store), RestoreError>, SnapshotError> {
    let sections = match file.contents {
        Contents::Sections(sections) => sections,
        Contents::Decoded(body) => {
            // Format 1, migrated: small or not, it happens once.
            tracing::info!(path = %file.path.display(), version = file.version,
                "migrating a snapshot of an older format; the next one is written in the current format");
            let SnapshotBody { core, store, .. } = *body;
            let engine = Engine::restore(settings.clone(), core);
            return Ok(engine.map(|engine| (engine, store.into_store())));
        }
    };
    let store_sections = sections.store()?;
    // Records are checked now and decoded on first use (or in the
    // background once the server is ready): see `Store::unpack_some`.
    let builder = StoreBuilder::lazy(&store_sections, sections.packed_store());
    let start = clock::instant();
    // The core on this thread, the store's chunks on the others; whoever
    // is done first takes the chunks that are left.
    let (engine, worked) = std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads.max(1))
            .map(|_| {
                scope.spawn(|| {
                    let r = builder.work();
                    (r, clock::elapsed_secs(start) * 1e3)
                })
            })
            .collect();
        let engine = sections
            .core()
            .map(|core| Engine::restore(settings.clone(), core));
        timings.engine_ms += clock::elapsed_secs(start) * 1e3;
        let mut worked = builder.work();
        for h in helpers {
            match h.join() {
                Ok((r, ms)) => {
                    worked = worked.and(r);
                    timings.store_ms = timings.store_ms.max(ms);
                }
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        (engine, worked)
    });
    let engine = engine?;
    worked.map_err(|e| sections.store_error(e))?;
    let store = builder.finish().map_err(|e| sections.store_error(e))?;
    timings.store_ms = timings.store_ms.max(clock::elapsed_secs(start) * 1e3);
    Ok(engine.map(|engine| (engine, store)))
}

/// Loads the newest valid snapshot in `dir` and replays the journal after it.
/// With neither, a fresh engine and an empty store.
pub fn restore(dir: &Path, settings: &RoutingSettings) -> Result<Restored, DurabilityError> {
    let mut timings = RestoreTimings::default();
    let rebuilt = rebuild_newest(dir, settings, cores(), &mut timings)?;
    let (mut engine, store, after, from, skipped_snapshots) = match rebuilt {
        Some(r) => (r.engine, r.store, r.seq, Some((r.seq, r.path)), r.skipped),
        None => {
            let engine = Engine::new(settings.clone()).map_err(DurabilityError::Settings)?;
            (engine, Store::new(), 0, None, 0)
        }
    };
    let start = clock::instant();
    let mut refused = 0u64;
    let replay = journal::replay(dir, after, |seq, record| {
        let kind = record.kind();
        if let Err(e) = apply_record(&mut engine, &store, settings, record) {
            refused += 1;
            tracing::error!(seq, kind, error = %e, "the engine refused a journaled command on replay; skipped");
        }
    })?;
    timings.replay_ms = clock::elapsed_secs(start) * 1e3;
    Ok(Restored {
        engine,
        store,
        last_seq: replay.last_seq,
        snapshot: from,
        skipped_snapshots,
        replay,
        refused,
        timings,
    })
}

/// Every agent still marked connected is disconnected at `now` (journaled
/// like any command): it shows `offline`, its offers are re-routed, and its
/// conversations wait for it for the reconnect grace. Returns how many.
pub fn agents_offline(
    engine: &mut Engine,
    store: &Store,
    settings: &RoutingSettings,
    seq: &mut Sequencer<'_>,
    now: Millis,
) -> usize {
    let mut n = 0;
    for agent in store.agents() {
        if !agent.connected && agent.status == AgentStatus::Offline {
            continue;
        }
        let command = Command::AgentDisconnected {
            agent: agent.id.as_str().into(),
        };
        let record = Record::Handle {
            now,
            command: command.clone(),
            facts: Vec::new(),
        };
        match apply_record(engine, store, settings, record.clone()) {
            Ok(()) => {
                seq.record(record);
                n += 1;
            }
            Err(e) => {
                tracing::warn!(agent = %agent.id, error = %e, "could not mark an agent offline after restart");
            }
        }
    }
    n
}

/// Threads for rebuilding the store: one per core.
fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}
