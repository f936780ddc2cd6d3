//! The store-writing half of the router, as plain functions.
//!
//! Live, the router calls them right after each engine call; on restart,
//! `crate::durability` calls the very same functions while it replays the
//! journal, so the rebuilt store is what the live one was. [`Fact`]s are what
//! the store learns that the routing core does not know (who opened a
//! conversation, transcript lines, an agent's name and capacity).
//!
//! These functions must never talk to an actor, a session or the clock: what
//! they need to tell actors they return ([`Released`]), and time comes in as
//! an argument.

use super::{AgentRecord, Attributes, ConversationRecord, ConversationState, Name, Store};
use crate::api::protocol::TranscriptLine;
use crate::routing::{
    AgentStatus, Command, ConversationId, Effect, Millis, Outcome, RoutingSettings,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A store-only fact, journaled so a replay rebuilds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Fact {
    /// A conversation was opened (applied before the effects of its `Open`).
    Opened {
        id: ConversationId,
        customer_id: String,
        channel: String,
        queue: String,
        priority: i32,
        /// The attributes as JSON text (bincode cannot carry `serde_json::Value`).
        attributes_json: String,
        owner: String,
        now: Millis,
    },
    /// An agent logged in (applied before the effects of its `AgentLogin`).
    AgentLoggedIn {
        id: String,
        name: Option<String>,
        skills: BTreeMap<String, u8>,
        capacity: BTreeMap<String, u8>,
        max_total: Option<u8>,
        now: Millis,
    },
    /// A transcript line was appended; `agent_replied` marks the agent's first answer.
    Line {
        conversation: ConversationId,
        line: TranscriptLine,
        agent_replied: bool,
    },
    /// Ended conversations past the retention window were dropped.
    Evicted { conversations: Vec<ConversationId> },
}

/// An agent lost a conversation: the actor half tells the agent's actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    pub agent: String,
    pub conversation: ConversationId,
    pub reason: &'static str,
    /// The conversation ended for good.
    pub ended: bool,
}

/// Writes one fact to the store.
pub fn apply_fact(store: &Store, fact: &Fact) {
    match fact {
        Fact::Opened {
            id,
            customer_id,
            channel,
            queue,
            priority,
            attributes_json,
            owner,
            now,
        } => {
            store.insert_conversation(ConversationRecord::new(
                *id,
                Name::from(customer_id.as_str()),
                store.name(channel),
                store.name(queue),
                *priority,
                Attributes::from_json(attributes_json),
                store.name(owner),
                *now,
            ));
        }
        Fact::AgentLoggedIn {
            id,
            name,
            skills,
            capacity,
            max_total,
            now,
        } => store.upsert_agent(AgentRecord {
            id: id.clone(),
            name: name.clone(),
            status: AgentStatus::Available,
            skills: skills.clone(),
            capacity: capacity.clone(),
            max_total: *max_total,
            conversations: Vec::new(),
            offers: BTreeMap::new(),
            connected: true,
            logged_in_at_ms: *now,
        }),
        Fact::Line {
            conversation,
            line,
            agent_replied,
        } => {
            store.update_conversation(*conversation, |r| {
                r.transcript
                    .push(line.from, line.at_ms, &line.channel, &line.text);
                if *agent_replied {
                    r.agent_replied = true;
                }
            });
        }
        Fact::Evicted { conversations } => {
            for id in conversations {
                store.remove_conversation(*id);
            }
        }
    }
}

/// The store writes a successful command implies that no effect carries
/// (presence the agent set itself, a dropped desktop).
pub fn apply_command(store: &Store, command: &Command) {
    match command {
        Command::AgentSetStatus { agent, status } => {
            store.update_agent(agent, |a| a.status = *status);
        }
        Command::AgentDisconnected { agent } => {
            store.update_agent(agent, |a| {
                a.connected = false;
                a.status = AgentStatus::Offline;
            });
        }
        _ => {}
    }
}

/// Writes one effect of the core to the store; returns the agent that lost a
/// conversation through it, if any.
pub fn apply_effect(
    store: &Store,
    settings: &RoutingSettings,
    now: Millis,
    effect: &Effect,
) -> Option<Released> {
    let queue_name = |q: &crate::routing::QueueId| {
        store.name(
            settings
                .queues
                .get(q.0 as usize)
                .map_or("", |q| q.name.as_str()),
        )
    };
    let channel_name = |c: &crate::routing::ChannelId| {
        store.name(
            settings
                .channels
                .get(c.0 as usize)
                .map_or("", |c| c.name.as_str()),
        )
    };
    match effect {
        Effect::OfferMade {
            offer,
            conversation,
            agent,
            queue,
            priority,
            ..
        } => {
            let queue = queue_name(queue);
            store.update_conversation(*conversation, |r| {
                r.state = ConversationState::Offered;
                r.offer_id = Some(offer.to_string());
                r.queue = queue;
                r.priority = *priority;
            });
            store.update_agent(agent, |a| {
                a.offers.insert(offer.to_string(), conversation.to_string());
            });
            None
        }
        Effect::OfferEnded {
            offer,
            conversation,
            agent,
            ..
        } => {
            let offer_id = offer.to_string();
            store.update_conversation(*conversation, |r| {
                if r.offer_id.as_deref() == Some(offer_id.as_str()) {
                    r.offer_id = None;
                    if r.state == ConversationState::Offered {
                        r.state = ConversationState::Waiting;
                    }
                }
            });
            store.update_agent(agent, |a| {
                a.offers.remove(&offer_id);
            });
            None
        }
        Effect::Assigned {
            conversation,
            agent,
            ..
        } => {
            let conv_id = conversation.to_string();
            store.update_conversation(*conversation, |r| {
                r.state = ConversationState::Assigned;
                r.agent_id = Some(Name::clone(agent));
                r.offer_id = None;
                r.assigned_at_ms = Some(now);
            });
            store.update_agent(agent, |a| {
                a.offers.retain(|_, c| *c != conv_id);
                if !a.conversations.contains(&conv_id) {
                    a.conversations.push(conv_id.clone());
                }
            });
            None
        }
        Effect::AgentStatusChanged { agent, status, .. } => {
            store.update_agent(agent, |a| a.status = *status);
            None
        }
        Effect::Requeued {
            conversation,
            queue,
            reason,
            ..
        } => {
            let queue = queue_name(queue);
            let agent = store
                .update_conversation(*conversation, |r| {
                    r.state = ConversationState::Waiting;
                    r.offer_id = None;
                    r.queue = queue;
                    r.agent_id.take()
                })
                .flatten()?;
            Some(release(store, &agent, *conversation, reason, false))
        }
        Effect::Sla { .. } | Effect::Widened { .. } | Effect::WrapUpEnded { .. } => None,
        Effect::Overflowed {
            conversation, to, ..
        } => {
            let to = queue_name(to);
            store.update_conversation(*conversation, |r| r.queue = to);
            None
        }
        Effect::ChannelSwitched {
            conversation,
            from,
            to,
            previous_agent,
        } => {
            let (from, to) = (channel_name(from), channel_name(to));
            let agent = store
                .update_conversation(*conversation, |r| {
                    r.previous_channels.push(from);
                    r.channel = to;
                    let held = r.agent_id.take();
                    r.previous_agent_id = previous_agent
                        .as_ref()
                        .map(Name::clone)
                        .or(held.clone())
                        .or(r.previous_agent_id.take());
                    r.state = ConversationState::Waiting;
                    r.offer_id = None;
                    r.agent_replied = false;
                    held
                })
                .flatten()?;
            Some(release(
                store,
                &agent,
                *conversation,
                "channel_switched",
                false,
            ))
        }
        Effect::Transferred {
            conversation,
            to_queue,
            from_agent,
            ..
        } => {
            let to = queue_name(to_queue);
            store.update_conversation(*conversation, |r| {
                r.queue = to;
                r.agent_id = None;
                r.previous_agent_id = Some(Name::clone(from_agent));
                r.state = ConversationState::Waiting;
                r.offer_id = None;
            });
            Some(release(
                store,
                from_agent,
                *conversation,
                "transferred",
                false,
            ))
        }
        Effect::Ended {
            conversation,
            outcome,
            agent,
            ..
        } => {
            let outcome = outcome_str(*outcome);
            store.update_conversation(*conversation, |r| {
                r.state = ConversationState::Ended;
                r.outcome = Some(outcome);
                r.offer_id = None;
                r.ended_at_ms = Some(now);
            });
            let agent = agent.as_ref()?;
            Some(release(store, agent, *conversation, outcome, true))
        }
    }
}

/// The wire name of an outcome.
pub fn outcome_str(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Completed => "completed",
        Outcome::Abandoned => "abandoned",
    }
}

/// Takes a conversation off an agent's list.
fn release(
    store: &Store,
    agent: &str,
    conversation: ConversationId,
    reason: &'static str,
    ended: bool,
) -> Released {
    let conv_id = conversation.to_string();
    store.update_agent(agent, |a| a.conversations.retain(|c| *c != conv_id));
    Released {
        agent: agent.to_string(),
        conversation,
        reason,
        ended,
    }
}
