//! Effects: what the routing core asks its shell to do or announce. The shell
//! drains them with `Engine::poll_effect()` after every call into the core.

use super::command::AgentStatus;
use super::ids::{AgentId, ChannelId, ConversationId, OfferId, QueueId};
use super::settings::Millis;
use serde::{Deserialize, Serialize};

/// Why a conversation left routing for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Handled by an agent and completed (or closed after being answered).
    Completed,
    /// The customer left (or the connector closed it) before an agent accepted it.
    Abandoned,
}

/// Why an offer ended without being accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OfferEnd {
    Rejected,
    Expired,
    /// The conversation was abandoned, closed or moved while offered.
    Withdrawn,
    /// The agent disconnected, went away or offline.
    AgentUnavailable,
}

impl OfferEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            OfferEnd::Rejected => "rejected",
            OfferEnd::Expired => "expired",
            OfferEnd::Withdrawn => "withdrawn",
            OfferEnd::AgentUnavailable => "agent_unavailable",
        }
    }
}

/// Which SLA clock a warning or breach is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlaKind {
    /// Open (or switch) to accepted offer.
    Answer,
    /// Open to first agent message.
    FirstResponse,
}

/// Warning or breach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlaLevel {
    Warning,
    Breach,
}

/// One thing the core decided. Every effect carries the channel and queue it
/// concerns so the shell can label metrics without asking the core.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Effect {
    /// Offer a conversation to an agent; it holds a slot until answered.
    OfferMade {
        offer: OfferId,
        conversation: ConversationId,
        agent: AgentId,
        channel: ChannelId,
        queue: QueueId,
        priority: i32,
        waited_ms: Millis,
        expires_at: Millis,
        /// Time from the conversation entering routing on this channel to this offer
        /// (the first offer's value is the "open to offer" latency, in ms).
        first_offer: bool,
    },
    /// An offer ended without acceptance; the agent's desktop should drop it.
    OfferEnded {
        offer: OfferId,
        conversation: ConversationId,
        agent: AgentId,
        channel: ChannelId,
        queue: QueueId,
        reason: OfferEnd,
    },
    /// The agent accepted: the conversation is now theirs.
    Assigned {
        conversation: ConversationId,
        agent: AgentId,
        channel: ChannelId,
        queue: QueueId,
        /// Wait from entering routing on this channel to acceptance.
        waited_ms: Millis,
        /// Answer target in force, for service-level accounting.
        answer_target_ms: Option<Millis>,
    },
    /// The core changed an agent's presence (offer timeout → away, grace expiry …).
    AgentStatusChanged {
        agent: AgentId,
        status: AgentStatus,
        reason: &'static str,
    },
    /// A conversation went back into the queue (reject, expiry, disconnect, transfer).
    Requeued {
        conversation: ConversationId,
        channel: ChannelId,
        queue: QueueId,
        reason: &'static str,
    },
    /// An SLA clock passed its warning or breach point.
    Sla {
        conversation: ConversationId,
        channel: ChannelId,
        queue: QueueId,
        kind: SlaKind,
        level: SlaLevel,
        waited_ms: Millis,
    },
    /// Requirements were relaxed to the given widening step.
    Widened {
        conversation: ConversationId,
        channel: ChannelId,
        queue: QueueId,
        step: u8,
    },
    /// Moved to the overflow queue.
    Overflowed {
        conversation: ConversationId,
        channel: ChannelId,
        from: QueueId,
        to: QueueId,
    },
    /// Moved to another channel (the previous agent, if any, is tried first).
    ChannelSwitched {
        conversation: ConversationId,
        from: ChannelId,
        to: ChannelId,
        previous_agent: Option<AgentId>,
    },
    /// Transferred by its agent.
    Transferred {
        conversation: ConversationId,
        channel: ChannelId,
        from_queue: QueueId,
        to_queue: QueueId,
        from_agent: AgentId,
    },
    /// The conversation left routing for good.
    Ended {
        conversation: ConversationId,
        channel: ChannelId,
        queue: QueueId,
        outcome: Outcome,
        /// Wait before abandonment (abandoned) — or 0.
        waited_ms: Millis,
        /// Time from acceptance to completion (completed) — or 0.
        handle_ms: Millis,
        agent: Option<AgentId>,
    },
    /// A slot held for wrap-up was released.
    WrapUpEnded {
        agent: AgentId,
        conversation: ConversationId,
        channel: ChannelId,
    },
}
