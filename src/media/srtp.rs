//! SRTP outside webrtc-rs's driver, for the two places that protect media
//! themselves with the keys DTLS exported (vendor/PATCHES.md, 2): the server's media
//! plane (`media::plane`) and the load generator's clients (`loadgen::media`).
//! Both tell datagrams apart on a socket they share with ICE and DTLS the same way.

use rtc::srtp::config::SessionKeys;
use rtc::srtp::context::Context as SrtpContext;
use rtc::srtp::option::{srtcp_replay_protection, srtp_replay_protection};
use rtc::srtp::protection_profile::ProtectionProfile;

/// Packets the SRTP replay windows remember (webrtc-rs's default for a session).
const REPLAY_WINDOW: usize = 64;

/// One end's contexts from the keys DTLS exported: (outbound, with our keys;
/// inbound, with the remote's and replay protection, as webrtc-rs has on its own).
pub(crate) fn session_contexts(
    profile: ProtectionProfile,
    keys: &SessionKeys,
) -> Result<(SrtpContext, SrtpContext), String> {
    let outbound = context(&keys.local_master_key, &keys.local_master_salt, profile, None)?;
    let inbound = context(&keys.remote_master_key, &keys.remote_master_salt, profile, Some(REPLAY_WINDOW))?;
    Ok((outbound, inbound))
}

/// An SRTP and SRTCP context for one direction; `replay_window` for receiving.
pub(crate) fn context(
    key: &[u8],
    salt: &[u8],
    profile: ProtectionProfile,
    replay_window: Option<usize>,
) -> Result<SrtpContext, String> {
    let crypto = rtc::crypto::default_provider().map_err(|e| e.to_string())?;
    let (rtp, rtcp) = match replay_window {
        Some(window) => (Some(srtp_replay_protection(window)), Some(srtcp_replay_protection(window))),
        None => (None, None),
    };
    SrtpContext::new(key, salt, profile, rtp, rtcp, crypto.crypto()).map_err(|e| format!("SRTP context: {e}"))
}

/// What a datagram on a media socket is, by its first bytes (RFC 7983, RFC 5761 §4).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Rtp {
        ssrc: u32,
    },
    Rtcp,
    /// DTLS (first byte 20..=63).
    Dtls,
    /// STUN, or anything else.
    Other,
}

pub(crate) fn kind(datagram: &[u8]) -> Kind {
    if datagram.first().is_some_and(|b| (20..=63).contains(b)) {
        return Kind::Dtls;
    }
    if datagram.len() < 8 || !(128..=191).contains(&datagram[0]) {
        return Kind::Other;
    }
    if (192..=223).contains(&datagram[1]) {
        return Kind::Rtcp;
    }
    match datagram.get(8..12) {
        Some(ssrc) => Kind::Rtp { ssrc: u32::from_be_bytes([ssrc[0], ssrc[1], ssrc[2], ssrc[3]]) },
        None => Kind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_are_told_apart_by_their_first_bytes() {
        let mut rtp = vec![0x80, 96, 0, 1, 0, 0, 0, 0, 0x11, 0x22, 0x33, 0x44];
        assert_eq!(kind(&rtp), Kind::Rtp { ssrc: 0x1122_3344 });
        rtp[1] = 200; // a sender report
        assert_eq!(kind(&rtp), Kind::Rtcp);
        assert_eq!(kind(&[0x16, 0xfe, 0xfd]), Kind::Dtls);
        assert_eq!(kind(&[0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42]), Kind::Other);
        assert_eq!(kind(&[0x80, 96, 0, 1, 0, 0, 0, 0, 0x11]), Kind::Other);
        assert_eq!(kind(&[]), Kind::Other);
    }
}
