//! Disconnects: an agent whose desktop drops has its offers re-routed at
//! once and keeps its conversations if it logs in again within the grace; a
//! graceful server shutdown closes every client with "shutdown".

use crate::helpers::*;
use serde_json::json;

#[actix_web::test]
async fn an_agent_disconnect_reroutes_its_pending_offer_at_once() {
    let app = spawn_app().await;
    let mut gw = app.client(CONNECTOR).await;
    let mut first = agent(&app, "drop-a", json!({}), json!({"chat": 1})).await;
    let id = open(&mut gw, "cu-d", "chat", json!({})).await;
    offer_of(&mut first, &id).await;
    let mut second = agent(&app, "drop-b", json!({}), json!({"chat": 1})).await;
    drop(first);
    // Well before the 30 s offer timeout of the test config.
    let offer = offer_of(&mut second, &id).await;
    accept(&mut second, &offer).await;
    let assigned = gw.wait_for("conversation.assigned").await;
    assert_eq!(assigned["agent_id"], "drop-b");
    let (_, agents) = app.get("/v1/agents", Some(SUPERVISOR)).await;
    let row = agents["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .find(|a| a["id"] == "drop-a")
        .cloned()
        .expect("listed");
    assert_eq!(row["connected"], false);
    app.stop().await;
}

#[actix_web::test]
async fn graceful_shutdown_closes_clients_with_a_reason() {
    let app = spawn_app().await;
    let mut gw = app.client(CONNECTOR).await;
    let mut sup = app.client(SUPERVISOR).await;
    sup.ok(json!({"type": "subscribe"})).await;
    open(&mut gw, "cu-bye", "chat", json!({})).await;
    let addr = app.addr;
    app.stop().await;
    for client in [&mut gw, &mut sup] {
        let close = client.expect_close().await.expect("a close frame");
        assert_eq!(close.reason.as_str(), "shutdown");
    }
    // No longer accepting connections.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[actix_web::test]
async fn an_agent_that_reconnects_within_the_grace_keeps_its_conversations() {
    let app = spawn_app().await;
    let mut gw = app.client(CONNECTOR).await;
    let mut desk = agent(&app, "back-a", json!({}), json!({"chat": 2})).await;
    let id = open(&mut gw, "cu-back", "chat", json!({})).await;
    let offer = offer_of(&mut desk, &id).await;
    accept(&mut desk, &offer).await;
    gw.wait_for("conversation.assigned").await;
    drop(desk);

    // Wait until the server has seen the disconnect (the agent shows offline).
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, agents) = app.get("/v1/agents", Some(SUPERVISOR)).await;
        let row = agents["agents"]
            .as_array()
            .expect("agents")
            .iter()
            .find(|a| a["id"] == "back-a")
            .cloned()
            .expect("listed");
        if row["status"] == "offline" {
            assert_eq!(row["connected"], false);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "disconnect never noticed: {row}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (_, conv) = app
        .get(&format!("/v1/conversations/{id}"), Some(CONNECTOR))
        .await;
    assert_eq!(conv["state"], "assigned", "kept during the grace");

    let mut again = agent(&app, "back-a", json!({}), json!({"chat": 2})).await;
    gw.ok(json!({"type": "conversation.message", "conversation_id": id, "from": "customer", "text": "you back?"})).await;
    let line = again.wait_for("conversation.message").await;
    assert_eq!(line["text"], "you back?");
    again
        .ok(json!({"type": "conversation.complete", "conversation_id": id}))
        .await;
    let ended = gw.wait_for("conversation.ended").await;
    assert_eq!(ended["outcome"], "completed");
    app.stop().await;
}

#[actix_web::test]
async fn an_agent_that_stays_away_past_the_grace_loses_its_conversations_to_the_queue() {
    let app = spawn_app_custom("", &[("SWITCHBOARD__ROUTING__RECONNECT_GRACE_SECS", "1")]).await;
    let mut gw = app.client(CONNECTOR).await;
    let mut desk = agent(&app, "gone-a", json!({}), json!({"chat": 2})).await;
    let id = open(&mut gw, "cu-gone", "chat", json!({})).await;
    let offer = offer_of(&mut desk, &id).await;
    accept(&mut desk, &offer).await;
    gw.wait_for("conversation.assigned").await;
    gw.ok(json!({"type": "conversation.message", "conversation_id": id, "from": "customer", "text": "still there?"}))
        .await;
    let mut other = agent(&app, "stay-b", json!({}), json!({"chat": 2})).await;
    drop(desk);

    // Requeued once the 1 s grace runs out, then offered to the agent still here,
    // with the transcript in the offer's context.
    let requeued = gw.wait_for("conversation.requeued").await;
    assert_eq!(requeued["conversation_id"], id.as_str());
    let offer = offer_of(&mut other, &id).await;
    let transcript = offer["context"]["transcript"]
        .as_array()
        .expect("transcript");
    assert!(
        transcript.iter().any(|l| l["text"] == "still there?"),
        "context keeps the transcript: {offer}"
    );
    accept(&mut other, &offer).await;
    let assigned = gw.wait_for("conversation.assigned").await;
    assert_eq!(assigned["agent_id"], "stay-b");
    app.stop().await;
}
