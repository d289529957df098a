//! The echo: every RTP packet of an incoming video track goes straight back out on
//! the session's own track, payload untouched.
//!
//! Each packet is handled where it is read: on one shared UDP port by the session's
//! media plane ([`super::plane`]), otherwise on the PeerConnection's driver
//! ([`EchoPath`] as an `RtpForwarder`: vendored webrtc patch 5). So it does nothing
//! slow: rewrite two header fields, hand the packet back for sending, `try_send` to
//! the side consumers, bump atomics. Keyframe requests flow the other way in a
//! task of their own ([`relay_keyframe_requests`], then [`super::keyframes`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use rtc::rtp_transceiver::RTCRtpSenderId;
use tokio::sync::mpsc;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{RtpForwarder, TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::PeerConnection;
use webrtc::rtp_transceiver::RtpSender;

use super::fanout::FanOut;
use super::plane::PlaneLeg;
use crate::keyframe_feedback::asks_for_keyframe;
use crate::metrics::Metrics;
use crate::record::RecorderInput;
use crate::tap::TapInput;
use crate::tap::assemble::TapPacket;

/// Per-session echo counters, read by `/api/sessions`.
#[derive(Debug, Default)]
pub struct EchoStats {
    pub packets_in: AtomicU64,
    /// Of those, the packets the PeerConnection's driver handed to the echo itself
    /// ([`EchoPath`] as an `RtpForwarder`), not through the track's queue: all but the
    /// first few, queued before the forwarder was registered.
    pub packets_on_driver: AtomicU64,
    /// Of those, the packets the session's media plane handled on the UDP mux's
    /// reader ([`super::plane`]): all but a track's first few, with `--udp-port`.
    pub packets_on_plane: AtomicU64,
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
    /// The PeerConnection the track arrived on, to run [`EchoPath`] on its driver
    /// (weakly: the session owns it, and closing it ends the track and this leg).
    pub pc: Weak<dyn PeerConnection>,
    /// `None` for an m-line the client only sends on (a WHIP encoder's `sendonly`):
    /// nothing goes back, the rest (viewers, recorder, tap) is the same.
    pub output: Option<(Arc<TrackLocalStaticRTP>, RTCRtpSenderId)>,
    pub path: EchoPath,
    /// The session's media plane with the incoming stream and the echo's (`None`
    /// when the PeerConnection is not on the UDP mux): it takes the packets from
    /// webrtc-rs once attached.
    pub plane: Option<PlaneLeg>,
}

/// What happens to each packet of an incoming track: the echo first, then the
/// viewers, the recorder and the decode tap, each through a bounded `try_send`.
/// Nothing in it waits, so it runs where the packet is read, with no task hand-off:
/// in the session's media plane on the UDP mux's reader ([`super::plane`]), or on
/// the PeerConnection's driver as an [`RtpForwarder`] (vendor/PATCHES.md, patch 5).
pub struct EchoPath {
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

/// What a packet leaves for the side consumers once its echo is written.
pub(crate) struct Sides {
    payload_len: u64,
    for_tap: Option<TapPacket>,
    for_viewers: Option<rtc::rtp::Packet>,
}

impl EchoPath {
    /// Counts `packet` in and readdresses it for the echo (`echoes`: there is an
    /// echo track); returns it with what the side consumers need of it.
    pub(crate) fn take(
        &self,
        mut packet: rtc::rtp::Packet,
        echoes: bool,
    ) -> (Option<rtc::rtp::Packet>, Sides) {
        let payload_len = packet.payload.len() as u64;
        // Taken before the packet moves into the echo; cloning `Bytes` shares the payload.
        let for_tap = (self.tap.is_some() || self.recorder.is_some()).then(|| TapPacket::from(&packet));
        let for_viewers = self.viewers.as_ref().filter(|v| v.count() > 0).map(|_| packet.clone());
        self.stats.packets_in.fetch_add(1, Ordering::Relaxed);
        self.stats.bytes_in.fetch_add(payload_len, Ordering::Relaxed);
        self.metrics.rtp_packets_received.inc();
        let echo = echoes.then(|| {
            readdress(&mut packet, self.out_ssrc, self.out_payload_type);
            packet
        });
        (echo, Sides { payload_len, for_tap, for_viewers })
    }

    /// After the echo (`None`: nothing to echo to): the viewers, each on its own
    /// bounded queue, the recorder, the counters, and the tap.
    pub(crate) fn finish<E: std::fmt::Display>(&self, sides: Sides, echoed: Option<Result<(), E>>) {
        let Sides { payload_len, for_tap, for_viewers } = sides;
        if let (Some(viewers), Some(packet)) = (&self.viewers, for_viewers) {
            viewers.send(&packet);
        }
        // The recording takes what came in, echoed or not.
        if let (Some(recorder), Some(packet)) = (&self.recorder, &for_tap) {
            recorder.offer(packet.clone());
        }
        match echoed {
            Some(Ok(())) => {
                self.stats.packets_out.fetch_add(1, Ordering::Relaxed);
                self.stats.bytes_out.fetch_add(payload_len, Ordering::Relaxed);
                self.metrics.rtp_packets_forwarded.inc();
                self.metrics.rtp_bytes_forwarded.inc_by(payload_len);
            }
            Some(Err(err)) => {
                self.stats.forward_errors.fetch_add(1, Ordering::Relaxed);
                self.metrics.rtp_forward_errors.inc();
                tracing::debug!(%err, "echo track refused a packet");
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

/// The echo as an [`RtpForwarder`]: `write` sends on the echo track's sender, in the
/// driver's core (an error when there is none: then it is not called).
struct OnDriver {
    path: Arc<EchoPath>,
    echoes: bool,
}

impl RtpForwarder for OnDriver {
    fn on_rtp(
        &self,
        packet: rtc::rtp::Packet,
        write: &mut dyn FnMut(rtc::rtp::Packet) -> webrtc::error::Result<()>,
    ) {
        self.path.stats.packets_on_driver.fetch_add(1, Ordering::Relaxed);
        let (echo, sides) = self.path.take(packet, self.echoes);
        let echoed = echo.map(write);
        self.path.finish(sides, echoed);
    }
}

impl EchoLeg {
    /// Echoes `incoming` to `output` until the track ends: on the driver once the
    /// forwarder is registered, here for what was queued before that.
    pub async fn run(self) {
        let EchoLeg { incoming, pc, output, path, plane } = self;
        let path = Arc::new(path);
        let track_id = incoming.track_id().await;
        let forwarder = OnDriver { path: Arc::clone(&path), echoes: output.is_some() };
        if let Some(pc) = pc.upgrade() {
            let sender = output.as_ref().map(|(_, sender)| *sender);
            pc.forward_rtp(track_id.clone(), sender, Some(Arc::new(forwarder)));
        }
        // What webrtc-rs still holds (queued before this) comes out below; the rest
        // goes through the plane.
        if let Some(leg) = &plane {
            leg.plane.attach(Arc::clone(&path), leg);
        }
        while let Some(event) = incoming.poll().await {
            let packet = match event {
                TrackRemoteEvent::OnRtpPacket(packet) => packet,
                TrackRemoteEvent::OnEnded => break,
                _ => continue,
            };
            let (echo, sides) = path.take(packet, output.is_some());
            let echoed = match (echo, &output) {
                (Some(packet), Some((track, _))) => Some(track.write_rtp(packet).await),
                _ => None,
            };
            path.finish(sides, echoed);
        }
        if let Some(pc) = pc.upgrade() {
            pc.forward_rtp(track_id, None, None);
        }
        if let Some(leg) = &plane {
            leg.plane.detach(leg.remote.ssrc);
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
