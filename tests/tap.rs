//! The decode tap's pipeline (depacketize → assemble → libvpx decode) on real VP8
//! from libvpx, packetized by webrtc-rs's payloader, clean and damaged.

use face_echo::loadgen::clip::{encode_test_pattern, packetize};
use face_echo::seeing::tap::assemble::TapPacket;
use face_echo::seeing::tap::decode::Vp8Decoder;
use face_echo::seeing::tap::{Decoded, TapPipeline};

/// What feeding `packets` through a fresh pipeline gave.
#[derive(Debug, Default)]
struct Run {
    decoded: usize,
    errors: usize,
    refused: usize,
    sizes: Vec<(u32, u32)>,
    pipeline: TapPipeline,
}

fn run(packets: &[TapPacket]) -> Run {
    let mut decoder = Vp8Decoder::new().expect("decoder");
    let mut out = Run::default();
    for packet in packets {
        match out.pipeline.push(&mut decoder, packet) {
            Some(Decoded::Picture { frame, .. }) => {
                out.decoded += 1;
                out.sizes.push((frame.width, frame.height));
            }
            Some(Decoded::Error) => out.errors += 1,
            Some(Decoded::Refused(_)) => out.refused += 1,
            None => {}
        }
    }
    out
}

/// Two clips back to back (each starts with a keyframe), as one RTP stream.
fn stream(first: (u32, u32, usize), second: (u32, u32, usize)) -> (Vec<TapPacket>, Vec<usize>) {
    let mut frames = encode_test_pattern(first.0, first.1, first.2, 30, 500).unwrap();
    frames.extend(encode_test_pattern(second.0, second.1, second.2, 30, 500).unwrap());
    let packets = packetize(&frames, 1234, 30).unwrap();
    // Index of the first packet of each frame, to aim damage at a frame.
    let mut starts = vec![0];
    for (i, pair) in packets.windows(2).enumerate() {
        if pair[0].header.timestamp != pair[1].header.timestamp {
            starts.push(i + 1);
        }
    }
    (packets.iter().map(TapPacket::from).collect(), starts)
}

#[test]
fn a_keyframe_over_the_pixel_budget_is_refused_with_what_follows_it() {
    let mut frames = encode_test_pattern(320, 240, 10, 30, 500).unwrap();
    frames.extend(encode_test_pattern(320, 240, 10, 30, 500).unwrap());
    // The first keyframe claims 16383x16383 (RFC 6386 §9.1: bytes 6..10), as the
    // fuzzer's 2 GB input did; its 9 inter frames refer to it.
    let mut huge = frames[0].data.to_vec();
    huge[6..10].copy_from_slice(&[0xff, 0x3f, 0xff, 0x3f]);
    frames[0].data = huge.into();
    let packets: Vec<TapPacket> = packetize(&frames, 1234, 30).unwrap().iter().map(TapPacket::from).collect();
    let run = run(&packets);
    assert_eq!(run.refused, 10, "the keyframe and its 9 inter frames");
    assert_eq!(run.decoded, 10, "the second clip, from its own keyframe");
    assert_eq!(run.errors, 0);
    assert!(run.sizes.iter().all(|size| *size == (320, 240)));
}

#[test]
fn clean_stream_decodes_every_frame_at_its_size() {
    let (packets, _) = stream((320, 240, 30), (320, 240, 30));
    let run = run(&packets);
    let counts = run.pipeline.assembler.counts();
    assert_eq!(run.decoded, 60);
    assert_eq!(run.errors, 0);
    assert_eq!(counts.frames_assembled, 60);
    assert_eq!(counts.frames_incomplete, 0);
    assert_eq!(counts.keyframes, 2);
    assert!(run.sizes.iter().all(|size| *size == (320, 240)));
}

#[test]
fn a_lost_packet_discards_its_frame_and_recovery_waits_for_the_keyframe() {
    let (mut packets, starts) = stream((320, 240, 30), (320, 240, 30));
    // The first inter frame of two or more packets (one that loses all its packets is
    // not incomplete, just gone): lose its first packet.
    let broken = (1..29).find(|&k| starts[k + 1] - starts[k] >= 2).expect("a frame of several packets");
    packets.remove(starts[broken]);
    let run = run(&packets);
    let counts = run.pipeline.assembler.counts();
    assert_eq!(counts.frames_incomplete, 1, "{counts:?}");
    // The frames after it reference the broken one: skipped until frame 30, the keyframe.
    assert_eq!(counts.frames_skipped, 29 - broken as u64, "{counts:?}");
    assert_eq!(run.decoded, broken + 30, "the frames before it and the whole second clip");
    assert_eq!(run.errors, 0);
}

#[test]
fn reordering_breaks_the_frame_and_recovers_at_the_next_keyframe() {
    let (mut packets, starts) = stream((640, 480, 20), (640, 480, 20));
    // Keyframes of 640x480 span several packets: swap two inside frame 0... of the first clip.
    let (a, b) = (starts[0], starts[0] + 1);
    assert!(starts[1] > b + 1, "keyframe spans several packets");
    packets.swap(a, b);
    let run = run(&packets);
    let counts = run.pipeline.assembler.counts();
    assert!(counts.frames_incomplete >= 1, "{counts:?}");
    assert!(counts.duplicates >= 1, "the late packet is counted: {counts:?}");
    assert_eq!(run.decoded, 20, "only the second clip decodes: {counts:?}");
}

#[test]
fn duplicates_are_counted_and_ignored() {
    let (packets, _) = stream((320, 240, 15), (320, 240, 15));
    let doubled: Vec<TapPacket> = packets.iter().flat_map(|p| [p.clone(), p.clone()]).collect();
    let run = run(&doubled);
    let counts = run.pipeline.assembler.counts();
    assert_eq!(run.decoded, 30);
    assert_eq!(counts.duplicates, packets.len() as u64);
}

#[test]
fn truncated_and_random_payloads_are_counted_not_fatal() {
    let (packets, starts) = stream((320, 240, 30), (320, 240, 30));
    // Truncate every packet of frame 5 to its descriptor and a few bytes.
    let mut truncated = packets.clone();
    for packet in &mut truncated[starts[5]..starts[6]] {
        packet.payload = packet.payload.slice(..packet.payload.len().min(6));
    }
    let run_truncated = run(&truncated);
    let c = run_truncated.pipeline.assembler.counts();
    // A truncated frame's header claims more than is there: refused before libvpx.
    assert!(run_truncated.refused >= 1, "{c:?}");
    assert!(run_truncated.decoded >= 35, "the second clip still decodes: {}", run_truncated.decoded);

    // Random bytes in place of every payload of the first clip, valid descriptors kept.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut random = packets.clone();
    for packet in &mut random[..starts[30]] {
        let mut bytes = packet.payload.to_vec();
        for byte in bytes.iter_mut().skip(1) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            *byte = seed as u8;
        }
        packet.payload = bytes.into();
    }
    let run_random = run(&random);
    assert!(run_random.decoded >= 30, "recovers at the second clip's keyframe: {}", run_random.decoded);

    // Tiny and empty payloads.
    let junk = [vec![], vec![0x10], vec![0x90, 0x80], vec![0x10, 0, 0, 0]];
    let packets: Vec<TapPacket> = junk
        .iter()
        .enumerate()
        .map(|(i, p)| TapPacket {
            sequence_number: i as u16,
            timestamp: i as u32,
            marker: true,
            payload: p.clone().into(),
            arrived: std::time::Instant::now(),
        })
        .collect();
    let run_junk = run(&packets);
    assert_eq!(run_junk.decoded, 0);
}

#[test]
fn a_resolution_change_is_reported() {
    let (packets, _) = stream((320, 240, 10), (640, 480, 10));
    let run = run(&packets);
    assert_eq!(run.decoded, 20);
    assert_eq!(run.sizes.first(), Some(&(320, 240)));
    assert_eq!(run.sizes.last(), Some(&(640, 480)));
}

/// Writes seed inputs for the `tap_pipeline` fuzz target (real VP8 in its input
/// format) when FUZZ_SEED_DIR is set: `FUZZ_SEED_DIR=fuzz/seeds/tap_pipeline cargo test --test tap`.
#[test]
fn write_fuzz_seeds_when_asked() {
    let Ok(dir) = std::env::var("FUZZ_SEED_DIR") else { return };
    std::fs::create_dir_all(&dir).unwrap();
    for (name, (w, h, n)) in [("small", (64, 48, 6)), ("qvga", (320, 240, 3))] {
        let frames = encode_test_pattern(w, h, n, 30, 300).unwrap();
        let packets = packetize(&frames, 1, 30).unwrap();
        let mut seed = Vec::new();
        let mut last_ts = packets[0].header.timestamp;
        for packet in &packets {
            // Flags (step 1, new-timestamp bit, marker bit), u16 length, payload.
            let new_ts = packet.header.timestamp != last_ts;
            last_ts = packet.header.timestamp;
            seed.push(1 | if new_ts { 0b100 } else { 0 } | if packet.header.marker { 0b1000 } else { 0 });
            seed.extend_from_slice(&(packet.payload.len() as u16).to_be_bytes());
            seed.extend_from_slice(&packet.payload);
        }
        std::fs::write(format!("{dir}/{name}"), seed).unwrap();
    }
}

/// A frame may end in a 2- or 3-byte packet (RFC 7741 allows it; webrtc-rs's own
/// payloader makes them at some frame sizes), which webrtc-rs's depacketizer alone
/// refuses (see `depacketize` in assemble.rs).
#[test]
fn a_frame_ending_in_a_tiny_packet_decodes() {
    let (packets, starts) = stream((320, 240, 10), (320, 240, 1));
    // Re-split frame 0: everything but its last two bytes, then a 3-byte packet.
    let body: Vec<u8> = packets[starts[0]..starts[1]].iter().flat_map(|p| p.payload[1..].to_vec()).collect();
    let (head, tail) = body.split_at(body.len() - 2);
    let first = &packets[0];
    let mut resplit = vec![
        TapPacket { payload: [&[0x10u8][..], head].concat().into(), marker: false, ..first.clone() },
        TapPacket {
            payload: [&[0x00u8][..], tail].concat().into(),
            marker: true,
            sequence_number: first.sequence_number.wrapping_add(1),
            ..first.clone()
        },
    ];
    assert_eq!(resplit[1].payload.len(), 3);
    for (i, packet) in packets[starts[1]..].iter().enumerate() {
        resplit.push(TapPacket {
            sequence_number: first.sequence_number.wrapping_add(2 + i as u16),
            ..packet.clone()
        });
    }
    let run = run(&resplit);
    let counts = run.pipeline.assembler.counts();
    assert_eq!(run.decoded, 11, "{counts:?}");
    assert_eq!(counts.malformed, 0);
}
