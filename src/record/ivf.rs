//! IVF, the container `vpxdec` plays: a 32-byte file header, then per frame a
//! 12-byte header (size, pts) and the VP8 frame as it arrived.
//!
//! Ours rather than rtc-media's `io::ivf_writer`/`ivf_reader`: that writer
//! depacketizes RTP itself (the recorder already has whole frames from
//! [`crate::seeing::tap::assemble::FrameAssembler`], with its gap and keyframe rules) and
//! numbers frames 0, 1, 2 (we keep the RTP timestamp, timebase 1/90000); that
//! reader allocates whatever size a frame header claims. This one:
//!
//! - writes each frame with one `write` (header and data together), so a killed
//!   process leaves whole frames, at most a torn last one;
//! - keeps the header's frame count current at every keyframe and on close; a
//!   reader must not trust it anyway (0 after a crash before the first update);
//! - reads frames of at most [`MAX_FRAME_BYTES`] and stops cleanly at a short
//!   last frame.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;

pub use crate::seeing::tap::assemble::MAX_FRAME_BYTES;

pub const FILE_HEADER_BYTES: usize = 32;
pub const FRAME_HEADER_BYTES: usize = 12;
/// RTP's video clock: the pts are RTP timestamps (unwrapped).
pub const TIMEBASE_RATE: u32 = 90_000;
const FRAME_COUNT_OFFSET: u64 = 24;

/// The 32-byte file header.
pub fn file_header(width: u16, height: u16, frames: u32) -> [u8; FILE_HEADER_BYTES] {
    let mut header = [0u8; FILE_HEADER_BYTES];
    header[0..4].copy_from_slice(b"DKIF");
    header[4..6].copy_from_slice(&0u16.to_le_bytes());
    header[6..8].copy_from_slice(&(FILE_HEADER_BYTES as u16).to_le_bytes());
    header[8..12].copy_from_slice(b"VP80");
    header[12..14].copy_from_slice(&width.to_le_bytes());
    header[14..16].copy_from_slice(&height.to_le_bytes());
    header[16..20].copy_from_slice(&TIMEBASE_RATE.to_le_bytes());
    header[20..24].copy_from_slice(&1u32.to_le_bytes());
    header[24..28].copy_from_slice(&frames.to_le_bytes());
    header
}

/// One frame's 12-byte header followed by its data.
pub fn frame_record(pts: u64, data: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(FRAME_HEADER_BYTES + data.len());
    record.extend_from_slice(&(data.len() as u32).to_le_bytes());
    record.extend_from_slice(&pts.to_le_bytes());
    record.extend_from_slice(data);
    record
}

/// Writes an IVF file frame by frame (unbuffered: each frame is one write).
#[derive(Debug)]
pub struct IvfWriter {
    file: File,
    frames: u32,
}

impl IvfWriter {
    /// Writes the header; the size is the first keyframe's (players take it
    /// from the stream anyway).
    pub fn new(mut file: File, width: u16, height: u16) -> io::Result<Self> {
        file.write_all(&file_header(width, height, 0))?;
        Ok(IvfWriter { file, frames: 0 })
    }

    pub fn frames(&self) -> u32 {
        self.frames
    }

    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// Appends a frame; on keyframes the header's count is brought up to date.
    pub fn write_frame(&mut self, pts: u64, data: &[u8], keyframe: bool) -> io::Result<()> {
        self.file.write_all(&frame_record(pts, data))?;
        self.frames = self.frames.saturating_add(1);
        if keyframe {
            self.update_count()?;
        }
        Ok(())
    }

    fn update_count(&mut self) -> io::Result<()> {
        self.file.write_all_at(&self.frames.to_le_bytes(), FRAME_COUNT_OFFSET)
    }

    /// Fixes the frame count and syncs the data to disk.
    pub fn close(mut self) -> io::Result<()> {
        self.update_count()?;
        self.file.sync_data()
    }
}

/// What the file header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IvfHeader {
    pub fourcc: [u8; 4],
    pub width: u16,
    pub height: u16,
    pub rate: u32,
    pub scale: u32,
    /// As written: 0 or short after a crash. Count the frames instead.
    pub frames: u32,
}

/// One frame read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IvfFrame {
    pub pts: u64,
    pub data: Vec<u8>,
}

/// Why a file is not IVF, or where it stopped making sense.
#[derive(Debug)]
pub enum IvfError {
    Io(io::Error),
    NotIvf(String),
    /// A frame header claims more than [`MAX_FRAME_BYTES`].
    FrameTooLarge(u32),
}

impl std::fmt::Display for IvfError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IvfError::Io(err) => write!(f, "{err}"),
            IvfError::NotIvf(why) => write!(f, "not an IVF file: {why}"),
            IvfError::FrameTooLarge(size) => {
                write!(f, "a frame claims {size} bytes, over the {MAX_FRAME_BYTES}-byte limit")
            }
        }
    }
}

impl std::error::Error for IvfError {}

impl From<io::Error> for IvfError {
    fn from(err: io::Error) -> Self {
        IvfError::Io(err)
    }
}

/// Reads frames one at a time; ends at EOF or at a torn last frame (`truncated`).
pub struct IvfReader<R: Read> {
    reader: R,
    pub header: IvfHeader,
    /// The last frame was cut short (a killed writer): reading stopped there.
    pub truncated: bool,
}

/// Reads into `buf` until it is full or the input ends; returns the bytes read.
fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

impl<R: Read> IvfReader<R> {
    pub fn new(mut reader: R) -> Result<Self, IvfError> {
        let mut header = [0u8; FILE_HEADER_BYTES];
        let read = read_up_to(&mut reader, &mut header)?;
        if read < FILE_HEADER_BYTES {
            return Err(IvfError::NotIvf(format!("{read} bytes, shorter than the 32-byte header")));
        }
        if &header[0..4] != b"DKIF" {
            return Err(IvfError::NotIvf("no DKIF signature".into()));
        }
        let u16_at = |at: usize| u16::from_le_bytes([header[at], header[at + 1]]);
        let u32_at =
            |at: usize| u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]]);
        let header_size = usize::from(u16_at(6));
        if !(FILE_HEADER_BYTES..=1024).contains(&header_size) {
            return Err(IvfError::NotIvf(format!("header size {header_size}")));
        }
        // A longer header (never written by us): skip the rest.
        let mut rest = vec![0u8; header_size - FILE_HEADER_BYTES];
        if read_up_to(&mut reader, &mut rest)? < rest.len() {
            return Err(IvfError::NotIvf("header cut short".into()));
        }
        let header = IvfHeader {
            fourcc: [header[8], header[9], header[10], header[11]],
            width: u16_at(12),
            height: u16_at(14),
            rate: u32_at(16),
            scale: u32_at(20),
            frames: u32_at(24),
        };
        Ok(IvfReader { reader, header, truncated: false })
    }

    /// The next frame; `None` at the end (or at a torn last frame, see `truncated`).
    pub fn next_frame(&mut self) -> Result<Option<IvfFrame>, IvfError> {
        if self.truncated {
            return Ok(None);
        }
        let mut head = [0u8; FRAME_HEADER_BYTES];
        match read_up_to(&mut self.reader, &mut head)? {
            0 => return Ok(None),
            FRAME_HEADER_BYTES => {}
            _ => {
                self.truncated = true;
                return Ok(None);
            }
        }
        let size = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let mut pts = [0u8; 8];
        pts.copy_from_slice(&head[4..12]);
        if size as usize > MAX_FRAME_BYTES {
            return Err(IvfError::FrameTooLarge(size));
        }
        let mut data = vec![0u8; size as usize];
        if read_up_to(&mut self.reader, &mut data)? < data.len() {
            self.truncated = true;
            return Ok(None);
        }
        Ok(Some(IvfFrame { pts: u64::from_le_bytes(pts), data }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(frames: &[(u64, &[u8])], count: u32) -> Vec<u8> {
        let mut bytes = file_header(320, 240, count).to_vec();
        for (pts, data) in frames {
            bytes.extend(frame_record(*pts, data));
        }
        bytes
    }

    fn read_all(bytes: &[u8]) -> (Vec<IvfFrame>, bool) {
        let mut reader = IvfReader::new(bytes).expect("a header");
        let mut frames = Vec::new();
        while let Some(frame) = reader.next_frame().expect("frames") {
            frames.push(frame);
        }
        (frames, reader.truncated)
    }

    #[test]
    fn reads_back_what_was_written_whatever_the_header_count_says() {
        let bytes = file_with(&[(90_000, b"abc"), (93_000, b"de")], 0);
        let (frames, truncated) = read_all(&bytes);
        assert_eq!(
            frames,
            vec![
                IvfFrame { pts: 90_000, data: b"abc".to_vec() },
                IvfFrame { pts: 93_000, data: b"de".to_vec() }
            ]
        );
        assert!(!truncated);
        let header = IvfReader::new(&bytes[..]).expect("header").header;
        assert_eq!((header.fourcc, header.width, header.height, header.rate), (*b"VP80", 320, 240, 90_000));
    }

    #[test]
    fn a_torn_last_frame_ends_the_file_cleanly() {
        let bytes = file_with(&[(1, b"abc"), (2, b"defgh")], 2);
        for cut in [bytes.len() - 1, bytes.len() - 6, 32 + 15 + 3] {
            let (frames, truncated) = read_all(&bytes[..cut]);
            assert_eq!(frames.len(), 1, "cut at {cut}");
            assert!(truncated, "cut at {cut}");
        }
    }

    #[test]
    fn hostile_headers_are_errors_not_allocations() {
        let mut bytes = file_header(16, 16, 1).to_vec();
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(&0u64.to_le_bytes());
        let mut reader = IvfReader::new(&bytes[..]).expect("header");
        assert!(matches!(reader.next_frame(), Err(IvfError::FrameTooLarge(u32::MAX))));
        assert!(matches!(IvfReader::new(&b"RIFF0000"[..]), Err(IvfError::NotIvf(_))));
        let mut wrong = file_header(16, 16, 0);
        wrong[0..4].copy_from_slice(b"RIFF");
        assert!(matches!(IvfReader::new(&wrong[..]), Err(IvfError::NotIvf(_))));
    }

    #[test]
    fn the_writer_keeps_the_count_and_fails_on_a_full_disk() {
        let dir = std::env::temp_dir().join(format!("face-echo-ivf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("w.ivf");
        let mut writer = IvfWriter::new(File::create(&path).expect("create"), 320, 240).expect("header");
        writer.write_frame(0, &[0x10, 1, 2], true).expect("frame");
        writer.write_frame(3000, &[0x11, 1], false).expect("frame");
        // Killed here: the count says 1 (the last keyframe), the data has 2.
        let bytes = std::fs::read(&path).expect("read");
        assert_eq!(IvfReader::new(&bytes[..]).expect("header").header.frames, 1);
        assert_eq!(read_all(&bytes).0.len(), 2);
        writer.close().expect("close");
        let bytes = std::fs::read(&path).expect("read");
        assert_eq!(IvfReader::new(&bytes[..]).expect("header").header.frames, 2);
        let _ = std::fs::remove_dir_all(&dir);

        if let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") {
            assert!(IvfWriter::new(full, 320, 240).is_err(), "ENOSPC is an error");
        }
    }
}
