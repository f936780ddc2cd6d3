//! One client's WebSocket connection, over the raw TCP socket the HTTP server
//! hands over after the upgrade handshake (see [`super::upgrade`]).
//!
//! It exists for memory and for fewer wake-ups. An idle connection holds no
//! buffer: bytes are read into a buffer allocated for that read and released
//! as soon as every complete frame in it has been taken, and frames to send
//! are encoded into a buffer released once the kernel has taken all of it.
//! (actix-web's own WebSocket path keeps the HTTP dispatcher alive under the
//! session, with a fixed 8 KiB read and 8 KiB write buffer per connection:
//! 16 of an idle agent's 22 KiB. It also moves every frame through two
//! channels and a second task.) Frames queued together leave in one write.
//!
//! Frame decoding and encoding are actix-http's ([`ws::Codec`],
//! [`ws::Parser`]); this module adds the buffers, continuation assembly
//! (one message out of fragments), size limits and the closing handshake.
//! Every `async` method is cancel-safe: what was read, or is still to be
//! written, stays in the connection, so a `select!` may drop a [`WsConn::recv`]
//! or [`WsConn::flush`] and call it again. It must never keep a buffer while
//! idle, never interpret a payload, and never wait on anything but its socket.

use actix_codec::Decoder as _;
use actix_http::ws::{self, CloseReason, Frame, Item, OpCode, Parser, ProtocolError};
use bytes::{Buf as _, Bytes, BytesMut};
use std::future::poll_fn;
use std::io;
use std::time::Duration;
use tokio::io::AsyncWriteExt as _;
use tokio::io::Interest;
use tokio::net::TcpStream;

/// The smallest and largest room a read gets. A read that fills its room
/// doubles the next one's (a busy gateway connection), one that leaves most
/// of it empty halves it (an agent's single frames).
const READ_MIN: usize = 1024;
const READ_MAX: usize = 64 * 1024;

/// How long a closing connection waits for its last frames to be taken and
/// for the peer to close its side.
pub const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// A whole message from the client (fragments already joined).
#[derive(Debug)]
pub enum WsMessage {
    Text(String),
    Binary(Bytes),
    Ping(Bytes),
    Pong(Bytes),
    Close(Option<CloseReason>),
}

/// Why the connection cannot go on reading.
#[derive(Debug, thiserror::Error)]
pub enum WsError {
    /// A frame, or a message of several frames, is over the size limit.
    #[error("a frame or message is larger than {limit} bytes")]
    Overflow { limit: usize },
    #[error("websocket protocol error: {0}")]
    Protocol(ProtocolError),
    #[error("a text message is not valid UTF-8")]
    NotUtf8,
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
}

impl From<ProtocolError> for WsError {
    fn from(e: ProtocolError) -> Self {
        WsError::Protocol(e)
    }
}

/// A server-side WebSocket connection. See the module docs.
pub struct WsConn {
    io: TcpStream,
    codec: ws::Codec,
    /// Bytes read and not yet decoded (empty and unallocated while idle).
    inbuf: BytesMut,
    /// A message whose continuation frames are still arriving.
    partial: Option<(OpCode, BytesMut)>,
    /// Encoded frames the kernel has not taken yet.
    out: BytesMut,
    max_message: usize,
    /// Room for the next read, between [`READ_MIN`] and [`READ_MAX`].
    read_size: u32,
}

impl std::fmt::Debug for WsConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsConn")
            .field("buffered_in", &self.inbuf.len())
            .field("buffered_out", &self.out.len())
            .finish_non_exhaustive()
    }
}

impl WsConn {
    /// Takes over `io` after the `101` response. `leftover` holds what the
    /// HTTP server had read past the request (frames the client sent right
    /// away). A frame, and a message made of fragments, may be at most
    /// `max_message` bytes.
    pub fn new(io: TcpStream, leftover: BytesMut, max_message: usize) -> Self {
        // Copied, not kept: `leftover` is the dispatcher's 8 KiB read buffer.
        let mut inbuf = BytesMut::new();
        if !leftover.is_empty() {
            inbuf.extend_from_slice(&leftover);
        }
        WsConn {
            io,
            codec: ws::Codec::new().max_size(max_message),
            inbuf,
            partial: None,
            out: BytesMut::new(),
            max_message,
            read_size: READ_MIN as u32,
        }
    }

    /// The next whole message; `None` once the peer has closed the socket.
    pub async fn recv(&mut self) -> Option<Result<WsMessage, WsError>> {
        loop {
            match self.next_buffered() {
                Ok(Some(message)) => return Some(Ok(message)),
                Ok(None) => {}
                Err(e) => return Some(Err(e)),
            }
            // `poll_read_ready` (not `readable()`) so the waker it leaves is
            // this task's: the HTTP dispatcher's, left from the handshake,
            // would otherwise keep that finished task's memory alive.
            if let Err(e) = poll_fn(|cx| self.io.poll_read_ready(cx)).await {
                return Some(Err(e.into()));
            }
            let room = self.read_size as usize;
            if self.inbuf.capacity() - self.inbuf.len() < room {
                self.inbuf.reserve(room);
            }
            let spare = self.inbuf.capacity() - self.inbuf.len();
            match self.read_some(spare) {
                Ok(0) => return None,
                Ok(n) => self.adapt_read_size(n, spare),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.release_inbuf(),
                Err(e) => return Some(Err(e.into())),
            }
        }
    }

    /// One read into `inbuf`'s spare `room`. A read that returns less than
    /// `room` took everything the socket held, so it also clears the
    /// socket's readiness (epoll(7): a short read on a stream socket means
    /// its input is exhausted); the next read waits for new data instead of
    /// trying once more only to get `EAGAIN`, which was half of all reads.
    /// Readiness is cleared only if no new event arrived since it was
    /// observed, and a peer's close is never cleared, so no data or EOF
    /// can be missed.
    fn read_some(&mut self, room: usize) -> io::Result<usize> {
        let mut read = None;
        let (io, inbuf) = (&self.io, &mut self.inbuf);
        let outcome = io.try_io(Interest::READABLE, || {
            let n = io.try_read_buf(inbuf)?;
            read = Some(n);
            if n > 0 && n < room {
                Err(io::ErrorKind::WouldBlock.into())
            } else {
                Ok(n)
            }
        });
        match (outcome, read) {
            (Ok(n), _) => Ok(n),
            (Err(e), Some(n)) if e.kind() == io::ErrorKind::WouldBlock => Ok(n),
            (Err(e), _) => Err(e),
        }
    }

    fn adapt_read_size(&mut self, read: usize, room: usize) {
        let size = self.read_size as usize;
        let next = if read >= room {
            (size * 2).min(READ_MAX)
        } else if read < size / 4 {
            (size / 2).max(READ_MIN)
        } else {
            size
        };
        self.read_size = next as u32;
    }

    /// The next whole message if it has already been read; no I/O.
    pub fn recv_buffered(&mut self) -> Option<Result<WsMessage, WsError>> {
        self.next_buffered().transpose()
    }

    fn release_inbuf(&mut self) {
        if self.inbuf.is_empty() && self.inbuf.capacity() > 0 {
            self.inbuf = BytesMut::new();
        }
    }

    /// Decodes the next whole message from what was read, if it is all there.
    fn next_buffered(&mut self) -> Result<Option<WsMessage>, WsError> {
        loop {
            if self.inbuf.is_empty() {
                self.release_inbuf();
                return Ok(None);
            }
            // A frame declared over the limit is refused from its header,
            // before its payload is buffered.
            if declared_len(&self.inbuf).is_some_and(|len| len > self.max_message as u64) {
                return Err(WsError::Overflow {
                    limit: self.max_message,
                });
            }
            let frame = match self.codec.decode(&mut self.inbuf) {
                Ok(Some(frame)) => frame,
                Ok(None) => return Ok(None),
                Err(ProtocolError::Overflow) => {
                    return Err(WsError::Overflow {
                        limit: self.max_message,
                    })
                }
                Err(e) => return Err(e.into()),
            };
            self.release_inbuf();
            let message = match frame {
                Frame::Text(bytes) => Some(text(bytes)?),
                Frame::Binary(bytes) => Some(WsMessage::Binary(bytes)),
                Frame::Ping(bytes) => Some(WsMessage::Ping(bytes)),
                Frame::Pong(bytes) => Some(WsMessage::Pong(bytes)),
                Frame::Close(reason) => Some(WsMessage::Close(reason)),
                Frame::Continuation(item) => self.continuation(item)?,
            };
            if message.is_some() {
                return Ok(message);
            }
        }
    }

    /// Joins fragments; the codec has already checked their order.
    fn continuation(&mut self, item: Item) -> Result<Option<WsMessage>, WsError> {
        let (first, op, last) = match item {
            Item::FirstText(bytes) => (bytes, Some(OpCode::Text), false),
            Item::FirstBinary(bytes) => (bytes, Some(OpCode::Binary), false),
            Item::Continue(bytes) => (bytes, None, false),
            Item::Last(bytes) => (bytes, None, true),
        };
        if let Some(op) = op {
            self.partial = Some((op, BytesMut::from(&first[..])));
            return Ok(None);
        }
        let Some((_, joined)) = self.partial.as_mut() else {
            return Err(ProtocolError::ContinuationNotStarted.into());
        };
        if joined.len() + first.len() > self.max_message {
            self.partial = None;
            return Err(WsError::Overflow {
                limit: self.max_message,
            });
        }
        joined.extend_from_slice(&first);
        if !last {
            return Ok(None);
        }
        let Some((op, joined)) = self.partial.take() else {
            return Ok(None);
        };
        Ok(Some(match op {
            OpCode::Text => text(joined.freeze())?,
            _ => WsMessage::Binary(joined.freeze()),
        }))
    }

    /// Queues a text frame (sent by the next [`Self::flush`]).
    pub fn queue_text(&mut self, text: &str) {
        Parser::write_message(&mut self.out, text, OpCode::Text, true, false);
    }

    /// Queues a binary frame.
    pub fn queue_binary(&mut self, bytes: &[u8]) {
        Parser::write_message(&mut self.out, bytes, OpCode::Binary, true, false);
    }

    /// Queues a ping.
    pub fn queue_ping(&mut self, payload: &[u8]) {
        Parser::write_message(&mut self.out, payload, OpCode::Ping, true, false);
    }

    /// Queues the answer to a ping.
    pub fn queue_pong(&mut self, payload: &[u8]) {
        Parser::write_message(&mut self.out, payload, OpCode::Pong, true, false);
    }

    /// Writes everything queued; the buffer is released once it is all sent.
    pub async fn flush(&mut self) -> io::Result<()> {
        while !self.out.is_empty() {
            match self.io.try_write(&self.out) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.out.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    poll_fn(|cx| self.io.poll_write_ready(cx)).await?
                }
                Err(e) => return Err(e),
            }
        }
        if self.out.capacity() > 0 {
            self.out = BytesMut::new();
        }
        Ok(())
    }

    /// The closing handshake, bounded by [`CLOSE_LINGER`]: writes what is
    /// queued and a close frame, ends the sending side, then reads and
    /// drops whatever the peer still sends until it closes too. (Closing a
    /// socket with unread input would make the kernel reset the connection,
    /// and the peer could lose the frames just sent.)
    pub async fn close(mut self, reason: Option<CloseReason>) {
        Parser::write_close(&mut self.out, reason, false);
        let _ = tokio::time::timeout(CLOSE_LINGER, async {
            if self.flush().await.is_err() {
                return;
            }
            if self.io.shutdown().await.is_err() {
                return;
            }
            loop {
                if poll_fn(|cx| self.io.poll_read_ready(cx)).await.is_err() {
                    return;
                }
                self.inbuf.clear();
                self.inbuf.reserve(READ_MIN);
                match self.io.try_read_buf(&mut self.inbuf) {
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return,
                }
            }
        })
        .await;
    }
}

/// A text message as an exactly sized `String`: the payload may share the
/// whole read buffer, which must not live on with the text.
fn text(bytes: Bytes) -> Result<WsMessage, WsError> {
    match std::str::from_utf8(&bytes) {
        Ok(text) => Ok(WsMessage::Text(text.to_owned())),
        Err(_) => Err(WsError::NotUtf8),
    }
}

/// The payload length a frame's header declares, once the header's length
/// bytes are there (RFC 6455 §5.2).
fn declared_len(buf: &[u8]) -> Option<u64> {
    let short = u64::from(*buf.get(1)? & 0x7F);
    match short {
        126 => Some(u64::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]))),
        127 => {
            let bytes: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
            Some(u64::from_be_bytes(bytes))
        }
        len => Some(len),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_lengths_are_read_from_all_three_header_forms() {
        assert_eq!(declared_len(&[0x81]), None);
        assert_eq!(declared_len(&[0x81, 0x80 | 5]), Some(5));
        assert_eq!(declared_len(&[0x81, 0x80 | 126, 0x01]), None);
        assert_eq!(declared_len(&[0x81, 0x80 | 126, 0x01, 0x00]), Some(256));
        let mut long = vec![0x82, 0x80 | 127];
        long.extend_from_slice(&(1u64 << 40).to_be_bytes());
        assert_eq!(declared_len(&long), Some(1 << 40));
        assert_eq!(declared_len(&long[..9]), None);
    }
}
