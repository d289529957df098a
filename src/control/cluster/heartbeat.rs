//! The heartbeat: a task of its own that writes this node's status and its
//! sessions' keys to Redis every third of the TTL, and at once (only what changed)
//! when a session opens or ends, then reads the fleet back.
//!
//! Nothing waits for it: the echo path never sees it, HTTP handlers read the view
//! it leaves behind. When Redis fails, the node is `degraded`, keeps serving its own
//! sessions, and retries with a backoff that doubles up to the TTL; after a Redis
//! restart the next full beat writes everything again.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Cluster;
use super::directory::{NodeStatus, now_ms, watch_key};
use crate::control::sessions::Sessions;
use crate::metrics::Metrics;

/// What a node reports about itself.
pub(crate) struct Local {
    pub sessions: Arc<Sessions>,
    pub metrics: Arc<Metrics>,
    pub max_sessions: usize,
}

/// The first retry after a failure; it doubles up to the TTL.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

pub(crate) async fn run(cluster: Arc<Cluster>, local: Local) {
    let interval = cluster.ttl / 3;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut cpu = CpuMeter::default();
    let mut backoff = FIRST_BACKOFF;
    let mut failing = false;
    loop {
        // A full beat renews every key; a beat for a change writes only the change.
        let full = if failing {
            tokio::time::sleep(backoff).await;
            true
        } else {
            tokio::select! {
                _ = ticker.tick() => true,
                _ = cluster.changed.notified() => false,
            }
        };
        match beat(&cluster, &local, &mut cpu, full).await {
            Ok(()) => {
                if failing {
                    tracing::info!("cluster: Redis reachable again; this node is registered");
                }
                failing = false;
                backoff = FIRST_BACKOFF;
                cluster.set_degraded(None);
            }
            Err(reason) => {
                if !failing {
                    tracing::warn!(%reason, "cluster: Redis unreachable; serving this node's sessions only");
                }
                failing = true;
                backoff = (backoff * 2).min(cluster.ttl);
                cluster.gauges.heartbeat_errors.inc();
                cluster.set_degraded(Some(reason));
            }
        }
    }
}

/// One heartbeat, bounded by the TTL's third (a slower Redis is as good as none).
async fn beat(cluster: &Cluster, local: &Local, cpu: &mut CpuMeter, full: bool) -> Result<(), String> {
    let current: HashSet<String> = local.sessions.watch_tokens().iter().map(|t| watch_key(t)).collect();
    let registered = cluster.registered();
    let renew: Vec<String> = if full {
        current.iter().cloned().collect()
    } else {
        current.difference(&registered).cloned().collect()
    };
    let remove: Vec<String> = registered.difference(&current).cloned().collect();
    let status = NodeStatus {
        id: cluster.id.clone(),
        url: cluster.url.as_str().trim_end_matches('/').to_owned(),
        sessions: local.sessions.len() as u64,
        viewers: local.metrics.viewers_active.get().max(0) as u64,
        slots: local.sessions.slots_taken() as u64,
        max_sessions: local.max_sessions as u64,
        cpu_percent: if full { cpu.measure().await } else { cpu.latest },
        updated_at_ms: now_ms(),
    };
    let limit = cluster.ttl / 3;
    let timed_out = |what: &str| format!("{what} took more than {} ms", limit.as_millis());
    tokio::time::timeout(limit, cluster.directory.publish(&status, &renew, &remove))
        .await
        .map_err(|_| timed_out("the heartbeat"))?
        .map_err(|err| err.to_string())?;
    cluster.set_registered(current);
    cluster.gauges.heartbeats.inc();
    if full {
        let fleet = tokio::time::timeout(limit, cluster.directory.nodes())
            .await
            .map_err(|_| timed_out("reading the fleet"))?
            .map_err(|err| err.to_string())?;
        cluster.set_fleet(fleet);
    }
    Ok(())
}

/// The process's CPU between two readings, percent of one core.
#[derive(Default)]
struct CpuMeter {
    last: Option<(Instant, f64)>,
    latest: f64,
}

impl CpuMeter {
    async fn measure(&mut self) -> f64 {
        // /proc reads are quick, but they are file I/O: not on the async threads.
        let seconds =
            tokio::task::spawn_blocking(|| crate::process::read_self().cpu_seconds).await.unwrap_or_default();
        let now = Instant::now();
        let percent = match self.last {
            Some((then, before)) if now > then => {
                100.0 * (seconds - before).max(0.0) / now.duration_since(then).as_secs_f64()
            }
            _ => 0.0,
        };
        self.last = Some((now, seconds));
        self.latest = (percent * 10.0).round() / 10.0;
        self.latest
    }
}
