//! ICE-TCP: a client with no UDP at all reaches the server over the shared TCP port
//! (the `--listen` port by default, or `--tcp-port`), and its media is echoed.

mod common;

use std::time::Duration;

use common::*;
use face_echo::config::TcpPort;
use face_echo::loadgen::client::{ClientOptions, ClientPeer};

async fn echo_over_tcp(
    config: face_echo::config::Config,
) -> (face_echo::server::RunningServer, serde_json::Value) {
    let server = start(config).await;
    let options = ClientOptions { tcp_only: true, ..Default::default() };
    let mut publisher = ClientPeer::connect_options(&ws_url(server.addr), options, CONNECT_TIMEOUT)
        .await
        .expect("connects over TCP");
    let sent = publish(&mut publisher, 90).await;
    let echoed = collect_echo(&mut publisher, Duration::from_millis(1500)).await;
    let identical = identical_payloads(&sent, &echoed);
    println!("sent {}, echoed {}, identical {identical}", sent.len(), echoed.len());
    assert_eq!(identical, sent.len(), "every packet comes back byte-identical over TCP");
    let listed = sessions(server.addr).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["transport"], "tcp", "{}", listed[0]);
    let media = listed[0]["media"].clone();
    (server, media)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_udp_is_echoed_over_the_http_port() {
    let (server, media) = echo_over_tcp(test_config()).await;
    println!("{media}");
    assert_eq!(media["tcp"]["port"], server.addr.port(), "ICE-TCP shares the HTTP port");
    assert_eq!(media["tcp"]["stats"]["bound"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_udp_is_echoed_over_its_own_tcp_port() {
    let port = free_port();
    let mut config = test_config();
    config.tcp_port = Some(TcpPort::Port(port));
    let (_server, media) = echo_over_tcp(config).await;
    assert_eq!(media["tcp"]["port"], port);
}
