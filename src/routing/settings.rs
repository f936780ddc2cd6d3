//! Routing settings: the plain-data view of the configuration that the pure
//! core needs (channels, queues, policies, widening, SLA targets and actions).
//!
//! Built from `crate::config` at the edge; the core never reads files or the
//! environment. Everything here is validated before an [`super::Engine`] is
//! built from it ([`RoutingSettings::validate`]).

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch. The core never reads a clock: every
/// timestamp is passed in by its caller.
pub type Millis = u64;

/// How the router picks among several eligible agents for one conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SelectionPolicy {
    /// The agent whose last activity on the channel is oldest (default).
    #[default]
    LongestIdle,
    /// The agent with the highest summed level over the required skills.
    MostSkilled,
    /// The agent with the lowest share of its capacity in use.
    LeastOccupied,
    /// A uniformly random eligible agent, from the engine's seeded generator.
    Random,
}

impl SelectionPolicy {
    /// The wire/config name of the policy.
    pub fn as_str(self) -> &'static str {
        match self {
            SelectionPolicy::LongestIdle => "longest_idle",
            SelectionPolicy::MostSkilled => "most_skilled",
            SelectionPolicy::LeastOccupied => "least_occupied",
            SelectionPolicy::Random => "random",
        }
    }
}

/// What the engine does when an SLA warning or breach fires for a
/// conversation that is still waiting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum SlaAction {
    /// Raise the conversation's priority by `by` points.
    BoostPriority { by: i32 },
    /// Apply the queue's next widening step now instead of at its time.
    Widen,
    /// Move the conversation to its queue's overflow queue, keeping its
    /// original place in time.
    Overflow,
}

/// Service-level targets and the actions taken when they are at risk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SlaSettings {
    /// Open (or channel switch) to accepted offer; `None` disables it.
    pub answer_target_ms: Option<Millis>,
    /// Open to first agent message, for asynchronous channels; `None` disables it.
    pub first_response_target_ms: Option<Millis>,
    /// Warning fires at this fraction of a target (0 < f < 1).
    pub warning_fraction: f64,
    /// Actions taken at the warning.
    pub on_warning: Vec<SlaAction>,
    /// Actions taken at the breach.
    pub on_breach: Vec<SlaAction>,
}

/// Per-queue overrides of a channel's SLA settings; `None` keeps the channel's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SlaOverride {
    pub answer_target_ms: Option<Millis>,
    pub first_response_target_ms: Option<Millis>,
    pub warning_fraction: Option<f64>,
    pub on_warning: Option<Vec<SlaAction>>,
    pub on_breach: Option<Vec<SlaAction>>,
}

/// One media channel (voice, chat, email …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelSettings {
    pub name: String,
    /// Slots an agent has on this channel when its login names no capacity.
    pub default_capacity: u8,
    /// How long an agent has to accept an offer.
    pub offer_timeout_ms: Millis,
    /// How long a slot stays held after a conversation completes.
    pub wrap_up_ms: Millis,
    pub sla: SlaSettings,
}

/// One step of a queue's widening (bullseye) schedule. Steps are cumulative.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WideningStep {
    /// Wait (since the conversation entered the queue) after which the step applies.
    pub after_ms: Millis,
    /// Every required level drops by this much (a level that reaches 0 is dropped).
    pub lower_levels_by: u8,
    /// Skills no longer required from this step on.
    pub drop_skills: Vec<String>,
}

/// One queue: what it requires, how it orders and picks, where it overflows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueSettings {
    pub name: String,
    /// Required skills and minimum levels (1..=10).
    pub skills: Vec<(String, u8)>,
    /// Default priority of conversations opened in this queue (higher first).
    pub priority: i32,
    pub policy: SelectionPolicy,
    /// Aging: one priority point is added per this many milliseconds of wait.
    pub aging_ms_per_point: Option<Millis>,
    pub widening: Vec<WideningStep>,
    /// Queue that receives conversations from an `overflow` SLA action.
    pub overflow_queue: Option<String>,
    /// Channels the queue serves; empty serves every channel.
    pub channels: Vec<String>,
    pub sla: SlaOverride,
}

/// Everything the pure routing core is configured with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoutingSettings {
    pub channels: Vec<ChannelSettings>,
    pub queues: Vec<QueueSettings>,
    /// Queue used when `conversation.open` names none.
    pub default_queue: String,
    /// An agent that declined (or let expire) an offer is not offered the same
    /// conversation again before this long, and then only if nobody else can take it.
    pub decline_cooldown_ms: Millis,
    /// How long a preferred (or previous) agent is waited for before others are tried.
    pub preferred_agent_window_ms: Millis,
    /// How long a disconnected agent keeps its assigned conversations.
    pub reconnect_grace_ms: Millis,
    /// Seed of the `random` selection policy.
    pub seed: u64,
}

/// Why a [`RoutingSettings`] cannot be used; the `field` is a dotted path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SettingsError {
    pub field: String,
    pub message: String,
}

impl RoutingSettings {
    /// Every problem found, each naming the offending field; empty when valid.
    pub fn validate(&self) -> Vec<SettingsError> {
        let mut errors = Vec::new();
        let mut err =
            |field: String, message: String| errors.push(SettingsError { field, message });
        if self.channels.is_empty() {
            err("channels".into(), "at least one channel is required".into());
        }
        if self.channels.len() > 32 {
            err(
                "channels".into(),
                "at most 32 channels are supported".into(),
            );
        }
        let mut seen = std::collections::HashSet::new();
        for ch in &self.channels {
            if !seen.insert(ch.name.as_str()) {
                err(format!("channels.{}", ch.name), "duplicate channel".into());
            }
            if ch.offer_timeout_ms == 0 {
                err(
                    format!("channels.{}.offer_timeout_secs", ch.name),
                    "must be greater than 0".into(),
                );
            }
            check_sla(
                &mut err,
                &format!("channels.{}.sla", ch.name),
                &ch.sla.answer_target_ms,
                &ch.sla.first_response_target_ms,
                Some(ch.sla.warning_fraction),
            );
        }
        let mut qseen = std::collections::HashSet::new();
        for q in &self.queues {
            let base = format!("queues.{}", q.name);
            if !qseen.insert(q.name.as_str()) {
                err(base.clone(), "duplicate queue".into());
            }
            for (skill, level) in &q.skills {
                if !(1..=10).contains(level) {
                    err(
                        format!("{base}.skills.{skill}"),
                        format!("level {level} is outside 1..=10"),
                    );
                }
            }
            if q.aging_ms_per_point == Some(0) {
                err(
                    format!("{base}.aging_secs_per_point"),
                    "must be greater than 0".into(),
                );
            }
            let mut last = 0;
            for (i, step) in q.widening.iter().enumerate() {
                if step.after_ms <= last && i > 0 {
                    err(
                        format!("{base}.widening[{i}].after_secs"),
                        "steps must come in increasing order of wait".into(),
                    );
                }
                last = step.after_ms;
                for s in &step.drop_skills {
                    if !q.skills.iter().any(|(name, _)| name == s) {
                        err(
                            format!("{base}.widening[{i}].drop_skills"),
                            format!("skill `{s}` is not required by the queue"),
                        );
                    }
                }
            }
            for ch in &q.channels {
                if !self.channels.iter().any(|c| &c.name == ch) {
                    err(
                        format!("{base}.channels"),
                        format!("unknown channel `{ch}`"),
                    );
                }
            }
            if let Some(of) = &q.overflow_queue {
                if of == &q.name {
                    err(
                        format!("{base}.overflow_queue"),
                        "a queue cannot overflow into itself".into(),
                    );
                } else if !self.queues.iter().any(|other| &other.name == of) {
                    err(
                        format!("{base}.overflow_queue"),
                        format!("unknown queue `{of}`"),
                    );
                }
            }
            check_sla(
                &mut err,
                &format!("{base}.sla"),
                &q.sla.answer_target_ms,
                &q.sla.first_response_target_ms,
                q.sla.warning_fraction,
            );
        }
        if !self.queues.iter().any(|q| q.name == self.default_queue) {
            err(
                "routing.default_queue".into(),
                format!("unknown queue `{}`", self.default_queue),
            );
        }
        errors
    }

    /// Index of the channel named `name`.
    pub fn channel_index(&self, name: &str) -> Option<usize> {
        self.channels.iter().position(|c| c.name == name)
    }

    /// Index of the queue named `name`.
    pub fn queue_index(&self, name: &str) -> Option<usize> {
        self.queues.iter().position(|q| q.name == name)
    }

    /// The SLA settings in force for a conversation of `channel` in `queue`.
    pub fn sla_for(&self, channel: usize, queue: usize) -> SlaSettings {
        let mut sla = self.channels[channel].sla.clone();
        let o = &self.queues[queue].sla;
        if o.answer_target_ms.is_some() {
            sla.answer_target_ms = o.answer_target_ms;
        }
        if o.first_response_target_ms.is_some() {
            sla.first_response_target_ms = o.first_response_target_ms;
        }
        if let Some(f) = o.warning_fraction {
            sla.warning_fraction = f;
        }
        if let Some(a) = &o.on_warning {
            sla.on_warning = a.clone();
        }
        if let Some(a) = &o.on_breach {
            sla.on_breach = a.clone();
        }
        sla
    }

    /// A small, valid setup used by tests and benches: the five default
    /// channels and one queue `general` with no skill requirement.
    pub fn example() -> Self {
        let channel =
            |name: &str, cap: u8, answer_ms: Option<u64>, first_ms: Option<u64>| ChannelSettings {
                name: name.into(),
                default_capacity: cap,
                offer_timeout_ms: 20_000,
                wrap_up_ms: 0,
                sla: SlaSettings {
                    answer_target_ms: answer_ms,
                    first_response_target_ms: first_ms,
                    warning_fraction: 0.8,
                    on_warning: vec![],
                    on_breach: vec![],
                },
            };
        RoutingSettings {
            channels: vec![
                channel("voice", 1, Some(20_000), None),
                channel("chat", 3, Some(30_000), None),
                channel("email", 5, None, Some(3_600_000)),
                channel("sms", 3, Some(60_000), None),
                channel("social", 3, Some(60_000), None),
            ],
            queues: vec![QueueSettings {
                name: "general".into(),
                skills: vec![],
                priority: 0,
                policy: SelectionPolicy::LongestIdle,
                aging_ms_per_point: None,
                widening: vec![],
                overflow_queue: None,
                channels: vec![],
                sla: SlaOverride::default(),
            }],
            default_queue: "general".into(),
            decline_cooldown_ms: 10_000,
            preferred_agent_window_ms: 15_000,
            reconnect_grace_ms: 60_000,
            seed: 0x5eed,
        }
    }
}

fn check_sla(
    err: &mut impl FnMut(String, String),
    base: &str,
    answer: &Option<Millis>,
    first: &Option<Millis>,
    fraction: Option<f64>,
) {
    if *answer == Some(0) {
        err(
            format!("{base}.answer_target_secs"),
            "must be greater than 0".into(),
        );
    }
    if *first == Some(0) {
        err(
            format!("{base}.first_response_target_secs"),
            "must be greater than 0".into(),
        );
    }
    if let Some(f) = fraction {
        if !(f > 0.0 && f < 1.0) {
            err(
                format!("{base}.warning_fraction"),
                format!("{f} is outside (0, 1)"),
            );
        }
    }
}
