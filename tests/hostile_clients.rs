//! A flood of idle sockets cannot take the server: the real binary, in its own
//! process under a file limit of 256 (so the flood stays small), is flooded with
//! WebSockets that never send an offer and with TCP connections that never send a
//! request, from one address and then from many, far beyond its caps and its file
//! limit. Throughout, `/healthz` answers, refusals are fast `503`s, the process
//! stays under its limit, and a real publisher gets its echo: when idle sockets from
//! many addresses fill the pending table, the oldest makes room for the newcomer.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use face_echo::loadgen::client::{ClientPeer, open_signaling};
use face_echo::process::ProcessStats;
use tokio_tungstenite::tungstenite;

const FD_LIMIT: u64 = 256;
const FIRST_MESSAGE_TIMEOUT_SECS: u64 = 5;

/// The binary under `RLIMIT_NOFILE` = 256 (soft and hard); killed when dropped.
async fn spawn_limited() -> Server {
    let (mut command, addr) = server_command();
    command
        .args(["--first-message-timeout", &FIRST_MESSAGE_TIMEOUT_SECS.to_string()])
        .env("RUST_LOG", "face_echo=info")
        .stderr(Stdio::null());
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            let limit =
                libc::rlimit { rlim_cur: FD_LIMIT as libc::rlim_t, rlim_max: FD_LIMIT as libc::rlim_t };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    spawn(command, addr).await
}

fn loopback(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// What happened to one flooding attempt.
#[derive(Debug, Default)]
struct Outcomes {
    /// Upgraded WebSockets or TCP connections the server kept (held open here).
    open: usize,
    /// Answered `503`.
    busy: usize,
    /// Closed or reset without an answer.
    closed: usize,
}

/// Opens `count` WebSockets from `from` that never send anything; keeps the open ones.
async fn flood_ws(
    addr: SocketAddr,
    from: IpAddr,
    count: usize,
    held: &mut Vec<Box<dyn Send>>,
    outcomes: &mut Outcomes,
) {
    for _ in 0..count {
        match tokio::time::timeout(Duration::from_secs(5), open_signaling(&ws_url(addr), Some(from))).await {
            Ok(Ok(ws)) => {
                outcomes.open += 1;
                held.push(Box::new(ws));
            }
            Ok(Err(err)) => match err.downcast_ref::<tungstenite::Error>() {
                Some(tungstenite::Error::Http(response)) if response.status() == 503 => outcomes.busy += 1,
                _ => outcomes.closed += 1,
            },
            Err(_) => panic!("a WebSocket attempt from {from} hung for 5 s: refusals must be fast"),
        }
    }
}

/// Opens `count` TCP connections from `from` that never send a request; keeps them.
async fn flood_tcp(addr: SocketAddr, from: IpAddr, count: usize, held: &mut Vec<Box<dyn Send>>) {
    for _ in 0..count {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind((from, 0).into()).expect("bind");
        if let Ok(stream) = socket.connect(addr).await {
            held.push(Box::new(stream));
        }
    }
}

/// `/healthz` answers `ok`, quickly.
async fn healthy(addr: SocketAddr) {
    let started = Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(2), http_get(addr, "/healthz")).await;
    assert_eq!(answer.ok(), Some((200, "ok".to_owned())), "/healthz during the flood");
    assert!(started.elapsed() < Duration::from_secs(1), "/healthz took {:?}", started.elapsed());
}

async fn process_stats(addr: SocketAddr) -> ProcessStats {
    let (status, body) = http_get(addr, "/api/process").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("process stats")
}

async fn echo_works(addr: SocketAddr, from: IpAddr) {
    let mut publisher = ClientPeer::connect_from(&ws_url(addr), from, CONNECT_TIMEOUT)
        .await
        .expect("a real publisher connects");
    let sent = publish(&mut publisher, 30).await;
    let echoed = collect_echo(&mut publisher, Duration::from_millis(800)).await;
    let identical = identical_payloads(&sent, &echoed);
    assert!(identical * 10 >= sent.len() * 9, "echo: {identical} of {} packets", sent.len());
    publisher.close().await.expect("close");
}

fn refused(metrics: &str, reason: &str) -> u64 {
    let prefix = format!("face_echo_connections_refused_total{{reason=\"{reason}\"}} ");
    metrics.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|n| n.parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_sockets_cannot_take_the_server() {
    init_logging();
    let server = spawn_limited().await;
    let addr = server.addr;
    let mut held: Vec<Box<dyn Send>> = Vec::new();

    // One client, 127.0.0.2: 400 idle WebSockets, beyond its pending cap and the
    // whole process's file limit; and 127.0.0.3: 400 TCP connections that say nothing.
    let mut one = Outcomes::default();
    let started = Instant::now();
    flood_ws(addr, loopback(2), 400, &mut held, &mut one).await;
    flood_tcp(addr, loopback(3), 400, &mut held).await;
    println!("one client's WebSockets: {one:?} in {:?}", started.elapsed());
    // 8 (--max-pending-per-ip's default) at a time; a slow machine may see the first
    // 8 let go (--first-message-timeout) while the flood still runs.
    let rounds = 1 + (started.elapsed().as_secs() / FIRST_MESSAGE_TIMEOUT_SECS) as usize;
    assert!((8..=8 * rounds).contains(&one.open), "--max-pending-per-ip: {one:?}");
    assert_eq!(one.open + one.busy + one.closed, 400);
    assert!(one.busy > 300, "refusals are 503s: {one:?}");
    healthy(addr).await;
    let stats = process_stats(addr).await;
    println!("under one client's flood: {stats:?}");
    assert!(stats.open_fds < FD_LIMIT, "{} descriptors open", stats.open_fds);
    // A real publisher from another address gets its echo meanwhile.
    echo_works(addr, loopback(1)).await;

    // Many clients, 127.0.0.10..: 12 idle WebSockets from each. Each address gets its
    // 8, the oldest idle socket making room once the total pending cap is reached;
    // beyond its 8, 503s; and /healthz still answers.
    let mut many = Outcomes::default();
    for last in 10..40 {
        flood_ws(addr, loopback(last), 12, &mut held, &mut many).await;
    }
    println!("many clients' WebSockets: {many:?}");
    assert!(many.open >= 30 * 8, "every address got in: {many:?}");
    assert_eq!(many.open + many.busy + many.closed, 30 * 12);
    healthy(addr).await;
    // A real publisher from another address gets in while the flood holds the table.
    echo_works(addr, loopback(1)).await;
    let (status, metrics) = http_get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(refused(&metrics, "pending_per_ip") >= 392 - 8 * rounds as u64, "{metrics}");
    assert_eq!(refused(&metrics, "pending"), 0, "a full table evicts instead of refusing: {metrics}");
    let evicted = metrics.lines().find_map(|l| l.strip_prefix("face_echo_signaling_evicted_total "));
    assert!(evicted.and_then(|n| n.parse::<u64>().ok()).is_some_and(|n| n > 100), "{metrics}");
    assert!(refused(&metrics, "connections_per_ip") > 0, "the silent TCP flood: {metrics}");
    assert_eq!(refused(&metrics, "fd_exhausted"), 0, "accept never ran out of descriptors: {metrics}");
    let stats = process_stats(addr).await;
    println!("under many clients' flood: {stats:?}");
    assert!(stats.open_fds < FD_LIMIT, "{} descriptors open", stats.open_fds);

    // The idle sockets are let go after --first-message-timeout, and new publishers
    // get in again, even while the flooders keep their (closed) sockets.
    tokio::time::sleep(Duration::from_secs(FIRST_MESSAGE_TIMEOUT_SECS + 1)).await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            http_get(addr, "/metrics").await.1.contains("face_echo_signaling_pending 0")
        })
        .await,
        "idle sockets outlived --first-message-timeout"
    );
    echo_works(addr, loopback(1)).await;
    healthy(addr).await;
    drop(held);
}
