//! Recording (`--record DIR`): each publisher's incoming VP8, as it arrived, to
//! `DIR/<session>.ivf`, and what is known about each frame to `DIR/<session>.jsonl`.
//!
//! Off the echo's path like the tap: the echo path (`session::echo::EchoPath`)
//! offers each incoming packet, echoed or not, with `try_send` on a bounded queue
//! ([`RecorderInput::offer`]); the session's results loop offers the server's and
//! the page's detections the same way. A full queue counts a drop. A thread of the
//! recorder's own (file I/O blocks) assembles frames with [`FrameAssembler`]
//! (keyframe first; after a gap, frames are skipped to the next keyframe and
//! counted) and writes them, unchanged.
//!
//! A write error (disk full, directory gone) is logged once and stops this
//! recording; the echo never notices. Files stay readable after a kill: every IVF
//! frame is one `write` (the header's frame count follows at each keyframe and on
//! close, and readers count frames anyway, [`ivf`]), every JSONL line one `write`.
//!
//! JSONL, one object per line, `type` first:
//!
//! - `recording`: `session`, `started_ms` (Unix ms), `ivf` (the file's name).
//! - `frame`: `index` (in the IVF), `rtp_ts`, `pts` (the IVF's, 1/90000 s:
//!   `rtp_ts` unwrapped), `arrived_ms` (Unix ms of its last packet), `size`, `keyframe`.
//! - `server_detections`: `rtp_ts` (the frame's), `page_frame` (the page's frame
//!   code read from the pixels, or null), `width`, `height`, `faces`, `infer_ms`.
//!   A frame's page number is known only once it is decoded, so it lives on this
//!   line; join with `frame` lines on `rtp_ts`.
//! - `page_detections`: `page_frame`, `detector`, `width`, `height`, `faces`, as the page sent them.
//! - `end` (on a clean close): the counts, and `error` if the recording stopped early.

pub mod ivf;
pub mod replay;
pub mod stats;

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::metrics::Metrics;
use crate::seeing::agreement::PageDetector;
use crate::seeing::detect::Detection;
use crate::seeing::loop_messages::PageDetections;
use crate::seeing::tap::assemble::{FrameAssembler, TapPacket};
use crate::seeing::tap::vp8_header;
use ivf::IvfWriter;

/// Packets and detections the recorder may fall behind by before it drops.
pub const QUEUE_ITEMS: usize = 1024;
/// How often the recorder's thread looks whether its session closed.
const POLL: Duration = Duration::from_millis(100);

/// Checks at start-up that `dir` exists (creating it) and takes files.
pub fn check_dir(dir: &Path) -> anyhow::Result<()> {
    let fail =
        |err: io::Error| anyhow::anyhow!("--record {}: cannot write recordings there: {err}", dir.display());
    std::fs::create_dir_all(dir).map_err(fail)?;
    let probe = dir.join(format!(".face-echo-probe-{}", std::process::id()));
    File::create(&probe).and_then(|mut file| file.write_all(b"probe")).map_err(fail)?;
    std::fs::remove_file(&probe).map_err(fail)?;
    Ok(())
}

/// The two files of a session's recording.
pub fn paths(dir: &Path, session_id: &str) -> (PathBuf, PathBuf) {
    // Session ids are the server's hex, but a file name takes no chances.
    let name: String =
        session_id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    (dir.join(format!("{name}.ivf")), dir.join(format!("{name}.jsonl")))
}

/// What the recorder is told.
enum Item {
    Packet(TapPacket),
    Server(Detection),
    Page(PageDetections),
}

/// One recording's counters, for `/api/sessions` (`"record"`).
#[derive(Debug, Default)]
pub struct RecordState {
    pub frames: AtomicU64,
    pub bytes: AtomicU64,
    /// Items not queued: the recorder was behind.
    pub dropped: AtomicU64,
    /// Frames skipped waiting for a keyframe (after loss, or at the start).
    pub frames_skipped: AtomicU64,
    closing: AtomicBool,
    finished: AtomicBool,
    error: Mutex<Option<String>>,
    path: PathBuf,
}

impl RecordState {
    /// Why the recording stopped early, if it did.
    pub fn error(&self) -> Option<String> {
        self.error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    pub fn to_json(&self) -> Value {
        let n = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        json!({
            "enabled": true,
            "ivf": self.path.display().to_string(),
            "frames": n(&self.frames),
            "bytes": n(&self.bytes),
            "dropped": n(&self.dropped),
            "frames_skipped": n(&self.frames_skipped),
            "error": self.error(),
        })
    }
}

/// The echo path's and the results loop's end of a recording. Never waits.
#[derive(Clone)]
pub struct RecorderInput {
    items: SyncSender<Item>,
    state: Arc<RecordState>,
    metrics: Arc<Metrics>,
}

impl RecorderInput {
    fn send(&self, item: Item) {
        match self.items.try_send(item) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.state.dropped.fetch_add(1, Ordering::Relaxed);
                self.metrics.record_dropped.inc();
            }
            // The recording stopped (an error, already logged).
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// One incoming packet (echoed or not).
    pub fn offer(&self, packet: TapPacket) {
        self.send(Item::Packet(packet));
    }

    /// What the server's detector found on a frame.
    pub fn server_detections(&self, detection: &Detection) {
        self.send(Item::Server(detection.clone()));
    }

    /// What the page says its detector found on one of its frames.
    pub fn page_detections(&self, page: &PageDetections) {
        self.send(Item::Page(page.clone()));
    }

    /// Ends the recording: the thread writes what is queued, fixes the IVF header
    /// and stops. [`RecordState::finished`] tells when.
    pub fn close(&self) {
        self.state.closing.store(true, Ordering::Release);
    }
}

/// Creates the session's files and starts its recorder thread.
pub fn start(
    dir: &Path,
    session_id: &str,
    metrics: Arc<Metrics>,
) -> io::Result<(RecorderInput, Arc<RecordState>)> {
    let (ivf_path, jsonl_path) = paths(dir, session_id);
    let ivf = IvfWriter::new(File::create(&ivf_path)?, 0, 0)?;
    let jsonl = File::create(&jsonl_path)?;
    let (items, received) = sync_channel(QUEUE_ITEMS);
    let state = Arc::new(RecordState { path: ivf_path.clone(), ..RecordState::default() });
    let mut recording = Recording::new(ivf, jsonl, Arc::clone(&state), Arc::clone(&metrics));
    let file_name = ivf_path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    recording.line(&json!({"type": "recording", "session": session_id, "started_ms": recording.started_ms, "ivf": file_name}))?;
    let session = session_id.to_owned();
    std::thread::Builder::new()
        .name(format!("rec-{session_id}"))
        .spawn(move || recording.run(received, &session))?;
    Ok((RecorderInput { items, state: Arc::clone(&state), metrics }, state))
}

/// A recording in progress: the recorder thread's state.
struct Recording {
    ivf: Option<IvfWriter>,
    jsonl: File,
    assembler: FrameAssembler,
    /// The last frame's RTP timestamp and pts (RTP timestamps unwrapped).
    last: Option<(u32, u64)>,
    size_written: bool,
    started: Instant,
    started_ms: f64,
    state: Arc<RecordState>,
    metrics: Arc<Metrics>,
}

impl Recording {
    fn new(ivf: IvfWriter, jsonl: File, state: Arc<RecordState>, metrics: Arc<Metrics>) -> Self {
        let started_ms =
            SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0);
        Recording {
            ivf: Some(ivf),
            jsonl,
            assembler: FrameAssembler::default(),
            last: None,
            size_written: false,
            started: Instant::now(),
            started_ms,
            state,
            metrics,
        }
    }

    fn run(mut self, items: Receiver<Item>, session: &str) {
        let outcome = self.record(&items);
        drop(items); // senders now see a closed queue
        let error = match outcome.and_then(|()| self.finish()) {
            Ok(()) => None,
            Err(err) => {
                tracing::error!(%session, %err, path = %self.state.path.display(), "recording stopped (the echo goes on)");
                Some(err.to_string())
            }
        };
        if let Some(error) = &error {
            self.metrics.record_errors.inc();
            *self.state.error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error.clone());
        }
        self.state.finished.store(true, Ordering::Release);
    }

    fn record(&mut self, items: &Receiver<Item>) -> io::Result<()> {
        loop {
            match items.recv_timeout(POLL) {
                Ok(item) => self.item(item)?,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
            if self.state.closing.load(Ordering::Acquire) {
                while let Ok(item) = items.try_recv() {
                    self.item(item)?;
                }
                return Ok(());
            }
        }
    }

    fn finish(&mut self) -> io::Result<()> {
        let counts = self.assembler.counts();
        let frames = self.ivf.as_ref().map_or(0, IvfWriter::frames);
        if let Some(ivf) = self.ivf.take() {
            ivf.close()?;
        }
        self.line(&json!({
            "type": "end",
            "frames": frames,
            "bytes": self.state.bytes.load(Ordering::Relaxed),
            "packets": counts.packets,
            "keyframes": counts.keyframes,
            "frames_skipped": counts.frames_skipped,
            "frames_incomplete": counts.frames_incomplete,
            "dropped": self.state.dropped.load(Ordering::Relaxed),
        }))?;
        self.jsonl.sync_data()
    }

    fn line(&mut self, value: &Value) -> io::Result<()> {
        let mut text = value.to_string();
        text.push('\n');
        self.jsonl.write_all(text.as_bytes())
    }

    fn unix_ms(&self, at: Instant) -> f64 {
        let since = at.checked_duration_since(self.started).map_or(0.0, |d| d.as_secs_f64() * 1000.0);
        ((self.started_ms + since) * 1000.0).round() / 1000.0
    }

    fn item(&mut self, item: Item) -> io::Result<()> {
        match item {
            Item::Packet(packet) => self.packet(&packet),
            Item::Server(detection) => self.line(&json!({
                "type": "server_detections",
                "rtp_ts": detection.info.rtp_ts,
                "page_frame": detection.info.page_frame,
                "width": detection.width,
                "height": detection.height,
                "faces": detection.faces,
                "infer_ms": detection.infer.as_secs_f64() * 1000.0,
            })),
            Item::Page(page) => self.line(&json!({
                "type": "page_detections",
                "page_frame": page.frame,
                "detector": page.detector.map(PageDetector::name),
                "width": page.width,
                "height": page.height,
                "faces": page.faces,
            })),
        }
    }

    fn packet(&mut self, packet: &TapPacket) -> io::Result<()> {
        let skipped_before = self.assembler.counts().frames_skipped;
        let frame = self.assembler.push(packet);
        self.state
            .frames_skipped
            .fetch_add(self.assembler.counts().frames_skipped - skipped_before, Ordering::Relaxed);
        let Some(frame) = frame else { return Ok(()) };
        let pts = match self.last {
            None => u64::from(frame.timestamp),
            Some((ts, pts)) => pts.saturating_add_signed(i64::from(frame.timestamp.wrapping_sub(ts) as i32)),
        };
        self.last = Some((frame.timestamp, pts));
        let Some(ivf) = self.ivf.as_mut() else { return Ok(()) };
        if frame.keyframe && !self.size_written {
            // The header's size: the first keyframe's (players read the stream's own).
            if let Ok(vp8_header::Vp8Header { size: Some((width, height)), .. }) =
                vp8_header::parse(&frame.data)
            {
                let mut size = [0u8; 4];
                size[0..2].copy_from_slice(&width.to_le_bytes());
                size[2..4].copy_from_slice(&height.to_le_bytes());
                ivf.file().write_all_at(&size, 12)?;
                self.size_written = true;
            }
        }
        let index = ivf.frames();
        ivf.write_frame(pts, &frame.data, frame.keyframe)?;
        self.state.frames.fetch_add(1, Ordering::Relaxed);
        self.metrics.record_frames.inc();
        self.state.bytes.fetch_add(frame.data.len() as u64, Ordering::Relaxed);
        let arrived_ms = self.unix_ms(frame.arrived);
        self.line(&json!({
            "type": "frame",
            "index": index,
            "rtp_ts": frame.timestamp,
            "pts": pts,
            "arrived_ms": arrived_ms,
            "size": frame.data.len(),
            "keyframe": frame.keyframe,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unwritable_directory_is_a_start_up_error() {
        let under_a_file = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml").join("recordings");
        let err = check_dir(&under_a_file).expect_err("a directory under a file");
        assert!(err.to_string().starts_with("--record "), "{err}");
    }

    #[test]
    fn a_write_error_stops_the_recording_not_the_sender() {
        let dir = std::env::temp_dir().join(format!("face-echo-rec-full-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else { return };
        let ivf = IvfWriter::new(File::create(dir.join("x.ivf")).expect("create"), 0, 0).expect("ivf");
        let state = Arc::new(RecordState::default());
        let metrics = Arc::new(Metrics::new());
        let recording = Recording::new(ivf, full, Arc::clone(&state), Arc::clone(&metrics));
        let (items, received) = sync_channel(4);
        let input = RecorderInput { items, state: Arc::clone(&state), metrics: Arc::clone(&metrics) };
        let thread = std::thread::spawn(move || recording.run(received, "full"));
        // One whole keyframe: the IVF takes it, the journal's line hits ENOSPC.
        let keyframe = [0x90, 0x10, 0x10, 0, 0, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00];
        input.offer(TapPacket {
            sequence_number: 1,
            timestamp: 3000,
            marker: true,
            payload: bytes::Bytes::copy_from_slice(&keyframe),
            arrived: Instant::now(),
        });
        thread.join().expect("the recorder thread ends by itself");
        assert!(state.finished());
        assert!(state.error().is_some_and(|error| error.contains("space")), "{:?}", state.error());
        assert_eq!(state.frames.load(Ordering::Relaxed), 1);
        assert_eq!((metrics.record_frames.get(), metrics.record_errors.get()), (1, 1));
        // The echo's side: offers after the stop are no-ops, never errors or waits.
        for _ in 0..10 {
            input.offer(TapPacket {
                sequence_number: 2,
                timestamp: 6000,
                marker: true,
                payload: bytes::Bytes::from_static(&[0x90, 0x10, 0x10, 1]),
                arrived: Instant::now(),
            });
        }
        assert_eq!(state.dropped.load(Ordering::Relaxed), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn file_names_are_the_session_id_and_nothing_else() {
        let (ivf, jsonl) = paths(Path::new("/rec"), "../x/y");
        assert_eq!((ivf.to_str(), jsonl.to_str()), (Some("/rec/___x_y.ivf"), Some("/rec/___x_y.jsonl")));
    }
}
