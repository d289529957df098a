//! `face-echo loadgen`: N webrtc-rs publishers in one process, each looping a VP8
//! clip encoded once with libvpx and receiving the echo, to measure frame
//! throughput, echo round-trip time and what the server spends doing it.
//!
//! Round-trip time is matched by sequence number: the echo keeps it, and the
//! payload comes back unmodified.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use serde::Serialize;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

pub mod client;
pub mod clip;
mod encode;
pub mod media;

use crate::process::ProcessStats;
use crate::seeing::stats::percentile;
use crate::session::peer::VP8_CLOCK_RATE;
use client::ClientPeer;
use clip::{EncodedFrame, encode_test_pattern};

/// Flags of `face-echo loadgen`.
#[derive(Args, Debug, Clone)]
pub struct LoadgenArgs {
    /// The server's signaling WebSocket.
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    pub url: String,
    /// Publishers to run at once.
    #[arg(long, default_value_t = 1)]
    pub peers: usize,
    /// How long each publisher sends, after all are connected.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Frame size, WIDTHxHEIGHT (even numbers).
    #[arg(long, default_value = "320x240", value_parser = parse_size)]
    pub size: (u32, u32),
    /// Frames per second each publisher sends.
    #[arg(long, default_value_t = 30)]
    pub fps: u32,
    /// Target bitrate of the looped clip, kbit/s.
    #[arg(long, default_value_t = 500)]
    pub bitrate: u32,
    /// Print the summary as JSON on stdout (progress still goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Viewers watching each publisher (broadcast fan-out), each a receive-only peer.
    #[arg(long, default_value_t = 0, value_name = "K")]
    pub viewers_per_peer: usize,
    /// Open each publisher's `face-echo` data channel and time the server's
    /// detections (a server with --detect): how old each result is when it leaves
    /// the server (`age_ms`) against the model's own time (`infer_ms`).
    #[arg(long)]
    pub results: bool,
    /// The address the peers send from, signaling and media. Default: the one the
    /// route to the server leaves from (127.0.0.1 for a server on this host).
    #[arg(long, value_name = "IP")]
    pub local_ip: Option<IpAddr>,
    /// Connect every publisher, then send nothing for --seconds: what connected,
    /// silent sessions cost the server (its CPU in the summary).
    #[arg(long)]
    pub idle: bool,
}

fn parse_size(text: &str) -> Result<(u32, u32), String> {
    let (w, h) = text.split_once('x').ok_or_else(|| format!("expected WIDTHxHEIGHT, got `{text}`"))?;
    let parse = |s: &str| s.parse::<u32>().map_err(|_| format!("`{s}` is not a number"));
    let (w, h) = (parse(w)?, parse(h)?);
    if w == 0 || h == 0 || w % 2 == 1 || h % 2 == 1 || w > 4096 || h > 4096 {
        return Err(format!("size must be even and within 2..4096, got {w}x{h}"));
    }
    Ok((w, h))
}

/// What one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub peers: usize,
    pub seconds: f64,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub frames_sent: u64,
    pub frames_echoed: u64,
    pub packets_sent: u64,
    pub packets_echoed: u64,
    /// Packets sent but never echoed, as a fraction of those sent.
    pub loss: f64,
    /// Echoed frames per second, all peers together.
    pub echoed_fps: f64,
    pub rtt_ms_p50: Option<f64>,
    pub rtt_ms_p95: Option<f64>,
    pub rtt_ms_p99: Option<f64>,
    /// Server CPU over the run, percent of one core (from /api/process).
    pub server_cpu_percent: Option<f64>,
    pub server_cpu_percent_per_peer: Option<f64>,
    /// Server CPU (utime + stime from its /proc/PID/stat, via /api/process) over the run
    /// ÷ packets echoed: the per-packet cost BENCHMARKS.md compares.
    pub server_cpu_us_per_packet: Option<f64>,
    pub server_rss_mb_start: Option<f64>,
    pub server_rss_mb_max: Option<f64>,
    /// The load generator's own CPU over the run (it shares the machine).
    pub client_cpu_percent: f64,
    /// The same per publisher: the load generator must cost less than the server it measures.
    pub client_cpu_percent_per_peer: f64,
    pub connect_failures: usize,
    /// Viewers connected in all (`--viewers-per-peer` × peers, less failures).
    pub viewers: usize,
    /// Packets the viewers received, and the fraction of what their publishers
    /// sent that never reached them.
    pub viewer_packets: u64,
    pub viewer_loss: f64,
    /// With `--results`: detections received, and their `age_ms` and `infer_ms`.
    pub results_received: u64,
    pub result_age_ms_p50: Option<f64>,
    pub result_age_ms_p99: Option<f64>,
    pub result_infer_ms_p50: Option<f64>,
}

/// Counters one publisher shares with the reporter.
#[derive(Default)]
struct PeerCounters {
    frames_sent: AtomicU64,
    packets_sent: AtomicU64,
    frames_echoed: AtomicU64,
    packets_echoed: AtomicU64,
    viewers: AtomicU64,
    viewer_packets: AtomicU64,
}

/// Sequence number → send time, for matching echoes. Each echo takes its time
/// out, so a retransmission (or a packet never sent) matches nothing, and a slot
/// is free again when sequence numbers wrap (every 65 536 packets).
pub struct SendTimes {
    at: Vec<Option<Instant>>,
}

impl Default for SendTimes {
    fn default() -> Self {
        SendTimes { at: vec![None; 1 << 16] }
    }
}

impl SendTimes {
    pub fn sent(&mut self, sequence_number: u16, at: Instant) {
        self.at[usize::from(sequence_number)] = Some(at);
    }

    /// When the packet with this number was sent, the first time it comes back.
    pub fn echoed(&mut self, sequence_number: u16) -> Option<Instant> {
        self.at[usize::from(sequence_number)].take()
    }
}

/// What every publisher's tasks share while the load runs.
struct Load {
    clip: Arc<Vec<EncodedFrame>>,
    fps: u32,
    /// `--idle`: connected, sending nothing until the deadline.
    idle: bool,
    deadline: Instant,
    /// With `--results`: (age_ms, infer_ms) of each detection received.
    results: Arc<Mutex<Vec<(f64, f64)>>>,
}

/// One publisher's echo bookkeeping, fed by its peer's track reader directly
/// ([`client::ClientOptions::on_echo`]): no task or queue of its own per packet.
#[derive(Default)]
struct Echoes {
    counters: Arc<PeerCounters>,
    times: std::sync::Mutex<SendTimes>,
    /// Echo round-trip times, µs.
    rtts: std::sync::Mutex<Vec<u32>>,
}

impl Echoes {
    /// Matches an echoed packet to its send time (a retransmission matches nothing).
    fn echoed(&self, packet: &rtc::rtp::Packet) {
        let sent_at =
            self.times.lock().unwrap_or_else(|e| e.into_inner()).echoed(packet.header.sequence_number);
        let Some(sent_at) = sent_at else { return };
        let rtt = sent_at.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
        self.rtts.lock().unwrap_or_else(|e| e.into_inner()).push(rtt);
        self.counters.packets_echoed.fetch_add(1, Ordering::Relaxed);
        if packet.header.marker {
            self.counters.frames_echoed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

pub async fn run(args: LoadgenArgs) -> anyhow::Result<Summary> {
    if args.peers == 0 || args.fps == 0 {
        bail!("--peers and --fps must be at least 1");
    }
    let http_base = http_base(&args.url)?;
    let local = match args.local_ip {
        Some(ip) => ip,
        None => route_source(&http_base).await?,
    };
    let (width, height) = args.size;
    let clip = Arc::new(
        encode_test_pattern(width, height, (args.fps * 2) as usize, args.fps, args.bitrate)
            .context("encoding the clip")?,
    );
    eprintln!("loadgen: clip of {} frames at {width}x{height}, connecting {} peers", clip.len(), args.peers);

    let (publishers, mut connect_failures) = connect_publishers(&args, local).await?;
    let counters: Vec<Arc<PeerCounters>> = publishers.iter().map(|(_, e)| Arc::clone(&e.counters)).collect();
    let echoes: Vec<Arc<Echoes>> = publishers.iter().map(|(_, e)| Arc::clone(e)).collect();
    // Viewers (if any) join before the clock starts.
    let (viewers, viewer_failures) = join_viewers(&args, local, &publishers).await;
    connect_failures += viewer_failures;

    let before = fetch_process(&http_base).await;
    let client_before = crate::process::read_self();
    let rss_max = Arc::new(AtomicU64::new(before.as_ref().map(|p| p.rss_bytes).unwrap_or(0)));
    let started = Instant::now();
    let load = Arc::new(Load {
        clip,
        fps: args.fps,
        idle: args.idle,
        deadline: started + Duration::from_secs(args.seconds),
        results: Arc::default(),
    });
    // Each publisher's frames at its own phase of the frame interval, as independent
    // clients would send: in step, every frame interval would start with a burst of
    // one frame per peer, and the server's queue, not its cost, would set the RTT.
    let period = Duration::from_secs(1) / args.fps;
    let count = publishers.len() as u32;
    let senders: Vec<_> = publishers
        .into_iter()
        .enumerate()
        .map(|(index, (publisher, echoes))| {
            let phase = period * index as u32 / count;
            run_publisher(publisher, echoes, Arc::clone(&load), started + phase)
        })
        .collect();
    let reporter =
        tokio::spawn(report_progress(counters.clone(), http_base.clone(), Arc::clone(&rss_max), started));
    let finished = send_on_own_thread(senders).await?;
    let sending = started.elapsed();
    // Let the last echoes arrive, then stop.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = fetch_process(&http_base).await;
    let client_after = crate::process::read_self();
    reporter.abort();
    for (viewer, task) in viewers {
        let _ = viewer.close().await;
        task.abort();
    }
    for publisher in finished {
        let _ = publisher.close().await;
    }
    let mut rtts: Vec<u32> = echoes
        .iter()
        .flat_map(|e| std::mem::take(&mut *e.rtts.lock().unwrap_or_else(|e| e.into_inner())))
        .collect();
    rtts.sort_unstable();
    let results = std::mem::take(&mut *load.results.lock().await);
    let rss_max = rss_max.load(Ordering::Relaxed).max(after.as_ref().map(|p| p.rss_bytes).unwrap_or(0));
    let server_cpu = match (&before, &after) {
        (Some(b), Some(a)) => Some(a.cpu_seconds - b.cpu_seconds),
        _ => None,
    };
    Ok(summarize(Measured {
        args: &args,
        counters: &counters,
        sending,
        rtts: &rtts,
        results: &results,
        server_cpu,
        client_cpu: client_after.cpu_seconds - client_before.cpu_seconds,
        server_rss_start: before.map(|p| p.rss_bytes),
        server_rss_max: rss_max,
        connect_failures,
    }))
}

/// Connects `--peers` publishers, 8 at a time, each with its echo bookkeeping;
/// fails only if none connects.
async fn connect_publishers(
    args: &LoadgenArgs,
    local: IpAddr,
) -> anyhow::Result<(Vec<(ClientPeer, Arc<Echoes>)>, usize)> {
    let mut publishers = Vec::new();
    let mut failures = 0;
    // One thread reads every publisher's socket (see `media::udp_mux::ReaderGroup`).
    let reader = crate::media::udp_mux::ReaderGroup::new().context("starting the socket reader")?;
    for batch in (0..args.peers).collect::<Vec<_>>().chunks(8) {
        let attempts = batch.iter().map(|_| async {
            let echoes = Arc::new(Echoes::default());
            let on_echo = Arc::clone(&echoes);
            let options = client::ClientOptions {
                data_channel: args.results,
                on_echo: Some(Arc::new(move |packet| on_echo.echoed(&packet))),
                lean: true,
                own_media: true,
                reader: Some(reader.clone()),
                local: Some(local),
                ..Default::default()
            };
            let publisher = ClientPeer::connect_options(&args.url, options, Duration::from_secs(20)).await;
            publisher.map(|publisher| (publisher, echoes))
        });
        for result in futures_util::future::join_all(attempts).await {
            match result {
                Ok(publisher) => publishers.push(publisher),
                Err(err) => {
                    failures += 1;
                    eprintln!("loadgen: a peer failed to connect: {err:#}");
                }
            }
        }
    }
    if publishers.is_empty() {
        bail!("no peer connected to {}", args.url);
    }
    Ok((publishers, failures))
}

/// `--viewers-per-peer` viewers for each publisher, each counting what it receives.
async fn join_viewers(
    args: &LoadgenArgs,
    local: IpAddr,
    publishers: &[(ClientPeer, Arc<Echoes>)],
) -> (Vec<(ClientPeer, JoinHandle<()>)>, usize) {
    let mut viewers = Vec::new();
    let mut failures = 0;
    for (publisher, echoes) in publishers {
        let peer = &echoes.counters;
        for _ in 0..args.viewers_per_peer {
            let options = client::ClientOptions { local: Some(local), ..Default::default() };
            let timeout = Duration::from_secs(20);
            match ClientPeer::watch_options(&args.url, &publisher.watch_token, options, timeout).await {
                Ok(mut viewer) => {
                    peer.viewers.fetch_add(1, Ordering::Relaxed);
                    let mut received = viewer.take_echoed();
                    let count = Arc::clone(peer);
                    // Counted as they come (a rare retransmission counts twice; loss is
                    // clamped at 0), so long runs past sequence-number wrap stay right.
                    let task = tokio::spawn(async move {
                        while received.recv().await.is_some() {
                            count.viewer_packets.fetch_add(1, Ordering::Relaxed);
                        }
                    });
                    viewers.push((viewer, task));
                }
                Err(err) => {
                    failures += 1;
                    eprintln!("loadgen: a viewer failed to connect: {err:#}");
                }
            }
        }
    }
    (viewers, failures)
}

/// Runs the publishers' senders on a thread and single-threaded runtime of their
/// own: a frame's timer then wakes that thread alone, where on the shared runtime
/// each wake-up of a worker also woke another to look for work (a `futex` per
/// frame, half the load generator's context switches at 128 peers).
async fn send_on_own_thread(
    senders: Vec<impl Future<Output = ClientPeer> + Send + 'static>,
) -> anyhow::Result<Vec<ClientPeer>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .context("the senders' runtime")?;
    let (done, finished) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("loadgen-send".to_owned())
        .spawn(move || {
            let _ = done.send(runtime.block_on(futures_util::future::join_all(senders)));
        })
        .context("the senders' thread")?;
    finished.await.context("the senders' thread failed")
}

/// One publisher's sender: loops the clip from `first_frame` on until the deadline,
/// then hands the publisher back (its echoes are matched as they arrive, see [`Echoes`]).
fn run_publisher(
    mut publisher: ClientPeer,
    echoes: Arc<Echoes>,
    load: Arc<Load>,
    first_frame: Instant,
) -> impl Future<Output = ClientPeer> + Send + 'static {
    if let Some(mut messages) = publisher.channel_messages() {
        let results = Arc::clone(&load.results);
        tokio::spawn(async move {
            while let Some(text) = messages.recv().await {
                let Ok(message) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
                if let (Some(age), Some(infer)) = (message["age_ms"].as_f64(), message["infer_ms"].as_f64()) {
                    results.lock().await.push((age, infer));
                }
            }
        });
    }
    async move {
        if load.idle {
            tokio::time::sleep_until(load.deadline.into()).await;
            return publisher;
        }
        let mut ticker = tokio::time::interval_at(first_frame.into(), Duration::from_secs(1) / load.fps);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        for frame in load.clip.iter().cycle() {
            ticker.tick().await;
            if Instant::now() >= load.deadline {
                break;
            }
            if send(&mut publisher, frame, load.fps, &echoes).await.is_err() {
                break;
            }
        }
        publisher
    }
}

/// A progress line a second while the load runs; tracks the server's peak RSS.
async fn report_progress(
    counters: Vec<Arc<PeerCounters>>,
    http_base: String,
    rss_max: Arc<AtomicU64>,
    started: Instant,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        let (sent, echoed) = counters.iter().fold((0, 0), |(s, e), c| {
            (s + c.frames_sent.load(Ordering::Relaxed), e + c.frames_echoed.load(Ordering::Relaxed))
        });
        let rss = fetch_process(&http_base).await.map(|p| p.rss_bytes).unwrap_or(0);
        rss_max.fetch_max(rss, Ordering::Relaxed);
        eprintln!(
            "loadgen: {:>4.0}s  frames sent {sent}  echoed {echoed}  server rss {:.1} MB",
            started.elapsed().as_secs_f64(),
            rss as f64 / 1e6
        );
    }
}

/// What a run measured, to summarize.
struct Measured<'a> {
    args: &'a LoadgenArgs,
    counters: &'a [Arc<PeerCounters>],
    sending: Duration,
    /// Sorted, µs.
    rtts: &'a [u32],
    /// (age_ms, infer_ms) of each detection received.
    results: &'a [(f64, f64)],
    server_cpu: Option<f64>,
    client_cpu: f64,
    server_rss_start: Option<u64>,
    server_rss_max: u64,
    connect_failures: usize,
}

fn summarize(m: Measured) -> Summary {
    let sum = |f: fn(&PeerCounters) -> &AtomicU64| {
        m.counters.iter().map(|c| f(c).load(Ordering::Relaxed)).sum::<u64>()
    };
    let (frames_sent, frames_echoed) = (sum(|c| &c.frames_sent), sum(|c| &c.frames_echoed));
    let (packets_sent, packets_echoed) = (sum(|c| &c.packets_sent), sum(|c| &c.packets_echoed));
    let viewer_packets = sum(|c| &c.viewer_packets);
    let viewer_expected: u64 = m
        .counters
        .iter()
        .map(|c| c.packets_sent.load(Ordering::Relaxed) * c.viewers.load(Ordering::Relaxed))
        .sum();
    let rtt_ms = |p: f64| percentile(m.rtts, p).map(|us| f64::from(us) / 1000.0);
    let sorted = |pick: fn(&(f64, f64)) -> f64| {
        let mut values: Vec<f64> = m.results.iter().map(pick).collect();
        values.sort_by(f64::total_cmp);
        values
    };
    let (ages, infers) = (sorted(|r| r.0), sorted(|r| r.1));
    let seconds = m.sending.as_secs_f64();
    let peers = m.counters.len();
    let cpu_percent = m.server_cpu.map(|cpu| cpu / seconds * 100.0);
    Summary {
        peers,
        seconds,
        width: m.args.size.0,
        height: m.args.size.1,
        fps: m.args.fps,
        frames_sent,
        frames_echoed,
        packets_sent,
        packets_echoed,
        loss: if packets_sent == 0 { 0.0 } else { 1.0 - packets_echoed as f64 / packets_sent as f64 },
        echoed_fps: frames_echoed as f64 / seconds,
        rtt_ms_p50: rtt_ms(0.50),
        rtt_ms_p95: rtt_ms(0.95),
        rtt_ms_p99: rtt_ms(0.99),
        server_cpu_percent: cpu_percent,
        server_cpu_percent_per_peer: cpu_percent.map(|c| c / peers as f64),
        server_cpu_us_per_packet: m
            .server_cpu
            .filter(|_| packets_echoed > 0)
            .map(|cpu| cpu * 1e6 / packets_echoed as f64),
        server_rss_mb_start: m.server_rss_start.map(|rss| rss as f64 / 1e6),
        server_rss_mb_max: (m.server_rss_max > 0).then(|| m.server_rss_max as f64 / 1e6),
        client_cpu_percent: m.client_cpu / seconds * 100.0,
        client_cpu_percent_per_peer: m.client_cpu / seconds * 100.0 / peers as f64,
        connect_failures: m.connect_failures,
        viewers: m.counters.iter().map(|c| c.viewers.load(Ordering::Relaxed) as usize).sum(),
        viewer_packets,
        viewer_loss: if viewer_expected == 0 {
            0.0
        } else {
            (1.0 - viewer_packets as f64 / viewer_expected as f64).max(0.0)
        },
        results_received: m.results.len() as u64,
        result_age_ms_p50: percentile(&ages, 0.50),
        result_age_ms_p99: percentile(&ages, 0.99),
        result_infer_ms_p50: percentile(&infers, 0.50),
    }
}

async fn send(
    publisher: &mut ClientPeer,
    frame: &EncodedFrame,
    fps: u32,
    echoes: &Echoes,
) -> anyhow::Result<()> {
    let mut packets = publisher.packetize_on(0, &frame.data, VP8_CLOCK_RATE / fps)?;
    // Noted before sending: the echo may be back before the send returns.
    let now = Instant::now();
    {
        let mut times = echoes.times.lock().unwrap_or_else(|e| e.into_inner());
        for packet in &packets {
            times.sent(packet.header.sequence_number, now);
        }
    }
    publisher.send_packets_on(0, &mut packets).await?;
    let counters = &echoes.counters;
    counters.frames_sent.fetch_add(1, Ordering::Relaxed);
    counters.packets_sent.fetch_add(packets.len() as u64, Ordering::Relaxed);
    Ok(())
}

/// `ws://host:port/ws` → `http://host:port`.
fn http_base(ws_url: &str) -> anyhow::Result<String> {
    let rest = ws_url
        .strip_prefix("ws://")
        .ok_or_else(|| anyhow::anyhow!("--url must start with ws:// (got {ws_url})"))?;
    let host = rest.split('/').next().unwrap_or(rest);
    Ok(format!("http://{host}"))
}

/// The local address the route to the server at `http_base` leaves from (what a
/// connected UDP socket is given; nothing is sent).
async fn route_source(http_base: &str) -> anyhow::Result<IpAddr> {
    let authority = http_base.strip_prefix("http://").unwrap_or(http_base);
    let has_port = authority.rsplit_once(':').is_some_and(|(_, port)| port.parse::<u16>().is_ok());
    let authority = if has_port { authority.to_owned() } else { format!("{authority}:80") };
    let server = tokio::net::lookup_host(authority.as_str())
        .await
        .with_context(|| format!("cannot resolve {authority}"))?
        .next()
        .ok_or_else(|| anyhow::anyhow!("{authority}: no address"))?;
    let unspecified: SocketAddr =
        if server.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
    let socket = std::net::UdpSocket::bind(unspecified)?;
    socket.connect(server).with_context(|| format!("no route to {server}"))?;
    Ok(socket.local_addr()?.ip())
}

/// The server's `/api/process`, or `None` if it cannot be read.
async fn fetch_process(http_base: &str) -> Option<ProcessStats> {
    let host = http_base.strip_prefix("http://")?;
    let mut stream = tokio::net::TcpStream::connect(host).await.ok()?;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!("GET /api/process HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut response)).await.ok()?.ok()?;
    let response = String::from_utf8_lossy(&response);
    let (_, body) = response.split_once("\r\n\r\n")?;
    serde_json::from_str(body).ok()
}

/// The summary as people read it.
pub fn print_human(summary: &Summary) {
    let ms = |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("{v:.1}"));
    let pct = |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("{v:.1}%"));
    println!(
        "peers {}  {}x{}@{}  {:.1} s\n\
         frames  sent {}  echoed {}  ({:.1} echoed fps)\n\
         packets sent {}  echoed {}  loss {:.3}%\n\
         echo RTT ms  p50 {}  p95 {}  p99 {}\n\
         server  cpu {} of a core ({} per peer, {} µs per echoed packet)  rss {} → {} MB\n\
         loadgen cpu {:.1}% of a core ({:.2}% per peer)\n\
         viewers {}  packets received {}  loss {:.3}%\n\
         connect failures {}",
        summary.peers,
        summary.width,
        summary.height,
        summary.fps,
        summary.seconds,
        summary.frames_sent,
        summary.frames_echoed,
        summary.echoed_fps,
        summary.packets_sent,
        summary.packets_echoed,
        summary.loss * 100.0,
        ms(summary.rtt_ms_p50),
        ms(summary.rtt_ms_p95),
        ms(summary.rtt_ms_p99),
        pct(summary.server_cpu_percent),
        pct(summary.server_cpu_percent_per_peer),
        ms(summary.server_cpu_us_per_packet),
        summary.server_rss_mb_start.map_or("–".into(), |v| format!("{v:.1}")),
        summary.server_rss_mb_max.map_or("–".into(), |v| format!("{v:.1}")),
        summary.client_cpu_percent,
        summary.client_cpu_percent_per_peer,
        summary.viewers,
        summary.viewer_packets,
        summary.viewer_loss * 100.0,
        summary.connect_failures,
    );
    if summary.results_received > 0 {
        println!(
            "results {}  age ms p50 {}  p99 {}  model ms p50 {}",
            summary.results_received,
            ms(summary.result_age_ms_p50),
            ms(summary.result_age_ms_p99),
            ms(summary.result_infer_ms_p50),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_matching_survives_sequence_number_wrap() {
        let mut times = SendTimes::default();
        let start = Instant::now();
        let mut sequence_number = 65_000u16;
        // Three wraps' worth of packets, each echoed once and then retransmitted.
        for i in 0..200_000u32 {
            let at = start + Duration::from_micros(u64::from(i));
            times.sent(sequence_number, at);
            assert_eq!(times.echoed(sequence_number), Some(at), "packet {i} (seq {sequence_number})");
            assert_eq!(times.echoed(sequence_number), None, "a retransmission matches nothing");
            sequence_number = sequence_number.wrapping_add(1);
        }
    }

    #[tokio::test]
    async fn peers_send_from_where_the_route_to_the_server_leaves() {
        assert_eq!(route_source("http://127.0.0.1:8080").await.unwrap().to_string(), "127.0.0.1");
        assert!(route_source("http://localhost").await.unwrap().is_loopback());
    }

    #[test]
    fn sizes_and_urls_parse() {
        assert_eq!(parse_size("320x240"), Ok((320, 240)));
        assert!(parse_size("321x240").is_err());
        assert!(parse_size("big").is_err());
        assert_eq!(http_base("ws://127.0.0.1:8080/ws").unwrap(), "http://127.0.0.1:8080");
        assert!(http_base("http://x").is_err());
    }
}
