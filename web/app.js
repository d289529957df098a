// face-echo page: camera → face-api (in the page) → canvas with boxes and a frame
// code → WebRTC (VP8) → server → echo video. Drawing runs at video rate with the
// latest boxes; detection runs beside it, one pass at a time, and never holds a
// frame back. The echo's frame codes give the glass-to-glass latency.
// The loop closes over the `face-echo` data channel (loop.js): the page names the
// stamped frame its detector runs on and then what it found there, the server's
// detector takes that same frame, and the server's detections come back and are
// drawn (magenta) over the echo frame they belong to.
import { PageDetector } from '/detector.js';
import { ReportPacer, pageDetecting, pageDetections } from '/detections.js';
import { Floor, PathStats, overFloor } from '/floor.js';
import { FrameStamper, VideoLatency } from '/framecode.js';
import { LoopChannel, ServerOverlay } from '/loop.js';
import { Plot } from '/plots.js';
import { Signaling, preferVp8 } from '/signaling.js';

const $ = (id) => document.getElementById(id);
const camera = $('camera');
const canvas = $('canvas');
const echo = $('echo');
const ctx = canvas.getContext('2d');

// What automation (and curious people) can read.
const state = window.faceEcho = {
  state: 'idle', session: null, facesLastFrame: 0, maxFaces: 0,
  framesDrawn: 0, detections: 0, echoFramesRendered: 0, error: null, tap: null,
  viewers: 0,                 // people watching this session (/watch/<session>)
  serverFaces: null,          // faces the server's own detector (--detect) found, or null
  latencyMs: { p50: null, p95: null, samples: 0 },
  latencyFrames: [],          // [frame number, echo latency ms] of the last ~4 s, for benches
  detector: null,             // 'tiny' | 'ssd'
  backend: null,              // tfjs backend running the page's detector: 'wasm' | 'webgl' | 'cpu'
  backendProbeMs: {},         // ms per TinyFaceDetector pass in the start-up probe
  facesByDetector: { tiny: 0, ssd: 0 },  // most faces each detector found in one pass
  plots: {},                  // each plot's latest value
  // The closed loop (the `face-echo` data channel): its state and messages received,
  // the server's detections received, the server's boxes drawn over the echo now
  // (and how far behind the shown frame they are), and the agreement between the
  // page's detector and the server's as the server's `stats` say.
  dc: { state: 'closed', messages: 0, sent: 0, dropped: 0 },
  serverDetections: 0,
  serverFacesOnEcho: 0,
  serverBoxesAgeMs: null,
  serverBoxesAligned: null,   // true: by RTP timestamp; false: newest (no timestamp)
  // Frames both detectors ran on, compared: faces matched, found by one side only,
  // and the matched pairs' mean IoU as drawn and in one box convention.
  agreement: { frames: 0, matched: 0, pageOnly: 0, serverOnly: 0, meanIou: null, meanIouCalibrated: null },
  reportedFrames: 0,          // detection passes reported to the server (frame named, then faces)
  // The floor (floor.js): the same stream through an in-page loopback, timed the
  // same way; echo − floor per frame; and each path's stages (PathStats).
  floor: { enabled: false, state: 'off', latencyMs: { p50: null, p95: null, samples: 0 }, framesRendered: 0 },
  echoMinusFloorMs: { p50: null, p95: null, mean: null, frames: 0 },
  echoMinusFloorArrivalMs: { p50: null, p95: null, mean: null, frames: 0 }, // the same, at the last packet's arrival
  paths: { echo: null, floor: null },
};

// Tokens, when the server wants them: the publish token (--publish-token) from the
// URL fragment (#token=..., which browsers never send in requests) or asked for when
// the server answers `unauthorized`; the operator's (--admin-token, #admin=...) for
// the server's view. Kept for this tab only.
const TOKEN_KEY = 'faceEchoPublishToken';
const fragment = new URLSearchParams(location.hash.slice(1));
let publishToken = fragment.get('token') ?? sessionStorage.getItem(TOKEN_KEY);
const adminToken = fragment.get('admin');

// The server refused to let us publish: ask for the token, then start over with it.
function askForToken(message) {
  const token = prompt(`${message}\n\nThis server needs a token to publish. Token:`, '');
  if (!token) {
    stop('failed');
    showError('publishing needs a token: ask the operator, or open this page as /#token=<token>');
    return;
  }
  publishToken = token;
  sessionStorage.setItem(TOKEN_KEY, token);
  stop('stopped');
  start();
}

const detector = new PageDetector();
const stamper = new FrameStamper();
const sentWidth = () => canvas.width;
const floor = new Floor($('floor-video'), stamper, sentWidth);

let boxes = [];               // latest detection, in video pixels
let detecting = false;
let running = false;
let pc = null;
let signaling = null;
let loop = null;              // the current connection's LoopChannel
let drawHandle = null;
let detectTimes = [];         // completion times of recent detections, for detections/s
const pacer = new ReportPacer();
let serverDetectFps = null;   // the server's --detect-fps, from its stats: reports are paced to it
let lastDetectMs = null;
let echoLatency = null;      // the current echo's VideoLatency (the last ~4 s of frames)
let sent = null;              // the canvas stream being sent, which the floor sends too
let tapTimer = null;
let statsTimer = null;

const plotArea = $('plots');
const plots = {
  sendFps: new Plot(plotArea, 'send fps', 'fps', '#4c4'),
  echoFps: new Plot(plotArea, 'echo fps', 'fps', '#4af'),
  detectMs: new Plot(plotArea, 'detection', 'ms', '#fc4'),
  latency: new Plot(plotArea, 'echo latency p50', 'ms', '#f6a'),
  overFloor: new Plot(plotArea, 'echo − floor p50', 'ms', '#fa6'),
  bitrate: new Plot(plotArea, 'outbound bitrate', 'kbit/s', '#c8f'),
  rtt: new Plot(plotArea, 'ICE RTT', 'ms', '#8cc'),
  tapFps: new Plot(plotArea, 'server tap decoded', 'fps', '#f84'),
  agreement: new Plot(plotArea, 'agreement (mean IoU)', 'IoU', '#f0f'),
};

// The server's boxes over the echo, aligned to the frame shown.
const overlay = new ServerOverlay(echo, $('echo-overlay'), {
  onDraw: ({ faces, ageMs, fallback }) => {
    state.serverFacesOnEcho = faces;
    state.serverBoxesAgeMs = ageMs === null ? null : Math.round(ageMs);
    state.serverBoxesAligned = ageMs === null ? null : !fallback;
    $('server-boxes').textContent = ageMs === null
      ? '–'
      : `${faces} · ${Math.round(ageMs)} ms old${fallback ? ' (newest: no RTP timestamp)' : ''}`;
  },
});

function setState(value) {
  state.state = value;
  $('state').textContent = value;
}

function showError(message) {
  state.error = message;
  $('error').textContent = message;
  $('error').hidden = !message;
  if (message) console.warn('face-echo:', message);
}

// Draw the newest camera frame, the latest boxes and the frame code; at video rate.
function draw() {
  if (!running) return;
  if (camera.readyState >= 2) {
    if (canvas.width !== camera.videoWidth || canvas.height !== camera.videoHeight) {
      canvas.width = camera.videoWidth;
      canvas.height = camera.videoHeight;
    }
    ctx.drawImage(camera, 0, 0, canvas.width, canvas.height);
    ctx.lineWidth = Math.max(2, canvas.width / 200);
    ctx.strokeStyle = '#0f0';
    ctx.fillStyle = '#0f0';
    ctx.font = `${Math.max(12, canvas.width / 40)}px sans-serif`;
    for (const { x, y, width, height, score } of boxes) {
      ctx.strokeRect(x, y, width, height);
      ctx.fillText(score.toFixed(2), x, Math.max(12, y - 4));
    }
    const frame = stamper.stamp(ctx, canvas.width, canvas.height);
    state.framesDrawn++;
    detect(frame);
  }
  drawHandle = camera.requestVideoFrameCallback
    ? camera.requestVideoFrameCallback(draw)
    : requestAnimationFrame(draw);
}

// One detection at a time, never queued: a new pass starts only when the last ended,
// on the camera picture just drawn into frame `frame` (taken before any await). A
// reported pass names its frame first, so that the server's detector takes the same
// picture, then says what it found; passes are paced to the server's detection rate.
async function detect(frame) {
  if (detecting || !running) return;
  detecting = true;
  const picture = createImageBitmap(camera);
  const [width, height] = [canvas.width, canvas.height];
  const channel = detector.started && loop && pacer.take(performance.now(), serverDetectFps) ? loop : null;
  channel?.send(pageDetecting(frame));
  try {
    await detector.start(camera);
    showBackend();
    const started = performance.now();
    const used = detector.settings.detector;
    boxes = await detector.detect(await picture);
    const now = performance.now();
    if (channel && channel === loop && channel.send(pageDetections(frame, width, height, boxes, used))) {
      state.reportedFrames++;
    }
    if (channel) Object.assign(state.dc, { sent: channel.sent, dropped: channel.dropped });
    state.facesByDetector[used] = Math.max(state.facesByDetector[used], boxes.length);
    lastDetectMs = now - started;
    state.facesLastFrame = boxes.length;
    state.maxFaces = Math.max(state.maxFaces, boxes.length);
    state.detections++;
    detectTimes = detectTimes.filter((t) => now - t < 5000).concat(now);
    $('faces').textContent = $('page-faces').textContent = boxes.length;
    $('dps').textContent = (detectTimes.length / 5).toFixed(1);
    $('detect-ms').textContent = Math.round(lastDetectMs);
  } catch (err) {
    showError(`face detection failed: ${err.message ?? err}`);
  } finally {
    detecting = false;
  }
}

function showBackend() {
  state.backend = detector.backend;
  state.backendProbeMs = { ...detector.probe };
  state.detector = detector.settings.detector;
  const probe = Object.entries(detector.probe).map(([name, ms]) => `${name} ${Math.round(ms)} ms`).join(', ');
  $('backend').textContent = `${detector.backend}${probe ? ` (probe: ${probe})` : ''}`;
}

const p50p95 = ({ p50, p95 }) => `p50 ${Math.round(p50)} ms · p95 ${Math.round(p95)} ms`;

// Each echoed frame: count it, read its frame code, and time the round trip.
function watchEcho() {
  echoLatency = new VideoLatency(echo, stamper, sentWidth);
  echoLatency.start(() => {
    state.echoFramesRendered++;
    $('echo-frames').textContent = state.echoFramesRendered;
    state.latencyMs = echoLatency.summary();
    state.latencyFrames = [...echoLatency.byFrame];
    if (state.latencyMs.samples === 0) return;
    $('latency').textContent = p50p95(state.latencyMs);
    showFloor();
  });
}

// The floor on (checkbox or ?floor): the sent stream through the in-page loopback.
function startFloor() {
  floor.stop();
  state.floor = { ...state.floor, enabled: true, state: 'connecting' };
  $('floor-view').hidden = false;
  floor.start(sent, () => {
    state.floor.framesRendered++;
    $('floor-frames').textContent = state.floor.framesRendered;
    showFloor();
  }).catch((err) => { if (floor.sender) showError(`in-page loopback failed: ${err.message ?? err}`); });
}

function stopFloor() {
  floor.stop();
  state.floor = { ...state.floor, enabled: false, state: 'off' };
  state.paths.floor = null;
  state.echoMinusFloorMs = state.echoMinusFloorArrivalMs = { p50: null, p95: null, mean: null, frames: 0 };
  $('floor').textContent = $('over-floor').textContent = '–';
  $('floor-view').hidden = true;
}

// The floor's latency and echo − floor, frame by frame, after a frame on either path.
function showFloor() {
  if (!floor.sender || !echoLatency) return;
  state.floor.state = floor.state;
  state.floor.latencyMs = floor.latency.summary();
  state.echoMinusFloorMs = overFloor(echoLatency.byFrame, floor.latency.byFrame);
  state.echoMinusFloorArrivalMs = overFloor(echoLatency.arrivedByFrame, floor.latency.arrivedByFrame);
  if (state.floor.latencyMs.p50 !== null) $('floor').textContent = p50p95(state.floor.latencyMs);
  const over = state.echoMinusFloorMs;
  const arrival = state.echoMinusFloorArrivalMs;
  if (over.frames) {
    $('over-floor').textContent = `${p50p95(over)} · mean ${Math.round(over.mean)} ms` +
      (arrival.frames ? ` (at arrival: mean ${arrival.mean.toFixed(1)} ms)` : '');
  }
}

async function start() {
  $('start').disabled = true;
  $('stop').disabled = false;
  $('reconnect').hidden = true;
  showError(null);
  setState('starting');
  running = true;
  try {
    camera.srcObject = await navigator.mediaDevices.getUserMedia({
      video: { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 30 } },
      audio: false,
    });
  } catch (err) {
    const why = err?.name === 'NotAllowedError'
      ? 'the camera was refused: allow it for this page (browsers only offer it on https:// or localhost)'
      : `no camera: ${err.message ?? err}`;
    showError(why);
    stop('failed');
    return;
  }
  await camera.play().catch(() => {});
  draw();
  sent = canvas.captureStream(30);
  connect(sent);
  if ($('floor-on').checked) startFloor();
}

function connect(stream) {
  setState('connecting');
  // Handlers below touch only their own connection (`peer`), never a newer one
  // made by Reconnect: `peer !== pc` means this one is over.
  const peer = pc = new RTCPeerConnection({ iceServers: [] }); // no STUN: works offline
  const track = stream.getVideoTracks()[0];
  preferVp8(peer.addTransceiver(track, { direction: 'sendrecv', streams: [stream] }));
  // The data channel before the offer, so the offer negotiates it.
  loop = openLoop(peer);
  peer.ontrack = (event) => {
    if (peer !== pc || echo.srcObject) return;
    echo.srcObject = event.streams[0] ?? new MediaStream([event.track]);
    echo.play().catch(() => {});
  };
  peer.onconnectionstatechange = () => {
    if (peer !== pc || !running) return;
    setState(peer.connectionState);
    if (peer.connectionState === 'failed') lost('the media connection failed');
  };

  // After Stop/Reconnect the old Signaling is closed and silent.
  signaling = new Signaling(peer, {
    token: publishToken,
    offer: (sdp) => ({ type: 'offer', sdp }),
    onAnswer: (message) => {
      state.session = message.session;
      $('session').textContent = message.session;
      const share = $('share');
      share.href = `/watch/${message.watch}`;
      share.textContent = `${location.host}/watch/${message.watch}`;
      pollServer();
      pollStats();
    },
    onMessage: (message) => {
      if (message.type === 'error' && message.code === 'unauthorized') askForToken(message.message);
      else if (message.type === 'error' && message.code === 'server_full' && message.node && !fragment.has('retried')) {
        // --cluster: this node is full and names one with room; start there, once.
        fragment.set('retried', '1');
        location.assign(`${message.node}/#${fragment}`);
      } else if (message.type === 'error') showError(`server: ${message.code}: ${message.message}`);
    },
    onError: () => showError('signaling connection failed: is the server running?'),
    onClose: () => { if (running) lost('the server closed the connection'); },
  });
  watchEcho();
  overlay.start();
}

// What the server would say on the data channel, handed to the page as if it had:
// for tests and the console (`faceEchoLoop.receive('{"type":"detections",...}')`).
window.faceEchoLoop = { receive: (text) => loop?.receive(text) };

// The `face-echo` data channel of `peer`: counts into window.faceEcho, the
// server's detections to the overlay, its agreement numbers to the page.
function openLoop(peer) {
  state.dc = { state: 'connecting', messages: 0, sent: 0, dropped: 0 };
  const channel = new LoopChannel(peer, {
    onDetection: (detection) => {
      if (peer !== pc) return;
      state.serverDetections++;
      overlay.add(detection);
    },
    onStats: ({ agreement, detect }) => {
      if (peer !== pc) return;
      serverDetectFps = Number.isFinite(detect?.fps) ? detect.fps : null;
      state.agreement = agreement;
      const iou = (v) => (v === null ? '–' : v.toFixed(2));
      $('agreement').textContent = agreement.frames
        ? `${agreement.frames} frames compared · ${agreement.matched} faces matched · page only ` +
          `${agreement.pageOnly} · server only ${agreement.serverOnly} · mean IoU ${iou(agreement.meanIou)} ` +
          `(${iou(agreement.meanIouCalibrated)} in one box convention)`
        : 'no frames compared yet';
    },
    onError: ({ code, message }) => { if (peer === pc) console.warn(`face-echo: data channel: ${code}: ${message}`); },
    onChange: (c) => {
      if (peer !== pc) return;
      state.dc = { state: c.state, messages: c.messages, sent: c.sent, dropped: c.dropped };
      $('dc-state').textContent = c.state;
    },
  });
  state.dc.state = channel.state;
  $('dc-state').textContent = channel.state;
  return channel;
}

// The server went away (or the media failed): say so, and offer to start again.
function lost(why) {
  showError(`${why}; press Reconnect to start a new session`);
  stop('disconnected');
  $('reconnect').hidden = false;
}

// The server's view, about once a second: its decode tap's numbers and snapshot,
// and its own detector's faces.
function pollServer() {
  clearInterval(tapTimer);
  tapTimer = setInterval(async () => {
    if (!state.session) return;
    try {
      const headers = adminToken ? { Authorization: `Bearer ${adminToken}` } : {};
      const response = await fetch('/api/sessions', { headers });
      if (response.status === 401) {
        // --admin-token is set and we do not have it: the echo goes on without this view.
        clearInterval(tapTimer);
        $('tap').textContent = 'the server view needs the operator token (open the page as /#admin=<token>)';
        return;
      }
      const sessions = await response.json();
      const mine = sessions.find((s) => s.id === state.session);
      const tap = mine?.tap;
      state.tap = tap ?? null;
      state.viewers = mine?.viewers?.length ?? 0;
      $('viewers').textContent = state.viewers;
      const detect = mine?.detect;
      state.serverFaces = detect?.enabled ? detect.faces.length : null;
      $('server-faces').textContent = detect?.enabled
        ? `${detect.faces.length} (BlazeFace ${detect.model}, p50 ${detect.infer_ms_p50 ?? '–'} ms)`
        : 'off (--detect)';
      plots.tapFps.push(tap?.enabled ? tap.fps : null);
      if (!tap?.enabled) return;
      $('tap').textContent = `${tap.width}×${tap.height} · ${tap.fps} fps decoded · ` +
        `${tap.keyframes} keyframes · decode p50 ${tap.decode_us_p50 ?? '–'} µs · ` +
        `${tap.frames_incomplete} incomplete · ${tap.tap_packets_dropped} dropped`;
      if (tap.frames_decoded > 0) {
        const img = $('snapshot');
        const auth = adminToken ? `&token=${encodeURIComponent(adminToken)}` : '';
        img.src = `/api/sessions/${state.session}/snapshot.jpg?t=${Date.now()}${auth}`;
        img.hidden = false;
      }
    } catch { /* the server may be gone; the state line says so */ }
  }, 1000);
}

// WebRTC's own numbers once a second, with ours, into the plots.
function pollStats() {
  clearInterval(statsTimer);
  let last = null;
  const echoStats = new PathStats([pc]);
  statsTimer = setInterval(async () => {
    if (!pc) return;
    const report = await pc.getStats();
    let out = null;
    let rtt = null;
    report.forEach((s) => {
      if (s.type === 'outbound-rtp' && s.kind === 'video') out = s;
      if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded' && s.currentRoundTripTime !== undefined) {
        rtt = s.currentRoundTripTime * 1000;
      }
    });
    const now = { at: performance.now(), bytes: out?.bytesSent ?? 0, echoFrames: state.echoFramesRendered };
    if (last) {
      const seconds = (now.at - last.at) / 1000;
      plots.bitrate.push(((now.bytes - last.bytes) * 8) / 1000 / seconds);
      plots.echoFps.push((now.echoFrames - last.echoFrames) / seconds);
    }
    last = now;
    plots.sendFps.push(out?.framesPerSecond ?? null);
    plots.rtt.push(rtt);
    plots.detectMs.push(lastDetectMs);
    plots.latency.push(state.latencyMs.p50);
    plots.overFloor.push(floor.sender ? state.echoMinusFloorMs.p50 : null);
    state.paths.echo = await echoStats.sample().catch(() => null);
    state.paths.floor = await floor.stats?.sample().catch(() => null) ?? null;
    plots.agreement.push(state.agreement.frames ? state.agreement.meanIou : null);
    for (const plot of Object.values(plots)) state.plots[plot.name] = plot.latest();
  }, 1000);
}

function stopMedia() {
  running = false;
  clearInterval(tapTimer);
  clearInterval(statsTimer);
  if (drawHandle !== null && camera.cancelVideoFrameCallback) camera.cancelVideoFrameCallback(drawHandle);
  echoLatency?.stop();
  stopFloor();
  sent = null;
  overlay.stop();
  loop?.close();
  loop = null;
  state.dc = { ...state.dc, state: 'closed' };
  $('dc-state').textContent = 'closed';
  pc?.close();
  pc = null;
  camera.srcObject?.getTracks().forEach((t) => t.stop());
  camera.srcObject = null;
  echo.srcObject = null;
  $('start').disabled = false;
  $('stop').disabled = true;
}

function stop(finalState = 'stopped') {
  stopMedia();
  signaling?.close();
  signaling = null;
  setState(finalState);
}

// The page's detector controls.
function configureDetector() {
  detector.configure({
    detector: $('detector').value,
    inputSize: Number($('input-size').value),
    scoreThreshold: Number($('score').value),
  });
  state.detector = detector.settings.detector;
  $('score-value').textContent = Number($('score').value).toFixed(2);
  $('detector-label').textContent = detector.label;
  $('input-size').disabled = detector.settings.detector !== 'tiny';
}

$('start').onclick = start;
// The floor: asked for by ?floor in the URL, switched on and off while running.
$('floor-on').checked = new URLSearchParams(location.search).has('floor');
$('floor-on').onchange = () => {
  if (!running || !sent) return;   // not sending yet: start() looks at the box
  if ($('floor-on').checked) startFloor();
  else stopFloor();
};
if (fragment.has('retried')) start();   // sent here by a full node (--cluster)
$('stop').onclick = () => stop();
$('reconnect').onclick = () => { $('reconnect').hidden = true; start(); };
for (const id of ['detector', 'input-size', 'score']) $(id).oninput = configureDetector;
configureDetector();
