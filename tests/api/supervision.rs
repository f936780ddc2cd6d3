//! Supervision: an actor that panics inside a handler is rebuilt from the
//! state store (or, for the router, from the engine kept outside it) with its
//! state, and the other conversations carry on untouched.

use crate::helpers::*;
use serde_json::json;

/// One assigned chat between `gw` and agent client `a`; returns its id.
async fn assigned_chat(gw: &mut Client, a: &mut Client, customer: &str) -> String {
    let id = open(gw, customer, "chat", json!({})).await;
    let offer = offer_of(a, &id).await;
    accept(a, &offer).await;
    let id2 = id.clone();
    gw.wait_for_where(move |f| {
        f["type"] == "conversation.assigned" && f["conversation_id"] == id2.as_str()
    })
    .await;
    id
}

async fn say(gw: &mut Client, a: &mut Client, id: &str, text: &str) {
    gw.ok(json!({"type": "conversation.message", "conversation_id": id, "from": "customer", "text": text})).await;
    let text = text.to_string();
    a.wait_for_where(move |f| f["type"] == "conversation.message" && f["text"] == text.as_str())
        .await;
}

#[actix_web::test]
async fn a_panicking_conversation_actor_comes_back_with_its_state() {
    let app = spawn_app().await;
    let mut a = agent(&app, "sup-a", json!({}), json!({"chat": 3})).await;
    let mut gw = app.client(CONNECTOR).await;
    let victim = assigned_chat(&mut gw, &mut a, "cu-v").await;
    let bystander = assigned_chat(&mut gw, &mut a, "cu-w").await;
    say(&mut gw, &mut a, &victim, "before the crash").await;

    let (status, body) = app
        .post(
            &format!("/v1/admin/panic/conversation/{victim}"),
            Some(SUPERVISOR),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["restarted"], true, "{body}");

    say(&mut gw, &mut a, &victim, "after the crash").await;
    say(&mut gw, &mut a, &bystander, "unaffected").await;
    let (_, conv) = app
        .get(&format!("/v1/conversations/{victim}"), Some(CONNECTOR))
        .await;
    assert_eq!(conv["state"], "assigned");
    assert_eq!(conv["agent_id"], "sup-a");
    let lines: Vec<&str> = conv["transcript"]
        .as_array()
        .expect("transcript")
        .iter()
        .filter_map(|l| l["text"].as_str())
        .collect();
    assert_eq!(lines, ["before the crash", "after the crash"]);
    // The rebuilt actor still ends the conversation normally.
    a.ok(json!({"type": "conversation.complete", "conversation_id": victim}))
        .await;
    gw.wait_for_where(|f| f["type"] == "conversation.ended")
        .await;
    assert!(
        app.metric("switchboard_actor_restarts_total{actor=\"conversation\"}")
            .await
            >= 1.0
    );
    app.stop().await;
}

#[actix_web::test]
async fn a_panicking_agent_actor_comes_back_with_its_session_and_conversations() {
    let app = spawn_app().await;
    let mut a = agent(&app, "sup-b", json!({}), json!({"chat": 3})).await;
    let mut gw = app.client(CONNECTOR).await;
    let held = assigned_chat(&mut gw, &mut a, "cu-x").await;

    let (status, body) = app
        .post("/v1/admin/panic/agent/sup-b", Some(SUPERVISOR))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["restarted"], true, "{body}");

    // Its session still gets relayed messages and new offers.
    say(&mut gw, &mut a, &held, "are you there?").await;
    let fresh = assigned_chat(&mut gw, &mut a, "cu-y").await;
    let (_, agents) = app.get("/v1/agents", Some(SUPERVISOR)).await;
    let row = agents["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .find(|r| r["id"] == "sup-b")
        .cloned()
        .expect("listed");
    let mut convs: Vec<String> = row["conversations"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|c| c.as_str().map(String::from))
        .collect();
    convs.sort();
    let mut expected = vec![held, fresh];
    expected.sort();
    assert_eq!(convs, expected);
    app.stop().await;
}

#[actix_web::test]
async fn a_panicking_router_comes_back_with_the_engine_state() {
    let app = spawn_app().await;
    let mut a = agent(&app, "sup-c", json!({}), json!({"chat": 1})).await;
    let mut gw = app.client(CONNECTOR).await;
    let held = assigned_chat(&mut gw, &mut a, "cu-r1").await;
    let waiting = open(&mut gw, "cu-r2", "chat", json!({})).await;

    let (status, body) = app
        .post("/v1/admin/panic/router/main", Some(SUPERVISOR))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["restarted"], true, "{body}");

    // The engine kept its state: completing the held chat frees the slot and
    // the waiting one is offered.
    a.ok(json!({"type": "conversation.complete", "conversation_id": held}))
        .await;
    let offer = offer_of(&mut a, &waiting).await;
    accept(&mut a, &offer).await;
    let (status, _) = app.get("/readyz", None).await;
    assert_eq!(status, 200);
    app.stop().await;
}
