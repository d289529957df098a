//! RTCP read and written where it lies (RFC 3550 §6, RFC 4585 §6, RFC 5104 §4.3.1):
//! only what the media plane reads (sender reports, NACK, PLI, FIR) is looked at,
//! everything else is stepped over by its length, and every count comes from the
//! bytes that are there, so a packet costs work in proportion to its size. What the
//! plane writes goes into a buffer it keeps, with no allocation once that has grown.

/// RTCP packet types (RFC 3550 §12.1, RFC 4585 §6.1).
pub(crate) const SENDER_REPORT: u8 = 200;
pub(crate) const RECEIVER_REPORT: u8 = 201;
pub(crate) const TRANSPORT_FEEDBACK: u8 = 205;
pub(crate) const PAYLOAD_FEEDBACK: u8 = 206;
/// Feedback message types: generic NACK (RTPFB), transport-cc (RTPFB, draft-holmer),
/// PLI and FIR (PSFB).
pub(crate) const FMT_NACK: u8 = 1;
pub(crate) const FMT_TRANSPORT_CC: u8 = 15;
pub(crate) const FMT_PLI: u8 = 1;
pub(crate) const FMT_FIR: u8 = 4;
/// Report blocks one SR or RR can carry (a 5-bit count).
pub(crate) const MAX_REPORT_BLOCKS: usize = 31;

/// One packet of a compound RTCP packet: its header fields and its body (after the
/// 4-byte header, padding removed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RtcpPacket<'a> {
    /// The 5-bit count or feedback message type.
    pub count: u8,
    pub packet_type: u8,
    pub body: &'a [u8],
}

/// The packets of a compound RTCP packet, in order; stops at the first one whose
/// header is malformed (then [`Compound::malformed`] says so).
pub(crate) struct Compound<'a> {
    rest: &'a [u8],
    malformed: bool,
}

impl<'a> Compound<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Compound<'a> {
        Compound { rest: data, malformed: false }
    }

    /// True when a packet could not be read: its version, length or padding was wrong.
    pub(crate) fn malformed(&self) -> bool {
        self.malformed
    }
}

impl<'a> Iterator for Compound<'a> {
    type Item = RtcpPacket<'a>;

    fn next(&mut self) -> Option<RtcpPacket<'a>> {
        if self.rest.is_empty() {
            return None;
        }
        let read = (|| {
            let header = self.rest.get(..4)?;
            if header[0] >> 6 != 2 {
                return None;
            }
            let len = 4 * (usize::from(u16::from_be_bytes([header[2], header[3]])) + 1);
            let packet = self.rest.get(..len)?;
            let mut body = &packet[4..];
            if header[0] & 0x20 != 0 {
                let padding = usize::from(*body.last()?);
                if padding == 0 || padding > body.len() {
                    return None;
                }
                body = &body[..body.len() - padding];
            }
            Some((RtcpPacket { count: header[0] & 0x1f, packet_type: header[1], body }, len))
        })();
        match read {
            Some((packet, len)) => {
                self.rest = &self.rest[len..];
                Some(packet)
            }
            None => {
                self.malformed = true;
                self.rest = &[];
                None
            }
        }
    }
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

impl<'a> RtcpPacket<'a> {
    /// A sender report's SSRC and NTP timestamp.
    pub(crate) fn sender_report(&self) -> Option<(u32, u64)> {
        if self.packet_type != SENDER_REPORT {
            return None;
        }
        let ntp = (u64::from(u32_at(self.body, 4)?) << 32) | u64::from(u32_at(self.body, 8)?);
        Some((u32_at(self.body, 0)?, ntp))
    }

    /// The media SSRC of a feedback message (RFC 4585 §6.1).
    pub(crate) fn media_ssrc(&self) -> Option<u32> {
        u32_at(self.body, 4)
    }

    /// A generic NACK's (packet id, bitmask of the 16 after it) pairs.
    pub(crate) fn nack_pairs(&self) -> Option<impl Iterator<Item = (u16, u16)> + 'a> {
        if self.packet_type != TRANSPORT_FEEDBACK || self.count != FMT_NACK || self.body.len() < 8 {
            return None;
        }
        let pairs = self.body[8..].chunks_exact(4);
        Some(
            pairs
                .map(|pair| (u16::from_be_bytes([pair[0], pair[1]]), u16::from_be_bytes([pair[2], pair[3]]))),
        )
    }

    /// Whether this asks the sender of `ssrc` for a keyframe (PLI for it, or a FIR
    /// entry naming it).
    pub(crate) fn asks_keyframe_of(&self, ssrc: u32) -> bool {
        match (self.packet_type, self.count) {
            (PAYLOAD_FEEDBACK, FMT_PLI) => self.media_ssrc() == Some(ssrc),
            (PAYLOAD_FEEDBACK, FMT_FIR) => self
                .body
                .get(8..)
                .is_some_and(|fci| fci.chunks_exact(8).any(|entry| u32_at(entry, 0) == Some(ssrc))),
            _ => false,
        }
    }
}

/// One reception report block (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ReportBlock {
    pub ssrc: u32,
    pub fraction_lost: u8,
    /// Cumulative packets lost, 24 bits.
    pub total_lost: u32,
    pub extended_highest_sequence: u32,
    pub jitter: u32,
    pub last_sender_report: u32,
    pub delay_since_last_sender_report: u32,
}

/// Appends one RTCP packet: the header, then what `body` writes, then its length.
fn append(out: &mut Vec<u8>, count: u8, packet_type: u8, body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0x80 | (count & 0x1f), packet_type, 0, 0]);
    body(out);
    let words = (out.len() - start) / 4 - 1;
    out[start + 2..start + 4].copy_from_slice(&(words as u16).to_be_bytes());
}

fn append_blocks(out: &mut Vec<u8>, blocks: &[ReportBlock]) {
    for block in blocks {
        out.extend_from_slice(&block.ssrc.to_be_bytes());
        out.push(block.fraction_lost);
        out.extend_from_slice(&block.total_lost.min(0x00ff_ffff).to_be_bytes()[1..]);
        for word in [
            block.extended_highest_sequence,
            block.jitter,
            block.last_sender_report,
            block.delay_since_last_sender_report,
        ] {
            out.extend_from_slice(&word.to_be_bytes());
        }
    }
}

/// What a sender report says of its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SenderInfo {
    pub ssrc: u32,
    pub ntp_time: u64,
    pub rtp_time: u32,
    pub packet_count: u32,
    pub octet_count: u32,
}

/// Appends a sender report with (at most [`MAX_REPORT_BLOCKS`] of) `blocks`.
pub(crate) fn append_sender_report(out: &mut Vec<u8>, info: &SenderInfo, blocks: &[ReportBlock]) {
    let blocks = &blocks[..blocks.len().min(MAX_REPORT_BLOCKS)];
    append(out, blocks.len() as u8, SENDER_REPORT, |out| {
        out.extend_from_slice(&info.ssrc.to_be_bytes());
        out.extend_from_slice(&info.ntp_time.to_be_bytes());
        for word in [info.rtp_time, info.packet_count, info.octet_count] {
            out.extend_from_slice(&word.to_be_bytes());
        }
        append_blocks(out, blocks);
    });
}

/// Appends a receiver report from `ssrc` with (at most 31 of) `blocks`.
pub(crate) fn append_receiver_report(out: &mut Vec<u8>, ssrc: u32, blocks: &[ReportBlock]) {
    let blocks = &blocks[..blocks.len().min(MAX_REPORT_BLOCKS)];
    append(out, blocks.len() as u8, RECEIVER_REPORT, |out| {
        out.extend_from_slice(&ssrc.to_be_bytes());
        append_blocks(out, blocks);
    });
}

/// Appends a generic NACK for `lost` (ascending, wrapping sequence numbers): each
/// pair names a packet and a bitmask of the 16 after it (RFC 4585 §6.2.1). Nothing
/// is appended when `lost` is empty.
pub(crate) fn append_nack(out: &mut Vec<u8>, sender: u32, media: u32, lost: impl IntoIterator<Item = u16>) {
    let mut lost = lost.into_iter().peekable();
    if lost.peek().is_none() {
        return;
    }
    append(out, FMT_NACK, TRANSPORT_FEEDBACK, |out| {
        out.extend_from_slice(&sender.to_be_bytes());
        out.extend_from_slice(&media.to_be_bytes());
        let mut pair: Option<(u16, u16)> = None;
        for seq in lost {
            match &mut pair {
                Some((id, _)) if seq == *id => {}
                Some((id, mask)) if (1..=16).contains(&seq.wrapping_sub(*id)) => {
                    *mask |= 1 << (seq.wrapping_sub(*id) - 1);
                }
                _ => {
                    if let Some((id, mask)) = pair.replace((seq, 0)) {
                        out.extend_from_slice(&id.to_be_bytes());
                        out.extend_from_slice(&mask.to_be_bytes());
                    }
                }
            }
        }
        if let Some((id, mask)) = pair {
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&mask.to_be_bytes());
        }
    });
}

/// Appends a picture loss indication asking `media`'s sender for a keyframe.
pub(crate) fn append_pli(out: &mut Vec<u8>, sender: u32, media: u32) {
    append(out, FMT_PLI, PAYLOAD_FEEDBACK, |out| {
        out.extend_from_slice(&sender.to_be_bytes());
        out.extend_from_slice(&media.to_be_bytes());
    });
}

/// Appends a transport feedback packet about `media`'s transport (transport-cc)
/// whose feedback control information `fci` writes (`feedback::twcc`), padded to
/// a 32-bit boundary as RFC 3550 §6.4.1 pads (P bit, the count in the last byte).
pub(crate) fn append_transport_cc(
    out: &mut Vec<u8>,
    sender: u32,
    media: u32,
    fci: impl FnOnce(&mut Vec<u8>),
) {
    let start = out.len();
    append(out, FMT_TRANSPORT_CC, TRANSPORT_FEEDBACK, |out| {
        out.extend_from_slice(&sender.to_be_bytes());
        out.extend_from_slice(&media.to_be_bytes());
        fci(out);
        let padding = (4 - (out.len() - start) % 4) % 4;
        if padding > 0 {
            out.extend(std::iter::repeat_n(0, padding - 1));
            out.push(padding as u8);
            out[start] |= 0x20;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::rtcp::payload_feedbacks::full_intra_request::{FirEntry, FullIntraRequest};
    use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
    use rtc::rtcp::receiver_report::ReceiverReport;
    use rtc::rtcp::reception_report::ReceptionReport;
    use rtc::rtcp::sender_report::SenderReport;
    use rtc::rtcp::transport_feedbacks::transport_layer_nack::{
        NackPair, TransportLayerNack, nack_pairs_from_sequence_numbers,
    };

    fn theirs(bytes: &[u8]) -> Vec<Box<dyn rtc::rtcp::Packet>> {
        rtc::rtcp::packet::unmarshal(&mut &bytes[..]).expect("rtc parses what we wrote")
    }

    fn block(ssrc: u32) -> ReportBlock {
        ReportBlock {
            ssrc,
            fraction_lost: 12,
            total_lost: 345,
            extended_highest_sequence: 0x0001_0203,
            jitter: 77,
            last_sender_report: 0x1122_3344,
            delay_since_last_sender_report: 6553,
        }
    }

    fn reception(block: &ReportBlock) -> ReceptionReport {
        ReceptionReport {
            ssrc: block.ssrc,
            fraction_lost: block.fraction_lost,
            total_lost: block.total_lost,
            last_sequence_number: block.extended_highest_sequence,
            jitter: block.jitter,
            last_sender_report: block.last_sender_report,
            delay: block.delay_since_last_sender_report,
        }
    }

    #[test]
    fn reports_are_written_as_rtc_reads_them() {
        let mut out = Vec::new();
        let info = SenderInfo {
            ssrc: 9,
            ntp_time: 0x0102_0304_0506_0708,
            rtp_time: 90_000,
            packet_count: 5,
            octet_count: 500,
        };
        append_sender_report(&mut out, &info, &[block(1), block(2)]);
        append_receiver_report(&mut out, 10, &[block(3)]);
        let packets = theirs(&out);
        let sr = packets[0].as_any().downcast_ref::<SenderReport>().expect("SR");
        assert_eq!(
            (sr.ssrc, sr.ntp_time, sr.rtp_time, sr.packet_count, sr.octet_count),
            (9, info.ntp_time, 90_000, 5, 500)
        );
        assert_eq!(sr.reports, vec![reception(&block(1)), reception(&block(2))]);
        let rr = packets[1].as_any().downcast_ref::<ReceiverReport>().expect("RR");
        assert_eq!((rr.ssrc, rr.reports.clone()), (10, vec![reception(&block(3))]));
        // And we read back what we wrote.
        let ours: Vec<RtcpPacket> = Compound::new(&out).collect();
        assert_eq!(ours.len(), 2);
        assert_eq!(ours[0].sender_report(), Some((9, info.ntp_time)));
    }

    #[test]
    fn nacks_are_the_pairs_rtc_makes_and_read_back() {
        let lost = [5u16, 6, 6, 21, 22, 40, 1000, 1003];
        let mut out = Vec::new();
        append_nack(&mut out, 1, 2, lost.iter().copied());
        let packets = theirs(&out);
        let nack = packets[0].as_any().downcast_ref::<TransportLayerNack>().expect("NACK");
        assert_eq!((nack.sender_ssrc, nack.media_ssrc), (1, 2));
        assert_eq!(nack.nacks, nack_pairs_from_sequence_numbers(&lost));
        let ours = Compound::new(&out).next().expect("one packet");
        let pairs: Vec<NackPair> = ours
            .nack_pairs()
            .expect("a NACK")
            .map(|(packet_id, lost_packets)| NackPair { packet_id, lost_packets })
            .collect();
        assert_eq!(pairs, nack.nacks);
        // Sequence numbers wrap: 65535 and the 0 after it share a pair.
        let mut wrapped = Vec::new();
        append_nack(&mut wrapped, 1, 2, [65_535, 0, 3]);
        let pairs: Vec<(u16, u16)> = Compound::new(&wrapped).next().unwrap().nack_pairs().unwrap().collect();
        assert_eq!(pairs, [(65_535, 0b1001)]);
        let mut none = Vec::new();
        append_nack(&mut none, 1, 2, std::iter::empty());
        assert!(none.is_empty());
    }

    #[test]
    fn keyframe_requests_are_recognised_by_the_ssrc_they_name() {
        let pli = PictureLossIndication { sender_ssrc: 1, media_ssrc: 42 };
        let fir = FullIntraRequest {
            sender_ssrc: 1,
            media_ssrc: 0,
            fir: vec![FirEntry { ssrc: 7, sequence_number: 1 }, FirEntry { ssrc: 43, sequence_number: 2 }],
        };
        let bytes = rtc::rtcp::packet::marshal(&[Box::new(pli) as Box<dyn rtc::rtcp::Packet>, Box::new(fir)])
            .unwrap();
        let packets: Vec<RtcpPacket> = Compound::new(&bytes).collect();
        assert!(packets[0].asks_keyframe_of(42) && !packets[0].asks_keyframe_of(43));
        assert!(
            packets[1].asks_keyframe_of(43)
                && packets[1].asks_keyframe_of(7)
                && !packets[1].asks_keyframe_of(42)
        );
        let mut ours = Vec::new();
        append_pli(&mut ours, 1, 42);
        assert_eq!(ours, bytes[..12]);
    }

    #[test]
    fn a_malformed_packet_ends_the_walk_and_is_flagged() {
        let mut out = Vec::new();
        append_pli(&mut out, 1, 2);
        let mut long = out.clone();
        long[3] = 200; // claims 804 bytes
        let mut walk = Compound::new(&long);
        assert_eq!(walk.next(), None);
        assert!(walk.malformed());
        let mut bad_version = out.clone();
        bad_version[0] &= 0x3f;
        let mut walk = Compound::new(&bad_version);
        assert_eq!(walk.next(), None);
        assert!(walk.malformed());
        // Every truncation of two packets reads at most the whole ones.
        let mut two = out.clone();
        two.extend_from_slice(&out);
        for len in 0..two.len() {
            let mut walk = Compound::new(&two[..len]);
            let read = walk.by_ref().count();
            assert_eq!(read, len / 12);
            assert_eq!(walk.malformed(), len % 12 != 0);
        }
    }
}
