//! A webrtc-rs client peer publishes real VP8 (libvpx) to the server over loopback
//! signaling and checks what comes back.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use face_echo::loadgen::client::ClientPeer;
use face_echo::loadgen::clip::encode_test_pattern;
use rtc::rtp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echoes_vp8_payloads_byte_identical_and_in_order() {
    let server = start(test_config()).await;
    let mut publisher =
        ClientPeer::connect(&ws_url(server.addr), CONNECT_TIMEOUT).await.expect("publisher connects");

    let sent = publish(&mut publisher, 150).await;
    let echoed = collect_echo(&mut publisher, Duration::from_millis(1500)).await;

    let sent_by_seq: HashMap<u16, &rtp::Packet> =
        sent.iter().map(|p| (p.header.sequence_number, p)).collect();
    let mut identical = 0usize;
    let mut seen = std::collections::HashSet::new();
    let mut out_of_order = 0usize;
    let mut last_seq: Option<u16> = None;
    for packet in &echoed {
        let seq = packet.header.sequence_number;
        if !seen.insert(seq) {
            continue; // a retransmission
        }
        if let Some(last) = last_seq
            && seq.wrapping_sub(last) > u16::MAX / 2
        {
            out_of_order += 1;
        }
        last_seq = Some(seq);
        let original = sent_by_seq.get(&seq).expect("echo carries a sequence number we sent");
        assert_eq!(packet.header.timestamp, original.header.timestamp, "timestamp preserved");
        if packet.payload == original.payload {
            identical += 1;
        }
    }
    let ratio = identical as f64 / sent.len() as f64;
    println!(
        "sent {} packets, echoed {} ({} distinct), byte-identical {:.2}%, out of order {}",
        sent.len(),
        echoed.len(),
        seen.len(),
        ratio * 100.0,
        out_of_order
    );
    assert!(ratio >= 0.99, "only {:.2}% of payloads came back identical", ratio * 100.0);
    assert!(out_of_order * 100 <= sent.len(), "{out_of_order} packets out of order");

    let listed = sessions(server.addr).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], publisher.session.as_str());
    assert_eq!(listed[0]["state"], "connected");
    assert!(listed[0]["echo"]["packets_out"].as_u64().unwrap() >= sent.len() as u64 * 99 / 100);
    // Every packet, the first ones included, took the session's media plane.
    let echo = &listed[0]["echo"];
    let (on_plane, packets_in) =
        (echo["packets_on_plane"].as_u64().unwrap(), echo["packets_in"].as_u64().unwrap());
    assert_eq!(on_plane, packets_in, "{echo}");
    assert_eq!(packets_in, sent.len() as u64, "every packet sent came in: {echo}");
    assert_eq!(listed[0]["media"]["udp"], "shared", "one shared port by default");

    let (status, metrics) = http_get(server.addr, "/metrics").await;
    assert_eq!(status, 200);
    for name in [
        "face_echo_sessions_active 1",
        "face_echo_rtp_packets_received_total",
        "face_echo_rtp_packets_forwarded_total",
        "face_echo_rtp_bytes_forwarded_total",
    ] {
        assert!(metrics.contains(name), "/metrics lacks {name}:\n{metrics}");
    }

    publisher.close().await.expect("close");
    assert!(
        eventually(Duration::from_secs(1), || async { sessions(server.addr).await.is_empty() }).await,
        "session still listed 1 s after the client left"
    );
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyframe_requests_on_the_echo_reach_the_publisher_rate_limited() {
    let server = start(test_config()).await;
    let mut publisher =
        ClientPeer::connect(&ws_url(server.addr), CONNECT_TIMEOUT).await.expect("publisher connects");
    let clip = encode_test_pattern(320, 240, 150, FPS, 600).expect("clip encodes");
    let mut ticker = tokio::time::interval(Duration::from_millis(1000 / u64::from(FPS)));
    let mut first_relayed_at = None;
    let mut burst_sent_at = None;
    // Media keeps flowing, as from a camera, while the echo's receiver asks for keyframes.
    for (index, frame) in clip.iter().enumerate() {
        ticker.tick().await;
        publisher.send_frame(&frame.data, SAMPLES_PER_FRAME).await.expect("send");
        while publisher.echoed.try_recv().is_ok() {}
        if index == 10 {
            publisher.request_keyframe_on_echo().await.expect("PLI sent");
        }
        if first_relayed_at.is_none() && publisher.plis_received() > 0 {
            first_relayed_at = Some(index);
            // A burst right after: inside the 500 ms window, none of it is relayed.
            for _ in 0..5 {
                publisher.request_keyframe_on_echo().await.expect("PLI sent");
            }
            burst_sent_at = Some(tokio::time::Instant::now());
        }
        if let Some(sent_at) = burst_sent_at
            && sent_at.elapsed() >= Duration::from_millis(300)
        {
            break;
        }
    }
    assert!(first_relayed_at.is_some(), "the PLI sent on the echo track never reached the publisher's SSRC");
    assert_eq!(publisher.plis_received(), 1, "burst was not rate-limited");
    let listed = sessions(server.addr).await;
    assert_eq!(listed[0]["echo"]["plis_relayed"].as_u64(), Some(1));

    publisher.close().await.expect("close");
    server.shutdown().await.expect("shutdown");
}

/// The server answers as DTLS server or client, whichever the offer leaves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_dtls_roles_work() {
    let server = start(test_config()).await;
    for setup in ["active", "passive"] {
        let edit = Box::new(move |sdp: String| sdp.replace("a=setup:actpass", &format!("a=setup:{setup}")));
        let mut publisher = ClientPeer::connect_with(&ws_url(server.addr), CONNECT_TIMEOUT, edit)
            .await
            .unwrap_or_else(|e| panic!("offer with setup:{setup} failed: {e:#}"));
        let sent = publish(&mut publisher, 15).await;
        let echoed = collect_echo(&mut publisher, Duration::from_millis(800)).await;
        assert!(
            echoed.len() * 100 >= sent.len() * 90,
            "setup:{setup}: {} of {} echoed",
            echoed.len(),
            sent.len()
        );
        publisher.close().await.expect("close");
    }
    server.shutdown().await.expect("shutdown");
}
