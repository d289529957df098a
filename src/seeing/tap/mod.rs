//! The decode tap: reads the VP8 the session echoes, for metrics and a snapshot,
//! without ever slowing or altering the echo.
//!
//! The echo path (`session::echo::EchoPath`, on the mux's reader) offers each
//! echoed packet (or, with nothing to echo to, each received one) with `try_send`
//! on a bounded channel ([`TapInput::offer`]); when the tap falls behind, packets
//! are counted as dropped and the echo goes on. A thread of the tap's own (libvpx
//! decoding is CPU work: never on the async runtime) depacketizes, assembles and
//! decodes.

pub mod admission;
pub mod assemble;
pub mod decode;
pub mod snapshot;
pub mod vp8_header;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::metrics::Metrics;
use crate::seeing::detect::{DetectHandle, DetectState, Detection, Detector, PageFrames};
use crate::seeing::frame::{FrameInfo, I420Frame};
use crate::seeing::framecode;
use crate::seeing::stats::percentile;
use admission::{FrameGate, Refusal};
use assemble::{AssemblyCounts, FrameAssembler, TapPacket};
use decode::Vp8Decoder;

/// How the tap runs (from `--decode-tap`, `--tap-pli`, `--tap-max-pixels`, `--tap-queue`,
/// `--detect`).
#[derive(Debug, Clone)]
pub struct TapConfig {
    /// Packets the tap may fall behind before it drops.
    pub queue_packets: usize,
    /// Ask the publisher for a keyframe while waiting for one (within the
    /// publisher's keyframe budget, [`crate::session::keyframes`]).
    /// (After a refused frame the tap always asks, within the same budget.)
    pub request_keyframes: bool,
    /// The largest keyframe (width × height) the tap decodes (`--tap-max-pixels`).
    pub max_pixels: u64,
    /// The server's face detector, to offer decoded frames to (`--detect`).
    pub detector: Option<Arc<Detector>>,
}

impl Default for TapConfig {
    fn default() -> Self {
        TapConfig {
            queue_packets: DEFAULT_QUEUE_PACKETS,
            request_keyframes: false,
            max_pixels: admission::DEFAULT_MAX_PIXELS,
            detector: None,
        }
    }
}

/// Packets the tap may fall behind the echo by default (`--tap-queue`).
pub const DEFAULT_QUEUE_PACKETS: usize = 1024;
/// A decode slower than this is counted (`slow_decodes`): slower than 10 fps.
/// libvpx cannot be interrupted; the pixel budget is what bounds a decode's time.
pub const SLOW_DECODE: Duration = Duration::from_millis(100);

/// The echo path's end of the tap.
pub struct TapInput {
    packets: mpsc::Sender<TapPacket>,
    state: Arc<TapState>,
    metrics: Arc<Metrics>,
}

impl TapInput {
    /// Offers one echoed packet; never waits. A full queue counts a drop.
    pub fn offer(&self, packet: TapPacket) {
        if self.packets.try_send(packet).is_err() {
            self.state.packets_dropped.fetch_add(1, Ordering::Relaxed);
            self.metrics.tap_packets_dropped.inc();
        }
    }
}

/// What the tap knows, shared with `/api/sessions` and the snapshot route.
#[derive(Debug, Default)]
pub struct TapState {
    pub packets_dropped: AtomicU64,
    pub frames_decoded: AtomicU64,
    pub decode_errors: AtomicU64,
    /// Frames refused before libvpx (see [`admission`]).
    pub frames_refused: AtomicU64,
    /// Decodes that took longer than [`SLOW_DECODE`].
    pub slow_decodes: AtomicU64,
    pub keyframe_requests: Arc<AtomicU64>,
    /// What the server's face detector found, with `--detect`.
    pub detect: Option<Arc<DetectState>>,
    inner: Mutex<TapWindow>,
}

/// Numbers that need more than an atomic: windows and the latest picture.
#[derive(Debug, Default)]
struct TapWindow {
    counts: AssemblyCounts,
    width: u32,
    height: u32,
    /// When recent frames were decoded (the last second's give the fps).
    decoded_at: VecDeque<Instant>,
    /// Recent decode times, µs.
    decode_us: VecDeque<u64>,
    last_keyframe_at: Option<Instant>,
    latest: Option<Arc<I420Frame>>,
    /// Why the last refused frame was refused.
    last_refusal: Option<Refusal>,
}

const DECODE_TIMES_KEPT: usize = 512;
const FPS_WINDOW: Duration = Duration::from_secs(1);

impl TapState {
    fn window(&self) -> std::sync::MutexGuard<'_, TapWindow> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The latest decoded picture, if any.
    pub fn latest_frame(&self) -> Option<Arc<I420Frame>> {
        self.window().latest.clone()
    }

    /// The `"tap"` object of `/api/sessions`.
    pub fn to_json(&self) -> Value {
        let now = Instant::now();
        let window = self.window();
        let counts = window.counts;
        let fps =
            window.decoded_at.iter().filter(|at| now.saturating_duration_since(**at) <= FPS_WINDOW).count();
        let mut times: Vec<u64> = window.decode_us.iter().copied().collect();
        times.sort_unstable();
        json!({
            "enabled": true,
            "packets": counts.packets,
            "frames_assembled": counts.frames_assembled,
            "frames_decoded": self.frames_decoded.load(Ordering::Relaxed),
            "keyframes": counts.keyframes,
            "frames_incomplete": counts.frames_incomplete,
            "frames_skipped": counts.frames_skipped,
            "duplicates": counts.duplicates,
            "malformed": counts.malformed,
            "decode_errors": self.decode_errors.load(Ordering::Relaxed),
            "frames_refused": self.frames_refused.load(Ordering::Relaxed),
            "last_refusal": window.last_refusal.map(|refusal| refusal.to_string()),
            "slow_decodes": self.slow_decodes.load(Ordering::Relaxed),
            "tap_packets_dropped": self.packets_dropped.load(Ordering::Relaxed),
            "keyframe_requests": self.keyframe_requests.load(Ordering::Relaxed),
            "width": window.width,
            "height": window.height,
            "fps": fps,
            "decode_us_p50": percentile(&times, 0.50),
            "decode_us_p99": percentile(&times, 0.99),
            "bytes_per_frame_avg": counts.bytes.checked_div(counts.frames_assembled).unwrap_or(0),
            "last_keyframe_age_ms": window.last_keyframe_at.map(|at| now.saturating_duration_since(at).as_millis() as u64),
        })
    }
}

/// Starts a session's tap thread. Returns the echo path's input, the shared
/// state, and a receiver of keyframe wishes. `page_frames`: the frames the page
/// detects on, which the detector takes first.
pub fn start(
    session_id: &str,
    config: &TapConfig,
    metrics: Arc<Metrics>,
    detections: Option<mpsc::Sender<Detection>>,
    page_frames: Arc<PageFrames>,
) -> std::io::Result<(TapInput, Arc<TapState>, mpsc::Receiver<()>)> {
    let (packets_tx, packets_rx) = mpsc::channel(config.queue_packets.max(1));
    let (wishes_tx, wishes_rx) = mpsc::channel(1);
    let detect = config.detector.as_ref().map(|detector| detector.for_session(detections, page_frames));
    let state =
        Arc::new(TapState { detect: detect.as_ref().map(DetectHandle::state), ..TapState::default() });
    let worker = Worker {
        packets: packets_rx,
        pipeline: TapPipeline::new(config.max_pixels),
        keyframe_wishes: wishes_tx,
        wish_while_waiting: config.request_keyframes,
        refusal_logged: false,
        session_id: session_id.to_owned(),
        detect,
        state: Arc::clone(&state),
        metrics: Arc::clone(&metrics),
    };
    std::thread::Builder::new().name(format!("tap-{session_id}")).spawn(move || worker.run())?;
    let input = TapInput { packets: packets_tx, state: Arc::clone(&state), metrics };
    Ok((input, state, wishes_rx))
}

/// The tap's thread: ends when the echo path drops its [`TapInput`].
struct Worker {
    packets: mpsc::Receiver<TapPacket>,
    pipeline: TapPipeline,
    /// Keyframe wishes, sent after a refusal, and while waiting with `--tap-pli`.
    keyframe_wishes: mpsc::Sender<()>,
    wish_while_waiting: bool,
    /// A refusal is logged once per session; the counters tell the rest.
    refusal_logged: bool,
    session_id: String,
    detect: Option<DetectHandle>,
    state: Arc<TapState>,
    metrics: Arc<Metrics>,
}

impl Worker {
    fn run(mut self) {
        let mut decoder = match Vp8Decoder::new() {
            Ok(decoder) => decoder,
            Err(err) => {
                tracing::error!(%err, "decode tap disabled for this session");
                return;
            }
        };
        while let Some(packet) = self.packets.blocking_recv() {
            let outcome = self.pipeline.push(&mut decoder, &packet);
            let picture = self.record(outcome);
            if let (Some(detect), Some((picture, info))) = (&mut self.detect, picture) {
                detect.offer(&picture, info);
            }
            if self.wish_while_waiting && self.pipeline.assembler.waiting_for_keyframe() {
                let _ = self.keyframe_wishes.try_send(());
            }
        }
    }

    /// Updates the numbers; returns the new picture, if one was decoded.
    fn record(&mut self, outcome: Option<Decoded>) -> Option<(Arc<I420Frame>, FrameInfo)> {
        let mut window = self.state.window();
        let before = window.counts;
        window.counts = self.pipeline.assembler.counts();
        let new_keyframes = window.counts.keyframes - before.keyframes;
        if new_keyframes > 0 {
            self.metrics.tap_keyframes.inc_by(new_keyframes);
        }
        match outcome {
            None => None,
            Some(Decoded::Error) => {
                self.state.decode_errors.fetch_add(1, Ordering::Relaxed);
                self.metrics.tap_decode_errors.inc();
                None
            }
            Some(Decoded::Refused(refusal)) => {
                self.state.frames_refused.fetch_add(1, Ordering::Relaxed);
                self.metrics.tap_frames_refused.inc();
                window.last_refusal = Some(refusal);
                if !self.refusal_logged {
                    self.refusal_logged = true;
                    tracing::warn!(session = %self.session_id, %refusal, "decode tap refused a frame (logged once per session)");
                }
                // Within the publisher's keyframe budget (session::keyframes).
                let _ = self.keyframe_wishes.try_send(());
                None
            }
            Some(Decoded::Picture { frame, keyframe, timestamp, arrived, assembled, took }) => {
                let now = Instant::now();
                let since_arrival = |at: Instant| at.saturating_duration_since(arrived).as_secs_f64();
                self.metrics.frame_assembled_seconds.observe(since_arrival(assembled));
                self.metrics.frame_decoded_seconds.observe(since_arrival(now));
                self.state.frames_decoded.fetch_add(1, Ordering::Relaxed);
                self.metrics.tap_frames_decoded.inc();
                self.metrics.tap_decode_seconds.observe(took.as_secs_f64());
                if took > SLOW_DECODE {
                    self.state.slow_decodes.fetch_add(1, Ordering::Relaxed);
                    self.metrics.tap_slow_decodes.inc();
                }
                window.width = frame.width;
                window.height = frame.height;
                if keyframe {
                    window.last_keyframe_at = Some(now);
                }
                window.decoded_at.push_back(now);
                while window.decoded_at.front().is_some_and(|at| now.duration_since(*at) > FPS_WINDOW) {
                    window.decoded_at.pop_front();
                }
                if window.decode_us.len() == DECODE_TIMES_KEPT {
                    window.decode_us.pop_front();
                }
                window.decode_us.push_back(took.as_micros() as u64);
                // The page's frame code: a few pixels, read once here for everyone.
                let info = FrameInfo { rtp_ts: timestamp, arrived, page_frame: framecode::read(&frame) };
                let frame = Arc::new(frame);
                window.latest = Some(Arc::clone(&frame));
                Some((frame, info))
            }
        }
    }
}

/// What decoding one assembled frame gave.
pub enum Decoded {
    Picture {
        frame: I420Frame,
        keyframe: bool,
        /// The frame's RTP timestamp, and when its last packet arrived.
        timestamp: u32,
        arrived: Instant,
        /// When it was assembled (and decoding began).
        assembled: Instant,
        took: Duration,
    },
    Error,
    /// Not given to libvpx at all.
    Refused(Refusal),
}

/// Depacketize → assemble → admit → decode, one packet at a time, with no I/O: the
/// tap's thread runs it, and tests, benches and the fuzzer drive it directly.
#[derive(Debug, Default)]
pub struct TapPipeline {
    pub assembler: FrameAssembler,
    pub gate: FrameGate,
}

impl TapPipeline {
    /// A pipeline that decodes keyframes of at most `max_pixels`.
    pub fn new(max_pixels: u64) -> Self {
        TapPipeline { assembler: FrameAssembler::default(), gate: FrameGate::new(max_pixels) }
    }

    pub fn push(&mut self, decoder: &mut Vp8Decoder, packet: &TapPacket) -> Option<Decoded> {
        let frame = self.assembler.push(packet)?;
        let started = Instant::now();
        if let Err(refusal) = self.gate.admit(&frame.data, started) {
            return Some(Decoded::Refused(refusal));
        }
        match decoder.decode(&frame.data) {
            Ok(Some(picture)) => Some(Decoded::Picture {
                frame: picture,
                keyframe: frame.keyframe,
                timestamp: frame.timestamp,
                arrived: frame.arrived,
                assembled: started,
                took: started.elapsed(),
            }),
            Ok(None) => None,
            Err(err) => {
                tracing::debug!(%err, "tap decode error");
                self.assembler.require_keyframe();
                Some(Decoded::Error)
            }
        }
    }
}
