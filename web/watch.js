// face-echo viewer page: watch a live session, receive-only. The session id is the
// last part of the URL (/watch/<id>); the server forwards the publisher's RTP.
const $ = (id) => document.getElementById(id);
const video = $('video');
const session = decodeURIComponent(location.pathname.split('/').filter(Boolean).pop() ?? '');

// What automation can read.
const state = window.faceEchoViewer = { state: 'idle', session, frames: 0, error: null };

let pc = null;
let ws = null;
// Watching needs only the link's watch token. Should a server ever want its publish
// token here too, it comes from the fragment (#token=...) or a prompt.
let token = new URLSearchParams(location.hash.slice(1)).get('token');

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
  pc?.close();
  pc = null;
  const socket = ws;
  ws = null;
  socket?.close();
  setState(finalState);
  $('rewatch').hidden = false;
}

function watch() {
  $('rewatch').hidden = true;
  showError(null);
  setState('connecting');
  pc = new RTCPeerConnection({ iceServers: [] }); // no STUN: works offline
  const transceiver = pc.addTransceiver('video', { direction: 'recvonly' });
  const codecs = RTCRtpReceiver.getCapabilities?.('video')?.codecs ?? [];
  const vp8 = codecs.filter((c) => c.mimeType.toLowerCase() === 'video/vp8');
  if (vp8.length && transceiver.setCodecPreferences) transceiver.setCodecPreferences(vp8);
  pc.ontrack = (event) => {
    video.srcObject = event.streams[0] ?? new MediaStream([event.track]);
    video.play().catch(() => {});
  };
  const send = (message) => ws?.readyState === WebSocket.OPEN && ws.send(JSON.stringify(message));
  pc.onicecandidate = (event) => send({ type: 'ice', candidate: event.candidate ? event.candidate.toJSON() : null });
  const peer = pc;
  pc.onconnectionstatechange = () => { if (pc === peer) setState(peer.connectionState); };

  const pending = [];
  const proto = location.protocol === 'https:' ? 'wss' : 'ws';
  const query = token ? `?token=${encodeURIComponent(token)}` : '';
  const socket = ws = new WebSocket(`${proto}://${location.host}/ws${query}`);
  // After "Watch again" an old socket may still talk: only the current one counts.
  const current = () => ws === socket;
  ws.onopen = async () => {
    await pc.setLocalDescription(await pc.createOffer());
    send({ type: 'watch', session, sdp: pc.localDescription.sdp });
  };
  ws.onmessage = async (event) => {
    if (!current()) return;
    const message = JSON.parse(event.data);
    if (message.type === 'answer') {
      await pc.setRemoteDescription({ type: 'answer', sdp: message.sdp });
      for (const candidate of pending.splice(0)) await pc.addIceCandidate(candidate).catch(() => {});
    } else if (message.type === 'ice' && message.candidate) {
      if (pc.remoteDescription) await pc.addIceCandidate(message.candidate).catch(() => {});
      else pending.push(message.candidate);
    } else if (message.type === 'error' && message.code === 'unauthorized') {
      const given = prompt(`${message.message}\n\nToken:`, '');
      stop('refused', given ? null : `server: ${message.code}: ${message.message}`);
      if (given) { token = given; watch(); }
    } else if (message.type === 'error') {
      const final = { publisher_left: 'ended', no_such_session: 'ended', viewers_full: 'refused', server_full: 'refused' };
      if (final[message.code]) stop(final[message.code], `server: ${message.code}: ${message.message}`);
      else showError(`server: ${message.code}: ${message.message}`);
    }
  };
  ws.onclose = () => { if (current() && pc) stop('disconnected', 'the server closed the connection'); };
}

$('session').textContent = session;
$('rewatch').onclick = watch;
countFrames();
watch();
