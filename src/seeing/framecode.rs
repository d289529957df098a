//! The page's frame code, read back from decoded pixels: which page frame is this?
//!
//! The page (`web/framecode.js`, `FrameStamper`) numbers every canvas frame it sends
//! and draws the number into the picture. The server reads it from the luma plane of
//! the frame its decode tap decoded, so what it finds there (faces) can be paired with
//! what the page drew on that same frame.
//!
//! # The layout (the one description; `web/framecode.js` follows it)
//!
//! ```text
//!  x = 0                                                       y = height - cell
//!  ┌────┬────┬────┬────┬─────┬────┬────┐
//!  │ W  │ B  │b15 │b14 │ ... │ b0 │ P  │   one row of CELLS = 19 square cells,
//!  └────┴────┴────┴────┴─────┴────┴────┘   flush with the bottom-left corner
//! ```
//!
//! - `cell = max(8, floor(width / 48))` pixels ([`MIN_CELL`], [`CELL_DIVISOR`]), with
//!   `width` the width of the canvas the page stamped.
//! - Cell 0 is white and cell 1 black: the guards ([`GUARD_CELLS`]).
//! - Cells 2..=17: the 16-bit frame number ([`BITS`]), most significant bit first;
//!   white is 1, black is 0.
//! - Cell 18: even parity, the XOR of the 16 bits (so the count of white cells among
//!   bits and parity is even).
//! - Frame numbers count up from 0 per page session and wrap at 65536.
//!
//! Reading samples the middle half of each cell (VP8 blurs edges), thresholds
//! halfway between the two guards, and refuses a code whose guards lack contrast,
//! whose cells are not clearly light or dark, or whose parity is wrong. A sender
//! may downscale the canvas under load (libwebrtc steps by 3/4 and 2/3); [`read`]
//! also tries the cell sizes those steps give.

use crate::seeing::frame::I420Frame;

/// Bits of the frame number.
pub const BITS: usize = 16;
/// The white and the black guard cell before the bits.
pub const GUARD_CELLS: usize = 2;
/// Cells in the row: guards, bits, parity.
pub const CELLS: usize = GUARD_CELLS + BITS + 1;
/// Smallest cell, in pixels of the stamped canvas.
pub const MIN_CELL: u32 = 8;
/// A cell is `width / CELL_DIVISOR` pixels wide (at least [`MIN_CELL`]).
pub const CELL_DIVISOR: u32 = 48;
/// The least luma difference between the guards for a code to count.
pub const MIN_CONTRAST: f32 = 48.0;
/// Scales a sender may have applied to the stamped canvas (libwebrtc's adapter
/// steps by ×3/4 and ×2/3 in turn: 3/4, 1/2, 3/8, 1/4), tried in order after the
/// unscaled size.
const SENDER_SCALES: [(u32, u32); 4] = [(3, 4), (1, 2), (3, 8), (1, 4)];

/// Cell size in pixels for a canvas `width` wide (`cellSize` in framecode.js).
pub fn cell_size(width: u32) -> u32 {
    MIN_CELL.max(width / CELL_DIVISOR)
}

/// The cells' values, left to right, for frame number `n`: 1 white, 0 black.
pub fn cells(n: u16) -> [u8; CELLS] {
    let mut cells = [0u8; CELLS];
    cells[0] = 1;
    let mut parity = 0;
    for i in 0..BITS {
        let bit = ((n >> (BITS - 1 - i)) & 1) as u8;
        parity ^= bit;
        cells[GUARD_CELLS + i] = bit;
    }
    cells[CELLS - 1] = parity;
    cells
}

/// The frame number in `frame`, read from its luma plane; `None` when there is no
/// valid code (no guards, not enough contrast, ambiguous cells, parity error).
pub fn read(frame: &I420Frame) -> Option<u16> {
    let luma = frame.data.get(..(frame.width as usize) * (frame.height as usize))?;
    read_luma(luma, frame.width, frame.height)
}

/// [`read`] on a tightly packed luma plane (`width × height` bytes).
pub fn read_luma(luma: &[u8], width: u32, height: u32) -> Option<u16> {
    let unscaled = read_luma_cell(luma, width, height, cell_size(width) as f32);
    unscaled.or_else(|| {
        SENDER_SCALES.iter().find_map(|&(num, den)| {
            // The canvas was width * den / num wide when the page stamped it.
            let sent_width = width * den / num;
            let cell = cell_size(sent_width) as f32 * num as f32 / den as f32;
            read_luma_cell(luma, width, height, cell)
        })
    })
}

/// [`read`] when the stamped canvas's width is known (the page says it with its
/// detections): the decoded frame may be that canvas scaled by the sender.
pub fn read_sent(frame: &I420Frame, sent_width: u32) -> Option<u16> {
    if sent_width == 0 {
        return None;
    }
    let luma = frame.data.get(..(frame.width as usize) * (frame.height as usize))?;
    let cell = cell_size(sent_width) as f32 * frame.width as f32 / sent_width as f32;
    read_luma_cell(luma, frame.width, frame.height, cell)
}

/// Reads the code with cells of `cell` (possibly fractional) pixels.
fn read_luma_cell(luma: &[u8], width: u32, height: u32, cell: f32) -> Option<u16> {
    let (w, h) = (width as usize, height as usize);
    if luma.len() < w * h || cell < 2.0 || (CELLS as f32) * cell > width as f32 || cell > height as f32 {
        return None;
    }
    let top = height as f32 - cell;
    // The middle half of a cell, at least one pixel each way.
    let mean = |index: usize| -> f32 {
        let left = index as f32 * cell;
        let (x0, x1) = inner(left, cell, w);
        let (y0, y1) = inner(top, cell, h);
        let mut sum = 0u32;
        for row in y0..y1 {
            sum += luma[row * w + x0..row * w + x1].iter().map(|&v| u32::from(v)).sum::<u32>();
        }
        sum as f32 / ((x1 - x0) * (y1 - y0)) as f32
    };
    let white = mean(0);
    let black = mean(1);
    let contrast = white - black;
    if contrast < MIN_CONTRAST {
        return None;
    }
    let threshold = (white + black) / 2.0;
    // A cell must be clearly on one side: a quarter of the contrast away from the middle.
    let margin = contrast / 4.0;
    let mut n: u16 = 0;
    let mut parity = 0u8;
    for index in GUARD_CELLS..CELLS {
        let value = mean(index);
        let bit = if value >= threshold + margin {
            1
        } else if value <= threshold - margin {
            0
        } else {
            return None;
        };
        parity ^= bit;
        if index < CELLS - 1 {
            n = (n << 1) | u16::from(bit);
        }
    }
    // The parity cell repeats the XOR of the bits: all together XOR to 0.
    (parity == 0).then_some(n)
}

/// The pixel range `[start, end)` of the middle half of a cell at `at`, `cell` long,
/// clamped to `limit`.
fn inner(at: f32, cell: f32, limit: usize) -> (usize, usize) {
    let start = ((at + cell / 4.0).round() as usize).min(limit.saturating_sub(1));
    let end = ((at + cell * 3.0 / 4.0).round() as usize).clamp(start + 1, limit);
    (start, end)
}

/// Draws the code for `n` into a tightly packed luma plane, as the page would on a
/// canvas `width` wide (white = 235, black = 16, video range). For test peers and
/// tests; the page stamps its own canvas.
pub fn stamp_luma(luma: &mut [u8], width: u32, height: u32, n: u16) {
    let (w, h) = (width as usize, height as usize);
    let cell = cell_size(width) as usize;
    let top = h.saturating_sub(cell);
    for (index, &bit) in cells(n).iter().enumerate() {
        let value = if bit == 1 { 235 } else { 16 };
        let x0 = (index * cell).min(w);
        let x1 = ((index + 1) * cell).min(w);
        for row in top..h {
            if let Some(line) = luma.get_mut(row * w + x0..row * w + x1) {
                line.fill(value);
            }
        }
    }
}

/// [`stamp_luma`] on the luma plane of `frame`; chroma is set neutral under the code
/// so the cells are grey levels, as the page's black and white are.
pub fn stamp(frame: &mut I420Frame, n: u16) {
    let (width, height) = (frame.width, frame.height);
    let luma_len = (width as usize) * (height as usize);
    stamp_luma(&mut frame.data[..luma_len], width, height, n);
    let (cw, ch) = frame.chroma_size();
    let (cw, ch) = (cw as usize, ch as usize);
    let cell = cell_size(width) as usize;
    let top = (height as usize).saturating_sub(cell) / 2;
    let right = (CELLS * cell).div_ceil(2).min(cw);
    for plane in 0..2 {
        let base = luma_len + plane * cw * ch;
        for row in top..ch {
            if let Some(line) = frame.data.get_mut(base + row * cw..base + row * cw + right) {
                line.fill(128);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadgen::clip::encode_clip;
    use crate::seeing::tap::decode::Vp8Decoder;

    /// A mid-grey frame with some texture (a diagonal gradient), chroma neutral.
    fn picture(width: u32, height: u32, seed: usize) -> I420Frame {
        let (w, h) = (width as usize, height as usize);
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        let mut data = vec![128u8; w * h + 2 * cw * ch];
        for y in 0..h {
            for x in 0..w {
                data[y * w + x] = (40 + (x + y + seed * 3) % 160) as u8;
            }
        }
        I420Frame { width, height, data }
    }

    fn stamped(width: u32, height: u32, n: u16) -> I420Frame {
        let mut frame = picture(width, height, 0);
        stamp(&mut frame, n);
        frame
    }

    #[test]
    fn the_cells_follow_the_layout() {
        // 0xA5F0: 1010 0101 1111 0000, eight ones: parity 0.
        let expected = [1, 0, 1, 0, 1, 0, 0, 1, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0];
        assert_eq!(cells(0xA5F0), expected);
        assert_eq!(cells(1)[CELLS - 1], 1, "one bit set: parity cell white");
        assert_eq!(cell_size(320), 8);
        assert_eq!(cell_size(640), 13);
        assert_eq!(cell_size(1280), 26);
    }

    #[test]
    fn stamped_codes_read_back_at_many_sizes() {
        for (width, height) in [(320, 240), (640, 480), (1280, 720), (321, 241), (479, 359), (160, 120)] {
            for n in [0u16, 1, 2, 0x00ff, 0x5555, 0xaaaa, 12345, 65534, 65535] {
                let frame = stamped(width, height, n);
                assert_eq!(read(&frame), Some(n), "{n} at {width}x{height}");
                assert_eq!(read_sent(&frame, width), Some(n), "{n} at {width}x{height}, width known");
            }
        }
    }

    #[test]
    fn frames_without_a_code_read_none() {
        assert_eq!(read(&picture(320, 240, 0)), None);
        assert_eq!(read(&picture(640, 480, 7)), None);
        let flat = I420Frame { width: 64, height: 48, data: vec![128; 64 * 48 * 3 / 2] };
        assert_eq!(read(&flat), None);
        // Too narrow for the row, and truncated data: None, no panic.
        assert_eq!(read(&stamped(100, 80, 3)), None);
        let mut short = stamped(320, 240, 9);
        short.data.truncate(1000);
        assert_eq!(read(&short), None);
        assert_eq!(read(&I420Frame { width: 0, height: 0, data: vec![] }), None);
        assert_eq!(read_sent(&stamped(320, 240, 9), 0), None);
    }

    #[test]
    fn a_parity_error_reads_none() {
        let (width, height) = (320u32, 240u32);
        let mut frame = stamped(width, height, 0x1234);
        // Flip bit cell 5 (black <-> white) without fixing the parity.
        let cell = cell_size(width) as usize;
        let index = GUARD_CELLS + 5;
        let w = width as usize;
        let was = frame.data[(height as usize - 1) * w + index * cell];
        let flipped = if was > 128 { 16 } else { 235 };
        for row in height as usize - cell..height as usize {
            frame.data[row * w + index * cell..row * w + (index + 1) * cell].fill(flipped);
        }
        assert_eq!(read(&frame), None);
        // A grey (ambiguous) cell is refused too.
        let mut frame = stamped(width, height, 0x1234);
        for row in height as usize - cell..height as usize {
            frame.data[row * w + index * cell..row * w + (index + 1) * cell].fill(125);
        }
        assert_eq!(read(&frame), None);
    }

    #[test]
    fn a_missing_guard_reads_none() {
        let (width, height) = (320u32, 240u32);
        let mut frame = stamped(width, height, 77);
        let cell = cell_size(width) as usize;
        let w = width as usize;
        for row in height as usize - cell..height as usize {
            frame.data[row * w..row * w + cell].fill(16); // white guard made black
        }
        assert_eq!(read(&frame), None);
    }

    /// Downscales a luma plane by a box filter, as a sender's adapter would.
    fn downscale(frame: &I420Frame, width: u32, height: u32) -> I420Frame {
        let (sw, sh) = (frame.width as f32, frame.height as f32);
        let (w, h) = (width as usize, height as usize);
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        let mut data = vec![128u8; w * h + 2 * cw * ch];
        let (fx, fy) = (sw / width as f32, sh / height as f32);
        for y in 0..h {
            for x in 0..w {
                let (x0, x1) = ((x as f32 * fx) as usize, (((x + 1) as f32 * fx) as usize).max(1));
                let (y0, y1) = ((y as f32 * fy) as usize, (((y + 1) as f32 * fy) as usize).max(1));
                let mut sum = 0u32;
                let mut count = 0u32;
                for yy in y0..y1 {
                    for xx in x0..x1 {
                        sum += u32::from(frame.data[yy * frame.width as usize + xx]);
                        count += 1;
                    }
                }
                data[y * w + x] = (sum / count.max(1)) as u8;
            }
        }
        I420Frame { width, height, data }
    }

    #[test]
    fn codes_survive_the_senders_downscaling() {
        let frame = stamped(640, 480, 4321);
        for (width, height) in [(480, 360), (320, 240)] {
            let scaled = downscale(&frame, width, height);
            assert_eq!(read(&scaled), Some(4321), "640x480 sent as {width}x{height}");
            assert_eq!(read_sent(&scaled, 640), Some(4321), "{width}x{height}, sent width known");
        }
    }

    /// Stamp, encode with libvpx, decode with libvpx, read: the real path.
    fn round_trip(width: u32, height: u32, kbps: u32, frames: usize) {
        let first = 40_000u16;
        let code = |index: usize| first.wrapping_add((index as u16).wrapping_mul(997));
        let clip = encode_clip(width, height, frames, 30, kbps, |index| {
            let mut frame = picture(width, height, index);
            stamp(&mut frame, code(index));
            frame.data
        })
        .expect("encode");
        assert_eq!(clip.len(), frames, "one encoded frame per picture");
        let mut decoder = Vp8Decoder::new().expect("decoder");
        let mut read_back = 0;
        for (index, encoded) in clip.iter().enumerate() {
            let decoded = decoder.decode(&encoded.data).expect("decode").expect("a picture");
            assert_eq!((decoded.width, decoded.height), (width, height));
            assert_eq!(read(&decoded), Some(code(index)), "frame {index} at {width}x{height} {kbps} kbps");
            read_back += 1;
        }
        assert_eq!(read_back, frames);
    }

    #[test]
    fn codes_survive_vp8_at_320x240_600_kbps() {
        round_trip(320, 240, 600, 30);
    }

    #[test]
    fn codes_survive_vp8_at_640x480_and_at_low_bitrate() {
        round_trip(640, 480, 1000, 10);
        round_trip(320, 240, 150, 30);
    }
}
