//! Authentication (401 before the upgrade) and authorization (an agent acts
//! only as itself, a connector only on its own conversations).

use crate::helpers::*;
use serde_json::json;

#[actix_web::test]
async fn missing_or_wrong_tokens_get_401() {
    let app = spawn_app().await;
    let url = app.ws_url();
    assert!(matches!(
        Client::connect(&url, None, None).await,
        Err(ConnectError::Status(401))
    ));
    assert!(matches!(
        Client::connect(&url, Some("wrong"), None).await,
        Err(ConnectError::Status(401))
    ));
    let with_query = format!("{url}?token={AGENT}");
    assert!(
        Client::connect(&with_query, None, None).await.is_ok(),
        "?token= is accepted"
    );

    let (status, body) = app.get("/v1/agents", None).await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], "unauthorized");
    let (status, _) = app.get("/v1/queues", Some("wrong")).await;
    assert_eq!(status, 401);
    let (status, _) = app.get("/v1/queues", Some(SUPERVISOR)).await;
    assert_eq!(status, 200);
    let (status, body) = app.get("/healthz", None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let (status, _) = app.get("/readyz", None).await;
    assert_eq!(status, 200);
    // Fault injection needs a supervisor token.
    let (status, _) = app.post("/v1/admin/panic/router/main", Some(AGENT)).await;
    assert_eq!(status, 403);
    app.stop().await;
}

#[actix_web::test]
async fn agents_and_connectors_act_only_on_their_own_work() {
    let app = spawn_app().await;
    let mut a = agent(&app, "own-a", json!({}), json!({"chat": 1})).await;
    let mut b = agent(&app, "own-b", json!({}), json!({"chat": 1})).await;
    let mut gw = app.client(CONNECTOR).await;
    let mut other_gw = app.client(CONNECTOR_2).await;

    let id = open(&mut gw, "cu-own", "chat", json!({})).await;
    let (owner, offer) = tokio::select! {
        o = offer_of(&mut a, &id) => ("own-a", o),
        o = offer_of(&mut b, &id) => ("own-b", o),
    };
    let (mut mine, mut theirs) = if owner == "own-a" { (a, b) } else { (b, a) };

    theirs
        .refused(
            json!({"type": "offer.accept", "offer_id": offer["offer_id"]}),
            "forbidden",
        )
        .await;
    theirs
        .refused(
            json!({"type": "offer.reject", "offer_id": offer["offer_id"]}),
            "forbidden",
        )
        .await;
    accept(&mut mine, &offer).await;
    theirs
        .refused(
            json!({"type": "conversation.complete", "conversation_id": id}),
            "forbidden",
        )
        .await;
    theirs
        .refused(json!({"type": "conversation.message", "conversation_id": id, "from": "agent", "text": "hi"}), "forbidden")
        .await;
    theirs
        .refused(
            json!({"type": "conversation.transfer", "conversation_id": id, "queue": "general"}),
            "forbidden",
        )
        .await;
    // The assigned agent may not speak as the customer.
    mine.refused(json!({"type": "conversation.message", "conversation_id": id, "from": "customer", "text": "x"}), "forbidden")
        .await;

    other_gw
        .refused(
            json!({"type": "conversation.close", "conversation_id": id}),
            "forbidden",
        )
        .await;
    other_gw
        .refused(json!({"type": "conversation.message", "conversation_id": id, "from": "customer", "text": "x"}), "forbidden")
        .await;

    // The rightful parties still work.
    gw.ok(json!({"type": "conversation.message", "conversation_id": id, "from": "customer", "text": "still here"})).await;
    mine.wait_for("conversation.message").await;
    mine.ok(json!({"type": "conversation.complete", "conversation_id": id}))
        .await;
    app.stop().await;
}
