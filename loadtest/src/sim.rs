//! The simulation: one task per agent connection and per connector
//! connection, an open-loop Poisson arrival scheduler, and the drain/sweep
//! that drives every conversation to an end so the ledger can judge it.
//!
//! Open loop: arrivals are scheduled on their own clock and never wait for
//! the engine; every latency is measured from the time a frame was *due*
//! (the scheduled arrival, the end of an accept delay or a handle time), so a
//! slow engine shows up as latency rather than as fewer requests
//! (no coordinated omission).
//!
//! Tasks never panic on what the engine sends and never `unwrap()` a send: a
//! failed send ends that connection's task and is counted as an error.

use crate::book::{AgentIx, Book, ConvState, OfferInfo, Seq};
use crate::dist::{pick_weighted, poisson_gap};
use crate::net::{Target, Ws};
use crate::scenario::{AgentProfile, Scenario};
use crate::wire::{self, Incoming};
use anyhow::{bail, Context};
use futures_util::stream::{SplitSink, StreamExt};
use futures_util::SinkExt;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

/// Where the engine is and how to authenticate.
#[derive(Debug, Clone)]
pub struct Connection {
    pub target: Target,
    pub connector_token: String,
    pub agent_token: String,
    /// Simultaneous connection attempts while setting up.
    pub connect_concurrency: usize,
}

/// State shared by every task of one run.
pub struct Shared {
    book: Mutex<Book>,
    pub frames_out: AtomicU64,
    pub frames_in: AtomicU64,
    /// Set once the run sweeps: agents complete at once, nothing new is scheduled.
    sweeping: AtomicBool,
    /// Set once the run stops: a closed connection is then expected.
    stopping: AtomicBool,
    scenario: Arc<Scenario>,
    customer_prefix: String,
    agent_tx: Vec<mpsc::UnboundedSender<AgentMsg>>,
    conn_tx: Vec<mpsc::UnboundedSender<ConnMsg>>,
}

impl Shared {
    /// The ledger. A poisoned lock (a panicked task) still holds valid counts.
    pub fn book(&self) -> MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn notify_assigned(&self, news: Option<(usize, Seq, u32)>) {
        if let Some((connector, seq, leg)) = news {
            if let Some(tx) = self.conn_tx.get(connector) {
                let _ = tx.send(ConnMsg::Assigned { seq, leg });
            }
        }
    }
}

/// Work for an agent task.
#[derive(Debug)]
enum AgentMsg {
    Accept {
        offer: String,
        info: OfferInfo,
        due: Instant,
    },
    Reject {
        offer: String,
        due: Instant,
    },
    Complete {
        seq: Seq,
        leg: u32,
        due: Instant,
    },
}

/// Work for a connector task.
#[derive(Debug)]
enum ConnMsg {
    Open {
        scheduled: Instant,
        mix: usize,
        will_switch: bool,
        patience: Option<Duration>,
    },
    Assigned {
        seq: Seq,
        leg: u32,
    },
    Abandon {
        seq: Seq,
        due: Instant,
    },
    Switch {
        seq: Seq,
        due: Instant,
    },
    Message {
        seq: Seq,
        due: Instant,
    },
}

/// What a sent request was, to interpret its ack or error.
#[derive(Debug)]
enum Req {
    Login,
    Status,
    Accept { offer: String, info: OfferInfo },
    Reject,
    Complete { seq: Seq },
    Open { seq: Seq },
    Abandon { seq: Seq },
    Switch,
    Message,
}

/// Requests one connection may have unanswered before it takes more work.
///
/// The engine disconnects a client whose outbound queue fills
/// (`server.outbound_buffer_frames`, 256 by default), and a client that is
/// busy writing a long burst is not reading its acks; so a burst (the sweep
/// abandoning 100 000 waiting conversations, say) is paced by the acks
/// instead. Work that waits here is still timed from when it was due.
const MAX_IN_FLIGHT: usize = 128;

/// Poisson arrival times at `rate` from `start` until `end`, each sent on
/// the returned channel when it falls due.
///
/// A thread of its own sleeps until each one (`nanosleep`, tens of
/// microseconds late at most): Tokio's timer has a 1 ms granularity, and
/// sending on it made every open up to 1 ms late (0.5 ms on average), which
/// every open→offer figure, measured from the scheduled time, charged to
/// the engine. The thread ends at `end` or when the receiver is dropped.
fn pacer(start: Instant, end: Instant, rate: f64, seed: u64) -> mpsc::UnboundedReceiver<Instant> {
    let (tx, rx) = mpsc::unbounded_channel();
    let spawned = std::thread::Builder::new()
        .name("arrival-pacer".into())
        .spawn(move || {
            let mut rng = SmallRng::seed_from_u64(seed);
            let mut next = start;
            loop {
                next += poisson_gap(&mut rng, rate);
                if next >= end {
                    return;
                }
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                }
                if tx.send(next).is_err() {
                    return;
                }
            }
        });
    if let Err(e) = spawned {
        // No thread, no arrivals: the run reports none rather than hanging.
        eprintln!("cannot start the arrival pacer thread: {e}");
    }
    rx
}

/// Sends `msg` to the task behind `tx` at `due` (at once when it is due already).
fn send_at<T: Send + 'static>(tx: &mpsc::UnboundedSender<T>, due: Instant, msg: T) {
    if due <= Instant::now() {
        let _ = tx.send(msg);
        return;
    }
    let tx = tx.clone();
    tokio::spawn(async move {
        tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
        let _ = tx.send(msg);
    });
}

/// One connection's outgoing side: frames are queued while a batch of work
/// is handled, then written with a single flush.
struct Out {
    sink: SplitSink<Ws, Message>,
    queue: Vec<String>,
    next_req: u64,
    pending: HashMap<u64, (Req, Instant)>,
}

impl Out {
    fn new(sink: SplitSink<Ws, Message>) -> Out {
        Out {
            sink,
            queue: Vec::new(),
            next_req: 1,
            pending: HashMap::new(),
        }
    }

    /// Queues a request; `build` gets its req_id. `due` is when it was meant to go.
    fn request(&mut self, req: Req, due: Instant, build: impl FnOnce(u64) -> String) {
        let id = self.next_req;
        self.next_req += 1;
        self.pending.insert(id, (req, due));
        self.queue.push(build(id));
    }

    async fn flush(&mut self, shared: &Shared) -> bool {
        if self.queue.is_empty() {
            return true;
        }
        let n = self.queue.len() as u64;
        for text in self.queue.drain(..) {
            if self.sink.feed(Message::text(text)).await.is_err() {
                return false;
            }
        }
        if self.sink.flush().await.is_err() {
            return false;
        }
        shared.frames_out.fetch_add(n, Ordering::Relaxed);
        true
    }

    async fn close(mut self) {
        let _ = self.sink.send(Message::Close(None)).await;
    }
}

/// A started simulation: connections are up and agents are logged in.
pub struct Sim {
    pub shared: Arc<Shared>,
    stop_tx: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    rng: SmallRng,
    mix_weights: Vec<f64>,
    next_connector: usize,
    /// Arrivals scheduled so far in the whole run (capped by `max_conversations`).
    pub scheduled: u64,
    /// When the first arrival phase began.
    pub started: Option<Instant>,
    /// Seconds during which arrivals were generated.
    pub arrival_secs: f64,
}

impl Sim {
    /// Connects and logs in every agent, then connects the connectors.
    pub async fn start(scenario: Arc<Scenario>, conn: &Connection) -> anyhow::Result<Sim> {
        let n_agents = scenario.agents.count;
        let n_conn = scenario.arrivals.connectors;
        let mut agent_rx = Vec::with_capacity(n_agents);
        let mut agent_tx = Vec::with_capacity(n_agents);
        for _ in 0..n_agents {
            let (tx, rx) = mpsc::unbounded_channel();
            agent_tx.push(tx);
            agent_rx.push(rx);
        }
        let mut conn_rx = Vec::with_capacity(n_conn);
        let mut conn_tx = Vec::with_capacity(n_conn);
        for _ in 0..n_conn {
            let (tx, rx) = mpsc::unbounded_channel();
            conn_tx.push(tx);
            conn_rx.push(rx);
        }
        // Agent profiles, picked by weight with the scenario's seed.
        let mut rng = SmallRng::seed_from_u64(scenario.seed);
        let weights: Vec<f64> = scenario.agents.profiles.iter().map(|p| p.weight).collect();
        let profiles: Vec<usize> = (0..n_agents)
            .map(|_| pick_weighted(&mut rng, &weights).unwrap_or(0))
            .collect();
        let mut book = Book::new(
            scenario
                .arrivals
                .mix
                .iter()
                .map(|m| m.skills.clone())
                .collect(),
        );
        for (ix, p) in profiles.iter().enumerate() {
            let pr = &scenario.agents.profiles[*p];
            book.add_agent(ix, pr.skills.clone(), pr.capacity.clone());
        }
        // A fresh customer prefix per run, so runs against one engine never collide.
        let run_tag = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() % 1_000_000_000)
            .unwrap_or(0);
        let shared = Arc::new(Shared {
            book: Mutex::new(book),
            frames_out: AtomicU64::new(0),
            frames_in: AtomicU64::new(0),
            sweeping: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            customer_prefix: format!("lt{run_tag}-"),
            scenario: scenario.clone(),
            agent_tx,
            conn_tx,
        });
        let (stop_tx, stop_rx) = watch::channel(false);

        // Agents: connect with bounded concurrency, then wait for every login ack.
        let mut tasks = Vec::with_capacity(n_agents + n_conn);
        let mut ready = Vec::with_capacity(n_agents);
        let agent_ws = connect_many(conn, "/v1/ws", &conn.agent_token, n_agents)
            .await
            .context("connecting agents")?;
        for ((ix, ws), rx) in agent_ws.into_iter().enumerate().zip(agent_rx) {
            let (ready_tx, ready_rx) = oneshot::channel();
            ready.push(ready_rx);
            let profile = scenario.agents.profiles[profiles[ix]].clone();
            let agent = AgentTask {
                ix,
                id: format!("{}{}", scenario.agents.id_prefix, ix),
                profile,
                shared: shared.clone(),
                rng: SmallRng::seed_from_u64(scenario.seed ^ (0xA6E7 + ix as u64)),
                ready: Some(ready_tx),
            };
            tasks.push(tokio::spawn(drive(agent, ws, rx, stop_rx.clone())));
        }
        let login_deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        for (ix, r) in ready.into_iter().enumerate() {
            match tokio::time::timeout_at(login_deadline, r).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(code))) => bail!("agent {ix}: login refused: {code}"),
                Ok(Err(_)) => {
                    bail!("agent {ix}: connection ended before its login was acknowledged")
                }
                Err(_) => bail!("agent logins not acknowledged within 30 s"),
            }
        }
        let conn_ws = connect_many(conn, "/v1/ws", &conn.connector_token, n_conn)
            .await
            .context("connecting connectors")?;
        for ((ix, ws), rx) in conn_ws.into_iter().enumerate().zip(conn_rx) {
            let task = ConnectorTask {
                ix,
                shared: shared.clone(),
                rng: SmallRng::seed_from_u64(scenario.seed ^ (0xC0 + ix as u64)),
            };
            tasks.push(tokio::spawn(drive(task, ws, rx, stop_rx.clone())));
        }
        let mix_weights = scenario.arrivals.mix.iter().map(|m| m.weight).collect();
        Ok(Sim {
            shared,
            stop_tx,
            tasks,
            rng,
            mix_weights,
            next_connector: 0,
            scheduled: 0,
            started: None,
            arrival_secs: 0.0,
        })
    }

    /// Generates Poisson arrivals at `rate` for `secs`, never more than the
    /// scenario's `max_conversations` in the whole run. Returns how many were scheduled.
    pub async fn arrivals(&mut self, rate: f64, secs: f64) -> u64 {
        let start = Instant::now();
        self.started.get_or_insert(start);
        let end = start + Duration::from_secs_f64(secs);
        let sc = self.shared.scenario.clone();
        let cap = sc.max_conversations;
        let mut sent = 0;
        let mut due = pacer(start, end, rate, self.rng.random());
        loop {
            if self.scheduled >= cap {
                break;
            }
            let Some(next) = due.recv().await else {
                break;
            };
            let Some(mix) = pick_weighted(&mut self.rng, &self.mix_weights) else {
                break;
            };
            let will_switch = sc.arrivals.switch_probability > 0.0
                && self.rng.random_bool(sc.arrivals.switch_probability);
            let patience = sc
                .arrivals
                .patience
                .as_ref()
                .map(|d| d.sample(&mut self.rng));
            let c = self.next_connector % self.shared.conn_tx.len();
            self.next_connector += 1;
            let _ = self.shared.conn_tx[c].send(ConnMsg::Open {
                scheduled: next,
                mix,
                will_switch,
                patience,
            });
            sent += 1;
            self.scheduled += 1;
        }
        // Hold the phase's full length even when the cap ended it early.
        if Instant::now() < end {
            tokio::time::sleep_until(tokio::time::Instant::from_std(end)).await;
        }
        self.arrival_secs += secs;
        sent
    }

    /// Lets conversations finish for up to `drain_secs`, then sweeps: waiting
    /// ones are abandoned, assigned ones completed. Stops every task.
    pub async fn finish(mut self, drain_secs: f64) -> Arc<Shared> {
        let drain_end = Instant::now() + Duration::from_secs_f64(drain_secs);
        let settled = |book: &Book| book.unfinished().is_empty() && book.in_flight() == 0;
        while Instant::now() < drain_end && !settled(&self.shared.book()) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.shared.sweeping.store(true, Ordering::SeqCst);
        // 10 s, plus 1 s per 1000 conversations still to end (a large backlog
        // of waiting ones takes a while to abandon), at most 2 minutes.
        let backlog = self.shared.book().unfinished().len() as u64;
        let sweep_end = Instant::now() + Duration::from_secs((10 + backlog / 1000).min(120));
        const REASK: Duration = Duration::from_secs(5);
        let mut asked: HashMap<(Seq, u32, ConvState), Instant> = HashMap::new();
        loop {
            let now = Instant::now();
            let (work, in_flight) = {
                let book = self.shared.book();
                let work = book
                    .unfinished()
                    .into_iter()
                    .map(|(seq, state, holder, leg)| {
                        (seq, state, holder, leg, book.connector_of(seq))
                    })
                    .collect::<Vec<_>>();
                (work, book.in_flight())
            };
            // Done when nothing is left to end and every end sent has been answered.
            if (work.is_empty() && in_flight == 0) || now >= sweep_end {
                break;
            }
            for (seq, state, holder, leg, connector) in work {
                // Ask once; ask again only if it is still unfinished seconds later
                // (an abandon that lost a race to an accept, say).
                let again = asked
                    .get(&(seq, leg, state))
                    .is_none_or(|at: &Instant| now.saturating_duration_since(*at) >= REASK);
                if !again {
                    continue;
                }
                asked.insert((seq, leg, state), now);
                match (state, holder) {
                    (ConvState::Waiting, _) => {
                        let _ =
                            self.shared.conn_tx[connector].send(ConnMsg::Abandon { seq, due: now });
                    }
                    (ConvState::Assigned, Some(agent)) => {
                        let _ = self.shared.agent_tx[agent].send(AgentMsg::Complete {
                            seq,
                            leg,
                            due: now,
                        });
                    }
                    _ => {}
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        // Let the last acks arrive, then close every connection.
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.shared.stopping.store(true, Ordering::SeqCst);
        let _ = self.stop_tx.send(true);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        for t in self.tasks.drain(..) {
            if tokio::time::timeout_at(deadline, t).await.is_err() {
                break;
            }
        }
        self.shared
    }
}

/// Opens `n` WebSockets to `path`, at most `conn.connect_concurrency` at a time.
pub async fn connect_many(
    conn: &Connection,
    path: &str,
    token: &str,
    n: usize,
) -> anyhow::Result<Vec<Ws>> {
    let results: Vec<anyhow::Result<Ws>> = futures_util::stream::iter(0..n)
        .map(|_| conn.target.connect(path, token))
        .buffered(conn.connect_concurrency.max(1))
        .collect()
        .await;
    results.into_iter().collect()
}

/// One simulated WebSocket peer (an agent desktop or a gateway): what it
/// does on a scheduled message and on a frame from the engine. [`drive`] runs
/// the connection loop that both share.
trait Peer {
    type Msg;
    /// State the loop keeps beside the peer.
    type Local: Default;
    /// Names the peer in error codes (`{KIND}_connection_closed`).
    const KIND: &'static str;
    fn shared(&self) -> &Shared;
    /// Sends what opens the session (e.g. a login).
    fn start(&mut self, _out: &mut Out) {}
    fn perform(&mut self, msg: Self::Msg, out: &mut Out, local: &mut Self::Local);
    fn on_frame(&mut self, frame: Incoming, out: &mut Out, local: &mut Self::Local);
    fn lost_connection(&mut self, code: &str);
}

/// A peer's connection loop: flushes what is due, performs scheduled
/// messages while fewer than [`MAX_IN_FLIGHT`] requests are unanswered,
/// handles frames, and stops on `stop` or when the connection fails.
async fn drive<P: Peer>(
    mut peer: P,
    ws: Ws,
    mut rx: mpsc::UnboundedReceiver<P::Msg>,
    mut stop: watch::Receiver<bool>,
) {
    let (sink, mut stream) = ws.split();
    let mut out = Out::new(sink);
    let mut local = P::Local::default();
    peer.start(&mut out);
    loop {
        if !out.flush(peer.shared()).await {
            peer.lost_connection("send_failed");
            return;
        }
        tokio::select! {
            _ = stop.changed() => break,
            msg = rx.recv(), if out.pending.len() < MAX_IN_FLIGHT => match msg {
                Some(m) => peer.perform(m, &mut out, &mut local),
                None => break,
            },
            frame = stream.next() => match frame {
                Some(Ok(Message::Text(t))) => {
                    peer.shared().frames_in.fetch_add(1, Ordering::Relaxed);
                    peer.on_frame(wire::parse(t.as_str()), &mut out, &mut local);
                }
                Some(Ok(Message::Close(_))) | None => {
                    peer.lost_connection(&format!("{}_connection_closed", P::KIND));
                    return;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) => {
                    peer.lost_connection(&format!("{}_connection_error", P::KIND));
                    return;
                }
            },
        }
    }
    out.close().await;
}

struct AgentTask {
    ix: AgentIx,
    id: String,
    profile: AgentProfile,
    shared: Arc<Shared>,
    rng: SmallRng,
    ready: Option<oneshot::Sender<Result<(), String>>>,
}

impl Peer for AgentTask {
    type Msg = AgentMsg;
    /// Conversations this agent has seen end.
    type Local = HashSet<String>;
    const KIND: &'static str = "agent";

    fn shared(&self) -> &Shared {
        &self.shared
    }

    fn start(&mut self, out: &mut Out) {
        let (skills, capacity) = (&self.profile.skills, &self.profile.capacity);
        let id = &self.id;
        out.request(Req::Login, Instant::now(), |r| {
            wire::agent_login(r, id, skills, capacity)
        });
    }

    fn perform(&mut self, msg: AgentMsg, out: &mut Out, ended: &mut HashSet<String>) {
        AgentTask::perform(self, msg, out, ended);
    }

    fn on_frame(&mut self, frame: Incoming, out: &mut Out, ended: &mut HashSet<String>) {
        AgentTask::on_frame(self, frame, out, ended);
    }

    fn lost_connection(&mut self, code: &str) {
        AgentTask::lost_connection(self, code);
    }
}

impl AgentTask {
    fn lost_connection(&mut self, code: &str) {
        if !self.shared.stopping.load(Ordering::SeqCst) {
            self.shared.book().error(code);
        }
        if let Some(r) = self.ready.take() {
            let _ = r.send(Err(code.to_string()));
        }
    }

    fn perform(&mut self, msg: AgentMsg, out: &mut Out, ended: &mut HashSet<String>) {
        match msg {
            AgentMsg::Accept { offer, info, due } => {
                if ended.remove(&offer) {
                    return;
                }
                let o = offer.clone();
                out.request(Req::Accept { offer, info }, due, |r| {
                    wire::offer_accept(r, &o)
                });
            }
            AgentMsg::Reject { offer, due } => {
                if ended.remove(&offer) {
                    return;
                }
                self.shared.book().reject_sent(self.ix, &offer);
                out.request(Req::Reject, due, |r| wire::offer_reject(r, &offer));
            }
            AgentMsg::Complete { seq, leg, due } => {
                let id = {
                    let mut book = self.shared.book();
                    if !book.holds(self.ix, seq, leg) {
                        return;
                    }
                    let Some(id) = book.conversation_id(seq).map(str::to_string) else {
                        return;
                    };
                    book.complete_sent(Instant::now(), self.ix, seq);
                    id
                };
                out.request(Req::Complete { seq }, due, |r| wire::complete(r, &id));
            }
        }
    }

    fn on_frame(&mut self, frame: Incoming, out: &mut Out, ended: &mut HashSet<String>) {
        let now = Instant::now();
        match frame {
            Incoming::Ack { req_id, .. } => {
                let Some((req, due)) = req_id.and_then(|r| out.pending.remove(&r)) else {
                    return;
                };
                let mut book = self.shared.book();
                // Logins happen while connecting, before the measured run.
                if !matches!(req, Req::Login) {
                    book.ack_rtt(now.saturating_duration_since(due));
                }
                match req {
                    Req::Login => {
                        drop(book);
                        if let Some(r) = self.ready.take() {
                            let _ = r.send(Ok(()));
                        }
                    }
                    Req::Accept { offer, info } => {
                        let news = book.accept_acked(now, self.ix, &offer);
                        drop(book);
                        self.shared.notify_assigned(news);
                        let sweeping = self.shared.sweeping.load(Ordering::SeqCst);
                        if sweeping || !info.hold_for_switch {
                            let handle = if sweeping {
                                Duration::ZERO
                            } else {
                                let h = self.profile.handle_time.sample(&mut self.rng);
                                let mut book = self.shared.book();
                                book.counts.handle_samples += 1;
                                book.counts.handle_ms_total += h.as_secs_f64() * 1000.0;
                                h
                            };
                            send_at(
                                &self.shared.agent_tx[self.ix],
                                now + handle,
                                AgentMsg::Complete {
                                    seq: info.seq,
                                    leg: info.leg,
                                    due: now + handle,
                                },
                            );
                        }
                    }
                    Req::Complete { seq } => book.complete_acked(seq),
                    _ => {}
                }
            }
            Incoming::Error { req_id, code, .. } => {
                let req = req_id.and_then(|r| out.pending.remove(&r));
                let mut book = self.shared.book();
                match req {
                    Some((Req::Login, _)) => {
                        book.error(&format!("login_{code}"));
                        drop(book);
                        if let Some(r) = self.ready.take() {
                            let _ = r.send(Err(code));
                        }
                    }
                    // The engine ended the offer first (withdrawn, expired); an expiry
                    // also arrives as `agent.status away`, handled below.
                    Some((Req::Accept { offer, .. }, _)) => book.accept_failed(self.ix, &offer),
                    // A reject racing the offer's end is harmless.
                    Some((Req::Reject, _))
                        if code == "unknown_offer" || code == "invalid_state" => {}
                    Some((Req::Complete { seq }, _)) => book.complete_failed(seq, &code),
                    _ => book.error(&code),
                }
            }
            Incoming::Offer {
                offer_id,
                conversation_id,
                customer_id,
                channel,
            } => {
                let seq = customer_id
                    .as_deref()
                    .and_then(|c| wire::seq_of_customer(c, &self.shared.customer_prefix));
                let info = self.shared.book().offer_received(
                    now,
                    self.ix,
                    &offer_id,
                    &conversation_id,
                    seq,
                    &channel,
                );
                let Some(info) = info else { return };
                let due = now + self.profile.accept_delay.sample(&mut self.rng);
                let reject = self.profile.reject_probability > 0.0
                    && !self.shared.sweeping.load(Ordering::SeqCst)
                    && self.rng.random_bool(self.profile.reject_probability);
                let msg = if reject {
                    AgentMsg::Reject {
                        offer: offer_id,
                        due,
                    }
                } else {
                    AgentMsg::Accept {
                        offer: offer_id,
                        info,
                        due,
                    }
                };
                send_at(&self.shared.agent_tx[self.ix], due, msg);
            }
            Incoming::OfferEnded { offer_id } => {
                self.shared.book().offer_ended(self.ix, &offer_id);
                ended.insert(offer_id);
            }
            Incoming::StatusChanged { status } => {
                // Put `away` by the engine (an offer expired): come back, unless the run is ending.
                if status == "away" && !self.shared.stopping.load(Ordering::SeqCst) {
                    self.shared.book().counts.made_away += 1;
                    out.request(Req::Status, now, |r| wire::agent_status(r, "available"));
                }
            }
            Incoming::Malformed => self.shared.book().error("malformed_frame"),
            Incoming::Assigned { .. } | Incoming::Sla | Incoming::Other(_) => {}
        }
    }
}

struct ConnectorTask {
    ix: usize,
    shared: Arc<Shared>,
    rng: SmallRng,
}

impl Peer for ConnectorTask {
    type Msg = ConnMsg;
    /// Each waiting customer's patience, by open request.
    type Local = HashMap<Seq, Duration>;
    const KIND: &'static str = "connector";

    fn shared(&self) -> &Shared {
        &self.shared
    }

    fn perform(&mut self, msg: ConnMsg, out: &mut Out, patience: &mut HashMap<Seq, Duration>) {
        ConnectorTask::perform(self, msg, out, patience);
    }

    fn on_frame(&mut self, frame: Incoming, out: &mut Out, patience: &mut HashMap<Seq, Duration>) {
        ConnectorTask::on_frame(self, frame, out, patience);
    }

    fn lost_connection(&mut self, code: &str) {
        ConnectorTask::lost_connection(self, code);
    }
}

impl ConnectorTask {
    fn lost_connection(&self, code: &str) {
        if !self.shared.stopping.load(Ordering::SeqCst) {
            self.shared.book().error(code);
        }
    }

    fn tx(&self) -> &mpsc::UnboundedSender<ConnMsg> {
        &self.shared.conn_tx[self.ix]
    }

    fn perform(&mut self, msg: ConnMsg, out: &mut Out, patience: &mut HashMap<Seq, Duration>) {
        let sc = self.shared.scenario.clone();
        match msg {
            ConnMsg::Open {
                scheduled,
                mix,
                will_switch,
                patience: p,
            } => {
                let m = &sc.arrivals.mix[mix];
                let seq =
                    self.shared
                        .book()
                        .open_sent(scheduled, self.ix, mix, &m.channel, will_switch);
                if let Some(p) = p {
                    patience.insert(seq, p);
                }
                let customer = wire::customer_id(&self.shared.customer_prefix, seq);
                out.request(Req::Open { seq }, scheduled, |r| {
                    wire::open(
                        r,
                        &customer,
                        &m.channel,
                        m.queue.as_deref(),
                        &m.skills,
                        m.priority,
                    )
                });
            }
            ConnMsg::Assigned { seq, leg } => {
                if self.shared.sweeping.load(Ordering::SeqCst) {
                    return;
                }
                let now = Instant::now();
                let will_switch = self.shared.book().will_switch(seq);
                if leg == 0 && will_switch {
                    let due = now + sc.arrivals.switch_after.sample(&mut self.rng);
                    send_at(self.tx(), due, ConnMsg::Switch { seq, due });
                    return;
                }
                let mut due = now;
                for _ in 0..sc.arrivals.messages_per_conversation {
                    due += sc.arrivals.message_gap.sample(&mut self.rng);
                    send_at(self.tx(), due, ConnMsg::Message { seq, due });
                }
            }
            ConnMsg::Abandon { seq, due } => {
                let id = {
                    let mut book = self.shared.book();
                    if book.state(seq) != ConvState::Waiting {
                        return;
                    }
                    let Some(id) = book.conversation_id(seq).map(str::to_string) else {
                        return;
                    };
                    book.abandon_sent(seq);
                    id
                };
                out.request(Req::Abandon { seq }, due, |r| wire::abandon(r, &id));
            }
            ConnMsg::Switch { seq, due } => {
                let (id, to) = {
                    let mut book = self.shared.book();
                    if book.state(seq) != ConvState::Assigned {
                        return;
                    }
                    let Some(to) = sc.arrivals.mix[book.mix_of(seq)].switch_to.clone() else {
                        return;
                    };
                    let Some(id) = book.conversation_id(seq).map(str::to_string) else {
                        return;
                    };
                    book.switch_sent(seq, &to);
                    (id, to)
                };
                out.request(Req::Switch, due, |r| wire::switch_channel(r, &id, &to));
            }
            ConnMsg::Message { seq, due } => {
                let id = {
                    let mut book = self.shared.book();
                    if book.state(seq) != ConvState::Assigned {
                        return;
                    }
                    let Some(id) = book.conversation_id(seq).map(str::to_string) else {
                        return;
                    };
                    book.message_sent();
                    id
                };
                let text = "m".repeat(sc.arrivals.message_bytes);
                out.request(Req::Message, due, |r| wire::message(r, &id, &text));
            }
        }
    }

    fn on_frame(&mut self, frame: Incoming, out: &mut Out, patience: &mut HashMap<Seq, Duration>) {
        let now = Instant::now();
        match frame {
            Incoming::Ack {
                req_id,
                conversation_id,
            } => {
                let Some((req, due)) = req_id.and_then(|r| out.pending.remove(&r)) else {
                    return;
                };
                let mut book = self.shared.book();
                book.ack_rtt(now.saturating_duration_since(due));
                match req {
                    Req::Open { seq } => match conversation_id {
                        Some(id) => {
                            book.open_acked(seq, &id);
                            drop(book);
                            if let Some(p) = patience.remove(&seq) {
                                // Patience runs from the scheduled arrival.
                                let at = due + p;
                                send_at(self.tx(), at, ConnMsg::Abandon { seq, due: at });
                            }
                        }
                        None => book.open_failed(seq, "ack_without_conversation_id"),
                    },
                    Req::Abandon { seq } => book.abandon_acked(seq),
                    _ => {}
                }
            }
            Incoming::Error { req_id, code, .. } => {
                let req = req_id.and_then(|r| out.pending.remove(&r));
                let mut book = self.shared.book();
                match req {
                    Some((Req::Open { seq }, _)) => {
                        patience.remove(&seq);
                        book.open_failed(seq, &code);
                    }
                    Some((Req::Abandon { seq }, _)) => book.abandon_failed(seq, &code),
                    // A message racing the agent's complete is expected.
                    Some((Req::Message, _))
                        if code == "invalid_state" || code == "unknown_conversation" => {}
                    _ => book.error(&code),
                }
            }
            Incoming::Assigned {
                conversation_id, ..
            } => {
                let news = {
                    let mut book = self.shared.book();
                    match book.seq_of(&conversation_id) {
                        Some(seq) => book.assigned_pushed(now, seq),
                        None => None,
                    }
                };
                self.shared.notify_assigned(news);
            }
            Incoming::Malformed => self.shared.book().error("malformed_frame"),
            Incoming::Offer { .. }
            | Incoming::OfferEnded { .. }
            | Incoming::StatusChanged { .. }
            | Incoming::Sla
            | Incoming::Other(_) => {}
        }
    }
}
