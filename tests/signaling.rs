//! Bad signaling input gets its typed error, the connection stays usable, and a
//! normal offer on the same connection still works afterwards.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use face_echo::peer::{self, PeerNetwork};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use webrtc::peer_connection::{PeerConnection, PeerConnectionEventHandler};

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Quiet;
#[async_trait::async_trait]
impl PeerConnectionEventHandler for Quiet {}

async fn connect(addr: std::net::SocketAddr) -> Ws {
    tokio_tungstenite::connect_async(ws_url(addr)).await.expect("ws connects").0
}

/// The next JSON message, or `None` if nothing comes within `wait`.
async fn next_json(ws: &mut Ws, wait: Duration) -> Option<Value> {
    loop {
        match tokio::time::timeout(wait, ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => return Some(serde_json::from_str(text.as_str()).expect("server sends JSON")),
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Err(_) => return None,
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(err))) => panic!("socket error: {err}"),
        }
    }
}

/// The next message that is not a trickled candidate.
async fn next_non_ice(ws: &mut Ws) -> Option<Value> {
    loop {
        let message = next_json(ws, Duration::from_secs(5)).await?;
        if message["type"] != "ice" {
            return Some(message);
        }
    }
}

async fn expect_error(ws: &mut Ws, frame: Message, code: &str) {
    let shown: String = format!("{frame:?}").chars().take(120).collect();
    ws.send(frame).await.expect("send");
    let reply = next_non_ice(ws).await.unwrap_or_else(|| panic!("no reply to {shown}"));
    assert_eq!(reply["type"], "error", "reply to {shown}: {reply}");
    assert_eq!(reply["code"], code, "reply to {shown}: {reply}");
    assert!(reply["message"].as_str().is_some_and(|m| !m.is_empty()), "{reply}");
}

/// A real offer from a webrtc-rs peer (kept alive by the caller).
async fn real_offer() -> (Arc<dyn PeerConnection>, String) {
    let pc = peer::build(&PeerNetwork::loopback(), None, Arc::new(Quiet)).await.expect("pc");
    pc.add_track(peer::vp8_rtp_track("s", "t") as _).await.expect("track");
    let offer = pc.create_offer(None).await.expect("offer");
    pc.set_local_description(offer).await.expect("sld");
    let sdp = pc.local_description().await.expect("local").sdp;
    (pc, sdp)
}

fn text(value: Value) -> Message {
    Message::text(value.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_gets_its_code_and_a_good_offer_still_works() {
    let server = start(test_config()).await;
    let mut ws = connect(server.addr).await;

    expect_error(&mut ws, Message::text("{not json"), "bad_json").await;
    expect_error(&mut ws, Message::text("[1,2,3]"), "bad_json").await;
    expect_error(&mut ws, Message::text("\"offer\""), "bad_json").await;
    expect_error(&mut ws, Message::binary(vec![0xff, 0x00, 0x7b]), "bad_json").await;
    expect_error(&mut ws, text(json!({"sdp": "v=0"})), "bad_json").await;
    expect_error(&mut ws, text(json!({"type": 42})), "bad_json").await;
    expect_error(&mut ws, text(json!({"type": "subscribe"})), "unknown_type").await;
    expect_error(&mut ws, text(json!({"type": "offer"})), "bad_sdp").await;
    expect_error(&mut ws, text(json!({"type": "offer", "sdp": 7})), "bad_sdp").await;
    expect_error(&mut ws, text(json!({"type": "offer", "sdp": "hello"})), "bad_sdp").await;
    expect_error(&mut ws, text(json!({"type": "offer", "sdp": "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"})), "bad_sdp").await;
    expect_error(&mut ws, text(json!({"type": "offer", "sdp": "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"})), "bad_sdp").await;
    expect_error(&mut ws, text(json!({"type": "offer", "sdp": format!("v=0\r\n{}", "a=x\r\n".repeat(7_000))})), "bad_sdp").await;
    expect_error(&mut ws, text(json!({"type": "ice", "candidate": 5})), "bad_candidate").await;
    expect_error(&mut ws, text(json!({"type": "ice", "candidate": {"candidate": "garbage"}})), "bad_candidate").await;
    expect_error(&mut ws, text(json!({"type": "ice", "candidate": {"sdpMid": "0"}})), "bad_candidate").await;

    // End-of-candidates in both forms, and a candidate before the offer: accepted quietly.
    ws.send(text(json!({"type": "ice", "candidate": null}))).await.unwrap();
    ws.send(text(json!({"type": "ice", "candidate": {"candidate": "", "sdpMid": "0"}}))).await.unwrap();
    ws.send(text(json!({"type": "ice", "candidate": {
        "candidate": "candidate:1 1 udp 2122260223 127.0.0.1 9 typ host", "sdpMid": "0", "sdpMLineIndex": 0}})))
        .await
        .unwrap();
    assert_eq!(next_json(&mut ws, Duration::from_millis(300)).await, None, "no reply to accepted input");

    // The same connection can still publish.
    let (_pc, sdp) = real_offer().await;
    ws.send(text(json!({"type": "offer", "sdp": sdp}))).await.unwrap();
    let answer = next_non_ice(&mut ws).await.expect("an answer");
    assert_eq!(answer["type"], "answer", "{answer}");
    assert!(answer["sdp"].as_str().unwrap().starts_with("v=0"));
    let session = answer["session"].as_str().expect("session id").to_owned();
    assert!(sessions(server.addr).await.iter().any(|s| s["id"] == session.as_str()));

    // After the offer: a well-formed but unusable candidate, and a second offer.
    expect_error(&mut ws, text(json!({"type": "ice", "candidate": {
        "candidate": "candidate:1 1 udp 2122260223 127.0.0.1 notaport typ host", "sdpMid": "0", "sdpMLineIndex": 0}})), "bad_candidate").await;
    expect_error(&mut ws, text(json!({"type": "offer", "sdp": sdp})), "already_negotiated").await;

    // Closing the socket ends the session.
    ws.close(None).await.unwrap();
    assert!(
        eventually(Duration::from_secs(1), || async { sessions(server.addr).await.is_empty() }).await,
        "session outlived its WebSocket"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_max_sessions_the_server_is_full() {
    let mut config = test_config();
    config.max_sessions = 1;
    let server = start(config).await;
    let (_pc1, sdp1) = real_offer().await;
    let (_pc2, sdp2) = real_offer().await;

    let mut first = connect(server.addr).await;
    first.send(text(json!({"type": "offer", "sdp": sdp1}))).await.unwrap();
    assert_eq!(next_non_ice(&mut first).await.expect("answer")["type"], "answer");

    let mut second = connect(server.addr).await;
    expect_error(&mut second, text(json!({"type": "offer", "sdp": sdp2})), "server_full").await;
    assert_eq!(next_json(&mut second, Duration::from_secs(2)).await, None, "closed after server_full");

    let (status, metrics) = http_get(server.addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(metrics.contains("face_echo_sessions_active 1"), "{metrics}");
    drop(first);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_routes_answer() {
    let server = start(test_config()).await;
    assert_eq!(http_get(server.addr, "/healthz").await, (200, "ok".to_owned()));
    let (status, page) = http_get(server.addr, "/").await;
    assert_eq!(status, 200);
    assert!(page.contains("<html") || page.contains("<!doctype") || page.contains("<!DOCTYPE"), "{page}");
    assert_eq!(http_get(server.addr, "/api/sessions").await, (200, "[]".to_owned()));
    assert_eq!(http_get(server.addr, "/no/such/file.js").await.0, 404);
    assert_eq!(http_get(server.addr, "/models/../Cargo.toml").await.0, 404);
    // A plain GET on /ws is not an upgrade: refused, server unharmed.
    assert!(http_get(server.addr, "/ws").await.0 >= 400);
    assert_eq!(http_get(server.addr, "/healthz").await.0, 200);
    server.shutdown().await.unwrap();
}
