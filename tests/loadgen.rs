//! Smoke test of `face-echo loadgen`: 2 peers (each with 1 viewer and a results
//! channel) for 3 s against a server with the tap and the detector on. It must
//! echo, fan out, decode and send results back; how fast is for BENCHMARKS.md.

mod common;

use common::*;
use face_echo::loadgen::{self, LoadgenArgs};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_echoes_and_the_tap_decodes() {
    let mut config = test_config();
    config.detect = true;
    let server = start(config).await;
    let summary = loadgen::run(LoadgenArgs {
        url: ws_url(server.addr),
        peers: 2,
        seconds: 3,
        size: (320, 240),
        fps: 30,
        bitrate: 500,
        json: true,
        viewers_per_peer: 1,
        results: true,
        local_ip: None,
        idle: false,
    })
    .await
    .expect("loadgen runs");
    println!("{}", serde_json::to_string(&summary).unwrap());
    assert_eq!(summary.peers, 2);
    assert_eq!(summary.connect_failures, 0);
    assert!(summary.frames_sent >= 100, "{summary:?}");
    assert!(summary.frames_echoed * 10 >= summary.frames_sent * 9, "{summary:?}");
    assert!(summary.rtt_ms_p50.is_some());
    assert_eq!(summary.viewers, 2, "{summary:?}");
    assert!(summary.viewer_loss < 0.1, "viewers missed {:.1} %", summary.viewer_loss * 100.0);
    assert!(summary.server_cpu_percent.is_some() && summary.server_rss_mb_max.is_some());
    assert!(summary.results_received >= 10, "{summary:?}");
    let (age, infer) = (summary.result_age_ms_p50.unwrap(), summary.result_infer_ms_p50.unwrap());
    assert!(age >= infer && infer > 0.0, "age {age} ms, model {infer} ms");

    let (_, metrics) = http_get(server.addr, "/metrics").await;
    let decoded: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("face_echo_tap_frames_decoded_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("tap counter");
    assert!(decoded * 10 >= summary.frames_sent * 9, "tap decoded {decoded} of {}", summary.frames_sent);
    server.shutdown().await.unwrap();
}
