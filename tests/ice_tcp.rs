//! ICE-TCP: a client with no UDP at all reaches the server over the shared TCP port
//! (the `--listen` port by default, or `--tcp-port`), and its media is echoed.

mod common;

use std::time::Duration;

use common::*;
use face_echo::control::config::TcpPort;
use face_echo::loadgen::client::{ClientOptions, ClientPeer};

async fn echo_over_tcp(
    config: face_echo::control::config::Config,
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
    let (_, metrics) = http_get(server.addr, "/metrics").await;
    assert!(metrics.contains("face_echo_sessions_transport{transport=\"tcp\"} 1"), "{metrics}");
    assert!(metrics.contains("face_echo_sessions_transport{transport=\"udp\"} 0"), "{metrics}");
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

fn tcp_only() -> ClientOptions {
    ClientOptions { tcp_only: true, ..Default::default() }
}

/// A WHIP publisher and two viewers (one on `/ws`, one on WHEP), all with no UDP:
/// the viewers get the publisher's packets, and every one is listed as on TCP.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn whip_whep_and_watch_work_over_tcp() {
    let server = start(test_config()).await;
    let addr = server.addr;
    let mut publisher = ClientPeer::whip(&format!("http://{addr}/whip"), None, tcp_only(), CONNECT_TIMEOUT)
        .await
        .expect("WHIP over TCP");
    let receive_only = || ClientOptions {
        direction: webrtc::rtp_transceiver::RTCRtpTransceiverDirection::Recvonly,
        ..tcp_only()
    };
    let whep_url = format!("http://{addr}/whep/{}", publisher.watch_token);
    let mut whep = ClientPeer::whep(&whep_url, receive_only(), CONNECT_TIMEOUT).await.expect("WHEP over TCP");
    let mut watcher =
        ClientPeer::watch_options(&ws_url(addr), &publisher.watch_token, receive_only(), CONNECT_TIMEOUT)
            .await
            .expect("watch over TCP");

    let sent = publish(&mut publisher, 60).await;
    for (name, viewer) in [("WHEP", &mut whep), ("watch", &mut watcher)] {
        let mut received = Vec::new();
        while let Ok(Some(packet)) = tokio::time::timeout(Duration::from_secs(2), viewer.echoed.recv()).await
        {
            received.push(packet);
        }
        // A viewer joins from a keyframe on: most of the clip, payloads untouched.
        let identical = identical_payloads(&sent, &received);
        println!("{name}: {identical} of {} packets", sent.len());
        assert!(identical * 2 >= sent.len(), "the {name} viewer got {identical} of {} packets", sent.len());
    }
    let listed = sessions(addr).await;
    assert_eq!(listed[0]["transport"], "tcp", "{}", listed[0]);
    let viewers = listed[0]["viewers"].as_array().expect("viewers");
    assert_eq!(viewers.len(), 2);
    assert!(viewers.iter().all(|viewer| viewer["transport"] == "tcp"), "{viewers:?}");
    assert_eq!(listed[0]["media"]["tcp"]["stats"]["bound"], 3, "{}", listed[0]["media"]);
    for peer in [whep, watcher, publisher] {
        let _ = peer.close().await;
    }
    server.shutdown().await.expect("clean shutdown");
}
