//! Which decoded frames a session's detector runs on.
//!
//! `--detect-fps` is the budget: a token bucket refilled at that rate, holding at
//! most [`BURST`] tokens. Frames the page said it is detecting itself (its
//! `detecting` message names the frame code) come first: each takes a token when
//! one is left, so both detectors look at the same pictures and the agreement has
//! them to compare. Any other frame takes a token only when the bucket is full,
//! that is when the page's frames leave the budget unused: newest frame wins for
//! those. Either way a session never gets more than `--detect-fps` detections a
//! second (plus the burst). Sans-IO: the caller passes the time.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Instant;

use crate::media::token_bucket::TokenBucket;

/// Tokens the bucket holds: one for a page frame, one more kept for it.
pub const BURST: f64 = 2.0;
/// Frame codes remembered from the page's `detecting` messages (the newest).
pub const KEPT_PAGE_FRAMES: usize = 16;

/// The frames the page said it is detecting, newest last: written by the session's
/// data channel, read by its tap thread.
#[derive(Debug, Default)]
pub struct PageFrames {
    frames: Mutex<VecDeque<u16>>,
}

impl PageFrames {
    /// The page is running its detector on its frame `frame`.
    pub fn announce(&self, frame: u16) {
        let mut frames = self.frames.lock().unwrap_or_else(|e| e.into_inner());
        if frames.contains(&frame) {
            return;
        }
        if frames.len() >= KEPT_PAGE_FRAMES {
            frames.pop_front();
        }
        frames.push_back(frame);
    }

    /// Whether the page announced `frame`; it is forgotten after a hit.
    pub fn take(&self, frame: u16) -> bool {
        let mut frames = self.frames.lock().unwrap_or_else(|e| e.into_inner());
        match frames.iter().position(|&kept| kept == frame) {
            Some(at) => {
                frames.remove(at);
                true
            }
            None => false,
        }
    }
}

/// A frame the detector should run on, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chosen {
    /// The page detects on it too.
    PageFrame,
    /// Within the budget the page's frames left.
    Newest,
}

/// One session's choice of frames.
#[derive(Debug)]
pub struct FrameChoice {
    budget: TokenBucket,
}

impl FrameChoice {
    pub fn new(per_second: f64, now: Instant) -> Self {
        FrameChoice { budget: TokenBucket::new(per_second, BURST, now) }
    }

    /// Whether to detect on a frame decoded at `now`; `named`: the page detects on it.
    pub fn choose(&mut self, named: bool, now: Instant) -> Option<Chosen> {
        if named {
            return self.budget.take(now).then_some(Chosen::PageFrame);
        }
        self.budget.take_leaving(now, BURST - 1.0).then_some(Chosen::Newest)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// 30 frames a second for `seconds`; the page announces every `every`-th.
    fn run(
        choice: &mut FrameChoice,
        page: &PageFrames,
        seconds: u64,
        every: Option<u64>,
    ) -> Vec<(u16, Chosen)> {
        let start = Instant::now();
        let mut chosen = Vec::new();
        for n in 0..30 * seconds {
            let frame = n as u16;
            if every.is_some_and(|every| n % every == 0) {
                page.announce(frame);
            }
            let at = start + Duration::from_millis(n * 1000 / 30);
            if let Some(why) = choice.choose(page.take(frame), at) {
                chosen.push((frame, why));
            }
        }
        chosen
    }

    #[test]
    fn without_the_page_the_newest_frames_get_the_budget() {
        let (mut choice, page) = (FrameChoice::new(5.0, Instant::now()), PageFrames::default());
        let chosen = run(&mut choice, &page, 10, None);
        assert!((48..=52).contains(&chosen.len()), "5 a second: {}", chosen.len());
        assert!(chosen.iter().all(|&(_, why)| why == Chosen::Newest));
    }

    #[test]
    fn the_pages_frames_come_first_within_the_budget() {
        // The page detects 5 times a second, as fast as the budget: every one of its
        // frames is taken, and nothing else.
        let (mut choice, page) = (FrameChoice::new(5.0, Instant::now()), PageFrames::default());
        let chosen = run(&mut choice, &page, 10, Some(6));
        let page_frames: Vec<u16> = chosen.iter().filter(|c| c.1 == Chosen::PageFrame).map(|c| c.0).collect();
        assert_eq!(page_frames, (0..300).step_by(6).collect::<Vec<u16>>());
        assert!(chosen.len() <= 52, "the budget holds: {}", chosen.len());
        // The page detects 2.5 times a second: all of its frames, the rest go to the newest.
        let (mut choice, page) = (FrameChoice::new(5.0, Instant::now()), PageFrames::default());
        let chosen = run(&mut choice, &page, 10, Some(12));
        assert_eq!(chosen.iter().filter(|c| c.1 == Chosen::PageFrame).count(), 25);
        assert!((45..=52).contains(&chosen.len()), "{}", chosen.len());
        // The page detects every frame: the budget still holds.
        let (mut choice, page) = (FrameChoice::new(5.0, Instant::now()), PageFrames::default());
        let chosen = run(&mut choice, &page, 10, Some(1));
        assert!((48..=52).contains(&chosen.len()), "{}", chosen.len());
    }

    #[test]
    fn announcements_are_bounded_and_used_once() {
        let page = PageFrames::default();
        for frame in 0..1000u16 {
            page.announce(frame);
        }
        page.announce(999);
        assert_eq!(page.frames.lock().unwrap().len(), KEPT_PAGE_FRAMES);
        assert!(!page.take(0), "old announcements are forgotten");
        assert!(page.take(999));
        assert!(!page.take(999), "a frame is taken once");
    }
}
