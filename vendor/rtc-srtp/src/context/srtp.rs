use super::*;
use crate::cipher::RtpFields;
use shared::error::{Error, Result};

use bytes::BytesMut;

impl Context {
    /// Verifies and unprotects the SRTP packet in `packet` in place; returns the
    /// length of the RTP packet now at its start (the tag dropped). Allocates
    /// nothing once the SSRC's state exists.
    ///
    /// State for a new SSRC (its rollover counter and replay window) is made only
    /// once a packet of it has been authenticated (face-echo patch, see
    /// vendor/PATCHES.md): keyless packets under random SSRCs cost nothing.
    ///
    /// # Errors
    ///
    /// Fails if authentication fails, if the packet is a replay, or if it is too short to hold
    /// its header and the profile's auth tag.
    pub fn decrypt_rtp_in_place(&mut self, packet: &mut [u8]) -> Result<usize> {
        let rtp = RtpFields::read(packet)?;
        if packet.len() < rtp.header_len + self.cipher.rtp_auth_tag_len() {
            return Err(Error::ErrTooShortRtp);
        }
        let seq = rtp.sequence_number;
        // One lookup for a known SSRC: its state is held across the cipher's work.
        let Context { cipher, srtp_ssrc_states, new_srtp_replay_detector, .. } = self;
        match srtp_ssrc_states.get_mut(&rtp.ssrc) {
            Some(state) => {
                let (roc, diff, _) = state.next_rollover_count(seq);
                if let Some(replay_detector) = &mut state.replay_detector
                    && !replay_detector.check(seq as u64)
                {
                    return Err(Error::SrtpSsrcDuplicated(rtp.ssrc, seq));
                }
                let len = cipher.decrypt_rtp(packet, &rtp, roc)?;
                if let Some(replay_detector) = &mut state.replay_detector {
                    replay_detector.accept();
                }
                state.update_rollover_count(seq, diff);
                Ok(len)
            }
            // A new SSRC: what its first state would say, stored only once the packet
            // authenticated. A fresh window takes any first packet.
            None => {
                let (roc, diff, _) = SrtpSsrcState::default().next_rollover_count(seq);
                let len = cipher.decrypt_rtp(packet, &rtp, roc)?;
                let mut state = SrtpSsrcState {
                    ssrc: rtp.ssrc,
                    replay_detector: Some(new_srtp_replay_detector()),
                    ..Default::default()
                };
                if let Some(replay_detector) = &mut state.replay_detector {
                    replay_detector.check(seq as u64);
                    replay_detector.accept();
                }
                state.update_rollover_count(seq, diff);
                srtp_ssrc_states.insert(rtp.ssrc, state);
                Ok(len)
            }
        }
    }

    /// Protects the RTP packet `buf[..len]` in place; `buf` must have room for the
    /// tag ([`Context::rtp_overhead`]). Returns the protected length. Allocates
    /// nothing once the SSRC's state exists.
    ///
    /// # Errors
    ///
    /// Fails if the packet is malformed, `buf` has no room for the tag, or too many
    /// packets were protected with this key.
    pub fn encrypt_rtp_in_place(&mut self, buf: &mut [u8], len: usize) -> Result<usize> {
        let rtp = RtpFields::read(buf.get(..len).ok_or(Error::ErrTooShortRtp)?)?;
        let Context { cipher, srtp_ssrc_states, new_srtp_replay_detector, .. } = self;
        let state = srtp_ssrc_states.entry(rtp.ssrc).or_insert_with(|| SrtpSsrcState {
            ssrc: rtp.ssrc,
            replay_detector: Some(new_srtp_replay_detector()),
            ..Default::default()
        });
        let (roc, diff, ovf) = state.next_rollover_count(rtp.sequence_number);
        if ovf {
            // ... when 2^48 SRTP packets or 2^31 SRTCP packets have been secured with the same key
            // (whichever occurs before), the key management MUST be called to provide new master key(s)
            // (previously stored and used keys MUST NOT be used again), or the session MUST be terminated.
            // https://www.rfc-editor.org/rfc/rfc3711#section-9.2
            return Err(Error::ErrExceededMaxPackets);
        }
        let protected = cipher.encrypt_rtp(buf, len, &rtp, roc)?;
        state.update_rollover_count(rtp.sequence_number, diff);
        Ok(protected)
    }

    /// Bytes protecting adds to an RTP packet under this context's profile.
    pub fn rtp_overhead(&self) -> usize {
        self.cipher.rtp_auth_tag_len() + self.cipher.aead_auth_tag_len()
    }

    /// DecryptRTP decrypts a RTP packet with an encrypted payload (into a new buffer;
    /// see [`Context::decrypt_rtp_in_place`]).
    pub fn decrypt_rtp(&mut self, encrypted: &[u8]) -> Result<BytesMut> {
        let mut packet = BytesMut::from(encrypted);
        let len = self.decrypt_rtp_in_place(&mut packet)?;
        packet.truncate(len);
        Ok(packet)
    }

    /// EncryptRTP encrypts a RTP packet (into a new buffer; see
    /// [`Context::encrypt_rtp_in_place`]).
    pub fn encrypt_rtp(&mut self, plaintext: &[u8]) -> Result<BytesMut> {
        let mut packet = BytesMut::with_capacity(plaintext.len() + self.rtp_overhead());
        packet.extend_from_slice(plaintext);
        packet.resize(plaintext.len() + self.rtp_overhead(), 0);
        let len = self.encrypt_rtp_in_place(&mut packet, plaintext.len())?;
        packet.truncate(len);
        Ok(packet)
    }
}
