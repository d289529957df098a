//! Broadcast (SFU fan-out): viewers watch a publisher's session over real
//! webrtc-rs peers; every viewer gets the publisher's payloads unmodified, a viewer
//! that stops reading hurts nobody, limits and the publisher's departure are typed.

mod common;

use std::time::Duration;

use common::*;
use face_echo::loadgen::client::ClientPeer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_viewers_get_every_payload_and_a_stalled_one_hurts_nobody() {
    let mut config = test_config();
    config.max_viewers = 5;
    let server = start(config).await;
    let url = ws_url(server.addr);
    let mut publisher = ClientPeer::connect(&url, CONNECT_TIMEOUT).await.expect("publisher connects");
    let mut viewers = Vec::new();
    for _ in 0..4 {
        viewers.push(
            ClientPeer::watch(&url, &publisher.watch_token, CONNECT_TIMEOUT).await.expect("viewer connects"),
        );
    }
    // A fifth viewer that never reads what it gets.
    let stalled = ClientPeer::watch(&url, &publisher.watch_token, CONNECT_TIMEOUT)
        .await
        .expect("stalled viewer connects");
    // The sixth is one too many.
    let refused =
        ClientPeer::watch(&url, &publisher.watch_token, CONNECT_TIMEOUT).await.err().expect("refused");
    assert!(refused.to_string().contains("viewers_full"), "{refused}");
    let unknown = ClientPeer::watch(&url, "0000000000000000", CONNECT_TIMEOUT).await.err().expect("refused");
    assert!(unknown.to_string().contains("no_such_session"), "{unknown}");
    // The session id is public (/api/sessions); it is not the share secret.
    let by_id = ClientPeer::watch(&url, &publisher.session, CONNECT_TIMEOUT).await.err().expect("refused");
    assert!(by_id.to_string().contains("no_such_session"), "{by_id}");
    let listed = serde_json::to_string(&sessions(server.addr).await).unwrap();
    assert!(!listed.contains(&publisher.watch_token), "the watch token leaked: {listed}");

    let sent = publish(&mut publisher, 90).await;
    // Joining viewers asked for a keyframe: relayed to the publisher as a PLI once
    // its track is up.
    assert!(
        eventually(Duration::from_secs(3), || async { publisher.plis_received() >= 1 }).await,
        "no keyframe request reached the publisher"
    );
    let echoed = collect_echo(&mut publisher, Duration::from_millis(1500)).await;
    assert!(identical_payloads(&sent, &echoed) * 100 >= sent.len() * 99, "the echo suffered");
    for (index, viewer) in viewers.iter_mut().enumerate() {
        let got = collect_echo(viewer, Duration::from_millis(500)).await;
        let identical = identical_payloads(&sent, &got);
        println!("viewer {index}: {identical} of {} payloads identical", sent.len());
        assert!(identical * 100 >= sent.len() * 99, "viewer {index}: {identical} of {}", sent.len());
    }

    let session = sessions(server.addr).await.remove(0);
    let listed = session["viewers"].as_array().expect("viewers").clone();
    println!("viewers: {listed:?}");
    assert_eq!(listed.len(), 5);
    assert!(listed.iter().all(|v| v["packets"].as_u64().unwrap() as usize >= sent.len() * 99 / 100));
    let (_, metrics) = http_get(server.addr, "/metrics").await;
    assert!(metrics.contains("face_echo_viewers_active 5"), "{metrics}");
    assert!(metrics.contains("face_echo_rtp_packets_fanout_total"), "{metrics}");

    // A viewer leaving is forgotten; the publisher leaving tells the others.
    viewers.pop().unwrap().close().await.unwrap();
    assert!(
        eventually(Duration::from_secs(2), || async {
            sessions(server.addr).await[0]["viewers"].as_array().unwrap().len() == 4
        })
        .await,
        "a closed viewer is still listed"
    );
    publisher.close().await.unwrap();
    for viewer in &viewers {
        assert!(
            eventually(Duration::from_secs(3), || async {
                viewer.server_errors().iter().any(|e| e.contains("publisher_left"))
            })
            .await,
            "viewer not told: {:?}",
            viewer.server_errors()
        );
    }
    let (_, metrics) = http_get(server.addr, "/metrics").await;
    assert!(metrics.contains("face_echo_viewers_active 0"), "{metrics}");
    drop(stalled);
    server.shutdown().await.unwrap();
}
