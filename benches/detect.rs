//! Server-side detection (BlazeFace through `ort`), per frame, split where the
//! time goes: prepare (RGB → letterboxed [-1, 1] input), the model run (one
//! intra-op thread, as the server runs it) and decode (anchors + weighted NMS).
//! onnxruntime-python's time for the same model and thread count comes from
//! `scripts/bench-detect.sh`, which runs this bench and then the Python one.
//!
//! Needs ONNX Runtime: ORT_DYLIB_PATH, or target/onnxruntime/ (scripts/onnxruntime.sh).

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use face_echo::detect::FaceModel;
use face_echo::detect::blazeface::{self, ModelKind};
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
    for kind in [ModelKind::Back, ModelKind::Front] {
        let spec = kind.spec();
        let mut model = FaceModel::load(&ort_lib(), kind).expect("model loads (run scripts/onnxruntime.sh)");
        let anchors = blazeface::anchors(&spec);
        let (input, letterbox) = blazeface::prepare(&frame, spec.size);
        let (scores, regressors) = model.infer(&input).expect("inference");
        assert!(
            !blazeface::decode(&spec, &anchors, &scores, &regressors, letterbox).is_empty(),
            "finds the face"
        );

        let mut group = c.benchmark_group(format!("detect_{}_{}", kind.name(), spec.size));
        group.sample_size(30);
        group.bench_function("prepare_640x480", |b| {
            b.iter(|| blazeface::prepare(black_box(&frame), spec.size))
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
