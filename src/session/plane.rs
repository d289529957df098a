//! The echo's media plane: a publisher's incoming video is unprotected, answered
//! with RTP feedback and echoed on the UDP mux's reader, in the pass that read it,
//! not on the PeerConnection's driver.
//!
//! Why: through webrtc-rs, one echoed packet crossed the mux's inbox, a wake of the
//! driver and its whole pipeline twice (in and out), and each feedback packet the
//! driver's again (BENCHMARKS.md, issue #13). Here a packet costs a hash lookup
//! (the mux), an SRTP unprotect, the feedback interceptors, two header fields, an
//! SRTP protect and a `sendmsg`; feedback that falls due is sent in the same pass.
//!
//! Who does what:
//! - The plane takes the RTP of the SSRCs whose echo legs it was given
//!   ([`MediaPlane::attach`]) and runs [`peer::feedback_interceptors`] on them
//!   itself (NACK both ways with the retransmission budget, receiver and sender
//!   reports, transport-cc): webrtc-rs negotiates them but does not run them for
//!   this PeerConnection ([`peer::MediaPath::Plane`]), so no stream is reported on
//!   twice. It reads the client's RTCP (NACKs for the echo, sender reports for its
//!   receiver reports) and sends the RTCP its interceptors make.
//!   Keyframe requests for an echo become that echo's wishes for
//!   [`super::keyframes`], as webrtc-rs's would.
//! - webrtc-rs keeps ICE, DTLS, data channels, and RTP and RTCP that arrive before
//!   the first leg is attached (of any other SSRC, for RTP); it sends the keyframe
//!   scheduler's PLIs, from SSRC 0.
//! - SRTP: the plane's own contexts, from the keys DTLS exported (vendor/PATCHES.md,
//!   6). Sharing keys is safe because no (SSRC, index) is protected twice: the plane
//!   protects RTP only on the echo's SSRCs, which webrtc-rs stops sending on once a
//!   leg is attached (same sequence numbers, so no index repeats), and RTCP only from
//!   its interceptors' SSRCs (random, and the echo's for sender reports), never 0.
//!
//! Timers (reports every second, NACKs and transport-cc every 100 ms) run when a
//! packet arrives and they are due; the mux's tick ([`crate::udp_mux::HOOK_TICK`], one
//! wake of its reader for every session on the socket) covers a quiet stream.
//! Bad input costs one failed unprotect or parse, counted in [`PlaneStats`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use rtc::interceptor::{
    AttributedPacket, Interceptor, Packet, RTCPFeedback, RTPHeaderExtension, StreamInfo, TaggedPacket,
};
use rtc::rtp_transceiver::rtp_sender::RTCRtpParameters;
use rtc::sansio::Protocol;
use rtc::shared::marshal::{Marshal, Unmarshal};
use rtc::shared::{TransportContext, TransportMessage};
use rtc::srtp::config::SessionKeys;
use rtc::srtp::context::Context as SrtpContext;
use rtc::srtp::protection_profile::ProtectionProfile;
use tokio::sync::mpsc;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{MediaEngine, PeerConnection};
use webrtc::rtp_transceiver::RtpTransceiver;

use super::SessionInfo;
use super::echo::EchoPath;
use crate::keyframe_feedback::asks_for_keyframe;
use crate::nack_budget::RetransmitStats;
use crate::peer;
use crate::srtp::{self, Kind, kind};
use crate::udp_mux::{MediaHook, MuxSender, UdpMux, ice_ufrag};

/// RTCP packets, sent as one compound packet.
type Compound = Vec<Box<dyn rtc::rtcp::Packet>>;

/// What the plane counted, for `/api/sessions` (`echo.plane`).
#[derive(Debug, Default)]
pub struct PlaneStats {
    /// RTP packets unprotected here.
    pub rtp_in: AtomicU64,
    /// RTCP datagrams read here (all the client's, once a leg is attached).
    pub rtcp_in: AtomicU64,
    /// Datagrams of our SSRCs that failed SRTP authentication or the replay check.
    pub unprotect_failed: AtomicU64,
    /// Unprotected, but not a parsable RTP or RTCP packet.
    pub malformed: AtomicU64,
    /// RTP protected and sent here (echoes and retransmissions).
    pub rtp_out: AtomicU64,
    /// Compound RTCP packets the interceptors made, protected and sent here.
    pub rtcp_out: AtomicU64,
    /// Errors of the interceptors, or packets that could not be protected or had
    /// nowhere to go yet.
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
            "errors": get(&self.errors),
        })
    }
}

/// One PeerConnection's media plane (a [`MediaHook`] on its mux inbox).
pub struct MediaPlane {
    state: Mutex<PlaneState>,
    /// The shared socket it answers on (set once hooked).
    sender: OnceLock<MuxSender>,
    stats: Arc<PlaneStats>,
}

struct PlaneState {
    /// Unprotects what the client sends (its keys).
    inbound: SrtpContext,
    /// Protects what we send (ours).
    outbound: SrtpContext,
    chain: Box<dyn Interceptor>,
    legs: Vec<Leg>,
    /// Where the client's media last came from: where feedback goes.
    peer: Option<SocketAddr>,
}

/// One incoming stream for a session's plane: what the interceptors need to know
/// of it and of its echo, and where keyframe requests for the echo go.
pub struct PlaneLeg {
    pub plane: Arc<MediaPlane>,
    pub remote: StreamInfo,
    /// The echo's stream (`None`: nothing is echoed, e.g. a WHIP `sendonly`).
    pub local: Option<StreamInfo>,
    /// PLI/FIR from the echo's receiver become these wishes ([`super::keyframes`]).
    pub keyframe_wishes: Option<mpsc::Sender<()>>,
}

/// An attached stream, as the plane keeps it.
struct Leg {
    ssrc: u32,
    path: Arc<EchoPath>,
    remote: StreamInfo,
    local: Option<StreamInfo>,
    keyframe_wishes: Option<mpsc::Sender<()>>,
}

fn lock(state: &Mutex<PlaneState>) -> MutexGuard<'_, PlaneState> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where the plane's packets go: the shared socket, or a test's list.
type Out<'a> = &'a mut dyn FnMut(&[u8], SocketAddr);

impl MediaPlane {
    /// A plane with the session's SRTP keys, counting NACK answers in `retransmit`.
    /// It sends nothing until [`start`] hooks it on the mux.
    pub fn new(
        profile: ProtectionProfile,
        keys: &SessionKeys,
        retransmit: Arc<RetransmitStats>,
        stats: Arc<PlaneStats>,
    ) -> Result<Arc<MediaPlane>, String> {
        let (outbound, inbound) = srtp::session_contexts(profile, keys)?;
        let chain = peer::feedback_interceptors(&mut MediaEngine::default(), retransmit)
            .map_err(|e| format!("interceptors: {e}"))?
            .build();
        let state = PlaneState { inbound, outbound, chain: Box::new(chain), legs: Vec::new(), peer: None };
        Ok(Arc::new(MediaPlane { state: Mutex::new(state), sender: OnceLock::new(), stats }))
    }

    /// Takes the RTP of `leg`'s incoming SSRC from now on, into `path`; echoed when
    /// the leg has an echo stream.
    pub fn attach(&self, path: Arc<EchoPath>, leg: &PlaneLeg) {
        let mut state = lock(&self.state);
        state.chain.bind_remote_stream(&leg.remote);
        if let Some(local) = &leg.local {
            state.chain.bind_local_stream(local);
        }
        let ssrc = leg.remote.ssrc;
        state.legs.retain(|leg| leg.ssrc != ssrc);
        state.legs.push(Leg {
            ssrc,
            path,
            remote: leg.remote.clone(),
            local: leg.local.clone(),
            keyframe_wishes: leg.keyframe_wishes.clone(),
        });
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

    /// Lets go of every leg (the session is closing): their side consumers (tap,
    /// recorder, viewers) must not wait for the PeerConnection's sockets to go.
    pub fn close(&self) {
        let ssrcs: Vec<u32> = lock(&self.state).legs.iter().map(|leg| leg.ssrc).collect();
        for ssrc in ssrcs {
            self.detach(ssrc);
        }
    }

    /// Handles one datagram from `from`; false when it is not the plane's.
    fn handle(&self, datagram: &[u8], from: SocketAddr, send: Out<'_>) -> bool {
        match kind(datagram) {
            Kind::Rtp { ssrc } => self.on_rtp(datagram, ssrc, from, send),
            Kind::Rtcp => self.on_rtcp(datagram, from, send),
            Kind::Dtls | Kind::Other => false,
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
    fn on_rtp(&self, datagram: &[u8], ssrc: u32, from: SocketAddr, send: Out<'_>) -> bool {
        let now = Instant::now();
        let mut state = lock(&self.state);
        let Some(leg) = state.legs.iter().find(|leg| leg.ssrc == ssrc) else { return false };
        let (path, echoes) = (Arc::clone(&leg.path), leg.local.is_some());
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
        state.peer = Some(from);
        if let Err(err) = state.chain.handle_read(Self::tagged(Packet::Rtp(packet), now, from)) {
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%err, "media plane interceptors refused a packet");
            return true;
        }
        // The interceptors only look at what they read: the packet comes out as it
        // went in, and goes on from there (no copy of it for them).
        let mut read = None;
        while let Some(out) = state.chain.poll_read() {
            if let Packet::Rtp(packet) = out.message.packet {
                read = Some(packet);
            }
        }
        let Some(packet) = read else {
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
            return true;
        };
        path.stats.packets_on_plane.fetch_add(1, Ordering::Relaxed);
        path.metrics.rtp_packets_on_plane.inc();
        let (echo, sides) = path.take(packet, echoes);
        let echoed = echo.map(|echo| state.chain.handle_write(Self::tagged(Packet::Rtp(echo), now, from)));
        self.drain_writes(&mut state, send);
        self.run_timers(&mut state, now, send);
        drop(state);
        path.finish(sides, echoed);
        true
    }

    /// One RTCP datagram: NACKs for our echoes get their retransmissions here,
    /// sender reports feed our receiver reports, keyframe requests for an echo
    /// become its wishes. False (webrtc-rs takes it) when no leg is attached yet or
    /// it does not unprotect here (webrtc-rs judges it).
    fn on_rtcp(&self, datagram: &[u8], from: SocketAddr, send: Out<'_>) -> bool {
        let mut state = lock(&self.state);
        if state.legs.is_empty() {
            return false;
        }
        let Ok(plain) = state.inbound.decrypt_rtcp(datagram) else { return false };
        let Ok(packets) = rtc::rtcp::packet::unmarshal(&mut plain.freeze()) else {
            self.stats.malformed.fetch_add(1, Ordering::Relaxed);
            return true;
        };
        self.stats.rtcp_in.fetch_add(1, Ordering::Relaxed);
        for packet in packets.iter().filter(|packet| asks_for_keyframe(std::slice::from_ref(packet))) {
            let wanted = packet.destination_ssrc();
            let leg =
                state.legs.iter().find(|leg| leg.local.as_ref().is_some_and(|l| wanted.contains(&l.ssrc)));
            if let Some(wishes) = leg.and_then(|leg| leg.keyframe_wishes.as_ref()) {
                // Full: a wish is pending already, which is all one more would say.
                let _ = wishes.try_send(());
            }
        }
        let now = Instant::now();
        if let Err(err) = state.chain.handle_read(Self::tagged(Packet::Rtcp(packets), now, from)) {
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%err, "media plane interceptors refused RTCP");
        }
        while state.chain.poll_read().is_some() {}
        self.drain_writes(&mut state, send);
        self.run_timers(&mut state, now, send);
        true
    }

    /// Runs the interceptors' timers if one is due, and sends what they make.
    fn run_timers(&self, state: &mut PlaneState, now: Instant, send: Out<'_>) {
        if state.chain.poll_timeout().is_none_or(|at| at > now) {
            return;
        }
        if let Err(err) = state.chain.handle_timeout(now) {
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%err, "media plane timers");
        }
        self.drain_writes(state, send);
    }

    /// Protects and sends to the client what the interceptors let out: each RTP
    /// packet on its own, all RTCP of one pass as one compound packet.
    fn drain_writes(&self, state: &mut PlaneState, send: Out<'_>) {
        let mut rtcp: Compound = Vec::new();
        while let Some(out) = state.chain.poll_write() {
            match out.message.packet {
                Packet::Rtp(packet) => {
                    let protected = packet
                        .marshal()
                        .and_then(|plain| state.outbound.encrypt_rtp_with_header(&plain, &packet.header));
                    self.send_protected(protected, state.peer, &self.stats.rtp_out, send);
                }
                Packet::Rtcp(packets) => rtcp.extend(packets),
                _ => {}
            }
        }
        if !rtcp.is_empty() {
            // A compound packet starts with a report (RFC 3550 §6.1); with none it is a
            // reduced-size one (RFC 5506), as each feedback packet alone was.
            rtcp.sort_by_key(|packet| {
                let any = packet.as_any();
                !(any.is::<rtc::rtcp::sender_report::SenderReport>()
                    || any.is::<rtc::rtcp::receiver_report::ReceiverReport>())
            });
            let protected =
                rtc::rtcp::packet::marshal(&rtcp).and_then(|plain| state.outbound.encrypt_rtcp(&plain));
            self.send_protected(protected, state.peer, &self.stats.rtcp_out, send);
        }
    }

    fn send_protected(
        &self,
        protected: rtc::shared::error::Result<bytes::BytesMut>,
        to: Option<SocketAddr>,
        sent: &AtomicU64,
        send: Out<'_>,
    ) {
        match (protected, to) {
            (Ok(bytes), Some(to)) => {
                send(&bytes, to);
                sent.fetch_add(1, Ordering::Relaxed);
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
}

/// Makes a session's plane from DTLS's keys and hooks it on `mux` for the
/// PeerConnection.
pub(crate) async fn start(
    mux: &UdpMux,
    pc: &Arc<dyn PeerConnection>,
    info: &SessionInfo,
) -> Result<Arc<MediaPlane>, String> {
    let (profile, keys) = pc.srtp_session_keys().await.ok_or("DTLS has exported no SRTP keys yet")?;
    let local = pc.local_description().await.ok_or("no local description")?;
    let ufrag = ice_ufrag(&local.sdp).ok_or("the local description names no ICE ufrag")?;
    let plane = MediaPlane::new(profile, &keys, Arc::clone(&info.retransmit), Arc::clone(&info.plane))?;
    let sender = mux
        .attach_hook(ufrag, Arc::clone(&plane) as Arc<dyn MediaHook>)
        .ok_or("the PeerConnection is not on the UDP mux")?;
    let _ = plane.sender.set(sender);
    Ok(plane)
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
    fn on_datagram(&self, datagram: &[u8], from: SocketAddr) -> bool {
        match self.sender.get() {
            Some(sender) => self.handle(datagram, from, &mut |bytes, to| sender.send(bytes, to)),
            None => false,
        }
    }

    fn on_tick(&self, now: Instant) -> bool {
        if let Some(sender) = self.sender.get() {
            let mut state = lock(&self.state);
            self.run_timers(&mut state, now, &mut |bytes, to| sender.send(bytes, to));
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    const IN_SSRC: u32 = 0x1111_2222;
    const OUT_SSRC: u32 = 0x3333_4444;
    const CLIENT: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 40_000);

    fn keys() -> SessionKeys {
        SessionKeys {
            local_master_key: vec![1; 16],
            local_master_salt: vec![2; 14],
            remote_master_key: vec![3; 16],
            remote_master_salt: vec![4; 14],
        }
    }

    /// The client's side of the same SRTP session: our remote keys are its local ones.
    fn client_contexts() -> (SrtpContext, SrtpContext) {
        let keys = keys();
        let profile = ProtectionProfile::Aes128CmHmacSha1_80;
        let sending = srtp::context(&keys.remote_master_key, &keys.remote_master_salt, profile, None);
        let receiving = srtp::context(&keys.local_master_key, &keys.local_master_salt, profile, None);
        (sending.expect("context"), receiving.expect("context"))
    }

    fn vp8(ssrc: u32) -> StreamInfo {
        StreamInfo {
            ssrc,
            payload_type: 96,
            mime_type: "video/VP8".into(),
            clock_rate: 90_000,
            rtcp_feedback: vec![RTCPFeedback { typ: "nack".into(), parameter: String::new() }],
            ..Default::default()
        }
    }

    fn plane() -> (Arc<MediaPlane>, Arc<EchoPath>, mpsc::Receiver<()>) {
        let metrics = Arc::new(Metrics::new());
        let retransmit = Arc::new(RetransmitStats::new(Arc::clone(&metrics)));
        let plane =
            MediaPlane::new(ProtectionProfile::Aes128CmHmacSha1_80, &keys(), retransmit, Arc::default())
                .expect("plane");
        let path = Arc::new(EchoPath {
            out_ssrc: OUT_SSRC,
            out_payload_type: Some(100),
            tap: None,
            recorder: None,
            viewers: None,
            stats: Arc::default(),
            metrics,
        });
        let (wish, wishes) = mpsc::channel(1);
        let leg = PlaneLeg {
            plane: Arc::clone(&plane),
            remote: vp8(IN_SSRC),
            local: Some(vp8(OUT_SSRC)),
            keyframe_wishes: Some(wish),
        };
        plane.attach(Arc::clone(&path), &leg);
        (plane, path, wishes)
    }

    fn rtp(ssrc: u32, sequence_number: u16, payload: &'static [u8]) -> Vec<u8> {
        let packet = rtc::rtp::Packet {
            header: rtc::rtp::header::Header {
                version: 2,
                payload_type: 96,
                sequence_number,
                timestamp: 3000 * u32::from(sequence_number),
                ssrc,
                ..Default::default()
            },
            payload: bytes::Bytes::from_static(payload),
        };
        packet.marshal().expect("marshal").to_vec()
    }

    /// Feeds one datagram from the client; returns whether the plane took it and
    /// what it sent.
    fn feed(plane: &MediaPlane, datagram: &[u8]) -> (bool, Vec<Vec<u8>>) {
        let mut sent = Vec::new();
        let taken = plane.handle(datagram, CLIENT, &mut |bytes, to| {
            assert_eq!(to, CLIENT);
            sent.push(bytes.to_vec());
        });
        (taken, sent)
    }

    #[test]
    fn an_attached_ssrc_is_echoed_with_our_keys_ssrc_and_payload_type_and_the_rest_is_left() {
        let (plane, path, _) = plane();
        let (mut client_out, mut client_in) = client_contexts();
        let protected = client_out.encrypt_rtp(&rtp(IN_SSRC, 7, b"vp8 frame")).expect("protect");
        let (taken, sent) = feed(&plane, &protected);
        assert!(taken);
        assert_eq!(sent.len(), 1, "one echo");
        let echo = client_in.decrypt_rtp(&sent[0]).expect("the client unprotects the echo");
        let echo = rtc::rtp::Packet::unmarshal(&mut echo.freeze()).expect("RTP");
        assert_eq!(echo.header.ssrc, OUT_SSRC);
        assert_eq!(echo.header.payload_type, 100);
        assert_eq!(echo.header.sequence_number, 7);
        assert_eq!(&echo.payload[..], b"vp8 frame");
        assert_eq!(path.stats.packets_on_plane.load(Ordering::Relaxed), 1);
        assert_eq!(path.stats.packets_out.load(Ordering::Relaxed), 1);

        // Another SSRC (a track not attached yet): webrtc-rs's.
        let other = client_out.encrypt_rtp(&rtp(0x5555_6666, 1, b"x")).expect("protect");
        assert_eq!(feed(&plane, &other), (false, vec![]));
        // After detach, this one too.
        plane.detach(IN_SSRC);
        let later = client_out.encrypt_rtp(&rtp(IN_SSRC, 8, b"y")).expect("protect");
        assert_eq!(feed(&plane, &later), (false, vec![]));
    }

    #[test]
    fn forged_replayed_and_garbled_packets_are_counted_and_dropped() {
        let (plane, path, _) = plane();
        let (mut client_out, _) = client_contexts();
        let protected = client_out.encrypt_rtp(&rtp(IN_SSRC, 7, b"vp8 frame")).expect("protect");
        assert_eq!(feed(&plane, &protected).1.len(), 1);
        // The same packet again: a replay.
        assert_eq!(feed(&plane, &protected), (true, vec![]));
        // A flipped payload bit: the tag fails.
        let mut forged = client_out.encrypt_rtp(&rtp(IN_SSRC, 8, b"vp8 frame")).expect("protect");
        forged[14] ^= 1;
        assert_eq!(feed(&plane, &forged), (true, vec![]));
        // Plain RTP with our SSRC, and a truncated one: no tag at all.
        assert_eq!(feed(&plane, &rtp(IN_SSRC, 9, b"plain")), (true, vec![]));
        assert_eq!(feed(&plane, &rtp(IN_SSRC, 10, b"")[..12]), (true, vec![]));
        assert_eq!(plane.stats.unprotect_failed.load(Ordering::Relaxed), 4);
        assert_eq!(path.stats.packets_in.load(Ordering::Relaxed), 1);
        // RTCP that does not unprotect goes on to webrtc-rs untouched.
        assert_eq!(feed(&plane, &[0x81, 201, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0]), (false, vec![]));
    }

    #[test]
    fn nacks_are_answered_from_the_last_history_packets_only() {
        use rtc::rtcp::transport_feedbacks::transport_layer_nack::{NackPair, TransportLayerNack};
        let (plane, _path, _wishes) = plane();
        let (mut client_out, _) = client_contexts();
        let last = 600u16;
        for sequence_number in 1..=last {
            let protected =
                client_out.encrypt_rtp(&rtp(IN_SSRC, sequence_number, b"vp8 frame")).expect("protect");
            feed(&plane, &protected);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        let mut nack_for = |packet_id: u16| {
            let nack = TransportLayerNack {
                sender_ssrc: 1,
                media_ssrc: OUT_SSRC,
                nacks: vec![NackPair { packet_id, lost_packets: 0 }],
            };
            let plain = rtc::rtcp::packet::marshal(&[Box::new(nack) as Box<dyn rtc::rtcp::Packet>]).unwrap();
            let (_, sent) = feed(&plane, &client_out.encrypt_rtcp(&plain).expect("protect"));
            // Retransmissions are RTP; the pass may also send RTCP (types 200-207).
            sent.iter().filter(|bytes| !(200..=207).contains(&bytes[1])).count()
        };
        let oldest_kept = last - crate::nack_budget::HISTORY + 1;
        assert_eq!(nack_for(oldest_kept - 1), 0, "older than the history: not resent");
        assert_eq!(nack_for(oldest_kept), 1, "the oldest packet kept is resent");
    }

    #[test]
    fn nacks_are_answered_here_and_keyframe_requests_become_wishes() {
        use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
        use rtc::rtcp::transport_feedbacks::transport_layer_nack::{NackPair, TransportLayerNack};
        let (plane, _path, mut wishes) = plane();
        let (mut client_out, mut client_in) = client_contexts();
        let mut echoes = Vec::new();
        for sequence_number in 1..=20 {
            let protected =
                client_out.encrypt_rtp(&rtp(IN_SSRC, sequence_number, b"vp8 frame")).expect("protect");
            let (_, sent) = feed(&plane, &protected);
            echoes.extend(sent);
        }
        let echo_of_5 =
            echoes.iter().find(|bytes| bytes[2..4] == 5u16.to_be_bytes()).expect("echo 5").clone();
        let rtcp = |packet: Box<dyn rtc::rtcp::Packet>, client_out: &mut SrtpContext| {
            let plain = rtc::rtcp::packet::marshal(&[packet]).expect("marshal");
            client_out.encrypt_rtcp(&plain).expect("protect").to_vec()
        };
        // The retransmission budget refills at the stream's rate: 20 packets a
        // second (counted over a whole second) earn one packet in 50 ms.
        std::thread::sleep(std::time::Duration::from_millis(100));
        let nack = TransportLayerNack {
            sender_ssrc: 1,
            media_ssrc: OUT_SSRC,
            nacks: vec![NackPair { packet_id: 5, lost_packets: 0 }],
        };
        let (taken, sent) = feed(&plane, &rtcp(Box::new(nack), &mut client_out));
        assert!(taken, "a NACK is the plane's alone");
        assert_eq!(sent, vec![echo_of_5.clone()], "the echo of 5, resent as it was");
        client_in.decrypt_rtp(&sent[0]).expect("the client unprotects the retransmission");
        let pli = PictureLossIndication { sender_ssrc: 1, media_ssrc: OUT_SSRC };
        assert!(wishes.try_recv().is_err());
        let (taken, _) = feed(&plane, &rtcp(Box::new(pli), &mut client_out));
        assert!(taken, "a keyframe request is the plane's too");
        assert!(wishes.try_recv().is_ok(), "and becomes the echo's keyframe wish");
        assert_eq!(plane.stats.rtcp_in.load(Ordering::Relaxed), 2);
    }
}
