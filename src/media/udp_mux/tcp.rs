//! ICE-TCP on one port for every session (RFC 6544 passive host candidates, RFC 4571
//! framing), for clients whose UDP is blocked.
//!
//! Connections come from the HTTP listener, which tells them from HTTP by their first
//! bytes (`crate::control::listener`), or from a listener of their own (`--tcp-port`). A
//! connection's first frame must be a STUN binding request whose USERNAME names a
//! session's ICE ufrag and whose MESSAGE-INTEGRITY verifies with its password (the UDP
//! mux's rule); then it belongs to that session. Each PeerConnection's driver sees a
//! listener view of its own ([`View`], from `MuxRuntime::wrap_tcp_listener`), which
//! hands it the connections that authenticated for it, as the UDP inbox hands it
//! datagrams: webrtc-rs keeps ICE, DTLS and data channels over them, and the session's
//! media plane takes every RTP and RTCP frame on the connection's reader task, as it
//! does on the UDP reader, answering through [`MuxSender`] (framed, queued, never
//! waiting).
//!
//! Limits: the listener's connection caps (total and per client address); the first
//! frame within [`AUTH_TIMEOUT`], a frame at least every [`IDLE_TIMEOUT`] after
//! (consent checks come every few seconds); frames of at most [`MAX_FRAME`] bytes; what
//! waits to be written at most [`MAX_QUEUED`] bytes per connection, and what waits for
//! the driver at most as much: beyond, frames are dropped and counted. A slow or stuck
//! reader costs its own frames, never the server's memory.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use webrtc::runtime::{AsyncTcpListener, AsyncTcpStream};

use super::{IceCredentials, MediaHook, MuxSender, Via, authenticate, lock};

/// The first frame (a binding request) must arrive within this.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(5);
/// A bound connection with no frame for this long is closed: ICE checks consent every
/// few seconds on the pair it uses.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest frame taken (STUN, DTLS records and media stay under the path MTU); a
/// larger one closes the connection.
pub const MAX_FRAME: usize = 4096;
/// Bytes that may wait to be written to one connection, or to be read by its driver.
pub const MAX_QUEUED: usize = 256 * 1024;
/// Connections one session may hold at once (ICE tries one per candidate pair; a
/// client with its session's credentials gets no more queues than this).
pub const MAX_PER_SESSION: usize = 4;

/// What the TCP mux counted, for `/api/sessions` (`media.tcp`).
#[derive(Debug, Default)]
pub struct TcpStats {
    /// Connections whose first bytes were ICE-TCP's.
    pub accepted: AtomicU64,
    /// Of those, the ones whose first frame authenticated for a session.
    pub bound: AtomicU64,
    /// Refused: the first frame was no binding request for a session, or did not verify.
    pub unauthenticated: AtomicU64,
    /// Refused: the session held [`MAX_PER_SESSION`] connections already.
    pub over_session_cap: AtomicU64,
    /// Closed for silence: no first frame in [`AUTH_TIMEOUT`], or none for [`IDLE_TIMEOUT`].
    pub timed_out: AtomicU64,
    /// Closed for a frame over [`MAX_FRAME`].
    pub oversize: AtomicU64,
    /// Connections open now.
    pub open: AtomicU64,
    /// Frames a media hook took (RTP and RTCP).
    pub hooked: AtomicU64,
    /// Frames handed to a PeerConnection's driver (STUN, DTLS).
    pub delivered: AtomicU64,
    /// Frames dropped because a queue was full: to the peer (a slow reader) or to the driver.
    pub dropped: AtomicU64,
}

impl TcpStats {
    pub fn to_json(&self) -> serde_json::Value {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        serde_json::json!({
            "accepted": get(&self.accepted),
            "bound": get(&self.bound),
            "unauthenticated": get(&self.unauthenticated),
            "over_session_cap": get(&self.over_session_cap),
            "timed_out": get(&self.timed_out),
            "oversize": get(&self.oversize),
            "open": get(&self.open),
            "hooked": get(&self.hooked),
            "delivered": get(&self.delivered),
            "dropped": get(&self.dropped),
        })
    }
}

/// The ICE-TCP port of every session.
#[derive(Clone)]
pub struct TcpMux {
    inner: Arc<TcpInner>,
}

struct TcpInner {
    port: u16,
    /// Every PeerConnection's view, by its ICE ufrag.
    views: RwLock<HashMap<String, Weak<View>>>,
    stats: TcpStats,
    crypto: Arc<dyn rtc::crypto::RTCCryptoProvider>,
}

impl std::fmt::Debug for TcpMux {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpMux").field("port", &self.inner.port).finish_non_exhaustive()
    }
}

impl TcpMux {
    /// The mux of TCP port `port` (the listener that feeds it is bound elsewhere).
    pub fn new(port: u16) -> io::Result<TcpMux> {
        let crypto = rtc::crypto::default_provider().map_err(io::Error::other)?;
        Ok(TcpMux {
            inner: Arc::new(TcpInner { port, views: RwLock::default(), stats: TcpStats::default(), crypto }),
        })
    }

    pub fn port(&self) -> u16 {
        self.inner.port
    }

    pub fn stats(&self) -> &TcpStats {
        &self.inner.stats
    }

    /// Serves `stream` from `peer`, whose first bytes are ICE-TCP's, on a task of its
    /// own; `place` (what the caller holds for it, e.g. its share of the connection
    /// caps) is dropped when it closes.
    pub fn accept(&self, stream: TcpStream, peer: SocketAddr, place: impl Send + 'static) {
        self.inner.stats.accepted.fetch_add(1, Ordering::Relaxed);
        let inner = Arc::clone(&self.inner);
        tokio::spawn(async move {
            inner.stats.open.fetch_add(1, Ordering::Relaxed);
            serve(&inner, stream, peer).await;
            inner.stats.open.fetch_sub(1, Ordering::Relaxed);
            drop(place);
        });
    }

    /// The listener a PeerConnection's driver accepts its connections from: named
    /// `local` (the shared port on the address the driver asked for), for the
    /// PeerConnection with `credentials`, whose frames `hook` sees first.
    pub(super) fn view(
        &self,
        local: SocketAddr,
        credentials: &IceCredentials,
        hook: Option<Arc<dyn MediaHook>>,
    ) -> Arc<View> {
        let view = Arc::new(View {
            mux: Arc::downgrade(&self.inner),
            ufrag: credentials.ufrag.clone(),
            password: credentials.password.clone(),
            local: SocketAddr::new(local.ip(), self.inner.port),
            hook,
            accepted: Mutex::default(),
            waker: AtomicWaker::new(),
            seats: Arc::default(),
            ended: tokio::sync::watch::Sender::new(()),
        });
        let mut views = self.inner.views.write().unwrap_or_else(|e| e.into_inner());
        views.retain(|_, view| view.strong_count() > 0);
        views.insert(credentials.ufrag.clone(), Arc::downgrade(&view));
        view
    }
}

/// One connection: authenticate its first frame, then hand its frames to the
/// session's plane (media) or driver (the rest) until it ends or falls silent.
async fn serve(inner: &Arc<TcpInner>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().unwrap_or(peer);
    let (read, write) = stream.into_split();
    let mut frames = Frames::new(read);
    let first = match tokio::time::timeout(AUTH_TIMEOUT, frames.next()).await {
        Ok(Ok(Some(frame))) => frame,
        Ok(Err(FrameError::Oversize)) => return count(&inner.stats.oversize),
        Err(_) => return count(&inner.stats.timed_out),
        Ok(_) => return,
    };
    let found = authenticate(first, inner.crypto.crypto(), |ufrag| {
        let views = inner.views.read().unwrap_or_else(|e| e.into_inner());
        let view = views.get(ufrag)?.upgrade()?;
        let password = view.password.clone();
        Some((view, password))
    });
    let Ok(view) = found else { return count(&inner.stats.unauthenticated) };
    let Some(_seat) = Seat::take(&view.seats) else { return count(&inner.stats.over_session_cap) };
    count(&inner.stats.bound);
    let connection = Arc::new(Connection {
        queue: Mutex::default(),
        ready: Notify::new(),
        closed: AtomicBool::new(false),
        stats: Arc::downgrade(inner),
    });
    tokio::spawn(write_out(write, Arc::clone(&connection)));
    let to_driver = Arc::new(Stream {
        connection: Arc::clone(&connection),
        local: SocketAddr::new(local.ip(), view.local.port()),
        peer,
        inbound: Mutex::default(),
        waker: AtomicWaker::new(),
    });
    view.offer(Arc::clone(&to_driver));
    to_driver.deliver(first, &inner.stats);
    frames.chunk = MAX_FRAME;
    let (hook, mut ended) = (view.hook.clone(), view.ended.subscribe());
    // Only the driver holds its view: when it lets go, the PeerConnection is over,
    // and so is this connection.
    drop(view);
    let via = MuxSender { via: Via::Tcp(Arc::clone(&connection)) };
    loop {
        let read = tokio::select! {
            read = tokio::time::timeout(IDLE_TIMEOUT, frames.next()) => read,
            _ = ended.changed() => break,
        };
        let frame = match read {
            Ok(Ok(Some(frame))) => frame,
            Ok(Err(FrameError::Oversize)) => {
                count(&inner.stats.oversize);
                break;
            }
            Err(_) => {
                count(&inner.stats.timed_out);
                break;
            }
            Ok(_) => break,
        };
        // The hook sees every frame, as on UDP: it takes media, and learns the way
        // back to the client from DTLS.
        if let Some(hook) = &hook
            && hook.on_datagram(frame, peer, &via)
        {
            count(&inner.stats.hooked);
            continue;
        }
        to_driver.deliver(frame, &inner.stats);
    }
    to_driver.end();
    connection.close();
}

/// One of a session's [`MAX_PER_SESSION`] places for connections, held while one is open.
struct Seat(Arc<AtomicUsize>);

impl Seat {
    fn take(seats: &Arc<AtomicUsize>) -> Option<Seat> {
        let taken = seats.fetch_add(1, Ordering::Relaxed);
        let seat = Seat(Arc::clone(seats));
        (taken < MAX_PER_SESSION).then_some(seat)
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn count(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

enum FrameError {
    Oversize,
    Io,
}

/// Bytes read at a time before a connection has authenticated (a binding request
/// fits): a stranger's connection holds no more than this.
const FIRST_READ: usize = 512;

/// RFC 4571 frames (a 2-byte length, then the packet) read from a connection into
/// one buffer, handed out in place.
struct Frames {
    read: tokio::net::tcp::OwnedReadHalf,
    buf: Vec<u8>,
    /// Where the unread bytes of `buf` start.
    start: usize,
    /// How much one read asks for.
    chunk: usize,
}

impl Frames {
    fn new(read: tokio::net::tcp::OwnedReadHalf) -> Frames {
        Frames { read, buf: Vec::new(), start: 0, chunk: FIRST_READ }
    }

    /// The next frame (`None` at the end of the stream), valid until the next call.
    async fn next(&mut self) -> Result<Option<&mut [u8]>, FrameError> {
        loop {
            let unread = &self.buf[self.start..];
            if unread.len() >= 2 {
                let len = usize::from(u16::from_be_bytes([unread[0], unread[1]]));
                if len > MAX_FRAME {
                    return Err(FrameError::Oversize);
                }
                if unread.len() >= 2 + len {
                    let frame = self.start + 2..self.start + 2 + len;
                    self.start = frame.end;
                    return Ok(Some(&mut self.buf[frame]));
                }
            }
            // Keep what is unread at the front, then read more after it.
            self.buf.drain(..self.start);
            self.start = 0;
            let filled = self.buf.len();
            self.buf.resize(filled + self.chunk, 0);
            match self.read.read(&mut self.buf[filled..]).await {
                Ok(0) => return Ok(None),
                Ok(n) => self.buf.truncate(filled + n),
                Err(_) => {
                    self.buf.truncate(filled);
                    return Err(FrameError::Io);
                }
            }
        }
    }
}

/// The writing side of one connection: whole frames queued, written by a task of
/// its own, so that no sender ever waits for the peer.
pub struct Connection {
    queue: Mutex<VecDeque<u8>>,
    ready: Notify,
    closed: AtomicBool,
    stats: Weak<TcpInner>,
}

impl Connection {
    /// Queues `packet` with its length in front (RFC 4571); dropped, and counted,
    /// when the queue is full or the packet cannot be framed.
    pub(super) fn send_frame(&self, packet: &[u8]) {
        match u16::try_from(packet.len()) {
            Ok(len) => self.queue_bytes(&[&len.to_be_bytes(), packet]),
            Err(_) => self.dropped(),
        }
    }

    /// Queues bytes that are framed already (what the driver writes), whole or not at all.
    fn queue_bytes(&self, parts: &[&[u8]]) {
        if self.closed.load(Ordering::Relaxed) {
            return;
        }
        let len: usize = parts.iter().map(|part| part.len()).sum();
        {
            let mut queue = lock(&self.queue);
            if queue.len() + len > MAX_QUEUED {
                drop(queue);
                return self.dropped();
            }
            for part in parts {
                queue.extend(part.iter());
            }
        }
        self.ready.notify_one();
    }

    fn dropped(&self) {
        if let Some(inner) = self.stats.upgrade() {
            count(&inner.stats.dropped);
        }
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.ready.notify_one();
    }
}

/// Writes what `connection` queues until it closes or a write fails.
async fn write_out(mut write: tokio::net::tcp::OwnedWriteHalf, connection: Arc<Connection>) {
    let mut chunk = Vec::with_capacity(16 * 1024);
    loop {
        connection.ready.notified().await;
        loop {
            {
                let mut queue = lock(&connection.queue);
                let take = queue.len().min(chunk.capacity());
                chunk.clear();
                chunk.extend(queue.drain(..take));
            }
            if chunk.is_empty() {
                break;
            }
            if write.write_all(&chunk).await.is_err() {
                connection.close();
                return;
            }
        }
        if connection.closed.load(Ordering::Relaxed) {
            let _ = write.shutdown().await;
            return;
        }
    }
}

/// A PeerConnection's listener on the shared TCP port (the driver's
/// `AsyncTcpListener`): it yields the connections that authenticated for it.
pub struct View {
    mux: Weak<TcpInner>,
    ufrag: String,
    password: String,
    local: SocketAddr,
    hook: Option<Arc<dyn MediaHook>>,
    accepted: Mutex<VecDeque<Arc<Stream>>>,
    waker: AtomicWaker,
    /// Connections bound to it now (at most [`MAX_PER_SESSION`]).
    seats: Arc<AtomicUsize>,
    /// Dropped with the view: every connection bound to it ends.
    ended: tokio::sync::watch::Sender<()>,
}

impl std::fmt::Debug for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View").field("local", &self.local).finish_non_exhaustive()
    }
}

impl View {
    fn offer(&self, stream: Arc<Stream>) {
        lock(&self.accepted).push_back(stream);
        self.waker.wake();
    }
}

impl Drop for View {
    /// The PeerConnection is gone: its ufrag no longer names anyone.
    fn drop(&mut self) {
        if let Some(inner) = self.mux.upgrade() {
            let mut views = inner.views.write().unwrap_or_else(|e| e.into_inner());
            if views.get(&self.ufrag).is_some_and(|view| view.strong_count() == 0) {
                views.remove(&self.ufrag);
            }
        }
    }
}

impl AsyncTcpListener for View {
    /// The next connection that authenticated for this PeerConnection; pending until
    /// there is one (never an error: the driver would ask again at once).
    fn accept<'a>(
        &'a self,
    ) -> Pin<Box<dyn Future<Output = io::Result<(Arc<dyn AsyncTcpStream>, SocketAddr)>> + Send + 'a>> {
        Box::pin(std::future::poll_fn(move |cx| {
            let take = || lock(&self.accepted).pop_front();
            let stream = take().or_else(|| {
                self.waker.register(cx.waker());
                take()
            });
            match stream {
                Some(stream) => {
                    let peer = stream.peer;
                    Poll::Ready(Ok((stream as Arc<dyn AsyncTcpStream>, peer)))
                }
                None => Poll::Pending,
            }
        }))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// One connection as its PeerConnection's driver sees it (`AsyncTcpStream`): the
/// frames that are not media, framed again (the driver decodes RFC 4571 itself), and
/// its writes queued on the connection.
pub struct Stream {
    connection: Arc<Connection>,
    local: SocketAddr,
    peer: SocketAddr,
    inbound: Mutex<Inbound>,
    waker: AtomicWaker,
}

#[derive(Default)]
struct Inbound {
    bytes: VecDeque<u8>,
    ended: bool,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream").field("local", &self.local).field("peer", &self.peer).finish_non_exhaustive()
    }
}

impl Stream {
    /// Hands `frame` to the driver, framed; dropped (counted) when it lags too far.
    fn deliver(&self, frame: &[u8], stats: &TcpStats) {
        {
            let mut inbound = lock(&self.inbound);
            if inbound.bytes.len() + 2 + frame.len() > MAX_QUEUED {
                count(&stats.dropped);
                return;
            }
            inbound.bytes.extend((frame.len() as u16).to_be_bytes());
            inbound.bytes.extend(frame.iter());
        }
        count(&stats.delivered);
        self.waker.wake();
    }

    /// The connection ended: the driver reads its end.
    fn end(&self) {
        lock(&self.inbound).ended = true;
        self.waker.wake();
    }

    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let drain = |buf: &mut [u8]| {
            let mut inbound = lock(&self.inbound);
            let n = inbound.bytes.len().min(buf.len());
            for (slot, byte) in buf.iter_mut().zip(inbound.bytes.drain(..n)) {
                *slot = byte;
            }
            (n, inbound.ended)
        };
        match drain(buf) {
            (0, false) => {}
            (n, _) => return Poll::Ready(Ok(n)),
        }
        self.waker.register(cx.waker());
        match drain(buf) {
            (0, false) => Poll::Pending,
            (n, _) => Poll::Ready(Ok(n)),
        }
    }
}

impl AsyncTcpStream for Stream {
    fn read<'a, 'b>(
        &'a self,
        buf: &'b mut [u8],
    ) -> Pin<Box<dyn Future<Output = io::Result<usize>> + Send + 'b>>
    where
        'a: 'b,
    {
        Box::pin(std::future::poll_fn(move |cx| self.poll_read(cx, buf)))
    }

    /// `buf` is one frame the driver made: queued whole, never waited on.
    fn write_all<'a, 'b>(&'a self, buf: &'b [u8]) -> Pin<Box<dyn Future<Output = io::Result<()>> + Send + 'b>>
    where
        'a: 'b,
    {
        self.connection.queue_bytes(&[buf]);
        Box::pin(std::future::ready(Ok(())))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames split across reads, back to back, and too large.
    #[tokio::test]
    async fn frames_are_read_across_partial_reads_and_bounded() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let writer = tokio::spawn(async move {
            let mut client = TcpStream::connect(addr).await.unwrap();
            let mut bytes = Vec::new();
            for frame in [&b"first"[..], b"", b"the third frame"] {
                bytes.extend((frame.len() as u16).to_be_bytes());
                bytes.extend(frame);
            }
            for piece in bytes.chunks(3) {
                client.write_all(piece).await.unwrap();
                client.flush().await.unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            client.write_all(&((MAX_FRAME + 1) as u16).to_be_bytes()).await.unwrap();
            client
        });
        let (server, _) = listener.accept().await.unwrap();
        let (read, _write) = server.into_split();
        let mut frames = Frames::new(read);
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(frames.next().await.ok().flatten().expect("a frame").to_vec());
        }
        assert_eq!(got, [b"first".to_vec(), Vec::new(), b"the third frame".to_vec()]);
        assert!(matches!(frames.next().await, Err(FrameError::Oversize)));
        drop(writer.await.unwrap());
    }

    /// A peer that never reads: what waits for it stays under MAX_QUEUED, the rest is
    /// dropped and counted, and the sender never waits.
    #[tokio::test]
    async fn a_slow_reader_costs_its_own_frames_not_memory() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let mux = TcpMux::new(0).unwrap();
        let connection = Arc::new(Connection {
            queue: Mutex::default(),
            ready: Notify::new(),
            closed: AtomicBool::new(false),
            stats: Arc::downgrade(&mux.inner),
        });
        let (_read, write) = server.into_split();
        tokio::spawn(write_out(write, Arc::clone(&connection)));
        let frame = [0x80u8; 1200];
        let sent = 10_000; // 12 MB, far past what the kernel's buffers take
        let started = std::time::Instant::now();
        for _ in 0..sent {
            connection.send_frame(&frame);
            tokio::task::yield_now().await;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "sending never waits for the peer");
        let queued = lock(&connection.queue).len();
        let dropped = mux.stats().dropped.load(Ordering::Relaxed);
        println!("queued {queued} bytes, dropped {dropped} of {sent} frames");
        assert!(queued <= MAX_QUEUED, "{queued} bytes queued");
        assert!(dropped > sent / 2, "only {dropped} dropped");
        drop(client);
    }
}
