//! Identifiers used by the routing core. Conversation and offer ids come from
//! counters kept in the core (and in its snapshot), never from randomness.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

/// An agent's id as its desktop names it (`agent.login {agent_id}`).
pub type AgentId = Arc<str>;

/// A conversation, for its whole life across channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConversationId(pub u64);

/// One offer of one conversation to one agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OfferId(pub u64);

/// Index of a configured channel in [`super::RoutingSettings::channels`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChannelId(pub u8);

/// Index of a configured queue in [`super::RoutingSettings::queues`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct QueueId(pub u16);

/// An interned skill name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SkillId(pub u16);

impl fmt::Display for ConversationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c-{}", self.0)
    }
}

impl fmt::Display for OfferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "o-{}", self.0)
    }
}

impl ConversationId {
    /// Parses the `c-<n>` form used on the wire.
    pub fn parse(s: &str) -> Option<Self> {
        s.strip_prefix("c-")?.parse().ok().map(ConversationId)
    }
}

impl OfferId {
    /// Parses the `o-<n>` form used on the wire.
    pub fn parse(s: &str) -> Option<Self> {
        s.strip_prefix("o-")?.parse().ok().map(OfferId)
    }
}

/// A map keyed by one of the core's own counter ids ([`ConversationId`],
/// [`OfferId`]): hashing is one multiply instead of a keyed hash. The ids
/// are handed out by the core, never chosen by a client, so there is no
/// flooding to defend against; a client naming an id only looks it up.
pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// Fibonacci hashing of a `u64` (consecutive ids spread over the whole
/// table, and the top bits that hashbrown uses as tags are well mixed).
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    /// Not used by the id types (they hash one `u64`); kept correct anyway.
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b) ^ self.0.rotate_left(8));
        }
    }
}
