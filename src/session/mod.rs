//! One session: one client's PeerConnection, its echo tracks and the tasks that
//! move packets between them.
//!
//! A [`Session`] is owned by the WebSocket connection that negotiated it; closing
//! the session (or dropping the connection) closes the PeerConnection and aborts
//! every task it spawned, so nothing outlives the client.

pub mod echo;
pub mod fanout;
pub mod keyframes;
pub(crate) mod negotiate;
pub mod plane;
pub mod results;
pub mod viewer;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use webrtc::data_channel::DataChannel;
use webrtc::media_stream::Track;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionEventHandler, RTCPeerConnectionIceEvent, RTCPeerConnectionState,
    RTCSessionDescription,
};
use webrtc::rtp_transceiver::RtpTransceiver;

use crate::metrics::Metrics;
use crate::nack_budget::RetransmitStats;
use crate::peer::{self, PeerNetwork};
use crate::record::{self, RecordState, RecorderInput};
use crate::signaling::{Candidate, ErrorCode, SignalError};
use crate::tap::{self, TapConfig, TapInput, TapState};
use crate::udp_mux::UdpMux;
use echo::{EchoLeg, EchoOutput, EchoPath, EchoStats};
use fanout::FanOut;
pub use negotiate::MAX_VIDEO_TRACKS;
use negotiate::{
    ReadOffer, add_remote_candidate, answer_offer, build_peer, negotiated_vp8_payload_type, read_offer,
};
use plane::{MediaPlane, PlaneLeg, PlaneStats};

/// What a session tells the connection that owns it.
#[derive(Debug)]
pub enum SessionEvent {
    /// A local ICE candidate to trickle to the client.
    Candidate(Candidate),
    /// The PeerConnection's state changed.
    State(RTCPeerConnectionState),
    /// (Viewers only) the session being watched has ended.
    PublisherLeft,
}

/// The public face of a session: what `/api/sessions` shows.
#[derive(Debug)]
pub struct SessionInfo {
    pub id: String,
    /// The share secret for watching (never listed in `/api/sessions`, which is open).
    pub watch_token: String,
    pub created_at_ms: u64,
    state: Mutex<RTCPeerConnectionState>,
    pub echo: Arc<EchoStats>,
    /// The media plane's counters (all zero without `--udp-port`).
    pub plane: Arc<PlaneStats>,
    /// NACKs from the echo's receiver and what the budget let through.
    pub retransmit: Arc<RetransmitStats>,
    /// The decode tap's state, when `--decode-tap` is on.
    pub tap: Option<Arc<TapState>>,
    /// Who watches this session.
    pub fanout: Arc<FanOut>,
    /// What the server learns, out on the data channels; the page's detections in.
    pub results: Arc<results::Results>,
    /// The recording, with `--record` (unless its files could not be created).
    pub record: Option<Arc<RecordState>>,
    /// How the session was negotiated, when not over /ws (`whip`).
    signaling: std::sync::OnceLock<&'static str>,
    /// Our ICE candidates (`typ address:port`): with `--udp-port PORT`, the shared port.
    candidates: Mutex<Vec<String>>,
}

impl SessionInfo {
    pub(crate) fn new(
        id: String,
        tap: Option<Arc<TapState>>,
        fanout: Arc<FanOut>,
        retransmit: Arc<RetransmitStats>,
        results: Arc<results::Results>,
        record: Option<Arc<RecordState>>,
    ) -> Self {
        let created_at_ms =
            SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        SessionInfo {
            id,
            watch_token: format!("{:016x}{:016x}", rand::random::<u64>(), rand::random::<u64>()),
            created_at_ms,
            state: Mutex::new(RTCPeerConnectionState::New),
            echo: Arc::default(),
            plane: Arc::default(),
            retransmit,
            results,
            record,
            tap,
            fanout,
            signaling: std::sync::OnceLock::new(),
            candidates: Mutex::default(),
        }
    }

    /// Marks how the session was negotiated (`/api/sessions` shows `"signaling"`).
    pub(crate) fn mark_signaling(&self, how: &'static str) {
        let _ = self.signaling.set(how);
    }

    /// Notes a local candidate for `/api/sessions`.
    pub(crate) fn add_candidate(&self, candidate: &rtc::peer_connection::transport::RTCIceCandidate) {
        let address = match candidate.address.contains(':') {
            true => format!("[{}]:{}", candidate.address, candidate.port),
            false => format!("{}:{}", candidate.address, candidate.port),
        };
        let text = format!("{} {address}", candidate.typ);
        self.candidates.lock().unwrap_or_else(|e| e.into_inner()).push(text);
    }

    pub fn state(&self) -> RTCPeerConnectionState {
        *self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_state(&self, state: RTCPeerConnectionState) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = state;
    }

    pub fn to_json(&self) -> Value {
        let echo = &self.echo;
        let (agreement, channels) = self.results.to_json();
        let n = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
        json!({
            "id": self.id,
            "state": self.state().to_string(),
            "signaling": self.signaling.get().copied().unwrap_or("ws"),
            "created_at": self.created_at_ms,
            "echo": {
                "packets_in": n(&echo.packets_in),
                "packets_on_driver": n(&echo.packets_on_driver),
                "packets_on_plane": n(&echo.packets_on_plane),
                "packets_out": n(&echo.packets_out),
                "bytes_in": n(&echo.bytes_in),
                "bytes_out": n(&echo.bytes_out),
                "plis_relayed": n(&echo.plis_relayed),
                "forward_errors": n(&echo.forward_errors),
                "plane": self.plane.to_json(),
            },
            "retransmit": self.retransmit.to_json(),
            "tap": match &self.tap {
                Some(tap) => tap.to_json(),
                None => json!({"enabled": false}),
            },
            "detect": match self.tap.as_ref().and_then(|tap| tap.detect.as_ref()) {
                Some(detect) => detect.to_json(),
                None => json!({"enabled": false}),
            },
            "record": match &self.record {
                Some(record) => record.to_json(),
                None => json!({"enabled": false}),
            },
            "viewers": self.fanout.to_json(),
            "agreement": agreement,
            "loop": channels,
            "candidates": self.candidates.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        })
    }
}

/// A negotiated PeerConnection that echoes.
pub struct Session {
    pub info: Arc<SessionInfo>,
    pc: Arc<dyn PeerConnection>,
    shared: Arc<Shared>,
}

/// What the PeerConnection's event handler needs: no reference back to the
/// PeerConnection itself, so no cycle keeps a closed one alive.
struct Shared {
    info: Arc<SessionInfo>,
    metrics: Arc<Metrics>,
    events: mpsc::UnboundedSender<SessionEvent>,
    /// Echo tracks waiting for the incoming track they will echo.
    free_outputs: Mutex<Vec<EchoOutput>>,
    /// The PeerConnection, weakly (a strong one would be a cycle through its own
    /// handler), to find which transceiver a new track arrived on.
    pc: std::sync::OnceLock<std::sync::Weak<dyn PeerConnection>>,
    /// The decode tap's input and keyframe wishes, for the first video track.
    tap: Mutex<Option<(TapInput, mpsc::Receiver<()>)>>,
    /// The recorder's input, for the first video track.
    recorder: Mutex<Option<RecorderInput>>,
    /// The UDP mux the PeerConnection is on, when its media takes the plane
    /// ([`peer::MediaPath::Plane`]).
    mux: std::sync::OnceLock<UdpMux>,
    /// The media plane, made by the first track (it needs DTLS's keys); `None` if
    /// it could not be.
    plane: tokio::sync::OnceCell<Option<Arc<MediaPlane>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.retain(|task| !task.is_finished());
        tasks.push(tokio::spawn(task));
    }
}

struct Handler(Arc<Shared>);

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        self.0.info.add_candidate(&event.candidate);
        negotiate::trickle(&self.0.events, event);
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        self.0.info.set_state(state);
        let _ = self.0.events.send(SessionEvent::State(state));
    }

    async fn on_data_channel(&self, data_channel: Arc<dyn DataChannel>) {
        let results = Arc::clone(&self.0.info.results);
        self.0.spawn(results.serve(self.0.info.id.clone(), data_channel, true));
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        // Called from the PeerConnection's driver loop: never await here, spawn.
        let shared = Arc::clone(&self.0);
        self.0.spawn(async move { start_echo(shared, track).await });
    }
}

/// Pairs an incoming track with the echo track of its own m-line (the sender of
/// the same transceiver) and starts both directions.
async fn start_echo(shared: Arc<Shared>, track: Arc<dyn TrackRemote>) {
    if track.kind().await != rtc::rtp_transceiver::rtp_sender::RtpCodecKind::Video {
        tracing::debug!(session = %shared.info.id, "ignoring a non-video track");
        return;
    }
    let transceiver = transceiver_of(&shared, &track).await;
    let sender = match &transceiver {
        Some(transceiver) => transceiver.sender().await.ok().flatten().map(|sender| sender.id()),
        None => None,
    };
    let output = sender.and_then(|sender| {
        let mut outputs = shared.free_outputs.lock().unwrap_or_else(|e| e.into_inner());
        let position = outputs.iter().position(|output| output.sender.id() == sender);
        position.map(|position| outputs.swap_remove(position))
    });
    let (out_track, out_ssrc, out_payload_type, mid, first) = match output {
        Some(EchoOutput { track, sender, mid, first }) => {
            let Some(ssrc) = track.ssrcs().await.first().copied() else {
                tracing::error!(session = %shared.info.id, "echo track has no SSRC");
                return;
            };
            let payload_type = negotiated_vp8_payload_type(&sender).await;
            (Some((track, sender.id())), ssrc, payload_type, mid, first)
        }
        // A sendonly m-line: webrtc-rs receives it on a transceiver of its own, with
        // no echo track. It still publishes (viewers, recorder, tap), as the first
        // m-line would if none has taken those yet.
        None => {
            tracing::info!(session = %shared.info.id, "an incoming track that cannot be echoed (sendonly)");
            (None, 0, None, String::new(), true)
        }
    };
    let Some(pc) = shared.pc.get().cloned() else {
        tracing::error!(session = %shared.info.id, "a track arrived before its PeerConnection was stored");
        return;
    };

    // One keyframe budget for everyone who asks this publisher for keyframes.
    let mut wishers = keyframes::Wishers::default();
    let mut echo_wishes = None;
    if let Some((out_track, _)) = &out_track {
        let (wish, wishes) = mpsc::channel(1);
        wishers.add(wishes, Arc::clone(&shared.info.echo.plis_relayed));
        // From webrtc-rs (until the plane takes the echo's RTCP), and from the plane.
        shared.spawn(echo::relay_keyframe_requests(Arc::clone(out_track), wish.clone()));
        echo_wishes = Some(wish);
    }
    // The decode tap and the viewers take the first m-line's track.
    let (mut tap, mut viewers, mut recorder) = (None, None, None);
    if first {
        recorder = shared.recorder.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let (Some((input, wishes)), Some(state)) =
            (shared.tap.lock().unwrap_or_else(|e| e.into_inner()).take(), &shared.info.tap)
        {
            wishers.add(wishes, Arc::clone(&state.keyframe_requests));
            tap = Some(input);
        }
        if let Some(wishes) = shared.info.fanout.take_keyframe_wishes() {
            wishers.add(wishes, Arc::clone(&shared.info.fanout.keyframe_requests));
            viewers = Some(Arc::clone(&shared.info.fanout));
        }
    }
    tracing::info!(session = %shared.info.id, mid, out_ssrc, ?out_payload_type, "echo started");
    shared.spawn(keyframes::schedule(wishers, Arc::clone(&track), Arc::clone(&shared.metrics)));
    let echo_ssrc = out_track.as_ref().map(|_| out_ssrc);
    let plane = match (&transceiver, pc.upgrade()) {
        (Some(transceiver), Some(pc)) => {
            plane_leg(&shared, &pc, transceiver, &track, echo_ssrc, echo_wishes).await
        }
        _ => None,
    };
    let leg = EchoLeg {
        incoming: track,
        plane,
        pc,
        output: out_track,
        path: EchoPath {
            out_ssrc,
            out_payload_type,
            tap,
            recorder,
            viewers,
            stats: Arc::clone(&shared.info.echo),
            metrics: Arc::clone(&shared.metrics),
        },
    };
    leg.run().await;
    tracing::debug!(session = %shared.info.id, mid, "incoming track ended");
}

/// The transceiver that receives `track`: one m-line, one mid, so the echo goes
/// back on the m-line it came in on (its sender) whatever order tracks start in.
async fn transceiver_of(shared: &Shared, track: &Arc<dyn TrackRemote>) -> Option<Arc<dyn RtpTransceiver>> {
    let pc = shared.pc.get()?.upgrade()?;
    for transceiver in pc.get_transceivers().await {
        let Ok(Some(receiver)) = transceiver.receiver().await else { continue };
        // webrtc-rs hands `on_track` the receiver's own `Arc`.
        if std::ptr::addr_eq(Arc::as_ptr(receiver.track()), Arc::as_ptr(track)) {
            return Some(transceiver);
        }
    }
    None
}

/// What the session's media plane needs to take `track` (`None` off the mux; if
/// it cannot, logged: webrtc-rs carries the track, without feedback).
async fn plane_leg(
    shared: &Arc<Shared>,
    pc: &Arc<dyn PeerConnection>,
    transceiver: &Arc<dyn RtpTransceiver>,
    track: &Arc<dyn TrackRemote>,
    echo_ssrc: Option<u32>,
    keyframe_wishes: Option<mpsc::Sender<()>>,
) -> Option<PlaneLeg> {
    let plane = media_plane(shared, pc).await?;
    match plane::stream_infos(transceiver, track, echo_ssrc).await {
        (Some(remote), local) => Some(PlaneLeg { plane, remote, local, keyframe_wishes }),
        (None, _) => {
            tracing::warn!(session = %shared.info.id, "a track without a known SSRC or VP8: not on the media plane");
            None
        }
    }
}

/// The session's media plane, made on first use from DTLS's keys and hooked on
/// the mux (`None` off the mux, or if that fails: logged, webrtc-rs keeps the media).
async fn media_plane(shared: &Arc<Shared>, pc: &Arc<dyn PeerConnection>) -> Option<Arc<MediaPlane>> {
    let mux = shared.mux.get()?;
    let made = shared
        .plane
        .get_or_init(|| async {
            match plane::start(mux, pc, &shared.info).await {
                Ok(plane) => Some(plane),
                Err(err) => {
                    tracing::warn!(session = %shared.info.id, %err, "no media plane: webrtc-rs carries the media");
                    None
                }
            }
        })
        .await;
    made.clone()
}

impl Session {
    /// Builds a PeerConnection for `offer_sdp` on the first of `networks` whose
    /// sockets bind, adds one echo track per offered video m-line and answers.
    /// Local candidates then trickle out as events.
    pub async fn open(
        id: String,
        offer_sdp: String,
        networks: &[PeerNetwork],
        tap_config: Option<&TapConfig>,
        record_dir: Option<&std::path::Path>,
        max_viewers: usize,
        metrics: Arc<Metrics>,
    ) -> Result<(Session, String, mpsc::UnboundedReceiver<SessionEvent>), SignalError> {
        let ReadOffer { offer, answer_role, video_tracks } = read_offer(offer_sdp)?;

        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (detections_tx, detections) = mpsc::channel(results::QUEUED_DETECTIONS);
        let (tap_input, tap_state) = match tap_config {
            Some(config) => {
                let (input, state, wishes) = tap::start(
                    &id,
                    config,
                    Arc::clone(&metrics),
                    Some(detections_tx.clone()),
                )
                .map_err(|e| {
                    SignalError::new(ErrorCode::Internal, format!("could not start the decode tap: {e}"))
                })?;
                (Some((input, wishes)), Some(state))
            }
            None => (None, None),
        };
        let fanout = Arc::new(FanOut::new(max_viewers, Arc::clone(&metrics)));
        let retransmit = Arc::new(RetransmitStats::new(Arc::clone(&metrics)));
        // A recording that cannot start is logged; the session goes on without it.
        let recording = record_dir.and_then(|dir| match record::start(dir, &id, Arc::clone(&metrics)) {
            Ok(recording) => Some(recording),
            Err(err) => {
                tracing::error!(session = %id, %err, dir = %dir.display(), "cannot record this session");
                None
            }
        });
        let (recorder, record_state) = recording.unzip();
        let results = Arc::new(results::Results::new(Arc::clone(&metrics), recorder.clone()));
        let info = Arc::new(SessionInfo::new(
            id,
            tap_state,
            fanout,
            Arc::clone(&retransmit),
            Arc::clone(&results),
            record_state,
        ));
        let shared = Arc::new(Shared {
            info: Arc::clone(&info),
            metrics,
            events: events_tx,
            free_outputs: Mutex::new(Vec::new()),
            pc: std::sync::OnceLock::new(),
            tap: Mutex::new(tap_input),
            recorder: Mutex::new(recorder),
            mux: std::sync::OnceLock::new(),
            plane: tokio::sync::OnceCell::new(),
            tasks: Mutex::new(Vec::new()),
        });
        let (pc, network) =
            build_peer(networks, answer_role, Arc::new(Handler(Arc::clone(&shared))), &retransmit, true)
                .await?;
        let _ = shared.pc.set(Arc::downgrade(&pc));
        if let Some(mux) = &network.mux {
            let _ = shared.mux.set(mux.clone());
        }
        drop(detections_tx); // the tap's detector holds the only sender now
        shared.spawn(results::run(results, detections, Arc::clone(&info)));
        let session = Session { info, pc, shared };
        match session.negotiate(offer, video_tracks).await {
            Ok(answer) => Ok((session, answer, events_rx)),
            Err(err) => {
                session.close().await;
                Err(err)
            }
        }
    }

    async fn negotiate(
        &self,
        offer: RTCSessionDescription,
        video_tracks: usize,
    ) -> Result<String, SignalError> {
        let internal = |what: &str, e: webrtc::error::Error| {
            SignalError::new(ErrorCode::Internal, format!("{what}: {e}"))
        };
        let mut outputs = Vec::with_capacity(video_tracks);
        for index in 0..video_tracks {
            let track = peer::vp8_rtp_track("face-echo", &format!("echo-{index}"));
            let sender =
                self.pc.add_track(Arc::clone(&track) as _).await.map_err(|e| internal("add_track", e))?;
            outputs.push(EchoOutput { track, sender, mid: String::new(), first: index == 0 });
        }
        let answer = answer_offer(&self.pc, offer).await?;
        // Answering put each echo track on an offered m-line: note which.
        for transceiver in self.pc.get_transceivers().await {
            let Ok(Some(sender)) = transceiver.sender().await else { continue };
            if let Some(output) = outputs.iter_mut().find(|output| output.sender.id() == sender.id()) {
                output.mid = transceiver.mid().await.ok().flatten().unwrap_or_default();
            }
        }
        *self.shared.free_outputs.lock().unwrap_or_else(|e| e.into_inner()) = outputs;
        Ok(answer)
    }

    /// Applies a remote ICE candidate.
    pub async fn add_candidate(&self, candidate: Candidate) -> Result<(), SignalError> {
        add_remote_candidate(&self.pc, candidate).await
    }

    /// The answer with every local candidate in it, once gathered (at most `within`).
    pub(crate) async fn gathered_answer(&self, within: std::time::Duration) -> String {
        negotiate::gathered_local_sdp(&self.pc, within).await
    }

    /// Ends the recording, if any, and waits (briefly) for its files to be final.
    async fn finish_recording(&self) {
        let Some(state) = &self.info.record else { return };
        self.shared.recorder.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.info.results.close_recording();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
        while !state.finished() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Closes the PeerConnection and ends every task of this session; its viewers
    /// are told and closed.
    pub async fn close(self) {
        self.info.fanout.close();
        negotiate::close(&self.pc, "session").await;
        let tasks = std::mem::take(&mut *self.shared.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for task in tasks {
            task.abort();
        }
        self.shared.free_outputs.lock().unwrap_or_else(|e| e.into_inner()).clear();
        if let Some(Some(plane)) = self.shared.plane.get() {
            plane.close();
        }
        // Dropping the tap's input (here, or with the aborted echo task) ends its thread.
        self.shared.tap.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.finish_recording().await;
        self.info.set_state(RTCPeerConnectionState::Closed);
        tracing::info!(session = %self.info.id, "session closed");
    }
}
