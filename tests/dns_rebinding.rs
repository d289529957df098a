//! DNS rebinding: a page on another site points its own name at this server, and its
//! browser sends `Host: <that name>` (with a matching `Origin`). Such requests get
//! `421` before any handler, the WebSocket upgrade included; the server's own names,
//! IP literals, `--allowed-host` names and `/healthz` are answered as before.

mod common;

use std::net::SocketAddr;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends `head` (request line and headers, without the blank line) and returns the
/// status and the response: its headers and the body they announce (a 101, or an
/// answer to an upgrade request, may leave the connection open).
async fn raw(addr: SocketAddr, head: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(format!("{head}\r\n\r\n").as_bytes()).await.expect("write");
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let read = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("an answer in time")
            .expect("read");
        response.extend_from_slice(&buf[..read]);
        let text = String::from_utf8_lossy(&response);
        let whole = text.split_once("\r\n\r\n").is_some_and(|(headers, body)| {
            let length = headers.lines().find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<usize>().ok())?
            });
            body.len() >= length.unwrap_or(0)
        });
        if read == 0 || whole {
            break;
        }
    }
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|code| code.parse().ok()).expect("a status");
    (status, text)
}

fn get(path: &str, host: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close")
}

/// A browser's WebSocket upgrade from a page whose origin is `http://<host>`.
fn upgrade(host: &str) -> String {
    format!(
        "GET /ws HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_host_is_refused_and_our_own_names_are_answered() {
    let server = start(test_config()).await;
    let addr = server.addr;
    let port = addr.port();

    // The rebinding page's requests: the operator's API, a snapshot, WHIP, /ws.
    let (status, body) = raw(addr, &get("/api/sessions", "attacker.example")).await;
    assert_eq!(status, 421, "{body}");
    assert!(body.contains("misdirected_host") && body.contains("--allowed-host"), "{body}");
    assert_eq!(raw(addr, &get("/api/sessions", &format!("attacker.example:{port}"))).await.0, 421);
    assert_eq!(raw(addr, &get("/", "attacker.example")).await.0, 421);
    let (status, body) = raw(addr, &upgrade(&format!("attacker.example:{port}"))).await;
    assert_eq!(status, 421, "no upgrade for a foreign host: {body}");
    let whip = "POST /whip HTTP/1.1\r\nHost: attacker.example\r\nOrigin: http://attacker.example\r\n\
         Content-Type: application/sdp\r\nContent-Length: 0\r\nConnection: close";
    assert_eq!(raw(addr, whip).await.0, 421);
    // An address this loopback server does not listen on is not its own either.
    assert_eq!(raw(addr, &get("/api/sessions", &format!("192.0.2.1:{port}"))).await.0, 421);

    // Its own names: the listen address, loopback names, any port; no Host at all.
    for host in [addr.to_string(), format!("localhost:{port}"), "localhost".into(), format!("[::1]:{port}")] {
        let (status, body) = raw(addr, &get("/api/sessions", &host)).await;
        assert_eq!(status, 200, "Host: {host}: {body}");
    }
    let (status, body) = raw(addr, &upgrade(&addr.to_string())).await;
    assert_eq!(status, 101, "the page's own WebSocket: {body}");
    assert_eq!(raw(addr, "GET /api/sessions HTTP/1.0").await.0, 200, "HTTP/1.0 without Host");
    // Load balancers probe /healthz with names of their own.
    assert_eq!(raw(addr, &get("/healthz", "lb-probe.internal")).await.0, 200);

    let (_, metrics) = http_get(addr, "/metrics").await;
    assert!(
        metrics.contains(r#"face_echo_connections_refused_total{reason="misdirected_host"} 6"#),
        "{metrics}"
    );
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_hosts_and_ip_literals_on_a_wildcard_listener() {
    let mut config = face_echo::control::config::Config::new("0.0.0.0:0".parse().unwrap());
    config.allowed_host = vec!["face.example".into(), "other.example:9000".into()];
    let server = start(config).await;
    let addr: SocketAddr = ([127, 0, 0, 1], server.addr.port()).into();

    for host in ["face.example", "Face.Example:8443", "other.example:9000", "192.0.2.1", "[2001:db8::1]:80"] {
        let (status, body) = raw(addr, &get("/api/sessions", host)).await;
        assert_eq!(status, 200, "Host: {host}: {body}");
    }
    for host in ["attacker.example", "other.example:9001", "face.example.attacker.example"] {
        assert_eq!(raw(addr, &get("/api/sessions", host)).await.0, 421, "Host: {host}");
    }
    server.shutdown().await.expect("shutdown");
}
