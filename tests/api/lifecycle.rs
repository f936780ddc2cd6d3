//! The whole conversation lifecycle, the customer view across channels, and
//! the channel switch back to the same agent.

use crate::helpers::*;
use serde_json::json;

#[actix_web::test]
async fn login_open_offer_accept_messages_complete() {
    let app = spawn_app().await;
    let mut desk = agent(&app, "ann", json!({"billing": 3}), json!({"chat": 2})).await;
    let mut gw = app.client(CONNECTOR).await;

    let id = open(
        &mut gw,
        "cu-1",
        "chat",
        json!({"attributes": {"order": "A-17"}, "skills": {"billing": 2}}),
    )
    .await;
    assert!(id.starts_with("c-"), "{id}");
    let offer = offer_of(&mut desk, &id).await;
    assert!(
        offer["offer_id"]
            .as_str()
            .is_some_and(|o| o.starts_with("o-")),
        "{offer}"
    );
    assert_eq!(offer["customer_id"], "cu-1");
    assert_eq!(offer["channel"], "chat");
    assert_eq!(offer["context"]["attributes"]["order"], "A-17");
    assert!(
        offer["expires_in_ms"]
            .as_u64()
            .is_some_and(|ms| ms > 0 && ms <= 30_000),
        "{offer}"
    );

    let (_, conv) = app
        .get(&format!("/v1/conversations/{id}"), Some(CONNECTOR))
        .await;
    assert_eq!(conv["state"], "offered");

    accept(&mut desk, &offer).await;
    let assigned = gw.wait_for("conversation.assigned").await;
    assert_eq!(assigned["conversation_id"], id.as_str());
    assert_eq!(assigned["agent_id"], "ann");
    assert_eq!(assigned["channel"], "chat");

    gw.ok(json!({"type": "conversation.message", "conversation_id": id, "from": "customer", "text": "my order is late"}))
        .await;
    let relayed = desk.wait_for("conversation.message").await;
    assert_eq!(relayed["text"], "my order is late");
    assert_eq!(relayed["from"], "customer");

    desk.ok(json!({"type": "conversation.message", "conversation_id": id, "from": "agent", "text": "checking now"}))
        .await;
    let back = gw.wait_for("conversation.message").await;
    assert_eq!(back["text"], "checking now");
    assert_eq!(back["from"], "agent");

    desk.ok(json!({"type": "conversation.complete", "conversation_id": id}))
        .await;
    let ended = gw.wait_for("conversation.ended").await;
    assert_eq!(ended["outcome"], "completed");

    let (status, conv) = app
        .get(&format!("/v1/conversations/{id}"), Some(CONNECTOR))
        .await;
    assert_eq!(status, 200);
    assert_eq!(conv["state"], "ended");
    assert_eq!(conv["agent_id"], "ann");
    let lines: Vec<&str> = conv["transcript"]
        .as_array()
        .expect("transcript")
        .iter()
        .filter_map(|l| l["text"].as_str())
        .collect();
    assert_eq!(lines, ["my order is late", "checking now"]);

    let (_, agents) = app.get("/v1/agents", Some(SUPERVISOR)).await;
    let ann = agents["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .find(|a| a["id"] == "ann")
        .cloned()
        .expect("ann listed");
    assert_eq!(ann["status"], "available");
    assert_eq!(ann["conversations"], json!([]));
    app.stop().await;
}

#[actix_web::test]
async fn chat_to_voice_switch_goes_back_to_the_same_agent_with_the_transcript() {
    let app = spawn_app().await;
    let mut ann = agent(&app, "ann", json!({}), json!({"chat": 3, "voice": 1})).await;
    let mut gw = app.client(CONNECTOR).await;

    let id = open(&mut gw, "cu-switch", "chat", json!({})).await;
    let offer = offer_of(&mut ann, &id).await;
    accept(&mut ann, &offer).await;
    gw.wait_for("conversation.assigned").await;
    gw.ok(json!({"type": "conversation.message", "conversation_id": id, "from": "customer", "text": "can you call me?"}))
        .await;
    ann.ok(json!({"type": "conversation.message", "conversation_id": id, "from": "agent", "text": "calling you now"}))
        .await;

    // A second agent is available on voice: the previous agent must still be first.
    let mut bob = agent(&app, "bob", json!({}), json!({"chat": 3, "voice": 1})).await;
    bob.ok(json!({"type": "agent.heartbeat"})).await;

    gw.ok(
        json!({"type": "conversation.switch_channel", "conversation_id": id, "channel": "voice"}),
    )
    .await;
    let voice_offer = offer_of(&mut ann, &id).await;
    assert_eq!(voice_offer["channel"], "voice");
    let ctx = &voice_offer["context"];
    let lines: Vec<&str> = ctx["transcript"]
        .as_array()
        .expect("transcript")
        .iter()
        .filter_map(|l| l["text"].as_str())
        .collect();
    assert_eq!(lines, ["can you call me?", "calling you now"]);
    assert_eq!(ctx["transcript"][0]["channel"], "chat");
    assert_eq!(ctx["previous_channels"], json!(["chat"]));
    assert_eq!(ctx["previous_agent_id"], "ann");

    accept(&mut ann, &voice_offer).await;
    let assigned = gw
        .wait_for_where(|f| f["type"] == "conversation.assigned" && f["channel"] == "voice")
        .await;
    assert_eq!(assigned["agent_id"], "ann");
    assert_eq!(assigned["conversation_id"], id.as_str());
    let (_, conv) = app
        .get(&format!("/v1/conversations/{id}"), Some(CONNECTOR))
        .await;
    assert_eq!(conv["channel"], "voice");
    assert_eq!(conv["state"], "assigned");
    assert_eq!(conv["previous_channels"], json!(["chat"]));
    app.stop().await;
}

#[actix_web::test]
async fn customer_view_spans_channels_and_offers_carry_history() {
    let app = spawn_app().await;
    let mut gw = app.client(CONNECTOR).await;
    let chat = open(&mut gw, "cu-multi", "chat", json!({})).await;
    gw.ok(json!({"type": "conversation.message", "conversation_id": chat, "from": "customer", "text": "hello from chat"}))
        .await;
    let email = open(&mut gw, "cu-multi", "email", json!({})).await;

    let (status, view) = app.get("/v1/customers/cu-multi", Some(SUPERVISOR)).await;
    assert_eq!(status, 200, "{view}");
    let convs = view["conversations"].as_array().expect("conversations");
    assert_eq!(convs.len(), 2);
    assert_eq!(convs[0]["id"], chat.as_str());
    assert_eq!(convs[0]["channel"], "chat");
    assert_eq!(convs[0]["transcript"][0]["text"], "hello from chat");
    assert_eq!(convs[1]["id"], email.as_str());
    assert_eq!(convs[1]["channel"], "email");
    assert_eq!(view["channels"], json!(["chat", "email"]));

    // An agent who only does email gets the email offer, with the chat in its history.
    let mut eve = agent(&app, "eve", json!({}), json!({"email": 1, "chat": 0})).await;
    let offer = offer_of(&mut eve, &email).await;
    let history = offer["context"]["customer_history"]
        .as_array()
        .expect("history");
    assert_eq!(history.len(), 1, "{offer}");
    assert_eq!(history[0]["conversation_id"], chat.as_str());
    assert_eq!(history[0]["channel"], "chat");
    assert_eq!(history[0]["state"], "waiting");
    assert!(history[0]["opened_at"].as_u64().is_some());

    let (status, _) = app.get("/v1/customers/nobody", Some(SUPERVISOR)).await;
    assert_eq!(status, 404);
    let (status, body) = app
        .get("/v1/conversations/c-424242", Some(SUPERVISOR))
        .await;
    assert_eq!(status, 404);
    assert_eq!(body["code"], "not_found");
    app.stop().await;
}

#[actix_web::test]
async fn ended_conversations_are_dropped_after_the_retention_window_live_ones_stay() {
    let app = spawn_app_custom("", &[("SWITCHBOARD__SNAPSHOT__RETAIN_ENDED_SECS", "1")]).await;
    let mut gw = app.client(CONNECTOR).await;
    let mut desk = agent(&app, "keep-a", json!({}), json!({"chat": 1})).await;
    let done = open(&mut gw, "cu-keep", "chat", json!({})).await;
    let offer = offer_of(&mut desk, &done).await;
    accept(&mut desk, &offer).await;
    desk.ok(json!({"type": "conversation.complete", "conversation_id": done}))
        .await;
    gw.wait_for("conversation.ended").await;
    // Still waiting (the only agent is in wrap-up or busy): must stay.
    let live = open(&mut gw, "cu-keep", "voice", json!({})).await;

    let (status, _) = app
        .get(&format!("/v1/conversations/{done}"), Some(SUPERVISOR))
        .await;
    assert_eq!(status, 200, "kept until the window has passed");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, _) = app
            .get(&format!("/v1/conversations/{done}"), Some(SUPERVISOR))
            .await;
        if status == 404 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the ended conversation was never dropped"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (_, view) = app.get("/v1/customers/cu-keep", Some(SUPERVISOR)).await;
    let ids: Vec<&str> = view["conversations"]
        .as_array()
        .expect("conversations")
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert_eq!(
        ids,
        vec![live.as_str()],
        "only the live one is left: {view}"
    );
    app.stop().await;
}
