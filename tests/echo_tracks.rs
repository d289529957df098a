//! A publisher with two video tracks: each track's echo comes back on the m-line
//! (mid) it was sent on, byte-identical, even when the second track starts first.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use face_echo::loadgen::client::ClientPeer;
use face_echo::loadgen::clip::encode_test_pattern;
use rtc::rtp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_track_echoes_on_its_own_m_line_whichever_starts_first() {
    let server = start(test_config()).await;
    let mut publisher = ClientPeer::connect_tracks(&ws_url(server.addr), 2, CONNECT_TIMEOUT)
        .await
        .expect("publisher connects");
    let mids = [publisher.mid_of(0).to_owned(), publisher.mid_of(1).to_owned()];
    assert!(!mids[0].is_empty() && mids[0] != mids[1], "tracks on distinct m-lines: {mids:?}");
    let mut echoed_rx = publisher.take_echoed_by_mid();

    // Different content per track, so a swapped echo could not pass as the right one.
    let clips = [
        encode_test_pattern(320, 240, 90, FPS, 600).expect("clip encodes"),
        encode_test_pattern(160, 120, 120, FPS, 300).expect("clip encodes"),
    ];
    let mut sent: [Vec<rtp::Packet>; 2] = Default::default();
    let mut ticker = tokio::time::interval(Duration::from_millis(1000 / u64::from(FPS)));
    // Track 1 alone for a second, then both: its echo track must not take track 0's m-line.
    for tick in 0..clips[1].len() {
        ticker.tick().await;
        let frame = &clips[1][tick];
        sent[1].extend(publisher.send_frame_on(1, &frame.data, SAMPLES_PER_FRAME).await.expect("send 1"));
        if let Some(frame) = tick.checked_sub(30).and_then(|index| clips[0].get(index)) {
            sent[0].extend(publisher.send_frame_on(0, &frame.data, SAMPLES_PER_FRAME).await.expect("send 0"));
        }
    }

    let mut echoed: HashMap<String, Vec<rtp::Packet>> = HashMap::new();
    while let Ok(Some((mid, packet))) =
        tokio::time::timeout(Duration::from_millis(1500), echoed_rx.recv()).await
    {
        echoed.entry(mid).or_default().push(packet);
    }
    let unknown: Vec<&String> = echoed.keys().filter(|mid| !mids.contains(mid)).collect();
    assert!(unknown.is_empty(), "echo on unknown mids {unknown:?} (ours: {mids:?})");

    for index in 0..2 {
        let own = echoed.get(&mids[index]).map(Vec::as_slice).unwrap_or_default();
        let other = echoed.get(&mids[1 - index]).map(Vec::as_slice).unwrap_or_default();
        let identical = identical_payloads(&sent[index], own);
        // Sequence numbers are random per track, so a match on the other m-line would
        // be a packet of this track echoed on the wrong one.
        let misplaced = identical_payloads(&sent[index], other);
        println!(
            "track {index} (mid {}): sent {}, echoed on its mid {} ({identical} identical), on the other {misplaced}",
            mids[index],
            sent[index].len(),
            own.len(),
        );
        assert_eq!(misplaced, 0, "track {index}: packets echoed on the other track's m-line");
        assert!(
            identical * 100 >= sent[index].len() * 95,
            "track {index}: only {identical} of {} came back identical on mid {}",
            sent[index].len(),
            mids[index]
        );
        // Everything on this mid is this track's: same sequence number, same payload.
        let strangers = own.len() - own.iter().filter(|p| is_sent(&sent[index], p)).count();
        assert_eq!(strangers, 0, "track {index}: {strangers} echoed packets we did not send on it");
    }

    publisher.close().await.expect("close");
    server.shutdown().await.expect("shutdown");
}

/// Whether `packet` is one of `sent` (same sequence number and payload).
fn is_sent(sent: &[rtp::Packet], packet: &rtp::Packet) -> bool {
    sent.iter()
        .any(|s| s.header.sequence_number == packet.header.sequence_number && s.payload == packet.payload)
}
