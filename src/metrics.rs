//! Process-wide Prometheus metrics, served as text on `/metrics`.
//!
//! Counters are bumped on the hot path, so they are plain atomics (prometheus-client's
//! `Counter`); per-session numbers live in [`crate::session::echo::EchoStats`] instead.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Every metric the server exports.
pub struct Metrics {
    registry: Registry,
    pub sessions_active: Gauge,
    pub sessions_total: Counter,
    /// Sessions by what their media arrives over now (`udp`, `tcp`), set when scraped.
    pub sessions_by_transport: Family<[(&'static str, &'static str); 1], Gauge>,
    pub rtp_packets_received: Counter,
    /// Of those, handled by a session's media plane: every one, since the plane is
    /// the only media path.
    pub rtp_packets_on_plane: Counter,
    pub rtp_packets_forwarded: Counter,
    pub rtp_bytes_forwarded: Counter,
    pub rtp_forward_errors: Counter,
    pub plis_relayed: Counter,
    pub signaling_errors: Counter,
    pub tap_frames_decoded: Counter,
    pub tap_keyframes: Counter,
    pub tap_decode_errors: Counter,
    pub tap_packets_dropped: Counter,
    pub tap_frames_refused: Counter,
    pub tap_slow_decodes: Counter,
    pub record_frames: Counter,
    pub record_dropped: Counter,
    pub record_errors: Counter,
    /// Time libvpx takes per frame in the tap: 50 µs .. ~0.4 s.
    pub tap_decode_seconds: Histogram,
    pub detect_inferences: Counter,
    pub detect_skipped: Counter,
    /// Faces the detector sees now, over all sessions.
    pub detect_faces: Gauge,
    /// BlazeFace inference time: 1 ms .. ~4 s.
    pub detect_inference_seconds: Histogram,
    pub viewers_active: Gauge,
    /// From a frame's last packet to: assembled, decoded, detected, its result sent.
    pub frame_assembled_seconds: Histogram,
    pub frame_decoded_seconds: Histogram,
    pub frame_detected_seconds: Histogram,
    pub frame_result_sent_seconds: Histogram,
    pub loop_messages_received: Counter,
    pub loop_messages_dropped: Counter,
    pub loop_messages_sent: Counter,
    pub loop_messages_send_dropped: Counter,
    pub agreement_frames: Counter,
    pub agreement_matched: Counter,
    pub agreement_page_only: Counter,
    pub agreement_server_only: Counter,
    pub nacks_received: Counter,
    pub nacks_refused: Counter,
    pub retransmissions: Counter,
    pub rtp_packets_fanout: Counter,
    pub fanout_packets_dropped: Counter,
    /// Connections, upgrades and offers refused by a limit or a token, by reason.
    pub connections_refused: Family<[(&'static str, &'static str); 1], Counter>,
    /// TCP connections (HTTP, WebSocket and ICE-TCP) open now.
    pub connections_open: Gauge,
    /// Signaling WebSockets without a negotiated session now.
    pub signaling_pending: Gauge,
    /// Idle signaling WebSockets closed to make room for a newcomer (`--max-pending` full).
    pub signaling_evicted: Counter,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("face_echo");
        let sessions_active = Gauge::default();
        let sessions_total = Counter::default();
        let sessions_by_transport = Family::default();
        let rtp_packets_received = Counter::default();
        let rtp_packets_on_plane = Counter::default();
        let rtp_packets_forwarded = Counter::default();
        let rtp_bytes_forwarded = Counter::default();
        let rtp_forward_errors = Counter::default();
        let plis_relayed = Counter::default();
        let signaling_errors = Counter::default();
        let tap_frames_decoded = Counter::default();
        let tap_keyframes = Counter::default();
        let tap_decode_errors = Counter::default();
        let tap_packets_dropped = Counter::default();
        let tap_frames_refused = Counter::default();
        let tap_slow_decodes = Counter::default();
        let record_frames = Counter::default();
        let record_dropped = Counter::default();
        let record_errors = Counter::default();
        let tap_decode_seconds = Histogram::new(exponential_buckets(0.000_05, 2.0, 14));
        let detect_inferences = Counter::default();
        let detect_skipped = Counter::default();
        let detect_faces = Gauge::default();
        let detect_inference_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 13));
        let viewers_active = Gauge::default();
        let stage = || Histogram::new(exponential_buckets(0.000_25, 2.0, 15));
        let (frame_assembled_seconds, frame_decoded_seconds) = (stage(), stage());
        let (frame_detected_seconds, frame_result_sent_seconds) = (stage(), stage());
        let loop_messages_received = Counter::default();
        let loop_messages_dropped = Counter::default();
        let loop_messages_sent = Counter::default();
        let loop_messages_send_dropped = Counter::default();
        let agreement_frames = Counter::default();
        let agreement_matched = Counter::default();
        let agreement_page_only = Counter::default();
        let agreement_server_only = Counter::default();
        let nacks_received = Counter::default();
        let nacks_refused = Counter::default();
        let retransmissions = Counter::default();
        let rtp_packets_fanout = Counter::default();
        let fanout_packets_dropped = Counter::default();
        let connections_refused = Family::default();
        let connections_open = Gauge::default();
        let signaling_pending = Gauge::default();
        let signaling_evicted = Counter::default();
        registry.register("sessions_active", "Sessions (PeerConnections) open now", sessions_active.clone());
        registry.register("sessions", "Sessions opened since start", sessions_total.clone());
        registry.register(
            "sessions_transport",
            "Sessions whose media arrives over this transport now (udp, or tcp: ICE-TCP)",
            sessions_by_transport.clone(),
        );
        registry.register(
            "rtp_packets_received",
            "RTP packets received from publishers",
            rtp_packets_received.clone(),
        );
        registry.register(
            "rtp_packets_on_plane",
            "RTP packets received that a session's media plane handled (all of them)",
            rtp_packets_on_plane.clone(),
        );
        registry.register("rtp_packets_forwarded", "RTP packets echoed back", rtp_packets_forwarded.clone());
        registry.register(
            "rtp_bytes_forwarded",
            "RTP payload bytes echoed back",
            rtp_bytes_forwarded.clone(),
        );
        registry.register(
            "rtp_forward_errors",
            "RTP echoes the media plane could not protect and send",
            rtp_forward_errors.clone(),
        );
        registry.register(
            "plis_relayed",
            "Keyframe requests (PLI) sent to publishers for their receivers, viewers and decode tap",
            plis_relayed.clone(),
        );
        registry.register(
            "signaling_errors",
            "Signaling frames answered with an error",
            signaling_errors.clone(),
        );
        registry.register(
            "tap_frames_decoded",
            "VP8 frames the decode tap decoded",
            tap_frames_decoded.clone(),
        );
        registry.register("tap_keyframes", "VP8 keyframes the decode tap assembled", tap_keyframes.clone());
        registry.register(
            "tap_decode_errors",
            "VP8 frames libvpx refused in the decode tap",
            tap_decode_errors.clone(),
        );
        registry.register(
            "record_frames",
            "VP8 frames written to recordings (--record)",
            record_frames.clone(),
        );
        registry.register(
            "record_dropped",
            "Packets and detections the recorders were too busy to take (the echo went on)",
            record_dropped.clone(),
        );
        registry.register(
            "record_errors",
            "Recordings stopped by a write error (disk full, directory gone)",
            record_errors.clone(),
        );
        registry.register(
            "tap_packets_dropped",
            "Packets the decode tap was too busy to take (the echo went on)",
            tap_packets_dropped.clone(),
        );
        registry.register(
            "tap_frames_refused",
            "VP8 frames the decode tap refused before libvpx (over budget or malformed)",
            tap_frames_refused.clone(),
        );
        registry.register(
            "tap_slow_decodes",
            "VP8 frames that took libvpx over 100 ms to decode",
            tap_slow_decodes.clone(),
        );
        registry.register(
            "tap_decode_seconds",
            "Time to decode one VP8 frame in the tap",
            tap_decode_seconds.clone(),
        );
        registry.register(
            "detect_inferences",
            "Face detections run on tapped frames",
            detect_inferences.clone(),
        );
        registry.register(
            "detect_skipped",
            "Frames due for detection skipped because the detector was busy",
            detect_skipped.clone(),
        );
        registry.register(
            "detect_faces",
            "Faces the server's detector sees now, over all sessions",
            detect_faces.clone(),
        );
        registry.register(
            "detect_inference_seconds",
            "Time for one face detection (model run)",
            detect_inference_seconds.clone(),
        );
        registry.register("viewers_active", "Viewers watching a session now", viewers_active.clone());
        registry.register(
            "frame_assembled_seconds",
            "From a frame's last packet to its assembly in the decode tap",
            frame_assembled_seconds.clone(),
        );
        registry.register(
            "frame_decoded_seconds",
            "From a frame's last packet to its decoded picture",
            frame_decoded_seconds.clone(),
        );
        registry.register(
            "frame_detected_seconds",
            "From a frame's last packet to the server's detection on it",
            frame_detected_seconds.clone(),
        );
        registry.register(
            "frame_result_sent_seconds",
            "From a frame's last packet to its detections leaving on the data channels",
            frame_result_sent_seconds.clone(),
        );
        registry.register(
            "loop_messages_received",
            "Messages clients sent on their face-echo data channels",
            loop_messages_received.clone(),
        );
        registry.register(
            "loop_messages_dropped",
            "Data-channel messages dropped: malformed, unknown, too large or over the rate limit",
            loop_messages_dropped.clone(),
        );
        registry.register(
            "loop_messages_sent",
            "Messages sent on face-echo data channels (detections, stats)",
            loop_messages_sent.clone(),
        );
        registry.register(
            "loop_messages_send_dropped",
            "Messages not sent: the client's data-channel buffer was full",
            loop_messages_send_dropped.clone(),
        );
        registry.register(
            "agreement_frames",
            "Frames both detectors (page and server) ran on, compared",
            agreement_frames.clone(),
        );
        registry.register(
            "agreement_matched",
            "Faces both detectors found (centres within each other's box)",
            agreement_matched.clone(),
        );
        registry.register(
            "agreement_page_only",
            "Faces only the page's detector found",
            agreement_page_only.clone(),
        );
        registry.register(
            "agreement_server_only",
            "Faces only the server's detector found",
            agreement_server_only.clone(),
        );
        registry.register(
            "nacks_received",
            "Packets receivers asked to have resent (NACK)",
            nacks_received.clone(),
        );
        registry.register(
            "nacks_refused",
            "NACKed packets not resent: over the retransmission budget, or resent moments ago",
            nacks_refused.clone(),
        );
        registry.register("retransmissions", "RTP packets resent after a NACK", retransmissions.clone());
        registry.register(
            "rtp_packets_fanout",
            "RTP packets queued for viewers (one per viewer)",
            rtp_packets_fanout.clone(),
        );
        registry.register(
            "fanout_packets_dropped",
            "RTP packets a slow viewer's full queue refused",
            fanout_packets_dropped.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections, WebSocket upgrades and offers refused by a limit or a token, by reason",
            connections_refused.clone(),
        );
        registry.register("connections_open", "TCP connections open now", connections_open.clone());
        registry.register(
            "signaling_pending",
            "Signaling WebSockets without a negotiated session now",
            signaling_pending.clone(),
        );
        registry.register(
            "signaling_evicted",
            "Signaling WebSockets closed before their offer to make room for a newcomer (--max-pending full)",
            signaling_evicted.clone(),
        );
        Metrics {
            registry,
            sessions_active,
            sessions_total,
            sessions_by_transport,
            rtp_packets_received,
            rtp_packets_on_plane,
            rtp_packets_forwarded,
            rtp_bytes_forwarded,
            rtp_forward_errors,
            plis_relayed,
            signaling_errors,
            tap_frames_decoded,
            tap_keyframes,
            tap_decode_errors,
            tap_packets_dropped,
            tap_frames_refused,
            tap_slow_decodes,
            record_frames,
            record_dropped,
            record_errors,
            tap_decode_seconds,
            detect_inferences,
            detect_skipped,
            detect_faces,
            detect_inference_seconds,
            viewers_active,
            frame_assembled_seconds,
            frame_decoded_seconds,
            frame_detected_seconds,
            frame_result_sent_seconds,
            loop_messages_received,
            loop_messages_dropped,
            loop_messages_sent,
            loop_messages_send_dropped,
            agreement_frames,
            agreement_matched,
            agreement_page_only,
            agreement_server_only,
            nacks_received,
            nacks_refused,
            retransmissions,
            rtp_packets_fanout,
            fanout_packets_dropped,
            connections_refused,
            connections_open,
            signaling_pending,
            signaling_evicted,
        }
    }

    /// Counts one refusal under `reason` (a fixed snake_case word).
    pub fn refused(&self, reason: &'static str) {
        self.connections_refused.get_or_create(&[("reason", reason)]).inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
