//! End-to-end check of the metrics pipeline: a real engine, a real Prometheus
//! scraping it every second, WebSocket traffic through every conversation and
//! offer state, then every panel query of both Grafana boards run through
//! Prometheus' HTTP API — each must parse and return data. Also checks that no
//! label value of `GET /metrics` is an id the test used, that
//! `promtool check metrics` accepts the exposition, and that the alert
//! rules pass their unit tests (`promtool test rules grafana/alerts.test.yml`).
//!
//! Needs the `prometheus` and `promtool` binaries (Debian: `apt-get install
//! prometheus`). Without them the test is skipped with a message — unless
//! `CI` is set, where a missing binary fails it. Everything listens on
//! 127.0.0.1, and the test stops by itself within [`TEST_BUDGET`].

use crate::helpers::{
    accept, agent, http, offer_of, open, spawn_app_with, Client, TestApp, CONNECTOR, SUPERVISOR,
};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::{sleep, timeout, Instant};
use tokio_tungstenite::tungstenite::Message;

/// The whole test (traffic, scrapes, queries) must finish within this.
const TEST_BUDGET: Duration = Duration::from_secs(90);

/// sms gets a short offer timeout (the expiry path) and a tiny answer target
/// (so SLA warnings and breaches fire while it waits).
const EXTRA_CONFIG: &str =
    "[channels.sms]\noffer_timeout_secs = 0.5\n[channels.sms.sla]\nanswer_target_secs = 0.25\n";

/// What the traffic must have left in Prometheus, each at least 1.
const TRAFFIC_SEEN: [(&str, &str); 15] = [
    ("opened", "sum(switchboard_conversations_opened_total)"),
    ("assigned", "sum(switchboard_conversations_assigned_total)"),
    (
        "completed",
        "sum(switchboard_conversations_completed_total)",
    ),
    (
        "abandoned",
        "sum(switchboard_conversations_abandoned_total)",
    ),
    (
        "transferred",
        "sum(switchboard_conversations_transferred_total)",
    ),
    (
        "offer rejected",
        r#"sum(switchboard_offers_total{outcome="rejected"})"#,
    ),
    (
        "offer expired",
        r#"sum(switchboard_offers_total{outcome="expired"})"#,
    ),
    (
        "offer accepted",
        r#"sum(switchboard_offers_total{outcome="accepted"})"#,
    ),
    (
        "sms sla events",
        r#"sum(switchboard_sla_events_total{channel="sms"})"#,
    ),
    (
        "agent set away",
        r#"sum(switchboard_agent_status_changes_total{status="away"})"#,
    ),
    (
        "malformed frame",
        r#"sum(switchboard_errors_total{code="malformed_json"})"#,
    ),
    (
        "frames in",
        r#"sum(switchboard_ws_messages_total{direction="in",type="offer.accept"})"#,
    ),
    (
        "frames out",
        r#"sum(switchboard_ws_messages_total{direction="out",type="offer"})"#,
    ),
    (
        "decisions",
        "sum(switchboard_routing_decision_seconds_count)",
    ),
    (
        "handle times",
        "sum(switchboard_conversation_handle_seconds_count)",
    ),
];

const AGENT_ONE: &str = "prom-agent-one";
const AGENT_TWO: &str = "prom-agent-two";
const CUSTOMERS: [&str; 3] = ["prom-customer-1", "prom-customer-2", "prom-customer-3"];

#[actix_web::test]
async fn every_board_query_returns_data_from_a_real_prometheus() {
    let Some(tools) = find_tools() else { return };
    timeout(TEST_BUDGET, run(tools))
        .await
        .expect("the prometheus end-to-end test ran out of time");
}

struct Tools {
    prometheus: PathBuf,
    promtool: PathBuf,
}

/// The binaries, or `None` (test skipped) when they are missing outside CI.
fn find_tools() -> Option<Tools> {
    let found = which("prometheus").zip(which("promtool"));
    match found {
        Some((prometheus, promtool)) => Some(Tools {
            prometheus,
            promtool,
        }),
        None if std::env::var_os("CI")
            .is_some_and(|v| !v.is_empty() && v != "false" && v != "0") =>
        {
            panic!("CI is set but `prometheus`/`promtool` are not on PATH (apt-get install prometheus)")
        }
        None => {
            eprintln!(
                "SKIPPED every_board_query_returns_data_from_a_real_prometheus: `prometheus` and `promtool` \
                 are not on PATH (apt-get install prometheus); set CI=true to make this a failure"
            );
            None
        }
    }
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

async fn run(tools: Tools) {
    let app = spawn_app_with(EXTRA_CONFIG).await;
    let engine = app.addr;

    // Prometheus, scraping the engine every second, with our alert rules loaded.
    let dir = tempfile::tempdir().expect("temp dir");
    let prom = PrometheusProcess::start(&tools.prometheus, dir.path(), engine).await;

    let mut used_ids: HashSet<String> = [AGENT_ONE, AGENT_TWO]
        .iter()
        .map(|s| s.to_string())
        .collect();
    used_ids.extend(CUSTOMERS.iter().map(|s| s.to_string()));
    drive_traffic(&app, &mut used_ids).await;

    // /metrics: no id as a label value; promtool accepts it.
    let (status, body) = app.get("/metrics", None).await;
    assert_eq!(status, 200, "GET /metrics");
    let exposition = body.as_str().expect("/metrics is text").to_string();
    check_no_id_labels(&exposition, &used_ids);
    promtool_check_metrics(&tools.promtool, &exposition);
    // The alert rules' own unit tests (each alert firing for its bad series,
    // silent for the healthy one).
    promtool_test_rules(&tools.promtool);

    // Every panel query of both boards returns data (rates need two scrapes
    // after the traffic, so retry for a while before failing).
    let queries = board_queries();
    assert!(
        queries.len() >= 40,
        "expected the boards' queries, found {}",
        queries.len()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut failures;
    loop {
        failures = Vec::new();
        for (panel, expr) in &queries {
            if let Err(problem) = prom.query(expr).await {
                failures.push(format!("{panel}: {problem}\n    {expr}"));
            }
        }
        if failures.is_empty() || Instant::now() >= deadline {
            break;
        }
        sleep(Duration::from_secs(1)).await;
    }
    assert!(
        failures.is_empty(),
        "{} board queries failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Prometheus saw the traffic: every state the test drove was counted
    // (at least once: other tests in this process share the recorder).
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut missing;
    loop {
        missing = Vec::new();
        for (what, expr) in TRAFFIC_SEEN {
            match prom.scalar(expr).await {
                Some(v) if v >= 1.0 => {}
                other => missing.push(format!("{what}: {expr} = {other:?}")),
            }
        }
        if missing.is_empty() || Instant::now() >= deadline {
            break;
        }
        sleep(Duration::from_secs(1)).await;
    }
    assert!(
        missing.is_empty(),
        "traffic not seen by Prometheus:\n{}",
        missing.join("\n")
    );

    // The alert rules loaded and evaluate without error on real data.
    let rules = prom.api("/api/v1/rules").await;
    let groups = rules["data"]["groups"].as_array().expect("rule groups");
    let mut evaluated = 0;
    for rule in groups
        .iter()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
    {
        assert_eq!(
            rule["health"], "ok",
            "rule {} is unhealthy: {}",
            rule["name"], rule["lastError"]
        );
        evaluated += 1;
    }
    assert!(evaluated >= 8, "alert rules not loaded: {rules}");

    drop(prom);
    app.stop().await;
}

// ---------------------------------------------------------------------------
// Traffic through every state.
// ---------------------------------------------------------------------------

async fn drive_traffic(app: &TestApp, used_ids: &mut HashSet<String>) {
    let mut connector = app.client(CONNECTOR).await;
    let mut supervisor = app.client(SUPERVISOR).await;
    supervisor.ok(json!({"type": "subscribe"})).await;
    let mut one = agent(
        app,
        AGENT_ONE,
        json!({}),
        json!({"voice": 1, "chat": 1, "sms": 1}),
    )
    .await;

    // 1. Answered, a first response, completed (voice).
    let c1 = opened(&mut connector, CUSTOMERS[0], "voice", used_ids).await;
    let offer = offered(&mut one, &c1, used_ids).await;
    accept(&mut one, &offer).await;
    connector.wait_for("conversation.assigned").await;
    one.ok(json!({"type": "conversation.message", "conversation_id": c1, "from": "agent", "text": "hello"})).await;
    one.ok(json!({"type": "conversation.complete", "conversation_id": c1}))
        .await;

    // 2. Rejected, then abandoned while waiting (chat).
    let c2 = opened(&mut connector, CUSTOMERS[1], "chat", used_ids).await;
    let offer = offered(&mut one, &c2, used_ids).await;
    one.ok(json!({"type": "offer.reject", "offer_id": offer["offer_id"]}))
        .await;
    connector
        .ok(json!({"type": "conversation.abandon", "conversation_id": c2}))
        .await;

    // 3. Offer left to expire (agent one goes away, the SLA breaches), taken by
    //    a second agent, transferred, answered again and completed (sms).
    let c3 = opened(&mut connector, CUSTOMERS[2], "sms", used_ids).await;
    offered(&mut one, &c3, used_ids).await;
    let ended = one
        .wait_for_where(|f| f["type"] == "offer.ended" && f["conversation_id"] == c3.as_str())
        .await;
    assert_eq!(ended["reason"], "expired", "{ended}");
    let mut two = agent(app, AGENT_TWO, json!({}), json!({"sms": 1})).await;
    let offer = offered(&mut two, &c3, used_ids).await;
    accept(&mut two, &offer).await;
    one.ok(json!({"type": "agent.status", "status": "available"}))
        .await;
    two.ok(json!({"type": "conversation.transfer", "conversation_id": c3, "queue": "general"}))
        .await;
    // Whoever is offered it next accepts and completes it.
    let (took_one, offer) = tokio::select! {
        o = offer_of(&mut one, &c3) => (true, o),
        o = offer_of(&mut two, &c3) => (false, o),
    };
    used_ids.insert(offer["offer_id"].as_str().unwrap_or_default().to_string());
    let taker = if took_one { &mut one } else { &mut two };
    accept(taker, &offer).await;
    taker
        .ok(json!({"type": "conversation.complete", "conversation_id": c3}))
        .await;

    // 4. Error frames: malformed JSON and an unknown offer.
    one.send_raw(Message::text("{not json")).await;
    let err = one.wait_for("error").await;
    assert_eq!(err["code"], "malformed_json", "{err}");
    one.refused(
        json!({"type": "offer.accept", "offer_id": "o-987654"}),
        "unknown_offer",
    )
    .await;

    // 5. Supervisor stats and the event stream.
    let stats = supervisor.request(json!({"type": "stats"})).await;
    assert_eq!(stats["type"], "stats", "{stats}");
    supervisor.wait_for("event").await;
}

async fn opened(
    connector: &mut Client,
    customer: &str,
    channel: &str,
    used_ids: &mut HashSet<String>,
) -> String {
    let id = open(connector, customer, channel, json!({})).await;
    used_ids.insert(id.clone());
    id
}

async fn offered(agent: &mut Client, conversation: &str, used_ids: &mut HashSet<String>) -> Value {
    let offer = offer_of(agent, conversation).await;
    let id = offer["offer_id"]
        .as_str()
        .unwrap_or_else(|| panic!("offer without offer_id: {offer}"));
    used_ids.insert(id.to_string());
    offer
}

// ---------------------------------------------------------------------------
// /metrics checks.
// ---------------------------------------------------------------------------

/// Every label value of the exposition, from lines such as `name{a="x",b="y"} 1`.
fn label_values(exposition: &str) -> Vec<String> {
    let mut values = Vec::new();
    for line in exposition.lines().filter(|l| !l.starts_with('#')) {
        let (Some(open), Some(close)) = (line.find('{'), line.rfind('}')) else {
            continue;
        };
        for pair in line[open + 1..close].split("\",") {
            if let Some((_, value)) = pair.split_once("=\"") {
                values.push(value.trim_end_matches('"').to_string());
            }
        }
    }
    values
}

fn check_no_id_labels(exposition: &str, used_ids: &HashSet<String>) {
    let values = label_values(exposition);
    assert!(
        values.iter().any(|v| v == "voice"),
        "label parsing found no channel labels"
    );
    for value in &values {
        assert!(
            !used_ids.contains(value),
            "an id the test used is a label value: {value}"
        );
        for id in used_ids {
            assert!(
                !value.contains(id.as_str()),
                "label value `{value}` contains the id `{id}`"
            );
        }
        let numbered = |prefix: &str| {
            value
                .strip_prefix(prefix)
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        };
        assert!(
            !numbered("c-") && !numbered("o-"),
            "label value looks like an id: {value}"
        );
    }
}

fn promtool_check_metrics(promtool: &Path, exposition: &str) {
    use std::io::Write;
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(exposition.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool output");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn promtool_test_rules(promtool: &Path) {
    let grafana = Path::new(env!("CARGO_MANIFEST_DIR")).join("grafana");
    let out = Command::new(promtool)
        .args(["test", "rules", "alerts.test.yml"])
        .current_dir(&grafana)
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool test rules grafana/alerts.test.yml failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------
// Board queries.
// ---------------------------------------------------------------------------

/// `(panel title, expr)` of every target of both boards, variables
/// substituted as Grafana does with "All" selected (`grafana/check-queries.py`
/// does the same for humans).
fn board_queries() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("grafana/dashboards");
    let mut out = Vec::new();
    for file in ["contact-center.json", "routing-engine.json"] {
        let text = std::fs::read_to_string(root.join(file)).expect("read board");
        let board: Value = serde_json::from_str(&text).expect("board is json");
        collect_queries(file, &board["panels"], &mut out);
    }
    out
}

fn collect_queries(file: &str, panels: &Value, out: &mut Vec<(String, String)>) {
    for panel in panels.as_array().into_iter().flatten() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                let expr = expr
                    .replace("$__rate_interval", "1m")
                    .replace("${channel}", ".*")
                    .replace("${queue}", ".*")
                    .replace("$channel", ".*")
                    .replace("$queue", ".*");
                assert!(!expr.contains('$'), "unsubstituted variable in {expr}");
                out.push((
                    format!("{file} / {}", panel["title"].as_str().unwrap_or("?")),
                    expr,
                ));
            }
        }
        collect_queries(file, &panel["panels"], out);
    }
}

// ---------------------------------------------------------------------------
// The Prometheus process.
// ---------------------------------------------------------------------------

/// A `prometheus` child process on 127.0.0.1, killed when dropped.
struct PrometheusProcess {
    child: Child,
    addr: SocketAddr,
}

impl PrometheusProcess {
    async fn start(binary: &Path, dir: &Path, engine: SocketAddr) -> PrometheusProcess {
        let alerts = Path::new(env!("CARGO_MANIFEST_DIR")).join("grafana/alerts.yml");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {alerts}\n\
             scrape_configs:\n  - job_name: switchboard\n    metrics_path: /metrics\n    \
             static_configs:\n      - targets: [\"{engine}\"]\n",
            alerts = alerts.display()
        );
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("log file");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let prom = PrometheusProcess { child, addr };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            // `http` panics on a refused connection, so probe the port first.
            if TcpStream::connect(addr).await.is_ok()
                && http(addr, "GET", "/-/ready", None).await.0 == 200
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus did not become ready:\n{}",
                std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
            );
            sleep(Duration::from_millis(200)).await;
        }
        prom
    }

    async fn api(&self, path_and_query: &str) -> Value {
        let (status, body) = http(self.addr, "GET", path_and_query, None).await;
        assert!(
            body.is_object(),
            "{path_and_query}: HTTP {status}, not a json object: {body}"
        );
        body
    }

    /// `Ok` when `expr` parses and returns at least one sample.
    async fn query(&self, expr: &str) -> Result<(), String> {
        let body = self
            .api(&format!("/api/v1/query?query={}", percent_encode(expr)))
            .await;
        if body["status"] != "success" {
            return Err(format!("{}: {}", body["errorType"], body["error"]));
        }
        match body["data"]["result"].as_array() {
            Some(result) if !result.is_empty() => Ok(()),
            Some(_) => Err("empty result".into()),
            None => Err(format!("unexpected answer {body}")),
        }
    }

    /// The value of a query that yields one sample.
    async fn scalar(&self, expr: &str) -> Option<f64> {
        let body = self
            .api(&format!("/api/v1/query?query={}", percent_encode(expr)))
            .await;
        body["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for PrometheusProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
