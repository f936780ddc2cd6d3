//! The core's records of agents, conversations and offers.
//!
//! Plain data: the fields that define the routing state are serialised in
//! snapshots; the `#[serde(skip)]` ones are indexes rebuilt on restore.

use super::command::AgentStatus;
use super::ids::{AgentId, ChannelId, ConversationId, OfferId, QueueId, SkillId};
use super::settings::Millis;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

/// Channels kept inside the agent record (more spill to the heap).
pub const INLINE_CHANNELS: usize = 5;

/// Per-channel data of one agent, inline for the usual channel count so that
/// touching an agent does not chase a pointer per field.
pub type PerChannel<T> = SmallVec<[T; INLINE_CHANNELS]>;

/// One agent as the router sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Agent {
    pub id: AgentId,
    pub status: AgentStatus,
    /// False from a disconnect until the next login.
    pub connected: bool,
    pub skills: Vec<(SkillId, u8)>,
    /// Per channel, inside the record so touching an agent costs few cache lines.
    pub ch: PerChannel<ChannelSlots>,
    pub max_total: Option<u8>,
    pub used_total: u8,
    pub offers: SmallVec<[OfferId; 4]>,
    pub conversations: SmallVec<[ConversationId; 4]>,
    /// Conversations this agent declined and the end of each cooldown
    /// (mirrors `Conversation::declined`, so looking for work needs no lookup).
    pub declined: Vec<(ConversationId, Millis)>,
    /// Completed conversations whose wrap-up still holds a slot.
    pub wrapping: Vec<(ConversationId, ChannelId)>,
    /// Set while a reconnect grace runs after a disconnect.
    pub grace: Option<u32>,
    pub grace_counter: u32,
    /// Per channel: the groups this agent qualifies for.
    #[serde(skip)]
    pub groups: PerChannel<Vec<u32>>,
    /// Whether any of those groups uses `least_occupied` (its key changes
    /// with any slot, so every channel is re-published).
    #[serde(skip)]
    pub in_least_occupied: bool,
    /// Conversations waiting for this agent as their preferred agent.
    #[serde(skip)]
    pub reserved: Vec<ConversationId>,
    #[serde(skip)]
    pub dirty: bool,
    /// Bit `c` set when the agent has slots on channel `c` (at most 32
    /// channels are configured): publishing and pulling visit only those.
    #[serde(skip)]
    pub served: u32,
}

/// An agent's state on one channel.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct ChannelSlots {
    /// Slots on this channel.
    pub capacity: u8,
    /// Slots in use: offers in flight, assigned, wrapping up.
    pub used: u8,
    /// Last offer, freed slot or return to `available`.
    pub last_active: Millis,
    /// Position in the seeded sequence of this slot's `random`-policy key;
    /// advanced at every change of the agent.
    pub rand_key: u64,
    /// Bumped whenever readiness or selection key changes (index, not state).
    #[serde(skip)]
    pub epoch: u32,
    /// The epoch whose entries are in the group heaps (index, not state).
    #[serde(skip)]
    pub published: u32,
}

/// Marker for "no epoch published".
pub const UNPUBLISHED: u32 = u32::MAX;

impl Agent {
    /// Takes offers on `ch` now.
    pub fn ready(&self, ch: usize) -> bool {
        self.status == AgentStatus::Available
            && self.ch[ch].used < self.ch[ch].capacity
            && self.max_total.is_none_or(|t| self.used_total < t)
    }

    /// The channels the agent has slots on, lowest first (see `served`).
    pub fn served_channels(&self) -> impl Iterator<Item = usize> {
        let mut left = self.served;
        std::iter::from_fn(move || {
            let ch = left.trailing_zeros();
            left &= left.wrapping_sub(1);
            (ch < 32).then_some(ch as usize)
        })
    }

    pub fn ready_anywhere(&self) -> bool {
        (0..self.ch.len()).any(|c| self.ready(c))
    }

    pub fn level(&self, skill: SkillId) -> Option<u8> {
        self.skills
            .binary_search_by_key(&skill, |(s, _)| *s)
            .ok()
            .map(|i| self.skills[i].1)
    }

    /// Share of all slots in use, in thousandths.
    pub fn occupancy_permille(&self) -> u64 {
        let cap: u64 = self.ch.iter().map(|c| c.capacity as u64).sum();
        let cap = match self.max_total {
            Some(t) => cap.min(t as u64),
            None => cap,
        };
        (self.used_total as u64 * 1000)
            .checked_div(cap)
            .unwrap_or(1000)
    }
}

/// Where a conversation is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConvState {
    /// In line (in a group, or reserved for its preferred agent).
    Waiting,
    /// Offered to an agent, holding one of its slots.
    Offered { offer: OfferId, agent: u32 },
    /// Accepted: the agent is handling it.
    Assigned { agent: u32, since: Millis },
}

impl ConvState {
    pub fn name(&self) -> &'static str {
        match self {
            ConvState::Waiting => "waiting",
            ConvState::Offered { .. } => "offered",
            ConvState::Assigned { .. } => "assigned",
        }
    }
}

/// One live conversation as the router sees it (no transcript: that lives in the store).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Conversation {
    pub id: ConversationId,
    pub channel: ChannelId,
    pub queue: QueueId,
    /// Bumped when the queue changes, so stale widening timers are ignored.
    pub queue_epoch: u32,
    /// Skills the open asked for on top of the queue's.
    pub own_skills: Vec<(SkillId, u8)>,
    pub priority: i32,
    /// Widening steps applied (0 = none).
    pub step: u8,
    /// Global arrival order: the original place in line.
    pub seq: u64,
    /// When it entered the current line (kept across re-routing).
    pub enqueued_at: Millis,
    pub opened_at: Millis,
    /// Start of the current answer clock (open or channel switch).
    pub sla_started_at: Millis,
    /// Bumped when the SLA clock restarts, so stale SLA timers are ignored.
    pub sla_clock: u32,
    pub answered: bool,
    pub first_response_done: bool,
    pub offered_on_clock: bool,
    pub state: ConvState,
    /// Preferred agent and the end of its window.
    pub preferred: Option<(u32, Millis)>,
    /// Agents that declined or let an offer expire, and the end of their cooldown.
    pub declined: Vec<(u32, Millis)>,
    pub previous_agent: Option<u32>,
    /// The group whose line it is in, when waiting and not reserved.
    #[serde(skip)]
    pub group: Option<u32>,
}

impl Conversation {
    /// Whether `agent` is held off this conversation at `now` by a cooldown.
    pub fn cooling(&self, agent: u32, now: Millis) -> bool {
        self.declined
            .iter()
            .any(|&(a, until)| a == agent && until > now)
    }

    pub fn declined_by(&self, agent: u32) -> bool {
        self.declined.iter().any(|&(a, _)| a == agent)
    }
}

/// An offer in flight.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Offer {
    pub conversation: ConversationId,
    pub agent: u32,
    pub channel: ChannelId,
    pub expires_at: Millis,
}
