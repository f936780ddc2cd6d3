//! Durability: snapshots, the journal, and the restart that loses nothing.
//!
//! - [`record`] — what a journal record says (a core call with its `now`, or a store fact).
//! - [`journal`] — segment files, group commit on one thread, replay with torn-tail repair.
//! - [`recorder`] — the sequencer: numbers every change, says when it is durable.
//! - [`snapshot`] — snapshot files: header + CRC + bincode, written atomically.
//! - [`writer`] — the snapshot thread: consistent cut, then encode and write off the actors.
//! - [`restore`] — newest valid snapshot + journal replay at start.
//!
//! The router is the single sequencer of core calls: it holds the
//! [`recorder::Recorder`] lock across `engine.handle(now, cmd)`, the record
//! and the store writes, so a snapshot (which takes the same lock) is a
//! consistent cut. Acknowledgements wait for the journal's durable watermark,
//! never the router. See `docs/durability.md`. Nothing in here may call into
//! actors or sessions.

pub mod journal;
pub mod record;
pub mod recorder;
pub mod restore;
pub mod snapshot;
pub mod writer;

pub use record::{Record, Seq};
pub use recorder::{JournalFailed, Recorder, Sequencer};
pub use restore::{agents_offline, apply_record, restore, Restored};
pub use writer::{capture, SnapshotJob, SnapshotWriter, Written};

use std::path::PathBuf;

/// Why durability failed.
#[derive(Debug, thiserror::Error)]
pub enum DurabilityError {
    #[error(transparent)]
    Snapshot(snapshot::SnapshotError),
    #[error(transparent)]
    Journal(#[from] journal::JournalError),
    #[error("cannot restore {path}: {source}")]
    Restore {
        path: PathBuf,
        source: crate::routing::RestoreError,
    },
    #[error("invalid routing settings: {0:?}")]
    Settings(Vec<crate::routing::SettingsError>),
    #[error("the snapshot thread has stopped")]
    Stopped,
}
