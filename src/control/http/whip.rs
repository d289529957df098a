//! WHIP (RFC 9725) and WHEP (draft-ietf-wish-whep): publish or watch with one HTTP
//! POST of an SDP offer, for encoders and players that speak no WebSocket.
//!
//! A POST negotiates exactly as an `offer` or `watch` on /ws does (the same
//! [`Session::open`] / [`Viewer::open`], limits and tokens), except that the answer
//! carries the server's candidates: these clients get no trickle from the server.
//! What a signaling WebSocket does for its session afterwards (ICE timeouts,
//! shutdown, freeing the slot) a resource task does here, until `DELETE <Location>`
//! or the end of the PeerConnection.
//!
//! - `POST /whip` → `201`, `Location: /whip/<resource>`, and the session's WHEP URL
//!   as `Link: </whep/<watch token>>; rel="urn:face-echo:whep"`.
//! - `POST /whep/<watch token>` → `201`, `Location: /whep/<watch token>/<resource>`.
//! - `DELETE <Location>` → `200`; `PATCH <Location>` with trickled candidates → `204`,
//!   an ICE restart → `422` (RFC 9725 §4.3.1: one of the two is supported).
//!
//! The resource id in a Location is its own 128-bit secret, not the session id that
//! `/api/sessions` lists: whoever can read that list cannot end other people's sessions.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use webrtc::peer_connection::RTCPeerConnectionState;

use super::{AppState, ws};
use crate::control::auth;
use crate::control::limits::Place;
use crate::control::sessions::Slot;
use crate::session::signaling::{Candidate, ErrorCode, MAX_SDP_BYTES, SignalError};
use crate::session::viewer::Viewer;
use crate::session::{Session, SessionEvent, SessionInfo};

/// The `Link` relation naming a WHIP session's WHEP URL (an extension relation type,
/// RFC 8288 §2.1.2: a URI of our own).
pub const WHEP_LINK_REL: &str = "urn:face-echo:whep";
const SDP: &str = "application/sdp";
const TRICKLE: &str = "application/trickle-ice-sdpfrag";
/// Headers a page on another origin may read from our responses.
const EXPOSED: &str = "Location, Link, ETag, Retry-After, Accept-Post, Accept-Patch";

/// The live WHIP sessions and WHEP viewers, by resource id.
#[derive(Default)]
pub(crate) struct Resources {
    table: Mutex<HashMap<String, Handle>>,
}

struct Handle {
    kind: Kind,
    /// The offer's ICE username fragment: a PATCH with another one is an ICE restart.
    ufrag: Option<String>,
    commands: mpsc::Sender<Command>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Publisher,
    Viewer,
}

enum Command {
    /// Close it; answer once its slot is free.
    End(oneshot::Sender<()>),
    /// Apply the client's trickled candidates.
    Trickle(Vec<Candidate>, oneshot::Sender<Result<(), SignalError>>),
}

/// What a resource task owns.
enum Peer {
    Publisher(Session),
    Viewer(Viewer),
}

impl Peer {
    async fn add_candidate(&self, candidate: Candidate) -> Result<(), SignalError> {
        match self {
            Peer::Publisher(session) => session.add_candidate(candidate).await,
            Peer::Viewer(viewer) => viewer.add_candidate(candidate).await,
        }
    }

    async fn close(self) {
        match self {
            Peer::Publisher(session) => session.close().await,
            Peer::Viewer(viewer) => viewer.close().await,
        }
    }
}

impl Resources {
    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<String, Handle>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn commands(&self, kind: Kind, id: &str) -> Option<(mpsc::Sender<Command>, Option<String>)> {
        let table = self.table();
        let handle = table.get(id).filter(|handle| handle.kind == kind)?;
        Some((handle.commands.clone(), handle.ufrag.clone()))
    }
}

/// `POST /whip`: publish (and, for an offer that can receive, get the echo).
pub(super) async fn publish(
    State(app): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Some(refused) = wrong_content_type(&headers, SDP) {
        return refused;
    }
    if !may_publish(&app, &headers) {
        return unauthorized(&app, auth::bearer(&headers).is_some());
    }
    let offer = match read_body(&app, &headers, body).await {
        Ok(offer) => offer,
        Err(refused) => return refused,
    };
    // In a task of its own: a client that hangs up mid-POST must not drop a
    // half-made session without closing it (the connect timeout ends it instead).
    let negotiated = tokio::spawn(open_publisher(app.clone(), client, offer)).await;
    match negotiated {
        Ok(response) => response,
        Err(err) => {
            error_response(&app, SignalError::new(ErrorCode::Internal, format!("negotiation failed: {err}")))
        }
    }
}

/// What every POST needs before it negotiates, as `/ws` does: a server not shutting
/// down, a `--max-pending` place for the negotiation, and a slot under
/// `--max-sessions` (a viewer is a PeerConnection too: it counts, unlisted).
fn admit(app: &AppState, client: SocketAddr) -> Result<(Place, Slot), Box<Response>> {
    if *app.shutdown.borrow() {
        return Err(Box::new(error_response(
            app,
            SignalError::new(ErrorCode::ServerShutdown, "the server is shutting down"),
        )));
    }
    let negotiating = super::take_pending(app, client)
        .map_err(|message| Box::new(busy(&format!("too_many_pending: {message}"))))?;
    let slot = super::take_slot(app, client.ip()).map_err(|error| Box::new(error_response(app, error)))?;
    Ok((negotiating, slot))
}

async fn open_publisher(app: AppState, client: SocketAddr, offer: String) -> Response {
    let (_negotiating, mut slot) = match admit(&app, client) {
        Ok(admitted) => admitted,
        Err(refused) => return *refused,
    };
    let ufrag = ice_ufrag(&offer);
    let (offer, offered_candidates) = super::screen_offered_candidates(&app, client, offer, 0);
    let networks = app.network.attempts_for(client.ip());
    let opened = Session::open(
        ws::new_session_id(),
        offer,
        &networks,
        app.tap.as_ref(),
        app.config.record.as_deref(),
        app.config.max_viewers,
        Arc::clone(&app.metrics),
    )
    .await;
    let (session, _, events) = match opened {
        Ok(opened) => opened,
        Err(error) => return error_response(&app, error),
    };
    let answer = session.gathered_answer(app.config.offer_timeout()).await;
    session.info.mark_signaling("whip");
    slot.register(Arc::clone(&session.info));
    let watch = format!("</whep/{}>; rel=\"{WHEP_LINK_REL}\"", session.info.watch_token);
    tracing::info!(session = %session.info.id, %client, "WHIP session opened");
    let peer = Peer::Publisher(session);
    let resource = start(&app, Kind::Publisher, ufrag, offered_candidates, peer, slot, events);
    let mut response = created(&app, answer, format!("/whip/{resource}"), &resource);
    if let Ok(link) = HeaderValue::from_str(&watch) {
        response.headers_mut().append(header::LINK, link);
    }
    response
}

/// `POST /whep/<watch token>`: watch that session, as /ws `watch` and the page do.
pub(super) async fn watch(
    State(app): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Path(watch_token): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Some(refused) = wrong_content_type(&headers, SDP) {
        return refused;
    }
    // Before the body is read: where this token lives (with --cluster, another node
    // may hold it: 307 there, the body follows).
    if let Some(redirect) = super::elsewhere(&app, &watch_token, &format!("/whep/{watch_token}")).await {
        return redirect;
    }
    let Some(publisher) = app.sessions.by_watch_token(&watch_token) else {
        return error_response(
            &app,
            SignalError::new(ErrorCode::NoSuchSession, "no such session (it may have ended)"),
        );
    };
    let offer = match read_body(&app, &headers, body).await {
        Ok(offer) => offer,
        Err(refused) => return refused,
    };
    let negotiated = tokio::spawn(open_viewer(app.clone(), client, publisher, watch_token, offer)).await;
    match negotiated {
        Ok(response) => response,
        Err(err) => {
            error_response(&app, SignalError::new(ErrorCode::Internal, format!("negotiation failed: {err}")))
        }
    }
}

async fn open_viewer(
    app: AppState,
    client: SocketAddr,
    publisher: Arc<SessionInfo>,
    watch_token: String,
    offer: String,
) -> Response {
    let (_negotiating, slot) = match admit(&app, client) {
        Ok(admitted) => admitted,
        Err(refused) => return *refused,
    };
    let ufrag = ice_ufrag(&offer);
    let (offer, offered_candidates) = super::screen_offered_candidates(&app, client, offer, 0);
    let networks = app.network.attempts_for(client.ip());
    let (viewer, _, events) = match Viewer::open(ws::new_session_id(), &publisher, offer, &networks).await {
        Ok(opened) => opened,
        Err(error) => return error_response(&app, error),
    };
    let answer = viewer.gathered_answer(app.config.offer_timeout()).await;
    tracing::info!(viewer = %viewer.id, session = %publisher.id, %client, "WHEP viewer joined");
    let resource = start(&app, Kind::Viewer, ufrag, offered_candidates, Peer::Viewer(viewer), slot, events);
    created(&app, answer, format!("/whep/{watch_token}/{resource}"), &resource)
}

/// `DELETE /whip/<resource>`: ends the session (with the publish token, if one is needed).
pub(super) async fn end_publisher(
    State(app): State<AppState>,
    Path(resource): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !may_publish(&app, &headers) {
        return unauthorized(&app, auth::bearer(&headers).is_some());
    }
    end(&app, Kind::Publisher, &resource).await
}

/// `DELETE /whep/<watch token>/<resource>`: ends the viewer.
pub(super) async fn end_viewer(
    State(app): State<AppState>,
    Path((_, resource)): Path<(String, String)>,
) -> Response {
    end(&app, Kind::Viewer, &resource).await
}

async fn end(app: &AppState, kind: Kind, id: &str) -> Response {
    let Some((commands, _)) = app.whip.commands(kind, id) else {
        return no_such_resource(app);
    };
    let (done, closed) = oneshot::channel();
    if commands.send(Command::End(done)).await.is_err() {
        return no_such_resource(app);
    }
    // Answered once the PeerConnection is closed and the slot free (or the task gone).
    let _ = closed.await;
    StatusCode::OK.into_response()
}

/// `PATCH /whip/<resource>`: trickled candidates (with the publish token, if needed).
pub(super) async fn patch_publisher(
    State(app): State<AppState>,
    Path(resource): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if !may_publish(&app, &headers) {
        return unauthorized(&app, auth::bearer(&headers).is_some());
    }
    patch(&app, Kind::Publisher, &resource, &headers, body).await
}

/// `PATCH /whep/<watch token>/<resource>`: trickled candidates.
pub(super) async fn patch_viewer(
    State(app): State<AppState>,
    Path((_, resource)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    patch(&app, Kind::Viewer, &resource, &headers, body).await
}

/// Trickle ICE (RFC 8840 fragments) is applied; an ICE restart (a new ufrag, or
/// `If-Match: *`) gets `422`: DELETE and POST a new offer instead.
async fn patch(app: &AppState, kind: Kind, id: &str, headers: &HeaderMap, body: Body) -> Response {
    if let Some(refused) = wrong_content_type(headers, TRICKLE) {
        return refused;
    }
    let Some((commands, ufrag)) = app.whip.commands(kind, id) else {
        return no_such_resource(app);
    };
    let if_match = headers.get(header::IF_MATCH).and_then(|value| value.to_str().ok()).map(str::trim);
    if if_match.is_some_and(|tag| tag != "*" && tag != etag(id)) {
        return text(StatusCode::PRECONDITION_FAILED, "precondition_failed: If-Match names another ETag");
    }
    let fragment = match read_body(app, headers, body).await {
        Ok(fragment) => fragment,
        Err(refused) => return refused,
    };
    let (given_ufrag, candidates) = read_fragment(&fragment);
    let restart = if_match == Some("*") || given_ufrag.zip(ufrag).is_some_and(|(given, ours)| given != ours);
    if restart {
        return text(
            StatusCode::UNPROCESSABLE_ENTITY,
            "ice_restart_unsupported: face-echo does not restart ICE; DELETE this resource and POST a new offer",
        );
    }
    let candidates: Vec<Candidate> = candidates
        .into_iter()
        .filter(|candidate| app.network.accepts_candidate(&candidate.candidate))
        .collect();
    let (reply, applied) = oneshot::channel();
    if commands.send(Command::Trickle(candidates, reply)).await.is_err() {
        return no_such_resource(app);
    }
    match applied.await {
        Ok(Ok(())) => StatusCode::NO_CONTENT.into_response(),
        Ok(Err(error)) => error_response(app, error),
        Err(_) => no_such_resource(app),
    }
}

/// `OPTIONS /whip`, `/whep/<token>`: what a POST takes (and the CORS preflight).
pub(super) async fn endpoint_options() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert(header::ALLOW, HeaderValue::from_static("POST, OPTIONS"));
    headers.insert("accept-post", HeaderValue::from_static(SDP));
    response
}

/// `OPTIONS` on a resource: what a PATCH takes (and the CORS preflight).
pub(super) async fn resource_options() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert(header::ALLOW, HeaderValue::from_static("PATCH, DELETE, OPTIONS"));
    headers.insert("accept-patch", HeaderValue::from_static(TRICKLE));
    response
}

/// CORS for the WHIP/WHEP routes, under the same origin rule as /ws: the server's
/// own origin or an `--allow-origin` may use them from a browser; any other origin
/// gets `403` (so its preflight fails too). Requests without `Origin` are tools.
pub(super) async fn cors(State(app): State<AppState>, request: Request, next: Next) -> Response {
    if let Err(origin) = super::check_origin(request.headers(), &app.config.allow_origin) {
        tracing::warn!(origin, "refused a WHIP/WHEP request from another site");
        let message =
            format!("forbidden_origin: origin {origin} may not use WHIP/WHEP here (see --allow-origin)");
        return text(StatusCode::FORBIDDEN, &message);
    }
    let origin = request.headers().get(header::ORIGIN).cloned();
    let preflight = request.method() == Method::OPTIONS;
    let mut response = next.run(request).await;
    if let Some(origin) = origin {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
        headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSED));
        if preflight {
            let methods = HeaderValue::from_static("POST, PATCH, DELETE, OPTIONS");
            headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, methods);
            let allowed = HeaderValue::from_static("Authorization, Content-Type, If-Match");
            headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, allowed);
            headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        }
    }
    response
}

/// Lists a negotiated session or viewer and starts the task that owns it; returns
/// its resource id. `candidates`: how many its offer carried (the cap counts them).
fn start(
    app: &AppState,
    kind: Kind,
    ufrag: Option<String>,
    candidates: usize,
    peer: Peer,
    slot: Slot,
    events: mpsc::UnboundedReceiver<SessionEvent>,
) -> String {
    let id = format!("{:016x}{:016x}", rand::random::<u64>(), rand::random::<u64>());
    let (commands, commands_rx) = mpsc::channel(8);
    app.whip.table().insert(id.clone(), Handle { kind, ufrag, commands });
    tokio::spawn(run(app.clone(), id.clone(), candidates, peer, slot, events, commands_rx));
    id
}

/// One WHIP session or WHEP viewer, from its answer to its end: what ws.rs does for
/// a WebSocket's session, with DELETE in place of the socket closing.
async fn run(
    app: AppState,
    id: String,
    mut candidates: usize,
    peer: Peer,
    slot: Slot,
    mut events: mpsc::UnboundedReceiver<SessionEvent>,
    mut commands: mpsc::Receiver<Command>,
) {
    let mut shutdown = app.shutdown.clone();
    let mut connect_deadline = Some(Instant::now() + app.config.offer_timeout());
    let mut disconnect_deadline = None;
    let mut deleted = None;
    let reason = loop {
        tokio::select! {
            event = events.recv() => match event {
                // The answer carried our candidates; later ones have nowhere to go.
                Some(SessionEvent::Candidate(_)) => {}
                Some(SessionEvent::State(RTCPeerConnectionState::Connected)) => {
                    connect_deadline = None;
                    disconnect_deadline = None;
                }
                Some(SessionEvent::State(RTCPeerConnectionState::Disconnected)) => {
                    disconnect_deadline.get_or_insert(Instant::now() + app.config.disconnect_timeout());
                }
                Some(SessionEvent::State(RTCPeerConnectionState::Failed)) => break "ICE failed",
                Some(SessionEvent::State(RTCPeerConnectionState::Closed)) => break "closed",
                Some(SessionEvent::State(_)) => {}
                Some(SessionEvent::PublisherLeft) => break "the publisher left",
                None => break "events ended",
            },
            command = commands.recv() => match command {
                Some(Command::End(done)) => {
                    deleted = Some(done);
                    break "DELETE";
                }
                Some(Command::Trickle(list, reply)) => {
                    candidates += list.len();
                    let result = if candidates > ws::MAX_CANDIDATES {
                        Err(SignalError::new(
                            ErrorCode::TooManyCandidates,
                            format!("more than {} candidates for one resource", ws::MAX_CANDIDATES),
                        ))
                    } else {
                        add_candidates(&peer, list).await
                    };
                    let _ = reply.send(result);
                }
                None => break "dropped",
            },
            _ = ws::sleep_until(connect_deadline) => break "ICE did not connect in time (--offer-timeout)",
            _ = ws::sleep_until(disconnect_deadline) => break "ICE stayed disconnected (--disconnect-timeout)",
            _ = ws::stopping(&mut shutdown) => break "server shutdown",
        }
    };
    app.whip.table().remove(&id);
    peer.close().await;
    drop(slot);
    tracing::info!(resource = %id, reason, "WHIP/WHEP resource ended");
    if let Some(done) = deleted {
        let _ = done.send(());
    }
}

async fn add_candidates(peer: &Peer, candidates: Vec<Candidate>) -> Result<(), SignalError> {
    for candidate in candidates {
        peer.add_candidate(candidate).await?;
    }
    Ok(())
}

/// The ufrag and candidates of a trickle-ice-sdpfrag body (RFC 8840 §9): session-level
/// `a=ice-ufrag`, then per `m=` section its `a=mid` and `a=candidate` lines.
fn read_fragment(fragment: &str) -> (Option<String>, Vec<Candidate>) {
    let mut ufrag = None;
    let mut candidates = Vec::new();
    let (mut mid, mut mline) = (None::<String>, None::<u16>);
    for line in fragment.lines().map(str::trim) {
        if line.starts_with("m=") {
            mline = Some(mline.map_or(0, |index| index.saturating_add(1)));
            mid = None;
        } else if let Some(value) = line.strip_prefix("a=ice-ufrag:") {
            ufrag.get_or_insert_with(|| value.trim().to_owned());
        } else if let Some(value) = line.strip_prefix("a=mid:") {
            mid = Some(value.trim().to_owned());
        } else if let Some(value) = line.strip_prefix("a=candidate:") {
            candidates.push(Candidate {
                candidate: format!("candidate:{value}"),
                sdp_mid: mid.clone(),
                sdp_mline_index: if mid.is_some() { None } else { mline },
                username_fragment: ufrag.clone(),
            });
        }
    }
    (ufrag, candidates)
}

/// The first `a=ice-ufrag:` of an SDP.
fn ice_ufrag(sdp: &str) -> Option<String> {
    sdp.lines().find_map(|line| line.trim().strip_prefix("a=ice-ufrag:")).map(|ufrag| ufrag.trim().to_owned())
}

fn etag(id: &str) -> String {
    format!("\"{id}\"")
}

/// Whether the request carries a token that may publish: `--whip-token` or
/// `--publish-token` as `Authorization: Bearer` (or no token is required at all).
fn may_publish(app: &AppState, headers: &HeaderMap) -> bool {
    let config = &app.config;
    let required = [config.whip_token.as_ref(), config.publish_token.as_ref()];
    if required.iter().all(Option::is_none) {
        return true;
    }
    let given = auth::bearer(headers);
    required.into_iter().flatten().any(|token| auth::allows(Some(token), given))
}

fn unauthorized(app: &AppState, token_given: bool) -> Response {
    app.metrics.refused("unauthorized");
    let reason = if token_given { "wrong token" } else { "publishing needs a token" };
    let message =
        format!("unauthorized: {reason}: send Authorization: Bearer <--whip-token or --publish-token>");
    let mut response = text(StatusCode::UNAUTHORIZED, &message);
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// The `415` for a request whose media type is not `expected` (parameters aside).
fn wrong_content_type(headers: &HeaderMap, expected: &'static str) -> Option<Response> {
    let given = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or("");
    let media_type = given.split(';').next().unwrap_or("").trim();
    if media_type.eq_ignore_ascii_case(expected) {
        return None;
    }
    let shown = if given.is_empty() { "none" } else { given };
    let mut response = text(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        &format!("unsupported_media_type: Content-Type is {shown}; send {expected}"),
    );
    let accept = if expected == SDP { "accept-post" } else { "accept-patch" };
    response.headers_mut().insert(accept, HeaderValue::from_static(expected));
    Some(response)
}

/// The body as text, at most [`MAX_SDP_BYTES`] (`413` beyond, as /ws refuses such an SDP).
async fn read_body(app: &AppState, headers: &HeaderMap, body: Body) -> Result<String, Response> {
    let too_large = || {
        app.metrics.signaling_errors.inc();
        text(StatusCode::PAYLOAD_TOO_LARGE, &format!("too_large: the limit is {MAX_SDP_BYTES} bytes"))
    };
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|value| value.to_str().ok());
    if declared.and_then(|length| length.parse::<usize>().ok()).is_some_and(|length| length > MAX_SDP_BYTES) {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(body, MAX_SDP_BYTES).await.map_err(|_| too_large())?;
    String::from_utf8(bytes.to_vec())
        .map_err(|_| error_response(app, SignalError::new(ErrorCode::BadSdp, "the body is not UTF-8 text")))
}

/// `201 Created` with the answer.
fn created(app: &AppState, answer: String, location: String, id: &str) -> Response {
    let mut response = (StatusCode::CREATED, [(header::CONTENT_TYPE, SDP)], answer).into_response();
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(&location) {
        headers.insert(header::LOCATION, location);
    }
    if let Ok(tag) = HeaderValue::from_str(&etag(id)) {
        headers.insert(header::ETAG, tag);
    }
    headers.insert("accept-patch", HeaderValue::from_static(TRICKLE));
    // RFC 9725 §4.6: the STUN servers the client may use too.
    for url in &app.config.stun {
        if let Ok(link) = HeaderValue::from_str(&format!("<{url}>; rel=\"ice-server\"")) {
            headers.append(header::LINK, link);
        }
    }
    response
}

fn no_such_resource(app: &AppState) -> Response {
    app.metrics.signaling_errors.inc();
    text(StatusCode::NOT_FOUND, "not_found: no such resource (it may have ended)")
}

/// A [`SignalError`] as HTTP: the status its code means, `<code>: <message>` as text.
fn error_response(app: &AppState, error: SignalError) -> Response {
    app.metrics.signaling_errors.inc();
    let status = match error.code {
        ErrorCode::BadJson
        | ErrorCode::UnknownType
        | ErrorCode::BadSdp
        | ErrorCode::UnsupportedCodec
        | ErrorCode::BadCandidate
        | ErrorCode::NoOffer
        | ErrorCode::TooManyCandidates => StatusCode::BAD_REQUEST,
        ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        // (`elsewhere` is answered with a 307 before it could come to this.)
        ErrorCode::NoSuchSession | ErrorCode::PublisherLeft | ErrorCode::Elsewhere => StatusCode::NOT_FOUND,
        ErrorCode::AlreadyNegotiated => StatusCode::CONFLICT,
        ErrorCode::ServerFull
        | ErrorCode::IpFull
        | ErrorCode::ViewersFull
        | ErrorCode::ServerShutdown
        | ErrorCode::RateLimited => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::IdleTimeout | ErrorCode::IceFailed | ErrorCode::Internal => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    tracing::debug!(code = ?error.code, message = %error.message, %status, "WHIP/WHEP refused");
    let code = serde_json::to_value(error.code).ok();
    let code = code.as_ref().and_then(|code| code.as_str()).unwrap_or("error");
    let message = format!("{code}: {}", error.message);
    if status == StatusCode::SERVICE_UNAVAILABLE { busy(&message) } else { text(status, &message) }
}

/// `503` with `Retry-After`: full for now, try again later.
fn busy(message: &str) -> Response {
    let mut response = text(StatusCode::SERVICE_UNAVAILABLE, message);
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    response
}

fn text(status: StatusCode, message: &str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{message}\n")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trickle_fragments_give_their_ufrag_and_candidates() {
        let fragment = "a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n\
            a=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0\r\n\
            a=end-of-candidates\r\n";
        let (ufrag, candidates) = read_fragment(fragment);
        assert_eq!(ufrag.as_deref(), Some("EsAw"));
        assert_eq!(candidates.len(), 1);
        assert_eq!(candidates[0].sdp_mid.as_deref(), Some("0"));
        assert_eq!(candidates[0].address(), Some("192.0.2.1"));
        assert_eq!(read_fragment("garbage\n\0\u{fffd}"), (None, Vec::new()));
    }

    #[test]
    fn an_offer_names_its_ufrag() {
        assert_eq!(ice_ufrag("v=0\r\na=ice-ufrag:abcd\r\n").as_deref(), Some("abcd"));
        assert_eq!(ice_ufrag("v=0\r\n"), None);
    }
}
