// The closed loop in the page: the `face-echo` data channel (our boxes out, the
// server's detections and stats in) and the overlay that draws the server's boxes
// over the video it belongs to, aligned by RTP timestamp. The logic without the
// DOM is in detections.js.
//
// Both are optional extras: when the server never opens or answers the channel,
// nothing here throws, queues or blocks, and the page works as it did without them.
import { CHANNEL_LABEL, DetectionRing, canSend, parseServerMessage, scaleFaces } from '/detections.js';

/** The page's end of the `face-echo` data channel of one RTCPeerConnection. */
export class LoopChannel {
  /**
   * Creates the channel on `pc` (before the offer, so the offer carries it).
   * Callbacks: onDetection(detection), onStats(stats), onError(error),
   * onChange(this) after any count or the state changed.
   */
  constructor(pc, { onDetection = () => {}, onStats = () => {}, onError = () => {}, onChange = () => {} } = {}) {
    this.state = 'connecting';
    this.messages = 0;          // messages received
    this.ignored = 0;           // of which malformed or unknown
    this.sent = 0;
    this.dropped = 0;           // not sent: the channel was backed up
    this.closed = false;
    this.onChange = onChange;
    this.handlers = { onDetection, onStats, onError };
    try {
      this.channel = pc.createDataChannel(CHANNEL_LABEL, { ordered: true });
    } catch (err) {
      console.warn('face-echo: no data channel:', err);
      this.channel = null;
      this.state = 'unavailable';
      return;
    }
    const channel = this.channel;
    const update = () => {
      if (this.closed) return;
      this.state = channel.readyState;
      onChange(this);
    };
    channel.onopen = update;
    channel.onclose = update;
    channel.onerror = update;
    channel.onmessage = (event) => this.receive(event.data);
  }

  /** Handles one message from the server (the channel's, or a test's stand-in). */
  receive(data) {
    if (this.closed) return;
    this.messages++;
    const message = parseServerMessage(data);
    const { onDetection, onStats, onError } = this.handlers;
    if (!message) this.ignored++;
    else if (message.kind === 'detections') onDetection(message.detection);
    else if (message.kind === 'stats') onStats(message);
    else if (message.kind === 'error') onError(message);
    this.onChange(this);
  }

  /** Sends `message` (JSON) when the channel is open and not backed up; else drops it. */
  send(message) {
    if (this.closed || !this.channel || this.channel.readyState !== 'open') return false;
    if (!canSend(this.channel)) {
      this.dropped++;
      return false;
    }
    try {
      this.channel.send(JSON.stringify(message));
      this.sent++;
      return true;
    } catch {
      this.dropped++;
      return false;
    }
  }

  close() {
    this.closed = true;
    this.state = 'closed';
    if (!this.channel) return;
    this.channel.onopen = this.channel.onclose = this.channel.onerror = this.channel.onmessage = null;
    try { this.channel.close(); } catch { /* already gone with its connection */ }
  }
}

const COLOUR = '#f0f';          // the server's boxes (the page's own are green)

/**
 * Draws the server's boxes over `video` on `canvas` (laid over it, same CSS box,
 * intrinsic size = the video's), for each frame the video presents: the detection
 * whose RTP timestamp is the newest at or before the shown frame's, from `ring`.
 * `onDraw({faces, ageMs, fallback})` after each presented frame (faces: 0 when
 * nothing was drawn; ageMs null then).
 */
export class ServerOverlay {
  constructor(video, canvas, { onDraw = () => {} } = {}) {
    this.video = video;
    this.canvas = canvas;
    this.ctx = canvas.getContext('2d');
    this.ring = new DetectionRing();
    this.onDraw = onDraw;
    this.handle = null;
    this.running = false;
  }

  /** Adds a server detection (parsed by detections.js). */
  add(detection) {
    this.ring.push(detection, performance.now());
  }

  start() {
    if (this.running) return;
    this.running = true;
    const video = this.video;
    const hasFrameCallback = typeof video.requestVideoFrameCallback === 'function';
    const onFrame = (now, metadata) => {
      if (!this.running) return;
      this.draw(metadata?.rtpTimestamp);
      this.handle = hasFrameCallback ? video.requestVideoFrameCallback(onFrame) : requestAnimationFrame(onFrame);
    };
    this.handle = hasFrameCallback ? video.requestVideoFrameCallback(onFrame) : requestAnimationFrame(onFrame);
  }

  stop() {
    this.running = false;
    if (this.handle !== null) {
      if (typeof this.video.requestVideoFrameCallback === 'function') this.video.cancelVideoFrameCallback(this.handle);
      else cancelAnimationFrame(this.handle);
    }
    this.handle = null;
    this.ring.clear();
    this.ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
  }

  /** Draws the detection for the frame with `rtpTimestamp` (undefined: the newest). */
  draw(rtpTimestamp) {
    const { videoWidth: width, videoHeight: height } = this.video;
    const ctx = this.ctx;
    if (width && height && (this.canvas.width !== width || this.canvas.height !== height)) {
      this.canvas.width = width;
      this.canvas.height = height;
    }
    ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    const picked = width && height ? this.ring.pick(rtpTimestamp, performance.now()) : null;
    if (!picked) {
      this.onDraw({ faces: 0, ageMs: null, fallback: !Number.isInteger(rtpTimestamp) });
      return;
    }
    const faces = scaleFaces(picked.detection, width, height);
    ctx.lineWidth = Math.max(2, width / 200);
    ctx.strokeStyle = COLOUR;
    ctx.fillStyle = COLOUR;
    ctx.font = `${Math.max(12, width / 40)}px sans-serif`;
    for (const { x, y, w, h, score } of faces) {
      ctx.strokeRect(x, y, w, h);
      const label = score === null ? 'server' : `server ${score.toFixed(2)}`;
      ctx.fillText(label, x, Math.min(height - 4, y + h + Math.max(12, width / 40)));
    }
    const age = `${Math.round(picked.ageMs)} ms${picked.fallback ? ' (newest: no RTP timestamp)' : ''}`;
    ctx.fillText(`server boxes ${age}`, 4, Math.max(12, width / 40));
    this.onDraw({ faces: faces.length, ageMs: picked.ageMs, fallback: picked.fallback });
  }
}
