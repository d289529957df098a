//! Depacketize VP8 RTP (with webrtc-rs's own `Vp8Packet`) and assemble frames by
//! RTP timestamp and marker bit.
//!
//! Sans-IO: packets in, frames out, counters kept. Any sequence gap breaks the
//! frame in progress (discarded and counted) and, since the decoder's references
//! are then broken too, every frame is skipped until the next keyframe.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use rtc::rtp::codec::vp8::Vp8Packet;
use rtc::rtp::packetizer::Depacketizer;

/// What the tap needs of an RTP packet: cheap to clone (the payload is shared).
#[derive(Debug, Clone)]
pub struct TapPacket {
    pub sequence_number: u16,
    pub timestamp: u32,
    pub marker: bool,
    pub payload: Bytes,
    /// When the media plane read it off the socket: a frame's age starts at its
    /// last packet's arrival.
    pub arrived: Instant,
}

impl From<&rtc::rtp::Packet> for TapPacket {
    fn from(packet: &rtc::rtp::Packet) -> Self {
        TapPacket {
            sequence_number: packet.header.sequence_number,
            timestamp: packet.header.timestamp,
            marker: packet.header.marker,
            payload: packet.payload.clone(),
            arrived: Instant::now(),
        }
    }
}

/// One complete VP8 frame.
#[derive(Debug, Clone)]
pub struct Frame {
    pub data: Bytes,
    pub timestamp: u32,
    pub keyframe: bool,
    /// When its last packet arrived.
    pub arrived: Instant,
}

/// Counters of what the assembler saw.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AssemblyCounts {
    pub packets: u64,
    pub frames_assembled: u64,
    /// Frames that lost a packet (or were malformed) and were discarded.
    pub frames_incomplete: u64,
    /// Complete frames dropped because the decoder waits for a keyframe.
    pub frames_skipped: u64,
    pub keyframes: u64,
    /// Packets that came again or too late to use.
    pub duplicates: u64,
    /// Payloads that are not VP8 (bad descriptor).
    pub malformed: u64,
    /// Empty (padding-only) packets.
    pub padding: u64,
    pub bytes: u64,
}

/// The largest frame we assemble; beyond it the frame is discarded as incomplete.
/// A 4K keyframe at high quality is ~1 MB.
pub const MAX_FRAME_BYTES: usize = 4 * 1024 * 1024;
/// The most packets one frame may span (4 MiB in ~1 KB packets); beyond it the
/// frame is discarded: a stream of tiny packets must not grow one frame forever.
pub const MAX_FRAME_PACKETS: u32 = 4096;

/// The VP8 payload after its descriptor, parsed by webrtc-rs's `Vp8Packet`.
///
/// `Vp8Packet::depacketize` refuses payloads under 4 bytes, yet a payloader may end
/// a frame with a 2- or 3-byte packet (descriptor + 1-2 bytes; RFC 7741 allows it,
/// and webrtc-rs's own payloader makes them). Such a payload is parsed from a copy
/// padded with zeros, and the descriptor length it reports is applied to the real bytes.
fn depacketize(descriptor: &mut Vp8Packet, payload: &Bytes) -> Option<Bytes> {
    const MIN_LEN: usize = 4;
    if payload.len() >= MIN_LEN {
        return descriptor.depacketize(payload).ok();
    }
    let mut padded = payload.to_vec();
    padded.resize(MIN_LEN, 0);
    let padded = Bytes::from(padded);
    let header_len = padded.len() - descriptor.depacketize(&padded).ok()?.len();
    (header_len < payload.len()).then(|| payload.slice(header_len..))
}

#[derive(Debug)]
struct Partial {
    timestamp: u32,
    arrived: Instant,
    data: BytesMut,
    packets: u32,
    broken: bool,
}

#[derive(Debug)]
pub struct FrameAssembler {
    last_sequence: Option<u16>,
    current: Option<Partial>,
    waiting_for_keyframe: bool,
    counts: AssemblyCounts,
}

impl Default for FrameAssembler {
    fn default() -> Self {
        FrameAssembler {
            last_sequence: None,
            current: None,
            waiting_for_keyframe: true,
            counts: AssemblyCounts::default(),
        }
    }
}

impl FrameAssembler {
    pub fn counts(&self) -> AssemblyCounts {
        self.counts
    }

    /// True while frames are skipped until a keyframe arrives.
    pub fn waiting_for_keyframe(&self) -> bool {
        self.waiting_for_keyframe
    }

    /// Skip frames until the next keyframe (e.g. after a decode error).
    pub fn require_keyframe(&mut self) {
        self.waiting_for_keyframe = true;
    }

    /// Takes one packet; returns a frame when this packet completed one.
    pub fn push(&mut self, packet: &TapPacket) -> Option<Frame> {
        self.counts.packets += 1;
        if let Some(last) = self.last_sequence {
            let step = packet.sequence_number.wrapping_sub(last);
            if step == 0 || step > u16::MAX / 2 {
                self.counts.duplicates += 1;
                return None;
            }
            if step > 1 {
                self.break_current();
                self.waiting_for_keyframe = true;
            }
        }
        self.last_sequence = Some(packet.sequence_number);
        if packet.payload.is_empty() {
            self.counts.padding += 1;
            return None;
        }

        if self.current.as_ref().is_some_and(|p| p.timestamp != packet.timestamp) {
            // A new timestamp before the old frame's marker: the old one lost its end.
            self.break_current();
            self.waiting_for_keyframe = true;
        }

        let mut descriptor = Vp8Packet::default();
        let body = depacketize(&mut descriptor, &packet.payload);
        if body.is_none() {
            self.counts.malformed += 1;
        }
        let starts_frame = descriptor.s == 1 && descriptor.pid == 0;
        let partial = self.current.get_or_insert_with(|| Partial {
            timestamp: packet.timestamp,
            arrived: packet.arrived,
            data: BytesMut::new(),
            packets: 0,
            // A frame must begin with the start of partition 0.
            broken: !starts_frame,
        });
        partial.packets = partial.packets.saturating_add(1);
        partial.arrived = packet.arrived;
        match body {
            Some(body)
                if !partial.broken
                    && partial.packets <= MAX_FRAME_PACKETS
                    && partial.data.len() + body.len() <= MAX_FRAME_BYTES =>
            {
                partial.data.extend_from_slice(&body)
            }
            // A broken frame keeps no bytes: it is only waited out to its marker.
            _ => {
                partial.broken = true;
                partial.data = BytesMut::new();
            }
        }
        if !packet.marker {
            return None;
        }
        let partial = self.current.take()?;
        self.finish(partial)
    }

    fn break_current(&mut self) {
        if self.current.take().is_some() {
            self.counts.frames_incomplete += 1;
        }
    }

    fn finish(&mut self, partial: Partial) -> Option<Frame> {
        if partial.broken || partial.data.is_empty() {
            self.counts.frames_incomplete += 1;
            self.waiting_for_keyframe = true;
            return None;
        }
        let data = partial.data.freeze();
        // VP8 frame tag (RFC 6386 §9.1): bit 0 of the first byte is 0 on keyframes.
        let keyframe = data[0] & 0x01 == 0;
        self.counts.frames_assembled += 1;
        self.counts.bytes += data.len() as u64;
        if keyframe {
            self.counts.keyframes += 1;
            self.waiting_for_keyframe = false;
        } else if self.waiting_for_keyframe {
            self.counts.frames_skipped += 1;
            return None;
        }
        Some(Frame { data, timestamp: partial.timestamp, keyframe, arrived: partial.arrived })
    }
}
