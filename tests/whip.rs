//! WHIP (RFC 9725) on `POST /whip`: a real webrtc-rs client publishes with one HTTP
//! POST, gets its echo on the same connection, and DELETE frees its slot; every
//! refusal is the HTTP status the issue names, and the server keeps going.

mod common;

use std::time::Duration;

use common::*;
use face_echo::loadgen::client::{ClientOptions, ClientPeer, http_request};
use webrtc::rtp_transceiver::RTCRtpTransceiverDirection;

fn whip_url(addr: std::net::SocketAddr) -> String {
    format!("http://{addr}/whip")
}

/// POSTs `body` to `/whip` with `content_type` (and a bearer token).
async fn post_whip(
    addr: std::net::SocketAddr,
    content_type: &str,
    token: Option<&str>,
    body: &[u8],
) -> face_echo::loadgen::client::HttpResponse {
    let bearer = token.map(|token| format!("Bearer {token}"));
    let mut headers = vec![("Content-Type", content_type)];
    if let Some(bearer) = &bearer {
        headers.push(("Authorization", bearer.as_str()));
    }
    http_request("POST", &whip_url(addr), &headers, body).await.expect("POST /whip")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_whip_publisher_gets_its_echo_and_delete_frees_its_slot() {
    let server = start(test_config()).await;
    let addr = server.addr;
    let mut publisher = ClientPeer::whip(&whip_url(addr), None, ClientOptions::default(), CONNECT_TIMEOUT)
        .await
        .expect("WHIP publish");
    let resource = publisher.resource.clone().expect("a Location");
    assert!(resource.starts_with(&format!("http://{addr}/whip/")), "{resource}");
    assert_eq!(publisher.watch_token.len(), 32, "the WHEP link names the watch token");

    let sent = publish(&mut publisher, 30).await;
    let echoed = collect_echo(&mut publisher, Duration::from_secs(2)).await;
    let identical = identical_payloads(&sent, &echoed);
    assert!(identical * 10 >= sent.len() * 9, "{identical} of {} packets echoed", sent.len());

    let listed = sessions(addr).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["signaling"], "whip");
    assert!(listed[0]["echo"]["packets_in"].as_u64().unwrap_or(0) >= sent.len() as u64 * 9 / 10);
    assert_eq!(server.state.sessions.slots_taken(), 1);

    let deleted = http_request("DELETE", &resource, &[], b"").await.expect("DELETE");
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    // DELETE answers once the slot is free.
    assert_eq!(server.state.sessions.slots_taken(), 0);
    assert!(sessions(addr).await.is_empty());
    let again = http_request("DELETE", &resource, &[], b"").await.expect("DELETE again");
    assert_eq!(again.status, 404, "{}", again.body);
    let _ = publisher.close().await;
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sendonly_whip_offer_publishes_without_an_echo() {
    // With the decode tap: what is published without an echo is still decoded.
    let mut config = test_config();
    config.decode_tap = true;
    let server = start(config).await;
    let addr = server.addr;
    let options = ClientOptions { direction: RTCRtpTransceiverDirection::Sendonly, ..Default::default() };
    let mut publisher =
        ClientPeer::whip(&whip_url(addr), None, options, CONNECT_TIMEOUT).await.expect("WHIP publish");
    let sent = publish(&mut publisher, 30).await;
    let echoed = collect_echo(&mut publisher, Duration::from_secs(1)).await;
    assert!(echoed.is_empty(), "a sendonly publisher got {} packets back", echoed.len());
    let got_in = eventually(Duration::from_secs(3), || async {
        let listed = sessions(addr).await;
        listed.first().and_then(|s| s["echo"]["packets_in"].as_u64()).unwrap_or(0) * 10
            >= sent.len() as u64 * 9
    })
    .await;
    assert!(got_in, "the server did not receive the publisher's media: {:?}", sessions(addr).await);
    let decoded = eventually(Duration::from_secs(5), || async {
        sessions(addr).await.first().and_then(|s| s["tap"]["frames_decoded"].as_u64()).unwrap_or(0) >= 20
    })
    .await;
    assert!(decoded, "the tap decoded too little of a sendonly stream: {:?}", sessions(addr).await);
    let _ = publisher.close().await;
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_whip_session_whose_peer_goes_away_frees_its_slot() {
    let mut config = test_config();
    config.disconnect_timeout = 1;
    let server = start(config).await;
    let publisher = ClientPeer::whip(&whip_url(server.addr), None, ClientOptions::default(), CONNECT_TIMEOUT)
        .await
        .expect("WHIP publish");
    assert_eq!(server.state.sessions.slots_taken(), 1);
    // No DELETE: the client's PeerConnection just ends.
    publisher.abandon().await.expect("abandon");
    let freed =
        eventually(Duration::from_secs(20), || async { server.state.sessions.slots_taken() == 0 }).await;
    assert!(freed, "the slot of a WHIP session whose peer left was never freed");
    assert!(sessions(server.addr).await.is_empty());
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_closes_whip_sessions() {
    let server = start(test_config()).await;
    let publisher = ClientPeer::whip(&whip_url(server.addr), None, ClientOptions::default(), CONNECT_TIMEOUT)
        .await
        .expect("WHIP publish");
    let state = server.state.clone();
    server.shutdown().await.expect("clean shutdown");
    assert_eq!(state.sessions.slots_taken(), 0, "shutdown left a WHIP session open");
    let _ = publisher.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn whip_refusals_are_http_errors_and_the_server_goes_on() {
    let mut config = test_config();
    config.max_sessions = 1;
    let server = start(config).await;
    let addr = server.addr;
    let (_pc, offer) = real_offer().await;

    // Wrong content type: 415, naming what to send.
    let response = post_whip(addr, "application/json", None, offer.as_bytes()).await;
    assert_eq!(response.status, 415, "{}", response.body);
    assert_eq!(response.header("accept-post"), Some("application/sdp"));

    // Unparsable SDP, and a usable one without VP8: 400 saying why.
    let response = post_whip(addr, "application/sdp", None, b"hello, this is not SDP").await;
    assert_eq!(response.status, 400, "{}", response.body);
    assert!(response.body.starts_with("bad_sdp: "), "{}", response.body);
    let h264 = offer.replace("VP8/90000", "H264/90000");
    let response = post_whip(addr, "application/sdp", None, h264.as_bytes()).await;
    assert_eq!(response.status, 400, "{}", response.body);
    assert!(response.body.starts_with("unsupported_codec: "), "{}", response.body);
    let response = post_whip(addr, "application/sdp", None, &[0xff, 0xfe, 0x00]).await;
    assert_eq!(response.status, 400, "{}", response.body);

    // Too big: 413, before anything is negotiated.
    let huge = format!("{offer}{}", "a=x-padding\r\n".repeat(70 * 1024 / 13));
    let response = post_whip(addr, "application/sdp", None, huge.as_bytes()).await;
    assert_eq!(response.status, 413, "{}", response.body);

    // Unknown resources: 404.
    let response = http_request("DELETE", &format!("http://{addr}/whip/0123456789abcdef"), &[], b"")
        .await
        .expect("DELETE");
    assert_eq!(response.status, 404, "{}", response.body);

    // Another site's page: 403, as on /ws.
    let foreign = [("Content-Type", "application/sdp"), ("Origin", "https://evil.example")];
    let response = http_request("POST", &whip_url(addr), &foreign, offer.as_bytes()).await.expect("POST");
    assert_eq!(response.status, 403, "{}", response.body);

    // Full: 503 with Retry-After (one session is the maximum).
    let publisher = ClientPeer::whip(&whip_url(addr), None, ClientOptions::default(), CONNECT_TIMEOUT)
        .await
        .expect("the one session");
    let response = post_whip(addr, "application/sdp", None, offer.as_bytes()).await;
    assert_eq!(response.status, 503, "{}", response.body);
    assert_eq!(response.header("retry-after"), Some("5"));
    assert!(response.body.starts_with("server_full: "), "{}", response.body);

    // PATCH: a trickled candidate is taken (204); an ICE restart is not (422).
    let resource = publisher.resource.clone().expect("Location");
    let trickle = "a=ice-ufrag:nottheofferufrag\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
        a=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n";
    let patch = [("Content-Type", "application/trickle-ice-sdpfrag")];
    let response = http_request("PATCH", &resource, &patch, trickle.as_bytes()).await.expect("PATCH");
    assert_eq!(response.status, 422, "{}", response.body);
    let candidate = "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n";
    let response = http_request("PATCH", &resource, &patch, candidate.as_bytes()).await.expect("PATCH");
    assert_eq!(response.status, 204, "{}", response.body);
    let response =
        http_request("PATCH", &resource, &[("Content-Type", "text/plain")], b"x").await.expect("PATCH");
    assert_eq!(response.status, 415, "{}", response.body);

    // The session lived through all of it.
    let listed = sessions(addr).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["state"], "connected");
    let (status, metrics) = http_get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(metrics.contains("reason=\"sessions\""), "the refusal is counted");
    let _ = publisher.close().await;
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn whip_takes_the_whip_token_or_the_publish_token() {
    let mut config = test_config();
    config.whip_token = Some("encoder-secret".parse().unwrap());
    config.publish_token = Some("page-secret".parse().unwrap());
    let server = start(config).await;
    let addr = server.addr;
    let (_pc, offer) = real_offer().await;

    let response = post_whip(addr, "application/sdp", None, offer.as_bytes()).await;
    assert_eq!(response.status, 401, "{}", response.body);
    assert_eq!(response.header("www-authenticate"), Some("Bearer"));
    let response = post_whip(addr, "application/sdp", Some("encoder-secreT"), offer.as_bytes()).await;
    assert_eq!(response.status, 401, "{}", response.body);

    for token in ["encoder-secret", "page-secret"] {
        let publisher =
            ClientPeer::whip(&whip_url(addr), Some(token), ClientOptions::default(), CONNECT_TIMEOUT)
                .await
                .unwrap_or_else(|e| panic!("{token} publishes: {e}"));
        let resource = publisher.resource.clone().expect("Location");
        // The resource wants the token too.
        let response = http_request("DELETE", &resource, &[], b"").await.expect("DELETE");
        assert_eq!(response.status, 401, "{}", response.body);
        let bearer = format!("Bearer {token}");
        let response =
            http_request("DELETE", &resource, &[("Authorization", &bearer)], b"").await.expect("DELETE");
        assert_eq!(response.status, 200, "{}", response.body);
        let _ = publisher.close().await;
    }
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn whip_answers_cors_for_allowed_origins_only() {
    let mut config = test_config();
    config.allow_origin = vec!["https://player.example".into()];
    let server = start(config).await;
    let url = whip_url(server.addr);

    let preflight = [
        ("Origin", "https://player.example"),
        ("Access-Control-Request-Method", "POST"),
        ("Access-Control-Request-Headers", "authorization, content-type"),
    ];
    let response = http_request("OPTIONS", &url, &preflight, b"").await.expect("OPTIONS");
    assert_eq!(response.status, 204, "{}", response.body);
    assert_eq!(response.header("access-control-allow-origin"), Some("https://player.example"));
    assert!(response.header("access-control-allow-methods").is_some_and(|m| m.contains("POST")));
    assert!(response.header("access-control-allow-headers").is_some_and(|h| h.contains("Authorization")));
    assert!(response.header("access-control-expose-headers").is_some_and(|h| h.contains("Location")));
    assert_eq!(response.header("accept-post"), Some("application/sdp"));

    let foreign = [("Origin", "https://evil.example"), ("Access-Control-Request-Method", "POST")];
    let response = http_request("OPTIONS", &url, &foreign, b"").await.expect("OPTIONS");
    assert_eq!(response.status, 403, "{}", response.body);
    assert_eq!(response.header("access-control-allow-origin"), None);

    // An error for an allowed origin still carries CORS, so the page can read it.
    let allowed = [("Origin", "https://player.example"), ("Content-Type", "text/plain")];
    let response = http_request("POST", &url, &allowed, b"x").await.expect("POST");
    assert_eq!(response.status, 415, "{}", response.body);
    assert_eq!(response.header("access-control-allow-origin"), Some("https://player.example"));
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn whip_applies_the_per_ip_session_limit_as_ws_does() {
    let mut config = test_config();
    config.max_sessions_per_ip = Some(1);
    let server = start(config).await;
    let addr = server.addr;
    // The one place 127.0.0.1 has, taken over /ws: WHIP from the same address is refused.
    let ws_publisher = ClientPeer::connect(&ws_url(addr), CONNECT_TIMEOUT).await.expect("WS publish");
    let refused = ClientPeer::whip(&whip_url(addr), None, ClientOptions::default(), CONNECT_TIMEOUT).await;
    let error = refused.err().expect("a second session from one address").to_string();
    assert!(error.contains("503") && error.contains("ip_full"), "{error}");
    // Another address still gets in.
    let local = Some("127.0.0.2".parse().unwrap());
    let other = ClientPeer::whip(
        &whip_url(addr),
        None,
        ClientOptions { local, ..Default::default() },
        CONNECT_TIMEOUT,
    )
    .await
    .expect("WHIP from 127.0.0.2");
    assert_eq!(server.state.sessions.slots_taken(), 2);
    let _ = other.close().await;
    let _ = ws_publisher.close().await;
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_whip_post_counts_as_negotiating_under_max_pending() {
    let mut config = test_config();
    config.max_pending_per_ip = 1;
    let server = start(config).await;
    let addr = server.addr;
    // A signaling socket without an offer holds 127.0.0.1's one negotiating place.
    let socket = face_echo::loadgen::client::open_signaling(&ws_url(addr), None).await.expect("WebSocket");
    let (_pc, offer) = real_offer().await;
    let response = post_whip(addr, "application/sdp", None, offer.as_bytes()).await;
    assert_eq!(response.status, 503, "{}", response.body);
    assert!(response.body.starts_with("too_many_pending: "), "{}", response.body);
    assert_eq!(response.header("retry-after"), Some("5"));
    drop(socket);
    // Once it is gone, a WHIP publisher gets in (and holds no negotiating place after).
    let mut published = None;
    for _ in 0..50 {
        if let Ok(peer) =
            ClientPeer::whip(&whip_url(addr), None, ClientOptions::default(), CONNECT_TIMEOUT).await
        {
            published = Some(peer);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let publisher = published.expect("WHIP after the socket closed");
    assert_eq!(server.state.pending.total(), 0, "a negotiated WHIP session holds no pending place");
    let _ = publisher.close().await;
    server.shutdown().await.expect("clean shutdown");
}
