//! The WebSocket transport under the protocol: the upgrade path (routing,
//! refusals as JSON), fragmented messages, a frame refused from its header
//! alone, and the echo endpoint's ceiling path. Raw bytes over loopback where
//! a WebSocket client library would not send what a broken or hostile client
//! can.

use crate::helpers::*;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

/// Sends an upgrade request for `path` and returns the socket with the
/// response head (status, headers) and whatever followed it.
async fn raw_upgrade(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
    key: bool,
) -> (TcpStream, u16, String, Vec<u8>) {
    raw_upgrade_on(
        TcpStream::connect(app.addr).await.expect("connect"),
        app,
        path,
        token,
        key,
    )
    .await
}

/// [`raw_upgrade`] on a socket the caller set up.
async fn raw_upgrade_on(
    mut stream: TcpStream,
    app: &TestApp,
    path: &str,
    token: Option<&str>,
    key: bool,
) -> (TcpStream, u16, String, Vec<u8>) {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let key = if key {
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    } else {
        ""
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\n{auth}Connection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\n{key}\r\n",
        app.addr
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write request");
    let mut raw = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 1024];
        let n = tokio::time::timeout(WAIT, stream.read(&mut chunk))
            .await
            .expect("response in time")
            .expect("read response");
        assert!(n > 0, "connection closed before a response head");
        raw.extend_from_slice(&chunk[..n]);
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    (stream, status, head, raw[head_end..].to_vec())
}

/// Reads until the peer closes; what came after the head.
async fn read_to_end(mut stream: TcpStream, mut got: Vec<u8>) -> Vec<u8> {
    tokio::time::timeout(WAIT, stream.read_to_end(&mut got))
        .await
        .expect("the server closes in time")
        .expect("read");
    got
}

/// Splits unmasked server frames: (opcode, payload).
fn server_frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while bytes.len() >= 2 {
        let op = bytes[0] & 0x0F;
        let (len, at) = match bytes[1] & 0x7F {
            126 => (usize::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
            127 => panic!("no server frame here is that long"),
            n => (usize::from(n), 2),
        };
        if bytes.len() < at + len {
            break;
        }
        frames.push((op, bytes[at..at + len].to_vec()));
        bytes = &bytes[at + len..];
    }
    frames
}

/// The engine goes on answering other clients.
async fn assert_still_serving(app: &TestApp) {
    let mut wall = app.client(SUPERVISOR).await;
    assert_eq!(
        wall.request(json!({"type": "stats"})).await["type"],
        "stats"
    );
}

/// A masked client text frame carrying `payload`.
fn masked_text(payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x81];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

#[actix_web::test]
async fn upgrades_are_routed_and_refused_with_json_errors() {
    let app = spawn_app().await;
    let (stream, status, head, body) = raw_upgrade(&app, "/v1/nowhere", Some(AGENT), true).await;
    assert_eq!(status, 404, "{head}");
    // The refusal closes the connection after its body.
    let body = String::from_utf8_lossy(&read_to_end(stream, body).await).to_string();
    assert!(body.contains("\"not_found\""), "{body}");
    assert!(
        body.contains("/v1/ws"),
        "the error names the endpoint: {body}"
    );

    let (_, status, head, _) = raw_upgrade(&app, "/v1/ws", None, true).await;
    assert_eq!(status, 401);
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{head}"
    );

    // Not a WebSocket handshake (no key): 400, with the reason.
    let (stream, status, _, body) = raw_upgrade(&app, "/v1/ws", Some(AGENT), false).await;
    assert_eq!(status, 400);
    let body = String::from_utf8_lossy(&read_to_end(stream, body).await).to_string();
    assert!(body.contains("not a WebSocket handshake"), "{body}");

    // The echo endpoint is off unless configured.
    let (_, status, _, _) = raw_upgrade(&app, "/v1/echo", None, true).await;
    assert_eq!(status, 404);

    // Every refusal is counted; plain REST is untouched by the upgrade path.
    assert!(
        app.metric("switchboard_errors_total{code=\"not_found\"}")
            .await
            >= 2.0
    );
    assert!(
        app.metric("switchboard_errors_total{code=\"unauthorized\"}")
            .await
            >= 1.0
    );
    let (status, _) = app.get("/v1/queues", Some(SUPERVISOR)).await;
    assert_eq!(status, 200);
    app.stop().await;
}

#[actix_web::test]
async fn a_message_sent_in_fragments_is_joined_and_handled() {
    let app = spawn_app().await;
    let mut gw = app.client(CONNECTOR).await;
    let text = json!({"type": "conversation.open", "req_id": 7, "customer_id": "frag-1", "channel": "chat"})
        .to_string();
    let (a, rest) = text.split_at(10);
    let (b, c) = rest.split_at(15);
    gw.send_raw(Message::Frame(Frame::message(
        a.as_bytes().to_vec(),
        OpCode::Data(Data::Text),
        false,
    )))
    .await;
    // A ping between fragments is answered and does not break the message.
    gw.send_raw(Message::Ping(b"between".to_vec().into())).await;
    gw.send_raw(Message::Frame(Frame::message(
        b.as_bytes().to_vec(),
        OpCode::Data(Data::Continue),
        false,
    )))
    .await;
    gw.send_raw(Message::Frame(Frame::message(
        c.as_bytes().to_vec(),
        OpCode::Data(Data::Continue),
        true,
    )))
    .await;
    let ack = gw.wait_for("ack").await;
    assert_eq!(ack["req_id"], 7);
    assert!(ack["conversation_id"].is_string(), "{ack}");
    // Frames sent back to back are all handled, and answered in order.
    let mut wall = app.client(SUPERVISOR).await;
    for i in 0..20 {
        wall.send(json!({"type": "stats", "req_id": 100 + i})).await;
    }
    for i in 0..20 {
        let stats = wall.wait_for("stats").await;
        assert_eq!(stats["req_id"], 100 + i);
    }
    app.stop().await;
}

#[actix_web::test]
async fn a_frame_declared_far_over_the_limit_is_refused_from_its_header() {
    let app = spawn_app().await;
    let (mut stream, status, _, mut got) = raw_upgrade(&app, "/v1/ws", Some(CONNECTOR), true).await;
    assert_eq!(status, 101);
    // A masked text frame that says it carries 1 GiB; only 4 bytes follow.
    let mut header = vec![0x81, 0x80 | 127];
    header.extend_from_slice(&(1u64 << 30).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4, b'x' ^ 1, b'y' ^ 2, b'z' ^ 3, b'!' ^ 4]);
    stream.write_all(&header).await.expect("write header");
    got = read_to_end(stream, got).await;
    let frames = server_frames(&got);
    let error = frames
        .iter()
        .find(|(op, _)| *op == 0x1)
        .map(|(_, p)| serde_json::from_slice::<Value>(p).expect("json error frame"))
        .expect("an error frame");
    assert_eq!(error["code"], "frame_too_large");
    let close = frames
        .iter()
        .find(|(op, _)| *op == 0x8)
        .expect("a close frame");
    assert_eq!(u16::from_be_bytes([close.1[0], close.1[1]]), 1009);
    assert_still_serving(&app).await;
    app.stop().await;
}

#[actix_web::test]
async fn the_echo_endpoint_answers_every_frame_in_order() {
    let app = spawn_app_custom("", &[("SWITCHBOARD__SERVER__ECHO_ENDPOINT", "true")]).await;
    let url = format!("ws://{}/v1/echo", app.addr);
    let mut echo = Client::connect(&url, None, None)
        .await
        .expect("echo needs no token");
    for i in 0..50 {
        echo.send(json!({"type": "echo", "n": i})).await;
    }
    for i in 0..50 {
        let frame = echo.wait_for("echo").await;
        assert_eq!(frame["n"], i);
    }
    app.stop().await;
}

#[actix_web::test]
async fn a_client_that_sends_but_never_reads_is_closed_after_the_client_timeout() {
    let app = spawn_app_custom(
        "",
        &[
            ("SWITCHBOARD__SERVER__CLIENT_TIMEOUT_SECS", "3"),
            ("SWITCHBOARD__SERVER__HEARTBEAT_INTERVAL_SECS", "1"),
        ],
    )
    .await;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .set_recv_buffer_size(2048)
        .expect("small receive buffer");
    let stream = socket.connect(app.addr).await.expect("connect");
    let (mut stream, status, _, _) =
        raw_upgrade_on(stream, &app, "/v1/ws", Some(SUPERVISOR), true).await;
    assert_eq!(status, 101);
    // Masked pings with the largest control payload, each owed a pong, and
    // nothing read: the server's socket to us fills, then ours to it.
    let mut ping = vec![0x89, 0x80 | 125, 0, 0, 0, 0];
    ping.extend_from_slice(&[0u8; 125]);
    let burst: Vec<u8> = ping
        .iter()
        .copied()
        .cycle()
        .take(ping.len() * 4096)
        .collect();
    // The session gives up on us after the client timeout (3 s) of taking
    // nothing, although we keep sending: our writes then fail. A session stuck
    // on its full socket would leave them blocked until this test's bound.
    let writes = tokio::time::timeout(Duration::from_secs(12), async {
        while stream.write_all(&burst).await.is_ok() {}
    })
    .await;
    assert!(
        writes.is_ok(),
        "a client that sends but never reads must not hold its session"
    );
    let mut sink = vec![0u8; 1 << 16];
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
    assert!(ended.is_ok(), "the connection is closed");
    assert!(
        app.metric("switchboard_errors_total{code=\"slow_consumer\"}")
            .await
            >= 1.0
    );
    assert_still_serving(&app).await;
    app.stop().await;
}

#[actix_web::test]
async fn frames_arriving_a_few_bytes_at_a_time_or_in_large_bursts_are_all_read() {
    // A read that returns less than its room ends waiting for the socket's
    // next readiness instead of reading again; bytes that arrive after it
    // must still wake the connection, and reads that fill their room must
    // go on reading.
    let app = spawn_app_custom("", &[("SWITCHBOARD__SERVER__ECHO_ENDPOINT", "true")]).await;
    let (mut stream, status, _, mut got) = raw_upgrade(&app, "/v1/echo", None, true).await;
    assert_eq!(status, 101);
    let first = masked_text(br#"{"type":"echo","n":1}"#);
    for chunk in first.chunks(3) {
        stream.write_all(chunk).await.expect("write");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Then 40 frames of ~1.5 KiB in one write (60 KiB: several reads that
    // fill their room), then one more in two pieces far apart.
    let filler = "x".repeat(1500);
    let mut burst = Vec::new();
    for n in 2..42 {
        burst.extend(masked_text(
            format!(r#"{{"type":"echo","n":{n},"pad":"{filler}"}}"#).as_bytes(),
        ));
    }
    stream.write_all(&burst).await.expect("write burst");
    let last = masked_text(br#"{"type":"echo","n":42}"#);
    stream.write_all(&last[..5]).await.expect("write");
    tokio::time::sleep(Duration::from_millis(100)).await;
    stream.write_all(&last[5..]).await.expect("write");
    let mut seen = Vec::new();
    while seen.len() < 42 {
        let mut chunk = vec![0u8; 64 * 1024];
        let n = tokio::time::timeout(WAIT, stream.read(&mut chunk))
            .await
            .expect("every echo in time")
            .expect("read");
        assert!(n > 0, "closed after {} echoes", seen.len());
        got.extend_from_slice(&chunk[..n]);
        seen = server_frames(&got)
            .into_iter()
            .map(|(_, p)| serde_json::from_slice::<Value>(&p).expect("json")["n"].clone())
            .collect();
    }
    assert_eq!(seen, (1..=42).map(Value::from).collect::<Vec<_>>());
    app.stop().await;
}
