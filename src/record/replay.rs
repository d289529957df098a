//! `face-echo replay FILE.ivf`: every frame of a recording through the tap's
//! admission and decoder (and the detector, with `--detect`), as fast as the
//! machine goes: frames/s, decode and detection times, faces per frame, and
//! agreement with the detections recorded beside it.
//!
//! A recording is input like any publisher's stream: each frame passes
//! [`FrameGate`] (VP8 header, `--tap-max-pixels`, resizes per second on the
//! recording's own clock) before libvpx, exactly as in the tap.

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;
use serde_json::{Value, json};

use super::ivf::IvfReader;
use super::stats::{self, RecordedDetections, RecordingSummary};
use crate::seeing::agreement::{Agreement, Side};
use crate::seeing::detect::{FaceModel, ModelKind};
use crate::seeing::stats::percentile;
use crate::seeing::tap::admission::{DEFAULT_MAX_PIXELS, FrameGate};
use crate::seeing::tap::decode::Vp8Decoder;

/// Flags of `face-echo replay`.
#[derive(Args, Debug, Clone)]
pub struct ReplayArgs {
    /// The recording (`--record DIR` wrote DIR/<session>.ivf; the .jsonl beside it
    /// gives the recorded detections to compare with).
    pub file: PathBuf,
    /// Run the face detector on every decoded frame too.
    #[arg(long)]
    pub detect: bool,
    /// With --detect: `back` (256x256) or `front` (128x128).
    #[arg(long, value_enum, default_value_t = ModelKind::Back, value_name = "MODEL")]
    pub detect_model: ModelKind,
    /// With --detect: the ONNX Runtime library (as for the server's --ort-lib).
    #[arg(long, env = "ORT_DYLIB_PATH", value_name = "FILE")]
    pub ort_lib: Option<PathBuf>,
    /// The largest keyframe (width × height) decoded, as the server's --tap-max-pixels.
    #[arg(
        long,
        default_value = crate::seeing::tap::admission::DEFAULT_MAX_PIXELS_TEXT,
        value_parser = crate::seeing::tap::admission::parse_max_pixels,
        value_name = "WxH|PIXELS"
    )]
    pub tap_max_pixels: u64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// No progress on stderr.
    #[arg(long)]
    pub quiet: bool,
}

impl ReplayArgs {
    /// Replaying `file` with the defaults (decode only).
    pub fn new(file: PathBuf) -> Self {
        ReplayArgs {
            file,
            detect: false,
            detect_model: ModelKind::Back,
            ort_lib: None,
            tap_max_pixels: DEFAULT_MAX_PIXELS,
            json: false,
            quiet: true,
        }
    }
}

/// Times in µs: p50, p90, p99, max.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Times {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

impl Times {
    fn of(mut us: Vec<u64>) -> Option<Times> {
        us.sort_unstable();
        Some(Times {
            p50: percentile(&us, 0.50)?,
            p90: percentile(&us, 0.90)?,
            p99: percentile(&us, 0.99)?,
            max: *us.last()?,
        })
    }
}

/// What the detector did on the replay.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DetectReport {
    pub model: &'static str,
    pub frames: u64,
    /// Letterbox from I420 and the model, per frame.
    pub detect_us: Option<Times>,
    pub faces_per_frame: f64,
    pub frames_with_faces: u64,
    pub max_faces: usize,
    pub errors: u64,
    /// Replay vs recorded server detections on the frames that have both
    /// (`recorded_only`/`replay_only`: faces only one side found); null when the
    /// recording has none.
    pub agreement: Option<Value>,
}

/// The whole replay.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReplayReport {
    pub file: PathBuf,
    pub frames: u64,
    pub frames_decoded: u64,
    /// Not given to libvpx (admission).
    pub frames_refused: u64,
    pub last_refusal: Option<String>,
    pub decode_errors: u64,
    pub width: u32,
    pub height: u32,
    pub seconds: f64,
    /// Frames through the whole loop per second (decode, and detection with --detect).
    pub fps: f64,
    pub decode_us: Option<Times>,
    pub detect: Option<DetectReport>,
    /// The IVF ended in a torn frame (a killed recorder).
    pub truncated: bool,
    pub recording: Option<RecordingSummary>,
}

/// Replays `args.file`; `progress` gets (frames so far, frames/s) about once a second.
pub fn replay(args: &ReplayArgs, mut progress: impl FnMut(u64, f64)) -> anyhow::Result<ReplayReport> {
    let path = &args.file;
    let file = File::open(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut reader =
        IvfReader::new(BufReader::new(file)).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if &reader.header.fourcc != b"VP80" {
        anyhow::bail!(
            "{}: not VP8 (fourcc {:?})",
            path.display(),
            String::from_utf8_lossy(&reader.header.fourcc)
        );
    }
    let mut model = match args.detect {
        true => {
            let ort_lib = args.ort_lib.clone().unwrap_or_else(crate::seeing::detect::default_ort_lib);
            Some(FaceModel::load(&ort_lib, args.detect_model)?)
        }
        false => None,
    };
    let journal = stats::journal_path(path);
    let recorded: RecordedDetections =
        if journal.is_file() { stats::read_journal(&journal)?.1 } else { RecordedDetections::new() };
    let mut decoder = Vp8Decoder::new().map_err(|e| anyhow::anyhow!("libvpx: {}", e.0))?;
    let mut gate = FrameGate::new(args.tap_max_pixels);
    let rate = f64::from(reader.header.rate.max(1)) / f64::from(reader.header.scale.max(1));

    let mut report = ReplayReport {
        file: path.clone(),
        frames: 0,
        frames_decoded: 0,
        frames_refused: 0,
        last_refusal: None,
        decode_errors: 0,
        width: 0,
        height: 0,
        seconds: 0.0,
        fps: 0.0,
        decode_us: None,
        detect: None,
        truncated: false,
        recording: None,
    };
    let (mut decode_us, mut detect_us) = (Vec::new(), Vec::new());
    let (mut faces_total, mut with_faces, mut max_faces, mut detected, mut detect_errors) =
        (0u64, 0u64, 0, 0u64, 0u64);
    let mut agreement = Agreement::new();
    let mut compared = 0u64;
    let started = Instant::now();
    let mut last_progress = started;
    let mut first_pts = None;
    while let Some(ivf_frame) = reader.next_frame().map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))? {
        report.frames += 1;
        // The gate's clock is the recording's: replayed fast, it decides as live.
        let first = *first_pts.get_or_insert(ivf_frame.pts);
        let at = started + Duration::from_secs_f64(ivf_frame.pts.saturating_sub(first) as f64 / rate);
        if let Err(refusal) = gate.admit(&ivf_frame.data, at) {
            report.frames_refused += 1;
            report.last_refusal = Some(refusal.to_string());
            continue;
        }
        let decode_started = Instant::now();
        let picture = match decoder.decode(&ivf_frame.data) {
            Ok(Some(picture)) => picture,
            Ok(None) => continue,
            Err(_) => {
                report.decode_errors += 1;
                continue;
            }
        };
        decode_us.push(decode_started.elapsed().as_micros() as u64);
        report.frames_decoded += 1;
        (report.width, report.height) = (picture.width, picture.height);
        if let Some(model) = model.as_mut() {
            let detect_started = Instant::now();
            let faces = model.detect_i420(&picture);
            detect_us.push(detect_started.elapsed().as_micros() as u64);
            match faces {
                Ok(faces) => {
                    detected += 1;
                    faces_total += faces.len() as u64;
                    with_faces += u64::from(!faces.is_empty());
                    max_faces = max_faces.max(faces.len());
                    if let Some((width, height, recorded)) = recorded.get(&(ivf_frame.pts as u32)) {
                        // One frame at a time: both sides of frame `compared` at once.
                        let key = compared as u16;
                        compared += 1;
                        agreement.report(Side::Page, key, *width, *height, recorded, None);
                        agreement.report(Side::Server, key, picture.width, picture.height, &faces, None);
                    }
                }
                Err(_) => detect_errors += 1,
            }
        }
        if last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            progress(report.frames, report.frames as f64 / started.elapsed().as_secs_f64());
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    report.fps = if report.seconds > 0.0 { report.frames_decoded as f64 / report.seconds } else { 0.0 };
    report.decode_us = Times::of(decode_us);
    report.truncated = reader.truncated;
    if args.detect {
        let stats = agreement.stats();
        report.detect = Some(DetectReport {
            model: args.detect_model.name(),
            frames: detected,
            detect_us: Times::of(detect_us),
            faces_per_frame: if detected > 0 { faces_total as f64 / detected as f64 } else { 0.0 },
            frames_with_faces: with_faces,
            max_faces,
            errors: detect_errors,
            agreement: (compared > 0).then(|| {
                json!({
                    "frames": stats.frames,
                    "matched": stats.matched,
                    "mean_iou": stats.mean_iou(),
                    "recorded_only": stats.page_only,
                    "replay_only": stats.server_only,
                })
            }),
        });
    }
    report.recording = stats::summarize(path).ok();
    Ok(report)
}

/// The report, for people.
pub fn print_human(report: &ReplayReport) {
    let times = |t: &Option<Times>| match t {
        Some(t) => format!("p50 {} µs, p90 {} µs, p99 {} µs, max {} µs", t.p50, t.p90, t.p99, t.max),
        None => "none".to_owned(),
    };
    println!("{}: {}x{}", report.file.display(), report.width, report.height);
    println!(
        "frames: {} read, {} decoded, {} refused{}, {} decode errors{}",
        report.frames,
        report.frames_decoded,
        report.frames_refused,
        report.last_refusal.as_ref().map(|r| format!(" (last: {r})")).unwrap_or_default(),
        report.decode_errors,
        if report.truncated { ", last frame torn" } else { "" }
    );
    println!("throughput: {:.1} frames/s ({:.2} s)", report.fps, report.seconds);
    println!("decode: {}", times(&report.decode_us));
    if let Some(detect) = &report.detect {
        println!("detect ({}): {}", detect.model, times(&detect.detect_us));
        println!(
            "faces: {:.2} per frame, {} of {} frames with faces, at most {}",
            detect.faces_per_frame, detect.frames_with_faces, detect.frames, detect.max_faces
        );
        match &detect.agreement {
            Some(agreement) => println!("vs recorded detections: {agreement}"),
            None => println!("vs recorded detections: none recorded"),
        }
    }
    if let Some(recording) = &report.recording {
        super::stats::print_human(std::slice::from_ref(recording));
    }
}
