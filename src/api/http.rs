//! The REST read API, health, `/metrics`, and the guarded admin fault
//! injection.
//!
//! Handlers read the state store (and, for queue depths, take the engine lock
//! for one `queue_stats` call) without asking any actor. Every path needs a
//! token except the configured `public_paths`. Errors are [`ApiError`]s,
//! rendered as `{code, message}`. This module must never change routing state;
//! the only thing that writes is the admin panic call, enabled only when the
//! server was started with fault injection on.

use super::auth::Authenticator;
use super::error::ApiError;
use super::protocol::{Role, ServerFrame};
use super::ws::WsLimits;
use crate::actors::{Hub, InjectPanic};
use crate::clock;
use crate::config::AppConfig;
use crate::metrics::{self, PrometheusHandle};
use crate::routing::ConversationId;
use crate::store::ConversationState;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::watch;

/// What every handler shares.
pub struct AppState {
    pub hub: Arc<Hub>,
    pub auth: Authenticator,
    pub config: Arc<AppConfig>,
    pub prometheus: PrometheusHandle,
    pub limits: WsLimits,
    /// Turns `true` when the server starts shutting down.
    pub shutdown: watch::Receiver<bool>,
}

impl AppState {
    /// Checks the request's token unless its path is public.
    fn authorize(&self, req: &HttpRequest) -> Result<(), ApiError> {
        if self.config.server.is_public_path(req.path()) {
            return Ok(());
        }
        self.auth
            .authenticate(req)
            .map(|_| ())
            .inspect_err(|e| metrics::error(e.code()))
    }
}

/// Mounts every REST route (the WebSocket routes are mounted by the server).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(prometheus))
        .route("/v1/conversations/{id}", web::get().to(conversation))
        .route("/v1/customers/{id}", web::get().to(customer))
        .route("/v1/agents", web::get().to(agents))
        .route("/v1/queues", web::get().to(queues))
        .route("/v1/admin/panic/{kind}/{id}", web::post().to(admin_panic));
}

async fn healthz(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.authorize(&req)?;
    Ok(HttpResponse::Ok().json(json!({"status": "ok"})))
}

async fn readyz(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.authorize(&req)?;
    if *state.shutdown.borrow() {
        return Err(ApiError::Unavailable("shutting down".into()));
    }
    let router_ready = state.hub.router().connected();
    if !router_ready {
        return Err(ApiError::Unavailable("router is restarting".into()));
    }
    Ok(HttpResponse::Ok().json(json!({
        "status": "ready",
        "sessions": state.hub.open_sessions(),
        // A count, not a scan: this answers health checks at any size.
        "conversations": state.hub.store.conversation_count(),
        "actor_restarts": state.hub.restarts(),
    })))
}

async fn prometheus(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    state.authorize(&req)?;
    // Counting 10 000 descriptors and rendering every series take
    // milliseconds: not on a thread that serves WebSocket sessions.
    let handle = state.prometheus.clone();
    let text = web::block(move || {
        metrics::collect_process();
        handle.render()
    })
    .await
    .map_err(|e| ApiError::Unavailable(format!("rendering the metrics: {e}")))?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(text))
}

async fn conversation(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    state.authorize(&req)?;
    let id = path.into_inner();
    let record = ConversationId::parse(&id)
        .and_then(|key| state.hub.store.conversation(key))
        .ok_or_else(|| ApiError::NotFound(format!("unknown conversation `{id}`")))?;
    Ok(HttpResponse::Ok().json(record))
}

async fn customer(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    state.authorize(&req)?;
    let id = path.into_inner();
    let conversations = state.hub.store.customer_conversations(&id);
    if conversations.is_empty() {
        return Err(ApiError::NotFound(format!("unknown customer `{id}`")));
    }
    let channels: std::collections::BTreeSet<&str> =
        conversations.iter().map(|c| &*c.channel).collect();
    Ok(HttpResponse::Ok().json(json!({
        "customer_id": id,
        "channels": channels,
        "conversations": conversations,
    })))
}

async fn agents(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.authorize(&req)?;
    Ok(HttpResponse::Ok().json(json!({"agents": state.hub.store.agents()})))
}

async fn queues(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.authorize(&req)?;
    Ok(HttpResponse::Ok().json(json!({"queues": queue_rows(&state.hub)})))
}

/// One row per queue and channel: depth, longest wait, service level.
pub fn queue_rows(hub: &Hub) -> Vec<Value> {
    let now = clock::now_ms();
    let stats = hub.engine().queue_stats(now);
    stats
        .iter()
        .map(|s| {
            let queue = &hub.settings.queues[s.queue.0 as usize];
            let channel = &hub.settings.channels[s.channel.0 as usize];
            let (answered, within) = hub.answered(s.queue, s.channel);
            let target = hub.settings.sla_for(s.channel.0 as usize, s.queue.0 as usize).answer_target_ms;
            json!({
                "queue": queue.name,
                "channel": channel.name,
                "depth": s.waiting,
                "longest_wait_ms": s.longest_wait_ms,
                "answered": answered,
                "answered_within_target": within,
                "answer_target_ms": target,
                "service_level": if answered == 0 { Value::Null } else { json!(within as f64 / answered as f64) },
            })
        })
        .collect()
}

/// The `stats` frame a supervisor asks for.
pub fn stats_frame(hub: &Hub, req_id: Option<Value>) -> ServerFrame {
    let agents = hub.store.agents();
    let mut by_status: BTreeMap<&str, usize> = BTreeMap::new();
    for a in &agents {
        *by_status.entry(a.status.as_str()).or_default() += 1;
    }
    let busy = agents
        .iter()
        .filter(|a| !a.conversations.is_empty())
        .count();
    let queues = queue_rows(hub);
    let mut channels = serde_json::Map::new();
    for ch in &hub.settings.channels {
        let waiting: u64 = queues
            .iter()
            .filter(|q| q["channel"] == ch.name.as_str())
            .map(|q| q["depth"].as_u64().unwrap_or(0))
            .sum();
        channels.insert(ch.name.clone(), json!({"waiting": waiting}));
    }
    ServerFrame::Stats {
        req_id,
        queues,
        agents: json!({
            "total": agents.len(),
            "available": by_status.get("available").copied().unwrap_or(0),
            "away": by_status.get("away").copied().unwrap_or(0),
            "offline": by_status.get("offline").copied().unwrap_or(0),
            "busy": busy,
        }),
        channels: Value::Object(channels),
    }
}

/// `POST /v1/admin/panic/{conversation|agent|router}/{id}`: makes the actor
/// panic inside a handler, then asks the hub for it again (which rebuilds it).
async fn admin_panic(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if !state.hub.fault_injection {
        return Err(ApiError::NotFound("fault injection is disabled".into()));
    }
    let principal = state.auth.authenticate(&req)?;
    if principal.role != Role::Supervisor {
        return Err(ApiError::Forbidden("a supervisor token is required".into()));
    }
    let (kind, id) = path.into_inner();
    let hub = &state.hub;
    let before = hub.restarts();
    match kind.as_str() {
        "conversation" => {
            let key = ConversationId::parse(&id)
                .filter(|k| {
                    hub.store
                        .conversation(*k)
                        .is_some_and(|r| r.state != ConversationState::Ended)
                })
                .ok_or_else(|| ApiError::NotFound(format!("no live conversation `{id}`")))?;
            let addr = hub
                .conversation(key)
                .ok_or_else(|| ApiError::NotFound(format!("no actor for `{id}`")))?;
            let _ = addr.send(InjectPanic).await;
            wait_until_dead(|| addr.connected()).await;
            hub.conversation(key);
        }
        "agent" => {
            let addr = hub
                .agent(&id)
                .ok_or_else(|| ApiError::NotFound(format!("unknown agent `{id}`")))?;
            let _ = addr.send(InjectPanic).await;
            wait_until_dead(|| addr.connected()).await;
            hub.agent(&id);
        }
        "router" => {
            let addr = hub.router();
            let _ = addr.send(InjectPanic).await;
            wait_until_dead(|| addr.connected()).await;
            hub.router();
        }
        other => return Err(ApiError::NotFound(format!("unknown actor kind `{other}`"))),
    }
    Ok(HttpResponse::Ok().json(json!({
        "kind": kind,
        "id": id,
        "restarted": hub.restarts() > before,
        "restarts": hub.restarts(),
    })))
}

/// The reply channel of a panicking handler closes while the actor's task is
/// still unwinding; wait (at most 2 s) until its mailbox is really closed.
async fn wait_until_dead(connected: impl Fn() -> bool) {
    for _ in 0..400 {
        if !connected() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}
