//! A connected session's consent checks answered where they arrive (RFC 7675): the
//! peer's binding request on the pair in use is verified and answered on the mux's
//! reader, in a buffer on the stack, with no copy, allocation or wake-up of the
//! PeerConnection's driver. The ICE agent keeps sending its own consent checks, and
//! their answers still go to it, so it sees the pair alive as before.
//!
//! The mux asks only about the pair the session's media uses, which ICE selected and
//! nominated: there a check answers the same with or without USE-CANDIDATE (Chromium
//! keeps sending it). Answered here: a binding request with USERNAME, a role
//! (ICE-CONTROLLING or ICE-CONTROLLED), MESSAGE-INTEGRITY that verifies with our ICE
//! password and, if present, a FINGERPRINT that matches. A comprehension-required
//! attribute this does not know, or anything that does not verify, goes to the
//! agent, which judges it as it always did.

use std::net::{IpAddr, SocketAddr};

use ring::hmac;

use super::stun_attributes;

const HEADER: usize = 20;
const MAGIC_COOKIE: [u8; 4] = rtc::stun::message::MAGIC_COOKIE.to_be_bytes();
const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const USERNAME: u16 = 0x0006;
const MESSAGE_INTEGRITY: u16 = 0x0008;
const XOR_MAPPED_ADDRESS: u16 = 0x0020;
const PRIORITY: u16 = 0x0024;
const USE_CANDIDATE: u16 = 0x0025;
const FINGERPRINT: u16 = 0x8028;
const ICE_CONTROLLED: u16 = 0x8029;
const ICE_CONTROLLING: u16 = 0x802A;
/// RFC 8489 §14.7: the CRC-32 is XORed with this.
const FINGERPRINT_XOR: u32 = 0x5354_554E;
/// MESSAGE-INTEGRITY's value: an HMAC-SHA1.
const INTEGRITY_LEN: usize = 20;
/// Longest request answered here; a browser's checks are about 100 bytes.
const MAX_REQUEST: usize = 512;
/// Longest answer: the header, XOR-MAPPED-ADDRESS of an IPv6 address,
/// MESSAGE-INTEGRITY and FINGERPRINT.
pub(super) const MAX_ANSWER: usize = HEADER + (4 + 20) + (4 + INTEGRITY_LEN) + (4 + 4);

/// The HMAC key of a session's short-term credential: its ICE password (RFC 8489 §9.1).
pub(super) struct ConsentKey(hmac::Key);

impl ConsentKey {
    pub(super) fn new(password: &str) -> ConsentKey {
        ConsentKey(hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, password.as_bytes()))
    }
}

/// Writes the answer to the consent check `request` from `from` into `out` and
/// returns its length; None when `request` is not a plain check that verifies with
/// `key` (the agent gets it then).
pub(super) fn answer(
    request: &[u8],
    from: SocketAddr,
    key: &ConsentKey,
    out: &mut [u8; MAX_ANSWER],
) -> Option<usize> {
    let integrity = plain_check(request)?;
    // RFC 8489 §14.5: the HMAC covers the message up to MESSAGE-INTEGRITY, with the
    // header's length counting up to that attribute's end.
    let mut signed = [0u8; MAX_REQUEST];
    signed[..integrity].copy_from_slice(&request[..integrity]);
    put_length(&mut signed, integrity + 4 + INTEGRITY_LEN);
    let tag = request.get(integrity + 4..integrity + 4 + INTEGRITY_LEN)?;
    hmac::verify(&key.0, &signed[..integrity], tag).ok()?;
    Some(success(request, from, key, out))
}

/// Where a plain consent check's MESSAGE-INTEGRITY starts; None for anything else.
fn plain_check(request: &[u8]) -> Option<usize> {
    if request.len() < HEADER || request.len() > MAX_REQUEST {
        return None;
    }
    let length = usize::from(u16::from_be_bytes([request[2], request[3]]));
    if u16::from_be_bytes([request[0], request[1]]) != BINDING_REQUEST
        || request[4..8] != MAGIC_COOKIE
        || HEADER + length != request.len()
        || length % 4 != 0
    {
        return None;
    }
    let (mut username, mut role, mut integrity) = (false, false, None);
    // Where the attributes read so far end: all of them must be read.
    let mut end = HEADER;
    for (kind, offset, value) in stun_attributes(request) {
        end = (offset + 4 + value.len()).next_multiple_of(4);
        if integrity.is_some() {
            // Only FINGERPRINT may follow MESSAGE-INTEGRITY, and only last.
            let crc = crc32fast::hash(&request[..offset]) ^ FINGERPRINT_XOR;
            if kind != FINGERPRINT || end != request.len() || value != crc.to_be_bytes() {
                return None;
            }
        } else {
            match kind {
                USERNAME => username = true,
                ICE_CONTROLLING | ICE_CONTROLLED => role = true,
                MESSAGE_INTEGRITY if value.len() == INTEGRITY_LEN => integrity = Some(offset),
                PRIORITY | USE_CANDIDATE => {}
                // Something else that must be understood: the agent's.
                kind if kind < 0x8000 => return None,
                _ => {}
            }
        }
    }
    if end < request.len() {
        return None;
    }
    integrity.filter(|_| username && role)
}

/// The binding success response to `request`: XOR-MAPPED-ADDRESS of `from`,
/// MESSAGE-INTEGRITY with `key`, FINGERPRINT. Its length.
fn success(request: &[u8], from: SocketAddr, key: &ConsentKey, out: &mut [u8; MAX_ANSWER]) -> usize {
    out[0..2].copy_from_slice(&BINDING_SUCCESS.to_be_bytes());
    // The magic cookie and the transaction id, as asked.
    out[4..HEADER].copy_from_slice(&request[4..HEADER]);
    let mut end = HEADER;

    // RFC 8489 §14.2: port and address XORed with the cookie (and, for IPv6, the
    // transaction id after it).
    let (family, address_len) = match from.ip() {
        IpAddr::V4(_) => (0x01, 4),
        IpAddr::V6(_) => (0x02, 16),
    };
    end = put_attribute_header(out, end, XOR_MAPPED_ADDRESS, 4 + address_len);
    out[end] = 0;
    out[end + 1] = family;
    let port = from.port() ^ u16::from_be_bytes([MAGIC_COOKIE[0], MAGIC_COOKIE[1]]);
    out[end + 2..end + 4].copy_from_slice(&port.to_be_bytes());
    let address: &[u8] = match from.ip() {
        IpAddr::V4(ip) => &ip.octets(),
        IpAddr::V6(ip) => &ip.octets(),
    };
    for (index, byte) in address.iter().enumerate() {
        // Bytes 4..20 of the header: the cookie, then the transaction id.
        out[end + 4 + index] = byte ^ out[4 + index];
    }
    end += 4 + address_len;

    put_length(out, end + 4 + INTEGRITY_LEN);
    let tag = hmac::sign(&key.0, &out[..end]);
    end = put_attribute_header(out, end, MESSAGE_INTEGRITY, INTEGRITY_LEN);
    out[end..end + INTEGRITY_LEN].copy_from_slice(tag.as_ref());
    end += INTEGRITY_LEN;

    put_length(out, end + 4 + 4);
    let crc = crc32fast::hash(&out[..end]) ^ FINGERPRINT_XOR;
    end = put_attribute_header(out, end, FINGERPRINT, 4);
    out[end..end + 4].copy_from_slice(&crc.to_be_bytes());
    end + 4
}

/// Sets the header's length to a message `total` bytes long.
fn put_length(message: &mut [u8], total: usize) {
    message[2..4].copy_from_slice(&((total - HEADER) as u16).to_be_bytes());
}

/// Writes an attribute's type and length at `at`; where its value starts.
fn put_attribute_header(out: &mut [u8], at: usize, kind: u16, len: usize) -> usize {
    out[at..at + 2].copy_from_slice(&kind.to_be_bytes());
    out[at + 2..at + 4].copy_from_slice(&(len as u16).to_be_bytes());
    at + 4
}

#[cfg(test)]
mod tests {
    use rtc::ice::attributes::{
        control::AttrControlling, priority::PriorityAttr, use_candidate::UseCandidateAttr,
    };
    use rtc::stun::attributes::{ATTR_USE_CANDIDATE, ATTR_USERNAME};
    use rtc::stun::fingerprint::FINGERPRINT as FINGERPRINT_SETTER;
    use rtc::stun::integrity::MessageIntegrity;
    use rtc::stun::message::{
        BINDING_REQUEST as REQUEST, BINDING_SUCCESS as SUCCESS, Getter, Message, Setter, TransactionId,
    };
    use rtc::stun::textattrs::Username;
    use rtc::stun::xoraddr::XorMappedAddress;

    use super::*;

    const PASSWORD: &str = "our-ice-password-of-24ch";

    fn crypto() -> std::sync::Arc<dyn rtc::crypto::RTCCryptoProvider> {
        rtc::crypto::default_provider().expect("a crypto provider")
    }

    /// A binding request as a controlling peer sends it (webrtc-rs's own encoder),
    /// with `extra` attributes and signed with `password`.
    fn request(password: &str, extra: Vec<Box<dyn Setter>>, fingerprint: bool) -> Message {
        let provider = crypto();
        let mut setters: Vec<Box<dyn Setter>> = vec![
            Box::new(REQUEST),
            Box::new(TransactionId::new()),
            Box::new(Username::new(ATTR_USERNAME, "ours:theirs".to_owned())),
            Box::new(AttrControlling(7)),
            Box::new(PriorityAttr(1_234)),
        ];
        setters.extend(extra);
        setters.push(Box::new(MessageIntegrity::new_short_term_integrity_with_provider(
            password.to_owned(),
            provider.crypto(),
        )));
        if fingerprint {
            setters.push(Box::new(FINGERPRINT_SETTER));
        }
        let mut message = Message::new();
        message.build(&setters).unwrap();
        message
    }

    fn answered(message: &Message, from: SocketAddr) -> Option<Message> {
        let mut out = [0u8; MAX_ANSWER];
        let len = answer(&message.raw, from, &ConsentKey::new(PASSWORD), &mut out)?;
        let mut decoded = Message::new();
        decoded.unmarshal_binary(&out[..len]).expect("the answer decodes");
        Some(decoded)
    }

    #[test]
    fn a_plain_check_gets_a_success_that_webrtc_rs_accepts() {
        for from in ["192.0.2.7:40123", "[2001:db8::5]:50000"] {
            let from: SocketAddr = from.parse().unwrap();
            let check = request(PASSWORD, Vec::new(), true);
            let mut response = answered(&check, from).expect("answered");
            assert_eq!(response.typ, SUCCESS);
            assert_eq!(response.transaction_id, check.transaction_id);
            let mut mapped = XorMappedAddress::default();
            mapped.get_from(&response).unwrap();
            assert_eq!(SocketAddr::new(mapped.ip, mapped.port), from);
            MessageIntegrity::check(&mut response, PASSWORD.as_bytes(), crypto().crypto())
                .expect("signed with our password");
            FINGERPRINT_SETTER.check(&response).expect("a fingerprint that matches");
        }
    }

    #[test]
    fn checks_with_use_candidate_or_without_fingerprint_are_answered_too() {
        let from = "192.0.2.7:1".parse().unwrap();
        assert!(answered(&request(PASSWORD, Vec::new(), false), from).is_some());
        let nominating = request(PASSWORD, vec![Box::new(UseCandidateAttr)], true);
        assert!(nominating.contains(ATTR_USE_CANDIDATE));
        assert!(answered(&nominating, from).is_some());
    }

    #[test]
    fn a_comprehension_required_attribute_it_does_not_know_is_left_to_the_agent() {
        /// An attribute of a comprehension-required type this does not know.
        struct Unknown;
        impl Setter for Unknown {
            fn add_to(&self, m: &mut Message) -> rtc::shared::error::Result<()> {
                m.add(rtc::stun::attributes::AttrType(0x0030), b"?");
                Ok(())
            }
        }
        let check = request(PASSWORD, vec![Box::new(Unknown)], true);
        assert!(answered(&check, "192.0.2.7:1".parse().unwrap()).is_none());
    }

    #[test]
    fn what_is_not_a_plain_check_that_verifies_is_left_to_the_agent() {
        let from: SocketAddr = "192.0.2.7:40123".parse().unwrap();
        assert!(answered(&request("someone-elses-password!!", Vec::new(), true), from).is_none(), "forged");

        let good = request(PASSWORD, Vec::new(), true).raw;
        let mut out = [0u8; MAX_ANSWER];
        let key = ConsentKey::new(PASSWORD);
        // Each byte changed in turn: nothing past the header's type survives it.
        for index in 0..good.len() {
            let mut bad = good.clone();
            bad[index] ^= 0x40;
            assert!(answer(&bad, from, &key, &mut out).is_none(), "byte {index} changed");
        }
        // Cut short anywhere, or longer than it says.
        for len in 0..good.len() {
            assert!(answer(&good[..len], from, &key, &mut out).is_none(), "cut at {len}");
        }
        let mut long = good.clone();
        long.extend_from_slice(&[0; 4]);
        assert!(answer(&long, from, &key, &mut out).is_none());
        assert!(answer(&[0u8; MAX_REQUEST + 4], from, &key, &mut out).is_none());
    }
}
