//! The TCP listener under axum, with a budget: every accepted connection holds a
//! place in a [`PerIp`] (total and per client IP) until it closes. Over a cap the
//! connection is answered `503` at once (one non-blocking write) and closed, so the
//! process never reaches its file limit and `accept` never fails for lack of one.
//!
//! Should `accept` fail anyway (`EMFILE`: media sockets, files), a spare descriptor
//! is given up to accept and close the waiting connection, then taken back: the
//! client learns at once instead of waiting in the backlog.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::limits::{PerIp, Place, Refusal};
use crate::metrics::Metrics;

/// What a refused plain-HTTP client reads before the close.
const BUSY_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\
Retry-After: 5\r\nConnection: close\r\nContent-Length: 73\r\n\r\n\
{\"error\":\"busy\",\"message\":\"too many connections; try again in a moment\"}\n";

/// A TCP listener that counts its connections and refuses over budget.
pub struct CountingListener {
    tcp: TcpListener,
    connections: Arc<PerIp>,
    metrics: Arc<Metrics>,
    /// Whether refused clients get [`BUSY_RESPONSE`] (plain HTTP) or just a close (TLS).
    answer_busy: bool,
    /// Held to be given up when `accept` fails with `EMFILE` (see the module doc).
    spare: Option<std::fs::File>,
}

/// An accepted connection; its place in the budget is freed when it closes.
pub struct Counted<S> {
    inner: S,
    _place: Place,
}

impl CountingListener {
    pub fn new(tcp: TcpListener, connections: Arc<PerIp>, metrics: Arc<Metrics>, answer_busy: bool) -> Self {
        CountingListener { tcp, connections, metrics, answer_busy, spare: open_spare() }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// The next connection within budget; refuses (and counts) the others.
    pub async fn accept_counted(&mut self) -> (Counted<TcpStream>, SocketAddr) {
        loop {
            let (stream, client) = match self.tcp.accept().await {
                Ok(accepted) => accepted,
                Err(err) => {
                    self.on_accept_error(err).await;
                    continue;
                }
            };
            match self.connections.try_take(client.ip()) {
                Ok(place) => return (Counted { inner: stream, _place: place }, client),
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
        self.tcp.local_addr()
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
