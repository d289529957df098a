//! The echo: every RTP packet of an incoming video track goes straight back out on
//! the session's own track, payload untouched.
//!
//! This loop polls the track's event channel, which webrtc-rs bounds at 256 events
//! and drops on overflow, so it does nothing slow: rewrite two header fields, hand
//! the packet to the driver, bump atomics. Keyframe requests flow the other way in a
//! task of their own ([`relay_keyframe_requests`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::rtp_transceiver::RtpSender;

use super::fanout::FanOut;
use crate::keyframe_feedback::asks_for_keyframe;
use crate::metrics::Metrics;
use crate::tap::TapInput;
use crate::tap::assemble::TapPacket;

/// Keyframe requests reach the publisher at most this often: a burst of PLIs from a
/// lossy receiver would otherwise make the sender emit keyframe after keyframe.
pub const PLI_MIN_INTERVAL: Duration = Duration::from_millis(500);

/// Per-session echo counters, read by `/api/sessions`.
#[derive(Debug, Default)]
pub struct EchoStats {
    pub packets_in: AtomicU64,
    pub packets_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub plis_relayed: AtomicU64,
    /// Packets the echo track refused (e.g. before negotiation finished).
    pub forward_errors: AtomicU64,
}

/// Where one incoming track is echoed to.
pub struct EchoOutput {
    pub track: Arc<TrackLocalStaticRTP>,
    pub sender: Arc<dyn RtpSender>,
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
}

/// Forwards `incoming` to `output` until the track ends; each forwarded packet is
/// then handed to the session's viewers and offered to the decode tap, if any.
#[allow(clippy::too_many_arguments)]
pub async fn forward(
    incoming: Arc<dyn TrackRemote>,
    output: Arc<TrackLocalStaticRTP>,
    out_ssrc: u32,
    out_payload_type: Option<u8>,
    tap: Option<TapInput>,
    viewers: Option<Arc<FanOut>>,
    stats: Arc<EchoStats>,
    metrics: Arc<Metrics>,
) {
    while let Some(event) = incoming.poll().await {
        let mut packet = match event {
            TrackRemoteEvent::OnRtpPacket(packet) => packet,
            TrackRemoteEvent::OnEnded => break,
            _ => continue,
        };
        let payload_len = packet.payload.len() as u64;
        // Taken before the packet moves into the echo; cloning `Bytes` shares the payload.
        let for_tap = tap.as_ref().map(|_| TapPacket::from(&packet));
        let for_viewers = viewers.as_ref().filter(|v| v.count() > 0).map(|_| packet.clone());
        stats.packets_in.fetch_add(1, Ordering::Relaxed);
        stats.bytes_in.fetch_add(payload_len, Ordering::Relaxed);
        metrics.rtp_packets_received.inc();

        readdress(&mut packet, out_ssrc, out_payload_type);
        let echoed = output.write_rtp(packet).await;
        // The echo first; then the viewers, each on its own bounded queue.
        if let (Some(viewers), Some(packet)) = (&viewers, for_viewers) {
            viewers.send(&packet);
        }
        match echoed {
            Ok(()) => {
                stats.packets_out.fetch_add(1, Ordering::Relaxed);
                stats.bytes_out.fetch_add(payload_len, Ordering::Relaxed);
                metrics.rtp_packets_forwarded.inc();
                metrics.rtp_bytes_forwarded.inc_by(payload_len);
                if let (Some(tap), Some(packet)) = (&tap, for_tap) {
                    tap.offer(packet);
                }
            }
            Err(err) => {
                stats.forward_errors.fetch_add(1, Ordering::Relaxed);
                metrics.rtp_forward_errors.inc();
                tracing::debug!(%err, "echo track refused a packet");
            }
        }
    }
}

/// Relays PLI/FIR that the echo's receiver sends on `output` to the publisher's
/// `incoming` track, at most once per [`PLI_MIN_INTERVAL`].
pub async fn relay_keyframe_requests(
    output: Arc<TrackLocalStaticRTP>,
    incoming: Arc<dyn TrackRemote>,
    stats: Arc<EchoStats>,
    metrics: Arc<Metrics>,
) {
    let Some(media_ssrc) = incoming.ssrcs().await.first().copied() else {
        tracing::warn!("incoming track has no SSRC: keyframe requests cannot be relayed");
        return;
    };
    tracing::debug!(media_ssrc, "relaying keyframe requests");
    let mut limiter = RateLimiter::new(PLI_MIN_INTERVAL);
    while let Some(event) = output.poll().await {
        let TrackLocalEvent::OnRtcpPacket(packets) = event else {
            continue;
        };
        tracing::trace!(?packets, "RTCP on the echo track");
        if !asks_for_keyframe(&packets) || !limiter.allow(Instant::now()) {
            continue;
        }
        let pli = PictureLossIndication { sender_ssrc: 0, media_ssrc };
        match incoming.write_rtcp(vec![Box::new(pli)]).await {
            Ok(()) => {
                stats.plis_relayed.fetch_add(1, Ordering::Relaxed);
                metrics.plis_relayed.inc();
            }
            Err(err) => tracing::debug!(%err, "could not relay a keyframe request"),
        }
    }
    tracing::debug!(media_ssrc, "keyframe relay ended");
}

/// Sends the publisher a PLI for keyframe wishes (of the decode tap, or of the
/// viewers), at most one per `interval`, merging wishes; counts them in `sent`.
pub async fn request_keyframes(
    mut wishes: tokio::sync::mpsc::Receiver<()>,
    incoming: Arc<dyn TrackRemote>,
    interval: Duration,
    sent: Arc<AtomicU64>,
) {
    let Some(media_ssrc) = incoming.ssrcs().await.first().copied() else {
        return;
    };
    let mut last_sent: Option<tokio::time::Instant> = None;
    while wishes.recv().await.is_some() {
        // A wish inside the interval waits for its end rather than being lost (a
        // viewer that just joined must get its keyframe); wishes meanwhile merge.
        if let Some(last) = last_sent {
            tokio::time::sleep_until(last + interval).await;
        }
        while wishes.try_recv().is_ok() {}
        let pli = PictureLossIndication { sender_ssrc: 0, media_ssrc };
        if incoming.write_rtcp(vec![Box::new(pli)]).await.is_ok() {
            sent.fetch_add(1, Ordering::Relaxed);
        }
        last_sent = Some(tokio::time::Instant::now());
    }
}

/// Lets one event through per interval.
#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    last: Option<Instant>,
}

impl RateLimiter {
    pub fn new(interval: Duration) -> Self {
        RateLimiter { interval, last: None }
    }

    /// True if an event at `now` may pass (and records it).
    pub fn allow(&mut self, now: Instant) -> bool {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.interval => false,
            _ => {
                self.last = Some(now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limiter_passes_one_event_per_interval() {
        let start = Instant::now();
        let mut limiter = RateLimiter::new(Duration::from_millis(500));
        assert!(limiter.allow(start));
        assert!(!limiter.allow(start + Duration::from_millis(100)));
        assert!(!limiter.allow(start + Duration::from_millis(499)));
        assert!(limiter.allow(start + Duration::from_millis(500)));
        assert!(!limiter.allow(start + Duration::from_millis(900)));
        assert!(limiter.allow(start + Duration::from_millis(1001)));
    }
}
