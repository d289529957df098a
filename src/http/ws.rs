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

use super::AppState;
use crate::session::{Session, SessionEvent};
use crate::sessions::Slot;
use crate::signaling::{self, Candidate, ClientMessage, ErrorCode, ServerMessage, SignalError};

/// Remote candidates kept while waiting for the offer.
const MAX_EARLY_CANDIDATES: usize = 32;
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
    slot: Option<Slot>,
    session: Option<Session>,
    events: Option<mpsc::UnboundedReceiver<SessionEvent>>,
    early_candidates: Vec<Candidate>,
    /// When a `disconnected` ICE connection gets closed, if it does not recover.
    disconnect_deadline: Option<Instant>,
}

pub async fn serve(socket: WebSocket, client: SocketAddr, app: AppState) {
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
        slot: None,
        session: None,
        events: None,
        early_candidates: Vec::new(),
        disconnect_deadline: None,
    };
    tracing::debug!(%client, "signaling connection opened");

    loop {
        let deadline = conn.disconnect_deadline;
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
    }
    drop(conn.slot.take());
    let _ = conn.outbox.try_send(Message::Close(Some(CloseFrame {
        code: close_code::NORMAL,
        reason: "bye".into(),
    })));
    drop(conn);
    // Give queued frames (the last error, the close) a moment to leave.
    let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
    tracing::debug!(%client, "signaling connection closed");
}

async fn next_event(events: &mut Option<mpsc::UnboundedReceiver<SessionEvent>>) -> Option<SessionEvent> {
    match events {
        Some(events) => events.recv().await,
        None => std::future::pending().await,
    }
}

async fn stopping(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    // `wait_for` returns a lock guard; drop it here so this future stays `Send`.
    let _ = shutdown.wait_for(|stopping| *stopping).await.is_ok();
}

async fn sleep_until(deadline: Option<Instant>) {
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
            Ok(ClientMessage::Offer { sdp }) => self.on_offer(sdp).await,
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

    async fn on_offer(&mut self, sdp: String) -> Flow {
        if let Some(session) = &self.session {
            self.send_error(SignalError::new(
                ErrorCode::AlreadyNegotiated,
                format!("this connection already has session {}; open a new one to publish again", session.info.id),
            ));
            return Flow::Continue;
        }
        let Some(mut slot) = self.app.sessions.try_take() else {
            self.send_error(SignalError::new(
                ErrorCode::ServerFull,
                format!("the server has its maximum of {} sessions", self.app.config.max_sessions),
            ));
            return Flow::Close;
        };
        let id = new_session_id();
        let networks = self.app.network.attempts_for(self.client.ip());
        match Session::open(id, sdp, &networks, self.app.tap.as_ref(), self.app.metrics.clone()).await {
            Ok((session, answer, events)) => {
                slot.register(session.info.clone());
                tracing::info!(session = %session.info.id, client = %self.client, "session opened");
                self.send(ServerMessage::Answer {
                    sdp: answer,
                    session: session.info.id.clone(),
                });
                self.session = Some(session);
                self.slot = Some(slot);
                self.events = Some(events);
                for candidate in std::mem::take(&mut self.early_candidates) {
                    self.on_candidate(candidate).await;
                }
            }
            Err(error) => self.send_error(error),
        }
        Flow::Continue
    }

    async fn on_candidate(&mut self, candidate: Candidate) {
        let address = candidate.address().unwrap_or_default();
        if !self.app.network.accepts_remote(address) {
            tracing::debug!(client = %self.client, address, "ignoring a candidate media cannot reach");
            return;
        }
        let Some(session) = &self.session else {
            if self.early_candidates.len() >= MAX_EARLY_CANDIDATES {
                self.send_error(SignalError::new(
                    ErrorCode::NoOffer,
                    format!("more than {MAX_EARLY_CANDIDATES} candidates before an offer"),
                ));
            } else {
                self.early_candidates.push(candidate);
            }
            return;
        };
        if let Err(error) = session.add_candidate(candidate).await {
            self.send_error(error);
        }
    }

    fn on_session_event(&mut self, event: SessionEvent) -> Flow {
        match event {
            SessionEvent::Candidate(candidate) => {
                self.send(ServerMessage::Ice { candidate });
                Flow::Continue
            }
            SessionEvent::State(state) => {
                tracing::debug!(client = %self.client, %state, "connection state");
                match state {
                    RTCPeerConnectionState::Connected => {
                        self.disconnect_deadline = None;
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
fn new_session_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}
