//! The bare WebSocket echo endpoint (`GET /v1/echo`, mounted only when
//! `server.echo_endpoint = true`).
//!
//! It exists to measure a ceiling: the load generator (`switchboard-loadtest
//! --mode echo`) drives it with the same client and connection count as a real
//! run, so the engine's throughput can be stated as a fraction of what the
//! server stack alone (actix-web + actix-ws, same worker threads, same frame
//! limit) can move. It therefore does as little as possible: every text (and
//! binary) frame goes straight back unchanged, pings are answered, a close is
//! answered with a close.
//!
//! It must never parse frames, touch the routing core, the state store or
//! metrics beyond what the server stack already does, and never `unwrap()` a
//! send: a send fails only when the peer has gone, which ends the session.

use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::AggregatedMessage;

/// Upgrades the request and echoes frames until the peer closes or goes away.
///
/// `max_frame` bounds a single frame and an aggregated (continued) message, in
/// bytes, exactly as the engine's own `/v1/ws` endpoint bounds them, so an echo
/// run pays the same codec costs as an engine run.
pub async fn echo_ws(
    req: HttpRequest,
    body: web::Payload,
    max_frame: usize,
) -> Result<HttpResponse, actix_web::Error> {
    let (response, mut session, stream) = actix_ws::handle(&req, body)?;
    let mut stream = stream
        .max_frame_size(max_frame)
        .aggregate_continuations()
        .max_continuation_size(max_frame);

    actix_web::rt::spawn(async move {
        let mut close_reason = None;
        while let Some(item) = stream.recv().await {
            let sent = match item {
                Ok(AggregatedMessage::Text(text)) => session.text(text).await,
                Ok(AggregatedMessage::Binary(bytes)) => session.binary(bytes).await,
                Ok(AggregatedMessage::Ping(bytes)) => session.pong(&bytes).await,
                Ok(AggregatedMessage::Pong(_)) => Ok(()),
                Ok(AggregatedMessage::Close(reason)) => {
                    close_reason = reason;
                    break;
                }
                Err(error) => {
                    tracing::debug!(%error, "echo: protocol error, closing");
                    break;
                }
            };
            if sent.is_err() {
                // The peer is gone; there is nobody left to close with.
                return;
            }
        }
        // Answer the close (or end after an error); a failure means it is already closed.
        let _ = session.close(close_reason).await;
    });

    Ok(response)
}
