//! Builds and runs the server: binds first (port 0 works, so tests learn the
//! real port), then serves; shuts down gracefully.
//!
//! [`start`] must be called inside an actix system (`#[actix_web::main]`,
//! `#[actix_web::test]`): the actors run on one dedicated arbiter, the HTTP
//! workers on their own threads. Graceful shutdown ([`RunningServer::stop`],
//! or SIGTERM/Ctrl-C in [`RunningServer::run_until_signal`]): stop accepting,
//! tell every WebSocket client `close("shutdown")` after the replies it is
//! owed and what is queued for it, wait for the sessions to end (bounded by
//! `server.shutdown_grace_secs`), then stop the HTTP workers, run
//! [`final_snapshot_hook`], stop the actors.
//! Before binding, the state is restored from `snapshot.dir` (newest valid
//! snapshot + journal replay, see `crate::durability`); an unusable data
//! directory is a start-up error naming the path.
//! This module must never decide routing or handle frames itself.

use crate::actors::router::Drain;
use crate::actors::{HeldNotices, Hub};
use crate::api::auth::Authenticator;
use crate::api::http::{self, AppState};
use crate::api::upgrade::{self, UpgradeIo};
use crate::api::ws::WsLimits;
use crate::clock;
use crate::config::{AppConfig, Durability};
use crate::durability::{self, Record, Recorder, ReplicaBase, ReplicaConfig, Restored, Seq};
use crate::durability::{journal::JournalMsg, SnapshotReplica};
use crate::metrics::{self, ServiceLevelPolicy};
use crate::routing::{AgentStatus, ChannelId, Engine, Millis};
use crate::store::{self, Fact, Store};
use actix::Arbiter;
use actix_http::{HttpService, Request};
use actix_service::{fn_service, map_config};
use actix_web::dev::{AppConfig as WebAppConfig, ServerHandle};
use actix_web::web;
use anyhow::Context as _;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Switches that are not part of the config file.
#[derive(Debug, Clone, Copy, Default)]
pub struct StartOptions {
    /// Enables `POST /v1/admin/panic/{kind}/{id}` (supervisor token). Off in
    /// production; `serve` turns it on with `SWITCHBOARD_FAULT_INJECTION=1`.
    pub fault_injection: bool,
    /// HTTP worker threads; `None`: one per core.
    pub workers: Option<usize>,
}

/// A server that is bound and serving.
pub struct RunningServer {
    /// The address actually bound (the real port when the config said 0).
    pub addr: SocketAddr,
    hub: Arc<Hub>,
    handle: ServerHandle,
    shutdown: watch::Sender<bool>,
    grace: Duration,
    arbiter: Arbiter,
    housekeeping: Arbiter,
    served: actix_web::rt::task::JoinHandle<std::io::Result<()>>,
}

impl std::fmt::Debug for RunningServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// [`start_with`] with the default options (no fault injection).
pub async fn start(config: AppConfig) -> anyhow::Result<RunningServer> {
    start_with(config, StartOptions::default()).await
}

/// Validates the config, builds the engine and the actors, binds, and serves.
pub async fn start_with(config: AppConfig, options: StartOptions) -> anyhow::Result<RunningServer> {
    let problems = config.validate();
    if !problems.is_empty() {
        let list: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        anyhow::bail!("invalid configuration:\n  {}", list.join("\n  "));
    }
    let settings = config.routing_settings();
    let prometheus = metrics::install(&settings).context("installing the metrics recorder")?;
    Engine::new(settings.clone()).map_err(|errors| {
        let list: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        anyhow::anyhow!("invalid routing settings: {}", list.join("; "))
    })?;
    let (engine, store, recorder, notices, replica) = restore_state(&config, &settings)?;
    let service_level = ServiceLevelPolicy {
        short_abandon_ms: config.service_level.short_abandon_secs.as_ms(),
        count_abandoned: config.service_level.count_abandoned,
    };
    let arbiter = Arbiter::new();
    let hub = Hub::new(
        engine,
        Arc::new(store),
        Arc::new(recorder),
        notices,
        arbiter.handle(),
        service_level,
        options.fault_injection,
    );
    // Restored conversations and agents get their actors on first use (see
    // `Hub::conversation`); connectors that reconnect are found by owner.
    // The replica rebuilds its copy once the server is listening (below).
    let (open_gate, start_gate) = crossbeam_channel::bounded(1);
    start_snapshots(&hub, &config, &settings, replica, start_gate)?;
    let _ = hub.router();

    let listen = config
        .server
        .listen_addr()
        .with_context(|| format!("server.listen `{}`", config.server.listen))?;
    let listener = TcpListener::bind(listen).with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr()?;

    let limits = WsLimits {
        max_frame_bytes: config.server.max_frame_bytes,
        outbound_buffer_frames: config.server.outbound_buffer_frames,
        heartbeat_interval: config.server.heartbeat_interval_secs.as_duration(),
        client_timeout: config.server.client_timeout_secs.as_duration(),
    };
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let config = Arc::new(config);
    let grace = config.server.shutdown_grace_secs.as_duration();
    let state = web::Data::new(AppState {
        hub: Arc::clone(&hub),
        auth: Authenticator::new(Arc::clone(&config)),
        config: Arc::clone(&config),
        prometheus: prometheus.clone(),
        limits,
        shutdown: shutdown_rx,
    });

    // Its own thread: the gauges and the exporter's upkeep must never delay
    // a routing message on the actors' arbiter.
    let housekeeping = Arbiter::new();
    spawn_housekeeping(&housekeeping, Arc::clone(&hub), prometheus, &config);

    let workers = options
        .workers
        .or((config.server.workers > 0).then_some(config.server.workers));
    let mut server = actix_server::Server::build()
        .disable_signals()
        .shutdown_timeout(grace.as_secs().max(1));
    if let Some(workers) = workers {
        server = server.workers(workers.max(1));
    }
    let server = server
        .listen("switchboard", listener, move || {
            let app = actix_web::App::new()
                .app_data(state.clone())
                .configure(http::configure);
            let upgrades = state.clone();
            HttpService::build()
                // Small frames are the whole protocol: without TCP_NODELAY, a
                // reply written just after another frame (an `ack` held for the
                // journal fsync after a pushed `conversation.ended`) waits for
                // the client's delayed ACK, about 40 ms.
                .tcp_nodelay(true)
                // WebSocket upgrades leave actix-web with their socket.
                .upgrade(fn_service(move |(req, io): (Request, UpgradeIo)| {
                    let upgrades = upgrades.clone();
                    async move {
                        upgrade::handle(upgrades, req, io)
                            .await
                            .map_err(actix_web::Error::from)
                    }
                }))
                .finish(map_config(app, |_| WebAppConfig::default()))
                .tcp()
        })
        .with_context(|| format!("listening on {addr}"))?
        .run();
    let handle = server.handle();
    let served = actix_web::rt::spawn(server);
    let _ = open_gate.send(());
    tracing::info!(%addr, "switchboard is listening");
    Ok(RunningServer {
        addr,
        hub,
        handle,
        shutdown: shutdown_tx,
        grace,
        arbiter,
        housekeeping,
        served,
    })
}

/// What the snapshot replica will be fed and where it starts.
struct ReplicaFeed {
    records: crossbeam_channel::Receiver<(Seq, Record)>,
    journal: Option<crossbeam_channel::Sender<JournalMsg>>,
    until: Seq,
}

/// Checks the data directory, loads the newest valid snapshot, replays the
/// journal after it, starts the journal thread (`durability = "journal"`),
/// and marks every agent offline until it reconnects.
fn restore_state(
    config: &AppConfig,
    settings: &crate::routing::RoutingSettings,
) -> anyhow::Result<(Engine, Store, Recorder, Arc<HeldNotices>, ReplicaFeed)> {
    let dir = &config.snapshot.dir;
    prepare_data_dir(dir)?;
    let start = clock::instant();
    let restored = durability::restore(dir, settings)
        .with_context(|| format!("restoring state from the data directory {}", dir.display()))?;
    let Restored {
        mut engine,
        store,
        last_seq,
        snapshot,
        skipped_snapshots,
        replay,
        refused,
        timings,
    } = restored;
    let (to_replica, records) = crossbeam_channel::unbounded();
    let (recorder, journal, notices) = match config.snapshot.durability {
        Durability::Journal => {
            let notices = Arc::new(HeldNotices::journaled(last_seq));
            let released = Arc::clone(&notices);
            // The thread ends when its senders (recorder, replica) are dropped.
            let journal = durability::journal::spawn_writer(
                dir,
                last_seq + 1,
                Some(to_replica),
                durability::journal::WriterOptions {
                    nice: config.snapshot.thread_nice,
                    commit_window: config.snapshot.commit_window_secs.as_duration(),
                    on_commit: Some(Arc::new(move |mark| released.durable(mark))),
                },
            )
            .with_context(|| format!("starting the journal in {}", dir.display()))?;
            let tx = journal.tx.clone();
            (
                Recorder::journaled(last_seq, journal.tx, journal.watermark),
                Some(tx),
                notices,
            )
        }
        Durability::Snapshot => (
            Recorder::unjournaled(last_seq, Some(to_replica)),
            None,
            Arc::new(HeldNotices::unjournaled()),
        ),
    };
    let offline = {
        let mut sequencer = recorder.lock();
        durability::agents_offline(
            &mut engine,
            &store,
            settings,
            &mut sequencer,
            clock::now_ms(),
        )
    };
    tracing::info!(
        dir = %dir.display(),
        snapshot = ?snapshot.as_ref().map(|(_, p)| p.display().to_string()),
        skipped_snapshots,
        replayed = replay.applied,
        truncated_bytes = replay.truncated_bytes,
        refused,
        last_seq,
        conversations = store.conversation_count(),
        live_conversations = engine.live_conversations(),
        agents_set_offline = offline,
        load_ms = timings.load_ms,
        rebuild_ms = timings.rebuild_ms,
        replay_ms = timings.replay_ms,
        restore_ms = clock::elapsed_secs(start) * 1e3,
        "state restored"
    );
    let feed = ReplicaFeed {
        records,
        journal,
        until: last_seq,
    };
    Ok((engine, store, recorder, notices, feed))
}

/// Creates the data directory and proves it is writable.
fn prepare_data_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the data directory {}", dir.display()))?;
    let probe = dir.join(".write-probe");
    std::fs::File::create(&probe)
        .and_then(|f| f.sync_all())
        .and_then(|_| std::fs::remove_file(&probe))
        .with_context(|| format!("the data directory {} is not writable", dir.display()))
}

/// Starts the snapshot replica: once `start_gate` opens (the server is
/// listening) it rebuilds the restored state in the background, follows the
/// journal, and writes a snapshot every `snapshot.interval_secs` when
/// something changed, never pausing routing.
fn start_snapshots(
    hub: &Arc<Hub>,
    config: &AppConfig,
    settings: &crate::routing::RoutingSettings,
    feed: ReplicaFeed,
    start_gate: crossbeam_channel::Receiver<()>,
) -> anyhow::Result<()> {
    let replica = SnapshotReplica::spawn(
        ReplicaConfig {
            dir: config.snapshot.dir.clone(),
            keep: config.snapshot.keep.max(1) as usize,
            interval: config
                .snapshot
                .interval_secs
                .as_duration()
                .max(Duration::from_millis(100)),
            settings: settings.clone(),
            journal: feed.journal,
            base: ReplicaBase::Restore { until: feed.until },
            start_gate: Some(start_gate),
            nice: config.snapshot.thread_nice,
        },
        feed.records,
    )
    .context("starting the snapshot thread")?;
    hub.set_snapshots(replica);
    Ok(())
}

/// Periodic work on its own arbiter: supervision sweep, gauges, upkeep.
fn spawn_housekeeping(
    arbiter: &Arbiter,
    hub: Arc<Hub>,
    prometheus: metrics::PrometheusHandle,
    config: &AppConfig,
) {
    let stats_every = config
        .metrics
        .stats_interval_secs
        .as_duration()
        .max(Duration::from_millis(100));
    let upkeep_every = config
        .metrics
        .upkeep_interval_secs
        .as_duration()
        .max(Duration::from_millis(100));
    let retain_ended_ms = config.snapshot.retain_ended_secs.as_ms();
    // Often enough that a short retention (tests, demos) is honoured within
    // about a second of it, rarely enough that the scan is negligible.
    let evict_every = Duration::from_millis(retain_ended_ms / 10)
        .clamp(Duration::from_millis(200), Duration::from_secs(60));
    // Conversations a restart left packed in the snapshot it read are
    // decoded a batch at a time once the server is up, so the mapped file
    // can be let go (a record used before then is decoded on the spot).
    let unpacking = Arc::clone(&hub);
    arbiter.spawn(async move {
        let start = clock::instant();
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            tick.tick().await;
            if unpacking.store.unpack_some(5_000) == 0 {
                break;
            }
        }
        tracing::debug!(
            secs = clock::elapsed_secs(start),
            "every restored conversation record decoded"
        );
    });
    arbiter.spawn(async move {
        let mut every = stats_every.min(Duration::from_secs(1));
        if retain_ended_ms > 0 {
            every = every.min(evict_every);
        }
        let mut tick = tokio::time::interval(every);
        let mut last_upkeep = clock::instant();
        let mut last_stats = clock::instant();
        let mut activity_clock = metrics::AgentStateClock::new();
        let mut last_eviction = clock::instant();
        loop {
            tick.tick().await;
            hub.sweep();
            if retain_ended_ms > 0 && last_eviction.elapsed() >= evict_every {
                last_eviction = clock::instant();
                evict_ended(&hub, clock::now_ms().saturating_sub(retain_ended_ms));
            }
            if last_stats.elapsed() >= stats_every {
                last_stats = clock::instant();
                let stats = hub.engine().queue_stats(clock::now_ms());
                metrics::set_queue_gauges(&stats, &hub.settings);
                agent_gauges(&hub, &mut activity_clock);
                metrics::set_frames_held(hub.notices.held_frames());
            }
            if last_upkeep.elapsed() >= upkeep_every {
                last_upkeep = clock::instant();
                metrics::upkeep(&prometheus);
            }
        }
    });
}

/// Drops ended conversations that ended at or before `cutoff`: one journaled
/// fact, applied under the sequencer like every other change, so a replay
/// and the snapshot replica drop the same ones.
fn evict_ended(hub: &Hub, cutoff: Millis) {
    let conversations = hub.store.ended_before(cutoff);
    if conversations.is_empty() {
        return;
    }
    let count = conversations.len();
    let fact = Fact::Evicted { conversations };
    {
        let mut sequencer = hub.recorder.lock();
        store::apply_fact(&hub.store, &fact);
        sequencer.record(Record::Fact(fact));
    }
    tracing::debug!(count, "ended conversations past their retention dropped");
}

/// Agents by status, slots by channel, and agent activity time, from the
/// core's own counts: one pass over its agent array under the engine lock,
/// instead of copying every agent and conversation record out of the store.
fn agent_gauges(hub: &Hub, activity_clock: &mut metrics::AgentStateClock) {
    let floor = hub.engine().floor_stats();
    for (status, count) in AgentStatus::ALL.into_iter().zip(floor.by_status) {
        metrics::set_agents(status, count);
    }
    for (ci, (busy, free)) in floor.busy_slots.iter().zip(&floor.free_slots).enumerate() {
        metrics::set_agent_slots(&hub.settings, ChannelId(ci as u8), *busy, *free);
    }
    activity_clock.tick(
        clock::now_ms(),
        metrics::AgentActivity {
            busy: floor.busy,
            idle: floor.idle,
            away: floor.away,
        },
    );
}

/// Called once at the end of a graceful shutdown, after every session ended
/// and before the actors stop: writes a final snapshot (so the next start
/// replays nothing), makes the journal durable and stops the snapshot thread.
pub fn final_snapshot_hook(hub: &Hub) {
    // Everything recorded is made durable (and so handed to the replica) first.
    hub.recorder.sync();
    let Some(replica) = hub.snapshots() else {
        return;
    };
    match replica.snapshot_now() {
        Ok(written) => tracing::info!(
            live_conversations = hub.store.live_conversations(),
            seq = written.as_ref().map(|w| w.seq),
            bytes = written.as_ref().map(|w| w.bytes),
            "final snapshot written"
        ),
        Err(e) => tracing::error!(error = %e, "final snapshot failed; the journal is kept"),
    }
    replica.stop();
}

impl RunningServer {
    /// The hub (store, engine, actors) of this server.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Graceful shutdown; see the module docs.
    pub async fn stop(self) {
        tracing::info!("shutting down: closing websocket sessions");
        self.housekeeping.stop();
        let _ = self.shutdown.send(true);
        // Stop accepting, but keep the workers: a WebSocket session left the
        // HTTP layer at its upgrade, so a worker counts it as idle and a
        // stopped worker would drop it mid-close (its held replies and its
        // close frame with it). Workers stop once the sessions have ended.
        self.handle.pause().await;
        let deadline = clock::instant() + self.grace;
        while self.hub.open_sessions() > 0 && clock::instant() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // REST requests still in flight get a graceful stop (bounded by the
        // same grace), unless the sessions already used it all up.
        let graceful = self.hub.open_sessions() == 0;
        self.handle.stop(graceful).await;
        let _ = self.served.await;
        // What the closed sessions asked of the router (agent disconnects) is
        // handled before the final snapshot, so a clean restart replays nothing.
        let _ = self.hub.router().send(Drain).await;
        final_snapshot_hook(&self.hub);
        self.arbiter.stop();
        tracing::info!("stopped");
    }

    /// Serves until SIGTERM or Ctrl-C, then shuts down gracefully.
    pub async fn run_until_signal(self) -> anyhow::Result<()> {
        wait_for_signal().await?;
        self.stop().await;
        Ok(())
    }
}

#[cfg(unix)]
async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
        _ = term.recv() => {}
    }
    Ok(())
}

#[cfg(not(unix))]
async fn wait_for_signal() -> anyhow::Result<()> {
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")
}
