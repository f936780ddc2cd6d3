//! Identifiers used by the routing core. Conversation and offer ids come from
//! counters kept in the core (and in its snapshot), never from randomness.

use serde::{Deserialize, Serialize};
use std::fmt;
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
