//! One actor per live conversation.
//!
//! It owns the conversation's transcript in the store (appends lines in
//! order, each one sequenced and journaled like a core call), relays each `conversation.message` to the other side (customer
//! lines to the assigned agent's desktop, agent lines to the connector that
//! opened it), tells the router about the agent's first message (first-response
//! SLA), and forwards the router's notices (`conversation.assigned`,
//! `conversation.sla`, …) to the connector. What it tells the connector
//! leaves once the change is durable ([`super::notices`]). It stops when the
//! conversation ends.
//!
//! All its state is in the store, so supervision can rebuild it at any time.
//! It must never change routing state itself (that is the router's job) and
//! never wait on a client.

use super::agent::DeliverFrame;
use super::hub::{Hub, InjectPanic};
use super::router::RunCommand;
use crate::api::protocol::{ServerFrame, Speaker, TranscriptLine};
use crate::clock;
use crate::durability::{Record, Seq};
use crate::routing::{Command, CommandError, ConversationId};
use crate::store::ConversationState;
use crate::store::{self, Fact};
use actix::{Actor, ActorContext, Context, Handler, Message, ResponseFuture};
use std::sync::Arc;

/// Appends one transcript line and relays it to the other side.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<Seq, CommandError>")]
pub struct PostLine {
    pub from: Speaker,
    pub text: String,
    /// The agent whose desktop sent it; `None` when the connector sent it.
    pub by_agent: Option<String>,
}

/// A frame the router wants the conversation's connector to see, and the
/// journal record of the change it reports (it waits for that record: see
/// [`super::notices`]).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct ConversationNotice(pub ServerFrame, pub Seq);

/// The actor. See the module docs.
pub struct ConversationActor {
    hub: Arc<Hub>,
    id: ConversationId,
}

impl ConversationActor {
    pub fn new(hub: Arc<Hub>, id: ConversationId) -> Self {
        ConversationActor { hub, id }
    }

    /// Hands `frame`, which reports record `seq`, to the connector once the
    /// record is durable.
    fn push_to_connector(&self, frame: &ServerFrame, seq: Seq) {
        let Some(owner) = self
            .hub
            .store
            .read_conversation(self.id, |r| r.owner.clone())
        else {
            return;
        };
        if let Some(session) = self.hub.connector_for(self.id, &owner) {
            self.hub.notices.push(&session, seq, frame);
        }
    }
}

impl Actor for ConversationActor {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Context<Self>) {
        // actix also runs `stopped` while dropping an actor that panicked:
        // only a conversation that really ended is forgotten, so a crashed
        // one stays registered (dead) and is rebuilt.
        let ended = self
            .hub
            .store
            .read_conversation(self.id, |r| r.state)
            .is_none_or(|state| state == ConversationState::Ended);
        if ended {
            self.hub.conversation_stopped(self.id);
        }
    }
}

impl Handler<PostLine> for ConversationActor {
    type Result = ResponseFuture<Result<Seq, CommandError>>;

    /// The line's journal record, or, for an agent's first reply (which also
    /// stops the first-response SLA clock in the core), the later of the
    /// line's and that command's records: the `ack` waits for both.
    fn handle(&mut self, msg: PostLine, _: &mut Context<Self>) -> Self::Result {
        let posted = self.post(msg);
        let router = self.hub.router();
        Box::pin(async move {
            let (seq, first_reply) = posted?;
            let Some(command) = first_reply else {
                return Ok(seq);
            };
            match router.send(RunCommand(command)).await {
                Ok(Ok(done)) => Ok(seq.max(done.seq)),
                // The line itself is recorded; a refused or undelivered
                // command (the conversation just ended) changes nothing more.
                _ => Ok(seq),
            }
        })
    }
}

impl ConversationActor {
    /// Records the line (store and journal, under the sequencer) and relays
    /// it; returns its record and, for an agent's first reply, the command
    /// that stops the first-response clock.
    fn post(&mut self, msg: PostLine) -> Result<(Seq, Option<Command>), CommandError> {
        let hub = &self.hub;
        let record = hub
            .store
            .conversation(self.id)
            .ok_or(CommandError::UnknownConversation(self.id))?;
        if record.state == ConversationState::Ended {
            return Err(CommandError::InvalidState {
                conversation: self.id,
                state: "ended",
            });
        }
        let first_reply = msg.from == Speaker::Agent
            && record.state == ConversationState::Assigned
            && !record.agent_replied
            && record.agent_id.is_some();
        // Sequenced like a core call: the line is in the store and queued for
        // the journal under the recorder's lock, so a snapshot cut sees both or neither.
        let (line, seq) = {
            let mut sequencer = hub.recorder.lock();
            let channel = hub
                .store
                .read_conversation(self.id, |r| r.channel.to_string())
                .ok_or(CommandError::UnknownConversation(self.id))?;
            let line = TranscriptLine {
                from: msg.from,
                text: msg.text,
                at_ms: clock::now_ms(),
                channel,
            };
            let fact = Fact::Line {
                conversation: self.id,
                line: line.clone(),
                agent_replied: first_reply,
            };
            store::apply_fact(&hub.store, &fact);
            (line, sequencer.record(Record::Fact(fact)))
        };
        let frame = ServerFrame::ConversationMessage {
            conversation_id: self.id.to_string(),
            from: line.from,
            text: line.text,
            at_ms: line.at_ms,
            channel: line.channel,
        };
        if msg.by_agent.is_some() {
            self.push_to_connector(&frame, seq);
        } else if let Some(agent) = record.agent_id.as_deref().and_then(|a| hub.agent(a)) {
            agent.do_send(DeliverFrame(frame, seq));
        }
        let command = record
            .agent_id
            .filter(|_| first_reply)
            .map(|agent| Command::AgentMessage {
                agent,
                conversation: self.id,
            });
        Ok((seq, command))
    }
}

impl Handler<ConversationNotice> for ConversationActor {
    type Result = ();

    fn handle(&mut self, msg: ConversationNotice, ctx: &mut Context<Self>) {
        self.push_to_connector(&msg.0, msg.1);
        if matches!(msg.0, ServerFrame::ConversationEnded { .. }) {
            ctx.stop();
        }
    }
}

impl Handler<InjectPanic> for ConversationActor {
    type Result = ();

    #[allow(clippy::panic)]
    fn handle(&mut self, _: InjectPanic, _: &mut Context<Self>) {
        tracing::warn!(conversation = %self.id, "fault injection: a conversation actor panics now");
        panic!("injected fault in conversation actor {}", self.id);
    }
}
