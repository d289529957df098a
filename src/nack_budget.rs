//! A retransmission budget per receiver: NACKs are input, and a peer that asks
//! for the last thousand packets every 2 ms must not turn the server into its
//! packet cannon.
//!
//! This interceptor sits between the pacer and webrtc-rs's NACK responder
//! ([`SLOT`]): on the read leg it sees each NACK before the responder does and
//! strikes out what the budget does not allow; on the write leg it sees every
//! packet leave, originals (which set the stream's rate) and the responder's
//! retransmissions (which it counts).
//!
//! The rules, after libwebrtc's NACK rate limiter:
//! - retransmitted bytes, and packets, per second ≤ [`RETRANSMIT_SHARE`] × the
//!   stream's own rate, with a burst of one second's worth (token buckets per
//!   stream; packets too, because a peer could NACK only the smallest ones);
//! - a packet resent less than [`REPEAT_WINDOW`] ago is not resent again (the
//!   first copy is still in flight);
//! - a packet the responder no longer holds ([`HISTORY`]) is struck out silently.
//!
//! What is struck out is counted as `nacks_refused`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::transport_feedbacks::transport_layer_nack::{
    TransportLayerNack, nack_pairs_from_sequence_numbers,
};
use rtc::shared::error::Error;

use prometheus_client::metrics::counter::Counter;

use crate::metrics::Metrics;

/// Between the pacer (3 000) and the NACK responder (4 000): reads walk up the
/// slots, writes down, so NACKs reach us first and retransmissions pass us after.
pub const SLOT: usize = 3_500;
/// Retransmitted bytes per second, as a share of the stream's own rate: a lossy
/// path may double the stream, never more (libwebrtc caps at the target rate).
pub const RETRANSMIT_SHARE: f64 = 1.0;
/// A packet is resent at most once within this window.
pub const REPEAT_WINDOW: Duration = Duration::from_millis(100);
/// RTP packets kept per sent stream to answer NACKs from: the responder's send buffer
/// ([`crate::peer::feedback_interceptors`] sizes it with this) and what this budget
/// remembers. At least a second up to ~5 Mbit/s (1200-byte packets), 8 s at
/// 320x240@30. webrtc-rs's default is 1024, each packet holding its buffer: ~1.3 MB
/// per echoed stream (BENCHMARKS.md, issue #13, session 6).
pub const HISTORY: u16 = 512;
/// [`HISTORY`] as the length of a stream's ring of sent packets.
const SLOTS: usize = HISTORY as usize;
/// The stream's rate is measured over windows of this length.
const RATE_WINDOW: Duration = Duration::from_secs(1);

/// Retransmission counters of one PeerConnection (all its sending streams).
#[derive(Debug, Default)]
pub struct RetransmitStats {
    /// Packets receivers asked for.
    pub requested: AtomicU64,
    /// Of those, struck out by the budget or as repeats.
    pub refused: AtomicU64,
    /// Retransmissions that left, and their payload bytes.
    pub sent: AtomicU64,
    pub sent_bytes: AtomicU64,
    /// The process-wide Prometheus counters (clones share the count).
    totals: Option<[Counter; 3]>,
}

impl RetransmitStats {
    /// Counters that also feed the process-wide Prometheus totals.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        let totals = [&metrics.nacks_received, &metrics.nacks_refused, &metrics.retransmissions];
        RetransmitStats { totals: Some(totals.map(Counter::clone)), ..Default::default() }
    }

    fn count(&self, requested: u64, refused: u64) {
        self.requested.fetch_add(requested, Ordering::Relaxed);
        self.refused.fetch_add(refused, Ordering::Relaxed);
        if let Some([received, refused_total, _]) = &self.totals {
            received.inc_by(requested);
            refused_total.inc_by(refused);
        }
    }

    fn count_sent(&self, bytes: usize) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        self.sent_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        if let Some([_, _, sent]) = &self.totals {
            sent.inc();
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "nacks_received": self.requested.load(Ordering::Relaxed),
            "nacks_refused": self.refused.load(Ordering::Relaxed),
            "retransmissions": self.sent.load(Ordering::Relaxed),
            "retransmitted_bytes": self.sent_bytes.load(Ordering::Relaxed),
        })
    }
}

/// One packet we sent, as the budget remembers it.
#[derive(Debug, Clone, Copy, Default)]
struct Sent {
    sequence_number: u16,
    /// Payload bytes; 0 marks an empty place.
    len: u32,
    resent_at: Option<Instant>,
}

/// A token bucket refilled at a measured rate: bytes, or packets, of a stream.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    /// Per second, over the last complete window.
    rate: f64,
    window_amount: f64,
}

impl Bucket {
    fn new() -> Self {
        Bucket { tokens: 0.0, rate: 0.0, window_amount: 0.0 }
    }

    /// The rate to refill at: the last full window's, or the current one's if
    /// higher (counted over at least a whole window, so a first burst cannot
    /// inflate it).
    fn refill_rate(&self, window_elapsed: Duration) -> f64 {
        let current = self.window_amount / window_elapsed.max(RATE_WINDOW).as_secs_f64();
        self.rate.max(current) * RETRANSMIT_SHARE
    }

    /// Adds `elapsed` worth of tokens, keeping at most one second's worth.
    fn refill(&mut self, elapsed: Duration, window_elapsed: Duration) {
        let rate = self.refill_rate(window_elapsed);
        self.tokens = (self.tokens + elapsed.as_secs_f64() * rate).min(rate);
    }
}

/// The budget of one sending stream, in bytes and in packets: bytes bound the
/// bandwidth, packets the CPU (a peer could NACK only the smallest packets).
#[derive(Debug)]
struct Stream {
    history: Vec<Sent>,
    bytes: Bucket,
    packets: Bucket,
    refilled_at: Instant,
    window_start: Instant,
}

impl Stream {
    fn new(now: Instant) -> Self {
        Stream {
            history: vec![Sent::default(); SLOTS],
            bytes: Bucket::new(),
            packets: Bucket::new(),
            refilled_at: now,
            window_start: now,
        }
    }

    fn sent(&mut self, sequence_number: u16, len: usize, now: Instant) {
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= RATE_WINDOW {
            for bucket in [&mut self.bytes, &mut self.packets] {
                bucket.rate = bucket.window_amount / elapsed.as_secs_f64();
                bucket.window_amount = 0.0;
            }
            self.window_start = now;
        }
        self.bytes.window_amount += len as f64;
        self.packets.window_amount += 1.0;
        let len = u32::try_from(len).unwrap_or(u32::MAX).max(1);
        self.history[usize::from(sequence_number) % SLOTS] = Sent { sequence_number, len, resent_at: None };
    }

    /// Keeps the sequence numbers the budget allows; returns how many were refused.
    fn allow(&mut self, requested: &[u16], now: Instant, allowed: &mut Vec<u16>) -> u64 {
        let elapsed = now.saturating_duration_since(self.refilled_at);
        let window_elapsed = now.saturating_duration_since(self.window_start);
        self.bytes.refill(elapsed, window_elapsed);
        self.packets.refill(elapsed, window_elapsed);
        self.refilled_at = now;
        let mut refused = 0;
        for &sequence_number in requested {
            let sent = &mut self.history[usize::from(sequence_number) % SLOTS];
            if sent.len == 0 || sent.sequence_number != sequence_number {
                continue; // not held: the responder could not resend it either
            }
            let repeat = sent.resent_at.is_some_and(|at| now.saturating_duration_since(at) < REPEAT_WINDOW);
            if repeat || self.bytes.tokens < f64::from(sent.len) || self.packets.tokens < 1.0 {
                refused += 1;
                continue;
            }
            self.bytes.tokens -= f64::from(sent.len);
            self.packets.tokens -= 1.0;
            sent.resent_at = Some(now);
            allowed.push(sequence_number);
        }
        refused
    }
}

/// The interceptor: one per PeerConnection, a budget per sending stream.
pub struct NackBudget {
    stats: Arc<RetransmitStats>,
    streams: HashMap<u32, Stream>,
    reads: VecDeque<TaggedPacket>,
    writes: VecDeque<TaggedPacket>,
}

impl NackBudget {
    pub fn new(stats: Arc<RetransmitStats>) -> Self {
        NackBudget { stats, streams: HashMap::new(), reads: VecDeque::new(), writes: VecDeque::new() }
    }

    /// Rewrites a NACK to what the budget allows; `None` when nothing is left.
    fn filter(&mut self, nack: &TransportLayerNack, now: Instant) -> Option<TransportLayerNack> {
        let mut requested = Vec::with_capacity(nack.nacks.len() * 17);
        // Each pair: a sequence number and a bitmap of the 16 after it (RFC 4585 §6.2.1).
        for pair in &nack.nacks {
            requested.push(pair.packet_id);
            let lost = (0..16u16).filter(|bit| pair.lost_packets & (1 << bit) != 0);
            requested.extend(lost.map(|bit| pair.packet_id.wrapping_add(bit + 1)));
        }
        let mut allowed = Vec::with_capacity(requested.len());
        let refused = match self.streams.get_mut(&nack.media_ssrc) {
            Some(stream) => stream.allow(&requested, now, &mut allowed),
            None => 0, // not a stream we send: the responder ignores it too
        };
        self.stats.count(requested.len() as u64, refused);
        (!allowed.is_empty()).then(|| TransportLayerNack {
            sender_ssrc: nack.sender_ssrc,
            media_ssrc: nack.media_ssrc,
            nacks: nack_pairs_from_sequence_numbers(&allowed),
        })
    }
}

impl rtc::sansio::Protocol<TaggedPacket, TaggedPacket, ()> for NackBudget {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Error> {
        // The clock, not `msg.now`: on the write leg webrtc-rs does not always stamp
        // the time of sending, and both legs must share one clock.
        let now = Instant::now();
        if let Packet::Rtcp(packets) = &mut msg.message.packet {
            let mut kept: Vec<Box<dyn rtc::rtcp::Packet>> = Vec::with_capacity(packets.len());
            for packet in packets.drain(..) {
                match packet.as_any().downcast_ref::<TransportLayerNack>() {
                    Some(nack) => kept.extend(self.filter(nack, now).map(|n| Box::new(n) as _)),
                    None => kept.push(packet),
                }
            }
            if kept.is_empty() {
                return Ok(()); // a compound packet of refused NACKs only: nothing left to pass on
            }
            *packets = kept;
        }
        self.reads.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.reads.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Error> {
        if let Packet::Rtp(packet) = &msg.message.packet {
            if msg.message.has(&Attribute::Retransmission) {
                self.stats.count_sent(packet.payload.len());
            } else if let Some(stream) = self.streams.get_mut(&packet.header.ssrc) {
                stream.sent(packet.header.sequence_number, packet.payload.len(), Instant::now());
            }
        }
        self.writes.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.writes.pop_front()
    }
}

impl Interceptor for NackBudget {
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        self.streams.insert(info.ssrc, Stream::new(Instant::now()));
    }
    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        self.streams.remove(&info.ssrc);
    }
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream that sent 100 packets of 1000 bytes a second for two seconds.
    fn busy_stream(start: Instant) -> (Stream, Instant) {
        let mut stream = Stream::new(start);
        let mut now = start;
        for sequence_number in 0..200u16 {
            now = start + Duration::from_millis(10 * u64::from(sequence_number));
            stream.sent(sequence_number, 1000, now);
        }
        (stream, now)
    }

    #[test]
    fn retransmissions_are_capped_at_the_streams_rate() {
        let start = Instant::now();
        let (mut stream, now) = busy_stream(start);
        let requested: Vec<u16> = (0..200).collect();
        let mut allowed = Vec::new();
        // 100 packets and ~100 kB a second; two seconds of refill capped at a one-second burst.
        let refused = stream.allow(&requested, now, &mut allowed);
        assert!((95..=100).contains(&allowed.len()), "{} allowed", allowed.len());
        assert_eq!(refused as usize, 200 - allowed.len());
        // The same request 2 ms later: repeats and an empty bucket, nothing passes.
        allowed.clear();
        let refused = stream.allow(&requested, now + Duration::from_millis(2), &mut allowed);
        assert!(allowed.is_empty(), "{allowed:?}");
        assert_eq!(refused, 200);
    }

    #[test]
    fn a_repeat_passes_again_after_the_window() {
        let start = Instant::now();
        let (mut stream, now) = busy_stream(start);
        let mut allowed = Vec::new();
        stream.allow(&[150], now, &mut allowed);
        stream.allow(&[150], now + Duration::from_millis(50), &mut allowed);
        assert_eq!(allowed, [150], "a repeat within the window is refused");
        stream.allow(&[150], now + REPEAT_WINDOW + Duration::from_millis(1), &mut allowed);
        assert_eq!(allowed, [150, 150]);
    }

    #[test]
    fn packets_never_sent_or_forgotten_are_struck_out_uncounted() {
        let start = Instant::now();
        let (mut stream, now) = busy_stream(start);
        let mut allowed = Vec::new();
        // 5000 was never sent; 100 + HISTORY shares its place with 100.
        let refused = stream.allow(&[5000, 100 + HISTORY], now, &mut allowed);
        assert!(allowed.is_empty());
        assert_eq!(refused, 0);
    }
}
