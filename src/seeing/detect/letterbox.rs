//! The model's input: a frame scaled to fit the `S×S` square, centred on black, as
//! NHWC floats in [-1, 1], with the mapping back to frame pixels.
//!
//! The server samples it straight from the decoder's I420 planes
//! ([`from_i420`]): each plane is box-averaged by most of the scale factor, then
//! triangle-filtered to the fitted size, then BT.601 turns only the `S×S` pixels
//! the model sees into RGB, not the whole frame. (Chroma resampled to half the
//! fitted size moves the front model's boxes too far: IoU under 0.95 with the
//! reference's.) Going through a full-frame RGB picture and a second resize
//! ([`from_rgb`], kept for photos and as the reference in tests) costs as much as
//! half the model's run.

use image::imageops::FilterType;
use image::{RgbImage, imageops};

use crate::seeing::frame::I420Frame;

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
/// [`crate::seeing::frame::to_rgb`] assumes too).
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

/// One plane, tightly packed: the decoder's bytes, or floats after a box average.
struct Plane<'a, T> {
    data: &'a [T],
    width: u32,
    height: u32,
}

impl<T: Copy + Into<f32>> Plane<'_, T> {
    /// Scaled to `width×height`, as floats: a box average by most of the factor
    /// (cheap: adds only), then the triangle filter for the rest. The box stays small
    /// enough (k ≤ ratio·√⅔) for the tent after it to keep a radius of a pixel.
    fn resample(&self, width: u32, height: u32) -> Vec<f32> {
        let ratio = (self.width as f32 / width.max(1) as f32).min(self.height as f32 / height.max(1) as f32);
        let factor = (ratio * (2.0f32 / 3.0).sqrt()).floor() as u32;
        if factor >= 2 {
            let (data, reduced_w, reduced_h) = self.box_average(factor);
            let reduced = Plane { data: &data, width: reduced_w, height: reduced_h };
            reduced.triangle(width, height, Some((self.width, self.height, factor)))
        } else {
            self.triangle(width, height, None)
        }
    }

    /// Each `factor×factor` block averaged to one pixel (the last row and column
    /// of blocks average what is there), kept as floats: no rounding, no division.
    fn box_average(&self, factor: u32) -> (Vec<f32>, u32, u32) {
        let (src_w, src_h, k) = (self.width as usize, self.height as usize, factor as usize);
        let (width, height) = (src_w.div_ceil(k), src_h.div_ceil(k));
        let mut sums = vec![0.0f32; src_w];
        let mut out = Vec::with_capacity(width * height);
        for y in 0..height {
            sums.fill(0.0);
            let rows = (y * k..(y * k + k).min(src_h)).map(|r| &self.data[r * src_w..][..src_w]);
            let row_count = rows.len();
            for row in rows {
                for (sum, &pixel) in sums.iter_mut().zip(row) {
                    *sum += pixel.into();
                }
            }
            let full_block = 1.0 / (k * row_count) as f32;
            out.extend(sums.chunks(k).map(|block| {
                let scale =
                    if block.len() == k { full_block } else { 1.0 / (block.len() * row_count) as f32 };
                block.iter().sum::<f32>() * scale
            }));
        }
        (out, width as u32, height as u32)
    }

    /// Triangle-filtered to `width×height`: rows first (whole source rows at a
    /// time, which vectorises), then along each output row. After a box
    /// average (`boxed`: the original size and the factor) the tent narrows so the
    /// two together blur as much as the tent alone would have on the original.
    fn triangle(&self, width: u32, height: u32, boxed: Option<(u32, u32, u32)>) -> Vec<f32> {
        let (src_w, dst_w) = (self.width as usize, width as usize);
        let rows = Taps::new(self.height, height, boxed.map(|(_, h, k)| (h, k)));
        let columns = Taps::new(self.width, width, boxed.map(|(w, _, k)| (w, k)));
        let mut row = vec![0.0f32; src_w];
        let mut out = Vec::with_capacity(dst_w * height as usize);
        for y in 0..height as usize {
            row.fill(0.0);
            for (k, &weight) in rows.weights(y).iter().enumerate() {
                let source = &self.data[(rows.start[y] + k) * src_w..][..src_w];
                for (acc, &pixel) in row.iter_mut().zip(source) {
                    *acc += weight * pixel.into();
                }
            }
            match columns.per {
                2 => filter_row::<2>(&row, &columns, &mut out),
                3 => filter_row::<3>(&row, &columns, &mut out),
                4 => filter_row::<4>(&row, &columns, &mut out),
                5 => filter_row::<5>(&row, &columns, &mut out),
                per => out.extend(columns.start.iter().zip(columns.weights.chunks_exact(per)).map(
                    |(&start, weights)| {
                        let window = &row[start..start + per];
                        window.iter().zip(weights).map(|(pixel, weight)| pixel * weight).sum::<f32>()
                    },
                )),
            }
        }
        out
    }
}

/// One output row from one filtered source row, with the tap count known to the
/// compiler (the common counts): the per-pixel loop unrolls, which halved the
/// time of this pass.
fn filter_row<const TAPS: usize>(row: &[f32], columns: &Taps, out: &mut Vec<f32>) {
    out.extend(columns.start.iter().zip(columns.weights.chunks_exact(TAPS)).map(|(&start, weights)| {
        let (Ok(window), Ok(weights)) =
            (<&[f32; TAPS]>::try_from(&row[start..start + TAPS]), <&[f32; TAPS]>::try_from(weights))
        else {
            return 0.0;
        };
        let mut sum = 0.0;
        for tap in 0..TAPS {
            sum += window[tap] * weights[tap];
        }
        sum
    }));
}

/// A triangle (tent) filter from `src` samples to `dst`: for each output sample,
/// `per` consecutive source samples from `start` and their weights, summing to 1.
/// Its radius is the downscale ratio, as in `image`'s resize, so every source
/// pixel counts; after a box average of width `k` over `original` samples it is
/// what keeps the variance of box and tent together equal to the full tent's
/// (r² = ratio² − k²/2, in original samples; variance of a tent of radius r is r²/6,
/// of a box of width k is k²/12).
struct Taps {
    start: Vec<usize>,
    per: usize,
    weights: Vec<f32>,
}

impl Taps {
    fn new(src: u32, dst: u32, boxed: Option<(u32, u32)>) -> Self {
        // Source samples per output sample, and the tent's radius, in `src` units.
        // After a box, both come from the original length: a partial last block
        // must not stretch the picture.
        let (ratio, support) = match boxed {
            None => (src as f32 / dst as f32, src as f32 / dst as f32),
            Some((original, k)) => {
                let (full, k) = (original as f32 / dst as f32, k as f32);
                (full / k, (full * full - k * k / 2.0).max(0.0).sqrt() / k)
            }
        };
        let support = support.max(1.0);
        // Samples i with |i + 0.5 − centre| < support: never more than ⌈2·support⌉,
        // counted from the first one inside.
        let per = ((2.0 * support).ceil() as usize).min(src as usize);
        let mut start = Vec::with_capacity(dst as usize);
        let mut weights = Vec::with_capacity(dst as usize * per);
        for at in 0..dst as usize {
            let centre = (at as f32 + 0.5) * ratio;
            let first = ((centre - support - 0.5).ceil().max(0.0) as usize).min(src as usize - per);
            let begin = weights.len();
            weights.extend(
                (first..first + per).map(|i| (1.0 - ((i as f32 + 0.5 - centre) / support).abs()).max(0.0)),
            );
            let tent = &mut weights[begin..];
            let total: f32 = tent.iter().sum();
            for weight in tent {
                *weight = if total > 0.0 { *weight / total } else { 1.0 / per as f32 };
            }
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
            let taps = Taps::new(src, dst, None);
            for at in 0..dst as usize {
                assert!(taps.start[at] + taps.per <= src as usize, "{src}->{dst} at {at}");
                let total: f32 = taps.weights(at).iter().sum();
                assert!((total - 1.0).abs() < 1e-4, "{src}->{dst} at {at}: {total}");
            }
        }
    }

    #[test]
    fn box_average_covers_partial_blocks_at_the_edges() {
        #[rustfmt::skip]
        let data: [u8; 15] = [
            0, 2, 4, 6, 8,
            2, 4, 6, 8, 10,
            9, 9, 9, 9, 9,
        ];
        let (out, width, height) = Plane { data: &data, width: 5, height: 3 }.box_average(2);
        assert_eq!((width, height), (3, 2));
        assert_eq!(out, vec![2.0, 6.0, 9.0, 9.0, 9.0, 9.0]);
    }

    #[test]
    fn flat_i420_colours_become_their_rgb() {
        // Limited-range grey 126 (Y 126, U = V = 128) is RGB 128; odd sizes on purpose.
        let (width, height) = (321usize, 179usize);
        let (cw, ch) = (width.div_ceil(2), height.div_ceil(2));
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
