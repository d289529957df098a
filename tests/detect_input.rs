//! The detector's input sampled straight from I420 finds the same faces as the
//! reference path (the whole frame to RGB, then `image`'s triangle resize), on the
//! face fixture framed every way a camera or a canvas frames it, with both models.
//!
//! Needs ONNX Runtime: `scripts/onnxruntime.sh` (run by `make test`).

mod common;

use common::*;
use face_echo::loadgen::clip::rgb_to_i420;
use face_echo::seeing::detect::{Face, ModelKind};
use face_echo::seeing::frame::{I420Frame, to_rgb};
use image::{Rgb, RgbImage, imageops};

/// The photo scaled to `side`² and placed at (`left`, `top`) on a `width×height`
/// dark frame, as a decoded I420 picture.
fn framed(width: u32, height: u32, side: u32, left: i64, top: i64, mirrored: bool) -> I420Frame {
    let mut photo = imageops::resize(&astronaut(), side, side, imageops::FilterType::Triangle);
    if mirrored {
        photo = imageops::flip_horizontal(&photo);
    }
    let mut frame = RgbImage::from_pixel(width, height, Rgb([16, 16, 16]));
    imageops::replace(&mut frame, &photo, left, top);
    let data = rgb_to_i420(frame.as_raw(), width, height).expect("I420");
    I420Frame { width, height, data }
}

#[test]
fn sampling_from_i420_finds_the_same_faces_as_the_rgb_path() {
    // (name, frame, whether the front model is meant for it: it is the close-up
    // model, and on a face a tenth of the frame wide it scores at its threshold,
    // where its box follows any change of input)
    let framings = [
        ("512x512 as is", framed(512, 512, 512, 0, 0, false), true),
        ("640x480 camera", framed(640, 480, 480, 80, 0, false), true),
        ("640x480 mirrored, off-centre", framed(640, 480, 320, 260, 150, true), false),
        ("320x240 page canvas", framed(320, 240, 240, 40, 0, false), true),
        ("1280x720", framed(1280, 720, 720, 280, 0, false), false),
        ("240x320 portrait", framed(240, 320, 240, 0, 40, false), true),
        ("333x251 odd sizes", framed(333, 251, 251, 41, 0, false), true),
    ];
    let (mut compared, mut lowest_iou) = (0, 1.0f32);
    for kind in [ModelKind::Back, ModelKind::Front] {
        let mut model = face_model(kind);
        for (name, frame, close_up) in &framings {
            if kind == ModelKind::Front && !close_up {
                continue;
            }
            let rgb =
                RgbImage::from_raw(frame.width, frame.height, to_rgb(frame).expect("RGB")).expect("size");
            let reference = model.detect(&rgb).expect("reference path");
            let sampled = model.detect_i420(frame).expect("I420 path");
            println!("{kind:?} {name}: reference {reference:?}\n    sampled {sampled:?}");
            assert_eq!(reference.len(), sampled.len(), "{kind:?} {name}: {reference:?} vs {sampled:?}");
            for (a, b) in reference.iter().zip(&sampled) {
                assert!(a.iou(b) >= 0.95, "{kind:?} {name}: IoU {} ({a:?} vs {b:?})", a.iou(b));
                assert!((a.score - b.score).abs() < 0.05, "{kind:?} {name}: scores {a:?} vs {b:?}");
                compared += 1;
                lowest_iou = lowest_iou.min(a.iou(b));
            }
        }
    }
    println!("{compared} faces compared, lowest IoU {lowest_iou:.3}");
    // The back model must see the face in every framing, or the comparison is empty.
    assert!(compared >= framings.len(), "only {compared} faces compared");

    let blank = I420Frame { width: 640, height: 480, data: vec![128; 640 * 480 * 3 / 2] };
    assert_eq!(face_model(ModelKind::Back).detect_i420(&blank).expect("runs"), Vec::<Face>::new());
}
