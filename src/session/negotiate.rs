//! Negotiation, as sessions and viewers both do it: check and parse the offer,
//! build the PeerConnection, answer, trickle candidates both ways, close.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionEventHandler, RTCIceCandidateInit, RTCPeerConnectionIceEvent,
    RTCSessionDescription,
};
use webrtc::rtp_transceiver::RtpSender;

use super::SessionEvent;
use crate::nack_budget::RetransmitStats;
use crate::peer::{self, MediaPath, PeerNetwork};
use crate::signaling::{Candidate, ErrorCode, SignalError};

/// How long closing a PeerConnection may take before we stop waiting for it.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Most video tracks one offer may carry (each gets an echo track).
pub const MAX_VIDEO_TRACKS: usize = 4;

/// A local candidate as the event to trickle to the client.
pub(crate) fn candidate_event(event: RTCPeerConnectionIceEvent) -> Option<SessionEvent> {
    match event.candidate.to_json() {
        Ok(init) => Some(SessionEvent::Candidate(Candidate {
            candidate: init.candidate,
            sdp_mid: init.sdp_mid,
            sdp_mline_index: init.sdp_mline_index,
            username_fragment: None,
        })),
        Err(err) => {
            tracing::warn!(%err, "could not serialize a local candidate");
            None
        }
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

/// Applies `offer` and returns the answer's SDP (tracks must be added already).
pub(crate) async fn answer_offer(
    pc: &Arc<dyn PeerConnection>,
    offer: RTCSessionDescription,
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
    Ok(local.sdp)
}

/// The local description once ICE gathering is complete (it then carries every local
/// candidate and `a=end-of-candidates`), or as it is after `within`: for clients that
/// cannot trickle (WHIP, WHEP), whose answer must name the server's candidates.
pub(crate) async fn gathered_local_sdp(pc: &Arc<dyn PeerConnection>, within: Duration) -> String {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let sdp = pc.local_description().await.map(|local| local.sdp).unwrap_or_default();
        if sdp.contains("a=end-of-candidates") || tokio::time::Instant::now() >= deadline {
            return sdp;
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

/// Builds a PeerConnection on the first of `networks` whose sockets bind, and
/// says which one. `plane`: a publisher's, whose media a plane of its own handles
/// on that network's mux ([`MediaPath::Plane`]; without a mux it cannot).
pub(crate) async fn build_peer<'a>(
    networks: &'a [PeerNetwork],
    answer_role: Option<rtc::peer_connection::transport::RTCDtlsRole>,
    handler: Arc<dyn PeerConnectionEventHandler>,
    retransmit: &Arc<RetransmitStats>,
    plane: bool,
) -> Result<(Arc<dyn PeerConnection>, &'a PeerNetwork), SignalError> {
    let mut built = Err(SignalError::new(ErrorCode::Internal, "no media address to bind"));
    for network in networks {
        let path = match plane && network.mux.is_some() {
            true => MediaPath::Plane,
            false => MediaPath::Driver,
        };
        match peer::build(network, answer_role, Arc::clone(&handler), Arc::clone(retransmit), path).await {
            Ok(pc) => return Ok((pc, network)),
            Err(e) => {
                tracing::debug!(addrs = ?network.udp_addrs, %e, "PeerConnection did not start");
                built = Err(SignalError::new(
                    ErrorCode::Internal,
                    format!("could not create a PeerConnection: {e}"),
                ));
            }
        }
    }
    built
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

/// Trickles a local candidate to the client through the owner's `events`.
pub(crate) fn trickle(events: &mpsc::UnboundedSender<SessionEvent>, event: RTCPeerConnectionIceEvent) {
    if let Some(event) = candidate_event(event) {
        let _ = events.send(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
