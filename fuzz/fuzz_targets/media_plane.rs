//! What the media plane parses, from a client that holds the keys: arbitrary RTP and
//! RTCP bytes, protected with the client's SRTP so that they reach the plane's
//! parsers (compound packets, feedback with absurd counts, sequence numbers that
//! jump), mixed with raw datagrams that never authenticate, and the timers firing.
//! Nothing may panic, and what the plane keeps stays bounded.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use face_echo::media::feedback::nack::RetransmitStats;
use face_echo::media::plane::{Extensions, MediaPlane, ReceiveLeg, SendLeg};
use face_echo::media::udp_mux::{MediaHook, MuxSender, UdpMux};
use face_echo::metrics::Metrics;
use face_echo::session::echo::EchoPath;
use libfuzzer_sys::fuzz_target;
use rtc::srtp::config::SessionKeys;
use rtc::srtp::context::Context;
use rtc::srtp::protection_profile::ProtectionProfile;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// The SSRC the offer named, and the one the plane learns from the first packet.
const NAMED: u32 = 0x1111_1111;

fn keys() -> SessionKeys {
    SessionKeys {
        local_master_key: vec![1; 16],
        local_master_salt: vec![2; 14],
        remote_master_key: vec![3; 16],
        remote_master_salt: vec![4; 14],
    }
}

/// One socket for every run: sends go to the discard port.
fn sender() -> &'static (UdpMux, MuxSender) {
    static SENDER: OnceLock<(UdpMux, MuxSender)> = OnceLock::new();
    SENDER.get_or_init(|| {
        let mux = UdpMux::bind(LOCALHOST, 0).expect("binds");
        let via = mux.sender(LOCALHOST).expect("a socket");
        (mux, via)
    })
}

fn plane() -> Arc<MediaPlane> {
    let metrics = Arc::new(Metrics::new());
    let plane = MediaPlane::new(Arc::default(), Arc::new(RetransmitStats::new(Arc::clone(&metrics))));
    let path = || EchoPath {
        tap: None,
        recorder: None,
        viewers: None,
        stats: Arc::default(),
        metrics: Arc::clone(&metrics),
    };
    let echo = |ssrc| Some(SendLeg { ssrc, payload_type: 100, clock_rate: 90_000, keyframe_wishes: None });
    let legs = vec![
        ReceiveLeg {
            mid: "0".into(),
            ssrc: Some(NAMED),
            clock_rate: 90_000,
            nack: true,
            path: Box::new(path()),
            echo: echo(0x2222_2222),
        },
        ReceiveLeg {
            mid: "1".into(),
            ssrc: None,
            clock_rate: 90_000,
            nack: true,
            path: Box::new(path()),
            echo: echo(0x3333_3333),
        },
    ];
    let extensions = Extensions { mid: Some(1), transport_cc: Some(3) };
    plane.configure(
        extensions,
        legs,
        vec![SendLeg { ssrc: 0x4444_4444, payload_type: 96, clock_rate: 90_000, keyframe_wishes: None }],
    );
    plane.start(ProtectionProfile::Aes128CmHmacSha1_80, &keys()).expect("starts");
    plane
}

fuzz_target!(|data: &[u8]| {
    let (_, via) = sender();
    let plane = plane();
    let keys = keys();
    let provider = rtc::crypto::default_provider().expect("provider");
    let mut client = Context::new(
        &keys.remote_master_key,
        &keys.remote_master_salt,
        ProtectionProfile::Aes128CmHmacSha1_80,
        None,
        None,
        provider.crypto(),
    )
    .expect("context");
    let from = SocketAddr::new(LOCALHOST, 9);
    let mut rest = data;
    // Each record: [kind][len: u16 BE, ≤ 1400][bytes]. Kind 0: the bytes as they
    // are; 1: as RTP, protected; 2: as RTCP, protected; 3: the timers.
    while let [kind, hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(1400).min(tail.len());
        let (bytes, next) = tail.split_at(len);
        rest = next;
        let mut datagram = match kind % 4 {
            0 => bytes.to_vec(),
            1 => match client.encrypt_rtp(bytes) {
                Ok(protected) => protected.to_vec(),
                Err(_) => continue,
            },
            2 => match client.encrypt_rtcp(bytes) {
                Ok(protected) => protected.to_vec(),
                Err(_) => continue,
            },
            _ => {
                plane.on_tick(Instant::now() + std::time::Duration::from_secs(2));
                continue;
            }
        };
        plane.on_datagram(&mut datagram, from, via);
    }
    plane.request_keyframe("0");
    plane.request_keyframe("1");
});
