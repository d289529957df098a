//! `--cluster`: several face-echo nodes sharing one session directory in Redis.
//!
//! Each session still lives on one node (as each LiveKit room does); what the
//! nodes share is where every session is and how loaded every node is. So a watch
//! link, a WHEP URL or a `watch` message that reaches the wrong node is sent to the
//! right one, a full node names a less loaded one, and `/api/cluster` shows the
//! fleet.
//!
//! - [`directory`]: the Redis key layout and its commands (tokens only as hashes).
//! - `heartbeat`: the task that keeps this node's entries alive.
//! - `gauges`: the fleet in `/metrics`.
//!
//! Handlers never wait on the heartbeat. A redirect lookup asks Redis, bounded by
//! [`LOOKUP_TIMEOUT`], and not at all while the node is degraded: a Redis outage
//! costs a watch request at most that long, then it falls back to this node alone.

pub mod directory;
mod gauges;
mod heartbeat;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use url::Url;

use crate::control::config::Config;
use crate::control::sessions::Sessions;
use crate::metrics::Metrics;
use directory::{Directory, NodeStatus, now_ms};
use gauges::Gauges;

/// The longest a handler waits for Redis to say where a session is.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_millis(250);
/// The longest a clean shutdown waits to remove this node's entries.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(1);

/// This node's membership in the cluster.
pub struct Cluster {
    id: String,
    url: Url,
    ttl: Duration,
    directory: Directory,
    view: Mutex<View>,
    /// Woken when a session opens or ends: the heartbeat writes the change at once.
    changed: Notify,
    gauges: Gauges,
    heartbeat: Mutex<Option<JoinHandle<()>>>,
}

/// What the heartbeat last learned and wrote.
#[derive(Default)]
struct View {
    /// Why Redis cannot be used now, if it cannot.
    degraded: Option<String>,
    fleet: Vec<NodeStatus>,
    fleet_at_ms: u64,
    /// The watch keys this node has written (to renew, and remove when they end).
    registered: HashSet<String>,
}

/// The node URL clients reach: `--node-url`, or the address the server listens on.
pub fn node_url(config: &Config, listening: SocketAddr) -> anyhow::Result<Url> {
    if let Some(url) = &config.node_url {
        return Ok(url.clone());
    }
    if listening.ip().is_unspecified() {
        anyhow::bail!(
            "--cluster with --listen {listening}: other nodes cannot send clients to an unspecified address; set --node-url"
        );
    }
    let scheme = if config.tls_cert.is_some() { "https" } else { "http" };
    Ok(Url::parse(&format!("{scheme}://{listening}"))?)
}

/// Checks `--cluster` and `--node-url` (no connection is made).
pub fn check_flags(redis_url: &str, node_url: Option<&Url>) -> anyhow::Result<()> {
    if !redis_url.starts_with("redis://") {
        anyhow::bail!("--cluster {redis_url}: expected redis://HOST:PORT[/DB]");
    }
    redis::Client::open(redis_url).map_err(|err| anyhow::anyhow!("--cluster {redis_url}: {err}"))?;
    if let Some(url) = node_url
        && (!matches!(url.scheme(), "http" | "https") || url.host().is_none() || url.path() != "/")
    {
        anyhow::bail!("--node-url {url}: expected http(s)://HOST[:PORT], without a path");
    }
    Ok(())
}

impl Cluster {
    /// Joins the cluster at `redis_url` as `url` and starts the heartbeat. Redis
    /// being down is not an error: the node starts degraded and keeps trying.
    pub(crate) fn join(
        redis_url: &str,
        url: Url,
        ttl: Duration,
        sessions: Arc<Sessions>,
        metrics: Arc<Metrics>,
        max_sessions: usize,
    ) -> anyhow::Result<Arc<Cluster>> {
        let directory = Directory::open(redis_url, ttl, ttl / 3)?;
        let cluster = Arc::new(Cluster {
            id: format!("{:016x}", rand::random::<u64>()),
            url,
            ttl,
            directory,
            view: Mutex::default(),
            changed: Notify::new(),
            gauges: Gauges::new(),
            heartbeat: Mutex::new(None),
        });
        let local = heartbeat::Local { sessions, metrics, max_sessions };
        let task = tokio::spawn(heartbeat::run(Arc::clone(&cluster), local));
        *cluster.heartbeat.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        tracing::info!(node = %cluster.url, id = %cluster.id, ttl_ms = ttl.as_millis() as u64, "cluster: joining");
        Ok(cluster)
    }

    fn view(&self) -> std::sync::MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// This node's URL, as other nodes name it.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// A session opened or ended here: the heartbeat writes it now, not at the next beat.
    pub(crate) fn sessions_changed(&self) {
        self.changed.notify_one();
    }

    /// The node that holds the session with this watch token, when it is another
    /// live node. `None` when it is unknown, here, or Redis does not answer within
    /// [`LOOKUP_TIMEOUT`] (or is known to be down): the caller answers as a lone
    /// node would.
    pub async fn owner_of(&self, watch_token: &str) -> Option<Url> {
        if self.view().degraded.is_some() {
            return None;
        }
        let owner = match tokio::time::timeout(LOOKUP_TIMEOUT, self.directory.owner(watch_token)).await {
            Ok(Ok(owner)) => owner?,
            Ok(Err(err)) => {
                tracing::warn!(%err, "cluster: session lookup failed; answering for this node alone");
                return None;
            }
            Err(_) => {
                tracing::warn!("cluster: session lookup timed out; answering for this node alone");
                return None;
            }
        };
        if owner.id == self.id {
            return None;
        }
        let url = Url::parse(&owner.url).ok()?;
        self.gauges.redirects.inc();
        Some(url)
    }

    /// `url` joined with `path` (e.g. `/watch/<token>`): where a redirect points.
    pub fn at(node: &Url, path: &str) -> String {
        format!("{}{}", node.as_str().trim_end_matches('/'), path)
    }

    /// The least loaded other node with room, from the last heartbeat (no Redis
    /// round trip: a full node answers at once).
    pub fn less_loaded(&self) -> Option<Url> {
        let view = self.view();
        view.fleet
            .iter()
            .filter(|node| node.id != self.id && node.has_room())
            .min_by(|a, b| a.load().total_cmp(&b.load()))
            .and_then(|node| Url::parse(&node.url).ok())
    }

    /// One line for `/healthz`.
    pub fn health(&self) -> String {
        match &self.view().degraded {
            None => "cluster: ok".to_owned(),
            Some(reason) => format!("cluster: degraded ({reason})"),
        }
    }

    /// What `/api/cluster` shows: this node, its state, and every live node's load.
    /// Never a watch token (Redis holds only their hashes anyway).
    pub fn to_json(&self) -> Value {
        let view = self.view();
        let sum = |f: fn(&NodeStatus) -> u64| view.fleet.iter().map(f).sum::<u64>();
        json!({
            "enabled": true,
            "node": {"id": self.id, "url": self.url.as_str()},
            "state": if view.degraded.is_some() { "degraded" } else { "ok" },
            "error": view.degraded,
            "ttl_ms": self.ttl.as_millis() as u64,
            "read_at": view.fleet_at_ms,
            "totals": {
                "nodes": view.fleet.len(),
                "sessions": sum(|n| n.sessions),
                "viewers": sum(|n| n.viewers),
                "slots": sum(|n| n.slots),
                "max_sessions": sum(|n| n.max_sessions),
            },
            "nodes": view.fleet,
        })
    }

    /// The server's metrics with the fleet's gauges added.
    pub fn append_metrics(&self, exposition: String) -> String {
        self.gauges.append_to(exposition)
    }

    /// A clean shutdown: stop the heartbeat and remove this node's entries now,
    /// rather than letting them expire (at most `LEAVE_TIMEOUT`).
    pub async fn leave(&self) {
        if let Some(task) = self.heartbeat.lock().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
        let keys: Vec<String> = self.registered().into_iter().collect();
        match tokio::time::timeout(LEAVE_TIMEOUT, self.directory.remove(&self.id, &keys)).await {
            Ok(Ok(())) => tracing::info!(sessions = keys.len(), "cluster: left"),
            Ok(Err(err)) => tracing::warn!(%err, "cluster: could not remove this node; its entries expire"),
            Err(_) => tracing::warn!("cluster: Redis too slow to remove this node; its entries expire"),
        }
    }

    fn registered(&self) -> HashSet<String> {
        self.view().registered.clone()
    }

    fn set_registered(&self, keys: HashSet<String>) {
        self.view().registered = keys;
    }

    fn set_degraded(&self, reason: Option<String>) {
        self.gauges.set_degraded(reason.is_some());
        self.view().degraded = reason;
    }

    fn set_fleet(&self, fleet: Vec<NodeStatus>) {
        self.gauges.set_fleet(&fleet);
        let mut view = self.view();
        view.fleet = fleet;
        view.fleet_at_ms = now_ms();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_checked_without_connecting() {
        let url = |text: &str| Url::parse(text).unwrap();
        assert!(check_flags("redis://127.0.0.1:1", None).is_ok(), "nothing listens there: no matter");
        assert!(check_flags("redis://10.0.0.9:6379/2", Some(&url("https://node-a.example.org"))).is_ok());
        assert!(check_flags("http://127.0.0.1:6379", None).is_err());
        assert!(check_flags("redis://", None).is_err());
        assert!(check_flags("redis://h:1", Some(&url("ftp://node-a"))).is_err());
        assert!(check_flags("redis://h:1", Some(&url("http://node-a/some/path"))).is_err());
    }

    #[test]
    fn the_node_url_defaults_to_the_listening_address_but_never_a_wildcard() {
        let mut config = Config::new("127.0.0.1:0".parse().unwrap());
        config.cluster = Some("redis://127.0.0.1:6379".into());
        let url = node_url(&config, "127.0.0.1:8080".parse().unwrap()).unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:8080/");
        assert!(node_url(&config, "0.0.0.0:8080".parse().unwrap()).is_err());
        config.node_url = Some(Url::parse("https://node-a.example.org").unwrap());
        let url = node_url(&config, "0.0.0.0:8080".parse().unwrap()).unwrap();
        assert_eq!(url.as_str(), "https://node-a.example.org/");
    }
}
