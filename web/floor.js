// The glass-to-glass floor: the same canvas stream the echo sends, through a
// second RTCPeerConnection pair inside this page (VP8 with the echo's defaults),
// timed by the same method (VideoLatency: the frame code read back from the
// received pixels). It runs beside the echo, so both see the same machine load,
// the same kind of encoder, jitter buffer, decoder and renderer; what the echo
// takes beyond the floor is what the network path and the server add.
// It costs one more VP8 encode and decode per frame, so the page runs it only
// when asked (the "floor" checkbox, or ?floor in the URL).
import { VideoLatency, percentile } from './framecode.js';
import { preferVp8 } from './signaling.js';

export class Floor {
  /** `video` shows the loopback; `stamper` and `sentWidth()` as for VideoLatency. */
  constructor(video, stamper, sentWidth) {
    this.video = video;
    this.latency = new VideoLatency(video, stamper, sentWidth);
    this.sender = null;
    this.receiver = null;
    this.stats = null;
  }

  /** Sends `stream`'s video through the pair; `onFrame()` after each frame shown. */
  async start(stream, onFrame = () => {}) {
    const sender = this.sender = new RTCPeerConnection({ iceServers: [] });
    const receiver = this.receiver = new RTCPeerConnection({ iceServers: [] });
    this.stats = new PathStats([sender, receiver]);
    sender.onicecandidate = (e) => { if (e.candidate) receiver.addIceCandidate(e.candidate).catch(() => {}); };
    receiver.onicecandidate = (e) => { if (e.candidate) sender.addIceCandidate(e.candidate).catch(() => {}); };
    preferVp8(sender.addTransceiver(stream.getVideoTracks()[0], { direction: 'sendonly', streams: [stream] }));
    receiver.ontrack = (event) => {
      this.video.srcObject = new MediaStream([event.track]);
      this.video.play().catch(() => {});
    };
    await sender.setLocalDescription(await sender.createOffer());
    await receiver.setRemoteDescription(sender.localDescription);
    await receiver.setLocalDescription(await receiver.createAnswer());
    await sender.setRemoteDescription(receiver.localDescription);
    this.latency.start(onFrame);
  }

  /** The receiving side's connection state, or 'off'. */
  get state() {
    return this.receiver?.connectionState ?? 'off';
  }

  stop() {
    this.latency.stop();
    this.sender?.close();
    this.receiver?.close();
    this.sender = this.receiver = this.stats = null;
    this.video.srcObject = null;
  }
}

/**
 * Echo minus floor, frame by frame: for each frame number both paths showed, the
 * echo's latency less the loopback's (the same frame, drawn once). p50/p95 of the
 * frames both remember (`VideoLatency.byFrame` maps), and the mean: both paths
 * are timed at the page's rendering steps (requestVideoFrameCallback), so each
 * difference is a whole number of display frames (~16.7 ms at 60 Hz) and the p50
 * snaps to one of them; the mean over many frames resolves less than that.
 */
export function overFloor(echo, floor) {
  const diffs = [];
  for (const [n, ms] of echo) {
    const base = floor.get(n);
    if (base !== undefined) diffs.push(ms - base);
  }
  const mean = diffs.length ? diffs.reduce((a, b) => a + b, 0) / diffs.length : null;
  return { p50: percentile(diffs, 0.5), p95: percentile(diffs, 0.95), mean, frames: diffs.length };
}

/**
 * Where one path's time goes, from getStats() of its PeerConnections, per frame
 * over the last interval (ms): encode, the sender's pacer (mean packet send
 * delay), jitter buffer (and the delay it aimed for), decode; with the bitrate
 * sent (kbit/s), the frames decoded per second and dropped, the NACKs the
 * receiver sent and packets it lost in the interval,
 * and the RTT the sender measured (RTCP). Comparing the echo's with the floor's
 * shows which stage the echo's extra latency is in.
 */
export class PathStats {
  constructor(pcs) {
    this.pcs = pcs;
    this.last = null;
  }

  /** The numbers since the previous call (null on the first). */
  async sample() {
    const now = { at: performance.now(), out: {}, in: {}, remote: {} };
    for (const pc of this.pcs) {
      (await pc.getStats()).forEach((s) => {
        if (s.kind !== 'video') return;
        if (s.type === 'outbound-rtp') now.out = s;
        if (s.type === 'inbound-rtp') now.in = s;
        if (s.type === 'remote-inbound-rtp') now.remote = s;
      });
    }
    const last = this.last;
    this.last = now;
    if (!last) return null;
    const d = (side, key) => (now[side][key] ?? 0) - (last[side][key] ?? 0);
    const perFrame = (ms, frames) => (frames > 0 ? ms / frames : null);
    return {
      kbps: (d('out', 'bytesSent') * 8) / (now.at - last.at),
      encodeMs: perFrame(d('out', 'totalEncodeTime') * 1000, d('out', 'framesEncoded')),
      pacerMs: perFrame(d('out', 'totalPacketSendDelay') * 1000, d('out', 'packetsSent')),
      jitterBufferMs: perFrame(d('in', 'jitterBufferDelay') * 1000, d('in', 'jitterBufferEmittedCount')),
      jitterTargetMs: perFrame(d('in', 'jitterBufferTargetDelay') * 1000, d('in', 'jitterBufferEmittedCount')),
      decodeMs: perFrame(d('in', 'totalDecodeTime') * 1000, d('in', 'framesDecoded')),
      decodedFps: (d('in', 'framesDecoded') * 1000) / (now.at - last.at),
      dropped: d('in', 'framesDropped'),
      nacks: d('in', 'nackCount'),
      lost: d('in', 'packetsLost'),
      rttMs: now.remote.roundTripTime === undefined ? null : now.remote.roundTripTime * 1000,
      width: now.out.frameWidth ?? now.in.frameWidth ?? null,
    };
  }
}
