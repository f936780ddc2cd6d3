//! A supervisor that subscribes and never reads is disconnected once its
//! outbound buffer fills; the router never waits on it and everyone else
//! keeps working.

use crate::helpers::*;
use serde_json::json;
use std::time::Duration;

#[actix_web::test]
async fn a_subscriber_that_never_reads_is_dropped_and_others_carry_on() {
    // A long client timeout: the lazy client never answers pings, and it must
    // be dropped for not reading, not for being silent.
    let app = spawn_app_custom(
        "",
        &[
            ("SWITCHBOARD__SERVER__OUTBOUND_BUFFER_FRAMES", "16"),
            ("SWITCHBOARD__SERVER__CLIENT_TIMEOUT_SECS", "300"),
        ],
    )
    .await;
    let metric = "switchboard_errors_total{code=\"slow_consumer\"}";
    let before = app.metric(metric).await;

    // A tiny receive window so the server's writes stall soon.
    let mut lazy = Client::connect(&app.ws_url(), Some(SUPERVISOR), Some(2048))
        .await
        .expect("connect");
    lazy.ok(json!({"type": "subscribe"})).await;
    // Ask for a few MB of stats replies and never read them: the server's
    // socket to this client fills up and its session can no longer drain.
    for i in 0..1500 {
        lazy.send(json!({"type": "stats", "req_id": i})).await;
    }

    // Traffic with no agent logged in: every open and abandon is an event
    // for subscribers (an agent that did not read its offers would be
    // dropped too, so agents join only afterwards).
    let mut gw = app.client(CONNECTOR).await;
    let mut watcher = app.client(SUPERVISOR).await;
    watcher.ok(json!({"type": "subscribe"})).await;
    let first = open(&mut gw, "cu-first", "chat", json!({})).await;
    gw.ok(json!({"type": "conversation.abandon", "conversation_id": first}))
        .await;
    let event = watcher.wait_for("event").await;
    assert_eq!(event["kind"], "ended", "{event}");
    assert_eq!(event["conversation_id"], first.as_str());
    drop(watcher);
    let padding = "p".repeat(1500);
    let started = tokio::time::Instant::now();
    let mut cycles = 0;
    // Bounded traffic: stop as soon as the server dropped the lazy client.
    while app.metric(metric).await < before + 1.0 {
        assert!(
            cycles < 2000 && started.elapsed() < Duration::from_secs(90),
            "slow consumer never dropped after {cycles} cycles in {:?}",
            started.elapsed()
        );
        for i in 0..10 {
            let id = open(
                &mut gw,
                &format!("cu-slow-{cycles}-{i}"),
                "chat",
                json!({"attributes": {"pad": padding}}),
            )
            .await;
            gw.ok(json!({"type": "conversation.abandon", "conversation_id": id}))
                .await;
        }
        cycles += 1;
    }

    // Everyone else still works.
    let mut a = agent(&app, "busy", json!({}), json!({"chat": 3})).await;
    let id = open(&mut gw, "cu-after", "chat", json!({})).await;
    let offer = offer_of(&mut a, &id).await;
    accept(&mut a, &offer).await;
    gw.wait_for_where(|f| f["type"] == "conversation.assigned")
        .await;
    let mut sup = app.client(SUPERVISOR).await;
    let stats = sup.request(json!({"type": "stats"})).await;
    assert_eq!(stats["type"], "stats");

    // The lazy client, once it reads, finds its connection closed.
    let close = lazy.expect_close().await;
    if let Some(frame) = close {
        assert!(frame.reason.contains("slow consumer"), "{frame:?}");
    }
    app.stop().await;
}
