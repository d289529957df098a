//! What happens to each packet of an incoming video stream besides its echo: the
//! counters, and the side consumers (viewers, recorder, decode tap), each fed
//! through a bounded `try_send` after the echo has gone.
//!
//! The media plane calls it (as its [`Beside`]) where it reads the packet, on the
//! mux's reader: nothing here waits. The side consumers get a copy of the payload
//! (one, shared by all of them) only when one of them is there.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use super::fanout::FanOut;
use crate::media::plane::{Arrival, Beside};
use crate::metrics::Metrics;
use crate::record::RecorderInput;
use crate::seeing::tap::TapInput;
use crate::seeing::tap::assemble::TapPacket;

/// Per-session echo counters, read by `/api/sessions`.
#[derive(Debug, Default)]
pub struct EchoStats {
    pub packets_in: AtomicU64,
    /// Of those, the packets the session's media plane handled: all of them.
    pub packets_on_plane: AtomicU64,
    pub packets_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// PLIs sent to the publisher on behalf of the echo's receiver (counted by the
    /// keyframe scheduler).
    pub plis_relayed: Arc<AtomicU64>,
    /// Echoes that could not be protected and sent.
    pub forward_errors: AtomicU64,
}

/// The counters and side consumers of one incoming stream.
pub struct EchoPath {
    /// The decode tap's input (first video track, `--decode-tap`).
    pub tap: Option<TapInput>,
    /// The recorder's input (first video track, `--record`).
    pub recorder: Option<RecorderInput>,
    /// The session's viewers (first video track).
    pub viewers: Option<Arc<FanOut>>,
    pub stats: Arc<EchoStats>,
    pub metrics: Arc<Metrics>,
}

impl Beside for EchoPath {
    fn wants_payload(&self, arrival: &Arrival) -> bool {
        let payload_len = arrival.payload_len as u64;
        self.stats.packets_in.fetch_add(1, Ordering::Relaxed);
        self.stats.packets_on_plane.fetch_add(1, Ordering::Relaxed);
        self.stats.bytes_in.fetch_add(payload_len, Ordering::Relaxed);
        self.metrics.rtp_packets_received.inc();
        self.metrics.rtp_packets_on_plane.inc();
        self.tap.is_some() || self.recorder.is_some() || self.viewers.as_ref().is_some_and(|v| v.count() > 0)
    }

    /// The viewers, each on its own bounded queue, the recorder, the counters, the tap.
    fn after_echo(&self, arrival: Arrival, payload: Option<Bytes>, echoed: Option<bool>) {
        if let (Some(viewers), Some(payload)) = (&self.viewers, &payload) {
            viewers.send(&rtc::rtp::Packet {
                header: rtc::rtp::header::Header {
                    version: 2,
                    marker: arrival.marker,
                    payload_type: arrival.payload_type,
                    sequence_number: arrival.sequence_number,
                    timestamp: arrival.timestamp,
                    ssrc: arrival.ssrc,
                    ..Default::default()
                },
                payload: payload.clone(),
            });
        }
        let for_tap = payload.map(|payload| TapPacket {
            sequence_number: arrival.sequence_number,
            timestamp: arrival.timestamp,
            marker: arrival.marker,
            payload,
            arrived: arrival.at,
        });
        // The recording takes what came in, echoed or not.
        if let (Some(recorder), Some(packet)) = (&self.recorder, &for_tap) {
            recorder.offer(packet.clone());
        }
        let payload_len = arrival.payload_len as u64;
        match echoed {
            Some(true) => {
                self.stats.packets_out.fetch_add(1, Ordering::Relaxed);
                self.stats.bytes_out.fetch_add(payload_len, Ordering::Relaxed);
                self.metrics.rtp_packets_forwarded.inc();
                self.metrics.rtp_bytes_forwarded.inc_by(payload_len);
            }
            Some(false) => {
                self.stats.forward_errors.fetch_add(1, Ordering::Relaxed);
                self.metrics.rtp_forward_errors.inc();
                return;
            }
            None => {}
        }
        // The tap decodes what went out (or, with nothing to echo to, what came in).
        if let (Some(tap), Some(packet)) = (&self.tap, for_tap) {
            tap.offer(packet);
        }
    }
}
