//! The run modes: one open-loop run, the max-throughput ramp, the echo
//! ceiling, and the Erlang C comparison. Each drives [`crate::sim`] (or its
//! own echo connections) and turns the ledger into a [`crate::report`] part.
//!
//! Every mode is bounded by the scenario's durations and counts and stops by
//! itself; none talks to anything but the loopback target.

use crate::book::{histogram, Book, ConvState, Steady};
use crate::dist::Dur;
use crate::erlang::ErlangC;
use crate::footprint::{AtEnd, Watch};
use crate::net::Ws;
use crate::report::{EchoResult, ErlangReport, LatencySummary, MaxResult, RampStep, RunResult};
use crate::scenario::Scenario;
use crate::sim::{connect_many, Connection, Shared, Sim};
use crate::wire;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// A progress line redrawn four times a second; hidden when stdout is not a terminal.
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    pub fn new(enabled: bool, total_secs: f64) -> Progress {
        let bar = if enabled {
            ProgressBar::new((total_secs * 10.0).max(1.0) as u64)
        } else {
            ProgressBar::hidden()
        };
        if let Ok(style) =
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {msg}")
        {
            bar.set_style(style);
        }
        Progress { bar }
    }

    /// Keeps the bar fed from a simulation until the returned handle is aborted.
    fn watch(&self, shared: Arc<Shared>, phase: &'static str) -> tokio::task::JoinHandle<()> {
        let bar = self.bar.clone();
        let start = Instant::now();
        tokio::spawn(async move {
            loop {
                let (c, p99, errors) = {
                    let book = shared.book();
                    (
                        book.counts.clone(),
                        book.window.open_to_offer.value_at_quantile(0.99) as f64 / 1000.0,
                        book.error_count(),
                    )
                };
                bar.set_position((start.elapsed().as_secs_f64() * 10.0) as u64);
                bar.set_message(format!(
                    "{phase}: opened {} offered {} completed {} abandoned {} errors {errors} | open→offer p99 {:.1} ms | frames {}",
                    c.opens_acked,
                    c.offers,
                    c.completed,
                    c.abandoned,
                    p99,
                    shared.frames_in.load(Ordering::Relaxed) + shared.frames_out.load(Ordering::Relaxed)
                ));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    }

    fn set(&self, msg: String) {
        self.bar.set_message(msg);
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

fn run_result(sc: &Scenario, shared: &Shared, arrival_secs: f64, wall: Duration) -> RunResult {
    let book: std::sync::MutexGuard<'_, Book> = shared.book();
    let verdict = book.verdict();
    let frames_out = shared.frames_out.load(Ordering::Relaxed);
    let frames_in = shared.frames_in.load(Ordering::Relaxed);
    let ended = (book.counts.completed + book.counts.abandoned).max(1);
    let secs = arrival_secs.max(1e-9);
    RunResult {
        agents: sc.agents.count,
        connectors: sc.arrivals.connectors,
        arrival_secs,
        wall_secs: wall.as_secs_f64(),
        arrivals_per_sec: book.counts.opens_sent as f64 / secs,
        lifecycles_per_sec: book.counts.completed as f64 / secs,
        frames_out,
        frames_in,
        frames_per_lifecycle: (frames_out + frames_in) as f64 / ended as f64,
        open_to_offer: LatencySummary::of(&book.total.open_to_offer),
        open_to_assigned: LatencySummary::of(&book.total.open_to_assigned),
        ack_rtt: LatencySummary::of(&book.total.ack_rtt),
        counts: book.counts.clone(),
        verdict,
        errors: book.errors.clone(),
        engine: None,
    }
}

/// One open-loop run through the scenario's phases, then drain and checks.
pub async fn run(
    sc: Arc<Scenario>,
    conn: &Connection,
    progress: &Progress,
) -> anyhow::Result<RunResult> {
    let wall = Instant::now();
    let mut footprint = Watch::before(&conn.target, &conn.connector_token).await;
    progress.set(format!(
        "connecting {} agents and {} connectors…",
        sc.agents.count, sc.arrivals.connectors
    ));
    let mut sim = Sim::start(sc.clone(), conn).await?;
    footprint.logged_in().await;
    let watcher = progress.watch(sim.shared.clone(), "run");
    for phase in sc.phases() {
        sim.arrivals(phase.rate_per_sec, phase.duration_secs).await;
    }
    let at_end = {
        let book = sim.shared.book();
        let waiting = book
            .unfinished()
            .iter()
            .filter(|u| u.1 == ConvState::Waiting)
            .count();
        AtEnd {
            agents: sc.agents.count,
            opened: book.counts.opens_sent,
            waiting: waiting as u64,
            completed: book.counts.completed,
        }
    };
    let engine = footprint.end_of_arrivals(at_end).await;
    let arrival_secs = sim.arrival_secs;
    let shared = sim.finish(sc.drain_secs).await;
    watcher.abort();
    let mut result = run_result(&sc, &shared, arrival_secs, wall.elapsed());
    result.engine = engine;
    Ok(result)
}

/// Ramps the arrival rate step by step until a step's open→offer p99
/// exceeds the bound, errors appear, offers fall behind arrivals, or the
/// maximum rate is reached.
pub async fn max(
    sc: Arc<Scenario>,
    conn: &Connection,
    progress: &Progress,
) -> anyhow::Result<(MaxResult, RunResult)> {
    let wall = Instant::now();
    let m = sc.max.clone();
    progress.set(format!(
        "connecting {} agents and {} connectors…",
        sc.agents.count, sc.arrivals.connectors
    ));
    let mut sim = Sim::start(sc.clone(), conn).await?;
    let watcher = progress.watch(sim.shared.clone(), "ramp");
    // Warm-up, not judged: the first conversations after 10 000 logins meet
    // cold caches and lazily started actors.
    sim.arrivals(m.start_rate, m.step_secs.min(3.0)).await;
    sim.shared.book().take_window();
    let mut steps = Vec::new();
    let mut rate = m.start_rate;
    // Logins and the warm-up are not part of any step.
    let mut frames_before = sim.shared.frames_in.load(Ordering::Relaxed)
        + sim.shared.frames_out.load(Ordering::Relaxed);
    let mut stopped_because = String::new();
    // The ramp, then the refinement between the highest rate that passed and
    // the lowest that failed.
    let (mut passed_at, mut failed_at) = (None, None);
    let mut refined = 0;
    loop {
        match ramp_step(&mut sim, &m, rate, &mut frames_before, &mut steps).await {
            None => passed_at = Some(rate),
            Some(why) => {
                failed_at = Some(rate);
                if stopped_because.is_empty() {
                    stopped_because = why;
                }
            }
        }
        if failed_at.is_none() {
            if sim.scheduled >= sc.max_conversations {
                stopped_because = format!("max_conversations ({}) reached", sc.max_conversations);
                break;
            }
            if rate * m.step_factor > m.max_rate {
                stopped_because = format!("max_rate {} reached", m.max_rate);
                break;
            }
            rate *= m.step_factor;
            continue;
        }
        let (Some(low), Some(high)) = (passed_at, failed_at) else {
            break;
        };
        if refined == m.refine_steps || sim.scheduled >= sc.max_conversations {
            break;
        }
        refined += 1;
        rate = (low * high).sqrt();
        // Let the failed step's backlog clear before judging a lower rate.
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        sim.shared.book().take_window();
        frames_before = sim.shared.frames_in.load(Ordering::Relaxed)
            + sim.shared.frames_out.load(Ordering::Relaxed);
    }
    let arrival_secs = sim.arrival_secs;
    let shared = sim.finish(sc.drain_secs).await;
    watcher.abort();
    // The highest rate that passed (refinement steps come after the ramp's).
    let knee = steps
        .iter()
        .filter(|s| s.passed)
        .max_by(|a, b| a.target_rate.total_cmp(&b.target_rate));
    let result = MaxResult {
        p99_bound_ms: m.p99_bound_ms,
        knee_lifecycles_per_sec: knee.map(|s| s.lifecycles_per_sec),
        knee_frames_per_sec: knee.map(|s| s.frames_per_sec),
        steps,
        stopped_because,
    };
    Ok((
        result,
        run_result(&sc, &shared, arrival_secs, wall.elapsed()),
    ))
}

/// One step of the ramp at `rate`, pushed onto `steps`; a step that misses
/// only the latency bound is run once more at the same rate before it counts
/// as failed (one stall of a shared machine is not a knee). `None` when it
/// passed, else why not.
async fn ramp_step(
    sim: &mut Sim,
    m: &crate::scenario::MaxSettings,
    rate: f64,
    frames_before: &mut u64,
    steps: &mut Vec<RampStep>,
) -> Option<String> {
    let mut retried = false;
    loop {
        let sent = sim.arrivals(rate, m.step_secs).await;
        let w = sim.shared.book().take_window();
        let frames = sim.shared.frames_in.load(Ordering::Relaxed)
            + sim.shared.frames_out.load(Ordering::Relaxed);
        let fps = (frames - *frames_before) as f64 / m.step_secs;
        *frames_before = frames;
        let behind = w.open_to_offer_count < sent / 2;
        let passed =
            w.open_to_offer_p99_ms <= m.p99_bound_ms && w.errors == 0 && !behind && sent > 0;
        steps.push(RampStep {
            target_rate: rate,
            arrivals_per_sec: sent as f64 / m.step_secs,
            lifecycles_per_sec: w.completed as f64 / m.step_secs,
            frames_per_sec: fps,
            open_to_offer_p99_ms: w.open_to_offer_p99_ms,
            errors: w.errors,
            passed,
        });
        if passed {
            return None;
        }
        if w.errors > 0 {
            return Some(format!("{} errors at {rate:.0}/s", w.errors));
        }
        if behind || sent == 0 {
            return Some(format!(
                "offers fell behind arrivals at {rate:.0}/s ({} offers for {sent} opens)",
                w.open_to_offer_count
            ));
        }
        if retried {
            return Some(format!(
                "open→offer p99 {:.1} ms > {} ms at {rate:.0}/s",
                w.open_to_offer_p99_ms, m.p99_bound_ms
            ));
        }
        retried = true;
    }
}

/// The echo ceiling: `connections` sockets to the echo path, each keeping
/// `window` frames in flight for `secs`; counts frames both ways.
pub async fn echo(
    sc: &Scenario,
    conn: &Connection,
    progress: &Progress,
) -> anyhow::Result<EchoResult> {
    let e = &sc.echo;
    let n = if e.connections > 0 {
        e.connections
    } else {
        sc.agents.count + sc.arrivals.connectors
    };
    progress.set(format!("echo: connecting {n} sockets to {}…", e.path));
    let sockets = connect_many(conn, &e.path, &conn.connector_token, n).await?;
    let out = Arc::new(AtomicU64::new(0));
    let inn = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(e.duration_secs);
    let mut tasks = Vec::with_capacity(n);
    for (i, ws) in sockets.into_iter().enumerate() {
        let (out, inn, errors) = (out.clone(), inn.clone(), errors.clone());
        let (window, bytes) = (e.window, e.payload_bytes);
        tasks.push(tokio::spawn(echo_conn(
            ws, i as u64, window, bytes, end, out, inn, errors,
        )));
    }
    let mut rtt = histogram();
    let ticker = {
        let (out, inn, bar) = (out.clone(), inn.clone(), progress.bar.clone());
        tokio::spawn(async move {
            loop {
                let secs = start.elapsed().as_secs_f64().max(1e-3);
                bar.set_position((secs * 10.0) as u64);
                bar.set_message(format!(
                    "echo: {:.0} frames/s",
                    (out.load(Ordering::Relaxed) + inn.load(Ordering::Relaxed)) as f64 / secs
                ));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };
    for t in tasks {
        if let Ok(h) = t.await {
            let _ = rtt.add(&h);
        }
    }
    ticker.abort();
    let secs = e.duration_secs;
    let (o, i) = (out.load(Ordering::Relaxed), inn.load(Ordering::Relaxed));
    Ok(EchoResult {
        connections: n,
        window: e.window,
        payload_bytes: e.payload_bytes,
        secs,
        frames_out_per_sec: o as f64 / secs,
        frames_in_per_sec: i as f64 / secs,
        frames_per_sec: (o + i) as f64 / secs,
        rtt: LatencySummary::of(&rtt),
        errors: errors.load(Ordering::Relaxed),
    })
}

/// One echo connection; returns its round-trip histogram (µs). Frames sent or
/// received after `end` are not counted.
#[allow(clippy::too_many_arguments)]
async fn echo_conn(
    ws: Ws,
    id: u64,
    window: usize,
    bytes: usize,
    end: Instant,
    out: Arc<AtomicU64>,
    inn: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
) -> Histogram<u64> {
    let mut h = histogram();
    let (mut sink, mut stream) = ws.split();
    if window == 0 {
        // Idle: hold the connection (answering nothing but the server's pings,
        // which tungstenite does on read) until the end.
        let deadline = tokio::time::Instant::from_std(end);
        loop {
            match tokio::time::timeout_at(deadline, stream.next()).await {
                Err(_) => break,
                Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                    return h;
                }
                Ok(Some(Ok(_))) => {}
            }
        }
        let _ = sink.send(Message::Close(None)).await;
        return h;
    }
    let mut in_flight: VecDeque<(u64, Instant)> = VecDeque::with_capacity(window);
    let mut seq = id << 40;
    let probe = |seq: u64| Message::text(wire::echo_probe(seq, bytes));
    for _ in 0..window {
        seq += 1;
        if sink.feed(probe(seq)).await.is_err() {
            errors.fetch_add(1, Ordering::Relaxed);
            return h;
        }
        in_flight.push_back((seq, Instant::now()));
        out.fetch_add(1, Ordering::Relaxed);
    }
    if sink.flush().await.is_err() {
        errors.fetch_add(1, Ordering::Relaxed);
        return h;
    }
    let deadline = tokio::time::Instant::from_std(end);
    loop {
        let frame = match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => break,
            Ok(f) => f,
        };
        match frame {
            Some(Ok(Message::Text(t))) => {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                inn.fetch_add(1, Ordering::Relaxed);
                match (wire::echo_seq(t.as_str()), in_flight.pop_front()) {
                    (Some(got), Some((want, sent))) if got == want => {
                        let _ = h.record(
                            (now.saturating_duration_since(sent).as_micros() as u64).max(1),
                        );
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                seq += 1;
                if sink.send(probe(seq)).await.is_err() {
                    errors.fetch_add(1, Ordering::Relaxed);
                    return h;
                }
                in_flight.push_back((seq, Instant::now()));
                out.fetch_add(1, Ordering::Relaxed);
            }
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                errors.fetch_add(1, Ordering::Relaxed);
                return h;
            }
            Some(Ok(_)) => {}
        }
    }
    // Frames sent but not echoed before the end were counted as out, not in.
    let _ = sink.send(Message::Close(None)).await;
    h
}

/// The Erlang C comparison from a finished run of the `erlang-c` scenario:
/// the conversations of `sample`, which arrived over `sample_secs`.
pub fn erlang(
    sc: &Scenario,
    run: &RunResult,
    sample: &Steady,
    sample_secs: f64,
) -> Option<ErlangReport> {
    let waits = &sample.waits;
    let handle = &sc.agents.profiles.first()?.handle_time;
    if !matches!(handle, Dur::Exponential { .. }) {
        return None;
    }
    let n = sc.agents.count as u32;
    let configured_handle = handle.mean_ms();
    let configured_lambda = sc.arrivals.rate_per_sec;
    // Evaluate the formula at what the sample actually drew; fall back to
    // the configuration when too little was drawn to say.
    let lambda = if sample.arrivals > 0 && sample_secs > 0.0 {
        sample.arrivals as f64 / sample_secs
    } else {
        configured_lambda
    };
    let mean_ms = if run.counts.handle_samples >= 30 {
        run.counts.handle_ms_total / run.counts.handle_samples as f64
    } else {
        configured_handle
    };
    // The service time the engine's queue sees: offer received → complete
    // sent (the drawn handle time plus the offer/accept round trip).
    let service_ms = if sample.slot_samples >= 30 {
        sample.slot_ms_total / sample.slot_samples as f64
    } else {
        mean_ms
    };
    let theory = ErlangC::new(n, lambda, service_ms)?;
    let eps = sc.erlang_c.wait_epsilon_ms;
    let samples = waits.len();
    let frac_at_most = |ms: f64| -> f64 {
        if samples == 0 {
            return 0.0;
        }
        let limit = (ms * 1000.0) as u64;
        let within: u64 = waits
            .iter_recorded()
            .filter(|v| v.value_iterated_to() <= limit)
            .map(|v| v.count_at_value())
            .sum();
        within as f64 / samples as f64
    };
    let service_level = sc
        .erlang_c
        .service_level_ms
        .iter()
        .map(|t| {
            (
                *t,
                // Both sides at t + ε: ε stands for the part of open→offer
                // that is not queueing (the engine's decision and the
                // offer's delivery), as in the P(wait > ε) row.
                theory.service_level(t + eps, service_ms),
                frac_at_most(t + eps),
            )
        })
        .collect();
    Some(ErlangReport {
        agents: n,
        configured_arrival_rate_per_sec: configured_lambda,
        configured_mean_handle_ms: configured_handle,
        arrival_rate_per_sec: lambda,
        mean_handle_ms: mean_ms,
        mean_service_ms: service_ms,
        offered_erlangs: theory.offered_erlangs,
        utilisation: theory.utilisation,
        wait_epsilon_ms: eps,
        warmup_secs: sc.erlang_c.warmup_secs,
        samples,
        p_wait_theory: theory.p_wait,
        p_wait_gt_epsilon_theory: 1.0 - theory.service_level(eps, service_ms),
        p_wait_gt_epsilon_measured: 1.0 - frac_at_most(eps),
        asa_ms_theory: theory.asa_ms,
        asa_ms_measured: if samples == 0 {
            0.0
        } else {
            waits.mean() / 1000.0
        },
        service_level,
    })
}

/// Runs the `erlang-c` scenario and compares.
pub async fn erlang_run(
    sc: Arc<Scenario>,
    conn: &Connection,
    progress: &Progress,
) -> anyhow::Result<(RunResult, Option<ErlangReport>)> {
    let wall = Instant::now();
    let mut sim = Sim::start(sc.clone(), conn).await?;
    let watcher = progress.watch(sim.shared.clone(), "erlang-c");
    let warmup = sc.erlang_c.warmup_secs;
    if warmup > 0.0 {
        // The same arrival stream, served but not counted (see
        // `ErlangSettings::warmup_secs`).
        if let Some(first) = sc.phases().first() {
            sim.arrivals(first.rate_per_sec, warmup).await;
        }
    }
    sim.shared.book().steady = Some(Steady::new(Instant::now()));
    let warmed_secs = sim.arrival_secs;
    for phase in sc.phases() {
        sim.arrivals(phase.rate_per_sec, phase.duration_secs).await;
    }
    let arrival_secs = sim.arrival_secs;
    let shared = sim.finish(sc.drain_secs).await;
    watcher.abort();
    let run = run_result(&sc, &shared, arrival_secs, wall.elapsed());
    let steady = shared.book().steady.clone();
    let report = steady.and_then(|s| erlang(&sc, &run, &s, arrival_secs - warmed_secs));
    Ok((run, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erlang_report_reads_waits_against_epsilon() {
        let sc = crate::scenario::load("erlang-c").expect("scenario");
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("bounds");
        // 60 conversations answered in 2 ms, 40 after 1 s.
        for _ in 0..60 {
            h.record(2_000).expect("ok");
        }
        for _ in 0..40 {
            h.record(1_000_000).expect("ok");
        }
        let run = RunResult::default();
        let sample = Steady {
            waits: h,
            ..Steady::new(Instant::now())
        };
        let r = erlang(&sc, &run, &sample, 120.0).expect("stable system");
        assert_eq!(r.samples, 100);
        assert!((r.p_wait_gt_epsilon_measured - 0.4).abs() < 1e-9);
        // Too few handle samples: the configured parameters are used.
        assert_eq!(r.arrival_rate_per_sec, sc.arrivals.rate_per_sec);
        assert!(r.p_wait_gt_epsilon_theory < r.p_wait_theory);
        // Theory and measurement are both read at t + ε: SL(0) is the
        // complement of P(wait > ε) on both sides.
        let (t0, theory0, measured0) = r.service_level[0];
        assert_eq!(t0, 0.0);
        assert!((theory0 - (1.0 - r.p_wait_gt_epsilon_theory)).abs() < 1e-12);
        assert!((measured0 - (1.0 - r.p_wait_gt_epsilon_measured)).abs() < 1e-12);
        assert!(
            (r.asa_ms_measured - (0.6 * 2.0 + 0.4 * 1000.0)).abs() < 1.0,
            "{}",
            r.asa_ms_measured
        );
        assert!(r.p_wait_theory > 0.0 && r.p_wait_theory < 1.0);
        // SL at the largest threshold below 1 s still excludes the 1 s waits.
        let below: Vec<_> = r
            .service_level
            .iter()
            .filter(|(t, _, _)| t + sc.erlang_c.wait_epsilon_ms < 1000.0)
            .collect();
        assert!(below.iter().all(|(_, _, m)| (*m - 0.6).abs() < 1e-9));
    }
}
