//! `--publish-token` and `--admin-token`: each required, wrong, missing and right.
//! Publishing needs the publish token (URL, header or offer); watching needs none;
//! the operator's endpoints need the admin token; the page and /healthz stay open.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use face_echo::loadgen::client::ClientPeer;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const PUBLISH: &str = "publish-s3cret";
const ADMIN: &str = "admin-s3cret";
/// Parses, but is no usable offer: past the token check it gets `bad_sdp`.
const FAKE_SDP: &str = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n";

async fn server() -> face_echo::server::RunningServer {
    let mut config = test_config();
    config.publish_token = Some(PUBLISH.parse().unwrap());
    config.admin_token = Some(ADMIN.parse().unwrap());
    start(config).await
}

/// Opens `/ws{query}` (with an optional bearer header), sends `offer`, returns the
/// first reply's `type` or error `code`, and whether the server then closed.
async fn offer_reply(addr: SocketAddr, query: &str, bearer: Option<&str>, offer: Value) -> (String, bool) {
    let mut request = format!("ws://{addr}/ws{query}").into_client_request().unwrap();
    if let Some(token) = bearer {
        request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    let (mut ws, _) =
        tokio_tungstenite::connect_async(request).await.expect("upgrade: tokens are checked at the offer");
    ws.send(Message::text(offer.to_string())).await.expect("send");
    let reply = loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("a reply");
        if let Some(Ok(Message::Text(text))) = frame {
            let reply: Value = serde_json::from_str(text.as_str()).expect("JSON");
            if reply["type"] == "error" {
                break reply["code"].as_str().unwrap_or_default().to_owned();
            }
            break reply["type"].as_str().unwrap_or_default().to_owned();
        }
    };
    let closed = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return true,
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .unwrap_or(false);
    (reply, closed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_needs_the_publish_token_and_watching_does_not() {
    let server = server().await;
    let addr = server.addr;
    let offer = json!({"type": "offer", "sdp": FAKE_SDP});

    // Missing, wrong (URL, header, offer): `unauthorized`, then the socket closes.
    assert_eq!(offer_reply(addr, "", None, offer.clone()).await, ("unauthorized".into(), true));
    assert_eq!(offer_reply(addr, "?token=nope", None, offer.clone()).await, ("unauthorized".into(), true));
    assert_eq!(offer_reply(addr, "", Some("nope"), offer.clone()).await, ("unauthorized".into(), true));
    let wrong_in_offer = json!({"type": "offer", "token": "nope", "sdp": FAKE_SDP});
    assert_eq!(offer_reply(addr, "", None, wrong_in_offer).await, ("unauthorized".into(), true));
    // The admin token is not a publish token.
    assert_eq!(offer_reply(addr, &format!("?token={ADMIN}"), None, offer.clone()).await.0, "unauthorized");

    // Right, in each place: past the check (the fake SDP then fails on its own merits).
    assert_eq!(offer_reply(addr, &format!("?token={PUBLISH}"), None, offer.clone()).await.0, "bad_sdp");
    assert_eq!(offer_reply(addr, "", Some(PUBLISH), offer.clone()).await.0, "bad_sdp");
    let right_in_offer = json!({"type": "offer", "token": PUBLISH, "sdp": FAKE_SDP});
    assert_eq!(offer_reply(addr, "", None, right_in_offer).await.0, "bad_sdp");

    // A real publisher with the token gets its session and echo.
    let url = format!("ws://{addr}/ws?token={PUBLISH}");
    let refused =
        ClientPeer::connect(&ws_url(addr), CONNECT_TIMEOUT).await.err().expect("no token, no session");
    assert!(format!("{refused:#}").contains("unauthorized"), "{refused:#}");
    let mut publisher = ClientPeer::connect(&url, CONNECT_TIMEOUT).await.expect("the right token publishes");
    let sent = publish(&mut publisher, 30).await;
    let echoed = collect_echo(&mut publisher, Duration::from_millis(800)).await;
    assert!(identical_payloads(&sent, &echoed) * 10 >= sent.len() * 9, "echo");

    // Watching needs the share link's watch token only.
    let viewer = ClientPeer::watch(&ws_url(addr), &publisher.watch_token, CONNECT_TIMEOUT)
        .await
        .expect("a viewer watches");

    let (_, metrics) = http_get_with(addr, "/metrics", Some(&format!("Bearer {ADMIN}"))).await;
    assert!(metrics.contains(r#"face_echo_connections_refused_total{reason="unauthorized"} 6"#), "{metrics}");
    viewer.close().await.expect("close");
    publisher.close().await.expect("close");
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_endpoints_need_the_admin_token() {
    let server = server().await;
    let addr = server.addr;
    let bearer = format!("Bearer {ADMIN}");
    for path in ["/api/sessions", "/api/process", "/metrics", "/api/sessions/0123456789abcdef/snapshot.jpg"] {
        let (status, body) = http_get_with(addr, path, None).await;
        assert_eq!(status, 401, "{path} without a token: {body}");
        assert!(body.contains("unauthorized") && body.contains("missing"), "{body}");
        let (status, body) = http_get_with(addr, path, Some("Bearer wrong")).await;
        assert_eq!(status, 401, "{path} with a wrong token: {body}");
        assert!(body.contains("wrong"), "{body}");
        assert_eq!(
            http_get_with(addr, path, Some(&format!("Bearer {PUBLISH}"))).await.0,
            401,
            "{path}: publish token"
        );
        let (status, body) = http_get_with(addr, path, Some(&bearer)).await;
        let expected = if path.ends_with(".jpg") { 404 } else { 200 }; // no such session, but allowed
        assert_eq!(status, expected, "{path} with the right token: {body}");
    }
    // `?token=` for places that cannot send a header (an <img>, the address bar).
    assert_eq!(http_get_with(addr, &format!("/api/sessions?token={ADMIN}"), None).await.0, 200);
    assert_eq!(http_get_with(addr, "/api/sessions?token=wrong", None).await.0, 401);
    // What everyone needs stays open.
    assert_eq!(http_get_with(addr, "/healthz", None).await, (200, "ok".into()));
    assert_eq!(http_get_with(addr, "/", None).await.0, 200);
    assert_eq!(http_get_with(addr, "/watch/abc", None).await.0, 200);
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tokens_nothing_changes() {
    let server = start(test_config()).await;
    assert_eq!(http_get_with(server.addr, "/api/sessions", None).await.0, 200);
    assert_eq!(http_get_with(server.addr, "/metrics", None).await.0, 200);
    let publisher = ClientPeer::connect(&ws_url(server.addr), CONNECT_TIMEOUT).await.expect("publishes");
    publisher.close().await.expect("close");
    server.shutdown().await.expect("shutdown");
}
