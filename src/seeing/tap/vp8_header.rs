//! The first bytes of a VP8 frame (RFC 6386 §9.1), read before libvpx sees it.
//!
//! libvpx sizes its buffers from a keyframe's header alone: a 136-byte keyframe
//! claiming 16383x16383 makes it allocate ~2 GB. Reading the header here lets
//! the tap refuse such a frame for the price of ten bytes.

/// What a frame's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp8Header {
    pub keyframe: bool,
    /// Bytes of the first partition, after the frame header.
    pub first_partition_len: u32,
    /// Width and height in pixels (keyframes only; inter frames keep the last size).
    pub size: Option<(u16, u16)>,
}

/// Why a frame's header cannot be right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// Fewer bytes than the frame tag (3) or a keyframe header (10).
    Truncated,
    /// A keyframe without the start code 9d 01 2a.
    BadStartCode,
    /// The first partition claims more bytes than the frame has.
    PartitionBeyondFrame,
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HeaderError::Truncated => "truncated frame header",
            HeaderError::BadStartCode => "keyframe without the VP8 start code",
            HeaderError::PartitionBeyondFrame => "first partition longer than the frame",
        })
    }
}

/// The frame tag is 3 bytes; a keyframe adds the start code and the size (7 more).
const TAG_LEN: usize = 3;
const KEYFRAME_HEADER_LEN: usize = 10;
const START_CODE: [u8; 3] = [0x9d, 0x01, 0x2a];

/// Reads the frame tag and, on a keyframe, the start code and size.
pub fn parse(frame: &[u8]) -> Result<Vp8Header, HeaderError> {
    let [b0, b1, b2, ..] = *frame else {
        return Err(HeaderError::Truncated);
    };
    let tag = u32::from(b0) | u32::from(b1) << 8 | u32::from(b2) << 16;
    let keyframe = tag & 1 == 0;
    let first_partition_len = tag >> 5;
    let header_len = if keyframe { KEYFRAME_HEADER_LEN } else { TAG_LEN };
    if frame.len() < header_len {
        return Err(HeaderError::Truncated);
    }
    if first_partition_len as usize > frame.len() - header_len {
        return Err(HeaderError::PartitionBeyondFrame);
    }
    let size = if keyframe {
        if frame[3..6] != START_CODE {
            return Err(HeaderError::BadStartCode);
        }
        // 14 bits of size; the top 2 bits are a scaling hint that does not change
        // what the decoder allocates.
        let dimension = |lo: u8, hi: u8| u16::from_le_bytes([lo, hi]) & 0x3fff;
        Some((dimension(frame[6], frame[7]), dimension(frame[8], frame[9])))
    } else {
        None
    };
    Ok(Vp8Header { keyframe, first_partition_len, size })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A keyframe header for `width`x`height` with a first partition of `len` bytes.
    fn keyframe(width: u16, height: u16, len: u32) -> Vec<u8> {
        let tag = len << 5 | 1 << 4; // keyframe (bit 0 clear), version 0, shown
        let mut frame = vec![tag as u8, (tag >> 8) as u8, (tag >> 16) as u8];
        frame.extend_from_slice(&START_CODE);
        frame.extend_from_slice(&width.to_le_bytes());
        frame.extend_from_slice(&height.to_le_bytes());
        frame.resize(KEYFRAME_HEADER_LEN + len as usize, 0);
        frame
    }

    #[test]
    fn reads_keyframe_size_and_ignores_scaling_bits() {
        let mut frame = keyframe(640, 480, 20);
        frame[7] |= 0xc0; // horizontal scale 3
        assert_eq!(
            parse(&frame),
            Ok(Vp8Header { keyframe: true, first_partition_len: 20, size: Some((640, 480)) })
        );
        assert_eq!(parse(&keyframe(16383, 16383, 0)).unwrap().size, Some((16383, 16383)));
    }

    #[test]
    fn inter_frames_carry_no_size() {
        let frame = [0x01 | 4 << 5, 0, 0, 1, 2, 3, 4];
        assert_eq!(parse(&frame), Ok(Vp8Header { keyframe: false, first_partition_len: 4, size: None }));
    }

    #[test]
    fn refuses_what_cannot_be_a_frame() {
        assert_eq!(parse(&[]), Err(HeaderError::Truncated));
        assert_eq!(parse(&[0x10, 0, 0, 0x9d]), Err(HeaderError::Truncated));
        let mut bad_start = keyframe(320, 240, 4);
        bad_start[4] = 0;
        assert_eq!(parse(&bad_start), Err(HeaderError::BadStartCode));
        let mut short = keyframe(320, 240, 100);
        short.truncate(50);
        assert_eq!(parse(&short), Err(HeaderError::PartitionBeyondFrame));
    }
}
