//! A viewer: a receive-only PeerConnection that plays another session's stream.
//!
//! Owned by the viewer's WebSocket connection, like a [`super::Session`]: closing it
//! (or the publisher leaving) ends its PeerConnection and tasks. Packets come from
//! the publisher's [`FanOut`] queue and leave through the viewer's own media plane
//! (readdressed, protected, kept for its NACKs), payload untouched; the viewer's
//! PLI/FIR become one merged keyframe wish.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock, Weak};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use webrtc::media_stream::Track;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionEventHandler, RTCPeerConnectionIceEvent, RTCPeerConnectionState,
};

use super::SessionEvent;
use super::SessionInfo;
use super::fanout::{FanOut, ViewerStats};
use super::negotiate::{
    self, Advertise, ReadOffer, add_remote_candidate, answer_offer, build_peer, negotiated_vp8_payload_type,
    read_offer,
};
use super::results::Results;
use crate::media::feedback::nack::RetransmitStats;
use crate::media::plane::{Extensions, MediaPlane, PlaneStats, SendLeg};
use crate::session::peer::{self, PeerNetwork};
use crate::session::signaling::{Candidate, ErrorCode, SignalError};
use webrtc::data_channel::DataChannel;

/// One viewer of one publisher's session.
pub struct Viewer {
    pub id: String,
    pc: Arc<dyn PeerConnection>,
    plane: Arc<MediaPlane>,
    fanout: Arc<FanOut>,
    /// The publisher's results, which this viewer's data channel also gets.
    results: Arc<Results>,
    advertise: Advertise,
    tasks: Vec<JoinHandle<()>>,
}

struct Handler {
    id: String,
    events: mpsc::UnboundedSender<SessionEvent>,
    pc: Arc<OnceLock<Weak<dyn PeerConnection>>>,
    plane: Arc<MediaPlane>,
    fanout: Arc<FanOut>,
    results: Arc<Results>,
    advertise: Advertise,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        let _ = self.advertise.trickle(&self.events, event);
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        if state == RTCPeerConnectionState::Connected
            && let Some(pc) = self.pc.get().and_then(Weak::upgrade)
        {
            let (plane, fanout, id) = (Arc::clone(&self.plane), Arc::clone(&self.fanout), self.id.clone());
            tokio::spawn(async move {
                negotiate::start_plane(&pc, &plane, "viewer", &id).await;
                // Media can flow now: start from a keyframe.
                fanout.want_keyframe();
            });
        }
        let _ = self.events.send(SessionEvent::State(state));
    }

    async fn on_data_channel(&self, data_channel: Arc<dyn DataChannel>) {
        // Ends with the channel or the PeerConnection (closing the viewer closes both).
        tokio::spawn(Arc::clone(&self.results).serve(self.id.clone(), data_channel, false));
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
        // Cheap refusals first, before any PeerConnection is built.
        let fanout = Arc::clone(&publisher.fanout);
        fanout.check_room()?;
        let ReadOffer { offer, answer_role, .. } = read_offer(offer_sdp)?;
        let (events, events_rx) = mpsc::unbounded_channel();
        let results = Arc::clone(&publisher.results);
        let retransmit = Arc::new(RetransmitStats::new(fanout.metrics()));
        let plane_stats = Arc::new(PlaneStats::default());
        let plane = MediaPlane::new(Arc::clone(&plane_stats), Arc::clone(&retransmit));
        let pc_slot = Arc::new(OnceLock::new());
        let advertise = networks.first().map(Advertise::new).unwrap_or_default();
        let handler = Handler {
            id: id.clone(),
            events: events.clone(),
            pc: Arc::clone(&pc_slot),
            plane: Arc::clone(&plane),
            fanout: Arc::clone(&fanout),
            results: Arc::clone(&results),
            advertise: advertise.clone(),
        };
        let (pc, _) = build_peer(networks, answer_role, Arc::new(handler), &plane).await?;
        let _ = pc_slot.set(Arc::downgrade(&pc));
        let track = peer::vp8_rtp_track("face-echo", &format!("watch-{}", publisher.id));
        let negotiated = async {
            let sender = pc
                .add_track(Arc::clone(&track) as Arc<dyn TrackLocal>)
                .await
                .map_err(|e| SignalError::new(ErrorCode::Internal, format!("add_track: {e}")))?;
            let answer = answer_offer(&pc, offer, &advertise).await?;
            Ok::<_, SignalError>((sender, answer))
        }
        .await;
        let (sender, answer) = match negotiated {
            Ok(done) => done,
            Err(err) => {
                negotiate::close(&pc, "viewer").await;
                return Err(err);
            }
        };
        let (packets, stats) = match fanout.join(&id, retransmit, plane_stats) {
            Ok(joined) => joined,
            Err(err) => {
                negotiate::close(&pc, "viewer").await;
                return Err(err);
            }
        };
        let (Some(ssrc), Some(payload_type)) =
            (track.ssrcs().await.first().copied(), negotiated_vp8_payload_type(&sender).await)
        else {
            fanout.leave(&id);
            negotiate::close(&pc, "viewer").await;
            return Err(SignalError::new(ErrorCode::Internal, "the viewer's track has no SSRC or VP8"));
        };
        let stream = SendLeg {
            ssrc,
            payload_type,
            clock_rate: peer::VP8_CLOCK_RATE,
            keyframe_wishes: Some(fanout.keyframe_wishes()),
        };
        plane.configure(Extensions::default(), Vec::new(), vec![stream]);
        let tasks = vec![tokio::spawn(forward(packets, Arc::clone(&plane), stats, events))];
        tracing::info!(viewer = %id, session = %publisher.id, "viewer joined");
        Ok((Viewer { id, pc, plane, fanout, results, advertise, tasks }, answer, events_rx))
    }

    /// Applies a remote ICE candidate.
    pub async fn add_candidate(&self, candidate: Candidate) -> Result<(), SignalError> {
        add_remote_candidate(&self.pc, candidate).await
    }

    /// The answer with every local candidate in it, once gathered (at most `within`).
    pub(crate) async fn gathered_answer(&self, within: std::time::Duration) -> String {
        negotiate::gathered_local_sdp(&self.pc, within, &self.advertise).await
    }

    /// Leaves the publisher's viewers, closes the PeerConnection, ends the tasks.
    pub async fn close(self) {
        self.fanout.leave(&self.id);
        self.results.leave(&self.id);
        negotiate::close(&self.pc, "viewer").await;
        for task in self.tasks {
            task.abort();
        }
        self.plane.close();
        tracing::info!(viewer = %self.id, "viewer closed");
    }
}

/// The publisher's packets, out through the viewer's plane once it has its keys
/// (before that they are let go). When the queue ends, the publisher has gone: the
/// viewer's connection is told.
async fn forward(
    mut packets: mpsc::Receiver<rtc::rtp::Packet>,
    plane: Arc<MediaPlane>,
    stats: Arc<ViewerStats>,
    events: mpsc::UnboundedSender<SessionEvent>,
) {
    while let Some(packet) = packets.recv().await {
        if plane.send_rtp(0, &packet) {
            stats.packets.fetch_add(1, Ordering::Relaxed);
            stats.bytes.fetch_add(packet.payload.len() as u64, Ordering::Relaxed);
        }
    }
    let _ = events.send(SessionEvent::PublisherLeft);
}
