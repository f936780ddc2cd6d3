//! SLA frames over the wire: an email's first-response target warns and
//! breaches towards the gateway (and supervisors), and the agent's first
//! reply stops that clock.

use crate::helpers::*;
use serde_json::json;

/// A 1 s first-response target on email, warning at half of it.
async fn spawn_email_sla_app() -> TestApp {
    spawn_app_custom(
        "",
        &[
            (
                "SWITCHBOARD__CHANNELS__EMAIL__SLA__FIRST_RESPONSE_TARGET_SECS",
                "1",
            ),
            ("SWITCHBOARD__CHANNELS__EMAIL__SLA__WARNING_FRACTION", "0.5"),
        ],
    )
    .await
}

#[actix_web::test]
async fn an_unanswered_email_warns_then_breaches_its_first_response_target() {
    let app = spawn_email_sla_app().await;
    let mut sup = app.client(SUPERVISOR).await;
    sup.ok(json!({"type": "subscribe"})).await;
    let mut gw = app.client(CONNECTOR).await;
    let mut desk = agent(&app, "mail-a", json!({}), json!({"email": 5})).await;
    let id = open(&mut gw, "cu-mail", "email", json!({})).await;
    let offer = offer_of(&mut desk, &id).await;
    accept(&mut desk, &offer).await;

    let warning = gw.wait_for("conversation.sla").await;
    assert_eq!(warning["conversation_id"], id.as_str());
    assert_eq!(warning["kind"], "first_response");
    assert_eq!(warning["level"], "warning");
    assert!(
        warning["waited_ms"].as_u64().expect("waited_ms") >= 500,
        "{warning}"
    );
    let breach = gw.wait_for("conversation.sla").await;
    assert_eq!(breach["level"], "breach");
    assert!(
        breach["waited_ms"].as_u64().expect("waited_ms") >= 1000,
        "{breach}"
    );

    // Supervisors see it as an event, and it is counted.
    let event = sup
        .wait_for_where(|f| f["type"] == "event" && f["kind"] == "sla" && f["level"] == "breach")
        .await;
    assert_eq!(event["conversation_id"], id.as_str());
    assert_eq!(event["sla"], "first_response");
    let breaches = app
        .metric("switchboard_sla_events_total{channel=\"email\",queue=\"general\",kind=\"first_response\",level=\"breach\"}")
        .await;
    // The recorder is process-wide (other tests add to it): at least this one.
    assert!(breaches >= 1.0, "breaches counted: {breaches}");
    app.stop().await;
}

#[actix_web::test]
async fn the_agents_first_reply_stops_the_first_response_clock() {
    let app = spawn_email_sla_app().await;
    let mut gw = app.client(CONNECTOR).await;
    let mut desk = agent(&app, "mail-b", json!({}), json!({"email": 5})).await;
    let id = open(&mut gw, "cu-mail-2", "email", json!({})).await;
    let offer = offer_of(&mut desk, &id).await;
    accept(&mut desk, &offer).await;
    desk.ok(json!({"type": "conversation.message", "conversation_id": id, "from": "agent", "text": "on it"}))
        .await;
    gw.wait_for("conversation.message").await;

    // Well past the 1 s target: a request round trip collects whatever the
    // gateway was sent meanwhile, and none of it is an SLA frame.
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    gw.ok(json!({"type": "conversation.message", "conversation_id": id, "from": "customer", "text": "thanks"}))
        .await;
    assert!(
        !gw.backlog().iter().any(|f| f["type"] == "conversation.sla"),
        "no SLA frame after the first reply: {:?}",
        gw.backlog()
    );
    app.stop().await;
}
