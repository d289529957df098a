#!/usr/bin/env python3
"""Interop client: Python aiortc publishes VP8 to face-echo and counts the echo.

Usage: aiortc_echo.py --url ws://127.0.0.1:PORT/ws [--seconds 6] [--min-frames 30]

Publishes a synthetic moving 320x240 ~30 fps pattern as VP8 (the only codec offered),
signals over the server's WebSocket (offer with candidates in the SDP, trickled server
candidates applied as they come), decodes the track the server sends back in the same
PeerConnection and counts its frames. Prints one JSON line; exits 0 iff the answer
arrived and at least --min-frames echoed frames were decoded, else 1.
"""

import argparse
import asyncio
import json
import sys
import time
import urllib.parse
import urllib.request

import aioice.ice
import av
import websockets
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription, VideoStreamTrack
from aiortc.mediastreams import MediaStreamError
from aiortc.sdp import candidate_from_sdp

WIDTH, HEIGHT = 320, 240


# TEST-ONLY: aioice deliberately leaves 127.0.0.1 out of the host candidates it gathers
# (aioice.ice.get_host_addresses skips it and has no option to keep it). face-echo bound
# to 127.0.0.1 offers only loopback candidates and ignores non-loopback ones, and these
# tests must send traffic to loopback only, so gather exactly one host candidate:
# 127.0.0.1. Connection.gather_candidates looks the function up in the module at call
# time, so replacing the module attribute is enough.
def _loopback_only(use_ipv4: bool, use_ipv6: bool) -> list:
    return ["127.0.0.1"] if use_ipv4 else []


aioice.ice.get_host_addresses = _loopback_only


class PatternTrack(VideoStreamTrack):
    """A moving pattern: diagonal luma gradient scrolling, plus a bright square bouncing."""

    def __init__(self) -> None:
        super().__init__()
        self.n = 0
        # A long gradient row; row y of frame n is the slice starting at shift(n) + y,
        # with shift < 2 * WIDTH, so it needs 2 * WIDTH + HEIGHT + WIDTH bytes.
        self._ramp = bytes((x * 2) & 0xFF for x in range(3 * WIDTH + HEIGHT))

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
        y_plane, u_plane, v_plane = frame.planes
        stride = y_plane.line_size
        shift = (self.n * 4) % (2 * WIDTH)
        rows = []
        for y in range(HEIGHT):
            row = self._ramp[shift + y : shift + y + WIDTH]
            rows.append(row + bytes(stride - WIDTH))
        luma = bytearray(b"".join(rows))
        # Bouncing 48x48 white square.
        side = 48
        period_x, period_y = 2 * (WIDTH - side), 2 * (HEIGHT - side)
        bx = (self.n * 5) % period_x
        by = (self.n * 3) % period_y
        bx = bx if bx < WIDTH - side else period_x - bx
        by = by if by < HEIGHT - side else period_y - by
        white = b"\xeb" * side
        for y in range(by, by + side):
            luma[y * stride + bx : y * stride + bx + side] = white
        y_plane.update(bytes(luma))
        # Chroma: a slowly changing tint.
        u_plane.update(bytes([(96 + self.n) & 0xFF]) * u_plane.buffer_size)
        v_plane.update(bytes([(160 - self.n) & 0xFF]) * v_plane.buffer_size)
        frame.pts = pts
        frame.time_base = time_base
        self.n += 1
        return frame


def api_sessions(ws_url: str):
    """The server's /api/sessions (same host and port as the WebSocket), or None."""
    parts = urllib.parse.urlsplit(ws_url)
    scheme = "https" if parts.scheme == "wss" else "http"
    url = f"{scheme}://{parts.netloc}/api/sessions"
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return json.loads(resp.read().decode())
    except Exception as exc:  # diagnostics only
        return {"error": str(exc)}


async def run(args) -> dict:
    summary = {
        "client": "aiortc",
        "answer": False,
        "session": None,
        "connection_state": None,
        "frames_sent": 0,
        "echo_frames": 0,
        "echo_size": None,
        "remote_candidates": 0,
        "server_errors": [],
        "server_echo": None,
    }
    pc = RTCPeerConnection()
    track = PatternTrack()
    transceiver = pc.addTransceiver(track, direction="sendrecv")
    vp8 = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType.lower() == "video/vp8"]
    transceiver.setCodecPreferences(vp8)

    first_frame_at = None
    answer_at = None
    recv_task = None

    async def consume(remote) -> None:
        nonlocal first_frame_at
        while True:
            try:
                frame = await remote.recv()
            except MediaStreamError:
                return
            if first_frame_at is None:
                first_frame_at = time.monotonic()
            summary["echo_frames"] += 1
            summary["echo_size"] = [frame.width, frame.height]

    @pc.on("track")
    def on_track(remote) -> None:
        nonlocal recv_task
        if remote.kind == "video" and recv_task is None:
            recv_task = asyncio.ensure_future(consume(remote))

    # aiortc gathers every candidate inside setLocalDescription, so the offer carries
    # them (non-trickle); no client ice messages are needed.
    await pc.setLocalDescription(await pc.createOffer())
    offer_sdp = pc.localDescription.sdp
    if args.verbose:
        print("--- offer ---\n" + offer_sdp, file=sys.stderr)

    try:
        async with websockets.connect(args.url, open_timeout=5, max_size=2**20) as ws:
            await ws.send(json.dumps({"type": "offer", "sdp": offer_sdp}))
            pending = []  # candidates that arrived before the answer

            async def apply(cand: dict) -> None:
                line = cand.get("candidate") or ""
                if not line:
                    return
                c = candidate_from_sdp(line.split(":", 1)[1] if line.startswith("candidate:") else line)
                c.sdpMid = cand.get("sdpMid")
                c.sdpMLineIndex = cand.get("sdpMLineIndex")
                await pc.addIceCandidate(c)
                summary["remote_candidates"] += 1

            async def signaling() -> None:
                nonlocal answer_at
                async for raw in ws:
                    msg = json.loads(raw)
                    kind = msg.get("type")
                    if kind == "answer":
                        if args.verbose:
                            print("--- answer ---\n" + msg["sdp"], file=sys.stderr)
                        await pc.setRemoteDescription(RTCSessionDescription(sdp=msg["sdp"], type="answer"))
                        answer_at = time.monotonic()
                        summary["answer"] = True
                        summary["session"] = msg.get("session")
                        for cand in pending:
                            await apply(cand)
                        pending.clear()
                    elif kind == "ice":
                        cand = msg.get("candidate")
                        if cand is None:
                            continue
                        if summary["answer"]:
                            await apply(cand)
                        else:
                            pending.append(cand)
                    elif kind == "error":
                        summary["server_errors"].append(msg)
                        print(f"aiortc_echo: server error: {msg}", file=sys.stderr)
                    else:
                        print(f"aiortc_echo: unexpected message: {msg}", file=sys.stderr)

            sig_task = asyncio.ensure_future(signaling())
            try:
                # Wait for the answer (bounded), then let media flow for --seconds.
                deadline = time.monotonic() + args.answer_timeout
                while not summary["answer"] and time.monotonic() < deadline and not sig_task.done():
                    await asyncio.sleep(0.05)
                if summary["answer"]:
                    # Count echoed frames for --seconds from the moment the answer arrived.
                    await asyncio.sleep(args.seconds)
                    summary["connection_state"] = pc.connectionState
                    summary["server_echo"] = api_sessions(args.url)
            finally:
                if sig_task.done() and sig_task.exception() is not None:
                    summary["signaling_error"] = repr(sig_task.exception())
                sig_task.cancel()
    except Exception as exc:
        summary["exception"] = f"{type(exc).__name__}: {exc}"
    finally:
        summary["frames_sent"] = track.n
        if summary["connection_state"] is None:
            summary["connection_state"] = pc.connectionState
        await pc.close()
        if recv_task is not None:
            recv_task.cancel()
    if first_frame_at is not None and answer_at is not None:
        summary["first_echo_after_answer_s"] = round(first_frame_at - answer_at, 3)
    return summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="signaling WebSocket, e.g. ws://127.0.0.1:8080/ws")
    ap.add_argument("--seconds", type=float, default=6.0, help="how long to publish after the answer")
    ap.add_argument("--min-frames", type=int, default=30, help="echo frames needed to pass")
    ap.add_argument("--answer-timeout", type=float, default=10.0)
    ap.add_argument("--timeout", type=float, default=45.0, help="hard limit for the whole run")
    ap.add_argument("-v", "--verbose", action="store_true", help="print offer/answer SDP to stderr")
    args = ap.parse_args()

    try:
        summary = asyncio.run(asyncio.wait_for(run(args), args.timeout))
    except asyncio.TimeoutError:
        print(json.dumps({"client": "aiortc", "ok": False, "error": f"timed out after {args.timeout}s"}))
        print(f"aiortc_echo: FAIL: timed out after {args.timeout}s", file=sys.stderr)
        return 1
    ok = summary["answer"] and summary["echo_frames"] >= args.min_frames
    summary["ok"] = ok
    print(json.dumps(summary))
    if "exception" in summary:
        print(f"aiortc_echo: error: {summary['exception']}", file=sys.stderr)
    if "signaling_error" in summary:
        print(f"aiortc_echo: signaling error: {summary['signaling_error']}", file=sys.stderr)
    if not summary["answer"]:
        print("aiortc_echo: FAIL: no answer from the server", file=sys.stderr)
    elif not ok:
        print(
            f"aiortc_echo: FAIL: {summary['echo_frames']} echo frames in {args.seconds}s, "
            f"need {args.min_frames} (connection {summary['connection_state']})",
            file=sys.stderr,
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
