//! The headline test: the real binary under WebSocket traffic, killed with
//! SIGKILL at a random moment, restarted on the same data dir; everything
//! acknowledged must be there, waiting conversations in their original
//! order, and routing must resume. Set `DURABILITY_SEED` to replay a run.

use crate::helpers::{base_config, http, AGENT, CONNECTOR, SUPERVISOR};
use futures_util::{SinkExt, StreamExt};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// One server process on a data dir.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    log: PathBuf,
}

impl Server {
    /// Starts the binary with snapshots every 0.2 s (so a run takes some).
    pub fn start(dir: &Path, config: &Path, run: usize) -> Server {
        Server::start_with(dir, config, run, "0.2")
    }

    /// Starts the binary with snapshots every `interval_secs`.
    pub fn start_with(dir: &Path, config: &Path, run: usize, interval_secs: &str) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let log = dir.join(format!("server-{run}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("SWITCHBOARD") {
                cmd.env_remove(name);
            }
        }
        let child = cmd
            .arg("--config")
            .arg(config)
            .env("SWITCHBOARD__server__listen", addr.to_string())
            .env("SWITCHBOARD__snapshot__interval_secs", interval_secs)
            .env("SWITCHBOARD__snapshot__keep", "2")
            .env("SWITCHBOARD__routing__reconnect_grace_secs", "300")
            // A fresh agent is offered every waiting conversation in one
            // burst (a hundred or more frames): room for all of them, so the
            // test does not depend on how fast the client reads.
            .env("SWITCHBOARD__server__outbound_buffer_frames", "4096")
            .env("SWITCHBOARD__logging__format", "text")
            .stdout(Stdio::from(out.try_clone().expect("clone")))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("start the binary");
        Server { child, addr, log }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for `/readyz`; returns the time it took.
    pub async fn ready(&mut self) -> Duration {
        let start = std::time::Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("server exited with {status}:\n{}", self.log_text());
            }
            if TcpStream::connect(self.addr).await.is_ok() {
                let (status, _) = http(self.addr, "GET", "/readyz", Some(SUPERVISOR)).await;
                if status == 200 {
                    return start.elapsed();
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "not ready after 30 s:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn sigkill(&mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }

    fn sigterm(&mut self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        let exit = self.child.wait().expect("wait");
        assert!(exit.success(), "graceful stop failed:\n{}", self.log_text());
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        http(self.addr, "GET", path, Some(SUPERVISOR)).await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A WebSocket client whose every call returns `None` once the server is gone.
pub struct Ws {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next: u64,
    seen: VecDeque<Value>,
}

impl Ws {
    pub async fn connect(addr: SocketAddr, token: &str) -> Option<Ws> {
        let mut request = format!("ws://{addr}/v1/ws").into_client_request().ok()?;
        request
            .headers_mut()
            .insert("Authorization", format!("Bearer {token}").parse().ok()?);
        let (ws, _) = tokio_tungstenite::connect_async(request).await.ok()?;
        if let MaybeTlsStream::Plain(tcp) = ws.get_ref() {
            let _ = tcp.set_nodelay(true);
        }
        Some(Ws {
            ws,
            next: 1,
            seen: VecDeque::new(),
        })
    }

    /// The `ack` of `frame`, or `None` (refused, or the server died).
    pub async fn ack(&mut self, frame: Value) -> Option<Value> {
        let reply = self.request(frame).await?;
        (reply["type"] == "ack").then_some(reply)
    }

    /// The `ack` or `error` of `frame`, or `None` once the server is gone.
    async fn request(&mut self, mut frame: Value) -> Option<Value> {
        let req_id = self.next;
        self.next += 1;
        frame["req_id"] = json!(req_id);
        self.ws.send(Message::text(frame.to_string())).await.ok()?;
        self.next_where(
            |f| f["req_id"] == json!(req_id) && matches!(f["type"].as_str(), Some("ack" | "error")),
            Duration::from_secs(10),
        )
        .await
    }

    /// The next `ty` frame about conversation `id` (within 10 s).
    async fn frame_of(&mut self, ty: &str, id: &str) -> Option<Value> {
        self.next_where(
            |f| f["type"] == ty && f["conversation_id"] == id,
            Duration::from_secs(10),
        )
        .await
    }

    async fn next_where(&mut self, pred: impl Fn(&Value) -> bool, wait: Duration) -> Option<Value> {
        if let Some(pos) = self.seen.iter().position(&pred) {
            return self.seen.remove(pos);
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()??
            {
                Ok(Message::Text(text)) => {
                    let v: Value = serde_json::from_str(&text).ok()?;
                    if pred(&v) {
                        return Some(v);
                    }
                    self.seen.push_back(v);
                }
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }
}

/// What the server acknowledged, over every run.
#[derive(Debug, Default, Clone)]
struct Acked {
    /// Conversation id → customer id.
    opened: BTreeMap<u64, String>,
    /// Conversation id → transcript texts acked, in order.
    lines: BTreeMap<u64, Vec<String>>,
    /// Conversation id → agent whose accept was acked.
    assigned: BTreeMap<u64, String>,
    /// Conversations whose abandon was acked.
    ended: std::collections::BTreeSet<u64>,
    /// Conversation id → agent, from the `conversation.assigned` notices the
    /// connector was sent: it acts on them (bridges the customer), so they
    /// must survive a crash as acks do.
    heard_assigned: BTreeMap<u64, String>,
}

fn num(id: &str) -> u64 {
    id.trim_start_matches("c-").parse().expect("c-<n>")
}

/// Takes the `conversation.assigned` notices the connector has read so far.
fn take_notices(c: &mut Ws, acked: &Mutex<Acked>) {
    let mut acked = acked.lock().expect("lock");
    c.seen.retain(|f| {
        if f["type"] != "conversation.assigned" {
            return true;
        }
        if let (Some(id), Some(agent)) = (f["conversation_id"].as_str(), f["agent_id"].as_str()) {
            acked.heard_assigned.insert(num(id), agent.to_string());
        }
        false
    });
}

/// Opens conversations with two transcript lines each and abandons four of
/// every five (so the waiting line stays short while traffic runs long).
async fn connector_traffic(addr: SocketAddr, run: usize, acked: Arc<Mutex<Acked>>) {
    let Some(mut c) = Ws::connect(addr, CONNECTOR).await else {
        return;
    };
    for n in 0..150 {
        let customer = format!("cust-{run}-{n}");
        let frame = json!({"type": "conversation.open", "customer_id": customer, "channel": "chat",
                           "attributes": {"run": run, "n": n}});
        let Some(ack) = c.ack(frame).await else {
            return;
        };
        take_notices(&mut c, &acked);
        let id = ack["conversation_id"].as_str().expect("id").to_string();
        acked
            .lock()
            .expect("lock")
            .opened
            .insert(num(&id), customer);
        for k in 0..2 {
            let text = format!("line {k} of {id}");
            let frame = json!({"type": "conversation.message", "conversation_id": id, "from": "customer", "text": text});
            if c.ack(frame).await.is_none() {
                return;
            }
            take_notices(&mut c, &acked);
            acked
                .lock()
                .expect("lock")
                .lines
                .entry(num(&id))
                .or_default()
                .push(text);
        }
        if n % 5 != 0 {
            let frame = json!({"type": "conversation.abandon", "conversation_id": id});
            let reply = c.request(frame).await;
            take_notices(&mut c, &acked);
            match reply {
                None => return,
                Some(reply) if reply["type"] == "ack" => {
                    acked.lock().expect("lock").ended.insert(num(&id));
                }
                Some(_) => {} // accepted meanwhile: no longer abandonable
            }
        }
    }
}

async fn worker_traffic(addr: SocketAddr, agent: String, acked: Arc<Mutex<Acked>>) {
    let Some(mut a) = Ws::connect(addr, AGENT).await else {
        return;
    };
    let login =
        json!({"type": "agent.login", "agent_id": agent, "skills": {}, "capacity": {"chat": 2}});
    if a.ack(login).await.is_none() {
        return;
    }
    loop {
        let Some(offer) = a
            .next_where(|f| f["type"] == "offer", Duration::from_secs(20))
            .await
        else {
            return;
        };
        let conversation = num(offer["conversation_id"].as_str().expect("id"));
        let accept = json!({"type": "offer.accept", "offer_id": offer["offer_id"]});
        match a.request(accept).await {
            None => return,
            Some(reply) if reply["type"] == "ack" => {}
            Some(_) => continue, // withdrawn meanwhile (the customer abandoned)
        }
        acked
            .lock()
            .expect("lock")
            .assigned
            .insert(conversation, agent.clone());
    }
}

/// The connector was told conversation `id` is assigned to `agent`: the
/// restarted server must say so too.
async fn assert_told_assigned(server: &Server, id: &str, agent: &str, when: &str) {
    let (status, c) = server.get(&format!("/v1/conversations/{id}")).await;
    assert_eq!(status, 200, "{when}: {id} was notified assigned: {c}");
    assert_eq!(
        c["state"], "assigned",
        "{when}: the connector was told {id} is assigned to {agent}; after the crash: {c}"
    );
    assert_eq!(c["agent_id"], agent, "{when}: {id}: {c}");
}

/// Checks every acknowledged fact against the restarted server.
async fn verify(server: &Server, acked: &Acked, run: usize) {
    let mut waiting = Vec::new();
    for (id, customer) in &acked.opened {
        let (status, c) = server.get(&format!("/v1/conversations/c-{id}")).await;
        assert_eq!(
            status, 200,
            "run {run}: acked conversation c-{id} is missing: {c}"
        );
        assert_eq!(
            c["customer_id"],
            customer.as_str(),
            "run {run}: c-{id}: {c}"
        );
        let texts: Vec<&str> = c["transcript"]
            .as_array()
            .expect("transcript")
            .iter()
            .filter_map(|l| l["text"].as_str())
            .collect();
        let want: Vec<&str> = acked
            .lines
            .get(id)
            .map(|v| v.iter().map(String::as_str).collect())
            .unwrap_or_default();
        assert!(
            texts.len() >= want.len() && texts[..want.len()] == want[..],
            "run {run}: c-{id} transcript {texts:?} lacks acked lines {want:?}"
        );
        if acked.ended.contains(id) {
            assert_eq!(c["state"], "ended", "run {run}: c-{id} was abandoned: {c}");
            assert_eq!(c["outcome"], "abandoned", "run {run}: c-{id}: {c}");
            continue;
        }
        match acked.assigned.get(id) {
            Some(agent) => {
                assert_eq!(
                    c["state"], "assigned",
                    "run {run}: c-{id} was accepted: {c}"
                );
                assert_eq!(c["agent_id"], agent.as_str(), "run {run}: c-{id}: {c}");
            }
            // Accepted or abandoned, but the ack was lost in the kill.
            None if c["state"] == "assigned" || c["state"] == "ended" => {}
            None => {
                assert_eq!(
                    c["state"], "waiting",
                    "run {run}: every agent is offline after a restart: {c}"
                );
                waiting.push(*id);
            }
        }
    }
    for (id, agent) in &acked.heard_assigned {
        assert_told_assigned(server, &format!("c-{id}"), agent, &format!("run {run}")).await;
    }
    let (status, agents) = server.get("/v1/agents").await;
    assert_eq!(status, 200);
    for a in agents["agents"].as_array().expect("agents") {
        assert_eq!(
            a["status"], "offline",
            "run {run}: agents come back offline: {a}"
        );
    }

    // Routing resumes: a fresh agent gets the waiting conversations, in line order.
    let mut fresh = Ws::connect(server.addr, AGENT).await.expect("connect");
    let login = json!({"type": "agent.login", "agent_id": format!("fresh-{run}"), "skills": {}, "capacity": {"chat": 255}});
    fresh.ack(login).await.expect("fresh agent logs in");
    let mut offered = Vec::new();
    while offered.len() < waiting.len() {
        let Some(offer) = fresh
            .next_where(|f| f["type"] == "offer", Duration::from_secs(10))
            .await
        else {
            break;
        };
        let id = num(offer["conversation_id"].as_str().expect("id"));
        if acked.opened.contains_key(&id) {
            offered.push(id);
        }
    }
    assert_eq!(
        offered, waiting,
        "run {run}: waiting conversations offered in their original order"
    );

    // A worker that reconnects finds its conversations.
    for agent in acked
        .assigned
        .values()
        .collect::<std::collections::BTreeSet<_>>()
    {
        let mut back = Ws::connect(server.addr, AGENT).await.expect("connect");
        let login = json!({"type": "agent.login", "agent_id": agent, "skills": {}, "capacity": {"chat": 2}});
        back.ack(login).await.expect("worker logs back in");
        let (_, agents) = server.get("/v1/agents").await;
        let record = agents["agents"]
            .as_array()
            .expect("agents")
            .iter()
            .find(|a| a["id"] == agent.as_str())
            .cloned()
            .expect("worker listed");
        for (id, owner) in &acked.assigned {
            if owner == agent {
                let held = record["conversations"].as_array().expect("list");
                assert!(
                    held.contains(&json!(format!("c-{id}"))),
                    "run {run}: {agent} lost c-{id}: {record}"
                );
            }
        }
        let _ = back
            .ack(json!({"type": "agent.status", "status": "offline"}))
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_traffic_loses_nothing_that_was_acknowledged() {
    let seed: u64 = std::env::var("DURABILITY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("DURABILITY_SEED={seed}");
    let mut rng = SmallRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = dir.path().join("switchboard.toml");
    std::fs::write(&config, base_config(&data)).expect("config");

    let acked = Arc::new(Mutex::new(Acked::default()));
    let mut server = Server::start(dir.path(), &config, 0);
    server.ready().await;
    for run in 0..4 {
        let connector = tokio::spawn(connector_traffic(server.addr, run, Arc::clone(&acked)));
        let worker = tokio::spawn(worker_traffic(
            server.addr,
            format!("worker-{run}"),
            Arc::clone(&acked),
        ));
        let kill_after = rng.random_range(20..400u64);
        tokio::time::sleep(Duration::from_millis(kill_after)).await;
        server.sigkill();
        let _ = connector.await;
        worker.abort();
        let _ = worker.await;
        {
            let a = acked.lock().expect("lock");
            println!(
                "run {run}: killed after {kill_after} ms; acked so far: {} opens, {} lines, {} accepts, {} abandons; {} assignments notified",
                a.opened.len(),
                a.lines.values().map(Vec::len).sum::<usize>(),
                a.assigned.len(),
                a.ended.len(),
                a.heard_assigned.len()
            );
        }
        server = Server::start(dir.path(), &config, run + 1);
        let took = server.ready().await;
        let log = server.log_text();
        let restored = log
            .lines()
            .find(|l| l.contains("state restored"))
            .unwrap_or("(no restore line)");
        println!("run {run}: restarted and ready in {took:?}: {restored}");
        for l in log
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        {
            println!("  {l}");
        }
        let snapshot = acked.lock().expect("lock").clone();
        verify(&server, &snapshot, run).await;
    }
    let total = acked.lock().expect("lock").opened.len();
    assert!(total > 0, "the traffic got at least one conversation acked");

    // A graceful stop writes a final snapshot; the next start replays nothing.
    server.sigterm();
    assert!(
        server.log_text().contains("final snapshot written"),
        "{}",
        server.log_text()
    );
    let mut again = Server::start(dir.path(), &config, 99);
    again.ready().await;
    let log = again.log_text();
    assert!(
        log.contains("replayed=0"),
        "a start after a clean stop replays nothing:\n{log}"
    );
    let all = acked.lock().expect("lock").clone();
    verify(&again, &all, 99).await;
}

/// A connector acts on `conversation.assigned` (it bridges the customer to
/// the agent), a desktop on `conversation.ended`, so what they were told
/// must survive a crash as an ack does: the server is SIGKILLed the moment
/// the frame arrives, before the change's own ack, and the restarted server
/// must agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_client_was_told_survives_a_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = dir.path().join("switchboard.toml");
    // A change made within 50 ms of the previous commit waits for the next
    // one: the frame that reports it would have time to arrive first.
    let window = "commit_window_secs = 0.05\n";
    std::fs::write(&config, base_config(&data) + window).expect("config");
    let mut server = Server::start_with(dir.path(), &config, 0, "3600");
    server.ready().await;
    for round in 0..5 {
        let mut gw = Ws::connect(server.addr, CONNECTOR).await.expect("connect");
        let mut desk = Ws::connect(server.addr, AGENT).await.expect("connect");
        let agent = format!("told-{round}");
        let login = json!({"type": "agent.login", "agent_id": agent, "skills": {}, "capacity": {"chat": 1}});
        desk.ack(login).await.expect("login");
        let open = json!({"type": "conversation.open", "customer_id": format!("cust-{round}"), "channel": "chat"});
        let id = gw.ack(open).await.expect("open")["conversation_id"]
            .as_str()
            .expect("id")
            .to_string();
        let offer = desk.frame_of("offer", &id).await.expect("offer");
        // The accept's ack waits for the journal; the kill must not.
        let accept =
            json!({"type": "offer.accept", "offer_id": offer["offer_id"], "req_id": 1_000});
        desk.ws
            .send(Message::text(accept.to_string()))
            .await
            .expect("send accept");
        let told = gw
            .frame_of("conversation.assigned", &id)
            .await
            .expect("the connector is told of the assignment");
        server.sigkill();
        assert_eq!(told["agent_id"], agent.as_str());

        server = Server::start_with(dir.path(), &config, 2 * round + 1, "3600");
        server.ready().await;
        assert_told_assigned(&server, &id, &agent, &format!("round {round}")).await;

        // The same for a desktop: the agent logs back in, the gateway closes
        // the conversation, and the server dies as `conversation.ended` arrives.
        let mut desk = Ws::connect(server.addr, AGENT).await.expect("connect");
        let login = json!({"type": "agent.login", "agent_id": agent, "skills": {}, "capacity": {"chat": 1}});
        desk.ack(login).await.expect("login again");
        let mut gw = Ws::connect(server.addr, CONNECTOR).await.expect("connect");
        let close = json!({"type": "conversation.close", "conversation_id": id, "req_id": 1_000});
        gw.ws
            .send(Message::text(close.to_string()))
            .await
            .expect("send close");
        desk.frame_of("conversation.ended", &id)
            .await
            .expect("the desktop is told the conversation ended");
        server.sigkill();

        server = Server::start_with(dir.path(), &config, 2 * round + 2, "3600");
        server.ready().await;
        let (_, c) = server.get(&format!("/v1/conversations/{id}")).await;
        assert_eq!(
            c["state"], "ended",
            "round {round}: {agent}'s desktop was told {id} ended; after the crash: {c}"
        );
    }
}

/// `durability = "snapshot"`: acks are immediate and a crash keeps what the
/// last periodic snapshot holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_mode_keeps_what_the_last_snapshot_holds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = dir.path().join("switchboard.toml");
    let text =
        base_config(&data).replace("[snapshot]\n", "[snapshot]\ndurability = \"snapshot\"\n");
    std::fs::write(&config, text).expect("config");
    let mut server = Server::start(dir.path(), &config, 0);
    server.ready().await;
    let mut c = Ws::connect(server.addr, CONNECTOR).await.expect("connect");
    let mut ids = Vec::new();
    for n in 0..5 {
        let frame = json!({"type": "conversation.open", "customer_id": format!("snap-{n}"), "channel": "chat"});
        let ack = c.ack(frame).await.expect("acked");
        ids.push(ack["conversation_id"].as_str().expect("id").to_string());
    }
    let frame = json!({"type": "conversation.message", "conversation_id": ids[0], "from": "customer", "text": "kept"});
    c.ack(frame).await.expect("acked");
    // No journal is written in this mode.
    let journal = || {
        std::fs::read_dir(&data)
            .expect("data dir")
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("journal-"))
    };
    assert!(!journal(), "snapshot mode writes no journal");
    // Wait for a snapshot that holds all of it (interval 0.2 s), then kill.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let log = server.log_text();
        let covered = log
            .lines()
            .filter(|l| l.contains("snapshot written"))
            .filter_map(|l| {
                l.split("seq=")
                    .nth(1)?
                    .split(' ')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .any(|seq| seq >= 6);
        if covered {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no snapshot of seq 6 or later:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.sigkill();
    let mut server = Server::start(dir.path(), &config, 1);
    server.ready().await;
    for (n, id) in ids.iter().enumerate() {
        let (status, conv) = server.get(&format!("/v1/conversations/{id}")).await;
        assert_eq!(status, 200, "{conv}");
        assert_eq!(conv["customer_id"], format!("snap-{n}"));
        assert_eq!(conv["state"], "waiting");
    }
    let (_, first) = server.get(&format!("/v1/conversations/{}", ids[0])).await;
    assert_eq!(first["transcript"][0]["text"], "kept", "{first}");
}

#[test]
fn an_unusable_data_dir_is_a_clear_startup_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A data dir below a plain file cannot be created, even by root.
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").expect("file");
    let data = file.join("data");
    let config = dir.path().join("switchboard.toml");
    std::fs::write(&config, base_config(&data)).expect("config");
    let stderr = refused_start(&config);
    assert!(
        stderr.contains(&format!("creating the data directory {}", data.display())),
        "the error names the path: {stderr}"
    );
    #[cfg(unix)]
    if !is_root() {
        use std::os::unix::fs::PermissionsExt;
        let ro = dir.path().join("read-only");
        std::fs::create_dir(&ro).expect("dir");
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o500)).expect("chmod");
        std::fs::write(&config, base_config(&ro)).expect("config");
        let stderr = refused_start(&config);
        assert!(
            stderr.contains(&format!(
                "the data directory {} is not writable",
                ro.display()
            )),
            "{stderr}"
        );
    }
}

/// Runs the binary on `config`, checks that it refuses to start (exit 1),
/// and returns what it printed on stderr.
fn refused_start(config: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("--config")
        .arg(config)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    stderr
}

#[cfg(unix)]
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}
