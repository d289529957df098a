//! Broadcast: a publisher's RTP goes to its own echo first, then to every viewer
//! watching the session (SFU fan-out), payload unmodified.
//!
//! Each viewer has a bounded queue of its own, filled with `try_send`: a slow or
//! lossy viewer loses packets (counted) and never slows the publisher's echo or
//! the other viewers. Packets are shared (`Bytes` payloads), not copied per viewer.
//! Viewers' keyframe requests are merged into one wish for the publisher's
//! keyframe scheduler ([`super::keyframes`]), which has one budget for all.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use rtc::rtp;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::media::feedback::nack::RetransmitStats;
use crate::media::plane::PlaneStats;
use crate::metrics::Metrics;
use crate::session::signaling::{ErrorCode, SignalError};

/// Packets a viewer may fall behind before its packets are dropped.
pub const VIEWER_QUEUE_PACKETS: usize = 512;

/// Per-viewer counters, for `/api/sessions`.
#[derive(Debug, Default)]
pub struct ViewerStats {
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
    pub dropped: AtomicU64,
    /// The viewer's NACKs and what its retransmission budget let through.
    pub retransmit: Arc<RetransmitStats>,
    /// Its media plane's counters (and the transport it is reached over).
    pub plane: Arc<PlaneStats>,
}

/// One viewer's end of the fan-out.
#[derive(Debug)]
struct Outlet {
    id: String,
    packets: mpsc::Sender<rtp::Packet>,
    stats: Arc<ViewerStats>,
}

/// The viewers of one publisher's session.
pub struct FanOut {
    outlets: RwLock<Vec<Outlet>>,
    max_viewers: usize,
    /// Set when the publisher has gone: no viewer may join any more.
    closed: std::sync::atomic::AtomicBool,
    keyframe_wishes: mpsc::Sender<()>,
    wishes_rx: Mutex<Option<mpsc::Receiver<()>>>,
    /// PLIs sent to the publisher on the viewers' behalf.
    pub keyframe_requests: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for FanOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FanOut").field("viewers", &self.count()).finish()
    }
}

impl FanOut {
    /// The process's metrics, for what viewers count themselves.
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.metrics)
    }

    pub fn new(max_viewers: usize, metrics: Arc<Metrics>) -> Self {
        let (keyframe_wishes, wishes_rx) = mpsc::channel(1);
        FanOut {
            outlets: RwLock::new(Vec::new()),
            max_viewers,
            closed: std::sync::atomic::AtomicBool::new(false),
            keyframe_wishes,
            wishes_rx: Mutex::new(Some(wishes_rx)),
            keyframe_requests: Arc::default(),
            metrics,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Outlet>> {
        self.outlets.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Outlet>> {
        self.outlets.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn count(&self) -> usize {
        self.read().len()
    }

    /// Hands `packet` (as the publisher sent it) to every viewer's queue; never waits.
    pub fn send(&self, packet: &rtp::Packet) {
        for outlet in self.read().iter() {
            if outlet.packets.try_send(packet.clone()).is_ok() {
                self.metrics.rtp_packets_fanout.inc();
            } else {
                outlet.stats.dropped.fetch_add(1, Ordering::Relaxed);
                self.metrics.fanout_packets_dropped.inc();
            }
        }
    }

    /// Whether one more viewer may join now (checked again by [`FanOut::join`]).
    pub fn check_room(&self) -> Result<(), SignalError> {
        self.room(&self.read())
    }

    fn room(&self, outlets: &[Outlet]) -> Result<(), SignalError> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(SignalError::new(ErrorCode::NoSuchSession, "that session has ended"));
        }
        if outlets.len() >= self.max_viewers {
            return Err(SignalError::new(
                ErrorCode::ViewersFull,
                format!("the session has its maximum of {} viewers", self.max_viewers),
            ));
        }
        Ok(())
    }

    /// Adds viewer `id`; returns its packet queue and counters. The viewer asks
    /// for a keyframe once its connection is up ([`FanOut::want_keyframe`]).
    pub fn join(
        &self,
        id: &str,
        retransmit: Arc<RetransmitStats>,
        plane: Arc<PlaneStats>,
    ) -> Result<(mpsc::Receiver<rtp::Packet>, Arc<ViewerStats>), SignalError> {
        let mut outlets = self.write();
        self.room(&outlets)?;
        let (packets, queue) = mpsc::channel(VIEWER_QUEUE_PACKETS);
        let stats = Arc::new(ViewerStats {
            packets: AtomicU64::default(),
            bytes: AtomicU64::default(),
            dropped: AtomicU64::default(),
            retransmit,
            plane,
        });
        outlets.push(Outlet { id: id.to_owned(), packets, stats: Arc::clone(&stats) });
        self.metrics.viewers_active.inc();
        Ok((queue, stats))
    }

    /// Removes viewer `id` (if still there).
    pub fn leave(&self, id: &str) {
        let mut outlets = self.write();
        let before = outlets.len();
        outlets.retain(|outlet| outlet.id != id);
        self.metrics.viewers_active.dec_by((before - outlets.len()) as i64);
    }

    /// The publisher has gone: every viewer's queue ends (they are told and closed).
    pub fn close(&self) {
        let mut outlets = self.write();
        self.closed.store(true, Ordering::Relaxed);
        self.metrics.viewers_active.dec_by(outlets.len() as i64);
        outlets.clear();
    }

    /// A viewer needs a keyframe; merged with any wish not yet served.
    pub fn want_keyframe(&self) {
        let _ = self.keyframe_wishes.try_send(());
    }

    /// Where a viewer's own keyframe requests go (the same merged wish).
    pub fn keyframe_wishes(&self) -> mpsc::Sender<()> {
        self.keyframe_wishes.clone()
    }

    /// The wishes, for the publisher's session to relay (taken once).
    pub fn take_keyframe_wishes(&self) -> Option<mpsc::Receiver<()>> {
        self.wishes_rx.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// `/api/sessions`' `"viewers"`: one object per viewer.
    pub fn to_json(&self) -> Value {
        let n = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Value::Array(
            self.read()
                .iter()
                .map(|o| {
                    json!({
                        "id": o.id,
                        "packets": n(&o.stats.packets),
                        "bytes": n(&o.stats.bytes),
                        "dropped": n(&o.stats.dropped),
                        "retransmit": o.stats.retransmit.to_json(),
                        "transport": o.stats.plane.transport(),
                    })
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(seq: u16) -> rtp::Packet {
        let mut packet = rtp::Packet::default();
        packet.header.sequence_number = seq;
        packet.payload = bytes::Bytes::from_static(b"vp8");
        packet
    }

    #[test]
    fn a_full_viewer_drops_alone_and_limits_hold() {
        let fanout = FanOut::new(2, Arc::new(Metrics::new()));
        let (mut fast, _) = fanout.join("fast", Arc::default(), Arc::default()).unwrap();
        let (_slow, slow_stats) = fanout.join("slow", Arc::default(), Arc::default()).unwrap();
        assert_eq!(
            fanout.join("third", Arc::default(), Arc::default()).unwrap_err().code,
            ErrorCode::ViewersFull
        );
        for seq in 0..(VIEWER_QUEUE_PACKETS as u16 + 10) {
            fanout.send(&packet(seq));
            assert_eq!(
                fast.try_recv().unwrap().header.sequence_number,
                seq,
                "the fast viewer gets every packet"
            );
        }
        assert_eq!(slow_stats.dropped.load(Ordering::Relaxed), 10);
        fanout.leave("slow");
        assert_eq!(fanout.count(), 1);
        fanout.close();
        assert!(fast.try_recv().is_err());
        assert_eq!(
            fanout.join("late", Arc::default(), Arc::default()).unwrap_err().code,
            ErrorCode::NoSuchSession
        );
    }
}
