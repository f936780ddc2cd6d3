//! The routing engine: a deterministic state machine in the sans-I/O shape.
//!
//! Events go in through [`Engine::handle`] and [`Engine::handle_timeout`],
//! each with the current time; decisions come out through
//! [`Engine::poll_effect`]; [`Engine::poll_timeout`] says when to call back.
//! It never reads a clock, spawns, blocks or does I/O, and it never panics on
//! input: a bad command is refused with a [`CommandError`] and changes nothing.
//!
//! Every change goes through two steps: the command mutates records and marks
//! the agents and conversations it touched as dirty; then `Engine::settle`
//! routes each dirty conversation (best ready agent from its group's ready set) and
//! lets each dirty agent pull work (best head among the lines of the groups it
//! qualifies for) before publishing it as ready. That keeps the engine
//! work-conserving: after every call, no ready agent qualifies for a waiting
//! conversation unless a cooldown or a preferred-agent window holds it off.

use super::command::{AgentStatus, Command, CommandError, Reply, TransferTarget};
use super::effect::{Effect, OfferEnd, Outcome, SlaKind, SlaLevel};
use super::groups::{Group, GroupKey, LineKey, ReadyEntry};
use super::ids::{AgentId, ChannelId, ConversationId, IdMap, OfferId, QueueId, SkillId};
use super::settings::{
    Millis, RoutingSettings, SelectionPolicy, SettingsError, SlaAction, SlaSettings,
};
use super::skills::{self, Interner};
use super::state::{Agent, ChannelSlots, ConvState, Conversation, Offer, PerChannel, UNPUBLISHED};
use super::timers::{Timer, TimerQueue};
use ahash::AHashMap;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use smallvec::SmallVec;
use std::collections::VecDeque;

/// At most this many skills on one agent or one conversation.
pub const MAX_SKILLS: usize = 64;

/// Queue settings resolved to ids.
#[derive(Debug, Clone)]
pub(crate) struct QueueRt {
    pub skills: Vec<(SkillId, u8)>,
    /// Per widening step (1-based index - 1): lower-by (cumulative) and dropped skills (cumulative).
    pub steps: Vec<(u8, Vec<SkillId>)>,
    pub overflow: Option<QueueId>,
    /// SLA settings per channel.
    pub sla: Vec<SlaSettings>,
}

/// Waiting conversations and how long the oldest has waited, per queue and channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStats {
    pub queue: QueueId,
    pub channel: ChannelId,
    pub waiting: usize,
    pub longest_wait_ms: Millis,
}

/// The agent floor at a glance, for the periodic gauges: one pass over the
/// agents, no allocation per agent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FloorStats {
    /// Agents by status, indexed as [`AgentStatus::ALL`].
    pub by_status: [usize; 3],
    /// Per channel: slots held (offers, conversations, wrap-up) by agents not offline.
    pub busy_slots: Vec<usize>,
    /// Per channel: free slots of available agents.
    pub free_slots: Vec<usize>,
    /// Agents not offline holding any slot.
    pub busy: usize,
    /// Available agents holding nothing.
    pub idle: usize,
    /// Away agents holding nothing.
    pub away: usize,
}

/// Marks an empty slot of the group cache.
const NO_GROUP: u32 = u32::MAX;

/// What finding a conversation's group takes when the cache does not have it.
struct GroupMiss {
    /// The cache slot (queue and channel) and widening step, when cacheable.
    cache_key: Option<(usize, u8)>,
    key: GroupKey,
}

/// The pure routing core. See the module docs.
#[derive(Debug, Clone)]
pub struct Engine {
    pub(crate) settings: RoutingSettings,
    pub(crate) queues: Vec<QueueRt>,
    queue_ids: AHashMap<String, QueueId>,
    pub(crate) skills: Interner,
    pub(crate) agents: Vec<Agent>,
    pub(crate) agent_index: AHashMap<AgentId, u32>,
    pub(crate) conversations: IdMap<ConversationId, Conversation>,
    pub(crate) offers: IdMap<OfferId, Offer>,
    pub(crate) groups: Vec<Group>,
    pub(crate) group_index: AHashMap<GroupKey, u32>,
    /// Group of a conversation with no skills of its own: indexed by
    /// `queue * channels + channel`, then by widening step; `NO_GROUP` where
    /// none was cached yet. Plain vectors, so the common lookup hashes nothing.
    group_cache: Vec<Vec<u32>>,
    pub(crate) groups_by_channel: Vec<Vec<u32>>,
    pub(crate) agents_by_skill: Vec<Vec<u32>>,
    pub(crate) agents_by_channel: Vec<Vec<u32>>,
    /// Per agent and channel (`a * channels + ch`): the epoch whose heap
    /// entries are valid (published while ready), or `UNPUBLISHED`. One
    /// compact array, so skipping stale entries touches no agent record.
    pub(crate) ready_epoch: Vec<u32>,
    pub(crate) timers: TimerQueue,
    pub(crate) effects: VecDeque<Effect>,
    pub(crate) dirty_agents: Vec<u32>,
    pub(crate) dirty_convs: Vec<ConversationId>,
    pub(crate) next_conversation: u64,
    pub(crate) next_offer: u64,
    pub(crate) next_seq: u64,
    pub(crate) rng_counter: u64,
    scratch: Vec<ReadyEntry>,
}

impl Engine {
    /// A fresh engine with no agents and no conversations.
    pub fn new(settings: RoutingSettings) -> Result<Engine, Vec<SettingsError>> {
        let errors = settings.validate();
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut skills = Interner::default();
        let queues = resolve_queues(&settings, &mut skills);
        let nch = settings.channels.len();
        Ok(Engine {
            queue_ids: settings
                .queues
                .iter()
                .enumerate()
                .map(|(i, q)| (q.name.clone(), QueueId(i as u16)))
                .collect(),
            queues,
            skills,
            agents: Vec::new(),
            agent_index: AHashMap::new(),
            conversations: IdMap::default(),
            offers: IdMap::default(),
            groups: Vec::new(),
            group_index: AHashMap::new(),
            group_cache: vec![Vec::new(); settings.queues.len() * nch],
            groups_by_channel: vec![Vec::new(); nch],
            agents_by_skill: Vec::new(),
            agents_by_channel: vec![Vec::new(); nch],
            ready_epoch: Vec::new(),
            timers: TimerQueue::default(),
            effects: VecDeque::new(),
            dirty_agents: Vec::new(),
            dirty_convs: Vec::new(),
            next_conversation: 1,
            next_offer: 1,
            next_seq: 1,
            rng_counter: 0,
            scratch: Vec::new(),
            settings,
        })
    }

    pub fn settings(&self) -> &RoutingSettings {
        &self.settings
    }

    /// Applies one command at `now`. On error nothing changed.
    pub fn handle(&mut self, now: Millis, cmd: Command) -> Result<Reply, CommandError> {
        let reply = match cmd {
            Command::AgentLogin {
                agent,
                skills,
                capacity,
                max_total,
            } => self
                .login(now, agent, skills, capacity, max_total)
                .map(|_| Reply::Done),
            Command::AgentSetStatus { agent, status } => {
                self.set_status(now, &agent, status).map(|_| Reply::Done)
            }
            Command::AgentDisconnected { agent } => {
                self.disconnect(now, &agent).map(|_| Reply::Done)
            }
            Command::Open {
                channel,
                queue,
                skills,
                priority,
                preferred_agent,
            } => self
                .open(
                    now,
                    &channel,
                    queue.as_deref(),
                    skills,
                    priority,
                    preferred_agent.as_deref(),
                )
                .map(Reply::Opened),
            Command::Accept { agent, offer } => {
                self.accept(now, &agent, offer).map(|_| Reply::Done)
            }
            Command::Reject { agent, offer } => {
                self.reject(now, &agent, offer).map(|_| Reply::Done)
            }
            Command::Complete {
                agent,
                conversation,
            } => self
                .complete(now, &agent, conversation)
                .map(|_| Reply::Done),
            Command::AgentMessage {
                agent,
                conversation,
            } => self
                .agent_message(&agent, conversation)
                .map(|_| Reply::Done),
            Command::Abandon { conversation } => {
                self.abandon(now, conversation, false).map(|_| Reply::Done)
            }
            Command::Close { conversation } => {
                self.abandon(now, conversation, true).map(|_| Reply::Done)
            }
            Command::Transfer {
                agent,
                conversation,
                target,
            } => self
                .transfer(now, &agent, conversation, target)
                .map(|_| Reply::Done),
            Command::SwitchChannel {
                conversation,
                channel,
            } => self
                .switch_channel(now, conversation, &channel)
                .map(|_| Reply::Done),
        }?;
        self.settle(now);
        Ok(reply)
    }

    /// Fires every deadline due at or before `now`. Calling it early is harmless.
    pub fn handle_timeout(&mut self, now: Millis) {
        // Fire everything that is due, then decide once with all of it known,
        // so conversations released at the same instant compete in line order.
        while let Some((at, timer)) = self.timers.pop_due(now) {
            self.fire(now, at, timer);
        }
        self.settle(now);
    }

    /// When the shell should call [`Engine::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Millis> {
        self.timers.next()
    }

    /// The next decision to carry out, oldest first.
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// Presence of an agent, if it ever logged in.
    pub fn agent_status(&self, agent: &str) -> Option<AgentStatus> {
        self.agent_index
            .get(agent)
            .map(|&a| self.agents[a as usize].status)
    }

    /// Agents by status, busy and free slots per channel, and busy/idle/away
    /// counts (see [`FloorStats`]).
    pub fn floor_stats(&self) -> FloorStats {
        let nch = self.settings.channels.len();
        let mut f = FloorStats {
            busy_slots: vec![0; nch],
            free_slots: vec![0; nch],
            ..FloorStats::default()
        };
        for ag in &self.agents {
            let i = AgentStatus::ALL
                .iter()
                .position(|s| *s == ag.status)
                .unwrap_or(2);
            f.by_status[i] += 1;
            if ag.status == AgentStatus::Offline {
                continue;
            }
            let mut holding = false;
            for (c, slots) in ag.ch.iter().enumerate().take(nch) {
                let used = usize::from(slots.used);
                holding |= used > 0;
                f.busy_slots[c] += used;
                if ag.status == AgentStatus::Available {
                    f.free_slots[c] += usize::from(slots.capacity).saturating_sub(used);
                }
            }
            if holding {
                f.busy += 1;
            } else if ag.status == AgentStatus::Available {
                f.idle += 1;
            } else {
                f.away += 1;
            }
        }
        f
    }

    /// Number of live (not ended) conversations.
    pub fn live_conversations(&self) -> usize {
        self.conversations.len()
    }

    /// Name of a channel id.
    pub fn channel_name(&self, ch: ChannelId) -> &str {
        &self.settings.channels[ch.0 as usize].name
    }

    /// Name of a queue id.
    pub fn queue_name(&self, q: QueueId) -> &str {
        &self.settings.queues[q.0 as usize].name
    }

    /// Depth and longest wait of every queue on every channel (zeros included).
    /// Costs one pass over the live conversations: meant for a periodic gauge refresh.
    pub fn queue_stats(&self, now: Millis) -> Vec<QueueStats> {
        let nch = self.settings.channels.len();
        let mut out: Vec<QueueStats> = (0..self.settings.queues.len() * nch)
            .map(|i| QueueStats {
                queue: QueueId((i / nch) as u16),
                channel: ChannelId((i % nch) as u8),
                waiting: 0,
                longest_wait_ms: 0,
            })
            .collect();
        for c in self.conversations.values() {
            if c.state == ConvState::Waiting {
                let s = &mut out[c.queue.0 as usize * nch + c.channel.0 as usize];
                s.waiting += 1;
                s.longest_wait_ms = s.longest_wait_ms.max(now.saturating_sub(c.enqueued_at));
            }
        }
        out
    }

    // ----- commands ---------------------------------------------------------

    fn intern_levels(
        &mut self,
        levels: Vec<(String, u8)>,
    ) -> Result<Vec<(SkillId, u8)>, CommandError> {
        if levels.is_empty() {
            return Ok(Vec::new());
        }
        if levels.len() > MAX_SKILLS {
            return Err(CommandError::TooManySkills(MAX_SKILLS));
        }
        for (name, level) in &levels {
            if !(1..=10).contains(level) {
                return Err(CommandError::BadSkillLevel {
                    skill: name.clone(),
                    level: *level,
                });
            }
        }
        let mut out = Vec::with_capacity(levels.len());
        for (name, level) in levels {
            let id = self
                .skills
                .intern(&name)
                .ok_or(CommandError::TooManySkills(MAX_SKILLS))?;
            out.push((id, level));
        }
        Ok(skills::normalize(out))
    }

    /// A channel by name: a scan, cheaper than hashing for the handful of
    /// channels a contact center configures.
    fn channel_id(&self, name: &str) -> Result<ChannelId, CommandError> {
        self.settings
            .channels
            .iter()
            .position(|c| c.name == name)
            .map(|i| ChannelId(i as u8))
            .ok_or_else(|| CommandError::UnknownChannel(name.to_owned()))
    }

    fn queue_id(&self, name: &str) -> Result<QueueId, CommandError> {
        self.queue_ids
            .get(name)
            .copied()
            .ok_or_else(|| CommandError::UnknownQueue(name.to_owned()))
    }

    /// Refuses a queue that does not serve the channel.
    fn check_serves(&self, q: QueueId, ch: ChannelId) -> Result<(), CommandError> {
        let served = &self.settings.queues[q.0 as usize].channels;
        if served.is_empty()
            || served
                .iter()
                .any(|c| *c == self.settings.channels[ch.0 as usize].name)
        {
            Ok(())
        } else {
            Err(CommandError::ChannelNotServed {
                queue: self.settings.queues[q.0 as usize].name.clone(),
                channel: self.settings.channels[ch.0 as usize].name.clone(),
            })
        }
    }

    fn agent_idx(&self, agent: &str) -> Result<u32, CommandError> {
        self.agent_index
            .get(agent)
            .copied()
            .ok_or_else(|| CommandError::UnknownAgent(agent.to_owned()))
    }

    fn login(
        &mut self,
        now: Millis,
        id: AgentId,
        skill_levels: Vec<(String, u8)>,
        capacity: Option<Vec<(String, u8)>>,
        max_total: Option<u8>,
    ) -> Result<(), CommandError> {
        let nch = self.settings.channels.len();
        let cap = match capacity {
            None => self
                .settings
                .channels
                .iter()
                .map(|c| c.default_capacity)
                .collect(),
            Some(list) => {
                let mut cap = vec![0u8; nch];
                for (name, n) in &list {
                    cap[self.channel_id(name)?.0 as usize] = *n;
                }
                cap
            }
        };
        let held = self.intern_levels(skill_levels)?;
        let a = match self.agent_index.get(&id) {
            Some(&a) => a,
            None => {
                let a = self.agents.len() as u32;
                self.agents.push(Agent {
                    id: id.clone(),
                    status: AgentStatus::Offline,
                    connected: true,
                    skills: Vec::new(),
                    ch: smallvec::smallvec![
                        ChannelSlots {
                            last_active: now,
                            ..ChannelSlots::default()
                        };
                        nch
                    ],
                    max_total: None,
                    used_total: 0,
                    offers: SmallVec::new(),
                    conversations: SmallVec::new(),
                    declined: Vec::new(),
                    wrapping: Vec::new(),
                    grace: None,
                    grace_counter: 0,
                    groups: smallvec::smallvec![Vec::new(); nch],
                    in_least_occupied: false,
                    reserved: Vec::new(),
                    dirty: false,
                    served: 0,
                });
                self.agent_index.insert(id, a);
                self.ready_epoch
                    .extend(std::iter::repeat_n(UNPUBLISHED, nch));
                a
            }
        };
        self.unindex_agent(a);
        {
            let agent = &mut self.agents[a as usize];
            agent.skills = held;
            for (slots, cap) in agent.ch.iter_mut().zip(cap) {
                slots.capacity = cap;
            }
            agent.max_total = max_total;
            agent.connected = true;
            agent.grace = None;
            if agent.status != AgentStatus::Available {
                agent.status = AgentStatus::Available;
                agent.ch.iter_mut().for_each(|c| c.last_active = now);
            }
        }
        self.index_agent(a);
        self.touch_agent(a, None);
        Ok(())
    }

    fn set_status(
        &mut self,
        now: Millis,
        agent: &str,
        status: AgentStatus,
    ) -> Result<(), CommandError> {
        let a = self.agent_idx(agent)?;
        self.change_status(now, a, status, None);
        Ok(())
    }

    /// Sets presence; leaving `available` withdraws pending offers (re-routed at once).
    fn change_status(
        &mut self,
        now: Millis,
        a: u32,
        status: AgentStatus,
        reason: Option<&'static str>,
    ) {
        let old = self.agents[a as usize].status;
        if old == status {
            return;
        }
        self.agents[a as usize].status = status;
        if status == AgentStatus::Available {
            self.agents[a as usize]
                .ch
                .iter_mut()
                .for_each(|c| c.last_active = now);
        } else {
            let offers = std::mem::take(&mut self.agents[a as usize].offers);
            for offer in offers {
                self.end_offer(now, offer, OfferEnd::AgentUnavailable, false);
            }
        }
        if let Some(reason) = reason {
            let id = self.agents[a as usize].id.clone();
            self.effects.push_back(Effect::AgentStatusChanged {
                agent: id,
                status,
                reason,
            });
        }
        self.touch_agent(a, None);
    }

    fn disconnect(&mut self, now: Millis, agent: &str) -> Result<(), CommandError> {
        let a = self.agent_idx(agent)?;
        self.change_status(now, a, AgentStatus::Offline, None);
        let ag = &mut self.agents[a as usize];
        ag.connected = false;
        if !ag.conversations.is_empty() {
            ag.grace_counter = ag.grace_counter.wrapping_add(1);
            ag.grace = Some(ag.grace_counter);
            let token = ag.grace_counter;
            self.timers.push(
                now + self.settings.reconnect_grace_ms,
                Timer::GraceEnd { agent: a, token },
            );
        }
        Ok(())
    }

    fn open(
        &mut self,
        now: Millis,
        channel: &str,
        queue: Option<&str>,
        own: Vec<(String, u8)>,
        priority: Option<i32>,
        preferred: Option<&str>,
    ) -> Result<ConversationId, CommandError> {
        let ch = self.channel_id(channel)?;
        let q = self.queue_id(queue.unwrap_or(&self.settings.default_queue))?;
        self.check_serves(q, ch)?;
        let own_skills = self.intern_levels(own)?;
        let preferred_agent = preferred.and_then(|p| self.agent_index.get(p).copied());
        let id = ConversationId(self.next_conversation);
        self.next_conversation += 1;
        let seq = self.next_seq;
        self.next_seq += 1;
        let conv = Conversation {
            id,
            channel: ch,
            queue: q,
            queue_epoch: 0,
            own_skills,
            priority: priority.unwrap_or(self.settings.queues[q.0 as usize].priority),
            step: 0,
            seq,
            enqueued_at: now,
            opened_at: now,
            sla_started_at: now,
            sla_clock: 0,
            answered: false,
            first_response_done: false,
            offered_on_clock: false,
            state: ConvState::Waiting,
            preferred: None,
            declined: Vec::new(),
            previous_agent: None,
            group: None,
        };
        self.conversations.insert(id, conv);
        self.start_sla_clock(now, id, true);
        self.schedule_widening(now, id);
        if let Some(p) = preferred_agent {
            self.prefer(now, id, p);
        }
        if !self.offer_at_once(now, id) {
            self.enqueue(id);
        }
        Ok(id)
    }

    fn accept(&mut self, now: Millis, agent: &str, offer_id: OfferId) -> Result<(), CommandError> {
        let a = self.agent_idx(agent)?;
        let offer = *self
            .offers
            .get(&offer_id)
            .ok_or(CommandError::UnknownOffer(offer_id))?;
        if offer.agent != a {
            return Err(CommandError::NotYourOffer(offer_id));
        }
        self.offers.remove(&offer_id);
        let ag = &mut self.agents[a as usize];
        ag.offers.retain(|o| *o != offer_id);
        ag.conversations.push(offer.conversation);
        let agent_id = ag.id.clone();
        let Some(c) = self.conversations.get_mut(&offer.conversation) else {
            return Ok(());
        };
        c.state = ConvState::Assigned {
            agent: a,
            since: now,
        };
        c.answered = true;
        let declined = std::mem::take(&mut c.declined);
        c.preferred = None;
        let answer_target_ms =
            self.queues[c.queue.0 as usize].sla[c.channel.0 as usize].answer_target_ms;
        self.effects.push_back(Effect::Assigned {
            conversation: c.id,
            agent: agent_id,
            channel: c.channel,
            queue: c.queue,
            waited_ms: now.saturating_sub(c.sla_started_at),
            answer_target_ms,
        });
        self.forget_declines(offer.conversation, declined);
        Ok(())
    }

    fn reject(&mut self, now: Millis, agent: &str, offer_id: OfferId) -> Result<(), CommandError> {
        let a = self.agent_idx(agent)?;
        let offer = self
            .offers
            .get(&offer_id)
            .ok_or(CommandError::UnknownOffer(offer_id))?;
        if offer.agent != a {
            return Err(CommandError::NotYourOffer(offer_id));
        }
        self.end_offer(now, offer_id, OfferEnd::Rejected, true);
        Ok(())
    }

    /// The conversation assigned to `agent`, or why not.
    fn assigned_to(
        &self,
        a: u32,
        conversation: ConversationId,
    ) -> Result<&Conversation, CommandError> {
        let c = self
            .conversations
            .get(&conversation)
            .ok_or(CommandError::UnknownConversation(conversation))?;
        match c.state {
            ConvState::Assigned { agent, .. } if agent == a => Ok(c),
            ConvState::Assigned { .. } => Err(CommandError::NotYourConversation(conversation)),
            ConvState::Offered { agent, .. } if agent != a => {
                Err(CommandError::NotYourConversation(conversation))
            }
            s => Err(CommandError::InvalidState {
                conversation,
                state: s.name(),
            }),
        }
    }

    fn complete(
        &mut self,
        now: Millis,
        agent: &str,
        conversation: ConversationId,
    ) -> Result<(), CommandError> {
        let a = self.agent_idx(agent)?;
        self.assigned_to(a, conversation)?;
        self.finish(now, conversation);
        Ok(())
    }

    fn agent_message(
        &mut self,
        agent: &str,
        conversation: ConversationId,
    ) -> Result<(), CommandError> {
        let a = self.agent_idx(agent)?;
        self.assigned_to(a, conversation)?;
        if let Some(c) = self.conversations.get_mut(&conversation) {
            c.first_response_done = true;
        }
        Ok(())
    }

    /// Abandon (customer left) or close (connector ended it): unanswered ones
    /// end as abandoned; `close` of an assigned one completes it.
    fn abandon(
        &mut self,
        now: Millis,
        conversation: ConversationId,
        close: bool,
    ) -> Result<(), CommandError> {
        let c = self
            .conversations
            .get(&conversation)
            .ok_or(CommandError::UnknownConversation(conversation))?;
        match c.state {
            ConvState::Assigned { .. } if close => {
                self.finish(now, conversation);
                return Ok(());
            }
            ConvState::Assigned { .. } => {
                return Err(CommandError::InvalidState {
                    conversation,
                    state: "assigned",
                });
            }
            ConvState::Offered { offer, .. } => {
                self.end_offer(now, offer, OfferEnd::Withdrawn, false);
            }
            ConvState::Waiting => {}
        }
        self.dequeue(conversation);
        if let Some(c) = self.conversations.remove(&conversation) {
            self.effects.push_back(Effect::Ended {
                conversation,
                channel: c.channel,
                queue: c.queue,
                outcome: Outcome::Abandoned,
                waited_ms: now.saturating_sub(c.sla_started_at),
                handle_ms: 0,
                agent: None,
            });
        }
        Ok(())
    }

    fn transfer(
        &mut self,
        now: Millis,
        agent: &str,
        conversation: ConversationId,
        target: TransferTarget,
    ) -> Result<(), CommandError> {
        let a = self.agent_idx(agent)?;
        let from_queue = self.assigned_to(a, conversation)?.queue;
        let ch = self.conversations[&conversation].channel;
        let (to_queue, preferred) = match &target {
            TransferTarget::Queue(name) => {
                let q = self.queue_id(name)?;
                self.check_serves(q, ch)?;
                (q, None)
            }
            TransferTarget::Agent(id) => {
                let b = self.agent_idx(id)?;
                if self.agents[b as usize].status == AgentStatus::Offline {
                    return Err(CommandError::AgentNotLoggedIn(id.to_string()));
                }
                (from_queue, Some(b))
            }
        };
        self.release_slot(now, a, ch);
        self.agents[a as usize]
            .conversations
            .retain(|c| *c != conversation);
        let seq = self.next_seq;
        self.next_seq += 1;
        let c = self
            .conversations
            .get_mut(&conversation)
            .expect("checked above");
        c.state = ConvState::Waiting;
        c.previous_agent = Some(a);
        c.seq = seq;
        c.enqueued_at = now;
        let declined = std::mem::take(&mut c.declined);
        c.queue = to_queue;
        c.queue_epoch += 1;
        c.step = 0;
        self.forget_declines(conversation, declined);
        let from_agent = self.agents[a as usize].id.clone();
        self.effects.push_back(Effect::Transferred {
            conversation,
            channel: ch,
            from_queue,
            to_queue,
            from_agent,
        });
        self.schedule_widening(now, conversation);
        if let Some(b) = preferred {
            self.prefer(now, conversation, b);
        }
        self.enqueue(conversation);
        Ok(())
    }

    fn switch_channel(
        &mut self,
        now: Millis,
        conversation: ConversationId,
        channel: &str,
    ) -> Result<(), CommandError> {
        let to = self.channel_id(channel)?;
        let c = self
            .conversations
            .get(&conversation)
            .ok_or(CommandError::UnknownConversation(conversation))?;
        self.check_serves(c.queue, to)?;
        let from = c.channel;
        if from == to {
            return Err(CommandError::SameChannel(channel.to_owned()));
        }
        let mut previous = c.previous_agent;
        match c.state {
            ConvState::Offered { offer, .. } => {
                self.end_offer(now, offer, OfferEnd::Withdrawn, false)
            }
            ConvState::Assigned { agent, .. } => {
                self.release_slot(now, agent, from);
                self.agents[agent as usize]
                    .conversations
                    .retain(|x| *x != conversation);
                previous = Some(agent);
            }
            ConvState::Waiting => {}
        }
        self.dequeue(conversation);
        let seq = self.next_seq;
        let c = self
            .conversations
            .get_mut(&conversation)
            .expect("checked above");
        if c.answered {
            // Already served once: a new request on the new channel.
            c.seq = seq;
            c.enqueued_at = now;
            self.next_seq += 1;
        }
        c.channel = to;
        c.state = ConvState::Waiting;
        c.previous_agent = previous;
        let declined = std::mem::take(&mut c.declined);
        c.preferred = None;
        self.forget_declines(conversation, declined);
        self.start_sla_clock(now, conversation, false);
        let previous_agent = previous.map(|a| self.agents[a as usize].id.clone());
        self.effects.push_back(Effect::ChannelSwitched {
            conversation,
            from,
            to,
            previous_agent,
        });
        if let Some(p) = previous {
            self.prefer(now, conversation, p);
        }
        self.enqueue(conversation);
        Ok(())
    }

    // ----- timers -----------------------------------------------------------

    fn fire(&mut self, now: Millis, at: Millis, timer: Timer) {
        match timer {
            Timer::OfferExpiry(offer) => {
                if let Some(o) = self.offers.get(&offer) {
                    if o.expires_at == at {
                        let a = o.agent;
                        self.end_offer(now, offer, OfferEnd::Expired, true);
                        self.change_status(now, a, AgentStatus::Away, Some("offer_timeout"));
                    }
                }
            }
            Timer::Sla {
                conversation,
                kind,
                level,
                clock,
            } => self.fire_sla(now, conversation, kind, level, clock),
            Timer::Widen {
                conversation,
                step,
                queue_epoch,
            } => {
                if let Some(c) = self.conversations.get(&conversation) {
                    if c.queue_epoch == queue_epoch && c.step < step {
                        self.widen_to(conversation, step);
                    }
                }
            }
            Timer::PreferredEnd {
                conversation,
                until,
            } => {
                if let Some(c) = self.conversations.get_mut(&conversation) {
                    if c.preferred.is_some_and(|(_, u)| u == until) {
                        let waiting = c.state == ConvState::Waiting;
                        if waiting {
                            self.dequeue(conversation);
                        }
                        if let Some(c) = self.conversations.get_mut(&conversation) {
                            c.preferred = None;
                        }
                        if waiting {
                            self.enqueue(conversation);
                        }
                    }
                }
            }
            Timer::CooldownEnd(conversation) => {
                if self
                    .conversations
                    .get(&conversation)
                    .is_some_and(|c| c.state == ConvState::Waiting)
                {
                    self.dirty_convs.push(conversation);
                }
            }
            Timer::WrapUpEnd {
                agent,
                conversation,
            } => {
                let ag = &mut self.agents[agent as usize];
                if let Some(pos) = ag.wrapping.iter().position(|(c, _)| *c == conversation) {
                    let (_, ch) = ag.wrapping.remove(pos);
                    let id = ag.id.clone();
                    self.release_slot(now, agent, ch);
                    self.effects.push_back(Effect::WrapUpEnded {
                        agent: id,
                        conversation,
                        channel: ch,
                    });
                }
            }
            Timer::GraceEnd { agent, token } => {
                let ag = &mut self.agents[agent as usize];
                if ag.grace == Some(token) && !ag.connected {
                    ag.grace = None;
                    let convs = std::mem::take(&mut ag.conversations);
                    for conversation in convs {
                        let Some(c) = self.conversations.get_mut(&conversation) else {
                            continue;
                        };
                        let ch = c.channel;
                        c.state = ConvState::Waiting;
                        c.previous_agent = Some(agent);
                        let queue = c.queue;
                        self.release_slot(now, agent, ch);
                        self.effects.push_back(Effect::Requeued {
                            conversation,
                            channel: ch,
                            queue,
                            reason: "agent_lost",
                        });
                        self.enqueue(conversation);
                    }
                }
            }
        }
    }

    fn fire_sla(
        &mut self,
        now: Millis,
        conversation: ConversationId,
        kind: SlaKind,
        level: SlaLevel,
        clock: u32,
    ) {
        let Some(c) = self.conversations.get(&conversation) else {
            return;
        };
        if c.sla_clock != clock {
            return;
        }
        let pending = match kind {
            SlaKind::Answer => !c.answered,
            SlaKind::FirstResponse => !c.first_response_done,
        };
        if !pending {
            return;
        }
        let (channel, queue) = (c.channel, c.queue);
        self.effects.push_back(Effect::Sla {
            conversation,
            channel,
            queue,
            kind,
            level,
            waited_ms: now.saturating_sub(c.sla_started_at),
        });
        if kind != SlaKind::Answer {
            return;
        }
        let sla = &self.queues[queue.0 as usize].sla[channel.0 as usize];
        let actions = match level {
            SlaLevel::Warning => sla.on_warning.clone(),
            SlaLevel::Breach => sla.on_breach.clone(),
        };
        for action in actions {
            let Some(c) = self.conversations.get(&conversation) else {
                return;
            };
            match action {
                SlaAction::BoostPriority { by } => {
                    let queued = c.group.is_some();
                    if queued {
                        self.dequeue(conversation);
                    }
                    if let Some(c) = self.conversations.get_mut(&conversation) {
                        c.priority = c.priority.saturating_add(by);
                    }
                    if queued {
                        self.enqueue(conversation);
                    }
                }
                SlaAction::Widen => {
                    let next = c.step + 1;
                    if (next as usize) <= self.queues[c.queue.0 as usize].steps.len() {
                        self.widen_to(conversation, next);
                        let queue = self.conversations[&conversation].queue;
                        self.effects.push_back(Effect::Widened {
                            conversation,
                            channel,
                            queue,
                            step: next,
                        });
                    }
                }
                SlaAction::Overflow => {
                    if let Some(to) = self.queues[c.queue.0 as usize].overflow {
                        if c.state == ConvState::Waiting && self.check_serves(to, c.channel).is_ok()
                        {
                            self.overflow(now, conversation, to);
                        }
                    }
                }
            }
        }
    }

    // ----- conversation plumbing -------------------------------------------

    /// (Re)starts the SLA clocks: answer always, first response only at open.
    fn start_sla_clock(&mut self, now: Millis, id: ConversationId, first: bool) {
        let c = self.conversations.get_mut(&id).expect("live conversation");
        if !first {
            c.sla_clock += 1;
            c.answered = false;
        }
        c.sla_started_at = now;
        c.offered_on_clock = false;
        let clock = c.sla_clock;
        let sla = &self.queues[c.queue.0 as usize].sla[c.channel.0 as usize];
        let targets = [
            (SlaKind::Answer, sla.answer_target_ms),
            (
                SlaKind::FirstResponse,
                if first {
                    sla.first_response_target_ms
                } else {
                    None
                },
            ),
        ];
        let fraction = sla.warning_fraction;
        for (kind, target) in targets {
            if let Some(t) = target {
                let warn = (t as f64 * fraction).round() as Millis;
                self.timers.push(
                    now + warn,
                    Timer::Sla {
                        conversation: id,
                        kind,
                        level: SlaLevel::Warning,
                        clock,
                    },
                );
                self.timers.push(
                    now + t,
                    Timer::Sla {
                        conversation: id,
                        kind,
                        level: SlaLevel::Breach,
                        clock,
                    },
                );
            }
        }
    }

    /// Schedules the widening steps of the conversation's queue, counted from
    /// when it entered the line; steps already due apply at once.
    fn schedule_widening(&mut self, now: Millis, id: ConversationId) {
        let c = &self.conversations[&id];
        let q = &self.settings.queues[c.queue.0 as usize];
        if q.widening.is_empty() {
            return;
        }
        let mut due_now = 0u8;
        let (enq, epoch) = (c.enqueued_at, c.queue_epoch);
        let mut later = Vec::new();
        for (i, step) in q.widening.iter().enumerate() {
            let at = enq + step.after_ms;
            if at <= now {
                due_now = i as u8 + 1;
            } else {
                later.push((
                    at,
                    Timer::Widen {
                        conversation: id,
                        step: i as u8 + 1,
                        queue_epoch: epoch,
                    },
                ));
            }
        }
        for (at, t) in later {
            self.timers.push(at, t);
        }
        if due_now > self.conversations[&id].step {
            self.widen_to(id, due_now);
        }
    }

    fn widen_to(&mut self, id: ConversationId, step: u8) {
        let queued = self.conversations[&id].group.is_some();
        if queued {
            self.dequeue(id);
        }
        if let Some(c) = self.conversations.get_mut(&id) {
            c.step = step;
        }
        if queued {
            self.enqueue(id);
        }
    }

    fn overflow(&mut self, now: Millis, id: ConversationId, to: QueueId) {
        self.dequeue(id);
        let c = self.conversations.get_mut(&id).expect("live conversation");
        let from = c.queue;
        c.queue = to;
        c.queue_epoch += 1;
        c.step = 0;
        let channel = c.channel;
        self.effects.push_back(Effect::Overflowed {
            conversation: id,
            channel,
            from,
            to,
        });
        self.schedule_widening(now, id);
        self.enqueue(id);
    }

    /// Reserves the conversation for `agent` during the preferred window,
    /// unless that agent is logged out.
    fn prefer(&mut self, now: Millis, id: ConversationId, agent: u32) {
        let ag = &self.agents[agent as usize];
        let c = &self.conversations[&id];
        if ag.status == AgentStatus::Offline
            || ag.ch[c.channel.0 as usize].capacity == 0
            || !skills::satisfies(&ag.skills, &self.requirements(c))
        {
            return;
        }
        let until = now + self.settings.preferred_agent_window_ms;
        if let Some(c) = self.conversations.get_mut(&id) {
            c.preferred = Some((agent, until));
            self.timers.push(
                until,
                Timer::PreferredEnd {
                    conversation: id,
                    until,
                },
            );
        }
    }

    /// The skills a conversation requires at its current widening step.
    pub(crate) fn requirements(&self, c: &Conversation) -> Vec<(SkillId, u8)> {
        let q = &self.queues[c.queue.0 as usize];
        let mut req: Vec<(SkillId, u8)> = q
            .skills
            .iter()
            .chain(c.own_skills.iter())
            .copied()
            .collect();
        req = skills::normalize(req);
        if c.step > 0 {
            let (lower, dropped) = &q.steps[c.step as usize - 1];
            req.retain(|(s, _)| !dropped.contains(s));
            for (_, level) in req.iter_mut() {
                *level = level.saturating_sub(*lower);
            }
            req.retain(|(_, l)| *l > 0);
        }
        req
    }

    /// Restore helper: the group and line key of a waiting conversation
    /// that is not in `conversations` yet and has no preferred agent,
    /// exactly as [`Self::enqueue`] finds them (same cache, groups created
    /// on first use); the caller puts it in line.
    pub(crate) fn restored_line(&mut self, c: &Conversation) -> (u32, LineKey) {
        let g = match self.cached_group(c) {
            Ok(g) => g,
            Err(miss) => self.create_group(miss),
        };
        let lk = self.groups[g as usize].line_key(c.priority, c.enqueued_at, c.seq, c.id);
        (g, lk)
    }

    /// Restore helper: publishes an agent's entries without pulling work.
    pub(crate) fn publish_restored(&mut self, a: u32) {
        self.publish(a);
    }

    /// Puts a waiting conversation in line: reserved for its preferred agent
    /// while the window runs, otherwise in its group. Marks it for routing.
    fn enqueue(&mut self, id: ConversationId) {
        let c = &self.conversations[&id];
        debug_assert!(c.state == ConvState::Waiting && c.group.is_none());
        if let Some((agent, _)) = c.preferred {
            self.agents[agent as usize].reserved.push(id);
            self.dirty_convs.push(id);
            return;
        }
        let g = self.group_of(id);
        let c = self.conversations.get_mut(&id).expect("live conversation");
        let lk = self.groups[g as usize].line_key(c.priority, c.enqueued_at, c.seq, id);
        c.group = Some(g);
        self.groups[g as usize].insert_waiting(lk);
        self.dirty_convs.push(id);
    }

    /// The group of a conversation's current requirements, created on first use.
    fn group_of(&mut self, id: ConversationId) -> u32 {
        match self.cached_group(&self.conversations[&id]) {
            Ok(g) => g,
            Err(miss) => self.create_group(miss),
        }
    }

    /// The group of `c` when it exists and `c` needs no skills of its own
    /// (the common case: one map lookup); otherwise what creating or finding
    /// it takes. `c` need not be in `conversations` yet (restore uses this).
    fn cached_group(&self, c: &Conversation) -> Result<u32, GroupMiss> {
        let cache_key = (
            c.queue.0 as usize * self.settings.channels.len() + c.channel.0 as usize,
            c.step,
        );
        let plain = c.own_skills.is_empty();
        if plain {
            let cached = self
                .group_cache
                .get(cache_key.0)
                .and_then(|steps| steps.get(cache_key.1 as usize));
            if let Some(&g) = cached.filter(|&&g| g != NO_GROUP) {
                return Ok(g);
            }
        }
        let q = &self.settings.queues[c.queue.0 as usize];
        Err(GroupMiss {
            cache_key: plain.then_some(cache_key),
            key: GroupKey {
                channel: c.channel,
                required: self.requirements(c),
                policy: q.policy,
                aging_ms_per_point: q.aging_ms_per_point,
            },
        })
    }

    /// Finds or creates the group a [`Self::cached_group`] miss describes,
    /// and caches it when the conversation had no skills of its own.
    fn create_group(&mut self, miss: GroupMiss) -> u32 {
        let g = self.group_for(miss.key);
        if let Some((slot, step)) = miss.cache_key {
            if let Some(steps) = self.group_cache.get_mut(slot) {
                if steps.len() <= step as usize {
                    steps.resize(step as usize + 1, NO_GROUP);
                }
                steps[step as usize] = g;
            }
        }
        g
    }

    /// Offers a just-opened conversation straight to the best ready agent of
    /// its group, when no other conversation is pending routing: the decision
    /// `settle` would make, without entering and leaving the line. False when
    /// it has to wait (or is reserved for a preferred agent).
    fn offer_at_once(&mut self, now: Millis, id: ConversationId) -> bool {
        let c = &self.conversations[&id];
        if !self.dirty_convs.is_empty() || c.preferred.is_some() {
            return false;
        }
        let ch = c.channel.0 as usize;
        let g = self.group_of(id);
        let nch = self.settings.channels.len();
        let ready_epoch = &self.ready_epoch;
        let first = self.groups[g as usize]
            .ready
            .first_valid(|e| entry_valid(ready_epoch, nch, e, ch));
        match first {
            Some(e) => {
                self.make_offer(now, id, e.agent);
                true
            }
            None => false,
        }
    }

    /// Takes a waiting conversation out of line (group or reservation).
    fn dequeue(&mut self, id: ConversationId) {
        let Some(c) = self.conversations.get_mut(&id) else {
            return;
        };
        if let Some(g) = c.group.take() {
            let lk = self.groups[g as usize].line_key(c.priority, c.enqueued_at, c.seq, id);
            self.groups[g as usize].remove_waiting(&lk);
        } else if let (ConvState::Waiting, Some((agent, _))) = (c.state, c.preferred) {
            self.agents[agent as usize].reserved.retain(|x| *x != id);
        }
    }

    /// Ends an assigned conversation as completed; its slot is held for wrap-up.
    fn finish(&mut self, now: Millis, id: ConversationId) {
        let Some(c) = self.conversations.remove(&id) else {
            return;
        };
        let ConvState::Assigned { agent, since } = c.state else {
            return;
        };
        let ag = &mut self.agents[agent as usize];
        ag.conversations.retain(|x| *x != id);
        let wrap = self.settings.channels[c.channel.0 as usize].wrap_up_ms;
        if wrap > 0 {
            ag.wrapping.push((id, c.channel));
            self.timers.push(
                now + wrap,
                Timer::WrapUpEnd {
                    agent,
                    conversation: id,
                },
            );
        } else {
            self.release_slot(now, agent, c.channel);
        }
        let agent_id = self.agents[agent as usize].id.clone();
        self.effects.push_back(Effect::Ended {
            conversation: id,
            channel: c.channel,
            queue: c.queue,
            outcome: Outcome::Completed,
            waited_ms: 0,
            handle_ms: now.saturating_sub(since),
            agent: Some(agent_id),
        });
    }

    /// Ends an offer that was not accepted; the conversation goes back in line
    /// at its original place unless `requeue` is false (the caller moves it).
    fn end_offer(&mut self, now: Millis, offer_id: OfferId, reason: OfferEnd, decline: bool) {
        let Some(offer) = self.offers.remove(&offer_id) else {
            return;
        };
        let a = offer.agent;
        self.agents[a as usize].offers.retain(|o| *o != offer_id);
        self.release_slot(now, a, offer.channel);
        let agent_id = self.agents[a as usize].id.clone();
        let Some(c) = self.conversations.get_mut(&offer.conversation) else {
            return;
        };
        c.state = ConvState::Waiting;
        c.preferred = None;
        if decline {
            let until = now + self.settings.decline_cooldown_ms;
            c.declined.retain(|(x, _)| *x != a);
            c.declined.push((a, until));
            let ag = &mut self.agents[a as usize];
            ag.declined
                .retain(|(x, u)| *x != offer.conversation && *u > now);
            ag.declined.push((offer.conversation, until));
            self.timers
                .push(until, Timer::CooldownEnd(offer.conversation));
        }
        let (conversation, channel, queue) = (c.id, c.channel, c.queue);
        self.effects.push_back(Effect::OfferEnded {
            offer: offer_id,
            conversation,
            agent: agent_id,
            channel,
            queue,
            reason,
        });
        if matches!(
            reason,
            OfferEnd::Rejected | OfferEnd::Expired | OfferEnd::AgentUnavailable
        ) {
            self.effects.push_back(Effect::Requeued {
                conversation,
                channel,
                queue,
                reason: reason.as_str(),
            });
            self.enqueue(conversation);
        }
    }

    // ----- agent plumbing ---------------------------------------------------

    /// Drops a conversation's declines from its decliners' own lists.
    fn forget_declines(&mut self, conversation: ConversationId, declined: Vec<(u32, Millis)>) {
        for (a, _) in declined {
            self.agents[a as usize]
                .declined
                .retain(|(c, _)| *c != conversation);
        }
    }

    /// Frees one slot of `a` on `ch` and marks the agent for pulling work.
    fn release_slot(&mut self, now: Millis, a: u32, ch: ChannelId) {
        let ag = &mut self.agents[a as usize];
        let i = ch.0 as usize;
        ag.ch[i].used = ag.ch[i].used.saturating_sub(1);
        ag.used_total = ag.used_total.saturating_sub(1);
        ag.ch[i].last_active = now;
        self.touch_agent(a, Some(ch));
    }

    /// Records that the agent's readiness or selection key changed on `ch`
    /// (or every channel when it can affect them all), and marks it dirty.
    fn touch_agent(&mut self, a: u32, ch: Option<ChannelId>) {
        let ag = &mut self.agents[a as usize];
        let nch = ag.ch.len();
        let (from, to) = match ch {
            Some(c) if ag.max_total.is_none() && !ag.in_least_occupied => {
                (c.0 as usize, c.0 as usize + 1)
            }
            _ => (0, nch),
        };
        for c in from..to.min(nch) {
            self.ready_epoch[a as usize * nch + c] = UNPUBLISHED;
            ag.ch[c].epoch = ag.ch[c].epoch.wrapping_add(1);
            if ag.ch[c].epoch == UNPUBLISHED {
                ag.ch[c].epoch = 0;
            }
            // The random policy's key is drawn lazily from this position
            // of the seeded sequence (see `ready_entry`), so touching an
            // agent costs no generator call.
            self.rng_counter += 1;
            ag.ch[c].rand_key = self.rng_counter;
        }
        if !ag.dirty {
            ag.dirty = true;
            self.dirty_agents.push(a);
        }
    }

    /// Adds the agent to the per-skill and per-channel indexes and to every
    /// existing group it qualifies for.
    pub(crate) fn index_agent(&mut self, a: u32) {
        let ag = &self.agents[a as usize];
        for &(s, _) in &ag.skills {
            let s = s.0 as usize;
            if self.agents_by_skill.len() <= s {
                self.agents_by_skill.resize(s + 1, Vec::new());
            }
            self.agents_by_skill[s].push(a);
        }
        let mut groups: PerChannel<Vec<u32>> = smallvec::smallvec![Vec::new(); ag.ch.len()];
        let mut lo = false;
        let mut served = 0u32;
        for (ch, gs) in groups.iter_mut().enumerate() {
            if ag.ch[ch].capacity == 0 {
                continue;
            }
            served |= 1 << ch;
            self.agents_by_channel[ch].push(a);
            for &g in &self.groups_by_channel[ch] {
                let group = &mut self.groups[g as usize];
                if skills::satisfies(&ag.skills, &group.key.required) {
                    gs.push(g);
                    group.qualified += 1;
                    lo |= group.key.policy == SelectionPolicy::LeastOccupied;
                }
            }
        }
        let ag = &mut self.agents[a as usize];
        ag.groups = groups;
        ag.in_least_occupied = lo;
        ag.served = served;
    }

    /// Removes the agent from every index (before its skills or capacity change).
    fn unindex_agent(&mut self, a: u32) {
        let ag = &mut self.agents[a as usize];
        for &(s, _) in &ag.skills {
            if let Some(list) = self.agents_by_skill.get_mut(s.0 as usize) {
                list.retain(|x| *x != a);
            }
        }
        for (ch, gs) in ag.groups.iter().enumerate() {
            if ag.ch[ch].capacity > 0 {
                self.agents_by_channel[ch].retain(|x| *x != a);
            }
            for &g in gs {
                self.groups[g as usize].qualified -= 1;
            }
        }
        ag.groups.iter_mut().for_each(Vec::clear);
        ag.served = 0;
        // Entries already in heaps die with the epoch bump that follows.
        let nch = ag.ch.len();
        for c in 0..nch {
            ag.ch[c].epoch = ag.ch[c].epoch.wrapping_add(1) % UNPUBLISHED;
            self.ready_epoch[a as usize * nch + c] = UNPUBLISHED;
        }
    }

    /// The group for `key`, creating it (and finding its qualified agents
    /// through the rarest required skill) the first time it is needed.
    fn group_for(&mut self, key: GroupKey) -> u32 {
        if let Some(&g) = self.group_index.get(&key) {
            return g;
        }
        let g = self.groups.len() as u32;
        let ch = key.channel.0 as usize;
        let candidates: Vec<u32> = match key
            .required
            .iter()
            .min_by_key(|(s, _)| self.agents_by_skill.get(s.0 as usize).map_or(0, Vec::len))
        {
            None => self.agents_by_channel[ch].clone(),
            Some((s, _)) => self
                .agents_by_skill
                .get(s.0 as usize)
                .cloned()
                .unwrap_or_default(),
        };
        let mut group = Group::new(key.clone());
        let mut entries = Vec::new();
        for a in candidates {
            let ag = &mut self.agents[a as usize];
            if ag.ch[ch].capacity == 0 || !skills::satisfies(&ag.skills, &key.required) {
                continue;
            }
            ag.groups[ch].push(g);
            group.qualified += 1;
            if key.policy == SelectionPolicy::LeastOccupied && !ag.in_least_occupied {
                ag.in_least_occupied = true;
            }
            if ag.ch[ch].published == ag.ch[ch].epoch && ag.ready(ch) {
                entries.push(ready_entry(ag, &key, ch, a, self.settings.seed));
            }
        }
        // Pushed in key order, so that `longest_idle` entries all land in the
        // ready set's FIFO: candidates come in agent order, not idle order,
        // and an unsorted build would put most of them in the side heap.
        entries.sort_unstable();
        let ordered = group.ordered_keys();
        for e in entries {
            group.ready.push(e, ordered);
        }
        self.groups.push(group);
        self.groups_by_channel[ch].push(g);
        self.group_index.insert(key, g);
        g
    }

    /// Puts the agent's current entry into every group of every channel it is
    /// ready on and has not published at this epoch.
    fn publish(&mut self, a: u32) {
        let nch = self.agents[a as usize].ch.len();
        let mut served = self.agents[a as usize].served;
        while served != 0 {
            // Channels without slots are never ready: only served ones are visited.
            let ch = served.trailing_zeros() as usize;
            served &= served - 1;
            let ag = &mut self.agents[a as usize];
            let slot = ag.ch[ch];
            if slot.published == slot.epoch || !ag.ready(ch) {
                continue;
            }
            ag.ch[ch].published = slot.epoch;
            self.ready_epoch[a as usize * nch + ch] = slot.epoch;
            let ag = &self.agents[a as usize];
            // The `longest_idle` entry is the same in every group: built once.
            let idle_entry = ReadyEntry {
                key: slot.last_active,
                agent: a,
                epoch: slot.epoch,
            };
            let ready_epoch = &self.ready_epoch;
            let seed = self.settings.seed;
            let groups = &mut self.groups;
            for &g in &ag.groups[ch] {
                let Some(group) = groups.get_mut(g as usize) else {
                    continue;
                };
                let e = if group.ordered_keys() {
                    idle_entry
                } else {
                    ready_entry(ag, &group.key, ch, a, seed)
                };
                group.push_ready(e, |e| entry_valid(ready_epoch, nch, e, ch));
            }
        }
    }

    // ----- matching ---------------------------------------------------------

    /// Routes every dirty conversation and lets every dirty agent pull work,
    /// until nothing is left to do.
    fn settle(&mut self, now: Millis) {
        // How long each list was when last sorted, less what was popped
        // since. Only pushes (never removals) happen outside this loop, so
        // the same length means still sorted: sorting again on every pop made
        // a burst of n dirty conversations (a million SLA deadlines passed
        // while the engine was down) cost n² log n.
        let (mut convs_sorted, mut agents_sorted) = (0, 0);
        loop {
            if self.dirty_convs.len() > 1 && self.dirty_convs.len() != convs_sorted {
                self.sort_dirty_convs(now);
            }
            if let Some(c) = self.dirty_convs.pop() {
                convs_sorted = self.dirty_convs.len();
                self.route_conversation(now, c);
                continue;
            }
            if self.dirty_agents.len() > 1 && self.dirty_agents.len() != agents_sorted {
                // Lowest index first: agents published at the same instant
                // then arrive in key order and stay on the ready sets' fast path.
                self.dirty_agents.sort_unstable_by(|x, y| y.cmp(x));
            }
            if let Some(a) = self.dirty_agents.pop() {
                agents_sorted = self.dirty_agents.len();
                self.agents[a as usize].dirty = false;
                self.pull(now, a);
                self.publish(a);
                continue;
            }
            break;
        }
    }

    /// Orders the conversations to route so the best placed is popped first.
    fn sort_dirty_convs(&mut self, now: Millis) {
        let mut dirty = std::mem::take(&mut self.dirty_convs);
        dirty.sort_unstable();
        dirty.dedup();
        dirty.sort_by_cached_key(|id| match self.conversations.get(id) {
            None => (i64::MIN, 0),
            Some(c) => {
                let eff = match c.group {
                    Some(g) => {
                        let group = &self.groups[g as usize];
                        group.effective_priority(
                            &group.line_key(c.priority, c.enqueued_at, c.seq, c.id),
                            now,
                        )
                    }
                    None => c.priority as i64 * 1000,
                };
                (eff, u64::MAX - c.seq)
            }
        });
        self.dirty_convs = dirty;
    }

    /// Finds the best ready agent for one waiting conversation.
    fn route_conversation(&mut self, now: Millis, id: ConversationId) {
        let Some(c) = self.conversations.get(&id) else {
            return;
        };
        if c.state != ConvState::Waiting {
            return;
        }
        let ch = c.channel.0 as usize;
        if let Some((p, _)) = c.preferred {
            let ag = &self.agents[p as usize];
            if ag.ready(ch)
                && !c.cooling(p, now)
                && skills::satisfies(&ag.skills, &self.requirements(c))
            {
                self.make_offer(now, id, p);
            }
            return;
        }
        let Some(g) = c.group else { return };
        let nch = self.settings.channels.len();
        let mut chosen = None;
        let mut fallback = None;
        let mut aside = std::mem::take(&mut self.scratch);
        {
            let group = &mut self.groups[g as usize];
            let ordered = group.ordered_keys();
            let ready_epoch = &self.ready_epoch;
            while let Some(e) = group
                .ready
                .first_valid(|e| entry_valid(ready_epoch, nch, e, ch))
            {
                if c.declined_by(e.agent) {
                    group.ready.pop();
                    aside.push(e);
                    if fallback.is_none() && !c.cooling(e.agent, now) {
                        fallback = Some(e.agent);
                    }
                    continue;
                }
                chosen = Some(e.agent);
                break;
            }
            for e in aside.drain(..) {
                group.ready.push(e, ordered);
            }
        }
        self.scratch = aside;
        if let Some(a) = chosen.or(fallback) {
            self.make_offer(now, id, a);
        }
    }

    /// Offers waiting conversations to an agent while it has room: its
    /// reserved ones first, then the best head among its groups' lines
    /// (highest effective priority, then earliest arrival).
    fn pull(&mut self, now: Millis, a: u32) {
        loop {
            let ag = &self.agents[a as usize];
            if ag.status != AgentStatus::Available {
                return;
            }
            let mut best: Option<(i64, u64, ConversationId)> = None;
            let better = |best: &Option<(i64, u64, ConversationId)>, eff: i64, seq: u64| match best
            {
                None => true,
                Some((be, bs, _)) => eff > *be || (eff == *be && seq < *bs),
            };
            for &id in &ag.reserved {
                let c = &self.conversations[&id];
                let ch = c.channel.0 as usize;
                if ag.ready(ch)
                    && !c.cooling(a, now)
                    && skills::satisfies(&ag.skills, &self.requirements(c))
                {
                    let eff = c.priority as i64 * 1000;
                    if better(&best, eff, c.seq) {
                        best = Some((eff, c.seq, id));
                    }
                }
            }
            for ch in ag.served_channels() {
                if !ag.ready(ch) {
                    continue;
                }
                for &g in &ag.groups[ch] {
                    let group = &self.groups[g as usize];
                    let Some(head) = group.head else { continue };
                    let lk = if !agent_cooling(ag, head.2, now) {
                        head
                    } else {
                        match group
                            .waiting
                            .iter()
                            .find(|lk| !agent_cooling(ag, lk.2, now))
                        {
                            Some(lk) => *lk,
                            None => continue,
                        }
                    };
                    let eff = group.effective_priority(&lk, now);
                    if better(&best, eff, lk.1) {
                        best = Some((eff, lk.1, lk.2));
                    }
                }
            }
            match best {
                Some((_, _, id)) => self.make_offer(now, id, a),
                None => return,
            }
        }
    }

    fn make_offer(&mut self, now: Millis, id: ConversationId, a: u32) {
        self.dequeue(id);
        let offer = OfferId(self.next_offer);
        self.next_offer += 1;
        let c = self.conversations.get_mut(&id).expect("live conversation");
        let ch = c.channel;
        let timeout = self.settings.channels[ch.0 as usize].offer_timeout_ms;
        let expires_at = now + timeout;
        c.state = ConvState::Offered { offer, agent: a };
        let first_offer = !c.offered_on_clock;
        c.offered_on_clock = true;
        let (queue, priority, waited_ms) =
            (c.queue, c.priority, now.saturating_sub(c.sla_started_at));
        self.offers.insert(
            offer,
            Offer {
                conversation: id,
                agent: a,
                channel: ch,
                expires_at,
            },
        );
        let ag = &mut self.agents[a as usize];
        ag.ch[ch.0 as usize].used += 1;
        ag.used_total += 1;
        ag.ch[ch.0 as usize].last_active = now;
        ag.offers.push(offer);
        let agent = ag.id.clone();
        self.touch_agent(a, Some(ch));
        self.timers.push(expires_at, Timer::OfferExpiry(offer));
        self.effects.push_back(Effect::OfferMade {
            offer,
            conversation: id,
            agent,
            channel: ch,
            queue,
            priority,
            waited_ms,
            expires_at,
            first_offer,
        });
    }
}

/// An agent's entry in a group's heap, keyed by the group's policy.
fn ready_entry(ag: &Agent, key: &GroupKey, ch: usize, a: u32, seed: u64) -> ReadyEntry {
    let idle = ag.ch[ch].last_active;
    let key = match key.policy {
        SelectionPolicy::LongestIdle => idle,
        SelectionPolicy::MostSkilled => {
            // Highest score first: at most 64 skills of level 10, far below u16::MAX.
            let score = skills::score(&ag.skills, &key.required).min(u16::MAX as u32) as u16;
            ReadyEntry::packed(u16::MAX - score, idle)
        }
        SelectionPolicy::LeastOccupied => ReadyEntry::packed(ag.occupancy_permille() as u16, idle),
        SelectionPolicy::Random => random_key(seed, ag.ch[ch].rand_key),
    };
    ReadyEntry {
        key,
        agent: a,
        epoch: ag.ch[ch].epoch,
    }
}

/// The `random` policy's key for position `n` of the seeded sequence.
fn random_key(seed: u64, n: u64) -> u64 {
    SmallRng::seed_from_u64(seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)).random()
}

/// Whether `ag` is held off conversation `c` by a cooldown at `now`.
fn agent_cooling(ag: &Agent, c: ConversationId, now: Millis) -> bool {
    !ag.declined.is_empty() && ag.declined.iter().any(|&(x, until)| x == c && until > now)
}

/// Whether a heap entry still stands for a ready agent at its current key.
fn entry_valid(ready_epoch: &[u32], nch: usize, e: &ReadyEntry, ch: usize) -> bool {
    ready_epoch[e.agent as usize * nch + ch] == e.epoch
}

/// Resolves queue settings to ids (interning their skills).
pub(crate) fn resolve_queues(settings: &RoutingSettings, skills: &mut Interner) -> Vec<QueueRt> {
    settings
        .queues
        .iter()
        .map(|q| {
            let base: Vec<(SkillId, u8)> = q
                .skills
                .iter()
                .filter_map(|(n, l)| skills.intern(n).map(|s| (s, *l)))
                .collect();
            let mut lower = 0u8;
            let mut dropped: Vec<SkillId> = Vec::new();
            let steps = q
                .widening
                .iter()
                .map(|w| {
                    lower = lower.saturating_add(w.lower_levels_by);
                    dropped.extend(w.drop_skills.iter().filter_map(|n| skills.intern(n)));
                    (lower, dropped.clone())
                })
                .collect();
            let idx = settings.queue_index(&q.name).unwrap_or(0);
            QueueRt {
                skills: skills::normalize(base),
                steps,
                overflow: q
                    .overflow_queue
                    .as_deref()
                    .and_then(|n| settings.queue_index(n))
                    .map(|i| QueueId(i as u16)),
                sla: (0..settings.channels.len())
                    .map(|ch| settings.sla_for(ch, idx))
                    .collect(),
            }
        })
        .collect()
}
