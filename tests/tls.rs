//! `--tls-cert`/`--tls-key`: HTTPS and WSS with a self-signed pair made the way the
//! README says (openssl), a plaintext client does not hurt it, and bad files are a
//! clear start-up error.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_tungstenite::tungstenite::Message;

/// A self-signed certificate for 127.0.0.1, as in the README.
fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
        ])
        .args(["-subj", "/CN=face-echo test", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success());
    (cert, key)
}

async fn tls_connect(addr: std::net::SocketAddr, cert: &Path) -> TlsStream<TcpStream> {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(cert).unwrap()).unwrap();
    let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.unwrap();
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::IpAddress(addr.ip().into()), tcp)
        .await
        .expect("TLS handshake with the server's certificate")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_and_wss_with_a_self_signed_pair() {
    let dir = std::env::temp_dir().join(format!("face-echo-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = self_signed(&dir);
    let mut config = test_config();
    config.tls_cert = Some(cert.clone());
    config.tls_key = Some(key);
    let server = start(config).await;

    // A plaintext client gets nowhere, and does not stop the next one.
    let mut plain = TcpStream::connect(server.addr).await.unwrap();
    plain.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), plain.read_to_end(&mut buf)).await;
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));

    let mut https = tls_connect(server.addr, &cert).await;
    https.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut response = String::new();
    https.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("ok"), "{response}");

    let wss = tls_connect(server.addr, &cert).await;
    let (mut ws, _) =
        tokio_tungstenite::client_async(format!("wss://{}/ws", server.addr), wss).await.expect("WSS upgrade");
    ws.send(Message::text("{not json")).await.unwrap();
    let reply = loop {
        match ws.next().await.expect("a reply").expect("frame") {
            Message::Text(text) => break serde_json::from_str::<serde_json::Value>(text.as_str()).unwrap(),
            _ => continue,
        }
    };
    assert_eq!(reply["code"], "bad_json", "{reply}");

    server.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_tls_files_are_a_clear_startup_error() {
    let mut config = test_config();
    config.tls_cert = Some("/nonexistent/cert.pem".into());
    config.tls_key = Some("/nonexistent/key.pem".into());
    let err = face_echo::server::start(config).await.err().expect("refuses to start");
    assert!(format!("{err:#}").contains("--tls-cert /nonexistent/cert.pem"), "{err:#}");
}
