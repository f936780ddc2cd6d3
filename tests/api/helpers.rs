//! Test harness: `spawn_app()` (port 0, temp dir, short timers), a WebSocket
//! client that waits for frames with timeouts, and a tiny HTTP/1.1 client.
//!
//! Everything targets 127.0.0.1 and every wait is bounded.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;
use switchboard::config::AppConfig;
use switchboard::server::{self, RunningServer, StartOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long any single wait may take before a test fails (a loaded 2-core box).
pub const WAIT: Duration = Duration::from_secs(15);

pub const CONNECTOR: &str = "t-connector";
pub const CONNECTOR_2: &str = "t-connector-2";
pub const AGENT: &str = "t-agent";
pub const SUPERVISOR: &str = "t-supervisor";

/// The base test configuration: port 0, test tokens, long offer timeouts
/// (tests that need a short one override it), a temp snapshot dir.
pub fn base_config(dir: &std::path::Path) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
max_frame_bytes = 4096
outbound_buffer_frames = 64
heartbeat_interval_secs = 1
client_timeout_secs = 30

[[auth.tokens]]
token = "{CONNECTOR}"
role = "connector"
name = "gateway-1"

[[auth.tokens]]
token = "{CONNECTOR_2}"
role = "connector"
name = "gateway-2"

[[auth.tokens]]
token = "{AGENT}"
role = "agent"
name = "desktops"

[[auth.tokens]]
token = "{SUPERVISOR}"
role = "supervisor"
name = "wallboard"

[routing]
decline_cooldown_secs = 30
preferred_agent_window_secs = 5
reconnect_grace_secs = 30

[channels.voice]
offer_timeout_secs = 30
[channels.chat]
offer_timeout_secs = 30
[channels.email]
offer_timeout_secs = 30

[snapshot]
dir = "{}"
"#,
        dir.display()
    )
}

/// A running server and what it needs to stay alive.
pub struct TestApp {
    pub addr: SocketAddr,
    pub server: Option<RunningServer>,
    _dir: tempfile::TempDir,
}

impl TestApp {
    pub fn ws_url(&self) -> String {
        format!("ws://{}/v1/ws", self.addr)
    }

    /// A client connected with `token` (as a bearer header).
    pub async fn client(&self, token: &str) -> Client {
        Client::connect(&self.ws_url(), Some(token), None)
            .await
            .expect("websocket connect")
    }

    /// GET `path` with `token`; returns status and parsed JSON (or the raw body as a string).
    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        http(self.addr, "GET", path, token).await
    }

    /// POST `path` with `token`.
    pub async fn post(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        http(self.addr, "POST", path, token).await
    }

    /// The value of one Prometheus series (0 when absent).
    pub async fn metric(&self, series: &str) -> f64 {
        let (status, body) = self.get("/metrics", None).await;
        assert_eq!(status, 200);
        let text = body.as_str().unwrap_or_default().to_string();
        text.lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|rest| rest.trim().parse::<f64>().ok())
            })
            .unwrap_or(0.0)
    }

    /// Graceful shutdown.
    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
    }
}

/// Starts a server on the base config with `extra` TOML appended.
pub async fn spawn_app_with(extra: &str) -> TestApp {
    spawn_app_custom(extra, &[]).await
}

/// Starts a server on the base config with `extra` TOML appended and
/// `SWITCHBOARD__…` overrides (for settings of tables the base already has).
pub async fn spawn_app_custom(extra: &str, env: &[(&str, &str)]) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = format!("{}\n{extra}", base_config(dir.path()));
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let config = AppConfig::from_toml_str_with_env(&text, env)
        .unwrap_or_else(|e| panic!("test config: {e}: {:?}", e.problems()));
    let server = server::start_with(
        config,
        StartOptions {
            fault_injection: true,
            workers: Some(2),
        },
    )
    .await
    .expect("server starts");
    TestApp {
        addr: server.addr,
        server: Some(server),
        _dir: dir,
    }
}

/// Starts a server on the base test config.
pub async fn spawn_app() -> TestApp {
    spawn_app_with("").await
}

/// One WebSocket client.
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_req: u64,
    backlog: VecDeque<Value>,
}

/// How a connection attempt failed.
#[derive(Debug)]
pub enum ConnectError {
    Status(u16),
    /// Read through `Debug` in assertion messages.
    #[allow(dead_code)]
    Other(String),
}

impl Client {
    /// Connects to `url`; `token` as a bearer header; `recv_buffer` sets a small
    /// socket receive buffer (slow-consumer test).
    pub async fn connect(
        url: &str,
        token: Option<&str>,
        recv_buffer: Option<u32>,
    ) -> Result<Client, ConnectError> {
        let mut request = url
            .into_client_request()
            .map_err(|e| ConnectError::Other(e.to_string()))?;
        if let Some(token) = token {
            let value = format!("Bearer {token}")
                .parse()
                .map_err(|_| ConnectError::Other("bad header".into()))?;
            request.headers_mut().insert("Authorization", value);
        }
        let host = request
            .uri()
            .authority()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let addr: SocketAddr = host
            .parse()
            .map_err(|_| ConnectError::Other(format!("bad address {host}")))?;
        let socket = TcpSocket::new_v4().map_err(|e| ConnectError::Other(e.to_string()))?;
        if let Some(size) = recv_buffer {
            socket
                .set_recv_buffer_size(size)
                .map_err(|e| ConnectError::Other(e.to_string()))?;
        }
        let stream = socket
            .connect(addr)
            .await
            .map_err(|e| ConnectError::Other(e.to_string()))?;
        match tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream)).await {
            Ok((ws, _)) => Ok(Client {
                ws,
                next_req: 1,
                backlog: VecDeque::new(),
            }),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                Err(ConnectError::Status(response.status().as_u16()))
            }
            Err(e) => Err(ConnectError::Other(e.to_string())),
        }
    }

    /// Sends one JSON frame as is.
    pub async fn send(&mut self, frame: Value) {
        self.ws
            .send(Message::text(frame.to_string()))
            .await
            .expect("send frame");
    }

    /// Sends `frames` in one write, so that the server reads them together.
    pub async fn send_together(&mut self, frames: &[Value]) {
        for frame in frames {
            self.ws
                .feed(Message::text(frame.to_string()))
                .await
                .expect("queue frame");
        }
        self.ws.flush().await.expect("send frames");
    }

    /// Sends a raw WebSocket message.
    pub async fn send_raw(&mut self, message: Message) {
        self.ws.send(message).await.expect("send raw");
    }

    /// Sends `frame` with a fresh `req_id` and returns the `ack`/`error`/`stats` that echoes it.
    pub async fn request(&mut self, mut frame: Value) -> Value {
        let req_id = self.next_req;
        self.next_req += 1;
        frame["req_id"] = json!(req_id);
        self.send(frame).await;
        self.wait_for_where(|f| {
            f["req_id"] == json!(req_id)
                && matches!(f["type"].as_str(), Some("ack" | "error" | "stats"))
        })
        .await
    }

    /// [`Self::request`] that must be acked.
    pub async fn ok(&mut self, frame: Value) -> Value {
        let sent = frame.to_string();
        let reply = self.request(frame).await;
        assert_eq!(reply["type"], "ack", "request {sent} got {reply}");
        reply
    }

    /// [`Self::request`] that must be refused with `code`.
    pub async fn refused(&mut self, frame: Value, code: &str) -> Value {
        let sent = frame.to_string();
        let reply = self.request(frame).await;
        assert_eq!(reply["type"], "error", "request {sent} got {reply}");
        assert_eq!(reply["code"], code, "request {sent} got {reply}");
        assert!(reply["message"].as_str().is_some_and(|m| !m.is_empty()));
        reply
    }

    /// The next frame of type `ty` (earlier frames of other types are kept).
    pub async fn wait_for(&mut self, ty: &str) -> Value {
        let ty = ty.to_string();
        self.wait_for_where(move |f| f["type"] == ty.as_str()).await
    }

    /// The next frame matching `pred` (others are kept for later waits).
    pub async fn wait_for_where(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(pos) = self.backlog.iter().position(&pred) {
            return self.backlog.remove(pos).expect("position is valid");
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .unwrap_or_else(|_| {
                    panic!("timed out waiting for a frame; backlog: {:?}", self.backlog)
                });
            match next {
                Some(Ok(Message::Text(text))) => {
                    let value: Value = serde_json::from_str(&text).expect("server frames are json");
                    if pred(&value) {
                        return value;
                    }
                    self.backlog.push_back(value);
                }
                Some(Ok(Message::Close(frame))) => {
                    panic!("connection closed while waiting: {frame:?}")
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("websocket error while waiting: {e}"),
                None => panic!("connection ended while waiting"),
            }
        }
    }

    /// Reads until the server closes; returns the close frame (if one came).
    pub async fn expect_close(&mut self) -> Option<CloseFrame> {
        let deadline = tokio::time::Instant::now() + WAIT * 2;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => panic!("the server did not close the connection"),
                Ok(Some(Ok(Message::Close(frame)))) => return frame,
                Ok(Some(Ok(Message::Text(text)))) => {
                    if let Ok(v) = serde_json::from_str::<Value>(&text) {
                        self.backlog.push_back(v);
                    }
                }
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_))) | Ok(None) => return None,
            }
        }
    }

    /// Frames received but not yet consumed by a wait.
    pub fn backlog(&self) -> &VecDeque<Value> {
        &self.backlog
    }
}

/// A minimal HTTP/1.1 request (Connection: close); JSON bodies are parsed,
/// others returned as a JSON string.
pub async fn http(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    let fut = async {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n");
        stream
            .write_all(req.as_bytes())
            .await
            .expect("write request");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.expect("read response");
        let text = String::from_utf8_lossy(&raw).to_string();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status line");
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)
        } else {
            body.to_string()
        };
        let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
        (status, value)
    };
    tokio::time::timeout(WAIT, fut)
        .await
        .expect("http request timed out")
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

// ----- protocol shorthands -----

/// Logs an agent in on a fresh connection; returns the client.
pub async fn agent(app: &TestApp, id: &str, skills: Value, capacity: Value) -> Client {
    let mut c = app.client(AGENT).await;
    c.ok(json!({"type": "agent.login", "agent_id": id, "skills": skills, "capacity": capacity}))
        .await;
    c
}

/// Opens a conversation; returns its id.
pub async fn open(c: &mut Client, customer: &str, channel: &str, extra: Value) -> String {
    let mut frame =
        json!({"type": "conversation.open", "customer_id": customer, "channel": channel});
    if let (Some(f), Some(e)) = (frame.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            f.insert(k.clone(), v.clone());
        }
    }
    let ack = c.ok(frame).await;
    ack["conversation_id"]
        .as_str()
        .expect("ack carries conversation_id")
        .to_string()
}

/// Waits for an offer of `conversation` on agent client `a`.
pub async fn offer_of(a: &mut Client, conversation: &str) -> Value {
    let conversation = conversation.to_string();
    a.wait_for_where(move |f| f["type"] == "offer" && f["conversation_id"] == conversation.as_str())
        .await
}

/// Accepts an offer.
pub async fn accept(a: &mut Client, offer: &Value) {
    a.ok(json!({"type": "offer.accept", "offer_id": offer["offer_id"]}))
        .await;
}
