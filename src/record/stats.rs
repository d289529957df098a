//! `face-echo record-stats DIR`: a summary of each recording, read back from its
//! files alone (so also of recordings cut short by a crash).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use super::ivf::IvfReader;
use crate::seeing::detect::Face;

/// Most JSONL bytes read from one recording (the file is input).
pub const MAX_JSONL_BYTES: u64 = 256 * 1024 * 1024;

/// One recording, as its files tell it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RecordingSummary {
    pub ivf: PathBuf,
    /// Frames in the IVF, counted (the header's count may be short after a crash).
    pub frames: u64,
    /// What the IVF header says.
    pub header_frames: u32,
    pub keyframes: u64,
    pub bytes: u64,
    pub width: u16,
    pub height: u16,
    /// From the first frame's pts to the last's.
    pub seconds: f64,
    /// The IVF's last frame was cut short.
    pub truncated: bool,
    /// The IVF is unreadable beyond some point (why).
    pub error: Option<String>,
    /// From the JSONL, when it is there.
    pub journal: Option<JournalSummary>,
}

/// What the JSONL says.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct JournalSummary {
    pub frame_lines: u64,
    pub server_detections: u64,
    pub page_detections: u64,
    /// Lines that are not JSON objects of a known type.
    pub bad_lines: u64,
    /// The recording closed cleanly (its `end` line is there).
    pub closed: bool,
    /// The `end` line's counts: packets, keyframes, frames_skipped, dropped, …
    pub end: Option<Value>,
}

/// One recorded detection pass: the frame's width and height, the faces.
pub type Recorded = (u32, u32, Vec<Face>);
/// The server's detections of a recording, by RTP timestamp.
pub type RecordedDetections = HashMap<u32, Recorded>;

/// Reads a recording's JSONL: the summary and the server's detections.
pub fn read_journal(path: &Path) -> std::io::Result<(JournalSummary, RecordedDetections)> {
    let reader = BufReader::new(File::open(path)?.take(MAX_JSONL_BYTES));
    let mut summary = JournalSummary::default();
    let mut detections = RecordedDetections::new();
    for line in reader.lines() {
        let Ok(line) = line else {
            summary.bad_lines += 1;
            continue;
        };
        let value: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        match value["type"].as_str() {
            Some("recording") => {}
            Some("frame") => summary.frame_lines += 1,
            Some("page_detections") => summary.page_detections += 1,
            Some("server_detections") => match parse_detections(&value) {
                Some((rtp_ts, entry)) => {
                    summary.server_detections += 1;
                    detections.insert(rtp_ts, entry);
                }
                None => summary.bad_lines += 1,
            },
            Some("end") => {
                summary.closed = true;
                summary.end = Some(value);
            }
            // A torn last line after a kill lands here too.
            _ => summary.bad_lines += 1,
        }
    }
    Ok((summary, detections))
}

fn parse_detections(value: &Value) -> Option<(u32, Recorded)> {
    let rtp_ts = u32::try_from(value["rtp_ts"].as_u64()?).ok()?;
    let width = u32::try_from(value["width"].as_u64()?).ok()?;
    let height = u32::try_from(value["height"].as_u64()?).ok()?;
    let faces = value["faces"]
        .as_array()?
        .iter()
        .map(|face| {
            let get = |key: &str| face[key].as_f64().map(|v| v as f32);
            Some(Face { x: get("x")?, y: get("y")?, w: get("w")?, h: get("h")?, score: get("score")? })
        })
        .collect::<Option<Vec<Face>>>()?;
    Some((rtp_ts, (width, height, faces)))
}

/// The JSONL beside an IVF.
pub fn journal_path(ivf: &Path) -> PathBuf {
    ivf.with_extension("jsonl")
}

/// Summarises one recording (its IVF, and its JSONL if there is one).
pub fn summarize(ivf: &Path) -> anyhow::Result<RecordingSummary> {
    let file = File::open(ivf).map_err(|e| anyhow::anyhow!("{}: {e}", ivf.display()))?;
    let mut reader =
        IvfReader::new(BufReader::new(file)).map_err(|e| anyhow::anyhow!("{}: {e}", ivf.display()))?;
    let mut summary = RecordingSummary {
        ivf: ivf.to_owned(),
        frames: 0,
        header_frames: reader.header.frames,
        keyframes: 0,
        bytes: 0,
        width: reader.header.width,
        height: reader.header.height,
        seconds: 0.0,
        truncated: false,
        error: None,
        journal: None,
    };
    let rate = f64::from(reader.header.rate.max(1)) / f64::from(reader.header.scale.max(1));
    let (mut first, mut last) = (None, 0u64);
    loop {
        match reader.next_frame() {
            Ok(Some(frame)) => {
                summary.frames += 1;
                summary.bytes += frame.data.len() as u64;
                if frame.data.first().is_some_and(|tag| tag & 0x01 == 0) {
                    summary.keyframes += 1;
                }
                first.get_or_insert(frame.pts);
                last = frame.pts;
            }
            Ok(None) => break,
            Err(err) => {
                summary.error = Some(err.to_string());
                break;
            }
        }
    }
    summary.truncated = reader.truncated;
    summary.seconds = first.map_or(0.0, |first| last.saturating_sub(first) as f64 / rate);
    let journal = journal_path(ivf);
    if journal.is_file() {
        summary.journal = Some(read_journal(&journal)?.0);
    }
    Ok(summary)
}

/// Every recording in `dir` (its `.ivf` files, by name), or the one file given.
pub fn summarize_dir(path: &Path) -> anyhow::Result<Vec<RecordingSummary>> {
    if path.is_file() {
        return Ok(vec![summarize(path)?]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "ivf"))
        .collect();
    files.sort();
    files.iter().map(|file| summarize(file)).collect()
}

/// One line per recording, for people.
pub fn print_human(summaries: &[RecordingSummary]) {
    if summaries.is_empty() {
        println!("no recordings (.ivf files)");
    }
    for s in summaries {
        let journal = match &s.journal {
            Some(j) => format!(
                "; {} server / {} page detections{}{}",
                j.server_detections,
                j.page_detections,
                if j.closed { "" } else { "; not closed (killed?)" },
                j.end
                    .as_ref()
                    .map(|end| format!(
                        "; skipped {} dropped {}",
                        end["frames_skipped"].as_u64().unwrap_or(0),
                        end["dropped"].as_u64().unwrap_or(0)
                    ))
                    .unwrap_or_default()
            ),
            None => "; no .jsonl".into(),
        };
        println!(
            "{}: {}x{}, {} frames ({} keyframes), {:.1} s, {} kB{}{}{}",
            s.ivf.display(),
            s.width,
            s.height,
            s.frames,
            s.keyframes,
            s.seconds,
            s.bytes / 1024,
            if s.truncated { ", last frame torn" } else { "" },
            s.error.as_ref().map(|e| format!(", stops: {e}")).unwrap_or_default(),
            journal
        );
    }
}
