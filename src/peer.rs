//! How every PeerConnection in this crate is built: the server's sessions and the
//! client peers of the tests and the load generator share one recipe, so they agree
//! on codecs and feedback by construction.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use rtc::interceptor::{NackGeneratorBuilder, NackResponderBuilder, Slot, TwccSenderBuilder};
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_nack, configure_rtcp_reports, configure_simulcast_extension_headers,
    configure_twcc_receiver_only,
};
use rtc::peer_connection::transport::{RTCDtlsRole, RTCIceCandidateType};
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use webrtc::media_stream::MediaStreamTrack;

use crate::keyframe_feedback::{self, KeyframeRequestMarker};
use crate::nack_budget::{self, NackBudget, RetransmitStats};
use crate::udp_mux::{IceCredentials, UdpMux};
use rtc::ice::mdns::MulticastDnsMode;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceServer, Registry, SettingEngineBuilder,
};

/// The payload type we offer VP8 under (what Chromium uses too). As answerer we take
/// the offerer's number.
pub const VP8_PAYLOAD_TYPE: u8 = 96;
pub const VP8_CLOCK_RATE: u32 = 90_000;
/// Bytes a data channel may hold unsent before sends fail (a second of results).
pub const DATA_CHANNEL_SEND_BUFFER: usize = 64 * 1024;
/// Payload bytes per RTP packet we packetize: under a typical path MTU with room for SRTP.
pub const RTP_MTU: usize = 1200;

/// VP8, the one codec we negotiate, with the feedback an echo needs: NACK for loss,
/// PLI/FIR for keyframes. Bandwidth feedback is transport-cc, which [`build`] adds
/// (with the header extension it reports on, and the interceptors that send it). No
/// `goog-remb`: nothing here estimates a receive rate, so no REMB is ever sent, and
/// an answer must not advertise feedback the server does not send.
pub fn vp8_codec() -> RTCRtpCodec {
    let feedback =
        |typ: &str, parameter: &str| RTCPFeedback { typ: typ.to_owned(), parameter: parameter.to_owned() };
    RTCRtpCodec {
        mime_type: rtc::peer_connection::configuration::media_engine::MIME_TYPE_VP8.to_owned(),
        clock_rate: VP8_CLOCK_RATE,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![feedback("ccm", "fir"), feedback("nack", ""), feedback("nack", "pli")],
    }
}

/// A local VP8 track that sends RTP we write ourselves, under a fresh random SSRC.
pub fn vp8_rtp_track(stream_id: &str, track_id: &str) -> Arc<TrackLocalStaticRTP> {
    Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        stream_id.to_owned(),
        track_id.to_owned(),
        track_id.to_owned(),
        RtpCodecKind::Video,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(rand::random::<u32>()),
                ..Default::default()
            },
            codec: vp8_codec(),
            ..Default::default()
        }],
    )))
}

/// Network settings of one PeerConnection.
#[derive(Debug, Clone, Default)]
pub struct PeerNetwork {
    /// Local UDP addresses to bind: concrete addresses are bound as given (loopback
    /// included); a wildcard expands to every non-loopback interface.
    pub udp_addrs: Vec<SocketAddr>,
    pub stun_urls: Vec<String>,
    /// Public addresses to advertise instead of the host's (1:1 NAT).
    pub nat_ips: Vec<IpAddr>,
    /// The shared port (`--udp-port PORT`): the PeerConnection's sockets become views
    /// of the mux's (the ephemeral ports bound for `udp_addrs` are dropped).
    pub mux: Option<UdpMux>,
    /// Resolve the remote's `.local` (mDNS) candidates. Off, no multicast socket is
    /// opened at all (webrtc-rs opens one per PeerConnection otherwise).
    pub multicast_dns: bool,
}

/// The DTLS role an answerer must take for an offer, from its `a=setup:` lines
/// (RFC 5763): the opposite of what the offerer pinned, or our default (client)
/// for `actpass`. webrtc-rs answers with its configured role whatever the offer
/// says, so without this an offer with `setup:active` deadlocks the handshake.
pub fn answering_dtls_role(offer_sdp: &str) -> Option<RTCDtlsRole> {
    offer_sdp.lines().find_map(|line| match line.trim().strip_prefix("a=setup:")? {
        "active" => Some(RTCDtlsRole::Server),
        "passive" => Some(RTCDtlsRole::Client),
        _ => None,
    })
}

impl PeerNetwork {
    /// One ephemeral port on 127.0.0.1: what tests and the load generator use.
    pub fn loopback() -> Self {
        PeerNetwork {
            udp_addrs: vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)],
            ..Default::default()
        }
    }
}

/// Numbers every RTP packet this peer sends with the transport-wide sequence number
/// (the TWCC sender), so the remote's `transport-cc` feedback can report on it:
/// without it a peer that negotiated transport-cc gets no feedback at all.
pub fn number_sent_packets(registry: Registry) -> Registry {
    registry.with(Slot::TwccSender, TwccSenderBuilder::new().build())
}

/// Where a PeerConnection's incoming media is unprotected and answered with RTP
/// feedback (NACK, reports, transport-cc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaPath {
    /// In the PeerConnection: webrtc-rs's interceptors (viewers, clients, no mux).
    Driver,
    /// In the session's media plane on the UDP mux (`session::plane`): the
    /// PeerConnection negotiates the same feedback but runs only the keyframe
    /// marker, so nothing reports twice on one stream.
    Plane,
}

/// The RTP feedback interceptors (NACK generator and responder, RTCP reports,
/// TWCC receiver) with the retransmission budget in front of the responder;
/// registers on `media_engine` the feedback and header extension they negotiate.
pub fn feedback_interceptors(
    media_engine: &mut MediaEngine,
    retransmit: Arc<RetransmitStats>,
) -> webrtc::error::Result<Registry> {
    // webrtc-rs's defaults (`register_default_interceptors`), but with a NACK history
    // of [`nack_budget::HISTORY`] packets: `configure_nack` registers the feedback and would
    // add a 1024-packet responder (replacing it afterwards logs a warning per peer).
    let _ = configure_nack(Registry::new(), media_engine);
    let registry = Registry::new()
        .with(Slot::NackGenerator, NackGeneratorBuilder::new().build())
        .with(Slot::NackResponder, NackResponderBuilder::new().with_size(nack_budget::HISTORY).build());
    configure_simulcast_extension_headers(media_engine)?;
    let registry = configure_rtcp_reports(configure_twcc_receiver_only(registry, media_engine)?);
    Ok(registry.with(Slot::from(nack_budget::SLOT), NackBudget::new(retransmit)))
}

/// Builds a PeerConnection that speaks VP8 with the [`feedback_interceptors`]
/// (with [`MediaPath::Plane`]: negotiated, but run by the session's plane), the
/// keyframe-request marker, and no data channels.
///
/// The defaults advertise `transport-cc` and the transport-wide sequence extension,
/// and their TWCC receiver sends `TransportLayerCC` (every 100 ms) about each arriving
/// packet that carries a sequence number: the feedback a browser publisher's send-side
/// bandwidth estimate runs on. Nothing in them writes that number on what this peer
/// sends; a peer that wants feedback on its own packets adds [`number_sent_packets`]
/// (our clients do, as browsers number theirs). The server does not: nothing here
/// adapts the echo's rate, so reports about it would go unread.
///
/// `answer_role` pins the DTLS role when this peer answers (see [`answering_dtls_role`]).
/// `retransmit` counts what the retransmission budget let through.
pub async fn build(
    network: &PeerNetwork,
    answer_role: Option<RTCDtlsRole>,
    handler: Arc<dyn PeerConnectionEventHandler>,
    retransmit: Arc<RetransmitStats>,
    media_path: MediaPath,
) -> webrtc::error::Result<Arc<dyn PeerConnection>> {
    build_with(network, answer_role, handler, retransmit, media_path, |registry| registry).await
}

/// [`build`], with `extend` adding interceptors to the recipe's chain (clients add
/// [`number_sent_packets`]; tests observe the wire with it).
pub async fn build_with(
    network: &PeerNetwork,
    answer_role: Option<RTCDtlsRole>,
    handler: Arc<dyn PeerConnectionEventHandler>,
    retransmit: Arc<RetransmitStats>,
    media_path: MediaPath,
    extend: impl FnOnce(Registry) -> Registry,
) -> webrtc::error::Result<Arc<dyn PeerConnection>> {
    let mut media_engine = MediaEngine::default();
    media_engine.register_codec(
        RTCRtpCodecParameters { rtp_codec: vp8_codec(), payload_type: VP8_PAYLOAD_TYPE },
        RtpCodecKind::Video,
    )?;
    let feedback = feedback_interceptors(&mut media_engine, retransmit)?;
    let registry = match media_path {
        MediaPath::Driver => feedback,
        // Negotiated all the same (`media_engine`); run by the session's plane.
        MediaPath::Plane => Registry::new(),
    };
    let registry =
        extend(registry.with(Slot::from(keyframe_feedback::SLOT), KeyframeRequestMarker::default()));

    let ice_servers = if network.stun_urls.is_empty() {
        Vec::new()
    } else {
        vec![RTCIceServer { urls: network.stun_urls.clone(), ..Default::default() }]
    };
    let config = RTCConfigurationBuilder::new().with_ice_servers(ice_servers).build();

    let mdns = if network.multicast_dns { MulticastDnsMode::QueryOnly } else { MulticastDnsMode::Disabled };
    let mut settings = SettingEngineBuilder::new()
        // A wildcard bind never yields loopback candidates; a concrete loopback bind
        // does only with this set. Peers on this machine need them.
        .with_include_loopback_candidate(true)
        .with_multicast_dns_mode(mdns);
    // On the mux, our ICE credentials: the mux checks binding requests with them.
    let credentials = network.mux.as_ref().map(|_| IceCredentials::random());
    if let Some(credentials) = &credentials {
        settings = settings.with_ice_credentials(credentials.ufrag.clone(), credentials.password.clone());
    }
    if let Some(role) = answer_role {
        settings = settings.with_answering_dtls_role(role);
    }
    if !network.nat_ips.is_empty() {
        settings = settings.with_nat_1to1_ips(
            network.nat_ips.iter().map(IpAddr::to_string).collect(),
            RTCIceCandidateType::Host,
        );
    }

    let mut builder = PeerConnectionBuilder::new();
    if let (Some(mux), Some(credentials)) = (&network.mux, &credentials) {
        builder = builder.with_runtime(mux.runtime_for(credentials));
    }
    let pc = builder
        .with_configuration(config)
        .with_media_engine(media_engine)
        .with_setting_engine(settings.build())
        .with_interceptor_registry(registry)
        .with_handler(handler)
        .with_udp_addrs(network.udp_addrs.clone())
        // Data channels carry results: a client that does not read must not grow
        // our memory (sends over this fail fast, and the loop counts them).
        .with_data_channel_send_buffer_limit(DATA_CHANNEL_SEND_BUFFER)
        .build()
        .await?;
    Ok(Arc::new(pc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answerer_takes_the_role_the_offer_leaves() {
        assert_eq!(answering_dtls_role("v=0\r\na=setup:active\r\n"), Some(RTCDtlsRole::Server));
        assert_eq!(answering_dtls_role("v=0\r\na=setup:passive\r\n"), Some(RTCDtlsRole::Client));
        assert_eq!(answering_dtls_role("v=0\r\na=setup:actpass\r\n"), None);
        assert_eq!(answering_dtls_role("v=0\r\n"), None);
    }
}
