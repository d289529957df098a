//! Candidates inside an offer get the trickle path's rules: the server checks each
//! one it keeps with signed STUN, at an address the offerer chose, so an offer naming
//! 200 addresses must not buy 200 targets. At most `MAX_CANDIDATES` (64) per session,
//! trickled and offered together, over /ws and WHIP alike. (The loopback filter's
//! half is unit-tested in `network.rs`: a test here would aim STUN off this machine.)

mod common;

use std::net::UdpSocket;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use face_echo::loadgen::client::{http_request, open_signaling};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use webrtc::peer_connection::PeerConnection;

/// The server's cap (`http::ws::MAX_CANDIDATES`).
const MAX_CANDIDATES: usize = 64;
/// Addresses the hostile offer names.
const OFFERED: usize = 200;
/// How long the server's ICE agent is given to check every pair it has.
const CHECKING: Duration = Duration::from_secs(3);

/// UDP sockets on 127.0.0.1 standing for the addresses a hostile client names.
struct Targets(Vec<UdpSocket>);

impl Targets {
    fn bind(count: usize) -> Targets {
        Targets(
            (0..count)
                .map(|_| {
                    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a target");
                    socket.set_nonblocking(true).expect("non-blocking");
                    socket
                })
                .collect(),
        )
    }

    /// Each target as a host candidate attribute (without `a=`).
    fn candidates(&self) -> Vec<String> {
        self.0
            .iter()
            .enumerate()
            .map(|(index, socket)| {
                let port = socket.local_addr().expect("bound").port();
                format!("candidate:{index} 1 udp 2122260223 127.0.0.1 {port} typ host")
            })
            .collect()
    }

    /// How many targets the server has sent anything to (reads what arrived).
    fn reached(&self) -> usize {
        let mut buf = [0u8; 1500];
        self.0
            .iter()
            .filter(|socket| {
                let mut any = false;
                while socket.recv(&mut buf).is_ok() {
                    any = true;
                }
                any
            })
            .count()
    }
}

/// A real offer (its PeerConnection, kept alive by the caller) without its own
/// candidates, listing `candidates` in its first m-section instead; and that mid.
async fn offer_listing(candidates: &[String]) -> (Arc<dyn PeerConnection>, String, String) {
    let (pc, offer) = real_offer().await;
    let mid = offer.lines().find_map(|line| line.strip_prefix("a=mid:")).expect("a mid").to_owned();
    let mut sdp = String::new();
    let mut listed = false;
    for line in offer.split_inclusive("\r\n").filter(|line| !line.starts_with("a=candidate:")) {
        sdp.push_str(line);
        if !listed && line.starts_with("a=mid:") {
            candidates.iter().for_each(|candidate| sdp.push_str(&format!("a={candidate}\r\n")));
            listed = true;
        }
    }
    (pc, sdp, mid)
}

async fn next_json(ws: &mut face_echo::loadgen::client::Signaling) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("a frame in time");
        if let Message::Text(text) = frame.expect("open").expect("frame") {
            return serde_json::from_str(text.as_str()).expect("JSON");
        }
    }
}

/// Over /ws: 30 candidates trickled before the offer, then an offer naming 200 more.
/// The server checks at most 64 of them in all, and one more trickled candidate
/// is `too_many_candidates`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_over_the_websocket_shares_the_sessions_candidate_cap() {
    const TRICKLED: usize = 30;
    let server = start(test_config()).await;
    let (trickled, offered) = (Targets::bind(TRICKLED), Targets::bind(OFFERED));
    let (_pc, sdp, mid) = offer_listing(&offered.candidates()).await;
    let mut ws = open_signaling(&ws_url(server.addr), None).await.expect("WebSocket");
    for candidate in trickled.candidates() {
        let ice = json!({"type": "ice", "candidate": {"candidate": candidate, "sdpMid": mid}});
        ws.send(Message::text(ice.to_string())).await.expect("trickle");
    }
    ws.send(Message::text(json!({"type": "offer", "sdp": sdp}).to_string())).await.expect("offer");
    let answer = loop {
        let message = next_json(&mut ws).await;
        if message["type"] != "ice" {
            break message;
        }
    };
    assert_eq!(answer["type"], "answer", "{answer}");

    tokio::time::sleep(CHECKING).await;
    let reached = (trickled.reached(), offered.reached());
    println!("STUN reached {reached:?} of ({TRICKLED}, {OFFERED}) candidates");
    assert!(reached.0 + reached.1 <= MAX_CANDIDATES, "{reached:?}: over the session's cap");
    assert_eq!(reached.0, TRICKLED, "the trickled candidates, first, are all kept");
    assert!(reached.1 > 0, "the offer's candidates fill the rest of the cap");

    let extra = Targets::bind(1).candidates().remove(0);
    let ice = json!({"type": "ice", "candidate": {"candidate": extra, "sdpMid": mid}});
    ws.send(Message::text(ice.to_string())).await.expect("trickle");
    let refused = loop {
        let message = next_json(&mut ws).await;
        if message["type"] == "error" {
            break message;
        }
    };
    assert_eq!(refused["code"], "too_many_candidates", "{refused}");
    server.shutdown().await.expect("shutdown");
}

/// Over WHIP: one POST naming 200 addresses; the server checks at most 64.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whip_offer_naming_200_addresses_gets_64_checked() {
    let server = start(test_config()).await;
    let offered = Targets::bind(OFFERED);
    let (_pc, sdp, _) = offer_listing(&offered.candidates()).await;
    let url = format!("http://{}/whip", server.addr);
    let response = http_request("POST", &url, &[("Content-Type", "application/sdp")], sdp.as_bytes())
        .await
        .expect("POST /whip");
    assert_eq!(response.status, 201, "{}", response.body);

    tokio::time::sleep(CHECKING).await;
    let reached = offered.reached();
    println!("STUN reached {reached} of {OFFERED} offered candidates");
    assert!(reached <= MAX_CANDIDATES, "{reached} targets: over the session's cap");
    assert!(reached > 0, "the kept candidates are checked");
    server.shutdown().await.expect("shutdown");
}
