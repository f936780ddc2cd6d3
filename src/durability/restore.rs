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
use super::snapshot;
use super::DurabilityError;
use crate::clock;
use crate::routing::{AgentStatus, Command, Engine, Millis, RoutingSettings};
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
    /// Reading, checking and decoding the snapshot file.
    pub load_ms: f64,
    /// Rebuilding the engine and the store (in parallel, so about the larger of the two).
    pub rebuild_ms: f64,
    /// Of which: `Engine::restore`.
    pub engine_ms: f64,
    /// Of which: rebuilding the store.
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

/// Loads the newest valid snapshot in `dir` and replays the journal after it.
/// With neither, a fresh engine and an empty store.
pub fn restore(dir: &Path, settings: &RoutingSettings) -> Result<Restored, DurabilityError> {
    let mut timings = RestoreTimings::default();
    let start = clock::instant();
    let loaded = snapshot::load_newest(dir)?;
    timings.load_ms = clock::elapsed_secs(start) * 1e3;
    let start = clock::instant();
    let skipped_snapshots = loaded.as_ref().map(|l| l.skipped.len()).unwrap_or(0);
    let (mut engine, store, after, from) = match loaded {
        Some(l) => {
            let seq = l.body.seq;
            let (core, image) = (l.body.core, l.body.store);
            // The engine and the store are independent: rebuild them side by side.
            let (engine, store) = std::thread::scope(|scope| {
                let store = scope.spawn(move || {
                    let start = clock::instant();
                    (image.into_store(cores()), clock::elapsed_secs(start) * 1e3)
                });
                let start = clock::instant();
                let engine = Engine::restore(settings.clone(), core);
                timings.engine_ms = clock::elapsed_secs(start) * 1e3;
                (engine, store.join())
            });
            let engine = engine.map_err(|source| DurabilityError::Restore {
                path: l.path.clone(),
                source,
            })?;
            let (store, store_ms) = store
                .map_err(|_| DurabilityError::Diverged("rebuilding the store panicked".into()))?;
            timings.store_ms = store_ms;
            (engine, store, seq, Some((seq, l.path)))
        }
        None => {
            let engine = Engine::new(settings.clone()).map_err(DurabilityError::Settings)?;
            (engine, Store::new(), 0, None)
        }
    };
    timings.rebuild_ms = clock::elapsed_secs(start) * 1e3;
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
        if !agent.connected && agent.status == AgentStatus::Offline.as_str() {
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
