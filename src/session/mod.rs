//! One session: one client's PeerConnection, the media plane that carries its
//! media, and the tasks around them.
//!
//! A [`Session`] is owned by the WebSocket connection (or WHIP resource) that
//! negotiated it; closing the session (or dropping the connection) closes the
//! PeerConnection and aborts every task it spawned, so nothing outlives the client.
//!
//! Its media never reaches webrtc-rs: the plane ([`crate::media::plane`]) is hooked
//! on the mux before the PeerConnection is built, learns the streams from the
//! negotiation, and starts protecting once DTLS has given the keys.
//!
//! Also here: the recipe every PeerConnection is built from ([`peer`]) and the
//! signaling's wire types ([`signaling`]). May use: `media`, `seeing`, `record`,
//! `metrics`. Nothing of control: it is given its network and its limits.

pub mod echo;
pub mod fanout;
pub mod keyframes;
pub(crate) mod negotiate;
pub mod peer;
pub mod results;
pub mod signaling;
pub mod viewer;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use webrtc::data_channel::DataChannel;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionEventHandler, RTCPeerConnectionIceEvent, RTCPeerConnectionState,
    RTCSessionDescription,
};

use crate::media::feedback::nack::RetransmitStats;
use crate::media::plane::{MediaPlane, PlaneStats, ReceiveLeg, SendLeg};
use crate::metrics::Metrics;
use crate::record::{self, RecordState, RecorderInput};
use crate::seeing::detect::PageFrames;
use crate::seeing::tap::{self, TapConfig, TapInput, TapState};
use crate::session::signaling::{Candidate, ErrorCode, SignalError};
use echo::{EchoPath, EchoStats};
use fanout::FanOut;
pub use negotiate::MAX_VIDEO_TRACKS;
use negotiate::{ReadOffer, add_remote_candidate, answer_offer, build_peer, read_offer};
use peer::PeerNetwork;

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
    /// The media plane's counters.
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
    /// Our ICE candidates as the client was told them (`typ transport address:port`):
    /// the shared port by default, the session's own with a `--udp-port` range.
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

    /// Notes a local candidate as the client was told it (an `a=candidate` attribute)
    /// for `/api/sessions`: `<type> <transport> <address>:<port>`.
    pub(crate) fn add_candidate(&self, attribute: &str) {
        use signaling::{candidate_address, candidate_port, candidate_transport, candidate_type};
        let (Some(transport), Some(address), Some(port), Some(typ)) = (
            candidate_transport(attribute),
            candidate_address(attribute),
            candidate_port(attribute),
            candidate_type(attribute),
        ) else {
            return;
        };
        let address = match address.contains(':') {
            true => format!("[{address}]:{port}"),
            false => format!("{address}:{port}"),
        };
        let text = format!("{typ} {} {address}", transport.to_ascii_lowercase());
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
            // What the client's media arrives over: "udp", "tcp" (ICE-TCP), or null.
            "transport": self.plane.transport(),
            "echo": {
                "packets_in": n(&echo.packets_in),
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
    events: mpsc::UnboundedSender<SessionEvent>,
    /// The PeerConnection, weakly (a strong one would be a cycle through its own
    /// handler), for the SRTP keys once DTLS is done.
    pc: std::sync::OnceLock<std::sync::Weak<dyn PeerConnection>>,
    plane: Arc<MediaPlane>,
    advertise: negotiate::Advertise,
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
        if let Some(told) = self.0.advertise.trickle(&self.0.events, event) {
            self.0.info.add_candidate(&told);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        if state == RTCPeerConnectionState::Connected {
            let (shared, what) = (Arc::clone(&self.0), "session");
            self.0.spawn(async move {
                if let Some(pc) = shared.pc.get().and_then(std::sync::Weak::upgrade) {
                    negotiate::start_plane(&pc, &shared.plane, what, &shared.info.id).await;
                }
            });
        }
        self.0.info.set_state(state);
        let _ = self.0.events.send(SessionEvent::State(state));
    }

    async fn on_data_channel(&self, data_channel: Arc<dyn DataChannel>) {
        let results = Arc::clone(&self.0.info.results);
        self.0.spawn(results.serve(self.0.info.id.clone(), data_channel, true));
    }

    async fn on_track(&self, _track: Arc<dyn TrackRemote>) {
        // The media plane takes every stream; webrtc-rs never sees one.
    }
}

/// The side consumers of the first incoming stream (the one the tap, the recorder
/// and the viewers take), until a stream takes them.
struct FirstStream {
    tap: Option<(TapInput, mpsc::Receiver<()>)>,
    recorder: Option<RecorderInput>,
}

impl Session {
    /// Builds a PeerConnection for `offer_sdp` on the first of `networks` (the media
    /// port it was given), adds one echo track per offered video m-line and answers.
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
        // The page names the frames it detects on; the server's detector takes them first.
        let page_frames = Arc::new(PageFrames::default());
        let (tap_input, tap_state) = match tap_config {
            Some(config) => {
                let (input, state, wishes) = tap::start(
                    &id,
                    config,
                    Arc::clone(&metrics),
                    Some(detections_tx.clone()),
                    Arc::clone(&page_frames),
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
        let results = Arc::new(results::Results::new(Arc::clone(&metrics), recorder.clone(), page_frames));
        let info = Arc::new(SessionInfo::new(
            id,
            tap_state,
            fanout,
            Arc::clone(&retransmit),
            Arc::clone(&results),
            record_state,
        ));
        let plane = MediaPlane::new(Arc::clone(&info.plane), Arc::clone(&retransmit));
        let shared = Arc::new(Shared {
            info: Arc::clone(&info),
            events: events_tx,
            pc: std::sync::OnceLock::new(),
            plane: Arc::clone(&plane),
            advertise: networks.first().map(negotiate::Advertise::new).unwrap_or_default(),
            tasks: Mutex::new(Vec::new()),
        });
        let (pc, _) =
            build_peer(networks, answer_role, Arc::new(Handler(Arc::clone(&shared))), &plane).await?;
        let _ = shared.pc.set(Arc::downgrade(&pc));
        drop(detections_tx); // the tap's detector holds the only sender now
        shared.spawn(results::run(results, detections, Arc::clone(&info)));
        let session = Session { info, pc, shared };
        let first = FirstStream { tap: tap_input, recorder };
        match session.negotiate(offer, video_tracks, first, metrics).await {
            Ok(answer) => Ok((session, answer, events_rx)),
            Err(err) => {
                session.close().await;
                Err(err)
            }
        }
    }

    /// Adds an echo track per offered video m-line, answers, and gives the plane
    /// the negotiated streams: each incoming one with its echo, its keyframe
    /// scheduler, and (the first) the tap, the recorder and the viewers.
    async fn negotiate(
        &self,
        offer: RTCSessionDescription,
        video_tracks: usize,
        mut first: FirstStream,
        metrics: Arc<Metrics>,
    ) -> Result<String, SignalError> {
        negotiate::add_echo_tracks(&self.pc, video_tracks).await?;
        let offer_sdp = offer.sdp.clone();
        let answer = answer_offer(&self.pc, offer, &self.shared.advertise).await?;
        let (extensions, streams) = negotiate::incoming_streams(&answer, &offer_sdp);
        let mut receive = Vec::with_capacity(streams.len());
        for (index, stream) in streams.into_iter().enumerate() {
            // One keyframe budget for everyone who asks this publisher for keyframes.
            let mut wishers = keyframes::Wishers::default();
            let echo = stream.echo.map(|(ssrc, payload_type)| {
                let (wish, wishes) = mpsc::channel(1);
                wishers.add(wishes, Arc::clone(&self.info.echo.plis_relayed));
                SendLeg { ssrc, payload_type, clock_rate: peer::VP8_CLOCK_RATE, keyframe_wishes: Some(wish) }
            });
            let mut path = EchoPath {
                tap: None,
                recorder: None,
                viewers: None,
                stats: Arc::clone(&self.info.echo),
                metrics: Arc::clone(&metrics),
            };
            if index == 0 {
                path.recorder = first.recorder.take();
                if let (Some((input, wishes)), Some(state)) = (first.tap.take(), &self.info.tap) {
                    wishers.add(wishes, Arc::clone(&state.keyframe_requests));
                    path.tap = Some(input);
                }
                if let Some(wishes) = self.info.fanout.take_keyframe_wishes() {
                    wishers.add(wishes, Arc::clone(&self.info.fanout.keyframe_requests));
                    path.viewers = Some(Arc::clone(&self.info.fanout));
                }
            }
            tracing::info!(session = %self.info.id, mid = %stream.mid, ssrc = ?stream.ssrc, echo = ?echo.as_ref().map(|e| e.ssrc), "incoming stream");
            let plane = Arc::clone(&self.shared.plane);
            self.shared.spawn(keyframes::schedule(wishers, plane, stream.mid.clone(), Arc::clone(&metrics)));
            receive.push(ReceiveLeg {
                mid: stream.mid,
                ssrc: stream.ssrc,
                clock_rate: peer::VP8_CLOCK_RATE,
                nack: stream.nack,
                path: Box::new(path),
                echo,
            });
        }
        self.shared.plane.configure(extensions, receive, Vec::new());
        Ok(answer)
    }

    /// Applies a remote ICE candidate.
    pub async fn add_candidate(&self, candidate: Candidate) -> Result<(), SignalError> {
        add_remote_candidate(&self.pc, candidate).await
    }

    /// The answer with every local candidate in it, once gathered (at most `within`).
    pub(crate) async fn gathered_answer(&self, within: std::time::Duration) -> String {
        negotiate::gathered_local_sdp(&self.pc, within, &self.shared.advertise).await
    }

    /// Ends the recording, if any, and waits (briefly) for its files to be final.
    async fn finish_recording(&self) {
        let Some(state) = &self.info.record else { return };
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
        // Dropping the tap's and the recorder's inputs ends their threads.
        self.shared.plane.close();
        self.finish_recording().await;
        self.info.set_state(RTCPeerConnectionState::Closed);
        tracing::info!(session = %self.info.id, "session closed");
    }
}
