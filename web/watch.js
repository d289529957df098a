// face-echo viewer page: watch a live session, receive-only. The session's watch
// token is the last part of the URL (/watch/<token>); the server forwards the publisher's RTP, and
// over the `face-echo` data channel its own detections, drawn (magenta) over the
// frame they belong to, as on the publisher's echo.
import { LoopChannel, ServerOverlay } from '/loop.js';
import { Signaling } from '/signaling.js';

const $ = (id) => document.getElementById(id);
const video = $('video');
const session = decodeURIComponent(location.pathname.split('/').filter(Boolean).pop() ?? '');

// What automation can read.
const state = window.faceEchoViewer = {
  state: 'idle', session, frames: 0, error: null,
  dc: { state: 'closed', messages: 0 },
  serverDetections: 0,        // detections messages received
  serverFacesOnEcho: 0,       // server boxes drawn over the video now
  serverBoxesAgeMs: null,
  agreement: { frames: 0, matched: 0, pageOnly: 0, serverOnly: 0, meanIou: null, meanIouCalibrated: null },
};

let pc = null;
let signaling = null;
let loop = null;
// Watching needs only the link's watch token. Should a server ever want its publish
// token here too, it comes from the fragment (#token=...) or a prompt.
let token = new URLSearchParams(location.hash.slice(1)).get('token');

const overlay = new ServerOverlay(video, $('overlay'), {
  onDraw: ({ faces, ageMs, fallback }) => {
    state.serverFacesOnEcho = faces;
    state.serverBoxesAgeMs = ageMs === null ? null : Math.round(ageMs);
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
  $('error').textContent = message ?? '';
  $('error').hidden = !message;
}

function countFrames() {
  if (!video.requestVideoFrameCallback) return;
  const onFrame = () => {
    state.frames++;
    $('frames').textContent = state.frames;
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
}

function stop(finalState, why) {
  if (why) showError(why);
  overlay.stop();
  loop?.close();
  loop = null;
  state.dc = { ...state.dc, state: 'closed' };
  pc?.close();
  pc = null;
  signaling?.close();
  signaling = null;
  setState(finalState);
  $('rewatch').hidden = false;
}

function watch() {
  $('rewatch').hidden = true;
  showError(null);
  setState('connecting');
  // Handlers touch only their own connection: after "Watch again", `peer !== pc`.
  const peer = pc = new RTCPeerConnection({ iceServers: [] }); // no STUN: works offline
  const transceiver = peer.addTransceiver('video', { direction: 'recvonly' });
  const codecs = RTCRtpReceiver.getCapabilities?.('video')?.codecs ?? [];
  const vp8 = codecs.filter((c) => c.mimeType.toLowerCase() === 'video/vp8');
  if (vp8.length && transceiver.setCodecPreferences) transceiver.setCodecPreferences(vp8);
  // The data channel before the offer; the server's detections come in on it.
  state.dc = { state: 'connecting', messages: 0 };
  loop = new LoopChannel(peer, {
    onDetection: (detection) => {
      if (peer !== pc) return;
      state.serverDetections++;
      overlay.add(detection);
    },
    onStats: ({ agreement }) => { if (peer === pc) state.agreement = agreement; },
    onChange: (c) => {
      if (peer !== pc) return;
      state.dc = { state: c.state, messages: c.messages };
    },
  });
  peer.ontrack = (event) => {
    if (peer !== pc) return;
    video.srcObject = event.streams[0] ?? new MediaStream([event.track]);
    video.play().catch(() => {});
  };
  peer.onconnectionstatechange = () => { if (peer === pc) setState(peer.connectionState); };

  // After "Watch again" the old Signaling is closed and silent.
  signaling = new Signaling(peer, {
    token,
    offer: (sdp) => ({ type: 'watch', session, sdp }),
    onMessage: (message) => {
      if (message.type === 'error' && message.code === 'unauthorized') {
        const given = prompt(`${message.message}\n\nToken:`, '');
        stop('refused', given ? null : `server: ${message.code}: ${message.message}`);
        if (given) { token = given; watch(); }
      } else if (message.type === 'error' && message.code === 'elsewhere' && message.node) {
        // --cluster: the session lives on another node; watch it there.
        stop('redirected', null);
        location.replace(`${message.node}/watch/${encodeURIComponent(session)}${location.hash}`);
      } else if (message.type === 'error') {
        const final = { publisher_left: 'ended', no_such_session: 'ended', viewers_full: 'refused', server_full: 'refused' };
        if (final[message.code]) stop(final[message.code], `server: ${message.code}: ${message.message}`);
        else showError(`server: ${message.code}: ${message.message}`);
      }
    },
    onClose: () => { if (pc === peer) stop('disconnected', 'the server closed the connection'); },
  });
  overlay.start();
}

// What the server would say on the data channel, for tests and the console.
window.faceEchoLoop = { receive: (text) => loop?.receive(text) };

$('session').textContent = session;
$('rewatch').onclick = watch;
countFrames();
watch();
