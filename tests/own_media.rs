//! The load generator's clients send and receive media past webrtc-rs's driver, on
//! a socket and SRTP contexts of their own (`loadgen::media`). The server must get
//! from them what a client sending through webrtc-rs gives it: every packet echoed
//! byte for byte, each numbered with the transport-wide sequence number, and its
//! RTCP back.

mod common;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use face_echo::loadgen::client::{ClientOptions, ClientPeer};
use face_echo::media::udp_mux::ReaderGroup;
use rtc::rtp;

const TRANSPORT_CC_URI: &str = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";

/// Two publishers whose sockets one reader thread reads (as the load generator's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_media_is_echoed_whole_with_one_reader_for_two_publishers() {
    let (publishers, reader) = (2, Some(ReaderGroup::new().expect("a reader thread")));
    let server = start(test_config()).await;
    let mut peers = Vec::new();
    for _ in 0..publishers {
        let echoed: Arc<Mutex<Vec<rtp::Packet>>> = Arc::default();
        let sink = Arc::clone(&echoed);
        let options = ClientOptions {
            on_echo: Some(Arc::new(move |packet| sink.lock().unwrap().push(packet))),
            lean: true,
            own_media: true,
            reader: reader.clone(),
            ..Default::default()
        };
        let publisher = ClientPeer::connect_options(&ws_url(server.addr), options, Duration::from_secs(20))
            .await
            .expect("connects");
        peers.push((publisher, echoed));
    }
    let sent =
        futures_util::future::join_all(peers.iter_mut().map(|(publisher, _)| publish(publisher, 60))).await;

    for ((publisher, echoed), sent) in peers.iter().zip(&sent) {
        let expected = sent.len();
        let all_back = eventually(Duration::from_secs(5), || {
            let count = echoed.lock().unwrap().len();
            async move { count >= expected }
        })
        .await;
        let echoed = echoed.lock().unwrap().clone();
        assert!(all_back, "{} of {} packets echoed", echoed.len(), sent.len());
        assert_eq!(identical_payloads(sent, &echoed), sent.len(), "every packet echoed byte for byte");

        // Numbered as webrtc-rs's TWCC sender would (what `send_frame` returns went on
        // the wire as it is; the echo drops the publisher's header extensions): under
        // the id the answer gave transport-cc, consecutive from 0.
        let answer = publisher.remote_sdp().await.expect("an answer");
        let id: u8 = answer
            .lines()
            .find_map(|line| {
                line.strip_prefix("a=extmap:")?.strip_suffix(TRANSPORT_CC_URI)?.trim().parse().ok()
            })
            .expect("the answer numbers transport-cc");
        let numbers: Vec<u16> = sent
            .iter()
            .map(|packet| {
                let number = packet.header.get_extension(id).expect("a transport-wide number");
                u16::from_be_bytes([number[0], number[1]])
            })
            .collect();
        assert_eq!(numbers, (0..sent.len() as u16).collect::<Vec<_>>());

        let stats = publisher.own_media_stats().expect("own media");
        assert_eq!(stats.rtp_out.load(Ordering::Relaxed), sent.len() as u64);
        assert_eq!(stats.rtp_refused.load(Ordering::Relaxed), 0);
        // The server's feedback (transport-cc every 100 ms) reaches the client's socket.
        assert!(stats.rtcp_dropped.load(Ordering::Relaxed) > 0, "{stats:?}");
    }

    for session in sessions(server.addr).await {
        let on_plane = session["echo"]["packets_on_plane"].as_u64().unwrap_or(0);
        let forwarded = session["echo"]["packets_in"].as_u64().unwrap_or(0);
        assert!(on_plane == forwarded && forwarded > 0, "{on_plane} of {forwarded} in on the plane");
        assert_eq!(session["echo"]["plane"]["unprotect_failed"], 0, "{session}");
    }
    for (publisher, _) in peers {
        publisher.close().await.expect("closes");
    }
    server.shutdown().await.expect("clean shutdown");
}
