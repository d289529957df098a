//! `--cluster`: Redis stopped and started again (empty). The nodes keep echoing
//! throughout, say `cluster: degraded` in `/healthz`, answer watch requests for
//! themselves without waiting on Redis, and register again once it is back.

mod common;

use std::time::{Duration, Instant};

use common::redis_server::RedisServer;
use common::*;
use face_echo::loadgen::client::ClientPeer;
use face_echo::server::RunningServer;

const TTL_SECS: u64 = 2;

async fn node(redis: &RedisServer) -> RunningServer {
    let mut config = test_config();
    config.cluster = Some(redis.url());
    config.cluster_ttl = TTL_SECS;
    start(config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_never_interrupts_the_echo_and_nodes_register_again() {
    let Some(mut redis) = RedisServer::start().await else { return };
    let (a, b) = (node(&redis).await, node(&redis).await);
    let mut publisher = ClientPeer::connect(&ws_url(a.addr), CONNECT_TIMEOUT).await.expect("publisher on A");
    let watch = format!("/watch/{}", publisher.watch_token);
    let redirected = || async { http_get(b.addr, &watch).await.0 == 307 };
    assert!(eventually(Duration::from_secs(3), redirected).await, "B never sent viewers to A");

    // Every echoed packet's arrival time, while the publisher sends for 9 s (after
    // encoding its clip, which takes a while in a debug build).
    let mut echoed = publisher.take_echoed();
    let flowing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let arrivals = tokio::spawn({
        let flowing = flowing.clone();
        async move {
            let mut arrivals = Vec::new();
            let Some(first) = echoed.recv().await else { return arrivals };
            arrivals.push((Instant::now(), first));
            flowing.store(true, std::sync::atomic::Ordering::Relaxed);
            while let Ok(Some(packet)) = tokio::time::timeout(Duration::from_secs(2), echoed.recv()).await {
                arrivals.push((Instant::now(), packet));
            }
            arrivals
        }
    });
    let outage = async {
        let echoing = || async { flowing.load(std::sync::atomic::Ordering::Relaxed) };
        assert!(eventually(Duration::from_secs(120), echoing).await, "no echo before the outage");
        tokio::time::sleep(Duration::from_secs(1)).await;
        redis.stop();
        let stopped = Instant::now();
        let degraded = || async { http_get(a.addr, "/healthz").await.1.contains("cluster: degraded") };
        assert!(eventually(Duration::from_secs(TTL_SECS + 2), degraded).await, "A never said degraded");
        assert!(
            eventually(Duration::from_secs(TTL_SECS + 2), || async {
                http_get(b.addr, "/healthz").await.1.contains("cluster: degraded")
            })
            .await
        );
        println!("degraded {} ms after Redis stopped", stopped.elapsed().as_millis());
        // Without Redis, B answers for itself, and at once.
        let asked = Instant::now();
        assert_eq!(http_get(b.addr, &watch).await.0, 200);
        let (status, body) = http_get(a.addr, "/healthz").await;
        assert_eq!(status, 200, "a degraded node still serves: {body}");
        assert!(asked.elapsed() < Duration::from_millis(500), "a watch request waited on a dead Redis");
        let (_, cluster) = http_get(a.addr, "/api/cluster").await;
        assert!(cluster.contains("\"state\":\"degraded\""), "{cluster}");
        let (_, metrics) = http_get(a.addr, "/metrics").await;
        assert!(metrics.contains("face_echo_cluster_degraded 1"), "{metrics}");

        tokio::time::sleep(Duration::from_secs(1)).await;
        redis.restart().await;
        let restarted = Instant::now();
        // The new Redis is empty: the next heartbeats write everything again.
        assert!(eventually(Duration::from_secs(TTL_SECS * 2), redirected).await, "A never registered again");
        assert!(
            eventually(Duration::from_secs(TTL_SECS * 2), || async {
                http_get(a.addr, "/healthz").await.1.contains("cluster: ok")
            })
            .await
        );
        println!("registered again {} ms after Redis restarted", restarted.elapsed().as_millis());
        (stopped, Instant::now())
    };
    let (sent, (stopped, registered_again)) = tokio::join!(publish(&mut publisher, 270), outage);
    let arrivals = arrivals.await.unwrap();
    let packets: Vec<_> = arrivals.iter().map(|(_, packet)| packet.clone()).collect();
    let identical = identical_payloads(&sent, &packets);
    let longest_gap = arrivals.windows(2).map(|w| w[1].0 - w[0].0).max().unwrap_or_default();
    println!(
        "echo through the outage: {identical} of {} payloads identical, longest gap {} ms",
        sent.len(),
        longest_gap.as_millis()
    );
    assert!(identical * 100 >= sent.len() * 99, "{identical} of {}", sent.len());
    // The echo ran before, through and after the whole outage.
    assert!(arrivals.first().is_some_and(|(at, _)| *at < stopped));
    assert!(
        arrivals.last().is_some_and(|(at, _)| *at > registered_again),
        "the clip ended before Redis was back"
    );
    // 30 fps: a frame every 33 ms; a stall of the echo would show as a long gap.
    assert!(longest_gap < Duration::from_millis(500), "the echo stalled for {longest_gap:?}");
    drop(publisher);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_before_redis_serves_alone_then_registers() {
    let Some(mut redis) = RedisServer::start().await else { return };
    redis.stop();
    let a = node(&redis).await;
    let b = node(&redis).await;
    assert!(
        eventually(Duration::from_secs(TTL_SECS), || async {
            http_get(a.addr, "/healthz").await.1.contains("cluster: degraded")
        })
        .await,
        "no Redis yet"
    );
    let mut publisher = ClientPeer::connect(&ws_url(a.addr), CONNECT_TIMEOUT).await.expect("A serves alone");
    let sent = publish(&mut publisher, 30).await;
    let echoed = collect_echo(&mut publisher, Duration::from_millis(500)).await;
    assert!(identical_payloads(&sent, &echoed) * 100 >= sent.len() * 99);
    redis.restart().await;
    let watch = format!("/watch/{}", publisher.watch_token);
    assert!(
        eventually(Duration::from_secs(TTL_SECS * 2), || async { http_get(b.addr, &watch).await.0 == 307 })
            .await,
        "A never registered once Redis came up"
    );
    drop(publisher);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}
