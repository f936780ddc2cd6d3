//! The bare WebSocket echo endpoint (`GET /v1/echo`, served only when
//! `server.echo_endpoint = true`).
//!
//! It exists to measure a ceiling: the load generator (`switchboard-loadtest
//! --mode echo`) drives it with the same client and connection count as a real
//! run, so the engine's throughput can be stated as a fraction of what the
//! server stack alone (the same HTTP server, upgrade path, [`WsConn`]
//! transport, worker threads and frame limit) can move. It therefore does as
//! little as possible: every text (and binary) frame goes straight back
//! unchanged, frames that arrived together leave in one write as the
//! engine's do, pings are answered, a close is answered with a close.
//!
//! It must never parse frames, touch the routing core, the state store or
//! metrics beyond what the server stack already does, and never `unwrap()` a
//! send: a send fails only when the peer has gone, which ends the session.

use super::transport::{WsConn, WsMessage};

/// Echoes frames until the peer closes or goes away.
pub async fn run(mut ws: WsConn) {
    let mut close_reason = None;
    'session: while let Some(first) = ws.recv().await {
        // Echo everything that arrived together, then write once.
        let mut next = Some(first);
        while let Some(item) = next {
            match item {
                Ok(WsMessage::Text(text)) => ws.queue_text(&text),
                Ok(WsMessage::Binary(bytes)) => ws.queue_binary(&bytes),
                Ok(WsMessage::Ping(bytes)) => ws.queue_pong(&bytes),
                Ok(WsMessage::Pong(_)) => {}
                Ok(WsMessage::Close(reason)) => {
                    close_reason = reason;
                    break 'session;
                }
                Err(error) => {
                    tracing::debug!(%error, "echo: protocol error, closing");
                    break 'session;
                }
            }
            next = ws.recv_buffered();
        }
        if ws.flush().await.is_err() {
            // The peer is gone; there is nobody left to close with.
            return;
        }
    }
    // Answer the close (or end after an error); a failure means it is already closed.
    ws.close(close_reason).await;
}
