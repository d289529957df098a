//! The echo's media plane: a publisher's incoming video is unprotected, answered
//! with RTP feedback and echoed on the UDP mux's reader, in the pass that read it,
//! not on the PeerConnection's driver.
//!
//! Why: through webrtc-rs, one echoed packet crossed the mux's inbox, a wake of the
//! driver and its whole pipeline twice (in and out), ~110 µs of server CPU at 32
//! peers (BENCHMARKS.md). Here it is a hash lookup (the mux), an SRTP unprotect,
//! the feedback interceptors, two header fields, an SRTP protect and a `sendmsg`.
//!
//! Who does what:
//! - The plane takes the RTP of the SSRCs whose echo legs it was given
//!   ([`MediaPlane::attach`]) and runs [`peer::feedback_interceptors`] on them
//!   itself (NACK both ways with the retransmission budget, receiver and sender
//!   reports, transport-cc): webrtc-rs negotiates them but does not run them for
//!   this PeerConnection ([`peer::MediaPath::Plane`]), so no stream is reported on
//!   twice.
//! - webrtc-rs keeps ICE, DTLS, data channels, RTP of any other SSRC (a track's
//!   first packets, before its leg is attached) and all RTCP. The plane reads a
//!   copy of each RTCP datagram (NACKs for the echo, sender reports for its
//!   receiver reports); what its interceptors generate leaves through the
//!   PeerConnection (`write_rtcp`), so SRTCP has one sender.
//! - SRTP: the plane's own contexts, from the keys DTLS exported
//!   (vendor/PATCHES.md, 6). It protects only the echo's SSRCs, which webrtc-rs
//!   stops sending on once the leg is attached (same sequence numbers, no reuse).
//!
//! Bad input costs one failed unprotect or parse, counted in [`PlaneStats`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use rtc::interceptor::{
    AttributedPacket, Interceptor, Packet, RTCPFeedback, RTPHeaderExtension, StreamInfo, TaggedPacket,
};
use rtc::rtp_transceiver::rtp_sender::RTCRtpParameters;
use rtc::sansio::Protocol;
use rtc::shared::marshal::{Marshal, Unmarshal};
use rtc::shared::{TransportContext, TransportMessage};
use rtc::srtp::config::SessionKeys;
use rtc::srtp::context::Context as SrtpContext;
use rtc::srtp::option::{srtcp_replay_protection, srtp_replay_protection};
use rtc::srtp::protection_profile::ProtectionProfile;
use tokio::sync::mpsc;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::PeerConnection;
use webrtc::rtp_transceiver::RtpTransceiver;

use super::SessionInfo;
use super::echo::EchoPath;
use crate::nack_budget::RetransmitStats;
use crate::peer;
use crate::udp_mux::{MediaHook, UdpMux};
use webrtc::peer_connection::MediaEngine;

/// Packets the SRTP replay windows remember (webrtc-rs's default for a session).
const REPLAY_WINDOW: usize = 64;
/// Compound RTCP packets waiting for the PeerConnection to send them; more are
/// dropped (counted): reports are periodic, the next one says it again.
const RTCP_QUEUE: usize = 64;
/// The longest the timer task sleeps when the interceptors name no deadline.
const MAX_TICK: Duration = Duration::from_millis(200);

/// One compound RTCP packet.
type Compound = Vec<Box<dyn rtc::rtcp::Packet>>;

/// What the plane counted, for `/api/sessions` (`echo.plane`).
#[derive(Debug, Default)]
pub struct PlaneStats {
    /// RTP packets unprotected here.
    pub rtp_in: AtomicU64,
    /// RTCP datagrams read here (a copy: webrtc-rs reads them too).
    pub rtcp_in: AtomicU64,
    /// Datagrams of our SSRCs that failed SRTP/SRTCP authentication or replay checks.
    pub unprotect_failed: AtomicU64,
    /// Unprotected, but not a parsable RTP or RTCP packet.
    pub malformed: AtomicU64,
    /// RTP protected and sent here (echoes and retransmissions).
    pub rtp_out: AtomicU64,
    /// Compound RTCP packets the interceptors generated, handed to the PeerConnection.
    pub rtcp_out: AtomicU64,
    /// Of those, dropped because the PeerConnection's queue was full.
    pub rtcp_dropped: AtomicU64,
    /// Errors of the interceptors or of protecting a packet.
    pub errors: AtomicU64,
}

impl PlaneStats {
    pub fn to_json(&self) -> serde_json::Value {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        serde_json::json!({
            "rtp_in": get(&self.rtp_in),
            "rtcp_in": get(&self.rtcp_in),
            "unprotect_failed": get(&self.unprotect_failed),
            "malformed": get(&self.malformed),
            "rtp_out": get(&self.rtp_out),
            "rtcp_out": get(&self.rtcp_out),
            "rtcp_dropped": get(&self.rtcp_dropped),
            "errors": get(&self.errors),
        })
    }
}

/// One PeerConnection's media plane (a [`MediaHook`] on its mux inbox).
pub struct MediaPlane {
    state: Mutex<PlaneState>,
    rtcp: mpsc::Sender<Compound>,
    stats: Arc<PlaneStats>,
}

struct PlaneState {
    /// Unprotects what the client sends (its keys).
    inbound: SrtpContext,
    /// Protects what we send (ours).
    outbound: SrtpContext,
    chain: Box<dyn Interceptor>,
    legs: Vec<PlaneLeg>,
}

/// One incoming SSRC the plane echoes.
struct PlaneLeg {
    ssrc: u32,
    echoes: bool,
    path: Arc<EchoPath>,
    remote: StreamInfo,
    local: Option<StreamInfo>,
}

/// Where a datagram goes, by its first two bytes (RFC 7983, RFC 5761 §4).
enum Kind {
    Rtp { ssrc: u32 },
    Rtcp,
    Other,
}

fn kind(datagram: &[u8]) -> Kind {
    if datagram.len() < 8 || !(128..=191).contains(&datagram[0]) {
        return Kind::Other;
    }
    if (192..=223).contains(&datagram[1]) {
        return Kind::Rtcp;
    }
    match datagram.get(8..12) {
        Some(ssrc) => Kind::Rtp { ssrc: u32::from_be_bytes([ssrc[0], ssrc[1], ssrc[2], ssrc[3]]) },
        None => Kind::Other,
    }
}

fn lock(state: &Mutex<PlaneState>) -> MutexGuard<'_, PlaneState> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl MediaPlane {
    /// A plane with the session's SRTP keys; `rtcp_writer` sends what its
    /// interceptors generate (any track of the PeerConnection will do). Spawns
    /// nothing: run [`MediaPlane::run`] beside it.
    pub fn new(
        profile: ProtectionProfile,
        keys: &SessionKeys,
        retransmit: Arc<RetransmitStats>,
        stats: Arc<PlaneStats>,
    ) -> Result<(Arc<MediaPlane>, mpsc::Receiver<Compound>), String> {
        let crypto = rtc::crypto::default_provider().map_err(|e| e.to_string())?;
        let outbound = SrtpContext::new(
            &keys.local_master_key,
            &keys.local_master_salt,
            profile,
            None,
            None,
            crypto.crypto(),
        )
        .map_err(|e| format!("SRTP context: {e}"))?;
        let inbound = SrtpContext::new(
            &keys.remote_master_key,
            &keys.remote_master_salt,
            profile,
            Some(srtp_replay_protection(REPLAY_WINDOW)),
            Some(srtcp_replay_protection(REPLAY_WINDOW)),
            crypto.crypto(),
        )
        .map_err(|e| format!("SRTP context: {e}"))?;
        let chain = peer::feedback_interceptors(&mut MediaEngine::default(), retransmit)
            .map_err(|e| format!("interceptors: {e}"))?
            .build();
        let (rtcp, rtcp_rx) = mpsc::channel(RTCP_QUEUE);
        let state = PlaneState { inbound, outbound, chain: Box::new(chain), legs: Vec::new() };
        Ok((Arc::new(MediaPlane { state: Mutex::new(state), rtcp, stats }), rtcp_rx))
    }

    /// Takes the RTP of `remote`'s SSRC from now on: into `path`, echoed when
    /// `local` (the echo's stream) is given.
    pub fn attach(&self, path: Arc<EchoPath>, remote: StreamInfo, local: Option<StreamInfo>) {
        let mut state = lock(&self.state);
        state.chain.bind_remote_stream(&remote);
        if let Some(local) = &local {
            state.chain.bind_local_stream(local);
        }
        state.legs.retain(|leg| leg.ssrc != remote.ssrc);
        state.legs.push(PlaneLeg { ssrc: remote.ssrc, echoes: local.is_some(), path, remote, local });
    }

    /// Gives the SSRC back to webrtc-rs (its track ended).
    pub fn detach(&self, ssrc: u32) {
        let mut state = lock(&self.state);
        let Some(index) = state.legs.iter().position(|leg| leg.ssrc == ssrc) else { return };
        let leg = state.legs.swap_remove(index);
        state.chain.unbind_remote_stream(&leg.remote);
        if let Some(local) = &leg.local {
            state.chain.unbind_local_stream(local);
        }
    }

    /// Runs the interceptors' timers (reports, NACKs, transport-cc) and sends the
    /// RTCP they and the packet path generate through `rtcp_writer`, until the
    /// plane is dropped.
    pub async fn run(
        plane: Weak<MediaPlane>,
        mut generated: mpsc::Receiver<Compound>,
        rtcp_writer: Arc<dyn TrackRemote>,
    ) {
        loop {
            let deadline = {
                let Some(plane) = plane.upgrade() else { return };
                let now = Instant::now();
                let mut state = lock(&plane.state);
                if state.chain.poll_timeout().is_some_and(|at| at <= now) {
                    if let Err(err) = state.chain.handle_timeout(now) {
                        plane.stats.errors.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%err, "media plane timers");
                    }
                    // Timers generate RTCP only (no pacer in the chain): RTP here has
                    // no address to go to, and is counted as an error.
                    plane.drain_writes(&mut state, None, &mut |_, _| {});
                }
                let next = state.chain.poll_timeout().unwrap_or(now + MAX_TICK).min(now + MAX_TICK);
                tokio::time::Instant::from_std(next.max(now))
            };
            tokio::select! {
                packets = generated.recv() => {
                    let Some(packets) = packets else { return };
                    if let Err(err) = rtcp_writer.write_rtcp(packets).await {
                        tracing::debug!(%err, "media plane RTCP not sent");
                        return;
                    }
                }
                () = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    fn tagged(packet: Packet, now: Instant, from: SocketAddr) -> TaggedPacket {
        TransportMessage {
            now,
            transport: TransportContext { peer_addr: from, ..Default::default() },
            message: AttributedPacket::new(packet),
        }
    }

    /// One RTP packet: false when its SSRC is not attached (webrtc-rs takes it);
    /// else unprotect, feedback, echo, side consumers.
    fn on_rtp(
        &self,
        datagram: &[u8],
        ssrc: u32,
        from: SocketAddr,
        send: &mut dyn FnMut(&[u8], SocketAddr),
    ) -> bool {
        let now = Instant::now();
        let mut state = lock(&self.state);
        let Some(leg) = state.legs.iter().find(|leg| leg.ssrc == ssrc) else { return false };
        let (path, echoes) = (Arc::clone(&leg.path), leg.echoes);
        let plain = match state.inbound.decrypt_rtp(datagram) {
            Ok(plain) => plain,
            Err(err) => {
                self.stats.unprotect_failed.fetch_add(1, Ordering::Relaxed);
                tracing::trace!(%err, "SRTP unprotect failed");
                return true;
            }
        };
        let packet = match rtc::rtp::Packet::unmarshal(&mut plain.freeze()) {
            Ok(packet) => packet,
            Err(_) => {
                self.stats.malformed.fetch_add(1, Ordering::Relaxed);
                return true;
            }
        };
        self.stats.rtp_in.fetch_add(1, Ordering::Relaxed);
        if let Err(err) = state.chain.handle_read(Self::tagged(Packet::Rtp(packet.clone()), now, from)) {
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%err, "media plane interceptors refused a packet");
        }
        while state.chain.poll_read().is_some() {}
        path.stats.packets_on_plane.fetch_add(1, Ordering::Relaxed);
        let (echo, sides) = path.take(packet, echoes);
        let echoed = echo.map(|echo| state.chain.handle_write(Self::tagged(Packet::Rtp(echo), now, from)));
        self.drain_writes(&mut state, Some(from), send);
        drop(state);
        path.finish(sides, echoed);
        true
    }

    /// A copy of one RTCP datagram: NACKs for our echoes get their retransmissions
    /// here, sender reports feed our receiver reports.
    fn on_rtcp(&self, datagram: &[u8], from: SocketAddr, send: &mut dyn FnMut(&[u8], SocketAddr)) {
        let mut state = lock(&self.state);
        if state.legs.is_empty() {
            return;
        }
        let Ok(plain) = state.inbound.decrypt_rtcp(datagram) else {
            // webrtc-rs reads it too, and judges it.
            return;
        };
        let Ok(packets) = rtc::rtcp::packet::unmarshal(&mut plain.freeze()) else {
            self.stats.malformed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        self.stats.rtcp_in.fetch_add(1, Ordering::Relaxed);
        if let Err(err) = state.chain.handle_read(Self::tagged(Packet::Rtcp(packets), Instant::now(), from)) {
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%err, "media plane interceptors refused RTCP");
        }
        while state.chain.poll_read().is_some() {}
        self.drain_writes(&mut state, Some(from), send);
    }

    /// Sends what the interceptors let out: RTP protected to `to`, RTCP to the
    /// PeerConnection.
    fn drain_writes(
        &self,
        state: &mut PlaneState,
        to: Option<SocketAddr>,
        send: &mut dyn FnMut(&[u8], SocketAddr),
    ) {
        while let Some(out) = state.chain.poll_write() {
            match out.message.packet {
                Packet::Rtp(packet) => {
                    let protected = packet.marshal().and_then(|plain| state.outbound.encrypt_rtp(&plain));
                    match (protected, to) {
                        (Ok(bytes), Some(to)) => {
                            send(&bytes, to);
                            self.stats.rtp_out.fetch_add(1, Ordering::Relaxed);
                        }
                        (Ok(_), None) => {
                            self.stats.errors.fetch_add(1, Ordering::Relaxed);
                        }
                        (Err(err), _) => {
                            self.stats.errors.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(%err, "media plane could not protect a packet");
                        }
                    }
                }
                Packet::Rtcp(packets) if !packets.is_empty() => {
                    self.stats.rtcp_out.fetch_add(1, Ordering::Relaxed);
                    if self.rtcp.try_send(packets).is_err() {
                        self.stats.rtcp_dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                _ => {}
            }
        }
    }
}

/// Makes a session's plane from DTLS's keys, hooks it on `mux` for the
/// PeerConnection, and returns it with its timer task (to spawn with the session).
/// `rtcp_writer` (a track of the PeerConnection) sends the RTCP it generates.
pub(crate) async fn start(
    mux: &UdpMux,
    pc: &Arc<dyn PeerConnection>,
    rtcp_writer: &Arc<dyn TrackRemote>,
    info: &SessionInfo,
) -> Result<(Arc<MediaPlane>, impl Future<Output = ()> + Send + 'static), String> {
    let (profile, keys) = pc.srtp_session_keys().await.ok_or("DTLS has exported no SRTP keys yet")?;
    let local = pc.local_description().await.ok_or("no local description")?;
    let ufrag = local
        .sdp
        .lines()
        .find_map(|line| line.trim().strip_prefix("a=ice-ufrag:"))
        .ok_or("the local description names no ICE ufrag")?
        .to_owned();
    let (plane, generated) =
        MediaPlane::new(profile, &keys, Arc::clone(&info.retransmit), Arc::clone(&info.plane))?;
    if !mux.attach_hook(&ufrag, Arc::clone(&plane) as Arc<dyn MediaHook>) {
        return Err("the PeerConnection is not on the UDP mux".to_owned());
    }
    let timers = MediaPlane::run(Arc::downgrade(&plane), generated, Arc::clone(rtcp_writer));
    Ok((plane, timers))
}

/// What the interceptors need to know of `track`'s incoming stream and, with
/// `echo_ssrc`, of the echo's stream on the same transceiver (`None` for the
/// incoming one: its SSRC or VP8 parameters are unknown, and the plane leaves it).
pub(crate) async fn stream_infos(
    transceiver: &Arc<dyn RtpTransceiver>,
    track: &Arc<dyn TrackRemote>,
    echo_ssrc: Option<u32>,
) -> (Option<StreamInfo>, Option<StreamInfo>) {
    let mut remote = None;
    if let (Some(ssrc), Ok(Some(receiver))) =
        (track.ssrcs().await.first().copied(), transceiver.receiver().await)
        && let Ok(parameters) = receiver.get_parameters().await
    {
        remote = vp8_stream_info(ssrc, &parameters.rtp_parameters);
    }
    let mut local = None;
    if let (Some(ssrc), Ok(Some(sender))) = (echo_ssrc, transceiver.sender().await)
        && let Ok(parameters) = sender.get_parameters().await
    {
        local = vp8_stream_info(ssrc, &parameters.rtp_parameters);
    }
    (remote, local)
}

/// A VP8 stream as negotiated: payload type, feedback, header extensions.
fn vp8_stream_info(ssrc: u32, parameters: &RTCRtpParameters) -> Option<StreamInfo> {
    let codec =
        parameters.codecs.iter().find(|codec| codec.rtp_codec.mime_type.eq_ignore_ascii_case("video/VP8"))?;
    Some(StreamInfo {
        ssrc,
        payload_type: codec.payload_type,
        mime_type: codec.rtp_codec.mime_type.clone(),
        clock_rate: codec.rtp_codec.clock_rate,
        rtcp_feedback: codec
            .rtp_codec
            .rtcp_feedback
            .iter()
            .map(|f| RTCPFeedback { typ: f.typ.clone(), parameter: f.parameter.clone() })
            .collect(),
        rtp_header_extensions: parameters
            .header_extensions
            .iter()
            .map(|h| RTPHeaderExtension { uri: h.uri.clone(), id: h.id })
            .collect(),
        ..Default::default()
    })
}

impl MediaHook for MediaPlane {
    fn on_datagram(
        &self,
        datagram: &[u8],
        from: SocketAddr,
        send: &mut dyn FnMut(&[u8], SocketAddr),
    ) -> bool {
        match kind(datagram) {
            Kind::Rtp { ssrc } => self.on_rtp(datagram, ssrc, from, send),
            Kind::Rtcp => {
                self.on_rtcp(datagram, from, send);
                false
            }
            Kind::Other => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_are_told_apart_by_their_first_bytes() {
        let mut rtp = [0u8; 12];
        rtp[0] = 0x80;
        rtp[1] = 96;
        rtp[8..12].copy_from_slice(&0xdead_beef_u32.to_be_bytes());
        assert!(matches!(kind(&rtp), Kind::Rtp { ssrc: 0xdead_beef }));
        rtp[1] = 96 | 0x80; // marker bit
        assert!(matches!(kind(&rtp), Kind::Rtp { ssrc: 0xdead_beef }));
        let rtcp = [0x81, 201, 0, 1, 0, 0, 0, 1];
        assert!(matches!(kind(&rtcp), Kind::Rtcp));
        // STUN, DTLS, short: not ours.
        assert!(matches!(kind(&[0x00, 0x01, 0, 0, 0x21, 0x12, 0xa4, 0x42]), Kind::Other));
        assert!(matches!(kind(&[22, 254, 253, 0, 0, 0, 0, 0, 0]), Kind::Other));
        assert!(matches!(kind(&[0x80, 96, 0, 1, 0, 0, 0, 1]), Kind::Other));
    }
}
