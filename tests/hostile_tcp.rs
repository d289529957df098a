//! Hostile clients on the ICE-TCP port (the `--listen` port, which tells ICE-TCP from
//! HTTP by the first bytes): garbage, a 64 KiB frame, a binding request for nobody, a
//! STUN header and then silence, and a thousand connections that never speak. Each
//! costs what the limits say and no more: closed at once when it can be judged,
//! after the timeout when it cannot, a few KiB each meanwhile; and a TCP client's
//! echo goes on throughout.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use face_echo::loadgen::client::{ClientOptions, ClientPeer};
use face_echo::media::udp_mux::IceCredentials;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `first_bytes`' patience on the HTTP port, and the ICE-TCP mux's for a first frame.
const FIRST_BYTES: Duration = Duration::from_secs(10);
const AUTH_TIMEOUT: Duration = Duration::from_secs(5);
const SILENT: usize = 1000;
/// Of each kind that can be judged at once, or after AUTH_TIMEOUT.
const EACH: usize = 50;

/// A STUN binding request's first ten bytes, framed (RFC 4571), claiming `len` bytes.
fn stun_head(len: u16) -> Vec<u8> {
    let mut head = len.to_be_bytes().to_vec();
    head.extend([0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42]);
    head
}

fn framed(packet: &[u8]) -> Vec<u8> {
    let mut bytes = (packet.len() as u16).to_be_bytes().to_vec();
    bytes.extend(packet);
    bytes
}

/// Opens `count` connections and writes `bytes` on each.
async fn open(addr: SocketAddr, count: usize, bytes: &[u8]) -> Vec<TcpStream> {
    let mut streams = Vec::with_capacity(count);
    for _ in 0..count {
        let mut stream = TcpStream::connect(addr).await.expect("connects");
        if !bytes.is_empty() {
            // The server may close before it has read all (a 64 KiB frame).
            let _ = stream.write_all(bytes).await;
        }
        streams.push(stream);
    }
    streams
}

/// How many of `streams` the server has closed within `within`.
async fn closed_by_server(streams: &mut [TcpStream], within: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + within;
    let mut closed = 0;
    for stream in streams.iter_mut() {
        let mut buf = [0u8; 256];
        loop {
            match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    closed += 1;
                    break;
                }
                Ok(Ok(_)) => continue,
                Err(_) => break,
            }
        }
    }
    closed
}

fn metric(metrics: &str, name: &str) -> u64 {
    let prefix = format!("{name} ");
    metrics.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|n| n.parse().ok()).unwrap_or(0)
}

async fn tcp_stats(addr: SocketAddr) -> serde_json::Value {
    sessions(addr).await[0]["media"]["tcp"]["stats"].clone()
}

async fn echo_over_tcp(publisher: &mut ClientPeer) {
    let sent = publish(publisher, 20).await;
    let echoed = collect_echo(publisher, Duration::from_millis(800)).await;
    assert_eq!(identical_payloads(&sent, &echoed), sent.len(), "the TCP client's echo goes on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_tcp_clients_cost_what_the_limits_say() {
    let server = spawn_server(&[]).await;
    let addr = server.addr;
    let options = ClientOptions { tcp_only: true, ..Default::default() };
    let mut publisher =
        ClientPeer::connect_options(&ws_url(addr), options, CONNECT_TIMEOUT).await.expect("TCP client");
    echo_over_tcp(&mut publisher).await;
    let before = process_stats(addr).await;

    // Judged at once: garbage, a 64 KiB frame, a binding request nobody's credentials sign.
    let started = Instant::now();
    let mut garbage = open(addr, EACH, b"\x00\x05hello, world").await;
    // Over MAX_FRAME (4096) but sniffed as ICE-TCP; a 64 KiB one cannot be (its first
    // byte is a letter's): the HTTP server refuses it.
    let mut oversize = open(addr, EACH, &[stun_head(6000), vec![0x55; 6000]].concat()).await;
    let mut huge = open(addr, EACH, &[stun_head(u16::MAX), vec![0x55; 64 * 1024]].concat()).await;
    let mut stranger = open(addr, EACH, &framed(&IceCredentials::random().binding_request())).await;
    // Judged after the timeouts: a STUN header then silence, and silence.
    let mut header_only = open(addr, EACH, &stun_head(100)).await;
    let mut silent = open(addr, SILENT, b"").await;
    let judged = [
        ("garbage", &mut garbage),
        ("oversize", &mut oversize),
        ("huge", &mut huge),
        ("stranger", &mut stranger),
    ];
    for (name, streams) in judged {
        assert_eq!(closed_by_server(streams, Duration::from_secs(2)).await, EACH, "{name} closed at once");
    }
    println!("judged connections closed in {:?}", started.elapsed());

    // Meanwhile: a few KiB per open connection, and the TCP client's echo goes on.
    let held = process_stats(addr).await;
    let open_now = SILENT + EACH;
    let per_connection = held.rss_bytes.saturating_sub(before.rss_bytes) / open_now as u64;
    println!(
        "{open_now} idle connections: RSS {} -> {} KiB ({per_connection} B each), fds {} -> {}",
        before.rss_bytes / 1024,
        held.rss_bytes / 1024,
        before.open_fds,
        held.open_fds
    );
    assert!(per_connection < 16 * 1024, "{per_connection} bytes per idle connection");
    assert!(held.open_fds >= before.open_fds + open_now as u64 - 10, "they are open: {held:?}");
    echo_over_tcp(&mut publisher).await;
    let (_, metrics) = http_get(addr, "/healthz").await;
    assert!(!metrics.is_empty(), "HTTP answers");

    // Closed by the server after their timeouts, not before.
    assert_eq!(closed_by_server(&mut header_only, AUTH_TIMEOUT + Duration::from_secs(3)).await, EACH);
    let remaining = FIRST_BYTES.saturating_sub(started.elapsed()) + Duration::from_secs(3);
    assert_eq!(closed_by_server(&mut silent, remaining).await, SILENT, "silent ones closed");
    assert!(started.elapsed() >= FIRST_BYTES, "not before the timeout");

    let stats = tcp_stats(addr).await;
    println!("ICE-TCP stats: {stats}");
    assert_eq!(stats["oversize"], EACH as u64, "{stats}");
    assert_eq!(stats["unauthenticated"], EACH as u64, "{stats}");
    assert_eq!(stats["timed_out"], EACH as u64, "{stats}");
    assert_eq!(stats["bound"], 1, "only the real client: {stats}");
    let (_, metrics) = http_get(addr, "/metrics").await;
    assert_eq!(metric(&metrics, "face_echo_connections_refused_total{reason=\"silent\"}"), SILENT as u64);
    assert_eq!(metric(&metrics, "face_echo_connections_refused_total{reason=\"unrecognized\"}"), EACH as u64);
    let after = process_stats(addr).await;
    assert!(
        after.open_fds <= before.open_fds + 5,
        "every hostile connection closed: {before:?} -> {after:?}"
    );
    echo_over_tcp(&mut publisher).await;
    let _ = publisher.close().await;
}

/// On a port of its own (`--tcp-port`) nothing is sniffed: every connection is the
/// ICE-TCP mux's, and must authenticate within AUTH_TIMEOUT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_its_own_port_every_connection_must_authenticate() {
    let port = free_port();
    let server = spawn_server(&["--tcp-port", &port.to_string()]).await;
    let addr = server.addr;
    let ice = SocketAddr::new(addr.ip(), port);
    let options = ClientOptions { tcp_only: true, ..Default::default() };
    let mut publisher =
        ClientPeer::connect_options(&ws_url(addr), options, CONNECT_TIMEOUT).await.expect("TCP client");
    echo_over_tcp(&mut publisher).await;

    let started = Instant::now();
    let mut huge = open(ice, EACH, &[stun_head(u16::MAX), vec![0x55; 64 * 1024]].concat()).await;
    let mut http = open(ice, EACH, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut stranger = open(ice, EACH, &framed(&IceCredentials::random().binding_request())).await;
    let mut silent = open(ice, EACH, b"").await;
    for (name, streams) in [("huge", &mut huge), ("http", &mut http), ("stranger", &mut stranger)] {
        assert_eq!(closed_by_server(streams, Duration::from_secs(2)).await, EACH, "{name} closed at once");
    }
    echo_over_tcp(&mut publisher).await;
    assert_eq!(closed_by_server(&mut silent, AUTH_TIMEOUT + Duration::from_secs(3)).await, EACH);
    assert!(started.elapsed() >= AUTH_TIMEOUT, "not before the timeout");
    let stats = tcp_stats(addr).await;
    println!("ICE-TCP stats: {stats}");
    // "GE" is a 18 245-byte frame.
    assert_eq!(stats["oversize"], 2 * EACH as u64, "{stats}");
    assert_eq!(stats["unauthenticated"], EACH as u64, "{stats}");
    assert_eq!(stats["timed_out"], EACH as u64, "{stats}");
    assert_eq!(stats["bound"], 1, "{stats}");
    echo_over_tcp(&mut publisher).await;
    let _ = publisher.close().await;
}

/// A client with its own session's credentials gets [`MAX_PER_SESSION`] connections
/// (and their queues), no more; they end with the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_holds_at_most_four_connections_and_they_end_with_it() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let server = start(test_config()).await;
    let (_pc, offer) = real_offer().await;
    let mut ws =
        face_echo::loadgen::client::open_signaling(&ws_url(server.addr), None).await.expect("WebSocket");
    let offer = serde_json::json!({"type": "offer", "sdp": offer}).to_string();
    ws.send(Message::text(offer)).await.expect("offer");
    let answer = loop {
        let Some(Ok(Message::Text(text))) = ws.next().await else { panic!("no answer") };
        let message: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
        if message["type"] == "answer" {
            break message["sdp"].as_str().unwrap().to_owned();
        }
    };
    let server_credentials = answer_credentials(&answer);

    let mut streams = open(server.addr, 6, &framed(&server_credentials.binding_request())).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = tcp_stats(server.addr).await;
    assert_eq!((stats["bound"].as_u64(), stats["over_session_cap"].as_u64()), (Some(4), Some(2)), "{stats}");
    let (mut bound, mut over) = (Vec::new(), Vec::new());
    for stream in streams.drain(..) {
        let mut buf = [0u8; 1];
        // The refused ones are closed already; the bound ones wait for more.
        match tokio::time::timeout(Duration::from_millis(200), stream.peek(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => over.push(stream),
            _ => bound.push(stream),
        }
    }
    assert_eq!((bound.len(), over.len()), (4, 2));

    // The session ends (its signaling closes): so do its connections, at once.
    drop(ws);
    assert_eq!(closed_by_server(&mut bound, Duration::from_secs(5)).await, 4, "closed with the session");
}
