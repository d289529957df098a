// face-echo page: camera → face-api (in the page) → canvas with boxes → WebRTC (VP8)
// → server → echo video. Drawing runs at video rate with the latest boxes; detection
// runs beside it, one pass at a time, and never holds a frame back.
import * as faceapi from '/vendor/face-api/face-api.esm.js';

const $ = (id) => document.getElementById(id);
const camera = $('camera');
const canvas = $('canvas');
const echo = $('echo');
const ctx = canvas.getContext('2d');

// What automation (and curious people) can read.
const state = window.faceEcho = {
  state: 'idle', session: null, facesLastFrame: 0, maxFaces: 0,
  framesDrawn: 0, detections: 0, echoFramesRendered: 0, error: null, tap: null,
  serverFaces: null, // faces the server's own detector (--detect) found, or null
};

const DETECTOR = new faceapi.TinyFaceDetectorOptions({ inputSize: 416, scoreThreshold: 0.5 });
let modelReady = null;
let boxes = [];           // latest detection, in video pixels
let detecting = false;
let running = false;
let pc = null;
let ws = null;
let drawHandle = null;
let detectTimes = [];     // completion times of recent detections, for detections/s
let tapTimer = null;

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

function loadModel() {
  modelReady ??= faceapi.nets.tinyFaceDetector.loadFromUri('/models/face-api');
  return modelReady;
}

// Draw the newest camera frame plus the latest boxes; at video rate.
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
    state.framesDrawn++;
    detect();
  }
  drawHandle = camera.requestVideoFrameCallback
    ? camera.requestVideoFrameCallback(draw)
    : requestAnimationFrame(draw);
}

// One detection at a time, never queued: a new pass starts only when the last ended.
async function detect() {
  if (detecting || !running) return;
  detecting = true;
  const started = performance.now();
  try {
    await loadModel();
    const found = await faceapi.detectAllFaces(camera, DETECTOR);
    // face-api's Box keeps x/y/width/height behind getters: copy them out.
    boxes = found.map(({ box, score }) => ({ x: box.x, y: box.y, width: box.width, height: box.height, score }));
    state.facesLastFrame = boxes.length;
    state.maxFaces = Math.max(state.maxFaces, boxes.length);
    state.detections++;
    const now = performance.now();
    detectTimes = detectTimes.filter((t) => now - t < 5000).concat(now);
    $('faces').textContent = $('page-faces').textContent = boxes.length;
    $('dps').textContent = (detectTimes.length / 5).toFixed(1);
    $('detect-ms').textContent = Math.round(now - started);
  } catch (err) {
    showError(`face detection failed: ${err.message ?? err}`);
  } finally {
    detecting = false;
  }
}

function countEchoFrames() {
  if (!echo.requestVideoFrameCallback) return;
  const onFrame = () => {
    state.echoFramesRendered++;
    $('echo-frames').textContent = state.echoFramesRendered;
    echo.requestVideoFrameCallback(onFrame);
  };
  echo.requestVideoFrameCallback(onFrame);
}

function send(message) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message));
}

async function start() {
  $('start').disabled = true;
  $('stop').disabled = false;
  showError(null);
  setState('starting');
  running = true;
  try {
    camera.srcObject = await navigator.mediaDevices.getUserMedia({
      video: { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 30 } },
      audio: false,
    });
  } catch (err) {
    showError(`camera refused or missing: ${err.message ?? err}`);
    stop('failed');
    return;
  }
  await camera.play().catch(() => {});
  draw();
  loadModel().catch((err) => showError(`could not load the face model: ${err.message ?? err}`));
  connect(canvas.captureStream(30));
}

function connect(stream) {
  setState('connecting');
  pc = new RTCPeerConnection({ iceServers: [] }); // no STUN: works offline
  const track = stream.getVideoTracks()[0];
  const transceiver = pc.addTransceiver(track, { direction: 'sendrecv', streams: [stream] });
  const codecs = RTCRtpSender.getCapabilities?.('video')?.codecs ?? [];
  const vp8 = codecs.filter((c) => c.mimeType.toLowerCase() === 'video/vp8');
  if (vp8.length && transceiver.setCodecPreferences) {
    transceiver.setCodecPreferences([...vp8, ...codecs.filter((c) => !vp8.includes(c))]);
  }
  pc.ontrack = (event) => {
    if (echo.srcObject) return;
    echo.srcObject = event.streams[0] ?? new MediaStream([event.track]);
    echo.play().catch(() => {});
  };
  pc.onicecandidate = (event) => send({ type: 'ice', candidate: event.candidate ? event.candidate.toJSON() : null });
  pc.onconnectionstatechange = () => {
    if (running) setState(pc.connectionState);
  };

  const pending = [];   // remote candidates that came before the answer
  const proto = location.protocol === 'https:' ? 'wss' : 'ws';
  ws = new WebSocket(`${proto}://${location.host}/ws`);
  ws.onopen = async () => {
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    send({ type: 'offer', sdp: pc.localDescription.sdp });
  };
  ws.onmessage = async (event) => {
    const message = JSON.parse(event.data);
    if (message.type === 'answer') {
      state.session = message.session;
      $('session').textContent = message.session;
      await pc.setRemoteDescription({ type: 'answer', sdp: message.sdp });
      for (const candidate of pending.splice(0)) await pc.addIceCandidate(candidate).catch(() => {});
      pollTap();
    } else if (message.type === 'ice' && message.candidate) {
      if (pc.remoteDescription) await pc.addIceCandidate(message.candidate).catch(() => {});
      else pending.push(message.candidate);
    } else if (message.type === 'error') {
      showError(`server: ${message.code}: ${message.message}`);
    }
  };
  ws.onerror = () => showError('signaling connection failed: is the server running?');
  ws.onclose = () => {
    if (running) {
      setState('closed');
      stopMedia();
    }
  };
  countEchoFrames();
}

// The server's view: its decode tap's numbers and snapshot, about once a second.
function pollTap() {
  clearInterval(tapTimer);
  tapTimer = setInterval(async () => {
    if (!state.session) return;
    try {
      const sessions = await (await fetch('/api/sessions')).json();
      const mine = sessions.find((s) => s.id === state.session);
      const tap = mine?.tap;
      state.tap = tap ?? null;
      const detect = mine?.detect;
      state.serverFaces = detect?.enabled ? detect.faces.length : null;
      $('server-faces').textContent = detect?.enabled
        ? `${detect.faces.length} (BlazeFace ${detect.model}, p50 ${detect.infer_ms_p50 ?? '–'} ms)`
        : 'off (--detect)';
      if (!tap?.enabled) return;
      $('tap').textContent = `${tap.width}×${tap.height} · ${tap.fps} fps decoded · ` +
        `${tap.keyframes} keyframes · decode p50 ${tap.decode_us_p50 ?? '–'} µs · ` +
        `${tap.frames_incomplete} incomplete · ${tap.tap_packets_dropped} dropped`;
      if (tap.frames_decoded > 0) {
        const img = $('snapshot');
        img.src = `/api/sessions/${state.session}/snapshot.jpg?t=${Date.now()}`;
        img.hidden = false;
      }
    } catch { /* the server may be gone; the state line says so */ }
  }, 1000);
}

function stopMedia() {
  running = false;
  clearInterval(tapTimer);
  if (drawHandle !== null && camera.cancelVideoFrameCallback) camera.cancelVideoFrameCallback(drawHandle);
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
  const socket = ws;
  ws = null;
  socket?.close();
  setState(finalState);
}

$('start').onclick = start;
$('stop').onclick = () => stop();
