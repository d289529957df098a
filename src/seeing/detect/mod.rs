//! Server-side face detection on what the decode tap decoded (`--detect`).
//!
//! One ONNX Runtime session (BlazeFace) serves the whole server. Each session's
//! tap thread offers a decoded frame at most `--detect-fps` times a second (the
//! frames the page detects on first, [`choice`]) with a non-blocking `try_send` to
//! a small shared queue; a few worker threads run the model. When they are busy
//! the frame is skipped and counted: detection never holds up the tap, let alone
//! the echo.

pub mod blazeface;
pub mod choice;
pub mod letterbox;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;
use image::RgbImage;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::TensorRef;
use serde_json::{Value, json};

use crate::metrics::Metrics;
use crate::seeing::frame::{FrameInfo, I420Frame};
use crate::seeing::stats::percentile;
pub use blazeface::{Face, ModelKind, ModelSpec};
pub use choice::PageFrames;
use choice::{Chosen, FrameChoice};
use letterbox::Letterbox;

/// The BlazeFace models (`models/blazeface/`), carried in the binary.
#[derive(rust_embed::RustEmbed)]
#[folder = "models/blazeface/"]
struct ModelFiles;

/// How detection runs (from `--detect`, `--detect-model`, `--detect-fps`, `--ort-lib`).
#[derive(Debug, Clone)]
pub struct DetectConfig {
    pub model: ModelKind,
    /// Most detections per second and session.
    pub fps: f64,
    /// `libonnxruntime.so`.
    pub ort_lib: PathBuf,
}

/// BlazeFace on ONNX Runtime: input in, faces out.
pub struct FaceModel {
    session: Session,
    spec: ModelSpec,
    anchors: Vec<(f32, f32)>,
    /// Outputs holding score logits (last dimension 1) and regressors (16), in
    /// anchor order: the 16×16 grid's before the 8×8 grid's.
    score_outputs: Vec<usize>,
    regressor_outputs: Vec<usize>,
}

/// One output tensor as the model gave it.
#[derive(Debug, Clone)]
pub struct RawOutput {
    pub name: String,
    pub shape: Vec<i64>,
    pub values: Vec<f32>,
}

impl FaceModel {
    /// Loads ONNX Runtime from `ort_lib` (once per process) and the model, which
    /// the binary carries. Errors say which flag to fix.
    pub fn load(ort_lib: &Path, kind: ModelKind) -> anyhow::Result<Self> {
        load_runtime(ort_lib)?;
        let spec = kind.spec();
        let model_bytes = ModelFiles::get(spec.file)
            .with_context(|| format!("model {} is not in the binary", spec.file))?
            .data;
        let session = Session::builder()
            .and_then(|b| b.with_optimization_level(GraphOptimizationLevel::Level3).map_err(Into::into))
            // One thread per inference, and no spinning: the echo shares these cores.
            .and_then(|b| b.with_intra_threads(1).map_err(Into::into))
            .and_then(|b| b.with_intra_op_spinning(false).map_err(Into::into))
            .and_then(|mut b| b.commit_from_memory(&model_bytes))
            .with_context(|| format!("cannot load the BlazeFace model {}", spec.file))?;
        // The models split their outputs by feature map (512 + 384 anchors) and by
        // kind; find them by shape, [1, anchors, 1] or [1, anchors, 16].
        let shapes: Vec<Vec<i64>> = session
            .outputs()
            .iter()
            .map(|output| output.dtype().tensor_shape().map(|shape| shape.to_vec()).unwrap_or_default())
            .collect();
        let outputs_with = |last: i64| {
            let mut found: Vec<usize> =
                (0..shapes.len()).filter(|&at| shapes[at].len() == 3 && shapes[at][2] == last).collect();
            found.sort_by_key(|&at| std::cmp::Reverse(shapes[at][1]));
            let anchors: i64 = found.iter().map(|&at| shapes[at][1]).sum();
            (anchors == blazeface::ANCHORS as i64).then_some(found)
        };
        let (Some(score_outputs), Some(regressor_outputs)) =
            (outputs_with(1), outputs_with(blazeface::REGRESSORS as i64))
        else {
            anyhow::bail!(
                "{}: expected score and regressor outputs for 896 anchors, found shapes {shapes:?}",
                spec.file
            );
        };
        Ok(FaceModel { anchors: blazeface::anchors(&spec), session, spec, score_outputs, regressor_outputs })
    }

    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// Runs the model on a prepared input (`S×S×3`, [-1, 1]); every output as is.
    pub fn run_raw(&mut self, input: &[f32]) -> Result<Vec<RawOutput>, String> {
        let size = self.spec.size as usize;
        let tensor =
            TensorRef::from_array_view(([1usize, size, size, 3], input)).map_err(|e| e.to_string())?;
        let outputs = self.session.run(ort::inputs![tensor]).map_err(|e| e.to_string())?;
        outputs
            .iter()
            .map(|(name, value)| {
                let (shape, values) = value.try_extract_tensor::<f32>().map_err(|e| e.to_string())?;
                Ok(RawOutput { name: name.to_string(), shape: shape.to_vec(), values: values.to_vec() })
            })
            .collect()
    }

    /// Runs the model; returns the score logits (one per anchor) and the
    /// regressors (16 per anchor), in anchor order.
    pub fn infer(&mut self, input: &[f32]) -> Result<(Vec<f32>, Vec<f32>), String> {
        let outputs = self.run_raw(input)?;
        let join = |indices: &[usize]| -> Vec<f32> {
            indices.iter().flat_map(|&at| outputs[at].values.iter().copied()).collect()
        };
        let (scores, regressors) = (join(&self.score_outputs), join(&self.regressor_outputs));
        if scores.len() != blazeface::ANCHORS
            || regressors.len() != blazeface::ANCHORS * blazeface::REGRESSORS
        {
            return Err(format!("model gave {} scores and {} regressors", scores.len(), regressors.len()));
        }
        Ok((scores, regressors))
    }

    /// Faces in an RGB picture, in its pixels.
    pub fn detect(&mut self, rgb: &RgbImage) -> Result<Vec<Face>, String> {
        let (input, letterbox) = letterbox::from_rgb(rgb, self.spec.size);
        self.detect_input(&input, letterbox)
    }

    /// Faces in a decoded frame, in its pixels: the server's path.
    pub fn detect_i420(&mut self, frame: &I420Frame) -> Result<Vec<Face>, String> {
        let (input, letterbox) = letterbox::from_i420(frame, self.spec.size);
        self.detect_input(&input, letterbox)
    }

    fn detect_input(&mut self, input: &[f32], letterbox: Letterbox) -> Result<Vec<Face>, String> {
        let (scores, regressors) = self.infer(input)?;
        Ok(blazeface::decode(&self.spec, &self.anchors, &scores, &regressors, letterbox))
    }
}

/// Loads `libonnxruntime.so` into the process, once.
fn load_runtime(ort_lib: &Path) -> anyhow::Result<()> {
    if !ort_lib.is_file() {
        anyhow::bail!(
            "--detect needs ONNX Runtime, and {} does not exist. Run scripts/onnxruntime.sh \
             (make run does) to fetch it, or point --ort-lib (or ORT_DYLIB_PATH) at libonnxruntime.so",
            ort_lib.display()
        );
    }
    ort::init_from(ort_lib).map(|env| env.with_name("face-echo").commit()).map_err(|e| {
        anyhow::anyhow!(
            "--ort-lib {}: cannot use it as ONNX Runtime ({e}). Run scripts/onnxruntime.sh for a \
                 matching libonnxruntime.so (1.24 or newer)",
            ort_lib.display()
        )
    })?;
    Ok(())
}

/// What turns raw outputs into faces: the model's constants, no runtime.
struct Decoding {
    spec: ModelSpec,
    anchors: Vec<(f32, f32)>,
}

impl Decoding {
    fn decode(&self, scores: &[f32], regressors: &[f32], letterbox: Letterbox) -> Vec<Face> {
        blazeface::decode(&self.spec, &self.anchors, scores, regressors, letterbox)
    }
}

/// One frame to look at.
struct Job {
    frame: Arc<I420Frame>,
    info: FrameInfo,
    chosen: Chosen,
}

/// A session's frame waiting for a worker: at most one, the newest (a newer frame
/// replaces it rather than queueing behind it, unless it is one the page detects
/// on and the newer is not), and where its results go.
struct Pending {
    job: Mutex<Option<Job>>,
    state: Arc<DetectState>,
    results: Option<tokio::sync::mpsc::Sender<Detection>>,
}

/// What the detector found on one frame, for the session's data channels.
#[derive(Debug, Clone)]
pub struct Detection {
    pub info: FrameInfo,
    pub width: u32,
    pub height: u32,
    pub faces: Vec<Face>,
    /// The model's own run time.
    pub infer: Duration,
}

/// Sessions with a frame waiting; each is queued once however many frames it offers.
const QUEUED_SESSIONS: usize = 4096;

/// The server's detector: the shared model and its worker threads.
pub struct Detector {
    queue: SyncSender<Arc<Pending>>,
    kind: ModelKind,
    /// `--detect-fps`.
    fps: f64,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector").field("model", &self.kind).field("fps", &self.fps).finish()
    }
}

impl Detector {
    /// Loads the model and starts `workers` threads. The threads end when the
    /// detector and every session's handle are gone.
    pub fn start(config: &DetectConfig, workers: usize, metrics: Arc<Metrics>) -> anyhow::Result<Arc<Self>> {
        let model = FaceModel::load(&config.ort_lib, config.model)?;
        let decoding = Arc::new(Decoding { spec: model.spec, anchors: model.anchors.clone() });
        let model = Arc::new(Mutex::new(model));
        let workers = workers.max(1);
        let (sessions, queue) = sync_channel::<Arc<Pending>>(QUEUED_SESSIONS);
        let queue = Arc::new(Mutex::new(queue));
        for index in 0..workers {
            let (queue, model, decoding, metrics) =
                (Arc::clone(&queue), Arc::clone(&model), Arc::clone(&decoding), Arc::clone(&metrics));
            std::thread::Builder::new()
                .name(format!("detect-{index}"))
                .spawn(move || work(&queue, &model, &decoding, &metrics))
                .context("cannot start a detection thread")?;
        }
        Ok(Arc::new(Detector { queue: sessions, kind: config.model, fps: config.fps, metrics }))
    }

    /// A session's handle: its tap thread offers frames through it; what is
    /// found goes to `results` (bounded: a full queue drops, the detector never waits).
    /// `page_frames`: the frames the page says it detects on, taken first.
    pub fn for_session(
        self: &Arc<Self>,
        results: Option<tokio::sync::mpsc::Sender<Detection>>,
        page_frames: Arc<PageFrames>,
    ) -> DetectHandle {
        let state = Arc::new(DetectState::new(self.kind, self.fps, Arc::clone(&self.metrics)));
        DetectHandle {
            detector: Arc::clone(self),
            pending: Arc::new(Pending { job: Mutex::new(None), state: Arc::clone(&state), results }),
            state,
            choice: FrameChoice::new(self.fps, Instant::now()),
            page_frames,
            recent: VecDeque::with_capacity(RECENT_FRAMES + 1),
        }
    }
}

/// How many detection threads this machine gets: half the cores (at least one),
/// so detection never takes every core from the echo.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get() / 2).max(1)
}

fn work(
    queue: &Mutex<Receiver<Arc<Pending>>>,
    model: &Mutex<FaceModel>,
    decoding: &Decoding,
    metrics: &Metrics,
) {
    loop {
        let pending = match queue.lock().unwrap_or_else(|e| e.into_inner()).recv() {
            Ok(pending) => pending,
            Err(_) => return,
        };
        // The newest frame the session offered while it waited.
        let Some(job) = pending.job.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            continue;
        };
        // Only the model run is serialised (one shared ONNX session) and timed;
        // pre/post-processing runs beside it and is measured in the bench.
        let (input, letterbox) = letterbox::from_i420(&job.frame, decoding.spec.size);
        let started = Instant::now();
        let raw = model.lock().unwrap_or_else(|e| e.into_inner()).infer(&input);
        let took = started.elapsed();
        let result = raw.map(|(scores, regressors)| decoding.decode(&scores, &regressors, letterbox));
        match result {
            Ok(faces) => {
                metrics.detect_inferences.inc();
                metrics.detect_inference_seconds.observe(took.as_secs_f64());
                metrics.frame_detected_seconds.observe(job.info.arrived.elapsed().as_secs_f64());
                let detection = Detection {
                    info: job.info,
                    width: job.frame.width,
                    height: job.frame.height,
                    faces,
                    infer: took,
                };
                pending.state.record(&detection);
                if let Some(results) = &pending.results {
                    let _ = results.try_send(detection);
                }
            }
            Err(err) => tracing::warn!(%err, "detect: inference failed"),
        }
    }
}

/// A session's end of the detector, owned by its tap thread.
pub struct DetectHandle {
    detector: Arc<Detector>,
    pending: Arc<Pending>,
    state: Arc<DetectState>,
    choice: FrameChoice,
    page_frames: Arc<PageFrames>,
    /// The last frames offered, this one included, newest last: the page's
    /// `detecting` message may arrive a frame or two after the frame it names.
    recent: VecDeque<(Arc<I420Frame>, FrameInfo)>,
}

/// Decoded frames a handle keeps for a late `detecting` message (this one and two before).
const RECENT_FRAMES: usize = 3;

impl DetectHandle {
    pub fn state(&self) -> Arc<DetectState> {
        Arc::clone(&self.state)
    }

    /// Offers a decoded frame, at most `--detect-fps` times a second, the page's
    /// frames first ([`choice`]). Newest wins among the rest: a frame still waiting
    /// for a worker is replaced (counted as skipped), never queued behind, but a
    /// page frame is not replaced by another. Never waits.
    pub fn offer(&mut self, frame: &Arc<I420Frame>, info: FrameInfo) {
        self.recent.push_back((Arc::clone(frame), info));
        if self.recent.len() > RECENT_FRAMES {
            self.recent.pop_front();
        }
        // This frame, or one just before it, if the page named it.
        let page_frames = &self.page_frames;
        let named = self
            .recent
            .iter()
            .rev()
            .find(|(_, info)| info.page_frame.is_some_and(|code| page_frames.take(code)))
            .cloned();
        let Some(chosen) = self.choice.choose(named.is_some(), Instant::now()) else {
            return;
        };
        let (frame, info) = named.unwrap_or_else(|| (Arc::clone(frame), info));
        let job = Job { frame, info, chosen };
        let replaced = {
            let mut waiting = self.pending.job.lock().unwrap_or_else(|e| e.into_inner());
            match &*waiting {
                Some(kept) if kept.chosen == Chosen::PageFrame && chosen == Chosen::Newest => Some(job),
                _ => waiting.replace(job),
            }
        };
        let skipped = match replaced {
            Some(_) => true, // a frame is queued already: the worker takes the one kept
            None => match self.detector.queue.try_send(Arc::clone(&self.pending)) {
                Ok(()) => false,
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                    self.pending.job.lock().unwrap_or_else(|e| e.into_inner()).take();
                    true
                }
            },
        };
        if skipped {
            self.state.skipped.fetch_add(1, Ordering::Relaxed);
            self.detector.metrics.detect_skipped.inc();
        }
    }
}

/// What a session's detector found, for `/api/sessions` and the snapshot.
pub struct DetectState {
    kind: ModelKind,
    /// `--detect-fps`: the page paces the frames it reports to it.
    fps: f64,
    metrics: Arc<Metrics>,
    pub skipped: AtomicU64,
    inner: Mutex<DetectWindow>,
}

#[derive(Debug, Default)]
struct DetectWindow {
    inferences: u64,
    faces: Vec<Face>,
    /// Size of the frame the faces were found in.
    frame_size: (u32, u32),
    infer_us: VecDeque<u64>,
}

const INFER_TIMES_KEPT: usize = 256;

impl std::fmt::Debug for DetectState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DetectState").field("model", &self.kind).field("window", &*self.window()).finish()
    }
}

impl DetectState {
    fn new(kind: ModelKind, fps: f64, metrics: Arc<Metrics>) -> Self {
        DetectState { kind, fps, metrics, skipped: AtomicU64::new(0), inner: Mutex::default() }
    }

    fn window(&self) -> MutexGuard<'_, DetectWindow> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, detection: &Detection) {
        let mut window = self.window();
        // The gauge counts the faces every session sees now.
        self.metrics.detect_faces.inc_by(detection.faces.len() as i64 - window.faces.len() as i64);
        window.inferences += 1;
        window.faces = detection.faces.clone();
        window.frame_size = (detection.width, detection.height);
        if window.infer_us.len() == INFER_TIMES_KEPT {
            window.infer_us.pop_front();
        }
        window.infer_us.push_back(detection.infer.as_micros() as u64);
    }

    /// The faces of the last detection, and the size of the frame they are in.
    pub fn faces(&self) -> (Vec<Face>, (u32, u32)) {
        let window = self.window();
        (window.faces.clone(), window.frame_size)
    }

    /// The `"detect"` object of `/api/sessions`.
    pub fn to_json(&self) -> Value {
        let window = self.window();
        let mut times: Vec<u64> = window.infer_us.iter().copied().collect();
        times.sort_unstable();
        let percentile_ms = |p: f64| percentile(&times, p).map(|us| us as f64 / 1000.0);
        let faces: Vec<Value> = window
            .faces
            .iter()
            .map(|f| json!({"x": f.x.round(), "y": f.y.round(), "w": f.w.round(), "h": f.h.round(), "score": (f64::from(f.score) * 1000.0).round() / 1000.0}))
            .collect();
        json!({
            "enabled": true,
            "model": self.kind.name(),
            "fps": self.fps,
            "faces": faces,
            "inferences": window.inferences,
            "skipped": self.skipped.load(Ordering::Relaxed),
            "infer_ms_p50": percentile_ms(0.50),
            "infer_ms_p99": percentile_ms(0.99),
        })
    }
}

impl Drop for DetectState {
    fn drop(&mut self) {
        let faces = self.window().faces.len() as i64;
        self.metrics.detect_faces.dec_by(faces);
    }
}

/// `target/onnxruntime/libonnxruntime.so` for a binary in `target/{debug,release}/`.
pub fn default_ort_lib() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let build_dir = exe.parent().and_then(Path::parent).unwrap_or(Path::new("."));
    build_dir.join("onnxruntime").join("libonnxruntime.so")
}
