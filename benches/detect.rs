//! Server-side detection (BlazeFace through `ort`), per frame, split where the
//! time goes: the input (a decoded 640×480 I420 frame → letterboxed [-1, 1]
//! input, sampled straight from the planes as the server does, against the old
//! way through a full-frame RGB picture and `image`'s resize), the model run (one
//! intra-op thread, as the server runs it) and decode (anchors + weighted NMS).
//! onnxruntime-python's time for the same model and thread count comes from
//! `scripts/bench-detect.sh`, which runs this bench and then the Python one.
//!
//! Needs ONNX Runtime: ORT_DYLIB_PATH, or target/onnxruntime/ (scripts/onnxruntime.sh).

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use face_echo::loadgen::clip::rgb_to_i420;
use face_echo::seeing::detect::FaceModel;
use face_echo::seeing::detect::blazeface::{self, ModelKind};
use face_echo::seeing::detect::letterbox;
use face_echo::seeing::frame::I420Frame;
use image::{Rgb, RgbImage, imageops};

fn ort_lib() -> PathBuf {
    std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/onnxruntime/libonnxruntime.so")
    })
}

/// The face fixture framed as a 640×480 camera picture.
fn camera_frame() -> RgbImage {
    let photo = image::open(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/astronaut.png"))
        .expect("fixture")
        .to_rgb8();
    let mut frame = RgbImage::from_pixel(640, 480, Rgb([0, 0, 0]));
    imageops::replace(&mut frame, &imageops::resize(&photo, 480, 480, imageops::FilterType::Triangle), 80, 0);
    frame
}

fn benches(c: &mut Criterion) {
    let frame = camera_frame();
    let decoded = I420Frame {
        width: frame.width(),
        height: frame.height(),
        data: rgb_to_i420(frame.as_raw(), frame.width(), frame.height()).expect("i420"),
    };
    for kind in [ModelKind::Back, ModelKind::Front] {
        let spec = kind.spec();
        let mut model = FaceModel::load(&ort_lib(), kind).expect("model loads (run scripts/onnxruntime.sh)");
        let anchors = blazeface::anchors(&spec);
        let (input, letterbox) = letterbox::from_rgb(&frame, spec.size);
        let (scores, regressors) = model.infer(&input).expect("inference");
        assert!(
            !blazeface::decode(&spec, &anchors, &scores, &regressors, letterbox).is_empty(),
            "finds the face"
        );

        let mut group = c.benchmark_group(format!("detect_{}_{}", kind.name(), spec.size));
        group.sample_size(30);
        group.bench_function("input_via_rgb_640x480", |b| {
            b.iter(|| {
                let rgb = face_echo::seeing::frame::to_rgb(black_box(&decoded)).expect("rgb");
                let rgb = RgbImage::from_raw(decoded.width, decoded.height, rgb).expect("size");
                letterbox::from_rgb(&rgb, spec.size)
            })
        });
        group.bench_function("input_from_i420_640x480", |b| {
            b.iter(|| letterbox::from_i420(black_box(&decoded), spec.size))
        });
        group.bench_function("model_1_thread", |b| {
            b.iter(|| model.infer(black_box(&input)).expect("inference"))
        });
        group.bench_function("decode_nms", |b| {
            b.iter(|| {
                blazeface::decode(&spec, &anchors, black_box(&scores), black_box(&regressors), letterbox)
            })
        });
        group.finish();
    }
}

criterion_group!(detect, benches);
criterion_main!(detect);
