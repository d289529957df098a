//! The HTTP face of the server: one function builds the router, handlers stay small
//! and share [`AppState`].

mod assets;
mod host;
mod whip;
mod ws;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Path, RawQuery, Request, State, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio::sync::watch;

pub use assets::Assets;
pub use host::{AllowedHosts, check_flag as check_allowed_host};
pub use whip::WHEP_LINK_REL;

use crate::control::auth;
use crate::control::cluster::Cluster;
use crate::control::config::Config;
use crate::control::limits::{Limits, PerIp, Place, Refusal};
use crate::control::network::MediaNetwork;
use crate::control::sessions::{Sessions, Slot};
use crate::metrics::Metrics;
use crate::seeing::tap::{TapConfig, snapshot};
use crate::session::signaling::{ErrorCode, SignalError};

/// Largest signaling frame we accept; a browser offer is ~5 KB. Bigger frames get
/// `too_large` and the socket closes.
pub const MAX_WS_MESSAGE_BYTES: usize = 64 * 1024;
/// What the WebSocket layer reads before giving up without a word: frames between
/// this and `MAX_WS_MESSAGE_BYTES` are read, answered `too_large`, and closed.
const WS_READ_LIMIT_BYTES: usize = 1024 * 1024;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState(Arc<AppInner>);

pub struct AppInner {
    pub config: Config,
    pub metrics: Arc<Metrics>,
    pub sessions: Arc<Sessions>,
    /// This node's place in a `--cluster`, if it has one.
    pub cluster: Option<Arc<Cluster>>,
    pub network: MediaNetwork,
    pub assets: Assets,
    /// Each session's decode tap settings (with the detector), when the tap is on.
    pub tap: Option<TapConfig>,
    /// Turns true when the server starts shutting down.
    pub shutdown: watch::Receiver<bool>,
    /// The hosts requests may name (`--listen`, `--allowed-host`, `--node-url`).
    pub hosts: AllowedHosts,
    /// The caps in force (flags, lowered to fit the file limit).
    pub limits: Limits,
    /// Signaling sockets without a negotiated session (`--max-pending[-per-ip]`).
    pub pending: Arc<PerIp>,
    /// Sessions and viewers negotiated over WHIP/WHEP, by resource (`Location`).
    pub(crate) whip: Arc<whip::Resources>,
}

impl std::ops::Deref for AppState {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

impl AppState {
    pub fn new(inner: AppInner) -> Self {
        AppState(Arc::new(inner))
    }
}

pub fn router(state: AppState) -> Router {
    // The operator's endpoints: behind --admin-token when one is set.
    let operator = Router::new()
        .route("/api/sessions", get(sessions))
        .route("/api/sessions/{id}/snapshot.jpg", get(snapshot))
        .route("/api/process", get(process))
        .route("/api/cluster", get(cluster))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_admin));
    // WHIP and WHEP (HTTP signaling for encoders and players), with CORS.
    let whip = Router::new()
        .route("/whip", post(whip::publish).options(whip::endpoint_options))
        .route(
            "/whip/{resource}",
            axum::routing::delete(whip::end_publisher)
                .patch(whip::patch_publisher)
                .options(whip::resource_options),
        )
        .route("/whep/{watch}", post(whip::watch).options(whip::endpoint_options))
        .route(
            "/whep/{watch}/{resource}",
            axum::routing::delete(whip::end_viewer).patch(whip::patch_viewer).options(whip::resource_options),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), whip::cors));
    Router::new()
        .route("/", get(index))
        .route("/watch/{session}", get(watch_page))
        .route("/healthz", get(healthz))
        .route("/ws", get(signaling))
        .merge(operator)
        .merge(whip)
        .route("/models/face-api/{*path}", get(model_file))
        .route("/{*path}", get(web_file))
        .layer(middleware::from_fn_with_state(state.clone(), host::check_host))
        .with_state(state)
}

async fn index(State(app): State<AppState>) -> Response {
    app.assets.web("index.html").await
}

/// The viewer page; it reads the session's watch token from its own URL. In a cluster, a
/// session held by another node is watched there: `307` to that node.
async fn watch_page(State(app): State<AppState>, Path(token): Path<String>) -> Response {
    if let Some(elsewhere) = elsewhere(&app, &token, &format!("/watch/{token}")).await {
        return elsewhere;
    }
    app.assets.web("watch.html").await
}

/// With --cluster, for a session that another node holds: `307` to `path` on that
/// node (for `/watch/<token>`, and `POST /whep/<token>`). `None`: answer here (the
/// session is local, unknown, or Redis does not answer in time).
pub(crate) async fn elsewhere(app: &AppState, watch_token: &str, path: &str) -> Option<Response> {
    if app.sessions.by_watch_token(watch_token).is_some() {
        return None;
    }
    let node = app.cluster.as_ref()?.owner_of(watch_token).await?;
    Some(redirect(&Cluster::at(&node, path)))
}

/// `307 Temporary Redirect` to `location` (the method and body are kept, so a
/// `POST` stays a `POST`).
fn redirect(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(location) => (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, location)]).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "bad redirect").into_response(),
    }
}

/// `ok`; with --cluster a second line says whether the cluster's Redis is reachable
/// (the node serves its own sessions either way, so the status stays 200).
async fn healthz(State(app): State<AppState>) -> String {
    match &app.cluster {
        Some(cluster) => format!("ok\n{}\n", cluster.health()),
        None => "ok".to_owned(),
    }
}

/// The fleet: every live node's load and session counts (never a watch token).
async fn cluster(State(app): State<AppState>) -> Json<serde_json::Value> {
    Json(match &app.cluster {
        Some(cluster) => cluster.to_json(),
        None => json!({"enabled": false}),
    })
}

async fn web_file(State(app): State<AppState>, Path(path): Path<String>) -> Response {
    app.assets.web(&path).await
}

async fn model_file(State(app): State<AppState>, Path(path): Path<String>) -> Response {
    app.assets.model(&path)
}

/// `--admin-token`: the operator's endpoints want `Authorization: Bearer <token>`
/// (or `?token=`, for an `<img>` or a browser's address bar).
async fn require_admin(State(app): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(required) = &app.config.admin_token {
        let given = auth::bearer(request.headers())
            .map(str::to_owned)
            .or_else(|| auth::query_token(request.uri().query()));
        if !auth::allows(Some(required), given.as_deref()) {
            app.metrics.refused("admin_unauthorized");
            let reason = if given.is_some() { "wrong operator token" } else { "missing operator token" };
            let message = format!("{reason}: send Authorization: Bearer <--admin-token>");
            let mut response =
                (StatusCode::UNAUTHORIZED, Json(json!({"error": "unauthorized", "message": message})))
                    .into_response();
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    }
    next.run(request).await
}

async fn signaling(
    State(app): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if let Err(origin) = check_origin(&headers, &app.config.allow_origin) {
        tracing::warn!(%client, origin, "refused a WebSocket from another site");
        let message = format!("origin {origin} may not open this server's WebSocket (see --allow-origin)");
        return (StatusCode::FORBIDDEN, Json(json!({"error": "forbidden_origin", "message": message})))
            .into_response();
    }
    // Before the upgrade, while refusing costs one small response. Idle until its
    // offer: a newcomer may evict it when the table is full.
    let pending = match app.pending.try_take_idle(client.ip()) {
        Ok(pending) => pending,
        Err(refusal) => return busy("too_many_pending", &pending_refused(&app, client, refusal)),
    };
    // Browsers cannot set headers on a WebSocket: the page sends `?token=`.
    let token = auth::bearer(&headers).map(str::to_owned).or_else(|| auth::query_token(query.as_deref()));
    upgrade
        .max_message_size(WS_READ_LIMIT_BYTES)
        .max_frame_size(WS_READ_LIMIT_BYTES)
        .on_upgrade(move |socket| ws::serve(socket, client, app, pending.0, pending.1, token))
}

/// A place under --max-pending(-per-ip) for a WHIP/WHEP POST while it negotiates, or
/// why not (for a `503 too_many_pending`).
fn take_pending(app: &AppState, client: SocketAddr) -> Result<Place, String> {
    app.pending.try_take(client.ip()).map_err(|refusal| pending_refused(app, client, refusal))
}

/// Counts a refused --max-pending(-per-ip) place and says why, for the client.
fn pending_refused(app: &AppState, client: SocketAddr, refusal: Refusal) -> String {
    let (reason, message) = match refusal {
        Refusal::Total => (
            "pending",
            format!("{} clients are negotiating, none of them idle (--max-pending)", app.limits.pending),
        ),
        Refusal::PerIp => (
            "pending_per_ip",
            format!(
                "your address has {} signaling sockets without a session (--max-pending-per-ip)",
                app.limits.pending_per_ip
            ),
        ),
    };
    app.metrics.refused(reason);
    tracing::debug!(%client, reason, "refused while negotiating");
    message
}

/// An offer (publish or watch, over /ws, WHIP or WHEP) with only the candidates a
/// trickle would have been allowed: reachable, and within the session's
/// [`ws::MAX_CANDIDATES`] of which `counted` were trickled already. Returns the offer
/// and how many candidates it kept, for the session's count.
fn screen_offered_candidates(
    app: &AppState,
    client: SocketAddr,
    offer: String,
    counted: usize,
) -> (String, usize) {
    let room = ws::MAX_CANDIDATES.saturating_sub(counted);
    let screened = app.network.screen_offered_candidates(offer, room);
    if screened.unreachable + screened.over_cap > 0 {
        tracing::info!(
            %client,
            kept = screened.kept,
            unreachable = screened.unreachable,
            over_cap = screened.over_cap,
            "dropped candidates from an offer"
        );
    }
    (screened.sdp, screened.kept)
}

/// A place under --max-sessions and --max-sessions-per-ip, or the `server_full` /
/// `ip_full` error that refuses it.
fn take_slot(app: &AppState, ip: std::net::IpAddr) -> Result<Slot, SignalError> {
    let refusal = match app.sessions.try_take(ip) {
        Ok(slot) => return Ok(slot),
        Err(refusal) => refusal,
    };
    let (max, max_per_ip) = app.sessions.max();
    Err(match refusal {
        Refusal::Total => {
            app.metrics.refused("sessions");
            let error = SignalError::new(
                ErrorCode::ServerFull,
                format!("the server has its maximum of {max} sessions"),
            );
            // In a cluster, a node with room (from the last heartbeat: no wait).
            match app.cluster.as_ref().and_then(|cluster| cluster.less_loaded()) {
                Some(node) => {
                    SignalError { message: format!("{}; try {node}", error.message), ..error }.at_node(&node)
                }
                None => error,
            }
        }
        Refusal::PerIp => {
            app.metrics.refused("sessions_per_ip");
            SignalError::new(
                ErrorCode::IpFull,
                format!("your address has its maximum of {max_per_ip} sessions (--max-sessions-per-ip)"),
            )
        }
    })
}

/// `503` with a JSON error, closing the connection: a refused client should not
/// keep its connection (and our descriptor) for another try.
fn busy(error: &str, message: &str) -> Response {
    let mut response =
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": error, "message": message}))).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    response
}

/// Cross-site WebSocket hijacking guard: a browser's `Origin` must be this server's
/// own (same host and port as the request's `Host`) or one of `allowed`. Requests
/// without `Origin` come from tools and peers, not from pages: allowed.
fn check_origin<'h>(headers: &'h HeaderMap, allowed: &[String]) -> Result<(), &'h str> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().map_err(|_| "(not text)")?;
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    let same_site = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|authority| !host.is_empty() && authority.eq_ignore_ascii_case(host));
    let listed = allowed.iter().any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(origin));
    if same_site || listed { Ok(()) } else { Err(origin) }
}

async fn sessions(State(app): State<AppState>) -> Json<serde_json::Value> {
    let mut sessions = app.sessions.to_json();
    // The media network (UDP mode, its ports and mux counters, ICE-TCP) with each session.
    let media = app.network.to_json();
    for session in sessions.as_array_mut().into_iter().flatten() {
        session["media"] = media.clone();
    }
    Json(sessions)
}

/// The latest frame the session's decode tap decoded, as a JPEG.
async fn snapshot(State(app): State<AppState>, Path(id): Path<String>) -> Response {
    let not_found = |message: &str| {
        (StatusCode::NOT_FOUND, Json(json!({"error": "not_found", "message": message}))).into_response()
    };
    let Some(session) = app.sessions.get(&id) else {
        return not_found("no such session");
    };
    let Some(tap) = &session.tap else {
        return not_found("the decode tap is off (start the server with --decode-tap)");
    };
    let Some(frame) = tap.latest_frame() else {
        return not_found("no frame decoded yet");
    };
    // With --detect, the server's boxes, when they were found on a frame of this size.
    let faces = match tap.detect.as_ref().map(|detect| detect.faces()) {
        Some((faces, size)) if size == (frame.width, frame.height) => faces,
        _ => Vec::new(),
    };
    // Colour conversion and JPEG encoding are CPU work: off the async threads.
    match tokio::task::spawn_blocking(move || snapshot::jpeg(&frame, &faces, 80)).await {
        Ok(Ok(jpeg)) => ([(header::CONTENT_TYPE, "image/jpeg"), (header::CACHE_CONTROL, "no-store")], jpeg)
            .into_response(),
        Ok(Err(err)) => {
            (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"error": "internal", "message": err})))
                .into_response()
        }
        Err(err) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": "internal", "message": err.to_string()})),
        )
            .into_response(),
    }
}

/// The server's own CPU time, RSS, threads and open files (from /proc).
async fn process() -> Json<crate::process::ProcessStats> {
    Json(crate::process::read_self())
}

async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    let (udp, tcp) = app.sessions.count_transports();
    for (transport, sessions) in [("udp", udp), ("tcp", tcp)] {
        app.metrics.sessions_by_transport.get_or_create(&[("transport", transport)]).set(sessions as i64);
    }
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        match &app.cluster {
            Some(cluster) => cluster.append_metrics(app.metrics.render()),
            None => app.metrics.render(),
        },
    )
}
