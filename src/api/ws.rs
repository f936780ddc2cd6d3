//! `GET /v1/ws`: one WebSocket session per connection.
//!
//! The token is checked before the upgrade (401 otherwise, see
//! [`super::upgrade`]). Each connection then runs ONE `select!` loop over:
//! its inbound frames, its bounded [`Outbox`] (actors push frames without
//! waiting; a full outbox means the client does not read, and it is closed
//! with a reason; what is queued leaves in one write), a heartbeat with a client timeout (a ping goes only to a
//! connection that has been quiet, see [`WsLimits::needs_ping`]), and the
//! server's shutdown signal. A frame's size is checked before it is parsed; a bad
//! frame gets an `error` frame and the connection stays open, except an
//! oversize or binary frame, which is answered and then closed.
//!
//! A routing request (open, accept, reject, complete, status, transfer …) is
//! sent to the router actor, which sequences every change. The session does
//! not wait for it: it reads on, holding a place for the reply, and the
//! router leaves the reply in a [`ReplySlot`] (quietly, when the journal's
//! watermark will wake the session anyway, see [`crate::actors::reply_slot`]).
//! With a journal, an `ack` for a state-changing request is held until the
//! journal record of that change is durable, and replies always leave in
//! request order (pushed frames that report a change are held in the outbox
//! likewise, see [`crate::actors::notices`]). A request whose checks read what earlier requests change
//! (a login, a message, whose sender must hold the conversation, `stats`)
//! first waits until the router has taken every earlier one. A client may
//! have at most [`WsLimits::max_held_replies`] replies held; beyond that the
//! session stops reading until some leave.
//!
//! Authorization lives here: an agent session acts only as the agent it
//! logged in as, a connector only on conversations it opened (owner = its
//! token's name), a supervisor only reads. This module must never `unwrap()`
//! a send, never block the loop on anything but its own socket, and never
//! decide routing.

use super::auth::Principal;
use super::http::{stats_frame, AppState};
use super::protocol::{
    codes, parse_client_frame, ClientFrame, Request, Role, ServerFrame, Speaker, WireStatus,
};
use super::transport::{WsConn, WsError, WsMessage, CLOSE_LINGER};
use crate::actors::agent::SessionClosed;
use crate::actors::conversation::PostLine;
use crate::actors::outbox::SLOW_CONSUMER_CODE;
use crate::actors::reply_slot::{self, Gone, ReplySlot};
use crate::actors::router::{LoginAgent, OpenConversation, Quietly, Routed, RunCommand};
use crate::actors::{Hub, Outbox, SessionHandle};
use crate::clock;
use crate::durability::{journal::Watermark, JournalFailed, Seq};
use crate::metrics::{self, Direction};
use crate::routing::{
    AgentId, AgentStatus, Command, CommandError, ConversationId, OfferId, Reply, TransferTarget,
};
use crate::store::ConversationRecord;
use actix_http::ws::{CloseCode, CloseReason};
use serde_json::{Map, Value};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Limits of one WebSocket connection (from `[server]`).
#[derive(Debug, Clone, Copy)]
pub struct WsLimits {
    pub max_frame_bytes: usize,
    pub outbound_buffer_frames: usize,
    pub heartbeat_interval: Duration,
    pub client_timeout: Duration,
}

impl WsLimits {
    /// Whether a connection whose last inbound frame is `idle` old needs a
    /// ping on this heartbeat. One that spoke recently enough to outlive the
    /// next heartbeat and still have a whole interval to answer a ping then
    /// is known alive: pinging it would only cost a frame each way.
    pub fn needs_ping(&self, idle: Duration) -> bool {
        let spare = self
            .client_timeout
            .saturating_sub(self.heartbeat_interval.saturating_mul(2));
        idle >= spare
    }

    /// The limit the transport enforces on a frame or a joined message. It
    /// refuses only what is far over `max_frame_bytes`; a frame just over it
    /// is read and refused by the session, with an `error` frame that says
    /// by how much, and a clear close reason.
    pub fn codec_limit(&self) -> usize {
        self.max_frame_bytes
            .saturating_mul(2)
            .max(self.max_frame_bytes + 1024)
    }

    /// The most replies one session holds before it stops reading: a
    /// quarter of its outbox, and at most [`MAX_HELD_REPLIES`]. Held replies
    /// can leave all at once (one journal commit makes them all durable), so
    /// together with the frames pushed meanwhile they must fit the outbox,
    /// or a client that merely pipelines would be closed as a slow consumer.
    pub fn max_held_replies(&self) -> usize {
        (self.outbound_buffer_frames / 4).clamp(1, MAX_HELD_REPLIES)
    }
}

/// Close reason sent on server shutdown.
pub const SHUTDOWN_REASON: &str = "shutdown";

/// Starts the session loop of an upgraded, authenticated connection.
pub fn start(state: &AppState, principal: Principal, conn: WsConn) {
    let hub = Arc::clone(&state.hub);
    actix_web::rt::spawn(run_session(
        hub,
        state.limits,
        principal,
        conn,
        state.shutdown.clone(),
    ));
}

/// What a handled request answers.
enum Answer {
    /// An `ack` (with the new conversation's id for an open), sent once the
    /// journal record `Seq` of the change is durable.
    Ack(Option<String>, Option<Seq>),
    Frame(Box<ServerFrame>),
}

/// What handling a request gave: an answer now, or a request the router has,
/// whose reply it will leave in the slot.
enum Handled {
    Now(Answer),
    Routed(ReplySlot<Routed>),
}

impl From<Answer> for Handled {
    fn from(answer: Answer) -> Self {
        Handled::Now(answer)
    }
}

/// A reply the client is owed, in request order.
// Held replies live in the session's queue, whose room is reused; boxing
// the large variant would cost an allocation per reply instead.
#[allow(clippy::large_enum_variant)]
enum Held {
    /// The router has the request; its reply is not taken yet.
    Routed(Option<Value>, ReplySlot<Routed>),
    /// A reply waiting for journal record `Seq` to be durable.
    Reply(Seq, ServerFrame),
}

/// The most replies one session holds, whatever its outbox: a client that
/// sends faster than its requests are routed and made durable is read no
/// further until some leave (see [`WsLimits::max_held_replies`]).
pub const MAX_HELD_REPLIES: usize = 1024;

/// Why a request was refused: a stable code and a human message.
#[derive(Debug)]
struct Refusal {
    code: &'static str,
    message: String,
}

impl Refusal {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Refusal {
            code,
            message: message.into(),
        }
    }
}

impl From<CommandError> for Refusal {
    fn from(e: CommandError) -> Self {
        Refusal {
            code: e.code(),
            message: e.to_string(),
        }
    }
}

/// The per-connection state the loop's request handler needs.
struct Conn {
    hub: Arc<Hub>,
    principal: Principal,
    handle: SessionHandle,
    /// The agent this session logged in as.
    agent: Option<AgentId>,
    /// Replies held back until the router has answered and the journal
    /// record they depend on is durable (in request order; a reply that
    /// depends on nothing waits behind them).
    pending: VecDeque<Held>,
}

/// At most this many queued frames go out in one write.
const FRAMES_PER_WRITE: usize = 64;

async fn run_session(
    hub: Arc<Hub>,
    limits: WsLimits,
    principal: Principal,
    mut ws: WsConn,
    mut shutdown: watch::Receiver<bool>,
) {
    let id = hub.next_session_id();
    let role = principal.role;
    let outbox = Arc::new(Outbox::new(limits.outbound_buffer_frames));
    let handle = SessionHandle::new(
        id,
        role,
        principal.name.clone(),
        Arc::clone(&outbox),
        Arc::clone(&hub.meters),
    );
    if role == Role::Connector {
        hub.add_connector(handle.clone());
    }
    hub.session_opened();
    metrics::ws_connections(role.as_str(), 1);
    tracing::debug!(session = id, role = role.as_str(), client = %principal.name, "websocket session opened");
    let mut conn = Conn {
        hub: Arc::clone(&hub),
        principal,
        handle,
        agent: None,
        pending: VecDeque::new(),
    };
    let mut durable = hub.recorder.watermark();
    let held_limit = limits.max_held_replies();
    let mut last_seen = clock::instant();
    let mut heartbeat = tokio::time::interval(limits.heartbeat_interval);
    heartbeat.tick().await;

    // Rare paths (closing, refusing, handling a frame) are boxed: their
    // state would otherwise sit in every idle session's task.
    let close: Option<CloseReason> = loop {
        tokio::select! {
            biased;
            _ = outbox.ready() => {
                if let Some(why) = outbox.reason() {
                    break Some(reason(CloseCode::Policy, why));
                }
                // A commit releases held frames (into this outbox) and held
                // replies (through the watermark) at once: both leave in
                // this write.
                if !conn.pending.is_empty() {
                    conn.release();
                }
                // Whatever is queued leaves in one write.
                outbox.drain(FRAMES_PER_WRITE, |text| ws.queue_text(text));
                if let Err(close) = flush_bounded(&mut ws, &outbox, limits.client_timeout).await {
                    break close;
                }
            }
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    Box::pin(conn.drain_held(&mut durable, CLOSE_LINGER)).await;
                    Box::pin(flush(&mut ws, &outbox)).await;
                    break Some(reason(CloseCode::Away, SHUTDOWN_REASON));
                }
            }
            _ = durable_changed(&mut durable), if !conn.pending.is_empty() => {
                conn.release();
            }
            _ = front_filled(&conn.pending), if matches!(conn.pending.front(), Some(Held::Routed(..))) => {
                conn.release();
            }
            _ = heartbeat.tick() => {
                let idle = last_seen.elapsed();
                if idle > limits.client_timeout {
                    break Some(reason(CloseCode::Away, "client timeout"));
                }
                if limits.needs_ping(idle) {
                    ws.queue_ping(b"");
                    if let Err(close) = flush_bounded(&mut ws, &outbox, limits.client_timeout).await {
                        break close;
                    }
                }
            }
            msg = ws.recv(), if conn.pending.len() < held_limit => {
                last_seen = clock::instant();
                match msg {
                    None => break None,
                    Some(Err(WsError::Overflow { .. })) => {
                        Box::pin(refuse_and_close(&mut ws, &outbox, codes::FRAME_TOO_LARGE, "frame is larger than max_frame_bytes")).await;
                        break Some(reason(CloseCode::Size, "frame too large"));
                    }
                    Some(Err(WsError::Io(e))) => {
                        tracing::debug!(session = id, error = %e, "websocket socket error");
                        break None;
                    }
                    Some(Err(e)) => {
                        metrics::error(codes::BAD_FRAME);
                        tracing::debug!(session = id, error = %e, "websocket protocol error");
                        break Some(reason(CloseCode::Protocol, "protocol error"));
                    }
                    Some(Ok(WsMessage::Text(text))) => {
                        if text.len() > limits.max_frame_bytes {
                            Box::pin(refuse_and_close(&mut ws, &outbox, codes::FRAME_TOO_LARGE, &format!(
                                "frame of {} bytes is larger than max_frame_bytes ({})", text.len(), limits.max_frame_bytes))).await;
                            break Some(reason(CloseCode::Size, "frame too large"));
                        }
                        Box::pin(conn.on_text(&text)).await;
                    }
                    Some(Ok(WsMessage::Binary(_))) => {
                        Box::pin(refuse_and_close(&mut ws, &outbox, codes::BINARY_FRAME, "binary frames are not supported; send JSON text")).await;
                        break Some(reason(CloseCode::Unsupported, "binary frames are not supported"));
                    }
                    Some(Ok(WsMessage::Ping(bytes))) => {
                        ws.queue_pong(&bytes);
                        if let Err(close) = flush_bounded(&mut ws, &outbox, limits.client_timeout).await {
                            break close;
                        }
                    }
                    Some(Ok(WsMessage::Pong(_))) => {}
                    Some(Ok(WsMessage::Close(_))) => {
                        Box::pin(flush(&mut ws, &outbox)).await;
                        break Some(reason(CloseCode::Normal, "bye"));
                    }
                }
            }
        }
    };

    outbox.end();
    conn.cleanup();
    hub.session_closed();
    metrics::ws_connections(role.as_str(), -1);
    tracing::debug!(session = id, reason = ?close, "websocket session closed");
    // Bounded: a client that does not read may never take the close frame.
    Box::pin(ws.close(close)).await;
}

fn reason(code: CloseCode, description: &str) -> CloseReason {
    CloseReason {
        code,
        description: Some(description.to_string()),
    }
}

/// Writes what is queued. The wait ends when the outbox trips (the client is
/// closed for that reason) or after `limit`: a client that takes nothing
/// for a whole client timeout is gone, even if it still sends (a client that
/// sends pings and never reads would otherwise hold its session forever,
/// the loop stuck on its full socket).
async fn flush_bounded(
    ws: &mut WsConn,
    outbox: &Outbox,
    limit: Duration,
) -> Result<(), Option<CloseReason>> {
    // Flush first: when the socket takes it all at once (the usual case),
    // neither the timer nor the waiter is ever registered.
    tokio::select! {
        biased;
        sent = ws.flush() => sent.map_err(|_| None),
        _ = outbox.tripped() => Err(Some(reason(
            CloseCode::Policy,
            outbox.reason().unwrap_or("closed by server"),
        ))),
        _ = tokio::time::sleep(limit) => {
            metrics::error(SLOW_CONSUMER_CODE);
            Err(Some(reason(CloseCode::Policy, NOT_READING)))
        }
    }
}

/// Close reason of a client that took nothing for a whole client timeout.
pub const NOT_READING: &str = "client timeout: not reading";

/// Writes what is queued for the client, for at most [`CLOSE_LINGER`].
async fn flush(ws: &mut WsConn, outbox: &Outbox) {
    outbox.drain(usize::MAX, |text| ws.queue_text(text));
    let _ = tokio::time::timeout(CLOSE_LINGER, ws.flush()).await;
}

/// Sends queued frames and an error frame, before the caller closes.
async fn refuse_and_close(ws: &mut WsConn, outbox: &Outbox, code: &'static str, message: &str) {
    metrics::error(code);
    metrics::ws_message(Direction::In, "invalid");
    let frame = ServerFrame::error(None, code, message);
    metrics::ws_message(Direction::Out, frame.kind());
    outbox.drain(usize::MAX, |text| ws.queue_text(text));
    ws.queue_text(&frame.to_text());
    flush(ws, outbox).await;
}

impl Conn {
    async fn on_text(&mut self, text: &str) {
        let (req_id, result) = match parse_client_frame(text, self.principal.role) {
            Err(e) => {
                self.hub.meters.ws_message(Direction::In, "invalid");
                (e.req_id, Err(Refusal::new(e.code, e.message)))
            }
            Ok(Request { req_id, frame }) => {
                self.hub.meters.ws_message(Direction::In, frame.kind());
                if reads_earlier_changes(&frame) {
                    self.settle().await;
                }
                (req_id, self.dispatch(frame).await)
            }
        };
        match result {
            Ok(Handled::Routed(slot)) => {
                self.pending.push_back(Held::Routed(req_id, slot));
                // The router may have answered already.
                self.release();
            }
            Ok(Handled::Now(answer)) => {
                let (seq, frame) = reply_frame(req_id, Ok(answer));
                self.deliver(frame, seq);
            }
            Err(refusal) => {
                let (seq, frame) = reply_frame(req_id, Err(refusal));
                self.deliver(frame, seq);
            }
        }
    }

    /// At shutdown: lets the replies already owed leave, and the notices of
    /// every change made so far, for at most `limit` (the router and the
    /// journal run until every session has closed, so what a client was told
    /// is applied is also acked).
    async fn drain_held(
        &mut self,
        durable: &mut Option<watch::Receiver<Watermark>>,
        limit: Duration,
    ) {
        let made = self.hub.recorder.last_seq();
        let _ = tokio::time::timeout(limit, async {
            loop {
                self.release();
                if self.pending.is_empty() {
                    break;
                }
                tokio::select! {
                    _ = durable_changed(durable) => {}
                    _ = front_filled(&self.pending) => {}
                }
            }
            // A notice of a change made so far may not be pushed yet: the
            // router hands it to a conversation or agent actor, which
            // pushes it later on the same thread.
            self.hub.settle_actors().await;
            // The journal thread releases held frames just after it
            // publishes the watermark; a shutdown can afford to poll.
            while self.handle.outbox().holds_up_to(made) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await;
    }

    /// Waits until the router has answered every request sent before.
    async fn settle(&self) {
        for held in &self.pending {
            if let Held::Routed(_, slot) = held {
                slot.filled(true).await;
            }
        }
    }

    /// Pushes a reply now, or holds it until record `seq` is durable (and
    /// behind every reply already held, so replies keep request order).
    fn deliver(&mut self, frame: ServerFrame, seq: Seq) {
        if self.pending.is_empty() {
            match self.hub.recorder.is_durable(seq) {
                Ok(true) => {
                    self.handle.push(&frame);
                    return;
                }
                Ok(false) => {}
                Err(failed) => {
                    self.handle.push(&not_durable(frame, failed));
                    return;
                }
            }
        }
        self.pending.push_back(Held::Reply(seq, frame));
    }

    /// Sends the held replies, in order, as far as the router has answered
    /// and the journal has made durable; after a journal failure, every
    /// held `ack` becomes an `unavailable` error.
    fn release(&mut self) {
        while let Some(front) = self.pending.front_mut() {
            let seq = match front {
                Held::Reply(seq, _) => *seq,
                Held::Routed(req_id, slot) => {
                    let Some(answered) = slot.try_take() else {
                        break;
                    };
                    let (seq, frame) = reply_frame(req_id.take(), routed_answer(answered));
                    *front = Held::Reply(seq, frame);
                    seq
                }
            };
            let durable = self.hub.recorder.is_durable(seq);
            if durable == Ok(false) {
                break;
            }
            // The front is a reply now (turned into one just above).
            if let Some(Held::Reply(_, frame)) = self.pending.pop_front() {
                self.handle.push(&match durable {
                    Err(failed) => not_durable(frame, failed),
                    Ok(_) => frame,
                });
            }
        }
    }

    /// Sends `msg` to the router, which leaves the reply in the returned slot.
    fn send_quietly<M>(&self, msg: M) -> Handled
    where
        M: Send + 'static,
        Quietly<M>: actix::Message<Result = ()>,
        crate::actors::router::RouterActor: actix::Handler<Quietly<M>>,
    {
        let (reply, slot) = reply_slot::slot();
        // A mailbox that closes before the router takes it drops the
        // request, and the slot tells the session so (`Gone`).
        self.hub.send_to_router(Quietly(msg, reply));
        Handled::Routed(slot)
    }

    async fn dispatch(&mut self, frame: ClientFrame) -> Result<Handled, Refusal> {
        match frame {
            ClientFrame::ConversationOpen(o) => {
                let command = Command::Open {
                    channel: o.channel,
                    queue: o.queue,
                    skills: o.skills.unwrap_or_default().into_iter().collect(),
                    priority: o.priority,
                    preferred_agent: o.preferred_agent_id.map(|a| a.as_str().into()),
                };
                let msg = OpenConversation {
                    command,
                    customer_id: o.customer_id,
                    attributes: o.attributes.unwrap_or_else(Map::new),
                    owner: self.principal.name.clone(),
                    session_id: self.handle.id,
                };
                Ok(self.send_quietly(msg))
            }
            ClientFrame::ConversationMessage(m) => {
                let (id, record) = self.known_conversation(&m.conversation_id)?;
                let by_agent = match self.principal.role {
                    Role::Agent => {
                        let me = self.me()?;
                        if record.agent_id.as_deref() != Some(&*me) || m.from != Speaker::Agent {
                            return Err(Refusal::new(
                                codes::FORBIDDEN,
                                format!("conversation {id} is not assigned to you"),
                            ));
                        }
                        Some(me.to_string())
                    }
                    _ => {
                        self.owns(&record)?;
                        None
                    }
                };
                let msg = PostLine {
                    from: m.from,
                    text: m.text,
                    by_agent,
                };
                for attempt in 0..2 {
                    let addr = self.hub.conversation(id).ok_or_else(|| {
                        Refusal::new(codes::INVALID_STATE, format!("conversation {id} has ended"))
                    })?;
                    match addr.send(msg.clone()).await {
                        Ok(result) => {
                            let seq = result?;
                            return Ok(Answer::Ack(None, Some(seq)).into());
                        }
                        Err(_) if attempt == 0 => continue,
                        Err(_) => break,
                    }
                }
                Err(Refusal::new(
                    codes::UNAVAILABLE,
                    "the conversation is restarting; try again",
                ))
            }
            ClientFrame::ConversationSwitchChannel(s) => {
                let (id, record) = self.known_conversation(&s.conversation_id)?;
                self.owns(&record)?;
                self.run(Command::SwitchChannel {
                    conversation: id,
                    channel: s.channel,
                })
            }
            ClientFrame::ConversationAbandon(c) => {
                let (id, record) = self.known_conversation(&c.conversation_id)?;
                self.owns(&record)?;
                self.run(Command::Abandon { conversation: id })
            }
            ClientFrame::ConversationClose(c) => {
                let (id, record) = self.known_conversation(&c.conversation_id)?;
                self.owns(&record)?;
                self.run(Command::Close { conversation: id })
            }
            ClientFrame::AgentLogin(l) => {
                if let Some(bound) = &self.principal.agent_id {
                    if *bound != l.agent_id {
                        return Err(Refusal::new(
                            codes::FORBIDDEN,
                            "this token may not log in as that agent",
                        ));
                    }
                }
                if let Some(current) = &self.agent {
                    if **current != *l.agent_id {
                        return Err(Refusal::new(
                            codes::INVALID_STATE,
                            format!(
                                "this session is logged in as `{current}`; open another connection"
                            ),
                        ));
                    }
                }
                if l.agent_id.is_empty() {
                    return Err(Refusal::new(
                        codes::INVALID_FIELD,
                        "agent_id must not be empty",
                    ));
                }
                let msg = LoginAgent {
                    agent_id: l.agent_id.clone(),
                    name: l.name,
                    skills: l.skills,
                    capacity: l.capacity,
                    max_total: l.max_total,
                    session: self.handle.clone(),
                };
                let seq = route(&self.hub, msg).await??;
                self.agent = Some(l.agent_id.as_str().into());
                Ok(Answer::Ack(None, Some(seq)).into())
            }
            ClientFrame::AgentStatus(s) => {
                let agent = self.me()?;
                let status = match s.status {
                    WireStatus::Available => AgentStatus::Available,
                    WireStatus::Away => AgentStatus::Away,
                    WireStatus::Offline => AgentStatus::Offline,
                };
                // The router writes the status to the store (and the journal).
                self.run(Command::AgentSetStatus { agent, status })
            }
            ClientFrame::AgentHeartbeat(_) => Ok(Answer::Ack(None, None).into()),
            ClientFrame::OfferAccept(o) => {
                let agent = self.me()?;
                let offer = parse_offer(&o.offer_id)?;
                self.run(Command::Accept { agent, offer })
            }
            ClientFrame::OfferReject(o) => {
                let agent = self.me()?;
                let offer = parse_offer(&o.offer_id)?;
                self.run(Command::Reject { agent, offer })
            }
            ClientFrame::ConversationComplete(c) => {
                let agent = self.me()?;
                let conversation = parse_conversation(&c.conversation_id)?;
                self.run(Command::Complete {
                    agent,
                    conversation,
                })
            }
            ClientFrame::ConversationTransfer(t) => {
                let agent = self.me()?;
                let conversation = parse_conversation(&t.conversation_id)?;
                let target = match (t.queue, t.agent_id) {
                    (Some(q), None) => TransferTarget::Queue(q),
                    (None, Some(a)) => TransferTarget::Agent(a.as_str().into()),
                    _ => {
                        return Err(Refusal::new(
                            codes::INVALID_FIELD,
                            "give exactly one of `queue` or `agent_id`",
                        ))
                    }
                };
                self.run(Command::Transfer {
                    agent,
                    conversation,
                    target,
                })
            }
            ClientFrame::Subscribe(_) => {
                self.hub.subscribe(self.handle.clone());
                Ok(Answer::Ack(None, None).into())
            }
            ClientFrame::Stats(_) => {
                Ok(Answer::Frame(Box::new(stats_frame(&self.hub, None))).into())
            }
        }
    }

    /// Runs one core command through the router; it is acked once the
    /// router has answered and the change is durable.
    fn run(&self, command: Command) -> Result<Handled, Refusal> {
        Ok(self.send_quietly(RunCommand(command)))
    }

    /// The agent this session is logged in as.
    fn me(&self) -> Result<AgentId, Refusal> {
        self.agent
            .clone()
            .ok_or_else(|| Refusal::new(codes::NOT_LOGGED_IN, "send agent.login first"))
    }

    fn known_conversation(
        &self,
        wire_id: &str,
    ) -> Result<(ConversationId, ConversationRecord), Refusal> {
        let id = parse_conversation(wire_id)?;
        let record = self.hub.store.conversation(id).ok_or_else(|| {
            Refusal::new(
                codes::UNKNOWN_CONVERSATION,
                format!("unknown conversation `{wire_id}`"),
            )
        })?;
        Ok((id, record))
    }

    /// A connector acts only on conversations its token opened.
    fn owns(&self, record: &ConversationRecord) -> Result<(), Refusal> {
        if *record.owner == *self.principal.name {
            Ok(())
        } else {
            Err(Refusal::new(
                codes::FORBIDDEN,
                format!(
                    "conversation {} was opened by another connector",
                    record.key
                ),
            ))
        }
    }

    /// Unregisters the session; an agent's disconnect goes to the core.
    fn cleanup(&mut self) {
        self.hub.remove_session(self.handle.id);
        if let Some(agent) = self.agent.take() {
            if self.hub.detach_agent_session(&agent, self.handle.id) {
                // The core marks a disconnected agent offline without an effect.
                self.hub.store.update_agent(&agent, |a| {
                    a.connected = false;
                    a.status = AgentStatus::Offline;
                });
                if let Some(addr) = self.hub.agent(&agent) {
                    addr.do_send(SessionClosed {
                        session_id: self.handle.id,
                    });
                }
                self.hub
                    .router()
                    .do_send(RunCommand(Command::AgentDisconnected { agent }));
            }
        }
    }
}

/// Whether a request's checks read what earlier requests of the same
/// session change, so that those must have been routed first: a login
/// (every agent request needs it), a message (its sender must hold the
/// conversation) and `stats`.
fn reads_earlier_changes(frame: &ClientFrame) -> bool {
    matches!(
        frame,
        ClientFrame::AgentLogin(_) | ClientFrame::ConversationMessage(_) | ClientFrame::Stats(_)
    )
}

/// The answer a routed request's reply stands for.
fn routed_answer(answered: Result<Routed, Gone>) -> Result<Answer, Refusal> {
    match answered {
        Ok(Ok(done)) => Ok(Answer::Ack(
            match done.value {
                Reply::Opened(id) => Some(id.to_string()),
                Reply::Done => None,
            },
            Some(done.seq),
        )),
        Ok(Err(e)) => Err(e.into()),
        Err(Gone) => Err(router_restarting()),
    }
}

fn router_restarting() -> Refusal {
    Refusal::new(codes::UNAVAILABLE, "the router is restarting; try again")
}

/// The frame that answers request `req_id`, and the journal record it waits
/// for (0: none).
fn reply_frame(req_id: Option<Value>, result: Result<Answer, Refusal>) -> (Seq, ServerFrame) {
    match result {
        Ok(Answer::Ack(conversation_id, seq)) => (
            seq.unwrap_or(0),
            ServerFrame::Ack {
                req_id,
                conversation_id,
            },
        ),
        Ok(Answer::Frame(frame)) => (
            0,
            match *frame {
                ServerFrame::Stats {
                    queues,
                    agents,
                    channels,
                    ..
                } => ServerFrame::Stats {
                    req_id,
                    queues,
                    agents,
                    channels,
                },
                other => other,
            },
        ),
        Err(refusal) => {
            metrics::error(refusal.code);
            (
                0,
                ServerFrame::Error {
                    req_id,
                    code: refusal.code,
                    message: refusal.message,
                },
            )
        }
    }
}

/// Resolves once the router has filled the slot of the first held reply
/// (pending forever when that reply is not a routed one).
async fn front_filled(pending: &VecDeque<Held>) {
    match pending.front() {
        Some(Held::Routed(_, slot)) => slot.filled(false).await,
        _ => std::future::pending().await,
    }
}

/// Waits for the journal's watermark to move; `None` when it never will
/// (the journal thread is gone). Never resolves without a journal.
async fn durable_changed(durable: &mut Option<watch::Receiver<Watermark>>) -> Option<Watermark> {
    match durable {
        None => std::future::pending().await,
        Some(rx) => match rx.changed().await {
            Ok(()) => Some(*rx.borrow_and_update()),
            Err(_) => {
                let last = *rx.borrow();
                *durable = None;
                Some(Watermark {
                    failed: true,
                    ..last
                })
            }
        },
    }
}

/// The reply for a change the journal could not make durable.
fn not_durable(frame: ServerFrame, failed: JournalFailed) -> ServerFrame {
    match frame {
        ServerFrame::Ack { req_id, .. } => {
            metrics::error(codes::UNAVAILABLE);
            ServerFrame::Error {
                req_id,
                code: codes::UNAVAILABLE,
                message: format!("the change could not be made durable: {failed}"),
            }
        }
        other => other,
    }
}

fn parse_conversation(wire_id: &str) -> Result<ConversationId, Refusal> {
    ConversationId::parse(wire_id).ok_or_else(|| {
        Refusal::new(
            codes::UNKNOWN_CONVERSATION,
            format!("unknown conversation `{wire_id}`"),
        )
    })
}

fn parse_offer(wire_id: &str) -> Result<OfferId, Refusal> {
    OfferId::parse(wire_id)
        .ok_or_else(|| Refusal::new(codes::UNKNOWN_OFFER, format!("unknown offer `{wire_id}`")))
}

/// Sends a message to the router; a dead router is rebuilt and the message
/// sent once more (it was never handled: the mailbox closed before it).
async fn route<M>(hub: &Arc<Hub>, msg: M) -> Result<M::Result, Refusal>
where
    M: actix::Message + Clone + Send + 'static,
    M::Result: Send,
    crate::actors::router::RouterActor: actix::Handler<M>,
{
    for attempt in 0..2 {
        match hub.router().send(msg.clone()).await {
            Ok(result) => return Ok(result),
            Err(e) if attempt == 0 => {
                tracing::warn!(error = %e, "router mailbox closed; retrying on a rebuilt router")
            }
            Err(_) => break,
        }
    }
    Err(router_restarting())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(heartbeat: u64, timeout: u64) -> WsLimits {
        WsLimits {
            max_frame_bytes: 1024,
            outbound_buffer_frames: 8,
            heartbeat_interval: Duration::from_secs(heartbeat),
            client_timeout: Duration::from_secs(timeout),
        }
    }

    #[test]
    fn held_replies_are_a_quarter_of_the_outbox_within_bounds() {
        let with = |frames| WsLimits {
            outbound_buffer_frames: frames,
            ..limits(5, 15)
        };
        assert_eq!(with(1).max_held_replies(), 1);
        assert_eq!(with(64).max_held_replies(), 16);
        assert_eq!(with(2048).max_held_replies(), 512);
        assert_eq!(with(1 << 20).max_held_replies(), MAX_HELD_REPLIES);
    }

    #[test]
    fn a_client_that_spoke_recently_is_not_pinged() {
        let l = limits(5, 15);
        assert!(!l.needs_ping(Duration::from_millis(4_900)));
        assert!(l.needs_ping(Duration::from_secs(5)));
        assert!(l.needs_ping(Duration::from_secs(12)));
    }

    #[test]
    fn a_tight_timeout_pings_on_every_heartbeat() {
        // Skipping a ping must never let the next heartbeat find the client
        // over its timeout without a ping it could have answered.
        let l = limits(5, 9);
        assert!(l.needs_ping(Duration::ZERO));
        for idle_ms in (0..15_000).step_by(100) {
            let idle = Duration::from_millis(idle_ms);
            let next = idle + l.heartbeat_interval;
            if !l.needs_ping(idle) {
                assert!(next + l.heartbeat_interval <= l.client_timeout, "{idle:?}");
            }
        }
    }
}
