//! Negotiation, as sessions and viewers both do it: check and parse the offer,
//! build the PeerConnection, answer, trickle candidates both ways, close.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionEventHandler, RTCIceCandidateInit, RTCPeerConnectionIceEvent,
    RTCSessionDescription,
};
use webrtc::rtp_transceiver::RtpSender;

use super::SessionEvent;
use crate::media::plane::{Extensions, MediaPlane};
use crate::session::peer::{self, PeerMedia, PeerNetwork};
use crate::session::signaling::{Candidate, ErrorCode, SignalError, candidate_address, candidate_type};

/// How long closing a PeerConnection may take before we stop waiting for it.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Most video tracks one offer may carry (each gets an echo track).
pub const MAX_VIDEO_TRACKS: usize = 4;

/// What clients are told of the server's candidates, in answers and trickled: not
/// the `tcptype active` ones (the server never dials), and behind 1:1 NAT
/// (`--nat-ip`) each host candidate on an address beyond loopback names the public
/// address of its family in place of its own (the NAT maps it back; the ICE agent
/// keeps the address its sockets have).
#[derive(Debug, Clone, Default)]
pub(crate) struct Advertise {
    nat_ips: Vec<IpAddr>,
}

impl Advertise {
    pub(crate) fn new(network: &PeerNetwork) -> Self {
        Advertise { nat_ips: network.nat_ips.clone() }
    }

    /// The candidate attribute (without `a=`) clients are told, or `None`.
    fn candidate(&self, attribute: &str) -> Option<String> {
        if dials_out(attribute) {
            return None;
        }
        Some(self.public(attribute).unwrap_or_else(|| attribute.to_owned()))
    }

    /// `attribute` naming the public address, where one stands for its address.
    fn public(&self, attribute: &str) -> Option<String> {
        let ip: IpAddr = candidate_address(attribute)?.parse().ok()?;
        if candidate_type(attribute)? != "host" || ip.is_loopback() {
            return None;
        }
        let public = self.nat_ips.iter().find(|nat| nat.is_ipv4() == ip.is_ipv4())?.to_string();
        let mut fields: Vec<&str> = attribute.split_ascii_whitespace().collect();
        fields[4] = &public; // the address, as candidate_address read it
        Some(fields.join(" "))
    }

    /// `sdp` with its candidate lines as [`candidate`](Self::candidate) tells them.
    fn sdp(&self, sdp: String) -> String {
        if self.nat_ips.is_empty() && !sdp.contains("tcptype active") {
            return sdp;
        }
        let mut told = String::with_capacity(sdp.len());
        for line in sdp.split_inclusive('\n') {
            let body = line.trim_end();
            match body.strip_prefix("a=").filter(|a| a.starts_with("candidate:")) {
                Some(attribute) => {
                    if let Some(attribute) = self.candidate(attribute) {
                        told.push_str("a=");
                        told.push_str(&attribute);
                        told.push_str(&line[body.len()..]);
                    }
                }
                None => told.push_str(line),
            }
        }
        told
    }

    /// Trickles a local candidate to the client through the owner's `events`; the
    /// attribute told, if any.
    pub(crate) fn trickle(
        &self,
        events: &mpsc::UnboundedSender<SessionEvent>,
        event: RTCPeerConnectionIceEvent,
    ) -> Option<String> {
        let init = match event.candidate.to_json() {
            Ok(init) => init,
            Err(err) => {
                tracing::warn!(%err, "could not serialize a local candidate");
                return None;
            }
        };
        let told = self.candidate(&init.candidate)?;
        let _ = events.send(SessionEvent::Candidate(Candidate {
            candidate: told.clone(),
            sdp_mid: init.sdp_mid,
            sdp_mline_index: init.sdp_mline_index,
            username_fragment: None,
        }));
        Some(told)
    }
}

/// A client's offer, checked and parsed, with what answering it needs.
pub(crate) struct ReadOffer {
    pub(crate) offer: RTCSessionDescription,
    /// The DTLS role the offer leaves us (webrtc-rs would not honour it by itself).
    pub(crate) answer_role: Option<rtc::peer_connection::transport::RTCDtlsRole>,
    pub(crate) video_tracks: usize,
}

/// Counts the offer's video m-lines (at most [`MAX_VIDEO_TRACKS`]) and parses it.
pub(crate) fn read_offer(offer_sdp: String) -> Result<ReadOffer, SignalError> {
    let video_tracks = offer_sdp.lines().filter(|line| line.starts_with("m=video ")).count();
    if video_tracks > MAX_VIDEO_TRACKS {
        return Err(SignalError::new(
            ErrorCode::BadSdp,
            format!("{video_tracks} video m-lines; at most {MAX_VIDEO_TRACKS}"),
        ));
    }
    // Codecs named, none of them VP8 (an offer naming none is just unusable: bad_sdp).
    let offered = video_codecs(&offer_sdp);
    if !offered.is_empty() && !offered.iter().any(|name| name.eq_ignore_ascii_case("VP8")) {
        return Err(SignalError::new(
            ErrorCode::UnsupportedCodec,
            format!("the offer's video codecs are {}; face-echo takes VP8", offered.join(", ")),
        ));
    }
    let answer_role = peer::answering_dtls_role(&offer_sdp);
    let offer = RTCSessionDescription::offer(offer_sdp)
        .map_err(|e| SignalError::new(ErrorCode::BadSdp, format!("unparsable SDP: {e}")))?;
    Ok(ReadOffer { offer, answer_role, video_tracks })
}

/// The codec names of the offer's video m-lines (`a=rtpmap:<pt> <name>/<rate>`),
/// each once, in order.
fn video_codecs(sdp: &str) -> Vec<String> {
    let mut in_video = false;
    let mut names: Vec<String> = Vec::new();
    for line in sdp.lines() {
        if line.starts_with("m=") {
            in_video = line.starts_with("m=video ");
        } else if in_video && let Some(rtpmap) = line.strip_prefix("a=rtpmap:") {
            let name = rtpmap.split_whitespace().nth(1).and_then(|c| c.split('/').next()).unwrap_or("");
            if !name.is_empty() && !names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                names.push(name.to_owned());
            }
        }
    }
    names
}

/// Whether a local candidate is the `tcptype active` one webrtc-rs gathers beside
/// each passive one (port 9): the server never dials, so clients are not told of it.
fn dials_out(attribute: &str) -> bool {
    attribute.split_ascii_whitespace().skip_while(|word| *word != "tcptype").nth(1) == Some("active")
}

/// Applies `offer` and returns the answer's SDP as clients are told it (tracks must
/// be added already).
pub(crate) async fn answer_offer(
    pc: &Arc<dyn PeerConnection>,
    offer: RTCSessionDescription,
    advertise: &Advertise,
) -> Result<String, SignalError> {
    pc.set_remote_description(offer)
        .await
        .map_err(|e| SignalError::new(ErrorCode::BadSdp, format!("offer rejected: {e}")))?;
    let answer = pc
        .create_answer(None)
        .await
        .map_err(|e| SignalError::new(ErrorCode::BadSdp, format!("cannot answer this offer: {e}")))?;
    pc.set_local_description(answer)
        .await
        .map_err(|e| SignalError::new(ErrorCode::Internal, format!("set_local_description: {e}")))?;
    let local = pc
        .local_description()
        .await
        .ok_or_else(|| SignalError::new(ErrorCode::Internal, "no local description"))?;
    Ok(advertise.sdp(local.sdp))
}

/// The local description once ICE gathering is complete (it then carries every local
/// candidate and `a=end-of-candidates`), or as it is after `within`: for clients that
/// cannot trickle (WHIP, WHEP), whose answer must name the server's candidates.
pub(crate) async fn gathered_local_sdp(
    pc: &Arc<dyn PeerConnection>,
    within: Duration,
    advertise: &Advertise,
) -> String {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let sdp = pc.local_description().await.map(|local| local.sdp).unwrap_or_default();
        if sdp.contains("a=end-of-candidates") || tokio::time::Instant::now() >= deadline {
            return advertise.sdp(sdp);
        }
        // Host candidates take a few ms; STUN ones up to the STUN timeout.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Applies a client's trickled candidate to `pc`.
pub(crate) async fn add_remote_candidate(
    pc: &Arc<dyn PeerConnection>,
    candidate: Candidate,
) -> Result<(), SignalError> {
    let init = RTCIceCandidateInit {
        candidate: candidate.candidate,
        sdp_mid: candidate.sdp_mid,
        sdp_mline_index: candidate.sdp_mline_index,
        username_fragment: candidate.username_fragment,
        ..Default::default()
    };
    pc.add_ice_candidate(init)
        .await
        .map_err(|e| SignalError::new(ErrorCode::BadCandidate, format!("candidate rejected: {e}")))
}

/// Builds a PeerConnection on the first of `networks` (the media port it was given),
/// with `plane` taking its media, and says which network.
pub(crate) async fn build_peer<'a>(
    networks: &'a [PeerNetwork],
    answer_role: Option<rtc::peer_connection::transport::RTCDtlsRole>,
    handler: Arc<dyn PeerConnectionEventHandler>,
    plane: &Arc<MediaPlane>,
) -> Result<(Arc<dyn PeerConnection>, &'a PeerNetwork), SignalError> {
    let Some(network) = networks.first() else {
        return Err(SignalError::new(
            ErrorCode::ServerFull,
            "every media port is in use (--udp-port's range)",
        ));
    };
    let media = PeerMedia::Plane(Arc::clone(plane) as _);
    match peer::build(network, answer_role, handler, media).await {
        Ok(pc) => Ok((pc, network)),
        Err(e) => {
            tracing::debug!(addrs = ?network.udp_addrs, %e, "PeerConnection did not start");
            Err(SignalError::new(ErrorCode::Internal, format!("could not create a PeerConnection: {e}")))
        }
    }
}

/// Hands `plane` the SRTP keys DTLS exported (the PeerConnection is connected);
/// logged when there are none (its media then goes nowhere).
pub(crate) async fn start_plane(pc: &Arc<dyn PeerConnection>, plane: &MediaPlane, what: &str, id: &str) {
    let started = match pc.srtp_session_keys().await {
        Some((profile, keys)) => plane.start(profile, &keys),
        None => Err("DTLS has exported no SRTP keys".to_owned()),
    };
    if let Err(err) = started {
        tracing::error!(what, id, %err, "the media plane cannot start");
    }
}

/// Adds `count` echo tracks (under random SSRCs): answering puts each on an
/// offered m-line, and the answer names its SSRC there (the media plane echoes
/// under it; nothing is ever written to the track itself).
pub(crate) async fn add_echo_tracks(pc: &Arc<dyn PeerConnection>, count: usize) -> Result<(), SignalError> {
    for index in 0..count {
        let track = peer::vp8_rtp_track("face-echo", &format!("echo-{index}"));
        pc.add_track(track as _)
            .await
            .map_err(|e| SignalError::new(ErrorCode::Internal, format!("add_track: {e}")))?;
    }
    Ok(())
}

/// The SSRC the offer names for each m-line (`a=mid:` → the first `a=ssrc:`, or
/// the primary of an `a=ssrc-group:FID`): the media plane takes those packets from
/// the first one. An offer without them is bound by the first packet instead.
pub(crate) fn offered_ssrcs(sdp: &str) -> Vec<(String, u32)> {
    let mut found: Vec<(String, u32)> = Vec::new();
    let mut mid: Option<&str> = None;
    let mut ssrc: Option<u32> = None;
    let flush = |mid: Option<&str>, ssrc: Option<u32>, found: &mut Vec<(String, u32)>| {
        if let (Some(mid), Some(ssrc)) = (mid, ssrc) {
            found.push((mid.to_owned(), ssrc));
        }
    };
    for line in sdp.lines().map(str::trim) {
        if line.starts_with("m=") {
            flush(mid.take(), ssrc.take(), &mut found);
        } else if let Some(value) = line.strip_prefix("a=mid:") {
            mid = Some(value);
        } else if let Some(group) = line.strip_prefix("a=ssrc-group:FID ") {
            ssrc = group.split_whitespace().next().and_then(|first| first.parse().ok()).or(ssrc);
        } else if let Some(value) = line.strip_prefix("a=ssrc:") {
            ssrc = ssrc.or_else(|| value.split_whitespace().next().and_then(|first| first.parse().ok()));
        }
    }
    flush(mid, ssrc, &mut found);
    found
}

/// One negotiated m-line the client sends on.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct IncomingStream {
    pub(crate) mid: String,
    /// As the offer named it, if it did.
    pub(crate) ssrc: Option<u32>,
    /// NACK negotiated for it.
    pub(crate) nack: bool,
    /// Its echo's SSRC and payload type (`None`: nothing is sent back on it).
    pub(crate) echo: Option<(u32, u8)>,
}

/// The video m-lines our `answer` receives VP8 on, in order, each with its echo
/// (where the answer sends too: our `a=ssrc`, the same payload type) and the SSRC
/// the `offer` named for it; and the header extension ids the plane reads. Read from
/// the SDP webrtc-rs wrote: it is what was negotiated, and it is there before any
/// packet (webrtc-rs makes its receivers only when a track arrives).
pub(crate) fn incoming_streams(answer: &str, offer: &str) -> (Extensions, Vec<IncomingStream>) {
    let offered = offered_ssrcs(offer);
    let mut extensions = Extensions::default();
    let mut streams = Vec::new();
    for section in answer.split("\nm=").skip(1) {
        if !section.starts_with("video ") {
            continue;
        }
        let lines: Vec<&str> = section.lines().map(str::trim).collect();
        let attribute = |name: &str| lines.iter().find_map(|line| line.strip_prefix(name));
        let Some(mid) = attribute("a=mid:") else { continue };
        let Some(vp8) = lines.iter().find_map(|line| {
            let (pt, codec) = line.strip_prefix("a=rtpmap:")?.split_once(' ')?;
            codec.to_ascii_lowercase().starts_with("vp8/").then(|| pt.parse::<u8>().ok())?
        }) else {
            continue;
        };
        let sends = lines.contains(&"a=sendrecv") || lines.contains(&"a=sendonly");
        let receives = lines.contains(&"a=sendrecv") || lines.contains(&"a=recvonly");
        if !receives {
            continue;
        }
        let feedback = |kind: &str| {
            lines.iter().filter_map(|line| line.strip_prefix("a=rtcp-fb:")).any(|fb| {
                let (pt, rest) = fb.split_once(' ').unwrap_or((fb, ""));
                (pt == "*" || pt.parse() == Ok(vp8)) && rest.trim() == kind
            })
        };
        for extmap in lines.iter().filter_map(|line| line.strip_prefix("a=extmap:")) {
            let (id, uri) = extmap.split_once(' ').unwrap_or((extmap, ""));
            let id = id.split('/').next().and_then(|id| id.parse::<u8>().ok());
            match uri.split_whitespace().next() {
                Some(rtc::sdp::extmap::SDES_MID_URI) => extensions.mid = id,
                Some(rtc::sdp::extmap::TRANSPORT_CC_URI) if feedback("transport-cc") => {
                    extensions.transport_cc = id
                }
                _ => {}
            }
        }
        let ours =
            attribute("a=ssrc:").and_then(|value| value.split_whitespace().next()?.parse::<u32>().ok());
        streams.push(IncomingStream {
            mid: mid.to_owned(),
            ssrc: offered.iter().find(|(offered_mid, _)| offered_mid == mid).map(|(_, ssrc)| *ssrc),
            nack: feedback("nack"),
            echo: ours.filter(|_| sends).map(|ssrc| (ssrc, vp8)),
        });
    }
    (extensions, streams)
}

pub(crate) async fn negotiated_vp8_payload_type(sender: &Arc<dyn RtpSender>) -> Option<u8> {
    let parameters = sender.get_parameters().await.ok()?;
    parameters
        .rtp_parameters
        .codecs
        .iter()
        .find(|codec| codec.rtp_codec.mime_type.eq_ignore_ascii_case("video/VP8"))
        .map(|codec| codec.payload_type)
}

/// Closes `pc`, waiting at most [`CLOSE_TIMEOUT`]; `what` names it in the log.
pub(crate) async fn close(pc: &Arc<dyn PeerConnection>, what: &str) {
    if tokio::time::timeout(CLOSE_TIMEOUT, pc.close()).await.is_err() {
        tracing::warn!(what, "PeerConnection close timed out");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GATHERED: &str = "v=0\r\na=candidate:1 1 udp 2130706431 10.0.0.1 5000 typ host\r\n\
        a=candidate:2 1 tcp 2124414975 10.0.0.1 5000 typ host tcptype passive\r\n\
        a=candidate:3 1 tcp 2128609279 10.0.0.1 9 typ host tcptype active\r\n\
        a=candidate:4 1 udp 2130706431 127.0.0.1 5000 typ host\r\n\
        a=candidate:5 1 udp 2130706431 fd00::1 5000 typ host\r\n\
        a=candidate:6 1 udp 1694498815 198.51.100.1 6000 typ srflx raddr 10.0.0.1 rport 5000\r\n\
        a=end-of-candidates\r\n";

    #[test]
    fn clients_are_not_told_of_the_active_tcp_candidate() {
        let told = Advertise::default().sdp(GATHERED.to_string());
        assert_eq!(told.lines().count(), GATHERED.lines().count() - 1, "{told}");
        assert!(told.contains("tcptype passive") && !told.contains("tcptype active"));
        assert!(told.contains("10.0.0.1 5000 typ host\r\n"), "addresses as they are: {told}");
    }

    #[test]
    fn behind_nat_host_candidates_name_the_public_address_of_their_family() {
        let advertise = Advertise { nat_ips: vec!["203.0.113.7".parse().unwrap()] };
        let told = advertise.sdp(GATHERED.to_string());
        assert!(told.contains("a=candidate:1 1 udp 2130706431 203.0.113.7 5000 typ host\r\n"), "{told}");
        assert!(
            told.contains("a=candidate:2 1 tcp 2124414975 203.0.113.7 5000 typ host tcptype passive\r\n")
        );
        assert!(told.contains(" 127.0.0.1 5000 "), "loopback stays: {told}");
        assert!(told.contains(" fd00::1 5000 "), "no public IPv6 given: {told}");
        assert!(
            told.contains(" 198.51.100.1 6000 typ srflx raddr 10.0.0.1 "),
            "server reflexive as found: {told}"
        );
        assert!(!told.contains("tcptype active"));
    }

    #[test]
    fn incoming_streams_are_read_from_the_answer_with_their_echo_and_offered_ssrc() {
        let offer = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=ssrc:111 cname:x\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\n";
        let answer = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 98\r\na=mid:0\r\na=sendrecv\r\n\
            a=extmap:3 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
            a=extmap:5 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
            a=rtpmap:98 VP8/90000\r\na=rtcp-fb:98 nack\r\na=rtcp-fb:98 nack pli\r\n\
            a=rtcp-fb:98 transport-cc\r\na=ssrc:777 cname:echo\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 98\r\na=mid:1\r\na=recvonly\r\na=rtpmap:98 VP8/90000\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 98\r\na=mid:2\r\na=sendonly\r\na=rtpmap:98 VP8/90000\r\n\
            m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:3\r\n";
        let (extensions, streams) = incoming_streams(answer, offer);
        assert_eq!((extensions.mid, extensions.transport_cc), (Some(3), Some(5)));
        assert_eq!(
            streams,
            [
                IncomingStream { mid: "0".into(), ssrc: Some(111), nack: true, echo: Some((777, 98)) },
                IncomingStream { mid: "1".into(), ssrc: None, nack: false, echo: None },
            ]
        );
    }

    #[test]
    fn the_offered_ssrc_of_each_m_line_is_its_first_or_its_fid_primary() {
        let sdp = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=ssrc-group:FID 111 222\r\n\
            a=ssrc:111 cname:x\r\na=ssrc:222 cname:x\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\n\
            a=ssrc:333 cname:y\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\n";
        assert_eq!(offered_ssrcs(sdp), [("0".to_owned(), 111), ("1".to_owned(), 333)]);
    }

    const H264_ONLY: &str = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 102 103\r\na=rtpmap:102 H264/90000\r\na=rtpmap:103 rtx/90000\r\n";

    #[test]
    fn an_offer_without_vp8_is_refused_naming_what_it_offered() {
        assert_eq!(video_codecs(H264_ONLY), ["H264", "rtx"]);
        let Err(error) = read_offer(H264_ONLY.to_owned()) else { panic!("accepted an H264-only offer") };
        assert_eq!(error.code, ErrorCode::UnsupportedCodec);
        assert!(error.message.contains("H264") && error.message.contains("VP8"), "{}", error.message);
        let vp8 = H264_ONLY.replace("H264/90000", "VP8/90000");
        // (This sketch of an SDP may fail to parse, but not for its codec.)
        assert!(read_offer(vp8).err().is_none_or(|e| e.code != ErrorCode::UnsupportedCodec));
    }
}
