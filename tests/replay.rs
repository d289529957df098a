//! `face-echo replay`: a recording goes back through admission, libvpx and the
//! detector as fast as it can; the face fixture's recording replays with the
//! faces the server found live; a hostile IVF is refused like a hostile publisher.

mod common;

use std::fs::File;
use std::path::PathBuf;
use std::time::Duration;

use common::*;
use face_echo::loadgen::client::{ClientOptions, ClientPeer};
use face_echo::loadgen::clip::encode_test_pattern;
use face_echo::record::ivf::{self, IvfWriter};
use face_echo::record::replay::{ReplayArgs, replay};
use face_echo::seeing::detect::Face;
use serde_json::{Value, json};

const WIDTH: u32 = 320;
const HEIGHT: u32 = 240;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("face-echo-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn ort_lib() -> Option<PathBuf> {
    std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_of_the_face_fixture_replays_with_the_same_faces() {
    let dir = temp_dir("replay-faces");
    let mut config = test_config();
    config.detect = true;
    config.detect_fps = 15.0;
    config.record = Some(dir.clone());
    let server = start(config).await;
    let options = ClientOptions { data_channel: true, ..Default::default() };
    let mut publisher =
        ClientPeer::connect_options(&ws_url(server.addr), options, CONNECT_TIMEOUT).await.expect("connects");
    publisher.wait_channel_open(CONNECT_TIMEOUT).await.expect("channel opens");
    let session = publisher.session.clone();
    let clip = stamped_face_clip(60);
    let truth = letterboxed_face();
    let mut ticker = tokio::time::interval(Duration::from_millis(33));
    for (index, frame) in clip.iter().enumerate() {
        ticker.tick().await;
        publisher.send_frame(&frame.data, 3000).await.expect("send");
        // As a page does: what it drew on frame `index`.
        let page = json!({"type": "detections", "source": "page", "frame": index, "width": WIDTH, "height": HEIGHT,
            "faces": [{"x": truth.x, "y": truth.y, "w": truth.w, "h": truth.h, "score": 0.9}]});
        publisher.send_on_channel(&page.to_string()).await.expect("page detections");
    }
    let _ = collect_echo(&mut publisher, Duration::from_millis(1000)).await;
    publisher.close().await.expect("close");
    server.shutdown().await.expect("shutdown");

    let file = dir.join(format!("{session}.ivf"));
    let mut args = ReplayArgs::new(file);
    args.detect = true;
    args.ort_lib = ort_lib();
    let report = replay(&args, |_, _| {}).expect("replays");
    println!("{}", serde_json::to_string(&report).unwrap());
    assert_eq!((report.frames, report.frames_decoded, report.frames_refused), (60, 60, 0));
    assert_eq!((report.width, report.height), (WIDTH, HEIGHT));
    let detect = report.detect.as_ref().expect("detection ran");
    assert_eq!(
        (detect.frames, detect.frames_with_faces, detect.errors),
        (60, 60, 0),
        "the face on every frame"
    );
    assert!(detect.faces_per_frame >= 1.0 && detect.faces_per_frame < 1.5, "{}", detect.faces_per_frame);
    let agreement = detect.agreement.as_ref().expect("the server's detections were recorded");
    let frames = agreement["frames"].as_u64().expect("frames");
    assert!(frames >= 5, "{agreement}");
    assert_eq!(agreement["matched"].as_u64(), Some(frames), "same face on every recorded frame: {agreement}");
    assert_eq!((agreement["recorded_only"].as_u64(), agreement["replay_only"].as_u64()), (Some(0), Some(0)));
    assert!(agreement["mean_iou"].as_f64().expect("iou") > 0.99, "same pixels, same model: {agreement}");
    let journal = report.recording.as_ref().and_then(|recording| recording.journal.clone()).expect("journal");
    assert_eq!(journal.page_detections, 60, "the page's detections are recorded too");
    assert!(journal.closed && journal.bad_lines == 0);
    // And the recorded faces are the fixture's face.
    let journal = std::fs::read_to_string(dir.join(format!("{session}.jsonl"))).expect("journal");
    for line in journal.lines().filter(|line| line.contains("server_detections")) {
        let value: Value = serde_json::from_str(line).expect("JSON");
        let face = &value["faces"][0];
        let get = |key: &str| face[key].as_f64().expect(key) as f32;
        let found = Face { x: get("x"), y: get("y"), w: get("w"), h: get("h"), score: get("score") };
        assert!(found.iou(&truth) >= 0.5, "{line}");
        assert!(value["page_frame"].as_u64().is_some(), "the frame code was read: {line}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_clip_written_as_ivf_replays_every_frame() {
    let dir = temp_dir("replay-clip");
    let path = dir.join("clip.ivf");
    let clip = encode_test_pattern(WIDTH, HEIGHT, 30, 30, 600).expect("clip");
    let mut writer =
        IvfWriter::new(File::create(&path).expect("create"), WIDTH as u16, HEIGHT as u16).expect("ivf");
    for (index, frame) in clip.iter().enumerate() {
        let keyframe = frame.data[0] & 1 == 0;
        writer.write_frame(90_000 + 3000 * index as u64, &frame.data, keyframe).expect("frame");
    }
    writer.close().expect("close");
    let report = replay(&ReplayArgs::new(path), |_, _| {}).expect("replays");
    assert_eq!((report.frames, report.frames_decoded, report.decode_errors), (30, 30, 0));
    assert!(report.fps > 0.0 && report.decode_us.is_some() && report.detect.is_none());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_hostile_ivf_is_refused_before_libvpx() {
    let dir = temp_dir("replay-hostile");
    let path = dir.join("hostile.ivf");
    // A keyframe whose header claims 16383x16383, then an inter frame.
    let mut huge = vec![0x10, 0, 0, 0x9d, 0x01, 0x2a];
    huge.extend_from_slice(&16383u16.to_le_bytes());
    huge.extend_from_slice(&16383u16.to_le_bytes());
    huge.extend_from_slice(&[0; 32]);
    let mut bytes = ivf::file_header(16383, 16383, 2).to_vec();
    bytes.extend(ivf::frame_record(0, &huge));
    bytes.extend(ivf::frame_record(3000, &[0x01, 0, 0, 1, 2, 3]));
    std::fs::write(&path, &bytes).expect("write");
    let report = replay(&ReplayArgs::new(path.clone()), |_, _| {}).expect("replays");
    assert_eq!((report.frames, report.frames_refused, report.frames_decoded), (2, 2, 0));
    assert!(report.last_refusal.as_deref().is_some_and(|r| r.contains("refused keyframe")), "{report:?}");
    let first =
        face_echo::seeing::tap::admission::FrameGate::default().admit(&huge, std::time::Instant::now());
    assert!(first.is_err_and(|refusal| refusal.to_string().contains("16383x16383")));

    // A frame header claiming 4 GiB is an error, not an allocation.
    let mut bytes = ivf::file_header(320, 240, 1).to_vec();
    bytes.extend_from_slice(&u32::MAX.to_le_bytes());
    bytes.extend_from_slice(&0u64.to_le_bytes());
    std::fs::write(&path, &bytes).expect("write");
    let err = replay(&ReplayArgs::new(path), |_, _| {}).expect_err("refused");
    assert!(err.to_string().contains("limit"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
