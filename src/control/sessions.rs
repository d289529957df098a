//! The table of live sessions behind `/api/sessions`, `face_echo_sessions_active`,
//! `--max-sessions` and `--max-sessions-per-ip`.
//!
//! A place in the table is a [`Slot`]: taking one checks the limit, dropping it
//! frees the place and updates the gauge. Because freeing happens in `Drop`, every
//! way a connection can end (clean close, error, panic, shutdown) leaves no ghost.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::control::limits::{Refusal, client_key};
use crate::metrics::Metrics;
use crate::session::SessionInfo;

pub struct Sessions {
    max: usize,
    max_per_ip: usize,
    metrics: Arc<Metrics>,
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    /// Slots taken, including those still negotiating (not yet in `by_id`).
    taken: usize,
    /// Slots taken per client ([`client_key`]): one client cannot hold every place.
    by_ip: HashMap<IpAddr, usize>,
    by_id: HashMap<String, Arc<SessionInfo>>,
}

/// One taken place in the table; frees itself on drop.
pub struct Slot {
    sessions: Arc<Sessions>,
    ip: IpAddr,
    id: Option<String>,
}

impl Sessions {
    pub fn new(max: usize, max_per_ip: usize, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Sessions { max, max_per_ip, metrics, table: Mutex::new(Table::default()) })
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a place for a new session from `ip`, or says which limit is full:
    /// `--max-sessions` (`Total`) or `--max-sessions-per-ip` (`PerIp`).
    pub fn try_take(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refusal> {
        let ip = client_key(ip);
        let mut table = self.table();
        if table.taken >= self.max {
            return Err(Refusal::Total);
        }
        let held = table.by_ip.entry(ip).or_insert(0);
        if *held >= self.max_per_ip {
            return Err(Refusal::PerIp);
        }
        *held += 1;
        table.taken += 1;
        Ok(Slot { sessions: Arc::clone(self), ip, id: None })
    }

    /// The limits: over all clients, and per client IP.
    pub fn max(&self) -> (usize, usize) {
        (self.max, self.max_per_ip)
    }

    /// The JSON array `/api/sessions` returns, oldest first.
    pub fn to_json(&self) -> Value {
        let mut infos: Vec<Arc<SessionInfo>> = self.table().by_id.values().cloned().collect();
        infos.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
        Value::Array(infos.iter().map(|info| info.to_json()).collect())
    }

    /// A live session by id.
    pub fn get(&self, id: &str) -> Option<Arc<SessionInfo>> {
        self.table().by_id.get(id).cloned()
    }

    /// A live session by its watch token (the share link's secret).
    pub fn by_watch_token(&self, token: &str) -> Option<Arc<SessionInfo>> {
        self.table().by_id.values().find(|info| info.watch_token == token).cloned()
    }

    /// Every live session's watch token (for the cluster directory, which stores
    /// only their hashes).
    pub(crate) fn watch_tokens(&self) -> Vec<String> {
        self.table().by_id.values().map(|info| info.watch_token.clone()).collect()
    }

    /// How many live sessions' media arrives over UDP, and over TCP.
    pub fn count_transports(&self) -> (usize, usize) {
        let table = self.table();
        let count = |name| table.by_id.values().filter(|info| info.plane.transport() == Some(name)).count();
        (count("udp"), count("tcp"))
    }

    pub fn len(&self) -> usize {
        self.table().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Places taken: listed sessions, viewers, and connections still negotiating.
    pub fn slots_taken(&self) -> usize {
        self.table().taken
    }
}

impl Slot {
    /// Lists a negotiated session under its id.
    pub fn register(&mut self, info: Arc<SessionInfo>) {
        let id = info.id.clone();
        let mut table = self.sessions.table();
        table.by_id.insert(id.clone(), info);
        self.sessions.metrics.sessions_active.set(table.by_id.len() as i64);
        self.sessions.metrics.sessions_total.inc();
        self.id = Some(id);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut table = self.sessions.table();
        table.taken -= 1;
        if let Some(held) = table.by_ip.get_mut(&self.ip) {
            *held -= 1;
            if *held == 0 {
                table.by_ip.remove(&self.ip);
            }
        }
        if let Some(id) = &self.id {
            table.by_id.remove(id);
        }
        self.sessions.metrics.sessions_active.set(table.by_id.len() as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_enforce_the_limit_and_free_themselves() {
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let sessions = Sessions::new(2, 2, Arc::new(Metrics::new()));
        let a = sessions.try_take(ip).expect("first");
        let b = sessions.try_take(ip).expect("second");
        assert_eq!(sessions.try_take(ip).err(), Some(Refusal::Total), "limit of 2");
        drop(a);
        let c = sessions.try_take(ip).expect("a place was freed");
        drop((b, c));
        assert!(sessions.is_empty());
    }

    #[test]
    fn one_ip_cannot_take_every_slot() {
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let sessions = Sessions::new(4, 2, Arc::new(Metrics::new()));
        let a1 = sessions.try_take(a).expect("a1");
        let _a2 = sessions.try_take(a).expect("a2");
        assert_eq!(sessions.try_take(a).err(), Some(Refusal::PerIp));
        let _b1 = sessions.try_take(b).expect("another IP still gets in");
        drop(a1);
        let _a3 = sessions.try_take(a).expect("a's freed place is a's again");
    }

    #[test]
    fn one_ipv6_slash_64_is_one_client() {
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        let sessions = Sessions::new(4, 1, Arc::new(Metrics::new()));
        let _first = sessions.try_take(ip("2001:db8::1")).expect("first");
        assert_eq!(sessions.try_take(ip("2001:db8::2")).err(), Some(Refusal::PerIp), "same /64");
        let _other = sessions.try_take(ip("2001:db8:1::1")).expect("another /64");
        let _v4 = sessions.try_take(ip("10.0.0.1")).expect("an IPv4 client");
        assert_eq!(sessions.try_take(ip("::ffff:10.0.0.1")).err(), Some(Refusal::PerIp), "mapped = IPv4");
    }
}
