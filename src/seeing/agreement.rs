//! How well the page's face detector and the server's agree, frame by frame.
//!
//! Each side reports only the frames its detector ran on: the page names the frame
//! code of the picture it detected on (see [`crate::seeing::framecode`]), the server
//! the code it read from the frame it decoded and detected on. A frame is compared
//! when both sides have reported it, so "this side never looked" is never counted
//! as "it looked and found nothing". Either may come first, or never.
//!
//! The detectors draw boxes differently: face-api's TinyFaceDetector and SSD
//! include forehead and chin, BlazeFace's box is tight around eyes and mouth. So a
//! pair is matched when each box's centre lies within the other (the smaller box's
//! half-extent, after mapping the page's box to BlazeFace's [`Convention`]) and the
//! sizes are within [`MAX_SIZE_RATIO`]; greedily, closest centres first. Every
//! match reports both its raw IoU and its IoU after that mapping, and the session
//! keeps the convention it actually measured, per page detector, so the constants
//! can be checked against what each session sees. Coordinates are normalised to
//! each side's frame size (the sender may have scaled the picture). Sans-IO: feed
//! it, read [`Agreement::stats`].
//!
//! Memory is bounded: each side keeps its last [`KEPT_FRAMES`] unpaired frames,
//! older ones are dropped (and counted). Frame numbers are the page's u16 codes;
//! they wrap at 65536, and a frame pairs only with the same number.

use std::collections::VecDeque;

use serde_json::{Value, json};

use crate::seeing::detect::Face;

/// Unpaired frames kept per side.
pub const KEPT_FRAMES: usize = 64;
/// Most boxes considered per frame and side (more are ignored).
pub const MAX_FACES: usize = 64;
/// Most a matched pair's sides may differ by (the square root of their areas'
/// ratio, after mapping to one convention).
pub const MAX_SIZE_RATIO: f32 = 2.0;

/// Which detector a frame's boxes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Page,
    Server,
}

/// The page's detectors, as its `detections` messages name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageDetector {
    /// face-api's TinyFaceDetector.
    Tiny,
    /// face-api's SSD MobileNet v1.
    Ssd,
}

impl PageDetector {
    pub const ALL: [PageDetector; 2] = [PageDetector::Tiny, PageDetector::Ssd];

    pub fn name(self) -> &'static str {
        match self {
            PageDetector::Tiny => "tiny",
            PageDetector::Ssd => "ssd",
        }
    }

    /// Its place in [`PageDetector::ALL`] (and in [`AgreementStats::measured`]).
    fn index(self) -> usize {
        self as usize
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|detector| detector.name() == name)
    }

    /// How this detector's boxes sit against BlazeFace's (the default `back`
    /// model) on the same faces: the mean over the matched pairs of
    /// `tests/browser/agreement.test.mjs` on both test photos, 640x480 (65 pairs for
    /// Tiny, 70 for SSD; the table is in docs/tap-and-detection.md).
    pub fn convention(self) -> Convention {
        match self {
            PageDetector::Tiny => Convention { width_ratio: 0.76, height_ratio: 0.86, dx: 0.05, dy: -0.05 },
            PageDetector::Ssd => Convention { width_ratio: 1.23, height_ratio: 0.82, dx: 0.03, dy: 0.08 },
        }
    }
}

/// Where a server box sits relative to a page box of the same face: its width and
/// height as fractions of the page box's, and its centre's offset in page box
/// widths (`dx`) and heights (`dy`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Convention {
    pub width_ratio: f32,
    pub height_ratio: f32,
    pub dx: f32,
    pub dy: f32,
}

impl Convention {
    /// No difference: what a box is compared with when its detector is not known.
    pub const SAME: Convention = Convention { width_ratio: 1.0, height_ratio: 1.0, dx: 0.0, dy: 0.0 };

    /// A page box as the server's detector would have drawn it.
    fn apply(&self, b: &[f32; 4]) -> [f32; 4] {
        let (w, h) = (b[2] - b[0], b[3] - b[1]);
        let cx = (b[0] + b[2]) / 2.0 + self.dx * w;
        let cy = (b[1] + b[3]) / 2.0 + self.dy * h;
        let (w, h) = (w * self.width_ratio, h * self.height_ratio);
        [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0]
    }
}

/// Running sums of matched pairs' geometry: the convention one session measured.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MeasuredConvention {
    pub pairs: u64,
    width_ratio: f64,
    height_ratio: f64,
    dx: f64,
    dy: f64,
}

impl MeasuredConvention {
    fn add(&mut self, page: &[f32; 4], server: &[f32; 4]) {
        let (pw, ph) = (f64::from(page[2] - page[0]), f64::from(page[3] - page[1]));
        let centre = |b: &[f32; 4]| (f64::from(b[0] + b[2]) / 2.0, f64::from(b[1] + b[3]) / 2.0);
        let ((pcx, pcy), (scx, scy)) = (centre(page), centre(server));
        self.pairs += 1;
        self.width_ratio += f64::from(server[2] - server[0]) / pw;
        self.height_ratio += f64::from(server[3] - server[1]) / ph;
        self.dx += (scx - pcx) / pw;
        self.dy += (scy - pcy) / ph;
    }

    /// The mean over the pairs; `None` before the first.
    pub fn mean(&self) -> Option<Convention> {
        let n = self.pairs as f64;
        (self.pairs > 0).then(|| Convention {
            width_ratio: (self.width_ratio / n) as f32,
            height_ratio: (self.height_ratio / n) as f32,
            dx: (self.dx / n) as f32,
            dy: (self.dy / n) as f32,
        })
    }

    fn to_json(self) -> Value {
        let round = |v: f32| (f64::from(v) * 1000.0).round() / 1000.0;
        match self.mean() {
            None => json!({"pairs": 0}),
            Some(c) => json!({
                "pairs": self.pairs,
                "width_ratio": round(c.width_ratio),
                "height_ratio": round(c.height_ratio),
                "dx": round(c.dx),
                "dy": round(c.dy),
            }),
        }
    }
}

/// Totals over every frame compared so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AgreementStats {
    /// Frames both detectors ran on, compared.
    pub frames: u64,
    /// Face pairs matched.
    pub matched: u64,
    /// Sum of the matched pairs' IoU, as drawn.
    pub iou_sum: f64,
    /// Sum of the matched pairs' IoU with the page's box in the server's convention.
    pub calibrated_iou_sum: f64,
    /// Faces only the page found.
    pub page_only: u64,
    /// Faces only the server found.
    pub server_only: u64,
    /// Frames dropped unpaired (the other side never reported them in time).
    pub unpaired_dropped: u64,
    /// The geometry of matched pairs, per page detector ([`PageDetector::ALL`] order).
    pub measured: [MeasuredConvention; 2],
}

impl AgreementStats {
    /// Mean IoU of the matched pairs as the detectors drew them; `None` before the first match.
    pub fn mean_iou(&self) -> Option<f64> {
        (self.matched > 0).then(|| self.iou_sum / self.matched as f64)
    }

    /// Mean IoU of the matched pairs after mapping the page's boxes to BlazeFace's convention.
    pub fn mean_iou_calibrated(&self) -> Option<f64> {
        (self.matched > 0).then(|| self.calibrated_iou_sum / self.matched as f64)
    }

    /// `{"frames","matched","page_only","server_only","mean_iou","mean_iou_calibrated",
    /// "unpaired_dropped","convention":{"tiny":{..},"ssd":{..}}}` (the means null
    /// before the first match).
    pub fn to_json(self) -> Value {
        let convention: serde_json::Map<String, Value> = PageDetector::ALL
            .into_iter()
            .zip(self.measured)
            .map(|(detector, measured)| (detector.name().to_owned(), measured.to_json()))
            .collect();
        json!({
            "frames": self.frames,
            "matched": self.matched,
            "page_only": self.page_only,
            "server_only": self.server_only,
            "mean_iou": self.mean_iou(),
            "mean_iou_calibrated": self.mean_iou_calibrated(),
            "unpaired_dropped": self.unpaired_dropped,
            "convention": convention,
        })
    }
}

/// One matched pair of boxes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Match {
    /// IoU as the two detectors drew them.
    pub iou: f32,
    /// IoU with the page's box mapped to the server's convention.
    pub calibrated_iou: f32,
}

/// What one compared frame gave.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameAgreement {
    pub frame: u16,
    /// The matched pairs, closest first.
    pub matched: Vec<Match>,
    pub page_only: usize,
    pub server_only: usize,
}

/// One side's boxes for one frame, normalised to [0, 1] of that side's frame.
#[derive(Debug, Clone)]
struct Report {
    frame: u16,
    boxes: Vec<[f32; 4]>,
    /// The page's detector, when the page said which.
    detector: Option<PageDetector>,
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

    /// The page's `detector` (if it said) found `faces` in its frame `frame`, a
    /// `width × height` canvas. Returns the comparison when the server already
    /// reported that frame.
    pub fn page(
        &mut self,
        frame: u16,
        width: u32,
        height: u32,
        faces: &[Face],
        detector: Option<PageDetector>,
    ) -> Option<FrameAgreement> {
        self.report(Side::Page, frame, width, height, faces, detector)
    }

    /// The server found `faces` in page frame `frame`, decoded at `width × height`.
    /// Returns the comparison when the page already reported that frame.
    pub fn server(&mut self, frame: u16, width: u32, height: u32, faces: &[Face]) -> Option<FrameAgreement> {
        self.report(Side::Server, frame, width, height, faces, None)
    }

    /// Either side's report; a report with an empty frame size is ignored.
    /// `detector` is the page's (ignored for the server's side).
    pub fn report(
        &mut self,
        side: Side,
        frame: u16,
        width: u32,
        height: u32,
        faces: &[Face],
        detector: Option<PageDetector>,
    ) -> Option<FrameAgreement> {
        if width == 0 || height == 0 {
            return None;
        }
        let detector = if side == Side::Page { detector } else { None };
        let report = Report { frame, boxes: normalise(width as f32, height as f32, faces), detector };
        let (mine, theirs) = match side {
            Side::Page => (&mut self.page, &mut self.server),
            Side::Server => (&mut self.server, &mut self.page),
        };
        if let Some(at) = theirs.iter().position(|other| other.frame == frame) {
            let other = theirs.remove(at)?;
            // Each frame is compared once: a second report of it from this side is stale.
            mine.retain(|kept| kept.frame != frame);
            let (page, server) = match side {
                Side::Page => (report, other),
                Side::Server => (other, report),
            };
            return Some(self.compare(frame, &page, &server));
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

    /// Matches one frame's boxes and adds them to the totals.
    fn compare(&mut self, frame: u16, page: &Report, server: &Report) -> FrameAgreement {
        let convention = page.detector.map_or(Convention::SAME, PageDetector::convention);
        let mapped: Vec<[f32; 4]> = page.boxes.iter().map(|b| convention.apply(b)).collect();
        let pairs = match_boxes(&mapped, &server.boxes);
        let stats = &mut self.stats;
        stats.frames += 1;
        let mut matched = Vec::with_capacity(pairs.len());
        for &(i, j) in &pairs {
            let (raw, calibrated) =
                (iou(&page.boxes[i], &server.boxes[j]), iou(&mapped[i], &server.boxes[j]));
            stats.iou_sum += f64::from(raw);
            stats.calibrated_iou_sum += f64::from(calibrated);
            if let Some(detector) = page.detector {
                stats.measured[detector.index()].add(&page.boxes[i], &server.boxes[j]);
            }
            matched.push(Match { iou: raw, calibrated_iou: calibrated });
        }
        stats.matched += pairs.len() as u64;
        let result = FrameAgreement {
            frame,
            page_only: page.boxes.len() - pairs.len(),
            server_only: server.boxes.len() - pairs.len(),
            matched,
        };
        stats.page_only += result.page_only as u64;
        stats.server_only += result.server_only as u64;
        result
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

/// How far apart two boxes' centres are, in halves of the smaller extent on each
/// axis (the larger axis counts): at most 1 when each centre lies within the
/// smaller box centred on the other. `None` when their sizes differ by more than
/// [`MAX_SIZE_RATIO`].
fn centre_distance(a: &[f32; 4], b: &[f32; 4]) -> Option<f32> {
    let (aw, ah, bw, bh) = (a[2] - a[0], a[3] - a[1], b[2] - b[0], b[3] - b[1]);
    let side_ratio = ((aw * ah) / (bw * bh)).sqrt();
    if !(1.0 / MAX_SIZE_RATIO..=MAX_SIZE_RATIO).contains(&side_ratio) {
        return None;
    }
    let dx = ((a[0] + a[2]) - (b[0] + b[2])).abs() / aw.min(bw);
    let dy = ((a[1] + a[3]) - (b[1] + b[3])).abs() / ah.min(bh);
    Some(dx.max(dy))
}

/// Greedy matching: the pair with the closest centres first, each box used once;
/// a pair needs each centre within the other box (distance ≤ 1) and similar sizes.
/// Returns (page index, server index) pairs, closest first.
fn match_boxes(page: &[[f32; 4]], server: &[[f32; 4]]) -> Vec<(usize, usize)> {
    let mut candidates: Vec<(f32, usize, usize)> = Vec::new();
    for (i, p) in page.iter().enumerate() {
        for (j, s) in server.iter().enumerate() {
            match centre_distance(p, s) {
                Some(distance) if distance <= 1.0 => candidates.push((distance, i, j)),
                _ => {}
            }
        }
    }
    candidates.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let mut page_used = vec![false; page.len()];
    let mut server_used = vec![false; server.len()];
    let mut pairs = Vec::new();
    for (_, i, j) in candidates {
        if !page_used[i] && !server_used[j] {
            page_used[i] = true;
            server_used[j] = true;
            pairs.push((i, j));
        }
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(x: f32, y: f32, w: f32, h: f32) -> Face {
        Face { x, y, w, h, score: 0.9 }
    }

    fn counts(agreement: &Agreement) -> (u64, u64, u64, u64) {
        let stats = agreement.stats();
        (stats.frames, stats.matched, stats.page_only, stats.server_only)
    }

    #[test]
    fn identical_boxes_agree_fully() {
        let mut agreement = Agreement::new();
        let faces = [face(100.0, 80.0, 120.0, 150.0)];
        assert_eq!(agreement.page(7, 640, 480, &faces, None), None);
        let result = agreement.server(7, 640, 480, &faces).expect("paired");
        let whole = Match { iou: 1.0, calibrated_iou: 1.0 };
        assert_eq!(result, FrameAgreement { frame: 7, matched: vec![whole], page_only: 0, server_only: 0 });
        assert_eq!(counts(&agreement), (1, 1, 0, 0));
        assert_eq!(agreement.stats().mean_iou(), Some(1.0));
        assert_eq!(agreement.pending(), (0, 0));
        let json = agreement.to_json();
        assert_eq!(
            (&json["frames"], &json["matched"], &json["mean_iou"]),
            (&json!(1), &json!(1), &json!(1.0))
        );
        assert_eq!(
            json["convention"],
            json!({"tiny": {"pairs": 0}, "ssd": {"pairs": 0}}),
            "no detector named"
        );
    }

    #[test]
    fn a_loose_box_around_a_tight_one_is_the_same_face() {
        // face-api's box includes forehead and chin; BlazeFace's is tight: IoU 0.45,
        // below any fixed IoU bar, but the centres sit within each other.
        let mut agreement = Agreement::new();
        agreement.page(1, 640, 480, &[face(100.0, 100.0, 150.0, 150.0)], Some(PageDetector::Tiny));
        let result = agreement.server(1, 640, 480, &[face(125.0, 135.0, 100.0, 100.0)]).unwrap();
        assert_eq!(result.matched.len(), 1, "{result:?}");
        assert!((result.matched[0].iou - 10_000.0 / 22_500.0).abs() < 1e-5, "{result:?}");
        // The session measured that convention: 2/3 the size, centre 1/15 box lower.
        let measured = agreement.stats().measured[0].mean().unwrap();
        assert!(
            (measured.width_ratio - 2.0 / 3.0).abs() < 1e-4
                && (measured.height_ratio - 2.0 / 3.0).abs() < 1e-4
        );
        assert!(measured.dx.abs() < 1e-4 && (measured.dy - 1.0 / 15.0).abs() < 1e-4, "{measured:?}");
        assert_eq!(agreement.to_json()["convention"]["tiny"]["pairs"], 1);
        assert_eq!(agreement.to_json()["convention"]["ssd"]["pairs"], 0);
    }

    #[test]
    fn the_convention_maps_a_page_box_to_the_servers() {
        let tight = Convention { width_ratio: 0.5, height_ratio: 0.5, dx: 0.0, dy: 0.25 };
        // A 0.4 square at (0.1, 0.1): centre (0.3, 0.3) moves 0.1 down, sides halve.
        let mapped = tight.apply(&[0.1, 0.1, 0.5, 0.5]);
        for (got, want) in mapped.iter().zip([0.2, 0.3, 0.4, 0.5]) {
            assert!((got - want).abs() < 1e-6, "{mapped:?}");
        }
        let same = Convention::SAME.apply(&[0.1, 0.2, 0.3, 0.4]);
        assert!(
            same.iter().zip([0.1, 0.2, 0.3, 0.4]).all(|(got, want)| (got - want).abs() < 1e-6),
            "{same:?}"
        );
    }

    #[test]
    fn boxes_apart_or_of_other_sizes_do_not_match() {
        let mut agreement = Agreement::new();
        // Centre 60 px off a 100 px box: outside it, one face each side, unmatched.
        agreement.server(2, 640, 480, &[face(160.0, 100.0, 100.0, 100.0)]);
        let result = agreement.page(2, 640, 480, &[face(100.0, 100.0, 100.0, 100.0)], None).unwrap();
        assert_eq!((result.matched.len(), result.page_only, result.server_only), (0, 1, 1));
        // Same centre, but one box three times the other's side: a group box, not a face.
        agreement.server(3, 640, 480, &[face(140.0, 140.0, 20.0, 20.0)]);
        let result = agreement.page(3, 640, 480, &[face(120.0, 120.0, 60.0, 60.0)], None).unwrap();
        assert_eq!((result.matched.len(), result.page_only, result.server_only), (0, 1, 1));
        // Centre 40 px off a 100 px box: within it, matched with its (low) IoU.
        agreement.server(4, 640, 480, &[face(140.0, 100.0, 100.0, 100.0)]);
        let result = agreement.page(4, 640, 480, &[face(100.0, 100.0, 100.0, 100.0)], None).unwrap();
        assert_eq!(result.matched.len(), 1);
        assert!((result.matched[0].iou - 6000.0 / 14_000.0).abs() < 1e-5, "{result:?}");
        assert_eq!(counts(&agreement), (3, 1, 2, 2));
    }

    #[test]
    fn an_extra_face_on_each_side_is_counted() {
        let mut agreement = Agreement::new();
        let shared = face(100.0, 100.0, 80.0, 80.0);
        agreement.page(3, 640, 480, &[shared, face(400.0, 50.0, 60.0, 60.0)], None);
        let result = agreement.server(3, 640, 480, &[face(10.0, 300.0, 50.0, 50.0), shared]).unwrap();
        assert_eq!((result.matched.len(), result.page_only, result.server_only), (1, 1, 1));
        // Nothing on one side: all the other side's faces are its own.
        agreement.page(4, 640, 480, &[], None);
        let result = agreement.server(4, 640, 480, &[shared, shared]).unwrap();
        assert_eq!((result.matched.len(), result.page_only, result.server_only), (0, 0, 2));
        // Nothing on either side still counts as a compared frame.
        agreement.page(5, 640, 480, &[], None);
        agreement.server(5, 640, 480, &[]).unwrap();
        assert_eq!(counts(&agreement), (3, 1, 1, 3));
    }

    #[test]
    fn greedy_matching_takes_the_closest_pair_first() {
        let mut agreement = Agreement::new();
        // Three faces side by side, page and server boxes a little apart: each pairs
        // with its own, not its neighbour, whatever order they come in.
        let page =
            [face(100.0, 100.0, 80.0, 80.0), face(170.0, 100.0, 80.0, 80.0), face(240.0, 100.0, 80.0, 80.0)];
        let server =
            [face(245.0, 105.0, 70.0, 70.0), face(105.0, 105.0, 70.0, 70.0), face(178.0, 105.0, 70.0, 70.0)];
        agreement.page(9, 640, 480, &page, None);
        let result = agreement.server(9, 640, 480, &server).unwrap();
        assert_eq!((result.matched.len(), result.page_only, result.server_only), (3, 0, 0), "{result:?}");
        assert!(result.matched.iter().all(|m| m.iou > 0.6), "{result:?}");
    }

    #[test]
    fn different_frame_sizes_are_compared_at_a_common_scale() {
        let mut agreement = Agreement::new();
        // The page drew at 640x480; the sender scaled to 320x240 before the server saw it.
        agreement.page(11, 640, 480, &[face(200.0, 100.0, 160.0, 200.0)], None);
        let result = agreement.server(11, 320, 240, &[face(100.0, 50.0, 80.0, 100.0)]).unwrap();
        assert_eq!(result.matched.len(), 1);
        assert!((result.matched[0].iou - 1.0).abs() < 1e-6, "{result:?}");
    }

    #[test]
    fn frames_that_never_pair_are_dropped_within_bounds() {
        let mut agreement = Agreement::new();
        for n in 0..1000u16 {
            assert_eq!(agreement.page(n, 640, 480, &[face(1.0, 1.0, 10.0, 10.0)], None), None);
            assert_eq!(agreement.server(n.wrapping_add(30_000), 640, 480, &[]), None);
        }
        assert_eq!(agreement.pending(), (KEPT_FRAMES, KEPT_FRAMES));
        let stats = agreement.stats();
        assert_eq!(stats.frames, 0);
        assert_eq!(stats.unpaired_dropped, 2 * (1000 - KEPT_FRAMES as u64));
        assert_eq!(stats.mean_iou(), None);
        assert_eq!(agreement.to_json()["mean_iou"], Value::Null);
        assert_eq!(agreement.to_json()["mean_iou_calibrated"], Value::Null);
        // An old, dropped frame no longer pairs; a kept one does.
        assert_eq!(agreement.server(0, 640, 480, &[]), None);
        assert!(agreement.server(999, 640, 480, &[]).is_some());
    }

    #[test]
    fn frame_numbers_wrap_at_65536() {
        let mut agreement = Agreement::new();
        let faces = [face(10.0, 10.0, 50.0, 50.0)];
        for n in [65534u16, 65535, 0, 1] {
            agreement.page(n, 320, 240, &faces, None);
        }
        for n in [0u16, 1, 65534, 65535] {
            assert!(agreement.server(n, 320, 240, &faces).is_some(), "frame {n} pairs");
        }
        assert_eq!(counts(&agreement), (4, 4, 0, 0));
        assert_eq!(agreement.pending(), (0, 0));
    }

    #[test]
    fn each_frame_is_compared_once_and_bad_input_is_ignored() {
        let mut agreement = Agreement::new();
        let faces = [face(10.0, 10.0, 50.0, 50.0)];
        agreement.page(5, 320, 240, &faces, None);
        agreement.page(5, 320, 240, &faces, None); // a repeat replaces, not duplicates
        assert_eq!(agreement.pending(), (1, 0));
        assert!(agreement.server(5, 320, 240, &faces).is_some());
        assert_eq!(agreement.server(5, 320, 240, &faces), None, "already compared: kept waiting");
        assert_eq!(agreement.stats().frames, 1);
        // Zero sizes are ignored; NaN and empty boxes are left out.
        assert_eq!(agreement.page(6, 0, 240, &faces, None), None);
        assert_eq!(agreement.pending(), (0, 1));
        agreement.page(7, 320, 240, &[face(f32::NAN, 0.0, 5.0, 5.0), face(1.0, 1.0, 0.0, 9.0)], None);
        let result = agreement.server(7, 320, 240, &[]).unwrap();
        assert_eq!((result.page_only, result.server_only), (0, 0));
    }

    #[test]
    fn iou_of_disjoint_and_degenerate_boxes_is_zero() {
        assert_eq!(iou(&[0.0, 0.0, 0.1, 0.1], &[0.2, 0.2, 0.3, 0.3]), 0.0);
        assert_eq!(iou(&[0.0, 0.0, 0.0, 0.0], &[0.0, 0.0, 0.0, 0.0]), 0.0);
        assert!((iou(&[0.0, 0.0, 0.2, 0.2], &[0.0, 0.0, 0.2, 0.1]) - 0.5).abs() < 1e-6);
    }

    #[test]
    fn page_detectors_have_names() {
        for (at, detector) in PageDetector::ALL.into_iter().enumerate() {
            assert_eq!(PageDetector::from_name(detector.name()), Some(detector));
            assert_eq!(detector.index(), at);
        }
        assert_eq!(PageDetector::from_name("mtcnn"), None);
    }
}
