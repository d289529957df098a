//! The TCP listener under axum, with a budget: every accepted connection holds a
//! place in a [`PerIp`] (total and per client IP) until it closes. Over a cap the
//! connection is answered `503` at once (one non-blocking write) and closed, so the
//! process never reaches its file limit and `accept` never fails for lack of one.
//!
//! Should `accept` fail anyway (`EMFILE`: media sockets, files), a spare descriptor
//! is given up to accept and close the waiting connection, then taken back: the
//! client learns at once instead of waiting in the backlog.
//!
//! The same port carries ICE-TCP (`media::udp_mux::tcp`) unless `--tcp-port` gives it a port
//! of its own: a connection's first bytes tell which (an RFC 4571 frame of a STUN
//! binding request starts with a small length, then `00 01` and the magic cookie; HTTP
//! with a letter, TLS with `16`). Sniffing runs in a task per connection, so a slow
//! client holds up nobody; one that sends nothing for [`FIRST_BYTES`] is closed.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::control::limits::{PerIp, Place, Refusal};
use crate::media::udp_mux::TcpMux;
use crate::metrics::Metrics;

/// A connection that sends nothing this long is closed (no HTTP client or ICE agent
/// waits that long before its first bytes).
pub const FIRST_BYTES: Duration = Duration::from_secs(10);
/// Connections accepted and sniffed, waiting for the HTTP server to take them.
const WAITING: usize = 1024;

/// What a refused plain-HTTP client reads before the close.
const BUSY_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\
Retry-After: 5\r\nConnection: close\r\nContent-Length: 73\r\n\r\n\
{\"error\":\"busy\",\"message\":\"too many connections; try again in a moment\"}\n";

/// A TCP listener that counts its connections and refuses over budget, and hands
/// ICE-TCP connections to the TCP mux.
pub struct CountingListener {
    local: SocketAddr,
    /// HTTP (or TLS) connections, from the accepting task.
    incoming: mpsc::Receiver<(Counted<TcpStream>, SocketAddr)>,
    accepting: tokio::task::JoinHandle<()>,
}

impl Drop for CountingListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

/// An accepted connection; its place in the budget is freed when it closes.
pub struct Counted<S> {
    inner: S,
    _place: Place,
}

/// What accepts: the socket, the budget, and the spare descriptor.
struct Acceptor {
    tcp: TcpListener,
    connections: Arc<PerIp>,
    metrics: Arc<Metrics>,
    /// Whether refused clients get [`BUSY_RESPONSE`] (plain HTTP) or just a close (TLS).
    answer_busy: bool,
    /// Held to be given up when `accept` fails with `EMFILE` (see the module doc).
    spare: Option<std::fs::File>,
}

/// Where accepted connections go.
pub enum Serve {
    /// All to the HTTP server.
    Http,
    /// To the HTTP server, or to ICE-TCP's mux when their first bytes are ICE-TCP's.
    HttpAndIceTcp(TcpMux),
    /// All to ICE-TCP's mux (a port of its own, `--tcp-port`).
    IceTcp(TcpMux),
}

impl CountingListener {
    /// Accepts on `tcp` within `connections`' caps, for `serve`.
    pub fn new(
        tcp: TcpListener,
        connections: Arc<PerIp>,
        metrics: Arc<Metrics>,
        answer_busy: bool,
        serve: Serve,
    ) -> io::Result<Self> {
        let local = tcp.local_addr()?;
        let (http, incoming) = mpsc::channel(WAITING);
        let acceptor = Acceptor { tcp, connections, metrics, answer_busy, spare: open_spare() };
        let accepting = tokio::spawn(acceptor.run(http, serve));
        Ok(CountingListener { local, incoming, accepting })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }

    /// The next HTTP connection within budget.
    pub async fn accept_counted(&mut self) -> (Counted<TcpStream>, SocketAddr) {
        match self.incoming.recv().await {
            Some(accepted) => accepted,
            None => std::future::pending().await,
        }
    }
}

impl Acceptor {
    async fn run(mut self, http: mpsc::Sender<(Counted<TcpStream>, SocketAddr)>, serve: Serve) {
        loop {
            let (stream, client, place) = self.accept_within_budget().await;
            let http = http.clone();
            match &serve {
                Serve::Http => {
                    let _ = http.send((Counted { inner: stream, _place: place }, client)).await;
                }
                Serve::IceTcp(ice_tcp) => ice_tcp.accept(stream, client, place),
                Serve::HttpAndIceTcp(ice_tcp) => {
                    let (ice_tcp, metrics) = (ice_tcp.clone(), Arc::clone(&self.metrics));
                    tokio::spawn(async move {
                        match tokio::time::timeout(FIRST_BYTES, first_bytes(&stream)).await {
                            Ok(Some(Sniffed::Http)) => {
                                let _ = http.send((Counted { inner: stream, _place: place }, client)).await;
                            }
                            Ok(Some(Sniffed::IceTcp)) => ice_tcp.accept(stream, client, place),
                            Ok(Some(Sniffed::Neither)) => metrics.refused("unrecognized"),
                            Ok(None) => {}
                            Err(_) => metrics.refused("silent"),
                        }
                    });
                }
            }
        }
    }

    /// The next connection within budget; refuses (and counts) the others.
    async fn accept_within_budget(&mut self) -> (TcpStream, SocketAddr, Place) {
        loop {
            let (stream, client) = match self.tcp.accept().await {
                Ok(accepted) => accepted,
                Err(err) => {
                    self.on_accept_error(err).await;
                    continue;
                }
            };
            match self.connections.try_take(client.ip()) {
                Ok(place) => return (stream, client, place),
                Err(refusal) => {
                    let reason = match refusal {
                        Refusal::Total => "connections",
                        Refusal::PerIp => "connections_per_ip",
                    };
                    self.metrics.refused(reason);
                    tracing::debug!(%client, reason, "connection refused");
                    if self.answer_busy {
                        // Non-blocking: a fresh socket's send buffer takes it whole, or the
                        // client loses the answer; either way we never wait on it.
                        let _ = stream.try_write(BUSY_RESPONSE);
                    }
                }
            }
        }
    }

    async fn on_accept_error(&mut self, err: io::Error) {
        let exhausted = matches!(err.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE));
        if !exhausted {
            // Aborted handshakes and the like: nothing to wait for.
            if !matches!(
                err.kind(),
                io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::Interrupted
            ) {
                tracing::warn!(%err, "TCP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            return;
        }
        self.metrics.refused("fd_exhausted");
        tracing::warn!(%err, "out of file descriptors: refusing the next connection");
        if self.spare.take().is_some() {
            // With one descriptor free, take the waiting connection off the backlog and
            // close it, so its client is told now rather than left hanging.
            if let Ok((stream, _)) = self.tcp.accept().await {
                if self.answer_busy {
                    let _ = stream.try_write(BUSY_RESPONSE);
                }
                drop(stream);
            }
            self.spare = open_spare();
        }
        // Let sessions or connections end before trying again.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What a connection's first bytes say it is.
enum Sniffed {
    Http,
    IceTcp,
    /// Neither HTTP, TLS nor a STUN binding request in an RFC 4571 frame.
    Neither,
}

/// Looks at `stream`'s first bytes without taking them (`None`: it closed first).
async fn first_bytes(stream: &TcpStream) -> Option<Sniffed> {
    const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
    let mut head = [0u8; 10];
    for waits in 0u32.. {
        let n = stream.peek(&mut head).await.ok()?;
        match head[..n] {
            [] => return None,
            // A letter (an HTTP method) or a TLS record: the HTTP server's.
            [first, ..] if first == 0x16 || first >= 0x20 => return Some(Sniffed::Http),
            // A frame of under 8192 bytes: STUN, if its header says so.
            [_, _, 0x00, 0x01, _, _, a, b, c, d] if [a, b, c, d] == MAGIC_COOKIE => {
                return Some(Sniffed::IceTcp);
            }
            _ if n == head.len() => return Some(Sniffed::Neither),
            // Not all ten bytes yet: they come in the same segment, or soon after. A
            // client that dribbles them is looked at less and less often.
            _ => tokio::time::sleep(Duration::from_millis(5 << waits.min(8))).await,
        }
    }
    None
}

fn open_spare() -> Option<std::fs::File> {
    std::fs::File::open("/dev/null").ok()
}

impl axum::serve::Listener for CountingListener {
    type Io = Counted<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        self.accept_counted().await
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busy_answer_is_well_formed() {
        let text = std::str::from_utf8(BUSY_RESPONSE).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|l| l.parse().ok())
            .unwrap();
        assert_eq!(body.len(), length);
        assert!(serde_json::from_str::<serde_json::Value>(body).is_ok());
    }
}
