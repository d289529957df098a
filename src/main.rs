//! The `face-echo` binary: parse flags, set up logging, run until Ctrl-C/SIGTERM.

use clap::{Parser, Subcommand};
use face_echo::control::config::Config;
use face_echo::loadgen::{self, LoadgenArgs};
use face_echo::record::{replay, stats};
use tracing_subscriber::EnvFilter;

/// WebRTC echo media server for live vision work.
///
/// Serves a page that captures the webcam, detects faces in the browser and sends
/// the annotated video over WebRTC (VP8); the server echoes the RTP back
/// unmodified. Open http://127.0.0.1:8080/ after starting it.
///
/// Logging: RUST_LOG (e.g. RUST_LOG=face_echo=debug), default info.
#[derive(Parser, Debug)]
#[command(name = "face-echo", version, about, long_about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Config,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run N webrtc-rs publishers against a server and report frame throughput,
    /// echo round-trip time, loss, and the server's CPU and memory.
    Loadgen(LoadgenArgs),
    /// Decode (and with --detect, detect on) every frame of a recording
    /// (`--record`) as fast as possible: frames/s, decode and detection times,
    /// faces per frame, agreement with the recorded detections.
    Replay(replay::ReplayArgs),
    /// Summarise the recordings in a directory (or one .ivf).
    RecordStats(RecordStatsArgs),
}

#[derive(clap::Args, Debug)]
struct RecordStatsArgs {
    /// The --record directory, or one .ivf file.
    path: std::path::PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| {
            // The load generator's own peers are webrtc-rs too: keep their chatter down.
            EnvFilter::new(if cli.command.is_some() { "error" } else { "info" })
        }))
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("face-echo: cannot start the async runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Some(Command::Loadgen(args)) => runtime.block_on(run_loadgen(args)),
        Some(Command::Replay(args)) => run_replay(&args),
        Some(Command::RecordStats(args)) => run_record_stats(&args),
        None => runtime.block_on(serve(cli.config)),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("face-echo: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let tls = config.tls_cert.is_some();
    let (publish_open, operator_open) = (config.publish_token.is_none(), config.admin_token.is_none());
    let stop = stop_signal()?;
    let server = face_echo::server::start(config).await?;
    let addr = server.addr;
    let (http, ws) = if tls { ("https", "wss") } else { ("http", "ws") };
    tracing::info!("listening on {http}://{addr}/ (signaling {ws}://{addr}/ws)");
    if !addr.ip().is_loopback() && !tls {
        tracing::warn!(
            "listening on {addr}, beyond loopback, without TLS: browsers allow the camera only on https or localhost"
        );
    }
    if !addr.ip().is_loopback() {
        if publish_open {
            tracing::warn!("no --publish-token: anyone who reaches {addr} may publish (offers on /ws)");
        }
        if operator_open {
            tracing::warn!(
                "no --admin-token: /api/sessions, snapshots, /api/process and /metrics are open to anyone who reaches {addr}"
            );
        }
    }
    stop.await;
    tracing::info!("shutting down: closing every session");
    server.shutdown().await?;
    tracing::info!("bye");
    Ok(())
}

async fn run_loadgen(args: LoadgenArgs) -> anyhow::Result<()> {
    let json = args.json;
    let summary = loadgen::run(args).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        loadgen::print_human(&summary);
    }
    Ok(())
}

fn run_replay(args: &replay::ReplayArgs) -> anyhow::Result<()> {
    let quiet = args.quiet;
    let report = replay::replay(args, |frames, fps| {
        if !quiet {
            eprintln!("replay: {frames} frames, {fps:.1} frames/s");
        }
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        replay::print_human(&report);
    }
    Ok(())
}

fn run_record_stats(args: &RecordStatsArgs) -> anyhow::Result<()> {
    let summaries = stats::summarize_dir(&args.path)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summaries)?);
    } else {
        stats::print_human(&summaries);
    }
    Ok(())
}

/// Registers Ctrl-C and SIGTERM handlers now (before the server says it is
/// listening, so an early signal is never the default "die at once"), and
/// returns a future that ends at the first of them.
fn stop_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
