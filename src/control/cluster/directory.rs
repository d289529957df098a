//! The shared directory in Redis: which nodes are alive, how loaded, and which node
//! holds each session. Only this file knows the key layout.
//!
//! ```text
//! face-echo:nodes              sorted set: node id → when its entry expires (ms)
//! face-echo:node:<id>          JSON NodeStatus, PX ttl
//! face-echo:watch:<sha256>     the owning node's id, PX ttl, keyed by the SHA-256
//!                              of the watch token, never the token itself
//! ```
//!
//! Every entry carries a TTL renewed by the heartbeat, so a node that dies drops out
//! on its own; the sorted set lets a reader list nodes without `KEYS`/`SCAN`.
//! Keying sessions by the token's hash means reading Redis (an operator, a
//! replica, a backup) gives nothing that opens a share link: the tokens are 128
//! random bits, so the unsalted hash cannot be reversed by guessing.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const NODES: &str = "face-echo:nodes";

/// What one node says about itself on each heartbeat (and `/api/cluster` lists).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Random per process: a restarted node is a new node.
    pub id: String,
    /// How clients reach it (`--node-url`).
    pub url: String,
    /// Publishing sessions.
    pub sessions: u64,
    pub viewers: u64,
    /// PeerConnections, publishers and viewers, as `--max-sessions` counts them.
    pub slots: u64,
    pub max_sessions: u64,
    /// The process's CPU over the last heartbeat, percent of one core.
    pub cpu_percent: f64,
    /// When this status was written, ms since the epoch.
    pub updated_at_ms: u64,
}

impl NodeStatus {
    /// Its share of `--max-sessions` in use, 0..=1; a node without room is 1.
    pub fn load(&self) -> f64 {
        if self.max_sessions == 0 { 1.0 } else { self.slots as f64 / self.max_sessions as f64 }
    }

    pub fn has_room(&self) -> bool {
        self.slots < self.max_sessions
    }
}

/// The directory's key for a watch token: its SHA-256, in hex.
pub fn watch_key(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("face-echo:watch:{hex}")
}

fn node_key(id: &str) -> String {
    format!("face-echo:node:{id}")
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// One connection to the directory (cheap to clone; reconnects on its own).
#[derive(Clone)]
pub struct Directory {
    conn: ConnectionManager,
    ttl: Duration,
}

impl Directory {
    /// A directory at `url` (`redis://host:port[/db]`). Connects lazily: a Redis that
    /// is down now is not a start-up error, the first command just fails.
    pub fn open(url: &str, ttl: Duration, timeout: Duration) -> redis::RedisResult<Self> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            // The heartbeat retries with its own backoff; a command should fail fast.
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(timeout);
        let conn = redis::aio::ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Directory { conn, ttl })
    }

    fn ttl_ms(&self) -> u64 {
        self.ttl.as_millis() as u64
    }

    /// One heartbeat in one round trip: the node's status, its sessions' keys
    /// (`renew`, written or refreshed) and the keys of sessions that ended
    /// (`remove`), all with the TTL.
    pub async fn publish(
        &self,
        status: &NodeStatus,
        renew: &[String],
        remove: &[String],
    ) -> redis::RedisResult<()> {
        let json = serde_json::to_string(status).unwrap_or_default();
        let ttl = self.ttl_ms();
        let mut pipe = redis::pipe();
        pipe.cmd("SET").arg(node_key(&status.id)).arg(json).arg("PX").arg(ttl).ignore();
        pipe.cmd("ZADD").arg(NODES).arg(now_ms() + ttl).arg(&status.id).ignore();
        for key in renew {
            pipe.cmd("SET").arg(key).arg(&status.id).arg("PX").arg(ttl).ignore();
        }
        if !remove.is_empty() {
            pipe.cmd("DEL").arg(remove).ignore();
        }
        pipe.exec_async(&mut self.conn.clone()).await
    }

    /// Every live node's status (pruning the dead from the index on the way).
    pub async fn nodes(&self) -> redis::RedisResult<Vec<NodeStatus>> {
        let mut conn = self.conn.clone();
        let (ids,): (Vec<String>,) = redis::pipe()
            .cmd("ZREMRANGEBYSCORE")
            .arg(NODES)
            .arg("-inf")
            .arg(now_ms())
            .ignore()
            .cmd("ZRANGE")
            .arg(NODES)
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| node_key(id)).collect();
        let values: Vec<Option<String>> = redis::cmd("MGET").arg(keys).query_async(&mut conn).await?;
        // An entry that does not parse is another version's or garbage: skipped.
        Ok(values.into_iter().flatten().filter_map(|json| serde_json::from_str(&json).ok()).collect())
    }

    /// The live node holding the session with this watch token, if any.
    pub async fn owner(&self, token: &str) -> redis::RedisResult<Option<NodeStatus>> {
        let mut conn = self.conn.clone();
        let id: Option<String> = redis::cmd("GET").arg(watch_key(token)).query_async(&mut conn).await?;
        let Some(id) = id else { return Ok(None) };
        let json: Option<String> = redis::cmd("GET").arg(node_key(&id)).query_async(&mut conn).await?;
        Ok(json.and_then(|json| serde_json::from_str(&json).ok()))
    }

    /// A clean leave: the node's entry and its sessions' keys, at once.
    pub async fn remove(&self, id: &str, sessions: &[String]) -> redis::RedisResult<()> {
        let mut pipe = redis::pipe();
        pipe.cmd("ZREM").arg(NODES).arg(id).ignore();
        pipe.cmd("DEL").arg(node_key(id)).ignore();
        if !sessions.is_empty() {
            pipe.cmd("DEL").arg(sessions).ignore();
        }
        pipe.exec_async(&mut self.conn.clone()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_keys_hide_the_token() {
        let token = "0123456789abcdef0123456789abcdef";
        let key = watch_key(token);
        assert!(key.starts_with("face-echo:watch:") && key.len() == "face-echo:watch:".len() + 64);
        assert!(!key.contains(token));
        assert_eq!(key, watch_key(token), "stable");
        assert_ne!(key, watch_key("0123456789abcdef0123456789abcdee"));
    }

    #[test]
    fn load_counts_every_peer_connection() {
        let mut node = NodeStatus {
            id: "a".into(),
            url: "http://a".into(),
            sessions: 2,
            viewers: 2,
            slots: 4,
            max_sessions: 8,
            cpu_percent: 0.0,
            updated_at_ms: 0,
        };
        assert_eq!(node.load(), 0.5);
        assert!(node.has_room());
        node.slots = 8;
        assert!(!node.has_room());
    }
}
