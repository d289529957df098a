//! A decoded picture, as the tap hands it to the detector and the snapshot: planar
//! I420, and its conversion to RGB. Its own module because both sides use it and
//! neither should import the other for it.

use std::time::Instant;

use yuvutils_rs::{YuvPlanarImage, YuvRange, YuvStandardMatrix, yuv420_to_rgb};

/// A decoded picture in planar I420, tightly packed (stride = width).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct I420Frame {
    pub width: u32,
    pub height: u32,
    /// Y (width×height), then U and V (each ceil(w/2)×ceil(h/2)).
    pub data: Vec<u8>,
}

impl I420Frame {
    pub fn chroma_size(&self) -> (u32, u32) {
        (self.width.div_ceil(2), self.height.div_ceil(2))
    }

    pub fn planes(&self) -> (&[u8], &[u8], &[u8]) {
        let luma = (self.width * self.height) as usize;
        let (cw, ch) = self.chroma_size();
        let chroma = (cw * ch) as usize;
        let (y, rest) = self.data.split_at(luma);
        let (u, v) = rest.split_at(chroma);
        (y, u, &v[..chroma])
    }
}

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

/// Which frame a decoded picture is, for the results that describe it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameInfo {
    /// The RTP timestamp the publisher gave it (the echo keeps it).
    pub rtp_ts: u32,
    /// When its last packet arrived: results are timed from here.
    pub arrived: Instant,
    /// The page's frame code read from its pixels ([`crate::seeing::framecode`]), if any.
    pub page_frame: Option<u16>,
}
