//! The router actor: drives the pure routing core.
//!
//! Each message becomes one `engine.handle(now, cmd)`; the effects are drained
//! with `poll_effect()` while the engine lock is held (nothing else). The
//! router is the single sequencer: under the recorder's lock
//! ([`crate::durability::Recorder`]) it calls the engine, writes the facts and
//! effects to the store (`crate::store::apply_effect`, the same function the
//! journal replay uses) and queues the journal record — it never waits for the
//! fsync; the session does, before its `ack`. Then, with every lock released,
//! each effect is handed to the agent or conversation actor it concerns, with
//! its record's sequence number (a frame that reports the change waits until
//! that record is durable: [`super::notices`]), turned into an `event` frame for subscribed supervisors and into metrics. Finally ONE timer is re-armed at
//! `poll_timeout()` (a spurious wake is harmless: `handle_timeout(now)`).
//!
//! The router writes the routing facts (state, agent, queue, channel history,
//! offers) to the store before telling any actor, so a client that hears
//! about a change can read it back over REST at once. The engine itself is
//! owned by the [`Hub`] (see its docs): a router that dies loses nothing.
//!
//! It must never block on a client (frames go into the session's outbox,
//! which never waits), never hold the
//! engine lock while talking to an actor, and never read time except through
//! [`crate::clock`].

use super::agent::AttachSession;
use super::agent::{
    AgentStatusPushed, ConversationReleased, ConversationTaken, OfferWithdrawn, PushOffer,
};
use super::conversation::ConversationNotice;
use super::hub::{Hub, InjectPanic, SessionHandle};
use super::reply_slot::ReplyTx;
use crate::api::protocol::ServerFrame;
use crate::clock;
use crate::durability::{Record, Seq};
use crate::metrics;
use crate::routing::{
    AgentId, Command, CommandError, ConversationId, Effect, Millis, Outcome, Reply,
    RoutingSettings, SlaKind, SlaLevel,
};
use crate::store::{self, Fact, Released};
use actix::{Actor, AsyncContext, Context, Handler, Message, SpawnHandle};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Applies one routing command (accept, reject, status, complete …).
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<Sequenced<Reply>, CommandError>")]
pub struct RunCommand(pub Command);

/// What a routed command leaves its session: the reply and the journal
/// record it waits for (an open's reply is [`Reply::Opened`]).
pub type Routed = Result<Sequenced<Reply>, CommandError>;

/// A command whose reply the router leaves in a
/// [`ReplySlot`](super::reply_slot::ReplySlot) instead of
/// answering it, so that the session is not woken twice (see
/// [`super::reply_slot`]). `M` is [`RunCommand`] or [`OpenConversation`].
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Quietly<M>(pub M, pub ReplyTx<Routed>);

/// Does nothing: answered once every message queued before it is handled
/// (graceful shutdown waits for it before the final snapshot).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Drain;

/// A reply and the journal sequence number of the change it made: the
/// session acknowledges only once that record is durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sequenced<T> {
    pub value: T,
    pub seq: Seq,
}

/// Opens a conversation: the core's `Open` plus what the store keeps about it.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<Sequenced<ConversationId>, CommandError>")]
pub struct OpenConversation {
    pub command: Command,
    pub customer_id: String,
    pub attributes: Map<String, Value>,
    /// Principal of the connector that opens it (its owner).
    pub owner: String,
    /// The connector session to tell about assignment and SLA.
    pub session_id: u64,
}

/// Logs an agent in from a session.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<Seq, CommandError>")]
pub struct LoginAgent {
    pub agent_id: String,
    pub name: Option<String>,
    pub skills: BTreeMap<String, u8>,
    pub capacity: Option<BTreeMap<String, u8>>,
    pub max_total: Option<u8>,
    pub session: SessionHandle,
}

/// The actor. See the module docs.
pub struct RouterActor {
    hub: Arc<Hub>,
    timer: Option<SpawnHandle>,
    armed_at: Option<Millis>,
}

/// One sequenced core call: its result, its record's number, the effects
/// (already written to the store) and the next wake-up.
struct Step {
    result: Result<Reply, CommandError>,
    seq: Seq,
    effects: Vec<(Effect, Option<Released>)>,
    next: Option<Millis>,
}

impl RouterActor {
    pub fn new(hub: Arc<Hub>) -> Self {
        RouterActor {
            hub,
            timer: None,
            armed_at: None,
        }
    }

    /// One call into the core, sequenced: under the recorder's lock, call the
    /// engine, and on success write `facts` and the effects to the store and
    /// queue the record for the journal (never waiting for it).
    fn call(&self, now: Millis, cmd: Command, facts: impl FnOnce(&Reply) -> Vec<Fact>) -> Step {
        let hub = &self.hub;
        let kind = cmd.kind();
        let mut sequencer = hub.recorder.lock();
        let start = clock::instant();
        let mut engine = hub.engine();
        let result = engine.handle(now, cmd.clone());
        let effects: Vec<Effect> = std::iter::from_fn(|| engine.poll_effect()).collect();
        let next = engine.poll_timeout();
        drop(engine);
        hub.meters
            .decision_latency(kind, clock::elapsed_secs(start));
        let facts = match &result {
            Ok(reply) => facts(reply),
            Err(_) => Vec::new(),
        };
        for fact in &facts {
            store::apply_fact(&hub.store, fact);
        }
        let effects = self.write_effects(now, effects);
        let mut seq = sequencer.last();
        if result.is_ok() {
            store::apply_command(&hub.store, &cmd);
            seq = sequencer.record(Record::Handle {
                now,
                command: cmd,
                facts,
            });
        }
        drop(sequencer);
        Step {
            result,
            seq,
            effects,
            next,
        }
    }

    fn write_effects(&self, now: Millis, effects: Vec<Effect>) -> Vec<(Effect, Option<Released>)> {
        effects
            .into_iter()
            .map(|e| {
                let released = store::apply_effect(&self.hub.store, &self.hub.settings, now, &e);
                (e, released)
            })
            .collect()
    }

    /// Leaves a routed command's reply for its session. A change whose
    /// record is still on its way to the disk is left quietly: the
    /// journal's watermark wakes the session when it is durable, and the
    /// `ack` could not leave before that anyway.
    fn leave(&self, reply: ReplyTx<Routed>, result: Routed) {
        let quiet = match &result {
            Ok(done) => matches!(self.hub.recorder.is_durable(done.seq), Ok(false)),
            Err(_) => false,
        };
        reply.fill(result, quiet);
    }

    /// Tells the actors and supervisors about effects already in the store.
    fn finish(
        &mut self,
        ctx: &mut Context<Self>,
        now: Millis,
        effects: Vec<(Effect, Option<Released>)>,
        next: Option<Millis>,
        seq: Seq,
    ) {
        // Event frames are built only for subscribed supervisors: a frame
        // costs a map and a string per field.
        let watched = self.hub.has_subscribers();
        for (effect, released) in effects {
            metrics::observe_effect(
                &self.hub.meters,
                &effect,
                &self.hub.settings,
                &self.hub.service_level,
            );
            self.notify(now, &effect, released, seq);
            if watched {
                let (kind, data) = event_of(&effect, &self.hub.settings);
                self.hub.broadcast(&ServerFrame::Event {
                    kind,
                    at_ms: now,
                    data,
                });
            }
        }
        self.rearm(ctx, next);
    }

    fn rearm(&mut self, ctx: &mut Context<Self>, next: Option<Millis>) {
        if next == self.armed_at && self.timer.is_some() {
            return;
        }
        if let Some(handle) = self.timer.take() {
            ctx.cancel_future(handle);
        }
        self.armed_at = next;
        if let Some(at) = next {
            let delay = Duration::from_millis(at.saturating_sub(clock::now_ms()));
            self.timer = Some(ctx.run_later(delay, |act, ctx| {
                act.timer = None;
                act.armed_at = None;
                act.on_timeout(ctx);
            }));
        }
    }

    fn on_timeout(&mut self, ctx: &mut Context<Self>) {
        let now = clock::now_ms();
        let mut sequencer = self.hub.recorder.lock();
        let start = clock::instant();
        let mut engine = self.hub.engine();
        engine.handle_timeout(now);
        let effects: Vec<Effect> = std::iter::from_fn(|| engine.poll_effect()).collect();
        let next = engine.poll_timeout();
        drop(engine);
        self.hub
            .meters
            .decision_latency("timeout", clock::elapsed_secs(start));
        let effects = self.write_effects(now, effects);
        let seq = sequencer.record(Record::Timeout { now });
        drop(sequencer);
        self.finish(ctx, now, effects, next, seq);
    }

    /// Tells the actors one effect of record `seq` concerns (its store
    /// writes are done).
    fn notify(&self, now: Millis, effect: &Effect, released: Option<Released>, seq: Seq) {
        let hub = &self.hub;
        let settings = &hub.settings;
        if let Some(r) = released {
            if let Some(addr) = hub.agent(&r.agent) {
                addr.do_send(ConversationReleased {
                    conversation: r.conversation,
                    reason: r.reason,
                    ended: r.ended,
                    seq,
                });
            }
        }
        match effect {
            Effect::OfferMade {
                offer,
                conversation,
                agent,
                priority,
                waited_ms,
                expires_at,
                ..
            } => {
                if let Some(addr) = hub.agent(agent) {
                    addr.do_send(PushOffer {
                        offer: *offer,
                        conversation: *conversation,
                        priority: *priority,
                        waited_ms: *waited_ms,
                        expires_in_ms: expires_at.saturating_sub(now),
                    });
                }
            }
            Effect::OfferEnded {
                offer,
                conversation,
                agent,
                reason,
                ..
            } => {
                if let Some(addr) = hub.agent(agent) {
                    addr.do_send(OfferWithdrawn {
                        offer: *offer,
                        conversation: *conversation,
                        reason: reason.as_str(),
                        seq,
                    });
                }
            }
            Effect::Assigned {
                conversation,
                agent,
                channel,
                queue,
                waited_ms,
                answer_target_ms,
            } => {
                if let Some(addr) = hub.agent(agent) {
                    addr.do_send(ConversationTaken {
                        conversation: *conversation,
                    });
                }
                let channel_name = settings.channels[channel.0 as usize].name.clone();
                hub.record_answer(
                    *queue,
                    *channel,
                    answer_target_ms.is_none_or(|t| *waited_ms <= t),
                );
                self.notice(
                    *conversation,
                    seq,
                    ServerFrame::ConversationAssigned {
                        conversation_id: conversation.to_string(),
                        agent_id: agent.to_string(),
                        channel: channel_name,
                    },
                );
            }
            Effect::AgentStatusChanged {
                agent,
                status,
                reason,
            } => {
                if let Some(addr) = hub.agent(agent) {
                    addr.do_send(AgentStatusPushed {
                        status: status.as_str(),
                        reason,
                        seq,
                    });
                }
            }
            Effect::Requeued {
                conversation,
                channel,
                queue,
                reason,
            } => {
                self.notice(
                    *conversation,
                    seq,
                    ServerFrame::ConversationRequeued {
                        conversation_id: conversation.to_string(),
                        channel: settings.channels[channel.0 as usize].name.clone(),
                        queue: settings.queues[queue.0 as usize].name.clone(),
                        reason,
                    },
                );
            }
            Effect::Sla {
                conversation,
                channel,
                kind,
                level,
                waited_ms,
                ..
            } => {
                self.notice(
                    *conversation,
                    seq,
                    ServerFrame::ConversationSla {
                        conversation_id: conversation.to_string(),
                        level: sla_level(*level),
                        channel: settings.channels[channel.0 as usize].name.clone(),
                        waited_ms: *waited_ms,
                        kind: sla_kind(*kind),
                    },
                );
            }
            Effect::Ended {
                conversation,
                outcome,
                ..
            } => {
                self.notice(
                    *conversation,
                    seq,
                    ServerFrame::ConversationEnded {
                        conversation_id: conversation.to_string(),
                        outcome: store::outcome_str(*outcome),
                    },
                );
            }
            Effect::Widened { .. }
            | Effect::WrapUpEnded { .. }
            | Effect::Overflowed { .. }
            | Effect::ChannelSwitched { .. }
            | Effect::Transferred { .. } => {}
        }
    }

    /// Hands a frame for the connector, reporting record `seq`, to the
    /// conversation's actor.
    fn notice(&self, conversation: ConversationId, seq: Seq, frame: ServerFrame) {
        if let Some(addr) = self.hub.conversation(conversation) {
            addr.do_send(ConversationNotice(frame, seq));
        }
    }
}

fn sla_level(level: SlaLevel) -> &'static str {
    match level {
        SlaLevel::Warning => "warning",
        SlaLevel::Breach => "breach",
    }
}

fn sla_kind(kind: SlaKind) -> &'static str {
    match kind {
        SlaKind::Answer => "answer",
        SlaKind::FirstResponse => "first_response",
    }
}

/// The `event` frame of one effect: its kind and fields (names, never indexes).
pub fn event_of(effect: &Effect, settings: &RoutingSettings) -> (&'static str, Map<String, Value>) {
    let ch = |c: &crate::routing::ChannelId| settings.channels[c.0 as usize].name.clone();
    let q = |q: &crate::routing::QueueId| settings.queues[q.0 as usize].name.clone();
    let agent = |a: &AgentId| a.to_string();
    let (kind, value) = match effect {
        Effect::OfferMade {
            offer,
            conversation,
            agent: a,
            channel,
            queue,
            priority,
            waited_ms,
            ..
        } => (
            "offer_made",
            json!({"offer_id": offer.to_string(), "conversation_id": conversation.to_string(), "agent_id": agent(a),
                   "channel": ch(channel), "queue": q(queue), "priority": priority, "waited_ms": waited_ms}),
        ),
        Effect::OfferEnded {
            offer,
            conversation,
            agent: a,
            channel,
            queue,
            reason,
        } => (
            "offer_ended",
            json!({"offer_id": offer.to_string(), "conversation_id": conversation.to_string(), "agent_id": agent(a),
                   "channel": ch(channel), "queue": q(queue), "reason": reason.as_str()}),
        ),
        Effect::Assigned {
            conversation,
            agent: a,
            channel,
            queue,
            waited_ms,
            ..
        } => (
            "assigned",
            json!({"conversation_id": conversation.to_string(), "agent_id": agent(a), "channel": ch(channel),
                   "queue": q(queue), "waited_ms": waited_ms}),
        ),
        Effect::AgentStatusChanged {
            agent: a,
            status,
            reason,
        } => (
            "agent_status",
            json!({"agent_id": agent(a), "status": status.as_str(), "reason": reason}),
        ),
        Effect::Requeued {
            conversation,
            channel,
            queue,
            reason,
        } => (
            "requeued",
            json!({"conversation_id": conversation.to_string(), "channel": ch(channel), "queue": q(queue), "reason": reason}),
        ),
        Effect::Sla {
            conversation,
            channel,
            queue,
            kind,
            level,
            waited_ms,
        } => (
            "sla",
            json!({"conversation_id": conversation.to_string(), "channel": ch(channel), "queue": q(queue),
                   "sla": sla_kind(*kind), "level": sla_level(*level), "waited_ms": waited_ms}),
        ),
        Effect::Widened {
            conversation,
            channel,
            queue,
            step,
        } => (
            "widened",
            json!({"conversation_id": conversation.to_string(), "channel": ch(channel), "queue": q(queue), "step": step}),
        ),
        Effect::Overflowed {
            conversation,
            channel,
            from,
            to,
        } => (
            "overflowed",
            json!({"conversation_id": conversation.to_string(), "channel": ch(channel), "from_queue": q(from), "to_queue": q(to)}),
        ),
        Effect::ChannelSwitched {
            conversation,
            from,
            to,
            previous_agent,
        } => (
            "channel_switched",
            json!({"conversation_id": conversation.to_string(), "from_channel": ch(from), "to_channel": ch(to),
                   "previous_agent_id": previous_agent.as_ref().map(agent)}),
        ),
        Effect::Transferred {
            conversation,
            channel,
            from_queue,
            to_queue,
            from_agent,
        } => (
            "transferred",
            json!({"conversation_id": conversation.to_string(), "channel": ch(channel), "from_queue": q(from_queue),
                   "to_queue": q(to_queue), "from_agent_id": agent(from_agent)}),
        ),
        Effect::Ended {
            conversation,
            channel,
            queue,
            outcome,
            waited_ms,
            handle_ms,
            agent: a,
        } => (
            "ended",
            json!({"conversation_id": conversation.to_string(), "channel": ch(channel), "queue": q(queue),
                   "outcome": match outcome { Outcome::Completed => "completed", Outcome::Abandoned => "abandoned" },
                   "waited_ms": waited_ms, "handle_ms": handle_ms, "agent_id": a.as_ref().map(agent)}),
        ),
        Effect::WrapUpEnded {
            agent: a,
            conversation,
            channel,
        } => (
            "wrap_up_ended",
            json!({"agent_id": agent(a), "conversation_id": conversation.to_string(), "channel": ch(channel)}),
        ),
    };
    match value {
        Value::Object(map) => (kind, map),
        _ => (kind, Map::new()),
    }
}

impl Actor for RouterActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // A restarted router picks up the engine's pending deadlines.
        let next = self.hub.engine().poll_timeout();
        self.rearm(ctx, next);
    }
}

impl Handler<RunCommand> for RouterActor {
    type Result = Result<Sequenced<Reply>, CommandError>;

    fn handle(&mut self, msg: RunCommand, ctx: &mut Context<Self>) -> Self::Result {
        let now = clock::now_ms();
        let step = self.call(now, msg.0, |_| Vec::new());
        self.finish(ctx, now, step.effects, step.next, step.seq);
        step.result.map(|value| Sequenced {
            value,
            seq: step.seq,
        })
    }
}

impl Handler<OpenConversation> for RouterActor {
    type Result = Result<Sequenced<ConversationId>, CommandError>;

    fn handle(&mut self, msg: OpenConversation, ctx: &mut Context<Self>) -> Self::Result {
        let now = clock::now_ms();
        let (channel, queue, priority) = match &msg.command {
            Command::Open {
                channel,
                queue,
                priority,
                ..
            } => (channel.clone(), queue.clone(), *priority),
            _ => (String::new(), None, None),
        };
        let settings = &self.hub.settings;
        let queue = queue.unwrap_or_else(|| settings.default_queue.clone());
        let default_priority = settings
            .queues
            .iter()
            .find(|q| q.name == queue)
            .map(|q| q.priority)
            .unwrap_or(0);
        let OpenConversation {
            command,
            customer_id,
            attributes,
            owner,
            session_id,
        } = msg;
        let fact_channel = channel.clone();
        let fact_queue = queue.clone();
        let step = self.call(now, command, move |reply| match reply {
            Reply::Opened(id) => vec![Fact::Opened {
                id: *id,
                customer_id,
                channel: fact_channel,
                queue: fact_queue,
                priority: priority.unwrap_or(default_priority),
                attributes_json: Value::Object(attributes).to_string(),
                owner,
                now,
            }],
            Reply::Done => Vec::new(),
        });
        let opened = match step.result {
            Ok(Reply::Opened(id)) => {
                metrics::conversation_opened(
                    &self.hub.meters,
                    &self.hub.settings,
                    &channel,
                    Some(&queue),
                );
                self.hub.spawn_conversation(id, Some(session_id));
                Ok(Sequenced {
                    value: id,
                    seq: step.seq,
                })
            }
            Ok(Reply::Done) => Err(CommandError::InvalidState {
                conversation: ConversationId(0),
                state: "unopened",
            }),
            Err(e) => Err(e),
        };
        self.finish(ctx, now, step.effects, step.next, step.seq);
        opened
    }
}

impl Handler<Quietly<RunCommand>> for RouterActor {
    type Result = ();

    fn handle(&mut self, Quietly(msg, reply): Quietly<RunCommand>, ctx: &mut Context<Self>) {
        let result = <Self as Handler<RunCommand>>::handle(self, msg, ctx);
        self.leave(reply, result);
    }
}

impl Handler<Quietly<OpenConversation>> for RouterActor {
    type Result = ();

    fn handle(&mut self, Quietly(msg, reply): Quietly<OpenConversation>, ctx: &mut Context<Self>) {
        let result = <Self as Handler<OpenConversation>>::handle(self, msg, ctx);
        let routed = result.map(|opened| Sequenced {
            value: Reply::Opened(opened.value),
            seq: opened.seq,
        });
        self.leave(reply, routed);
    }
}

impl Handler<LoginAgent> for RouterActor {
    type Result = Result<Seq, CommandError>;

    fn handle(&mut self, msg: LoginAgent, ctx: &mut Context<Self>) -> Self::Result {
        let now = clock::now_ms();
        let agent: AgentId = msg.agent_id.as_str().into();
        let command = Command::AgentLogin {
            agent,
            skills: msg.skills.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            capacity: msg
                .capacity
                .as_ref()
                .map(|c| c.iter().map(|(k, v)| (k.clone(), *v)).collect()),
            max_total: msg.max_total,
        };
        let capacity = msg.capacity.clone().unwrap_or_else(|| {
            self.hub
                .settings
                .channels
                .iter()
                .map(|c| (c.name.clone(), c.default_capacity))
                .collect()
        });
        let fact = Fact::AgentLoggedIn {
            id: msg.agent_id.clone(),
            name: msg.name.clone(),
            skills: msg.skills.clone(),
            capacity,
            max_total: msg.max_total,
            now,
        };
        let step = self.call(now, command, move |_| vec![fact]);
        if step.result.is_ok() {
            self.hub
                .attach_agent_session(&msg.agent_id, msg.session.clone());
            if let Some(addr) = self.hub.agent(&msg.agent_id) {
                addr.do_send(AttachSession(msg.session));
            }
        }
        self.finish(ctx, now, step.effects, step.next, step.seq);
        step.result.map(|_| step.seq)
    }
}

impl Handler<Drain> for RouterActor {
    type Result = ();

    fn handle(&mut self, _: Drain, _: &mut Context<Self>) {}
}

impl Handler<InjectPanic> for RouterActor {
    type Result = ();

    #[allow(clippy::panic)]
    fn handle(&mut self, _: InjectPanic, _: &mut Context<Self>) {
        tracing::warn!("fault injection: the router panics now");
        panic!("injected fault in the router actor");
    }
}
