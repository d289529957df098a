//! `--cluster`: two nodes sharing one real redis-server. A viewer who asks the wrong
//! node is sent to the publisher's (`307` for `/watch/<token>` and `POST /whep/<token>`, `elsewhere` on the
//! WebSocket) and plays there; a full node names one with room; `/api/cluster`,
//! `/metrics` and Redis itself never show a watch token; a clean shutdown removes
//! the node at once.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::redis_server::RedisServer;
use common::*;
use face_echo::control::config::Config;
use face_echo::loadgen::client::{ClientPeer, http_request};

/// A node of the cluster at `redis`, on a free loopback port.
pub fn node_config(redis: &RedisServer, ttl: u64) -> Config {
    let mut config = test_config();
    config.cluster = Some(redis.url());
    config.cluster_ttl = ttl;
    config
}

/// GET `path`: the status and the `Location` header, if any.
async fn get_location(addr: SocketAddr, path: &str) -> (u16, Option<String>) {
    let response = http_request("GET", &format!("http://{addr}{path}"), &[], b"").await.expect("GET");
    (response.status, response.header("location").map(str::to_owned))
}

/// The first http:// URL in `text` (an error's message names the node).
fn node_in(text: &str) -> String {
    let start = text.find("http://").unwrap_or_else(|| panic!("no node URL in {text}"));
    text[start..].split(['"', ' ', ';', '\\']).next().unwrap().trim_end_matches('/').to_owned()
}

async fn cluster_json(addr: SocketAddr) -> serde_json::Value {
    let (status, body) = http_get(addr, "/api/cluster").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("cluster JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_on_the_wrong_node_is_sent_to_the_publisher_and_plays() {
    let Some(redis) = RedisServer::start().await else { return };
    let mut a = node_config(&redis, 2);
    // Room for the publisher and one viewer: then A is full.
    a.max_sessions = 2;
    a.max_sessions_per_ip = Some(2);
    let a = start(a).await;
    let b = start(node_config(&redis, 2)).await;
    let (a_url, b_url) = (format!("http://{}", a.addr), format!("http://{}", b.addr));
    assert!(
        eventually(Duration::from_secs(5), || async {
            cluster_json(a.addr).await["nodes"].as_array().is_some_and(|n| n.len() == 2)
        })
        .await,
        "the nodes never saw each other: {}",
        cluster_json(a.addr).await
    );

    let mut publisher = ClientPeer::connect(&ws_url(a.addr), CONNECT_TIMEOUT).await.expect("publisher on A");
    let token = publisher.watch_token.clone();
    // The share link, opened on B: sent to A.
    let watch = format!("/watch/{token}");
    assert!(
        eventually(Duration::from_secs(3), || async { get_location(b.addr, &watch).await.0 == 307 }).await,
        "B did not redirect"
    );
    assert_eq!(get_location(b.addr, &watch).await, (307, Some(format!("{a_url}{watch}"))));
    assert_eq!(get_location(a.addr, &watch).await, (200, None), "A serves its own session's page");
    // A WHEP player asking B: 307 to the same resource on A (the POST and its offer follow).
    let whep = format!("/whep/{token}");
    let redirected =
        http_request("POST", &format!("{b_url}{whep}"), &[("content-type", "application/sdp")], b"v=0\r\n")
            .await
            .expect("POST /whep on B");
    assert_eq!(redirected.status, 307, "{}", redirected.body);
    assert_eq!(redirected.header("location"), Some(format!("{a_url}{whep}").as_str()));
    // Unknown tokens: as a lone node answers.
    assert_eq!(get_location(b.addr, "/watch/00000000000000000000000000000000").await, (200, None));
    let unknown = ClientPeer::watch(&ws_url(b.addr), "0000", CONNECT_TIMEOUT).await.err().expect("refused");
    assert!(unknown.to_string().contains("no_such_session"), "{unknown}");

    // A `watch` on B's WebSocket: `elsewhere`, naming A; the viewer follows and plays.
    let elsewhere =
        ClientPeer::watch(&ws_url(b.addr), &token, CONNECT_TIMEOUT).await.err().expect("elsewhere");
    assert!(elsewhere.to_string().contains("elsewhere"), "{elsewhere}");
    let node = node_in(&elsewhere.to_string());
    assert_eq!(node, a_url);
    let followed = format!("{}/ws", node.replace("http://", "ws://"));
    let mut viewer = ClientPeer::watch(&followed, &token, CONNECT_TIMEOUT).await.expect("viewer on A");
    let sent = publish(&mut publisher, 60).await;
    let got = collect_echo(&mut viewer, Duration::from_millis(1000)).await;
    let identical = identical_payloads(&sent, &got);
    println!("viewer sent from B to A: {identical} of {} payloads identical", sent.len());
    assert!(identical * 100 >= sent.len() * 99, "{identical} of {}", sent.len());

    // A is full (publisher + viewer): a new publisher there is told to try B.
    let full = ClientPeer::connect(&ws_url(a.addr), CONNECT_TIMEOUT).await.err().expect("A is full");
    assert!(full.to_string().contains("server_full"), "{full}");
    assert_eq!(node_in(&full.to_string()), b_url);
    let elsewhere_publisher =
        ClientPeer::connect(&ws_url(b.addr), CONNECT_TIMEOUT).await.expect("B has room");

    // The fleet, from either node; no token anywhere.
    assert!(
        eventually(Duration::from_secs(3), || async {
            let fleet = cluster_json(b.addr).await;
            let nodes = fleet["nodes"].as_array().cloned().unwrap_or_default();
            let on_a = nodes.iter().find(|n| n["url"].as_str().is_some_and(|u| u.starts_with(&a_url)));
            on_a.is_some_and(|n| n["sessions"] == 1 && n["viewers"] == 1 && n["slots"] == 2)
                && fleet["totals"]["sessions"] == 2
        })
        .await,
        "{}",
        cluster_json(b.addr).await
    );
    let fleet = cluster_json(b.addr).await.to_string();
    println!("/api/cluster: {fleet}");
    assert!(!fleet.contains(&token), "the watch token leaked: {fleet}");
    let (_, metrics) = http_get(b.addr, "/metrics").await;
    assert!(metrics.contains(&format!("face_echo_cluster_node_sessions{{node=\"{a_url}\"}} 1")), "{metrics}");
    assert!(metrics.contains("face_echo_cluster_nodes 2"), "{metrics}");
    assert!(metrics.ends_with("# EOF\n"), "one exposition");
    assert!(!metrics.contains(&token));
    let keys = redis.keys().await;
    assert!(keys.iter().all(|key| !key.contains(&token)), "Redis holds the token itself: {keys:?}");
    assert_eq!(keys.iter().filter(|key| key.starts_with("face-echo:watch:")).count(), 2, "{keys:?}");
    assert_eq!(http_get(b.addr, "/healthz").await, (200, "ok\ncluster: ok\n".to_owned()));

    // A clean shutdown removes A's entries at once: B answers for itself again.
    drop(viewer);
    drop(publisher);
    a.shutdown().await.unwrap();
    assert_eq!(get_location(b.addr, &watch).await, (200, None), "B still sends viewers to a node that left");
    let keys = redis.keys().await;
    assert_eq!(keys.iter().filter(|key| key.starts_with("face-echo:watch:")).count(), 1, "{keys:?}");
    drop(elsewhere_publisher);
    b.shutdown().await.unwrap();
    assert!(redis.keys().await.is_empty(), "{:?}", redis.keys().await);
}
