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
use switchboard::server::RunningServer;
use switchboard_loadtest::modes::Progress;
use switchboard_loadtest::net::Target;
use switchboard_loadtest::sim::Connection;
use switchboard_loadtest::{report, run_scenario, scenario};

/// The embedded default (its development tokens included), on a free port,
/// with the echo endpoint and a throw-away data directory in `dir`.
async fn engine(dir: &tempfile::TempDir) -> (RunningServer, String, Connection) {
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
    (server, url, conn)
}

#[actix_web::test]
async fn the_smoke_scenario_passes_against_an_in_process_engine() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, url, conn) = engine(&dir).await;
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
    // The engine's own figures, read from its /metrics during the run.
    let engine = run.engine.as_ref().expect("the engine's footprint");
    assert!(engine.rss_before_bytes > 1e6, "{summary}");
    assert!(engine.rss_logged_in_bytes > 1e6, "{summary}");
    assert!(engine.rss_median_bytes > 1e6, "{summary}");
    assert!(summary.contains("engine (its /metrics): RSS"), "{summary}");
}

/// `compare` mode measures the echo ceiling before and after the ramp and
/// states the ratio over their mean.
#[actix_web::test]
async fn compare_mode_brackets_the_ramp_with_two_echo_ceilings() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, url, conn) = engine(&dir).await;
    let mut sc = scenario::load("smoke").expect("built-in smoke scenario");
    sc.mode = scenario::Mode::Compare;
    sc.echo.duration_secs = 1.0;
    sc.max.start_rate = 20.0;
    sc.max.step_secs = 1.0;
    sc.max.max_rate = 40.0;
    let outcome = run_scenario(Arc::new(sc), &conn, &Progress::new(false, 0.0), &url).await;
    server.stop().await;
    let report = outcome.expect("the compare run could be made");
    let summary = report::human(&report);
    let (before, after) = (
        report.echo.as_ref().expect("an echo before the ramp"),
        report.echo_after.as_ref().expect("an echo after the ramp"),
    );
    assert!(
        before.frames_per_sec > 0.0 && after.frames_per_sec > 0.0,
        "{summary}"
    );
    assert_eq!(before.errors + after.errors, 0, "{summary}");
    let knee = report.max.as_ref().and_then(|m| m.knee_frames_per_sec);
    let knee = knee.expect("a step passed");
    let mean = (before.frames_per_sec + after.frames_per_sec) / 2.0;
    let ratio = report.engine_to_echo_ratio.expect("a ratio");
    assert!((ratio - knee / mean).abs() < 1e-9, "{summary}");
    let drift = report.echo_drift.expect("a drift");
    assert!(
        (drift - (after.frames_per_sec / before.frames_per_sec - 1.0)).abs() < 1e-9,
        "{summary}"
    );
    assert!(
        summary.contains("echo ceiling (after the ramp)"),
        "{summary}"
    );
}
