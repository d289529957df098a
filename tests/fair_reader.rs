//! One session cannot stall the reader that serves every session: while one
//! publisher floods the shared port with what is costly to parse (transport-cc
//! feedback claiming 65 535 statuses in 40 bytes, valid under its own keys) and with
//! sequence numbers that jump half the number space, another session's echo comes
//! back as fast and as whole as before. Against the real binary in its own process.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use face_echo::loadgen::client::{ClientOptions, ClientPeer};
use face_echo::loadgen::clip::encode_test_pattern;

type Arrivals = Arc<Mutex<HashMap<u16, Instant>>>;

async fn publisher(server: &Server, arrivals: Option<Arrivals>) -> ClientPeer {
    let on_echo: face_echo::loadgen::client::EchoCallback = match arrivals {
        Some(arrivals) => Arc::new(move |packet| {
            arrivals.lock().unwrap().entry(packet.header.sequence_number).or_insert_with(Instant::now);
        }),
        None => Arc::new(|_| {}),
    };
    let options = ClientOptions { on_echo: Some(on_echo), own_media: true, lean: true, ..Default::default() };
    ClientPeer::connect_options(&ws_url(server.addr), options, CONNECT_TIMEOUT).await.expect("connects")
}

/// Sends `frames` frames at 30 fps; returns the round-trip times of the packets
/// echoed (ms, sorted) and how many were sent.
async fn round_trips(victim: &mut ClientPeer, arrivals: &Arrivals, frames: usize) -> (Vec<f64>, usize) {
    let clip = encode_test_pattern(320, 240, frames, FPS, 600).expect("clip");
    let mut sent_at = HashMap::new();
    let mut ticker = tokio::time::interval(Duration::from_millis(1000 / u64::from(FPS)));
    for frame in &clip {
        ticker.tick().await;
        let mut packets = victim.packetize_on(0, &frame.data, SAMPLES_PER_FRAME).expect("packetize");
        let now = Instant::now();
        sent_at.extend(packets.iter().map(|packet| (packet.header.sequence_number, now)));
        victim.send_packets_on(0, &mut packets).await.expect("send");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let arrivals = std::mem::take(&mut *arrivals.lock().unwrap());
    let mut rtts: Vec<f64> = sent_at
        .iter()
        .filter_map(|(seq, sent)| Some(arrivals.get(seq)?.duration_since(*sent).as_secs_f64() * 1000.0))
        .collect();
    rtts.sort_by(f64::total_cmp);
    (rtts, sent_at.len())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// A transport-cc feedback packet of 40 bytes whose status count claims 65 535
/// packets (and whose run-length chunks claim as many).
fn transport_cc_bomb(sender: u32) -> Vec<u8> {
    let mut packet = vec![0x8f, 205, 0, 9];
    packet.extend_from_slice(&sender.to_be_bytes());
    packet.extend_from_slice(&0u32.to_be_bytes());
    packet.extend_from_slice(&[0, 0, 0xff, 0xff, 0, 0, 0, 0]);
    for _ in 0..10 {
        packet.extend_from_slice(&0x3fffu16.to_be_bytes()); // 8191 received, small deltas
    }
    assert_eq!(packet.len(), 40);
    packet
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_publisher_attacking_the_shared_reader_does_not_delay_another_sessions_echo() {
    let server = spawn_server(&[]).await;
    let arrivals: Arrivals = Arc::default();
    let mut victim = publisher(&server, Some(Arc::clone(&arrivals))).await;
    let mut attacker = publisher(&server, None).await;
    let (quiet, quiet_sent) = round_trips(&mut victim, &arrivals, 90).await;

    // The attack: every 10 ms, 200 transport-cc bombs and 50 RTP packets whose
    // sequence numbers jump by half the number space, all under the attacker's keys.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let storm = tokio::spawn(async move {
        let bomb = transport_cc_bomb(attacker.ssrc());
        let clip = encode_test_pattern(320, 240, 1, FPS, 600).expect("clip");
        let mut jump = 0u16;
        let mut sent = 0u64;
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            for _ in 0..200 {
                attacker.send_rtcp(&bomb).expect("sent");
            }
            let mut packets = attacker.packetize_on(0, &clip[0].data, SAMPLES_PER_FRAME).expect("packetize");
            for _ in 0..(50 / packets.len().max(1)).max(1) {
                for packet in &mut packets {
                    jump = jump.wrapping_add(32_767);
                    packet.header.sequence_number = jump;
                }
                attacker.send_packets_on(0, &mut packets).await.expect("send");
            }
            sent += 250;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (attacker, sent)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (attacked, attacked_sent) = round_trips(&mut victim, &arrivals, 90).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (attacker, storm_sent) = storm.await.expect("storm");

    let (quiet_p50, quiet_p99) = (percentile(&quiet, 0.5), percentile(&quiet, 0.99));
    let (attacked_p50, attacked_p99) = (percentile(&attacked, 0.5), percentile(&attacked, 0.99));
    println!(
        "victim RTT quiet p50 {quiet_p50:.2} p99 {quiet_p99:.2} ms ({} of {quiet_sent}); under attack \
         p50 {attacked_p50:.2} p99 {attacked_p99:.2} ms ({} of {attacked_sent}); {storm_sent} datagrams of attack",
        quiet.len(),
        attacked.len()
    );
    assert_eq!(quiet.len(), quiet_sent, "nothing lost before the attack");
    assert!(
        attacked.len() * 100 >= attacked_sent * 99,
        "{} of {attacked_sent} echoed under attack",
        attacked.len()
    );
    assert!(
        attacked_p99 <= (3.0 * quiet_p99).max(quiet_p99 + 30.0),
        "p99 {attacked_p99:.2} ms under attack against {quiet_p99:.2} ms quiet"
    );
    let listed = sessions(server.addr).await;
    let attacker_session =
        listed.iter().find(|s| s["id"] == attacker.session.as_str()).expect("the attacker's session");
    let plane = &attacker_session["echo"]["plane"];
    assert!(plane["over_budget"].as_u64().unwrap() > 0, "the budget took the flood: {plane}");
    victim.close().await.expect("closes");
    attacker.close().await.expect("closes");
}
