//! The media plane in-process, on a generated SRTP stream shaped like a browser's
//! (three packets a frame, the MID and transport-wide sequence extensions, 1100-byte
//! payloads), through the mux as its reader routes it: demultiplexing, unprotect,
//! feedback, the echo protected, kept and sent (a real `sendmsg` to a loopback socket).
//!
//! Two figures this VM's noise cannot blur:
//! - heap allocations per echoed packet, counted by this binary's global allocator over
//!   the measured packets (after a warm-up that fills the NACK history);
//! - instructions per echoed packet, when run under callgrind (`scripts/bench-plane.sh`):
//!   only `measure` and what it calls are collected, so the total divided by the packets
//!   is the figure, and the inclusive cost of each stage's function is its share.
//!
//!   cargo bench --bench plane [-- PACKETS]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use face_echo::media::feedback::nack::RetransmitStats;
use face_echo::media::plane::{Extensions, MediaPlane, ReceiveLeg, SendLeg};
use face_echo::media::udp_mux::{IceCredentials, MediaHook, MuxSender, UdpMux};
use face_echo::metrics::Metrics;
use face_echo::session::echo::EchoPath;
use rtc::srtp::config::SessionKeys;
use rtc::srtp::context::Context;
use rtc::srtp::protection_profile::ProtectionProfile;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded as given.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as given.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded as given.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const PUBLISHER_SSRC: u32 = 0x1234_5678;
const PAYLOAD: usize = 1100;
/// Packets before the measured ones: the NACK history (512) full, every buffer grown.
const WARM_UP: usize = 2000;
const PROFILE: ProtectionProfile = ProtectionProfile::AeadAes128Gcm;

fn keys() -> SessionKeys {
    SessionKeys {
        local_master_key: vec![1; 16],
        local_master_salt: vec![2; 12],
        remote_master_key: vec![3; 16],
        remote_master_salt: vec![4; 12],
    }
}

/// The plane of a publisher with one echoed VP8 stream, negotiated as Chromium does.
fn plane() -> Arc<MediaPlane> {
    let metrics = Arc::new(Metrics::new());
    let plane = MediaPlane::new(Arc::default(), Arc::new(RetransmitStats::new(Arc::clone(&metrics))));
    let path = EchoPath { tap: None, recorder: None, viewers: None, stats: Arc::default(), metrics };
    let echo = SendLeg { ssrc: 0x0bad_cafe, payload_type: 96, clock_rate: 90_000, keyframe_wishes: None };
    let leg = ReceiveLeg {
        mid: "0".into(),
        ssrc: Some(PUBLISHER_SSRC),
        clock_rate: 90_000,
        nack: true,
        path: Box::new(path),
        echo: Some(echo),
    };
    plane.configure(Extensions { mid: Some(4), transport_cc: Some(3) }, vec![leg], Vec::new());
    plane.start(PROFILE, &keys()).expect("the plane starts");
    plane
}

/// The publisher's stream, protected with its keys: `count` packets, three a frame.
fn stream(count: usize) -> Vec<Vec<u8>> {
    let keys = keys();
    let provider = rtc::crypto::default_provider().expect("provider");
    let mut client = Context::new(
        &keys.remote_master_key,
        &keys.remote_master_salt,
        PROFILE,
        None,
        None,
        provider.crypto(),
    )
    .expect("context");
    (0..count)
        .map(|index| {
            let (seq, frame) = (index as u16, (index / 3) as u32);
            let marker = index % 3 == 2;
            let mut packet = vec![0x90, u8::from(marker) << 7 | 96];
            packet.extend_from_slice(&seq.to_be_bytes());
            packet.extend_from_slice(&(frame * 3000).to_be_bytes());
            packet.extend_from_slice(&PUBLISHER_SSRC.to_be_bytes());
            // One-byte extensions: transport-wide sequence (id 3), MID "0" (id 4).
            packet.extend_from_slice(&[0xbe, 0xde, 0, 2, 0x31]);
            packet.extend_from_slice(&seq.to_be_bytes());
            packet.extend_from_slice(&[0x40, b'0', 0, 0]);
            packet.extend((0..PAYLOAD).map(|i| (i * 7 + index) as u8));
            client.encrypt_rtp(&packet).expect("protects").to_vec()
        })
        .collect()
}

/// Routes each datagram as the socket's reader would.
fn route(via: &MuxSender, datagrams: &mut [Vec<u8>], from: SocketAddr) {
    for datagram in datagrams {
        via.route(black_box(datagram), from);
    }
}

/// The measured packets: what callgrind collects.
#[inline(never)]
fn measure(via: &MuxSender, datagrams: &mut [Vec<u8>], from: SocketAddr) {
    route(via, datagrams, from);
}

fn main() {
    let packets: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(20_000);
    let browser = UdpSocket::bind((LOCALHOST, 0)).expect("the browser's socket");
    let from = browser.local_addr().expect("address");
    let mux = UdpMux::bind(LOCALHOST, 0).expect("binds");
    let plane = plane();
    let credentials = IceCredentials::random();
    let runtime = mux.runtime_for(&credentials, Some(Arc::clone(&plane) as Arc<dyn MediaHook>), None);
    let _view = runtime.wrap_udp_socket(UdpSocket::bind((LOCALHOST, 0)).expect("binds")).expect("attached");
    let via = mux.sender(LOCALHOST).expect("the mux's socket");
    via.route(&mut credentials.binding_request(), from);

    let mut datagrams = stream(WARM_UP + packets);
    let (warm_up, measured) = datagrams.split_at_mut(WARM_UP);
    route(&via, warm_up, from);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    measure(&via, measured, from);
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    let hooked = mux.stats().hooked.load(Ordering::Relaxed);
    assert!(hooked as usize > WARM_UP + packets - 1, "every packet reached the plane: {hooked}");
    println!(
        "{packets} packets echoed: {allocations} heap allocations ({:.3} per packet)",
        allocations as f64 / packets as f64
    );
}
