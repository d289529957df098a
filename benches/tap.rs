//! Decode-tap micro benchmarks, each beside its baseline in the same run:
//! - depacketize + assemble (packets/s);
//! - VP8 decode through the tap vs a plain libvpx loop over the same frames
//!   (frames/s; the ratio is in BENCHMARKS.md). The same clip is written to
//!   target/bench-clip-WxH.ivf for `vpxdec --benchmark`;
//! - snapshot: I420 → RGB → JPEG (ms/frame).

use std::hint::black_box;
use std::mem::MaybeUninit;
use std::ptr;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use face_echo::loadgen::clip::{EncodedFrame, encode_test_pattern, packetize};
use face_echo::seeing::tap::TapPipeline;
use face_echo::seeing::tap::assemble::{FrameAssembler, TapPacket};
use face_echo::seeing::tap::decode::Vp8Decoder;
use face_echo::seeing::tap::snapshot;

const FRAMES: usize = 120;

fn clip(width: u32, height: u32) -> (Vec<EncodedFrame>, Vec<TapPacket>) {
    let frames = encode_test_pattern(width, height, FRAMES, 30, width * height / 150).expect("clip");
    let packets = packetize(&frames, 7, 30).expect("packetize").iter().map(TapPacket::from).collect();
    write_ivf(&format!("target/bench-clip-{width}x{height}.ivf"), width, height, &frames);
    (frames, packets)
}

/// The clip as IVF, for `vpxdec --benchmark` (the reference decoder's own number).
fn write_ivf(path: &str, width: u32, height: u32, frames: &[EncodedFrame]) {
    let mut out = Vec::new();
    out.extend_from_slice(b"DKIF");
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&32u16.to_le_bytes());
    out.extend_from_slice(b"VP80");
    out.extend_from_slice(&(width as u16).to_le_bytes());
    out.extend_from_slice(&(height as u16).to_le_bytes());
    out.extend_from_slice(&30u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&(frames.len() as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    for (pts, frame) in frames.iter().enumerate() {
        out.extend_from_slice(&(frame.data.len() as u32).to_le_bytes());
        out.extend_from_slice(&(pts as u64).to_le_bytes());
        out.extend_from_slice(&frame.data);
    }
    let _ = std::fs::write(path, out);
}

/// The baseline: libvpx's decoder driven directly, output frames fetched and dropped.
fn decode_plain_libvpx(frames: &[EncodedFrame]) -> usize {
    use vpx_sys::*;
    let mut decoded = 0;
    unsafe {
        let mut ctx: vpx_codec_ctx_t = MaybeUninit::zeroed().assume_init();
        let cfg = vpx_codec_dec_cfg_t { threads: 1, w: 0, h: 0 };
        assert_eq!(
            vpx_codec_dec_init_ver(&mut ctx, vpx_codec_vp8_dx(), &cfg, 0, VPX_DECODER_ABI_VERSION as i32),
            vpx_codec_err_t::VPX_CODEC_OK
        );
        for frame in frames {
            vpx_codec_decode(&mut ctx, frame.data.as_ptr(), frame.data.len() as u32, ptr::null_mut(), 0);
            let mut iter = ptr::null();
            while !vpx_codec_get_frame(&mut ctx, &mut iter).is_null() {
                decoded += 1;
            }
        }
        vpx_codec_destroy(&mut ctx);
    }
    decoded
}

fn decode_through_tap(packets: &[TapPacket]) -> usize {
    let mut decoder = Vp8Decoder::new().expect("decoder");
    let mut pipeline = TapPipeline::default();
    packets.iter().filter(|p| pipeline.push(&mut decoder, p).is_some()).count()
}

fn benches(c: &mut Criterion) {
    for (width, height) in [(320, 240), (640, 480)] {
        let (frames, packets) = clip(width, height);
        assert_eq!(decode_through_tap(&packets), FRAMES);
        assert_eq!(decode_plain_libvpx(&frames), FRAMES);

        let mut group = c.benchmark_group(format!("assemble_{width}x{height}"));
        group.throughput(Throughput::Elements(packets.len() as u64));
        group.bench_function("depacketize_assemble", |b| {
            b.iter(|| {
                let mut assembler = FrameAssembler::default();
                packets.iter().filter(|p| assembler.push(black_box(p)).is_some()).count()
            })
        });
        group.finish();

        let mut group = c.benchmark_group(format!("decode_{width}x{height}"));
        group.throughput(Throughput::Elements(FRAMES as u64));
        group.sample_size(20);
        group.bench_function("plain_libvpx", |b| b.iter(|| decode_plain_libvpx(black_box(&frames))));
        group.bench_function("tap", |b| b.iter(|| decode_through_tap(black_box(&packets))));
        group.finish();

        let mut decoder = Vp8Decoder::new().expect("decoder");
        let mut pipeline = TapPipeline::default();
        let picture = packets
            .iter()
            .filter_map(|p| match pipeline.push(&mut decoder, p) {
                Some(face_echo::seeing::tap::Decoded::Picture { frame, .. }) => Some(frame),
                _ => None,
            })
            .last()
            .expect("a picture");
        let mut group = c.benchmark_group(format!("snapshot_{width}x{height}"));
        group.bench_function("i420_to_rgb", |b| {
            b.iter(|| face_echo::seeing::frame::to_rgb(black_box(&picture)))
        });
        group.bench_function("i420_to_jpeg", |b| b.iter(|| snapshot::jpeg(black_box(&picture), &[], 80)));
        group.finish();
    }
}

criterion_group!(tap, benches);
criterion_main!(tap);
