//! The loop: what the server's detector finds reaches the clients per frame on
//! their `face-echo` data channels (publisher and viewers), tied to the frame by
//! its RTP timestamp and the page's frame code; the publisher's own detections
//! come back in and are compared; hostile channel messages change nothing else.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use common::*;
use face_echo::loadgen::client::{ClientOptions, ClientPeer};
use face_echo::seeing::detect::Face;
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedReceiver;

const WIDTH: u32 = 320;
const HEIGHT: u32 = 240;
const FRAMES: usize = 90;

fn with_channel() -> ClientOptions {
    ClientOptions { data_channel: true, ..Default::default() }
}

fn server_config() -> face_echo::control::config::Config {
    let mut config = test_config();
    config.detect = true;
    config.detect_fps = 15.0;
    config
}

/// Every message on a channel so far and for `more` (stats keep coming: no quiet).
async fn drain(messages: &mut UnboundedReceiver<String>, more: Duration) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + more;
    let mut out = Vec::new();
    while let Ok(Some(text)) = tokio::time::timeout_at(deadline, messages.recv()).await {
        out.push(serde_json::from_str(&text).expect("the server sends JSON"));
    }
    out
}

/// A publisher whose `face-echo` channel is open, and what the server says on it.
async fn publisher_with_channel(addr: std::net::SocketAddr) -> (ClientPeer, UnboundedReceiver<String>) {
    let mut publisher =
        ClientPeer::connect_options(&ws_url(addr), with_channel(), CONNECT_TIMEOUT).await.expect("connects");
    publisher.wait_channel_open(CONNECT_TIMEOUT).await.expect("channel opens");
    let messages = publisher.channel_messages().expect("messages");
    (publisher, messages)
}

fn face_of(value: &Value) -> Face {
    let get = |key: &str| value[key].as_f64().expect(key) as f32;
    Face { x: get("x"), y: get("y"), w: get("w"), h: get("h"), score: get("score") }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detections_reach_publisher_and_viewer_per_frame_and_agreement_is_counted() {
    let server = start(server_config()).await;
    let (mut publisher, mut from_server) = publisher_with_channel(server.addr).await;
    let url = ws_url(server.addr);
    let mut viewer = ClientPeer::watch_options(&url, &publisher.watch_token, with_channel(), CONNECT_TIMEOUT)
        .await
        .expect("viewer connects");
    viewer.wait_channel_open(CONNECT_TIMEOUT).await.expect("viewer channel opens");
    let mut to_viewer = viewer.channel_messages().expect("viewer messages");

    // Send the clip; as a page does, tell the server what we "drew" on each frame.
    let clip = stamped_face_clip(FRAMES);
    let truth = letterboxed_face();
    let mut sent_at: HashMap<u32, Instant> = HashMap::new();
    let mut sent = Vec::new();
    let mut ticker = tokio::time::interval(Duration::from_millis(33));
    for (index, frame) in clip.iter().enumerate() {
        ticker.tick().await;
        let packets = publisher.send_frame(&frame.data, 3000).await.expect("send");
        sent_at.insert(packets[0].header.timestamp, Instant::now());
        sent.extend(packets);
        let page = json!({"type": "detections", "source": "page", "frame": index, "width": WIDTH, "height": HEIGHT,
            "faces": [{"x": truth.x, "y": truth.y, "w": truth.w, "h": truth.h, "score": 0.9}]});
        publisher.send_on_channel(&page.to_string()).await.expect("page detections");
    }
    let echoed = collect_echo(&mut publisher, Duration::from_millis(1000)).await;
    assert_eq!(identical_payloads(&sent, &echoed), sent.len(), "the echo is whole and identical");

    let messages = drain(&mut from_server, Duration::from_millis(1500)).await;
    let detections: Vec<&Value> = messages.iter().filter(|m| m["type"] == "detections").collect();
    let stats: Vec<&Value> = messages.iter().filter(|m| m["type"] == "stats").collect();
    println!("{} detections, {} stats; first: {}", detections.len(), stats.len(), detections[0]);
    // ~3 s at --detect-fps 15 (the debug build's model may not keep up with all of them).
    assert!(detections.len() >= 10, "{} detections", detections.len());
    assert!(!stats.is_empty(), "stats once a second");
    for key in ["tap", "detect", "agreement"] {
        assert!(stats[0][key].is_object(), "stats carry {key}: {}", stats[0]);
    }

    let sent_timestamps: HashSet<u32> = sent_at.keys().copied().collect();
    let mut ages = Vec::new();
    for detection in &detections {
        assert_eq!(detection["source"], "server");
        let rtp_ts = detection["rtp_ts"].as_u64().expect("rtp_ts") as u32;
        assert!(sent_timestamps.contains(&rtp_ts), "rtp_ts {rtp_ts} is a frame we sent");
        assert_eq!((detection["width"].as_u64(), detection["height"].as_u64()), (Some(320), Some(240)));
        // The frame code read from the decoded pixels: frame n has timestamp base + 3000 n.
        let frame = detection["frame"].as_u64().expect("the frame code was read") as u32;
        let first_ts = detections[0]["rtp_ts"].as_u64().unwrap() as u32;
        let base = first_ts.wrapping_sub(3000 * detections[0]["frame"].as_u64().unwrap() as u32);
        assert_eq!(rtp_ts, base.wrapping_add(3000 * frame), "frame code and timestamp agree");
        let (infer, age) = (detection["infer_ms"].as_f64().unwrap(), detection["age_ms"].as_f64().unwrap());
        assert!(infer > 0.0 && age >= infer && age < 2000.0, "infer {infer} ms, age {age} ms");
        ages.push(age);
        let faces: Vec<Face> = detection["faces"].as_array().expect("faces").iter().map(face_of).collect();
        let best = faces.iter().map(|face| face.iou(&truth)).fold(0.0, f32::max);
        assert!(best >= 0.5, "the server found the face (IoU {best}): {detection}");
    }
    ages.sort_by(f64::total_cmp);
    println!("age_ms p50 {:.1}", ages[ages.len() / 2]);

    // The viewer's channel gets the same detections.
    let viewed = drain(&mut to_viewer, Duration::from_millis(300)).await;
    let viewer_detections = viewed.iter().filter(|m| m["type"] == "detections").count();
    assert!(viewer_detections >= detections.len() / 2, "viewer got {viewer_detections}");

    let session = sessions(server.addr).await.into_iter().find(|s| s["id"] == publisher.session).unwrap();
    println!("agreement {} loop {}", session["agreement"], session["loop"]);
    let agreement = &session["agreement"];
    assert!(agreement["frames"].as_u64().unwrap() >= 10, "{agreement}");
    assert_eq!(agreement["matched"], agreement["frames"], "one face each, the same face: {agreement}");
    assert!(agreement["mean_iou"].as_f64().unwrap() >= 0.5, "{agreement}");
    assert_eq!(session["loop"]["dropped_bad"], 0);
    let (_, metrics) = http_get(server.addr, "/metrics").await;
    for name in ["face_echo_agreement_matched_total", "face_echo_frame_result_sent_seconds_count"] {
        assert!(metrics.contains(name), "{name} in /metrics");
    }
    viewer.close().await.expect("close");
    publisher.close().await.expect("close");
    server.shutdown().await.expect("shutdown");
}

/// The page names every sixth frame it detects on (5 a second, the server's
/// --detect-fps): the server's detector runs on those frames, not on the newest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_detects_on_the_frames_the_page_names() {
    let mut config = server_config();
    config.detect_fps = 5.0;
    let server = start(config).await;
    let (mut publisher, mut from_server) = publisher_with_channel(server.addr).await;
    let clip = stamped_face_clip(FRAMES);
    let mut ticker = tokio::time::interval(Duration::from_millis(33));
    let named: HashSet<u64> = (3..FRAMES as u64).step_by(6).collect();
    for (index, frame) in clip.iter().enumerate() {
        ticker.tick().await;
        if named.contains(&(index as u64)) {
            let detecting = json!({"type": "detecting", "frame": index});
            publisher.send_on_channel(&detecting.to_string()).await.expect("detecting");
        }
        publisher.send_frame(&frame.data, 3000).await.expect("send");
    }
    let messages = drain(&mut from_server, Duration::from_millis(1500)).await;
    let detected: Vec<u64> =
        messages.iter().filter(|m| m["type"] == "detections").filter_map(|m| m["frame"].as_u64()).collect();
    let on_named = detected.iter().filter(|frame| named.contains(frame)).count();
    println!("named {} frames; detected on {detected:?}", named.len());
    // Every named frame is taken (one may miss while the first keyframe arrives).
    assert!(on_named + 1 >= named.len(), "{on_named} of {} named frames detected: {detected:?}", named.len());
    assert!(detected.len() <= on_named + 3, "the named frames took the budget: {detected:?}");
    publisher.close().await.expect("close");
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_channel_messages_are_counted_and_change_nothing_else() {
    let server = start(server_config()).await;
    let (mut publisher, mut from_server) = publisher_with_channel(server.addr).await;

    let clip = stamped_face_clip(FRAMES);
    let huge = format!(r#"{{"type":"detections","pad":"{}"}}"#, "x".repeat(20_000));
    let hostile: Vec<String> = vec![
        "not json".into(),
        "[]".into(),
        r#"{"type":"launch"}"#.into(),
        r#"{"type":"detections","source":"page","frame":1,"width":0,"height":0,"faces":[]}"#.into(),
        r#"{"type":"detections","source":"page","frame":1,"width":320,"height":240,"faces":[{"x":"a"}]}"#
            .into(),
        huge,
    ];
    let mut sent = Vec::new();
    let mut ticker = tokio::time::interval(Duration::from_millis(33));
    for (index, frame) in clip.iter().enumerate() {
        ticker.tick().await;
        sent.extend(publisher.send_frame(&frame.data, 3000).await.expect("send"));
        for text in &hostile {
            let _ = publisher.send_on_channel(text).await;
        }
        let _ = publisher.send_bytes_on_channel(&[0xff, 0x00, 0x13]).await;
        if index == 30 {
            // A flood far over the rate limit.
            for _ in 0..300 {
                let _ = publisher.send_on_channel(r#"{"type":"detections"}"#).await;
            }
        }
    }
    let echoed = collect_echo(&mut publisher, Duration::from_millis(1000)).await;
    assert_eq!(identical_payloads(&sent, &echoed), sent.len(), "the echo is whole and identical");
    let messages = drain(&mut from_server, Duration::from_millis(1500)).await;
    let detections = messages.iter().filter(|m| m["type"] == "detections").count();
    assert!(detections >= 10, "detections kept flowing: {detections}");

    let session = sessions(server.addr).await.remove(0);
    let channel = &session["loop"];
    println!("loop under hostile messages: {channel}");
    assert!(channel["dropped_bad"].as_u64().unwrap() >= 100, "{channel}");
    assert!(channel["dropped_rate"].as_u64().unwrap() >= 100, "{channel}");
    assert_eq!(channel["channels_open"], 1, "the channel stays open");
    assert_eq!(session["agreement"]["frames"], 0, "nothing hostile counted as a page detection");
    publisher.close().await.expect("close");
    server.shutdown().await.expect("shutdown");
}
