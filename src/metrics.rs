//! Metrics: the one place every Prometheus metric of the engine is named,
//! described, bucketed and zero-initialised, plus small typed helpers so that
//! callers never spell a metric name or a label key themselves.
//!
//! # What it is for
//! - Every metric name is a `pub const` below, listed once more in
//!   [`CATALOGUE`] with its kind, unit, labels and help text.
//! - [`install`] builds the `metrics-exporter-prometheus` recorder (no HTTP
//!   listener of its own: the actix-web server renders
//!   [`PrometheusHandle::render`] at `GET /metrics`) with explicit histogram
//!   buckets per metric, and registers every series for every configured
//!   channel × queue so boards never show "No data". Every configured SLA
//!   target lies exactly on a bucket edge of
//!   [`CONVERSATION_WAIT_SECONDS`], so service level can also be read from the
//!   histogram.
//! - [`observe_effect`] turns each routing-core [`Effect`] into KPI updates.
//!   The other helpers ([`ws_message`], [`error`], [`decision_latency`] …)
//!   cover the shell. The series updated on every conversation and frame go
//!   through [`Meters`], which looks their handles up once (`meters.rs`).
//! - [`upkeep`] must run periodically (the server runs it every
//!   `metrics.upkeep_interval_secs`): the recorder has no background task of
//!   its own.
//! - [`collect_process`] refreshes the standard `process_*` family (resident
//!   memory, CPU seconds, open and max file descriptors, threads, start
//!   time) from `/proc`, through the `metrics-process` crate; `GET /metrics`
//!   calls it before rendering. Those are the one family named outside the
//!   catalogue: Prometheus' own names, so that any process board reads them.
//!
//! # What it must never do
//! - Use a customer, agent or conversation id, or any free text, as a label
//!   value. Label values are `&'static str` from fixed sets or channel and
//!   queue names taken from the configuration (looked up by index, so a name
//!   a client made up can never become a label).
//! - Read a clock: durations and timestamps are passed in by the caller.
//! - Start a listener, a thread or a task of its own.

use crate::routing::{
    AgentStatus, ChannelId, Effect, Millis, OfferEnd, Outcome, QueueId, QueueStats,
    RoutingSettings, SlaKind, SlaLevel,
};
use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, SharedString,
    Unit,
};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusRecorder};
use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

pub use meters::{CellMeters, Meters};
pub use metrics_exporter_prometheus::PrometheusHandle;

mod meters;

// ---------------------------------------------------------------------------
// Names. Units are in the name (Prometheus base units); counters end in `_total`.
// ---------------------------------------------------------------------------

/// Conversations that entered routing (`conversation.open`). Labels: `channel`, `queue`.
pub const CONVERSATIONS_OPENED: &str = "switchboard_conversations_opened_total";
/// Conversations accepted by an agent (each acceptance, including after a
/// transfer or channel switch). Labels: `channel`, `queue`.
pub const CONVERSATIONS_ASSIGNED: &str = "switchboard_conversations_assigned_total";
/// Conversations that ended before an agent accepted them. Labels: `channel`, `queue`.
pub const CONVERSATIONS_ABANDONED: &str = "switchboard_conversations_abandoned_total";
/// Conversations handled and completed. Labels: `channel`, `queue`.
pub const CONVERSATIONS_COMPLETED: &str = "switchboard_conversations_completed_total";
/// Conversations transferred by their agent, by the queue they left. Labels: `channel`, `queue`.
pub const CONVERSATIONS_TRANSFERRED: &str = "switchboard_conversations_transferred_total";
/// Conversations put back in line (offer rejected or expired, agent unavailable or lost). Labels: `channel`, `queue`, `reason`.
pub const CONVERSATIONS_REQUEUED: &str = "switchboard_conversations_requeued_total";
/// Answered conversations that had an answer target in force. Labels: `channel`, `queue`.
pub const CONVERSATIONS_ANSWERED: &str = "switchboard_conversations_answered_total";
/// Answered conversations whose wait was at most the answer target. Labels: `channel`, `queue`.
pub const CONVERSATIONS_ANSWERED_WITHIN_TARGET: &str =
    "switchboard_conversations_answered_within_target_total";
/// Conversations that count in the short-abandon-aware service level:
/// answered ones, plus abandoned ones that waited at least the short-abandon
/// threshold (both with an answer target in force). Labels: `channel`, `queue`.
pub const CONVERSATIONS_SLA_ELIGIBLE: &str = "switchboard_conversations_sla_eligible_total";
/// Wait from entering routing on a channel to acceptance (ASA, service level). Labels: `channel`, `queue`.
pub const CONVERSATION_WAIT_SECONDS: &str = "switchboard_conversation_wait_seconds";
/// Time from acceptance to completion (AHT). Labels: `channel`, `queue`.
pub const CONVERSATION_HANDLE_SECONDS: &str = "switchboard_conversation_handle_seconds";
/// SLA warnings and breaches. Labels: `channel`, `queue`, `kind`, `level`.
pub const SLA_EVENTS: &str = "switchboard_sla_events_total";
/// Conversations waiting in line now. Labels: `channel`, `queue`.
pub const QUEUE_DEPTH: &str = "switchboard_queue_depth";
/// Wait of the longest-waiting conversation in line now. Labels: `channel`, `queue`.
pub const QUEUE_LONGEST_WAIT_SECONDS: &str = "switchboard_queue_longest_wait_seconds";
/// The configured SLA target in force. Labels: `channel`, `queue`, `kind`.
pub const SERVICE_LEVEL_TARGET_SECONDS: &str = "switchboard_service_level_target_seconds";
/// Offers made and how each one ended. Labels: `channel`, `queue`, `outcome`.
pub const OFFERS: &str = "switchboard_offers_total";
/// Widening steps, overflows and channel switches. Labels: `channel`, `kind`.
pub const ROUTING_EVENTS: &str = "switchboard_routing_events_total";

/// Agents known to the engine by presence. Labels: `status`.
pub const AGENTS: &str = "switchboard_agents";
/// Agent slots per channel, busy (offered, assigned or in wrap-up) or free. Labels: `channel`, `state`.
pub const AGENT_SLOTS: &str = "switchboard_agent_slots";
/// Agent-seconds spent in each activity state (`busy`, `idle`, `away`). Labels: `status`.
pub const AGENT_STATE_SECONDS: &str = "switchboard_agent_state_seconds_total";
/// Presence changes the engine made itself (offer timeout → away …). Labels: `status`, `reason`.
pub const AGENT_STATUS_CHANGES: &str = "switchboard_agent_status_changes_total";

/// Time the routing core took to handle one command or timeout. Labels: `kind`.
pub const ROUTING_DECISION_SECONDS: &str = "switchboard_routing_decision_seconds";
/// Time from a conversation entering routing to its first offer. Labels: `channel`, `queue`.
pub const OPEN_TO_OFFER_SECONDS: &str = "switchboard_open_to_offer_seconds";
/// WebSocket frames received (`in`) and sent (`out`). Labels: `direction`, `type`.
pub const WS_MESSAGES: &str = "switchboard_ws_messages_total";
/// Error replies and internal errors. Labels: `code`.
pub const ERRORS: &str = "switchboard_errors_total";
/// Open WebSocket connections. Labels: `role`.
pub const WS_CONNECTIONS: &str = "switchboard_ws_connections";
/// Actors rebuilt by supervision after they died. Labels: `actor`.
pub const ACTOR_RESTARTS: &str = "switchboard_actor_restarts_total";
/// Time to write one snapshot (serialise, write, fsync, rename).
pub const SNAPSHOT_DURATION_SECONDS: &str = "switchboard_snapshot_duration_seconds";
/// Size of the last snapshot written.
pub const SNAPSHOT_BYTES: &str = "switchboard_snapshot_bytes";
/// Time of one journal group fsync.
pub const JOURNAL_FSYNC_SECONDS: &str = "switchboard_journal_fsync_seconds";
/// Bytes appended to the journal.
pub const JOURNAL_BYTES: &str = "switchboard_journal_bytes_total";
/// Frames waiting in client outboxes until the journal record they report is durable.
pub const FRAMES_HELD: &str = "switchboard_frames_held";
/// Always 1; the `version` label carries the crate version.
pub const BUILD_INFO: &str = "switchboard_build_info";

/// The only label keys any metric may carry (plus Prometheus' own `le`).
pub const ALLOWED_LABELS: &[&str] = &[
    "channel",
    "queue",
    "status",
    "code",
    "type",
    "role",
    "reason",
    "level",
    "kind",
    "outcome",
    "direction",
    "state",
    "actor",
    "version",
];

/// What kind of Prometheus metric a [`MetricDef`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric: its name, kind, unit, label keys and help text.
#[derive(Debug, Clone, Copy)]
pub struct MetricDef {
    pub name: &'static str,
    pub kind: MetricKind,
    pub unit: Unit,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

const fn def(
    name: &'static str,
    kind: MetricKind,
    unit: Unit,
    labels: &'static [&'static str],
    help: &'static str,
) -> MetricDef {
    MetricDef {
        name,
        kind,
        unit,
        labels,
        help,
    }
}

const CQ: &[&str] = &["channel", "queue"];

/// Every metric the engine exports, described once by [`describe_all`].
pub const CATALOGUE: &[MetricDef] = {
    use MetricKind::{Counter as C, Gauge as G, Histogram as H};
    use Unit::{Bytes, Count, Seconds};
    &[
        def(CONVERSATIONS_OPENED, C, Count, CQ, "Conversations that entered routing."),
        def(CONVERSATIONS_ASSIGNED, C, Count, CQ, "Conversations accepted by an agent (every acceptance, also after a transfer or channel switch)."),
        def(CONVERSATIONS_ABANDONED, C, Count, CQ, "Conversations that ended before an agent accepted them."),
        def(CONVERSATIONS_COMPLETED, C, Count, CQ, "Conversations handled and completed."),
        def(CONVERSATIONS_TRANSFERRED, C, Count, CQ, "Conversations transferred by their agent, by the queue they left."),
        def(CONVERSATIONS_REQUEUED, C, Count, &["channel", "queue", "reason"], "Conversations put back in line, by reason."),
        def(CONVERSATIONS_ANSWERED, C, Count, CQ, "Answered conversations that had an answer target in force (service-level denominator)."),
        def(CONVERSATIONS_ANSWERED_WITHIN_TARGET, C, Count, CQ, "Answered conversations whose wait was at most the answer target (service-level numerator)."),
        def(CONVERSATIONS_SLA_ELIGIBLE, C, Count, CQ, "Answered conversations plus those abandoned after the short-abandon threshold, with an answer target in force."),
        def(CONVERSATION_WAIT_SECONDS, H, Seconds, CQ, "Wait from entering routing on a channel to acceptance."),
        def(CONVERSATION_HANDLE_SECONDS, H, Seconds, CQ, "Time from acceptance to completion."),
        def(SLA_EVENTS, C, Count, &["channel", "queue", "kind", "level"], "SLA warnings and breaches."),
        def(QUEUE_DEPTH, G, Count, CQ, "Conversations waiting in line now."),
        def(QUEUE_LONGEST_WAIT_SECONDS, G, Seconds, CQ, "Wait of the longest-waiting conversation in line now."),
        def(SERVICE_LEVEL_TARGET_SECONDS, G, Seconds, &["channel", "queue", "kind"], "Configured SLA target in force."),
        def(OFFERS, C, Count, &["channel", "queue", "outcome"], "Offers made, and how each offer ended."),
        def(ROUTING_EVENTS, C, Count, &["channel", "kind"], "Widening steps, overflows and channel switches."),
        def(AGENTS, G, Count, &["status"], "Agents known to the engine, by presence."),
        def(AGENT_SLOTS, G, Count, &["channel", "state"], "Agent slots per channel, busy (offered, assigned, wrap-up) or free."),
        def(AGENT_STATE_SECONDS, C, Seconds, &["status"], "Agent-seconds spent busy, idle (available with nothing) or away."),
        def(AGENT_STATUS_CHANGES, C, Count, &["status", "reason"], "Presence changes made by the engine itself."),
        def(ROUTING_DECISION_SECONDS, H, Seconds, &["kind"], "Time the routing core took to handle one command or timeout."),
        def(OPEN_TO_OFFER_SECONDS, H, Seconds, CQ, "Time from entering routing to the first offer."),
        def(WS_MESSAGES, C, Count, &["direction", "type"], "WebSocket frames received and sent, by frame type."),
        def(ERRORS, C, Count, &["code"], "Errors, by stable error code."),
        def(WS_CONNECTIONS, G, Count, &["role"], "Open WebSocket connections, by role."),
        def(ACTOR_RESTARTS, C, Count, &["actor"], "Actors rebuilt by supervision."),
        def(SNAPSHOT_DURATION_SECONDS, H, Seconds, &[], "Time to write one snapshot."),
        def(SNAPSHOT_BYTES, G, Bytes, &[], "Size of the last snapshot written."),
        def(JOURNAL_FSYNC_SECONDS, H, Seconds, &[], "Time of one journal group fsync."),
        def(JOURNAL_BYTES, C, Bytes, &[], "Bytes appended to the journal."),
        def(FRAMES_HELD, G, Count, &[], "Frames waiting in client outboxes until the change they report is durable (sampled)."),
        def(BUILD_INFO, G, Count, &["version"], "Always 1; the version label carries the build."),
    ]
};

// ---------------------------------------------------------------------------
// Bounded label value sets.
// ---------------------------------------------------------------------------

/// `outcome` values of [`OFFERS`].
pub const OFFER_OUTCOMES: [&str; 6] = [
    "made",
    "accepted",
    "rejected",
    "expired",
    "withdrawn",
    "agent_unavailable",
];

/// One `outcome` of [`OFFERS`]; `as usize` is its place in [`OFFER_OUTCOMES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferOutcome {
    Made,
    Accepted,
    Rejected,
    Expired,
    Withdrawn,
    AgentUnavailable,
}

impl OfferOutcome {
    pub fn as_str(self) -> &'static str {
        OFFER_OUTCOMES[self as usize]
    }

    /// How an offer that did not lead to an assignment ended.
    pub fn ended(reason: OfferEnd) -> Self {
        match reason {
            OfferEnd::Rejected => OfferOutcome::Rejected,
            OfferEnd::Expired => OfferOutcome::Expired,
            OfferEnd::Withdrawn => OfferOutcome::Withdrawn,
            OfferEnd::AgentUnavailable => OfferOutcome::AgentUnavailable,
        }
    }
}
/// `reason` values of [`CONVERSATIONS_REQUEUED`] the core emits today
/// (zero-initialised; any other `&'static str` reason is recorded too).
pub const REQUEUE_REASONS: [&str; 4] = ["rejected", "expired", "agent_unavailable", "agent_lost"];
/// `(status, reason)` pairs of [`AGENT_STATUS_CHANGES`] the core emits today.
pub const AGENT_STATUS_CHANGE_REASONS: [(&str, &str); 1] = [("away", "offer_timeout")];
/// `kind` values of [`ROUTING_EVENTS`].
pub const ROUTING_EVENT_KINDS: [&str; 3] = ["widened", "overflowed", "channel_switched"];
/// `status` values of [`AGENT_STATE_SECONDS`].
pub const AGENT_ACTIVITY_STATES: [&str; 3] = ["busy", "idle", "away"];
/// `role` values of [`WS_CONNECTIONS`].
pub const ROLES: [&str; 3] = ["connector", "agent", "supervisor"];
/// `kind` values of [`ROUTING_DECISION_SECONDS`]: every `Command::kind()` and `timeout`.
pub const DECISION_KINDS: [&str; 13] = [
    "agent_login",
    "agent_status",
    "agent_disconnected",
    "open",
    "accept",
    "reject",
    "complete",
    "agent_message",
    "abandon",
    "close",
    "transfer",
    "switch_channel",
    "timeout",
];
/// Frame types a client sends (wire contract v1), plus `invalid` for frames that do not parse.
pub const WS_IN_TYPES: [&str; 15] = [
    "conversation.open",
    "conversation.message",
    "conversation.switch_channel",
    "conversation.abandon",
    "conversation.close",
    "agent.login",
    "agent.status",
    "agent.heartbeat",
    "offer.accept",
    "offer.reject",
    "conversation.complete",
    "conversation.transfer",
    "subscribe",
    "stats",
    "invalid",
];
/// Frame types the engine sends (wire contract v1).
pub const WS_OUT_TYPES: [&str; 12] = [
    "ack",
    "error",
    "offer",
    "offer.ended",
    "agent.status",
    "conversation.assigned",
    "conversation.sla",
    "conversation.message",
    "conversation.ended",
    "conversation.requeued",
    "event",
    "stats",
];
/// Error codes zero-initialised at start: every `CommandError::code()` and the
/// protocol's own. Others passed to [`error`] are recorded too.
pub const ERROR_CODES: [&str; 25] = [
    "malformed_json",
    "bad_frame",
    "unknown_type",
    "missing_field",
    "unknown_field",
    "invalid_field",
    "frame_too_large",
    "binary_frame",
    "wrong_role",
    "forbidden",
    "not_logged_in",
    "unknown_conversation",
    "unknown_offer",
    "unknown_agent",
    "unknown_channel",
    "unknown_queue",
    "invalid_state",
    "bad_skill_level",
    "too_many_skills",
    "wrong_channel",
    "unavailable",
    "unauthorized",
    "not_found",
    "slow_consumer",
    "internal",
];

/// Direction of a WebSocket frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// Which kind of actor supervision rebuilt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorKind {
    Conversation,
    Agent,
    Router,
}

impl ActorKind {
    pub const ALL: [ActorKind; 3] = [ActorKind::Conversation, ActorKind::Agent, ActorKind::Router];
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::Conversation => "conversation",
            ActorKind::Agent => "agent",
            ActorKind::Router => "router",
        }
    }
}

fn sla_kind_str(kind: SlaKind) -> &'static str {
    match kind {
        SlaKind::Answer => "answer",
        SlaKind::FirstResponse => "first_response",
    }
}

fn sla_level_str(level: SlaLevel) -> &'static str {
    match level {
        SlaLevel::Warning => "warning",
        SlaLevel::Breach => "breach",
    }
}

// ---------------------------------------------------------------------------
// Service-level policy.
// ---------------------------------------------------------------------------

/// How abandoned conversations count in the service level (config
/// `[service_level]`).
///
/// A customer who leaves within `short_abandon_ms` is a "short abandon": they
/// did not give the center a fair chance, so they count neither for nor
/// against the service level. With `count_abandoned`, longer abandons count
/// against it ([`CONVERSATIONS_SLA_ELIGIBLE`]); without it, no abandon does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceLevelPolicy {
    pub short_abandon_ms: Millis,
    pub count_abandoned: bool,
}

impl Default for ServiceLevelPolicy {
    fn default() -> Self {
        ServiceLevelPolicy {
            short_abandon_ms: 5_000,
            count_abandoned: true,
        }
    }
}

impl ServiceLevelPolicy {
    /// Whether an abandon after `waited_ms` counts against the service level.
    pub fn abandon_counts(&self, waited_ms: Millis) -> bool {
        self.count_abandoned && waited_ms >= self.short_abandon_ms
    }
}

// ---------------------------------------------------------------------------
// Errors and installation.
// ---------------------------------------------------------------------------

/// Why the metrics recorder could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("invalid histogram buckets for `{metric}`: {source}")]
    Buckets {
        metric: &'static str,
        #[source]
        source: BuildError,
    },
    #[error("another metrics recorder is already installed in this process")]
    ForeignRecorder,
}

/// Base ladder of the wait histogram, in milliseconds; SLA targets are merged in.
const WAIT_LADDER_MS: &[Millis] = &[
    1_000, 2_000, 5_000, 10_000, 15_000, 20_000, 30_000, 45_000, 60_000, 90_000, 120_000, 180_000,
    300_000, 600_000, 900_000, 1_800_000, 3_600_000, 7_200_000, 14_400_000, 28_800_000, 86_400_000,
];
const HANDLE_BUCKETS: &[f64] = &[
    10.0, 30.0, 60.0, 120.0, 180.0, 300.0, 450.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0,
    7200.0, 14400.0, 28800.0, 86400.0,
];
const DECISION_BUCKETS: &[f64] = &[
    0.000_001,
    0.000_002_5,
    0.000_005,
    0.000_01,
    0.000_025,
    0.000_05,
    0.000_1,
    0.000_25,
    0.000_5,
    0.001,
    0.002_5,
    0.005,
    0.01,
    0.025,
    0.1,
];
const OPEN_TO_OFFER_BUCKETS: &[f64] = &[
    0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0, 600.0, 1800.0, 3600.0,
];
const SNAPSHOT_BUCKETS: &[f64] = &[
    0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
const FSYNC_BUCKETS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Milliseconds as seconds. The one conversion used for both bucket edges and
/// observations, so a wait exactly at a target lands in the target's bucket.
pub fn ms_to_secs(ms: Millis) -> f64 {
    ms as f64 / 1000.0
}

/// Every SLA target (answer and first response) in force anywhere in `settings`, in ms.
fn configured_targets_ms(settings: &RoutingSettings) -> BTreeSet<Millis> {
    let mut targets = BTreeSet::new();
    for c in 0..settings.channels.len() {
        for q in 0..settings.queues.len() {
            let sla = settings.sla_for(c, q);
            targets.extend(sla.answer_target_ms);
            targets.extend(sla.first_response_target_ms);
        }
    }
    targets
}

/// Bucket edges (seconds) of [`CONVERSATION_WAIT_SECONDS`]: the base ladder
/// with every configured SLA target added, ascending and without duplicates.
pub fn wait_buckets(settings: &RoutingSettings) -> Vec<f64> {
    let mut edges: BTreeSet<Millis> = WAIT_LADDER_MS.iter().copied().collect();
    edges.extend(configured_targets_ms(settings));
    edges.into_iter().map(ms_to_secs).collect()
}

/// The bucket edges of every histogram in the catalogue.
pub fn histogram_buckets(settings: &RoutingSettings) -> Vec<(&'static str, Vec<f64>)> {
    vec![
        (CONVERSATION_WAIT_SECONDS, wait_buckets(settings)),
        (CONVERSATION_HANDLE_SECONDS, HANDLE_BUCKETS.to_vec()),
        (ROUTING_DECISION_SECONDS, DECISION_BUCKETS.to_vec()),
        (OPEN_TO_OFFER_SECONDS, OPEN_TO_OFFER_BUCKETS.to_vec()),
        (SNAPSHOT_DURATION_SECONDS, SNAPSHOT_BUCKETS.to_vec()),
        (JOURNAL_FSYNC_SECONDS, FSYNC_BUCKETS.to_vec()),
    ]
}

/// A recorder configured for `settings`, with every metric described and every
/// series registered, not installed anywhere. Tests use it with
/// `metrics::with_local_recorder`; [`install`] installs one globally.
pub fn build_recorder(settings: &RoutingSettings) -> Result<PrometheusRecorder, MetricsError> {
    let mut builder = PrometheusBuilder::new();
    for (metric, edges) in histogram_buckets(settings) {
        builder = builder
            .set_buckets_for_metric(Matcher::Full(metric.to_string()), &edges)
            .map_err(|source| MetricsError::Buckets { metric, source })?;
    }
    let recorder = builder.build_recorder();
    metrics::with_local_recorder(&recorder, || {
        describe_all();
        register_series(settings);
    });
    Ok(recorder)
}

struct Installed {
    handle: PrometheusHandle,
    wait_buckets: Vec<f64>,
}

static INSTALLED: Mutex<Option<Installed>> = Mutex::new(None);

/// Builds the recorder for `settings` and installs it as the process's global
/// recorder; returns the handle that renders `GET /metrics` and runs upkeep.
///
/// Installing again (tests start many servers in one process) returns the
/// handle of the first installation and registers the series of the new
/// settings in it; histogram buckets stay those of the first installation (a
/// warning says so if they differ). Fails with
/// [`MetricsError::ForeignRecorder`] when some other recorder was installed.
pub fn install(settings: &RoutingSettings) -> Result<PrometheusHandle, MetricsError> {
    let mut installed = INSTALLED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(done) = installed.as_ref() {
        if done.wait_buckets != wait_buckets(settings) {
            tracing::warn!(
                "metrics recorder already installed; the wait histogram keeps the buckets of the \
                 first configuration"
            );
        }
        register_series(settings);
        return Ok(done.handle.clone());
    }
    let recorder = build_recorder(settings)?;
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|_| MetricsError::ForeignRecorder)?;
    *installed = Some(Installed {
        handle: handle.clone(),
        wait_buckets: wait_buckets(settings),
    });
    Ok(handle)
}

/// Refreshes the `process_*` metrics (see the module docs). Reads `/proc`,
/// counting the open descriptors among them (one per WebSocket): call it
/// off the session threads.
pub fn collect_process() {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR
        .get_or_init(|| {
            let collector = metrics_process::Collector::default();
            collector.describe();
            collector
        })
        .collect();
}

/// Periodic maintenance of the recorder (drains histogram samples). Call it
/// every `metrics.upkeep_interval_secs` from the server's runtime.
pub fn upkeep(handle: &PrometheusHandle) {
    handle.run_upkeep();
}

/// Describes every metric of the [`CATALOGUE`] to the current recorder, once.
pub fn describe_all() {
    for m in CATALOGUE {
        match m.kind {
            MetricKind::Counter => describe_counter!(m.name, m.unit, m.help),
            MetricKind::Gauge => describe_gauge!(m.name, m.unit, m.help),
            MetricKind::Histogram => describe_histogram!(m.name, m.unit, m.help),
        }
    }
}

/// Registers (zero-initialises) every series the configuration bounds: each
/// KPI for each channel × queue, and each fixed label set of the engine
/// metrics. Idempotent.
pub fn register_series(settings: &RoutingSettings) {
    for (ci, channel) in settings.channels.iter().enumerate() {
        let ch = intern(&channel.name);
        for (qi, queue) in settings.queues.iter().enumerate() {
            let q = intern(&queue.name);
            for name in [
                CONVERSATIONS_OPENED,
                CONVERSATIONS_ASSIGNED,
                CONVERSATIONS_ABANDONED,
                CONVERSATIONS_COMPLETED,
                CONVERSATIONS_TRANSFERRED,
                CONVERSATIONS_ANSWERED,
                CONVERSATIONS_ANSWERED_WITHIN_TARGET,
                CONVERSATIONS_SLA_ELIGIBLE,
            ] {
                counter!(name, "channel" => ch.clone(), "queue" => q.clone()).absolute(0);
            }
            for name in [
                CONVERSATION_WAIT_SECONDS,
                CONVERSATION_HANDLE_SECONDS,
                OPEN_TO_OFFER_SECONDS,
            ] {
                let _ = histogram!(name, "channel" => ch.clone(), "queue" => q.clone());
            }
            for name in [QUEUE_DEPTH, QUEUE_LONGEST_WAIT_SECONDS] {
                let _ = gauge!(name, "channel" => ch.clone(), "queue" => q.clone());
            }
            for outcome in OFFER_OUTCOMES {
                counter!(OFFERS, "channel" => ch.clone(), "queue" => q.clone(), "outcome" => outcome)
                    .absolute(0);
            }
            for reason in REQUEUE_REASONS {
                counter!(CONVERSATIONS_REQUEUED, "channel" => ch.clone(), "queue" => q.clone(), "reason" => reason)
                    .absolute(0);
            }
            let sla = settings.sla_for(ci, qi);
            for (kind, target) in [
                (SlaKind::Answer, sla.answer_target_ms),
                (SlaKind::FirstResponse, sla.first_response_target_ms),
            ] {
                let Some(target) = target else { continue };
                let kind = sla_kind_str(kind);
                gauge!(SERVICE_LEVEL_TARGET_SECONDS, "channel" => ch.clone(), "queue" => q.clone(), "kind" => kind)
                    .set(ms_to_secs(target));
                for level in ["warning", "breach"] {
                    counter!(SLA_EVENTS, "channel" => ch.clone(), "queue" => q.clone(), "kind" => kind, "level" => level)
                        .absolute(0);
                }
            }
        }
        for state in ["busy", "free"] {
            let _ = gauge!(AGENT_SLOTS, "channel" => ch.clone(), "state" => state);
        }
        for kind in ROUTING_EVENT_KINDS {
            counter!(ROUTING_EVENTS, "channel" => ch.clone(), "kind" => kind).absolute(0);
        }
    }
    for status in AgentStatus::ALL {
        let _ = gauge!(AGENTS, "status" => status.as_str());
    }
    for (status, reason) in AGENT_STATUS_CHANGE_REASONS {
        counter!(AGENT_STATUS_CHANGES, "status" => status, "reason" => reason).absolute(0);
    }
    for status in AGENT_ACTIVITY_STATES {
        counter!(AGENT_STATE_SECONDS, "status" => status).absolute(0);
    }
    for kind in DECISION_KINDS {
        let _ = histogram!(ROUTING_DECISION_SECONDS, "kind" => kind);
    }
    for ty in WS_IN_TYPES {
        counter!(WS_MESSAGES, "direction" => "in", "type" => ty).absolute(0);
    }
    for ty in WS_OUT_TYPES {
        counter!(WS_MESSAGES, "direction" => "out", "type" => ty).absolute(0);
    }
    for code in ERROR_CODES {
        counter!(ERRORS, "code" => code).absolute(0);
    }
    for role in ROLES {
        let _ = gauge!(WS_CONNECTIONS, "role" => role);
    }
    for actor in ActorKind::ALL {
        counter!(ACTOR_RESTARTS, "actor" => actor.as_str()).absolute(0);
    }
    let _ = histogram!(SNAPSHOT_DURATION_SECONDS);
    let _ = gauge!(SNAPSHOT_BYTES);
    let _ = histogram!(JOURNAL_FSYNC_SECONDS);
    counter!(JOURNAL_BYTES).absolute(0);
    gauge!(FRAMES_HELD).set(0.0);
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}

// ---------------------------------------------------------------------------
// Label interning: channel and queue names come from the configuration only.
// ---------------------------------------------------------------------------

fn interned() -> &'static RwLock<HashSet<Arc<str>>> {
    static NAMES: OnceLock<RwLock<HashSet<Arc<str>>>> = OnceLock::new();
    NAMES.get_or_init(Default::default)
}

/// A shared label value for a configured name; cloning it does not allocate.
fn intern(name: &str) -> SharedString {
    if let Some(found) = interned()
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(name)
    {
        return SharedString::from(Arc::clone(found));
    }
    let mut names = interned().write().unwrap_or_else(PoisonError::into_inner);
    if let Some(found) = names.get(name) {
        return SharedString::from(Arc::clone(found));
    }
    let shared: Arc<str> = Arc::from(name);
    names.insert(Arc::clone(&shared));
    SharedString::from(shared)
}

/// The `channel` and `queue` label values of configured indices; `None` (and
/// nothing recorded) for an index outside the configuration.
fn channel_queue(
    settings: &RoutingSettings,
    channel: ChannelId,
    queue: QueueId,
) -> Option<(SharedString, SharedString)> {
    let ch = settings.channels.get(usize::from(channel.0))?;
    let q = settings.queues.get(usize::from(queue.0))?;
    Some((intern(&ch.name), intern(&q.name)))
}

fn channel_label(settings: &RoutingSettings, channel: ChannelId) -> Option<SharedString> {
    settings
        .channels
        .get(usize::from(channel.0))
        .map(|c| intern(&c.name))
}

fn out_of_range(what: &str) {
    tracing::debug!(
        what,
        "metric not recorded: channel or queue index outside the configuration"
    );
}

// ---------------------------------------------------------------------------
// Contact-center KPIs.
// ---------------------------------------------------------------------------

/// Counts a conversation that the core accepted into routing. `queue` `None`
/// means the default queue. Names that are not configured are not recorded
/// (they could be anything a client typed); returns whether it was counted.
pub fn conversation_opened(
    meters: &Meters,
    settings: &RoutingSettings,
    channel: &str,
    queue: Option<&str>,
) -> bool {
    let queue = queue.unwrap_or(&settings.default_queue);
    let cell = match (settings.channel_index(channel), settings.queue_index(queue)) {
        (Some(c), Some(q)) => meters.cell(ChannelId(c as u8), QueueId(q as u16)),
        _ => None,
    };
    cell.inspect(|m| m.opened.increment(1)).is_some()
}

/// Turns one routing-core effect into its KPI updates; the hot series go
/// through `meters`' handles.
pub fn observe_effect(
    meters: &Meters,
    effect: &Effect,
    settings: &RoutingSettings,
    service_level: &ServiceLevelPolicy,
) {
    let cell = |channel: &ChannelId, queue: &QueueId, what: &str| {
        let found = meters.cell(*channel, *queue);
        if found.is_none() {
            out_of_range(what);
        }
        found
    };
    match effect {
        Effect::OfferMade {
            channel,
            queue,
            waited_ms,
            first_offer,
            ..
        } => {
            let Some(m) = cell(channel, queue, "offer_made") else {
                return;
            };
            if *first_offer {
                m.open_to_offer.record(ms_to_secs(*waited_ms));
            }
            m.offers(OfferOutcome::Made).increment(1);
        }
        Effect::OfferEnded {
            channel,
            queue,
            reason,
            ..
        } => {
            if let Some(m) = cell(channel, queue, "offer_ended") {
                m.offers(OfferOutcome::ended(*reason)).increment(1);
            }
        }
        Effect::Assigned {
            channel,
            queue,
            waited_ms,
            answer_target_ms,
            ..
        } => {
            let Some(m) = cell(channel, queue, "assigned") else {
                return;
            };
            m.offers(OfferOutcome::Accepted).increment(1);
            m.assigned.increment(1);
            m.wait.record(ms_to_secs(*waited_ms));
            if let Some(target) = answer_target_ms {
                m.answered.increment(1);
                m.sla_eligible.increment(1);
                if waited_ms <= target {
                    m.answered_within_target.increment(1);
                }
            }
        }
        Effect::AgentStatusChanged { status, reason, .. } => {
            counter!(AGENT_STATUS_CHANGES, "status" => status.as_str(), "reason" => *reason)
                .increment(1);
        }
        Effect::Requeued {
            channel,
            queue,
            reason,
            ..
        } => {
            let Some((ch, q)) = channel_queue(settings, *channel, *queue) else {
                return out_of_range("requeued");
            };
            counter!(CONVERSATIONS_REQUEUED, "channel" => ch, "queue" => q, "reason" => *reason)
                .increment(1);
        }
        Effect::Sla {
            channel,
            queue,
            kind,
            level,
            ..
        } => {
            let Some((ch, q)) = channel_queue(settings, *channel, *queue) else {
                return out_of_range("sla");
            };
            counter!(SLA_EVENTS, "channel" => ch, "queue" => q, "kind" => sla_kind_str(*kind),
                "level" => sla_level_str(*level))
            .increment(1);
        }
        Effect::Widened { channel, .. } => routing_event(settings, *channel, "widened"),
        Effect::Overflowed { channel, .. } => routing_event(settings, *channel, "overflowed"),
        Effect::ChannelSwitched { to, .. } => routing_event(settings, *to, "channel_switched"),
        Effect::Transferred {
            channel,
            from_queue,
            ..
        } => {
            if let Some(m) = cell(channel, from_queue, "transferred") {
                m.transferred.increment(1);
            }
        }
        Effect::Ended {
            channel,
            queue,
            outcome,
            waited_ms,
            handle_ms,
            ..
        } => {
            let Some(m) = cell(channel, queue, "ended") else {
                return;
            };
            match outcome {
                Outcome::Completed => {
                    m.completed.increment(1);
                    m.handle.record(ms_to_secs(*handle_ms));
                }
                Outcome::Abandoned => {
                    m.abandoned.increment(1);
                    let has_target = settings
                        .sla_for(usize::from(channel.0), usize::from(queue.0))
                        .answer_target_ms
                        .is_some();
                    if has_target && service_level.abandon_counts(*waited_ms) {
                        m.sla_eligible.increment(1);
                    }
                }
            }
        }
        Effect::WrapUpEnded { .. } => {}
    }
}

fn routing_event(settings: &RoutingSettings, channel: ChannelId, kind: &'static str) {
    match channel_label(settings, channel) {
        Some(ch) => counter!(ROUTING_EVENTS, "channel" => ch, "kind" => kind).increment(1),
        None => out_of_range(kind),
    }
}

/// Sets the queue depth and longest-wait gauges from one sample of
/// `Engine::queue_stats`. Every configured channel × queue absent from
/// `stats` is set to zero, so a queue that emptied never keeps its last value.
pub fn set_queue_gauges(stats: &[QueueStats], settings: &RoutingSettings) {
    for (ci, channel) in settings.channels.iter().enumerate() {
        for (qi, queue) in settings.queues.iter().enumerate() {
            let found = stats
                .iter()
                .find(|s| usize::from(s.channel.0) == ci && usize::from(s.queue.0) == qi);
            let (waiting, longest) = found.map_or((0, 0), |s| (s.waiting, s.longest_wait_ms));
            let (ch, q) = (intern(&channel.name), intern(&queue.name));
            gauge!(QUEUE_DEPTH, "channel" => ch.clone(), "queue" => q.clone()).set(waiting as f64);
            gauge!(QUEUE_LONGEST_WAIT_SECONDS, "channel" => ch, "queue" => q)
                .set(ms_to_secs(longest));
        }
    }
}

// ---------------------------------------------------------------------------
// Agents.
// ---------------------------------------------------------------------------

/// Sets how many agents are in `status` now.
pub fn set_agents(status: AgentStatus, count: usize) {
    gauge!(AGENTS, "status" => status.as_str()).set(count as f64);
}

/// Sets the busy and free slot counts of one channel.
pub fn set_agent_slots(settings: &RoutingSettings, channel: ChannelId, busy: usize, free: usize) {
    let Some(ch) = channel_label(settings, channel) else {
        return out_of_range("agent_slots");
    };
    gauge!(AGENT_SLOTS, "channel" => ch.clone(), "state" => "busy").set(busy as f64);
    gauge!(AGENT_SLOTS, "channel" => ch, "state" => "free").set(free as f64);
}

/// How many logged-in agents are in each activity state at one instant.
/// `busy`: handling, offered or wrapping up at least one conversation (whatever
/// its presence); `idle`: available with nothing; `away`: away with nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AgentActivity {
    pub busy: usize,
    pub idle: usize,
    pub away: usize,
}

impl AgentActivity {
    /// Counts one agent: `busy` when it has any conversation, offer or
    /// wrap-up. Offline agents (e.g. disconnected within their grace period)
    /// are not counted.
    pub fn add(&mut self, status: AgentStatus, busy: bool) {
        match (status, busy) {
            (AgentStatus::Offline, _) => {}
            (_, true) => self.busy += 1,
            (AgentStatus::Available, false) => self.idle += 1,
            (AgentStatus::Away, false) => self.away += 1,
        }
    }
}

/// Integrates agent activity over time into [`AGENT_STATE_SECONDS`].
///
/// The shell calls [`AgentStateClock::tick`] periodically with the counts it
/// sees; the time since the previous tick is charged to those counts
/// (sample-and-hold). Whole agent-seconds go to the counter and the remainder
/// is carried, so nothing is lost to rounding.
#[derive(Debug, Clone, Default)]
pub struct AgentStateClock {
    last: Option<Millis>,
    carry_ms: [u64; 3],
}

impl AgentStateClock {
    pub fn new() -> Self {
        Self::default()
    }

    /// Charges the time since the previous tick to `activity`. The first tick
    /// only starts the clock; a tick with `now` earlier than the last is ignored.
    pub fn tick(&mut self, now: Millis, activity: AgentActivity) {
        let Some(last) = self.last.replace(now.max(self.last.unwrap_or(0))) else {
            return;
        };
        let elapsed = now.saturating_sub(last);
        let counts = [activity.busy, activity.idle, activity.away];
        for (i, state) in AGENT_ACTIVITY_STATES.iter().enumerate() {
            let total = self.carry_ms[i] + elapsed.saturating_mul(counts[i] as u64);
            let secs = total / 1000;
            self.carry_ms[i] = total % 1000;
            if secs > 0 {
                counter!(AGENT_STATE_SECONDS, "status" => *state).increment(secs);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Engine.
// ---------------------------------------------------------------------------

/// Records how long the core took for one command (`Command::kind()`) or `timeout`.
pub fn decision_latency(kind: &'static str, secs: f64) {
    histogram!(ROUTING_DECISION_SECONDS, "kind" => kind).record(secs);
}

/// Counts one WebSocket frame of type `ty` (a wire-contract type name, or `invalid`).
pub fn ws_message(direction: Direction, ty: &'static str) {
    counter!(WS_MESSAGES, "direction" => direction.as_str(), "type" => ty).increment(1);
}

/// Counts one error by its stable code (`CommandError::code()` or a protocol code).
pub fn error(code: &'static str) {
    counter!(ERRORS, "code" => code).increment(1);
}

/// Adds `delta` (±1) to the open connections of `role`.
pub fn ws_connections(role: &'static str, delta: i64) {
    gauge!(WS_CONNECTIONS, "role" => role).increment(delta as f64);
}

/// Counts one actor rebuilt by supervision.
pub fn actor_restarted(kind: ActorKind) {
    counter!(ACTOR_RESTARTS, "actor" => kind.as_str()).increment(1);
}

/// Records one snapshot written: how long it took and its size.
pub fn snapshot_written(secs: f64, bytes: u64) {
    histogram!(SNAPSHOT_DURATION_SECONDS).record(secs);
    gauge!(SNAPSHOT_BYTES).set(bytes as f64);
}

/// Records one journal group fsync.
pub fn journal_fsync(secs: f64) {
    histogram!(JOURNAL_FSYNC_SECONDS).record(secs);
}

/// Counts bytes appended to the journal.
pub fn journal_appended(bytes: u64) {
    counter!(JOURNAL_BYTES).increment(bytes);
}

/// Sets how many frames wait for the journal (see `actors::HeldNotices`).
pub fn set_frames_held(count: usize) {
    gauge!(FRAMES_HELD).set(count as f64);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::{ConversationId, OfferId};

    #[test]
    fn every_code_a_client_can_get_starts_at_zero() {
        for code in crate::api::protocol::codes::ALL
            .iter()
            .chain(crate::routing::CommandError::CODES)
        {
            assert!(ERROR_CODES.contains(code), "{code}");
        }
    }

    /// Runs `f` with a recorder for `settings` and the meters built in it,
    /// and renders what it recorded.
    fn render_with(settings: &RoutingSettings, f: impl FnOnce(&Meters)) -> String {
        let recorder = build_recorder(settings).expect("recorder builds");
        metrics::with_local_recorder(&recorder, || f(&Meters::new(settings)));
        recorder.handle().render()
    }

    /// The value of the sample line `series` (name with labels, as rendered).
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
    }

    fn assigned(waited_ms: Millis, target: Option<Millis>) -> Effect {
        Effect::Assigned {
            conversation: ConversationId(7),
            agent: Arc::from("agent-secret-42"),
            channel: ChannelId(0),
            queue: QueueId(0),
            waited_ms,
            answer_target_ms: target,
        }
    }

    #[test]
    fn catalogue_follows_naming_rules() {
        let mut names = HashSet::new();
        for m in CATALOGUE {
            assert!(names.insert(m.name), "{} listed twice", m.name);
            assert!(m.name.starts_with("switchboard_"), "{}", m.name);
            assert_eq!(
                m.kind == MetricKind::Counter,
                m.name.ends_with("_total"),
                "{}",
                m.name
            );
            if m.unit == Unit::Seconds {
                assert!(m.name.contains("_seconds"), "{}", m.name);
            }
            if m.unit == Unit::Bytes {
                assert!(m.name.contains("_bytes"), "{}", m.name);
            }
            for l in m.labels {
                assert!(ALLOWED_LABELS.contains(l), "{} has label {l}", m.name);
            }
        }
        let histograms = CATALOGUE
            .iter()
            .filter(|m| m.kind == MetricKind::Histogram)
            .count();
        assert_eq!(
            histograms,
            histogram_buckets(&RoutingSettings::example()).len()
        );
    }

    #[test]
    fn zero_initialised_series_are_rendered() {
        let settings = RoutingSettings::example();
        let text = render_with(&settings, |_| {});
        for ch in ["voice", "chat", "email", "sms", "social"] {
            let cq = format!("channel=\"{ch}\",queue=\"general\"");
            assert_eq!(
                sample(&text, &format!("{CONVERSATIONS_OPENED}{{{cq}}}")),
                Some(0.0),
                "{ch}"
            );
            assert_eq!(
                sample(&text, &format!("{QUEUE_DEPTH}{{{cq}}}")),
                Some(0.0),
                "{ch}"
            );
            assert_eq!(
                sample(&text, &format!("{CONVERSATION_WAIT_SECONDS}_count{{{cq}}}")),
                Some(0.0),
                "{ch}"
            );
            assert_eq!(
                sample(&text, &format!("{OFFERS}{{{cq},outcome=\"expired\"}}")),
                Some(0.0),
                "{ch}"
            );
            assert_eq!(
                sample(
                    &text,
                    &format!("{AGENT_SLOTS}{{channel=\"{ch}\",state=\"free\"}}")
                ),
                Some(0.0)
            );
        }
        assert_eq!(
            sample(&text, &format!("{SERVICE_LEVEL_TARGET_SECONDS}{{channel=\"voice\",queue=\"general\",kind=\"answer\"}}")),
            Some(20.0)
        );
        assert_eq!(
            sample(&text, &format!("{SERVICE_LEVEL_TARGET_SECONDS}{{channel=\"email\",queue=\"general\",kind=\"first_response\"}}")),
            Some(3600.0)
        );
        // Email has no answer target: no target series, no answer SLA events.
        assert!(!text.contains("channel=\"email\",queue=\"general\",kind=\"answer\""));
        assert_eq!(
            sample(&text, &format!("{ERRORS}{{code=\"unknown_offer\"}}")),
            Some(0.0)
        );
        assert_eq!(
            sample(&text, &format!("{AGENTS}{{status=\"away\"}}")),
            Some(0.0)
        );
        assert_eq!(
            sample(&text, &format!("{ACTOR_RESTARTS}{{actor=\"router\"}}")),
            Some(0.0)
        );
        assert_eq!(
            sample(
                &text,
                &format!("{BUILD_INFO}{{version=\"{}\"}}", env!("CARGO_PKG_VERSION"))
            ),
            Some(1.0)
        );
        for m in CATALOGUE {
            assert!(
                text.contains(&format!("# HELP {} ", m.name)),
                "{} not described",
                m.name
            );
            assert!(
                text.contains(&format!("\n{}", m.name)),
                "{} has no series",
                m.name
            );
        }
    }

    #[test]
    fn sla_targets_lie_on_wait_bucket_edges() {
        let mut settings = RoutingSettings::example();
        settings.queues[0].sla.answer_target_ms = None;
        let mut vip = settings.queues[0].clone();
        vip.name = "vip".into();
        vip.sla.answer_target_ms = Some(12_345);
        vip.sla.first_response_target_ms = Some(450_000);
        settings.queues.push(vip);
        let edges = wait_buckets(&settings);
        for target in [20.0, 30.0, 60.0, 3600.0, 12.345, 450.0] {
            assert!(edges.contains(&target), "{target} not in {edges:?}");
        }
        assert!(
            edges.windows(2).all(|w| w[0] < w[1]),
            "edges ascend without duplicates"
        );

        // The rendered histogram has the edge, and a wait exactly at the target falls in it.
        let text = render_with(&settings, |m| {
            let mut vip_wait = assigned(12_345, Some(12_345));
            if let Effect::Assigned { queue, .. } = &mut vip_wait {
                *queue = QueueId(1);
            }
            observe_effect(m, &vip_wait, &settings, &ServiceLevelPolicy::default());
        });
        let bucket = |le: &str| {
            sample(&text, &format!("{CONVERSATION_WAIT_SECONDS}_bucket{{channel=\"voice\",queue=\"vip\",le=\"{le}\"}}"))
        };
        assert_eq!(bucket("12.345"), Some(1.0));
        assert_eq!(bucket("10"), Some(0.0));
    }

    #[test]
    fn assigned_within_and_over_target_count_correctly() {
        let settings = RoutingSettings::example();
        let policy = ServiceLevelPolicy::default();
        let text = render_with(&settings, |m| {
            observe_effect(m, &assigned(20_000, Some(20_000)), &settings, &policy); // at the target: within
            observe_effect(m, &assigned(3_000, Some(20_000)), &settings, &policy);
            observe_effect(m, &assigned(20_001, Some(20_000)), &settings, &policy);
            // over
        });
        let cq = "{channel=\"voice\",queue=\"general\"}";
        assert_eq!(
            sample(&text, &format!("{CONVERSATIONS_ASSIGNED}{cq}")),
            Some(3.0)
        );
        assert_eq!(
            sample(&text, &format!("{CONVERSATIONS_ANSWERED}{cq}")),
            Some(3.0)
        );
        assert_eq!(
            sample(
                &text,
                &format!("{CONVERSATIONS_ANSWERED_WITHIN_TARGET}{cq}")
            ),
            Some(2.0)
        );
        assert_eq!(
            sample(&text, &format!("{CONVERSATIONS_SLA_ELIGIBLE}{cq}")),
            Some(3.0)
        );
        assert_eq!(
            sample(&text, &format!("{CONVERSATION_WAIT_SECONDS}_count{cq}")),
            Some(3.0)
        );
        assert_eq!(
            sample(&text, &format!("{CONVERSATION_WAIT_SECONDS}_bucket{{channel=\"voice\",queue=\"general\",le=\"20\"}}")),
            Some(2.0)
        );
        assert_eq!(
            sample(
                &text,
                &format!("{OFFERS}{{channel=\"voice\",queue=\"general\",outcome=\"accepted\"}}")
            ),
            Some(3.0)
        );
        assert!(
            !text.contains("agent-secret-42"),
            "agent id leaked into a label"
        );
    }

    #[test]
    fn assigned_without_target_is_not_in_service_level() {
        let settings = RoutingSettings::example();
        let text = render_with(&settings, |m| {
            let mut email = assigned(1_000, None);
            if let Effect::Assigned { channel, .. } = &mut email {
                *channel = ChannelId(2);
            }
            observe_effect(m, &email, &settings, &ServiceLevelPolicy::default());
        });
        let cq = "{channel=\"email\",queue=\"general\"}";
        assert_eq!(
            sample(&text, &format!("{CONVERSATIONS_ASSIGNED}{cq}")),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, &format!("{CONVERSATIONS_ANSWERED}{cq}")),
            Some(0.0)
        );
        assert_eq!(
            sample(
                &text,
                &format!("{CONVERSATIONS_ANSWERED_WITHIN_TARGET}{cq}")
            ),
            Some(0.0)
        );
    }

    #[test]
    fn short_abandons_do_not_count_against_service_level() {
        let settings = RoutingSettings::example();
        let policy = ServiceLevelPolicy {
            short_abandon_ms: 5_000,
            count_abandoned: true,
        };
        let ignore = ServiceLevelPolicy {
            count_abandoned: false,
            ..policy
        };
        let abandon = |waited_ms| Effect::Ended {
            conversation: ConversationId(1),
            channel: ChannelId(1),
            queue: QueueId(0),
            outcome: Outcome::Abandoned,
            waited_ms,
            handle_ms: 0,
            agent: None,
        };
        let text = render_with(&settings, |m| {
            observe_effect(m, &abandon(4_999), &settings, &policy);
            observe_effect(m, &abandon(5_000), &settings, &policy);
            observe_effect(m, &abandon(40_000), &settings, &policy);
            observe_effect(m, &abandon(40_000), &settings, &ignore);
        });
        let cq = "{channel=\"chat\",queue=\"general\"}";
        assert_eq!(
            sample(&text, &format!("{CONVERSATIONS_ABANDONED}{cq}")),
            Some(4.0)
        );
        assert_eq!(
            sample(&text, &format!("{CONVERSATIONS_SLA_ELIGIBLE}{cq}")),
            Some(2.0)
        );
    }

    #[test]
    fn offers_sla_transfers_and_completions_are_counted() {
        let settings = RoutingSettings::example();
        let policy = ServiceLevelPolicy::default();
        let agent: Arc<str> = Arc::from("agent-secret-42");
        let text = render_with(&settings, |m| {
            let made = Effect::OfferMade {
                offer: OfferId(1),
                conversation: ConversationId(1),
                agent: agent.clone(),
                channel: ChannelId(1),
                queue: QueueId(0),
                priority: 0,
                waited_ms: 250,
                expires_at: 0,
                first_offer: true,
            };
            observe_effect(m, &made, &settings, &policy);
            for reason in [OfferEnd::Rejected, OfferEnd::Expired] {
                let ended = Effect::OfferEnded {
                    offer: OfferId(1),
                    conversation: ConversationId(1),
                    agent: agent.clone(),
                    channel: ChannelId(1),
                    queue: QueueId(0),
                    reason,
                };
                observe_effect(m, &ended, &settings, &policy);
            }
            let sla = Effect::Sla {
                conversation: ConversationId(1),
                channel: ChannelId(1),
                queue: QueueId(0),
                kind: SlaKind::Answer,
                level: SlaLevel::Breach,
                waited_ms: 30_000,
            };
            observe_effect(m, &sla, &settings, &policy);
            let transferred = Effect::Transferred {
                conversation: ConversationId(1),
                channel: ChannelId(1),
                from_queue: QueueId(0),
                to_queue: QueueId(0),
                from_agent: agent.clone(),
            };
            observe_effect(m, &transferred, &settings, &policy);
            let completed = Effect::Ended {
                conversation: ConversationId(1),
                channel: ChannelId(1),
                queue: QueueId(0),
                outcome: Outcome::Completed,
                waited_ms: 0,
                handle_ms: 95_000,
                agent: Some(agent.clone()),
            };
            observe_effect(m, &completed, &settings, &policy);
            // Out-of-range ids are dropped, not panicked on.
            let bogus = Effect::Transferred {
                conversation: ConversationId(1),
                channel: ChannelId(99),
                from_queue: QueueId(99),
                to_queue: QueueId(0),
                from_agent: agent.clone(),
            };
            observe_effect(m, &bogus, &settings, &policy);
        });
        let cq = "channel=\"chat\",queue=\"general\"";
        for (outcome, n) in [
            ("made", 1.0),
            ("rejected", 1.0),
            ("expired", 1.0),
            ("accepted", 0.0),
        ] {
            assert_eq!(
                sample(&text, &format!("{OFFERS}{{{cq},outcome=\"{outcome}\"}}")),
                Some(n),
                "{outcome}"
            );
        }
        assert_eq!(
            sample(
                &text,
                &format!("{SLA_EVENTS}{{{cq},kind=\"answer\",level=\"breach\"}}")
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, &format!("{CONVERSATIONS_TRANSFERRED}{{{cq}}}")),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, &format!("{CONVERSATIONS_COMPLETED}{{{cq}}}")),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, &format!("{CONVERSATION_HANDLE_SECONDS}_sum{{{cq}}}")),
            Some(95.0)
        );
        assert_eq!(
            sample(&text, &format!("{OPEN_TO_OFFER_SECONDS}_sum{{{cq}}}")),
            Some(0.25)
        );
        assert!(!text.contains("agent-secret-42"));
        assert!(
            !text.contains("\"99\""),
            "out-of-range index became a label"
        );
    }

    #[test]
    fn unknown_names_are_not_recorded_as_labels() {
        let settings = RoutingSettings::example();
        let mut counted = (false, false);
        let text = render_with(&settings, |m| {
            counted.0 = conversation_opened(m, &settings, "voice", None);
            counted.1 = conversation_opened(m, &settings, "customer-typed-this", Some("general"));
        });
        assert_eq!(counted, (true, false));
        assert_eq!(
            sample(
                &text,
                &format!("{CONVERSATIONS_OPENED}{{channel=\"voice\",queue=\"general\"}}")
            ),
            Some(1.0)
        );
        assert!(!text.contains("customer-typed-this"));
    }

    #[test]
    fn queue_gauges_reset_queues_missing_from_the_sample() {
        let settings = RoutingSettings::example();
        let text = render_with(&settings, |_| {
            let stats = |channel, waiting, longest_wait_ms| QueueStats {
                queue: QueueId(0),
                channel: ChannelId(channel),
                waiting,
                longest_wait_ms,
            };
            set_queue_gauges(&[stats(0, 4, 12_500), stats(1, 2, 1_000)], &settings);
            set_queue_gauges(&[stats(0, 3, 13_500)], &settings);
        });
        assert_eq!(
            sample(
                &text,
                &format!("{QUEUE_DEPTH}{{channel=\"voice\",queue=\"general\"}}")
            ),
            Some(3.0)
        );
        assert_eq!(
            sample(
                &text,
                &format!("{QUEUE_LONGEST_WAIT_SECONDS}{{channel=\"voice\",queue=\"general\"}}")
            ),
            Some(13.5)
        );
        assert_eq!(
            sample(
                &text,
                &format!("{QUEUE_DEPTH}{{channel=\"chat\",queue=\"general\"}}")
            ),
            Some(0.0)
        );
    }

    #[test]
    fn agent_state_clock_carries_fractions() {
        let settings = RoutingSettings::example();
        let text = render_with(&settings, |_| {
            let mut clock = AgentStateClock::new();
            let act = AgentActivity {
                busy: 3,
                idle: 1,
                away: 0,
            };
            clock.tick(10_000, act); // starts the clock
            for i in 1..=4 {
                clock.tick(10_000 + i * 250, act); // 4 × 250 ms
            }
            clock.tick(9_000, act); // backwards: ignored
            clock.tick(
                11_500,
                AgentActivity {
                    busy: 0,
                    idle: 0,
                    away: 2,
                },
            );
        });
        // busy: 3 agents × 1 s; idle: 1 × 1 s; away: 2 × 0.5 s.
        assert_eq!(
            sample(&text, &format!("{AGENT_STATE_SECONDS}{{status=\"busy\"}}")),
            Some(3.0)
        );
        assert_eq!(
            sample(&text, &format!("{AGENT_STATE_SECONDS}{{status=\"idle\"}}")),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, &format!("{AGENT_STATE_SECONDS}{{status=\"away\"}}")),
            Some(1.0)
        );
    }

    #[test]
    fn agent_activity_counts_logged_in_agents() {
        let mut act = AgentActivity::default();
        act.add(AgentStatus::Available, true);
        act.add(AgentStatus::Away, true); // away but still handling: busy
        act.add(AgentStatus::Available, false);
        act.add(AgentStatus::Away, false);
        act.add(AgentStatus::Away, false);
        act.add(AgentStatus::Offline, true);
        assert_eq!(
            act,
            AgentActivity {
                busy: 2,
                idle: 1,
                away: 2
            }
        );
    }

    #[test]
    fn engine_helpers_record() {
        let settings = RoutingSettings::example();
        let text = render_with(&settings, |m| {
            m.ws_message(Direction::In, "agent.login");
            // The handle and the macro count into the same series.
            ws_message(Direction::Out, "ack");
            m.ws_message(Direction::Out, String::from("ack").leak());
            error("unknown_offer");
            ws_connections("agent", 1);
            ws_connections("agent", 1);
            ws_connections("agent", -1);
            actor_restarted(ActorKind::Conversation);
            m.decision_latency("open", 0.000_003);
            snapshot_written(0.02, 4096);
            journal_fsync(0.0004);
            journal_appended(512);
            set_frames_held(3);
            set_agents(AgentStatus::Available, 5);
            set_agent_slots(&settings, ChannelId(1), 2, 13);
        });
        assert_eq!(
            sample(
                &text,
                &format!("{WS_MESSAGES}{{direction=\"in\",type=\"agent.login\"}}")
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                &format!("{WS_MESSAGES}{{direction=\"out\",type=\"ack\"}}")
            ),
            Some(2.0)
        );
        assert_eq!(
            sample(&text, &format!("{ERRORS}{{code=\"unknown_offer\"}}")),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, &format!("{WS_CONNECTIONS}{{role=\"agent\"}}")),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                &format!("{ACTOR_RESTARTS}{{actor=\"conversation\"}}")
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                &format!("{ROUTING_DECISION_SECONDS}_bucket{{kind=\"open\",le=\"0.000005\"}}")
            ),
            Some(1.0)
        );
        assert_eq!(sample(&text, SNAPSHOT_BYTES), Some(4096.0));
        assert_eq!(
            sample(&text, &format!("{JOURNAL_FSYNC_SECONDS}_count")),
            Some(1.0)
        );
        assert_eq!(sample(&text, JOURNAL_BYTES), Some(512.0));
        assert_eq!(sample(&text, FRAMES_HELD), Some(3.0));
        assert_eq!(
            sample(&text, &format!("{AGENTS}{{status=\"available\"}}")),
            Some(5.0)
        );
        assert_eq!(
            sample(
                &text,
                &format!("{AGENT_SLOTS}{{channel=\"chat\",state=\"busy\"}}")
            ),
            Some(2.0)
        );
    }

    #[test]
    fn installing_twice_returns_the_same_recorder() {
        let settings = RoutingSettings::example();
        let first = install(&settings).expect("first install");
        let mut other = settings.clone();
        other.queues[0].name = "second".into();
        other.default_queue = "second".into();
        let second = install(&other).expect("second install is handled");
        let text = second.render();
        assert!(text.contains("queue=\"general\""));
        assert!(
            text.contains("queue=\"second\""),
            "series of the second settings registered"
        );
        assert!(first.render().contains("queue=\"second\""));
    }
}
