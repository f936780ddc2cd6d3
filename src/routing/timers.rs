//! The deadline index: every timed thing in the core (offer expiry, SLA
//! warnings and breaches, widening steps, preferred-agent windows, decline
//! cooldowns, wrap-up, reconnect grace) is one entry in one min-heap. The shell
//! arms a single timer at [`TimerQueue::next`]; no timer per conversation.
//!
//! Entries are never removed early: each carries what it needs to check, when
//! it fires, that it still applies (a stale one is dropped then). That keeps
//! scheduling O(log n) with no search.

use super::effect::{SlaKind, SlaLevel};
use super::ids::{ConversationId, OfferId};
use super::settings::Millis;
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// What happens when a deadline passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Timer {
    /// The offer was not answered in time.
    OfferExpiry(OfferId),
    /// An SLA clock reaches its warning or breach point; `clock` must still match.
    Sla {
        conversation: ConversationId,
        kind: SlaKind,
        level: SlaLevel,
        clock: u32,
    },
    /// Widening step `step` (1-based) becomes due; `queue_epoch` must still match.
    Widen {
        conversation: ConversationId,
        step: u8,
        queue_epoch: u32,
    },
    /// The preferred agent's window closes.
    PreferredEnd {
        conversation: ConversationId,
        until: Millis,
    },
    /// A decliner's cooldown ends: route the conversation again.
    CooldownEnd(ConversationId),
    /// Wrap-up after a completed conversation ends: free the slot.
    WrapUpEnd {
        agent: u32,
        conversation: ConversationId,
    },
    /// A disconnected agent's grace ends: re-queue what it held.
    GraceEnd { agent: u32, token: u32 },
}

/// A min-heap of `(deadline, timer)`.
#[derive(Debug, Default, Clone)]
pub struct TimerQueue {
    heap: BinaryHeap<Reverse<(Millis, Timer)>>,
}

impl TimerQueue {
    pub fn push(&mut self, at: Millis, timer: Timer) {
        self.heap.push(Reverse((at, timer)));
    }

    /// The earliest deadline, if any (it may turn out stale; a spurious wake is harmless).
    pub fn next(&self) -> Option<Millis> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Removes and returns the earliest entry due at or before `now`.
    pub fn pop_due(&mut self, now: Millis) -> Option<(Millis, Timer)> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Every entry, in deadline order (for snapshots).
    pub fn to_sorted_vec(&self) -> Vec<(Millis, Timer)> {
        let mut v: Vec<_> = self.heap.iter().map(|Reverse(e)| *e).collect();
        v.sort_unstable();
        v
    }

    pub fn from_vec(entries: Vec<(Millis, Timer)>) -> Self {
        TimerQueue {
            heap: entries.into_iter().map(Reverse).collect(),
        }
    }
}
