//! Typed configuration: the embedded default, layering of a config file and
//! `SWITCHBOARD__SECTION__KEY` environment overrides, validation that names
//! every problem by its dotted field path, and the conversion into the
//! routing core's [`RoutingSettings`].
//!
//! Loading happens once, at start, before anything listens: this module reads
//! a file and the environment and nothing else. It never starts I/O of its
//! own, never logs secrets (a [`TokenConfig`]'s `Debug` hides the token) and
//! never falls back silently: an unknown key, a value of the wrong type or an
//! inconsistent setting is an error the operator sees with its path.
//!
//! The rules for layering and overrides are documented in the header of
//! `config/default.toml` and in `docs/configuration.md`.

mod load;
mod validate;

#[cfg(test)]
mod tests;

use crate::routing::{
    ChannelSettings, QueueSettings, RoutingSettings, SelectionPolicy, SlaAction, SlaOverride,
    SlaSettings, WideningStep,
};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The embedded default configuration (`config/default.toml`).
pub const DEFAULT_CONFIG: &str = include_str!("../../config/default.toml");

/// Prefix of the environment variables that override settings.
pub const ENV_PREFIX: &str = "SWITCHBOARD__";

/// The development tokens shipped in the default configuration.
pub const DEV_TOKENS: [&str; 3] = [
    "dev-connector-token",
    "dev-agent-token",
    "dev-supervisor-token",
];

/// The whole configuration of the engine.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    pub server: ServerConfig,
    pub auth: AuthConfig,
    pub routing: RoutingConfig,
    /// Media channels, in file order.
    pub channels: Named<ChannelConfig>,
    /// Queues, in file order.
    pub queues: Named<QueueConfig>,
    pub snapshot: SnapshotConfig,
    pub service_level: ServiceLevelConfig,
    pub metrics: MetricsConfig,
    pub logging: LoggingConfig,
}

/// A duration in seconds as the operator wrote it (may be fractional).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Deserialize)]
#[serde(transparent)]
pub struct Seconds(pub f64);

impl Seconds {
    /// The value as written, in seconds.
    pub fn secs(self) -> f64 {
        self.0
    }

    /// Whole milliseconds, rounded; a negative or non-finite value (which
    /// validation refuses) gives 0, a huge one saturates.
    pub fn as_ms(self) -> u64 {
        let ms = (self.0 * 1000.0).round();
        if ms.is_finite() && ms > 0.0 {
            // `as` saturates at u64::MAX for values beyond it.
            ms as u64
        } else {
            0
        }
    }

    /// The same value as a [`Duration`] (millisecond resolution).
    pub fn as_duration(self) -> Duration {
        Duration::from_millis(self.as_ms())
    }
}

/// `[server]`: the HTTP/WebSocket listener and per-connection limits.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Bind address, `IP:port` (checked by validation; see [`Self::listen_addr`]).
    pub listen: String,
    /// Largest inbound WebSocket frame, in bytes.
    pub max_frame_bytes: usize,
    /// Bounded outbound queue per connection, in frames; a client whose
    /// queue fills is disconnected.
    pub outbound_buffer_frames: usize,
    pub heartbeat_interval_secs: Seconds,
    pub client_timeout_secs: Seconds,
    /// REST paths that need no token.
    pub public_paths: Vec<String>,
    /// Serve the bare WebSocket echo endpoint used by the load generator.
    pub echo_endpoint: bool,
    pub shutdown_grace_secs: Seconds,
    /// HTTP worker threads; 0: one per core.
    #[serde(default)]
    pub workers: usize,
}

impl ServerConfig {
    /// The listen address as a socket address.
    pub fn listen_addr(&self) -> Result<SocketAddr, std::net::AddrParseError> {
        self.listen.parse()
    }

    /// Whether a REST path is served without a token.
    pub fn is_public_path(&self, path: &str) -> bool {
        self.public_paths.iter().any(|p| p == path)
    }
}

/// `[auth]`: the bearer tokens and their roles.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub tokens: Vec<TokenConfig>,
}

/// What a token lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A telephony/chat gateway: opens and drives conversations.
    Connector,
    /// An agent desktop: logs an agent in and handles offers.
    Agent,
    /// A supervisor dashboard: subscribes to events and reads stats.
    Supervisor,
}

impl Role {
    /// The config/wire name of the role.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Connector => "connector",
            Role::Agent => "agent",
            Role::Supervisor => "supervisor",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `[[auth.tokens]]` entry.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// The secret itself.
    pub token: String,
    pub role: Role,
    /// Label of the client in logs.
    pub name: String,
    /// For an agent token: the only agent id it may log in as.
    #[serde(default)]
    pub agent_id: Option<String>,
}

impl fmt::Debug for TokenConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenConfig")
            .field("token", &"<redacted>")
            .field("role", &self.role)
            .field("name", &self.name)
            .field("agent_id", &self.agent_id)
            .finish()
    }
}

/// `[routing]`: engine-wide routing settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingConfig {
    pub default_queue: String,
    pub decline_cooldown_secs: Seconds,
    pub preferred_agent_window_secs: Seconds,
    pub reconnect_grace_secs: Seconds,
    pub seed: u64,
    /// Default cap on an agent's conversations on all channels together
    /// (used when a login names none); `None`: no total cap.
    #[serde(default)]
    pub agent_max_total: Option<u8>,
}

/// `[channels.<name>]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    pub default_capacity: u8,
    pub offer_timeout_secs: Seconds,
    #[serde(default = "zero_secs")]
    pub wrap_up_secs: Seconds,
    #[serde(default)]
    pub sla: ChannelSlaConfig,
}

fn zero_secs() -> Seconds {
    Seconds(0.0)
}

/// `[channels.<name>.sla]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelSlaConfig {
    #[serde(default)]
    pub answer_target_secs: Option<Seconds>,
    #[serde(default)]
    pub first_response_target_secs: Option<Seconds>,
    #[serde(default = "default_warning_fraction")]
    pub warning_fraction: f64,
    #[serde(default)]
    pub on_warning: Vec<SlaActionConfig>,
    #[serde(default)]
    pub on_breach: Vec<SlaActionConfig>,
}

fn default_warning_fraction() -> f64 {
    0.8
}

impl Default for ChannelSlaConfig {
    fn default() -> Self {
        ChannelSlaConfig {
            answer_target_secs: None,
            first_response_target_secs: None,
            warning_fraction: default_warning_fraction(),
            on_warning: Vec::new(),
            on_breach: Vec::new(),
        }
    }
}

/// An SLA action as written in the config. Same shape as [`SlaAction`]
/// (`{ action = "boost_priority", by = 5 }`), but refuses unknown fields and
/// a `by` on an action that takes none (`{ action = "widen", by = 3 }`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawSlaAction")]
pub enum SlaActionConfig {
    BoostPriority { by: i32 },
    Widen,
    Overflow,
}

/// The flat form an action is read in: serde's `deny_unknown_fields` is not
/// reliable on an internally tagged enum, so the fields are checked here.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlaAction {
    action: SlaActionKind,
    #[serde(default)]
    by: Option<i32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum SlaActionKind {
    BoostPriority,
    Widen,
    Overflow,
}

impl TryFrom<RawSlaAction> for SlaActionConfig {
    type Error = String;

    fn try_from(raw: RawSlaAction) -> Result<Self, String> {
        match (raw.action, raw.by) {
            (SlaActionKind::BoostPriority, Some(by)) => Ok(SlaActionConfig::BoostPriority { by }),
            (SlaActionKind::BoostPriority, None) => {
                Err("`boost_priority` needs `by`, e.g. by = 5".into())
            }
            (SlaActionKind::Widen, None) => Ok(SlaActionConfig::Widen),
            (SlaActionKind::Overflow, None) => Ok(SlaActionConfig::Overflow),
            (SlaActionKind::Widen | SlaActionKind::Overflow, Some(_)) => {
                Err("`by` only applies to `boost_priority`".into())
            }
        }
    }
}

impl From<&SlaActionConfig> for SlaAction {
    fn from(a: &SlaActionConfig) -> Self {
        match *a {
            SlaActionConfig::BoostPriority { by } => SlaAction::BoostPriority { by },
            SlaActionConfig::Widen => SlaAction::Widen,
            SlaActionConfig::Overflow => SlaAction::Overflow,
        }
    }
}

/// `[queues.<name>]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// Required skills and levels; sorted by skill name.
    #[serde(default)]
    pub skills: BTreeMap<String, i64>,
    #[serde(default)]
    pub priority: i32,
    #[serde(default)]
    pub policy: SelectionPolicy,
    #[serde(default)]
    pub aging_secs_per_point: Option<Seconds>,
    #[serde(default)]
    pub widening: Vec<WideningConfig>,
    #[serde(default)]
    pub overflow_queue: Option<String>,
    /// Channels this queue serves; empty serves every channel.
    #[serde(default)]
    pub channels: Vec<String>,
    #[serde(default)]
    pub sla: QueueSlaConfig,
}

/// One entry of a queue's `widening` list.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WideningConfig {
    pub after_secs: Seconds,
    #[serde(default)]
    pub lower_levels_by: u8,
    #[serde(default)]
    pub drop_skills: Vec<String>,
}

/// `[queues.<name>.sla]`: overrides of the channel's SLA; absent keeps it.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSlaConfig {
    #[serde(default)]
    pub answer_target_secs: Option<Seconds>,
    #[serde(default)]
    pub first_response_target_secs: Option<Seconds>,
    #[serde(default)]
    pub warning_fraction: Option<f64>,
    #[serde(default)]
    pub on_warning: Option<Vec<SlaActionConfig>>,
    #[serde(default)]
    pub on_breach: Option<Vec<SlaActionConfig>>,
}

/// How state survives a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// Journal every change (group fsync) and replay it over the last snapshot.
    Journal,
    /// Periodic snapshots only; a crash loses up to one interval.
    Snapshot,
}

/// `[snapshot]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotConfig {
    pub dir: PathBuf,
    pub interval_secs: Seconds,
    pub keep: u32,
    pub durability: Durability,
    /// How long an ended conversation stays in the store (REST reads, the
    /// customer view, snapshots) after it ends; 0 keeps it forever.
    pub retain_ended_secs: Seconds,
    /// Nice value (0..=19) of the journal and snapshot threads (Linux).
    pub thread_nice: i32,
    /// The shortest time between the starts of two journal commits (fsyncs).
    pub commit_window_secs: Seconds,
}

/// `[service_level]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceLevelConfig {
    /// Abandons within this long of opening are left out of the denominator.
    pub short_abandon_secs: Seconds,
    /// Whether later abandons count (as not answered in time).
    pub count_abandoned: bool,
}

/// `[metrics]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    pub upkeep_interval_secs: Seconds,
    pub stats_interval_secs: Seconds,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

/// `[logging]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingConfig {
    /// A `tracing_subscriber::EnvFilter` directive string.
    pub level: String,
    pub format: LogFormat,
}

/// A name → value table that keeps the order of the file (channels, queues).
#[derive(Debug, Clone, PartialEq)]
pub struct Named<T>(pub Vec<(String, T)>);

impl<T> Named<T> {
    /// The entry named `name`.
    pub fn get(&self, name: &str) -> Option<&T> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Whether an entry is named `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &T)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v))
    }

    /// Names in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(n, _)| n.as_str())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Named<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NamedVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for NamedVisitor<T> {
            type Value = Named<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of named entries")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries: Vec<(String, T)> = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    if entries.iter().any(|(n, _)| *n == name) {
                        return Err(serde::de::Error::custom(format!(
                            "duplicate entry `{name}`"
                        )));
                    }
                    let value = map.next_value::<T>()?;
                    entries.push((name, value));
                }
                Ok(Named(entries))
            }
        }

        deserializer.deserialize_map(NamedVisitor(PhantomData))
    }
}

/// One thing wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted path of the field (`channels.voice.offer_timeout_secs`,
    /// `auth.tokens[1].role`), or `file:line:column` for a syntax error.
    pub path: String,
    pub message: String,
}

impl ConfigProblem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigProblem {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file `{}`: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The configuration was read but is not usable; every problem found.
    #[error("{}", ProblemLines(problems))]
    Invalid {
        /// Where the configuration came from (a file path or "embedded default").
        origin: String,
        problems: Vec<ConfigProblem>,
    },
}

impl ConfigError {
    /// Every problem, one per entry (a read error is a single problem).
    pub fn problems(&self) -> Vec<ConfigProblem> {
        match self {
            ConfigError::Read { path, source } => {
                vec![ConfigProblem::new(
                    path.display().to_string(),
                    format!("cannot read file: {source}"),
                )]
            }
            ConfigError::Invalid { problems, .. } => problems.clone(),
        }
    }
}

struct ProblemLines<'a>(&'a [ConfigProblem]);

impl fmt::Display for ProblemLines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl AppConfig {
    /// Loads the configuration the engine runs with: the embedded default,
    /// the file at `path` layered over it (if given), then the process's
    /// `SWITCHBOARD__…` environment overrides; validated.
    pub fn load(path: Option<&Path>) -> Result<AppConfig, ConfigError> {
        let (env, mut env_problems) = load::process_env();
        match Self::load_with_env(path, env) {
            Ok(config) if env_problems.is_empty() => Ok(config),
            Ok(_) => Err(ConfigError::Invalid {
                origin: load::origin_of(path),
                problems: env_problems,
            }),
            Err(ConfigError::Invalid {
                origin,
                mut problems,
            }) => {
                env_problems.append(&mut problems);
                Err(ConfigError::Invalid {
                    origin,
                    problems: env_problems,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// [`Self::load`] with the environment given explicitly (for tests and
    /// tools): `env` yields `(name, value)` pairs; names without the
    /// `SWITCHBOARD__` prefix are ignored.
    pub fn load_with_env<I>(path: Option<&Path>, env: I) -> Result<AppConfig, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        match path {
            None => load::build(None, "embedded default", env),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_path_buf(),
                    source,
                })?;
                load::build(Some(&text), &p.display().to_string(), env)
            }
        }
    }

    /// Reads a configuration from TOML text, as if it were a config file
    /// (layered over the embedded default unless it sets
    /// `inherit_default = false`); no environment overrides; validated.
    pub fn from_toml_str(text: &str) -> Result<AppConfig, ConfigError> {
        load::build(Some(text), "<string>", std::iter::empty())
    }

    /// [`Self::from_toml_str`] followed by the given environment overrides.
    pub fn from_toml_str_with_env<I>(text: &str, env: I) -> Result<AppConfig, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        load::build(Some(text), "<string>", env)
    }

    /// The embedded default, with no file and no environment.
    pub fn embedded_default() -> Result<AppConfig, ConfigError> {
        load::build(None, "embedded default", std::iter::empty())
    }

    /// Every problem of this configuration, each with its dotted path; empty
    /// when it is usable. Includes [`RoutingSettings::validate`]'s findings.
    pub fn validate(&self) -> Vec<ConfigProblem> {
        validate::validate(self)
    }

    /// Whether one of the development tokens shipped in the default is configured.
    pub fn uses_dev_tokens(&self) -> bool {
        self.auth
            .tokens
            .iter()
            .any(|t| DEV_TOKENS.contains(&t.token.as_str()))
    }

    /// The role and entry of a presented token, or `None` for an unknown one.
    /// Compares every configured token in constant time for its length.
    pub fn role_for_token(&self, presented: &str) -> Option<(Role, &TokenConfig)> {
        let mut found = None;
        for t in &self.auth.tokens {
            if constant_time_eq(t.token.as_bytes(), presented.as_bytes()) && found.is_none() {
                found = Some((t.role, t));
            }
        }
        found
    }

    /// The settings of the pure routing core. Channels and queues keep the
    /// configuration's order (their index is their id); a queue's skills are
    /// sorted by name. Durations become milliseconds.
    pub fn routing_settings(&self) -> RoutingSettings {
        let actions =
            |list: &[SlaActionConfig]| list.iter().map(SlaAction::from).collect::<Vec<_>>();
        let channels = self
            .channels
            .iter()
            .map(|(name, ch)| ChannelSettings {
                name: name.to_string(),
                default_capacity: ch.default_capacity,
                offer_timeout_ms: ch.offer_timeout_secs.as_ms(),
                wrap_up_ms: ch.wrap_up_secs.as_ms(),
                sla: SlaSettings {
                    answer_target_ms: ch.sla.answer_target_secs.map(Seconds::as_ms),
                    first_response_target_ms: ch.sla.first_response_target_secs.map(Seconds::as_ms),
                    warning_fraction: ch.sla.warning_fraction,
                    on_warning: actions(&ch.sla.on_warning),
                    on_breach: actions(&ch.sla.on_breach),
                },
            })
            .collect();
        let queues = self
            .queues
            .iter()
            .map(|(name, q)| QueueSettings {
                name: name.to_string(),
                skills: q
                    .skills
                    .iter()
                    .map(|(skill, level)| (skill.clone(), u8::try_from(*level).unwrap_or(0)))
                    .collect(),
                priority: q.priority,
                policy: q.policy,
                channels: q.channels.clone(),
                aging_ms_per_point: q.aging_secs_per_point.map(Seconds::as_ms),
                widening: q
                    .widening
                    .iter()
                    .map(|w| WideningStep {
                        after_ms: w.after_secs.as_ms(),
                        lower_levels_by: w.lower_levels_by,
                        drop_skills: w.drop_skills.clone(),
                    })
                    .collect(),
                overflow_queue: q.overflow_queue.clone(),
                sla: SlaOverride {
                    answer_target_ms: q.sla.answer_target_secs.map(Seconds::as_ms),
                    first_response_target_ms: q.sla.first_response_target_secs.map(Seconds::as_ms),
                    warning_fraction: q.sla.warning_fraction,
                    on_warning: q.sla.on_warning.as_deref().map(actions),
                    on_breach: q.sla.on_breach.as_deref().map(actions),
                },
            })
            .collect();
        RoutingSettings {
            channels,
            queues,
            default_queue: self.routing.default_queue.clone(),
            decline_cooldown_ms: self.routing.decline_cooldown_secs.as_ms(),
            preferred_agent_window_ms: self.routing.preferred_agent_window_secs.as_ms(),
            reconnect_grace_ms: self.routing.reconnect_grace_secs.as_ms(),
            seed: self.routing.seed,
        }
    }

    /// A one-line summary for logs and `check-config`.
    pub fn summary(&self) -> String {
        let channels: Vec<&str> = self.channels.names().collect();
        let queues: Vec<&str> = self.queues.names().collect();
        format!(
            "listen {}, {} channels ({}), {} queues ({}), {} tokens, durability {}",
            self.server.listen,
            channels.len(),
            channels.join(", "),
            queues.len(),
            queues.join(", "),
            self.auth.tokens.len(),
            match self.snapshot.durability {
                Durability::Journal => "journal",
                Durability::Snapshot => "snapshot",
            }
        )
    }
}

/// Equality whose time depends only on the lengths, not on where bytes differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
