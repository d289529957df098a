//! Hostile media through real sessions, against the real binary in its own
//! process (so its memory and CPU are its own): crafted VP8 keyframes must not
//! reach libvpx, and a NACK storm must not buy retransmissions beyond the budget.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use face_echo::loadgen::client::ClientPeer;
use face_echo::loadgen::clip::{EncodedFrame, encode_test_pattern};

/// The server's peak resident memory so far (VmHWM), bytes.
fn peak_rss(server: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).expect("status");
    let kb: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kb * 1024
}

/// A copy of a real keyframe whose header claims `width`x`height` (RFC 6386 §9.1:
/// bytes 6..10 after the tag and start code).
fn claiming(keyframe: &Bytes, width: u16, height: u16) -> Bytes {
    assert_eq!(keyframe[0] & 1, 0, "a keyframe");
    let mut data = keyframe.to_vec();
    data[6..8].copy_from_slice(&width.to_le_bytes());
    data[8..10].copy_from_slice(&height.to_le_bytes());
    Bytes::from(data)
}

/// The session's `"tap"` object.
async fn tap(server: &Server) -> serde_json::Value {
    sessions(server.addr).await.remove(0)["tap"].clone()
}

/// Peak RSS a tapped, detecting server may reach in this test: the budget of one
/// session at 320x240 plus ONNX Runtime, far below the ~2 GB one crafted keyframe
/// cost before the header was read (see README, "Security and limits").
const RSS_BOUND: u64 = 400 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crafted_keyframes_are_refused_before_libvpx_and_the_echo_stays_identical() {
    let server = spawn_server(&["--decode-tap", "--detect"]).await;
    let mut publisher = ClientPeer::connect(&ws_url(server.addr), CONNECT_TIMEOUT).await.expect("connects");
    let good = encode_test_pattern(320, 240, 30, FPS, 600).expect("clip");
    let small = encode_test_pattern(160, 120, 1, FPS, 300).expect("clip");
    let keyframe = &good[0].data;

    // Good video first, so the decoder has a size and a picture.
    let mut sent = Vec::new();
    let mut send = async |frames: &[Bytes], publisher: &mut ClientPeer| {
        for frame in frames {
            sent.extend(publisher.send_frame(frame, SAMPLES_PER_FRAME).await.expect("send"));
            tokio::time::sleep(Duration::from_millis(33)).await;
        }
    };
    let data = |clip: &[EncodedFrame]| clip.iter().map(|f| f.data.clone()).collect::<Vec<_>>();
    send(&data(&good), &mut publisher).await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            tap(&server).await["frames_decoded"].as_u64() >= Some(25)
        })
        .await,
        "the good clip was decoded: {}",
        tap(&server).await
    );

    // Huge, zero and absurd sizes, each followed by the inter frames that refer to it.
    let mut hostile = Vec::new();
    for (width, height) in [(16383, 16383), (0, 240), (320, 0), (16383, 16383)] {
        hostile.push(claiming(keyframe, width, height));
        hostile.extend(data(&good[1..4]));
    }
    // A size change every frame: real keyframes, 320x240 and 160x120 in turn.
    for _ in 0..10 {
        hostile.push(keyframe.clone());
        hostile.push(small[0].data.clone());
    }
    send(&hostile, &mut publisher).await;
    // Then good video again: a good keyframe is decoded again.
    send(&data(&good), &mut publisher).await;

    let echoed = collect_echo(&mut publisher, Duration::from_millis(1500)).await;
    let identical = identical_payloads(&sent, &echoed);
    assert_eq!(identical, sent.len(), "every payload echoed byte-identical");

    let tap = tap(&server).await;
    println!("tap after the hostile frames: {tap}");
    // 4 crafted keyframes and their 12 inter frames; of the flips, 2 a second pass.
    let refused = tap["frames_refused"].as_u64().unwrap();
    // (A refused flip leaves the size as it was: the next flip back is no change.)
    assert!(refused >= 16 + 8, "{refused} frames refused");
    assert_eq!(tap["width"], 320, "the last good keyframe was decoded");
    assert!(tap["frames_decoded"].as_u64().unwrap() >= 50, "decoding resumed: {tap}");
    assert!(tap["keyframe_requests"].as_u64().unwrap() >= 1, "the tap asked for a keyframe");
    assert!(publisher.plis_received() >= 1, "the publisher was asked for a keyframe");
    let (_, metrics) = http_get(server.addr, "/metrics").await;
    assert!(metrics.contains("face_echo_tap_frames_refused_total"), "{metrics}");

    let peak = peak_rss(&server);
    println!("server peak RSS {} MB", peak >> 20);
    assert!(peak < RSS_BOUND, "peak RSS {} MB", peak >> 20);
    publisher.close().await.expect("close");
}

/// A stormer and a bystander: the storm may cost at most `MAX_RATIO` times the quiet
/// CPU (the media plane's quiet echo is cheap, so as a multiple of it the bound is
/// loose).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nack_and_pli_storm_buys_no_more_than_the_budget() {
    const MAX_RATIO: f64 = 9.0;
    let server = spawn_server(&[]).await;
    let url = ws_url(server.addr);
    let clip = encode_test_pattern(320, 240, 60, FPS, 600).expect("clip");
    let mut stormer = ClientPeer::connect(&url, CONNECT_TIMEOUT).await.expect("connects");
    let mut bystander = ClientPeer::connect(&url, CONNECT_TIMEOUT).await.expect("connects");
    let mut stormer_echo = stormer.take_echoed();

    let seconds = 5;
    let frames = (seconds * u64::from(FPS)) as usize;
    // Quiet: the server's CPU for both sessions echoing.
    let before = process_stats(server.addr).await;
    let mut ticker = tokio::time::interval(Duration::from_millis(1000 / u64::from(FPS)));
    for frame in clip.iter().cycle().take(frames) {
        ticker.tick().await;
        stormer.send_frame(&frame.data, SAMPLES_PER_FRAME).await.expect("send");
        bystander.send_frame(&frame.data, SAMPLES_PER_FRAME).await.expect("send");
    }
    let quiet = process_stats(server.addr).await;
    let _ = collect_echo(&mut bystander, Duration::from_millis(300)).await;

    // Storm: both go on sending; the stormer also NACKs the last 1000 packets
    // echoed to it every 2 ms, and asks for a keyframe each time too.
    let storm_rss_before = process_stats(server.addr).await.rss_bytes;
    let (mut sent, mut stormer_sent, mut nacks, mut asked) = (Vec::new(), Vec::new(), 0u64, 0u64);
    let mut last_echoed = std::collections::VecDeque::with_capacity(1000);
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_millis(2));
    let mut frames_sent = 0;
    while frames_sent < frames {
        ticker.tick().await;
        let due = (started.elapsed().as_millis() as usize) * FPS as usize / 1000;
        if frames_sent <= due {
            let frame = &clip[frames_sent % clip.len()];
            stormer_sent.extend(stormer.send_frame(&frame.data, SAMPLES_PER_FRAME).await.expect("send"));
            sent.extend(bystander.send_frame(&frame.data, SAMPLES_PER_FRAME).await.expect("send"));
            frames_sent += 1;
        }
        while let Ok(packet) = stormer_echo.try_recv() {
            if last_echoed.len() == 1000 {
                last_echoed.pop_front();
            }
            last_echoed.push_back(packet.header.sequence_number);
        }
        let lost: Vec<u16> = last_echoed.iter().copied().collect();
        stormer.feedback_on_echo(&lost, true).await.expect("nack and pli");
        nacks += 1;
        asked += lost.len() as u64;
    }
    let stormy = process_stats(server.addr).await;
    let quiet_cpu = quiet.cpu_seconds - before.cpu_seconds;
    let storm_cpu = stormy.cpu_seconds - quiet.cpu_seconds;
    println!(
        "{nacks} NACKs of 1000 packets in {seconds} s; server CPU quiet {quiet_cpu:.2} s, storm {storm_cpu:.2} s \
         ({:.1}x); RSS {} -> {} MB",
        storm_cpu / quiet_cpu,
        storm_rss_before >> 20,
        stormy.rss_bytes >> 20
    );
    assert!(nacks >= 300, "the storm ran: {nacks} NACKs");

    let echoed = collect_echo(&mut bystander, Duration::from_millis(1000)).await;
    assert_eq!(identical_payloads(&sent, &echoed), sent.len(), "the bystander's echo is whole and identical");

    let session =
        sessions(server.addr).await.into_iter().find(|s| s["id"] == stormer.session).expect("session");
    let retransmit = &session["retransmit"];
    println!("stormer's retransmit: {retransmit}");
    let requested = retransmit["nacks_received"].as_u64().unwrap();
    let refused = retransmit["nacks_refused"].as_u64().unwrap();
    let resent = retransmit["retransmissions"].as_u64().unwrap();
    let resent_bytes = retransmit["retransmitted_bytes"].as_u64().unwrap();
    let stormer_bytes: usize = stormer_sent.iter().map(|p| p.payload.len()).sum();
    assert!(requested * 10 >= asked * 9, "{requested} of {asked} NACKed packets reached the budget");
    assert!(refused * 100 >= requested * 99, "{refused} of {requested} refused");
    // The budget: retransmitted bytes and packets at most the stream's own rate,
    // plus a one-second burst: over 5 s, at most ~6/5 of what the stormer sent.
    assert!(resent as f64 <= 1.25 * stormer_sent.len() as f64, "{resent} of {} packets", stormer_sent.len());
    assert!(resent_bytes as f64 <= 1.25 * stormer_bytes as f64, "{resent_bytes} of {stormer_bytes} bytes");
    // Without the budget this storm cost 13x the quiet CPU in a debug build (every
    // NACKed packet resent, RSS +68 MB); what is left is reading the NACKs
    // themselves (SRTCP, parsing): ~4x in debug, less in release.
    assert!(
        storm_cpu <= MAX_RATIO * quiet_cpu.max(0.1),
        "storm {storm_cpu:.2} s vs quiet {quiet_cpu:.2} s of CPU"
    );
    assert!(
        stormy.rss_bytes < storm_rss_before + (16 << 20),
        "RSS grew from {} to {} MB",
        storm_rss_before >> 20,
        stormy.rss_bytes >> 20
    );
    // Keyframe requests reach the publisher at most once per 500 ms.
    let plis = stormer.plis_received();
    assert!((1..=2 * seconds + 2).contains(&plis), "{plis} PLIs relayed from {nacks} in {seconds} s");
    let (_, metrics) = http_get(server.addr, "/metrics").await;
    assert!(metrics.contains("face_echo_nacks_refused_total"), "{metrics}");
    stormer.close().await.expect("close");
    bystander.close().await.expect("close");
}

/// The worst a publisher can legitimately cost: keyframes at the pixel budget's
/// edge (4096x2160), decoded, detected on and snapshotted. README states the bound.
const SESSION_AT_BUDGET_BOUND: u64 = 256 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_session_at_the_pixel_budget_stays_within_its_stated_memory() {
    let server = spawn_server(&["--decode-tap", "--detect"]).await;
    let idle = peak_rss(&server);
    let mut publisher = ClientPeer::connect(&ws_url(server.addr), CONNECT_TIMEOUT).await.expect("connects");
    let clip = encode_test_pattern(4096, 2160, 4, 5, 8000).expect("clip at the budget");
    for frame in &clip {
        publisher.send_frame(&frame.data, 90_000 / 5).await.expect("send");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        eventually(Duration::from_secs(10), || async {
            tap(&server).await["frames_decoded"].as_u64() >= Some(3)
        })
        .await,
        "frames at the budget are decoded: {}",
        tap(&server).await
    );
    let (status, _, _) =
        http_get_bytes(server.addr, &format!("/api/sessions/{}/snapshot.jpg", publisher.session)).await;
    assert_eq!(status, 200);
    let tap = tap(&server).await;
    println!("tap at the budget: {tap}");
    assert_eq!((tap["width"].as_u64(), tap["height"].as_u64()), (Some(4096), Some(2160)));
    assert_eq!(tap["frames_refused"], 0);
    let peak = peak_rss(&server);
    println!("idle peak RSS {} MB; with one session at 4096x2160: {} MB", idle >> 20, peak >> 20);
    assert!(peak - idle < SESSION_AT_BUDGET_BOUND, "one session cost {} MB", (peak - idle) >> 20);
    publisher.close().await.expect("close");
}
