//! The signaling protocol: JSON text frames on `/ws`.
//!
//! Parsing is strict and total: every frame becomes either a [`ClientMessage`] or a
//! [`SignalError`] with a stable snake_case code, so the connection loop never has to
//! guess, and nothing from the network can panic the server.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Largest SDP we accept. A browser offer for one video track is ~5 KB.
pub const MAX_SDP_BYTES: usize = 32 * 1024;
/// Largest candidate line we accept (a real one is ~150 bytes).
pub const MAX_CANDIDATE_BYTES: usize = 1024;
/// Longest publish token an offer may carry.
pub const MAX_TOKEN_BYTES: usize = 512;

/// A message from the client.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    /// An SDP offer to publish (and get the echo back), with the publish token when
    /// the client sends it here rather than on the WebSocket's URL or header.
    Offer { sdp: String, token: Option<String> },
    /// A receive-only SDP offer to watch the session whose watch token is `session`.
    Watch { session: String, sdp: String },
    /// A trickled ICE candidate; `None` is end-of-candidates.
    Ice(Option<Candidate>),
}

/// A remote ICE candidate as the browser's `RTCIceCandidate.toJSON()` gives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub candidate: String,
    #[serde(rename = "sdpMid", default)]
    pub sdp_mid: Option<String>,
    #[serde(rename = "sdpMLineIndex", default)]
    pub sdp_mline_index: Option<u16>,
    #[serde(rename = "usernameFragment", default, skip_serializing_if = "Option::is_none")]
    pub username_fragment: Option<String>,
}

impl Candidate {
    /// The connection address of the candidate line ([`candidate_address`]), if it has one.
    pub fn address(&self) -> Option<&str> {
        candidate_address(&self.candidate)
    }
}

/// Word `n` of a candidate attribute, trickled or an SDP's `a=candidate:` line
/// without its `a=`: `candidate:<foundation> <component> <transport> <priority>
/// <address> <port> typ <type> ...`.
fn candidate_word(attribute: &str, n: usize) -> Option<&str> {
    attribute.strip_prefix("candidate:")?.split_ascii_whitespace().nth(n)
}

/// The connection address of a candidate attribute.
pub fn candidate_address(attribute: &str) -> Option<&str> {
    candidate_word(attribute, 4)
}

/// The transport (`udp`, `tcp`) of a candidate attribute.
pub fn candidate_transport(attribute: &str) -> Option<&str> {
    candidate_word(attribute, 2)
}

/// The port of a candidate attribute.
pub fn candidate_port(attribute: &str) -> Option<&str> {
    candidate_word(attribute, 5)
}

/// The type (`host`, `srflx`, `prflx`, `relay`) of a candidate attribute.
pub fn candidate_type(attribute: &str) -> Option<&str> {
    candidate_word(attribute, 7)
}

/// A message to the client.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    Answer {
        sdp: String,
        session: String,
        /// (Publishers only) the secret that lets others watch: `/watch/<token>`.
        #[serde(skip_serializing_if = "Option::is_none")]
        watch: Option<String>,
    },
    Ice {
        candidate: Candidate,
    },
    Error {
        code: ErrorCode,
        message: String,
        /// (`elsewhere`, `server_full` in a cluster) the node to go to instead.
        #[serde(skip_serializing_if = "Option::is_none")]
        node: Option<String>,
    },
}

impl ServerMessage {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        ServerMessage::Error { code, message: message.into(), node: None }
    }

    pub fn to_json(&self) -> String {
        // Serializing our own enum of strings cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }
}

/// The error codes a client can see. Stable: clients and tests match on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not a JSON object, or a binary frame.
    BadJson,
    /// A JSON object whose `type` we do not know.
    UnknownType,
    /// Missing, oversized or unusable SDP.
    BadSdp,
    /// The offer's video has no VP8: the echo sends back what it receives, in VP8.
    UnsupportedCodec,
    /// An ICE candidate we could not parse or apply.
    BadCandidate,
    /// An ICE candidate came before any offer and could not be kept.
    NoOffer,
    /// More ICE candidates than one session may send.
    TooManyCandidates,
    /// A frame over the size limit (then the socket closes).
    TooLarge,
    /// Frames faster than the rate limit (then the socket closes).
    RateLimited,
    /// No offer in time after the socket opened (then it closes).
    IdleTimeout,
    /// A second offer on a connection that already has a session.
    AlreadyNegotiated,
    /// `--max-sessions` reached.
    ServerFull,
    /// `--max-sessions-per-ip` reached for the client's address.
    IpFull,
    /// Publishing needs `--publish-token`, and the client sent none or a wrong one
    /// (then the socket closes).
    Unauthorized,
    /// ICE failed, or stayed disconnected too long.
    IceFailed,
    /// The server is shutting down.
    ServerShutdown,
    /// `watch` named a session that does not exist (or has ended).
    NoSuchSession,
    /// (`--cluster`) `watch` named a session held by another node: `node` says which.
    Elsewhere,
    /// `--max-viewers` reached for that session.
    ViewersFull,
    /// The session a viewer watched has ended (then the socket closes).
    PublisherLeft,
    /// Anything that is our fault rather than the client's.
    Internal,
}

/// Why a frame was refused, ready to send back.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalError {
    pub code: ErrorCode,
    pub message: String,
    /// A node to try instead (`--cluster`).
    pub node: Option<String>,
}

impl SignalError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        SignalError { code, message: message.into(), node: None }
    }

    /// The same error, naming another node to go to.
    pub fn at_node(self, node: &url::Url) -> Self {
        SignalError { node: Some(node.as_str().trim_end_matches('/').to_owned()), ..self }
    }
}

impl From<SignalError> for ServerMessage {
    fn from(err: SignalError) -> Self {
        ServerMessage::Error { code: err.code, message: err.message, node: err.node }
    }
}

/// Parses one text frame.
pub fn parse(text: &str) -> Result<ClientMessage, SignalError> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| SignalError::new(ErrorCode::BadJson, format!("not valid JSON: {e}")))?;
    let Value::Object(mut object) = value else {
        return Err(SignalError::new(ErrorCode::BadJson, "expected a JSON object"));
    };
    let kind = match object.get("type") {
        Some(Value::String(kind)) => kind.clone(),
        Some(_) => {
            return Err(SignalError::new(ErrorCode::BadJson, "`type` must be a string"));
        }
        None => return Err(SignalError::new(ErrorCode::BadJson, "missing `type`")),
    };
    match kind.as_str() {
        "offer" => {
            let token = match object.remove("token") {
                None | Some(Value::Null) => None,
                Some(Value::String(token)) if token.len() <= MAX_TOKEN_BYTES => Some(token),
                Some(_) => {
                    return Err(SignalError::new(ErrorCode::Unauthorized, "`token` must be a short string"));
                }
            };
            match parse_offer(object.remove("sdp"))? {
                ClientMessage::Offer { sdp, .. } => Ok(ClientMessage::Offer { sdp, token }),
                _ => Err(SignalError::new(ErrorCode::Internal, "offer parsing gave something else")),
            }
        }
        "watch" => parse_watch(object.remove("session"), object.remove("sdp")),
        "ice" => parse_ice(object.remove("candidate")),
        other => Err(SignalError::new(
            ErrorCode::UnknownType,
            format!("unknown message type `{}`", truncate(other, 40)),
        )),
    }
}

fn parse_offer(sdp: Option<Value>) -> Result<ClientMessage, SignalError> {
    let sdp = match sdp {
        Some(Value::String(sdp)) => sdp,
        Some(_) => return Err(SignalError::new(ErrorCode::BadSdp, "`sdp` must be a string")),
        None => return Err(SignalError::new(ErrorCode::BadSdp, "offer without `sdp`")),
    };
    if sdp.len() > MAX_SDP_BYTES {
        return Err(SignalError::new(
            ErrorCode::BadSdp,
            format!("SDP is {} bytes; the limit is {MAX_SDP_BYTES}", sdp.len()),
        ));
    }
    if !sdp.starts_with("v=0") {
        return Err(SignalError::new(ErrorCode::BadSdp, "SDP must start with `v=0`"));
    }
    if !sdp.lines().any(|line| line.starts_with("m=video ")) {
        return Err(SignalError::new(ErrorCode::BadSdp, "the offer has no video m-line: nothing to echo"));
    }
    Ok(ClientMessage::Offer { sdp, token: None })
}

/// Longest watch token we look up (ours are 32 hex digits).
const MAX_WATCH_TOKEN: usize = 64;

fn parse_watch(session: Option<Value>, sdp: Option<Value>) -> Result<ClientMessage, SignalError> {
    let session = match session {
        Some(Value::String(token)) if !token.is_empty() && token.len() <= MAX_WATCH_TOKEN => token,
        _ => {
            return Err(SignalError::new(
                ErrorCode::NoSuchSession,
                "`session` must be the session's watch token (from its share link)",
            ));
        }
    };
    match parse_offer(sdp)? {
        ClientMessage::Offer { sdp, .. } => Ok(ClientMessage::Watch { session, sdp }),
        _ => Err(SignalError::new(ErrorCode::Internal, "offer parsing gave something else")),
    }
}

fn parse_ice(candidate: Option<Value>) -> Result<ClientMessage, SignalError> {
    let candidate = match candidate {
        None | Some(Value::Null) => return Ok(ClientMessage::Ice(None)),
        Some(value) => value,
    };
    let candidate: Candidate = serde_json::from_value(candidate)
        .map_err(|e| SignalError::new(ErrorCode::BadCandidate, format!("malformed candidate: {e}")))?;
    // An empty candidate string is the browser's end-of-candidates marker.
    if candidate.candidate.is_empty() {
        return Ok(ClientMessage::Ice(None));
    }
    if candidate.candidate.len() > MAX_CANDIDATE_BYTES {
        return Err(SignalError::new(ErrorCode::BadCandidate, "candidate line too long"));
    }
    if candidate.address().is_none() {
        return Err(SignalError::new(
            ErrorCode::BadCandidate,
            "expected `candidate:<foundation> <component> <transport> <priority> <address> <port> typ <type>`",
        ));
    }
    Ok(ClientMessage::Ice(Some(candidate)))
}

fn truncate(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str) -> ErrorCode {
        parse(text).expect_err("should be refused").code
    }

    #[test]
    fn offers_and_candidates_parse() {
        let offer = parse(r#"{"type":"offer","sdp":"v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"}"#);
        assert!(matches!(offer, Ok(ClientMessage::Offer { token: None, .. })));
        let offer =
            parse(r#"{"type":"offer","token":"t0k","sdp":"v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"}"#);
        assert!(matches!(offer, Ok(ClientMessage::Offer { token: Some(t), .. }) if t == "t0k"));
        let ice = parse(
            r#"{"type":"ice","candidate":{"candidate":"candidate:1 1 udp 2122260223 127.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0}}"#,
        )
        .unwrap();
        let ClientMessage::Ice(Some(candidate)) = ice else { panic!("{ice:?}") };
        assert_eq!(candidate.address(), Some("127.0.0.1"));
        assert_eq!(candidate.sdp_mid.as_deref(), Some("0"));
    }

    #[test]
    fn end_of_candidates_is_accepted_in_both_forms() {
        assert_eq!(parse(r#"{"type":"ice","candidate":null}"#), Ok(ClientMessage::Ice(None)));
        assert_eq!(parse(r#"{"type":"ice"}"#), Ok(ClientMessage::Ice(None)));
        assert_eq!(
            parse(r#"{"type":"ice","candidate":{"candidate":"","sdpMid":"0"}}"#),
            Ok(ClientMessage::Ice(None))
        );
    }

    #[test]
    fn bad_frames_get_their_codes() {
        assert_eq!(code("not json"), ErrorCode::BadJson);
        assert_eq!(code("[1,2]"), ErrorCode::BadJson);
        assert_eq!(code(r#"{"sdp":"v=0"}"#), ErrorCode::BadJson);
        assert_eq!(code(r#"{"type":7}"#), ErrorCode::BadJson);
        assert_eq!(code(r#"{"type":"hello"}"#), ErrorCode::UnknownType);
        assert_eq!(code(r#"{"type":"offer"}"#), ErrorCode::BadSdp);
        assert_eq!(code(r#"{"type":"offer","sdp":42}"#), ErrorCode::BadSdp);
        assert_eq!(code(r#"{"type":"offer","sdp":"hello"}"#), ErrorCode::BadSdp);
        assert_eq!(code(r#"{"type":"offer","sdp":"v=0\r\nm=audio 9 RTP/AVP 0\r\n"}"#), ErrorCode::BadSdp);
        assert_eq!(code(r#"{"type":"offer","token":5,"sdp":"v=0"}"#), ErrorCode::Unauthorized);
        assert_eq!(code(r#"{"type":"ice","candidate":5}"#), ErrorCode::BadCandidate);
        assert_eq!(code(r#"{"type":"ice","candidate":{"candidate":"garbage"}}"#), ErrorCode::BadCandidate);
    }

    #[test]
    fn errors_serialize_as_the_protocol_says() {
        let json = ServerMessage::error(ErrorCode::ServerFull, "full").to_json();
        assert_eq!(json, r#"{"type":"error","code":"server_full","message":"full"}"#);
        let node = url::Url::parse("http://10.0.0.2:8080").unwrap();
        let json =
            ServerMessage::from(SignalError::new(ErrorCode::Elsewhere, "there").at_node(&node)).to_json();
        assert_eq!(
            json,
            r#"{"type":"error","code":"elsewhere","message":"there","node":"http://10.0.0.2:8080"}"#
        );
    }
}
