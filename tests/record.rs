//! `--record DIR`: each publisher's VP8 to DIR/<session>.ivf (vpxdec plays it) and
//! DIR/<session>.jsonl; a killed server leaves both readable; a directory that
//! cannot be written stops the server at start-up.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use face_echo::loadgen::client::ClientPeer;
use face_echo::record::stats;
use serde_json::Value;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("face-echo-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// `vpxdec --noblit --summary`: the frames it decoded (None if it failed).
fn vpxdec_frames(ivf: &Path) -> Option<u64> {
    let output =
        Command::new("vpxdec").arg("--noblit").arg("--summary").arg(ivf).output().expect("vpxdec runs");
    let text =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    println!("vpxdec: {}", text.trim());
    if !output.status.success() {
        return None;
    }
    // "60 decoded frames/60 showed frames in 24123 us (2487.25 fps)"
    let words: Vec<&str> = text.split_whitespace().collect();
    let at = words.iter().position(|word| *word == "decoded")?;
    words.get(at.checked_sub(1)?)?.parse().ok()
}

fn journal(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("the journal is there")
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// The session's media plane feeds the recorder (and lets go of it when the session
/// closes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_is_recorded_frame_for_frame_and_vpxdec_plays_it() {
    let name = "record";
    let dir = temp_dir(name);
    let mut config = test_config();
    config.record = Some(dir.clone());
    let server = start(config).await;
    let mut publisher = ClientPeer::connect(&ws_url(server.addr), CONNECT_TIMEOUT).await.expect("connects");
    let session = publisher.session.clone();
    let sent = publish(&mut publisher, 60).await;
    let echoed = collect_echo(&mut publisher, Duration::from_millis(800)).await;
    assert_eq!(identical_payloads(&sent, &echoed), sent.len(), "the echo is whole and identical");

    let listed = sessions(server.addr).await;
    let on_plane = listed[0]["echo"]["packets_on_plane"].as_u64().unwrap_or(0);
    assert_eq!(on_plane, sent.len() as u64, "{on_plane} packets on the plane");
    let record = &listed[0]["record"];
    assert_eq!(record["enabled"], true, "{record}");
    assert_eq!(record["frames"], 60, "{record}");
    assert_eq!(record["dropped"], 0, "{record}");
    let (_, metrics) = http_get(server.addr, "/metrics").await;
    assert!(metrics.contains("face_echo_record_frames_total 60"), "frames in /metrics");
    assert!(metrics.contains("face_echo_record_dropped_total 0"));

    publisher.close().await.expect("close");
    let jsonl = dir.join(format!("{session}.jsonl"));
    let closed = eventually(Duration::from_secs(5), || async {
        journal(&jsonl).iter().any(|line| line["type"] == "end")
    })
    .await;
    assert!(closed, "the recording closes with its session");

    let ivf = dir.join(format!("{session}.ivf"));
    let summary = stats::summarize(&ivf).expect("summary");
    println!("{summary:?}");
    assert_eq!((summary.frames, summary.header_frames), (60, 60), "count fixed on close");
    assert_eq!((summary.width, summary.height), (320, 240));
    assert!(summary.keyframes >= 1 && !summary.truncated && summary.error.is_none());
    assert!((summary.seconds - 59.0 / 30.0).abs() < 0.01, "pts are RTP time: {}", summary.seconds);
    assert_eq!(vpxdec_frames(&ivf), Some(60), "vpxdec plays every frame");

    let lines = journal(&jsonl);
    assert_eq!(lines[0]["type"], "recording");
    assert_eq!(lines[0]["session"], session.as_str());
    let frames: Vec<&Value> = lines.iter().filter(|line| line["type"] == "frame").collect();
    assert_eq!(frames.len(), 60);
    assert_eq!(frames[0]["keyframe"], true, "keyframe first");
    let sent_timestamps: std::collections::HashSet<u64> =
        sent.iter().map(|packet| u64::from(packet.header.timestamp)).collect();
    for (index, frame) in frames.iter().enumerate() {
        assert_eq!(frame["index"], index as u64);
        assert!(sent_timestamps.contains(&frame["rtp_ts"].as_u64().expect("rtp_ts")), "{frame}");
        assert!(frame["size"].as_u64().expect("size") > 0 && frame["arrived_ms"].as_f64().is_some());
    }
    let end = lines.last().expect("lines");
    assert_eq!(
        (end["type"].as_str(), end["frames"].as_u64(), end["dropped"].as_u64()),
        (Some("end"), Some(60), Some(0))
    );
    let listed = stats::summarize_dir(&dir).expect("record-stats");
    assert_eq!(listed.len(), 1);
    assert!(listed[0].journal.as_ref().is_some_and(|journal| journal.closed && journal.frame_lines == 60));
    server.shutdown().await.expect("shutdown");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_leaves_readable_files() {
    let dir = temp_dir("record-kill");
    let mut server = spawn_server(&["--record", dir.to_str().expect("utf-8 path")]).await;
    let mut publisher = ClientPeer::connect(&ws_url(server.addr), CONNECT_TIMEOUT).await.expect("connects");
    let session = publisher.session.clone();
    let sent = publish(&mut publisher, 45).await;
    let _ = collect_echo(&mut publisher, Duration::from_millis(500)).await;
    assert!(!sent.is_empty());
    server.child.kill().expect("SIGKILL");
    let _ = server.child.wait();

    let ivf = dir.join(format!("{session}.ivf"));
    let summary = stats::summarize(&ivf).expect("the IVF reads after a kill");
    println!("{summary:?}");
    assert_eq!(summary.frames, 45, "every frame written before the kill");
    assert!(summary.header_frames <= 45, "the header's count may lag: readers count");
    assert!(summary.error.is_none());
    assert_eq!(vpxdec_frames(&ivf), Some(45), "vpxdec plays it");
    let journal = summary.journal.expect("the JSONL is there");
    assert_eq!(journal.frame_lines, 45);
    assert!(!journal.closed, "no end line: it was killed");
    assert_eq!(journal.bad_lines, 0, "line-buffered: no torn line");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unwritable_record_directory_is_a_start_up_error() {
    let under_a_file = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml").join("recordings");
    let output = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--record"])
        .arg(&under_a_file)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "refused to start");
    assert!(stderr.contains("--record") && stderr.contains("cannot write"), "{stderr}");
}
