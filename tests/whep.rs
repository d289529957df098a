//! WHEP on `POST /whep/<watch token>`: a real webrtc-rs player with a receive-only
//! offer watches a publisher; WHEP viewers are the same viewers as the page's and
//! /ws `watch` ones (one limit, one list, the `face-echo` data channel), DELETE
//! ends one, the publisher leaving ends them all.

mod common;

use std::time::Duration;

use common::*;
use face_echo::loadgen::client::{ClientOptions, ClientPeer, http_request};
use webrtc::rtp_transceiver::RTCRtpTransceiverDirection;

fn player() -> ClientOptions {
    ClientOptions { direction: RTCRtpTransceiverDirection::Recvonly, ..Default::default() }
}

async fn whip_publisher(addr: std::net::SocketAddr) -> ClientPeer {
    ClientPeer::whip(&format!("http://{addr}/whip"), None, ClientOptions::default(), CONNECT_TIMEOUT)
        .await
        .expect("WHIP publish")
}

fn whep_url(addr: std::net::SocketAddr, publisher: &ClientPeer) -> String {
    format!("http://{addr}/whep/{}", publisher.watch_token)
}

/// The number of viewers `/api/sessions` lists for the only session.
async fn viewers_listed(addr: std::net::SocketAddr) -> usize {
    sessions(addr).await.first().and_then(|s| s["viewers"].as_array().map(Vec::len)).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_whep_player_receives_the_publishers_media_and_results() {
    // With the detector, the session's results loop runs (`stats` each second);
    // ONNX Runtime from ORT_DYLIB_PATH, as `make test` sets it.
    let mut config = test_config();
    config.detect = true;
    let server = start(config).await;
    let addr = server.addr;
    let mut publisher = whip_publisher(addr).await;
    let options = ClientOptions { data_channel: true, ..player() };
    let mut viewer =
        ClientPeer::whep(&whep_url(addr, &publisher), options, CONNECT_TIMEOUT).await.expect("WHEP");
    let resource = viewer.resource.clone().expect("Location");
    assert!(resource.starts_with(&format!("http://{addr}/whep/{}/", publisher.watch_token)), "{resource}");
    assert_eq!(viewers_listed(addr).await, 1);

    let sent = publish(&mut publisher, 45).await;
    let mut received = Vec::new();
    while let Ok(Some(packet)) = tokio::time::timeout(Duration::from_secs(2), viewer.echoed.recv()).await {
        received.push(packet);
    }
    // The viewer joins from a keyframe on: most of the clip, payloads untouched.
    let identical = identical_payloads(&sent, &received);
    assert!(identical * 2 >= sent.len(), "the WHEP player got {identical} of {} packets", sent.len());

    // The publisher's results reach the player's `face-echo` channel (`stats` each second).
    viewer.wait_channel_open(CONNECT_TIMEOUT).await.expect("channel open");
    let mut messages = viewer.channel_messages().expect("messages");
    // (`detections` for the frames it saw may come first.)
    let stats = tokio::time::timeout(Duration::from_secs(3), async {
        while let Some(message) = messages.recv().await {
            if message.contains("\"stats\"") {
                return Some(message);
            }
        }
        None
    })
    .await;
    assert!(matches!(stats, Ok(Some(_))), "no stats message on the player's channel: {stats:?}");

    let deleted = http_request("DELETE", &resource, &[], b"").await.expect("DELETE");
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert_eq!(viewers_listed(addr).await, 0);
    assert_eq!(server.state.sessions.slots_taken(), 1, "the viewer's slot is free, the publisher's not");
    let _ = viewer.close().await;
    let _ = publisher.close().await;
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn whep_and_ws_viewers_share_one_limit() {
    let mut config = test_config();
    config.max_viewers = 1;
    let server = start(config).await;
    let addr = server.addr;
    // Published over /ws, watched over /ws: the one viewer place is taken.
    let publisher = ClientPeer::connect(&ws_url(addr), CONNECT_TIMEOUT).await.expect("WS publish");
    let ws_viewer =
        ClientPeer::watch(&ws_url(addr), &publisher.watch_token, CONNECT_TIMEOUT).await.expect("watch");
    let refused = ClientPeer::whep(&whep_url(addr, &publisher), player(), CONNECT_TIMEOUT).await;
    let error = refused.err().expect("no second viewer").to_string();
    assert!(error.contains("503") && error.contains("viewers_full"), "{error}");
    // Once the /ws viewer leaves, a WHEP one gets in.
    ws_viewer.close().await.expect("close");
    let mut joined = None;
    for _ in 0..50 {
        if let Ok(viewer) = ClientPeer::whep(&whep_url(addr, &publisher), player(), CONNECT_TIMEOUT).await {
            joined = Some(viewer);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let viewer = joined.expect("a WHEP viewer after the /ws one left");
    let _ = viewer.close().await;
    let _ = publisher.close().await;
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_publisher_leaving_ends_its_whep_viewers() {
    let server = start(test_config()).await;
    let addr = server.addr;
    let publisher = whip_publisher(addr).await;
    let viewer =
        ClientPeer::whep(&whep_url(addr, &publisher), player(), CONNECT_TIMEOUT).await.expect("WHEP");
    assert_eq!(server.state.sessions.slots_taken(), 2);
    let deleted = http_request("DELETE", &publisher.resource.clone().expect("Location"), &[], b"")
        .await
        .expect("DELETE");
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    let freed =
        eventually(Duration::from_secs(5), || async { server.state.sessions.slots_taken() == 0 }).await;
    assert!(freed, "the WHEP viewer outlived its publisher");
    let gone =
        http_request("DELETE", &viewer.resource.clone().expect("Location"), &[], b"").await.expect("DELETE");
    assert_eq!(gone.status, 404, "{}", gone.body);
    let _ = viewer.close().await;
    let _ = publisher.close().await;
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn whep_refusals_are_http_errors() {
    let server = start(test_config()).await;
    let addr = server.addr;
    let sdp = [("Content-Type", "application/sdp")];
    let unknown = format!("http://{addr}/whep/00000000000000000000000000000000");
    let response = http_request("POST", &unknown, &sdp, b"v=0\r\n").await.expect("POST");
    assert_eq!(response.status, 404, "{}", response.body);
    assert!(response.body.starts_with("no_such_session: "), "{}", response.body);

    let publisher = whip_publisher(addr).await;
    let url = whep_url(addr, &publisher);
    let response =
        http_request("POST", &url, &[("Content-Type", "text/plain")], b"v=0\r\n").await.expect("POST");
    assert_eq!(response.status, 415, "{}", response.body);
    let response = http_request("POST", &url, &sdp, b"not an offer").await.expect("POST");
    assert_eq!(response.status, 400, "{}", response.body);
    let response = http_request("DELETE", &format!("{url}/0123"), &[], b"").await.expect("DELETE");
    assert_eq!(response.status, 404, "{}", response.body);
    // A WHEP resource is not a WHIP one: the publisher's id under /whep is unknown.
    let publisher_resource = publisher.resource.clone().expect("Location");
    let id = publisher_resource.rsplit('/').next().unwrap_or_default();
    let response = http_request("DELETE", &format!("{url}/{id}"), &[], b"").await.expect("DELETE");
    assert_eq!(response.status, 404, "{}", response.body);
    let options = http_request("OPTIONS", &url, &[], b"").await.expect("OPTIONS");
    assert_eq!(options.status, 204);
    assert_eq!(options.header("accept-post"), Some("application/sdp"));
    assert_eq!(sessions(addr).await.len(), 1, "the publisher lived through it");
    let _ = publisher.close().await;
    server.shutdown().await.expect("clean shutdown");
}
