//! The snapshot replica: a second copy of the engine and the store, kept on
//! its own thread by applying every durable journal record, and snapshotted
//! from there — so taking a snapshot never pauses routing.
//!
//! Replay is deterministic (see `restore`), so the replica is always the live
//! state as of some sequence number. Every `interval` (when something
//! changed), and on demand at shutdown, it encodes its own state, writes the
//! file atomically, deletes snapshots beyond `keep`, deletes the journal
//! segments every kept snapshot covers, and asks the journal to start a new
//! segment. It builds its starting state in the background after start-up
//! (the newest snapshot plus a read-only replay of the journal up to where the
//! live restore ended), so it costs nothing on the way to ready. If a record
//! does not apply, it stops and never writes a snapshot again (the journal is
//! then kept whole and a restart fixes it). This thread must never touch the
//! live engine or store, and never write a snapshot of a state it could not
//! rebuild exactly.

use super::journal::{self, JournalMsg};
use super::record::{Record, Seq};
use super::restore::{apply_record, rebuild_newest, RestoreTimings};
use super::snapshot::{self, SnapshotBody};
use super::DurabilityError;
use crate::clock;
use crate::metrics;
use crate::routing::{Engine, Millis, RoutingSettings};
use crate::store::{Store, StoreImage};
use crossbeam_channel::{Receiver, Sender};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// How long the replica lets durable records gather between looks. Nothing
/// waits on the replica but the next snapshot, so this costs no latency.
const GATHER: Duration = Duration::from_millis(10);

/// A snapshot that is on disk.
#[derive(Debug, Clone)]
pub struct Written {
    pub seq: Seq,
    pub path: PathBuf,
    pub bytes: u64,
    /// Time to build the body, encode, write and fsync it (off the actors).
    pub write_secs: f64,
    /// Of which: turning the engine and the store into plain data.
    pub build_secs: f64,
}

/// Writes a snapshot of `engine` and `store` at `seq`, then prunes old
/// snapshots (beyond `keep`) and the journal segments they all cover.
pub fn write_snapshot(
    dir: &Path,
    keep: usize,
    seq: Seq,
    now: Millis,
    engine: &Engine,
    store: &Store,
) -> Result<Written, DurabilityError> {
    let start = clock::instant();
    let body = SnapshotBody {
        seq,
        taken_at_ms: now,
        core: engine.snapshot(),
        store: StoreImage::from_records(store.records()),
    };
    let build_secs = clock::elapsed_secs(start);
    let (path, bytes) = snapshot::write(dir, &body)?;
    let write_secs = clock::elapsed_secs(start);
    metrics::snapshot_written(write_secs, bytes);
    if let Some(oldest) = snapshot::prune(dir, keep)? {
        journal::prune(dir, oldest)?;
    }
    Ok(Written {
        seq,
        path,
        bytes,
        write_secs,
        build_secs,
    })
}

/// Where the replica's state starts.
#[derive(Debug)]
pub enum ReplicaBase {
    /// Rebuild it from the data directory (newest snapshot + journal, read
    /// only) up to and including record `until`.
    Restore { until: Seq },
    /// This state, as of record `last`.
    State {
        engine: Box<Engine>,
        store: Box<Store>,
        last: Seq,
    },
}

/// What the replica thread needs.
#[derive(Debug)]
pub struct ReplicaConfig {
    pub dir: PathBuf,
    pub keep: usize,
    pub interval: Duration,
    pub settings: RoutingSettings,
    /// The journal thread, told to start a new segment after each snapshot.
    pub journal: Option<Sender<JournalMsg>>,
    pub base: ReplicaBase,
    /// When set, the replica builds its copy only once this fires (or its
    /// sender is dropped). The server opens it once it is listening, so a
    /// restart's CPU goes to the live state first; records wait in the
    /// channel meanwhile.
    pub start_gate: Option<Receiver<()>>,
    /// Nice value of the replica thread (see [`super::priority`]).
    pub nice: i32,
}

type Reply = Sender<Result<Option<Written>, DurabilityError>>;

/// Handle of the replica thread.
#[derive(Debug)]
pub struct SnapshotReplica {
    control: Mutex<Option<Sender<Reply>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

struct Replica {
    config: ReplicaConfig,
    engine: Engine,
    store: Store,
    last: Seq,
    written: Option<Seq>,
    /// A record did not apply: the state is no longer exact.
    broken: bool,
}

impl Replica {
    fn build(mut config: ReplicaConfig) -> Result<Replica, DurabilityError> {
        let base = std::mem::replace(&mut config.base, ReplicaBase::Restore { until: 0 });
        let (engine, store, last) = match base {
            ReplicaBase::State {
                engine,
                store,
                last,
            } => (*engine, *store, last),
            ReplicaBase::Restore { until } => {
                // One thread: this runs beside live routing.
                let mut timings = RestoreTimings::default();
                let rebuilt = rebuild_newest(&config.dir, &config.settings, 1, &mut timings)?;
                let mut base = match rebuilt {
                    Some(r) => (r.engine, r.store, r.seq),
                    None => (
                        Engine::new(config.settings.clone()).map_err(DurabilityError::Settings)?,
                        Store::new(),
                        0,
                    ),
                };
                let (engine, store, after) = (&mut base.0, &base.1, base.2);
                let mut refused = None;
                let stats =
                    journal::replay_range(&config.dir, after, until, false, |seq, record| {
                        if refused.is_none() {
                            if let Err(e) = apply_record(engine, store, &config.settings, record) {
                                refused = Some((seq, e));
                            }
                        }
                    })?;
                if let Some((seq, e)) = refused {
                    return Err(DurabilityError::Diverged(format!(
                        "record {seq} was refused: {e}"
                    )));
                }
                if stats.last_seq != until {
                    return Err(DurabilityError::Diverged(format!(
                        "the journal ends at {} but the live state is at {until}",
                        stats.last_seq
                    )));
                }
                // This thread's copy is decoded whole now (it lets the
                // snapshot file go; the live store does it in the background).
                base.1.unpack_some(usize::MAX);
                (base.0, base.1, until)
            }
        };
        Ok(Replica {
            config,
            engine,
            store,
            last,
            written: None,
            broken: false,
        })
    }

    fn apply(&mut self, seq: Seq, record: Record) {
        if self.broken || seq <= self.last {
            return;
        }
        if seq != self.last + 1 {
            return self.fail(format!("record {seq} arrived after {}", self.last));
        }
        let kind = record.kind();
        match apply_record(&mut self.engine, &self.store, &self.config.settings, record) {
            Ok(()) => self.last = seq,
            Err(e) => self.fail(format!("record {seq} ({kind}) was refused: {e}")),
        }
    }

    fn fail(&mut self, why: String) {
        tracing::error!(reason = %why, last = self.last,
            "the snapshot replica diverged; no more snapshots until a restart (the journal is kept whole)");
        metrics::error("snapshot_replica");
        self.broken = true;
    }

    fn snapshot(&mut self, force: bool) -> Result<Option<Written>, DurabilityError> {
        if self.broken {
            return Err(DurabilityError::Diverged("the replica is not exact".into()));
        }
        if !force && self.written == Some(self.last) {
            return Ok(None);
        }
        let c = &self.config;
        let written = write_snapshot(
            &c.dir,
            c.keep,
            self.last,
            clock::now_ms(),
            &self.engine,
            &self.store,
        )?;
        if let Some(journal) = &c.journal {
            let _ = journal.send(JournalMsg::Rotate);
        }
        tracing::info!(seq = written.seq, bytes = written.bytes,
            write_ms = written.write_secs * 1e3, build_ms = written.build_secs * 1e3, path = %written.path.display(), "snapshot written");
        self.written = Some(self.last);
        Ok(Some(written))
    }
}

impl SnapshotReplica {
    /// Starts the thread; it applies what arrives on `records`, in order.
    pub fn spawn(
        config: ReplicaConfig,
        records: Receiver<(Seq, Record)>,
    ) -> std::io::Result<SnapshotReplica> {
        let (control, requests) = crossbeam_channel::unbounded::<Reply>();
        let thread = std::thread::Builder::new()
            .name("snapshot".into())
            .spawn(move || {
                super::priority::set_this_thread_nice(config.nice);
                run(config, records, requests)
            })?;
        Ok(SnapshotReplica {
            control: Mutex::new(Some(control)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Applies every record already handed over, then writes a snapshot; waits.
    pub fn snapshot_now(&self) -> Result<Option<Written>, DurabilityError> {
        let (reply, rx) = crossbeam_channel::bounded(1);
        let sent = self
            .control
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|tx| tx.send(reply).is_ok());
        if !sent {
            return Err(DurabilityError::Stopped);
        }
        rx.recv().map_err(|_| DurabilityError::Stopped)?
    }

    /// Stops the thread (after the snapshot in progress, if any).
    pub fn stop(&self) {
        self.control
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let _ = thread.join();
        }
    }
}

fn run(mut config: ReplicaConfig, records: Receiver<(Seq, Record)>, requests: Receiver<Reply>) {
    if let Some(gate) = config.start_gate.take() {
        let _ = gate.recv();
    }
    let interval = config.interval;
    let start = clock::instant();
    let mut replica = match Replica::build(config) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "the snapshot replica could not be built; no snapshots until a restart (the journal is kept whole)");
            metrics::error("snapshot_replica");
            // Keep answering so shutdown does not hang; drop records.
            loop {
                crossbeam_channel::select! {
                    recv(records) -> r => if r.is_err() { return },
                    recv(requests) -> r => match r {
                        Ok(reply) => { let _ = reply.send(Err(DurabilityError::Diverged(e.to_string()))); }
                        Err(_) => return,
                    },
                }
            }
        }
    };
    tracing::info!(
        seq = replica.last,
        build_ms = clock::elapsed_secs(start) * 1e3,
        "snapshot replica ready"
    );
    let mut due = clock::instant() + interval;
    loop {
        let wait = due.saturating_duration_since(clock::instant());
        crossbeam_channel::select! {
            recv(records) -> r => match r {
                Ok((seq, record)) => {
                    replica.apply(seq, record);
                    // Let records gather before the next look: a sender
                    // that finds this thread parked pays a futex wake-up,
                    // and under load that was one wake-up per group commit.
                    std::thread::sleep(GATHER);
                    while let Ok((seq, record)) = records.try_recv() {
                        replica.apply(seq, record);
                    }
                }
                Err(_) => return,
            },
            recv(requests) -> r => match r {
                Ok(reply) => {
                    while let Ok((seq, record)) = records.try_recv() {
                        replica.apply(seq, record);
                    }
                    let _ = reply.send(replica.snapshot(true));
                }
                Err(_) => return,
            },
            default(wait) => {
                if let Err(e) = replica.snapshot(false) {
                    tracing::error!(error = %e, "periodic snapshot failed; the journal is kept");
                    metrics::error("snapshot_write");
                }
                due = clock::instant() + interval;
            }
        }
    }
}
