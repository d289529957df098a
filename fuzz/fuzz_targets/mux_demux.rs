//! The mux's demultiplexing: arbitrary datagrams from arbitrary addresses, among
//! them genuine binding requests (so addresses are learned, moved and forgotten),
//! answers to requests nobody made, and garbage that looks like STUN, DTLS or RTP.
//! Nothing may panic, and a datagram reaches a PeerConnection only from an address
//! its binding request taught.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, OnceLock};

use face_echo::media::udp_mux::{IceCredentials, MuxSender, UdpMux};
use libfuzzer_sys::fuzz_target;
use webrtc::runtime::AsyncUdpSocket;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

struct Fixture {
    /// The mux's socket, as its reader sees it (the mux is kept: dropping it stops it).
    via: MuxSender,
    _mux: UdpMux,
    credentials: Vec<IceCredentials>,
    /// The PeerConnections' views of the socket (kept: dropping one detaches it).
    _views: Vec<Arc<dyn AsyncUdpSocket>>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mux = UdpMux::bind(LOCALHOST, 0).expect("binds");
        let credentials: Vec<IceCredentials> = (0..3).map(|_| IceCredentials::random()).collect();
        let views = credentials
            .iter()
            .map(|credentials| {
                let runtime = mux.runtime_for(credentials, None, None);
                let throwaway = std::net::UdpSocket::bind((LOCALHOST, 0)).expect("binds");
                runtime.wrap_udp_socket(throwaway).expect("attached")
            })
            .collect();
        let via = mux.sender(LOCALHOST).expect("the mux's socket");
        Fixture { via, _mux: mux, credentials, _views: views }
    })
}

fuzz_target!(|data: &[u8]| {
    let fixture = fixture();
    let mut rest = data;
    // Each record: [address][kind][len: u16 BE, ≤ 2100][bytes]. Kind 0: the bytes
    // as they are; 1: a genuine binding request for PeerConnection (byte % 3),
    // then the bytes as they are, from the same address.
    while let [address, kind, hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(2100).min(tail.len());
        let (bytes, next) = tail.split_at(len);
        rest = next;
        let from = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, *address & 0x0f)),
            1000 + u16::from(*address >> 4),
        );
        if kind % 2 == 1 {
            let credentials = &fixture.credentials[usize::from(*kind / 2) % fixture.credentials.len()];
            fixture.via.route(&mut credentials.binding_request(), from);
        }
        fixture.via.route(&mut bytes.to_vec(), from);
    }
});
