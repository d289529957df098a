#!/usr/bin/env python3
"""Interop client: GStreamer webrtcbin publishes VP8 to face-echo and counts the echo.

Usage: gst_echo.py --url ws://127.0.0.1:PORT/ws [--seconds 6] [--min-frames 30]

Pipeline: videotestsrc (live, moving ball) 320x240@30 -> vp8enc -> rtpvp8pay -> webrtcbin.
The echo the server sends back in the same PeerConnection appears as a webrtcbin src pad;
it is decoded (rtpvp8depay ! vp8dec) and every decoded frame is counted. Signaling runs
on asyncio (the `websockets` package) in the main thread; the GLib main loop runs in a
second thread. webrtcbin trickles its candidates; the server's trickled candidates are
applied once the answer is set. Prints one JSON line; exits 0 iff the answer arrived and
at least --min-frames echoed frames were decoded, else 1. Needs Debian's python3-gi and
GStreamer (see run.sh), so run it with a venv made with --system-site-packages.
"""

import argparse
import asyncio
import ctypes
import ctypes.util
import json
import os
import re
import sys
import threading
import time
import urllib.parse
import urllib.request

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

import websockets  # noqa: E402

PIPELINE = (
    "webrtcbin name=webrtc bundle-policy=max-bundle latency=100 "
    "videotestsrc is-live=true pattern=ball "
    "! video/x-raw,width=320,height=240,framerate=30/1 "
    "! videoconvert ! queue "
    "! vp8enc deadline=1 keyframe-max-dist=60 target-bitrate=500000 "
    "! rtpvp8pay pt=96 picture-id-mode=15-bit "
    "! application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000 "
    "! tee name=sent ! queue ! webrtc. "
    "sent. ! queue ! fakesink name=sentcount sync=false async=false signal-handoffs=true"
)


def log(msg: str) -> None:
    print(f"gst_echo: {msg}", file=sys.stderr, flush=True)


def api_sessions(ws_url: str):
    """The server's /api/sessions (same host and port as the WebSocket), or an error dict."""
    parts = urllib.parse.urlsplit(ws_url)
    scheme = "https" if parts.scheme == "wss" else "http"
    try:
        with urllib.request.urlopen(f"{scheme}://{parts.netloc}/api/sessions", timeout=2) as resp:
            return json.loads(resp.read().decode())
    except Exception as exc:  # diagnostics only
        return {"error": str(exc)}


def webrtcbin_ice_agent(webrtc):
    """webrtcbin's ICE agent, with webrtcbin's own reference to it kept valid.

    GStreamer 1.22's webrtcbin keeps its GstWebRTCNice with the floating reference it was
    created with; the first time PyGObject wraps it, it sinks that reference and so takes
    it over, and when the wrapper goes away the agent is freed under webrtcbin (CRITICALs,
    then a segfault once ICE starts). When only one reference exists after wrapping, give
    webrtcbin back the one it thinks it holds. Versions that sink it themselves show two
    references here and are left alone.
    """
    ice = webrtc.get_property("ice-agent")
    if ice.__grefcount__ == 1:
        get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
        get_pointer.restype = ctypes.c_void_p
        get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
        gobject = ctypes.CDLL(ctypes.util.find_library("gobject-2.0"))
        gobject.g_object_ref.restype = ctypes.c_void_p
        gobject.g_object_ref.argtypes = [ctypes.c_void_p]
        gobject.g_object_ref(get_pointer(ice.__gpointer__, None))
    return ice


class GstPeer:
    """webrtcbin and its pipeline. GStreamer callbacks hand events to asyncio via `post`."""

    def __init__(self, aloop: asyncio.AbstractEventLoop, verbose: bool) -> None:
        self.aloop = aloop
        self.verbose = verbose
        self.events: asyncio.Queue = asyncio.Queue()
        self.lock = threading.Lock()
        self.local_set = threading.Event()  # our offer is the local description
        self.echo_frames = 0
        self.rtp_sent = 0
        self.echo_size = None
        self.first_echo_at = None
        self.mids: list = []
        self.errors: list = []

        self.pipe = Gst.parse_launch(PIPELINE)
        self.webrtc = self.pipe.get_by_name("webrtc")
        # TEST-ONLY loopback ICE: libnice leaves loopback interfaces out of the host
        # candidates it gathers. face-echo on 127.0.0.1 offers and accepts only loopback
        # candidates, and these tests must only send to loopback, so give the agent
        # exactly one local address (once any is added, libnice gathers on those only).
        ice = webrtcbin_ice_agent(self.webrtc)
        ice.emit("add-local-ip-address", "127.0.0.1")
        ice.set_property("ice-tcp", False)

        self.webrtc.connect("on-negotiation-needed", self._on_negotiation_needed)
        self.webrtc.connect("on-ice-candidate", self._on_ice_candidate)
        self.webrtc.connect("notify::ice-gathering-state", self._on_gathering_state)
        self.webrtc.connect("notify::connection-state", self._on_state)
        self.webrtc.connect("notify::ice-connection-state", self._on_state)
        self.webrtc.connect("pad-added", self._on_pad_added)
        self.pipe.get_by_name("sentcount").connect("handoff", self._on_sent)

        bus = self.pipe.get_bus()
        bus.add_signal_watch()
        bus.connect("message::error", self._on_bus_error)
        bus.connect("message::warning", self._on_bus_warning)

    # -- GStreamer thread side --------------------------------------------------

    def post(self, *event) -> None:
        self.aloop.call_soon_threadsafe(self.events.put_nowait, event)

    def _on_bus_error(self, _bus, msg) -> None:
        err, dbg = msg.parse_error()
        self.errors.append(f"{msg.src.get_name()}: {err.message}")
        self.post("gst-error", f"{msg.src.get_name()}: {err.message} ({dbg})")

    def _on_bus_warning(self, _bus, msg) -> None:
        err, dbg = msg.parse_warning()
        if self.verbose:
            log(f"warning from {msg.src.get_name()}: {err.message} ({dbg})")

    def _on_negotiation_needed(self, element) -> None:
        promise = Gst.Promise.new_with_change_func(self._on_offer_created, element, None)
        element.emit("create-offer", None, promise)

    def _on_offer_created(self, promise, element, _data) -> None:
        promise.wait()
        reply = promise.get_reply()
        offer = reply.get_value("offer") if reply is not None else None
        if offer is None:
            self.post("gst-error", f"create-offer failed: {reply.to_string() if reply else 'no reply'}")
            return
        sdp = offer.sdp.as_text()
        self.mids = re.findall(r"^a=mid:(\S+)", sdp, flags=re.M)
        # Post the offer before setting it locally, so it is sent before any candidate;
        # set_answer waits for the local description, since a fast server's answer can
        # arrive before webrtcbin has applied it ("not in the correct state (stable)").
        self.post("offer", sdp)
        element.emit(
            "set-local-description", offer, Gst.Promise.new_with_change_func(self._on_local_set, None)
        )

    def _on_local_set(self, _promise, _data) -> None:
        self.local_set.set()

    def _on_ice_candidate(self, _element, mline_index, candidate) -> None:
        self.post("local-candidate", int(mline_index), candidate)

    def _on_gathering_state(self, element, _pspec) -> None:
        state = element.get_property("ice-gathering-state")
        if state == GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            self.post("gathering-complete")

    def _on_state(self, element, pspec) -> None:
        if self.verbose:
            log(f"{pspec.name}: {element.get_property(pspec.name).value_nick}")

    def _on_sent(self, _sink, _buffer, _pad) -> None:
        with self.lock:
            self.rtp_sent += 1

    def _on_pad_added(self, _element, pad) -> None:
        if pad.get_direction() != Gst.PadDirection.SRC:
            return
        caps = pad.get_current_caps() or pad.query_caps(None)
        if self.verbose:
            log(f"echo pad {pad.get_name()}: {caps.to_string() if caps else '?'}")
        decode = Gst.parse_bin_from_description(
            "queue ! rtpvp8depay ! vp8dec ! fakesink name=echosink sync=false async=false",
            True,
        )
        self.pipe.add(decode)
        decode.sync_state_with_parent()
        sinkpad = decode.get_by_name("echosink").get_static_pad("sink")
        sinkpad.add_probe(Gst.PadProbeType.BUFFER, self._on_echo_frame)
        res = pad.link(decode.get_static_pad("sink"))
        if res != Gst.PadLinkReturn.OK:
            self.post("gst-error", f"linking echo pad failed: {res.value_nick}")
            return
        self.post("echo-pad", caps.to_string() if caps else None)

    def _on_echo_frame(self, pad, info):
        with self.lock:
            self.echo_frames += 1
            if self.first_echo_at is None:
                self.first_echo_at = time.monotonic()
            if self.echo_size is None:
                caps = pad.get_current_caps()
                if caps is not None and caps.get_size() > 0:
                    s = caps.get_structure(0)
                    self.echo_size = [s.get_int("width")[1], s.get_int("height")[1]]
        return Gst.PadProbeReturn.OK

    # -- called from asyncio ----------------------------------------------------

    def start(self) -> None:
        if self.pipe.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            raise RuntimeError("pipeline refused to go to PLAYING")

    def set_answer(self, sdp_text: str) -> None:
        if not self.local_set.wait(10):
            raise ValueError("webrtcbin never applied its own offer")
        res, sdp = GstSdp.SDPMessage.new_from_text(sdp_text)
        if res != GstSdp.SDPResult.OK:
            raise ValueError(f"cannot parse answer SDP: {res}")
        answer = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, sdp)
        promise = Gst.Promise.new()
        self.webrtc.emit("set-remote-description", answer, promise)
        promise.wait()  # webrtcbin answers from its own thread; this is quick
        reply = promise.get_reply()
        if reply is not None and reply.has_field("error"):
            raise ValueError(f"set-remote-description failed: {reply.get_value('error')}")

    def add_remote_candidate(self, cand: dict) -> None:
        line = cand.get("candidate") or ""
        if not line:
            return
        index = cand.get("sdpMLineIndex")
        if index is None:
            mid = cand.get("sdpMid")
            index = self.mids.index(mid) if mid in self.mids else 0
        self.webrtc.emit("add-ice-candidate", int(index), line)

    def stop(self) -> None:
        self.pipe.set_state(Gst.State.NULL)
        self.pipe.get_bus().remove_signal_watch()


async def run(args, summary: dict) -> None:
    aloop = asyncio.get_running_loop()
    peer = GstPeer(aloop, args.verbose)
    summary["_peer"] = peer
    answer_at = None
    async with websockets.connect(args.url, open_timeout=5, max_size=2**20) as ws:
        pending_remote = []
        peer.start()

        async def from_server() -> None:
            nonlocal answer_at
            async for raw in ws:
                msg = json.loads(raw)
                kind = msg.get("type")
                if kind == "answer":
                    if args.verbose:
                        log("--- answer ---\n" + msg["sdp"])
                    peer.set_answer(msg["sdp"])
                    answer_at = time.monotonic()
                    summary["answer"] = True
                    summary["session"] = msg.get("session")
                    for cand in pending_remote:
                        peer.add_remote_candidate(cand)
                        summary["remote_candidates"] += 1
                    pending_remote.clear()
                elif kind == "ice":
                    cand = msg.get("candidate")
                    if cand is None:
                        continue
                    if summary["answer"]:
                        peer.add_remote_candidate(cand)
                        summary["remote_candidates"] += 1
                    else:
                        pending_remote.append(cand)
                elif kind == "error":
                    summary["server_errors"].append(msg)
                    log(f"server error: {msg}")
                else:
                    log(f"unexpected message: {msg}")

        async def to_server() -> None:
            while True:
                event = await peer.events.get()
                kind = event[0]
                if kind == "offer":
                    if args.verbose:
                        log("--- offer ---\n" + event[1])
                    await ws.send(json.dumps({"type": "offer", "sdp": event[1]}))
                elif kind == "local-candidate":
                    index, line = event[1], event[2]
                    mid = peer.mids[index] if index < len(peer.mids) else None
                    summary["local_candidates"] += 1
                    await ws.send(
                        json.dumps(
                            {
                                "type": "ice",
                                "candidate": {"candidate": line, "sdpMid": mid, "sdpMLineIndex": index},
                            }
                        )
                    )
                elif kind == "gathering-complete":
                    await ws.send(json.dumps({"type": "ice", "candidate": None}))
                elif kind == "echo-pad":
                    summary["echo_caps"] = event[1]
                elif kind == "gst-error":
                    log(f"GStreamer error: {event[1]}")
                    summary["gst_errors"].append(event[1])

        tasks = [asyncio.ensure_future(from_server()), asyncio.ensure_future(to_server())]
        try:
            deadline = time.monotonic() + args.answer_timeout
            while not summary["answer"] and time.monotonic() < deadline:
                if any(t.done() for t in tasks):
                    break
                await asyncio.sleep(0.05)
            if summary["answer"]:
                end = time.monotonic() + args.seconds
                while time.monotonic() < end and not any(t.done() for t in tasks):
                    await asyncio.sleep(0.1)
                summary["server_echo"] = api_sessions(args.url)
        finally:
            for t in tasks:
                if t.done() and not t.cancelled() and t.exception() is not None:
                    summary["signaling_error"] = f"{type(t.exception()).__name__}: {t.exception()}"
                t.cancel()
            summary["connection_state"] = peer.webrtc.get_property("connection-state").value_nick
            with peer.lock:
                if peer.first_echo_at is not None and answer_at is not None:
                    summary["first_echo_after_answer_s"] = round(peer.first_echo_at - answer_at, 3)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="signaling WebSocket, e.g. ws://127.0.0.1:8080/ws")
    ap.add_argument("--seconds", type=float, default=6.0, help="how long to publish after the answer")
    ap.add_argument("--min-frames", type=int, default=30, help="echo frames needed to pass")
    ap.add_argument("--answer-timeout", type=float, default=10.0)
    ap.add_argument("--timeout", type=float, default=45.0, help="hard limit for the whole run")
    ap.add_argument("-v", "--verbose", action="store_true", help="print SDP and state changes to stderr")
    args = ap.parse_args()

    # Last resort: whatever wedges (a GStreamer state change, a socket), never hang.
    def watchdog() -> None:
        print(json.dumps({"client": "gstreamer", "ok": False, "error": "watchdog: process hung"}), flush=True)
        log(f"FAIL: hung for {args.timeout + 15}s, exiting")
        os._exit(1)

    dog = threading.Timer(args.timeout + 15, watchdog)
    dog.daemon = True
    dog.start()

    Gst.init(None)
    missing = [e for e in ("webrtcbin", "vp8enc", "vp8dec", "rtpvp8pay", "rtpvp8depay", "videotestsrc", "nicesrc")
               if Gst.ElementFactory.find(e) is None]
    if missing:
        print(json.dumps({"client": "gstreamer", "ok": False, "error": f"missing elements {missing}"}))
        log(f"FAIL: GStreamer elements missing: {', '.join(missing)} (install the packages run.sh lists)")
        return 1

    glib_loop = GLib.MainLoop()
    glib_thread = threading.Thread(target=glib_loop.run, name="glib", daemon=True)
    glib_thread.start()

    summary = {
        "client": "gstreamer",
        "answer": False,
        "session": None,
        "connection_state": None,
        "rtp_packets_sent": 0,
        "echo_frames": 0,
        "echo_size": None,
        "local_candidates": 0,
        "remote_candidates": 0,
        "server_errors": [],
        "gst_errors": [],
        "server_echo": None,
    }
    try:
        asyncio.run(asyncio.wait_for(run(args, summary), args.timeout))
    except asyncio.TimeoutError:
        summary["exception"] = f"timed out after {args.timeout}s"
    except Exception as exc:
        summary["exception"] = f"{type(exc).__name__}: {exc}"
    finally:
        peer = summary.pop("_peer", None)
        if peer is not None:
            peer.stop()
            with peer.lock:
                summary["echo_frames"] = peer.echo_frames
                summary["echo_size"] = peer.echo_size
                summary["rtp_packets_sent"] = peer.rtp_sent
        glib_loop.quit()
        glib_thread.join(timeout=5)

    ok = bool(summary["answer"]) and summary["echo_frames"] >= args.min_frames
    summary["ok"] = ok
    print(json.dumps(summary), flush=True)
    if "exception" in summary:
        log(f"error: {summary['exception']}")
    if "signaling_error" in summary:
        log(f"signaling error: {summary['signaling_error']}")
    if not summary["answer"]:
        log("FAIL: no answer from the server")
    elif not ok:
        log(
            f"FAIL: {summary['echo_frames']} echo frames in {args.seconds}s, need {args.min_frames} "
            f"(connection {summary['connection_state']})"
        )
    dog.cancel()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
