//! One client address cannot hold every place: over `--max-sessions-per-ip` its
//! offer gets `ip_full` while another address still gets a session and its echo;
//! over `--max-pending-per-ip` its WebSocket is refused (`503`) before the upgrade
//! while another address still gets one. Two loopback addresses, 127.0.0.1 and
//! 127.0.0.2, are two clients. And many addresses together cannot lock newcomers
//! out: over `--max-pending`, the socket that waited longest makes room.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::*;
use face_echo::loadgen::client::{ClientPeer, open_signaling};
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const FIRST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
const SECOND: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_ip_over_its_session_cap_is_refused_while_another_gets_in() {
    let mut config = test_config();
    config.max_sessions = 4;
    config.max_sessions_per_ip = Some(1);
    let server = start(config).await;
    let url = ws_url(server.addr);

    let first = ClientPeer::connect_from(&url, FIRST, CONNECT_TIMEOUT).await.expect("first client's session");
    let refused =
        ClientPeer::connect_from(&url, FIRST, CONNECT_TIMEOUT).await.err().expect("over the per-IP cap");
    let refused = format!("{refused:#}");
    assert!(refused.contains("ip_full"), "{refused}");
    assert!(refused.contains("--max-sessions-per-ip"), "{refused}");

    // The server is far from full: another address gets its session, and its echo.
    let mut second =
        ClientPeer::connect_from(&url, SECOND, CONNECT_TIMEOUT).await.expect("another address still gets in");
    let sent = publish(&mut second, 30).await;
    let echoed = collect_echo(&mut second, Duration::from_millis(800)).await;
    assert!(identical_payloads(&sent, &echoed) * 10 >= sent.len() * 9, "the second client's echo");
    assert_eq!(sessions(server.addr).await.len(), 2);

    let (_, metrics) = http_get(server.addr, "/metrics").await;
    assert!(
        metrics.contains(r#"face_echo_connections_refused_total{reason="sessions_per_ip"} 1"#),
        "{metrics}"
    );

    // Leaving frees the address's place.
    first.close().await.expect("close");
    assert!(eventually(Duration::from_secs(3), || async { sessions(server.addr).await.len() == 1 }).await);
    let again =
        ClientPeer::connect_from(&url, FIRST, CONNECT_TIMEOUT).await.expect("a freed place is usable");
    again.close().await.expect("close");
    second.close().await.expect("close");
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_ip_over_its_pending_cap_is_refused_before_the_upgrade() {
    let mut config = test_config();
    config.max_pending_per_ip = 2;
    let server = start(config).await;
    let url = ws_url(server.addr);

    // Two idle sockets (no offer) from the first address: its cap.
    let mut idle = Vec::new();
    for _ in 0..2 {
        idle.push(open_signaling(&url, Some(FIRST)).await.expect("within the per-IP pending cap"));
    }
    let refused = open_signaling(&url, Some(FIRST)).await.expect_err("a third idle socket is refused");
    match refused.downcast_ref::<tungstenite::Error>() {
        Some(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 503),
        other => panic!("expected a 503 before the upgrade, got {other:?} ({refused:#})"),
    }
    // Another address is not affected, and neither is the health check.
    let other = open_signaling(&url, Some(SECOND)).await.expect("another address gets a socket");
    assert_eq!(http_get(server.addr, "/healthz").await, (200, "ok".into()));
    let (_, metrics) = http_get(server.addr, "/metrics").await;
    assert!(
        metrics.contains(r#"face_echo_connections_refused_total{reason="pending_per_ip"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains("face_echo_signaling_pending 3"), "{metrics}");

    // A closed idle socket gives its place back.
    drop(idle.pop());
    assert!(
        eventually(Duration::from_secs(3), || async {
            http_get(server.addr, "/metrics").await.1.contains("face_echo_signaling_pending 2")
        })
        .await
    );
    let again = open_signaling(&url, Some(FIRST)).await.expect("a freed place is usable");
    drop((again, other, idle));
    server.shutdown().await.expect("shutdown");
}

/// `name`'s value in `/metrics` (0 when absent).
async fn metric(addr: std::net::SocketAddr, name: &str) -> u64 {
    let (_, metrics) = http_get(addr, "/metrics").await;
    let prefix = format!("{name} ");
    metrics.lines().find_map(|line| line.strip_prefix(&prefix)).and_then(|n| n.parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_from_many_addresses_make_room_for_a_newcomer() {
    const PENDING: usize = 256;
    const ADDRESSES: u8 = 100;
    const PER_ADDRESS: usize = 5;
    let mut config = test_config();
    config.max_pending = Some(PENDING);
    let server = start(config).await;
    let url = ws_url(server.addr);

    // 500 sockets that never offer, from 127.0.0.10-109, each within its address's
    // cap: every one gets in, the oldest making room once the table is full.
    let mut idle = Vec::new();
    for round in 0..PER_ADDRESS {
        for last in 10..10 + ADDRESSES {
            let from = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, last));
            let socket = open_signaling(&url, Some(from)).await;
            idle.push(socket.unwrap_or_else(|err| panic!("socket {round} from {from} refused: {err:#}")));
        }
    }
    let opened = idle.len();
    let evicted = (opened - PENDING) as u64;
    assert_eq!(metric(server.addr, "face_echo_signaling_evicted_total").await, evicted);
    assert_eq!(metric(server.addr, "face_echo_signaling_pending").await, PENDING as u64);

    // The oldest was told why, then closed with "try again later".
    let oldest = &mut idle[0];
    let said = tokio::time::timeout(Duration::from_secs(5), oldest.next()).await.expect("a frame");
    let said = said.expect("open").expect("frame").into_text().expect("text");
    assert!(said.contains("idle_timeout") && said.contains("--max-pending"), "{said}");
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(5), oldest.next()).await.expect("the close") {
            Some(Ok(tungstenite::Message::Close(frame))) => {
                break frame.expect("a close frame with a reason");
            }
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(close.code, CloseCode::Again, "{close:?}");
    assert!(close.reason.contains("evicted"), "{close:?}");

    // A publisher from yet another address gets in, and its echo, at once.
    let mut publisher =
        ClientPeer::connect_from(&url, FIRST, CONNECT_TIMEOUT).await.expect("a newcomer gets a place");
    let sent = publish(&mut publisher, 30).await;
    let echoed = collect_echo(&mut publisher, Duration::from_millis(800)).await;
    assert!(identical_payloads(&sent, &echoed) * 10 >= sent.len() * 9, "the newcomer's echo");
    assert_eq!(metric(server.addr, "face_echo_signaling_evicted_total").await, evicted + 1);
    let (_, metrics) = http_get(server.addr, "/metrics").await;
    assert!(!metrics.contains(r#"reason="pending"}"#), "nobody was refused for a full table: {metrics}");
    publisher.close().await.expect("close");
    drop(idle);
    server.shutdown().await.expect("shutdown");
}
