//! The checks must be able to fail: a deliberately faulty fake engine on
//! 127.0.0.1 (a few lines of tokio-tungstenite, no routing at all) is driven
//! by the real load generator, and the run must report the fault it commits.
//!
//! The fake speaks just enough of wire contract v1: it acks every request
//! (an open with `c-N`), and offers every opened conversation according to
//! its [`Fault`]. It never checks skills or capacity.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use switchboard_loadtest::modes::Progress;
use switchboard_loadtest::net::Target;
use switchboard_loadtest::report::Report;
use switchboard_loadtest::sim::Connection;
use switchboard_loadtest::{run_scenario, scenario};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fault {
    /// Every conversation is offered to the first agent, whatever it holds.
    Overbook,
    /// Every conversation is offered to two agents at once.
    OfferTwice,
    /// Every conversation is offered to the first agent, even ones needing a
    /// skill it lacks.
    IgnoreSkills,
}

#[derive(Default)]
struct Fake {
    agents: Mutex<Vec<mpsc::UnboundedSender<String>>>,
    next: AtomicU64,
}

async fn serve(listener: TcpListener, fake: Arc<Fake>, fault: Fault) {
    while let Ok((tcp, _)) = listener.accept().await {
        let fake = fake.clone();
        tokio::spawn(async move {
            let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
                return;
            };
            let (mut sink, mut stream) = ws.split();
            let (tx, mut rx) = mpsc::unbounded_channel::<String>();
            tokio::spawn(async move {
                while let Some(text) = rx.recv().await {
                    if sink.send(Message::text(text)).await.is_err() {
                        return;
                    }
                }
            });
            while let Some(Ok(msg)) = stream.next().await {
                let Message::Text(text) = msg else { continue };
                let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) else {
                    continue;
                };
                let req_id = frame["req_id"].clone();
                match frame["type"].as_str().unwrap_or_default() {
                    "agent.login" => {
                        fake.agents.lock().expect("lock").push(tx.clone());
                        let _ = tx.send(json!({"type": "ack", "req_id": req_id}).to_string());
                    }
                    "conversation.open" => {
                        let n = fake.next.fetch_add(1, Ordering::Relaxed) + 1;
                        let id = format!("c-{n}");
                        let _ = tx.send(
                            json!({"type": "ack", "req_id": req_id, "conversation_id": id})
                                .to_string(),
                        );
                        let agents = fake.agents.lock().expect("lock").clone();
                        let targets = match fault {
                            Fault::Overbook | Fault::IgnoreSkills => &agents[..1],
                            Fault::OfferTwice => &agents[..2],
                        };
                        for (k, agent) in targets.iter().enumerate() {
                            let _ = agent.send(
                                json!({"type": "offer", "offer_id": format!("o-{n}-{k}"),
                                    "conversation_id": id, "customer_id": frame["customer_id"],
                                    "channel": frame["channel"], "priority": 0, "waited_ms": 0,
                                    "expires_in_ms": 30000})
                                .to_string(),
                            );
                        }
                    }
                    _ => {
                        let _ = tx.send(json!({"type": "ack", "req_id": req_id}).to_string());
                    }
                }
            }
        });
    }
}

/// Two agents (the first with billing 1, chat capacity 1), a second of
/// arrivals at 20/s, 100 ms handle times; `skills` sets what the mix requires.
fn scenario_text(skills: &str) -> String {
    format!(
        r#"
name = "faulty"
description = "against a faulty fake engine"
duration_secs = 1
drain_secs = 2
max_conversations = 40
seed = 11
[arrivals]
rate_per_sec = 20
connectors = 1
mix = [{{ weight = 1, channel = "chat", skills = {skills} }}]
[agents]
count = 2
profiles = [
  {{ weight = 1, skills = {{ billing = 1 }}, capacity = {{ chat = 1 }}, accept_delay = {{ dist = "constant", ms = 1 }}, handle_time = {{ dist = "constant", ms = 100 }} }},
]
[thresholds]
lost = 0
duplicated = 0
misrouted = 0
"#
    )
}

async fn run_against(fault: Fault, skills: &str) -> Report {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(serve(listener, Arc::new(Fake::default()), fault));
    let sc = Arc::new(scenario::parse(&scenario_text(skills)).expect("scenario"));
    let url = format!("ws://127.0.0.1:{port}");
    let conn = Connection {
        target: Target::parse(&url).expect("loopback"),
        connector_token: "c".into(),
        agent_token: "a".into(),
        connect_concurrency: 4,
    };
    let report = run_scenario(sc, &conn, &Progress::new(false, 0.0), &url)
        .await
        .expect("the run could be made");
    server.abort();
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_that_overbooks_an_agent_is_caught() {
    let r = run_against(Fault::Overbook, "{}").await;
    let run = r.run.as_ref().expect("run");
    assert!(run.counts.misrouted_capacity > 0, "{:?}", run.counts);
    assert!(!r.passed);
    assert!(r
        .threshold_failures
        .iter()
        .any(|f| f.starts_with("misrouted")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_that_offers_one_conversation_to_two_agents_is_caught() {
    let r = run_against(Fault::OfferTwice, "{}").await;
    let run = r.run.as_ref().expect("run");
    assert!(run.verdict.duplicated > 0, "{:?}", run.verdict);
    assert!(!r.passed);
    assert!(r
        .threshold_failures
        .iter()
        .any(|f| f.starts_with("duplicated")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_that_ignores_skill_levels_is_caught() {
    let r = run_against(Fault::IgnoreSkills, "{ billing = 2 }").await;
    let run = r.run.as_ref().expect("run");
    assert!(run.counts.misrouted_skill > 0, "{:?}", run.counts);
    assert!(!r.passed);
    assert!(r
        .threshold_failures
        .iter()
        .any(|f| f.starts_with("misrouted")));
}
