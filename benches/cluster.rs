//! What `--cluster` costs, each figure beside a baseline measured in the same run
//! (`scripts/bench-cluster.sh`, numbers in BENCHMARKS.md). Needs `redis-server`
//! (it starts its own, on a free port, without persistence).
//!
//! 1. Redirect latency: `GET /watch/<token>` on the node that holds the session (a
//!    local lookup, `200`) vs on another node (a Redis lookup, `307`); and the two
//!    lookups alone (`Sessions::by_watch_token` vs `Cluster::owner_of`).
//! 2. Heartbeat cost per node: one beat (its status, S session keys, the fleet read
//!    back) through the same `Directory` calls the heartbeat makes, S = 0 (the
//!    baseline) vs 100 vs 1000: this process's CPU, redis-server's CPU and the
//!    commands per beat, and so the ops/s per node at the default TTL.
//! 3. What one Redis holds: N nodes × S sessions registered through the same code
//!    path, then heartbeating at the default cadence for 10 s: redis-server's
//!    memory and CPU, against the same Redis empty and idle.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use face_echo::control::cluster::directory::{Directory, NodeStatus, watch_key};
use face_echo::control::config::Config;
use face_echo::loadgen::client::ClientPeer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TTL: Duration = Duration::from_secs(5);

struct Redis {
    child: Child,
    url: String,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Redis {
    fn start() -> Option<Redis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .ok()?;
        let redis = Redis { child, url: format!("redis://127.0.0.1:{port}") };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(redis);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// redis-server's user + system CPU seconds so far.
    fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let fields: Vec<&str> =
            stat.rsplit_once(')').map(|(_, f)| f.split_whitespace().collect()).unwrap_or_default();
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
        (ticks(11) + ticks(12)) / 100.0
    }

    async fn info(&self, field: &str) -> u64 {
        let client = redis::Client::open(self.url.as_str()).expect("url");
        let mut conn = client.get_multiplexed_async_connection().await.expect("connects");
        let info: String = redis::cmd("INFO").arg("all").query_async(&mut conn).await.expect("INFO");
        info.lines()
            .find_map(|line| line.strip_prefix(&format!("{field}:")))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0)
    }

    async fn flush(&self) {
        let client = redis::Client::open(self.url.as_str()).expect("url");
        let mut conn = client.get_multiplexed_async_connection().await.expect("connects");
        let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.expect("FLUSHALL");
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let Some(redis) = Redis::start() else {
            eprintln!("SKIPPED: redis-server not found (scripts/deps.sh test installs it)");
            return;
        };
        redirect_latency(&redis).await;
        redis.flush().await;
        heartbeat_cost(&redis).await;
        redis.flush().await;
        capacity(&redis).await;
    });
}

async fn get_status(addr: SocketAddr, path: &str) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    String::from_utf8_lossy(&response).split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    (at(0.5), at(0.99))
}

async fn redirect_latency(redis: &Redis) {
    let node = || {
        let mut config = Config::new("127.0.0.1:0".parse().unwrap());
        config.cluster = Some(redis.url.clone());
        face_echo::server::start(config)
    };
    let (a, b) = (node().await.expect("A"), node().await.expect("B"));
    let publisher = ClientPeer::connect(&format!("ws://{}/ws", a.addr), Duration::from_secs(15))
        .await
        .expect("publisher on A");
    let path = format!("/watch/{}", publisher.watch_token);
    while get_status(b.addr, &path).await != 307 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rounds = 500;
    let (mut local, mut redirect) = (Vec::new(), Vec::new());
    let (mut local_lookup, mut redis_lookup) = (Vec::new(), Vec::new());
    let cluster = b.state.cluster.as_ref().expect("B is in the cluster");
    for _ in 0..rounds {
        let started = Instant::now();
        assert_eq!(get_status(a.addr, &path).await, 200);
        local.push(started.elapsed());
        let started = Instant::now();
        assert_eq!(get_status(b.addr, &path).await, 307);
        redirect.push(started.elapsed());
        let started = Instant::now();
        assert!(a.state.sessions.by_watch_token(&publisher.watch_token).is_some());
        local_lookup.push(started.elapsed());
        let started = Instant::now();
        assert!(cluster.owner_of(&publisher.watch_token).await.is_some());
        redis_lookup.push(started.elapsed());
    }
    let (l50, l99) = percentiles(local);
    let (r50, r99) = percentiles(redirect);
    let (ll50, ll99) = percentiles(local_lookup);
    let (rl50, rl99) = percentiles(redis_lookup);
    println!("## redirect latency ({rounds} rounds, interleaved)");
    println!("| request | p50 µs | p99 µs | p50 vs local |");
    println!("|---|---|---|---|");
    println!("| GET /watch on the owner (local lookup, 200) | {l50:.0} | {l99:.0} | 1.00 |");
    println!("| GET /watch on another node (Redis lookup, 307) | {r50:.0} | {r99:.0} | {:.2} |", r50 / l50);
    println!("| lookup alone: Sessions::by_watch_token | {ll50:.1} | {ll99:.1} | 1.00 |");
    println!(
        "| lookup alone: Cluster::owner_of (2 GETs) | {rl50:.1} | {rl99:.1} | {:.0} |",
        rl50 / ll50.max(0.001)
    );
    drop(publisher);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

fn status(id: &str, sessions: u64) -> NodeStatus {
    NodeStatus {
        id: id.to_owned(),
        url: format!("http://{id}.example:8080"),
        sessions,
        viewers: 0,
        slots: sessions,
        max_sessions: 128,
        cpu_percent: 0.0,
        updated_at_ms: 0,
    }
}

fn tokens(count: usize) -> Vec<String> {
    (0..count)
        .map(|_| watch_key(&format!("{:016x}{:016x}", rand::random::<u64>(), rand::random::<u64>())))
        .collect()
}

async fn heartbeat_cost(redis: &Redis) {
    println!("\n## heartbeat cost per node (one beat = status + S session keys + the fleet read)");
    println!(
        "| sessions S | beats | this process CPU µs/beat | redis-server CPU µs/beat | commands/beat | vs S=0 (redis CPU) | ops/s per node at TTL 5 s |"
    );
    println!("|---|---|---|---|---|---|---|");
    let directory = Directory::open(&redis.url, TTL, Duration::from_secs(1)).expect("directory");
    let mut baseline = 0.0;
    for sessions in [0usize, 100, 1000] {
        let keys = tokens(sessions);
        let node = status("bench-node", sessions as u64);
        let beats = if sessions >= 1000 { 200 } else { 1000 };
        let commands_before = redis.info("total_commands_processed").await;
        let (cpu_before, redis_before) = (face_echo::process::read_self().cpu_seconds, redis.cpu_seconds());
        for _ in 0..beats {
            directory.publish(&node, &keys, &[]).await.expect("beat");
            directory.nodes().await.expect("fleet");
        }
        let cpu = (face_echo::process::read_self().cpu_seconds - cpu_before) / beats as f64 * 1e6;
        let redis_cpu = (redis.cpu_seconds() - redis_before) / beats as f64 * 1e6;
        // INFO itself is one command.
        let commands = (redis.info("total_commands_processed").await - commands_before).saturating_sub(1)
            as f64
            / beats as f64;
        if sessions == 0 {
            baseline = redis_cpu.max(1.0);
        }
        let beats_per_second = 3.0 / TTL.as_secs_f64();
        println!(
            "| {sessions} | {beats} | {cpu:.0} | {redis_cpu:.0} | {commands:.0} | {:.1} | {:.0} |",
            redis_cpu / baseline,
            commands * beats_per_second
        );
    }
}

async fn capacity(redis: &Redis) {
    println!("\n## one Redis: N nodes × S sessions, heartbeating every TTL/3 for 10 s");
    println!(
        "| nodes × sessions | keys | used_memory MB | bytes per session | redis-server CPU (% of a core) | commands/s |"
    );
    println!("|---|---|---|---|---|---|");
    let idle_memory = redis.info("used_memory").await;
    let measure = |label: String, keys: u64, memory: u64, cpu: f64, ops: f64| {
        let per = if keys > 0 { memory.saturating_sub(idle_memory) as f64 / keys as f64 } else { 0.0 };
        println!("| {label} | {keys} | {:.1} | {per:.0} | {cpu:.1} | {ops:.0} |", memory as f64 / 1e6);
    };
    // The baseline: the same Redis, empty and idle, for the same 10 s.
    let (cpu_before, commands_before) = (redis.cpu_seconds(), redis.info("total_commands_processed").await);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let cpu = (redis.cpu_seconds() - cpu_before) * 10.0;
    let ops = (redis.info("total_commands_processed").await - commands_before) as f64 / 10.0;
    measure("empty, idle".into(), 0, idle_memory, cpu, ops);
    for (nodes, sessions) in [(10usize, 100usize), (100, 100), (100, 1000)] {
        redis.flush().await;
        let directory = Directory::open(&redis.url, TTL, Duration::from_secs(2)).expect("directory");
        let fleet: Vec<(NodeStatus, Vec<String>)> =
            (0..nodes).map(|n| (status(&format!("node-{n}"), sessions as u64), tokens(sessions))).collect();
        for (node, keys) in &fleet {
            directory.publish(node, keys, &[]).await.expect("register");
        }
        let memory = redis.info("used_memory").await;
        let (cpu_before, commands_before) =
            (redis.cpu_seconds(), redis.info("total_commands_processed").await);
        let until = Instant::now() + Duration::from_secs(10);
        let beating: Vec<_> = fleet
            .into_iter()
            .enumerate()
            .map(|(n, (node, keys))| {
                let directory = directory.clone();
                tokio::spawn(async move {
                    // Spread the nodes' beats over the interval, as independent nodes are.
                    let interval = TTL / 3;
                    tokio::time::sleep(interval * n as u32 / nodes as u32).await;
                    let mut ticker = tokio::time::interval(interval);
                    while Instant::now() < until {
                        ticker.tick().await;
                        let _ = directory.publish(&node, &keys, &[]).await;
                        let _ = directory.nodes().await;
                    }
                })
            })
            .collect();
        for beat in beating {
            let _ = beat.await;
        }
        let seconds = 10.0;
        let cpu = (redis.cpu_seconds() - cpu_before) / seconds * 100.0;
        let ops = (redis.info("total_commands_processed").await - commands_before) as f64 / seconds;
        measure(format!("{nodes} × {sessions}"), (nodes * sessions) as u64, memory, cpu, ops);
    }
}
