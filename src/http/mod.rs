//! The HTTP face of the server: one function builds the router, handlers stay small
//! and share [`AppState`].

mod assets;
mod ws;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Path, State, WebSocketUpgrade};
use axum::http::header;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use tokio::sync::watch;

pub use assets::Assets;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::network::MediaNetwork;
use crate::sessions::Sessions;

/// Largest signaling frame we accept; a browser offer is ~5 KB.
pub const MAX_WS_MESSAGE_BYTES: usize = 64 * 1024;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState(Arc<AppInner>);

pub struct AppInner {
    pub config: Config,
    pub metrics: Arc<Metrics>,
    pub sessions: Arc<Sessions>,
    pub network: MediaNetwork,
    pub assets: Assets,
    /// Turns true when the server starts shutting down.
    pub shutdown: watch::Receiver<bool>,
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
    Router::new()
        .route("/", get(index))
        .route("/healthz", get(|| async { "ok" }))
        .route("/ws", get(signaling))
        .route("/api/sessions", get(sessions))
        .route("/metrics", get(metrics))
        .route("/models/{*path}", get(model_file))
        .route("/{*path}", get(web_file))
        .with_state(state)
}

async fn index(State(app): State<AppState>) -> Response {
    app.assets.web("index.html").await
}

async fn web_file(State(app): State<AppState>, Path(path): Path<String>) -> Response {
    app.assets.web(&path).await
}

async fn model_file(State(app): State<AppState>, Path(path): Path<String>) -> Response {
    app.assets.model(&path)
}

async fn signaling(
    State(app): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade
        .max_message_size(MAX_WS_MESSAGE_BYTES)
        .max_frame_size(MAX_WS_MESSAGE_BYTES)
        .on_upgrade(move |socket| ws::serve(socket, client, app))
}

async fn sessions(State(app): State<AppState>) -> Json<serde_json::Value> {
    Json(app.sessions.to_json())
}

async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        app.metrics.render(),
    )
}
