//! Which assembled frames may reach libvpx: the decoder's cost is set by what a
//! publisher claims, so every claim is checked against a budget first.
//!
//! - A keyframe's size must be non-zero and at most `max_pixels` (libvpx sizes its
//!   buffers from it: memory and decode time follow the pixel count).
//! - A keyframe that changes the size makes libvpx reallocate everything; at most
//!   [`MAX_RESIZES_PER_SECOND`] are let through, so flipping sizes every frame costs
//!   the publisher its tap, not the server its memory allocator.
//! - After a refused keyframe, inter frames refer to a picture the decoder never
//!   saw: they are refused too, until an acceptable keyframe.
//! - A frame whose header is malformed is refused without decoding.
//!
//! Sans-IO like the assembler: frames and instants in, verdicts out.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::vp8_header::{self, HeaderError};

/// The default `--tap-max-pixels`: DCI 4K (4096x2160), a little above 4K UHD.
pub const DEFAULT_MAX_PIXELS: u64 = 4096 * 2160;
/// [`DEFAULT_MAX_PIXELS`] as `--help` shows it.
pub const DEFAULT_MAX_PIXELS_TEXT: &str = "4096x2160";

/// `--tap-max-pixels`: `WIDTHxHEIGHT` (their product) or a count of pixels.
pub fn parse_max_pixels(text: &str) -> Result<u64, String> {
    let number = |s: &str| s.trim().parse::<u64>().map_err(|_| format!("`{s}` is not a number"));
    let pixels = match text.split_once(['x', 'X']) {
        Some((width, height)) => number(width)?.saturating_mul(number(height)?),
        None => number(text)?,
    };
    if pixels < 16 * 16 {
        return Err(format!("at least 16x16 (256 pixels), got `{text}`"));
    }
    Ok(pixels)
}
/// Size changes let through per second (a publisher adapting its resolution makes
/// one every few seconds at most).
pub const MAX_RESIZES_PER_SECOND: usize = 2;
const RESIZE_WINDOW: Duration = Duration::from_secs(1);

/// Why a frame was not decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Malformed(HeaderError),
    /// A keyframe of width or height 0.
    ZeroSize,
    /// A keyframe over the pixel budget.
    TooLarge {
        width: u16,
        height: u16,
    },
    /// A size change beyond [`MAX_RESIZES_PER_SECOND`].
    TooManyResizes,
    /// An inter frame after a refused keyframe.
    AwaitingKeyframe,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Malformed(error) => write!(f, "malformed frame: {error}"),
            Refusal::ZeroSize => f.write_str("keyframe of zero width or height"),
            Refusal::TooLarge { width, height } => {
                write!(f, "keyframe of {width}x{height} is over the pixel budget (--tap-max-pixels)")
            }
            Refusal::TooManyResizes => {
                write!(f, "more than {MAX_RESIZES_PER_SECOND} size changes in a second")
            }
            Refusal::AwaitingKeyframe => f.write_str("inter frame after a refused keyframe"),
        }
    }
}

/// The admission state of one decoder.
#[derive(Debug)]
pub struct FrameGate {
    max_pixels: u64,
    /// The size of the last admitted keyframe.
    size: Option<(u16, u16)>,
    /// True after a refusal, until an admitted keyframe.
    awaiting_keyframe: bool,
    resizes: VecDeque<Instant>,
}

impl Default for FrameGate {
    fn default() -> Self {
        FrameGate::new(DEFAULT_MAX_PIXELS)
    }
}

impl FrameGate {
    pub fn new(max_pixels: u64) -> Self {
        FrameGate { max_pixels, size: None, awaiting_keyframe: false, resizes: VecDeque::new() }
    }

    /// Whether `frame` may be decoded now.
    pub fn admit(&mut self, frame: &[u8], now: Instant) -> Result<(), Refusal> {
        let verdict = self.judge(frame, now);
        self.awaiting_keyframe = match verdict {
            Ok(()) => false,
            Err(_) => true,
        };
        verdict
    }

    fn judge(&mut self, frame: &[u8], now: Instant) -> Result<(), Refusal> {
        let header = vp8_header::parse(frame).map_err(Refusal::Malformed)?;
        let Some((width, height)) = header.size else {
            return if self.awaiting_keyframe { Err(Refusal::AwaitingKeyframe) } else { Ok(()) };
        };
        if width == 0 || height == 0 {
            return Err(Refusal::ZeroSize);
        }
        if u64::from(width) * u64::from(height) > self.max_pixels {
            return Err(Refusal::TooLarge { width, height });
        }
        if self.size.is_some_and(|size| size != (width, height)) {
            while self.resizes.front().is_some_and(|at| now.saturating_duration_since(*at) >= RESIZE_WINDOW) {
                self.resizes.pop_front();
            }
            if self.resizes.len() >= MAX_RESIZES_PER_SECOND {
                return Err(Refusal::TooManyResizes);
            }
            self.resizes.push_back(now);
        }
        self.size = Some((width, height));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_keyframe_is_a_size_or_a_pixel_count() {
        assert_eq!(parse_max_pixels("1920x1080"), Ok(1920 * 1080));
        assert_eq!(parse_max_pixels(DEFAULT_MAX_PIXELS_TEXT), Ok(DEFAULT_MAX_PIXELS));
        assert_eq!(parse_max_pixels("307200"), Ok(640 * 480));
        assert!(parse_max_pixels("8x8").unwrap_err().contains("16x16"));
        assert!(parse_max_pixels("widex1").unwrap_err().contains("`wide`"));
    }

    fn keyframe(width: u16, height: u16) -> Vec<u8> {
        let mut frame = vec![0x10, 0, 0, 0x9d, 0x01, 0x2a];
        frame.extend_from_slice(&width.to_le_bytes());
        frame.extend_from_slice(&height.to_le_bytes());
        frame.extend_from_slice(&[0; 8]);
        frame
    }
    const INTER: [u8; 6] = [0x01, 0, 0, 1, 2, 3];

    #[test]
    fn refuses_huge_and_empty_keyframes_and_what_follows_them() {
        let now = Instant::now();
        let mut gate = FrameGate::default();
        assert_eq!(
            gate.admit(&keyframe(16383, 16383), now),
            Err(Refusal::TooLarge { width: 16383, height: 16383 })
        );
        assert_eq!(gate.admit(&INTER, now), Err(Refusal::AwaitingKeyframe));
        assert_eq!(gate.admit(&keyframe(0, 240), now), Err(Refusal::ZeroSize));
        assert_eq!(gate.admit(&INTER, now), Err(Refusal::AwaitingKeyframe));
        assert_eq!(gate.admit(&keyframe(4096, 2160), now), Ok(()), "the budget itself is allowed");
        assert_eq!(gate.admit(&INTER, now), Ok(()));
        assert_eq!(
            gate.admit(&keyframe(4097, 2160), now),
            Err(Refusal::TooLarge { width: 4097, height: 2160 })
        );
    }

    #[test]
    fn malformed_frames_are_refused_without_decoding() {
        let mut gate = FrameGate::default();
        let now = Instant::now();
        assert_eq!(gate.admit(&[0x10, 0, 0], now), Err(Refusal::Malformed(HeaderError::Truncated)));
        assert_eq!(gate.admit(&INTER, now), Err(Refusal::AwaitingKeyframe));
    }

    #[test]
    fn size_flips_are_rate_limited() {
        let start = Instant::now();
        let mut gate = FrameGate::default();
        let at = |ms| start + Duration::from_millis(ms);
        assert_eq!(gate.admit(&keyframe(320, 240), at(0)), Ok(()));
        assert_eq!(gate.admit(&keyframe(640, 480), at(30)), Ok(()));
        assert_eq!(gate.admit(&keyframe(320, 240), at(60)), Ok(()));
        assert_eq!(gate.admit(&keyframe(640, 480), at(90)), Err(Refusal::TooManyResizes));
        assert_eq!(gate.admit(&INTER, at(100)), Err(Refusal::AwaitingKeyframe));
        // The same size again is no resize.
        assert_eq!(gate.admit(&keyframe(320, 240), at(120)), Ok(()));
        assert_eq!(gate.admit(&keyframe(640, 480), at(1030)), Ok(()), "a second later the budget is back");
    }
}
