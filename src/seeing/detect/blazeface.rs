//! MediaPipe BlazeFace, the model half: how a frame becomes the model's input and
//! how the model's raw outputs become face boxes. No ONNX Runtime here, so all of
//! it is testable on its own.
//!
//! Both models take one `S×S×3` RGB image (NHWC, values in [-1, 1]) and give, for
//! each of 896 SSD anchors, a score logit and 16 regressors (box centre x, y,
//! width, height, then 6 keypoints; in input pixels relative to the anchor).
//! MediaPipe's graphs decode them with fixed-size anchors and weighted
//! non-maximum suppression; the constants below are theirs
//! (`face_detection_{front,back}` mobile graphs).

use super::letterbox::Letterbox;

/// Which of the two BlazeFace models (`--detect-model`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModelKind {
    /// 256×256 "back camera" model: faces from close up to a few metres (default).
    Back,
    /// 128×128 "front camera" model: one close face, as in a selfie.
    Front,
}

/// Everything that differs between the two models.
#[derive(Debug, Clone, Copy)]
pub struct ModelSpec {
    pub kind: ModelKind,
    /// Name of the ONNX file under `models/blazeface/` (carried in the binary).
    pub file: &'static str,
    /// Input side in pixels.
    pub size: u32,
    /// SSD feature-map strides: one 2-anchor layer, then three 2-anchor layers on
    /// the same coarser grid (6 anchors per cell).
    pub strides: [u32; 4],
    /// Sigmoid score below which an anchor is no face.
    pub min_score: f32,
}

impl ModelKind {
    pub fn spec(self) -> ModelSpec {
        match self {
            ModelKind::Back => ModelSpec {
                kind: self,
                file: "face_detection_back_256x256_barracuda.onnx",
                size: 256,
                strides: [16, 32, 32, 32],
                min_score: 0.65,
            },
            ModelKind::Front => ModelSpec {
                kind: self,
                file: "face_detection_front_128x128_barracuda.onnx",
                size: 128,
                strides: [8, 16, 16, 16],
                min_score: 0.5,
            },
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Back => "back",
            ModelKind::Front => "front",
        }
    }
}

/// Anchors per model (16×16×2 + 8×8×6).
pub const ANCHORS: usize = 896;
/// Regressor values per anchor: box (4) and 6 keypoints (12).
pub const REGRESSORS: usize = 16;
/// Boxes overlapping more than this are one face (weighted NMS).
const NMS_IOU: f32 = 0.3;
/// Scores are clipped to ±this before the sigmoid (as MediaPipe does).
const SCORE_CLIP: f32 = 100.0;

/// A face in frame pixels.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Face {
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
    pub score: f32,
}

impl Face {
    /// Intersection over union of two boxes.
    pub fn iou(&self, other: &Face) -> f32 {
        let ix = (self.x + self.w).min(other.x + other.w) - self.x.max(other.x);
        let iy = (self.y + self.h).min(other.y + other.h) - self.y.max(other.y);
        if ix <= 0.0 || iy <= 0.0 {
            return 0.0;
        }
        let inter = ix * iy;
        inter / (self.w * self.h + other.w * other.h - inter)
    }
}

/// Anchor centres in [0, 1] of the input square, in the models' output order.
pub fn anchors(spec: &ModelSpec) -> Vec<(f32, f32)> {
    let mut out = Vec::with_capacity(ANCHORS);
    let mut layer = 0;
    while layer < spec.strides.len() {
        // Consecutive layers with the same stride share one grid (MediaPipe's
        // SsdAnchorsCalculator): 2 anchors per layer and cell.
        let stride = spec.strides[layer];
        let mut per_cell = 0;
        while layer < spec.strides.len() && spec.strides[layer] == stride {
            per_cell += 2;
            layer += 1;
        }
        let cells = spec.size.div_ceil(stride);
        for y in 0..cells {
            for x in 0..cells {
                let centre = ((x as f32 + 0.5) / cells as f32, (y as f32 + 0.5) / cells as f32);
                out.extend(std::iter::repeat_n(centre, per_cell));
            }
        }
    }
    out
}

/// Turns raw outputs (`scores`: one logit per anchor; `regressors`: 16 per
/// anchor) into faces in frame pixels, strongest first.
pub fn decode(
    spec: &ModelSpec,
    anchors: &[(f32, f32)],
    scores: &[f32],
    regressors: &[f32],
    letterbox: Letterbox,
) -> Vec<Face> {
    let size = spec.size as f32;
    let mut candidates: Vec<Face> = anchors
        .iter()
        .zip(scores)
        .zip(regressors.chunks_exact(REGRESSORS))
        .filter_map(|((&(ax, ay), &logit), raw)| {
            let score = 1.0 / (1.0 + (-logit.clamp(-SCORE_CLIP, SCORE_CLIP)).exp());
            // NaN logits give a NaN score: refused like a low one.
            if score.is_nan() || score < spec.min_score {
                return None;
            }
            // Fixed-size anchors: the regressors are offsets in input pixels.
            let (cx, cy) = (raw[0] + ax * size, raw[1] + ay * size);
            let (w, h) = (raw[2], raw[3]);
            let to_frame_x = |v: f32| (v - letterbox.pad_x) / letterbox.scale;
            let to_frame_y = |v: f32| (v - letterbox.pad_y) / letterbox.scale;
            Some(Face {
                x: to_frame_x(cx - w / 2.0),
                y: to_frame_y(cy - h / 2.0),
                w: w / letterbox.scale,
                h: h / letterbox.scale,
                score,
            })
        })
        .filter(|face| face.w > 0.0 && face.h > 0.0 && face.x.is_finite() && face.y.is_finite())
        .collect();
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    weighted_nms(candidates)
}

/// MediaPipe's weighted non-maximum suppression: each cluster of overlapping
/// boxes becomes their score-weighted mean, with the best score.
fn weighted_nms(mut sorted: Vec<Face>) -> Vec<Face> {
    let mut faces = Vec::new();
    while let Some(best) = sorted.first().copied() {
        let (cluster, rest): (Vec<Face>, Vec<Face>) = sorted.into_iter().partition(|f| best.iou(f) > NMS_IOU);
        let total: f32 = cluster.iter().map(|f| f.score).sum();
        let mean = |pick: fn(&Face) -> f32| cluster.iter().map(|f| pick(f) * f.score).sum::<f32>() / total;
        faces.push(Face {
            x: mean(|f| f.x),
            y: mean(|f| f.y),
            w: mean(|f| f.w),
            h: mean(|f| f.h),
            score: best.score,
        });
        sorted = rest;
    }
    faces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_models_have_896_anchors_on_their_grids() {
        for kind in [ModelKind::Back, ModelKind::Front] {
            let spec = kind.spec();
            let anchors = anchors(&spec);
            assert_eq!(anchors.len(), ANCHORS, "{kind:?}");
            // 16×16 cells × 2, then 8×8 × 6.
            assert_eq!(anchors[0], (0.5 / 16.0, 0.5 / 16.0));
            assert_eq!(anchors[1], anchors[0]);
            assert_eq!(anchors[512], (0.5 / 8.0, 0.5 / 8.0));
            assert_eq!(anchors[517], anchors[512]);
            assert_eq!(anchors[895], (7.5 / 8.0, 7.5 / 8.0));
        }
    }

    #[test]
    fn decode_maps_back_through_the_letterbox_and_merges_overlaps() {
        let spec = ModelKind::Front.spec();
        let anchors = anchors(&spec);
        let mut scores = vec![-10.0; ANCHORS];
        let mut regressors = vec![0.0; ANCHORS * REGRESSORS];
        // Two anchors of the same cell see one 32×32 face at the cell's centre,
        // a third (far away) sees nothing strong enough.
        for (anchor, logit) in [(512, 3.0), (513, 2.0), (0, -1.0)] {
            scores[anchor] = logit;
            regressors[anchor * REGRESSORS + 2] = 32.0;
            regressors[anchor * REGRESSORS + 3] = 32.0;
        }
        let letterbox = Letterbox { scale: 0.2, pad_x: 0.0, pad_y: 16.0 };
        let faces = decode(&spec, &anchors, &scores, &regressors, letterbox);
        assert_eq!(faces.len(), 1, "{faces:?}");
        let face = faces[0];
        // Centre (8, 8) in input pixels → ((8 - 0)/0.2, (8 - 16)/0.2) in the frame.
        assert!((face.x + face.w / 2.0 - 40.0).abs() < 1e-3, "{face:?}");
        assert!((face.y + face.h / 2.0 + 40.0).abs() < 1e-3, "{face:?}");
        assert!((face.w - 160.0).abs() < 1e-3);
        assert!((face.score - 1.0 / (1.0 + (-3.0f32).exp())).abs() < 1e-6);
    }

    #[test]
    fn iou_of_boxes() {
        let a = Face { x: 0.0, y: 0.0, w: 10.0, h: 10.0, score: 1.0 };
        assert_eq!(a.iou(&a), 1.0);
        assert_eq!(a.iou(&Face { x: 20.0, ..a }), 0.0);
        assert!((a.iou(&Face { x: 5.0, ..a }) - 50.0 / 150.0).abs() < 1e-6);
    }
}
