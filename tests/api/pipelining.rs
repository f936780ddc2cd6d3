//! Requests sent back to back, without waiting for replies: the session
//! reads on while the router has earlier ones, and the replies still leave
//! in request order, with or without a journal.

use crate::helpers::*;
use serde_json::{json, Value};

/// Sends `frames` (numbered 1.. as `req_id`) in one write, then reads
/// until every one is answered; returns the answers in the order they came.
async fn pipeline(c: &mut Client, frames: &[Value]) -> Vec<Value> {
    let numbered: Vec<Value> = frames
        .iter()
        .enumerate()
        .map(|(i, frame)| {
            let mut frame = frame.clone();
            frame["req_id"] = json!(i + 1);
            frame
        })
        .collect();
    c.send_together(&numbered).await;
    let mut answers = Vec::new();
    while answers.len() < frames.len() {
        answers.push(
            c.wait_for_where(|f| matches!(f["type"].as_str(), Some("ack" | "error")))
                .await,
        );
    }
    answers
}

/// The `type` of each answer.
fn kinds(answers: &[Value]) -> Vec<&str> {
    answers
        .iter()
        .map(|a| a["type"].as_str().unwrap_or(""))
        .collect()
}

async fn replies_keep_request_order(app: &TestApp) {
    let mut gw = app.client(CONNECTOR).await;
    let open_frame = |customer: &str| json!({"type": "conversation.open", "customer_id": customer, "channel": "chat"});
    // Opens (routed) mixed with requests the session answers itself and
    // with ones the router refuses.
    let frames = vec![
        open_frame("cu-1"),
        open_frame("cu-2"),
        json!({"type": "conversation.open", "customer_id": "cu-x", "channel": "fax"}),
        open_frame("cu-3"),
        json!({"type": "no.such.type"}),
        open_frame("cu-4"),
        json!({"type": "conversation.close", "conversation_id": "c-999999"}),
        open_frame("cu-5"),
        open_frame("cu-6"),
    ];
    let answers = pipeline(&mut gw, &frames).await;
    let order: Vec<u64> = answers
        .iter()
        .map(|a| a["req_id"].as_u64().expect("req_id echoed"))
        .collect();
    assert_eq!(
        order,
        (1..=frames.len() as u64).collect::<Vec<_>>(),
        "{answers:?}"
    );
    assert_eq!(
        kinds(&answers),
        ["ack", "ack", "error", "ack", "error", "ack", "error", "ack", "ack"],
        "{answers:?}"
    );
    // Every open made its own conversation, in the order sent.
    let ids: Vec<u64> = answers
        .iter()
        .filter_map(|a| a["conversation_id"].as_str())
        .map(|id| id.trim_start_matches("c-").parse().expect("numeric id"))
        .collect();
    assert_eq!(ids.len(), 6);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");

    // The connection is still in step afterwards.
    let next = open(&mut gw, "cu-7", "chat", json!({})).await;
    assert!(next.starts_with("c-"), "{next}");
}

#[actix_web::test]
async fn pipelined_requests_are_answered_in_request_order_with_a_journal() {
    let app = spawn_app().await;
    replies_keep_request_order(&app).await;
    app.stop().await;
}

#[actix_web::test]
async fn pipelined_requests_are_answered_in_request_order_without_a_journal() {
    let app = spawn_app_with("durability = \"snapshot\"\n").await;
    replies_keep_request_order(&app).await;
    app.stop().await;
}

#[actix_web::test]
async fn a_message_sent_right_after_an_accept_waits_for_the_accept() {
    let app = spawn_app().await;
    let mut desk = agent(&app, "ann", json!({}), json!({"chat": 1})).await;
    let mut gw = app.client(CONNECTOR).await;
    let id = open(&mut gw, "cu-1", "chat", json!({})).await;
    let offer = offer_of(&mut desk, &id).await;

    // The message's check (the sender holds the conversation) reads what the
    // accept changes; it must not run before the router has the accept.
    let answers = pipeline(
        &mut desk,
        &[
            json!({"type": "offer.accept", "offer_id": offer["offer_id"]}),
            json!({"type": "conversation.message", "conversation_id": id, "from": "agent", "text": "hello"}),
            json!({"type": "conversation.complete", "conversation_id": id}),
        ],
    )
    .await;
    assert_eq!(kinds(&answers), ["ack", "ack", "ack"], "{answers:?}");
    let said = gw.wait_for("conversation.message").await;
    assert_eq!(said["text"], "hello");
    let ended = gw.wait_for("conversation.ended").await;
    assert_eq!(ended["outcome"], "completed");
    app.stop().await;
}

#[actix_web::test]
async fn more_requests_in_flight_than_a_session_holds_are_all_answered_in_order() {
    let app = spawn_app().await;
    let mut desk = agent(&app, "ann", json!({}), json!({"chat": 1})).await;
    // Each status change is routed and journaled, so its ack is held until
    // durable: past a quarter of the outbox (16 replies with the tests' 64)
    // the session stops reading and must pick up again as acks leave, and
    // the acks released together, with the status pushes, must fit the
    // outbox (the client does not read until it has sent everything).
    let frames: Vec<Value> = (0..1_500)
        .map(|i| {
            let status = if i % 2 == 0 { "away" } else { "available" };
            json!({"type": "agent.status", "status": status})
        })
        .collect();
    let answers = pipeline(&mut desk, &frames).await;
    for (i, answer) in answers.iter().enumerate() {
        assert_eq!(answer["type"], "ack", "{answer}");
        assert_eq!(answer["req_id"], json!(i + 1), "{answer}");
    }
    app.stop().await;
}

/// Polls `GET path` until `done` holds of it (the router has applied a
/// change whose ack is still held).
async fn until_rest_shows(app: &TestApp, path: &str, done: impl Fn(&Value) -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, body) = app.get(path, Some(SUPERVISOR)).await;
        if done(&body) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{path}: {body}");
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}

#[actix_web::test]
async fn a_shutdown_sends_the_replies_already_owed_before_it_closes() {
    // A 100 ms commit window: a change made just after a commit waits for
    // the window, so its ack is still held when the server is told to stop.
    let app = spawn_app_with("commit_window_secs = 0.1\n").await;
    let mut desk = agent(&app, "ann", json!({}), json!({"chat": 1})).await;
    desk.ok(json!({"type": "agent.status", "status": "away"}))
        .await;
    desk.send(json!({"type": "agent.status", "status": "available", "req_id": "second"}))
        .await;
    // The router has applied it (the store shows it) before the stop.
    until_rest_shows(&app, "/v1/agents", |a| {
        a["agents"][0]["status"] == "available"
    })
    .await;
    app.stop().await;
    let close = desk.expect_close().await.expect("a close frame");
    assert_eq!(close.reason.as_str(), "shutdown");
    let second = desk
        .backlog()
        .iter()
        .find(|f| f["req_id"] == "second")
        .cloned();
    assert_eq!(
        second.as_ref().map(|f| f["type"].clone()),
        Some(json!("ack")),
        "the held ack must leave before the close; got {:?}",
        desk.backlog()
    );
}

#[actix_web::test]
async fn a_shutdown_sends_the_connectors_notices_already_owed_before_it_closes() {
    // A 100 ms commit window: the accept made just before the stop is not
    // durable yet, so its `conversation.assigned` is still held for the
    // connector, which has no reply of its own waiting.
    let app = spawn_app_with("commit_window_secs = 0.1\n").await;
    let mut desk = agent(&app, "ann", json!({}), json!({"chat": 1})).await;
    let mut gw = app.client(CONNECTOR).await;
    let id = open(&mut gw, "cust-1", "chat", json!({})).await;
    let offer = offer_of(&mut desk, &id).await;
    desk.send(json!({"type": "offer.accept", "offer_id": offer["offer_id"], "req_id": "accept"}))
        .await;
    let path = format!("/v1/conversations/{id}");
    until_rest_shows(&app, &path, |c| c["state"] == "assigned").await;
    app.stop().await;
    let close = gw.expect_close().await.expect("a close frame");
    assert_eq!(close.reason.as_str(), "shutdown");
    assert!(
        gw.backlog()
            .iter()
            .any(|f| f["type"] == "conversation.assigned" && f["conversation_id"] == id.as_str()),
        "the held notice must leave before the close; got {:?}",
        gw.backlog()
    );
}
