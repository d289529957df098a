//! Starting and stopping the server: bind, serve, and on shutdown close every
//! session before returning.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::control::cluster::{self, Cluster};
use crate::control::config::{Config, TcpPort};
use crate::control::http::{self, AllowedHosts, AppInner, AppState, Assets};
use crate::control::limits::{self, Limits, PerIp};
use crate::control::listener::{CountingListener, Serve};
use crate::control::network::MediaNetwork;
use crate::control::sessions::Sessions;
use crate::control::tls::TlsListener;
use crate::media::udp_mux::TcpMux;
use crate::metrics::Metrics;
use crate::seeing::detect::Detector;
use crate::seeing::tap::TapConfig;
use axum::serve::ListenerExt;

/// How long shutdown waits for sessions to close before giving up on them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(4);

/// A server running in this process (the binary runs one; tests run many).
pub struct RunningServer {
    /// The address it listens on (the real port when `--listen` asked for 0).
    pub addr: SocketAddr,
    pub state: AppState,
    stop: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
    /// ICE-TCP's own listener (`--tcp-port PORT`): accepting until the server is dropped.
    _ice_tcp_listener: Option<CountingListener>,
}

/// Every flag checked before anything starts: by the config, then by the part that
/// owns its meaning (Host names, the recording directory, the cluster's URLs).
pub fn check(config: &Config) -> anyhow::Result<()> {
    config.validate()?;
    for host in &config.allowed_host {
        crate::control::http::check_allowed_host(host)?;
    }
    if let Some(dir) = &config.record {
        crate::record::check_dir(dir)?;
    }
    if let Some(redis) = &config.cluster {
        crate::control::cluster::check_flags(redis, config.node_url.as_ref())?;
    }
    Ok(())
}

/// Binds `config.listen` and starts serving in the background.
pub async fn start(config: Config) -> anyhow::Result<RunningServer> {
    check(&config)?;
    let limits = fd_budget(&config);
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(crate::control::tls::server_config(cert, key)?),
        _ => None,
    };
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {} (--listen)", config.listen))?;
    let addr = listener.local_addr()?;
    let (stop, stopping) = watch::channel(false);
    let metrics = Arc::new(Metrics::new());
    let connections =
        PerIp::new(limits.connections, limits.connections_per_ip, metrics.connections_open.clone());
    let mut ice_tcp_listener = None;
    // ICE-TCP: on the HTTP port (told apart by the first bytes), a port of its own, or off.
    let (ice_tcp, http_serves) = match config.tcp_port {
        None => {
            let mux = TcpMux::new(addr.port())?;
            (Some(mux.clone()), Serve::HttpAndIceTcp(mux))
        }
        Some(TcpPort::Off) => (None, Serve::Http),
        Some(TcpPort::Port(port)) => {
            let ip = config.listen.ip();
            let tcp = TcpListener::bind((ip, port))
                .await
                .with_context(|| format!("cannot listen on TCP {ip} port {port} for ICE-TCP (--tcp-port)"))?;
            let mux = TcpMux::new(tcp.local_addr()?.port())?;
            let serve = Serve::IceTcp(mux.clone());
            ice_tcp_listener = Some(CountingListener::new(
                tcp,
                Arc::clone(&connections),
                Arc::clone(&metrics),
                false,
                serve,
            )?);
            (Some(mux), Serve::Http)
        }
    };
    let network = MediaNetwork::from_config(&config, addr.port(), ice_tcp)?;
    tracing::info!("{}", network.describe());
    let tap = match (config.tap(), config.detect()) {
        (Some(tap), Some(detect)) => {
            let workers = crate::seeing::detect::default_workers();
            // Loading takes ~0.1 s, once, before serving anything.
            let detector = Detector::start(&detect, workers, Arc::clone(&metrics))?;
            tracing::info!(model = detect.model.name(), workers, fps = detect.fps, "face detection on");
            Some(TapConfig { detector: Some(detector), ..tap })
        }
        (tap, _) => tap,
    };
    let listener =
        CountingListener::new(listener, connections, Arc::clone(&metrics), tls.is_none(), http_serves)?;
    let sessions = Sessions::new(limits.sessions, limits.sessions_per_ip, Arc::clone(&metrics));
    let cluster = match &config.cluster {
        Some(redis) => Some(Cluster::join(
            redis,
            cluster::node_url(&config, addr)?,
            config.cluster_ttl(),
            Arc::clone(&sessions),
            Arc::clone(&metrics),
            limits.sessions,
        )?),
        None => None,
    };
    let hosts = AllowedHosts::new(&config, cluster.as_ref().map(|cluster| cluster.url()));
    let state = AppState::new(AppInner {
        hosts,
        sessions,
        cluster,
        pending: PerIp::evicting_idle(
            limits.pending,
            limits.pending_per_ip,
            metrics.signaling_pending.clone(),
            metrics.signaling_evicted.clone(),
        ),
        limits,
        network,
        assets: Assets::new(config.web_dir.clone()),
        tap,
        metrics,
        shutdown: stopping.clone(),
        whip: Default::default(),
        config,
    });
    let app = http::router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let mut stopped = stopping;
    let stopped = async move {
        let _ = stopped.wait_for(|stopping| *stopping).await;
    };
    let task = match tls {
        None => {
            // tap_io: axum's way of giving a custom listener's peer address to handlers.
            let listener = listener.tap_io(|_| {});
            tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(stopped).await })
        }
        Some(tls) => {
            let listener = TlsListener::new(listener, tls)?.tap_io(|_| {});
            tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(stopped).await })
        }
    };
    Ok(RunningServer { addr, state, stop, task, _ice_tcp_listener: ice_tcp_listener })
}

/// Raises the file limit as far as it goes and derives the caps from it; logs both.
fn fd_budget(config: &Config) -> Limits {
    let fds = match limits::raise_fd_limit() {
        Ok(fd) => {
            tracing::info!(
                soft_before = fd.soft_before,
                soft = fd.soft,
                hard = fd.hard,
                "file descriptor limit"
            );
            fd.soft
        }
        Err(err) => {
            tracing::warn!(%err, "cannot read the file limit; assuming 1024");
            1024
        }
    };
    let limits = Limits::derive(config, fds);
    if limits.sessions < config.max_sessions {
        tracing::warn!(
            max_sessions = config.max_sessions,
            fits = limits.sessions,
            fds,
            "--max-sessions does not fit the file limit: lowered (raise the hard limit, e.g. LimitNOFILE=)"
        );
    }
    tracing::info!(
        connections = limits.connections,
        connections_per_ip = limits.connections_per_ip,
        pending = limits.pending,
        pending_per_ip = limits.pending_per_ip,
        sessions = limits.sessions,
        sessions_per_ip = limits.sessions_per_ip,
        "limits"
    );
    limits
}

impl RunningServer {
    /// Stops accepting, tells every connection to close its session, and waits
    /// (at most [`SHUTDOWN_GRACE`]) until none is left.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        // Other nodes stop sending viewers here at once, not when the entries expire.
        if let Some(cluster) = &self.state.cluster {
            cluster.leave().await;
        }
        let _ = self.stop.send(true);
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        while self.state.sessions.slots_taken() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = self.state.sessions.slots_taken();
        if left > 0 {
            tracing::warn!(left, "sessions still open at shutdown");
        }
        match tokio::time::timeout(Duration::from_secs(1), self.task).await {
            Ok(joined) => joined.context("server task panicked")?.context("server failed")?,
            Err(_) => tracing::warn!("HTTP server did not stop in time"),
        }
        Ok(())
    }
}
