//! The echo: every RTP packet of an incoming video track goes straight back out on
//! the session's own track, payload untouched.
//!
//! This loop polls the track's event channel, which webrtc-rs bounds at 256 events
//! and drops on overflow, so it does nothing slow: rewrite two header fields, hand
//! the packet to the driver, bump atomics. Keyframe requests flow the other way in a
//! task of their own ([`relay_keyframe_requests`], then [`super::keyframes`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::rtp_transceiver::RtpSender;

use super::fanout::FanOut;
use crate::keyframe_feedback::asks_for_keyframe;
use crate::metrics::Metrics;
use crate::record::RecorderInput;
use crate::tap::TapInput;
use crate::tap::assemble::TapPacket;

/// Per-session echo counters, read by `/api/sessions`.
#[derive(Debug, Default)]
pub struct EchoStats {
    pub packets_in: AtomicU64,
    pub packets_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// PLIs sent to the publisher that served the echo's receiver (shared with
    /// the keyframe scheduler).
    pub plis_relayed: Arc<AtomicU64>,
    /// Packets the echo track refused (e.g. before negotiation finished).
    pub forward_errors: AtomicU64,
}

/// Where one incoming track is echoed to.
pub struct EchoOutput {
    pub track: Arc<TrackLocalStaticRTP>,
    pub sender: Arc<dyn RtpSender>,
    /// The m-line it answers (known once the answer is made).
    pub mid: String,
    /// True for the first m-line's: the decode tap and the viewers take that one.
    pub first: bool,
}

/// Same payload, sequence number and timestamp; the outgoing track's SSRC and
/// payload type. Header extensions are the sender's, negotiated for its direction:
/// dropped rather than sent with ids the outgoing leg never agreed on.
pub fn readdress(packet: &mut rtc::rtp::Packet, ssrc: u32, payload_type: Option<u8>) {
    packet.header.ssrc = ssrc;
    if let Some(payload_type) = payload_type {
        packet.header.payload_type = payload_type;
    }
    packet.header.extension = false;
    packet.header.extension_profile = 0;
    packet.header.extensions.clear();
    // Padding belongs to the extensions just dropped: left behind, rtc-rtp would
    // size the packet for it without writing it (SRTP then refuses the packet).
    packet.header.extensions_padding = 0;
}

/// One incoming track and where it is echoed to: the packet path of a session.
pub struct EchoLeg {
    pub incoming: Arc<dyn TrackRemote>,
    /// `None` for an m-line the client only sends on (a WHIP encoder's `sendonly`):
    /// nothing goes back, the rest (viewers, recorder, tap) is the same.
    pub output: Option<Arc<TrackLocalStaticRTP>>,
    pub out_ssrc: u32,
    pub out_payload_type: Option<u8>,
    /// The decode tap's input (first video track, `--decode-tap`).
    pub tap: Option<TapInput>,
    /// The recorder's input (first video track, `--record`).
    pub recorder: Option<RecorderInput>,
    /// The session's viewers (first video track).
    pub viewers: Option<Arc<FanOut>>,
    pub stats: Arc<EchoStats>,
    pub metrics: Arc<Metrics>,
}

impl EchoLeg {
    /// Forwards `incoming` to `output` until the track ends; each forwarded packet
    /// is then handed to the viewers and offered to the recorder and the decode tap, if any.
    pub async fn run(self) {
        let EchoLeg { incoming, output, out_ssrc, out_payload_type, tap, recorder, viewers, stats, metrics } =
            self;
        while let Some(event) = incoming.poll().await {
            let mut packet = match event {
                TrackRemoteEvent::OnRtpPacket(packet) => packet,
                TrackRemoteEvent::OnEnded => break,
                _ => continue,
            };
            let payload_len = packet.payload.len() as u64;
            // Taken before the packet moves into the echo; cloning `Bytes` shares the payload.
            let for_tap = (tap.is_some() || recorder.is_some()).then(|| TapPacket::from(&packet));
            let for_viewers = viewers.as_ref().filter(|v| v.count() > 0).map(|_| packet.clone());
            stats.packets_in.fetch_add(1, Ordering::Relaxed);
            stats.bytes_in.fetch_add(payload_len, Ordering::Relaxed);
            metrics.rtp_packets_received.inc();

            let echoed = match &output {
                Some(output) => {
                    readdress(&mut packet, out_ssrc, out_payload_type);
                    Some(output.write_rtp(packet).await)
                }
                None => None,
            };
            // The echo first; then the viewers, each on its own bounded queue.
            if let (Some(viewers), Some(packet)) = (&viewers, for_viewers) {
                viewers.send(&packet);
            }
            // The recording takes what came in, echoed or not.
            if let (Some(recorder), Some(packet)) = (&recorder, &for_tap) {
                recorder.offer(packet.clone());
            }
            match echoed {
                Some(Ok(())) => {
                    stats.packets_out.fetch_add(1, Ordering::Relaxed);
                    stats.bytes_out.fetch_add(payload_len, Ordering::Relaxed);
                    metrics.rtp_packets_forwarded.inc();
                    metrics.rtp_bytes_forwarded.inc_by(payload_len);
                    if let (Some(tap), Some(packet)) = (&tap, for_tap) {
                        tap.offer(packet);
                    }
                }
                Some(Err(err)) => {
                    stats.forward_errors.fetch_add(1, Ordering::Relaxed);
                    metrics.rtp_forward_errors.inc();
                    tracing::debug!(%err, "echo track refused a packet");
                }
                None => {
                    if let (Some(tap), Some(packet)) = (&tap, for_tap) {
                        tap.offer(packet);
                    }
                }
            }
        }
    }
}

/// PLI/FIR that the echo's receiver sends on `output` become keyframe wishes for
/// the publisher's scheduler ([`super::keyframes`]).
pub async fn relay_keyframe_requests(output: Arc<TrackLocalStaticRTP>, wishes: mpsc::Sender<()>) {
    while let Some(event) = output.poll().await {
        if let TrackLocalEvent::OnRtcpPacket(packets) = event
            && asks_for_keyframe(&packets)
        {
            let _ = wishes.try_send(());
        }
    }
}
