#!/usr/bin/env python3
"""Python reference for server-side BlazeFace: what the Rust port must match.

Run with the venv that scripts/onnxruntime.sh makes:

    $(scripts/onnxruntime.sh python) tests/detect/reference.py

It
  1. runs both models of models/blazeface/ on a synthetic input that Rust can build
     bit-exactly and writes tests/fixtures/blazeface_{back,front}_parity.json
     (raw outputs at fixed indices, 8 significant digits);
  2. runs the whole detector (pre-processing, SSD anchors, decode, weighted NMS)
     on tests/fixtures/astronaut.png, a mirrored copy, a scaled copy on a
     non-square canvas (letterbox) and a blank gray image; prints the boxes in
     pixel coordinates and their IoU against tests/fixtures/astronaut_face.json;
  3. times inference (1 thread, median of 50 runs).

Post-processing follows MediaPipe (google-ai-edge/mediapipe):
  - anchors: SsdAnchorsCalculator with the options of
    mediapipe/modules/face_detection/face_detection_front_common.pbtxt (front, 128) and
    mediapipe/graphs/face_detection/face_detection_back_desktop_live.pbtxt (back, 256);
  - decode: TensorsToDetectionsCalculator (reverse_output_order, x/y/w/h_scale = S,
    sigmoid score, score_clipping_thresh 100, keep score >= min_score_thresh);
  - NMS: NonMaxSuppressionCalculator, WEIGHTED, IoU, min_suppression_threshold 0.3.
"""

import argparse
import hashlib
import json
import math
import os
import re
import sys
import time

import numpy as np
import onnxruntime as ort
from PIL import Image

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")

# name -> model parameters. Thresholds are MediaPipe's graph values (see module docstring).
MODELS = {
    "back": {
        "file": "models/blazeface/face_detection_back_256x256_barracuda.onnx",
        "size": 256,
        "strides": [16, 32, 32, 32],
        "min_score": 0.65,
    },
    "front": {
        "file": "models/blazeface/face_detection_front_128x128_barracuda.onnx",
        "size": 128,
        "strides": [8, 16, 16, 16],
        "min_score": 0.5,
    },
}
INPUT_NAME = "input:0"
# Per feature-map layer: (scores [1,N,1], regressors [1,N,16]). Layer 0 is the finer grid
# (16x16 cells x 2 anchors = 512), layer 1 the coarser (8x8 cells x 6 anchors = 384);
# anchors 0..512 then 512..896 in MediaPipe's order.
OUTPUT_LAYERS = [("Identity:0", "Identity_2:0"), ("Identity_1:0", "Identity_3:0")]
NUM_COORDS = 16
NUM_KEYPOINTS = 6
ANCHOR_OFFSET = 0.5
SCORE_CLIP = 100.0
NMS_IOU = 0.3


# ---------------------------------------------------------------- pre-processing

def letterbox_square(img):
    """Pads a non-square RGB image with black onto a max(w,h) square, image centred
    (offsets floor((side-w)/2), floor((side-h)/2)). Returns (square, side, dx, dy)."""
    w, h = img.size
    side = max(w, h)
    if w == h:
        return img, side, 0, 0
    dx, dy = (side - w) // 2, (side - h) // 2
    sq = Image.new("RGB", (side, side), (0, 0, 0))
    sq.paste(img, (dx, dy))
    return sq, side, dx, dy


def image_tensor(img, size):
    """RGB image -> float32 NHWC [1,S,S,3], px/127.5 - 1. Also returns the letterbox
    (side, dx, dy) to map normalized boxes back to image pixels."""
    sq, side, dx, dy = letterbox_square(img.convert("RGB"))
    small = sq.resize((size, size), Image.BILINEAR)
    px = np.asarray(small, dtype=np.uint8).astype(np.float32)
    x = px / np.float32(127.5) - np.float32(1.0)
    return x[None].astype(np.float32), (side, dx, dy)


def synthetic_tensor(size):
    """value[i] = ((i * 7919) % 255) as f32 / 127.5 - 1.0, i in 0..S*S*3 (NHWC order)."""
    i = np.arange(size * size * 3, dtype=np.int64)
    v = ((i * 7919) % 255).astype(np.float32) / np.float32(127.5) - np.float32(1.0)
    return v.astype(np.float32).reshape(1, size, size, 3)


# ---------------------------------------------------------------- anchors

def ssd_anchors(size, strides):
    """MediaPipe SsdAnchorsCalculator for BlazeFace: aspect_ratios [1.0],
    interpolated_scale_aspect_ratio 1.0 (2 anchors per layer), fixed_anchor_size true
    (w = h = 1), consecutive layers with the same stride share one feature map.
    Order: layer group, then row y, column x, anchor. Returns float32 [N,4] (x, y, w, h)."""
    anchors = []
    layer = 0
    while layer < len(strides):
        last = layer
        per_cell = 0
        while last < len(strides) and strides[last] == strides[layer]:
            per_cell += 2  # aspect 1.0 + interpolated scale
            last += 1
        fm = math.ceil(size / strides[layer])
        for y in range(fm):
            for x in range(fm):
                cx = (x + ANCHOR_OFFSET) / fm
                cy = (y + ANCHOR_OFFSET) / fm
                for _ in range(per_cell):
                    anchors.append((cx, cy, 1.0, 1.0))
        layer = last
    return np.array(anchors, dtype=np.float32)


# ---------------------------------------------------------------- model

def session(name):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # the models carry unused initializers: warnings only
    return ort.InferenceSession(os.path.join(ROOT, MODELS[name]["file"]), opts,
                                providers=["CPUExecutionProvider"])


def raw_outputs(sess, x):
    """-> (scores float32 [896], regressors float32 [896,16]) in anchor order."""
    names = [o.name for o in sess.get_outputs()]
    outs = dict(zip(names, sess.run(None, {INPUT_NAME: x})))
    scores, boxes = [], []
    for s_name, b_name in OUTPUT_LAYERS:
        s, b = outs[s_name], outs[b_name]
        assert s.shape[2] == 1 and b.shape[2] == NUM_COORDS and s.shape[1] == b.shape[1]
        scores.append(s.reshape(-1))
        boxes.append(b.reshape(-1, NUM_COORDS))
    return np.concatenate(scores), np.concatenate(boxes)


# ---------------------------------------------------------------- post-processing

def decode(scores, raw, anchors, size, min_score):
    """TensorsToDetectionsCalculator. Returns a list of dicts with the box in
    normalized [0,1] coordinates of the S x S input (xmin, ymin, xmax, ymax),
    6 keypoints (x, y) and the score, for every anchor with score >= min_score."""
    s = 1.0 / (1.0 + np.exp(-np.clip(scores.astype(np.float64), -SCORE_CLIP, SCORE_CLIP)))
    raw = raw.astype(np.float64)
    a = anchors.astype(np.float64)
    xc = raw[:, 0] / size * a[:, 2] + a[:, 0]
    yc = raw[:, 1] / size * a[:, 3] + a[:, 1]
    w = raw[:, 2] / size * a[:, 2]
    h = raw[:, 3] / size * a[:, 3]
    dets = []
    for i in np.nonzero(s >= min_score)[0]:
        kps = [(raw[i, 4 + 2 * k] / size * a[i, 2] + a[i, 0],
                raw[i, 5 + 2 * k] / size * a[i, 3] + a[i, 1]) for k in range(NUM_KEYPOINTS)]
        dets.append({
            "anchor": int(i),
            "score": float(s[i]),
            "box": (xc[i] - w[i] / 2, yc[i] - h[i] / 2, xc[i] + w[i] / 2, yc[i] + h[i] / 2),
            "keypoints": kps,
        })
    return dets


def iou(a, b):
    """IoU of two (xmin, ymin, xmax, ymax) boxes; 0 when they do not intersect."""
    ix = min(a[2], b[2]) - max(a[0], b[0])
    iy = min(a[3], b[3]) - max(a[1], b[1])
    if ix <= 0 or iy <= 0:
        return 0.0
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def weighted_nms(dets, threshold=NMS_IOU):
    """NonMaxSuppressionCalculator, algorithm WEIGHTED. Sort by score (descending,
    stable); take the best remaining detection; every remaining one (itself included)
    with IoU > threshold against it is a candidate; the output box and keypoints are
    the score-weighted mean of the candidates' (xmin, ymin, xmax, ymax) and keypoints,
    the output score is the best one's. Repeat with the non-candidates."""
    remaining = sorted(dets, key=lambda d: -d["score"])
    out = []
    while remaining:
        best = remaining[0]
        cands = [d for d in remaining if iou(d["box"], best["box"]) > threshold]
        rest = [d for d in remaining if iou(d["box"], best["box"]) <= threshold]
        total = sum(d["score"] for d in cands)
        box = tuple(sum(d["box"][k] * d["score"] for d in cands) / total for k in range(4))
        kps = [(sum(d["keypoints"][k][0] * d["score"] for d in cands) / total,
                sum(d["keypoints"][k][1] * d["score"] for d in cands) / total)
               for k in range(NUM_KEYPOINTS)]
        out.append({"score": best["score"], "box": box, "keypoints": kps,
                    "anchor": best["anchor"], "merged": len(cands)})
        if len(rest) == len(remaining):  # cannot happen: best overlaps itself
            break
        remaining = rest
    return out


def to_pixels(det, letterbox):
    """Normalized box on the S x S (letterboxed) input -> image pixels (x, y, w, h)."""
    side, dx, dy = letterbox
    x0, y0, x1, y1 = det["box"]
    return (x0 * side - dx, y0 * side - dy, (x1 - x0) * side, (y1 - y0) * side)


class Detector:
    def __init__(self, name):
        m = MODELS[name]
        self.name, self.size, self.min_score = name, m["size"], m["min_score"]
        self.sess = session(name)
        self.anchors = ssd_anchors(self.size, m["strides"])
        assert len(self.anchors) == 896

    def detect(self, img):
        """-> (faces [(x, y, w, h, score)] in image pixels, best raw score)."""
        x, letterbox = image_tensor(img, self.size)
        scores, raw = raw_outputs(self.sess, x)
        dets = weighted_nms(decode(scores, raw, self.anchors, self.size, self.min_score))
        best = float(1.0 / (1.0 + np.exp(-np.clip(scores.max(), -SCORE_CLIP, SCORE_CLIP))))
        return [to_pixels(d, letterbox) + (d["score"],) for d in dets], best


# ---------------------------------------------------------------- fixtures

def spread_indices(n, count=32):
    """count indices spread over 0..n, both ends included: round(k * (n-1) / (count-1))."""
    return [int(round(k * (n - 1) / (count - 1))) for k in range(count)]


def sig8(v):
    return float("%.8g" % float(v))


def parity_fixture(name):
    sess = session(name)
    size = MODELS[name]["size"]
    x = synthetic_tensor(size)
    outs = sess.run(None, {INPUT_NAME: x})
    doc = {
        "model": MODELS[name]["file"],
        "onnxruntime": ort.__version__,
        "input": {
            "name": INPUT_NAME,
            "shape": list(x.shape),
            "formula": "value[i] = ((i * 7919) %% 255) as f32 / 127.5 - 1.0, i = 0..%d, NHWC"
                       % x.size,
            "sha256_f32le": hashlib.sha256(x.astype("<f4").tobytes()).hexdigest(),
        },
        "outputs": [],
    }
    for meta, out in zip(sess.get_outputs(), outs):
        flat = out.reshape(-1)
        idx = spread_indices(flat.size)
        doc["outputs"].append({
            "name": meta.name,
            "shape": list(out.shape),
            "first16": [sig8(v) for v in flat[:16]],
            "spread_indices": idx,
            "spread_values": [sig8(flat[i]) for i in idx],
        })
    return doc


def write_json(path, doc):
    text = json.dumps(doc, indent=1)
    # Lists of numbers on one line each: smaller, and diffs stay readable.
    text = re.sub(r"\[[-0-9.e,\s]*\]", lambda m: re.sub(r"\s+", " ", m.group(0))
                  .replace("[ ", "[").replace(" ]", "]"), text)
    with open(path, "w") as f:
        f.write(text + "\n")


# ---------------------------------------------------------------- main

def fmt_box(b):
    return "x=%6.1f y=%6.1f w=%6.1f h=%6.1f" % b[:4]


def box_iou_xywh(a, b):
    return iou((a[0], a[1], a[0] + a[2], a[1] + a[3]), (b[0], b[1], b[0] + b[2], b[1] + b[3]))


def median_ms(sess, x, runs=50, warmup=5):
    for _ in range(warmup):
        sess.run(None, {INPUT_NAME: x})
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(None, {INPUT_NAME: x})
        times.append((time.perf_counter() - t) * 1000.0)
    return float(np.median(times))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--no-write", action="store_true", help="do not rewrite the fixtures")
    ap.add_argument("--time-only", action="store_true",
                    help="only time inference (scripts/bench-detect.sh, beside the Rust bench)")
    args = ap.parse_args()

    print("onnxruntime %s, numpy %s" % (ort.__version__, np.__version__))
    if args.time_only:
        astro = Image.open(os.path.join(FIXTURES, "astronaut.png")).convert("RGB")
        print("inference, 1 thread, median of 50 runs:")
        for det in [Detector(n) for n in MODELS]:
            x, _ = image_tensor(astro, det.size)
            print("  %-5s %dx%d: %.3f ms" % (det.name, det.size, det.size, median_ms(det.sess, x)))
        return 0

    # 1. parity fixtures
    for name in MODELS:
        doc = parity_fixture(name)
        path = os.path.join(FIXTURES, "blazeface_%s_parity.json" % name)
        if not args.no_write:
            write_json(path, doc)
        print("%s: input %s sha256 %s -> %s" % (name, doc["input"]["shape"],
              doc["input"]["sha256_f32le"][:16], os.path.relpath(path, ROOT)))
        for o in doc["outputs"]:
            print("    %-13s %s" % (o["name"], o["shape"]))

    # 2. detection cases
    with open(os.path.join(FIXTURES, "astronaut_face.json")) as f:
        hf = json.load(f)
    face = (hf["x"], hf["y"], hf["w"], hf["h"])
    astro = Image.open(os.path.join(FIXTURES, "astronaut.png")).convert("RGB")
    W, H = astro.size

    mirrored = astro.transpose(Image.FLIP_LEFT_RIGHT)
    scale, ox, oy = 320 / W, 200, 80
    canvas = Image.new("RGB", (640, 480), (0, 0, 0))
    canvas.paste(astro.resize((320, 320), Image.BILINEAR), (ox, oy))
    gray = Image.new("RGB", (W, H), (128, 128, 128))
    wide = astro.crop((0, 0, W, 320))     # 512x320: letterbox pads top and bottom
    tall = astro.crop((100, 0, 420, H))   # 320x512: letterbox pads left and right
    cases = [
        ("astronaut 512x512", astro, face),
        ("mirrored", mirrored, (W - face[0] - face[2], face[1], face[2], face[3])),
        ("320x320 at (200,80) on 640x480", canvas,
         (face[0] * scale + ox, face[1] * scale + oy, face[2] * scale, face[3] * scale)),
        ("crop 512x320 (rows 0..320)", wide, face),
        ("crop 320x512 (cols 100..420)", tall, (face[0] - 100, face[1], face[2], face[3])),
        ("gray 512x512", gray, None),
    ]
    print("\nhand-checked face %s" % fmt_box(face))
    detectors = [Detector(n) for n in MODELS]
    for det in detectors:
        print("\n%s (%dx%d, min score %.2f)" % (det.name, det.size, det.size, det.min_score))
        for label, img, expect in cases:
            faces, best = det.detect(img)
            print("  %-32s %d face(s), best anchor score %.4f" % (label, len(faces), best))
            for fc in faces:
                extra = "  IoU %.3f" % box_iou_xywh(fc, expect) if expect else ""
                print("      %s score %.4f%s" % (fmt_box(fc), fc[4], extra))

    # 3. timing
    print("\ninference, 1 thread, median of 50 runs:")
    for det in detectors:
        x, _ = image_tensor(astro, det.size)
        print("  %-5s %dx%d: %.3f ms" % (det.name, det.size, det.size, median_ms(det.sess, x)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
