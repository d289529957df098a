//! The decode tap behind a real session: the echo stays byte-identical, the tap
//! decodes what was sent, and with the tap off no tap work happens at all.

mod common;

use std::time::Duration;

use common::*;
use face_echo::loadgen::client::ClientPeer;

/// These tests look at the process's threads: run them one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_tap_the_echo_is_unchanged_and_frames_are_decoded() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let mut config = test_config();
    config.decode_tap = true;
    let server = start(config).await;
    let mut publisher = ClientPeer::connect(&ws_url(server.addr), CONNECT_TIMEOUT).await.expect("connects");
    let frames = 150;
    let sent = publish(&mut publisher, frames).await;
    let echoed = collect_echo(&mut publisher, Duration::from_millis(1500)).await;

    let identical = identical_payloads(&sent, &echoed);
    assert!(identical * 100 >= sent.len() * 99, "{identical} of {} payloads identical", sent.len());

    let session = sessions(server.addr).await.remove(0);
    let tap = &session["tap"];
    println!("tap: {tap}");
    assert_eq!(tap["enabled"], true);
    let decoded = tap["frames_decoded"].as_u64().unwrap();
    assert!(decoded * 100 >= frames as u64 * 95, "tap decoded {decoded} of {frames} frames");
    assert_eq!(tap["width"], 320);
    assert_eq!(tap["height"], 240);
    assert_eq!(tap["decode_errors"], 0);
    assert!(tap["keyframes"].as_u64().unwrap() >= 1);
    assert!(tap["decode_us_p50"].as_u64().unwrap() > 0);
    assert!(tap["bytes_per_frame_avg"].as_u64().unwrap() > 0);

    let (status, content_type, jpeg) =
        http_get_bytes(server.addr, &format!("/api/sessions/{}/snapshot.jpg", publisher.session)).await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "image/jpeg");
    let picture = image::load_from_memory(&jpeg).expect("a valid JPEG");
    assert_eq!((picture.width(), picture.height()), (320, 240));

    let (_, metrics) = http_get(server.addr, "/metrics").await;
    assert!(metrics.contains("face_echo_tap_frames_decoded_total"), "{metrics}");
    assert!(metrics.contains("face_echo_tap_decode_seconds_bucket"), "{metrics}");

    publisher.close().await.unwrap();
    assert!(
        eventually(Duration::from_secs(2), || async {
            !thread_names().iter().any(|n| n.starts_with("tap-"))
        })
        .await,
        "tap thread outlived its session: {:?}",
        thread_names()
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_tap_nothing_is_decoded() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let server = start(test_config()).await;
    let mut publisher = ClientPeer::connect(&ws_url(server.addr), CONNECT_TIMEOUT).await.expect("connects");
    let sent = publish(&mut publisher, 30).await;
    let echoed = collect_echo(&mut publisher, Duration::from_millis(800)).await;
    assert!(identical_payloads(&sent, &echoed) * 100 >= sent.len() * 99);

    let session = sessions(server.addr).await.remove(0);
    assert_eq!(session["tap"], serde_json::json!({"enabled": false}));
    assert!(!thread_names().iter().any(|n| n.starts_with("tap-")), "{:?}", thread_names());
    let (_, metrics) = http_get(server.addr, "/metrics").await;
    assert!(metrics.contains("face_echo_tap_frames_decoded_total 0"), "{metrics}");
    let (status, _, body) =
        http_get_bytes(server.addr, &format!("/api/sessions/{}/snapshot.jpg", publisher.session)).await;
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&body).contains("--decode-tap"));
    assert_eq!(http_get(server.addr, "/api/sessions/nope/snapshot.jpg").await.0, 404);
    publisher.close().await.unwrap();
    server.shutdown().await.unwrap();
}

/// A stream that starts without a keyframe leaves the tap waiting for one; with
/// --tap-pli the server asks the publisher (within the publisher's keyframe budget,
/// one PLI per 500 ms), without it never.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tap_pli_asks_for_a_keyframe_only_when_enabled() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let clip = face_echo::loadgen::clip::encode_test_pattern(320, 240, 75, FPS, 500).expect("clip");
    for tap_pli in [false, true] {
        let mut config = test_config();
        config.decode_tap = true;
        config.tap_pli = tap_pli;
        let server = start(config).await;
        let mut publisher =
            ClientPeer::connect(&ws_url(server.addr), CONNECT_TIMEOUT).await.expect("connects");
        let mut ticker = tokio::time::interval(Duration::from_millis(1000 / u64::from(FPS)));
        let started = std::time::Instant::now();
        for frame in &clip[1..] {
            ticker.tick().await;
            publisher.send_frame(&frame.data, SAMPLES_PER_FRAME).await.expect("send");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let waited = started.elapsed();
        let tap = sessions(server.addr).await.remove(0)["tap"].clone();
        println!("tap_pli={tap_pli}: plis received {}, tap {tap}", publisher.plis_received());
        assert_eq!(tap["frames_decoded"], 0, "nothing decodes before a keyframe");
        assert!(tap["frames_skipped"].as_u64().unwrap() > 60);
        if tap_pli {
            // One request per 500 ms of waiting (the first at once): ~2.7 s gives 6.
            let asked = tap["keyframe_requests"].as_u64().unwrap();
            let most =
                (waited.as_millis() / face_echo::session::keyframes::MIN_INTERVAL.as_millis()) as u64 + 1;
            assert!(asked >= 3 && asked <= most, "{asked} keyframe requests in {waited:?}");
            assert_eq!(publisher.plis_received(), asked);
        } else {
            assert_eq!(tap["keyframe_requests"], 0);
            assert_eq!(publisher.plis_received(), 0);
        }
        publisher.close().await.unwrap();
        server.shutdown().await.unwrap();
    }
}
