//! The fleet in Prometheus: one gauge per node and number, labelled by the node's
//! URL, plus the heartbeat's own health. Kept in a registry of their own and
//! appended to `/metrics`, because the set of nodes changes while the server runs.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::directory::NodeStatus;

type ByNode<G = Gauge> = Family<Vec<(String, String)>, G>;

pub(crate) struct Gauges {
    registry: Registry,
    nodes: Gauge,
    degraded: Gauge,
    node_sessions: ByNode,
    node_viewers: ByNode,
    node_slots: ByNode,
    node_max_sessions: ByNode,
    node_cpu_percent: ByNode<Gauge<f64, AtomicU64>>,
    pub heartbeats: Counter,
    pub heartbeat_errors: Counter,
    pub redirects: Counter,
}

impl Gauges {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("face_echo_cluster");
        let gauges = Gauges {
            nodes: Gauge::default(),
            degraded: Gauge::default(),
            node_sessions: Family::default(),
            node_viewers: Family::default(),
            node_slots: Family::default(),
            node_max_sessions: Family::default(),
            node_cpu_percent: Family::default(),
            heartbeats: Counter::default(),
            heartbeat_errors: Counter::default(),
            redirects: Counter::default(),
            registry: Registry::default(),
        };
        registry.register("nodes", "Live nodes in the cluster directory", gauges.nodes.clone());
        registry.register(
            "degraded",
            "1 while this node cannot reach the cluster's Redis",
            gauges.degraded.clone(),
        );
        registry.register("node_sessions", "Publishing sessions per node", gauges.node_sessions.clone());
        registry.register("node_viewers", "Viewers per node", gauges.node_viewers.clone());
        registry.register(
            "node_slots",
            "PeerConnections (publishers and viewers) per node",
            gauges.node_slots.clone(),
        );
        registry.register("node_max_sessions", "--max-sessions per node", gauges.node_max_sessions.clone());
        registry.register(
            "node_cpu_percent",
            "Process CPU per node, percent of one core",
            gauges.node_cpu_percent.clone(),
        );
        registry.register("heartbeats", "Heartbeats written to Redis", gauges.heartbeats.clone());
        registry.register(
            "heartbeat_errors",
            "Heartbeats that failed (Redis unreachable or slow)",
            gauges.heartbeat_errors.clone(),
        );
        registry.register(
            "redirects",
            "Watch requests sent to the node that holds the session",
            gauges.redirects.clone(),
        );
        Gauges { registry, ..gauges }
    }

    pub fn set_degraded(&self, degraded: bool) {
        self.degraded.set(i64::from(degraded));
    }

    /// Replaces the per-node gauges with this view of the fleet.
    pub fn set_fleet(&self, fleet: &[NodeStatus]) {
        self.nodes.set(fleet.len() as i64);
        for family in [&self.node_sessions, &self.node_viewers, &self.node_slots, &self.node_max_sessions] {
            family.clear();
        }
        self.node_cpu_percent.clear();
        for node in fleet {
            let label = vec![("node".to_owned(), node.url.clone())];
            self.node_sessions.get_or_create(&label).set(node.sessions as i64);
            self.node_viewers.get_or_create(&label).set(node.viewers as i64);
            self.node_slots.get_or_create(&label).set(node.slots as i64);
            self.node_max_sessions.get_or_create(&label).set(node.max_sessions as i64);
            self.node_cpu_percent.get_or_create(&label).set(node.cpu_percent);
        }
    }

    /// `exposition` (the server's own metrics, ending in `# EOF`) with these added.
    pub fn append_to(&self, exposition: String) -> String {
        let mut text = match exposition.strip_suffix("# EOF\n") {
            Some(body) => body.to_owned(),
            None => exposition,
        };
        // Writing into a String cannot fail.
        let _ = encode_registry(&mut text, &self.registry);
        let _ = encode_eof(&mut text);
        text
    }
}
