//! A synthetic VP8 clip, encoded once with libvpx (the same bytes on every run, see
//! [`super::encode`]), that test peers and the load generator loop, so sending stays
//! cheap on the client side.

use std::time::Instant;

use bytes::Bytes;
use rtc::rtp;
use rtc::rtp::codec::vp8::Vp8Payloader;
use rtc::rtp::packetizer::{Packetizer, new_packetizer};
use rtc::rtp::sequence::new_random_sequencer;
use yuvutils_rs::{
    YuvChromaSubsampling, YuvConversionMode, YuvPlanarImageMut, YuvRange, YuvStandardMatrix, rgb_to_yuv420,
};

use super::encode::{Encoded, Vp8Encoder};
use crate::session::peer::{RTP_MTU, VP8_CLOCK_RATE, VP8_PAYLOAD_TYPE};

/// One encoded VP8 frame.
#[derive(Debug, Clone)]
pub struct EncodedFrame {
    pub data: Bytes,
    pub key: bool,
}

/// Encodes `frames` frames of a moving test pattern at `width`x`height`.
/// The first frame is a keyframe, so the clip can be looped.
pub fn encode_test_pattern(
    width: u32,
    height: u32,
    frames: usize,
    fps: u32,
    bitrate_kbps: u32,
) -> anyhow::Result<Vec<EncodedFrame>> {
    encode_clip(width, height, frames, fps, bitrate_kbps, |index| {
        test_pattern_i420(width as usize, height as usize, index)
    })
}

/// Encodes `frames` I420 pictures that `picture(index)` draws at `width`x`height`.
/// The first frame is a keyframe.
pub fn encode_clip(
    width: u32,
    height: u32,
    frames: usize,
    fps: u32,
    bitrate_kbps: u32,
    mut picture: impl FnMut(usize) -> Vec<u8>,
) -> anyhow::Result<Vec<EncodedFrame>> {
    let mut encoder = Vp8Encoder::new(width, height, fps, bitrate_kbps)?;
    let mut out = Vec::with_capacity(frames);
    let mut keep = |encoded: Vec<Encoded>| {
        out.extend(
            encoded.into_iter().map(|frame| EncodedFrame { data: Bytes::from(frame.data), key: frame.key }),
        )
    };
    for index in 0..frames {
        keep(encoder.encode(index as i64, Some(&picture(index)))?);
    }
    keep(encoder.encode(frames as i64, None)?);
    Ok(out)
}

/// webrtc-rs's VP8 packetizer with our MTU and payload type, from a random sequence number.
pub fn vp8_packetizer(ssrc: u32) -> Box<dyn Packetizer> {
    Box::new(new_packetizer(
        Instant::now(),
        RTP_MTU,
        VP8_PAYLOAD_TYPE,
        ssrc,
        Box::new(Vp8Payloader::default()),
        Box::new(new_random_sequencer()),
        VP8_CLOCK_RATE,
    ))
}

/// Packetizes `frames` into RTP with webrtc-rs's VP8 payloader, as a sender at
/// `fps` would: one timestamp per frame, marker on each frame's last packet.
pub fn packetize(frames: &[EncodedFrame], ssrc: u32, fps: u32) -> anyhow::Result<Vec<rtp::Packet>> {
    let mut packetizer = vp8_packetizer(ssrc);
    let mut packets = Vec::new();
    for frame in frames {
        packets.extend(packetizer.packetize(Instant::now(), &frame.data, VP8_CLOCK_RATE / fps)?);
    }
    Ok(packets)
}

/// An RGB picture as I420 (BT.601 limited range, as browsers send), e.g. a photo
/// for a clip with a face in it.
pub fn rgb_to_i420(rgb: &[u8], width: u32, height: u32) -> anyhow::Result<Vec<u8>> {
    let mut planar = YuvPlanarImageMut::<u8>::alloc(width, height, YuvChromaSubsampling::Yuv420);
    rgb_to_yuv420(
        &mut planar,
        rgb,
        width * 3,
        YuvRange::Limited,
        YuvStandardMatrix::Bt601,
        YuvConversionMode::Balanced,
    )
    .map_err(|e| anyhow::anyhow!("RGB to I420: {e}"))?;
    let mut out = Vec::with_capacity((width * height) as usize * 3 / 2);
    out.extend_from_slice(planar.y_plane.borrow());
    out.extend_from_slice(planar.u_plane.borrow());
    out.extend_from_slice(planar.v_plane.borrow());
    Ok(out)
}

/// An I420 image: diagonal luma bands that move with `index`, and a chroma tint
/// that changes with it too, so every frame differs from the last.
pub fn test_pattern_i420(width: usize, height: usize, index: usize) -> Vec<u8> {
    let (chroma_w, chroma_h) = (width.div_ceil(2), height.div_ceil(2));
    let mut image = Vec::with_capacity(width * height + 2 * chroma_w * chroma_h);
    for y in 0..height {
        for x in 0..width {
            image.push(((x + y + index * 4) % 256) as u8);
        }
    }
    let u = (64 + (index * 3) % 128) as u8;
    let v = (192 - (index * 5) % 128) as u8;
    image.extend(std::iter::repeat_n(u, chroma_w * chroma_h));
    image.extend(std::iter::repeat_n(v, chroma_w * chroma_h));
    image
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_starts_with_a_keyframe_and_has_every_frame() {
        let clip = encode_test_pattern(160, 120, 10, 30, 300).unwrap();
        assert_eq!(clip.len(), 10);
        assert!(clip[0].key);
        assert!(clip.iter().all(|f| !f.data.is_empty()));
    }

    /// Every run of the load generator encodes its own clip: if the bytes differed
    /// from run to run, so would the packets per frame, and A/B runs would compare
    /// different loads.
    #[test]
    fn the_clip_is_the_same_every_time() {
        let sizes = || -> Vec<usize> {
            encode_test_pattern(320, 240, 60, 30, 500).unwrap().iter().map(|f| f.data.len()).collect()
        };
        let first = sizes();
        for _ in 0..4 {
            // Load the machine a little differently each time (a realtime encoder adapts to it).
            let busy = std::thread::spawn(|| {
                let t = Instant::now();
                while t.elapsed().as_millis() < 50 {}
            });
            assert_eq!(sizes(), first);
            busy.join().unwrap();
        }
    }
}
