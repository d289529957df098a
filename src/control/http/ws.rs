//! One signaling WebSocket: parse frames, negotiate one session, trickle ICE both
//! ways, and end the session when the socket, ICE or the server ends.
//!
//! The connection owns its [`Session`] and [`Slot`]; when this task returns, both
//! are closed and dropped, whatever the reason.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use webrtc::peer_connection::RTCPeerConnectionState;

use super::{AppState, MAX_WS_MESSAGE_BYTES};
use crate::control::auth;
use crate::control::limits::{Eviction, Place};
use crate::control::sessions::Slot;
use crate::media::token_bucket::TokenBucket;
use crate::session::signaling::{self, Candidate, ClientMessage, ErrorCode, ServerMessage, SignalError};
use crate::session::viewer::Viewer;
use crate::session::{Session, SessionEvent};

/// Remote candidates kept while waiting for the offer.
const MAX_EARLY_CANDIDATES: usize = 32;
/// Remote candidates one session may send in all, in its offer and trickled (a
/// browser sends a handful): each is checked with STUN at an address the client chose.
pub const MAX_CANDIDATES: usize = 64;
/// Frames a client may send per second, sustained, and in a burst.
pub const MAX_FRAMES_PER_SECOND: f64 = 20.0;
pub const MAX_FRAME_BURST: f64 = 100.0;
/// How long an evicted socket's last frames may take to leave before it is dropped.
const EVICTED_FLUSH: Duration = Duration::from_millis(100);
/// Outgoing frames queued for a slow client before we give up on it.
const OUTBOX_FRAMES: usize = 256;

/// Whether the connection goes on after handling something.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
}

struct Connection {
    app: AppState,
    client: SocketAddr,
    outbox: mpsc::Sender<Message>,
    /// Its place under --max-pending(-per-ip) until it negotiates.
    pending: Option<Place>,
    /// Says when that place is evicted for a newcomer (until it negotiates).
    eviction: Option<Eviction>,
    /// Whether its pending place went to a newcomer (then it closes at once).
    evicted: bool,
    /// The publish token from the URL (`?token=`) or `Authorization` header, if any.
    token: Option<String>,
    /// Whether the client has sent anything yet (--first-message-timeout).
    heard: bool,
    slot: Option<Slot>,
    session: Option<Session>,
    /// Or, for a connection that watches another session, its viewer.
    viewer: Option<Viewer>,
    events: Option<mpsc::UnboundedReceiver<SessionEvent>>,
    early_candidates: Vec<Candidate>,
    /// Candidates received in all, before and after the offer.
    candidates_received: usize,
    rate: TokenBucket,
    /// When a `disconnected` ICE connection gets closed, if it does not recover.
    disconnect_deadline: Option<Instant>,
    /// When a negotiated connection that never connected gets closed.
    connect_deadline: Option<Instant>,
}

pub async fn serve(
    socket: WebSocket,
    client: SocketAddr,
    app: AppState,
    pending: Place,
    eviction: Eviction,
    token: Option<String>,
) {
    let (mut sink, mut stream) = socket.split();
    let (outbox, mut outbox_rx) = mpsc::channel::<Message>(OUTBOX_FRAMES);
    let writer = tokio::spawn(async move {
        while let Some(message) = outbox_rx.recv().await {
            if sink.send(message).await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    });

    let mut shutdown = app.shutdown.clone();
    let mut conn = Connection {
        app,
        client,
        outbox,
        pending: Some(pending),
        eviction: Some(eviction),
        evicted: false,
        token,
        heard: false,
        slot: None,
        session: None,
        viewer: None,
        events: None,
        early_candidates: Vec::new(),
        candidates_received: 0,
        rate: TokenBucket::new(MAX_FRAMES_PER_SECOND, MAX_FRAME_BURST, std::time::Instant::now()),
        disconnect_deadline: None,
        connect_deadline: None,
    };
    tracing::debug!(%client, "signaling connection opened");
    let opened = Instant::now();
    let offer_deadline = opened + conn.app.config.offer_timeout();
    // A silent socket is let go sooner than one that has started to talk.
    let first_deadline =
        opened + conn.app.config.first_message_timeout().min(conn.app.config.offer_timeout());

    loop {
        let deadline = conn.disconnect_deadline;
        let waiting = if conn.heard { offer_deadline } else { first_deadline };
        let idle_deadline = (conn.session.is_none() && conn.viewer.is_none()).then_some(waiting);
        let connect_deadline = conn.connect_deadline;
        let flow = tokio::select! {
            frame = stream.next() => match frame {
                Some(Ok(message)) => conn.on_frame(message).await,
                Some(Err(err)) => {
                    tracing::debug!(%client, %err, "signaling socket error");
                    Flow::Close
                }
                None => Flow::Close,
            },
            Some(event) = next_event(&mut conn.events) => conn.on_session_event(event),
            _ = evicted(&mut conn.eviction) => conn.on_evicted(),
            _ = sleep_until(connect_deadline) => {
                conn.send_error(SignalError::new(
                    ErrorCode::IceFailed,
                    format!("ICE did not connect within {} s of the answer", conn.app.config.offer_timeout),
                ));
                Flow::Close
            }
            _ = sleep_until(idle_deadline) => {
                let message = if conn.heard {
                    format!("no offer within {} s of connecting (--offer-timeout)", conn.app.config.offer_timeout)
                } else {
                    format!(
                        "no message within {} s of connecting (--first-message-timeout)",
                        conn.app.config.first_message_timeout
                    )
                };
                conn.send_error(SignalError::new(ErrorCode::IdleTimeout, message));
                Flow::Close
            }
            _ = sleep_until(deadline) => {
                conn.send_error(SignalError::new(
                    ErrorCode::IceFailed,
                    format!("ICE stayed disconnected for more than {} s", conn.app.config.disconnect_timeout),
                ));
                Flow::Close
            }
            _ = stopping(&mut shutdown) => {
                conn.send_error(SignalError::new(ErrorCode::ServerShutdown, "the server is shutting down"));
                Flow::Close
            }
        };
        if flow == Flow::Close {
            break;
        }
    }

    if let Some(session) = conn.session.take() {
        session.close().await;
        drop(conn.slot.take());
        if let Some(cluster) = &conn.app.cluster {
            cluster.sessions_changed();
        }
    }
    if let Some(viewer) = conn.viewer.take() {
        viewer.close().await;
    }
    drop(conn.slot.take());
    drop(conn.pending.take());
    let evicted = conn.evicted;
    let close = match evicted {
        true => {
            CloseFrame { code: close_code::AGAIN, reason: "evicted: waited longest without an offer".into() }
        }
        false => CloseFrame { code: close_code::NORMAL, reason: "bye".into() },
    };
    let _ = conn.outbox.try_send(Message::Close(Some(close)));
    drop(conn);
    let mut writer = writer;
    if evicted {
        // Its descriptor is the newcomer's: the last frames go into the socket's
        // buffer and the socket closes, without waiting on the client.
        let _ = tokio::time::timeout(EVICTED_FLUSH, &mut writer).await;
    } else {
        // Give queued frames (the last error, the close) a moment to leave, and keep
        // reading (and ignoring) meanwhile: closing with unread input makes the kernel
        // reset the connection, and the client would lose our last error with it.
        let drain = async { while let Some(Ok(_)) = stream.next().await {} };
        let _ =
            tokio::time::timeout(Duration::from_secs(1), async { tokio::join!(&mut writer, drain) }).await;
    }
    // A client that stopped reading would keep the writer (and the socket) forever.
    writer.abort();
    tracing::debug!(%client, "signaling connection closed");
}

/// Resolves when the pending place is evicted; pends forever once it cannot be.
async fn evicted(eviction: &mut Option<Eviction>) {
    if let Some(receiver) = eviction
        && receiver.await.is_ok()
    {
        return;
    }
    *eviction = None;
    std::future::pending().await
}

async fn next_event(events: &mut Option<mpsc::UnboundedReceiver<SessionEvent>>) -> Option<SessionEvent> {
    match events {
        Some(events) => events.recv().await,
        None => std::future::pending().await,
    }
}

pub(super) async fn stopping(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    // `wait_for` returns a lock guard; drop it here so this future stays `Send`.
    let _ = shutdown.wait_for(|stopping| *stopping).await.is_ok();
}

pub(super) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

impl Connection {
    fn send(&self, message: ServerMessage) {
        // A client that does not read its socket loses messages rather than
        // stalling the connection (and its session) behind it.
        if self.outbox.try_send(Message::Text(message.to_json().into())).is_err() {
            tracing::warn!(client = %self.client, "signaling outbox full; message dropped");
        }
    }

    fn send_error(&self, error: SignalError) {
        tracing::debug!(client = %self.client, code = ?error.code, message = %error.message, "signaling error");
        self.app.metrics.signaling_errors.inc();
        self.send(error.into());
    }

    async fn on_frame(&mut self, message: Message) -> Flow {
        if let Message::Text(_) | Message::Binary(_) = &message {
            self.heard = true;
            if !self.rate.take(std::time::Instant::now()) {
                self.send_error(SignalError::new(
                    ErrorCode::RateLimited,
                    format!("more than {MAX_FRAMES_PER_SECOND} frames per second (burst {MAX_FRAME_BURST})"),
                ));
                return Flow::Close;
            }
            let size = match &message {
                Message::Text(text) => text.len(),
                Message::Binary(bytes) => bytes.len(),
                _ => 0,
            };
            if size > MAX_WS_MESSAGE_BYTES {
                self.send_error(SignalError::new(
                    ErrorCode::TooLarge,
                    format!("a {size}-byte frame; the limit is {MAX_WS_MESSAGE_BYTES} bytes"),
                ));
                return Flow::Close;
            }
        }
        let text = match message {
            Message::Text(text) => text,
            Message::Binary(_) => {
                self.send_error(SignalError::new(
                    ErrorCode::BadJson,
                    "binary frames are not part of the protocol; send JSON text",
                ));
                return Flow::Continue;
            }
            Message::Close(_) => return Flow::Close,
            Message::Ping(_) | Message::Pong(_) => return Flow::Continue,
        };
        match signaling::parse(text.as_str()) {
            Ok(ClientMessage::Offer { sdp, token }) => self.on_offer(sdp, token).await,
            Ok(ClientMessage::Watch { session, sdp }) => self.on_watch(session, sdp).await,
            Ok(ClientMessage::Ice(Some(candidate))) => {
                self.on_candidate(candidate).await;
                Flow::Continue
            }
            Ok(ClientMessage::Ice(None)) => Flow::Continue,
            Err(error) => {
                self.send_error(error);
                Flow::Continue
            }
        }
    }

    /// Its pending place went to a newcomer: the table was full and this socket had
    /// waited longest without a session. Tell it, and close (try again later).
    fn on_evicted(&mut self) -> Flow {
        self.send_error(SignalError::new(
            ErrorCode::IdleTimeout,
            format!(
                "the server's {} places for sockets without a session are full and this one had waited \
                 longest (--max-pending): send the offer at once",
                self.app.limits.pending
            ),
        ));
        self.evicted = true;
        Flow::Close
    }

    /// Refuses a second negotiation on this connection; true if it already has one.
    fn already_negotiated(&self) -> bool {
        let existing = match (&self.session, &self.viewer) {
            (Some(session), _) => &session.info.id,
            (_, Some(viewer)) => &viewer.id,
            (None, None) => return false,
        };
        self.send_error(SignalError::new(
            ErrorCode::AlreadyNegotiated,
            format!("this connection already has session {existing}; open a new one to negotiate again"),
        ));
        true
    }

    /// A place under --max-sessions and --max-sessions-per-ip, or `server_full` /
    /// `ip_full` said (the caller closes).
    fn take_slot(&self) -> Option<Slot> {
        match super::take_slot(&self.app, self.client.ip()) {
            Ok(slot) => Some(slot),
            Err(error) => {
                self.send_error(error);
                None
            }
        }
    }

    /// Whether this client may publish: no --publish-token, or the right one on the
    /// URL, in the header or in the offer. Otherwise `unauthorized` said (the caller
    /// closes: a guesser must open a new socket for each try).
    fn may_publish(&self, offered: Option<&str>) -> bool {
        let Some(required) = &self.app.config.publish_token else {
            return true;
        };
        let given = offered.or(self.token.as_deref());
        if auth::allows(Some(required), given) {
            return true;
        }
        self.app.metrics.refused("unauthorized");
        let reason = if given.is_some() { "wrong publish token" } else { "publishing needs a token" };
        self.send_error(SignalError::new(
            ErrorCode::Unauthorized,
            format!(
                "{reason}: open /ws?token=<token>, send Authorization: Bearer <token>, or put it in the offer"
            ),
        ));
        false
    }

    /// After an answer: keep the place, follow the session's events, give ICE its
    /// time to connect, and apply the candidates that came before the offer.
    async fn negotiated(&mut self, slot: Slot, events: mpsc::UnboundedReceiver<SessionEvent>) {
        self.slot = Some(slot);
        // Negotiated: out of the pending table, evicted meanwhile or not.
        self.pending = None;
        self.eviction = None;
        self.events = Some(events);
        self.connect_deadline = Some(Instant::now() + self.app.config.offer_timeout());
        for candidate in std::mem::take(&mut self.early_candidates) {
            self.route_candidate(candidate).await;
        }
    }

    async fn on_watch(&mut self, watch_token: String, sdp: String) -> Flow {
        if self.already_negotiated() {
            return Flow::Continue;
        }
        let Some(publisher) = self.app.sessions.by_watch_token(&watch_token) else {
            if let Some(cluster) = &self.app.cluster
                && let Some(node) = cluster.owner_of(&watch_token).await
            {
                self.send_error(
                    SignalError::new(
                        ErrorCode::Elsewhere,
                        format!("this session is on another node: {node}"),
                    )
                    .at_node(&node),
                );
                return Flow::Continue;
            }
            self.send_error(SignalError::new(
                ErrorCode::NoSuchSession,
                "no such session (it may have ended)",
            ));
            return Flow::Continue;
        };
        // A viewer is a PeerConnection too: it counts toward --max-sessions (unlisted).
        let Some(slot) = self.take_slot() else {
            return Flow::Close;
        };
        let sdp = self.screen_offered_candidates(sdp);
        let id = new_session_id();
        let networks = self.app.network.attempts_for(self.client.ip());
        match Viewer::open(id, &publisher, sdp, &networks).await {
            Ok((viewer, answer, events)) => {
                tracing::info!(viewer = %viewer.id, session = %publisher.id, client = %self.client, "watching");
                self.send(ServerMessage::Answer { sdp: answer, session: viewer.id.clone(), watch: None });
                self.viewer = Some(viewer);
                self.negotiated(slot, events).await;
            }
            Err(error) => self.send_error(error),
        }
        Flow::Continue
    }

    async fn on_offer(&mut self, sdp: String, token: Option<String>) -> Flow {
        if self.already_negotiated() {
            return Flow::Continue;
        }
        if !self.may_publish(token.as_deref()) {
            return Flow::Close;
        }
        let Some(mut slot) = self.take_slot() else {
            return Flow::Close;
        };
        let sdp = self.screen_offered_candidates(sdp);
        let id = new_session_id();
        let networks = self.app.network.attempts_for(self.client.ip());
        let max_viewers = self.app.config.max_viewers;
        match Session::open(
            id,
            sdp,
            &networks,
            self.app.tap.as_ref(),
            self.app.config.record.as_deref(),
            max_viewers,
            self.app.metrics.clone(),
        )
        .await
        {
            Ok((session, answer, events)) => {
                slot.register(session.info.clone());
                if let Some(cluster) = &self.app.cluster {
                    cluster.sessions_changed();
                }
                tracing::info!(session = %session.info.id, client = %self.client, "session opened");
                self.send(ServerMessage::Answer {
                    sdp: answer,
                    session: session.info.id.clone(),
                    watch: Some(session.info.watch_token.clone()),
                });
                self.session = Some(session);
                self.negotiated(slot, events).await;
            }
            Err(error) => self.send_error(error),
        }
        Flow::Continue
    }

    /// The offer's candidates count toward the same [`MAX_CANDIDATES`] as trickled ones.
    fn screen_offered_candidates(&mut self, sdp: String) -> String {
        let (sdp, kept) =
            super::screen_offered_candidates(&self.app, self.client, sdp, self.candidates_received);
        self.candidates_received += kept;
        sdp
    }

    async fn on_candidate(&mut self, candidate: Candidate) {
        self.candidates_received += 1;
        if self.candidates_received > MAX_CANDIDATES {
            self.send_error(SignalError::new(
                ErrorCode::TooManyCandidates,
                format!("more than {MAX_CANDIDATES} candidates on one connection"),
            ));
            return;
        }
        self.route_candidate(candidate).await;
    }

    /// Applies a candidate to the session or viewer, or keeps it for the offer.
    async fn route_candidate(&mut self, candidate: Candidate) {
        if !self.app.network.accepts_candidate(&candidate.candidate) {
            tracing::debug!(client = %self.client, candidate = %candidate.candidate, "ignoring a candidate media cannot use");
            return;
        }
        let added = match (&self.session, &self.viewer) {
            (Some(session), _) => session.add_candidate(candidate).await,
            (_, Some(viewer)) => viewer.add_candidate(candidate).await,
            (None, None) => {
                if self.early_candidates.len() >= MAX_EARLY_CANDIDATES {
                    self.send_error(SignalError::new(
                        ErrorCode::NoOffer,
                        format!("more than {MAX_EARLY_CANDIDATES} candidates before an offer"),
                    ));
                } else {
                    self.early_candidates.push(candidate);
                }
                return;
            }
        };
        if let Err(error) = added {
            self.send_error(error);
        }
    }

    fn on_session_event(&mut self, event: SessionEvent) -> Flow {
        match event {
            SessionEvent::Candidate(candidate) => {
                self.send(ServerMessage::Ice { candidate });
                Flow::Continue
            }
            // In a shutdown the publisher may close before this viewer hears of the
            // shutdown itself: the viewer is told the real reason either way.
            SessionEvent::PublisherLeft if *self.app.shutdown.borrow() => {
                self.send_error(SignalError::new(ErrorCode::ServerShutdown, "the server is shutting down"));
                Flow::Close
            }
            SessionEvent::PublisherLeft => {
                self.send_error(SignalError::new(
                    ErrorCode::PublisherLeft,
                    "the session you watched has ended",
                ));
                Flow::Close
            }
            SessionEvent::State(state) => {
                tracing::debug!(client = %self.client, %state, "connection state");
                match state {
                    RTCPeerConnectionState::Connected => {
                        self.disconnect_deadline = None;
                        self.connect_deadline = None;
                        Flow::Continue
                    }
                    RTCPeerConnectionState::Disconnected => {
                        self.disconnect_deadline
                            .get_or_insert(Instant::now() + self.app.config.disconnect_timeout());
                        Flow::Continue
                    }
                    RTCPeerConnectionState::Failed => {
                        self.send_error(SignalError::new(ErrorCode::IceFailed, "ICE connectivity failed"));
                        Flow::Close
                    }
                    RTCPeerConnectionState::Closed => Flow::Close,
                    _ => Flow::Continue,
                }
            }
        }
    }
}

/// 64 random bits as hex: unguessable enough to name a session in a URL.
pub(super) fn new_session_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}
