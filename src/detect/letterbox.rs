//! The model's input: a frame scaled to fit the `S×S` square, centred on black, as
//! NHWC floats in [-1, 1], with the mapping back to frame pixels.
//!
//! The server samples it straight from the decoder's I420 planes
//! ([`from_i420`]): a triangle filter per plane to the fitted size, then BT.601
//! to RGB for the `S×S` pixels the model sees, not for the whole frame. Going
//! through a full-frame RGB picture and a second resize ([`from_rgb`], kept for
//! photos and as the reference in tests) cost as much as half the model's run.

use image::imageops::FilterType;
use image::{RgbImage, imageops};

use crate::frame::I420Frame;

/// Where the frame sits inside the square model input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    /// Input pixels per frame pixel.
    pub scale: f32,
    /// Offset of the frame's top-left corner in the input, pixels.
    pub pad_x: f32,
    pub pad_y: f32,
}

/// The frame's size inside the square, and where it goes.
struct Fit {
    width: u32,
    height: u32,
    pad_x: u32,
    pad_y: u32,
    letterbox: Letterbox,
}

fn fit(width: u32, height: u32, size: u32) -> Fit {
    let scale = size as f32 / width.max(height).max(1) as f32;
    let fit_w = ((width as f32 * scale).round() as u32).clamp(1, size);
    let fit_h = ((height as f32 * scale).round() as u32).clamp(1, size);
    let (pad_x, pad_y) = ((size - fit_w) / 2, (size - fit_h) / 2);
    let letterbox =
        Letterbox { scale: fit_w as f32 / width.max(1) as f32, pad_x: pad_x as f32, pad_y: pad_y as f32 };
    Fit { width: fit_w, height: fit_h, pad_x, pad_y, letterbox }
}

/// A black `size²` input (black is -1 in every channel) and `put(x, y, rgb)` for
/// each fitted pixel.
fn fill(size: u32, fit: &Fit, mut pixel: impl FnMut(usize, usize) -> [f32; 3]) -> Vec<f32> {
    let mut input = vec![-1.0f32; (size * size * 3) as usize];
    for y in 0..fit.height as usize {
        let row = ((y + fit.pad_y as usize) * size as usize + fit.pad_x as usize) * 3;
        for (x, slot) in input[row..row + fit.width as usize * 3].chunks_exact_mut(3).enumerate() {
            let rgb = pixel(x, y);
            for (slot, value) in slot.iter_mut().zip(rgb) {
                *slot = value / 127.5 - 1.0;
            }
        }
    }
    input
}

/// Scales an RGB picture with `image`'s triangle filter: the reference path.
pub fn from_rgb(rgb: &RgbImage, size: u32) -> (Vec<f32>, Letterbox) {
    let (width, height) = rgb.dimensions();
    let fit = fit(width, height, size);
    let resized = imageops::resize(rgb, fit.width, fit.height, FilterType::Triangle);
    let input = fill(size, &fit, |x, y| resized.get_pixel(x as u32, y as u32).0.map(f32::from));
    (input, fit.letterbox)
}

/// Samples the fitted picture straight from I420 (BT.601, limited range: what
/// [`crate::frame::to_rgb`] assumes too).
pub fn from_i420(frame: &I420Frame, size: u32) -> (Vec<f32>, Letterbox) {
    let fit = fit(frame.width, frame.height, size);
    let (y, u, v) = frame.planes();
    let (cw, ch) = frame.chroma_size();
    let luma = Plane { data: y, width: frame.width, height: frame.height }.resample(fit.width, fit.height);
    let blue = Plane { data: u, width: cw, height: ch }.resample(fit.width, fit.height);
    let red = Plane { data: v, width: cw, height: ch }.resample(fit.width, fit.height);
    let input = fill(size, &fit, |x, row| {
        let at = row * fit.width as usize + x;
        let (y, u, v) = (1.164 * (luma[at] - 16.0), blue[at] - 128.0, red[at] - 128.0);
        [y + 1.596 * v, y - 0.392 * u - 0.813 * v, y + 2.017 * u].map(|c| c.clamp(0.0, 255.0))
    });
    (input, fit.letterbox)
}

/// One 8-bit plane, tightly packed.
struct Plane<'a> {
    data: &'a [u8],
    width: u32,
    height: u32,
}

impl Plane<'_> {
    /// Triangle-filtered to `width×height`, as floats: rows first (whole source
    /// rows at a time, which vectorises), then columns of the few rows left.
    fn resample(&self, width: u32, height: u32) -> Vec<f32> {
        let (src_w, dst_w) = (self.width as usize, width as usize);
        let rows = Taps::new(self.height, height);
        let columns = Taps::new(self.width, width);
        let mut row = vec![0.0f32; src_w];
        let mut out = Vec::with_capacity(dst_w * height as usize);
        for y in 0..height as usize {
            row.fill(0.0);
            for (k, &weight) in rows.weights(y).iter().enumerate() {
                let source = &self.data[(rows.start[y] + k) * src_w..][..src_w];
                for (acc, &pixel) in row.iter_mut().zip(source) {
                    *acc += weight * f32::from(pixel);
                }
            }
            out.extend((0..dst_w).map(|x| {
                let window = &row[columns.start[x]..][..columns.per];
                columns.weights(x).iter().zip(window).map(|(w, p)| w * p).sum::<f32>()
            }));
        }
        out
    }
}

/// A triangle (tent) filter from `src` samples to `dst`: for each output sample,
/// `per` consecutive source samples from `start` and their weights, summing to 1.
/// Its width grows with the downscale ratio, as `image`'s resize does, so every
/// source pixel counts.
struct Taps {
    start: Vec<usize>,
    per: usize,
    weights: Vec<f32>,
}

impl Taps {
    fn new(src: u32, dst: u32) -> Self {
        let ratio = src as f32 / dst as f32;
        let support = ratio.max(1.0);
        let per = ((2.0 * support).ceil() as usize + 1).min(src as usize);
        let mut start = Vec::with_capacity(dst as usize);
        let mut weights = Vec::with_capacity(dst as usize * per);
        for at in 0..dst as usize {
            let centre = (at as f32 + 0.5) * ratio;
            let first = ((centre - support).floor().max(0.0) as usize).min(src as usize - per);
            let tent: Vec<f32> = (first..first + per)
                .map(|i| (1.0 - ((i as f32 + 0.5 - centre) / support).abs()).max(0.0))
                .collect();
            let total: f32 = tent.iter().sum();
            weights.extend(tent.iter().map(|w| if total > 0.0 { w / total } else { 1.0 / per as f32 }));
            start.push(first);
        }
        Taps { start, per, weights }
    }

    fn weights(&self, at: usize) -> &[f32] {
        &self.weights[at * self.per..][..self.per]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wide_frame_is_centred_between_black_bands() {
        let frame = RgbImage::from_pixel(640, 480, image::Rgb([255, 255, 255]));
        let (input, letterbox) = from_rgb(&frame, 128);
        assert_eq!(input.len(), 128 * 128 * 3);
        assert_eq!(letterbox, Letterbox { scale: 0.2, pad_x: 0.0, pad_y: 16.0 });
        assert_eq!(input[0], -1.0, "top band is black padding");
        let middle = ((64 * 128 + 64) * 3) as usize;
        assert!((input[middle] - 1.0).abs() < 1e-6, "the frame itself is white");
    }

    #[test]
    fn taps_sum_to_one_and_stay_inside_the_source() {
        for (src, dst) in [(640, 256), (480, 192), (320, 256), (1, 128), (7, 3), (4096, 256)] {
            let taps = Taps::new(src, dst);
            for at in 0..dst as usize {
                assert!(taps.start[at] + taps.per <= src as usize, "{src}->{dst} at {at}");
                let total: f32 = taps.weights(at).iter().sum();
                assert!((total - 1.0).abs() < 1e-4, "{src}->{dst} at {at}: {total}");
            }
        }
    }

    #[test]
    fn flat_i420_colours_become_their_rgb() {
        // Limited-range grey 126 (Y 126, U = V = 128) is RGB 128; odd sizes on purpose.
        let (width, height) = (321, 179);
        let (cw, ch) = ((width + 1) / 2, (height + 1) / 2);
        let mut data = vec![126u8; width * height];
        data.extend(std::iter::repeat_n(128u8, 2 * cw * ch));
        let frame = I420Frame { width: width as u32, height: height as u32, data };
        let (input, letterbox) = from_i420(&frame, 128);
        assert_eq!(letterbox.pad_x, 0.0);
        assert!(letterbox.pad_y > 0.0);
        let middle = ((64 * 128 + 64) * 3) as usize;
        for channel in &input[middle..middle + 3] {
            assert!((channel - (128.0 / 127.5 - 1.0)).abs() < 0.01, "{channel}");
        }
        assert_eq!(input[0], -1.0);
    }
}
