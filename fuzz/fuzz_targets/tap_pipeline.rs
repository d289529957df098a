//! Arbitrary RTP packet sequences through the tap: depacketize, assemble, decode.
//! Nothing may panic, whatever the payloads, sequence numbers or timestamps.
#![no_main]

use face_echo::seeing::tap::TapPipeline;
use face_echo::seeing::tap::assemble::TapPacket;
use face_echo::seeing::tap::decode::Vp8Decoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut decoder) = Vp8Decoder::new() else { return };
    let mut pipeline = TapPipeline::default();
    let (mut sequence_number, mut timestamp) = (0u16, 0u32);
    let mut rest = data;
    // Each packet: [flags][len: u16 BE, ≤ 1500][payload...]; flags pick the sequence
    // step (0..=3, so duplicates and gaps happen), a new timestamp, and the marker bit.
    while let [flags, hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(1500).min(tail.len());
        let (payload, next) = tail.split_at(len);
        rest = next;
        sequence_number = sequence_number.wrapping_add(u16::from(flags & 0b11));
        if flags & 0b100 != 0 {
            timestamp = timestamp.wrapping_add(3000);
        }
        let packet = TapPacket {
            sequence_number,
            timestamp,
            marker: flags & 0b1000 != 0,
            payload: bytes::Bytes::copy_from_slice(payload),
            arrived: std::time::Instant::now(),
        };
        let _ = pipeline.push(&mut decoder, &packet);
    }
});
