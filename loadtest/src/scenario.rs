//! Scenario files (`loadtest/scenarios/*.toml`): what load to generate, what
//! the simulated agents and customers do, and which figures must be met.
//!
//! The named scenarios are embedded in the binary so `--scenario smoke` works
//! from anywhere; any other value is read as a path. Loading validates every
//! field and reports all problems at once. This module never opens a socket.

use crate::dist::Dur;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The scenarios shipped with the binary, by name.
pub const BUILTIN: &[(&str, &str)] = &[
    ("smoke", include_str!("../scenarios/smoke.toml")),
    ("steady", include_str!("../scenarios/steady.toml")),
    ("burst", include_str!("../scenarios/burst.toml")),
    ("multiskill", include_str!("../scenarios/multiskill.toml")),
    ("max", include_str!("../scenarios/max.toml")),
    ("max-10k", include_str!("../scenarios/max-10k.toml")),
    ("erlang-c", include_str!("../scenarios/erlang-c.toml")),
    ("idle-agents", include_str!("../scenarios/idle-agents.toml")),
    (
        "waiting-100k",
        include_str!("../scenarios/waiting-100k.toml"),
    ),
];

/// What a run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// One open-loop run at the scenario's rate (and phases).
    #[default]
    Run,
    /// Ramp the arrival rate until open→offer p99 passes a bound or errors appear.
    Max,
    /// The echo ceiling: the same client against `/v1/echo`.
    Echo,
    /// The echo ceiling, then the max ramp, and their ratio.
    Compare,
    /// One skill, capacity 1, Poisson arrivals, exponential handle times: measured vs Erlang C.
    ErlangC,
}

/// A whole scenario file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub mode: Mode,
    /// How long conversations keep arriving (each phase's own length when phases are given).
    pub duration_secs: f64,
    /// After arrivals stop: how long in-flight conversations get to finish
    /// before waiting ones are abandoned and assigned ones completed.
    #[serde(default = "default_drain")]
    pub drain_secs: f64,
    /// Hard cap on conversations opened in the whole run.
    #[serde(default = "default_max_conversations")]
    pub max_conversations: u64,
    #[serde(default = "default_seed")]
    pub seed: u64,
    pub arrivals: Arrivals,
    pub agents: Agents,
    #[serde(default)]
    pub thresholds: Thresholds,
    #[serde(default)]
    pub max: MaxSettings,
    #[serde(default)]
    pub echo: EchoSettings,
    #[serde(default)]
    pub erlang_c: ErlangSettings,
}

fn default_drain() -> f64 {
    10.0
}
fn default_max_conversations() -> u64 {
    1_000_000
}
fn default_seed() -> u64 {
    42
}

/// The customer side: how conversations arrive and behave.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arrivals {
    /// Mean Poisson arrival rate (conversations per second).
    pub rate_per_sec: f64,
    /// Optional rate phases, run one after another, each `duration_secs` long
    /// (a burst is a short phase with a high rate). Empty: one phase at `rate_per_sec`.
    #[serde(default)]
    pub phases: Vec<Phase>,
    /// Connector (gateway) connections the arrivals are spread over, round robin.
    #[serde(default = "default_connectors")]
    pub connectors: usize,
    /// How long a customer waits unassigned before abandoning; none: never.
    #[serde(default)]
    pub patience: Option<Dur>,
    /// Share of assigned conversations the customer moves to another channel.
    #[serde(default)]
    pub switch_probability: f64,
    /// Delay from assignment to the channel switch.
    #[serde(default = "default_switch_after")]
    pub switch_after: Dur,
    /// Customer messages sent per conversation once it is assigned.
    #[serde(default)]
    pub messages_per_conversation: u32,
    /// Gap between those messages.
    #[serde(default = "default_message_gap")]
    pub message_gap: Dur,
    /// Size of each message text, in bytes.
    #[serde(default = "default_message_bytes")]
    pub message_bytes: usize,
    /// Kinds of conversation, picked by weight.
    pub mix: Vec<MixEntry>,
}

fn default_connectors() -> usize {
    4
}
fn default_switch_after() -> Dur {
    Dur::Constant { ms: 100.0 }
}
fn default_message_gap() -> Dur {
    Dur::Constant { ms: 50.0 }
}
fn default_message_bytes() -> usize {
    64
}

/// One rate phase.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    pub rate_per_sec: f64,
    pub duration_secs: f64,
}

/// One kind of conversation in the arrival mix.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MixEntry {
    pub weight: f64,
    pub channel: String,
    /// Queue to open in; none: the engine's default queue.
    #[serde(default)]
    pub queue: Option<String>,
    /// Required skills and minimum levels sent with `conversation.open`.
    #[serde(default)]
    pub skills: BTreeMap<String, u8>,
    #[serde(default)]
    pub priority: Option<i32>,
    /// Channel a switching conversation moves to (required when switches can happen).
    #[serde(default)]
    pub switch_to: Option<String>,
}

/// The agent side.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Agents {
    pub count: usize,
    /// Agent ids are `{id_prefix}{n}`.
    #[serde(default = "default_agent_prefix")]
    pub id_prefix: String,
    pub profiles: Vec<AgentProfile>,
}

fn default_agent_prefix() -> String {
    "lt-agent-".into()
}

/// One kind of agent, picked by weight for each simulated agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentProfile {
    pub weight: f64,
    #[serde(default)]
    pub skills: BTreeMap<String, u8>,
    /// Slots per channel sent with `agent.login`.
    pub capacity: BTreeMap<String, u8>,
    /// Time from receiving an offer to sending `offer.accept`.
    #[serde(default = "default_accept_delay")]
    pub accept_delay: Dur,
    /// Probability an offer is rejected instead.
    #[serde(default)]
    pub reject_probability: f64,
    /// Time from assignment to `conversation.complete`.
    pub handle_time: Dur,
}

fn default_accept_delay() -> Dur {
    Dur::Constant { ms: 0.0 }
}

/// Figures that must be met; a missed one makes the process exit with code 99.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    pub open_to_offer_p50_ms: Option<f64>,
    pub open_to_offer_p99_ms: Option<f64>,
    pub open_to_assigned_p99_ms: Option<f64>,
    pub ack_p99_ms: Option<f64>,
    /// Most acknowledged conversations allowed to end unaccounted for.
    pub lost: Option<u64>,
    /// Most conversations allowed to be held by (offered to) two agents at once.
    pub duplicated: Option<u64>,
    /// Most offers allowed to an agent lacking a skill/level or over capacity.
    pub misrouted: Option<u64>,
    /// Most unexpected error frames and failed commands.
    pub errors: Option<u64>,
    /// Fewest completed lifecycles per second of arrival time.
    pub min_lifecycles_per_sec: Option<f64>,
    /// Most abandoned conversations as a share of acknowledged opens.
    pub max_abandon_rate: Option<f64>,
}

/// The max-throughput ramp.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaxSettings {
    pub start_rate: f64,
    /// Each step's rate is the previous one times this.
    pub step_factor: f64,
    pub step_secs: f64,
    pub max_rate: f64,
    /// The ramp stops when a step's open→offer p99 exceeds this.
    pub p99_bound_ms: f64,
    /// Steps run after the ramp stops, each at the geometric middle of the
    /// highest rate that passed and the lowest that failed, so the knee is
    /// known closer than one `step_factor` (0: the ramp's steps only).
    #[serde(default)]
    pub refine_steps: u32,
}

impl Default for MaxSettings {
    fn default() -> Self {
        MaxSettings {
            start_rate: 100.0,
            step_factor: 1.3,
            step_secs: 5.0,
            max_rate: 50_000.0,
            p99_bound_ms: 50.0,
            refine_steps: 0,
        }
    }
}

/// The echo ceiling.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EchoSettings {
    /// Path of the echo endpoint on the same server.
    pub path: String,
    /// Frames each connection keeps in flight; 0: connect and stay idle
    /// (the memory baseline of a bare WebSocket connection).
    pub window: usize,
    /// Size of each frame's JSON text, in bytes (an offer frame is about 300).
    pub payload_bytes: usize,
    pub duration_secs: f64,
    /// Connections; 0: the same count as the scenario's run (agents + connectors).
    pub connections: usize,
}

impl Default for EchoSettings {
    fn default() -> Self {
        EchoSettings {
            path: "/v1/echo".into(),
            window: 4,
            payload_bytes: 300,
            duration_secs: 10.0,
            connections: 0,
        }
    }
}

/// The Erlang C comparison.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErlangSettings {
    /// Service-level thresholds to report, in ms.
    pub service_level_ms: Vec<f64>,
    /// A conversation counts as having waited when open→offer exceeds this
    /// (the engine's own decision time is not queueing).
    pub wait_epsilon_ms: f64,
    /// Arrivals for this long come first and are served but not counted:
    /// the run starts with every agent free, and Erlang C describes the
    /// steady state (which an M/M/N system near ρ = 0.8 takes tens of
    /// seconds to reach from empty).
    #[serde(default)]
    pub warmup_secs: f64,
}

impl Default for ErlangSettings {
    fn default() -> Self {
        ErlangSettings {
            service_level_ms: vec![0.0, 100.0, 250.0, 500.0, 1000.0],
            wait_epsilon_ms: 20.0,
            warmup_secs: 0.0,
        }
    }
}

/// Loads a built-in scenario by name, or a file by path.
pub fn load(name_or_path: &str) -> anyhow::Result<Scenario> {
    let text = match BUILTIN.iter().find(|(n, _)| *n == name_or_path) {
        Some((_, text)) => (*text).to_string(),
        None => std::fs::read_to_string(name_or_path).map_err(|e| {
            let names: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
            anyhow::anyhow!(
                "`{name_or_path}` is neither a built-in scenario ({}) nor a readable file: {e}",
                names.join(", ")
            )
        })?,
    };
    parse(&text)
}

/// Parses and validates scenario text.
pub fn parse(text: &str) -> anyhow::Result<Scenario> {
    let s: Scenario = toml::from_str(text)?;
    let problems = s.validate();
    if !problems.is_empty() {
        anyhow::bail!(
            "invalid scenario `{}`:\n  - {}",
            s.name,
            problems.join("\n  - ")
        );
    }
    Ok(s)
}

impl Scenario {
    /// Every problem found, each naming its field; empty when valid.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        let dur = |field: &str, d: &Dur, p: &mut Vec<String>| {
            if let Err(e) = d.validate() {
                p.push(format!("{field}: {}", e.0));
            }
        };
        let pos = |v: f64| v.is_finite() && v > 0.0;
        if !pos(self.duration_secs) {
            p.push("duration_secs must be > 0".into());
        }
        if !(self.drain_secs.is_finite() && self.drain_secs >= 0.0) {
            p.push("drain_secs must be >= 0".into());
        }
        if self.max_conversations == 0 {
            p.push("max_conversations must be > 0".into());
        }
        let a = &self.arrivals;
        if !pos(a.rate_per_sec) {
            p.push("arrivals.rate_per_sec must be > 0".into());
        }
        for (i, ph) in a.phases.iter().enumerate() {
            if !pos(ph.rate_per_sec) || !pos(ph.duration_secs) {
                p.push(format!(
                    "arrivals.phases[{i}]: rate_per_sec and duration_secs must be > 0"
                ));
            }
        }
        if a.connectors == 0 {
            p.push("arrivals.connectors must be > 0".into());
        }
        if let Some(d) = &a.patience {
            dur("arrivals.patience", d, &mut p);
        }
        dur("arrivals.switch_after", &a.switch_after, &mut p);
        dur("arrivals.message_gap", &a.message_gap, &mut p);
        if !(0.0..=1.0).contains(&a.switch_probability) {
            p.push("arrivals.switch_probability must be in [0, 1]".into());
        }
        if a.mix.is_empty() || a.mix.iter().all(|m| m.weight <= 0.0) {
            p.push("arrivals.mix needs at least one entry with weight > 0".into());
        }
        for (i, m) in a.mix.iter().enumerate() {
            if !(m.weight.is_finite() && m.weight >= 0.0) {
                p.push(format!("arrivals.mix[{i}].weight must be >= 0"));
            }
            for (skill, level) in &m.skills {
                if !(1..=10).contains(level) {
                    p.push(format!(
                        "arrivals.mix[{i}].skills.{skill}: level {level} is outside 1..=10"
                    ));
                }
            }
            if a.switch_probability > 0.0 {
                match &m.switch_to {
                    None => p.push(format!(
                        "arrivals.mix[{i}].switch_to is required when switch_probability > 0"
                    )),
                    Some(to) if to == &m.channel => p.push(format!(
                        "arrivals.mix[{i}].switch_to must differ from channel"
                    )),
                    Some(_) => {}
                }
            }
        }
        let g = &self.agents;
        if g.count == 0 {
            p.push("agents.count must be > 0".into());
        }
        if g.profiles.is_empty() || g.profiles.iter().all(|pr| pr.weight <= 0.0) {
            p.push("agents.profiles needs at least one entry with weight > 0".into());
        }
        for (i, pr) in g.profiles.iter().enumerate() {
            dur(
                &format!("agents.profiles[{i}].accept_delay"),
                &pr.accept_delay,
                &mut p,
            );
            dur(
                &format!("agents.profiles[{i}].handle_time"),
                &pr.handle_time,
                &mut p,
            );
            if !(0.0..1.0).contains(&pr.reject_probability) {
                p.push(format!(
                    "agents.profiles[{i}].reject_probability must be in [0, 1)"
                ));
            }
            if pr.capacity.values().all(|c| *c == 0) {
                p.push(format!(
                    "agents.profiles[{i}].capacity needs a channel with at least one slot"
                ));
            }
            for (skill, level) in &pr.skills {
                if !(1..=10).contains(level) {
                    p.push(format!(
                        "agents.profiles[{i}].skills.{skill}: level {level} is outside 1..=10"
                    ));
                }
            }
        }
        // Every channel a conversation can be on must be given a capacity by
        // every profile (0 is allowed), so capacity can be checked exactly.
        let mut channels: Vec<&str> = a.mix.iter().map(|m| m.channel.as_str()).collect();
        channels.extend(a.mix.iter().filter_map(|m| m.switch_to.as_deref()));
        for (i, pr) in g.profiles.iter().enumerate() {
            for ch in &channels {
                if !pr.capacity.contains_key(*ch) {
                    p.push(format!("agents.profiles[{i}].capacity must name channel `{ch}` (0 if it does not serve it)"));
                }
            }
        }
        let m = &self.max;
        if !(pos(m.start_rate)
            && m.step_factor > 1.0
            && pos(m.step_secs)
            && m.max_rate >= m.start_rate
            && pos(m.p99_bound_ms))
        {
            p.push("max: need start_rate > 0, step_factor > 1, step_secs > 0, max_rate >= start_rate, p99_bound_ms > 0".into());
        }
        let e = &self.echo;
        if e.payload_bytes < 16 || !pos(e.duration_secs) || !e.path.starts_with('/') {
            p.push(
                "echo: need payload_bytes >= 16, duration_secs > 0 and a path starting with /"
                    .into(),
            );
        }
        if self.mode == Mode::ErlangC {
            if a.patience.is_some() || a.switch_probability > 0.0 {
                p.push("erlang-c: customers must have infinite patience and never switch".into());
            }
            if g.profiles.len() != 1
                || g.profiles[0].capacity.values().filter(|c| **c > 0).count() != 1
            {
                p.push("erlang-c: exactly one agent profile with one channel of capacity 1".into());
            } else if g.profiles[0].capacity.values().any(|c| *c > 1)
                || g.profiles[0].reject_probability > 0.0
            {
                p.push("erlang-c: capacity must be 1 and reject_probability 0".into());
            } else if !matches!(g.profiles[0].handle_time, Dur::Exponential { .. }) {
                p.push("erlang-c: handle_time must be exponential".into());
            }
            let warmup = self.erlang_c.warmup_secs;
            if !(warmup.is_finite() && warmup >= 0.0) {
                p.push("erlang_c.warmup_secs must be a number of seconds >= 0".into());
            }
        }
        p
    }

    /// The arrival phases in order (a single phase when none are given).
    pub fn phases(&self) -> Vec<Phase> {
        if self.arrivals.phases.is_empty() {
            vec![Phase {
                rate_per_sec: self.arrivals.rate_per_sec,
                duration_secs: self.duration_secs,
            }]
        } else {
            self.arrivals.phases.clone()
        }
    }

    /// Seconds during which conversations arrive.
    pub fn arrival_secs(&self) -> f64 {
        self.phases().iter().map(|p| p.duration_secs).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_scenario_parses_and_validates() {
        for (name, text) in BUILTIN {
            let s = parse(text).unwrap_or_else(|e| panic!("{name}: {e:#}"));
            assert_eq!(&s.name, name);
            assert!(s.arrival_secs() > 0.0);
        }
    }

    #[test]
    fn smoke_is_short_and_has_thresholds() {
        let s = load("smoke").expect("smoke");
        assert!(
            s.arrival_secs() + s.drain_secs <= 20.0,
            "smoke must stay short for CI"
        );
        assert_eq!(s.thresholds.lost, Some(0));
        assert_eq!(s.thresholds.misrouted, Some(0));
        assert_eq!(s.thresholds.duplicated, Some(0));
    }

    #[test]
    fn erlang_c_scenario_is_a_stable_mmn_system() {
        let s = load("erlang-c").expect("erlang-c");
        assert_eq!(s.mode, Mode::ErlangC);
        let Dur::Exponential { mean_ms } = s.agents.profiles[0].handle_time else {
            panic!("exponential")
        };
        let e =
            crate::erlang::ErlangC::new(s.agents.count as u32, s.arrivals.rate_per_sec, mean_ms)
                .expect("stable");
        assert!(
            e.utilisation > 0.5 && e.utilisation < 0.95,
            "ρ = {}",
            e.utilisation
        );
    }

    const MINIMAL: &str = r#"
        name = "t"
        duration_secs = 1
        [arrivals]
        rate_per_sec = 5
        mix = [{ weight = 1, channel = "chat" }]
        [agents]
        count = 2
        profiles = [{ weight = 1, capacity = { chat = 2 }, handle_time = { dist = "constant", ms = 10 } }]
    "#;

    #[test]
    fn minimal_scenario_gets_defaults() {
        let s = parse(MINIMAL).expect("valid");
        assert_eq!(s.mode, Mode::Run);
        assert_eq!(s.arrivals.connectors, 4);
        assert_eq!(s.phases().len(), 1);
        assert_eq!(s.thresholds.lost, None);
    }

    #[test]
    fn problems_are_all_reported_with_their_field() {
        let bad = MINIMAL
            .replace("rate_per_sec = 5", "rate_per_sec = 0")
            .replace("capacity = { chat = 2 }", "capacity = { voice = 1 }")
            .replace("count = 2", "count = 0");
        let err = parse(&bad).expect_err("invalid").to_string();
        assert!(err.contains("arrivals.rate_per_sec"), "{err}");
        assert!(err.contains("agents.count"), "{err}");
        assert!(err.contains("must name channel `chat`"), "{err}");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let bad = MINIMAL.replace("duration_secs = 1", "duration_secs = 1\nduraton = 3");
        assert!(parse(&bad).is_err());
    }

    #[test]
    fn switching_needs_a_target_channel() {
        let bad = MINIMAL.replace(
            "rate_per_sec = 5",
            "rate_per_sec = 5\nswitch_probability = 0.5",
        );
        let err = parse(&bad).expect_err("invalid").to_string();
        assert!(err.contains("switch_to is required"), "{err}");
    }

    #[test]
    fn the_erlang_c_warm_up_is_read_and_checked() {
        let text = BUILTIN
            .iter()
            .find(|(n, _)| *n == "erlang-c")
            .map(|(_, t)| *t)
            .expect("built in");
        assert_eq!(parse(text).expect("valid").erlang_c.warmup_secs, 60.0);
        let bad = text.replace("warmup_secs = 60", "warmup_secs = -1");
        let err = parse(&bad).expect_err("invalid").to_string();
        assert!(err.contains("erlang_c.warmup_secs"), "{err}");
    }

    #[test]
    fn unknown_name_and_missing_file_say_so() {
        let err = load("no-such-scenario").expect_err("missing").to_string();
        assert!(err.contains("smoke"), "{err}");
    }
}
