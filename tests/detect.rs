//! Server-side face detection (`--detect`): BlazeFace through `ort` on a real
//! photo of a face, the same numbers as onnxruntime in Python, and end to end
//! behind a real session whose echo stays byte-identical.
//!
//! Needs ONNX Runtime: `scripts/onnxruntime.sh` (run by `make test`) fetches it
//! into target/onnxruntime/; ORT_DYLIB_PATH may point elsewhere.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use face_echo::loadgen::client::ClientPeer;
use face_echo::loadgen::clip::{encode_clip, rgb_to_i420};
use face_echo::seeing::detect::{Face, FaceModel, ModelKind};
use image::{Rgb, RgbImage, imageops};
use serde_json::Value;

fn model(kind: ModelKind) -> FaceModel {
    face_model(kind)
}

/// The face in astronaut.png, checked by eye.
fn astronaut_face() -> Face {
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("astronaut_face.json")).unwrap()).unwrap();
    let get = |key: &str| json[key].as_f64().expect(key) as f32;
    Face { x: get("x"), y: get("y"), w: get("w"), h: get("h"), score: 1.0 }
}

/// The best IoU of any detection with `truth`.
fn best_iou(faces: &[Face], truth: &Face) -> f32 {
    faces.iter().map(|f| f.iou(truth)).fold(0.0, f32::max)
}

#[test]
fn finds_the_astronaut_as_is_mirrored_and_scaled_and_nothing_in_a_blank_frame() {
    let truth = astronaut_face();
    let photo = astronaut();
    let mut back = model(ModelKind::Back);

    let faces = back.detect(&photo).unwrap();
    println!("as is: {faces:?}");
    assert!(best_iou(&faces, &truth) >= 0.5, "{faces:?} vs {truth:?}");

    let mirrored = imageops::flip_horizontal(&photo);
    let mirrored_truth = Face { x: photo.width() as f32 - truth.x - truth.w, ..truth };
    let faces = back.detect(&mirrored).unwrap();
    println!("mirrored: {faces:?}");
    assert!(best_iou(&faces, &mirrored_truth) >= 0.5, "{faces:?} vs {mirrored_truth:?}");

    // 512² scaled to 320² and placed off-centre in a 640×480 frame: letterboxing.
    let (scale, left, top) = (320.0 / 512.0, 200u32, 120u32);
    let mut frame = RgbImage::from_pixel(640, 480, Rgb([20, 20, 20]));
    let small = imageops::resize(&photo, 320, 320, imageops::FilterType::Triangle);
    imageops::replace(&mut frame, &small, i64::from(left), i64::from(top));
    let scaled_truth = Face {
        x: truth.x * scale + left as f32,
        y: truth.y * scale + top as f32,
        w: truth.w * scale,
        h: truth.h * scale,
        score: 1.0,
    };
    let faces = back.detect(&frame).unwrap();
    println!("scaled: {faces:?}");
    assert!(best_iou(&faces, &scaled_truth) >= 0.5, "{faces:?} vs {scaled_truth:?}");

    let blank = RgbImage::from_pixel(640, 480, Rgb([128, 128, 128]));
    assert_eq!(back.detect(&blank).unwrap(), vec![]);

    // The close-up model sees this close face too.
    let faces = model(ModelKind::Front).detect(&photo).unwrap();
    println!("front: {faces:?}");
    assert!(best_iou(&faces, &truth) >= 0.5, "{faces:?} vs {truth:?}");
}

/// Raw outputs through `ort` equal onnxruntime-python's on the same input
/// (tests/detect/reference.py wrote the fixture).
#[test]
fn raw_outputs_match_onnxruntime_python() {
    for kind in [ModelKind::Back, ModelKind::Front] {
        let path = fixture(&format!("blazeface_{}_parity.json", kind.name()));
        let expected: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let size = kind.spec().size as usize;
        let input: Vec<f32> = (0..size * size * 3).map(parity_input_value).collect();
        let outputs = model(kind).run_raw(&input).unwrap();
        let mut compared = 0;
        for want in expected["outputs"].as_array().expect("outputs") {
            let name = want["name"].as_str().unwrap();
            let got = outputs
                .iter()
                .find(|o| o.name == name)
                .unwrap_or_else(|| panic!("{kind:?}: no output {name}"));
            let shape: Vec<i64> = serde_json::from_value(want["shape"].clone()).unwrap();
            assert_eq!(got.shape, shape, "{kind:?} {name}");
            let first16 = want["first16"].as_array().unwrap().iter().enumerate();
            let spread = want["spread_indices"]
                .as_array()
                .unwrap()
                .iter()
                .zip(want["spread_values"].as_array().unwrap());
            let pairs = first16.map(|(index, value)| (index, value.as_f64().unwrap())).chain(
                spread.map(|(index, value)| (index.as_u64().unwrap() as usize, value.as_f64().unwrap())),
            );
            for (index, value) in pairs {
                let (got, value) = (got.values[index], value as f32);
                assert!((got - value).abs() <= 1e-4, "{kind:?} {name}[{index}]: ort {got}, python {value}");
                compared += 1;
            }
        }
        assert!(compared >= 64, "{compared} values compared");
    }
}

/// The synthetic input both sides build (see tests/detect/reference.py).
fn parity_input_value(index: usize) -> f32 {
    ((index * 7919) % 255) as f32 / 127.5 - 1.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_with_detect_reports_the_face_and_still_echoes_unchanged() {
    let mut config = test_config();
    config.detect = true;
    config.ort_lib = Some(ort_lib());
    let server = start(config).await;
    let mut publisher = ClientPeer::connect(&ws_url(server.addr), CONNECT_TIMEOUT).await.expect("connects");

    // The photo, letterboxed into 320×240 as a camera would frame it.
    let (width, height) = (320u32, 240u32);
    let mut frame = RgbImage::from_pixel(width, height, Rgb([0, 0, 0]));
    imageops::replace(
        &mut frame,
        &imageops::resize(&astronaut(), 240, 240, imageops::FilterType::Triangle),
        40,
        0,
    );
    let picture = rgb_to_i420(frame.as_raw(), width, height).unwrap();
    let clip = encode_clip(width, height, 60, 30, 800, |_| picture.clone()).unwrap();
    let mut sent = Vec::new();
    let mut ticker = tokio::time::interval(Duration::from_millis(33));
    for encoded in &clip {
        ticker.tick().await;
        sent.extend(publisher.send_frame(&encoded.data, 3000).await.expect("send"));
    }
    let echoed = collect_echo(&mut publisher, Duration::from_millis(1500)).await;
    let identical = identical_payloads(&sent, &echoed);
    assert!(identical * 100 >= sent.len() * 99, "{identical} of {} payloads identical", sent.len());

    let truth = astronaut_face();
    let scale = 240.0 / 512.0;
    let truth = Face {
        x: truth.x * scale + 40.0,
        y: truth.y * scale,
        w: truth.w * scale,
        h: truth.h * scale,
        score: 1.0,
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let detect = loop {
        let detect = sessions(server.addr).await.remove(0)["detect"].clone();
        let found = detect["faces"].as_array().is_some_and(|faces| !faces.is_empty());
        if found || std::time::Instant::now() > deadline {
            break detect;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!("detect: {detect}");
    assert_eq!(detect["enabled"], true);
    assert_eq!(detect["model"], "back");
    assert!(detect["inferences"].as_u64().unwrap() >= 1);
    let faces: Vec<Face> = detect["faces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| Face {
            x: f["x"].as_f64().unwrap() as f32,
            y: f["y"].as_f64().unwrap() as f32,
            w: f["w"].as_f64().unwrap() as f32,
            h: f["h"].as_f64().unwrap() as f32,
            score: f["score"].as_f64().unwrap() as f32,
        })
        .collect();
    assert!(best_iou(&faces, &truth) >= 0.5, "{faces:?} vs {truth:?}");

    let (_, metrics) = http_get(server.addr, "/metrics").await;
    assert!(metrics.contains("face_echo_detect_inferences_total"), "{metrics}");
    let faces_gauge = metrics
        .lines()
        .find_map(|line| line.strip_prefix("face_echo_detect_faces "))
        .and_then(|value| value.trim().parse::<i64>().ok());
    assert!(faces_gauge >= Some(1), "{metrics}");
    // The snapshot carries the server's box.
    let (status, _, jpeg) =
        http_get_bytes(server.addr, &format!("/api/sessions/{}/snapshot.jpg", publisher.session)).await;
    assert_eq!(status, 200);
    let snapshot = image::load_from_memory(&jpeg).unwrap().to_rgb8();
    let edge =
        snapshot.get_pixel(faces[0].x.round() as u32 + faces[0].w as u32 / 2, faces[0].y.round() as u32);
    assert!(edge[0] > 200 && edge[1] < 120, "box edge colour {edge:?}");

    publisher.close().await.unwrap();
    server.shutdown().await.unwrap();
}

/// Without ONNX Runtime, `--detect` refuses to start, naming the flag and the fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detect_without_onnx_runtime_is_a_clear_startup_error() {
    let mut config = test_config();
    config.detect = true;
    config.ort_lib = Some(PathBuf::from("/nonexistent/libonnxruntime.so"));
    let err = face_echo::server::start(config).await.err().expect("refuses to start").to_string();
    assert!(err.contains("--ort-lib") && err.contains("scripts/onnxruntime.sh"), "{err}");
}
