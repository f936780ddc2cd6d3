//! One actor per logged-in agent.
//!
//! It holds the agent's desktop session (outbound sender) and its view of
//! the agent's offers and conversations, and pushes to the desktop: offers
//! with their full `context` (read from the store at push time), withdrawn
//! offers, presence changes the agent did not ask for (`agent.status`, e.g.
//! away after an offer timed out) and relayed customer messages. A frame
//! that reports a change leaves once the change is durable; an offer leaves
//! at once, behind any such frame ([`super::notices`]).
//!
//! Its view is rebuilt from the store and the hub's session table when
//! supervision restarts it. It must never change routing state (the router
//! does) and never wait on the desktop: a full outbound buffer closes the
//! session instead.

use super::hub::{Hub, InjectPanic, SessionHandle};
use crate::api::protocol::ServerFrame;
use crate::durability::Seq;
use crate::routing::{ConversationId, OfferId};
use actix::{Actor, Context, Handler, Message};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Binds the agent to the desktop session it logged in from.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct AttachSession(pub SessionHandle);

/// The desktop session closed.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct SessionClosed {
    pub session_id: u64,
}

/// Pushes an offer (with its context) to the desktop.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct PushOffer {
    pub offer: OfferId,
    pub conversation: ConversationId,
    pub priority: i32,
    pub waited_ms: u64,
    pub expires_in_ms: u64,
}

/// An offer ended without acceptance (journal record `seq`).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct OfferWithdrawn {
    pub offer: OfferId,
    pub conversation: ConversationId,
    pub reason: &'static str,
    pub seq: Seq,
}

/// The agent accepted a conversation.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct ConversationTaken {
    pub conversation: ConversationId,
}

/// A conversation left the agent (ended, switched, transferred, requeued).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct ConversationReleased {
    pub conversation: ConversationId,
    pub reason: &'static str,
    /// The conversation ended for good (the desktop gets `conversation.ended`).
    pub ended: bool,
    /// The journal record of the change.
    pub seq: Seq,
}

/// The core changed the agent's presence.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct AgentStatusPushed {
    pub status: &'static str,
    pub reason: &'static str,
    /// The journal record of the change.
    pub seq: Seq,
}

/// Delivers a frame (a relayed message, journal record `.1`) to the desktop.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct DeliverFrame(pub ServerFrame, pub Seq);

/// The actor. See the module docs.
pub struct AgentActor {
    hub: Arc<Hub>,
    id: String,
    session: Option<SessionHandle>,
    offers: BTreeMap<OfferId, ConversationId>,
    conversations: BTreeSet<ConversationId>,
}

impl AgentActor {
    /// Builds the actor from the store and the hub's session table.
    pub fn new(hub: Arc<Hub>, id: String) -> Self {
        let session = hub.agent_session(&id);
        let record = hub.store.agent(&id);
        let offers = record
            .as_ref()
            .map(|r| {
                r.offers
                    .iter()
                    .filter_map(|(o, c)| Some((OfferId::parse(o)?, ConversationId::parse(c)?)))
                    .collect()
            })
            .unwrap_or_default();
        let conversations = record
            .map(|r| {
                r.conversations
                    .iter()
                    .filter_map(|c| ConversationId::parse(c))
                    .collect()
            })
            .unwrap_or_default();
        AgentActor {
            hub,
            id,
            session,
            offers,
            conversations,
        }
    }

    /// Pushes a frame that reports record `seq` once it is durable.
    fn push(&self, frame: &ServerFrame, seq: Seq) {
        if let Some(session) = &self.session {
            self.hub.notices.push(session, seq, frame);
        }
    }
}

impl Actor for AgentActor {
    type Context = Context<Self>;
}

impl Handler<AttachSession> for AgentActor {
    type Result = ();

    fn handle(&mut self, msg: AttachSession, _: &mut Context<Self>) {
        self.session = Some(msg.0);
    }
}

impl Handler<SessionClosed> for AgentActor {
    type Result = ();

    fn handle(&mut self, msg: SessionClosed, _: &mut Context<Self>) {
        if self
            .session
            .as_ref()
            .is_some_and(|s| s.id == msg.session_id)
        {
            self.session = None;
        }
    }
}

impl Handler<PushOffer> for AgentActor {
    type Result = ();

    fn handle(&mut self, msg: PushOffer, _: &mut Context<Self>) {
        let Some((record, context)) = self.hub.store.offer_context(msg.conversation) else {
            tracing::warn!(agent = %self.id, conversation = %msg.conversation, "offer of an unknown conversation");
            return;
        };
        self.offers.insert(msg.offer, msg.conversation);
        let Some(session) = &self.session else {
            return;
        };
        // An offer does not wait for the disk, only for the frames held
        // before it (see `super::notices`).
        session.push_in_order(&ServerFrame::Offer {
            offer_id: msg.offer.to_string(),
            conversation_id: msg.conversation.to_string(),
            customer_id: record.customer_id.to_string(),
            channel: record.channel.to_string(),
            queue: record.queue.to_string(),
            priority: msg.priority,
            waited_ms: msg.waited_ms,
            expires_in_ms: msg.expires_in_ms,
            context,
        });
    }
}

impl Handler<OfferWithdrawn> for AgentActor {
    type Result = ();

    fn handle(&mut self, msg: OfferWithdrawn, _: &mut Context<Self>) {
        self.offers.remove(&msg.offer);
        self.push(
            &ServerFrame::OfferEnded {
                offer_id: msg.offer.to_string(),
                conversation_id: msg.conversation.to_string(),
                reason: msg.reason,
            },
            msg.seq,
        );
    }
}

impl Handler<ConversationTaken> for AgentActor {
    type Result = ();

    fn handle(&mut self, msg: ConversationTaken, _: &mut Context<Self>) {
        self.offers.retain(|_, c| *c != msg.conversation);
        self.conversations.insert(msg.conversation);
    }
}

impl Handler<ConversationReleased> for AgentActor {
    type Result = ();

    fn handle(&mut self, msg: ConversationReleased, _: &mut Context<Self>) {
        self.conversations.remove(&msg.conversation);
        if msg.ended {
            self.push(
                &ServerFrame::ConversationEnded {
                    conversation_id: msg.conversation.to_string(),
                    outcome: msg.reason,
                },
                msg.seq,
            );
        }
    }
}

impl Handler<AgentStatusPushed> for AgentActor {
    type Result = ();

    fn handle(&mut self, msg: AgentStatusPushed, _: &mut Context<Self>) {
        self.push(
            &ServerFrame::AgentStatus {
                agent_id: self.id.clone(),
                status: msg.status,
                reason: msg.reason,
            },
            msg.seq,
        );
    }
}

impl Handler<DeliverFrame> for AgentActor {
    type Result = ();

    fn handle(&mut self, msg: DeliverFrame, _: &mut Context<Self>) {
        self.push(&msg.0, msg.1);
    }
}

impl Handler<InjectPanic> for AgentActor {
    type Result = ();

    #[allow(clippy::panic)]
    fn handle(&mut self, _: InjectPanic, _: &mut Context<Self>) {
        tracing::warn!(agent = %self.id, "fault injection: an agent actor panics now");
        panic!("injected fault in agent actor {}", self.id);
    }
}
