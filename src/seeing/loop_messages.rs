//! The `face-echo` data channel: what the server and the page say about faces,
//! frame by frame, once the loop is closed.
//!
//! The page opens one ordered data channel labelled [`CHANNEL_LABEL`] on its
//! RTCPeerConnection. JSON text messages, one per data channel message:
//!
//! - server → page, after each server detection ([`ServerMessage::Detections`]):
//!   `{"type":"detections","source":"server","rtp_ts":u32,"frame":u16|null,"width":W,
//!   "height":H,"faces":[{"x","y","w","h","score"}],"infer_ms":F,"age_ms":F}` where
//!   `frame` is the page's frame code read from the decoded picture
//!   ([`crate::seeing::framecode`]), `infer_ms` the model's time and `age_ms` the time from
//!   the frame's arrival to this message.
//! - server → page, once a second ([`ServerMessage::Stats`]):
//!   `{"type":"stats","tap":{...},"detect":{...,"fps"},"agreement":{"frames",
//!   "matched","page_only","server_only","mean_iou","mean_iou_calibrated",...}}`.
//! - server → page, when a message was refused ([`ServerMessage::Error`], optional):
//!   `{"type":"error","code":"bad_detections","message":"..."}`.
//! - page → server, when its detector starts on the picture of the canvas frame
//!   it stamped with code N ([`ClientMessage::Detecting`]): `{"type":"detecting",
//!   "frame":N}`. The server's detector takes that frame first
//!   ([`crate::seeing::detect::choice`]), so both look at the same picture.
//! - page → server, when that pass is done ([`ClientMessage::Detections`]):
//!   `{"type":"detections","source":"page","frame":N,"detector":"tiny"|"ssd",
//!   "width":W,"height":H,"faces":[...]}`, what it found in frame N, in that
//!   canvas's pixels (`detector` optional). Only frames the page's detector ran on
//!   are reported: a frame it did not look at is never "no faces".
//!
//! Parsing of client messages is strict and total, as for signaling
//! ([`crate::session::signaling`]): every message becomes a [`ClientMessage`] or a
//! [`LoopError`] with a stable snake_case [`LoopErrorCode`]. A bad message is
//! dropped and counted; it never closes the channel. [`MAX_MESSAGES_PER_SECOND`]
//! and [`MAX_MESSAGE_BURST`] limit how many a page may send (one budget per
//! PeerConnection, `session::results`); over the limit messages are dropped and
//! counted.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::seeing::agreement::PageDetector;
use crate::seeing::detect::Face;

/// The data channel's label.
pub const CHANNEL_LABEL: &str = "face-echo";
/// Largest client message we parse. One with 64 faces is ~5 KB.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024;
/// Most faces one message may carry.
pub const MAX_FACES: usize = 64;
/// Largest frame side a message may name, in pixels.
pub const MAX_DIMENSION: u32 = 16_384;
/// Largest box coordinate or size, in pixels (boxes may stick out of the frame a bit).
pub const MAX_COORDINATE: f32 = 4.0 * MAX_DIMENSION as f32;
/// Messages a page may send per second, sustained (one per frame at 60 fps), and in a burst.
pub const MAX_MESSAGES_PER_SECOND: f64 = 60.0;
pub const MAX_MESSAGE_BURST: f64 = 120.0;

/// A face box on the wire, in pixels of the frame its message names.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WireFace {
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
    pub score: f32,
}

impl From<Face> for WireFace {
    fn from(face: Face) -> Self {
        WireFace { x: face.x, y: face.y, w: face.w, h: face.h, score: face.score }
    }
}

impl From<WireFace> for Face {
    fn from(face: WireFace) -> Self {
        Face { x: face.x, y: face.y, w: face.w, h: face.h, score: face.score }
    }
}

/// Whose detector a `detections` message reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Page,
    Server,
}

/// What the page's detector found in one stamped frame.
#[derive(Debug, Clone, PartialEq)]
pub struct PageDetections {
    /// The frame code the page stamped on the frame its detector ran on.
    pub frame: u16,
    /// Which of the page's detectors, when it said.
    pub detector: Option<PageDetector>,
    /// The canvas's size (the sender may scale it before encoding).
    pub width: u32,
    pub height: u32,
    pub faces: Vec<WireFace>,
}

impl PageDetections {
    pub fn faces(&self) -> Vec<Face> {
        self.faces.iter().map(|&face| face.into()).collect()
    }
}

/// A message from the page.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    /// The page's detector started on its frame `frame`.
    Detecting {
        frame: u16,
    },
    Detections(PageDetections),
}

/// The server's faces in one decoded frame.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerDetections {
    /// Always [`Source::Server`].
    pub source: Source,
    /// RTP timestamp of the frame (the page matches it to the echo frame it shows).
    pub rtp_ts: u32,
    /// The page's frame code read from the picture, if there was a valid one.
    pub frame: Option<u16>,
    /// The decoded frame's size: the boxes are in its pixels.
    pub width: u32,
    pub height: u32,
    pub faces: Vec<WireFace>,
    /// Model time for this frame.
    pub infer_ms: f64,
    /// From the frame's arrival at the server to this message.
    pub age_ms: f64,
}

impl ServerDetections {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        rtp_ts: u32,
        frame: Option<u16>,
        width: u32,
        height: u32,
        faces: &[Face],
        infer_ms: f64,
        age_ms: f64,
    ) -> Self {
        ServerDetections {
            source: Source::Server,
            rtp_ts,
            frame,
            width,
            height,
            faces: faces.iter().take(MAX_FACES).map(|&face| face.into()).collect(),
            infer_ms,
            age_ms,
        }
    }
}

/// A message to the page.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    Detections(ServerDetections),
    /// Once a second: the tap's and the detector's numbers (as `/api/sessions` has
    /// them) and [`crate::seeing::agreement::Agreement::to_json`].
    Stats {
        tap: Value,
        detect: Value,
        agreement: Value,
    },
    Error {
        code: LoopErrorCode,
        message: String,
    },
}

impl ServerMessage {
    pub fn to_json(&self) -> String {
        // Our own types, with non-finite floats written as null: cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }
}

impl From<LoopError> for ServerMessage {
    fn from(error: LoopError) -> Self {
        ServerMessage::Error { code: error.code, message: error.message }
    }
}

/// Why a client message was refused. Stable: pages and tests match on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoopErrorCode {
    /// Over [`MAX_MESSAGE_BYTES`].
    TooLarge,
    /// Not a JSON object with a string `type`, not UTF-8, or binary.
    BadJson,
    /// A `type` we do not know.
    UnknownType,
    /// A `detections` or `detecting` message with a missing or bad field.
    BadDetections,
    /// More than [`MAX_FACES`] faces.
    TooManyFaces,
}

impl LoopErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            LoopErrorCode::TooLarge => "too_large",
            LoopErrorCode::BadJson => "bad_json",
            LoopErrorCode::UnknownType => "unknown_type",
            LoopErrorCode::BadDetections => "bad_detections",
            LoopErrorCode::TooManyFaces => "too_many_faces",
        }
    }
}

/// A refused client message.
#[derive(Debug, Clone, PartialEq)]
pub struct LoopError {
    pub code: LoopErrorCode,
    pub message: String,
}

impl LoopError {
    pub fn new(code: LoopErrorCode, message: impl Into<String>) -> Self {
        LoopError { code, message: message.into() }
    }
}

impl std::fmt::Display for LoopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for LoopError {}

/// Parses one data channel message as it arrives: `is_string` false (binary) is
/// refused, and so is anything over [`MAX_MESSAGE_BYTES`] (checked before decoding).
pub fn parse_message(is_string: bool, data: &[u8]) -> Result<ClientMessage, LoopError> {
    check_size(data.len())?;
    if !is_string {
        return Err(LoopError::new(LoopErrorCode::BadJson, "binary messages are not part of the protocol"));
    }
    let text = std::str::from_utf8(data).map_err(|_| LoopError::new(LoopErrorCode::BadJson, "not UTF-8"))?;
    parse(text)
}

/// Parses one text message from the page.
pub fn parse(text: &str) -> Result<ClientMessage, LoopError> {
    check_size(text.len())?;
    let value: Value = serde_json::from_str(text)
        .map_err(|e| LoopError::new(LoopErrorCode::BadJson, format!("not valid JSON: {e}")))?;
    let Value::Object(object) = value else {
        return Err(LoopError::new(LoopErrorCode::BadJson, "expected a JSON object"));
    };
    let kind = match object.get("type") {
        Some(Value::String(kind)) => kind.as_str(),
        Some(_) => return Err(LoopError::new(LoopErrorCode::BadJson, "`type` must be a string")),
        None => return Err(LoopError::new(LoopErrorCode::BadJson, "missing `type`")),
    };
    match kind {
        "detecting" => frame_code(&object).map(|frame| ClientMessage::Detecting { frame }),
        "detections" => parse_detections(&object).map(ClientMessage::Detections),
        other => Err(LoopError::new(
            LoopErrorCode::UnknownType,
            format!("unknown message type `{}`", other.chars().take(40).collect::<String>()),
        )),
    }
}

fn check_size(len: usize) -> Result<(), LoopError> {
    if len > MAX_MESSAGE_BYTES {
        return Err(LoopError::new(
            LoopErrorCode::TooLarge,
            format!("a {len}-byte message; the limit is {MAX_MESSAGE_BYTES} bytes"),
        ));
    }
    Ok(())
}

fn bad(message: impl Into<String>) -> LoopError {
    LoopError::new(LoopErrorCode::BadDetections, message)
}

fn parse_detections(object: &serde_json::Map<String, Value>) -> Result<PageDetections, LoopError> {
    match object.get("source") {
        None => {}
        Some(Value::String(source)) if source == "page" => {}
        Some(_) => return Err(bad("`source` must be \"page\"")),
    }
    let frame = frame_code(object)?;
    let detector = match object.get("detector") {
        None => None,
        Some(Value::String(name)) => Some(PageDetector::from_name(name).ok_or_else(|| {
            bad(format!(
                "`detector` must be \"tiny\" or \"ssd\", not `{}`",
                name.chars().take(40).collect::<String>()
            ))
        })?),
        Some(_) => return Err(bad("`detector` must be a string")),
    };
    let dimension = |name: &str| {
        object
            .get(name)
            .and_then(Value::as_u64)
            .filter(|&n| (1..=u64::from(MAX_DIMENSION)).contains(&n))
            .map(|n| n as u32)
            .ok_or_else(|| bad(format!("`{name}` must be an integer from 1 to {MAX_DIMENSION}")))
    };
    let width = dimension("width")?;
    let height = dimension("height")?;
    let Some(Value::Array(list)) = object.get("faces") else {
        return Err(bad("`faces` must be an array"));
    };
    if list.len() > MAX_FACES {
        return Err(LoopError::new(
            LoopErrorCode::TooManyFaces,
            format!("{} faces; the limit is {MAX_FACES}", list.len()),
        ));
    }
    let faces = list.iter().enumerate().map(|(i, face)| parse_face(i, face)).collect::<Result<_, _>>()?;
    Ok(PageDetections { frame, detector, width, height, faces })
}

/// The message's `frame`: a page frame code.
fn frame_code(object: &serde_json::Map<String, Value>) -> Result<u16, LoopError> {
    object
        .get("frame")
        .and_then(Value::as_u64)
        .and_then(|n| u16::try_from(n).ok())
        .ok_or_else(|| bad("`frame` must be an integer frame code, 0 to 65535"))
}

fn parse_face(index: usize, value: &Value) -> Result<WireFace, LoopError> {
    let Value::Object(face) = value else {
        return Err(bad(format!("face {index} must be an object")));
    };
    let number = |name: &str| -> Result<f32, LoopError> {
        let value = face.get(name).and_then(Value::as_f64).map(|v| v as f32);
        match value {
            Some(v) if v.is_finite() && v.abs() <= MAX_COORDINATE => Ok(v),
            _ => Err(bad(format!("face {index}: `{name}` must be a finite number"))),
        }
    };
    let (x, y, w, h, score) = (number("x")?, number("y")?, number("w")?, number("h")?, number("score")?);
    if w < 0.0 || h < 0.0 {
        return Err(bad(format!("face {index}: `w` and `h` must not be negative")));
    }
    if !(0.0..=1.0).contains(&score) {
        return Err(bad(format!("face {index}: `score` must be from 0 to 1")));
    }
    Ok(WireFace { x, y, w, h, score })
}

#[cfg(test)]
mod tests {

    use serde_json::json;

    use super::*;

    fn code(text: &str) -> LoopErrorCode {
        parse(text).expect_err("should be refused").code
    }

    fn detections(faces: Value) -> String {
        json!({"type": "detections", "source": "page", "frame": 12, "width": 640, "height": 480, "faces": faces})
            .to_string()
    }

    #[test]
    fn page_detections_parse() {
        let text = detections(json!([{"x": 10.5, "y": 20, "w": 100, "h": 120, "score": 0.93}]));
        let Ok(ClientMessage::Detections(message)) = parse(&text) else { panic!("{text}") };
        assert_eq!((message.frame, message.width, message.height, message.detector), (12, 640, 480, None));
        assert_eq!(message.faces, vec![WireFace { x: 10.5, y: 20.0, w: 100.0, h: 120.0, score: 0.93 }]);
        assert_eq!(message.faces()[0].w, 100.0);
        // No faces, no `source`, extra fields, frame 65535: all fine.
        let text = r#"{"type":"detections","frame":65535,"width":1,"height":1,"faces":[],"extra":true}"#;
        assert!(parse(text).is_ok());
        assert!(parse_message(true, detections(json!([])).as_bytes()).is_ok());
        // Exactly 64 faces is allowed.
        let face = json!({"x": 1, "y": 1, "w": 1, "h": 1, "score": 1});
        assert!(parse(&detections(Value::Array(vec![face; MAX_FACES]))).is_ok());
        // The page's detector, by name.
        let text = r#"{"type":"detections","frame":3,"detector":"ssd","width":8,"height":8,"faces":[]}"#;
        let Ok(ClientMessage::Detections(message)) = parse(text) else { panic!("{text}") };
        assert_eq!(message.detector, Some(PageDetector::Ssd));
    }

    #[test]
    fn detecting_names_a_frame() {
        assert_eq!(
            parse(r#"{"type":"detecting","frame":65535}"#),
            Ok(ClientMessage::Detecting { frame: 65535 })
        );
        for bad in [
            r#"{"type":"detecting"}"#,
            r#"{"type":"detecting","frame":65536}"#,
            r#"{"type":"detecting","frame":"1"}"#,
        ] {
            assert_eq!(code(bad), LoopErrorCode::BadDetections, "{bad}");
        }
    }

    #[test]
    fn bad_messages_get_their_codes() {
        assert_eq!(code("not json"), LoopErrorCode::BadJson);
        assert_eq!(code(""), LoopErrorCode::BadJson);
        assert_eq!(code("[1,2]"), LoopErrorCode::BadJson);
        assert_eq!(code("42"), LoopErrorCode::BadJson);
        assert_eq!(code(r#"{"frame":1}"#), LoopErrorCode::BadJson);
        assert_eq!(code(r#"{"type":7}"#), LoopErrorCode::BadJson);
        assert_eq!(code(r#"{"type":"hello"}"#), LoopErrorCode::UnknownType);
        assert_eq!(code(r#"{"type":"stats"}"#), LoopErrorCode::UnknownType, "server-only type");
        assert_eq!(parse_message(false, b"{}").unwrap_err().code, LoopErrorCode::BadJson);
        assert_eq!(parse_message(true, &[0xff, 0xfe]).unwrap_err().code, LoopErrorCode::BadJson);
    }

    #[test]
    fn oversized_messages_are_refused_before_parsing() {
        let big = format!(r#"{{"type":"detections","pad":"{}"}}"#, "x".repeat(MAX_MESSAGE_BYTES));
        assert_eq!(code(&big), LoopErrorCode::TooLarge);
        assert_eq!(parse_message(true, big.as_bytes()).unwrap_err().code, LoopErrorCode::TooLarge);
        // Binary and not even JSON, but too large first.
        assert_eq!(
            parse_message(false, &vec![0; MAX_MESSAGE_BYTES + 1]).unwrap_err().code,
            LoopErrorCode::TooLarge
        );
    }

    #[test]
    fn bad_detections_get_their_codes() {
        let base = json!({"type": "detections", "frame": 1, "width": 640, "height": 480, "faces": []});
        let with = |key: &str, value: Value| {
            let mut message = base.clone();
            message[key] = value;
            code(&message.to_string())
        };
        let without = |key: &str| {
            let mut message = base.clone();
            message.as_object_mut().unwrap().remove(key);
            code(&message.to_string())
        };
        for key in ["frame", "width", "height", "faces"] {
            assert_eq!(without(key), LoopErrorCode::BadDetections, "without {key}");
        }
        assert_eq!(with("source", json!("server")), LoopErrorCode::BadDetections);
        assert_eq!(with("source", json!(1)), LoopErrorCode::BadDetections);
        assert_eq!(with("frame", json!(65536)), LoopErrorCode::BadDetections);
        assert_eq!(with("frame", json!(-1)), LoopErrorCode::BadDetections);
        assert_eq!(with("frame", json!(1.5)), LoopErrorCode::BadDetections);
        assert_eq!(with("frame", json!("1")), LoopErrorCode::BadDetections);
        assert_eq!(with("frame", Value::Null), LoopErrorCode::BadDetections);
        assert_eq!(with("width", json!(0)), LoopErrorCode::BadDetections);
        assert_eq!(with("height", json!(MAX_DIMENSION + 1)), LoopErrorCode::BadDetections);
        assert_eq!(with("faces", json!({})), LoopErrorCode::BadDetections);
        assert_eq!(with("faces", json!([1])), LoopErrorCode::BadDetections);
        assert_eq!(with("detector", json!("mtcnn")), LoopErrorCode::BadDetections);
        assert_eq!(with("detector", json!(1)), LoopErrorCode::BadDetections);
    }

    #[test]
    fn bad_faces_get_their_codes() {
        let face = |patch: Value| {
            let mut face = json!({"x": 1, "y": 2, "w": 3, "h": 4, "score": 0.5});
            for (key, value) in patch.as_object().unwrap() {
                face[key] = value.clone();
            }
            code(&detections(json!([face])))
        };
        assert_eq!(face(json!({"x": "1"})), LoopErrorCode::BadDetections);
        assert_eq!(face(json!({"y": null})), LoopErrorCode::BadDetections);
        assert_eq!(face(json!({"w": -1})), LoopErrorCode::BadDetections);
        assert_eq!(face(json!({"h": 1e30})), LoopErrorCode::BadDetections, "finite, but no box is that big");
        assert_eq!(face(json!({"score": 1.5})), LoopErrorCode::BadDetections);
        assert_eq!(face(json!({"score": -0.1})), LoopErrorCode::BadDetections);
        let missing = detections(json!([{"x": 1, "y": 2, "w": 3, "h": 4}]));
        assert_eq!(code(&missing), LoopErrorCode::BadDetections, "no score");
        // JSON has no NaN or Infinity; a page's JSON.stringify writes them as null.
        assert_eq!(
            code(&detections(json!([{"x": 1, "y": 2, "w": 3, "h": 4, "score": "NaN"}]))),
            LoopErrorCode::BadDetections
        );
        assert_eq!(
            code(
                r#"{"type":"detections","frame":1,"width":2,"height":2,"faces":[{"x":NaN,"y":0,"w":1,"h":1,"score":1}]}"#
            ),
            LoopErrorCode::BadJson
        );
        let many = Value::Array(vec![json!({"x": 1, "y": 1, "w": 1, "h": 1, "score": 1}); MAX_FACES + 1]);
        assert_eq!(code(&detections(many)), LoopErrorCode::TooManyFaces);
    }

    #[test]
    fn server_messages_serialize_as_the_protocol_says() {
        let face = Face { x: 1.0, y: 2.0, w: 3.0, h: 4.0, score: 0.5 };
        let message =
            ServerMessage::Detections(ServerDetections::new(90_000, Some(7), 320, 240, &[face], 4.5, 12.0));
        let value: Value = serde_json::from_str(&message.to_json()).unwrap();
        assert_eq!(
            value,
            json!({"type": "detections", "source": "server", "rtp_ts": 90000, "frame": 7, "width": 320,
                   "height": 240, "faces": [{"x": 1.0, "y": 2.0, "w": 3.0, "h": 4.0, "score": 0.5}],
                   "infer_ms": 4.5, "age_ms": 12.0})
        );
        let message = ServerMessage::Detections(ServerDetections::new(1, None, 2, 2, &[], f64::NAN, 0.0));
        let value: Value = serde_json::from_str(&message.to_json()).unwrap();
        assert_eq!((&value["frame"], &value["infer_ms"]), (&Value::Null, &Value::Null));
        let stats = ServerMessage::Stats {
            tap: json!({"fps": 30}),
            detect: json!({"enabled": false}),
            agreement: crate::seeing::agreement::Agreement::new().to_json(),
        };
        let value: Value = serde_json::from_str(&stats.to_json()).unwrap();
        assert_eq!(
            (&value["type"], &value["tap"], &value["detect"]),
            (&json!("stats"), &json!({"fps": 30}), &json!({"enabled": false}))
        );
        assert_eq!(
            (&value["agreement"]["frames"], &value["agreement"]["mean_iou"]),
            (&json!(0), &Value::Null)
        );
        let error: ServerMessage = LoopError::new(LoopErrorCode::TooManyFaces, "65 faces").into();
        assert_eq!(error.to_json(), r#"{"type":"error","code":"too_many_faces","message":"65 faces"}"#);
        // as_str agrees with the serde names.
        for code in [
            LoopErrorCode::TooLarge,
            LoopErrorCode::BadJson,
            LoopErrorCode::UnknownType,
            LoopErrorCode::BadDetections,
            LoopErrorCode::TooManyFaces,
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), json!(code.as_str()));
        }
    }
}
