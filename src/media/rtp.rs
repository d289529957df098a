//! An RTP packet's header read where it lies (RFC 3550 §5.1, RFC 8285 for header
//! extensions), and the echo's readdressing done in the same buffer: the media
//! plane handles every packet without copying or allocating.

use std::ops::Range;

/// The fixed header's length (version to SSRC).
pub(crate) const FIXED_HEADER: usize = 12;
/// The header extension profile of one-byte elements (RFC 8285 §4.2).
const ONE_BYTE_PROFILE: u16 = 0xBEDE;
/// Two-byte elements (RFC 8285 §4.3): `0x100` and 4 bits the application chooses.
const TWO_BYTE_PROFILE_MASK: u16 = 0xFFF0;
const TWO_BYTE_PROFILE: u16 = 0x1000;

/// What the plane needs of one RTP packet, and where its parts are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RtpHeader {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence_number: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    /// The header extension block, its 4-byte profile and length word included.
    pub extension: Option<Range<usize>>,
    /// The payload, without the padding (RFC 3550 §5.1, P bit) after it.
    pub payload: Range<usize>,
}

impl RtpHeader {
    /// Reads the header of `packet`; `None` when it is not a well-formed RTP packet
    /// (version 2, every length inside the packet).
    pub(crate) fn parse(packet: &[u8]) -> Option<RtpHeader> {
        if packet.len() < FIXED_HEADER || packet[0] >> 6 != 2 {
            return None;
        }
        let csrc_count = usize::from(packet[0] & 0x0f);
        let mut header_len = FIXED_HEADER + 4 * csrc_count;
        let mut extension = None;
        if packet[0] & 0x10 != 0 {
            let words =
                usize::from(u16::from_be_bytes(packet.get(header_len + 2..header_len + 4)?.try_into().ok()?));
            let end = header_len + 4 + 4 * words;
            if end > packet.len() {
                return None;
            }
            extension = Some(header_len..end);
            header_len = end;
        }
        let mut payload_end = packet.len();
        if packet[0] & 0x20 != 0 {
            let padding = usize::from(*packet.last()?);
            if padding == 0 || header_len + padding > packet.len() {
                return None;
            }
            payload_end -= padding;
        }
        Some(RtpHeader {
            marker: packet[1] & 0x80 != 0,
            payload_type: packet[1] & 0x7f,
            sequence_number: u16::from_be_bytes([packet[2], packet[3]]),
            timestamp: u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]),
            ssrc: u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]),
            extension,
            payload: header_len..payload_end,
        })
    }

    /// The data of header extension element `id` (RFC 8285), if the packet has it.
    pub(crate) fn extension_element<'a>(&self, packet: &'a [u8], id: u8) -> Option<&'a [u8]> {
        let block = packet.get(self.extension.clone()?)?;
        let profile = u16::from_be_bytes([block[0], block[1]]);
        let mut elements = &block[4..];
        if profile == ONE_BYTE_PROFILE {
            while let Some((&first, rest)) = elements.split_first() {
                if first == 0 {
                    elements = rest; // padding
                    continue;
                }
                let (element_id, len) = (first >> 4, usize::from(first & 0x0f) + 1);
                if element_id == 15 {
                    return None; // reserved: stop reading (RFC 8285 §4.2)
                }
                let data = rest.get(..len)?;
                if element_id == id {
                    return Some(data);
                }
                elements = &rest[len..];
            }
        } else if profile & TWO_BYTE_PROFILE_MASK == TWO_BYTE_PROFILE {
            while let Some((&element_id, rest)) = elements.split_first() {
                if element_id == 0 {
                    elements = rest;
                    continue;
                }
                let (&len, rest) = rest.split_first()?;
                let data = rest.get(..usize::from(len))?;
                if element_id == id {
                    return Some(data);
                }
                elements = &rest[usize::from(len)..];
            }
        }
        None
    }
}

/// Readdresses the RTP packet `buf[..len]` for the echo, in place: the outgoing
/// stream's SSRC and payload type; sequence number, timestamp, marker, CSRCs,
/// payload and padding as they came. The header extensions go: their ids were
/// negotiated for the sender's direction, not the echo's. Returns where the echo
/// now starts in `buf` (it ends at `len`): the fixed header moves forward over the
/// extension block instead of the payload moving back.
pub(crate) fn readdress(buf: &mut [u8], header: &RtpHeader, ssrc: u32, payload_type: u8) -> usize {
    buf[1] = (buf[1] & 0x80) | (payload_type & 0x7f);
    buf[8..12].copy_from_slice(&ssrc.to_be_bytes());
    let Some(extension) = header.extension.clone() else { return 0 };
    buf[0] &= !0x10;
    let start = extension.len();
    buf.copy_within(..extension.start, start);
    start
}

/// The transport-wide sequence number (the transport-cc extension's two bytes).
pub(crate) fn transport_sequence(element: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(element.get(..2)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::rtp::header::{EXTENSION_PROFILE_ONE_BYTE, EXTENSION_PROFILE_TWO_BYTE, Extension, Header};
    use rtc::shared::marshal::{Marshal, Unmarshal};

    fn packet(extensions: Vec<Extension>, profile: u16, padding: bool) -> (Vec<u8>, rtc::rtp::Packet) {
        let packet = rtc::rtp::Packet {
            header: Header {
                version: 2,
                marker: true,
                payload_type: 96,
                sequence_number: 4321,
                timestamp: 0xdead_beef,
                ssrc: 0x0102_0304,
                csrc: vec![7, 8],
                extension: !extensions.is_empty(),
                extension_profile: profile,
                extensions,
                padding,
                ..Default::default()
            },
            payload: bytes::Bytes::from_static(b"vp8 payload"),
        };
        (packet.marshal().expect("marshal").to_vec(), packet)
    }

    #[test]
    fn the_header_is_read_as_rtc_reads_it_with_one_byte_extensions_and_padding() {
        let extensions = vec![
            Extension { id: 3, payload: bytes::Bytes::from_static(&[0x12, 0x34]) },
            Extension { id: 5, payload: bytes::Bytes::from_static(b"mid0") },
        ];
        let (bytes, packet) = packet(extensions, EXTENSION_PROFILE_ONE_BYTE, true);
        let header = RtpHeader::parse(&bytes).expect("parses");
        assert_eq!(
            (header.marker, header.payload_type, header.sequence_number, header.timestamp, header.ssrc),
            (true, 96, 4321, 0xdead_beef, 0x0102_0304)
        );
        assert_eq!(&bytes[header.payload.clone()], b"vp8 payload");
        assert_eq!(header.extension_element(&bytes, 3), Some(&[0x12, 0x34][..]));
        assert_eq!(header.extension_element(&bytes, 5), Some(&b"mid0"[..]));
        assert_eq!(header.extension_element(&bytes, 4), None);
        assert_eq!(transport_sequence(header.extension_element(&bytes, 3).unwrap()), Some(0x1234));
        let theirs = rtc::rtp::Packet::unmarshal(&mut &bytes[..]).expect("rtc parses");
        assert_eq!(theirs.payload, packet.payload);
    }

    #[test]
    fn two_byte_extensions_are_read_too() {
        let extensions = vec![Extension { id: 9, payload: bytes::Bytes::from_static(b"long element data") }];
        let (bytes, _) = packet(extensions, EXTENSION_PROFILE_TWO_BYTE, false);
        let header = RtpHeader::parse(&bytes).expect("parses");
        assert_eq!(header.extension_element(&bytes, 9), Some(&b"long element data"[..]));
    }

    #[test]
    fn readdressing_in_place_is_the_packet_with_our_ssrc_and_payload_type_and_no_extensions() {
        let extensions = vec![Extension { id: 3, payload: bytes::Bytes::from_static(&[0x12, 0x34]) }];
        for (extensions, padding) in [(extensions, true), (vec![], false)] {
            let (mut bytes, mut packet) = packet(extensions, EXTENSION_PROFILE_ONE_BYTE, padding);
            let header = RtpHeader::parse(&bytes).expect("parses");
            let len = bytes.len();
            let start = readdress(&mut bytes, &header, 0xaabb_ccdd, 100);
            packet.header.ssrc = 0xaabb_ccdd;
            packet.header.payload_type = 100;
            packet.header.extension = false;
            packet.header.extensions.clear();
            packet.header.extensions_padding = 0;
            assert_eq!(&bytes[start..len], &packet.marshal().expect("marshal")[..]);
        }
    }

    #[test]
    fn malformed_headers_are_refused_not_read_past_their_end() {
        let (bytes, _) = packet(
            vec![Extension { id: 3, payload: bytes::Bytes::from_static(&[1, 2]) }],
            EXTENSION_PROFILE_ONE_BYTE,
            true,
        );
        for len in 0..bytes.len() {
            // Any truncation either parses inside its bounds or is refused.
            if let Some(header) = RtpHeader::parse(&bytes[..len]) {
                assert!(header.payload.end <= len && header.payload.start <= header.payload.end);
            }
        }
        let mut version_1 = bytes.clone();
        version_1[0] = (version_1[0] & 0x3f) | 0x40;
        assert_eq!(RtpHeader::parse(&version_1), None);
        let mut zero_padding = bytes.clone();
        *zero_padding.last_mut().unwrap() = 0;
        assert_eq!(RtpHeader::parse(&zero_padding), None);
        // An extension element claiming more than is there.
        let mut long_element = bytes;
        long_element[24] = 0x3f; // the element after the 12 + 8 header and 4 extension bytes: id 3, 16 bytes
        let header = RtpHeader::parse(&long_element).expect("the header itself is fine");
        assert_eq!(header.extension_element(&long_element, 3), None);
    }
}
