//! Routing semantics seen from the wire: skills and levels, capacity per
//! channel, priority then FIFO, reject and timeout re-routing, abandon.

use crate::helpers::*;
use serde_json::json;

#[actix_web::test]
async fn skills_levels_pick_the_qualified_agent() {
    let app = spawn_app().await;
    let mut junior = agent(&app, "junior", json!({"billing": 1}), json!({"chat": 3})).await;
    let mut senior = agent(&app, "senior", json!({"billing": 4}), json!({"chat": 3})).await;
    let mut gw = app.client(CONNECTOR).await;

    let id = open(&mut gw, "cu-s", "chat", json!({"skills": {"billing": 3}})).await;
    let offer = offer_of(&mut senior, &id).await;
    assert_eq!(offer["conversation_id"], id.as_str());
    // The junior agent qualifies for an unskilled conversation, and gets it
    // (the senior one is busy with an offer only on one of three slots, so
    // whoever is picked must be qualified; both are).
    accept(&mut senior, &offer).await;
    let easy = open(&mut gw, "cu-s2", "chat", json!({})).await;
    let got = tokio::select! {
        o = offer_of(&mut junior, &easy) => o,
        o = offer_of(&mut senior, &easy) => o,
    };
    assert_eq!(got["conversation_id"], easy.as_str());
    // No one but the senior agent ever saw the billing conversation.
    assert!(junior
        .backlog()
        .iter()
        .all(|f| f["conversation_id"] != id.as_str()));
    app.stop().await;
}

#[actix_web::test]
async fn capacity_is_per_channel() {
    let app = spawn_app().await;
    let mut a = agent(&app, "a", json!({}), json!({"chat": 1, "voice": 1})).await;
    let mut b = agent(&app, "b", json!({}), json!({"chat": 1, "voice": 1})).await;
    let mut gw = app.client(CONNECTOR).await;

    let first = open(&mut gw, "cu-c1", "chat", json!({})).await;
    let (holder, offer) = tokio::select! {
        o = offer_of(&mut a, &first) => ("a", o),
        o = offer_of(&mut b, &first) => ("b", o),
    };
    let (mut holder_c, mut other_c) = if holder == "a" { (a, b) } else { (b, a) };
    accept(&mut holder_c, &offer).await;

    // The holder's only chat slot is taken: the next chat goes to the other agent.
    let second = open(&mut gw, "cu-c2", "chat", json!({})).await;
    let offer2 = offer_of(&mut other_c, &second).await;
    accept(&mut other_c, &offer2).await;

    // Voice slots are independent of chat: a voice call still finds an agent.
    let call = open(&mut gw, "cu-c3", "voice", json!({})).await;
    let voice = tokio::select! {
        o = offer_of(&mut holder_c, &call) => o,
        o = offer_of(&mut other_c, &call) => o,
    };
    assert_eq!(voice["channel"], "voice");

    // Both chat slots are full: a third chat waits (depth 1 in /v1/queues).
    let third = open(&mut gw, "cu-c4", "chat", json!({})).await;
    let (_, queues) = app.get("/v1/queues", Some(SUPERVISOR)).await;
    let row = queues["queues"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["queue"] == "general" && r["channel"] == "chat")
        .cloned()
        .expect("general/chat row");
    assert_eq!(row["depth"], 1, "{queues}");
    // The two accepted chats count as answered, both within the target.
    assert_eq!(row["answered"], 2, "{queues}");
    assert_eq!(row["answered_within_target"], 2, "{queues}");
    assert_eq!(row["service_level"], 1.0, "{queues}");
    // Completing one chat frees the slot and the waiting chat is offered.
    holder_c
        .ok(json!({"type": "conversation.complete", "conversation_id": first}))
        .await;
    let offer4 = offer_of(&mut holder_c, &third).await;
    assert_eq!(offer4["channel"], "chat");
    app.stop().await;
}

#[actix_web::test]
async fn priority_first_then_arrival_order() {
    let app = spawn_app().await;
    let mut gw = app.client(CONNECTOR).await;
    let low_1 = open(&mut gw, "cu-p1", "chat", json!({"priority": 0})).await;
    let high = open(&mut gw, "cu-p2", "chat", json!({"priority": 5})).await;
    let low_2 = open(&mut gw, "cu-p3", "chat", json!({"priority": 0})).await;

    let mut a = agent(&app, "solo", json!({}), json!({"chat": 1})).await;
    for expected in [&high, &low_1, &low_2] {
        let offer = a.wait_for("offer").await;
        assert_eq!(
            offer["conversation_id"],
            expected.as_str(),
            "offers out of order"
        );
        accept(&mut a, &offer).await;
        a.ok(json!({"type": "conversation.complete", "conversation_id": expected}))
            .await;
    }
    app.stop().await;
}

#[actix_web::test]
async fn a_rejected_offer_goes_to_another_agent() {
    let app = spawn_app().await;
    let mut a = agent(&app, "ra", json!({}), json!({"chat": 1})).await;
    let mut b = agent(&app, "rb", json!({}), json!({"chat": 1})).await;
    let mut gw = app.client(CONNECTOR).await;
    let id = open(&mut gw, "cu-r", "chat", json!({})).await;
    let (first, offer) = tokio::select! {
        o = offer_of(&mut a, &id) => ("ra", o),
        o = offer_of(&mut b, &id) => ("rb", o),
    };
    let (mut declined, mut other) = if first == "ra" { (a, b) } else { (b, a) };
    declined
        .ok(json!({"type": "offer.reject", "offer_id": offer["offer_id"]}))
        .await;
    let ended = declined.wait_for("offer.ended").await;
    assert_eq!(ended["reason"], "rejected");
    let second = offer_of(&mut other, &id).await;
    assert_ne!(second["offer_id"], offer["offer_id"]);
    accept(&mut other, &second).await;
    let assigned = gw.wait_for("conversation.assigned").await;
    assert_ne!(assigned["agent_id"], first);
    app.stop().await;
}

#[actix_web::test]
async fn an_expired_offer_makes_the_agent_away_and_reroutes() {
    let app = spawn_app_with("[channels.sms]\noffer_timeout_secs = 0.5\n").await;
    let mut slow = agent(&app, "slow", json!({}), json!({"sms": 1})).await;
    let mut gw = app.client(CONNECTOR).await;
    let id = open(&mut gw, "cu-t", "sms", json!({})).await;
    let offer = offer_of(&mut slow, &id).await;
    // Do not answer: the offer expires, the agent is told it is away.
    let status = slow.wait_for("agent.status").await;
    assert_eq!(status["status"], "away");
    assert_eq!(status["agent_id"], "slow");
    let ended = slow.wait_for("offer.ended").await;
    assert_eq!(ended["offer_id"], offer["offer_id"]);
    assert_eq!(ended["reason"], "expired");
    slow.refused(
        json!({"type": "offer.accept", "offer_id": offer["offer_id"]}),
        "unknown_offer",
    )
    .await;

    let (_, agents) = app.get("/v1/agents", Some(SUPERVISOR)).await;
    let row = agents["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .find(|a| a["id"] == "slow")
        .cloned()
        .expect("listed");
    assert_eq!(row["status"], "away");

    let mut quick = agent(&app, "quick", json!({}), json!({"sms": 1})).await;
    let again = offer_of(&mut quick, &id).await;
    accept(&mut quick, &again).await;
    let assigned = gw.wait_for("conversation.assigned").await;
    assert_eq!(assigned["agent_id"], "quick");
    app.stop().await;
}

#[actix_web::test]
async fn abandon_while_waiting_ends_the_conversation() {
    let app = spawn_app().await;
    let mut gw = app.client(CONNECTOR).await;
    let gone = open(&mut gw, "cu-a", "chat", json!({})).await;
    gw.ok(json!({"type": "conversation.abandon", "conversation_id": gone}))
        .await;
    let ended = gw.wait_for("conversation.ended").await;
    assert_eq!(ended["conversation_id"], gone.as_str());
    assert_eq!(ended["outcome"], "abandoned");
    let (_, conv) = app
        .get(&format!("/v1/conversations/{gone}"), Some(CONNECTOR))
        .await;
    assert_eq!(conv["state"], "ended");
    assert_eq!(conv["outcome"], "abandoned");

    let next = open(&mut gw, "cu-b", "chat", json!({})).await;
    let mut a = agent(&app, "late", json!({}), json!({"chat": 1})).await;
    let first = a.wait_for("offer").await;
    assert_eq!(
        first["conversation_id"],
        next.as_str(),
        "an abandoned conversation must not be offered"
    );
    // Acting on an ended conversation is refused.
    gw.refused(
        json!({"type": "conversation.abandon", "conversation_id": gone}),
        "unknown_conversation",
    )
    .await;
    app.stop().await;
}
