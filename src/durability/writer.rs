//! The snapshot thread: takes a consistent cut on a schedule (or on demand),
//! then encodes and writes it off the actor threads.
//!
//! A cut ([`capture`]) holds the sequencer and the engine lock only while it
//! clones the engine and copies the store maps and rotates the journal; the
//! expensive part (`Engine::snapshot`, converting the store, bincode, CRC,
//! write, fsync) runs here, with routing going on. Once a snapshot is durable
//! the older ones beyond `keep` are deleted, and then the journal segments
//! that only hold records older than the oldest snapshot kept. This thread
//! must never hold the engine lock while it encodes or writes.

use super::record::Seq;
use super::recorder::Recorder;
use super::snapshot::{self, SnapshotBody, SnapshotError};
use super::{journal, DurabilityError};
use crate::clock;
use crate::metrics;
use crate::routing::{Engine, Millis};
use crate::store::{Store, StoreImage, StoreRecords};
use crossbeam_channel::{RecvTimeoutError, Sender};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// A consistent cut: everything up to `seq`, not yet encoded.
#[derive(Debug)]
pub struct SnapshotJob {
    pub seq: Seq,
    pub taken_at_ms: Millis,
    pub engine: Engine,
    pub store: StoreRecords,
    /// How long routing was paused for the cut.
    pub stall: Duration,
}

/// A snapshot that is on disk.
#[derive(Debug, Clone)]
pub struct Written {
    pub seq: Seq,
    pub path: PathBuf,
    pub bytes: u64,
    /// Time to encode and write it (after the cut).
    pub write_secs: f64,
    /// Time routing was paused for the cut.
    pub stall: Duration,
}

/// Takes a cut: the sequencer first, then the engine (the order every writer
/// uses), clone, copy, rotate the journal, let go.
pub fn capture<'a>(
    recorder: &Recorder,
    lock_engine: impl FnOnce() -> MutexGuard<'a, Engine>,
    store: &Store,
    now: Millis,
) -> SnapshotJob {
    let mut seq = recorder.lock();
    let start = clock::instant();
    let engine = lock_engine();
    let copy = engine.clone();
    drop(engine);
    let records = store.records();
    let at = seq.last();
    seq.rotate();
    drop(seq);
    SnapshotJob {
        seq: at,
        taken_at_ms: now,
        engine: copy,
        store: records,
        stall: start.elapsed(),
    }
}

/// Encodes and writes one cut, then prunes old snapshots and journal segments.
pub fn write_job(dir: &Path, keep: usize, job: SnapshotJob) -> Result<Written, DurabilityError> {
    let start = clock::instant();
    let body = SnapshotBody {
        seq: job.seq,
        taken_at_ms: job.taken_at_ms,
        core: job.engine.snapshot(),
        store: StoreImage::from_records(job.store),
    };
    drop(job.engine);
    let (path, bytes) = snapshot::write(dir, &body)?;
    let write_secs = clock::elapsed_secs(start);
    metrics::snapshot_written(write_secs, bytes);
    if let Some(oldest) = snapshot::prune(dir, keep)? {
        journal::prune(dir, oldest)?;
    }
    Ok(Written {
        seq: body.seq,
        path,
        bytes,
        write_secs,
        stall: job.stall,
    })
}

/// Takes a cut, or `None` when there is nothing new since `last` (or no hub).
pub type CaptureFn = Box<dyn Fn(Option<Seq>, bool) -> Option<SnapshotJob> + Send>;

enum Msg {
    Now(Sender<Result<Option<Written>, DurabilityError>>),
}

/// Handle of the snapshot thread.
#[derive(Debug)]
pub struct SnapshotWriter {
    tx: Mutex<Option<Sender<Msg>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl SnapshotWriter {
    /// Starts the thread: a snapshot every `interval` when something changed.
    pub fn spawn(
        dir: PathBuf,
        keep: usize,
        interval: Duration,
        capture: CaptureFn,
    ) -> std::io::Result<SnapshotWriter> {
        let (tx, rx) = crossbeam_channel::unbounded::<Msg>();
        let thread = std::thread::Builder::new()
            .name("snapshot".into())
            .spawn(move || {
                let mut last: Option<Seq> = None;
                let once = |force: bool, last: &mut Option<Seq>| {
                    let Some(job) = capture(*last, force) else {
                        return Ok(None);
                    };
                    let written = write_job(&dir, keep, job)?;
                    tracing::info!(seq = written.seq, bytes = written.bytes,
                        stall_ms = written.stall.as_secs_f64() * 1e3,
                        write_ms = written.write_secs * 1e3, path = %written.path.display(),
                        "snapshot written");
                    *last = Some(written.seq);
                    Ok(Some(written))
                };
                loop {
                    match rx.recv_timeout(interval) {
                        Ok(Msg::Now(reply)) => {
                            let _ = reply.send(once(true, &mut last));
                        }
                        Err(RecvTimeoutError::Timeout) => {
                            if let Err(e) = once(false, &mut last) {
                                tracing::error!(error = %e, "periodic snapshot failed; the journal is kept");
                                metrics::error("snapshot_write");
                            }
                        }
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
            })?;
        Ok(SnapshotWriter {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Takes and writes a snapshot now; waits for it.
    pub fn snapshot_now(&self) -> Result<Option<Written>, DurabilityError> {
        let (reply, rx) = crossbeam_channel::bounded(1);
        let sent = self
            .tx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|tx| tx.send(Msg::Now(reply)).is_ok())
            .unwrap_or(false);
        if !sent {
            return Err(DurabilityError::Stopped);
        }
        rx.recv().map_err(|_| DurabilityError::Stopped)?
    }

    /// Stops the thread (after the snapshot in progress, if any).
    pub fn stop(&self) {
        self.tx
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

impl From<SnapshotError> for DurabilityError {
    fn from(e: SnapshotError) -> Self {
        DurabilityError::Snapshot(e)
    }
}
