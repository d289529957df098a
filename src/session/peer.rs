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
use rtc::peer_connection::transport::RTCDtlsRole;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use webrtc::media_stream::MediaStreamTrack;

use crate::media::feedback::nack::HISTORY;
use crate::media::keyframe_feedback::{self, KeyframeRequestMarker};
use crate::media::udp_mux::{IceCredentials, MediaHook, TcpMux, UdpMux};
use rtc::ice::mdns::MulticastDnsMode;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceServer, Registry, SettingEngineBuilder, SrtpProtectionProfile,
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
    /// Public addresses to advertise instead of the host's (1:1 NAT): what clients
    /// are told of host candidates (`session::negotiate::Advertise`).
    pub nat_ips: Vec<IpAddr>,
    /// The mux the PeerConnection's sockets become views of (the ephemeral ports
    /// bound for `udp_addrs` are dropped): the server's always; a client's with its
    /// own media path.
    pub mux: Option<UdpMux>,
    /// Resolve the remote's `.local` (mDNS) candidates. Off, no multicast socket is
    /// opened at all (webrtc-rs opens one per PeerConnection otherwise).
    pub multicast_dns: bool,
    /// Local TCP addresses for ICE-TCP, resolved as `udp_addrs` are: a server's
    /// passive candidates (on `tcp`'s port), a client's active ones (it dials the
    /// server's passive candidates as they trickle in).
    pub tcp_addrs: Vec<SocketAddr>,
    /// The server's ICE-TCP port (on the mux's runtime), for clients whose UDP is
    /// blocked: every connection to it is handed to the PeerConnection it names.
    pub tcp: Option<TcpMux>,
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
    /// One ephemeral port on 127.0.0.1: what test peers use.
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

/// What runs a PeerConnection's RTP feedback, and who sees its datagrams first.
pub enum PeerMedia {
    /// The server's: on the mux, every datagram goes to the media plane first
    /// (`hook`), which handles all RTP and RTCP; webrtc-rs negotiates the feedback
    /// and runs none of it.
    Plane(Arc<dyn MediaHook>),
    /// A client's (the tests' peers, the load generator): webrtc-rs's interceptors
    /// (the ones it negotiates, passed to `extend`, which may add or replace them),
    /// and, on a mux, `hook` first (a client's own media path, `loadgen::media`);
    /// `srtp_profiles` to offer in DTLS (empty: webrtc-rs's, AES-GCM first).
    Client {
        extend: Box<dyn FnOnce(Registry) -> Registry + Send>,
        hook: Option<Arc<dyn MediaHook>>,
        srtp_profiles: Vec<SrtpProtectionProfile>,
    },
}

impl PeerMedia {
    /// A client with webrtc-rs's interceptors and its own packets numbered.
    pub fn client() -> PeerMedia {
        PeerMedia::Client { extend: Box::new(number_sent_packets), hook: None, srtp_profiles: Vec::new() }
    }
}

/// Registers on `media_engine` the feedback every PeerConnection here negotiates:
/// NACK (and PLI/FIR, from [`vp8_codec`]), receiver and sender reports, transport-cc
/// with the transport-wide sequence number extension, and the mid/rid extensions;
/// returns webrtc-rs's interceptors for it, with a NACK history of
/// [`HISTORY`] packets (webrtc-rs's default would be 1024).
fn negotiated_feedback(media_engine: &mut MediaEngine) -> webrtc::error::Result<Registry> {
    // `configure_nack` registers the feedback and would add a 1024-packet responder
    // (replacing it afterwards logs a warning per peer).
    let _ = configure_nack(Registry::new(), media_engine);
    let registry = Registry::new()
        .with(Slot::NackGenerator, NackGeneratorBuilder::new().build())
        .with(Slot::NackResponder, NackResponderBuilder::new().with_size(HISTORY).build());
    configure_simulcast_extension_headers(media_engine)?;
    Ok(configure_rtcp_reports(configure_twcc_receiver_only(registry, media_engine)?))
}

/// Builds a PeerConnection that speaks VP8 with the [`negotiated_feedback`], run as
/// `media` says, and no data channels of its own.
///
/// The feedback advertises `transport-cc` and the transport-wide sequence extension:
/// the feedback a browser publisher's send-side bandwidth estimate runs on. Nothing
/// here adapts the echo's rate, so the server does not number what it sends.
///
/// `answer_role` pins the DTLS role when this peer answers (see [`answering_dtls_role`]).
pub async fn build(
    network: &PeerNetwork,
    answer_role: Option<RTCDtlsRole>,
    handler: Arc<dyn PeerConnectionEventHandler>,
    media: PeerMedia,
) -> webrtc::error::Result<Arc<dyn PeerConnection>> {
    let mut media_engine = MediaEngine::default();
    media_engine.register_codec(
        RTCRtpCodecParameters { rtp_codec: vp8_codec(), payload_type: VP8_PAYLOAD_TYPE },
        RtpCodecKind::Video,
    )?;
    let feedback = negotiated_feedback(&mut media_engine)?;
    let (registry, hook, srtp_profiles) = match media {
        PeerMedia::Plane(hook) => (Registry::new(), Some(hook), Vec::new()),
        // Keyframe requests reach the application (a publisher counts them).
        PeerMedia::Client { extend, hook, srtp_profiles } => {
            let marker = KeyframeRequestMarker::default();
            (extend(feedback).with(Slot::from(keyframe_feedback::SLOT), marker), hook, srtp_profiles)
        }
    };

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
    if !srtp_profiles.is_empty() {
        settings = settings.with_srtp_protection_profiles(srtp_profiles);
    }

    let mut builder = PeerConnectionBuilder::new();
    if let (Some(mux), Some(credentials)) = (&network.mux, &credentials) {
        builder = builder.with_runtime(mux.runtime_for(credentials, hook, network.tcp.clone()));
    }
    if !network.tcp_addrs.is_empty() {
        builder = builder.with_tcp_addrs(network.tcp_addrs.clone());
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
