//! The media sockets: every PeerConnection's UDP goes through a mux, which binds
//! its sockets (one per local address; one port for every session, or a port per
//! session from a range) and demultiplexes what arrives to the PeerConnections.
//!
//! How it plugs into webrtc-rs: every server PeerConnection runs on its own
//! `MuxRuntime`, which is webrtc's `TokioRuntime` except for its sockets. The
//! driver binds an ephemeral socket per local address and asks the runtime to wrap
//! it; we drop that socket and hand back a `MuxSocket` whose `local_addr()` is the
//! mux socket's address, so the host candidate names the mux port, or decline the
//! address where the mux cannot serve it (a wildcard: no interface to name), so no
//! media ever arrives beside the mux (vendor/PATCHES.md, patches 1 and 9; TCP
//! listeners likewise become views of the ICE-TCP port, `tcp`).
//!
//! Demultiplexing, as Pion's UDPMux does, in this order:
//! - an answer to a STUN request one of our PeerConnections sent (its transaction
//!   id is remembered) goes back to the sender, from wherever it comes: so `--stun`
//!   gathering and our own connectivity checks work, and nobody can claim a STUN
//!   server's address to take its answers;
//! - a STUN binding request goes to the PeerConnection its USERNAME names, if its
//!   MESSAGE-INTEGRITY verifies with that PeerConnection's ICE password (we set both
//!   per PeerConnection, so the mux knows them before the first packet), and teaches
//!   the mux its source address. An address in use stays with its owner; one its
//!   owner has not used for [`ADDRESS_IDLE`] moves to the PeerConnection that
//!   authenticates from it (a NAT that gave the port to someone else), and is
//!   forgotten after that long anyway (RFC 7675: consent lapses long before). Once
//!   its session is connected, a consent check on the pair in use is answered right
//!   here ([`consent`]), and the PeerConnection never sees it;
//! - any other datagram from a remote address we know goes to the PeerConnection
//!   that address belongs to;
//! - everything else is counted and dropped.
//!
//! Cost per packet: one reader thread per socket (`reader`: it sleeps in `poll(2)`
//! and reads in batches with `recvmmsg`; or one [`ReaderGroup`] thread for the
//! sockets of many muxes), one hash lookup, then either the PeerConnection's
//! [`MediaHook`] (its media plane handles media right there, on this thread; the
//! hooks' timers tick there too, one wake for all) or a copy into the
//! PeerConnection's inbox (buffers are recycled, so nothing is allocated once an inbox
//! has warmed up) and one wake of its driver. Sends go straight to the socket, from
//! anyone, never waiting. A hook that panics loses its PeerConnection the mux, not
//! the reader its other sessions.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr, UdpSocket as StdUdpSocket};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::task::AtomicWaker;
use rtc::stun::attributes::{ATTR_MESSAGE_INTEGRITY, ATTR_USERNAME};
use rtc::stun::fingerprint::FINGERPRINT;
use rtc::stun::integrity::MessageIntegrity;
use rtc::stun::message::{BINDING_REQUEST, MAGIC_COOKIE, Message};
use rtc::stun::textattrs::Username;
use webrtc::runtime::{
    AsyncInterval, AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, JoinHandle, RecvMeta, Runtime,
    TokioRuntime, Transmit, UdpSockRef, UdpSocketState,
};

use crate::media::token_bucket::TokenBucket;

mod consent;
mod reader;
pub mod tcp;
pub use reader::ReaderGroup;
pub use tcp::TcpMux;

/// Datagrams an inbox holds for a PeerConnection whose driver has not read them yet
/// (bounded: a stalled session loses its own packets, nobody else's).
const INBOX_DEPTH: usize = 256;
/// Largest datagram the mux passes on (the driver's receive buffer); WebRTC stays
/// under the path MTU (~1500).
const MAX_DATAGRAM: usize = 2000;
/// Remote addresses one PeerConnection may be reached from at once (a browser has a
/// few: host, reflexive, relayed, per interface); a new one past this replaces its
/// least recently used.
const MAX_ADDRESSES: usize = 16;
/// A remote address unused this long is forgotten, and may be taken over by another
/// PeerConnection that authenticates from it: a live ICE agent checks consent every
/// few seconds (RFC 7675 lets consent lapse after 30 s without an answer).
pub const ADDRESS_IDLE: Duration = Duration::from_secs(15);
/// How often the reader looks for idle addresses.
const EXPIRE_EVERY: Duration = Duration::from_secs(5);
/// Consent checks of one session answered on the reader per second, and in a burst.
const CONSENT_PER_SECOND: f64 = 10.0;
const CONSENT_BURST: f64 = 20.0;
/// Bytes asked of the kernel for the shared socket's buffers: it carries every session.
const SOCKET_BUFFER: usize = 4 << 20;

/// Media a PeerConnection's owner handles itself, on the mux's reader, before the
/// PeerConnection's driver sees it (the media plane: `media::plane`).
pub trait MediaHook: Send + Sync {
    /// Called for each datagram from an address of the PeerConnection, as it lies
    /// in the reader's buffer (the hook may rewrite it in place); `via` answers on
    /// the socket it came in on. True: it was handled here, the driver never gets it.
    fn on_datagram(&self, datagram: &mut [u8], from: SocketAddr, via: &MuxSender) -> bool;

    /// Called every [`HOOK_TICK`] or so on the same thread, for timers a quiet
    /// stream leaves due: one wake of the reader serves every hook on the socket.
    /// False: this hook has no timers (while no hook has any, the reader sleeps
    /// up to [`IDLE_WAIT`]).
    fn on_tick(&self, _now: Instant) -> bool {
        false
    }

    /// True once the session is connected (DTLS done) and its media goes to `from` on
    /// `via`'s socket: the pair ICE selected, whose consent checks the mux answers
    /// itself (`consent`) from then on; its driver gets none of them.
    fn in_use(&self, _from: SocketAddr, _via: &MuxSender) -> bool {
        false
    }
}

/// How often [`MediaHook::on_tick`] runs.
pub const HOOK_TICK: Duration = Duration::from_millis(200);
/// How long the reader sleeps when no hook needs ticks (a stop wakes it at once;
/// a hook attached meanwhile gets its first tick after at most this).
const IDLE_WAIT: Duration = Duration::from_secs(1);

/// Sends on a mux's socket, or on one ICE-TCP connection, for a [`MediaHook`] (from
/// the reader or elsewhere).
#[derive(Clone)]
pub struct MuxSender {
    via: Via,
}

#[derive(Clone)]
enum Via {
    Udp(Arc<Shared>),
    Tcp(Arc<tcp::Connection>),
}

/// Which transport a [`MuxSender`] sends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

impl MuxSender {
    fn udp(shared: &Arc<Shared>) -> MuxSender {
        MuxSender { via: Via::Udp(Arc::clone(shared)) }
    }

    /// Whether both send on the same socket (or connection).
    pub fn same_socket(&self, other: &MuxSender) -> bool {
        match (&self.via, &other.via) {
            (Via::Udp(a), Via::Udp(b)) => Arc::ptr_eq(a, b),
            (Via::Tcp(a), Via::Tcp(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    pub fn transport(&self) -> Transport {
        match self.via {
            Via::Udp(_) => Transport::Udp,
            Via::Tcp(_) => Transport::Tcp,
        }
    }

    /// Routes `datagram` from `from` as this socket's reader would have, had it just
    /// read it (the fuzz targets and benchmarks feed a mux this way; nothing for TCP).
    pub fn route(&self, datagram: &mut [u8], from: SocketAddr) {
        if let Via::Udp(shared) = &self.via {
            shared.batched(|| shared.dispatch(datagram, from, self, Instant::now()));
        }
    }

    /// Sends `datagram` to `to` now (on TCP, framed, to the connection's peer); a
    /// full send buffer drops it (counted in `send_dropped`, as for the drivers' sends).
    pub fn send(&self, datagram: &[u8], to: SocketAddr) {
        match &self.via {
            Via::Udp(shared) => shared.send_now(datagram, to),
            Via::Tcp(connection) => connection.send_frame(datagram),
        }
    }

    /// Sends `datagrams` to `to` in as few `sendmsg`s as UDP GSO allows (a frame's
    /// packets, of one size but the last, leave in one), as webrtc-rs's driver sends
    /// what one write queued.
    pub fn send_all<'a>(&self, datagrams: impl IntoIterator<Item = &'a [u8]>, to: SocketAddr) {
        match &self.via {
            Via::Udp(shared) => {
                shared.batched(|| datagrams.into_iter().for_each(|datagram| shared.send_now(datagram, to)))
            }
            Via::Tcp(connection) => {
                datagrams.into_iter().for_each(|datagram| connection.send_frame(datagram))
            }
        }
    }
}

/// What the mux counted, for `/api/sessions` (`media.mux`).
#[derive(Debug, Default)]
pub struct MuxStats {
    /// Datagrams handed to a PeerConnection.
    pub delivered: AtomicU64,
    /// Datagrams a media hook handled (the driver never saw them).
    pub hooked: AtomicU64,
    /// Consent checks of connected sessions answered by the mux (`consent`).
    pub consent_answered: AtomicU64,
    /// From an unknown address and not a STUN binding request naming a known ufrag.
    pub dropped_unknown: AtomicU64,
    /// STUN binding requests naming a known ufrag whose MESSAGE-INTEGRITY did not verify.
    pub dropped_unauthenticated: AtomicU64,
    /// Authenticated, but from an address another PeerConnection is using.
    pub dropped_address_taken: AtomicU64,
    /// Larger than any datagram WebRTC sends ([`MAX_DATAGRAM`]).
    pub dropped_oversize: AtomicU64,
    /// Dropped because the PeerConnection's inbox was full (its driver is stalled).
    pub dropped_full: AtomicU64,
    /// Sends dropped because the socket's send buffer was full.
    pub send_dropped: AtomicU64,
    /// Remote addresses learned from authenticated binding requests.
    pub addresses_learned: AtomicU64,
    /// Of those, taken over from a PeerConnection that had stopped using them.
    pub addresses_moved: AtomicU64,
    /// Forgotten: unused for [`ADDRESS_IDLE`], or the oldest of a PeerConnection that
    /// learned a new one past [`MAX_ADDRESSES`].
    pub addresses_forgotten: AtomicU64,
    /// Media hooks (or the mux itself) that panicked on a datagram: each cost its
    /// PeerConnection its place on the mux, and nobody else anything.
    pub panics: AtomicU64,
}

impl MuxStats {
    pub fn to_json(&self) -> serde_json::Value {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        serde_json::json!({
            "delivered": get(&self.delivered),
            "hooked": get(&self.hooked),
            "consent_answered": get(&self.consent_answered),
            "dropped_unknown": get(&self.dropped_unknown),
            "dropped_unauthenticated": get(&self.dropped_unauthenticated),
            "dropped_address_taken": get(&self.dropped_address_taken),
            "dropped_oversize": get(&self.dropped_oversize),
            "dropped_full": get(&self.dropped_full),
            "send_dropped": get(&self.send_dropped),
            "addresses_learned": get(&self.addresses_learned),
            "addresses_moved": get(&self.addresses_moved),
            "addresses_forgotten": get(&self.addresses_forgotten),
            "panics": get(&self.panics),
        })
    }
}

/// The sockets of one media port, one per local address, bound on first use (a
/// wildcard listener learns its interface addresses from the driver): the shared
/// port, or one port of a `--udp-port MIN-MAX` range.
#[derive(Clone)]
pub struct UdpMux {
    inner: Arc<MuxInner>,
}

struct MuxInner {
    port: u16,
    sockets: Mutex<HashMap<IpAddr, Arc<Shared>>>,
    /// Addresses whose bind failed: sessions get no candidate there.
    unbindable: Mutex<HashSet<IpAddr>>,
    stats: Arc<MuxStats>,
    next_id: AtomicU64,
    /// Reads the sockets, when not a thread of their own each.
    group: Option<ReaderGroup>,
}

impl Drop for MuxInner {
    /// Stops the reader threads (each wakes at once: see [`Shared::stop`]), or
    /// takes the sockets out of their group's.
    fn drop(&mut self) {
        for shared in self.sockets.get_mut().map(std::mem::take).unwrap_or_default().into_values() {
            match &self.group {
                Some(group) => group.remove(&shared),
                None => shared.stop(),
            }
        }
    }
}

impl fmt::Debug for UdpMux {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpMux").field("port", &self.inner.port).field("addrs", &self.local_addrs()).finish()
    }
}

impl UdpMux {
    /// Binds `port` on `ip` now (so a taken port fails start-up, not the first
    /// session; 0 takes a free one). A wildcard `ip` is probed (bound and released):
    /// the driver names the interfaces, and each gets its socket on first use.
    pub fn bind(ip: IpAddr, port: u16) -> io::Result<UdpMux> {
        Self::bind_in(ip, port, None, Arc::default())
    }

    /// [`UdpMux::bind`], its sockets read by `group`'s thread rather than one each,
    /// counting into `stats` (which many muxes may share: a port range's).
    pub fn bind_in(
        ip: IpAddr,
        port: u16,
        group: Option<&ReaderGroup>,
        stats: Arc<MuxStats>,
    ) -> io::Result<UdpMux> {
        // Port 0: any free one, the same on every address from then on.
        let port = match port {
            0 => StdUdpSocket::bind(SocketAddr::new(ip, 0))?.local_addr()?.port(),
            port => port,
        };
        let mux = UdpMux {
            inner: Arc::new(MuxInner {
                port,
                sockets: Mutex::default(),
                unbindable: Mutex::default(),
                stats,
                next_id: AtomicU64::new(1),
                group: group.cloned(),
            }),
        };
        if ip.is_unspecified() {
            drop(StdUdpSocket::bind(SocketAddr::new(ip, port))?);
        } else {
            mux.socket_for(ip)?;
        }
        Ok(mux)
    }

    pub fn port(&self) -> u16 {
        self.inner.port
    }

    pub fn stats(&self) -> &MuxStats {
        &self.inner.stats
    }

    /// The addresses of the shared sockets bound so far.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        let mut addrs: Vec<SocketAddr> = lock(&self.inner.sockets).values().map(|s| s.local).collect();
        addrs.sort();
        addrs
    }

    /// The runtime one PeerConnection runs on, with the ICE credentials it is built
    /// with (see [`IceCredentials`]) and the hook that sees its datagrams first.
    ///
    /// With `tcp`, its TCP listeners are views of that ICE-TCP port (and it never
    /// dials out over TCP).
    pub fn runtime_for(
        &self,
        credentials: &IceCredentials,
        hook: Option<Arc<dyn MediaHook>>,
        tcp: Option<TcpMux>,
    ) -> Arc<dyn Runtime> {
        Arc::new(MuxRuntime { mux: self.clone(), credentials: credentials.clone(), hook, tcp })
    }

    /// Sends on the socket at `ip` (bound already): to drive a hook by hand (the
    /// fuzz targets and benchmarks do).
    pub fn sender(&self, ip: IpAddr) -> Option<MuxSender> {
        lock(&self.inner.sockets).get(&ip).map(MuxSender::udp)
    }

    /// The shared socket on `ip`, bound (and its reader started) on first use.
    fn socket_for(&self, ip: IpAddr) -> io::Result<Arc<Shared>> {
        let mut sockets = lock(&self.inner.sockets);
        if let Some(shared) = sockets.get(&ip) {
            return Ok(Arc::clone(shared));
        }
        let socket = bind_shared(SocketAddr::new(ip, self.inner.port))?;
        let local = socket.local_addr()?;
        let state = UdpSocketState::new(UdpSockRef::from(&socket))?;
        let shared = Arc::new(Shared {
            socket,
            state,
            local,
            epoch: Instant::now(),
            table: RwLock::default(),
            asked: Mutex::default(),
            stats: Arc::clone(&self.inner.stats),
            crypto: rtc::crypto::default_provider().map_err(io::Error::other)?,
            stopping: AtomicBool::new(false),
        });
        match &self.inner.group {
            Some(group) => group.add(Arc::clone(&shared))?,
            None => {
                let reader = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("udp-mux {local}"))
                    .spawn(move || reader::read_loop(reader))?;
            }
        }
        tracing::info!(addr = %local, "UDP mux socket bound");
        sockets.insert(ip, Arc::clone(&shared));
        Ok(shared)
    }

    /// A PeerConnection's socket on the shared socket at `ip`, or `None` for the
    /// driver's mDNS socket (a multicast address: its own). An address the mux
    /// cannot serve is declined (`AddrNotAvailable`, which the driver skips): media
    /// on a port of its own would bypass the media plane.
    fn attach(
        &self,
        ip: IpAddr,
        credentials: &IceCredentials,
        hook: Option<Arc<dyn MediaHook>>,
    ) -> io::Result<Option<MuxSocket>> {
        if ip.is_multicast() {
            return Ok(None);
        }
        // A wildcard means the driver found no interface to name: no peer could use
        // its candidate, and a wildcard socket on the port would block the rest.
        if ip.is_unspecified() {
            return Err(declined(ip, "no interface to name"));
        }
        if lock(&self.inner.unbindable).contains(&ip) {
            return Err(declined(ip, "the mux port cannot be bound here"));
        }
        let shared = match self.socket_for(ip) {
            Ok(shared) => shared,
            Err(err) => {
                tracing::warn!(%ip, port = self.inner.port, %err, "cannot bind the UDP mux port here; sessions get no candidate on this address");
                lock(&self.inner.unbindable).insert(ip);
                return Err(declined(ip, "the mux port cannot be bound here"));
            }
        };
        let inbox = Arc::new(Inbox {
            id: self.inner.next_id.fetch_add(1, Ordering::Relaxed),
            ufrag: credentials.ufrag.clone(),
            password: credentials.password.clone(),
            consent: consent::ConsentKey::new(&credentials.password),
            consent_budget: Mutex::new(TokenBucket::new(CONSENT_PER_SECOND, CONSENT_BURST, Instant::now())),
            addresses: Mutex::default(),
            queue: Mutex::new(Queue::default()),
            waker: AtomicWaker::new(),
            hook,
        });
        {
            let mut table = shared.table.write().unwrap_or_else(|e| e.into_inner());
            if table.by_ufrag.contains_key(&credentials.ufrag) {
                return Err(io::Error::new(io::ErrorKind::AddrInUse, "ICE ufrag already on this mux"));
            }
            table.by_ufrag.insert(credentials.ufrag.clone(), Arc::clone(&inbox));
        }
        Ok(Some(MuxSocket { shared, inbox }))
    }
}

/// What a runtime says to skip an address (the driver binds the rest).
fn declined(ip: IpAddr, why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::AddrNotAvailable, format!("no media socket on {ip}: {why}"))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Binds the shared socket with large buffers: it carries every session's traffic
/// (one socket's default ~200 KB would be shared by all of them).
fn bind_shared(addr: SocketAddr) -> io::Result<StdUdpSocket> {
    let socket = StdUdpSocket::bind(addr)?;
    socket.set_nonblocking(true)?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&socket);
    // Past net.core.[rw]mem_max with CAP_NET_ADMIN (the FORCE options), else up to it.
    for (force, plain) in [(libc::SO_RCVBUFFORCE, libc::SO_RCVBUF), (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF)] {
        if !set_socket_option(fd, force, SOCKET_BUFFER as libc::c_int) {
            set_socket_option(fd, plain, SOCKET_BUFFER as libc::c_int);
        }
    }
    Ok(socket)
}

/// `setsockopt(fd, SOL_SOCKET, name, value)`; false when refused.
fn set_socket_option(fd: std::os::fd::RawFd, name: libc::c_int, value: libc::c_int) -> bool {
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: a valid fd the caller owns, and a c_int option value of the size given.
    unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, name, (&value as *const libc::c_int).cast(), len) == 0 }
}

/// The local ICE username fragment and password of one PeerConnection: chosen here
/// (and given to webrtc via `with_ice_credentials`) so the mux can check a binding
/// request before the PeerConnection has seen a packet.
#[derive(Clone)]
pub struct IceCredentials {
    pub ufrag: String,
    pub password: String,
}

impl fmt::Debug for IceCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IceCredentials").field("ufrag", &self.ufrag).finish_non_exhaustive()
    }
}

impl IceCredentials {
    /// Random ICE credentials: 16 and 32 characters (RFC 8839 asks at least 4 and 22).
    pub fn random() -> IceCredentials {
        use rand::distr::{Alphanumeric, SampleString};
        let mut rng = rand::rng();
        IceCredentials {
            ufrag: Alphanumeric.sample_string(&mut rng, 16),
            password: Alphanumeric.sample_string(&mut rng, 32),
        }
    }

    /// A binding request to the PeerConnection with these credentials, signed as a
    /// remote controlling agent signs one (USERNAME `ufrag:remote`, ICE-CONTROLLING):
    /// what the mux's tests, the benchmarks, the fuzz targets and the hostile-client
    /// tests send.
    pub fn binding_request(&self) -> Vec<u8> {
        let Ok(provider) = rtc::crypto::default_provider() else { return Vec::new() };
        let mut message = Message::new();
        let built = message.build(&[
            Box::new(BINDING_REQUEST),
            Box::new(rtc::stun::message::TransactionId::new()),
            Box::new(Username::new(ATTR_USERNAME, format!("{}:remote", self.ufrag))),
            Box::new(rtc::ice::attributes::control::AttrControlling(1)),
            Box::new(MessageIntegrity::new_short_term_integrity_with_provider(
                self.password.clone(),
                provider.crypto(),
            )),
            Box::new(FINGERPRINT),
        ]);
        built.map(|()| message.raw).unwrap_or_default()
    }
}

/// One shared socket and who is behind it.
struct Shared {
    /// Non-blocking; read by its own thread or its group's (`reader`), written by
    /// anyone (drivers, media hooks) straight through `state`.
    socket: StdUdpSocket,
    state: UdpSocketState,
    local: SocketAddr,
    /// What [`Learned::last_seen`] counts from.
    epoch: Instant,
    table: RwLock<Table>,
    /// STUN requests our PeerConnections sent (transaction id → sender): the answer
    /// goes back to whoever asked, even from an address no session owns (a STUN
    /// server every session asks, a client whose own check has not arrived yet).
    asked: Mutex<HashMap<TransactionId, (Arc<Inbox>, Instant)>>,
    stats: Arc<MuxStats>,
    crypto: Arc<dyn rtc::crypto::RTCCryptoProvider>,
    /// Set when the mux is dropped: the reader thread ends.
    stopping: AtomicBool,
}

#[derive(Default)]
struct Table {
    by_ufrag: HashMap<String, Arc<Inbox>>,
    by_addr: HashMap<SocketAddr, Learned, AddressHashing>,
    /// When idle addresses were last looked for.
    expired_at: Option<Instant>,
}

/// Hashes remote addresses for the table every datagram is looked up in: a multiply
/// per word, seeded per process. The table holds only addresses that authenticated (at
/// most [`MAX_ADDRESSES`] per PeerConnection), so SipHash's defence against chosen keys
/// buys nothing here, and it was the costliest thing the mux did per datagram.
#[derive(Clone, Copy)]
struct AddressHashing(u64);

impl Default for AddressHashing {
    fn default() -> Self {
        AddressHashing(rand::random::<u64>() | 1)
    }
}

impl std::hash::BuildHasher for AddressHashing {
    type Hasher = AddressHasher;
    fn build_hasher(&self) -> AddressHasher {
        AddressHasher(self.0)
    }
}

struct AddressHasher(u64);

impl AddressHasher {
    fn mix(&mut self, word: u64) {
        self.0 = (self.0 ^ word).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(23);
    }
}

impl std::hash::Hasher for AddressHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
    }
    fn write_u8(&mut self, n: u8) {
        self.mix(u64::from(n));
    }
    fn write_u16(&mut self, n: u16) {
        self.mix(u64::from(n));
    }
    fn write_u32(&mut self, n: u32) {
        self.mix(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.mix(n);
    }
    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }
    fn finish(&self) -> u64 {
        let folded = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        folded ^ (folded >> 29)
    }
}

/// A remote address and the PeerConnection it belongs to.
struct Learned {
    inbox: Arc<Inbox>,
    /// Milliseconds since the socket's `epoch` when a datagram last came from it.
    last_seen: AtomicU64,
}

impl Shared {
    fn millis(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_millis() as u64
    }

    /// Routes one datagram from `from`, read at `now` (`via` sends on this socket):
    /// see the module docs for the rules.
    fn dispatch(&self, data: &mut [u8], from: SocketAddr, via: &MuxSender, now: Instant) {
        if data.len() > MAX_DATAGRAM {
            self.stats.dropped_oversize.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let now = self.millis(now);
        // The session `from` belongs to, if `accept` takes it: then the address is
        // in use, as of now.
        let known = |accept: &dyn Fn(&Inbox) -> bool| {
            let table = self.table.read().unwrap_or_else(|e| e.into_inner());
            let learned = table.by_addr.get(&from).filter(|learned| accept(&learned.inbox))?;
            learned.last_seen.store(now, Ordering::Relaxed);
            Some(Arc::clone(&learned.inbox))
        };
        let routed = match self.answer_to(data) {
            Some(inbox) => Ok(inbox),
            // A binding request names whom it is for: routed by that, never by address.
            // Naming the session its address already belongs to (a consent check), it
            // goes there unverified, as the rest of that address's datagrams do (its
            // ICE agent verifies it); anything else is verified here.
            None if is_binding_request(data) => match known(&|owner| names(data, owner)) {
                Some(owner) => Ok(owner),
                None => self.authenticate(data).and_then(|inbox| {
                    self.learn(&inbox, from, now).then_some(inbox).ok_or(Refused::AddressTaken)
                }),
            },
            None => known(&|_| true).ok_or(Refused::Unknown),
        };
        let inbox = match routed {
            Ok(inbox) if self.answered_consent(&inbox, data, from, via) => return,
            Ok(inbox) => inbox,
            Err(refused) => {
                let counter = match refused {
                    Refused::Unknown => &self.stats.dropped_unknown,
                    Refused::Unauthenticated => &self.stats.dropped_unauthenticated,
                    Refused::AddressTaken => &self.stats.dropped_address_taken,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        if let Some(hook) = &inbox.hook {
            let handled =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook.on_datagram(data, from, via)));
            match handled {
                Ok(true) => {
                    self.stats.hooked.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Ok(false) => {}
                Err(_) => {
                    self.stats.panics.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(inbox = inbox.id, %from, "a media hook panicked: its PeerConnection leaves the mux");
                    self.detach(&inbox);
                    return;
                }
            }
        }
        if inbox.push(data, from) {
            self.stats.delivered.fetch_add(1, Ordering::Relaxed);
        } else {
            self.stats.dropped_full.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Answers `data` here if it is a consent check on the pair `inbox`'s connected
    /// session uses (`consent`); false when its driver is to get it.
    fn answered_consent(&self, inbox: &Inbox, data: &[u8], from: SocketAddr, via: &MuxSender) -> bool {
        if !is_binding_request(data) || !inbox.hook.as_ref().is_some_and(|hook| hook.in_use(from, via)) {
            return false;
        }
        if !lock(&inbox.consent_budget).take(Instant::now()) {
            return false;
        }
        let mut answer = [0u8; consent::MAX_ANSWER];
        let Some(len) = consent::answer(data, from, &inbox.consent, &mut answer) else { return false };
        via.send(&answer[..len], from);
        self.stats.consent_answered.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Notes `from` as `inbox`'s, which an authenticated binding request proved
    /// (see the module docs); false when another PeerConnection still uses it.
    fn learn(&self, inbox: &Arc<Inbox>, from: SocketAddr, now: u64) -> bool {
        let idle = ADDRESS_IDLE.as_millis() as u64;
        {
            let table = self.table.read().unwrap_or_else(|e| e.into_inner());
            if let Some(owner) = table.by_addr.get(&from)
                && Arc::ptr_eq(&owner.inbox, inbox)
            {
                owner.last_seen.store(now, Ordering::Relaxed);
                return true; // the usual case: a consent check on a known pair
            }
        }
        let mut table = self.table.write().unwrap_or_else(|e| e.into_inner());
        // Still registered (not closed meanwhile)?
        if !table.by_ufrag.get(&inbox.ufrag).is_some_and(|i| Arc::ptr_eq(i, inbox)) {
            return false;
        }
        if let Some(owner) = table.by_addr.get(&from) {
            if Arc::ptr_eq(&owner.inbox, inbox) {
                owner.last_seen.store(now, Ordering::Relaxed);
                return true;
            }
            if now.saturating_sub(owner.last_seen.load(Ordering::Relaxed)) < idle {
                return false;
            }
            let previous = Arc::clone(&owner.inbox);
            lock(&previous.addresses).retain(|address| *address != from);
            self.stats.addresses_moved.fetch_add(1, Ordering::Relaxed);
        }
        let mut addresses = lock(&inbox.addresses);
        if addresses.len() >= MAX_ADDRESSES {
            // The least recently used of its own makes room: the client moved.
            let last_seen = |address: &SocketAddr| {
                table.by_addr.get(address).map_or(0, |learned| learned.last_seen.load(Ordering::Relaxed))
            };
            if let Some(oldest) = addresses.iter().copied().min_by_key(last_seen) {
                addresses.retain(|address| *address != oldest);
                table.by_addr.remove(&oldest);
                self.stats.addresses_forgotten.fetch_add(1, Ordering::Relaxed);
            }
        }
        addresses.push(from);
        drop(addresses);
        table.by_addr.insert(from, Learned { inbox: Arc::clone(inbox), last_seen: AtomicU64::new(now) });
        self.stats.addresses_learned.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Forgets the addresses nobody has used for [`ADDRESS_IDLE`] (at most every
    /// [`EXPIRE_EVERY`]).
    fn expire_addresses(&self, now: Instant) {
        let mut table = self.table.write().unwrap_or_else(|e| e.into_inner());
        if table.expired_at.is_some_and(|at| now.saturating_duration_since(at) < EXPIRE_EVERY) {
            return;
        }
        table.expired_at = Some(now);
        let (now, idle) = (self.millis(now), ADDRESS_IDLE.as_millis() as u64);
        let stats = &self.stats;
        table.by_addr.retain(|address, learned| {
            let keep = now.saturating_sub(learned.last_seen.load(Ordering::Relaxed)) < idle;
            if !keep {
                lock(&learned.inbox.addresses).retain(|a| a != address);
                stats.addresses_forgotten.fetch_add(1, Ordering::Relaxed);
            }
            keep
        });
    }

    /// Runs every hook's timers ([`MediaHook::on_tick`]); what they send leaves
    /// batched per destination as the echo does. True if any hook has timers.
    fn tick_hooks(&self, now: Instant) -> bool {
        self.expire_addresses(now);
        let inboxes: Vec<Arc<Inbox>> = self
            .table
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .by_ufrag
            .values()
            .filter(|inbox| inbox.hook.is_some())
            .cloned()
            .collect();
        let mut ticking = false;
        for inbox in inboxes {
            let Some(hook) = &inbox.hook else { continue };
            let ticked =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.batched(|| hook.on_tick(now))));
            match ticked {
                Ok(timers) => ticking |= timers,
                Err(_) => {
                    self.stats.panics.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(
                        inbox = inbox.id,
                        "a media hook panicked on its timers: its PeerConnection leaves the mux"
                    );
                    BATCH.with_borrow_mut(Batch::abandon);
                    self.detach(&inbox);
                }
            }
        }
        ticking
    }

    /// Runs `route` with this thread's [`Batch`] open: what it sends leaves batched
    /// per destination when it returns (the reader, per received message or per
    /// hook's tick; a sender, per frame). Inside an open batch it joins that one.
    fn batched<T>(&self, route: impl FnOnce() -> T) -> T {
        let already_open = BATCH.with_borrow_mut(|batch| std::mem::replace(&mut batch.open, true));
        let routed = route();
        if !already_open {
            BATCH.with_borrow_mut(|batch| {
                batch.flush(self);
                batch.open = false;
            });
        }
        routed
    }

    /// Sends `datagram` to `to`: now, or, on the reader thread while it routes one
    /// received message, with what else that message's hooks send (see [`Batch`]).
    #[inline(never)] // a stage of its own in the instruction profile (benches/plane.rs)
    fn send_now(&self, datagram: &[u8], to: SocketAddr) {
        let held = BATCH.with_borrow_mut(|batch| {
            if batch.open {
                batch.add(datagram, to, self);
            }
            batch.open
        });
        if !held {
            self.transmit(datagram, to, None);
        }
    }

    /// Sends `contents` (datagrams of `segment_size` bytes, the last maybe shorter,
    /// when given) to `to`, logging a failure.
    fn transmit(&self, contents: &[u8], to: SocketAddr, segment_size: Option<usize>) {
        let transmit = Transmit { destination: to, ecn: None, contents, segment_size, src_ip: None };
        if let Err(err) = self.send(&transmit) {
            tracing::debug!(%to, %err, "send on the UDP mux failed");
        }
    }

    /// Sends now. Many threads share this socket and none may wait for it: a full
    /// send buffer drops the datagram (counted), as a full queue on the path would.
    fn send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        match self.state.try_send(UdpSockRef::from(&self.socket), transmit) {
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                self.stats.send_dropped.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            sent => sent,
        }
    }

    /// Ends the reader thread: flags it, then wakes it with an empty datagram to
    /// itself (it checks the flag before routing anything).
    fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        let _ = self.socket.send_to(&[], self.local);
    }

    /// The inbox a datagram from an unknown address may open: a STUN binding request
    /// whose USERNAME (`ours:theirs`) names one of our ufrags and whose
    /// MESSAGE-INTEGRITY verifies with that ufrag's password.
    fn authenticate(&self, data: &[u8]) -> Result<Arc<Inbox>, Refused> {
        authenticate(data, self.crypto.crypto(), |ufrag| {
            let table = self.table.read().unwrap_or_else(|e| e.into_inner());
            table.by_ufrag.get(ufrag).map(|inbox| (Arc::clone(inbox), inbox.password.clone()))
        })
    }

    /// Notes the transaction id of a STUN request `sender` sends (see `asked`).
    fn note_request(&self, datagram: &[u8], sender: &Arc<Inbox>) {
        let Some((class, id)) = stun_class_and_id(datagram) else { return };
        if class != StunClass::Request {
            return;
        }
        let now = Instant::now();
        let mut asked = lock(&self.asked);
        if asked.len() >= MAX_OPEN_REQUESTS {
            asked.retain(|_, (_, at)| now.duration_since(*at) < REQUEST_LIFETIME);
            if asked.len() >= MAX_OPEN_REQUESTS {
                return;
            }
        }
        asked.insert(id, (Arc::clone(sender), now));
    }

    /// Who asked the STUN request `datagram` answers, if it is such an answer.
    fn answer_to(&self, datagram: &[u8]) -> Option<Arc<Inbox>> {
        let (class, id) = stun_class_and_id(datagram)?;
        if class != StunClass::Response {
            return None;
        }
        let (inbox, at) = lock(&self.asked).remove(&id)?;
        (at.elapsed() < REQUEST_LIFETIME).then_some(inbox)
    }

    /// Forgets a closed PeerConnection: its ufrag and every address it learned.
    fn detach(&self, inbox: &Arc<Inbox>) {
        let mut table = self.table.write().unwrap_or_else(|e| e.into_inner());
        if table.by_ufrag.get(&inbox.ufrag).is_some_and(|i| Arc::ptr_eq(i, inbox)) {
            table.by_ufrag.remove(&inbox.ufrag);
        }
        table.by_addr.retain(|_, learned| !Arc::ptr_eq(&learned.inbox, inbox));
        drop(table);
        lock(&inbox.addresses).clear();
        lock(&self.asked).retain(|_, (i, _)| !Arc::ptr_eq(i, inbox));
    }
}

/// A STUN transaction id (RFC 8489 §5).
type TransactionId = [u8; 12];

/// STUN requests remembered at once per shared socket, and for how long: ICE
/// retransmits for ~40 s at most; far more than live sessions ever have open.
const MAX_OPEN_REQUESTS: usize = 16 * 1024;
const REQUEST_LIFETIME: Duration = Duration::from_secs(40);

#[derive(PartialEq)]
enum StunClass {
    Request,
    Response,
    Other,
}

/// The class and transaction id of a STUN message (RFC 8489 §5), without parsing
/// it: first two bits zero, the magic cookie, then the class bits of the type.
fn stun_class_and_id(datagram: &[u8]) -> Option<(StunClass, TransactionId)> {
    if datagram.len() < 20 || datagram[0] & 0xc0 != 0 || datagram[4..8] != MAGIC_COOKIE.to_be_bytes() {
        return None;
    }
    let class = match (datagram[0] & 0x01, datagram[1] & 0x10) {
        (0, 0) => StunClass::Request,
        (1, _) => StunClass::Response,
        _ => StunClass::Other,
    };
    let mut id = [0u8; 12];
    id.copy_from_slice(&datagram[8..20]);
    Some((class, id))
}

enum Refused {
    Unknown,
    Unauthenticated,
    AddressTaken,
}

/// What a STUN binding request authenticates as: `find` gives what its USERNAME's
/// ufrag (`ours:theirs`) names and that one's ICE password, and its MESSAGE-INTEGRITY
/// must verify with it. Shared by the UDP and the TCP mux.
fn authenticate<T>(
    data: &[u8],
    crypto: &dyn rtc::crypto::RTCCrypto,
    find: impl FnOnce(&str) -> Option<(T, String)>,
) -> Result<T, Refused> {
    if !is_binding_request(data) {
        return Err(Refused::Unknown);
    }
    let mut message = Message::new();
    message.unmarshal_binary(data).map_err(|_| Refused::Unknown)?;
    if message.typ != BINDING_REQUEST {
        return Err(Refused::Unknown);
    }
    let username = message.get(ATTR_USERNAME).map_err(|_| Refused::Unknown)?;
    let ours = username.split(|b| *b == b':').next().unwrap_or_default();
    let ours = std::str::from_utf8(ours).map_err(|_| Refused::Unknown)?;
    let (found, password) = find(ours).ok_or(Refused::Unknown)?;
    if message.get(ATTR_MESSAGE_INTEGRITY).is_err() {
        return Err(Refused::Unauthenticated);
    }
    MessageIntegrity::check(&mut message, password.as_bytes(), crypto)
        .map_err(|_| Refused::Unauthenticated)?;
    Ok(found)
}

/// Whether the STUN message `datagram`'s USERNAME (`ours:theirs`, RFC 8445 §7.2.2)
/// names `inbox`'s ufrag: read in place, nothing parsed beyond it.
fn names(datagram: &[u8], inbox: &Inbox) -> bool {
    stun_username(datagram)
        .and_then(|username| username.split(|b| *b == b':').next())
        .is_some_and(|ours| ours == inbox.ufrag.as_bytes())
}

/// The USERNAME attribute of the STUN message `datagram` (RFC 8489 §14.3), found by
/// walking the attributes where they lie.
fn stun_username(datagram: &[u8]) -> Option<&[u8]> {
    const USERNAME: u16 = 0x0006;
    stun_attributes(datagram).find(|(kind, _, _)| *kind == USERNAME).map(|(_, _, value)| value)
}

/// The attributes of the STUN message `datagram` where they lie (RFC 8489 §14): type,
/// offset in `datagram` and value of each, in order, up to the first that does not
/// fit the length its header gives (nothing when that length does not fit).
fn stun_attributes(datagram: &[u8]) -> impl Iterator<Item = (u16, usize, &[u8])> {
    const HEADER: usize = 20;
    let attributes = datagram
        .get(2..4)
        .and_then(|length| {
            datagram.get(HEADER..HEADER + usize::from(u16::from_be_bytes([length[0], length[1]])))
        })
        .unwrap_or_default();
    let mut at = 0;
    std::iter::from_fn(move || {
        let header = attributes.get(at..at + 4)?;
        let kind = u16::from_be_bytes([header[0], header[1]]);
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let value = attributes.get(at + 4..at + 4 + len)?;
        let offset = HEADER + at;
        at = (at + 4 + len).next_multiple_of(4);
        Some((kind, offset, value))
    })
}

/// Whether `datagram` has a STUN binding request's header (RFC 8489 §5): the cheap
/// test, before anything is parsed.
fn is_binding_request(datagram: &[u8]) -> bool {
    matches!(stun_class_and_id(datagram), Some((StunClass::Request, _))) && datagram[0..2] == [0x00, 0x01]
}

thread_local! {
    /// This thread's sends while a batch is open ([`Shared::batched`]: the reader
    /// routing one received message, or a sender's frame); its buffer is kept from
    /// batch to batch (one allocation per thread, not per packet).
    static BATCH: std::cell::RefCell<Batch> = std::cell::RefCell::new(Batch::default());
}

/// Datagrams to one address, sent in one `sendmsg` with UDP GSO: what a session's
/// hook echoes of one GRO-coalesced message (a frame's packets, of one size but the
/// last) leaves as it came in, and the peer's kernel hands it on as one.
#[derive(Default)]
struct Batch {
    contents: Vec<u8>,
    to: Option<SocketAddr>,
    segment: usize,
    count: usize,
    /// A shorter datagram was added: it must be the last.
    closed: bool,
    /// Sends are held here ([`Shared::batched`]); else they leave at once.
    open: bool,
}

impl Batch {
    /// Adds `datagram` if it can go in the same send (same address, not larger
    /// than the first, room left); false if not (nothing added).
    fn takes(&mut self, datagram: &[u8], to: SocketAddr, max_segments: usize) -> bool {
        if self.count == 0 {
            self.start(datagram, to);
            return true;
        }
        if self.closed || self.to != Some(to) || datagram.len() > self.segment || self.count >= max_segments {
            return false;
        }
        self.closed = datagram.len() < self.segment;
        self.contents.extend_from_slice(datagram);
        self.count += 1;
        true
    }

    /// Adds `datagram`, sending what was held first if it cannot join it.
    fn add(&mut self, datagram: &[u8], to: SocketAddr, shared: &Shared) {
        if !self.takes(datagram, to, shared.state.max_gso_segments()) {
            self.flush(shared);
            self.start(datagram, to);
        }
    }

    fn start(&mut self, datagram: &[u8], to: SocketAddr) {
        self.contents.clear();
        self.contents.extend_from_slice(datagram);
        self.to = Some(to);
        self.segment = datagram.len();
        self.count = 1;
        self.closed = false;
    }

    /// Forgets what was held and closes (after a panic: it may be half-made).
    fn abandon(&mut self) {
        self.count = 0;
        self.open = false;
    }

    fn flush(&mut self, shared: &Shared) {
        if let (Some(to), 1..) = (self.to, self.count) {
            let segment_size = (self.count > 1).then_some(self.segment);
            shared.transmit(&self.contents, to, segment_size);
        }
        self.count = 0;
    }
}

/// Datagrams waiting for one PeerConnection's driver.
struct Inbox {
    id: u64,
    ufrag: String,
    password: String,
    /// The password as the key that signs and checks consent checks.
    consent: consent::ConsentKey,
    /// Consent checks answered here per second: a browser sends one every few
    /// seconds; past this they go to the driver, as every check once did.
    consent_budget: Mutex<TokenBucket>,
    /// Remote addresses learned for it (at most [`MAX_ADDRESSES`]).
    addresses: Mutex<Vec<SocketAddr>>,
    queue: Mutex<Queue>,
    waker: AtomicWaker,
    /// Sees each datagram before the queue does ([`UdpMux::runtime_for`]).
    hook: Option<Arc<dyn MediaHook>>,
}

#[derive(Default)]
struct Queue {
    ready: VecDeque<Datagram>,
    /// Buffers of datagrams already read, reused so steady state allocates nothing.
    spare: Vec<Vec<u8>>,
}

struct Datagram {
    bytes: Vec<u8>,
    from: SocketAddr,
}

impl fmt::Debug for Inbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbox").field("id", &self.id).finish_non_exhaustive()
    }
}

impl Inbox {
    /// Queues a copy of `data`; false when the inbox is full.
    fn push(&self, data: &[u8], from: SocketAddr) -> bool {
        {
            let mut queue = lock(&self.queue);
            if queue.ready.len() >= INBOX_DEPTH {
                return false;
            }
            let mut bytes = queue.spare.pop().unwrap_or_else(|| Vec::with_capacity(MAX_DATAGRAM));
            bytes.clear();
            bytes.extend_from_slice(data);
            queue.ready.push_back(Datagram { bytes, from });
        }
        self.waker.wake();
        true
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let filled = self.drain(bufs, meta);
        if filled > 0 {
            return Poll::Ready(Ok(filled));
        }
        self.waker.register(cx.waker());
        // A push between the drain and the register woke nobody: look again.
        match self.drain(bufs, meta) {
            0 => Poll::Pending,
            filled => Poll::Ready(Ok(filled)),
        }
    }

    fn drain(&self, bufs: &mut [IoSliceMut<'_>], meta: &mut [RecvMeta]) -> usize {
        let mut queue = lock(&self.queue);
        let mut filled = 0;
        for (buf, meta) in bufs.iter_mut().zip(meta.iter_mut()) {
            let Some(datagram) = queue.ready.pop_front() else { break };
            let len = datagram.bytes.len().min(buf.len());
            buf[..len].copy_from_slice(&datagram.bytes[..len]);
            let mut m = RecvMeta::default();
            m.len = len;
            m.stride = len.max(1);
            m.addr = datagram.from;
            *meta = m;
            queue.spare.push(datagram.bytes);
            filled += 1;
        }
        filled
    }
}

/// One PeerConnection's view of a shared socket.
struct MuxSocket {
    shared: Arc<Shared>,
    inbox: Arc<Inbox>,
}

impl fmt::Debug for MuxSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MuxSocket").field("local", &self.shared.local).field("inbox", &self.inbox).finish()
    }
}

impl Drop for MuxSocket {
    fn drop(&mut self) {
        self.shared.detach(&self.inbox);
    }
}

impl AsyncUdpSocket for MuxSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.shared.local)
    }

    fn poll_send(&self, _cx: &mut Context<'_>, transmit: &Transmit<'_>) -> Poll<io::Result<usize>> {
        // (Media fails this at its first byte: 0x80 for RTP, 20..63 for DTLS.)
        if transmit.segment_size.is_none() {
            self.shared.note_request(transmit.contents, &self.inbox);
        }
        Poll::Ready(self.shared.send(transmit).map(|()| transmit.contents.len()))
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        self.inbox.poll_recv(cx, bufs, meta)
    }

    fn max_gso_segments(&self) -> usize {
        self.shared.state.max_gso_segments()
    }
}

/// What [`MuxRuntime`] delegates to (a static: some methods return futures borrowing it).
static TOKIO: TokioRuntime = TokioRuntime;

/// webrtc's `TokioRuntime` for one PeerConnection, except that its UDP sockets are
/// views of the mux.
struct MuxRuntime {
    mux: UdpMux,
    credentials: IceCredentials,
    hook: Option<Arc<dyn MediaHook>>,
    tcp: Option<TcpMux>,
}

impl fmt::Debug for MuxRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MuxRuntime").field("port", &self.mux.port()).field("ice", &self.credentials).finish()
    }
}

impl Runtime for MuxRuntime {
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) -> Box<dyn JoinHandle> {
        TOKIO.spawn(future)
    }

    fn spawn_reactor(
        &self,
        reactor_pool_size: usize,
        future: Pin<Box<dyn Future<Output = ()> + Send>>,
    ) -> Box<dyn JoinHandle> {
        TOKIO.spawn_reactor(reactor_pool_size, future)
    }

    /// Drops the driver's ephemeral socket and returns a view of the shared one on
    /// the same address (declining an address the mux cannot serve).
    fn wrap_udp_socket(&self, socket: StdUdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        let ip = socket.local_addr()?.ip();
        match self.mux.attach(ip, &self.credentials, self.hook.clone())? {
            Some(view) => Ok(Arc::new(view)),
            None => TOKIO.wrap_udp_socket(socket),
        }
    }

    /// Drops the driver's ephemeral listener and returns a view of the ICE-TCP port
    /// on the same address.
    fn wrap_tcp_listener(&self, listener: std::net::TcpListener) -> io::Result<Arc<dyn AsyncTcpListener>> {
        let local = listener.local_addr()?;
        match &self.tcp {
            Some(_) if local.ip().is_unspecified() => Err(declined(local.ip(), "no interface to name")),
            Some(tcp) => Ok(tcp.view(local, &self.credentials, self.hook.clone())),
            None => TOKIO.wrap_tcp_listener(listener),
        }
    }

    /// Never: a server answers on its passive candidates only, and a trickled
    /// `tcptype passive` candidate must not make it dial an address a client chose.
    fn connect_tcp<'a>(
        &'a self,
        remote_addr: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = io::Result<Arc<dyn AsyncTcpStream>>> + Send + 'a>> {
        Box::pin(async move {
            Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("no outgoing TCP (to {remote_addr})"),
            ))
        })
    }

    fn resolve_host<'a>(
        &'a self,
        host: &'a str,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>> {
        TOKIO.resolve_host(host)
    }

    fn now(&self) -> Instant {
        TOKIO.now()
    }

    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        TOKIO.sleep(duration)
    }

    fn interval(&self, period: Duration) -> Box<dyn AsyncInterval> {
        TOKIO.interval(period)
    }

    fn block_on(&self, future: Pin<Box<dyn Future<Output = ()> + '_>>) {
        TOKIO.block_on(future)
    }

    fn yield_now(&self) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        TOKIO.yield_now()
    }

    fn name(&self) -> &'static str {
        "tokio+udp-mux"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding_request(ufrag: &str, password: &str) -> Vec<u8> {
        IceCredentials { ufrag: ufrag.to_owned(), password: password.to_owned() }.binding_request()
    }

    fn credentials(ufrag: &str) -> IceCredentials {
        IceCredentials { ufrag: ufrag.to_owned(), password: format!("{ufrag}-password-of-22-chars") }
    }

    fn received(socket: &MuxSocket) -> Vec<SocketAddr> {
        let mut from = Vec::new();
        let mut buf = [0u8; MAX_DATAGRAM];
        let mut meta = [RecvMeta::default()];
        while socket.inbox.drain(&mut [IoSliceMut::new(&mut buf)], &mut meta) == 1 {
            from.push(meta[0].addr);
        }
        from
    }

    fn count(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Routes a copy of `data` from `from` at `now`, as the reader would.
    fn route_at(shared: &Arc<Shared>, data: &[u8], from: SocketAddr, now: Instant) {
        let via = MuxSender::udp(shared);
        shared.dispatch(&mut data.to_vec(), from, &via, now);
    }

    fn route(shared: &Arc<Shared>, data: &[u8], from: SocketAddr) {
        route_at(shared, data, from, Instant::now());
    }

    fn attach(mux: &UdpMux, credentials: &IceCredentials) -> MuxSocket {
        mux.attach("127.0.0.1".parse().unwrap(), credentials, None).unwrap().expect("attached")
    }

    #[tokio::test]
    async fn addresses_are_learned_only_from_authenticated_binding_requests() {
        let mux = UdpMux::bind("127.0.0.1".parse().unwrap(), 0).expect("binds");
        let (a, b) = (credentials("aaaa"), credentials("bbbb"));
        let (socket_a, socket_b) = (attach(&mux, &a), attach(&mux, &b));
        assert_eq!(socket_a.local_addr().unwrap(), socket_b.local_addr().unwrap(), "one shared socket");
        let shared = Arc::clone(&socket_a.shared);
        let stats = mux.stats();
        let (x, y, z): (SocketAddr, SocketAddr, SocketAddr) = (
            "192.0.2.1:1000".parse().unwrap(),
            "192.0.2.2:2000".parse().unwrap(),
            "192.0.2.3:3000".parse().unwrap(),
        );

        // Not STUN, from nobody we know: dropped.
        route(&shared, b"\x80\x60 some rtp", x);
        assert_eq!(count(&stats.dropped_unknown), 1);
        // A's ufrag, but signed with the wrong password: dropped, and x stays unknown.
        route(&shared, &binding_request("aaaa", "not-the-password-at-all"), x);
        assert_eq!(count(&stats.dropped_unauthenticated), 1);
        // A ufrag nobody has: dropped.
        route(&shared, &binding_request("cccc", &a.password), x);
        assert_eq!(count(&stats.dropped_unknown), 2);
        assert!(received(&socket_a).is_empty() && received(&socket_b).is_empty());

        // Authenticated for A: x is A's from now on, and its media follows.
        route(&shared, &binding_request("aaaa", &a.password), x);
        route(&shared, b"\x80\x60 rtp from x", x);
        assert_eq!(received(&socket_a), vec![x, x]);
        // A request B's password signs does not take x while A uses it.
        route(&shared, &binding_request("bbbb", &b.password), x);
        assert_eq!(count(&stats.dropped_address_taken), 1);
        assert!(received(&socket_a).is_empty() && received(&socket_b).is_empty());
        // B learns its own address.
        route(&shared, &binding_request("bbbb", &b.password), y);
        assert_eq!(received(&socket_b), vec![y]);
        assert_eq!(count(&stats.addresses_learned), 2);

        // A closes: its ufrag and addresses are forgotten, B is untouched.
        drop(socket_a);
        route(&shared, b"\x80\x60 rtp from x", x);
        route(&shared, &binding_request("aaaa", &a.password), z);
        assert_eq!(count(&stats.dropped_unknown), 4);
        route(&shared, b"\x80\x60 rtp from y", y);
        assert_eq!(received(&socket_b), vec![y]);
    }

    #[test]
    fn the_username_is_read_where_it_lies() {
        let request = binding_request("abcd", "the-password-of-22-chars");
        assert_eq!(stun_username(&request), Some(&b"abcd:remote"[..]));
        for len in 0..request.len() {
            let _ = stun_username(&request[..len]); // never past the end
        }
        assert_eq!(stun_username(&request[..20]), None);
    }

    #[tokio::test]
    async fn a_consent_check_from_a_known_address_goes_to_its_session_a_forged_one_teaches_nothing() {
        let mux = UdpMux::bind("127.0.0.1".parse().unwrap(), 0).expect("binds");
        let (a, b) = (credentials("aaaa"), credentials("bbbb"));
        let (socket_a, socket_b) = (attach(&mux, &a), attach(&mux, &b));
        let shared = Arc::clone(&socket_a.shared);
        let (x, y): (SocketAddr, SocketAddr) =
            ("192.0.2.1:1".parse().unwrap(), "192.0.2.2:2".parse().unwrap());
        route(&shared, &binding_request("aaaa", &a.password), x);
        // From x, naming A: A's (its agent verifies it), whatever it is signed with.
        route(&shared, &binding_request("aaaa", "not-the-password-at-all"), x);
        assert_eq!(received(&socket_a), vec![x, x]);
        // From y, unsigned: refused, y stays unknown, for A as for B.
        route(&shared, &binding_request("aaaa", "not-the-password-at-all"), y);
        route(&shared, b"\x80\x60 rtp from y", y);
        assert!(received(&socket_a).is_empty() && received(&socket_b).is_empty());
        assert_eq!(count(&mux.stats().dropped_unauthenticated), 1);
    }

    #[tokio::test]
    async fn an_address_its_owner_stopped_using_moves_to_whoever_authenticates_from_it() {
        let mux = UdpMux::bind("127.0.0.1".parse().unwrap(), 0).expect("binds");
        let (a, b) = (credentials("aaaa"), credentials("bbbb"));
        let (socket_a, socket_b) = (attach(&mux, &a), attach(&mux, &b));
        let shared = Arc::clone(&socket_a.shared);
        let nat: SocketAddr = "198.51.100.7:40000".parse().unwrap();
        let start = Instant::now();
        route_at(&shared, &binding_request("aaaa", &a.password), nat, start);
        // The NAT gives the port to B's client while A still uses it: refused.
        let soon = start + ADDRESS_IDLE / 2;
        route_at(&shared, b"\x80\x60 A's media", nat, soon);
        route_at(&shared, &binding_request("bbbb", &b.password), nat, soon);
        assert_eq!(received(&socket_a).len(), 2);
        assert!(received(&socket_b).is_empty());
        // A has been silent for ADDRESS_IDLE: B's authenticated request takes it over.
        let later = soon + ADDRESS_IDLE;
        route_at(&shared, &binding_request("bbbb", &b.password), nat, later);
        route_at(&shared, b"\x80\x60 B's media", nat, later);
        assert_eq!(received(&socket_b), vec![nat, nat]);
        assert!(received(&socket_a).is_empty());
        assert_eq!(count(&mux.stats().addresses_moved), 1);
        assert!(lock(&socket_a.inbox.addresses).is_empty(), "A no longer counts it");
    }

    #[tokio::test]
    async fn idle_addresses_are_forgotten() {
        let mux = UdpMux::bind("127.0.0.1".parse().unwrap(), 0).expect("binds");
        let a = credentials("aaaa");
        let socket = attach(&mux, &a);
        let shared = Arc::clone(&socket.shared);
        let (busy, idle): (SocketAddr, SocketAddr) =
            ("192.0.2.1:1".parse().unwrap(), "192.0.2.2:2".parse().unwrap());
        let start = Instant::now();
        route_at(&shared, &binding_request("aaaa", &a.password), busy, start);
        route_at(&shared, &binding_request("aaaa", &a.password), idle, start);
        let later = start + ADDRESS_IDLE + EXPIRE_EVERY;
        route_at(&shared, b"\x80\x60 still here", busy, later - EXPIRE_EVERY);
        shared.expire_addresses(later);
        assert_eq!(count(&mux.stats().addresses_forgotten), 1);
        received(&socket);
        route_at(&shared, b"\x80\x60 from the idle one", idle, later);
        route_at(&shared, b"\x80\x60 from the busy one", busy, later);
        assert_eq!(received(&socket), vec![busy]);
        assert_eq!(*lock(&socket.inbox.addresses), vec![busy]);
    }

    #[tokio::test]
    async fn answers_go_to_whoever_asked_once_even_from_an_address_someone_claimed() {
        let mux = UdpMux::bind("127.0.0.1".parse().unwrap(), 0).expect("binds");
        let (a, b) = (credentials("eeee"), credentials("ffff"));
        let (socket_a, socket_b) = (attach(&mux, &a), attach(&mux, &b));
        // A spoofer (with A's credentials) claims the STUN server's address first.
        let stun_server: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let shared = Arc::clone(&socket_a.shared);
        route(&shared, &binding_request("eeee", &a.password), stun_server);
        received(&socket_a);
        // B asks the STUN server (the discard port: nothing answers for real).
        let request = binding_request("server", "server-password-of-22-chars");
        socket_b.send_to(&request, stun_server).await.expect("sent");
        let mut answer = request.clone();
        answer[0..2].copy_from_slice(&[0x01, 0x01]); // binding success, same transaction
        route(&shared, &answer, stun_server);
        assert_eq!(received(&socket_b), vec![stun_server], "the answer reaches who asked");
        assert!(received(&socket_a).is_empty());
        // Once: a replay (or a guess) of the answer goes by address, like any datagram.
        route(&shared, &answer, stun_server);
        assert!(received(&socket_b).is_empty());
        assert_eq!(received(&socket_a), vec![stun_server]);
    }

    /// Waits (up to 2 s) until `count` threads are named as a group's.
    async fn wait_group_threads(count: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(2);
        while group_threads() != count && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        group_threads()
    }

    fn group_threads() -> usize {
        std::fs::read_dir("/proc/self/task")
            .map(|tasks| {
                tasks
                    .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
                    .filter(|name| name.trim() == "udp-mux group")
                    .count()
            })
            .unwrap_or(0)
    }

    #[tokio::test]
    async fn one_group_thread_reads_the_sockets_of_several_muxes_and_ends_with_them() {
        let before = group_threads();
        let group = ReaderGroup::new().expect("a group");
        assert_eq!(wait_group_threads(before + 1).await, before + 1);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let muxes: Vec<UdpMux> =
            (0..3).map(|_| UdpMux::bind_in(ip, 0, Some(&group), Arc::default()).expect("binds")).collect();
        assert_eq!(group_threads(), before + 1, "no thread per socket");
        let client = StdUdpSocket::bind("127.0.0.1:0").unwrap();
        let mut sockets = Vec::new();
        for (index, mux) in muxes.iter().enumerate() {
            let credentials = credentials(&format!("grp{index}"));
            let socket = mux.attach(ip, &credentials, None).unwrap().expect("attached");
            let request = binding_request(&credentials.ufrag, &credentials.password);
            client.send_to(&request, socket.local_addr().unwrap()).unwrap();
            sockets.push(socket);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut heard = vec![0; sockets.len()];
        while heard.contains(&0) && Instant::now() < deadline {
            for (socket, heard) in sockets.iter().zip(&mut heard) {
                *heard += received(socket).len();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(heard, vec![1; 3], "each mux's PeerConnection got its binding request");

        drop((sockets, muxes, group));
        assert_eq!(wait_group_threads(before).await, before, "the group's thread ended with it");
    }

    #[tokio::test]
    async fn the_mdns_socket_keeps_its_own_and_a_wildcard_is_declined() {
        let mux = UdpMux::bind("127.0.0.1".parse().unwrap(), 0).expect("binds");
        let creds = credentials("hhhh");
        assert!(mux.attach("224.0.0.251".parse().unwrap(), &creds, None).unwrap().is_none());
        let declined = mux.attach("0.0.0.0".parse().unwrap(), &creds, None).map(|_| ()).unwrap_err();
        assert_eq!(declined.kind(), io::ErrorKind::AddrNotAvailable, "the driver skips it");
        assert_eq!(mux.local_addrs().len(), 1, "nothing bound for them");
    }

    #[tokio::test]
    async fn a_session_past_max_addresses_forgets_its_least_recently_used() {
        let mux = UdpMux::bind("127.0.0.1".parse().unwrap(), 0).expect("binds");
        let creds = credentials("gggg");
        let socket = attach(&mux, &creds);
        let start = Instant::now();
        for port in 0..MAX_ADDRESSES as u16 + 5 {
            let at = start + Duration::from_millis(u64::from(port));
            route_at(
                &socket.shared,
                &binding_request("gggg", &creds.password),
                ([192, 0, 2, 1], port).into(),
                at,
            );
        }
        assert_eq!(count(&mux.stats().addresses_learned), MAX_ADDRESSES as u64 + 5);
        assert_eq!(count(&mux.stats().addresses_forgotten), 5);
        let kept = lock(&socket.inbox.addresses).clone();
        assert_eq!(kept.len(), MAX_ADDRESSES);
        assert!(kept.iter().all(|address| address.port() >= 5), "the oldest went: {kept:?}");
        assert_eq!(
            socket.shared.table.read().unwrap().by_addr.len(),
            MAX_ADDRESSES,
            "the table forgot them too"
        );
    }

    #[tokio::test]
    async fn oversize_datagrams_are_dropped_before_anything_keeps_them() {
        let mux = UdpMux::bind("127.0.0.1".parse().unwrap(), 0).expect("binds");
        let creds = credentials("oooo");
        let socket = attach(&mux, &creds);
        let from: SocketAddr = "192.0.2.9:9".parse().unwrap();
        route(&socket.shared, &binding_request("oooo", &creds.password), from);
        route(&socket.shared, &vec![0x80; 60_000], from);
        assert_eq!(count(&mux.stats().dropped_oversize), 1);
        assert_eq!(received(&socket).len(), 1, "the binding request only");
        assert!(lock(&socket.inbox.queue).spare.iter().all(|buf| buf.capacity() <= MAX_DATAGRAM));
    }

    /// A hook that panics on a datagram starting with `boom`, and counts the rest.
    struct Fragile(AtomicU64);

    impl MediaHook for Fragile {
        fn on_datagram(&self, datagram: &mut [u8], _from: SocketAddr, _via: &MuxSender) -> bool {
            assert!(!datagram.starts_with(b"\x80boom"), "a bug in a hook");
            self.0.fetch_add(1, Ordering::Relaxed);
            true
        }
    }

    #[tokio::test]
    async fn a_hook_that_panics_loses_its_session_and_the_reader_serves_the_rest() {
        let mux = UdpMux::bind("127.0.0.1".parse().unwrap(), 0).expect("binds");
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let (a, b) = (credentials("pppp"), credentials("qqqq"));
        let (hook_a, hook_b) = (Arc::new(Fragile(AtomicU64::new(0))), Arc::new(Fragile(AtomicU64::new(0))));
        let socket_a = mux.attach(ip, &a, Some(Arc::clone(&hook_a) as _)).unwrap().expect("attached");
        let socket_b = mux.attach(ip, &b, Some(Arc::clone(&hook_b) as _)).unwrap().expect("attached");
        let (client_a, client_b) =
            (StdUdpSocket::bind("127.0.0.1:0").unwrap(), StdUdpSocket::bind("127.0.0.1:0").unwrap());
        let server = socket_a.local_addr().unwrap();
        client_a.send_to(&binding_request("pppp", &a.password), server).unwrap();
        client_b.send_to(&binding_request("qqqq", &b.password), server).unwrap();
        // Through the real socket and its reader thread.
        client_a.send_to(b"\x80boom", server).unwrap();
        for _ in 0..10 {
            client_b.send_to(b"\x80 media", server).unwrap();
            client_a.send_to(b"\x80 media", server).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while hook_b.0.load(Ordering::Relaxed) < 11 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(hook_b.0.load(Ordering::Relaxed), 11, "B's binding request and all its media");
        assert_eq!(hook_a.0.load(Ordering::Relaxed), 1, "A's binding request, then nothing after its panic");
        assert_eq!(count(&mux.stats().panics), 1);
        assert!(!socket_a.shared.table.read().unwrap().by_ufrag.contains_key("pppp"), "A left the mux");
        drop((socket_a, socket_b));
    }

    #[test]
    fn a_batch_takes_equal_datagrams_to_one_address_and_a_shorter_one_last() {
        let a: SocketAddr = "127.0.0.1:1000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2000".parse().unwrap();
        let mut batch = Batch::default();
        assert!(batch.takes(&[1; 10], a, 4));
        assert!(batch.takes(&[2; 10], a, 4));
        assert!(!batch.takes(&[3; 10], b, 4), "another address");
        assert!(!batch.takes(&[3; 11], a, 4), "larger than the segment");
        assert!(batch.takes(&[3; 4], a, 4), "a shorter one, last");
        assert!(!batch.takes(&[4; 4], a, 4), "nothing after the shorter one");
        assert_eq!((batch.count, batch.segment, batch.contents.len()), (3, 10, 24));
        batch.start(&[5; 10], a);
        for _ in 1..4 {
            assert!(batch.takes(&[5; 10], a, 4));
        }
        assert!(!batch.takes(&[5; 10], a, 4), "at most max_segments");
        let mut single = Batch::default();
        assert!(single.takes(&[1; 10], a, 1));
        assert!(!single.takes(&[1; 10], a, 1), "no GSO: one per send");
    }

    #[tokio::test]
    async fn sends_while_batched_leave_when_it_ends_and_the_buffer_is_kept() {
        let mux = UdpMux::bind("127.0.0.1".parse().unwrap(), 0).expect("binds");
        let socket = attach(&mux, &credentials("bbbb"));
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").expect("peer socket");
        peer.set_nonblocking(true).unwrap();
        let to = peer.local_addr().unwrap();
        let drain = || {
            let mut buf = [0u8; 2048];
            std::iter::from_fn(|| peer.recv(&mut buf).ok().map(|n| buf[..n].to_vec())).collect::<Vec<_>>()
        };
        let shared = &socket.shared;
        for round in 0..2 {
            shared.batched(|| {
                shared.send_now(&[1; 100], to);
                // A batch opened inside another joins it (`MuxSender::send_all` on the reader).
                shared.batched(|| shared.send_now(&[2; 100], to));
                std::thread::sleep(Duration::from_millis(50));
                assert!(drain().is_empty(), "held until the outer batch ends");
            });
            std::thread::sleep(Duration::from_millis(50));
            assert_eq!(drain(), vec![vec![1; 100], vec![2; 100]], "round {round}: both, in order");
            BATCH.with_borrow(|batch| {
                assert!(!batch.open);
                assert!(batch.contents.capacity() >= 200, "the buffer stays for the next message");
            });
        }
        shared.send_now(&[3; 10], to);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(drain(), vec![vec![3; 10]], "outside a batch: at once");
    }

    #[tokio::test]
    async fn a_full_inbox_drops_and_counts_and_reuses_its_buffers() {
        let mux = UdpMux::bind("127.0.0.1".parse().unwrap(), 0).expect("binds");
        let creds = credentials("dddd");
        let socket = attach(&mux, &creds);
        let from: SocketAddr = "192.0.2.9:9".parse().unwrap();
        route(&socket.shared, &binding_request("dddd", &creds.password), from);
        for _ in 0..INBOX_DEPTH + 10 {
            route(&socket.shared, b"\x80\x60 rtp", from);
        }
        assert_eq!(count(&mux.stats().dropped_full), 11);
        assert_eq!(received(&socket).len(), INBOX_DEPTH);
        assert_eq!(lock(&socket.inbox.queue).spare.len(), INBOX_DEPTH, "buffers kept for reuse");
    }
}
