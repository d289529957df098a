//! Soak tests against the real binary in its own process, so its RSS, open files
//! and async tasks are its own: connection churn leaves nothing behind, and a
//! load of 32 tapped sessions holds.
//!
//! Bounds here are short for CI; longer: SOAK_CYCLES=3000 SOAK_LOAD_SECONDS=600.

mod common;

use std::time::Duration;

use common::*;
use face_echo::loadgen::client::ClientPeer;
use face_echo::loadgen::clip::encode_test_pattern;
use face_echo::process::ProcessStats;
use tokio::task::JoinSet;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// One publisher's life: connect, negotiate, echo a few frames, leave (cleanly on
/// even cycles, abruptly on odd ones: socket dropped without a close frame).
async fn cycle(addr: std::net::SocketAddr, index: u64, clip: &[face_echo::loadgen::clip::EncodedFrame]) {
    let mut publisher = ClientPeer::connect(&ws_url(addr), CONNECT_TIMEOUT).await.expect("connects");
    for frame in clip {
        publisher.send_frame(&frame.data, 3000).await.expect("send");
        tokio::time::sleep(Duration::from_millis(33)).await;
    }
    let echoed = tokio::time::timeout(Duration::from_secs(5), publisher.echoed.recv()).await;
    assert!(matches!(echoed, Ok(Some(_))), "cycle {index}: no echo");
    if index.is_multiple_of(2) {
        publisher.close().await.expect("close");
    } else {
        publisher.abandon().await.expect("abandon");
    }
}

async fn run_cycles(addr: std::net::SocketAddr, from: u64, count: u64, concurrency: u64) {
    let clip = std::sync::Arc::new(encode_test_pattern(160, 120, 5, 30, 200).expect("clip"));
    let mut running = JoinSet::new();
    for index in from..from + count {
        if running.len() as u64 >= concurrency {
            running.join_next().await.expect("a cycle").expect("cycle panicked");
        }
        let clip = std::sync::Arc::clone(&clip);
        running.spawn(async move { cycle(addr, index, &clip).await });
    }
    while let Some(done) = running.join_next().await {
        done.expect("cycle panicked");
    }
}

async fn settled(addr: std::net::SocketAddr) -> ProcessStats {
    assert!(
        eventually(Duration::from_secs(5), || async { sessions(addr).await.is_empty() }).await,
        "sessions left: {:?}",
        sessions(addr).await
    );
    // Let closed sessions' last tasks and sockets wind down.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    process_stats(addr).await
}

/// 300 connect → negotiate → echo → disconnect cycles, 8 at a time: afterwards no
/// session is left, and tasks, open files and memory are back where they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_leaves_no_sessions_tasks_files_or_memory_behind() {
    let server = spawn_server(&["--decode-tap"]).await;
    let cycles = env_or("SOAK_CYCLES", 300);
    let before = process_stats(server.addr).await;
    // A first round warms allocator pools and lazily built state; the baseline is after it.
    run_cycles(server.addr, 0, 40, 8).await;
    let warm = settled(server.addr).await;
    run_cycles(server.addr, 40, cycles, 8).await;
    let after = settled(server.addr).await;
    println!("before {before:?}\nwarm   {warm:?}\nafter  {after:?}");

    let (_, metrics) = http_get(server.addr, "/metrics").await;
    assert!(metrics.contains("face_echo_sessions_active 0"), "{metrics}");
    assert!(after.tasks <= warm.tasks + 2, "tasks grew: {} → {}", warm.tasks, after.tasks);
    assert!(after.open_fds <= warm.open_fds + 2, "open files grew: {} → {}", warm.open_fds, after.open_fds);
    assert!(after.threads <= warm.threads + 2, "threads grew: {} → {}", warm.threads, after.threads);
    let growth_mb = (after.rss_bytes as f64 - warm.rss_bytes as f64) / 1e6;
    println!("RSS growth over {cycles} cycles: {growth_mb:.1} MB");
    assert!(growth_mb < 10.0, "RSS grew {growth_mb:.1} MB over {cycles} cycles");
}

/// 32 tapped sessions through the load generator: no panic, loss under 1 %.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_tapped_sessions_hold() {
    let server = spawn_server(&["--decode-tap"]).await;
    let seconds = env_or("SOAK_LOAD_SECONDS", 60);
    let summary = face_echo::loadgen::run(face_echo::loadgen::LoadgenArgs {
        url: ws_url(server.addr),
        peers: 32,
        seconds,
        size: (320, 240),
        fps: 30,
        bitrate: 500,
        json: false,
        viewers_per_peer: 0,
        results: false,
        local_ip: None,
        idle: false,
    })
    .await
    .expect("load runs");
    face_echo::loadgen::print_human(&summary);
    assert_eq!(summary.connect_failures, 0);
    assert!(summary.frames_sent > 0);
    assert!(summary.loss < 0.01, "loss {:.3} %", summary.loss * 100.0);
    assert!(
        eventually(Duration::from_secs(5), || async { sessions(server.addr).await.is_empty() }).await,
        "sessions left after the run"
    );
    let (_, metrics) = http_get(server.addr, "/metrics").await;
    assert!(metrics.contains("face_echo_tap_packets_dropped_total 0"), "the tap fell behind: {metrics}");
}
