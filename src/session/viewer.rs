//! A viewer: a receive-only PeerConnection that plays another session's stream.
//!
//! Owned by the viewer's WebSocket connection, like a [`super::Session`]: closing it
//! (or the publisher leaving) ends its PeerConnection and tasks. Packets come from
//! the publisher's [`FanOut`] queue and leave on the viewer's own track, payload
//! untouched; the viewer's PLI/FIR become one merged keyframe wish.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use webrtc::media_stream::Track;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionEventHandler, RTCPeerConnectionIceEvent,
    RTCPeerConnectionState, RTCSessionDescription,
};

use super::fanout::{FanOut, ViewerStats};
use super::{
    SessionEvent, SessionInfo, add_remote_candidate, answer_offer, build_peer, candidate_event, echo,
    negotiated_vp8_payload_type,
};
use crate::keyframe_feedback::asks_for_keyframe;
use crate::peer::{self, PeerNetwork};
use crate::signaling::{Candidate, ErrorCode, SignalError};

/// One viewer of one publisher's session.
pub struct Viewer {
    pub id: String,
    pc: Arc<dyn PeerConnection>,
    fanout: Arc<FanOut>,
    tasks: Vec<JoinHandle<()>>,
}

struct Handler(mpsc::UnboundedSender<SessionEvent>);

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Some(event) = candidate_event(event) {
            let _ = self.0.send(event);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.0.send(SessionEvent::State(state));
    }
}

impl Viewer {
    /// Joins `publisher`'s viewers (or fails with `viewers_full`), answers the
    /// viewer's receive-only `offer_sdp` with one VP8 track, and starts forwarding.
    pub async fn open(
        id: String,
        publisher: &SessionInfo,
        offer_sdp: String,
        networks: &[PeerNetwork],
    ) -> Result<(Viewer, String, mpsc::UnboundedReceiver<SessionEvent>), SignalError> {
        let answer_role = peer::answering_dtls_role(&offer_sdp);
        let offer = RTCSessionDescription::offer(offer_sdp)
            .map_err(|e| SignalError::new(ErrorCode::BadSdp, format!("unparsable SDP: {e}")))?;
        let (events, events_rx) = mpsc::unbounded_channel();
        let pc = build_peer(networks, answer_role, Arc::new(Handler(events.clone()))).await?;
        let track = peer::vp8_rtp_track("face-echo", &format!("watch-{}", publisher.id));
        let negotiated = async {
            let sender = pc
                .add_track(Arc::clone(&track) as Arc<dyn TrackLocal>)
                .await
                .map_err(|e| SignalError::new(ErrorCode::Internal, format!("add_track: {e}")))?;
            let answer = answer_offer(&pc, offer).await?;
            Ok::<_, SignalError>((sender, answer))
        }
        .await;
        let (sender, answer) = match negotiated {
            Ok(done) => done,
            Err(err) => {
                let _ = tokio::time::timeout(Duration::from_secs(2), pc.close()).await;
                return Err(err);
            }
        };
        let fanout = Arc::clone(&publisher.fanout);
        let (packets, stats) = match fanout.join(&id) {
            Ok(joined) => joined,
            Err(err) => {
                let _ = tokio::time::timeout(Duration::from_secs(2), pc.close()).await;
                return Err(err);
            }
        };
        let out_ssrc = track.ssrcs().await.first().copied().unwrap_or_default();
        let out_payload_type = negotiated_vp8_payload_type(&sender).await;
        let tasks = vec![
            tokio::spawn(forward(packets, Arc::clone(&track), out_ssrc, out_payload_type, stats, events)),
            tokio::spawn(relay_keyframe_requests(track, Arc::clone(&fanout))),
        ];
        tracing::info!(viewer = %id, session = %publisher.id, "viewer joined");
        Ok((Viewer { id, pc, fanout, tasks }, answer, events_rx))
    }

    /// Applies a remote ICE candidate.
    pub async fn add_candidate(&self, candidate: Candidate) -> Result<(), SignalError> {
        add_remote_candidate(&self.pc, candidate).await
    }

    /// Leaves the publisher's viewers, closes the PeerConnection, ends the tasks.
    pub async fn close(self) {
        self.fanout.leave(&self.id);
        if tokio::time::timeout(Duration::from_secs(2), self.pc.close()).await.is_err() {
            tracing::warn!(viewer = %self.id, "PeerConnection close timed out");
        }
        for task in self.tasks {
            task.abort();
        }
        tracing::info!(viewer = %self.id, "viewer closed");
    }
}

/// The publisher's packets, readdressed to this viewer's track. When the queue
/// ends, the publisher has gone: the viewer's connection is told.
async fn forward(
    mut packets: mpsc::Receiver<rtc::rtp::Packet>,
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    payload_type: Option<u8>,
    stats: Arc<ViewerStats>,
    events: mpsc::UnboundedSender<SessionEvent>,
) {
    while let Some(mut packet) = packets.recv().await {
        let bytes = packet.payload.len() as u64;
        echo::readdress(&mut packet, ssrc, payload_type);
        if track.write_rtp(packet).await.is_ok() {
            stats.packets.fetch_add(1, Ordering::Relaxed);
            stats.bytes.fetch_add(bytes, Ordering::Relaxed);
        }
    }
    let _ = events.send(SessionEvent::PublisherLeft);
}

/// PLI/FIR from the viewer become a keyframe wish on the publisher's fan-out.
async fn relay_keyframe_requests(track: Arc<TrackLocalStaticRTP>, fanout: Arc<FanOut>) {
    while let Some(event) = track.poll().await {
        if let TrackLocalEvent::OnRtcpPacket(packets) = event
            && asks_for_keyframe(&packets)
        {
            fanout.want_keyframe();
        }
    }
}
