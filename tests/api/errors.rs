//! Every class of bad input gets its stable error code, is counted in
//! `switchboard_errors_total{code}`, and (except oversize and binary frames,
//! which close the connection with a reason) leaves the connection open.

use crate::helpers::*;
use serde_json::json;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

#[actix_web::test]
async fn bad_frames_get_error_codes_and_the_connection_stays_open() {
    let app = spawn_app().await;
    let before = app
        .metric("switchboard_errors_total{code=\"malformed_json\"}")
        .await;
    let mut gw = app.client(CONNECTOR).await;

    gw.send_raw(Message::text("{this is not json")).await;
    let e = gw.wait_for("error").await;
    assert_eq!(e["code"], "malformed_json");
    assert_eq!(e["req_id"], json!(null));

    gw.refused(json!({"type": "conversation.teleport"}), "unknown_type")
        .await;
    gw.refused(
        json!({"type": "conversation.open", "channel": "chat"}),
        "missing_field",
    )
    .await;
    gw.refused(
        json!({"type": "conversation.open", "customer_id": "x", "channel": "chat", "colour": "red"}),
        "unknown_field",
    )
    .await;
    gw.refused(
        json!({"type": "conversation.open", "customer_id": 12, "channel": "chat"}),
        "invalid_field",
    )
    .await;
    gw.refused(
        json!({"type": "conversation.open", "customer_id": "x", "channel": "pigeon"}),
        "unknown_channel",
    )
    .await;
    gw.refused(json!({"type": "conversation.open", "customer_id": "x", "channel": "chat", "queue": "nope"}), "unknown_queue")
        .await;
    gw.refused(
        json!({"type": "conversation.close", "conversation_id": "c-987654"}),
        "unknown_conversation",
    )
    .await;
    gw.refused(
        json!({"type": "conversation.close", "conversation_id": "not-an-id"}),
        "unknown_conversation",
    )
    .await;
    gw.refused(
        json!({"type": "offer.accept", "offer_id": "o-1"}),
        "wrong_role",
    )
    .await;
    gw.refused(json!({"type": "subscribe"}), "wrong_role").await;

    // A string req_id is echoed as is.
    gw.send(json!({"type": "nope", "req_id": "abc-1"})).await;
    let e = gw
        .wait_for_where(|f| f["type"] == "error" && f["req_id"] == "abc-1")
        .await;
    assert_eq!(e["code"], "unknown_type");

    // Still open and working.
    let id = open(&mut gw, "cu-e", "chat", json!({})).await;
    assert!(id.starts_with("c-"));

    let mut desk = app.client(AGENT).await;
    desk.refused(
        json!({"type": "offer.accept", "offer_id": "o-1"}),
        "not_logged_in",
    )
    .await;
    desk.ok(
        json!({"type": "agent.login", "agent_id": "err", "skills": {}, "capacity": {"chat": 1}}),
    )
    .await;
    desk.refused(
        json!({"type": "offer.accept", "offer_id": "o-999999"}),
        "unknown_offer",
    )
    .await;
    desk.refused(
        json!({"type": "offer.reject", "offer_id": "nonsense"}),
        "unknown_offer",
    )
    .await;
    desk.refused(
        json!({"type": "conversation.complete", "conversation_id": "c-999999"}),
        "unknown_conversation",
    )
    .await;
    desk.refused(
        json!({"type": "conversation.open", "customer_id": "x", "channel": "chat"}),
        "wrong_role",
    )
    .await;
    desk.refused(
        json!({"type": "agent.login", "agent_id": "err", "skills": {"x": 11}, "capacity": {}}),
        "bad_skill_level",
    )
    .await;
    desk.ok(json!({"type": "agent.heartbeat"})).await;

    let mut sup = app.client(SUPERVISOR).await;
    sup.refused(
        json!({"type": "conversation.open", "customer_id": "x", "channel": "chat"}),
        "wrong_role",
    )
    .await;
    let stats = sup.request(json!({"type": "stats"})).await;
    assert_eq!(stats["type"], "stats");
    assert!(stats["queues"].as_array().is_some_and(|q| !q.is_empty()));
    assert!(stats["agents"]["total"].as_u64().is_some_and(|n| n >= 1));

    let after = app
        .metric("switchboard_errors_total{code=\"malformed_json\"}")
        .await;
    assert!(
        after >= before + 1.0,
        "errors metric not counted: {before} -> {after}"
    );
    assert!(
        app.metric("switchboard_errors_total{code=\"unknown_type\"}")
            .await
            >= 2.0
    );
    app.stop().await;
}

#[actix_web::test]
async fn an_oversize_frame_is_refused_and_the_connection_closed_with_a_reason() {
    let app = spawn_app().await;
    let mut gw = app.client(CONNECTOR).await;
    let big = "x".repeat(5000); // max_frame_bytes = 4096 in the test config
    gw.send(json!({"type": "conversation.open", "customer_id": big, "channel": "chat"}))
        .await;
    let e = gw.wait_for("error").await;
    assert_eq!(e["code"], "frame_too_large");
    let close = gw.expect_close().await.expect("a close frame");
    assert_eq!(close.code, CloseCode::Size);
    assert_eq!(close.reason.as_str(), "frame too large");
    app.stop().await;
}

#[actix_web::test]
async fn a_binary_frame_is_refused_and_the_connection_closed() {
    let app = spawn_app().await;
    let mut gw = app.client(CONNECTOR).await;
    gw.send_raw(Message::binary(vec![1u8, 2, 3])).await;
    let e = gw.wait_for("error").await;
    assert_eq!(e["code"], "binary_frame");
    let close = gw.expect_close().await.expect("a close frame");
    assert_eq!(close.code, CloseCode::Unsupported);
    assert!(close.reason.contains("binary"));
    app.stop().await;
}
