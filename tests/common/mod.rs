//! Helpers shared by the integration tests: an in-process server on a free
//! loopback port, and a minimal HTTP GET.

#![allow(dead_code)]

pub mod redis_server;

use std::net::SocketAddr;
use std::time::Duration;

use face_echo::control::config::Config;
use face_echo::loadgen::client::ClientPeer;
use face_echo::loadgen::clip::encode_test_pattern;
use face_echo::process::ProcessStats;
use face_echo::server::{self, RunningServer};
use rtc::rtp;
use std::process::{Child, Command, Stdio};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// A UDP port free on 127.0.0.1 a moment ago (for `--udp-port`).
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A port free on 127.0.0.1 for both TCP and UDP a moment ago: what `--listen` takes
/// when media (by default on the same number, on UDP) must bind too.
pub fn free_port() -> u16 {
    loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The default config on 127.0.0.1 with an ephemeral port.
pub fn test_config() -> Config {
    Config::new("127.0.0.1:0".parse().unwrap())
}

pub async fn start(config: Config) -> RunningServer {
    init_logging();
    server::start(config).await.expect("server starts")
}

pub fn ws_url(addr: SocketAddr) -> String {
    format!("ws://{addr}/ws")
}

/// GET `path`; returns the status code and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_get_with(addr, path, None).await
}

/// GET `path` with an optional `Authorization` header value: status and body.
pub async fn http_get_with(addr: SocketAddr, path: &str, authorization: Option<&str>) -> (u16, String) {
    let headers: Vec<(&str, &str)> =
        authorization.map(|value| ("Authorization", value)).into_iter().collect();
    let response =
        face_echo::loadgen::client::http_request("GET", &format!("http://{addr}{path}"), &headers, b"")
            .await
            .expect("GET");
    (response.status, response.body)
}

/// `/api/sessions` as JSON.
pub async fn sessions(addr: SocketAddr) -> Vec<serde_json::Value> {
    let (status, body) = http_get(addr, "/api/sessions").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Vec<serde_json::Value>>(&body).expect("sessions JSON")
}

/// A PeerConnection handler that ignores every event.
pub struct Quiet;
#[async_trait::async_trait]
impl webrtc::peer_connection::PeerConnectionEventHandler for Quiet {}

/// A real offer from a webrtc-rs peer that nobody answers (kept alive by the caller):
/// an SDP the server would accept, for tests of what comes with or after it.
pub async fn real_offer() -> (std::sync::Arc<dyn webrtc::peer_connection::PeerConnection>, String) {
    use face_echo::session::peer::{self, PeerNetwork};
    let pc =
        peer::build(&PeerNetwork::loopback(), None, std::sync::Arc::new(Quiet), peer::PeerMedia::client())
            .await
            .expect("pc");
    pc.add_track(peer::vp8_rtp_track("s", "t") as _).await.expect("track");
    let offer = pc.create_offer(None).await.expect("offer");
    pc.set_local_description(offer).await.expect("sld");
    let sdp = pc.local_description().await.expect("local").sdp;
    (pc, sdp)
}

/// The server's ICE credentials, as its answer `sdp` gives them (`a=ice-ufrag`,
/// `a=ice-pwd`): what a test signs its own binding requests with.
pub fn answer_credentials(sdp: &str) -> face_echo::media::udp_mux::IceCredentials {
    let attribute = |name: &str| {
        sdp.lines().find_map(|line| line.strip_prefix(name)).map(|value| value.trim().to_owned()).expect(name)
    };
    face_echo::media::udp_mux::IceCredentials {
        ufrag: attribute("a=ice-ufrag:"),
        password: attribute("a=ice-pwd:"),
    }
}

/// Polls `check` every 50 ms until it holds or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub const FPS: u32 = 30;
pub const SAMPLES_PER_FRAME: u32 = 90_000 / FPS;

/// Sends `frames` frames of a 320x240 clip at 30 fps; returns every packet sent.
pub async fn publish(publisher: &mut ClientPeer, frames: usize) -> Vec<rtp::Packet> {
    let clip = encode_test_pattern(320, 240, frames, FPS, 600).expect("clip encodes");
    let mut sent = Vec::new();
    let mut ticker = tokio::time::interval(Duration::from_millis(1000 / u64::from(FPS)));
    for frame in &clip {
        ticker.tick().await;
        sent.extend(publisher.send_frame(&frame.data, SAMPLES_PER_FRAME).await.expect("send"));
    }
    sent
}

/// Drains echoed packets until none arrives for `quiet`.
pub async fn collect_echo(publisher: &mut ClientPeer, quiet: Duration) -> Vec<rtp::Packet> {
    let mut echoed = Vec::new();
    while let Ok(Some(packet)) = tokio::time::timeout(quiet, publisher.echoed.recv()).await {
        echoed.push(packet);
    }
    echoed
}

/// Counts echoed packets whose payload equals the sent packet with the same
/// sequence number (retransmissions counted once).
pub fn identical_payloads(sent: &[rtp::Packet], echoed: &[rtp::Packet]) -> usize {
    let sent: std::collections::HashMap<u16, &rtp::Packet> =
        sent.iter().map(|p| (p.header.sequence_number, p)).collect();
    let mut seen = std::collections::HashSet::new();
    echoed
        .iter()
        .filter(|p| seen.insert(p.header.sequence_number))
        .filter(|p| sent.get(&p.header.sequence_number).is_some_and(|s| s.payload == p.payload))
        .count()
}

/// Names of this process's threads (Linux), e.g. to see whether tap threads run.
pub fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .map(|tasks| {
            tasks
                .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                .map(|name| name.trim().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// GET `path` as bytes: status, content type, body.
pub async fn http_get_bytes(addr: SocketAddr, path: &str) -> (u16, String, Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").expect("headers end");
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).expect("status");
    let content_type = head
        .lines()
        .find_map(|l| l.strip_prefix("content-type: ").or_else(|| l.strip_prefix("Content-Type: ")))
        .unwrap_or_default()
        .to_owned();
    let mut body = response[split + 4..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    (status, content_type, body)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") else { return out };
        let size = usize::from_str_radix(std::str::from_utf8(&data[..line_end]).unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            return out;
        }
        let start = line_end + 2;
        out.extend_from_slice(&data[start..start + size]);
        data = &data[start + size + 2..];
    }
}

pub const BIN: &str = env!("CARGO_BIN_EXE_face-echo");

/// The binary in its own process on a free loopback port (its RSS, CPU and files are
/// its own); killed when dropped.
pub struct Server {
    pub child: Child,
    pub addr: std::net::SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The binary (or `FACE_ECHO_BIN`, e.g. target/release/face-echo, for measuring)
/// listening on a free loopback port, quiet, not started yet: callers add flags.
pub fn server_command() -> (Command, std::net::SocketAddr) {
    let port = free_port();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let mut command = Command::new(std::env::var("FACE_ECHO_BIN").unwrap_or_else(|_| BIN.to_owned()));
    command.args(["--listen", &addr.to_string()]).env("RUST_LOG", "error").stdout(Stdio::null());
    (command, addr)
}

/// Starts `command` and waits until it listens on `addr`.
pub async fn spawn(mut command: Command, addr: std::net::SocketAddr) -> Server {
    let server = Server { child: command.spawn().expect("starts"), addr };
    assert!(
        eventually(Duration::from_secs(10), || async { tokio::net::TcpStream::connect(addr).await.is_ok() })
            .await,
        "server never listened"
    );
    server
}

/// The binary with room for 128 sessions, all from loopback, plus `extra` flags.
pub async fn spawn_server(extra: &[&str]) -> Server {
    let (mut command, addr) = server_command();
    command.args(["--max-sessions", "128", "--max-sessions-per-ip", "128"]).args(extra);
    spawn(command, addr).await
}

pub async fn process_stats(addr: std::net::SocketAddr) -> ProcessStats {
    let (status, body) = http_get(addr, "/api/process").await;
    assert_eq!(status, 200);
    serde_json::from_str(&body).expect("process stats")
}

/// A file of tests/fixtures.
pub fn fixture(name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// The size of the letterboxed face clip.
pub const FACE_CLIP_SIZE: (u32, u32) = (320, 240);

/// The face in the letterboxed astronaut ([`stamped_face_clip`]): the box of
/// tests/fixtures/astronaut_face.json, scaled from 512 to 240 and moved 40 px right.
pub fn letterboxed_face() -> face_echo::seeing::detect::Face {
    let text = std::fs::read_to_string(fixture("astronaut_face.json")).expect("face JSON");
    let json: serde_json::Value = serde_json::from_str(&text).expect("face JSON");
    let get = |key: &str| json[key].as_f64().expect(key) as f32 * 240.0 / 512.0;
    face_echo::seeing::detect::Face { x: get("x") + 40.0, y: get("y"), w: get("w"), h: get("h"), score: 1.0 }
}

/// `frames` frames of the astronaut letterboxed into 320x240, each stamped with its
/// number as the page stamps its canvas.
pub fn stamped_face_clip(frames: usize) -> Vec<face_echo::loadgen::clip::EncodedFrame> {
    use image::{Rgb, RgbImage, imageops};
    let (width, height) = FACE_CLIP_SIZE;
    let photo = astronaut();
    let mut frame = RgbImage::from_pixel(width, height, Rgb([0, 0, 0]));
    imageops::replace(&mut frame, &imageops::resize(&photo, 240, 240, imageops::FilterType::Triangle), 40, 0);
    let picture = face_echo::loadgen::clip::rgb_to_i420(frame.as_raw(), width, height).expect("I420");
    face_echo::loadgen::clip::encode_clip(width, height, frames, 30, 900, |index| {
        let mut stamped = picture.clone();
        face_echo::seeing::framecode::stamp_luma(&mut stamped, width, height, index as u16);
        stamped
    })
    .expect("clip")
}

/// ONNX Runtime for detection tests: ORT_DYLIB_PATH, or what scripts/onnxruntime.sh
/// put in target/onnxruntime/.
pub fn ort_lib() -> std::path::PathBuf {
    let path = std::env::var_os("ORT_DYLIB_PATH").map(std::path::PathBuf::from).unwrap_or_else(|| {
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/onnxruntime/libonnxruntime.so")
    });
    assert!(path.is_file(), "no ONNX Runtime at {}: run scripts/onnxruntime.sh", path.display());
    path
}

/// A BlazeFace model on [`ort_lib`].
pub fn face_model(kind: face_echo::seeing::detect::ModelKind) -> face_echo::seeing::detect::FaceModel {
    face_echo::seeing::detect::FaceModel::load(&ort_lib(), kind).expect("model loads")
}

/// tests/fixtures/astronaut.png: a 512² photo with one face.
pub fn astronaut() -> image::RgbImage {
    image::open(fixture("astronaut.png")).expect("fixture").to_rgb8()
}
