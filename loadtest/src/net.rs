//! Connections: the loopback-only URL check, the open-file limit,
//! WebSocket connect with a token, and the engine's own process figures read
//! from its `GET /metrics`.
//!
//! The load generator must never be pointed at anything but this machine:
//! [`Target::parse`] refuses every host other than `127.0.0.1`.

use anyhow::{bail, Context};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A client WebSocket.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The server under test: always `127.0.0.1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub port: u16,
}

impl Target {
    /// Accepts `ws://127.0.0.1:PORT` (a trailing `/` is allowed); refuses
    /// every other scheme, host or a path.
    pub fn parse(url: &str) -> anyhow::Result<Target> {
        let Some(rest) = url.strip_prefix("ws://") else {
            bail!("`{url}`: only ws:// URLs to 127.0.0.1 are allowed");
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = rest.rsplit_once(':').unwrap_or((rest, "80"));
        if host != "127.0.0.1" {
            bail!("`{url}`: refusing host `{host}`; the load generator only targets 127.0.0.1");
        }
        if port.contains('/') {
            bail!("`{url}`: give the server's base URL, without a path");
        }
        let port: u16 = port
            .parse()
            .with_context(|| format!("`{url}`: bad port `{port}`"))?;
        if port == 0 {
            bail!("`{url}`: port 0 is not a server");
        }
        Ok(Target { port })
    }

    /// The WebSocket URL of `path` with the token in the query.
    pub fn ws_url(&self, path: &str, token: &str) -> String {
        format!("ws://127.0.0.1:{}{}?token={}", self.port, path, token)
    }

    /// Opens one WebSocket to `path`, authenticated by `token`.
    pub async fn connect(&self, path: &str, token: &str) -> anyhow::Result<Ws> {
        let url = self.ws_url(path, token);
        let (ws, _) = tokio_tungstenite::connect_async_with_config(
            url.as_str(),
            Some(client_config()),
            // TCP_NODELAY: a small frame must not wait for the previous one's ACK.
            true,
        )
        .await
        .with_context(|| format!("connecting to ws://127.0.0.1:{}{path}", self.port))?;
        Ok(ws)
    }
}

/// What the engine's `GET /metrics` says of its own process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EngineProcess {
    pub resident_bytes: f64,
    /// Whole seconds (the engine's counter is an integer).
    pub cpu_secs: f64,
}

impl Target {
    /// Reads the engine's resident memory and CPU time from `GET /metrics`
    /// (with `token`, in case the endpoint is not public). `None` when it
    /// cannot: an engine without process metrics, or one that refuses.
    pub async fn engine_process(&self, token: &str) -> Option<EngineProcess> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let read = async {
            let mut s = TcpStream::connect(("127.0.0.1", self.port)).await.ok()?;
            let request = format!(
                "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
            );
            s.write_all(request.as_bytes()).await.ok()?;
            let mut body = Vec::new();
            s.read_to_end(&mut body).await.ok()?;
            Some(String::from_utf8_lossy(&body).into_owned())
        };
        let text = tokio::time::timeout(std::time::Duration::from_secs(5), read)
            .await
            .ok()??;
        parse_engine_process(&text)
    }
}

/// The two `process_*` samples of a `/metrics` response (status line and
/// headers included); `None` unless it is a 200 with both.
pub fn parse_engine_process(response: &str) -> Option<EngineProcess> {
    if !response.starts_with("HTTP/1.1 200") {
        return None;
    }
    let sample = |name: &str| {
        response.lines().find_map(|l| {
            l.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
    };
    Some(EngineProcess {
        resident_bytes: sample("process_resident_memory_bytes")?,
        cpu_secs: sample("process_cpu_seconds_total")?,
    })
}

/// The client's WebSocket settings.
///
/// tungstenite's default read buffer is 128 KiB and it zero-fills the whole
/// free capacity before every `read` (tungstenite 0.26 `FrameCodec::read_in`):
/// with 10 000 connections of small frames that memset was the load
/// generator's largest cost (17 % of its CPU in a 10 000-agent run) and
/// touched 1.3 GB. Engine frames are a few hundred bytes; a larger one still
/// arrives whole, the buffer grows for it.
pub fn client_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(4 * 1024)
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit so thousands of
/// connections fit; returns the soft limit now in force.
pub fn raise_nofile_limit() -> anyhow::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            bail!(
                "getrlimit(RLIMIT_NOFILE): {}",
                std::io::Error::last_os_error()
            );
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
                bail!(
                    "setrlimit(RLIMIT_NOFILE, {}): {}",
                    lim.rlim_max,
                    std::io::Error::last_os_error()
                );
            }
            lim.rlim_cur = lim.rlim_max;
        }
    }
    #[allow(
        clippy::unnecessary_cast,
        reason = "rlim_t is u64 on 64-bit Linux only"
    )]
    let cur = lim.rlim_cur as u64;
    Ok(cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engines_process_figures_are_read_from_a_200_only() {
        let ok = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 12\nprocess_resident_memory_bytes_x 1\nprocess_resident_memory_bytes 8900608\n";
        assert_eq!(
            parse_engine_process(ok),
            Some(EngineProcess {
                resident_bytes: 8_900_608.0,
                cpu_secs: 12.0
            })
        );
        assert_eq!(
            parse_engine_process(&ok.replace("200 OK", "401 Unauthorized")),
            None
        );
        assert_eq!(
            parse_engine_process("HTTP/1.1 200 OK\r\n\r\nprocess_cpu_seconds_total 1\n"),
            None,
            "an engine without the memory figure"
        );
    }

    #[test]
    fn only_loopback_ws_urls_are_accepted() {
        assert_eq!(
            Target::parse("ws://127.0.0.1:8080").expect("ok"),
            Target { port: 8080 }
        );
        assert_eq!(
            Target::parse("ws://127.0.0.1:9000/").expect("ok").port,
            9000
        );
        assert_eq!(Target::parse("ws://127.0.0.1").expect("ok").port, 80);
        for bad in [
            "ws://10.0.0.1:8080",
            "ws://example.com:80",
            "wss://127.0.0.1:8080",
            "http://127.0.0.1:8080",
            "ws://localhost:8080",
            "ws://127.0.0.1:8080/v1/ws",
            "ws://127.0.0.1:x",
            "ws://127.0.0.1.evil.com:80",
            "ws://127.0.0.1:0",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn urls_carry_path_and_token() {
        let t = Target { port: 8080 };
        assert_eq!(
            t.ws_url("/v1/ws", "dev-agent-token"),
            "ws://127.0.0.1:8080/v1/ws?token=dev-agent-token"
        );
    }

    #[test]
    fn nofile_limit_is_raised_to_the_hard_limit() {
        let now = raise_nofile_limit().expect("rlimit");
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: reads into a local struct.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        assert_eq!(lim.rlim_cur, lim.rlim_max);
        #[allow(
            clippy::unnecessary_cast,
            reason = "rlim_t is u64 on 64-bit Linux only"
        )]
        let cur = lim.rlim_cur as u64;
        assert_eq!(now, cur);
    }
}
