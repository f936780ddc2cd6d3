//! The engine's footprint during a run: its resident memory and CPU time,
//! read from its own `GET /metrics` (`process_*`) before the generator
//! connects, once everything is logged in, every second while arrivals run,
//! and when they end. The memory targets are read off these: per logged-in
//! agent in `--scenario idle-agents`, per waiting conversation in
//! `--scenario waiting-100k`.
//!
//! This module only reads: it never changes the run, and an engine whose
//! `/metrics` cannot be read just leaves the footprint out of the report.

use crate::net::{EngineProcess, Target};
use crate::report::EngineFootprint;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// At least this many conversations must wait at the end of the arrivals
/// for a per-conversation figure (below it, noise is most of the quotient).
const MIN_WAITING: u64 = 1_000;

/// Memory per agent is the idle agent's figure only with this many agents
/// or more, and at most one conversation opened per [`IDLE_AGENTS_PER_OPEN`]
/// of them (otherwise the conversations' memory is in it too).
const MIN_AGENTS: usize = 1_000;
const IDLE_AGENTS_PER_OPEN: u64 = 10;

/// Likewise for CPU per lifecycle: the engine counts whole CPU seconds.
const MIN_COMPLETED: u64 = 1_000;

/// Where the run stood when the arrivals ended.
#[derive(Debug, Clone, Copy, Default)]
pub struct AtEnd {
    /// The scenario's agents.
    pub agents: usize,
    pub opened: u64,
    /// Waiting for an agent.
    pub waiting: u64,
    pub completed: u64,
}

/// The samples of one run, taken as it goes.
pub struct Watch {
    target: Target,
    token: String,
    before: Option<EngineProcess>,
    logged_in: Option<EngineProcess>,
    during: Arc<Mutex<Vec<f64>>>,
    sampler: Option<tokio::task::JoinHandle<()>>,
}

impl Watch {
    /// Takes the first sample: the engine before anything is connected.
    pub async fn before(target: &Target, token: &str) -> Watch {
        Watch {
            target: target.clone(),
            token: token.to_string(),
            before: target.engine_process(token).await,
            logged_in: None,
            during: Arc::default(),
            sampler: None,
        }
    }

    /// Everything is connected and logged in: samples once, then every
    /// second until [`Watch::end_of_arrivals`].
    pub async fn logged_in(&mut self) {
        if self.before.is_none() {
            return;
        }
        self.logged_in = self.target.engine_process(&self.token).await;
        let (target, token, during) = (
            self.target.clone(),
            self.token.clone(),
            Arc::clone(&self.during),
        );
        self.sampler = Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                if let Some(p) = target.engine_process(&token).await {
                    during
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(p.resident_bytes);
                }
            }
        }));
    }

    /// The arrivals are over: the last sample, read against where the run
    /// stood then.
    pub async fn end_of_arrivals(mut self, at_end: AtEnd) -> Option<EngineFootprint> {
        if let Some(s) = self.sampler.take() {
            s.abort();
        }
        // Without the first two samples there is nothing to read the last against.
        let (before, logged_in) = (self.before?, self.logged_in?);
        let end = self.target.engine_process(&self.token).await?;
        let during =
            std::mem::take(&mut *self.during.lock().unwrap_or_else(PoisonError::into_inner));
        Some(footprint(before, logged_in, &during, end, at_end))
    }
}

/// The figures from the samples (see [`EngineFootprint`]).
pub fn footprint(
    before: EngineProcess,
    logged_in: EngineProcess,
    during: &[f64],
    end: EngineProcess,
    at_end: AtEnd,
) -> EngineFootprint {
    let AtEnd {
        agents,
        opened,
        waiting,
        completed,
    } = at_end;
    let idle = agents >= MIN_AGENTS && opened * IDLE_AGENTS_PER_OPEN <= agents as u64;
    let mut sorted: Vec<f64> = during.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = sorted
        .get(sorted.len() / 2)
        .copied()
        .unwrap_or(end.resident_bytes);
    let peak = sorted
        .last()
        .copied()
        .unwrap_or(end.resident_bytes)
        .max(end.resident_bytes);
    let cpu = (end.cpu_secs - logged_in.cpu_secs).max(0.0);
    EngineFootprint {
        rss_before_bytes: before.resident_bytes,
        rss_logged_in_bytes: logged_in.resident_bytes,
        rss_median_bytes: median,
        rss_peak_bytes: peak,
        rss_end_of_arrivals_bytes: end.resident_bytes,
        waiting_at_end_of_arrivals: waiting,
        rss_per_agent_bytes: idle.then(|| (median - before.resident_bytes) / agents as f64),
        rss_per_waiting_conversation_bytes: (waiting >= MIN_WAITING)
            .then(|| (end.resident_bytes - logged_in.resident_bytes) / waiting as f64),
        cpu_secs_during_arrivals: cpu,
        cpu_us_per_lifecycle: (completed >= MIN_COMPLETED).then(|| cpu * 1e6 / completed as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(mib: f64, cpu_secs: f64) -> EngineProcess {
        EngineProcess {
            resident_bytes: mib * 1024.0 * 1024.0,
            cpu_secs,
        }
    }

    fn at_end(agents: usize, opened: u64, waiting: u64, completed: u64) -> AtEnd {
        AtEnd {
            agents,
            opened,
            waiting,
            completed,
        }
    }

    #[test]
    fn per_agent_is_the_median_over_the_start_when_the_agents_were_idle() {
        const MIB: f64 = 1_048_576.0;
        let during: Vec<f64> = [105.0, 110.0, 104.0].iter().map(|m| m * MIB).collect();
        let (before, logged_in, end) = (p(9.0, 1.0), p(112.0, 3.0), p(104.0, 28.0));
        let f = footprint(before, logged_in, &during, end, at_end(10_000, 10, 0, 10));
        let per_agent = f.rss_per_agent_bytes.expect("10 000 idle agents");
        assert!(
            (per_agent - 96.0 * MIB / 10_000.0).abs() < 1e-6,
            "{per_agent}"
        );
        assert_eq!(f.rss_peak_bytes, 110.0 * MIB);
        assert_eq!(f.rss_per_waiting_conversation_bytes, None, "nobody waited");
        assert_eq!(f.cpu_secs_during_arrivals, 25.0);
        assert_eq!(
            f.cpu_us_per_lifecycle, None,
            "too few for whole CPU seconds"
        );

        // Busy agents: their conversations are in the memory, so no per-agent figure.
        let f = footprint(
            before,
            logged_in,
            &during,
            end,
            at_end(10_000, 50_000, 0, 50_000),
        );
        assert_eq!(f.rss_per_agent_bytes, None);
        assert_eq!(f.cpu_us_per_lifecycle, Some(500.0));
    }

    #[test]
    fn per_waiting_is_the_growth_after_the_logins() {
        const MIB: f64 = 1_048_576.0;
        let f = footprint(
            p(9.0, 0.0),
            p(10.0, 0.0),
            &[],
            p(240.0, 5.0),
            at_end(1, 100_000, 100_000, 0),
        );
        let per_waiting = f
            .rss_per_waiting_conversation_bytes
            .expect("100 000 waited");
        assert!((per_waiting - 230.0 * MIB / 100_000.0).abs() < 1e-6);
        assert_eq!(f.rss_median_bytes, 240.0 * MIB, "no samples: the last one");
        assert_eq!(f.rss_per_agent_bytes, None, "one agent");
        assert_eq!(f.cpu_us_per_lifecycle, None, "nothing completed");
    }
}
