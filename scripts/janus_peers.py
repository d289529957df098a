#!/usr/bin/env python3
"""N aiortc echo peers in one process, against Janus's EchoTest or face-echo.

Usage (scripts/bench-janus.sh runs it; it needs the venv of tests/interop/run.sh):

  janus_peers.py --server janus --url http://127.0.0.1:PORT/janus --peers 8 --seconds 20 --server-pid PID
  janus_peers.py --server face-echo --url ws://127.0.0.1:PORT/ws --peers 8 --seconds 20 --server-pid PID

Each peer publishes the same 320x240@30 VP8 moving pattern (tests/interop/aiortc_echo.py's
PatternTrack, encoded once at 500 kbit/s into a 2 s clip whose first frame is a keyframe, then
looped; aiortc only packetizes it, so sending costs the client little, like `face-echo loadgen`)
and receives the echo on the same PeerConnection. Signaling: Janus over its HTTP API (create,
attach janus.plugin.echotest, message with the offer, long-poll for the answer and keep polling,
which also keeps the session alive); face-echo over its /ws WebSocket, kept open.

Counting, the same for both servers: every RTP packet aiortc's receiver takes in on the echo
track, split by payload type into media (VP8) and RTX; "echoed packets" are the media ones.
Sent packets are the sender's original RTP packets (not retransmissions). Echoed frames are the
frames aiortc decoded from the echo.

Once every peer has received --min-echo echoed packets, it waits --settle seconds, then measures
a load window of --seconds: the server's utime+stime (/proc/PID/stat) and this process's, and
the packet counters, at both ends. Then it stops sending, waits 1 s for the last echoes, and
reports loss over the whole session (sent - echoed, totals). Prints one JSON line; exits 0
iff every peer echoed.
"""

import argparse
import asyncio
import fractions
import json
import os
import random
import sys
import time
import urllib.parse
from pathlib import Path

import aioice.ice
import av
import websockets
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender, RTCSessionDescription, VideoStreamTrack
from aiortc.codecs import is_rtx
from aiortc.mediastreams import MediaStreamError
from aiortc.rtp import RTCP_PSFB_APP, RTCP_PSFB_FIR, RTCP_PSFB_PLI, RTCP_RTPFB_NACK, RtcpPsfbPacket
from aiortc.rtp import RtcpRrPacket, RtcpRtpfbPacket, RtcpSrPacket
from aiortc.sdp import candidate_from_sdp

# The interop client's pattern, and its aioice patch (loopback-only host candidates).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "interop"))
from aiortc_echo import HEIGHT, WIDTH, PatternTrack  # noqa: E402

FPS = 30
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- counting, by wrapping aiortc's receive and feedback paths -----------------------------
class Counts:
    def __init__(self) -> None:
        self.media = 0  # echoed RTP packets (the VP8 payload type)
        self.rtx = 0  # retransmissions the server sent us
        self.frames = 0  # frames decoded from the echo
        self.feedback = {"nack": 0, "pli": 0, "fir": 0, "remb": 0, "rr": 0, "other": 0}


_receive_rtp = RTCRtpReceiver._handle_rtp_packet
_receive_rtcp = RTCRtpSender._handle_rtcp_packet


async def _counting_rtp(self, packet, arrival_time_ms):
    counts = getattr(self, "echo_counts", None)
    if counts is not None:
        codec = self._RTCRtpReceiver__codecs.get(packet.payload_type)
        if codec is not None and is_rtx(codec):
            counts.rtx += 1
        elif codec is not None:
            counts.media += 1
    return await _receive_rtp(self, packet, arrival_time_ms)


async def _counting_rtcp(self, packet):
    counts = getattr(self, "echo_counts", None)
    if counts is not None:
        if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            kind = "nack"
        elif isinstance(packet, RtcpPsfbPacket):
            kind = {RTCP_PSFB_PLI: "pli", RTCP_PSFB_FIR: "fir", RTCP_PSFB_APP: "remb"}.get(packet.fmt, "other")
        elif isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
            kind = "rr"
        else:
            kind = "other"
        counts.feedback[kind] += 1
    return await _receive_rtcp(self, packet)


RTCRtpReceiver._handle_rtp_packet = _counting_rtp
RTCRtpSender._handle_rtcp_packet = _counting_rtcp


# --- the looped clip -----------------------------------------------------------------------
class _ClipSource(PatternTrack):
    """PatternTrack's pictures, unpaced (the clip is encoded once, up front), with a band of
    noise on top: the plain pattern compresses to ~200 kbit/s, the band brings the clip to
    ~500 kbit/s, ~2 RTP packets a frame, like `face-echo loadgen`'s clip."""

    NOISE_ROWS = 16

    def __init__(self) -> None:
        super().__init__()
        self.noise = random.Random(13)

    async def next_timestamp(self):
        return self.n, fractions.Fraction(1, FPS)

    async def recv(self):
        frame = await super().recv()
        luma = frame.planes[0]
        band = self.NOISE_ROWS * luma.line_size
        luma.update(self.noise.randbytes(band) + bytes(luma)[band:])
        return frame


async def encode_clip(frames: int, bitrate: int) -> list:
    """`frames` pictures as VP8 frames (bytes) at a constant `bitrate`; only the first is a keyframe."""
    ctx = av.CodecContext.create("libvpx", "w")
    ctx.width, ctx.height, ctx.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    ctx.bit_rate = bitrate
    ctx.time_base = fractions.Fraction(1, FPS)
    ctx.framerate = fractions.Fraction(FPS, 1)
    ctx.gop_size = 3000
    rate = str(bitrate)  # minrate = maxrate: constant bitrate, as aiortc's own encoder does
    ctx.options = {
        **{"deadline": "realtime", "cpu-used": "4", "lag-in-frames": "0"},
        **{"minrate": rate, "maxrate": rate, "bufsize": rate},
    }
    source = _ClipSource()
    clip = []
    for _ in range(frames):
        clip += [bytes(p) for p in ctx.encode(await source.recv())]
    clip += [bytes(p) for p in ctx.encode(None)]
    return clip


class LoopTrack(VideoStreamTrack):
    """Sends the encoded clip in a loop at 30 fps (aiortc packetizes pre-encoded av.Packets)."""

    def __init__(self, clip: list) -> None:
        super().__init__()
        self.clip = clip
        self.n = 0

    async def recv(self):
        pts, time_base = await self.next_timestamp()
        packet = av.Packet(self.clip[self.n % len(self.clip)])
        packet.pts, packet.time_base = pts, time_base
        self.n += 1
        return packet


# --- signaling -----------------------------------------------------------------------------
async def http_json(url: str, body=None, timeout: float = 45.0):
    """One HTTP/1.1 request (POST with a JSON body, or GET), the JSON reply. Its own connection,
    so N peers' long polls don't queue behind a thread pool."""
    parts = urllib.parse.urlsplit(url)
    async with asyncio.timeout(5):
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        data = b"" if body is None else json.dumps(body).encode()
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        head = f"{'GET' if body is None else 'POST'} {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        head += "Connection: close\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
        writer.write(head.encode() + b"\r\n" + data)
        async with asyncio.timeout(timeout):
            raw = await reader.read()
    finally:
        writer.close()
    header, _, payload = raw.partition(b"\r\n\r\n")
    status = header.split(b" ", 2)[1] if header.count(b" ") >= 2 else b"?"
    if b"transfer-encoding: chunked" in header.lower():
        body_bytes, rest = b"", payload
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0] or b"0", 16)
            if size == 0:
                break
            body_bytes, rest = body_bytes + rest[:size], rest[size + 2 :]
        payload = body_bytes
    if status != b"200":
        raise RuntimeError(f"{url}: HTTP {status.decode(errors='replace')}: {payload[:200]!r}")
    return json.loads(payload)


def _tx() -> str:
    return f"{random.getrandbits(64):x}"


class JanusSignaling:
    """A Janus session with one EchoTest handle; polls events until closed."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")
        self.session = None
        self.poller = None
        self.events = asyncio.Queue()
        self.closing = False

    async def call(self, path: str, body: dict) -> dict:
        reply = await http_json(self.base + path, {**body, "transaction": _tx()})
        if reply.get("janus") == "error":
            raise RuntimeError(f"janus error: {reply.get('error')}")
        return reply

    async def answer(self, offer_sdp: str, timeout: float) -> str:
        self.session = (await self.call("", {"janus": "create"}))["data"]["id"]
        self.poller = asyncio.ensure_future(self._poll())
        handle = (await self.call(f"/{self.session}", {"janus": "attach", "plugin": "janus.plugin.echotest"}))[
            "data"
        ]["id"]
        offer = {"type": "offer", "sdp": offer_sdp}
        body = {"audio": False, "video": True}
        await self.call(f"/{self.session}/{handle}", {"janus": "message", "body": body, "jsep": offer})
        deadline = time.monotonic() + timeout
        while True:
            event = await asyncio.wait_for(self.events.get(), max(0.1, deadline - time.monotonic()))
            if event.get("janus") == "event" and event.get("jsep", {}).get("type") == "answer":
                return event["jsep"]["sdp"]
            if event.get("janus") in ("hangup", "detached", "error"):
                raise RuntimeError(f"janus: {event}")

    async def _poll(self) -> None:
        # A long poll returns an event, or a keepalive after 30 s; every GET refreshes the session.
        while not self.closing:
            try:
                event = await http_json(f"{self.base}/{self.session}?maxev=1&rid={_tx()}")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                print(f"janus_peers: poll: {exc}", file=sys.stderr)
                await asyncio.sleep(1)
                continue
            if event.get("janus") != "keepalive":
                await self.events.put(event)

    async def close(self) -> None:
        self.closing = True
        if self.poller is not None:
            self.poller.cancel()
            # Not unbounded: a poll that ends as it is cancelled can swallow the cancellation (and
            # `closing` then stops the loop after at most one more 30 s poll).
            try:
                async with asyncio.timeout(2):
                    await asyncio.gather(self.poller, return_exceptions=True)
            except TimeoutError:
                pass
        if self.session is not None:
            try:
                await http_json(f"{self.base}/{self.session}", {"janus": "destroy", "transaction": _tx()}, 5)
            except Exception:
                pass


class FaceEchoSignaling:
    """face-echo's /ws: offer out, answer and trickled candidates in; open for the whole run."""

    def __init__(self, url: str, pc: RTCPeerConnection) -> None:
        self.url, self.pc = url, pc
        self.ws = None
        self.reader = None

    async def answer(self, offer_sdp: str, timeout: float) -> str:
        self.ws = await websockets.connect(self.url, open_timeout=5, max_size=2**20)
        await self.ws.send(json.dumps({"type": "offer", "sdp": offer_sdp}))
        pending = []
        async with asyncio.timeout(timeout):
            async for raw in self.ws:
                msg = json.loads(raw)
                if msg.get("type") == "answer":
                    await self.pc.setRemoteDescription(RTCSessionDescription(sdp=msg["sdp"], type="answer"))
                    for cand in pending:
                        await self._apply(cand)
                    self.reader = asyncio.ensure_future(self._read())
                    return None  # already applied: candidates must follow it
                if msg.get("type") == "ice" and msg.get("candidate"):
                    pending.append(msg["candidate"])
                elif msg.get("type") == "error":
                    raise RuntimeError(f"face-echo: {msg}")
        raise RuntimeError("face-echo closed the WebSocket before answering")

    async def _apply(self, cand: dict) -> None:
        line = cand.get("candidate") or ""
        if line:
            c = candidate_from_sdp(line.split(":", 1)[1] if line.startswith("candidate:") else line)
            c.sdpMid, c.sdpMLineIndex = cand.get("sdpMid"), cand.get("sdpMLineIndex")
            await self.pc.addIceCandidate(c)

    async def _read(self) -> None:
        async for raw in self.ws:
            msg = json.loads(raw)
            if msg.get("type") == "ice" and msg.get("candidate"):
                await self._apply(msg["candidate"])

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
        if self.ws is not None:
            await self.ws.close()


# --- one peer ------------------------------------------------------------------------------
class Peer:
    def __init__(self, args, clip: list) -> None:
        self.pc = RTCPeerConnection()
        self.counts = Counts()
        self.transceiver = self.pc.addTransceiver(LoopTrack(clip), direction="sendrecv")
        vp8 = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType.lower() == "video/vp8"]
        vp8 += [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType.lower() == "video/rtx"]
        self.transceiver.setCodecPreferences(vp8)
        self.transceiver.receiver.echo_counts = self.counts
        self.transceiver.sender.echo_counts = self.counts
        if args.server == "janus":
            self.signaling = JanusSignaling(args.url)
        else:
            self.signaling = FaceEchoSignaling(args.url, self.pc)
        self.answer_sdp = None
        self.consumer = None
        self.pc.on("track", self._on_track)

    def _on_track(self, remote) -> None:
        if remote.kind == "video" and self.consumer is None:
            self.consumer = asyncio.ensure_future(self._consume(remote))

    async def _consume(self, remote) -> None:
        while True:
            try:
                await remote.recv()
            except MediaStreamError:
                return
            self.counts.frames += 1

    async def connect(self, timeout: float) -> None:
        # aiortc gathers in setLocalDescription: the offer carries its candidates.
        await self.pc.setLocalDescription(await self.pc.createOffer())
        answer = await self.signaling.answer(self.pc.localDescription.sdp, timeout)
        if answer is not None:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        self.answer_sdp = self.pc.remoteDescription.sdp

    def sent(self) -> int:
        return self.transceiver.sender._RTCRtpSender__packet_count

    async def close(self) -> None:
        await self.pc.close()
        if self.consumer is not None:
            self.consumer.cancel()
        await self.signaling.close()


def negotiated(sdp: str) -> dict:
    """What the answer enabled on the video m-line: RTCP feedback, RTX, header extensions."""
    lines = [line.strip() for line in sdp.splitlines()]
    rtpmap = {}
    for line in lines:
        if line.startswith("a=rtpmap:"):
            pt, _, name = line[len("a=rtpmap:") :].partition(" ")
            rtpmap[pt] = name.split("/")[0].upper()
    vp8 = [pt for pt, name in rtpmap.items() if name == "VP8"]
    feedback = sorted(
        {line.split(" ", 1)[1] for line in lines if vp8 and line.startswith(f"a=rtcp-fb:{vp8[0]} ")}
        | {line.split(" ", 1)[1] for line in lines if line.startswith("a=rtcp-fb:* ")}
    )
    extensions = sorted({line.split(" ", 1)[1].split("/")[-1] for line in lines if line.startswith("a=extmap:")})
    return {
        "rtcp_fb": feedback,
        "rtx": "RTX" in rtpmap.values(),
        "extmap": extensions,
    }


def cpu_seconds(pid) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return None


def snapshot(peers: list, server_pid) -> dict:
    return {
        "t": time.monotonic(),
        "server_cpu": cpu_seconds(server_pid) if server_pid else None,
        "client_cpu": cpu_seconds("self"),
        "sent": [p.sent() for p in peers],
        "media": [p.counts.media for p in peers],
        "rtx": [p.counts.rtx for p in peers],
        "frames": [p.counts.frames for p in peers],
        "feedback": [dict(p.counts.feedback) for p in peers],
    }


async def run(args, summary: dict) -> dict:
    clip = await encode_clip(2 * FPS, args.bitrate * 1000)
    summary["clip_bytes_per_s"] = round(sum(map(len, clip)) * FPS / len(clip))
    peers = [Peer(args, clip) for _ in range(args.peers)]
    try:
        started = time.monotonic()
        summary["phase"] = "connect"
        # A few at a time: face-echo refuses a 9th signaling socket from one address that has no
        # session yet (--max-pending-per-ip 8).
        gate = asyncio.Semaphore(4)

        async def connect(peer: Peer) -> None:
            async with gate:
                await peer.connect(args.connect_timeout)

        results = await asyncio.gather(*(connect(p) for p in peers), return_exceptions=True)
        errors = [f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)]
        if errors:
            summary["error"] = f"{len(errors)} of {args.peers} peers failed to connect: {errors[0]}"
            return summary
        summary["negotiated"] = negotiated(peers[0].answer_sdp)
        if args.answer_out:
            Path(args.answer_out).write_text(peers[0].answer_sdp)
        summary["phase"] = "wait for echoes"
        deadline = time.monotonic() + args.connect_timeout
        while min(p.counts.media for p in peers) < args.min_echo:
            if time.monotonic() > deadline:
                silent = sum(p.counts.media < args.min_echo for p in peers)
                summary["error"] = f"{silent} of {args.peers} peers got < {args.min_echo} echoed packets"
                summary["connection_states"] = sorted({p.pc.connectionState for p in peers})
                return summary
            await asyncio.sleep(0.1)
        summary["all_echoing_after_s"] = round(time.monotonic() - started, 2)
        summary["phase"] = "window"
        await asyncio.sleep(args.settle)
        a = snapshot(peers, args.server_pid)
        await asyncio.sleep(args.seconds)
        b = snapshot(peers, args.server_pid)
        summary["phase"] = "drain"
        # Loss over the whole session: stop sending, let the last echoes arrive, compare totals.
        for p in peers:
            p.transceiver.sender.replaceTrack(None)
        await asyncio.sleep(1.0)
        sent_total, echoed_total = sum(p.sent() for p in peers), sum(p.counts.media for p in peers)
    finally:
        summary["phase"] = "close"
        await asyncio.gather(*(p.close() for p in peers), return_exceptions=True)

    window = b["t"] - a["t"]
    diff = {k: [y - x for x, y in zip(a[k], b[k])] for k in ("sent", "media", "rtx", "frames")}
    sent, echoed = sum(diff["sent"]), sum(diff["media"])
    feedback = {k: sum(fb[k] for fb in b["feedback"]) - sum(fb[k] for fb in a["feedback"]) for k in a["feedback"][0]}
    summary.update(
        ok=True,
        seconds=round(window, 3),
        packets_sent=sent,
        packets_echoed=echoed,
        rtx_received=sum(diff["rtx"]),
        frames_echoed=sum(diff["frames"]),
        echoed_pps=round(echoed / window, 1),
        echoed_fps=round(sum(diff["frames"]) / window, 1),
        min_peer_echoed_fps=round(min(diff["frames"]) / window, 1),
        session_packets_sent=sent_total,
        session_packets_lost=sent_total - echoed_total,
        loss=(sent_total - echoed_total) / sent_total if sent_total else None,
        feedback_from_server=feedback,
        client_cpu_percent=round(100 * (b["client_cpu"] - a["client_cpu"]) / window, 1),
    )
    if args.server_pid:
        server_cpu = b["server_cpu"] - a["server_cpu"]
        summary.update(
            server_cpu_s=round(server_cpu, 2),
            server_cpu_percent=round(100 * server_cpu / window, 1),
            server_cpu_us_per_packet=round(1e6 * server_cpu / echoed, 2) if echoed else None,
            server_rss_mb=round(rss_mb(args.server_pid), 1),
        )
    return summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", choices=["janus", "face-echo"], required=True)
    ap.add_argument("--url", required=True, help="Janus: http://HOST:PORT/janus; face-echo: ws://HOST:PORT/ws")
    ap.add_argument("--peers", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=20.0, help="the load window")
    ap.add_argument("--server-pid", type=int, help="the server process whose CPU to measure")
    ap.add_argument("--bitrate", type=int, default=500, help="the clip's target bitrate, kbit/s")
    ap.add_argument("--min-echo", type=int, default=30, help="echoed packets every peer needs first")
    ap.add_argument("--settle", type=float, default=2.0, help="seconds between all echoing and the window")
    ap.add_argument("--connect-timeout", type=float, default=60.0)
    ap.add_argument(
        "--client-address", default="127.0.0.1", help="the one host candidate address the peers gather"
    )
    ap.add_argument("--answer-out", help="write the first peer's answer SDP to this file")
    args = ap.parse_args()
    # aiortc_echo's patch gathers 127.0.0.1 only; Janus never gathers on loopback, and its
    # libnice does not pair its host address with our 127.0.0.1, so meet it on its address.
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: [args.client_address] if use_ipv4 else []
    summary = {"server": args.server, "peers": args.peers, "ok": False, "phase": "encode"}
    limit = 2 * args.connect_timeout + args.settle + args.seconds + 30
    try:
        asyncio.run(asyncio.wait_for(run(args, summary), limit))
        summary.pop("phase")
    except asyncio.TimeoutError:
        summary.update(ok=False, error=f"timed out after {limit:.0f} s in phase {summary.get('phase')}")
    print(json.dumps(summary))
    if not summary["ok"]:
        print(f"janus_peers: FAIL: {summary.get('error')}", file=sys.stderr)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
