//! NACK both ways (RFC 4585 §6.2.1): for an incoming stream, which packets are
//! missing (the NACKs we send); for an outgoing stream, the packets we keep to
//! answer the receiver's NACKs, within a retransmission budget.
//!
//! The budget, after libwebrtc's NACK rate limiter: a peer that asks for the last
//! few hundred packets every 2 ms must not turn the server into its packet cannon.
//! - retransmitted bytes, and packets, per second ≤ [`RETRANSMIT_SHARE`] × the
//!   stream's own rate, with a burst of one second's worth (token buckets per
//!   stream; packets too, because a peer could NACK only the smallest ones);
//! - a packet resent less than [`REPEAT_WINDOW`] ago is not resent again (the first
//!   copy is still in flight);
//! - a packet no longer kept ([`HISTORY`]) is struck out silently.
//!
//! What is struck out otherwise is counted as `nacks_refused`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;

use crate::metrics::Metrics;

/// Incoming packets remembered to find the missing ones (webrtc-rs's generator size).
const RECEIVE_LOG: u16 = 512;
/// RTP packets kept per outgoing stream to answer NACKs from: at least a second up
/// to ~5 Mbit/s (1200-byte packets), 8 s at 320x240@30. Each holds its buffer.
pub const HISTORY: u16 = 512;
/// Retransmitted bytes per second, as a share of the stream's own rate: a lossy
/// path may double the stream, never more (libwebrtc caps at the target rate).
pub const RETRANSMIT_SHARE: f64 = 1.0;
/// A packet is resent at most once within this window.
pub const REPEAT_WINDOW: Duration = Duration::from_millis(100);
/// Bytes a place of the history is made with: a protected packet under the path MTU.
const KEPT_BYTES: usize = 1500;
/// The stream's rate is measured over windows of this length.
const RATE_WINDOW: Duration = Duration::from_secs(1);

/// Which packets of one incoming stream are missing: a window of the last
/// [`RECEIVE_LOG`] sequence numbers, as webrtc-rs's NACK generator keeps it, with
/// the work per packet bounded by the window, not by how far the numbers jump.
#[derive(Debug)]
pub(crate) struct ReceiveLog {
    received: [u64; RECEIVE_LOG as usize / 64],
    started: bool,
    /// The highest sequence number seen.
    end: u16,
    /// Every packet up to this one has arrived.
    last_consecutive: u16,
}

const HALF: u16 = 1 << 15;

impl ReceiveLog {
    pub(crate) fn new() -> ReceiveLog {
        ReceiveLog { received: [0; RECEIVE_LOG as usize / 64], started: false, end: 0, last_consecutive: 0 }
    }

    pub(crate) fn add(&mut self, seq: u16) {
        if !self.started {
            self.started = true;
            self.end = seq;
            self.last_consecutive = seq;
            self.set(seq);
            return;
        }
        let ahead = seq.wrapping_sub(self.end);
        if ahead == 0 {
            return; // a duplicate
        }
        if ahead < HALF {
            // What lies between the old end and this one has not arrived (its bits
            // may hold packets from a lap ago).
            self.clear(self.end.wrapping_add(1), ahead - 1);
            self.end = seq;
            if self.last_consecutive.wrapping_add(1) == seq {
                self.last_consecutive = seq;
            } else if seq.wrapping_sub(self.last_consecutive) > RECEIVE_LOG {
                self.last_consecutive = seq.wrapping_sub(RECEIVE_LOG);
                self.fix_last_consecutive();
            }
        } else if self.last_consecutive.wrapping_add(1) == seq {
            // A late one that closes the gap after the consecutive run.
            self.last_consecutive = seq;
            self.fix_last_consecutive();
        }
        self.set(seq);
    }

    /// The missing sequence numbers, oldest first (at most [`RECEIVE_LOG`]).
    pub(crate) fn missing(&self) -> impl Iterator<Item = u16> + '_ {
        let count = self.end.wrapping_sub(self.last_consecutive);
        let count = if self.started && count < HALF { count } else { 0 };
        (1..=count).map(|i| self.last_consecutive.wrapping_add(i)).filter(|&seq| !self.get(seq))
    }

    fn fix_last_consecutive(&mut self) {
        let mut next = self.last_consecutive.wrapping_add(1);
        while next != self.end.wrapping_add(1) && self.get(next) {
            next = next.wrapping_add(1);
        }
        self.last_consecutive = next.wrapping_sub(1);
    }

    fn position(seq: u16) -> (usize, u32) {
        let bit = seq % RECEIVE_LOG;
        (usize::from(bit / 64), u32::from(bit % 64))
    }

    fn set(&mut self, seq: u16) {
        let (word, bit) = Self::position(seq);
        self.received[word] |= 1 << bit;
    }

    fn get(&self, seq: u16) -> bool {
        let (word, bit) = Self::position(seq);
        self.received[word] & (1 << bit) != 0
    }

    /// Clears `count` bits from `from` on, a word at a time.
    fn clear(&mut self, mut from: u16, count: u16) {
        if count >= RECEIVE_LOG {
            self.received = [0; RECEIVE_LOG as usize / 64];
            return;
        }
        let mut left = u32::from(count);
        while left > 0 {
            let (word, bit) = Self::position(from);
            let span = (64 - bit).min(left);
            let mask = if span == 64 { u64::MAX } else { ((1u64 << span) - 1) << bit };
            self.received[word] &= !mask;
            from = from.wrapping_add(span as u16);
            left -= span;
        }
    }
}

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

/// One packet kept: its protected bytes, resent as they are (same SRTP index, so
/// the same ciphertext the receiver would have got).
#[derive(Debug, Default)]
struct Kept {
    sequence_number: u16,
    /// Payload bytes, what the budget is counted in; 0 marks an empty place.
    payload_len: u32,
    resent_at: Option<Instant>,
    bytes: Vec<u8>,
}

/// The last [`HISTORY`] packets of one outgoing stream and its retransmission
/// budget. Places are reused: once each has held a packet, keeping one more
/// allocates nothing.
#[derive(Debug)]
pub(crate) struct SendHistory {
    kept: Vec<Kept>,
    bytes: Bucket,
    packets: Bucket,
    refilled_at: Instant,
    window_start: Instant,
}

impl SendHistory {
    pub(crate) fn new(now: Instant) -> SendHistory {
        SendHistory {
            kept: (0..HISTORY).map(|_| Kept::default()).collect(),
            bytes: Bucket::new(),
            packets: Bucket::new(),
            refilled_at: now,
            window_start: now,
        }
    }

    /// Keeps the protected packet `bytes` (sequence number `seq`, `payload_len`
    /// payload bytes), sent at `now`; returns the kept copy, to send.
    pub(crate) fn keep(&mut self, seq: u16, payload_len: usize, bytes: &[u8], now: Instant) -> &[u8] {
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= RATE_WINDOW {
            for bucket in [&mut self.bytes, &mut self.packets] {
                bucket.rate = bucket.window_amount / elapsed.as_secs_f64();
                bucket.window_amount = 0.0;
            }
            self.window_start = now;
        }
        self.bytes.window_amount += payload_len as f64;
        self.packets.window_amount += 1.0;
        let kept = &mut self.kept[usize::from(seq % HISTORY)];
        kept.sequence_number = seq;
        kept.payload_len = u32::try_from(payload_len).unwrap_or(u32::MAX).max(1);
        kept.resent_at = None;
        kept.bytes.clear();
        // A place grows once, to what any packet on the path needs: not again each
        // time a larger packet than the last it held comes by.
        kept.bytes.reserve(bytes.len().max(KEPT_BYTES));
        kept.bytes.extend_from_slice(bytes);
        &kept.bytes
    }

    /// Answers a NACK's (packet id, bitmask) `pairs`: `resend` gets each packet the
    /// budget allows, in order; `stats` counts what was asked, refused and resent.
    pub(crate) fn answer(
        &mut self,
        pairs: impl Iterator<Item = (u16, u16)>,
        now: Instant,
        stats: &RetransmitStats,
        mut resend: impl FnMut(&[u8]),
    ) {
        let elapsed = now.saturating_duration_since(self.refilled_at);
        let window_elapsed = now.saturating_duration_since(self.window_start);
        self.bytes.refill(elapsed, window_elapsed);
        self.packets.refill(elapsed, window_elapsed);
        self.refilled_at = now;
        let (mut requested, mut refused) = (0, 0);
        for (packet_id, mask) in pairs {
            let lost =
                (0..16u16).filter(|bit| mask & (1 << bit) != 0).map(|bit| packet_id.wrapping_add(bit + 1));
            for seq in std::iter::once(packet_id).chain(lost) {
                requested += 1;
                let kept = &mut self.kept[usize::from(seq % HISTORY)];
                if kept.payload_len == 0 || kept.sequence_number != seq {
                    continue; // not kept: nothing to resend
                }
                let repeat =
                    kept.resent_at.is_some_and(|at| now.saturating_duration_since(at) < REPEAT_WINDOW);
                let len = f64::from(kept.payload_len);
                if repeat || self.bytes.tokens < len || self.packets.tokens < 1.0 {
                    refused += 1;
                    continue;
                }
                self.bytes.tokens -= len;
                self.packets.tokens -= 1.0;
                kept.resent_at = Some(now);
                stats.count_sent(kept.payload_len as usize);
                resend(&kept.bytes);
            }
        }
        stats.count(requested, refused);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::interceptor::{
        AttributedPacket, Interceptor, NackGeneratorBuilder, Packet, RTCPFeedback, StreamInfo, TaggedPacket,
    };
    use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
    use rtc::sansio::Protocol;

    /// A history that kept 100 packets of 1000 bytes a second for two seconds.
    fn busy_history(start: Instant) -> (SendHistory, Instant) {
        let mut history = SendHistory::new(start);
        let mut now = start;
        for seq in 0..200u16 {
            now = start + Duration::from_millis(10 * u64::from(seq));
            history.keep(seq, 1000, &seq.to_be_bytes(), now);
        }
        (history, now)
    }

    /// The pairs naming `seqs`, one pair each.
    fn pairs(seqs: &[u16]) -> impl Iterator<Item = (u16, u16)> + '_ {
        seqs.iter().map(|&seq| (seq, 0))
    }

    fn answered(history: &mut SendHistory, seqs: &[u16], now: Instant, stats: &RetransmitStats) -> Vec<u16> {
        let mut resent = Vec::new();
        history
            .answer(pairs(seqs), now, stats, |bytes| resent.push(u16::from_be_bytes([bytes[0], bytes[1]])));
        resent
    }

    #[test]
    fn retransmissions_are_capped_at_the_streams_rate() {
        let start = Instant::now();
        let (mut history, now) = busy_history(start);
        let stats = RetransmitStats::default();
        let requested: Vec<u16> = (0..200).collect();
        // 100 packets and ~100 kB a second; two seconds of refill capped at a one-second burst.
        let resent = answered(&mut history, &requested, now, &stats);
        assert!((95..=100).contains(&resent.len()), "{} resent", resent.len());
        assert_eq!(stats.refused.load(Ordering::Relaxed) as usize, 200 - resent.len());
        // The same request 2 ms later: repeats and an empty bucket, nothing passes.
        assert!(answered(&mut history, &requested, now + Duration::from_millis(2), &stats).is_empty());
        assert_eq!(stats.requested.load(Ordering::Relaxed), 400);
    }

    #[test]
    fn a_repeat_passes_again_after_the_window() {
        let start = Instant::now();
        let (mut history, now) = busy_history(start);
        let stats = RetransmitStats::default();
        assert_eq!(answered(&mut history, &[150], now, &stats), [150]);
        assert!(answered(&mut history, &[150], now + Duration::from_millis(50), &stats).is_empty());
        let later = now + REPEAT_WINDOW + Duration::from_millis(1);
        assert_eq!(answered(&mut history, &[150], later, &stats), [150]);
    }

    #[test]
    fn packets_never_sent_or_forgotten_are_struck_out_uncounted() {
        let start = Instant::now();
        let (mut history, now) = busy_history(start);
        let stats = RetransmitStats::default();
        // 5000 was never sent; 100 + HISTORY shares its place with 100.
        assert!(answered(&mut history, &[5000, 100 + HISTORY], now, &stats).is_empty());
        assert_eq!(stats.refused.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn only_the_last_history_packets_are_resent_and_a_bitmask_names_more() {
        let start = Instant::now();
        let mut history = SendHistory::new(start);
        for seq in 1..=600u16 {
            history.keep(seq, 10, &seq.to_be_bytes(), start + Duration::from_millis(u64::from(seq)));
        }
        let now = start + Duration::from_secs(2);
        let stats = RetransmitStats::default();
        let oldest_kept = 600 - HISTORY + 1;
        assert!(answered(&mut history, &[oldest_kept - 1], now, &stats).is_empty(), "older than the history");
        let mut resent = Vec::new();
        history.answer([(oldest_kept, 0b101)].into_iter(), now, &stats, |b| {
            resent.push(u16::from_be_bytes([b[0], b[1]]))
        });
        assert_eq!(resent, [oldest_kept, oldest_kept + 1, oldest_kept + 3]);
    }

    /// webrtc-rs's NACK generator, fed the same packets.
    fn their_missing(sequence: &[u16]) -> Vec<u16> {
        let registry = rtc::interceptor::Registry::new()
            .with(rtc::interceptor::Slot::NackGenerator, NackGeneratorBuilder::new().build());
        let mut chain: Box<dyn Interceptor> = Box::new(registry.build());
        let nack = RTCPFeedback { typ: "nack".into(), parameter: String::new() };
        chain.bind_remote_stream(&StreamInfo { ssrc: 1, rtcp_feedback: vec![nack], ..Default::default() });
        let start = Instant::now();
        for &sequence_number in sequence {
            let packet = rtc::rtp::Packet {
                header: rtc::rtp::header::Header { ssrc: 1, sequence_number, ..Default::default() },
                ..Default::default()
            };
            let message = AttributedPacket::new(Packet::Rtp(packet));
            chain
                .handle_read(TaggedPacket { now: start, transport: Default::default(), message })
                .expect("read");
            while chain.poll_read().is_some() {}
        }
        chain.handle_timeout(start + Duration::from_secs(1)).expect("timeout");
        let mut missing = Vec::new();
        while let Some(out) = chain.poll_write() {
            if let Packet::Rtcp(packets) = out.message.packet {
                for packet in packets {
                    if let Some(nack) = packet.as_any().downcast_ref::<TransportLayerNack>() {
                        for pair in &nack.nacks {
                            missing.extend(pair.packet_list());
                        }
                    }
                }
            }
        }
        missing
    }

    #[test]
    fn the_missing_packets_are_webrtc_rs_missing_packets() {
        let random = |i: u32| (i.wrapping_mul(2_654_435_761) >> 7) % 100;
        let patterns: Vec<(&str, Vec<u16>)> = vec![
            ("in order, none lost", (100..400).collect()),
            ("3 % lost", (100..1100u32).filter(|&i| random(i) >= 3).map(|i| i as u16).collect()),
            ("across the wrap", (65_300..66_000u32).filter(|i| i % 13 != 0).map(|i| i as u16).collect()),
            ("late arrivals", [1u16, 2, 5, 3, 7, 4, 9, 8, 12].to_vec()),
            ("a jump past the log", [1u16, 2, 3, 900, 902].to_vec()),
            ("a jump backwards", [5000u16, 5001, 40_000, 5003].to_vec()),
        ];
        for (name, sequence) in patterns {
            let mut ours = ReceiveLog::new();
            sequence.iter().for_each(|&seq| ours.add(seq));
            assert_eq!(ours.missing().collect::<Vec<_>>(), their_missing(&sequence), "{name}");
        }
    }

    #[test]
    fn a_jump_costs_a_few_words_not_the_distance() {
        let mut log = ReceiveLog::new();
        log.add(1);
        log.add(1 + 30_000);
        assert_eq!(log.missing().count(), usize::from(RECEIVE_LOG) - 1);
        log.add(2 + 30_000);
        log.add(1 + 30_000); // a duplicate
        assert_eq!(log.missing().count(), usize::from(RECEIVE_LOG) - 2, "the window moved on by one");
    }
}
