//! The latest decoded frame as a JPEG ("what the server decoded"), with the
//! server's face boxes when `--detect` found any.

use image::ExtendedColorType;
use image::codecs::jpeg::JpegEncoder;

use crate::seeing::detect::Face;
use crate::seeing::frame::{I420Frame, to_rgb};

/// Encodes `frame` as a JPEG of its own size, `faces` outlined.
pub fn jpeg(frame: &I420Frame, faces: &[Face], quality: u8) -> Result<Vec<u8>, String> {
    let mut rgb = to_rgb(frame)?;
    for face in faces {
        outline(&mut rgb, frame.width, frame.height, face);
    }
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, quality)
        .encode(&rgb, frame.width, frame.height, ExtendedColorType::Rgb8)
        .map_err(|e| format!("JPEG: {e}"))?;
    Ok(out)
}

/// Draws a face's box, 2 px wide, in the colour the page uses for the server's boxes.
fn outline(rgb: &mut [u8], width: u32, height: u32, face: &Face) {
    const COLOUR: [u8; 3] = [255, 64, 160];
    const THICKNESS: i64 = 2;
    let (w, h) = (i64::from(width), i64::from(height));
    let (x0, y0) = (face.x.round() as i64, face.y.round() as i64);
    let (x1, y1) = (x0 + face.w.round() as i64 - 1, y0 + face.h.round() as i64 - 1);
    let mut paint = |x: i64, y: i64| {
        if (0..w).contains(&x) && (0..h).contains(&y) {
            let at = ((y * w + x) * 3) as usize;
            rgb[at..at + 3].copy_from_slice(&COLOUR);
        }
    };
    for t in 0..THICKNESS {
        // Clamped, so a wild box costs no more than the frame's own size.
        for x in x0.max(0)..=x1.min(w - 1) {
            paint(x, y0 + t);
            paint(x, y1 - t);
        }
        for y in y0.max(0)..=y1.min(h - 1) {
            paint(x0 + t, y);
            paint(x1 - t, y);
        }
    }
}
