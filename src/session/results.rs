//! The loop back to the clients: what the server learns about a publisher's
//! frames goes out on the `face-echo` data channels of the publisher and of its
//! viewers, per frame, and the page's own detections come in on the publisher's.
//!
//! - Out: `detections` for each detection pass (tied to the frame by its RTP
//!   timestamp and the page's frame code), `stats` once a second. Sent with
//!   `try_send_text` on a bounded send buffer: a client that does not read loses
//!   messages (counted), never slows anything.
//! - In: the page's `detections`, parsed strictly and rate-limited (one budget per
//!   PeerConnection, whatever number of channels it opens); bad or excess
//!   messages are counted and dropped, the channel stays open.
//! - Agreement: page and server boxes of the same frame are matched
//!   (`crate::seeing::agreement`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};
use webrtc::data_channel::{DataChannel, DataChannelEvent};

use super::SessionInfo;
use crate::media::token_bucket::TokenBucket;
use crate::metrics::Metrics;
use crate::record::RecorderInput;
use crate::seeing::agreement::{Agreement, FrameAgreement};
use crate::seeing::detect::{Detection, PageFrames};
use crate::seeing::loop_messages::{self, ClientMessage, ServerDetections, ServerMessage};

/// Detections waiting to be sent: a few frames' worth (newer ones matter more).
pub const QUEUED_DETECTIONS: usize = 8;
/// Most data channels one session feeds (the publisher and `--max-viewers`).
const MAX_CHANNELS: usize = 64;
/// How often `stats` goes out.
const STATS_INTERVAL: Duration = Duration::from_secs(1);

/// Counters of one session's loop, for `/api/sessions`.
#[derive(Debug, Default)]
pub struct LoopStats {
    pub channels: AtomicU64,
    pub received: AtomicU64,
    /// Not JSON, unknown type, over the size limit, bad fields.
    pub dropped_bad: AtomicU64,
    /// Over the rate limit.
    pub dropped_rate: AtomicU64,
    pub sent: AtomicU64,
    /// Not sent: the client's send buffer was full or the channel closed.
    pub send_dropped: AtomicU64,
}

/// One open `face-echo` channel and whose it is.
struct Channel {
    owner: String,
    dc: Arc<dyn DataChannel>,
}

/// A publisher session's results and the channels they go to.
pub struct Results {
    channels: Mutex<Vec<Channel>>,
    /// Each client's message budget, by owner: one per PeerConnection, shared by all
    /// its channels, so opening more channels buys no more messages.
    budgets: Mutex<HashMap<String, TokenBucket>>,
    agreement: Mutex<Agreement>,
    /// Where the page's `detecting` messages go: the detector takes those frames first.
    page_frames: Arc<PageFrames>,
    pub stats: LoopStats,
    metrics: Arc<Metrics>,
    /// Both sides' detections go to the recording too (`--record`).
    recorder: Option<RecorderInput>,
    /// Told when a channel opens: until then `stats` has no one to go to, and the
    /// session keeps no timer of its own.
    opened: Notify,
}

impl std::fmt::Debug for Results {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Results").field("stats", &self.stats).finish_non_exhaustive()
    }
}

impl Results {
    pub fn new(metrics: Arc<Metrics>, recorder: Option<RecorderInput>, page_frames: Arc<PageFrames>) -> Self {
        Results {
            recorder,
            page_frames,
            channels: Mutex::new(Vec::new()),
            budgets: Mutex::new(HashMap::new()),
            agreement: Mutex::new(Agreement::new()),
            stats: LoopStats::default(),
            metrics,
            opened: Notify::new(),
        }
    }

    fn channels(&self) -> std::sync::MutexGuard<'_, Vec<Channel>> {
        self.channels.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes one message from `owner`'s budget: false when it is over the rate limit.
    fn within_budget(&self, owner: &str) -> bool {
        let now = Instant::now();
        let mut budgets = self.budgets.lock().unwrap_or_else(|e| e.into_inner());
        let budget = budgets.entry(owner.to_owned()).or_insert_with(|| {
            TokenBucket::new(loop_messages::MAX_MESSAGES_PER_SECOND, loop_messages::MAX_MESSAGE_BURST, now)
        });
        budget.take(now)
    }

    fn agreement(&self) -> std::sync::MutexGuard<'_, Agreement> {
        self.agreement.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Serves a data channel the client `owner` opened: a `face-echo` channel
    /// gets the session's results, and (from the publisher, `reads_page`) its
    /// messages are read. Other labels are left alone. Runs until the channel ends.
    pub async fn serve(self: Arc<Self>, owner: String, dc: Arc<dyn DataChannel>, reads_page: bool) {
        match dc.label().await {
            Ok(label) if label == loop_messages::CHANNEL_LABEL => {}
            Ok(label) => {
                tracing::debug!(owner, label, "ignoring a data channel of another label");
                return;
            }
            Err(_) => return,
        }
        while let Some(event) = dc.poll().await {
            match event {
                DataChannelEvent::OnOpen => {
                    let mut channels = self.channels();
                    if channels.len() >= MAX_CHANNELS {
                        tracing::warn!(owner, "too many data channels on one session; this one gets nothing");
                        continue;
                    }
                    channels.push(Channel { owner: owner.clone(), dc: Arc::clone(&dc) });
                    self.stats.channels.fetch_add(1, Ordering::Relaxed);
                    self.opened.notify_one();
                }
                DataChannelEvent::OnMessage(message) => {
                    self.stats.received.fetch_add(1, Ordering::Relaxed);
                    self.metrics.loop_messages_received.inc();
                    if !self.within_budget(&owner) {
                        self.stats.dropped_rate.fetch_add(1, Ordering::Relaxed);
                        self.metrics.loop_messages_dropped.inc();
                        continue;
                    }
                    match loop_messages::parse_message(message.is_string, &message.data) {
                        Ok(ClientMessage::Detecting { frame }) if reads_page => {
                            self.page_frames.announce(frame)
                        }
                        Ok(ClientMessage::Detections(page)) if reads_page => {
                            if let Some(recorder) = &self.recorder {
                                recorder.page_detections(&page);
                            }
                            let compared = self.agreement().page(
                                page.frame,
                                page.width,
                                page.height,
                                &page.faces(),
                                page.detector,
                            );
                            self.count_agreement(compared);
                        }
                        // A viewer's messages describe no frame of ours: dropped.
                        Ok(ClientMessage::Detecting { .. } | ClientMessage::Detections(_)) | Err(_) => {
                            self.stats.dropped_bad.fetch_add(1, Ordering::Relaxed);
                            self.metrics.loop_messages_dropped.inc();
                        }
                    }
                }
                DataChannelEvent::OnClose => break,
                _ => {}
            }
        }
        // Only this channel: the owner's others, and its budget, stay until it leaves.
        self.channels().retain(|channel| !Arc::ptr_eq(&channel.dc, &dc));
    }

    /// Ends the session's recording (its thread writes what is queued and stops).
    pub fn close_recording(&self) {
        if let Some(recorder) = &self.recorder {
            recorder.close();
        }
    }

    /// Forgets `owner`'s channels and budget (a viewer that left).
    pub fn leave(&self, owner: &str) {
        self.channels().retain(|channel| channel.owner != owner);
        self.budgets.lock().unwrap_or_else(|e| e.into_inner()).remove(owner);
    }

    fn count_agreement(&self, compared: Option<FrameAgreement>) {
        let Some(compared) = compared else { return };
        self.metrics.agreement_frames.inc();
        self.metrics.agreement_matched.inc_by(compared.matched.len() as u64);
        self.metrics.agreement_page_only.inc_by(compared.page_only as u64);
        self.metrics.agreement_server_only.inc_by(compared.server_only as u64);
    }

    /// Sends `text` on every open channel, never waiting for a slow one.
    async fn broadcast(&self, text: &str) {
        let channels: Vec<Arc<dyn DataChannel>> = self.channels().iter().map(|c| Arc::clone(&c.dc)).collect();
        for dc in channels {
            match dc.try_send_text(text).await {
                Ok(()) => {
                    self.stats.sent.fetch_add(1, Ordering::Relaxed);
                    self.metrics.loop_messages_sent.inc();
                }
                Err(_) => {
                    self.stats.send_dropped.fetch_add(1, Ordering::Relaxed);
                    self.metrics.loop_messages_send_dropped.inc();
                }
            }
        }
    }

    /// One detection pass, out to every channel; the server's side of the agreement.
    async fn send_detection(&self, detection: Detection) {
        if let Some(recorder) = &self.recorder {
            recorder.server_detections(&detection);
        }
        let Detection { info, width, height, faces, infer } = detection;
        if let Some(frame) = info.page_frame {
            let compared = self.agreement().server(frame, width, height, &faces);
            self.count_agreement(compared);
        }
        let age = info.arrived.elapsed();
        let message = ServerMessage::Detections(ServerDetections::new(
            info.rtp_ts,
            info.page_frame,
            width,
            height,
            &faces,
            infer.as_secs_f64() * 1000.0,
            age.as_secs_f64() * 1000.0,
        ));
        self.broadcast(&message.to_json()).await;
        self.metrics.frame_result_sent_seconds.observe(age.as_secs_f64());
    }

    /// The session's `"agreement"` and `"loop"` objects for `/api/sessions`.
    pub fn to_json(&self) -> (Value, Value) {
        let n = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let stats = &self.stats;
        let open = self.channels().len();
        (
            self.agreement().to_json(),
            json!({
                "channels_open": open,
                "channels": n(&stats.channels),
                "received": n(&stats.received),
                "dropped_bad": n(&stats.dropped_bad),
                "dropped_rate": n(&stats.dropped_rate),
                "sent": n(&stats.sent),
                "send_dropped": n(&stats.send_dropped),
            }),
        )
    }
}

/// Sends the session's detections as they come and its `stats` once a second while
/// a channel is open, until the detector's side of `detections` closes with the
/// session. With no channel open it sleeps until one opens.
pub async fn run(results: Arc<Results>, mut detections: mpsc::Receiver<Detection>, info: Arc<SessionInfo>) {
    let mut tick = tokio::time::interval(STATS_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let listened = !results.channels().is_empty();
        tokio::select! {
            detection = detections.recv() => match detection {
                Some(detection) => results.send_detection(detection).await,
                None => return,
            },
            _ = results.opened.notified(), if !listened => tick.reset_immediately(),
            _ = tick.tick(), if listened => {
                let session = info.to_json();
                let stats = ServerMessage::Stats {
                    tap: session["tap"].clone(),
                    detect: session["detect"].clone(),
                    agreement: session["agreement"].clone(),
                };
                results.broadcast(&stats.to_json()).await;
            }
        }
    }
}
