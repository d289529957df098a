//! What one client, and all of them together, may hold: the file-descriptor budget
//! and the caps derived from it, and [`PerIp`], the counter behind every per-IP cap.
//!
//! Every TCP connection, signaling socket and media socket is a file descriptor. When
//! the process runs out, `accept` fails, `/healthz` goes silent and nobody new gets
//! in; so the server raises its soft limit to the hard one at start, keeps a reserve,
//! and refuses (fast, with a `503` or a close) before the limit is reached.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::oneshot;

use crate::control::config::Config;

/// Descriptors kept aside for the listener, the runtime (epoll, eventfds), stdio,
/// logs, `/proc` reads, model files and the odd HTTP request.
pub const FD_RESERVE: u64 = 64;
/// Media descriptors one session (PeerConnection) takes beyond its signaling socket:
/// UDP sockets per interface (loopback plus one more on a wildcard listen), with room.
pub const FDS_PER_SESSION: u64 = 6;
/// Hard limits above this are treated as this (RLIM_INFINITY would overflow the sums).
const FD_CEILING: u64 = 1 << 20;

/// The process's file limit, before and after raising the soft limit to the hard one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    pub soft_before: u64,
    pub soft: u64,
    pub hard: u64,
}

/// Raises `RLIMIT_NOFILE`'s soft limit to its hard limit (a process may always do
/// that); on failure keeps what it had.
pub fn raise_fd_limit() -> std::io::Result<FdLimit> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we pass and nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let soft_before = limit.rlim_cur;
    let hard = limit.rlim_max;
    let mut soft = soft_before;
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
        // SAFETY: setrlimit reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            soft = hard;
        } else {
            tracing::warn!(err = %std::io::Error::last_os_error(), "cannot raise the file limit");
        }
    }
    Ok(FdLimit { soft_before, soft, hard })
}

/// The caps the server enforces, from the flags and the file limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The soft file limit they were derived from.
    pub fds: u64,
    /// Open TCP connections (HTTP, WebSocket and ICE-TCP), beyond which new ones are
    /// refused.
    pub connections: usize,
    pub connections_per_ip: usize,
    /// Signaling sockets that have not negotiated yet (`--max-pending`).
    pub pending: usize,
    pub pending_per_ip: usize,
    /// PeerConnections (`--max-sessions`, lowered when the file limit cannot hold them).
    pub sessions: usize,
    pub sessions_per_ip: usize,
}

impl Limits {
    /// Splits `fds` descriptors: a reserve, media for each session, one connection
    /// per descriptor left. Flags set caps; the file limit can only lower them.
    pub fn derive(config: &Config, fds: u64) -> Limits {
        let usable = fds.min(FD_CEILING).saturating_sub(FD_RESERVE);
        // A session needs its media, its signaling socket and room for one more connection.
        let sessions_fit = (usable / (FDS_PER_SESSION + 2)).max(1) as usize;
        let sessions = config.max_sessions.min(sessions_fit);
        let connections = (usable.saturating_sub(sessions as u64 * FDS_PER_SESSION) as usize).max(2);
        // Unless --max-pending says: half the connections (full, the oldest idle one
        // makes room, so the other half stays for sessions and HTTP).
        let pending = config.max_pending.unwrap_or(connections / 2).clamp(1, connections);
        let per_ip = |explicit: Option<usize>, of: usize| explicit.unwrap_or(of / 4).clamp(1, of);
        Limits {
            fds,
            connections,
            connections_per_ip: per_ip(config.max_connections_per_ip, connections),
            pending,
            pending_per_ip: config.max_pending_per_ip.clamp(1, pending),
            sessions,
            sessions_per_ip: per_ip(config.max_sessions_per_ip, sessions),
        }
    }
}

/// The address a per-IP cap counts `ip` under. IPv4 as itself, and so an IPv4-mapped
/// IPv6 address (how a dual-stack listener reports an IPv4 client); IPv6 by its /64,
/// the smallest block a subscriber is given: counted apart, one client would have
/// 2^64 addresses to spread over.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !u128::from(u64::MAX))),
        },
    }
}

/// Why a [`PerIp`] refused a place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The cap over all clients.
    Total,
    /// The cap for one IP.
    PerIp,
}

/// Counts things held per client (see [`client_key`]) under a total cap and a per-client
/// cap. A place is a [`Place`], freed on drop, so no way of ending (error, panic,
/// timeout) leaks one.
///
/// Built [`evicting_idle`](PerIp::evicting_idle), a full table makes room: the oldest
/// place taken with [`try_take_idle`](PerIp::try_take_idle) (a signaling socket that
/// has no session yet) is given up to the newcomer and its holder told, so idle
/// holders from many addresses cannot lock everyone else out.
pub struct PerIp {
    max: usize,
    max_per_ip: usize,
    /// Kept equal to the places held, for `/metrics`.
    gauge: Gauge,
    /// Counts evictions; `None`: a full table refuses instead.
    evictions: Option<Counter>,
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
    /// Idle places by age (ids rise): the first is the one to evict, and how to tell it.
    idle: BTreeMap<u64, oneshot::Sender<()>>,
    /// Evicted places whose holders have not dropped them yet (their counts are freed).
    evicted: HashSet<u64>,
    next_id: u64,
}

/// One place taken in a [`PerIp`].
pub struct Place {
    owner: Arc<PerIp>,
    ip: IpAddr,
    id: u64,
}

/// Resolves (`Ok`) when the idle place it came with is evicted.
pub type Eviction = oneshot::Receiver<()>;

impl PerIp {
    /// Caps of `max` in all and `max_per_ip` per IP; `gauge` follows the count. Over
    /// the total cap, newcomers are refused.
    pub fn new(max: usize, max_per_ip: usize, gauge: Gauge) -> Arc<Self> {
        Self::build(max, max_per_ip, gauge, None)
    }

    /// The same caps, but a full table evicts its oldest idle place for a newcomer
    /// (counted in `evictions`).
    pub fn evicting_idle(max: usize, max_per_ip: usize, gauge: Gauge, evictions: Counter) -> Arc<Self> {
        Self::build(max, max_per_ip, gauge, Some(evictions))
    }

    fn build(max: usize, max_per_ip: usize, gauge: Gauge, evictions: Option<Counter>) -> Arc<Self> {
        Arc::new(PerIp { max, max_per_ip, gauge, evictions, counts: Mutex::new(Counts::default()) })
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place for `ip`, or which cap is full.
    pub fn try_take(self: &Arc<Self>, ip: IpAddr) -> Result<Place, Refusal> {
        let mut counts = self.counts();
        self.take(&mut counts, ip)
    }

    /// A place for `ip` that a newcomer may evict as long as it is held, with what
    /// says when that happens; or which cap is full.
    pub fn try_take_idle(self: &Arc<Self>, ip: IpAddr) -> Result<(Place, Eviction), Refusal> {
        let mut counts = self.counts();
        let place = self.take(&mut counts, ip)?;
        let (evict, eviction) = oneshot::channel();
        counts.idle.insert(place.id, evict);
        Ok((place, eviction))
    }

    fn take(self: &Arc<Self>, counts: &mut Counts, ip: IpAddr) -> Result<Place, Refusal> {
        let ip = client_key(ip);
        // Per client first: a newcomer its own cap refuses evicts no one.
        if counts.by_ip.get(&ip).is_some_and(|held| *held >= self.max_per_ip) {
            return Err(Refusal::PerIp);
        }
        if counts.total >= self.max && !self.evict_oldest_idle(counts) {
            return Err(Refusal::Total);
        }
        *counts.by_ip.entry(ip).or_insert(0) += 1;
        counts.total += 1;
        self.gauge.set(counts.total as i64);
        counts.next_id += 1;
        Ok(Place { owner: Arc::clone(self), ip, id: counts.next_id })
    }

    /// Frees the oldest idle place's counts and tells its holder; false if there is
    /// none (or this table does not evict).
    fn evict_oldest_idle(&self, counts: &mut Counts) -> bool {
        let Some(evictions) = &self.evictions else {
            return false;
        };
        let Some((id, evict)) = counts.idle.pop_first() else {
            return false;
        };
        // Its place in the total is the newcomer's now; its address's count is freed
        // when the holder drops the Place (its socket is open until then).
        let _ = evict.send(());
        counts.evicted.insert(id);
        counts.total -= 1;
        evictions.inc();
        true
    }

    /// Places held now, over all IPs.
    pub fn total(&self) -> usize {
        self.counts().total
    }

    /// Places `ip`'s client holds now.
    pub fn held_by(&self, ip: IpAddr) -> usize {
        self.counts().by_ip.get(&client_key(ip)).copied().unwrap_or(0)
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub fn max_per_ip(&self) -> usize {
        self.max_per_ip
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut counts = self.owner.counts();
        counts.idle.remove(&self.id);
        if !counts.evicted.remove(&self.id) {
            counts.total -= 1;
        }
        self.owner.gauge.set(counts.total as i64);
        if let Some(held) = counts.by_ip.get_mut(&self.ip) {
            *held -= 1;
            if *held == 0 {
                counts.by_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_counts_both_caps_and_frees_on_drop() {
        let counter = PerIp::new(3, 2, Gauge::default());
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let a1 = counter.try_take(a).expect("a1");
        let _a2 = counter.try_take(a).expect("a2");
        assert_eq!(counter.try_take(a).err(), Some(Refusal::PerIp));
        let _b1 = counter.try_take(b).expect("b1");
        assert_eq!(counter.try_take(b).err(), Some(Refusal::Total));
        drop(a1);
        assert_eq!(counter.held_by(a), 1);
        let _b2 = counter.try_take(b).expect("a place was freed");
        assert_eq!(counter.total(), 3);
    }

    #[test]
    fn an_ipv6_slash_64_is_one_client_and_mapped_ipv4_is_its_ipv4() {
        let counter = PerIp::new(8, 1, Gauge::default());
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        let _first = counter.try_take(ip("2001:db8:0:1::1")).expect("the /64's first address");
        let other_host = counter.try_take(ip("2001:db8:0:1:ffff:ffff:ffff:ffff"));
        assert_eq!(other_host.err(), Some(Refusal::PerIp), "another address of the same /64");
        let _next = counter.try_take(ip("2001:db8:0:2::1")).expect("the next /64 is another client");
        let _v4 = counter.try_take(ip("192.0.2.7")).expect("an IPv4 client");
        assert_eq!(counter.try_take(ip("::ffff:192.0.2.7")).err(), Some(Refusal::PerIp), "mapped = IPv4");
        // Mapped IPv4 addresses are not one /64 (::ffff:0:0/96 holds every IPv4 client).
        let _other_v4 = counter.try_take(ip("::ffff:192.0.2.8")).expect("another IPv4 client, mapped");
        assert_eq!(counter.held_by(ip("2001:db8:0:1::abcd")), 1);
    }

    #[test]
    fn a_full_table_evicts_its_oldest_idle_place_for_a_newcomer() {
        let evictions = Counter::default();
        let table = PerIp::evicting_idle(3, 2, Gauge::default(), evictions.clone());
        let ip = |last: u8| IpAddr::from([10, 0, 0, last]);
        let (oldest, mut oldest_evicted) = table.try_take_idle(ip(1)).expect("oldest");
        let _busy = table.try_take(ip(2)).expect("a place that is not idle");
        let (_third, mut third_evicted) = table.try_take_idle(ip(3)).expect("third");

        let _newcomer = table.try_take(ip(4)).expect("a full table makes room");
        assert_eq!(oldest_evicted.try_recv(), Ok(()), "the oldest idle place is told");
        assert!(third_evicted.try_recv().is_err(), "only the oldest");
        assert_eq!((table.total(), evictions.get()), (3, 1));
        assert_eq!(table.held_by(ip(1)), 1, "its address counts it until it closes");
        drop(oldest);
        assert_eq!((table.total(), table.held_by(ip(1))), (3, 0), "dropped once, counted once");

        let (_fifth, _) = table.try_take_idle(ip(5)).expect("the next idle one makes room");
        assert_eq!(third_evicted.try_recv(), Ok(()));
        // The sixth evicts the fifth; then nothing idle is left, and a newcomer is refused.
        let _sixth = table.try_take(ip(6)).expect("the fifth is idle");
        assert_eq!(table.try_take(ip(7)).err(), Some(Refusal::Total), "nothing idle to evict");
        assert_eq!(evictions.get(), 3);

        // The per-address cap refuses before anyone is evicted for the newcomer.
        let small = PerIp::evicting_idle(2, 1, Gauge::default(), Counter::default());
        let (_a, mut a_evicted) = small.try_take_idle(ip(1)).expect("a");
        let (_b, _) = small.try_take_idle(ip(2)).expect("b");
        assert_eq!(small.try_take(ip(2)).err(), Some(Refusal::PerIp));
        assert!(a_evicted.try_recv().is_err(), "nobody evicted for a refused newcomer");

        // A plain table never evicts.
        let plain = PerIp::new(1, 1, Gauge::default());
        let (_idle, _) = plain.try_take_idle(ip(1)).expect("idle");
        assert_eq!(plain.try_take(ip(2)).err(), Some(Refusal::Total));
    }

    #[test]
    fn a_low_file_limit_lowers_every_cap() {
        let config = Config::new("127.0.0.1:0".parse().unwrap());
        let roomy = Limits::derive(&config, 20_000);
        assert_eq!(roomy.sessions, 64);
        assert_eq!(roomy.sessions_per_ip, 16);
        assert_eq!(roomy.pending, roomy.connections / 2, "the file budget sets the pending cap");
        assert_eq!(roomy.pending_per_ip, 8);
        assert_eq!(roomy.connections as u64, 20_000 - FD_RESERVE - 64 * FDS_PER_SESSION);

        let tight = Limits::derive(&config, 256);
        assert_eq!(tight.sessions, (256 - FD_RESERVE as usize) / (FDS_PER_SESSION as usize + 2));
        let used = FD_RESERVE + tight.sessions as u64 * FDS_PER_SESSION + tight.connections as u64;
        assert!(used <= 256, "{tight:?} needs {used} descriptors");
        assert!(tight.pending <= tight.connections / 2);
        assert!(tight.connections_per_ip < tight.connections);

        // Nothing below 1, even with no descriptors to spare.
        let starved = Limits::derive(&config, 10);
        assert!(starved.sessions >= 1 && starved.pending >= 1 && starved.connections_per_ip >= 1);
    }
}
