//! Who reads a mux's sockets: a thread per socket (the server's shared port: one
//! socket per address), or one thread for many sockets ([`ReaderGroup`]: the
//! server's `--udp-port MIN-MAX` range, a mux per session; the load generator's
//! clients, which need a socket each because the server tells sessions apart by
//! address). Either sleeps in the kernel (`poll`, `epoll_wait`), not in an async
//! runtime, so a packet costs no task scheduling on its way to its hook or inbox, and
//! reads in batches with `recvmmsg`.

use std::collections::HashMap;
use std::io::{self, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use webrtc::runtime::{BATCH_SIZE, RecvMeta, UdpSockRef};

use super::{HOOK_TICK, IDLE_WAIT, MAX_DATAGRAM, MuxSender, Shared, lock};

/// Buffers for one `recvmmsg`, reused from read to read.
struct ReadBuffers {
    storage: Vec<u8>,
    meta: [RecvMeta; BATCH_SIZE],
    /// Bytes per message: room for a GRO-coalesced run of datagrams.
    buf_len: usize,
}

impl ReadBuffers {
    fn new() -> ReadBuffers {
        ReadBuffers { storage: Vec::new(), meta: [RecvMeta::default(); BATCH_SIZE], buf_len: 0 }
    }

    /// Grows the buffers to what `shared`'s socket may hand over in one message.
    fn fit(&mut self, shared: &Shared) {
        let buf_len = (shared.state.gro_segments().max(1) * 1500).max(MAX_DATAGRAM);
        if buf_len > self.buf_len {
            self.buf_len = buf_len;
            self.storage = vec![0u8; buf_len * BATCH_SIZE];
        }
    }
}

/// What one read of a socket found.
enum Read {
    /// A full batch: there may be more waiting.
    Full,
    /// Less than a batch (maybe nothing): the queue is empty.
    Drained,
    /// An error worth trying again at once.
    Again,
    /// The mux is stopping.
    Stopped,
}

/// Reads one batch from `shared`'s socket and routes each datagram (`via` sends on it).
fn read_batch(shared: &Shared, via: &MuxSender, buffers: &mut ReadBuffers) -> Read {
    let buf_len = buffers.buf_len;
    let received = {
        let mut chunks = buffers.storage.chunks_mut(buf_len);
        let mut bufs: [IoSliceMut<'_>; BATCH_SIZE] =
            std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or_default()));
        shared.state.recv(UdpSockRef::from(&shared.socket), &mut bufs, &mut buffers.meta)
    };
    let count = match received {
        Ok(count) => count,
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Read::Drained,
        Err(err) if transient(&err) => return Read::Again,
        Err(err) => {
            // Not expected on a bound UDP socket; keep serving rather than spin.
            tracing::error!(addr = %shared.local, %err, "UDP mux receive failed");
            std::thread::sleep(Duration::from_millis(50));
            return Read::Again;
        }
    };
    if shared.stopping.load(Ordering::Relaxed) {
        return Read::Stopped;
    }
    let now = Instant::now();
    for (index, meta) in buffers.meta.iter().take(count).enumerate() {
        let message = &mut buffers.storage[index * buf_len..index * buf_len + meta.len.min(buf_len)];
        // GRO may have coalesced several datagrams of one flow: `stride` apart.
        // What their hooks send back goes out together too (one GSO send).
        let routed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            shared.batched(|| {
                for datagram in message.chunks_mut(meta.stride.max(1)) {
                    shared.dispatch(datagram, meta.addr, via, now);
                }
            })
        }));
        if routed.is_err() {
            // A bug in the mux itself: the message is lost, the reader goes on.
            shared.stats.panics.fetch_add(1, Ordering::Relaxed);
            super::BATCH.with_borrow_mut(super::Batch::abandon);
            tracing::error!(addr = %shared.local, from = %meta.addr, "the UDP mux panicked on a datagram");
        }
    }
    if count < BATCH_SIZE { Read::Drained } else { Read::Full }
}

/// Errors a socket serving many peers reports for one of them (as the driver's rule).
fn transient(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::TimedOut
    )
}

/// Milliseconds from now until `until`, at least 1, at most [`IDLE_WAIT`].
fn timeout_ms(until: Instant) -> libc::c_int {
    until.saturating_duration_since(Instant::now()).as_millis().clamp(1, IDLE_WAIT.as_millis()) as libc::c_int
}

/// The reader of one shared socket, on a thread of its own: sleeps in `poll(2)`
/// until the socket is readable or the hooks' next tick, and stops when the mux
/// is dropped ([`Shared::stop`] wakes it at once).
pub(super) fn read_loop(shared: Arc<Shared>) {
    let via = MuxSender::udp(&shared);
    let mut buffers = ReadBuffers::new();
    buffers.fit(&shared);
    let fd = shared.socket.as_raw_fd();
    let mut next_tick = Instant::now() + HOOK_TICK;
    while !shared.stopping.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= next_tick {
            next_tick = now + if shared.tick_hooks(now) { HOOK_TICK } else { IDLE_WAIT };
        }
        match read_batch(&shared, &via, &mut buffers) {
            Read::Full | Read::Again => {}
            // The queue was emptied: wait for more rather than ask again (a
            // `recvmmsg` answering "nothing" per wake-up).
            Read::Drained => wait_readable(fd, next_tick),
            Read::Stopped => break,
        }
    }
}

/// Sleeps until `fd` is readable or `until` (the next tick; a stop wakes it at once).
fn wait_readable(fd: RawFd, until: Instant) {
    let mut pollfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd for a socket the caller keeps open.
    unsafe { libc::poll(&mut pollfd, 1, timeout_ms(until)) };
}

/// One reader thread for the sockets of many muxes ([`super::UdpMux::bind_in`]),
/// woken by `epoll` when any is readable. Why: each session of a port range, and
/// each of the load generator's publishers, has a socket of its own, and a thread
/// per socket wakes once per packet; one thread for all of them reads what arrives
/// together in one wake-up, as the shared port's reader does for its sessions. The
/// thread ends when the last clone of the group is dropped.
#[derive(Clone)]
pub struct ReaderGroup {
    handle: Arc<GroupHandle>,
}

/// Stops the thread when the last [`ReaderGroup`] goes.
struct GroupHandle {
    inner: Arc<GroupInner>,
}

struct GroupInner {
    epoll: OwnedFd,
    /// An eventfd in the epoll set: written to stop the thread at once.
    wake: OwnedFd,
    /// The sockets read, by file descriptor (the epoll token), with their senders.
    members: Mutex<HashMap<RawFd, (Arc<Shared>, MuxSender)>>,
    stopping: AtomicBool,
}

/// The epoll token of the wake-up eventfd (sockets use their fd, never negative).
const WAKE_TOKEN: u64 = u64::MAX;

impl std::fmt::Debug for ReaderGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReaderGroup").field("sockets", &lock(&self.handle.inner.members).len()).finish()
    }
}

fn check(result: libc::c_int) -> io::Result<libc::c_int> {
    if result < 0 { Err(io::Error::last_os_error()) } else { Ok(result) }
}

impl ReaderGroup {
    /// An empty group and its thread.
    pub fn new() -> io::Result<ReaderGroup> {
        // SAFETY: plain syscalls; each returned fd is owned by the OwnedFd made from it.
        let (epoll, wake) = unsafe {
            let epoll = OwnedFd::from_raw_fd(check(libc::epoll_create1(libc::EPOLL_CLOEXEC))?);
            let wake = OwnedFd::from_raw_fd(check(libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK))?);
            (epoll, wake)
        };
        let inner =
            Arc::new(GroupInner { epoll, wake, members: Mutex::default(), stopping: AtomicBool::new(false) });
        inner.watch(inner.wake.as_raw_fd(), WAKE_TOKEN)?;
        let reader = Arc::clone(&inner);
        std::thread::Builder::new().name("udp-mux group".to_owned()).spawn(move || group_loop(reader))?;
        Ok(ReaderGroup { handle: Arc::new(GroupHandle { inner }) })
    }

    /// Reads `shared`'s socket from now on.
    pub(super) fn add(&self, shared: Arc<Shared>) -> io::Result<()> {
        let fd = shared.socket.as_raw_fd();
        let via = MuxSender::udp(&shared);
        lock(&self.handle.inner.members).insert(fd, (shared, via));
        let watched = self.handle.inner.watch(fd, fd as u64);
        if watched.is_err() {
            lock(&self.handle.inner.members).remove(&fd);
        }
        watched
    }

    /// Stops reading `shared`'s socket (its mux is gone).
    pub(super) fn remove(&self, shared: &Shared) {
        let fd = shared.socket.as_raw_fd();
        // SAFETY: `fd` is open (the caller holds its socket); a null event is allowed for DEL.
        unsafe {
            libc::epoll_ctl(
                self.handle.inner.epoll.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd,
                std::ptr::null_mut(),
            )
        };
        lock(&self.handle.inner.members).remove(&fd);
    }
}

impl GroupInner {
    fn watch(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut event = libc::epoll_event { events: libc::EPOLLIN as u32, u64: token };
        // SAFETY: both fds are open; `event` outlives the call.
        check(unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut event) })?;
        Ok(())
    }
}

impl Drop for GroupHandle {
    fn drop(&mut self) {
        self.inner.stopping.store(true, Ordering::Relaxed);
        let one: u64 = 1;
        // SAFETY: an 8-byte write to our own eventfd.
        unsafe { libc::write(self.inner.wake.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }
}

/// The group's thread: waits in `epoll_wait`, then empties every readable socket.
fn group_loop(group: Arc<GroupInner>) {
    const EVENTS: usize = 64;
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; EVENTS];
    let mut buffers = ReadBuffers::new();
    let mut next_tick = Instant::now() + HOOK_TICK;
    while !group.stopping.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= next_tick {
            let members: Vec<Arc<Shared>> =
                lock(&group.members).values().map(|(shared, _)| Arc::clone(shared)).collect();
            let ticking = members.iter().fold(false, |ticking, shared| shared.tick_hooks(now) | ticking);
            next_tick = now + if ticking { HOOK_TICK } else { IDLE_WAIT };
        }
        // SAFETY: `events` has room for EVENTS entries.
        let ready = unsafe {
            libc::epoll_wait(
                group.epoll.as_raw_fd(),
                events.as_mut_ptr(),
                EVENTS as libc::c_int,
                timeout_ms(next_tick),
            )
        };
        for event in events.iter().take(ready.max(0) as usize) {
            let token = event.u64;
            if token == WAKE_TOKEN {
                continue;
            }
            let Some((shared, via)) = lock(&group.members).get(&(token as RawFd)).cloned() else { continue };
            buffers.fit(&shared);
            while let Read::Full | Read::Again = read_batch(&shared, &via, &mut buffers) {}
        }
    }
}
