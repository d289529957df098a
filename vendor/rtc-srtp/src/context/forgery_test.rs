//! Forged packets cost a context nothing: no state for an SSRC before one of its
//! packets authenticates, and no SRTCP without its tag, under every profile.

use super::*;

const PROFILES: [ProtectionProfile; 6] = [
    ProtectionProfile::Aes128CmHmacSha1_80,
    ProtectionProfile::Aes128CmHmacSha1_32,
    ProtectionProfile::Aes256CmHmacSha1_80,
    ProtectionProfile::Aes256CmHmacSha1_32,
    ProtectionProfile::AeadAes128Gcm,
    ProtectionProfile::AeadAes256Gcm,
];

/// A sending and a receiving context with the same keys (the receiver with replay
/// windows, as a server has).
fn pair(profile: ProtectionProfile) -> (Context, Context) {
    let provider = crypto::default_provider().unwrap();
    let (key, salt) = (vec![3u8; profile.key_len()], vec![4u8; profile.salt_len()]);
    let sender = Context::new(&key, &salt, profile, None, None, provider.crypto()).unwrap();
    let receiver = Context::new(
        &key,
        &salt,
        profile,
        Some(srtp_replay_protection(64)),
        Some(srtcp_replay_protection(64)),
        provider.crypto(),
    )
    .unwrap();
    (sender, receiver)
}

fn rtp(ssrc: u32, seq: u16) -> Vec<u8> {
    let mut packet = vec![0x80, 96];
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(&[0, 0, 0x0b, 0xb8]);
    packet.extend_from_slice(&ssrc.to_be_bytes());
    packet.extend_from_slice(b"a payload of some kind");
    packet
}

fn receiver_report(ssrc: u32) -> Vec<u8> {
    let mut packet = vec![0x80, 201, 0, 1];
    packet.extend_from_slice(&ssrc.to_be_bytes());
    packet
}

/// 48 bytes of noise that look like SRTP (or SRTCP) from `ssrc`.
fn forged(ssrc: u32, rtcp: bool) -> Vec<u8> {
    let mut packet: Vec<u8> =
        (0..48u32).map(|i| (ssrc.wrapping_mul(2_654_435_761) >> (i % 25)) as u8).collect();
    packet[..2].copy_from_slice(if rtcp { &[0x80, 201] } else { &[0x80, 96] });
    let at = if rtcp { 4 } else { 8 };
    packet[at..at + 4].copy_from_slice(&ssrc.to_be_bytes());
    packet
}

#[test]
fn forged_packets_under_random_ssrcs_leave_no_state() {
    for profile in PROFILES {
        let (mut sender, mut receiver) = pair(profile);
        for index in 0..10_000u32 {
            let ssrc = index.wrapping_mul(0x9e37_79b9) | 1;
            assert!(receiver.decrypt_rtp_in_place(&mut forged(ssrc, false)).is_err(), "{profile:?}");
            assert!(receiver.decrypt_rtcp_in_place(&mut forged(ssrc, true)).is_err(), "{profile:?}");
        }
        assert_eq!(receiver.ssrc_states(), (0, 0), "{profile:?}: forgeries made state");

        // A genuine packet makes its state, and replay protection holds from the first.
        let first = sender.encrypt_rtp(&rtp(7, 100)).unwrap();
        assert_eq!(&receiver.decrypt_rtp(&first).unwrap()[..], &rtp(7, 100)[..], "{profile:?}");
        assert!(receiver.decrypt_rtp(&first).is_err(), "{profile:?}: a replay of the first packet was taken");
        let second = sender.encrypt_rtp(&rtp(7, 101)).unwrap();
        assert!(receiver.decrypt_rtp(&second).is_ok(), "{profile:?}");
        assert!(receiver.decrypt_rtp(&second).is_err(), "{profile:?}: a replay was taken");
        let report = sender.encrypt_rtcp(&receiver_report(7)).unwrap();
        assert_eq!(&receiver.decrypt_rtcp(&report).unwrap()[..], &receiver_report(7)[..], "{profile:?}");
        assert!(receiver.decrypt_rtcp(&report).is_err(), "{profile:?}: a replayed report was taken");
        assert_eq!(receiver.ssrc_states(), (1, 1), "{profile:?}");
    }
}

#[test]
fn srtcp_with_the_e_flag_off_and_no_key_is_refused_under_every_profile() {
    for profile in PROFILES {
        let (_, mut receiver) = pair(profile);
        let tag_len = profile.rtcp_auth_tag_len() + profile.aead_auth_tag_len();
        // A PLI, the E flag off, an index, and a tag of zeros or of anything.
        for filler in [0u8, 0xff, 0x5a] {
            let mut packet = vec![0x81, 206, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2];
            if profile.aead_auth_tag_len() > 0 {
                packet.extend(std::iter::repeat_n(filler, tag_len));
                packet.extend_from_slice(&9u32.to_be_bytes());
            } else {
                packet.extend_from_slice(&9u32.to_be_bytes());
                packet.extend(std::iter::repeat_n(filler, tag_len));
            }
            assert!(
                receiver.decrypt_rtcp_in_place(&mut packet).is_err(),
                "{profile:?}: taken without its tag"
            );
        }
        assert_eq!(receiver.ssrc_states(), (0, 0), "{profile:?}");
    }
}

#[test]
fn in_place_and_allocating_calls_give_the_same_bytes() {
    for profile in PROFILES {
        let (mut a, _) = pair(profile);
        let (mut b, mut receiver) = pair(profile);
        // Across the wrap of the sequence number, where the rollover counter moves.
        for seq in [65_533u16, 65_534, 65_535, 0, 1] {
            let plain = rtp(9, seq);
            let allocated = a.encrypt_rtp(&plain).unwrap();
            let mut buf = plain.clone();
            buf.resize(plain.len() + b.rtp_overhead(), 0);
            let len = b.encrypt_rtp_in_place(&mut buf, plain.len()).unwrap();
            assert_eq!(&buf[..len], &allocated[..], "{profile:?}");
            assert_eq!(len, plain.len() + receiver.rtp_overhead());
            assert_eq!(
                receiver.decrypt_rtp_in_place(&mut buf[..len]).unwrap(),
                plain.len(),
                "{profile:?} {seq}"
            );
            assert_eq!(&buf[..plain.len()], &plain[..], "{profile:?} {seq}");
        }
        let plain = receiver_report(9);
        let allocated = a.encrypt_rtcp(&plain).unwrap();
        let mut buf = plain.clone();
        buf.resize(plain.len() + b.rtcp_overhead(), 0);
        let len = b.encrypt_rtcp_in_place(&mut buf, plain.len()).unwrap();
        assert_eq!(&buf[..len], &allocated[..], "{profile:?}");
        assert_eq!(receiver.decrypt_rtcp_in_place(&mut buf[..len]).unwrap(), plain.len(), "{profile:?}");
        assert_eq!(&buf[..plain.len()], &plain[..], "{profile:?}");
    }
}

#[test]
fn short_or_inconsistent_packets_are_errors_not_panics() {
    for profile in PROFILES {
        let (mut sender, mut receiver) = pair(profile);
        let genuine = sender.encrypt_rtp(&rtp(5, 1)).unwrap().to_vec();
        for len in 0..genuine.len() {
            let mut cut = genuine[..len].to_vec();
            assert!(receiver.decrypt_rtp_in_place(&mut cut).is_err(), "{profile:?}: {len} bytes");
        }
        // An extension header claiming more words than there are bytes.
        let mut long = rtp(5, 2);
        long[0] |= 0x10;
        long[14..16].copy_from_slice(&[0xff, 0xff]);
        assert!(receiver.decrypt_rtp_in_place(&mut long.clone()).is_err(), "{profile:?}");
        let mut room = long.clone();
        assert!(sender.encrypt_rtp_in_place(&mut room, long.len()).is_err(), "{profile:?}");
        // No room for the tag.
        let plain = rtp(5, 3);
        let mut tight = plain.clone();
        assert!(sender.encrypt_rtp_in_place(&mut tight, plain.len()).is_err(), "{profile:?}");
        let mut tight = receiver_report(5);
        assert!(sender.encrypt_rtcp_in_place(&mut tight, 8).is_err(), "{profile:?}");
    }
}
