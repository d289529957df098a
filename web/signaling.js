// Signaling for both pages (publisher and viewer): one WebSocket to /ws carrying
// JSON text frames (src/session/signaling.rs has the protocol), the offer sent when it
// opens, the answer applied, and ICE trickled both ways (remote candidates that
// come before the answer wait for it).
//
// One Signaling object serves one RTCPeerConnection. After close() — Stop,
// Reconnect, Watch again — it is silent: an old socket's late messages, errors
// and close never reach the page or touch a newer connection.

/** The signaling URL for this page: ws(s)://<host>/ws, with ?token= when given. */
export function signalingUrl(token, loc = location) {
  const proto = loc.protocol === 'https:' ? 'wss' : 'ws';
  const query = token ? `?token=${encodeURIComponent(token)}` : '';
  return `${proto}://${loc.host}/ws${query}`;
}

/** Puts VP8 first in `transceiver`'s codec list (the server echoes VP8 only). */
export function preferVp8(transceiver) {
  const codecs = RTCRtpSender.getCapabilities?.('video')?.codecs ?? [];
  const vp8 = codecs.filter((c) => c.mimeType.toLowerCase() === 'video/vp8');
  if (vp8.length && transceiver.setCodecPreferences) {
    transceiver.setCodecPreferences([...vp8, ...codecs.filter((c) => !vp8.includes(c))]);
  }
}

export class Signaling {
  /**
   * Opens the socket for `pc` and negotiates.
   * - `token`: the publish token for the URL, if any.
   * - `offer(sdp)`: the message that carries our offer ({type:'offer', sdp} or
   *   {type:'watch', session, sdp}); sent once the socket is open.
   * - `onAnswer(message)`: after the answer is applied (and waiting candidates added).
   * - `onMessage(message)`: every other message (errors, ...), parsed.
   * - `onError()`, `onClose()`: the socket failed / closed while still current.
   */
  constructor(pc, { token = null, offer, onAnswer = () => {}, onMessage = () => {}, onError = () => {}, onClose = () => {} }) {
    this.pc = pc;
    this.closed = false;
    this.pending = [];          // remote candidates that came before the answer
    this.ws = new WebSocket(signalingUrl(token));
    pc.onicecandidate = (event) => {
      if (this.closed) return;
      this.send({ type: 'ice', candidate: event.candidate ? event.candidate.toJSON() : null });
    };
    this.ws.onopen = async () => {
      if (this.closed) return;
      try {
        await pc.setLocalDescription(await pc.createOffer());
        if (!this.closed) this.send(offer(pc.localDescription.sdp));
      } catch (err) {
        if (!this.closed) onMessage({ type: 'error', code: 'local', message: `cannot make an offer: ${err.message ?? err}` });
      }
    };
    this.ws.onmessage = async (event) => {
      if (this.closed) return;
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;                 // not ours to understand; the server only sends JSON
      }
      if (message?.type === 'answer') {
        try {
          await pc.setRemoteDescription({ type: 'answer', sdp: message.sdp });
        } catch (err) {
          if (!this.closed) onMessage({ type: 'error', code: 'local', message: `bad answer: ${err.message ?? err}` });
          return;
        }
        for (const candidate of this.pending.splice(0)) await pc.addIceCandidate(candidate).catch(() => {});
        if (!this.closed) onAnswer(message);
      } else if (message?.type === 'ice') {
        if (!message.candidate) return;
        if (pc.remoteDescription) await pc.addIceCandidate(message.candidate).catch(() => {});
        else this.pending.push(message.candidate);
      } else if (message && typeof message === 'object') {
        onMessage(message);
      }
    };
    this.ws.onerror = () => { if (!this.closed) onError(); };
    this.ws.onclose = () => { if (!this.closed) onClose(); };
  }

  /** Sends one message if the socket is open (dropped otherwise). */
  send(message) {
    if (!this.closed && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  /** Closes the socket; nothing more is sent or reported. */
  close() {
    this.closed = true;
    if (this.pc.onicecandidate) this.pc.onicecandidate = null;
    this.ws.close();
  }
}
