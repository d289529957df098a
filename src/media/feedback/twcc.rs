//! Transport-wide congestion control feedback (draft-holmer-rmcat-transport-wide-
//! cc-extensions-01 §3.1): when each packet numbered with the transport-wide
//! sequence number arrived, reported every [`super::FEEDBACK_INTERVAL`]. A browser
//! publisher's send-side bandwidth estimate runs on it.
//!
//! Arrivals are kept in a ring indexed by sequence number (a place is known to hold
//! the packet it claims by the number stored with it, so nothing is ever cleared);
//! a feedback packet reports from the first unreported number to the highest
//! arrived, and a late packet makes the next one report again from it, as
//! libwebrtc's receiver does. Work and memory are bounded by the ring, whatever the
//! numbers do.

use std::time::Instant;

use crate::media::rtcp::append_transport_cc;

/// Sequence numbers remembered: a power of two, far more than arrive between two
/// feedback packets at any video rate.
const WINDOW: i64 = 2048;
/// Statuses per feedback packet, so that one stays under the path MTU.
const MAX_STATUSES: usize = 400;
/// Receive deltas are in multiples of 250 µs; the reference time in 64 ms.
const DELTA_UNIT_US: i64 = 250;
const REFERENCE_UNIT_US: i64 = 64_000;

/// A packet's status in the feedback.
const NOT_RECEIVED: u8 = 0;
const SMALL_DELTA: u8 = 1;
const LARGE_DELTA: u8 = 2;

/// The arrivals of one transport (a PeerConnection's bundle) and what was reported.
#[derive(Debug)]
pub(crate) struct TwccRecorder {
    sender_ssrc: u32,
    /// The media SSRC of the newest packet (feedback names it).
    media_ssrc: u32,
    /// Arrival times count from the first packet.
    epoch: Option<Instant>,
    /// Per place: the unwrapped sequence number it holds plus one (0: none), and
    /// its arrival in µs since `epoch`.
    arrivals: Box<[(i64, i64)]>,
    last_unwrapped: Option<i64>,
    /// The first number the next feedback reports.
    next: i64,
    highest: i64,
    /// Something arrived since the last feedback.
    pending: bool,
    feedback_count: u8,
    /// Scratch for one packet's statuses and deltas, kept between packets.
    statuses: Vec<u8>,
    deltas: Vec<u8>,
}

impl TwccRecorder {
    pub(crate) fn new(sender_ssrc: u32) -> TwccRecorder {
        TwccRecorder {
            sender_ssrc,
            media_ssrc: 0,
            epoch: None,
            arrivals: vec![(0, 0); WINDOW as usize].into_boxed_slice(),
            last_unwrapped: None,
            next: 0,
            highest: 0,
            pending: false,
            feedback_count: 0,
            statuses: Vec::with_capacity(MAX_STATUSES),
            deltas: Vec::with_capacity(2 * MAX_STATUSES),
        }
    }

    /// The packet numbered `sequence_number` (of stream `ssrc`) arrived at `now`.
    pub(crate) fn record(&mut self, ssrc: u32, sequence_number: u16, now: Instant) {
        let epoch = *self.epoch.get_or_insert(now);
        let at = now.saturating_duration_since(epoch).as_micros() as i64;
        // Unwrapped against the packet before, as libwebrtc's unwrapper does.
        let seq = match self.last_unwrapped {
            None => i64::from(sequence_number),
            Some(last) => last + i64::from(sequence_number.wrapping_sub(last as u16) as i16),
        };
        if self.last_unwrapped.is_none() {
            (self.next, self.highest) = (seq, seq);
        }
        self.last_unwrapped = Some(seq);
        self.media_ssrc = ssrc;
        self.highest = self.highest.max(seq);
        if seq < self.next {
            if self.highest - seq >= WINDOW {
                return; // too old to report again
            }
            self.next = seq; // late: reported again from here
        }
        self.next = self.next.max(self.highest - WINDOW + 1);
        let place = &mut self.arrivals[seq.rem_euclid(WINDOW) as usize];
        if place.0 != seq + 1 {
            *place = (seq + 1, at); // the first arrival counts
        }
        self.pending = true;
    }

    fn arrival(&self, seq: i64) -> Option<i64> {
        let (held, at) = self.arrivals[seq.rem_euclid(WINDOW) as usize];
        (held == seq + 1).then_some(at)
    }

    /// Appends the feedback for what arrived since the last call, as transport-cc
    /// packets (usually one); nothing when nothing arrived.
    pub(crate) fn append_feedback(&mut self, out: &mut Vec<u8>) {
        if !self.pending {
            return;
        }
        self.pending = false;
        while self.next <= self.highest {
            let Some(first) = (self.next..=self.highest).find(|&seq| self.arrival(seq).is_some()) else {
                self.next = self.highest + 1;
                return;
            };
            let base = self.next;
            let reference = self.arrival(first).unwrap_or(0) / REFERENCE_UNIT_US;
            let mut last_us = reference * REFERENCE_UNIT_US;
            self.statuses.clear();
            self.deltas.clear();
            let mut seq = base;
            while seq <= self.highest && self.statuses.len() < MAX_STATUSES {
                match self.arrival(seq) {
                    Some(at) => {
                        let delta = rounded_delta(at - last_us);
                        let Ok(delta) = i16::try_from(delta) else { break }; // a new packet starts here
                        if (0..=255).contains(&delta) {
                            self.statuses.push(SMALL_DELTA);
                            self.deltas.push(delta as u8);
                        } else {
                            self.statuses.push(LARGE_DELTA);
                            self.deltas.extend_from_slice(&delta.to_be_bytes());
                        }
                        last_us += i64::from(delta) * DELTA_UNIT_US;
                    }
                    None => self.statuses.push(NOT_RECEIVED),
                }
                seq += 1;
            }
            let (statuses, deltas, count) = (&self.statuses, &self.deltas, self.feedback_count);
            append_transport_cc(out, self.sender_ssrc, self.media_ssrc, |out| {
                out.extend_from_slice(&(base as u16).to_be_bytes());
                out.extend_from_slice(&(statuses.len() as u16).to_be_bytes());
                out.extend_from_slice(
                    &((reference as u32 & 0x00ff_ffff) << 8 | u32::from(count)).to_be_bytes(),
                );
                append_chunks(out, statuses);
                out.extend_from_slice(deltas);
            });
            self.feedback_count = self.feedback_count.wrapping_add(1);
            self.next = seq;
        }
    }
}

/// `delta_us` in 250 µs units, rounded half away from zero (as libwebrtc rounds).
fn rounded_delta(delta_us: i64) -> i64 {
    let half = DELTA_UNIT_US / 2;
    if delta_us >= 0 { (delta_us + half) / DELTA_UNIT_US } else { (delta_us - half) / DELTA_UNIT_US }
}

/// Encodes `statuses` as packet status chunks: a run-length chunk for a run of 14
/// or more, else a vector of 14 one-bit symbols if they fit in one bit, else a run
/// of 7 or more, else a vector of 7 two-bit symbols. The last vector may name more
/// symbols than there are statuses: the status count says where they end.
fn append_chunks(out: &mut Vec<u8>, statuses: &[u8]) {
    let mut rest = statuses;
    while let Some(&first) = rest.first() {
        let run = rest.iter().take_while(|&&status| status == first).count().min(0x1fff);
        let one_bit = rest.len().min(14);
        let chunk: u16;
        let used;
        if run >= 14 {
            chunk = u16::from(first) << 13 | run as u16;
            used = run;
        } else if rest[..one_bit].iter().all(|&status| status <= SMALL_DELTA) {
            let symbols = rest[..one_bit]
                .iter()
                .enumerate()
                .fold(0u16, |bits, (i, &s)| bits | u16::from(s) << (13 - i));
            chunk = 0x8000 | symbols;
            used = one_bit;
        } else if run >= 7 {
            chunk = u16::from(first) << 13 | run as u16;
            used = run;
        } else {
            let two_bit = rest.len().min(7);
            let symbols = rest[..two_bit]
                .iter()
                .enumerate()
                .fold(0u16, |bits, (i, &s)| bits | u16::from(s) << (12 - 2 * i));
            chunk = 0xc000 | symbols;
            used = two_bit;
        }
        out.extend_from_slice(&chunk.to_be_bytes());
        rest = &rest[used..];
    }
}

#[cfg(test)]
mod tests {
    use super::super::FEEDBACK_INTERVAL;
    use super::*;
    use rtc::interceptor::{
        AttributedPacket, Interceptor, Packet, RTCPFeedback, RTPHeaderExtension, StreamInfo, TaggedPacket,
        TwccReceiverBuilder,
    };
    use rtc::rtcp::transport_feedbacks::transport_layer_cc::{SymbolTypeTcc, TransportLayerCc};
    use rtc::sansio::Protocol;
    use std::time::Duration;

    const EXTENSION_ID: u8 = 5;
    const URI: &str = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";

    /// Every packet a set of transport-cc packets reports, as (sequence number,
    /// arrival in µs, reconstructed from the reference time and the deltas), and the
    /// numbers reported as not received.
    fn reported(packets: &[TransportLayerCc]) -> (Vec<(u16, i64)>, Vec<u16>) {
        let (mut received, mut lost) = (Vec::new(), Vec::new());
        for packet in packets {
            let mut statuses = Vec::new();
            for chunk in &packet.packet_chunks {
                use rtc::rtcp::transport_feedbacks::transport_layer_cc::PacketStatusChunk;
                match chunk {
                    PacketStatusChunk::RunLengthChunk(run) => statuses
                        .extend(std::iter::repeat_n(run.packet_status_symbol, run.run_length as usize)),
                    PacketStatusChunk::StatusVectorChunk(vector) => {
                        statuses.extend(vector.symbol_list.iter().copied())
                    }
                }
            }
            statuses.truncate(packet.packet_status_count as usize);
            let mut at = i64::from(packet.reference_time) * REFERENCE_UNIT_US;
            let mut deltas = packet.recv_deltas.iter();
            for (i, status) in statuses.iter().enumerate() {
                let seq = packet.base_sequence_number.wrapping_add(i as u16);
                if *status == SymbolTypeTcc::PacketNotReceived {
                    lost.push(seq);
                } else {
                    at += deltas.next().expect("a delta per received packet").delta;
                    received.push((seq, at));
                }
            }
        }
        (received, lost)
    }

    fn parse(bytes: &[u8]) -> Vec<TransportLayerCc> {
        rtc::rtcp::packet::unmarshal(&mut &bytes[..])
            .expect("rtc parses our feedback")
            .into_iter()
            .map(|packet| packet.as_any().downcast_ref::<TransportLayerCc>().expect("transport-cc").clone())
            .collect()
    }

    /// webrtc-rs's TWCC receiver, fed the same arrivals.
    struct Theirs(Box<dyn Interceptor>);

    impl Theirs {
        fn new() -> Theirs {
            let registry = rtc::interceptor::Registry::new()
                .with(rtc::interceptor::Slot::TwccReceiver, TwccReceiverBuilder::new().build());
            let mut chain: Box<dyn Interceptor> = Box::new(registry.build());
            chain.bind_remote_stream(&StreamInfo {
                ssrc: 7,
                rtcp_feedback: vec![RTCPFeedback { typ: "transport-cc".into(), parameter: String::new() }],
                rtp_header_extensions: vec![RTPHeaderExtension {
                    uri: URI.into(),
                    id: u16::from(EXTENSION_ID),
                }],
                ..Default::default()
            });
            Theirs(chain)
        }

        fn record(&mut self, seq: u16, now: Instant) {
            let mut header = rtc::rtp::header::Header { ssrc: 7, ..Default::default() };
            header
                .set_extension(EXTENSION_ID, bytes::Bytes::copy_from_slice(&seq.to_be_bytes()))
                .expect("ext");
            let message =
                AttributedPacket::new(Packet::Rtp(rtc::rtp::Packet { header, ..Default::default() }));
            self.0.handle_read(TaggedPacket { now, transport: Default::default(), message }).expect("read");
            while self.0.poll_read().is_some() {}
        }

        fn feedback(&mut self, now: Instant) -> Vec<TransportLayerCc> {
            self.0.handle_timeout(now).expect("timeout");
            let mut out = Vec::new();
            while let Some(tagged) = self.0.poll_write() {
                if let Packet::Rtcp(packets) = tagged.message.packet {
                    out.extend(
                        packets.iter().filter_map(|p| p.as_any().downcast_ref::<TransportLayerCc>().cloned()),
                    );
                }
            }
            out
        }
    }

    /// Arrivals: (sequence number, µs after the first), in arrival order.
    fn compare(name: &str, arrivals: &[(u16, u64)]) {
        let start = Instant::now();
        let mut ours = TwccRecorder::new(1);
        let mut theirs = Theirs::new();
        let (mut our_packets, mut their_packets) = (Vec::new(), Vec::new());
        let mut next_feedback = start + FEEDBACK_INTERVAL;
        let mut out = Vec::new();
        for &(seq, after) in arrivals {
            let now = start + Duration::from_micros(after);
            while now >= next_feedback {
                out.clear();
                ours.append_feedback(&mut out);
                if !out.is_empty() {
                    our_packets.extend(parse(&out));
                }
                their_packets.extend(theirs.feedback(next_feedback));
                next_feedback += FEEDBACK_INTERVAL;
            }
            ours.record(7, seq, now);
            theirs.record(seq, now);
        }
        out.clear();
        ours.append_feedback(&mut out);
        if !out.is_empty() {
            our_packets.extend(parse(&out));
        }
        their_packets.extend(theirs.feedback(next_feedback));
        let (ours, theirs) = (reported(&our_packets), reported(&their_packets));
        assert_eq!(ours.0, theirs.0, "{name}: received packets and their arrival times");
        assert_eq!(ours.1, theirs.1, "{name}: packets reported lost");
    }

    /// A 30 fps stream of `per_frame` packets a frame, paced 1 ms apart within a frame.
    fn frames(first: u16, count: u32, per_frame: u32, lost: impl Fn(u32) -> bool) -> Vec<(u16, u64)> {
        (0..count * per_frame)
            .filter(|&i| !lost(i))
            .map(|i| {
                (
                    first.wrapping_add(i as u16),
                    u64::from(i / per_frame) * 33_333 + u64::from(i % per_frame) * 1000,
                )
            })
            .collect()
    }

    #[test]
    fn every_packet_is_reported_as_webrtc_rs_reports_it() {
        compare("no loss", &frames(1, 90, 3, |_| false));
        compare("3 % lost", &frames(100, 90, 4, |i| (i.wrapping_mul(2_654_435_761) >> 9) % 100 < 3));
        compare("across the wrap", &frames(65_400, 60, 5, |i| i % 11 == 3));
        compare("a keyframe burst", &frames(10, 30, 40, |_| false));
    }

    #[test]
    fn a_late_packet_is_reported_again_and_gaps_as_lost() {
        let start = Instant::now();
        let mut recorder = TwccRecorder::new(1);
        let at = |ms: u64| start + Duration::from_millis(ms);
        for (seq, ms) in [(10u16, 0u64), (11, 1), (13, 2)] {
            recorder.record(7, seq, at(ms));
        }
        let mut out = Vec::new();
        recorder.append_feedback(&mut out);
        let (received, lost) = reported(&parse(&out));
        assert_eq!(received.iter().map(|r| r.0).collect::<Vec<_>>(), [10, 11, 13]);
        assert_eq!(lost, [12]);
        recorder.record(7, 12, at(120)); // late
        recorder.record(7, 14, at(121));
        out.clear();
        recorder.append_feedback(&mut out);
        let (received, lost) = reported(&parse(&out));
        assert_eq!(received.iter().map(|r| r.0).collect::<Vec<_>>(), [12, 13, 14]);
        assert!(lost.is_empty());
        out.clear();
        recorder.append_feedback(&mut out);
        assert!(out.is_empty(), "nothing new: no feedback");
    }

    #[test]
    fn a_jump_reports_a_window_not_the_distance_and_packets_stay_under_the_mtu() {
        let start = Instant::now();
        let mut recorder = TwccRecorder::new(1);
        recorder.record(7, 1, start);
        recorder.record(7, 30_001, start + Duration::from_millis(1));
        let mut out = Vec::new();
        recorder.append_feedback(&mut out);
        let packets = parse(&out);
        let statuses: u32 = packets.iter().map(|p| u32::from(p.packet_status_count)).sum();
        assert!(statuses <= WINDOW as u32, "{statuses} statuses");
        assert!(out.len() <= packets.len() * 1200, "{} bytes in {} packets", out.len(), packets.len());
        // Large deltas every packet: the worst case for size.
        let mut recorder = TwccRecorder::new(1);
        for seq in 0..2000u16 {
            recorder.record(7, seq, start + Duration::from_millis(u64::from(seq) * 70 % 1000));
        }
        out.clear();
        recorder.append_feedback(&mut out);
        for packet in rtc::rtcp::packet::unmarshal(&mut &out[..]).expect("parses") {
            assert!(packet.marshal_size() <= 1200, "{} bytes", packet.marshal_size());
        }
    }

    #[test]
    fn chunks_encode_runs_and_vectors() {
        let mut out = Vec::new();
        append_chunks(&mut out, &[SMALL_DELTA; 20]);
        assert_eq!(out, (0x2000u16 | 20).to_be_bytes());
        out.clear();
        append_chunks(&mut out, &[1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0]);
        assert_eq!(out, 0xaaaau16.to_be_bytes());
        out.clear();
        append_chunks(&mut out, &[2, 1]);
        assert_eq!(out, (0xc000u16 | 2 << 12 | 1 << 10).to_be_bytes());
    }
}
