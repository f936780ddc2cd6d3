//! Results: the JSON document written by `--json`, the human summary, and
//! the `[thresholds]` check that sets the exit code (like k6: 99 when a
//! threshold is missed).
//!
//! Everything here is computed from finished runs; it opens no connection.

use crate::book::{Counts, Verdict};
use crate::scenario::{Mode, Thresholds};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Percentiles of one latency histogram, in milliseconds.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl LatencySummary {
    /// From a histogram of microseconds.
    pub fn of(h: &Histogram<u64>) -> LatencySummary {
        if h.is_empty() {
            return LatencySummary::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        LatencySummary {
            count: h.len(),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// One open-loop run.
#[derive(Debug, Clone, Serialize, Default)]
pub struct RunResult {
    pub agents: usize,
    pub connectors: usize,
    pub arrival_secs: f64,
    pub wall_secs: f64,
    /// Achieved arrival rate (opens sent per second of arrival time).
    pub arrivals_per_sec: f64,
    /// Completed conversations per second of arrival time.
    pub lifecycles_per_sec: f64,
    pub frames_out: u64,
    pub frames_in: u64,
    /// Frames in and out per completed-or-abandoned conversation.
    pub frames_per_lifecycle: f64,
    pub open_to_offer: LatencySummary,
    pub open_to_assigned: LatencySummary,
    pub ack_rtt: LatencySummary,
    pub counts: Counts,
    pub verdict: Verdict,
    pub errors: BTreeMap<String, u64>,
    /// `run` mode: the engine's memory and CPU, when its `/metrics` could be read.
    pub engine: Option<EngineFootprint>,
}

/// The engine's own memory and CPU during a run, from its `GET /metrics`
/// (see `footprint`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EngineFootprint {
    /// Before the generator connected anything.
    pub rss_before_bytes: f64,
    /// Once every agent and connector had logged in.
    pub rss_logged_in_bytes: f64,
    /// Median and peak of the samples taken every second while arrivals ran.
    pub rss_median_bytes: f64,
    pub rss_peak_bytes: f64,
    pub rss_end_of_arrivals_bytes: f64,
    /// Conversations waiting for an agent when the arrivals ended.
    pub waiting_at_end_of_arrivals: u64,
    /// (median while arrivals ran − before) / agents: the memory per
    /// logged-in agent when the agents are idle (`--scenario idle-agents`):
    /// given only with 1 000 agents or more and at most one conversation
    /// opened per 10 agents.
    pub rss_per_agent_bytes: Option<f64>,
    /// (end of arrivals − logged in) / waiting, when at least 1 000 waited
    /// (`--scenario waiting-100k`).
    pub rss_per_waiting_conversation_bytes: Option<f64>,
    /// Engine CPU from the logins to the end of the arrivals (the engine
    /// counts whole seconds, so ±1 s).
    pub cpu_secs_during_arrivals: f64,
    /// That over the conversations completed by then, in µs (when at least
    /// 1 000 completed).
    pub cpu_us_per_lifecycle: Option<f64>,
}

/// One step of the max-throughput ramp.
#[derive(Debug, Clone, Serialize)]
pub struct RampStep {
    pub target_rate: f64,
    pub arrivals_per_sec: f64,
    pub lifecycles_per_sec: f64,
    pub frames_per_sec: f64,
    pub open_to_offer_p99_ms: f64,
    pub errors: u64,
    pub passed: bool,
}

/// The max-throughput result.
#[derive(Debug, Clone, Serialize)]
pub struct MaxResult {
    pub p99_bound_ms: f64,
    pub steps: Vec<RampStep>,
    /// The last step that passed (lifecycles/s), if any did.
    pub knee_lifecycles_per_sec: Option<f64>,
    pub knee_frames_per_sec: Option<f64>,
    pub stopped_because: String,
}

/// The echo ceiling.
#[derive(Debug, Clone, Serialize)]
pub struct EchoResult {
    pub connections: usize,
    pub window: usize,
    pub payload_bytes: usize,
    pub secs: f64,
    pub frames_out_per_sec: f64,
    pub frames_in_per_sec: f64,
    /// In and out together: the figure the engine's frames/s is compared with.
    pub frames_per_sec: f64,
    pub rtt: LatencySummary,
    pub errors: u64,
}

/// Measured waits beside the Erlang C formula. The theory is evaluated at the
/// realised arrival rate and mean handle time (what the run actually drew),
/// the configured ones are shown for reference.
#[derive(Debug, Clone, Serialize)]
pub struct ErlangReport {
    pub agents: u32,
    pub configured_arrival_rate_per_sec: f64,
    pub configured_mean_handle_ms: f64,
    pub arrival_rate_per_sec: f64,
    pub mean_handle_ms: f64,
    /// Mean time a slot was held (offer received → complete sent): the
    /// service time the theory is evaluated at (the drawn handle time when
    /// fewer than 30 were seen).
    pub mean_service_ms: f64,
    pub offered_erlangs: f64,
    pub utilisation: f64,
    pub wait_epsilon_ms: f64,
    /// Arrivals of the first this many seconds were served, not counted.
    pub warmup_secs: f64,
    pub samples: u64,
    /// Erlang C: probability of any wait.
    pub p_wait_theory: f64,
    /// `C · e^{-(N-A)·μ·ε}`: probability of waiting longer than ε.
    pub p_wait_gt_epsilon_theory: f64,
    /// Share of conversations whose open→offer exceeded ε.
    pub p_wait_gt_epsilon_measured: f64,
    pub asa_ms_theory: f64,
    /// Mean open→offer (includes the engine's own decision time).
    pub asa_ms_measured: f64,
    /// (threshold t ms, theory P(W ≤ t), measured share with open→offer ≤ t + ε)
    pub service_level: Vec<(f64, f64, f64)>,
}

/// Everything a run produced; the `--json` document.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub tool: &'static str,
    pub version: &'static str,
    pub scenario: String,
    pub mode: Mode,
    pub url: String,
    pub run: Option<RunResult>,
    pub max: Option<MaxResult>,
    /// The echo ceiling (in `compare` mode: measured before the ramp).
    pub echo: Option<EchoResult>,
    /// `compare` mode: the echo ceiling measured again after the ramp, so a
    /// machine whose speed changed during the run shows it.
    pub echo_after: Option<EchoResult>,
    /// Engine frames/s at the knee divided by the echo ceiling's frames/s
    /// (in `compare` mode: the mean of the echo before and after the ramp).
    pub engine_to_echo_ratio: Option<f64>,
    /// `compare` mode: the echo after the ramp over the echo before, minus 1.
    pub echo_drift: Option<f64>,
    pub erlang_c: Option<ErlangReport>,
    pub thresholds: Thresholds,
    pub threshold_failures: Vec<String>,
    pub passed: bool,
}

/// Checks `t` against the results; each failure is a sentence naming the figure.
pub fn check_thresholds(
    t: &Thresholds,
    run: Option<&RunResult>,
    max: Option<&MaxResult>,
) -> Vec<String> {
    let mut f = Vec::new();
    let mut above = |name: &str, got: f64, limit: Option<f64>| {
        if let Some(limit) = limit {
            if got > limit {
                f.push(format!("{name} = {got:.3} exceeds {limit}"));
            }
        }
    };
    if let Some(r) = run {
        above(
            "open_to_offer_p50_ms",
            r.open_to_offer.p50_ms,
            t.open_to_offer_p50_ms,
        );
        above(
            "open_to_offer_p99_ms",
            r.open_to_offer.p99_ms,
            t.open_to_offer_p99_ms,
        );
        above(
            "open_to_assigned_p99_ms",
            r.open_to_assigned.p99_ms,
            t.open_to_assigned_p99_ms,
        );
        above("ack_p99_ms", r.ack_rtt.p99_ms, t.ack_p99_ms);
        above("lost", r.verdict.lost as f64, t.lost.map(|v| v as f64));
        above(
            "duplicated",
            r.verdict.duplicated as f64,
            t.duplicated.map(|v| v as f64),
        );
        above(
            "misrouted",
            r.verdict.misrouted as f64,
            t.misrouted.map(|v| v as f64),
        );
        let errors: u64 = r.errors.values().sum::<u64>() + r.verdict.unacked_opens;
        above("errors", errors as f64, t.errors.map(|v| v as f64));
        let acked = r.counts.opens_acked.max(1) as f64;
        above(
            "abandon_rate",
            r.counts.abandoned as f64 / acked,
            t.max_abandon_rate,
        );
        if r.counts.opens_acked == 0 {
            f.push("no conversation was opened".to_string());
        }
    }
    if let Some(min) = t.min_lifecycles_per_sec {
        let got = match (max, run) {
            (Some(m), _) => m.knee_lifecycles_per_sec.unwrap_or(0.0),
            (None, Some(r)) => r.lifecycles_per_sec,
            (None, None) => 0.0,
        };
        if got < min {
            f.push(format!("lifecycles_per_sec = {got:.1} is below {min}"));
        }
    }
    f
}

fn lat_line(out: &mut String, name: &str, l: &LatencySummary) {
    let _ = writeln!(
        out,
        "  {name:<18} n={:<8} mean={:>8.2}ms p50={:>8.2}ms p90={:>8.2}ms p99={:>8.2}ms p99.9={:>8.2}ms max={:>8.2}ms",
        l.count, l.mean_ms, l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms
    );
}

/// An echo ceiling that moved more than this between the two measurements
/// of one `compare` run is reported as a changed machine.
pub const DRIFT_WARNING: f64 = 0.15;

/// The engine's frames/s at the knee over the echo ceiling: the mean of the
/// echo before and after the ramp when both were measured, and how far the
/// second moved from the first.
pub fn echo_ratio(
    knee_frames_per_sec: Option<f64>,
    before: &EchoResult,
    after: Option<&EchoResult>,
) -> (Option<f64>, Option<f64>) {
    let ceiling = match after {
        Some(a) => (before.frames_per_sec + a.frames_per_sec) / 2.0,
        None => before.frames_per_sec,
    };
    let ratio = knee_frames_per_sec.map(|f| f / ceiling.max(1e-9));
    let drift = after.map(|a| a.frames_per_sec / before.frames_per_sec.max(1e-9) - 1.0);
    (ratio, drift)
}

fn echo_lines(out: &mut String, when: &str, e: &EchoResult) {
    let _ = writeln!(
        out,
        "\necho ceiling{when}: {} connections, window {}, {} B frames, {:.1}s",
        e.connections, e.window, e.payload_bytes, e.secs
    );
    let _ = writeln!(
        out,
        "  frames/s out {:.0}, in {:.0}, total {:.0}; errors {}",
        e.frames_out_per_sec, e.frames_in_per_sec, e.frames_per_sec, e.errors
    );
    lat_line(out, "echo rtt", &e.rtt);
}

fn footprint_lines(out: &mut String, e: &EngineFootprint) {
    const MIB: f64 = 1024.0 * 1024.0;
    let _ = writeln!(
        out,
        "  engine (its /metrics): RSS {:.1} MiB before, {:.1} MiB logged in, {:.1} MiB median (peak {:.1}) while arrivals ran, {:.1} MiB at their end",
        e.rss_before_bytes / MIB,
        e.rss_logged_in_bytes / MIB,
        e.rss_median_bytes / MIB,
        e.rss_peak_bytes / MIB,
        e.rss_end_of_arrivals_bytes / MIB
    );
    let mut per = Vec::new();
    if let Some(b) = e.rss_per_agent_bytes {
        per.push(format!("{:.2} KiB per agent", b / 1024.0));
    }
    if let Some(b) = e.rss_per_waiting_conversation_bytes {
        per.push(format!(
            "{:.2} KiB per waiting conversation ({} waiting)",
            b / 1024.0,
            e.waiting_at_end_of_arrivals
        ));
    }
    per.push(format!(
        "CPU {:.0} s during arrivals",
        e.cpu_secs_during_arrivals
    ));
    if let Some(us) = e.cpu_us_per_lifecycle {
        per.push(format!("{us:.0} µs per completed lifecycle"));
    }
    let _ = writeln!(out, "    {}", per.join("; "));
}

/// The human summary printed at the end.
pub fn human(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "switchboard-loadtest — scenario `{}`, mode {:?}, {}",
        r.scenario, r.mode, r.url
    );
    if let Some(e) = &r.echo {
        let when = if r.echo_after.is_some() {
            " (before the ramp)"
        } else {
            ""
        };
        echo_lines(&mut o, when, e);
    }
    if let Some(m) = &r.max {
        let _ = writeln!(
            o,
            "\nmax-throughput ramp (bound: open→offer p99 ≤ {} ms, no errors)",
            m.p99_bound_ms
        );
        let _ = writeln!(
            o,
            "  {:>10} {:>12} {:>12} {:>12} {:>10} {:>7}  ok",
            "target/s", "arrivals/s", "lifecycles/s", "frames/s", "p99 ms", "errors"
        );
        for s in &m.steps {
            let _ = writeln!(
                o,
                "  {:>10.0} {:>12.1} {:>12.1} {:>12.0} {:>10.2} {:>7}  {}",
                s.target_rate,
                s.arrivals_per_sec,
                s.lifecycles_per_sec,
                s.frames_per_sec,
                s.open_to_offer_p99_ms,
                s.errors,
                if s.passed { "yes" } else { "NO" }
            );
        }
        match m.knee_lifecycles_per_sec {
            Some(k) => {
                let _ = writeln!(
                    o,
                    "  knee: {k:.1} lifecycles/s ({:.0} frames/s); stopped: {}",
                    m.knee_frames_per_sec.unwrap_or(0.0),
                    m.stopped_because
                );
            }
            None => {
                let _ = writeln!(o, "  no step passed; stopped: {}", m.stopped_because);
            }
        }
    }
    if let Some(e) = &r.echo_after {
        echo_lines(&mut o, " (after the ramp)", e);
    }
    if let Some(ratio) = r.engine_to_echo_ratio {
        let over = if r.echo_after.is_some() {
            "the mean of the echo before and after"
        } else {
            "echo frames/s"
        };
        let _ = writeln!(
            o,
            "\nengine / echo ceiling (frames/s at the knee over {over}): {:.1}%",
            ratio * 100.0
        );
        let knee = r.max.as_ref().and_then(|m| m.knee_frames_per_sec);
        if let (Some(knee), Some(before), Some(after)) = (knee, &r.echo, &r.echo_after) {
            let share = |e: &EchoResult| 100.0 * knee / e.frames_per_sec.max(1e-9);
            let _ = writeln!(
                o,
                "  over the echo before alone: {:.1}%, after alone: {:.1}%",
                share(before),
                share(after)
            );
        }
    }
    if let Some(drift) = r.echo_drift {
        let _ = writeln!(
            o,
            "  the echo ceiling moved {:+.1}% during the run{}",
            drift * 100.0,
            if drift.abs() > DRIFT_WARNING {
                ": the machine's speed changed, so this ratio is uncertain; run again"
            } else {
                ""
            }
        );
    }
    if let Some(run) = &r.run {
        let _ = writeln!(
            o,
            "\nrun: {} agents, {} connectors, {:.1}s of arrivals ({:.1}s wall)",
            run.agents, run.connectors, run.arrival_secs, run.wall_secs
        );
        let c = &run.counts;
        let _ = writeln!(
            o,
            "  opens sent {} acked {} failed {} | offers {} accepted {} rejected {} | completed {} abandoned {} (too late {}) | switches {} messages {}",
            c.opens_sent, c.opens_acked, c.opens_failed, c.offers, c.accepts_acked, c.rejects, c.completed, c.abandoned, c.abandon_too_late, c.switches, c.messages
        );
        let _ = writeln!(
            o,
            "  arrivals {:.1}/s, lifecycles {:.1}/s, frames out {} in {} ({:.1} per lifecycle)",
            run.arrivals_per_sec,
            run.lifecycles_per_sec,
            run.frames_out,
            run.frames_in,
            run.frames_per_lifecycle
        );
        lat_line(&mut o, "open→offer", &run.open_to_offer);
        lat_line(&mut o, "open→assigned", &run.open_to_assigned);
        lat_line(&mut o, "ack round trip", &run.ack_rtt);
        let v = &run.verdict;
        let _ = writeln!(
            o,
            "  checks: lost {} | duplicated {} | misrouted {} (skill {}, capacity {}) | unacked opens {}",
            v.lost, v.duplicated, v.misrouted, c.misrouted_skill, c.misrouted_capacity, v.unacked_opens
        );
        for ex in v.lost_examples.iter().take(5) {
            let _ = writeln!(o, "    lost: {ex}");
        }
        for ex in v.duplicated_examples.iter().take(5) {
            let _ = writeln!(o, "    duplicated: {ex}");
        }
        if !run.errors.is_empty() {
            let list: Vec<String> = run.errors.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = writeln!(o, "  errors: {}", list.join(", "));
        }
        if let Some(e) = &run.engine {
            footprint_lines(&mut o, e);
        }
    }
    if let Some(e) = &r.erlang_c {
        let _ = writeln!(
            o,
            "\nErlang C: N={} agents; configured λ={:.2}/s, handle {:.0} ms; realised λ={:.2}/s, handle drawn {:.0} ms, slot held (offer → complete) {:.1} ms; A={:.2} Erl, ρ={:.3}; {} samples after a {:.0} s warm-up",
            e.agents,
            e.configured_arrival_rate_per_sec,
            e.configured_mean_handle_ms,
            e.arrival_rate_per_sec,
            e.mean_handle_ms,
            e.mean_service_ms,
            e.offered_erlangs,
            e.utilisation,
            e.samples,
            e.warmup_secs
        );
        let _ = writeln!(
            o,
            "  {:<26} {:>10} {:>10}",
            "(theory at realised λ, slot)", "theory", "measured"
        );
        let _ = writeln!(
            o,
            "  {:<26} {:>10.4} {:>10}",
            "P(wait > 0) = C(N, A)", e.p_wait_theory, "-"
        );
        let _ = writeln!(
            o,
            "  {:<26} {:>10.4} {:>10.4}",
            format!("P(wait > ε = {} ms)", e.wait_epsilon_ms),
            e.p_wait_gt_epsilon_theory,
            e.p_wait_gt_epsilon_measured
        );
        let _ = writeln!(
            o,
            "  {:<26} {:>10.1} {:>10.1}",
            "ASA (ms)", e.asa_ms_theory, e.asa_ms_measured
        );
        for (t, th, me) in &e.service_level {
            let _ = writeln!(
                o,
                "  {:<26} {:>10.4} {:>10.4}",
                format!("SL: wait ≤ {t} ms (+ε)"),
                th,
                me
            );
        }
    }
    if r.threshold_failures.is_empty() {
        let _ = writeln!(o, "\nthresholds: all met");
    } else {
        let _ = writeln!(o, "\nthresholds MISSED:");
        for f in &r.threshold_failures {
            let _ = writeln!(o, "  ✗ {f}");
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> RunResult {
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("bounds");
        for v in 1..=1000u64 {
            h.record(v * 100).expect("in range");
        }
        let mut r = RunResult {
            open_to_offer: LatencySummary::of(&h),
            lifecycles_per_sec: 50.0,
            ..Default::default()
        };
        r.counts.opens_acked = 100;
        r
    }

    fn echo(frames_per_sec: f64) -> EchoResult {
        EchoResult {
            connections: 10,
            window: 4,
            payload_bytes: 300,
            secs: 1.0,
            frames_out_per_sec: frames_per_sec / 2.0,
            frames_in_per_sec: frames_per_sec / 2.0,
            frames_per_sec,
            rtt: LatencySummary::default(),
            errors: 0,
        }
    }

    #[test]
    fn the_ratio_is_over_the_mean_of_both_echoes_and_a_moved_ceiling_is_named() {
        let (before, after) = (echo(200_000.0), echo(160_000.0));
        let (ratio, drift) = echo_ratio(Some(72_000.0), &before, Some(&after));
        assert!((ratio.expect("a knee") - 0.4).abs() < 1e-9, "{ratio:?}");
        assert!((drift.expect("two echoes") + 0.2).abs() < 1e-9, "{drift:?}");
        assert_eq!(
            echo_ratio(Some(50_000.0), &before, None),
            (Some(0.25), None)
        );
        assert_eq!(echo_ratio(None, &before, Some(&after)).0, None);

        let report = Report {
            tool: "switchboard-loadtest",
            version: "0",
            scenario: "max".into(),
            mode: crate::scenario::Mode::Compare,
            url: "ws://127.0.0.1:1".into(),
            run: None,
            max: Some(MaxResult {
                p99_bound_ms: 50.0,
                steps: Vec::new(),
                knee_lifecycles_per_sec: Some(7_200.0),
                knee_frames_per_sec: Some(72_000.0),
                stopped_because: "test".into(),
            }),
            echo: Some(before),
            echo_after: Some(after),
            engine_to_echo_ratio: ratio,
            echo_drift: drift,
            erlang_c: None,
            thresholds: Thresholds::default(),
            threshold_failures: Vec::new(),
            passed: true,
        };
        let text = human(&report);
        assert!(text.contains("echo ceiling (before the ramp)"), "{text}");
        assert!(text.contains("echo ceiling (after the ramp)"), "{text}");
        assert!(
            text.contains("over the mean of the echo before and after): 40.0%"),
            "{text}"
        );
        assert!(
            text.contains("moved -20.0% during the run: the machine's speed changed"),
            "{text}"
        );
        assert!(
            text.contains("before alone: 36.0%, after alone: 45.0%"),
            "{text}"
        );
    }

    #[test]
    fn latency_summary_reads_percentiles_in_ms() {
        let r = run();
        assert!(
            (r.open_to_offer.p50_ms - 50.0).abs() < 0.1,
            "{:?}",
            r.open_to_offer
        );
        assert!((r.open_to_offer.p99_ms - 99.0).abs() < 0.1);
        assert_eq!(r.open_to_offer.count, 1000);
        assert_eq!(
            LatencySummary::of(&Histogram::<u64>::new(3).expect("h")),
            LatencySummary::default()
        );
    }

    #[test]
    fn thresholds_pass_and_fail_on_the_right_figures() {
        let mut r = run();
        let t = Thresholds {
            open_to_offer_p99_ms: Some(100.0),
            lost: Some(0),
            min_lifecycles_per_sec: Some(40.0),
            ..Default::default()
        };
        assert!(check_thresholds(&t, Some(&r), None).is_empty());
        r.verdict.lost = 1;
        let t2 = Thresholds {
            open_to_offer_p99_ms: Some(50.0),
            ..t.clone()
        };
        let f = check_thresholds(&t2, Some(&r), None);
        assert_eq!(f.len(), 2, "{f:?}");
        assert!(f.iter().any(|s| s.starts_with("open_to_offer_p99_ms")));
        assert!(f.iter().any(|s| s.starts_with("lost")));
        r.verdict.lost = 0;
        r.lifecycles_per_sec = 10.0;
        assert_eq!(check_thresholds(&t, Some(&r), None).len(), 1);
    }

    #[test]
    fn errors_threshold_counts_unacked_opens_and_an_empty_run_fails() {
        let mut r = run();
        r.verdict.unacked_opens = 2;
        let t = Thresholds {
            errors: Some(0),
            ..Default::default()
        };
        assert_eq!(check_thresholds(&t, Some(&r), None).len(), 1);
        r.verdict.unacked_opens = 0;
        r.counts.opens_acked = 0;
        assert_eq!(
            check_thresholds(&t, Some(&r), None),
            vec!["no conversation was opened".to_string()]
        );
    }

    #[test]
    fn max_mode_is_judged_by_its_knee() {
        let m = MaxResult {
            p99_bound_ms: 50.0,
            steps: vec![],
            knee_lifecycles_per_sec: Some(900.0),
            knee_frames_per_sec: None,
            stopped_because: String::new(),
        };
        let t = Thresholds {
            min_lifecycles_per_sec: Some(1000.0),
            ..Default::default()
        };
        assert_eq!(check_thresholds(&t, None, Some(&m)).len(), 1);
        let t = Thresholds {
            min_lifecycles_per_sec: Some(800.0),
            ..Default::default()
        };
        assert!(check_thresholds(&t, None, Some(&m)).is_empty());
    }
}
