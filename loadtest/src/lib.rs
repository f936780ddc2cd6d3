//! `switchboard-loadtest`: an open-loop load generator and checker for the
//! Switchboard routing engine, speaking wire contract v1 over WebSocket.
//!
//! # Layout
//! - [`scenario`] — scenario files (embedded built-ins or a path) and validation.
//! - [`dist`] — duration distributions, Poisson gaps, weighted picks.
//! - [`erlang`] — the Erlang B/C formulas.
//! - [`wire`] — the frames sent and read.
//! - [`net`] — loopback-only target, `RLIMIT_NOFILE`, connect.
//! - [`book`] — the ledger: lost / duplicated / misrouted detection, histograms.
//! - [`sim`] — agent and connector tasks, arrivals, drain and sweep.
//! - [`modes`] — run, max ramp, echo ceiling, Erlang C.
//! - [`footprint`] — the engine's memory and CPU during a run, from its `/metrics`.
//! - [`report`] — JSON result, human summary, thresholds.
//!
//! It only ever connects to 127.0.0.1, is bounded in time and count, and
//! stops by itself.

pub mod book;
pub mod dist;
pub mod erlang;
pub mod footprint;
pub mod modes;
pub mod net;
pub mod report;
pub mod scenario;
pub mod sim;
pub mod wire;

use report::Report;
use scenario::{Mode, Scenario};
use std::sync::Arc;

/// Runs `sc` in its mode against the engine behind `conn` and judges the
/// scenario's `[thresholds]`: the returned report's `passed` says whether
/// every figure was met, `threshold_failures` lists the missed ones.
///
/// Must run inside a Tokio runtime (multi-threaded for real load; a
/// current-thread one, as in `#[actix_web::test]`, is enough for a smoke
/// run). `url` is only recorded in the report.
pub async fn run_scenario(
    sc: Arc<Scenario>,
    conn: &sim::Connection,
    progress: &modes::Progress,
    url: &str,
) -> anyhow::Result<Report> {
    let mut report = Report {
        tool: "switchboard-loadtest",
        version: env!("CARGO_PKG_VERSION"),
        scenario: sc.name.clone(),
        mode: sc.mode,
        url: url.to_string(),
        run: None,
        max: None,
        echo: None,
        echo_after: None,
        engine_to_echo_ratio: None,
        echo_drift: None,
        erlang_c: None,
        thresholds: sc.thresholds.clone(),
        threshold_failures: Vec::new(),
        passed: false,
    };
    match sc.mode {
        Mode::Run => report.run = Some(modes::run(sc.clone(), conn, progress).await?),
        Mode::Max => {
            let (m, run) = modes::max(sc.clone(), conn, progress).await?;
            report.max = Some(m);
            report.run = Some(run);
        }
        Mode::Echo => report.echo = Some(modes::echo(&sc, conn, progress).await?),
        Mode::Compare => {
            // The echo both before and after the ramp: on a shared machine
            // the ceiling can move by a third in minutes, and one taken only
            // before would be compared with a knee found under another load.
            let echo = modes::echo(&sc, conn, progress).await?;
            let (m, run) = modes::max(sc.clone(), conn, progress).await?;
            let after = modes::echo(&sc, conn, progress).await?;
            (report.engine_to_echo_ratio, report.echo_drift) =
                report::echo_ratio(m.knee_frames_per_sec, &echo, Some(&after));
            report.echo = Some(echo);
            report.echo_after = Some(after);
            report.max = Some(m);
            report.run = Some(run);
        }
        Mode::ErlangC => {
            let (run, erl) = modes::erlang_run(sc.clone(), conn, progress).await?;
            report.run = Some(run);
            report.erlang_c = erl;
        }
    }
    if sc.mode != Mode::Echo {
        report.threshold_failures =
            report::check_thresholds(&sc.thresholds, report.run.as_ref(), report.max.as_ref());
    }
    if let Some(max) = sc.thresholds.errors {
        for e in report.echo.iter().chain(&report.echo_after) {
            if e.errors > max {
                report
                    .threshold_failures
                    .push(format!("echo errors = {} exceeds {max}", e.errors));
            }
        }
    }
    report.passed = report.threshold_failures.is_empty();
    Ok(report)
}
