// The closed loop's logic, with no DOM: the messages of the `face-echo` data
// channel (src/seeing/loop_messages.rs has the protocol), the ring of the server's recent
// detections, and which of them belongs to the echo frame on screen. Unit-tested
// in node (tests/browser/detections.test.mjs); loop.js does the drawing.

/** The data channel's label (CHANNEL_LABEL in src/seeing/loop_messages.rs). */
export const CHANNEL_LABEL = 'face-echo';
/** Most faces in one message (MAX_FACES in src/seeing/loop_messages.rs). */
export const MAX_FACES = 64;
/** RTP clock rate of video: RTP timestamp ticks per millisecond. */
export const RTP_TICKS_PER_MS = 90;
/** A server detection more than this behind the shown frame is not drawn. */
export const MAX_STALE_MS = 2000;
/** Server detections remembered for matching to shown frames (~2 s at 15/s). */
export const RING_SIZE = 32;

/** a - b for 32-bit RTP timestamps, wrapping: positive when a is after b. */
export function rtpDiff(a, b) {
  return ((a - b) | 0);
}

/** The page's message when its detector starts on the picture of frame `frame`. */
export function pageDetecting(frame) {
  return { type: 'detecting', frame };
}

/**
 * The page's detections message for the frame it stamped with `frame`, which its
 * detector (`detector`: 'tiny' | 'ssd') ran on: face-api boxes ({x, y, width,
 * height, score}, canvas pixels) on a `width`×`height` canvas. Boxes that are not
 * finite are left out, at most MAX_FACES kept.
 */
export function pageDetections(frame, width, height, boxes, detector) {
  const round = (v) => Math.round(v * 10) / 10;
  const faces = [];
  for (const box of boxes) {
    if (faces.length >= MAX_FACES) break;
    const { x, y, width: w, height: h } = box;
    const score = Math.min(1, Math.max(0, Number(box.score ?? 0)));
    if (![x, y, w, h, score].every(Number.isFinite) || w < 0 || h < 0) continue;
    faces.push({ x: round(x), y: round(y), w: round(w), h: round(h), score: Math.round(score * 1000) / 1000 });
  }
  return { type: 'detections', source: 'page', frame, detector, width, height, faces };
}

/**
 * Which of the page's detection passes it reports to the server: at most `fps` a
 * second (the server's --detect-fps, from its stats), so that the server's
 * detector, which takes the frames the page names first, can run on every one.
 * Any pass while the server's rate is not known.
 */
export class ReportPacer {
  constructor() {
    this.last = -Infinity;
  }

  /** Whether to report a pass starting at `now` (ms). */
  take(now, fps) {
    if (Number.isFinite(fps) && fps > 0 && now - this.last < 1000 / fps) return false;
    this.last = now;
    return true;
  }
}

const isCount = (v) => Number.isInteger(v) && v >= 0;
const isFace = (f) => f && ['x', 'y', 'w', 'h'].every((k) => Number.isFinite(f[k])) && f.w >= 0 && f.h >= 0;

/**
 * A message from the server, checked: {kind:'detections', detection} with the
 * detection's fields, {kind:'stats', agreement, tap, detect}, {kind:'error', ...},
 * or null for anything malformed or unknown (ignored, never thrown).
 */
export function parseServerMessage(text) {
  if (typeof text !== 'string' || text.length > 256 * 1024) return null;
  let m;
  try {
    m = JSON.parse(text);
  } catch {
    return null;
  }
  if (!m || typeof m !== 'object') return null;
  if (m.type === 'detections') {
    if (!isCount(m.rtp_ts) || m.rtp_ts > 0xffffffff || !(m.width > 0) || !(m.height > 0)) return null;
    if (!Array.isArray(m.faces)) return null;
    const faces = m.faces.filter(isFace).slice(0, MAX_FACES).map(({ x, y, w, h, score }) => ({
      x, y, w, h, score: Number.isFinite(score) ? score : null,
    }));
    return {
      kind: 'detections',
      detection: {
        rtpTs: m.rtp_ts,
        frame: isCount(m.frame) ? m.frame : null,
        width: m.width,
        height: m.height,
        faces,
        inferMs: Number.isFinite(m.infer_ms) ? m.infer_ms : null,
        ageMs: Number.isFinite(m.age_ms) ? m.age_ms : null,
      },
    };
  }
  if (m.type === 'stats') {
    const a = m.agreement && typeof m.agreement === 'object' ? m.agreement : {};
    const count = (v) => (isCount(v) ? v : 0);
    const mean = (v) => (Number.isFinite(v) ? v : null);
    return {
      kind: 'stats',
      agreement: {
        frames: count(a.frames),
        matched: count(a.matched),
        pageOnly: count(a.page_only),
        serverOnly: count(a.server_only),
        meanIou: mean(a.mean_iou),
        meanIouCalibrated: mean(a.mean_iou_calibrated),
      },
      tap: m.tap ?? null,
      detect: m.detect ?? null,
    };
  }
  if (m.type === 'error') {
    return { kind: 'error', code: String(m.code ?? ''), message: String(m.message ?? '') };
  }
  return null;
}

/** The server's recent detections, newest last, at most `size`. */
export class DetectionRing {
  constructor(size = RING_SIZE) {
    this.size = size;
    this.items = [];
  }

  /** Adds a parsed detection; `receivedAt` is when it arrived (ms, page clock). */
  push(detection, receivedAt) {
    this.items.push({ ...detection, receivedAt });
    if (this.items.length > this.size) this.items.shift();
  }

  clear() {
    this.items = [];
  }

  /**
   * The detection for the frame shown: with `rtpTimestamp` (the shown frame's, from
   * requestVideoFrameCallback metadata), the newest detection at or before it, and
   * how far behind it is in ms of video; null when none, or when the best is more
   * than MAX_STALE_MS behind. Without one, the newest detection (`fallback: true`),
   * aged by the time since it arrived plus the server's own age_ms.
   * Returns {detection, ageMs, fallback} or null.
   */
  pick(rtpTimestamp, now) {
    if (!this.items.length) return null;
    if (!Number.isInteger(rtpTimestamp)) {
      const detection = this.items[this.items.length - 1];
      const ageMs = Math.max(0, now - detection.receivedAt) + (detection.ageMs ?? 0);
      return ageMs > MAX_STALE_MS ? null : { detection, ageMs, fallback: true };
    }
    let best = null;
    let bestBehind = Infinity;
    for (const detection of this.items) {
      const behind = rtpDiff(rtpTimestamp, detection.rtpTs);
      if (behind >= 0 && behind < bestBehind) {
        best = detection;
        bestBehind = behind;
      }
    }
    if (!best) return null;
    const ageMs = bestBehind / RTP_TICKS_PER_MS;
    return ageMs > MAX_STALE_MS ? null : { detection: best, ageMs, fallback: false };
  }
}

/** A detection's faces scaled from its frame's pixels to a `width`×`height` picture. */
export function scaleFaces(detection, width, height) {
  const sx = width / detection.width;
  const sy = height / detection.height;
  return detection.faces.map(({ x, y, w, h, score }) => ({ x: x * sx, y: y * sy, w: w * sx, h: h * sy, score }));
}

/** Whether a data channel can take one more message now: open, and not backed up. */
export const MAX_BUFFERED_BYTES = 64 * 1024;
export function canSend(channel) {
  return !!channel && channel.readyState === 'open' && channel.bufferedAmount < MAX_BUFFERED_BYTES;
}
