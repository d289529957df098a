use super::*;
use crate::key_derivation::SRTCP_INDEX_SIZE;
use shared::error::Result;

use bytes::BytesMut;

impl Context {
    /// Verifies and unprotects the SRTCP packet in `packet` in place; returns the
    /// length of the RTCP packet now at its start. Allocates nothing once the
    /// sender SSRC's state exists, and makes that state only once a packet of it
    /// has been authenticated (face-echo patch, see vendor/PATCHES.md).
    pub fn decrypt_rtcp_in_place(&mut self, packet: &mut [u8]) -> Result<usize> {
        // A received SRTCP packet must be at least the minimum valid size for the
        // negotiated profile: the RTCP header through the SSRC (read at bytes
        // 4..8), the trailing SRTCP index, and the auth tag that `get_rtcp_index`
        // and the cipher read from the end (the HMAC tag for AES-CM, the AEAD tag
        // for GCM). A shorter packet from the network would otherwise index out
        // of bounds and panic (a remotely triggerable DoS). This is self-
        // contained: it does not rely on the individual ciphers' own guards.
        let min_len =
            8 + SRTCP_INDEX_SIZE + self.cipher.rtcp_auth_tag_len() + self.cipher.aead_auth_tag_len();
        if packet.len() < min_len {
            return Err(Error::ErrTooShortRtcp);
        }
        if packet[0] >> 6 != 2 {
            return Err(Error::ErrTooShortRtcp);
        }

        let index = self.cipher.get_rtcp_index(packet);
        let ssrc = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);

        let known = self.srtcp_ssrc_states.contains_key(&ssrc);
        if let Some(state) = self.srtcp_ssrc_states.get_mut(&ssrc)
            && let Some(replay_detector) = &mut state.replay_detector
            && !replay_detector.check(index as u64)
        {
            return Err(Error::SrtcpSsrcDuplicated(ssrc, index));
        }

        let len = self.cipher.decrypt_rtcp(packet, index, ssrc)?;

        if let Some(replay_detector) = &mut self.get_srtcp_ssrc_state(ssrc).replay_detector {
            if !known {
                // A fresh window takes any first packet.
                replay_detector.check(index as u64);
            }
            replay_detector.accept();
        }
        Ok(len)
    }

    /// Protects the RTCP packet `buf[..len]` in place; `buf` must have room for the
    /// E flag and index word and the tag ([`Context::rtcp_overhead`]). Returns the
    /// protected length.
    pub fn encrypt_rtcp_in_place(&mut self, buf: &mut [u8], len: usize) -> Result<usize> {
        if len < 8 || buf.len() < len {
            return Err(Error::ErrTooShortRtcp);
        }
        if buf[0] >> 6 != 2 {
            return Err(Error::ErrTooShortRtcp);
        }
        let ssrc = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let index = {
            let state = self.get_srtcp_ssrc_state(ssrc);
            state.srtcp_index += 1;
            if state.srtcp_index > MAX_SRTCP_INDEX {
                state.srtcp_index = 0;
            }
            state.srtcp_index
        };
        self.cipher.encrypt_rtcp(buf, len, index, ssrc)
    }

    /// Bytes protecting adds to an RTCP packet under this context's profile.
    pub fn rtcp_overhead(&self) -> usize {
        SRTCP_INDEX_SIZE + self.cipher.rtcp_auth_tag_len() + self.cipher.aead_auth_tag_len()
    }

    /// DecryptRTCP decrypts a RTCP packet with an encrypted payload (into a new
    /// buffer; see [`Context::decrypt_rtcp_in_place`]).
    pub fn decrypt_rtcp(&mut self, encrypted: &[u8]) -> Result<BytesMut> {
        let mut packet = BytesMut::from(encrypted);
        let len = self.decrypt_rtcp_in_place(&mut packet)?;
        packet.truncate(len);
        Ok(packet)
    }

    /// EncryptRTCP encrypts a RTCP packet (into a new buffer; see
    /// [`Context::encrypt_rtcp_in_place`]).
    pub fn encrypt_rtcp(&mut self, decrypted: &[u8]) -> Result<BytesMut> {
        let mut packet = BytesMut::with_capacity(decrypted.len() + self.rtcp_overhead());
        packet.extend_from_slice(decrypted);
        packet.resize(decrypted.len() + self.rtcp_overhead(), 0);
        let len = self.encrypt_rtcp_in_place(&mut packet, decrypted.len())?;
        packet.truncate(len);
        Ok(packet)
    }

    /// The SRTP and SRTCP SSRCs this context keeps state for (replay windows,
    /// rollover counters, indexes).
    pub fn ssrc_states(&self) -> (usize, usize) {
        (self.srtp_ssrc_states.len(), self.srtcp_ssrc_states.len())
    }
}
