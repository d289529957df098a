// Glass-to-glass latency: each sent canvas frame carries its number as a row of
// black/white cells in the bottom-left corner; the echo's copy is read back and
// matched to the time the frame was drawn. Reading costs one tiny drawImage and
// getImageData of the code's pixels only.
//
// The layout is described once, in src/seeing/framecode.rs (the server reads the same
// code from the frames it decodes): left to right along the bottom row, a white
// and a black guard cell, 16 bits of the frame number (most significant first),
// one even-parity cell; cells are max(8, floor(width / 48)) pixels. Keep BITS,
// the guards and cellSize() identical to MIN_CELL, CELL_DIVISOR and BITS there.
// Cells are big enough to survive VP8 at low bitrates and the sender's own
// downscaling.

const BITS = 16;
const CELLS = 2 + BITS + 1;
const SAMPLE = 4;              // scratch pixels per cell when reading back
const KEPT = 1024;             // frames remembered for matching

/** Cell size in pixels for a frame `width` wide. */
export function cellSize(width) {
  return Math.max(8, Math.floor(width / 48));
}

/** Numbers frames, stamps them on the canvas, and remembers when each was drawn. */
export class FrameStamper {
  constructor() {
    this.next = 0;
    this.drawnAt = new Array(KEPT);
  }

  /**
   * Draws the code for the next frame number on `ctx` (a `width`×`height` canvas)
   * and returns that number.
   */
  stamp(ctx, width, height, now = performance.now()) {
    const n = this.next;
    this.next = (this.next + 1) & 0xffff;
    this.drawnAt[n % KEPT] = { n, at: now };
    const cell = cellSize(width);
    const y = height - cell;
    let parity = 0;
    const bits = [1, 0];
    for (let i = BITS - 1; i >= 0; i--) {
      const bit = (n >> i) & 1;
      parity ^= bit;
      bits.push(bit);
    }
    bits.push(parity);
    bits.forEach((bit, i) => {
      ctx.fillStyle = bit ? '#fff' : '#000';
      ctx.fillRect(i * cell, y, cell, cell);
    });
    return n;
  }

  /** When frame `n` was drawn, if it is still remembered. */
  drawnTime(n) {
    const entry = this.drawnAt[n % KEPT];
    return entry && entry.n === n ? entry.at : null;
  }
}

/** Reads codes back from frames of a video showing the stamped stream. */
export class FrameReader {
  constructor() {
    const scratch = document.createElement('canvas');
    scratch.width = CELLS * SAMPLE;
    scratch.height = SAMPLE;
    this.ctx = scratch.getContext('2d', { willReadFrequently: true });
  }

  /**
   * The frame number in `video`'s current frame, or null when there is no
   * valid code. `sentWidth` is the width the frame had when it was stamped
   * (the encoder may have scaled it since).
   */
  read(video, sentWidth) {
    const { videoWidth: w, videoHeight: h } = video;
    if (!w || !h || !sentWidth) return null;
    const cell = cellSize(sentWidth) * (w / sentWidth);
    this.ctx.drawImage(video, 0, h - cell, CELLS * cell, cell, 0, 0, CELLS * SAMPLE, SAMPLE);
    const pixels = this.ctx.getImageData(0, 0, CELLS * SAMPLE, SAMPLE).data;
    const bits = [];
    for (let i = 0; i < CELLS; i++) {
      const at = ((SAMPLE >> 1) * CELLS * SAMPLE + i * SAMPLE + (SAMPLE >> 1)) * 4;
      const luma = 0.299 * pixels[at] + 0.587 * pixels[at + 1] + 0.114 * pixels[at + 2];
      bits.push(luma > 128 ? 1 : 0);
    }
    if (bits[0] !== 1 || bits[1] !== 0) return null;
    let n = 0;
    let parity = 0;
    for (let i = 0; i < BITS; i++) {
      n = (n << 1) | bits[2 + i];
      parity ^= bits[2 + i];
    }
    return parity === bits[CELLS - 1] ? n : null;
  }
}

/**
 * The glass-to-glass latency of the frames `video` shows: at each rendered frame
 * (requestVideoFrameCallback) its code is read back and matched to when `stamper`
 * drew it. The echo and the in-page loopback (floor.js) are timed by this one
 * method, so their difference is what the server's path adds.
 */
export class VideoLatency {
  /** `sentWidth()`: the width frames are stamped at now; `kept`: frames remembered. */
  constructor(video, stamper, sentWidth, kept = 120) {
    this.video = video;
    this.stamper = stamper;
    this.sentWidth = sentWidth;
    this.kept = kept;
    this.reader = new FrameReader();
    this.byFrame = new Map();  // frame number → latency in ms, the last `kept`, oldest first
    // frame number → ms from drawing to the arrival of the frame's last packet (the
    // browser's receiveTime, WebRTC only): the path before jitter buffer, decoder, display
    this.arrivedByFrame = new Map();
    this.samples = 0;
    this.handle = null;
  }

  /** Starts watching; `onFrame()` after each rendered frame, timed or not. */
  start(onFrame = () => {}) {
    if (!this.video.requestVideoFrameCallback) return;
    const tick = (now, metadata) => {
      const n = this.reader.read(this.video, this.sentWidth());
      const drawnAt = n === null ? null : this.stamper.drawnTime(n);
      if (drawnAt !== null && now >= drawnAt && !this.byFrame.has(n)) {
        remember(this.byFrame, n, now - drawnAt, this.kept);
        if (metadata?.receiveTime > 0) remember(this.arrivedByFrame, n, metadata.receiveTime - drawnAt, this.kept);
        this.samples++;
      }
      onFrame();
      if (this.handle !== null) this.handle = this.video.requestVideoFrameCallback(tick);
    };
    this.handle = this.video.requestVideoFrameCallback(tick);
  }

  stop() {
    if (this.handle !== null) this.video.cancelVideoFrameCallback?.(this.handle);
    this.handle = null;
  }

  /** p50 and p95 of the frames remembered, and how many frames were ever timed. */
  summary() {
    const values = [...this.byFrame.values()];
    return { p50: percentile(values, 0.5), p95: percentile(values, 0.95), samples: this.samples };
  }
}

function remember(map, n, ms, kept) {
  map.set(n, ms);
  if (map.size > kept) map.delete(map.keys().next().value);
}

/** p-th percentile (0..1) of numbers, or null when empty. */
export function percentile(values, p) {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.round((sorted.length - 1) * p)];
}
