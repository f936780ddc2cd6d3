//! The CI smoke check: starts the engine in-process on 127.0.0.1 port 0 and
//! drives the built-in `smoke` scenario against it with the real load
//! generator. It fails when the generator reports a lost, duplicated or
//! misrouted conversation, an error, or a missed `[thresholds]` figure.
//!
//! Speed is not judged here beyond the scenario's generous thresholds; the
//! numbers that matter are measured with the release binaries (see
//! docs/performance.md).

use std::sync::Arc;
use switchboard::config::AppConfig;
use switchboard_loadtest::modes::Progress;
use switchboard_loadtest::net::Target;
use switchboard_loadtest::sim::Connection;
use switchboard_loadtest::{report, run_scenario, scenario};

#[actix_web::test]
async fn the_smoke_scenario_passes_against_an_in_process_engine() {
    let dir = tempfile::tempdir().expect("temp dir");
    // The embedded default (its development tokens included), on a free port,
    // with the echo endpoint and a throw-away data directory.
    let config = AppConfig::from_toml_str(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\necho_endpoint = true\n\n[snapshot]\ndir = {:?}\n",
        dir.path().display().to_string()
    ))
    .unwrap_or_else(|e| panic!("test config: {e}"));
    let server = switchboard::server::start(config)
        .await
        .expect("the engine starts");
    let url = format!("ws://127.0.0.1:{}", server.addr.port());
    let conn = Connection {
        target: Target::parse(&url).expect("loopback url"),
        connector_token: "dev-connector-token".to_string(),
        agent_token: "dev-agent-token".to_string(),
        connect_concurrency: 16,
    };
    let sc = Arc::new(scenario::load("smoke").expect("built-in smoke scenario"));
    let outcome = run_scenario(sc, &conn, &Progress::new(false, 0.0), &url).await;
    server.stop().await;
    let report = outcome.expect("the smoke run could be made");
    let summary = report::human(&report);
    let run = report.run.as_ref().expect("a run result");

    assert!(
        run.counts.opens_acked > 20,
        "too few conversations:\n{summary}"
    );
    assert!(run.counts.completed > 0, "nothing completed:\n{summary}");
    assert_eq!(run.verdict.lost, 0, "lost conversations:\n{summary}");
    assert_eq!(run.verdict.duplicated, 0, "duplicated offers:\n{summary}");
    assert_eq!(run.verdict.misrouted, 0, "misrouted offers:\n{summary}");
    assert_eq!(
        run.verdict.unacked_opens, 0,
        "unacknowledged opens:\n{summary}"
    );
    assert!(run.errors.is_empty(), "errors:\n{summary}");
    assert!(report.passed, "thresholds missed:\n{summary}");
}
