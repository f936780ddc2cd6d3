//! Snapshot and restore of the routing core.
//!
//! A snapshot holds only the defining state (agents, live conversations,
//! offers, deadlines, counters); every index (groups, heaps, lines,
//! reservations) is rebuilt on restore, so a restored engine makes exactly
//! the decisions the original would have made. Encoding and storage are the
//! caller's business (see `crate::store`).

use super::engine::{resolve_queues, Engine};
use super::groups::LineKey;
use super::ids::{OfferId, QueueId};
use super::settings::{Millis, RoutingSettings, SettingsError};
use super::skills::Interner;
use super::state::{Agent, ConvState, Conversation, Offer, UNPUBLISHED};
use super::timers::{Timer, TimerQueue};
use serde::{Deserialize, Serialize};

/// Format version of [`CoreSnapshot`].
pub const SNAPSHOT_VERSION: u32 = 1;

/// The routing core's state as plain data.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CoreSnapshot {
    pub version: u32,
    /// Channel names in id order at the time of the snapshot.
    pub channels: Vec<String>,
    /// Queue names in id order at the time of the snapshot.
    pub queues: Vec<String>,
    pub skills: Vec<String>,
    pub agents: Vec<Agent>,
    pub conversations: Vec<Conversation>,
    pub offers: Vec<(OfferId, Offer)>,
    pub timers: Vec<(Millis, Timer)>,
    pub next_conversation: u64,
    pub next_offer: u64,
    pub next_seq: u64,
    pub rng_counter: u64,
}

/// Why a snapshot cannot be restored under the given settings.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("snapshot version {0} is not supported (expected {SNAPSHOT_VERSION})")]
    Version(u32),
    #[error("the configured channels {configured:?} differ from the snapshot's {snapshot:?}")]
    ChannelsChanged {
        configured: Vec<String>,
        snapshot: Vec<String>,
    },
    #[error("invalid settings: {0:?}")]
    Settings(Vec<SettingsError>),
    #[error("snapshot is inconsistent: {0}")]
    Inconsistent(String),
}

impl Engine {
    /// The state as plain data; conversations in arrival order.
    pub fn snapshot(&self) -> CoreSnapshot {
        let mut conversations: Vec<Conversation> = self.conversations.values().cloned().collect();
        conversations.sort_unstable_by_key(|c| c.id);
        let mut offers: Vec<(OfferId, Offer)> = self.offers.iter().map(|(k, v)| (*k, *v)).collect();
        offers.sort_unstable_by_key(|(k, _)| *k);
        CoreSnapshot {
            version: SNAPSHOT_VERSION,
            channels: self
                .settings
                .channels
                .iter()
                .map(|c| c.name.clone())
                .collect(),
            queues: self
                .settings
                .queues
                .iter()
                .map(|q| q.name.clone())
                .collect(),
            skills: self.skills.names().to_vec(),
            agents: self.agents.clone(),
            conversations,
            offers,
            timers: self.timers.to_sorted_vec(),
            next_conversation: self.next_conversation,
            next_offer: self.next_offer,
            next_seq: self.next_seq,
            rng_counter: self.rng_counter,
        }
    }

    /// Rebuilds an engine from a snapshot. Queues that no longer exist send
    /// their conversations to the default queue; channels must be unchanged.
    pub fn restore(settings: RoutingSettings, snap: CoreSnapshot) -> Result<Engine, RestoreError> {
        if snap.version != SNAPSHOT_VERSION {
            return Err(RestoreError::Version(snap.version));
        }
        let configured: Vec<String> = settings.channels.iter().map(|c| c.name.clone()).collect();
        if configured != snap.channels {
            return Err(RestoreError::ChannelsChanged {
                configured,
                snapshot: snap.channels,
            });
        }
        let mut engine = Engine::new(settings).map_err(RestoreError::Settings)?;
        let mut skills = Interner::from_names(snap.skills);
        engine.queues = resolve_queues(&engine.settings, &mut skills);
        engine.skills = skills;
        let default_queue = engine
            .settings
            .queue_index(&engine.settings.default_queue)
            .unwrap_or(0);
        let queue_map: Vec<QueueId> = snap
            .queues
            .iter()
            .map(|n| QueueId(engine.settings.queue_index(n).unwrap_or(default_queue) as u16))
            .collect();
        let nch = engine.settings.channels.len();
        engine.ready_epoch = vec![UNPUBLISHED; snap.agents.len() * nch];
        for (i, mut ag) in snap.agents.into_iter().enumerate() {
            if ag.ch.len() != nch {
                return Err(RestoreError::Inconsistent(format!(
                    "agent {} has per-channel data of the wrong length",
                    ag.id
                )));
            }
            for slots in ag.ch.iter_mut() {
                slots.epoch = 0;
                slots.published = UNPUBLISHED;
            }
            ag.groups = smallvec::smallvec![Vec::new(); nch];
            ag.reserved = Vec::new();
            ag.dirty = false;
            ag.in_least_occupied = false;
            engine.agent_index.insert(ag.id.clone(), i as u32);
            engine.agents.push(ag);
            engine.index_agent(i as u32);
        }
        let mut conversations = snap.conversations;
        // Arrival order (`seq`) and position of every waiting conversation.
        let mut waiting = Vec::new();
        for (i, c) in conversations.iter_mut().enumerate() {
            c.queue = *queue_map.get(c.queue.0 as usize).ok_or_else(|| {
                RestoreError::Inconsistent(format!("conversation {} has an unknown queue", c.id))
            })?;
            c.group = None;
            let agent_ok = |a: u32| (a as usize) < engine.agents.len();
            let refs_ok = match c.state {
                ConvState::Waiting => true,
                ConvState::Offered { agent, .. } | ConvState::Assigned { agent, .. } => {
                    agent_ok(agent)
                }
            } && c.preferred.is_none_or(|(a, _)| agent_ok(a))
                && c.declined.iter().all(|(a, _)| agent_ok(*a))
                && (c.channel.0 as usize) < nch;
            if !refs_ok {
                return Err(RestoreError::Inconsistent(format!(
                    "conversation {} refers to an unknown agent or channel",
                    c.id
                )));
            }
            if c.state == ConvState::Waiting {
                waiting.push((c.seq, i));
            }
        }
        // Back in line in arrival order, as `enqueue` would put them (groups
        // are created in the same order), but while each conversation is
        // still at hand rather than looked up in the map, and each group's
        // line built in one go: at a million conversations that halves the
        // core's restore.
        waiting.sort_unstable();
        let mut lines: Vec<Vec<LineKey>> = Vec::new();
        for (_, i) in waiting {
            let c = &mut conversations[i];
            if let Some((agent, _)) = c.preferred {
                engine.agents[agent as usize].reserved.push(c.id);
                continue;
            }
            let (g, lk) = engine.restored_line(c);
            c.group = Some(g);
            if lines.len() <= g as usize {
                lines.resize_with(g as usize + 1, Vec::new);
            }
            lines[g as usize].push(lk);
        }
        for (g, keys) in lines.into_iter().enumerate() {
            if keys.is_empty() {
                continue;
            }
            let group = &mut engine.groups[g];
            if group.waiting.is_empty() {
                // Sorted and built leaf by leaf, not key by key.
                group.waiting = keys.into_iter().collect();
            } else {
                group.waiting.extend(keys);
            }
            group.head = group.waiting.first().copied();
        }
        engine.conversations.reserve(conversations.len());
        engine
            .conversations
            .extend(conversations.into_iter().map(|c| (c.id, c)));
        engine.offers = snap.offers.into_iter().collect();
        engine.timers = TimerQueue::from_vec(snap.timers);
        engine.next_conversation = snap.next_conversation;
        engine.next_offer = snap.next_offer;
        engine.next_seq = snap.next_seq;
        engine.rng_counter = snap.rng_counter;
        for a in 0..engine.agents.len() as u32 {
            engine.publish_restored(a);
        }
        Ok(engine)
    }
}
