//! Protecting and unprotecting in place allocates nothing once an SSRC's state
//! exists: counted by a global allocator over 10 000 round trips, RTP and RTCP, for
//! an HMAC and an AEAD profile.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use rtc_srtp::context::Context;
use rtc_srtp::option::{srtcp_replay_protection, srtp_replay_protection};
use rtc_srtp::protection_profile::ProtectionProfile;

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

fn contexts(profile: ProtectionProfile) -> (Context, Context) {
    let provider = rtc_srtp::crypto::default_provider().expect("a provider");
    let (key, salt) = (vec![1u8; profile.key_len()], vec![2u8; profile.salt_len()]);
    let sender = Context::new(&key, &salt, profile, None, None, provider.crypto()).expect("context");
    let receiver = Context::new(
        &key,
        &salt,
        profile,
        Some(srtp_replay_protection(64)),
        Some(srtcp_replay_protection(64)),
        provider.crypto(),
    )
    .expect("context");
    (sender, receiver)
}

#[test]
fn round_trips_in_place_allocate_nothing() {
    for profile in [ProtectionProfile::Aes128CmHmacSha1_80, ProtectionProfile::AeadAes128Gcm] {
        let (mut sender, mut receiver) = contexts(profile);
        let mut rtp = vec![0u8; 1200 + sender.rtp_overhead()];
        rtp[..12].copy_from_slice(&[0x80, 96, 0, 0, 0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78]);
        let mut rtcp = vec![0u8; 32 + sender.rtcp_overhead()];
        rtcp[..8].copy_from_slice(&[0x80, 201, 0, 7, 0x12, 0x34, 0x56, 0x78]);
        let round_trip =
            |sender: &mut Context, receiver: &mut Context, rtp: &mut [u8], rtcp: &mut [u8], seq: u16| {
                rtp[2..4].copy_from_slice(&seq.to_be_bytes());
                let len = sender.encrypt_rtp_in_place(rtp, 1200).expect("protects");
                assert_eq!(receiver.decrypt_rtp_in_place(&mut rtp[..len]).expect("unprotects"), 1200);
                let len = sender.encrypt_rtcp_in_place(rtcp, 32).expect("protects");
                assert_eq!(receiver.decrypt_rtcp_in_place(&mut rtcp[..len]).expect("unprotects"), 32);
            };
        round_trip(&mut sender, &mut receiver, &mut rtp, &mut rtcp, 0); // warm-up: the states
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        for seq in 1..=10_000u16 {
            round_trip(&mut sender, &mut receiver, &mut rtp, &mut rtcp, seq);
        }
        let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
        assert_eq!(allocations, 0, "{profile:?}: {allocations} allocations in 10 000 round trips");
    }
}
