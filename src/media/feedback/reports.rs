//! Receiver and sender reports (RFC 3550 §6.4): what one incoming stream's
//! reception looks like (loss, jitter, the last sender report), and what one
//! outgoing stream has sent. Constant work and memory per packet and per report,
//! whatever the sequence numbers do.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::media::rtcp::{ReportBlock, SenderInfo};

/// How often reports go out (webrtc-rs's interval; at video rates it stays far
/// under RFC 3550's 5 % share of the session's bandwidth).
pub(crate) const REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// The reception of one incoming stream, kept as RFC 3550 A.1, A.3 and A.8 do.
#[derive(Debug)]
pub(crate) struct ReceiveStats {
    clock_rate: f64,
    /// Seen a packet yet.
    started: bool,
    max_sequence: u16,
    /// Sequence number wraps, already shifted: the extended highest is `cycles | max`.
    cycles: u32,
    /// The first packet's extended sequence number.
    base: u32,
    received: u32,
    expected_prior: u32,
    received_prior: u32,
    /// Interarrival jitter in timestamp units (A.8), as webrtc-rs keeps it.
    jitter: f64,
    last_arrival: Option<Instant>,
    last_timestamp: u32,
    /// The middle 32 bits of the last sender report's NTP time, and when it came.
    last_sender_report: Option<(u32, Instant)>,
}

impl ReceiveStats {
    pub(crate) fn new(clock_rate: u32) -> ReceiveStats {
        ReceiveStats {
            clock_rate: f64::from(clock_rate),
            started: false,
            max_sequence: 0,
            cycles: 0,
            base: 0,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            jitter: 0.0,
            last_arrival: None,
            last_timestamp: 0,
            last_sender_report: None,
        }
    }

    /// One packet arrived at `now`.
    pub(crate) fn on_packet(&mut self, sequence_number: u16, timestamp: u32, now: Instant) {
        if !self.started {
            self.started = true;
            self.max_sequence = sequence_number;
            self.base = u32::from(sequence_number);
            self.expected_prior = 0;
        } else {
            let ahead = sequence_number.wrapping_sub(self.max_sequence);
            if ahead != 0 && ahead < 1 << 15 {
                if sequence_number < self.max_sequence {
                    self.cycles = self.cycles.wrapping_add(1 << 16);
                }
                self.max_sequence = sequence_number;
            }
        }
        self.received = self.received.wrapping_add(1);
        if let Some(last) = self.last_arrival {
            let arrival = now.saturating_duration_since(last).as_secs_f64() * self.clock_rate;
            let sent = f64::from(timestamp.wrapping_sub(self.last_timestamp) as i32);
            self.jitter += ((arrival - sent).abs() - self.jitter) / 16.0;
        }
        self.last_arrival = Some(now);
        self.last_timestamp = timestamp;
    }

    /// The stream's sender said where it is (its NTP time, the 64-bit form).
    pub(crate) fn on_sender_report(&mut self, ntp_time: u64, now: Instant) {
        self.last_sender_report = Some(((ntp_time >> 16) as u32, now));
    }

    fn extended_highest(&self) -> u32 {
        self.cycles | u32::from(self.max_sequence)
    }

    /// The report block for now (its SSRC left 0 for the caller); starts the next
    /// reporting interval. `None` before any packet.
    pub(crate) fn report(&mut self, now: Instant) -> Option<ReportBlock> {
        if !self.started {
            return None;
        }
        let expected = self.extended_highest().wrapping_sub(self.base).wrapping_add(1);
        let expected_interval = expected.wrapping_sub(self.expected_prior);
        let received_interval = self.received.wrapping_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = i64::from(expected_interval) - i64::from(received_interval);
        let fraction_lost = match (expected_interval, lost_interval) {
            (0, _) | (_, ..=0) => 0,
            (expected, lost) => ((lost << 8) / i64::from(expected)).min(255) as u8,
        };
        let total_lost = (i64::from(expected) - i64::from(self.received)).clamp(0, 0x00ff_ffff) as u32;
        let (last_sender_report, delay_since_last_sender_report) = match self.last_sender_report {
            Some((middle, at)) => {
                (middle, (now.saturating_duration_since(at).as_secs_f64() * 65536.0) as u32)
            }
            None => (0, 0),
        };
        Some(ReportBlock {
            ssrc: 0,
            fraction_lost,
            total_lost,
            extended_highest_sequence: self.extended_highest(),
            jitter: self.jitter as u32,
            last_sender_report,
            delay_since_last_sender_report,
        })
    }
}

/// What one outgoing stream has sent, for its sender reports (webrtc-rs's rule:
/// the RTP time advances from the first packet of the newest frame in order).
#[derive(Debug)]
pub(crate) struct SendStats {
    ssrc: u32,
    clock_rate: f64,
    last_sequence: Option<u16>,
    /// The newest frame's RTP timestamp and when its first packet left.
    frame: Option<(u32, Instant)>,
    packets: u32,
    octets: u32,
}

impl SendStats {
    pub(crate) fn new(ssrc: u32, clock_rate: u32) -> SendStats {
        SendStats {
            ssrc,
            clock_rate: f64::from(clock_rate),
            last_sequence: None,
            frame: None,
            packets: 0,
            octets: 0,
        }
    }

    /// One packet with `payload_len` payload bytes left at `now`.
    pub(crate) fn on_packet(
        &mut self,
        sequence_number: u16,
        timestamp: u32,
        payload_len: usize,
        now: Instant,
    ) {
        let in_order = self.last_sequence.is_none_or(|last| {
            let ahead = sequence_number.wrapping_sub(last);
            ahead != 0 && ahead < 1 << 15
        });
        if in_order {
            self.last_sequence = Some(sequence_number);
            if self.frame.is_none_or(|(frame, _)| frame != timestamp) {
                self.frame = Some((timestamp, now));
            }
        }
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(u32::try_from(payload_len).unwrap_or(u32::MAX));
    }

    /// The sender report for now; `None` before any packet.
    pub(crate) fn report(&self, now: Instant) -> Option<SenderInfo> {
        let (timestamp, at) = self.frame?;
        let elapsed = (now.saturating_duration_since(at).as_secs_f64() * self.clock_rate) as u32;
        Some(SenderInfo {
            ssrc: self.ssrc,
            ntp_time: ntp_time(now),
            rtp_time: timestamp.wrapping_add(elapsed),
            packet_count: self.packets,
            octet_count: self.octets,
        })
    }
}

/// Seconds from the NTP epoch (1900) to the Unix epoch.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// The wall-clock time of `instant` as a 64-bit NTP timestamp (RFC 3550 §4).
pub(crate) fn ntp_time(instant: Instant) -> u64 {
    let now = Instant::now();
    let wall = match now.checked_duration_since(instant) {
        Some(ago) => SystemTime::now() - ago,
        None => SystemTime::now() + instant.duration_since(now),
    };
    let since_unix = wall.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_unix.as_secs() + NTP_UNIX_OFFSET;
    let fraction = (u64::from(since_unix.subsec_nanos()) << 32) / 1_000_000_000;
    (seconds << 32) | fraction
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::interceptor::{
        AttributedPacket, Interceptor, Packet, ReceiverReportBuilder, StreamInfo, TaggedPacket,
    };
    use rtc::rtcp::receiver_report::ReceiverReport;
    use rtc::sansio::Protocol;

    /// webrtc-rs's receiver report interceptor, fed the same packets.
    struct Theirs {
        chain: Box<dyn Interceptor>,
    }

    impl Theirs {
        fn new(ssrc: u32) -> Theirs {
            let registry = rtc::interceptor::Registry::new()
                .with(rtc::interceptor::Slot::ReceiverReport, ReceiverReportBuilder::new().build());
            let mut chain: Box<dyn Interceptor> = Box::new(registry.build());
            chain.bind_remote_stream(&StreamInfo { ssrc, clock_rate: 90_000, ..Default::default() });
            Theirs { chain }
        }

        fn packet(&mut self, ssrc: u32, sequence_number: u16, timestamp: u32, now: Instant) {
            let packet = rtc::rtp::Packet {
                header: rtc::rtp::header::Header { ssrc, sequence_number, timestamp, ..Default::default() },
                ..Default::default()
            };
            self.chain
                .handle_read(TaggedPacket {
                    now,
                    transport: Default::default(),
                    message: AttributedPacket::new(Packet::Rtp(packet)),
                })
                .expect("read");
            while self.chain.poll_read().is_some() {}
        }

        fn report(&mut self, now: Instant) -> rtc::rtcp::reception_report::ReceptionReport {
            self.chain.handle_timeout(now).expect("timeout");
            while let Some(out) = self.chain.poll_write() {
                if let Packet::Rtcp(packets) = out.message.packet {
                    for packet in packets {
                        if let Some(rr) = packet.as_any().downcast_ref::<ReceiverReport>() {
                            return rr.reports[0].clone();
                        }
                    }
                }
            }
            panic!("no receiver report");
        }
    }

    /// A 30 fps stream of 3 packets per frame from `first`, packets in `lost` dropped,
    /// with arrival times that wobble (jitter), over `frames` frames.
    fn stream(first: u16, frames: u32, lost: impl Fn(u32) -> bool) -> Vec<(u16, u32, Duration)> {
        let mut packets = Vec::new();
        for index in 0..frames * 3 {
            let frame = index / 3;
            let wobble = Duration::from_micros(u64::from((index * 7919) % 5000));
            let arrival = Duration::from_micros(u64::from(frame) * 33_333) + wobble;
            if !lost(index) {
                packets.push((first.wrapping_add(index as u16), frame * 3000, arrival));
            }
        }
        packets
    }

    #[test]
    fn loss_and_jitter_figures_are_webrtc_rs_figures() {
        type Lost = Box<dyn Fn(u32) -> bool>;
        let patterns: [(&str, u16, Lost); 4] = [
            ("no loss", 1000, Box::new(|_| false)),
            ("3 % random loss", 7, Box::new(|i| i.wrapping_mul(2_654_435_761) % 100 < 3)),
            ("bursts of 20", 500, Box::new(|i| i % 300 < 20 && i > 0)),
            ("across the wrap", 65_000, Box::new(|i| i % 17 == 5)),
        ];
        for (name, first, lost) in patterns {
            let ssrc = 0x1234_5678;
            let start = Instant::now();
            let (mut ours, mut theirs) = (ReceiveStats::new(90_000), Theirs::new(ssrc));
            let mut compared = 0;
            for (sequence, timestamp, arrival) in stream(first, 300, lost) {
                let now = start + arrival;
                // Reports when theirs fall due (a second after the first packet, then every second).
                while let Some(due) = theirs.chain.poll_timeout().filter(|due| *due <= now) {
                    let (mine, webrtc) = (ours.report(due).expect("a report"), theirs.report(due));
                    assert_eq!(
                        (mine.fraction_lost, mine.total_lost, mine.extended_highest_sequence, mine.jitter),
                        (webrtc.fraction_lost, webrtc.total_lost, webrtc.last_sequence_number, webrtc.jitter),
                        "{name}"
                    );
                    compared += 1;
                }
                ours.on_packet(sequence, timestamp, now);
                theirs.packet(ssrc, sequence, timestamp, now);
            }
            assert_eq!(compared, 9, "{name}: a report a second");
        }
    }

    #[test]
    fn a_sequence_jump_costs_nothing_and_counts_the_gap_as_lost() {
        let now = Instant::now();
        let mut stats = ReceiveStats::new(90_000);
        stats.on_packet(10, 0, now);
        stats.on_packet(10 + 32_000, 3000, now); // far ahead: counted, not walked
        let block = stats.report(now).expect("report");
        assert_eq!(block.extended_highest_sequence, 32_010);
        assert_eq!(block.total_lost, 31_999);
        stats.on_packet(5, 6000, now); // far behind now: old, not a new maximum
        assert_eq!(stats.report(now).expect("report").extended_highest_sequence, 32_010);
    }

    #[test]
    fn the_last_sender_report_and_its_delay_are_reported() {
        let start = Instant::now();
        let mut stats = ReceiveStats::new(90_000);
        stats.on_packet(1, 0, start);
        stats.on_sender_report(0x0011_2233_4455_6677, start);
        let block = stats.report(start + Duration::from_millis(500)).expect("report");
        assert_eq!(block.last_sender_report, 0x2233_4455);
        assert_eq!(block.delay_since_last_sender_report, 32_768);
    }

    #[test]
    fn sender_reports_advance_rtp_time_from_the_newest_frame_and_count_what_left() {
        let start = Instant::now();
        let mut stats = SendStats::new(9, 90_000);
        assert!(stats.report(start).is_none());
        stats.on_packet(1, 3000, 1000, start);
        stats.on_packet(2, 3000, 500, start + Duration::from_millis(5));
        stats.on_packet(0, 0, 100, start + Duration::from_millis(6)); // late: counted only
        let report = stats.report(start + Duration::from_millis(100)).expect("report");
        assert_eq!(
            (report.ssrc, report.rtp_time, report.packet_count, report.octet_count),
            (9, 3000 + 9000, 3, 1600)
        );
        let unix = (report.ntp_time >> 32) - NTP_UNIX_OFFSET;
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        assert!(unix.abs_diff(wall) <= 1, "NTP time is the wall clock");
    }
}
