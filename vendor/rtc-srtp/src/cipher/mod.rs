pub mod cipher_aead_aes_gcm;
pub mod cipher_aes_cm_hmac_sha1;

use crypto::{CryptoError, RTCCrypto};

use shared::error::{Error, Result};

type Kdf = fn(&dyn RTCCrypto, u8, &[u8], &[u8], usize, usize) -> Result<Vec<u8>>;

pub(crate) fn crypto_error(error: CryptoError) -> Error {
    Error::Crypto(error.to_string())
}

///NOTE: Auth tag and AEAD auth tag are placed at the different position in SRTCP
///
///In non-AEAD cipher, the authentication tag is placed *after* the ESRTCP word
///(Encrypted-flag and SRTCP index).
///
///> AES_128_CM_HMAC_SHA1_80
///> | RTCP Header | Encrypted payload |E| SRTCP Index | Auth tag |
///>                                   ^               |----------|
///>                                   |                ^
///>                                   |                authTagLen=10
///>                                   aeadAuthTagLen=0
///
///In AEAD cipher, the AEAD authentication tag is embedded in the ciphertext.
///It is *before* the ESRTCP word (Encrypted-flag and SRTCP index).
///
///> AEAD_AES_128_GCM
///> | RTCP Header | Encrypted payload | AEAD auth tag |E| SRTCP Index |
///>                                   |---------------|               ^
///>                                    ^                              authTagLen=0
///>                                    aeadAuthTagLen=16
///
///See https://tools.ietf.org/html/rfc7714 for the full specifications.
///
/// Cipher represents a implementation of one
/// of the SRTP Specific ciphers.
///
/// Everything works in place, in the caller's buffer (face-echo patch, see
/// vendor/PATCHES.md): a media server unprotects and protects each packet where it
/// lies, with no allocation.
pub(crate) trait Cipher: Send {
    /// Get RTP authenticated tag length.
    fn rtp_auth_tag_len(&self) -> usize;

    /// Get RTCP authenticated tag length.
    fn rtcp_auth_tag_len(&self) -> usize;

    /// Get AEAD auth key length of the cipher.
    fn aead_auth_tag_len(&self) -> usize;

    /// Retrieved RTCP index.
    fn get_rtcp_index(&self, input: &[u8]) -> usize;

    /// Protects the RTP packet `buf[..len]` in place (its header is `rtp.header_len`
    /// bytes): encrypts the payload and appends the tag, for which `buf` must have
    /// room. Returns the protected length.
    fn encrypt_rtp(&mut self, buf: &mut [u8], len: usize, rtp: &RtpFields, roc: u32) -> Result<usize>;

    /// Verifies and unprotects the SRTP packet `buf` in place. Returns the length
    /// of the RTP packet now at its start (the tag dropped).
    fn decrypt_rtp(&mut self, buf: &mut [u8], rtp: &RtpFields, roc: u32) -> Result<usize>;

    /// Protects the RTCP packet `buf[..len]` in place, appending the E flag and
    /// index word and the tag (`buf` must have room). Returns the protected length.
    fn encrypt_rtcp(&mut self, buf: &mut [u8], len: usize, srtcp_index: usize, ssrc: u32) -> Result<usize>;

    /// Verifies (always: RFC 3711 §3.4 makes SRTCP authentication mandatory) and,
    /// if its E flag says so, decrypts the SRTCP packet `buf` in place. Returns the
    /// length of the RTCP packet now at its start.
    fn decrypt_rtcp(&mut self, buf: &mut [u8], srtcp_index: usize, ssrc: u32) -> Result<usize>;
}

/// What SRTP needs of an RTP header, read from the packet without parsing it whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RtpFields {
    pub(crate) header_len: usize,
    pub(crate) sequence_number: u16,
    pub(crate) ssrc: u32,
}

impl RtpFields {
    /// The fixed header, CSRCs and extension block of `packet` (RFC 3550 §5.1), with
    /// every length checked against the packet.
    pub(crate) fn read(packet: &[u8]) -> Result<RtpFields> {
        if packet.len() < 12 {
            return Err(Error::ErrTooShortRtp);
        }
        let mut header_len = 12 + 4 * usize::from(packet[0] & 0x0f);
        if packet[0] & 0x10 != 0 {
            let words = packet.get(header_len + 2..header_len + 4).ok_or(Error::ErrTooShortRtp)?;
            header_len += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
        }
        if header_len > packet.len() {
            return Err(Error::ErrTooShortRtp);
        }
        Ok(RtpFields {
            header_len,
            sequence_number: u16::from_be_bytes([packet[2], packet[3]]),
            ssrc: u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]),
        })
    }
}
