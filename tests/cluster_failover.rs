//! `--cluster`: a node that dies without a word (SIGKILL) drops out of the
//! directory within its TTL: the other node stops sending viewers to it, and
//! `/api/cluster` no longer lists it.

mod common;

use std::time::{Duration, Instant};

use common::redis_server::RedisServer;
use common::*;
use face_echo::loadgen::client::ClientPeer;

const TTL_SECS: u64 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_drops_out_within_the_ttl() {
    let Some(redis) = RedisServer::start().await else { return };
    let ttl = TTL_SECS.to_string();
    // A is the real binary, in its own process, so that it can be SIGKILLed.
    let mut a = spawn_server(&["--cluster", &redis.url(), "--cluster-ttl", &ttl]).await;
    let mut b = test_config();
    b.cluster = Some(redis.url());
    b.cluster_ttl = TTL_SECS;
    let b = start(b).await;

    let publisher = ClientPeer::connect(&ws_url(a.addr), CONNECT_TIMEOUT).await.expect("publisher on A");
    let watch = format!("/watch/{}", publisher.watch_token);
    let redirected = || async { http_get(b.addr, &watch).await.0 == 307 };
    assert!(eventually(Duration::from_secs(3), redirected).await, "B never sent viewers to A");
    let nodes = || async {
        let (_, body) = http_get(b.addr, "/api/cluster").await;
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["nodes"].as_array().map_or(0, Vec::len)
    };
    assert!(eventually(Duration::from_secs(3), || async { nodes().await == 2 }).await);

    a.child.kill().expect("SIGKILL");
    a.child.wait().expect("reaped");
    let killed = Instant::now();
    let gone = eventually(Duration::from_secs(TTL_SECS + 3), || async { !redirected().await }).await;
    let took = killed.elapsed();
    println!("B stopped redirecting {} ms after A was killed (TTL {TTL_SECS} s)", took.as_millis());
    assert!(gone, "B still redirects to a dead node");
    // Within the TTL, plus a 50 ms poll and the request's own time on a busy machine.
    assert!(took <= Duration::from_millis(TTL_SECS * 1000 + 500), "took {took:?}");
    // The fleet forgets A at B's next full heartbeat (a third of the TTL).
    assert!(
        eventually(Duration::from_secs(TTL_SECS), || async { nodes().await == 1 }).await,
        "A still listed"
    );
    drop(publisher);
    b.shutdown().await.unwrap();
}
