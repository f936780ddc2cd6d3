//! The hub: the registry of actor addresses and live sessions, and the
//! supervision that rebuilds a dead actor.
//!
//! A panic inside an actix handler ends that actor's task, so its mailbox is
//! closed for good (`Addr::connected()` turns false). Every actor address is
//! taken from the hub, which notices a dead one, rebuilds the actor from the
//! state store (conversation, agent) or from the engine kept outside it
//! (router), counts `switchboard_actor_restarts_total` and hands out the new
//! address; the caller sends the message itself (and a session resends a
//! request whose mailbox closed under it, where that matters). A periodic
//! sweep rebuilds actors nobody has sent to yet.
//!
//! The routing engine lives in an `Arc<Mutex<Engine>>` owned by the hub, not
//! by the router actor: a router that dies loses nothing, its replacement
//! locks the same engine and re-arms the timer. (Cheaper than snapshotting the
//! engine after every message.) The lock is only ever held for one synchronous
//! engine call, never across an `.await`.
//!
//! Sessions register a [`SessionHandle`] here; actors push frames into its
//! [`Outbox`], which never waits (a full one closes the client as a slow
//! consumer), so no actor ever waits on a client. The hub must never block, never hold
//! a `DashMap` guard while calling into an actor, and never panic.

use super::agent::AgentActor;
use super::conversation::ConversationActor;
use super::notices::HeldNotices;
use super::outbox::{Outbox, Pushed, SLOW_CONSUMER_CODE};
use super::router::{Drain, RouterActor};
use crate::api::protocol::{Role, ServerFrame};
use crate::durability::{Recorder, Seq, SnapshotReplica};
use crate::metrics::{self, ActorKind, Direction, Meters};
use crate::routing::{ChannelId, ConversationId, Engine, QueueId, RoutingSettings};
use crate::store::{ConversationState, Store};
use actix::{Actor, Addr, ArbiterHandle, Message};
use dashmap::DashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, RwLock};

/// The hub's maps: every frame looks one up, so they hash with `ahash`
/// (seeded per process) rather than SipHash.
type Map<K, V> = DashMap<K, V, ahash::RandomState>;

/// The sending side of one WebSocket connection.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    pub id: u64,
    pub role: Role,
    /// The token's name (owner of a connector's conversations).
    pub principal: String,
    outbox: Arc<Outbox>,
    meters: Arc<Meters>,
}

impl SessionHandle {
    pub fn new(
        id: u64,
        role: Role,
        principal: String,
        outbox: Arc<Outbox>,
        meters: Arc<Meters>,
    ) -> Self {
        SessionHandle {
            id,
            role,
            principal,
            outbox,
            meters,
        }
    }

    /// Queues a frame without waiting. A full queue means the client is too
    /// slow: the session is told to close and `false` is returned.
    pub fn push(&self, frame: &ServerFrame) -> bool {
        self.push_text(frame.kind(), frame.to_text())
    }

    /// [`Self::push`] for an already serialized frame.
    pub fn push_text(&self, kind: &'static str, text: String) -> bool {
        self.pushed(kind, self.outbox.push(text))
    }

    /// Queues a frame behind the frames held for this client (an offer):
    /// see [`Outbox::push_in_order`].
    pub fn push_in_order(&self, frame: &ServerFrame) -> bool {
        self.pushed(frame.kind(), self.outbox.push_in_order(frame.to_text()))
    }

    /// Queues a frame that waits for journal record `seq` (see
    /// [`Outbox::hold`]); true when the outbox now holds something and had
    /// held nothing before.
    pub fn hold(&self, seq: Seq, durable: Seq, kind: &'static str, text: String) -> bool {
        let (pushed, first) = self.outbox.hold(seq, durable, text);
        self.pushed(kind, pushed);
        first
    }

    /// The outbox frames of this session are queued in.
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    fn pushed(&self, kind: &'static str, pushed: Pushed) -> bool {
        match pushed {
            Pushed::Queued => {
                self.meters.ws_message(Direction::Out, kind);
                true
            }
            Pushed::Full => {
                tracing::warn!(
                    session = self.id,
                    role = self.role.as_str(),
                    "closing a slow consumer"
                );
                metrics::error(SLOW_CONSUMER_CODE);
                false
            }
            Pushed::Closed => false,
        }
    }

    /// Whether the session is gone or being closed.
    pub fn is_closed(&self) -> bool {
        self.outbox.is_closed()
    }
}

/// Makes the receiving actor panic inside its handler (fault injection).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct InjectPanic;

/// Shared state of a running server: store, engine, addresses, sessions.
pub struct Hub {
    pub store: Arc<Store>,
    pub settings: RoutingSettings,
    pub service_level: metrics::ServiceLevelPolicy,
    /// Handles of the hot metric series, resolved when the hub is built
    /// (after the recorder is installed).
    pub meters: Arc<Meters>,
    /// The sequencer every state change goes through (see `crate::durability`).
    pub recorder: Arc<Recorder>,
    /// Releases the frames that wait for the journal (see [`HeldNotices`]).
    pub notices: Arc<HeldNotices>,
    /// The snapshot thread, once started.
    snapshots: OnceLock<SnapshotReplica>,
    engine: Arc<Mutex<Engine>>,
    arbiter: ArbiterHandle,
    router: RwLock<Option<Addr<RouterActor>>>,
    conversations: Map<ConversationId, Addr<ConversationActor>>,
    agents: Map<String, Addr<AgentActor>>,
    agent_sessions: Map<String, SessionHandle>,
    connectors: Map<u64, SessionHandle>,
    /// Conversation → id of the connector session that opened it.
    openers: Map<ConversationId, u64>,
    subscribers: Map<u64, SessionHandle>,
    /// Per (queue, channel): answered, answered within the answer target.
    answered: Map<(QueueId, ChannelId), (u64, u64)>,
    next_session: AtomicU64,
    open_sessions: AtomicU64,
    restarts: AtomicU64,
    pub fault_injection: bool,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("restarts", &self.restarts.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Hub {
    /// A hub whose actors all run on `arbiter`. The router starts on first use.
    pub fn new(
        engine: Engine,
        store: Arc<Store>,
        recorder: Arc<Recorder>,
        notices: Arc<HeldNotices>,
        arbiter: ArbiterHandle,
        service_level: metrics::ServiceLevelPolicy,
        fault_injection: bool,
    ) -> Arc<Hub> {
        Arc::new(Hub {
            meters: Arc::new(Meters::new(engine.settings())),
            settings: engine.settings().clone(),
            store,
            service_level,
            recorder,
            notices,
            snapshots: OnceLock::new(),
            engine: Arc::new(Mutex::new(engine)),
            arbiter,
            router: RwLock::new(None),
            conversations: Map::default(),
            agents: Map::default(),
            agent_sessions: Map::default(),
            connectors: Map::default(),
            openers: Map::default(),
            subscribers: Map::default(),
            answered: Map::default(),
            next_session: AtomicU64::new(1),
            open_sessions: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            fault_injection,
        })
    }

    /// Locks the engine for one synchronous call. A poisoned lock is taken
    /// over: the engine never panics on input, so its state is consistent.
    pub fn engine(&self) -> MutexGuard<'_, Engine> {
        self.engine.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers the snapshot thread (once).
    pub fn set_snapshots(&self, writer: SnapshotReplica) {
        if let Err(writer) = self.snapshots.set(writer) {
            writer.stop();
        }
    }

    /// The snapshot thread, if started.
    pub fn snapshots(&self) -> Option<&SnapshotReplica> {
        self.snapshots.get()
    }

    /// A fresh session id.
    pub fn next_session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    /// Counts a WebSocket session that started.
    pub fn session_opened(&self) {
        self.open_sessions.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a WebSocket session that ended.
    pub fn session_closed(&self) {
        self.open_sessions.fetch_sub(1, Ordering::Relaxed);
    }

    /// WebSocket sessions open now.
    pub fn open_sessions(&self) -> u64 {
        self.open_sessions.load(Ordering::Relaxed)
    }

    /// Actors rebuilt by supervision since start.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    fn restarted(&self, kind: ActorKind) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
        metrics::actor_restarted(kind);
        tracing::warn!(
            actor = kind.as_str(),
            "actor was dead; rebuilt it from the state store"
        );
    }

    // ----- router -----

    /// The router's address, (re)starting it when it is missing or dead.
    pub fn router(self: &Arc<Self>) -> Addr<RouterActor> {
        if let Some(addr) = self
            .router
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            if addr.connected() {
                return addr.clone();
            }
        }
        let mut slot = self.router.write().unwrap_or_else(PoisonError::into_inner);
        match slot.as_ref() {
            Some(addr) if addr.connected() => return addr.clone(),
            Some(_) => self.restarted(ActorKind::Router),
            None => {}
        }
        let hub = Arc::clone(self);
        let addr = RouterActor::start_in_arbiter(&self.arbiter, move |_| RouterActor::new(hub));
        *slot = Some(addr.clone());
        addr
    }

    /// Waits until the actors have handled every message sent to them before
    /// this call: the router's mailbox first, then what the router handed
    /// on to conversation and agent actors. They all run on one arbiter,
    /// whose queue of woken tasks is first in, first out. For shutdown (a
    /// closing session must not leave before the notices owed to it are
    /// pushed); the caller bounds the wait.
    pub async fn settle_actors(self: &Arc<Self>) {
        let _ = self.router().send(Drain).await;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let spawned = self.arbiter.spawn(async move {
            // Spawned from another thread, it may run ahead of the actors
            // already woken; after one yield it is behind all of them.
            tokio::task::yield_now().await;
            let _ = tx.send(());
        });
        if spawned {
            let _ = rx.await;
        }
    }

    /// `do_send`s `msg` to the router (started or restarted as by
    /// [`Hub::router`]) without cloning its address: a clone allocates, and
    /// every routed request comes this way.
    pub fn send_to_router<M>(self: &Arc<Self>, msg: M)
    where
        M: Message + Send + 'static,
        M::Result: Send,
        RouterActor: actix::Handler<M>,
    {
        {
            let current = self.router.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(addr) = current.as_ref().filter(|a| a.connected()) {
                addr.do_send(msg);
                return;
            }
        }
        self.router().do_send(msg);
    }

    // ----- conversations -----

    /// Starts the actor of a conversation just opened (its record is in the store).
    pub fn spawn_conversation(
        self: &Arc<Self>,
        id: ConversationId,
        opener: Option<u64>,
    ) -> Addr<ConversationActor> {
        if let Some(session) = opener {
            self.openers.insert(id, session);
        }
        let hub = Arc::clone(self);
        let addr = ConversationActor::start_in_arbiter(&self.arbiter, move |_| {
            ConversationActor::new(hub, id)
        });
        self.conversations.insert(id, addr.clone());
        addr
    }

    /// The live actor of conversation `id`, rebuilt from the store if it died,
    /// started if the conversation is live but has none yet (restored from a
    /// snapshot). `None` when the conversation is unknown or has ended.
    pub fn conversation(self: &Arc<Self>, id: ConversationId) -> Option<Addr<ConversationActor>> {
        let current = self.conversations.get(&id).map(|a| a.clone());
        match current {
            Some(addr) if addr.connected() => Some(addr),
            Some(_) => {
                self.store.conversation(id)?;
                self.restarted(ActorKind::Conversation);
                Some(self.spawn_conversation(id, None))
            }
            None => {
                let live = self
                    .store
                    .update_conversation(id, |r| r.state != ConversationState::Ended)?;
                live.then(|| self.spawn_conversation(id, None))
            }
        }
    }

    /// Forgets the actor of a conversation that ended (called by the actor itself).
    pub fn conversation_stopped(&self, id: ConversationId) {
        self.conversations.remove(&id);
        self.openers.remove(&id);
    }

    /// Whether a conversation still has an actor registered.
    pub fn has_conversation_actor(&self, id: ConversationId) -> bool {
        self.conversations.contains_key(&id)
    }

    // ----- agents -----

    /// The live actor of agent `id`, started (or rebuilt) when logged in.
    pub fn agent(self: &Arc<Self>, id: &str) -> Option<Addr<AgentActor>> {
        let current = self.agents.get(id).map(|a| a.clone());
        match current {
            Some(addr) if addr.connected() => Some(addr),
            Some(_) => {
                self.restarted(ActorKind::Agent);
                Some(self.spawn_agent(id))
            }
            None => {
                self.store.agent(id)?;
                Some(self.spawn_agent(id))
            }
        }
    }

    fn spawn_agent(self: &Arc<Self>, id: &str) -> Addr<AgentActor> {
        let hub = Arc::clone(self);
        let agent_id = id.to_string();
        let addr =
            AgentActor::start_in_arbiter(&self.arbiter, move |_| AgentActor::new(hub, agent_id));
        self.agents.insert(id.to_string(), addr.clone());
        addr
    }

    /// Binds agent `id` to a session (a login); returns the session it replaced.
    pub fn attach_agent_session(&self, id: &str, session: SessionHandle) -> Option<SessionHandle> {
        self.agent_sessions.insert(id.to_string(), session)
    }

    /// Unbinds agent `id` if `session_id` is still its session; true if it was.
    pub fn detach_agent_session(&self, id: &str, session_id: u64) -> bool {
        self.agent_sessions
            .remove_if(id, |_, s| s.id == session_id)
            .is_some()
    }

    /// The session agent `id` is logged in from.
    pub fn agent_session(&self, id: &str) -> Option<SessionHandle> {
        self.agent_sessions.get(id).map(|s| s.clone())
    }

    // ----- connectors and supervisors -----

    pub fn add_connector(&self, session: SessionHandle) {
        self.connectors.insert(session.id, session);
    }

    pub fn remove_session(&self, session_id: u64) {
        self.connectors.remove(&session_id);
        self.subscribers.remove(&session_id);
    }

    /// The connector session to tell about conversation `id`: the one that
    /// opened it, or, if that one is gone, another live one of the same owner.
    pub fn connector_for(&self, id: ConversationId, owner: &str) -> Option<SessionHandle> {
        if let Some(session_id) = self.openers.get(&id).map(|s| *s) {
            if let Some(s) = self.connectors.get(&session_id) {
                if !s.is_closed() {
                    return Some(s.clone());
                }
            }
        }
        let other = self
            .connectors
            .iter()
            .find(|s| s.principal == owner && !s.is_closed())
            .map(|s| s.clone());
        if let Some(s) = &other {
            self.openers.insert(id, s.id);
        }
        other
    }

    pub fn subscribe(&self, session: SessionHandle) {
        self.subscribers.insert(session.id, session);
    }

    /// Whether any supervisor is subscribed to events (so that building an
    /// event frame is worth it).
    pub fn has_subscribers(&self) -> bool {
        !self.subscribers.is_empty()
    }

    /// Sends one frame to every subscribed supervisor; slow ones are dropped.
    pub fn broadcast(&self, frame: &ServerFrame) {
        if self.subscribers.is_empty() {
            return;
        }
        let text = frame.to_text();
        let mut gone = Vec::new();
        for s in self.subscribers.iter() {
            if !s.push_text(frame.kind(), text.clone()) {
                gone.push(s.id);
            }
        }
        for id in gone {
            self.subscribers.remove(&id);
        }
    }

    // ----- service level -----

    /// Counts one answered conversation for `GET /v1/queues`.
    pub fn record_answer(&self, queue: QueueId, channel: ChannelId, within_target: bool) {
        let mut e = self.answered.entry((queue, channel)).or_insert((0, 0));
        e.0 += 1;
        if within_target {
            e.1 += 1;
        }
    }

    /// Answered and answered-within-target for one queue and channel.
    pub fn answered(&self, queue: QueueId, channel: ChannelId) -> (u64, u64) {
        self.answered
            .get(&(queue, channel))
            .map(|e| *e)
            .unwrap_or((0, 0))
    }

    // ----- supervision sweep -----

    /// Rebuilds every dead actor that still has work (called periodically).
    pub fn sweep(self: &Arc<Self>) {
        let _ = self.router();
        let dead_conversations: Vec<ConversationId> = self
            .conversations
            .iter()
            .filter(|e| !e.value().connected())
            .map(|e| *e.key())
            .collect();
        for id in dead_conversations {
            let _ = self.conversation(id);
        }
        let dead_agents: Vec<String> = self
            .agents
            .iter()
            .filter(|e| !e.value().connected())
            .map(|e| e.key().clone())
            .collect();
        for id in dead_agents {
            let _ = self.agent(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: u64) -> ServerFrame {
        ServerFrame::Ack {
            req_id: Some(n.into()),
            conversation_id: None,
        }
    }

    #[test]
    fn a_full_outbox_refuses_and_closes_the_session() {
        let outbox = Arc::new(Outbox::new(2));
        let meters = Arc::new(Meters::new(&RoutingSettings::example()));
        let session = SessionHandle::new(
            1,
            Role::Supervisor,
            "wall".into(),
            Arc::clone(&outbox),
            meters,
        );
        assert!(session.push(&frame(1)));
        assert!(session.push(&frame(2)));
        assert!(!session.is_closed());
        assert!(!session.push(&frame(3)), "a full queue refuses the frame");
        assert_eq!(outbox.reason(), Some(super::super::outbox::SLOW_CONSUMER));
        assert!(session.is_closed());
        assert!(!session.push(&frame(4)));
    }
}
