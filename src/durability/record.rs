//! What one journal record says: a core call with its `now`, or a store fact.
//!
//! Replaying the records of a journal, in order, over the state of the
//! snapshot they follow rebuilds the state exactly: the routing core is
//! deterministic given `(now, command)`, and its effects plus these facts are
//! everything the store learned. This module holds data only; it must never
//! do I/O or decide anything.

use crate::routing::{Command, Millis};
use crate::store::Fact;
use serde::{Deserialize, Serialize};

/// Journal sequence number: 1 for the first record ever, +1 per record.
pub type Seq = u64;

/// One journaled step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Record {
    /// `engine.handle(now, command)` succeeded; `facts` were written to the
    /// store before its effects (an open's customer and attributes, a login's
    /// name and capacity).
    Handle {
        now: Millis,
        command: Command,
        facts: Vec<Fact>,
    },
    /// `engine.handle_timeout(now)`.
    Timeout { now: Millis },
    /// A store-only fact (a transcript line).
    Fact(Fact),
}

impl Record {
    /// A short name for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Record::Handle { command, .. } => command.kind(),
            Record::Timeout { .. } => "timeout",
            Record::Fact(_) => "fact",
        }
    }
}
