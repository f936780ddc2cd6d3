//! The core's records of agents, conversations and offers.
//!
//! Plain data: the fields that define the routing state are serialised in
//! snapshots; the `#[serde(skip)]` ones (and those of [`Agent`] marked
//! "index, not state") are indexes rebuilt on restore.

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
///
/// Laid out by use (`repr(C)`): the flags, held conversations and offers,
/// and the per-channel slots and group lists that every decision about the
/// agent reads come first, so a decision touches few of the record's cache
/// lines; the id, skills and wrap-up list follow. Snapshots keep the
/// original field order (bincode is positional), through `AgentRecord`.
#[derive(Debug, Clone)]
#[repr(C)]
pub struct Agent {
    pub status: AgentStatus,
    /// False from a disconnect until the next login.
    pub connected: bool,
    /// Queued in the engine's dirty list (index, not state).
    pub dirty: bool,
    /// Whether any of its groups uses `least_occupied` (its key changes
    /// with any slot, so every channel is re-published; index, not state).
    pub in_least_occupied: bool,
    pub used_total: u8,
    pub max_total: Option<u8>,
    /// Bit `c` set when the agent has slots on channel `c` (at most 32
    /// channels are configured): publishing and pulling visit only those
    /// (index, not state).
    pub served: u32,
    pub grace_counter: u32,
    pub conversations: SmallVec<[ConversationId; 4]>,
    pub offers: SmallVec<[OfferId; 4]>,
    /// Conversations this agent declined and the end of each cooldown
    /// (mirrors `Conversation::declined`, so looking for work needs no lookup).
    pub declined: Vec<(ConversationId, Millis)>,
    /// Conversations waiting for this agent as their preferred agent (index,
    /// not state).
    pub reserved: Vec<ConversationId>,
    /// Per channel, inside the record so touching an agent costs few cache lines.
    pub ch: PerChannel<ChannelSlots>,
    /// Per channel: the groups this agent qualifies for (index, not state).
    pub groups: PerChannel<Vec<u32>>,
    pub id: AgentId,
    pub skills: Vec<(SkillId, u8)>,
    /// Completed conversations whose wrap-up still holds a slot.
    pub wrapping: Vec<(ConversationId, ChannelId)>,
    /// Set while a reconnect grace runs after a disconnect.
    pub grace: Option<u32>,
}

/// An agent as snapshots hold it: the defining fields of [`Agent`] in the
/// order the snapshot format has always had (the indexes are rebuilt on
/// restore).
#[derive(Serialize, Deserialize)]
#[serde(rename = "Agent")]
struct AgentRecord<Id, Skills, Ch, Offers, Convs, Declined, Wrapping> {
    id: Id,
    status: AgentStatus,
    connected: bool,
    skills: Skills,
    ch: Ch,
    max_total: Option<u8>,
    used_total: u8,
    offers: Offers,
    conversations: Convs,
    declined: Declined,
    wrapping: Wrapping,
    grace: Option<u32>,
    grace_counter: u32,
}

impl Serialize for Agent {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        AgentRecord {
            id: &self.id,
            status: self.status,
            connected: self.connected,
            skills: &self.skills,
            ch: &self.ch,
            max_total: self.max_total,
            used_total: self.used_total,
            offers: &self.offers,
            conversations: &self.conversations,
            declined: &self.declined,
            wrapping: &self.wrapping,
            grace: self.grace,
            grace_counter: self.grace_counter,
        }
        .serialize(s)
    }
}

type OwnedAgentRecord = AgentRecord<
    AgentId,
    Vec<(SkillId, u8)>,
    PerChannel<ChannelSlots>,
    SmallVec<[OfferId; 4]>,
    SmallVec<[ConversationId; 4]>,
    Vec<(ConversationId, Millis)>,
    Vec<(ConversationId, ChannelId)>,
>;

impl<'de> Deserialize<'de> for Agent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = OwnedAgentRecord::deserialize(d)?;
        Ok(Agent {
            status: r.status,
            connected: r.connected,
            dirty: false,
            in_least_occupied: false,
            used_total: r.used_total,
            max_total: r.max_total,
            served: 0,
            grace_counter: r.grace_counter,
            conversations: r.conversations,
            offers: r.offers,
            declined: r.declined,
            reserved: Vec::new(),
            ch: r.ch,
            groups: PerChannel::new(),
            id: r.id,
            skills: r.skills,
            wrapping: r.wrapping,
            grace: r.grace,
        })
    }
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
