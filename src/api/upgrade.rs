//! WebSocket upgrades, taken from the HTTP server before actix-web sees them.
//!
//! The HTTP/1 dispatcher hands every `Connection: upgrade` request here,
//! together with its socket. This module routes it by path (`/v1/ws`, and
//! `/v1/echo` when `server.echo_endpoint` is on), authenticates `/v1/ws`
//! (401 otherwise, 503 while shutting down), checks the handshake (400),
//! answers `101 Switching Protocols`, and gives the bare socket to a
//! [`WsConn`] and the endpoint's session loop on a task of its own. The
//! dispatcher, with its two 8 KiB buffers, then ends: an idle WebSocket
//! costs only what its session holds (see [`super::transport`]). A refusal
//! has the same status, headers and `{code, message}` body as the REST
//! endpoints' errors, and is counted in `switchboard_errors_total`.
//!
//! It must never read a frame itself nor keep anything of a connection once
//! the session has started.

use super::error::ApiError;
use super::http::AppState;
use super::transport::WsConn;
use super::{echo, ws};
use crate::metrics;
use actix_codec::Framed;
use actix_http::body::{self, BodySize};
use actix_http::{h1, ConnectionType, Method, Request, Response};
use actix_web::{web, ResponseError as _};
use futures_util::SinkExt as _;
use std::io;
use tokio::net::TcpStream;

/// The socket of an upgrade request, as the HTTP/1 dispatcher hands it over.
pub type UpgradeIo = Framed<TcpStream, h1::Codec>;

enum Endpoint {
    Session,
    Echo,
}

/// Answers one upgrade request; see the module docs.
pub async fn handle(state: web::Data<AppState>, req: Request, mut io: UpgradeIo) -> io::Result<()> {
    let head = req.head();
    let endpoint = match head.uri.path() {
        "/v1/ws" => Endpoint::Session,
        "/v1/echo" if state.config.server.echo_endpoint => Endpoint::Echo,
        path => {
            let message = format!("no WebSocket endpoint at {path}; use /v1/ws");
            return refuse(io, ApiError::NotFound(message)).await;
        }
    };
    if head.method != Method::GET {
        let message = format!("a WebSocket upgrade is a GET, not {}", head.method);
        return refuse(io, ApiError::BadRequest(message)).await;
    }
    let principal = match endpoint {
        Endpoint::Echo => None,
        Endpoint::Session => match state.auth.authenticate_head(head) {
            Ok(principal) => Some(principal),
            Err(e) => return refuse(io, e).await,
        },
    };
    if principal.is_some() && *state.shutdown.borrow() {
        return refuse(io, ApiError::Unavailable("shutting down".into())).await;
    }
    let switching = match actix_http::ws::handshake(head) {
        Ok(mut builder) => builder
            .message_body(())
            .map_err(|e| io::Error::other(e.to_string()))?,
        Err(e) => {
            let message = format!("not a WebSocket handshake: {e}");
            return refuse(io, ApiError::BadRequest(message)).await;
        }
    };
    io.send((switching, BodySize::None).into()).await?;
    let parts = io.into_parts();
    let limits = state.limits;
    match principal {
        Some(principal) => {
            let conn = WsConn::new(parts.io, parts.read_buf, limits.codec_limit());
            ws::start(&state, principal, conn);
        }
        None => {
            // The same frame limit as `/v1/ws`, so the ceiling is the same stack's.
            let conn = WsConn::new(parts.io, parts.read_buf, limits.codec_limit());
            actix_web::rt::spawn(echo::run(conn));
        }
    }
    Ok(())
}

/// Answers `error` as the REST endpoints would, then closes the connection.
async fn refuse(mut io: UpgradeIo, error: ApiError) -> io::Result<()> {
    metrics::error(error.code());
    let response: Response<body::BoxBody> = error.error_response().into();
    let (mut response, body) = response.into_parts();
    let body = body::to_bytes(body)
        .await
        .map_err(|e| io::Error::other(e.to_string()))?;
    response
        .head_mut()
        .set_connection_type(ConnectionType::Close);
    let size = BodySize::Sized(body.len() as u64);
    io.send((response, size).into()).await?;
    io.send(h1::Message::Chunk(Some(body))).await?;
    io.send(h1::Message::Chunk(None)).await?;
    Ok(())
}
