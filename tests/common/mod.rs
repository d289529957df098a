//! Helpers shared by the integration tests: an in-process server on a free
//! loopback port, and a minimal HTTP GET.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use face_echo::config::Config;
use face_echo::server::{self, RunningServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// The default config on 127.0.0.1 with an ephemeral port.
pub fn test_config() -> Config {
    Config::new("127.0.0.1:0".parse().unwrap())
}

pub async fn start(config: Config) -> RunningServer {
    init_logging();
    server::start(config).await.expect("server starts")
}

pub fn ws_url(addr: SocketAddr) -> String {
    format!("ws://{addr}/ws")
}

/// GET `path`; returns the status code and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("status line");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// `/api/sessions` as JSON.
pub async fn sessions(addr: SocketAddr) -> Vec<serde_json::Value> {
    let (status, body) = http_get(addr, "/api/sessions").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Vec<serde_json::Value>>(&body).expect("sessions JSON")
}

/// Polls `check` every 50 ms until it holds or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
