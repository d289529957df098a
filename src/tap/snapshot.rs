//! The latest decoded frame as a JPEG ("what the server decoded").

use image::ExtendedColorType;
use image::codecs::jpeg::JpegEncoder;
use yuvutils_rs::{YuvPlanarImage, YuvRange, YuvStandardMatrix, yuv420_to_rgb};

use super::decode::I420Frame;

/// I420 → RGB (BT.601, limited range: what browsers' VP8 encoders send).
pub fn to_rgb(frame: &I420Frame) -> Result<Vec<u8>, String> {
    let (y, u, v) = frame.planes();
    let (cw, _) = frame.chroma_size();
    let planar = YuvPlanarImage {
        y_plane: y,
        y_stride: frame.width,
        u_plane: u,
        u_stride: cw,
        v_plane: v,
        v_stride: cw,
        width: frame.width,
        height: frame.height,
    };
    let mut rgb = vec![0u8; (frame.width * frame.height * 3) as usize];
    yuv420_to_rgb(&planar, &mut rgb, frame.width * 3, YuvRange::Limited, YuvStandardMatrix::Bt601)
        .map_err(|e| format!("I420 to RGB: {e}"))?;
    Ok(rgb)
}

/// Encodes `frame` as a JPEG of its own size.
pub fn jpeg(frame: &I420Frame, quality: u8) -> Result<Vec<u8>, String> {
    let rgb = to_rgb(frame)?;
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, quality)
        .encode(&rgb, frame.width, frame.height, ExtendedColorType::Rgb8)
        .map_err(|e| format!("JPEG: {e}"))?;
    Ok(out)
}
