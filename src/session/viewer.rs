//! A viewer: a receive-only PeerConnection that plays another session's stream.
//!
//! Owned by the viewer's WebSocket connection, like a [`super::Session`]: closing it
//! (or the publisher leaving) ends its PeerConnection and tasks. Packets come from
//! the publisher's [`FanOut`] queue and leave on the viewer's own track, payload
//! untouched; the viewer's PLI/FIR become one merged keyframe wish.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use webrtc::media_stream::Track;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionEventHandler, RTCPeerConnectionIceEvent, RTCPeerConnectionState,
};

use super::fanout::{FanOut, ViewerStats};
use super::negotiate::{
    self, ReadOffer, add_remote_candidate, answer_offer, build_peer, negotiated_vp8_payload_type, read_offer,
};
use super::results::Results;
use super::{SessionEvent, SessionInfo, echo};
use crate::nack_budget::RetransmitStats;
use crate::peer::{self, PeerNetwork};
use crate::signaling::{Candidate, ErrorCode, SignalError};
use webrtc::data_channel::DataChannel;

/// One viewer of one publisher's session.
pub struct Viewer {
    pub id: String,
    pc: Arc<dyn PeerConnection>,
    fanout: Arc<FanOut>,
    /// The publisher's results, which this viewer's data channel also gets.
    results: Arc<Results>,
    tasks: Vec<JoinHandle<()>>,
}

struct Handler {
    id: String,
    events: mpsc::UnboundedSender<SessionEvent>,
    connected: watch::Sender<bool>,
    fanout: Arc<FanOut>,
    results: Arc<Results>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        negotiate::trickle(&self.events, event);
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        if state == RTCPeerConnectionState::Connected {
            // Media can flow now: start from a keyframe.
            let _ = self.connected.send(true);
            self.fanout.want_keyframe();
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
        let (connected_tx, connected) = watch::channel(false);
        let results = Arc::clone(&publisher.results);
        let handler = Handler {
            id: id.clone(),
            events: events.clone(),
            connected: connected_tx,
            fanout: Arc::clone(&fanout),
            results: Arc::clone(&results),
        };
        let retransmit = Arc::new(RetransmitStats::new(fanout.metrics()));
        let (pc, _) = build_peer(networks, answer_role, Arc::new(handler), &retransmit, false).await?;
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
                negotiate::close(&pc, "viewer").await;
                return Err(err);
            }
        };
        let (packets, stats) = match fanout.join(&id, retransmit) {
            Ok(joined) => joined,
            Err(err) => {
                negotiate::close(&pc, "viewer").await;
                return Err(err);
            }
        };
        let Some(out_ssrc) = track.ssrcs().await.first().copied() else {
            fanout.leave(&id);
            negotiate::close(&pc, "viewer").await;
            return Err(SignalError::new(ErrorCode::Internal, "the viewer's track has no SSRC"));
        };
        let out_payload_type = negotiated_vp8_payload_type(&sender).await;
        let tasks = vec![
            tokio::spawn(forward(
                packets,
                connected,
                Arc::clone(&track),
                out_ssrc,
                out_payload_type,
                stats,
                events,
            )),
            tokio::spawn(echo::relay_keyframe_requests(track, fanout.keyframe_wishes())),
        ];
        tracing::info!(viewer = %id, session = %publisher.id, "viewer joined");
        Ok((Viewer { id, pc, fanout, results, tasks }, answer, events_rx))
    }

    /// Applies a remote ICE candidate.
    pub async fn add_candidate(&self, candidate: Candidate) -> Result<(), SignalError> {
        add_remote_candidate(&self.pc, candidate).await
    }

    /// The answer with every local candidate in it, once gathered (at most `within`).
    pub(crate) async fn gathered_answer(&self, within: std::time::Duration) -> String {
        negotiate::gathered_local_sdp(&self.pc, within).await
    }

    /// Leaves the publisher's viewers, closes the PeerConnection, ends the tasks.
    pub async fn close(self) {
        self.fanout.leave(&self.id);
        self.results.leave(&self.id);
        negotiate::close(&self.pc, "viewer").await;
        for task in self.tasks {
            task.abort();
        }
        tracing::info!(viewer = %self.id, "viewer closed");
    }
}

/// The publisher's packets, readdressed to this viewer's track, once the viewer
/// is connected (before that, SRTP has no keys: packets are let go). When the
/// queue ends, the publisher has gone: the viewer's connection is told.
async fn forward(
    mut packets: mpsc::Receiver<rtc::rtp::Packet>,
    mut connected: watch::Receiver<bool>,
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    payload_type: Option<u8>,
    stats: Arc<ViewerStats>,
    events: mpsc::UnboundedSender<SessionEvent>,
) {
    loop {
        tokio::select! {
            up = connected.wait_for(|up| *up) => {
                if up.is_err() {
                    return;
                }
                break;
            }
            early = packets.recv() => {
                if early.is_none() {
                    let _ = events.send(SessionEvent::PublisherLeft);
                    return;
                }
            }
        }
    }
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
