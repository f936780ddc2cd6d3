//! Durability: snapshots, the journal, and the restart that loses nothing.
//!
//! - [`record`] — what a journal record says (a core call with its `now`, or a store fact).
//! - [`journal`] — segment files, group commit on one thread, replay with torn-tail repair.
//! - [`recorder`] — the sequencer: numbers every change, says when it is durable.
//! - [`snapshot`] — snapshot files: header + CRC + sections (core, store), written atomically.
//! - [`replica`] — the snapshot thread: a replica of the state fed by the journal, snapshotted off the actors.
//! - [`restore`](mod@restore) — newest valid snapshot + journal replay at start.
//! - [`priority`] — the journal and snapshot threads yield the CPU to routing.
//!
//! The router is the single sequencer of core calls: it holds the
//! [`recorder::Recorder`] lock across `engine.handle(now, cmd)`, the store
//! writes and the record, so records are in the order of the changes.
//! Acknowledgements wait for the journal's durable watermark, never the
//! router. Snapshots are taken from a replica that replays the records on its
//! own thread, so they never pause routing. See `docs/durability.md`. Nothing in here may call into
//! actors or sessions.

pub mod journal;
pub mod priority;
pub mod record;
pub mod recorder;
pub mod replica;
pub mod restore;
pub mod snapshot;

pub use record::{Record, Seq};
pub use recorder::{JournalFailed, Recorder, Sequencer};
pub use replica::{write_snapshot, ReplicaBase, ReplicaConfig, SnapshotReplica, Written};
pub use restore::{
    agents_offline, apply_record, rebuild_newest, restore, Rebuilt, RestoreTimings, Restored,
};

use std::path::PathBuf;

/// Why durability failed.
#[derive(Debug, thiserror::Error)]
pub enum DurabilityError {
    #[error(transparent)]
    Snapshot(#[from] snapshot::SnapshotError),
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
    #[error("the snapshot replica is not exact: {0}")]
    Diverged(String),
}
