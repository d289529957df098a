//! How well the page's face detector and the server's agree, frame by frame.
//!
//! The page says which boxes it drew on the frame it stamped with code N; the server
//! says which faces it found in the frame it decoded with code N (see
//! [`crate::seeing::framecode`]). Either may come first, or never. When both sides have the
//! same frame, its boxes are matched greedily by IoU (≥ [`MIN_IOU`]), in coordinates
//! normalised to each side's frame size (the sender may have scaled the picture),
//! and the counts grow. Sans-IO: feed it, read [`Agreement::stats`].
//!
//! Memory is bounded: each side keeps its last [`KEPT_FRAMES`] unpaired frames,
//! older ones are dropped (and counted). Frame numbers are the page's u16 codes;
//! they wrap at 65536, and a frame pairs only with the same number.

use std::collections::VecDeque;

use serde_json::{Value, json};

use crate::seeing::detect::Face;

/// Least IoU for two boxes to be the same face.
pub const MIN_IOU: f32 = 0.5;
/// Unpaired frames kept per side.
pub const KEPT_FRAMES: usize = 64;
/// Most boxes considered per frame and side (more are ignored).
pub const MAX_FACES: usize = 64;

/// Which detector a frame's boxes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Page,
    Server,
}

/// Totals over every frame compared so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AgreementStats {
    /// Frames both sides reported, compared.
    pub frames: u64,
    /// Face pairs matched (IoU ≥ [`MIN_IOU`]).
    pub matched: u64,
    /// Sum of the matched pairs' IoU.
    pub iou_sum: f64,
    /// Faces only the page found.
    pub page_only: u64,
    /// Faces only the server found.
    pub server_only: u64,
    /// Frames dropped unpaired (the other side never reported them in time).
    pub unpaired_dropped: u64,
}

impl AgreementStats {
    /// Mean IoU of the matched pairs; `None` before the first match.
    pub fn mean_iou(&self) -> Option<f64> {
        (self.matched > 0).then(|| self.iou_sum / self.matched as f64)
    }

    /// `{"frames","matched","mean_iou","page_only","server_only"}` (`mean_iou` null
    /// before the first match).
    pub fn to_json(self) -> Value {
        json!({
            "frames": self.frames,
            "matched": self.matched,
            "mean_iou": self.mean_iou(),
            "page_only": self.page_only,
            "server_only": self.server_only,
        })
    }
}

/// What one compared frame gave.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameAgreement {
    pub frame: u16,
    /// IoU of each matched pair, best first.
    pub matched: Vec<f32>,
    pub page_only: usize,
    pub server_only: usize,
}

/// One side's boxes for one frame, normalised to [0, 1] of that side's frame.
#[derive(Debug, Clone)]
struct Report {
    frame: u16,
    boxes: Vec<[f32; 4]>,
}

/// One session's agreement between the page's detector and the server's.
#[derive(Debug, Clone, Default)]
pub struct Agreement {
    page: VecDeque<Report>,
    server: VecDeque<Report>,
    stats: AgreementStats,
}

impl Agreement {
    pub fn new() -> Self {
        Self::default()
    }

    /// The page drew `faces` on frame `frame` of a `width × height` canvas.
    /// Returns the comparison when the server already reported that frame.
    pub fn page(&mut self, frame: u16, width: u32, height: u32, faces: &[Face]) -> Option<FrameAgreement> {
        self.report(Side::Page, frame, width, height, faces)
    }

    /// The server found `faces` in page frame `frame`, decoded at `width × height`.
    /// Returns the comparison when the page already reported that frame.
    pub fn server(&mut self, frame: u16, width: u32, height: u32, faces: &[Face]) -> Option<FrameAgreement> {
        self.report(Side::Server, frame, width, height, faces)
    }

    /// Either side's report; a report with an empty frame size is ignored.
    pub fn report(
        &mut self,
        side: Side,
        frame: u16,
        width: u32,
        height: u32,
        faces: &[Face],
    ) -> Option<FrameAgreement> {
        if width == 0 || height == 0 {
            return None;
        }
        let report = Report { frame, boxes: normalise(width as f32, height as f32, faces) };
        let (mine, theirs) = match side {
            Side::Page => (&mut self.page, &mut self.server),
            Side::Server => (&mut self.server, &mut self.page),
        };
        if let Some(at) = theirs.iter().position(|other| other.frame == frame) {
            let other = theirs.remove(at).unwrap_or_else(|| Report { frame, boxes: Vec::new() });
            // Each frame is compared once: a second report of it from this side is stale.
            mine.retain(|kept| kept.frame != frame);
            let (page, server) = match side {
                Side::Page => (&report.boxes, &other.boxes),
                Side::Server => (&other.boxes, &report.boxes),
            };
            let result = compare(frame, page, server);
            self.stats.frames += 1;
            self.stats.matched += result.matched.len() as u64;
            self.stats.iou_sum += result.matched.iter().map(|&iou| f64::from(iou)).sum::<f64>();
            self.stats.page_only += result.page_only as u64;
            self.stats.server_only += result.server_only as u64;
            return Some(result);
        }
        // Not paired yet: keep it (a repeat of the same frame replaces the older one).
        mine.retain(|kept| kept.frame != frame);
        if mine.len() >= KEPT_FRAMES {
            mine.pop_front();
            self.stats.unpaired_dropped += 1;
        }
        mine.push_back(report);
        None
    }

    /// Totals so far.
    pub fn stats(&self) -> AgreementStats {
        self.stats
    }

    /// The stats as the `agreement` object of the `stats` message.
    pub fn to_json(&self) -> Value {
        self.stats.to_json()
    }

    /// Unpaired frames held (page, server): at most [`KEPT_FRAMES`] each.
    #[cfg(test)]
    pub fn pending(&self) -> (usize, usize) {
        (self.page.len(), self.server.len())
    }
}

/// Boxes as `[x0, y0, x1, y1]` in [0, 1] of the frame; non-finite or empty boxes
/// are left out, at most [`MAX_FACES`] kept.
fn normalise(width: f32, height: f32, faces: &[Face]) -> Vec<[f32; 4]> {
    faces
        .iter()
        .filter(|f| [f.x, f.y, f.w, f.h].iter().all(|v| v.is_finite()) && f.w > 0.0 && f.h > 0.0)
        .take(MAX_FACES)
        .map(|f| [f.x / width, f.y / height, (f.x + f.w) / width, (f.y + f.h) / height])
        .collect()
}

/// Intersection over union of two `[x0, y0, x1, y1]` boxes.
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let ix = a[2].min(b[2]) - a[0].max(b[0]);
    let iy = a[3].min(b[3]) - a[1].max(b[1]);
    if ix <= 0.0 || iy <= 0.0 {
        return 0.0;
    }
    let inter = ix * iy;
    let union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
    if union <= 0.0 { 0.0 } else { inter / union }
}

/// Greedy matching: the best-overlapping pair first, each box used once.
fn compare(frame: u16, page: &[[f32; 4]], server: &[[f32; 4]]) -> FrameAgreement {
    let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
    for (i, p) in page.iter().enumerate() {
        for (j, s) in server.iter().enumerate() {
            let overlap = iou(p, s);
            if overlap >= MIN_IOU {
                pairs.push((overlap, i, j));
            }
        }
    }
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let mut page_used = vec![false; page.len()];
    let mut server_used = vec![false; server.len()];
    let mut matched = Vec::new();
    for (overlap, i, j) in pairs {
        if !page_used[i] && !server_used[j] {
            page_used[i] = true;
            server_used[j] = true;
            matched.push(overlap);
        }
    }
    FrameAgreement {
        frame,
        page_only: page.len() - matched.len(),
        server_only: server.len() - matched.len(),
        matched,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(x: f32, y: f32, w: f32, h: f32) -> Face {
        Face { x, y, w, h, score: 0.9 }
    }

    #[test]
    fn identical_boxes_agree_fully() {
        let mut agreement = Agreement::new();
        let faces = [face(100.0, 80.0, 120.0, 150.0)];
        assert_eq!(agreement.page(7, 640, 480, &faces), None);
        let result = agreement.server(7, 640, 480, &faces).expect("paired");
        assert_eq!(result, FrameAgreement { frame: 7, matched: vec![1.0], page_only: 0, server_only: 0 });
        let stats = agreement.stats();
        assert_eq!((stats.frames, stats.matched, stats.page_only, stats.server_only), (1, 1, 0, 0));
        assert_eq!(stats.mean_iou(), Some(1.0));
        assert_eq!(agreement.pending(), (0, 0));
        assert_eq!(
            agreement.to_json(),
            json!({"frames": 1, "matched": 1, "mean_iou": 1.0, "page_only": 0, "server_only": 0})
        );
    }

    #[test]
    fn shifted_boxes_match_with_their_iou_or_not_at_all() {
        let mut agreement = Agreement::new();
        // 100x100 shifted by 20 px: intersection 80x100, union 12000: IoU 2/3.
        agreement.server(1, 640, 480, &[face(120.0, 100.0, 100.0, 100.0)]);
        let result = agreement.page(1, 640, 480, &[face(100.0, 100.0, 100.0, 100.0)]).unwrap();
        assert_eq!(result.matched.len(), 1);
        assert!((result.matched[0] - 2.0 / 3.0).abs() < 1e-5, "{result:?}");
        // Shifted by 50 px: IoU 1/3, below the bar: one face each side, unmatched.
        agreement.server(2, 640, 480, &[face(150.0, 100.0, 100.0, 100.0)]);
        let result = agreement.page(2, 640, 480, &[face(100.0, 100.0, 100.0, 100.0)]).unwrap();
        assert_eq!((result.matched.len(), result.page_only, result.server_only), (0, 1, 1));
        let stats = agreement.stats();
        assert_eq!((stats.frames, stats.matched, stats.page_only, stats.server_only), (2, 1, 1, 1));
        assert!((stats.mean_iou().unwrap() - 2.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn an_extra_face_on_each_side_is_counted() {
        let mut agreement = Agreement::new();
        let shared = face(100.0, 100.0, 80.0, 80.0);
        agreement.page(3, 640, 480, &[shared, face(400.0, 50.0, 60.0, 60.0)]);
        let result = agreement.server(3, 640, 480, &[face(10.0, 300.0, 50.0, 50.0), shared]).unwrap();
        assert_eq!((result.matched.len(), result.page_only, result.server_only), (1, 1, 1));
        // Nothing on one side: all the other side's faces are its own.
        agreement.page(4, 640, 480, &[]);
        let result = agreement.server(4, 640, 480, &[shared, shared]).unwrap();
        assert_eq!((result.matched.len(), result.page_only, result.server_only), (0, 0, 2));
        // Nothing on either side still counts as a compared frame.
        agreement.page(5, 640, 480, &[]);
        agreement.server(5, 640, 480, &[]).unwrap();
        let stats = agreement.stats();
        assert_eq!((stats.frames, stats.matched, stats.page_only, stats.server_only), (3, 1, 1, 3));
    }

    #[test]
    fn greedy_matching_takes_the_best_pair_first() {
        let mut agreement = Agreement::new();
        // Page box A overlaps server boxes X (IoU 0.9-ish) and Y (0.6-ish); B only Y.
        let a = face(100.0, 100.0, 100.0, 100.0);
        let x = face(102.0, 100.0, 100.0, 100.0);
        let b = face(140.0, 100.0, 100.0, 100.0);
        let y = face(130.0, 100.0, 100.0, 100.0);
        agreement.page(9, 640, 480, &[a, b]);
        let result = agreement.server(9, 640, 480, &[y, x]).unwrap();
        assert_eq!(result.matched.len(), 2, "{result:?}");
        assert!(result.matched[0] > 0.95 && result.matched[1] > 0.8, "{result:?}");
    }

    #[test]
    fn different_frame_sizes_are_compared_at_a_common_scale() {
        let mut agreement = Agreement::new();
        // The page drew at 640x480; the sender scaled to 320x240 before the server saw it.
        agreement.page(11, 640, 480, &[face(200.0, 100.0, 160.0, 200.0)]);
        let result = agreement.server(11, 320, 240, &[face(100.0, 50.0, 80.0, 100.0)]).unwrap();
        assert_eq!(result.matched.len(), 1);
        assert!((result.matched[0] - 1.0).abs() < 1e-6, "{result:?}");
    }

    #[test]
    fn frames_that_never_pair_are_dropped_within_bounds() {
        let mut agreement = Agreement::new();
        for n in 0..1000u16 {
            assert_eq!(agreement.page(n, 640, 480, &[face(1.0, 1.0, 10.0, 10.0)]), None);
            assert_eq!(agreement.server(n.wrapping_add(30_000), 640, 480, &[]), None);
        }
        assert_eq!(agreement.pending(), (KEPT_FRAMES, KEPT_FRAMES));
        let stats = agreement.stats();
        assert_eq!(stats.frames, 0);
        assert_eq!(stats.unpaired_dropped, 2 * (1000 - KEPT_FRAMES as u64));
        assert_eq!(stats.mean_iou(), None);
        assert_eq!(agreement.to_json()["mean_iou"], Value::Null);
        // An old, dropped frame no longer pairs; a kept one does.
        assert_eq!(agreement.server(0, 640, 480, &[]), None);
        assert!(agreement.server(999, 640, 480, &[]).is_some());
    }

    #[test]
    fn frame_numbers_wrap_at_65536() {
        let mut agreement = Agreement::new();
        let faces = [face(10.0, 10.0, 50.0, 50.0)];
        for n in [65534u16, 65535, 0, 1] {
            agreement.page(n, 320, 240, &faces);
        }
        for n in [0u16, 1, 65534, 65535] {
            assert!(agreement.server(n, 320, 240, &faces).is_some(), "frame {n} pairs");
        }
        assert_eq!(agreement.stats().frames, 4);
        assert_eq!(agreement.stats().matched, 4);
        assert_eq!(agreement.pending(), (0, 0));
    }

    #[test]
    fn each_frame_is_compared_once_and_bad_input_is_ignored() {
        let mut agreement = Agreement::new();
        let faces = [face(10.0, 10.0, 50.0, 50.0)];
        agreement.page(5, 320, 240, &faces);
        agreement.page(5, 320, 240, &faces); // a repeat replaces, not duplicates
        assert_eq!(agreement.pending(), (1, 0));
        assert!(agreement.server(5, 320, 240, &faces).is_some());
        assert_eq!(agreement.server(5, 320, 240, &faces), None, "already compared: kept waiting");
        assert_eq!(agreement.stats().frames, 1);
        // Zero sizes are ignored; NaN and empty boxes are left out.
        assert_eq!(agreement.page(6, 0, 240, &faces), None);
        assert_eq!(agreement.pending(), (0, 1));
        agreement.page(7, 320, 240, &[face(f32::NAN, 0.0, 5.0, 5.0), face(1.0, 1.0, 0.0, 9.0)]);
        let result = agreement.server(7, 320, 240, &[]).unwrap();
        assert_eq!((result.page_only, result.server_only), (0, 0));
    }

    #[test]
    fn iou_of_disjoint_and_degenerate_boxes_is_zero() {
        assert_eq!(iou(&[0.0, 0.0, 0.1, 0.1], &[0.2, 0.2, 0.3, 0.3]), 0.0);
        assert_eq!(iou(&[0.0, 0.0, 0.0, 0.0], &[0.0, 0.0, 0.0, 0.0]), 0.0);
        assert!((iou(&[0.0, 0.0, 0.2, 0.2], &[0.0, 0.0, 0.2, 0.1]) - 0.5).abs() < 1e-6);
    }
}
