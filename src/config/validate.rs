//! Validation of a deserialized [`AppConfig`]: every problem, each with the
//! dotted path of its field, so an operator fixes a file in one pass.
//!
//! Checks here are about values serde cannot refuse on its own (ranges,
//! references between sections, consistency). It never stops at the first
//! problem and never changes the configuration.

use super::{AppConfig, ConfigProblem, QueueConfig, Seconds, SlaActionConfig};
use std::collections::HashSet;

/// Every problem of `config`, in file order, then those of the routing core's
/// own validation that name a field not already reported.
pub(super) fn validate(config: &AppConfig) -> Vec<ConfigProblem> {
    let mut p = Problems::default();
    server(config, &mut p);
    auth(config, &mut p);
    routing(config, &mut p);
    channels(config, &mut p);
    queues(config, &mut p);
    other_sections(config, &mut p);

    let reported: HashSet<String> = p.0.iter().map(|x| x.path.clone()).collect();
    for e in config.routing_settings().validate() {
        if !reported.contains(&e.field) {
            p.push(e.field, e.message);
        }
    }
    p.0
}

#[derive(Default)]
struct Problems(Vec<ConfigProblem>);

impl Problems {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigProblem::new(path, message));
    }

    /// A duration that must be a finite number of seconds, > 0 or >= 0.
    fn secs(&mut self, path: impl Into<String>, value: Seconds, allow_zero: bool) {
        let v = value.secs();
        if !v.is_finite() {
            self.push(path, format!("{v} is not a finite number of seconds"));
        } else if v < 0.0 {
            self.push(
                path,
                format!("{v} is negative; a duration in seconds must be >= 0"),
            );
        } else if v == 0.0 && !allow_zero {
            self.push(path, "must be greater than 0");
        } else if v > 0.0 && value.as_ms() == 0 {
            self.push(path, format!("{v} is below the resolution of 1 ms"));
        }
    }
}

fn server(config: &AppConfig, p: &mut Problems) {
    let s = &config.server;
    if let Err(e) = s.listen_addr() {
        p.push(
            "server.listen",
            format!(
                "`{}` is not an IP:port address ({e}), e.g. 127.0.0.1:8080",
                s.listen
            ),
        );
    }
    if !(1024..=16 * 1024 * 1024).contains(&s.max_frame_bytes) {
        p.push(
            "server.max_frame_bytes",
            format!("{} is outside 1024..=16777216 bytes", s.max_frame_bytes),
        );
    }
    if s.outbound_buffer_frames == 0 {
        p.push("server.outbound_buffer_frames", "must be greater than 0");
    }
    p.secs(
        "server.heartbeat_interval_secs",
        s.heartbeat_interval_secs,
        false,
    );
    p.secs("server.client_timeout_secs", s.client_timeout_secs, false);
    if s.client_timeout_secs.secs() <= s.heartbeat_interval_secs.secs() {
        p.push(
            "server.client_timeout_secs",
            format!(
                "must be greater than server.heartbeat_interval_secs ({}), or live clients are dropped",
                s.heartbeat_interval_secs.secs()
            ),
        );
    }
    p.secs("server.shutdown_grace_secs", s.shutdown_grace_secs, true);
    let mut seen = HashSet::new();
    for (i, path) in s.public_paths.iter().enumerate() {
        let at = format!("server.public_paths[{i}]");
        if !path.starts_with('/') {
            p.push(at, format!("`{path}` must start with `/`"));
        } else if path.starts_with("/v1/ws") {
            p.push(at, "the WebSocket endpoint always needs a token");
        } else if !seen.insert(path.as_str()) {
            p.push(at, format!("`{path}` is listed twice"));
        }
    }
}

fn auth(config: &AppConfig, p: &mut Problems) {
    let tokens = &config.auth.tokens;
    if tokens.is_empty() {
        p.push(
            "auth.tokens",
            "at least one token is required, or no client can connect",
        );
    }
    let mut seen: Vec<(&str, usize)> = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        let at = format!("auth.tokens[{i}]");
        if t.token.is_empty() {
            p.push(format!("{at}.token"), "must not be empty");
        } else if !t.token.bytes().all(|b| b.is_ascii_graphic()) {
            p.push(
                format!("{at}.token"),
                "must be printable ASCII without spaces (it travels in a header)",
            );
        }
        if let Some((_, first)) = seen.iter().find(|(tok, _)| *tok == t.token) {
            p.push(
                format!("{at}.token"),
                format!("duplicate token: also auth.tokens[{first}]"),
            );
        } else {
            seen.push((t.token.as_str(), i));
        }
        if t.name.trim().is_empty() {
            p.push(format!("{at}.name"), "must not be empty");
        }
        if let Some(agent) = &t.agent_id {
            if t.role != super::Role::Agent {
                p.push(
                    format!("{at}.agent_id"),
                    format!(
                        "only an agent token may pin an agent id (role is {})",
                        t.role
                    ),
                );
            } else if agent.is_empty() {
                p.push(format!("{at}.agent_id"), "must not be empty");
            }
        }
    }
}

fn routing(config: &AppConfig, p: &mut Problems) {
    let r = &config.routing;
    if !config.queues.contains(&r.default_queue) {
        p.push(
            "routing.default_queue",
            format!("unknown queue `{}`", r.default_queue),
        );
    }
    p.secs(
        "routing.decline_cooldown_secs",
        r.decline_cooldown_secs,
        true,
    );
    p.secs(
        "routing.preferred_agent_window_secs",
        r.preferred_agent_window_secs,
        true,
    );
    p.secs("routing.reconnect_grace_secs", r.reconnect_grace_secs, true);
    if r.agent_max_total == Some(0) {
        p.push(
            "routing.agent_max_total",
            "must be at least 1 (leave it out for no total cap)",
        );
    }
}

/// Names of channels and queues appear on the wire, in metric labels and in
/// environment variable names.
fn check_name(p: &mut Problems, path: String, name: &str) {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !ok {
        p.push(
            path,
            format!("name `{name}` must be 1 to 64 lower-case letters, digits, `_` or `-`"),
        );
    }
}

fn channels(config: &AppConfig, p: &mut Problems) {
    if config.channels.is_empty() {
        p.push("channels", "at least one channel is required");
        return;
    }
    for (name, ch) in config.channels.iter() {
        let base = format!("channels.{name}");
        check_name(p, base.clone(), name);
        p.secs(
            format!("{base}.offer_timeout_secs"),
            ch.offer_timeout_secs,
            false,
        );
        p.secs(format!("{base}.wrap_up_secs"), ch.wrap_up_secs, true);
        let sla = &ch.sla;
        if let Some(t) = sla.answer_target_secs {
            p.secs(format!("{base}.sla.answer_target_secs"), t, false);
        }
        if let Some(t) = sla.first_response_target_secs {
            p.secs(format!("{base}.sla.first_response_target_secs"), t, false);
        }
        fraction(
            p,
            format!("{base}.sla.warning_fraction"),
            sla.warning_fraction,
        );
        actions(p, &format!("{base}.sla.on_warning"), &sla.on_warning);
        actions(p, &format!("{base}.sla.on_breach"), &sla.on_breach);
    }
    if config
        .channels
        .iter()
        .all(|(_, ch)| ch.default_capacity == 0)
    {
        p.push(
            "channels",
            "every channel has default_capacity 0: an agent whose login names no capacity could take nothing",
        );
    }
}

fn fraction(p: &mut Problems, path: String, f: f64) {
    if !(f > 0.0 && f < 1.0) {
        p.push(path, format!("{f} is outside (0, 1)"));
    }
}

fn actions(p: &mut Problems, path: &str, list: &[SlaActionConfig]) {
    for (i, a) in list.iter().enumerate() {
        if let SlaActionConfig::BoostPriority { by } = a {
            if *by <= 0 {
                p.push(
                    format!("{path}[{i}].by"),
                    format!("{by}: a priority boost must be greater than 0"),
                );
            }
        }
    }
}

fn queues(config: &AppConfig, p: &mut Problems) {
    if config.queues.is_empty() {
        p.push("queues", "at least one queue is required");
        return;
    }
    for (name, q) in config.queues.iter() {
        let base = format!("queues.{name}");
        check_name(p, base.clone(), name);
        for (skill, level) in &q.skills {
            if skill.trim().is_empty() {
                p.push(format!("{base}.skills"), "a skill name must not be empty");
            }
            if !(1..=10).contains(level) {
                p.push(
                    format!("{base}.skills.{skill}"),
                    format!("level {level} is outside 1..=10"),
                );
            }
        }
        if let Some(a) = q.aging_secs_per_point {
            p.secs(format!("{base}.aging_secs_per_point"), a, false);
        }
        widening(p, &base, q);
        if let Some(of) = &q.overflow_queue {
            if of == name {
                p.push(
                    format!("{base}.overflow_queue"),
                    "a queue cannot overflow into itself",
                );
            } else if !config.queues.contains(of) {
                p.push(
                    format!("{base}.overflow_queue"),
                    format!("unknown queue `{of}`"),
                );
            } else if let Some(cycle) = overflow_cycle(config, name) {
                p.push(
                    format!("{base}.overflow_queue"),
                    format!("overflow loops: {}", cycle.join(" -> ")),
                );
            }
        }
        let sla = &q.sla;
        if let Some(t) = sla.answer_target_secs {
            p.secs(format!("{base}.sla.answer_target_secs"), t, false);
        }
        if let Some(t) = sla.first_response_target_secs {
            p.secs(format!("{base}.sla.first_response_target_secs"), t, false);
        }
        if let Some(f) = sla.warning_fraction {
            fraction(p, format!("{base}.sla.warning_fraction"), f);
        }
        for (key, list) in [
            ("on_warning", &sla.on_warning),
            ("on_breach", &sla.on_breach),
        ] {
            let Some(list) = list else { continue };
            let path = format!("{base}.sla.{key}");
            actions(p, &path, list);
            if q.overflow_queue.is_none() && list.contains(&SlaActionConfig::Overflow) {
                p.push(
                    path,
                    "an `overflow` action needs the queue's overflow_queue",
                );
            }
        }
    }
}

fn widening(p: &mut Problems, base: &str, q: &QueueConfig) {
    let mut previous: Option<f64> = None;
    for (i, step) in q.widening.iter().enumerate() {
        let at = format!("{base}.widening[{i}]");
        p.secs(format!("{at}.after_secs"), step.after_secs, false);
        if let Some(prev) = previous {
            if step.after_secs.secs() <= prev {
                p.push(
                    format!("{at}.after_secs"),
                    format!(
                        "{} is not after the previous step's {prev}: steps must come in increasing order of wait",
                        step.after_secs.secs()
                    ),
                );
            }
        }
        previous = Some(step.after_secs.secs());
        if step.lower_levels_by > 10 {
            p.push(
                format!("{at}.lower_levels_by"),
                format!("{} is outside 0..=10", step.lower_levels_by),
            );
        }
        if step.lower_levels_by == 0 && step.drop_skills.is_empty() {
            p.push(
                at.clone(),
                "the step changes nothing: set lower_levels_by or drop_skills",
            );
        }
        for s in &step.drop_skills {
            if !q.skills.contains_key(s) {
                p.push(
                    format!("{at}.drop_skills"),
                    format!("skill `{s}` is not required by the queue"),
                );
            }
        }
    }
}

/// The loop `start -> … -> start` of overflow queues, if following them from
/// `start` comes back to it.
fn overflow_cycle(config: &AppConfig, start: &str) -> Option<Vec<String>> {
    let mut chain = vec![start.to_string()];
    let mut current = start;
    while let Some(next) = config
        .queues
        .get(current)
        .and_then(|q| q.overflow_queue.as_deref())
    {
        if next == start {
            chain.push(next.to_string());
            return Some(chain);
        }
        if chain.iter().any(|c| c == next) || !config.queues.contains(next) {
            // A loop that does not pass through `start` is reported at its own queues.
            return None;
        }
        chain.push(next.to_string());
        current = next;
    }
    None
}

fn other_sections(config: &AppConfig, p: &mut Problems) {
    let s = &config.snapshot;
    if s.dir.as_os_str().is_empty() {
        p.push("snapshot.dir", "must not be empty");
    }
    p.secs("snapshot.interval_secs", s.interval_secs, false);
    if s.keep == 0 {
        p.push("snapshot.keep", "must be at least 1");
    }
    p.secs("snapshot.retain_ended_secs", s.retain_ended_secs, true);
    p.secs("snapshot.commit_window_secs", s.commit_window_secs, true);
    if s.commit_window_secs.secs() > 0.1 {
        p.push(
            "snapshot.commit_window_secs",
            "must be at most 0.1 (every ack of a busy engine waits up to this long)",
        );
    }
    if !(0..=19).contains(&s.thread_nice) {
        p.push(
            "snapshot.thread_nice",
            "must be 0..=19 (a thread may lower its priority, not raise it)",
        );
    }
    p.secs(
        "service_level.short_abandon_secs",
        config.service_level.short_abandon_secs,
        true,
    );
    p.secs(
        "metrics.upkeep_interval_secs",
        config.metrics.upkeep_interval_secs,
        false,
    );
    p.secs(
        "metrics.stats_interval_secs",
        config.metrics.stats_interval_secs,
        false,
    );
    let level = config.logging.level.trim();
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    if !level.contains(['=', ',']) && !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
        // A bare word would parse as a target name and silently enable trace for it.
        p.push(
            "logging.level",
            format!("`{level}` is not a level (trace, debug, info, warn, error, off)"),
        );
    } else if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(level) {
        p.push(
            "logging.level",
            format!("`{level}` is not a tracing filter: {e}"),
        );
    }
}
