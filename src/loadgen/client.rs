//! A webrtc-rs client peer that publishes VP8 to a face-echo server and receives
//! the echo: the other end of the integration tests and the load generator.
//!
//! It speaks the same signaling protocol as the page (JSON over `/ws`, trickle
//! ICE), so it tests the server the way a browser uses it; or WHIP/WHEP (one HTTP
//! POST with every candidate in the offer), as encoders and players do.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::{
    TransportLayerNack, nack_pairs_from_sequence_numbers,
};
use rtc::rtp;
use rtc::rtp::packetizer::Packetizer;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use webrtc::data_channel::{DataChannel, DataChannelEvent, RTCDataChannelInit};
use webrtc::media_stream::Track;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionEventHandler, RTCIceCandidateInit, RTCPeerConnectionIceEvent,
    RTCPeerConnectionState, RTCSessionDescription, Registry,
};
use webrtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit, RtpSender};

pub use super::media::EchoCallback;
use super::media::{OwnMedia, Pending};
use crate::media::udp_mux::ReaderGroup;
use crate::session::peer::{self, PeerMedia, PeerNetwork};

/// Changes the offer before it is sent (tests use it to pin the DTLS role).
pub type OfferEdit = Box<dyn FnOnce(String) -> String + Send>;

/// The label of the data channel face-echo's server talks JSON on.
pub const DATA_CHANNEL_LABEL: &str = "face-echo";

/// How a [`ClientPeer`] negotiates: what it offers and from where.
pub struct ClientOptions {
    /// Video tracks (m-lines) to offer, each with its own SSRC and packetizer (at least 1).
    pub tracks: usize,
    /// Create an ordered data channel labelled [`DATA_CHANNEL_LABEL`] before the offer.
    pub data_channel: bool,
    /// Send from this address, signaling and media (e.g. 127.0.0.2, or the one the
    /// route to a server on another host leaves from); `None`: media from
    /// 127.0.0.1, signaling from where the kernel picks.
    pub local: Option<IpAddr>,
    /// Changes the offer before it is sent (tests use it to pin the DTLS role).
    pub edit_offer: Option<OfferEdit>,
    /// Deliver echoed packets tagged with the mid of the m-line they arrived on, in
    /// [`ClientPeer::echoed_by_mid`], instead of untagged in [`ClientPeer::echoed`].
    pub echo_by_mid: bool,
    /// The direction of the offered video m-lines: `Sendrecv` (the page's), `Sendonly`
    /// (a WHIP encoder's) or `Recvonly` (a WHEP player's: no local track at all, so
    /// nothing to send and no [`ClientPeer::ssrc`]).
    pub direction: RTCRtpTransceiverDirection,
    /// Hand each echoed packet to this callback instead of queueing it for
    /// [`ClientPeer::echoed`]: with `own_media`, on the socket's reader, with no task
    /// hand-off per packet (the load generator, whose cost must stay below the
    /// server's it measures). It must not block.
    pub on_echo: Option<EchoCallback>,
    /// Run no interceptor but the one numbering sent packets: no NACKs, no reports,
    /// no transport-cc feedback of our own. The offer still advertises the same
    /// feedback, so the server does for this peer the work a browser gives it. For the
    /// load generator, which measures loss and delay itself: on loopback nothing is
    /// lost, so nothing would be retransmitted either way.
    pub lean: bool,
    /// Send RTP and receive the echo on a socket of the peer's own, with its own
    /// SRTP, past webrtc-rs's driver (see [`super::media`]): the load generator's
    /// path. Needs `on_echo` (the echo goes there).
    pub own_media: bool,
    /// With `own_media`: the thread that reads the peer's socket, shared with other
    /// peers (the load generator's publishers share one); `None`: a thread of its own.
    pub reader: Option<ReaderGroup>,
    /// The SRTP profiles to offer in DTLS (empty: webrtc-rs's, AES-GCM first; a
    /// libsrtp peer such as GStreamer offers AES-CM).
    pub srtp_profiles: Vec<webrtc::peer_connection::SrtpProtectionProfile>,
    /// ICE over TCP only (no UDP socket at all): the client dials the server's
    /// passive TCP candidate when it trickles in, as a browser behind a UDP-blocking
    /// firewall does.
    pub tcp_only: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            tracks: 1,
            data_channel: false,
            local: None,
            edit_offer: None,
            echo_by_mid: false,
            direction: RTCRtpTransceiverDirection::Sendrecv,
            on_echo: None,
            lean: false,
            own_media: false,
            srtp_profiles: Vec::new(),
            reader: None,
            tcp_only: false,
        }
    }
}

/// How a [`ClientPeer`] signals.
enum Signal<'a> {
    /// JSON on `/ws` with trickle ICE; `watch` is the watch token, for a viewer.
    WebSocket { url: &'a str, watch: Option<&'a str> },
    /// One HTTP POST of the whole offer (WHIP, or WHEP), optionally with a bearer token.
    Http { url: &'a str, token: Option<&'a str> },
}

/// One local video track: its own SSRC, packetizer and m-line.
struct LocalTrack {
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    packetizer: Box<dyn Packetizer>,
    /// The mid of the transceiver it is sent on.
    mid: String,
    plis_received: Arc<AtomicU64>,
}

/// The client's `face-echo` data channel, once created.
struct Channel {
    channel: Arc<dyn DataChannel>,
    open: watch::Receiver<bool>,
}

impl Channel {
    /// Waits until the channel is open, at most `timeout`.
    async fn opened(&self, timeout: Duration) -> anyhow::Result<()> {
        let mut open = self.open.clone();
        tokio::time::timeout(timeout, open.wait_for(|open| *open))
            .await
            .context("data channel not open in time")?
            .context("data channel gone")?;
        Ok(())
    }
}

/// A connected webrtc-rs client of face-echo: a publisher (its echo arrives in
/// [`ClientPeer::echoed`]) or, from [`ClientPeer::watch`], a viewer.
pub struct ClientPeer {
    /// The session id the server gave in its answer.
    pub session: String,
    /// The secret others watch this session with (publishers only; empty for viewers).
    pub watch_token: String,
    /// (WHIP and WHEP) the resource's absolute URL, from `Location`: DELETE ends it.
    pub resource: Option<String>,
    /// Echoed RTP packets, in arrival order (empty with [`ClientOptions::echo_by_mid`]).
    pub echoed: mpsc::UnboundedReceiver<rtp::Packet>,
    /// Echoed RTP packets with the mid of the local m-line each arrived on (only with
    /// [`ClientOptions::echo_by_mid`]).
    pub echoed_by_mid: mpsc::UnboundedReceiver<(String, rtp::Packet)>,
    pc: Arc<dyn PeerConnection>,
    tracks: Vec<LocalTrack>,
    echo_track: watch::Receiver<Option<Arc<dyn TrackRemote>>>,
    channel: Option<Channel>,
    channel_messages: Option<mpsc::UnboundedReceiver<String>>,
    errors: Arc<std::sync::Mutex<Vec<String>>>,
    /// Every task of this peer, the handler's included: aborted on close.
    tasks: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
    /// With [`ClientOptions::own_media`]: where RTP goes instead of the tracks.
    media: Option<OwnMedia>,
}

/// Where the handler puts echoed packets.
#[derive(Clone)]
enum EchoSink {
    Plain(mpsc::UnboundedSender<rtp::Packet>),
    ByMid(mpsc::UnboundedSender<(String, rtp::Packet)>),
    Callback(EchoCallback),
}

struct Handler {
    ws_out: mpsc::UnboundedSender<String>,
    state: watch::Sender<RTCPeerConnectionState>,
    echo_track: watch::Sender<Option<Arc<dyn TrackRemote>>>,
    echoed: EchoSink,
    /// The PeerConnection, weakly (a strong one would be a cycle through its own
    /// handler), to find the m-line a track arrived on.
    pc: Arc<OnceLock<Weak<dyn PeerConnection>>>,
    tasks: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
}

/// The `tcptype passive` candidates (attributes without `a=`) an SDP names.
fn passive_tcp_candidates(sdp: &str) -> Vec<String> {
    sdp.lines()
        .filter_map(|line| line.trim_end().strip_prefix("a="))
        .filter(|attribute| attribute.starts_with("candidate:"))
        .filter(|attribute| {
            attribute.split_ascii_whitespace().skip_while(|w| *w != "tcptype").nth(1) == Some("passive")
        })
        .map(str::to_owned)
        .collect()
}

/// A local candidate as the signaling message that trickles it to the server.
pub fn candidate_message(event: RTCPeerConnectionIceEvent) -> Option<String> {
    let init = event.candidate.to_json().ok()?;
    let message = json!({"type": "ice", "candidate": {
        "candidate": init.candidate,
        "sdpMid": init.sdp_mid,
        "sdpMLineIndex": init.sdp_mline_index,
    }});
    Some(message.to_string())
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Some(message) = candidate_message(event) {
            let _ = self.ws_out.send(message);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.state.send(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let _ = self.echo_track.send(Some(Arc::clone(&track)));
        let echoed = self.echoed.clone();
        let pc = Arc::clone(&self.pc);
        // Called from the PeerConnection's driver loop: look the m-line up in a task.
        let task = tokio::spawn(async move {
            let mid = match &echoed {
                EchoSink::ByMid(_) => mid_receiving(&pc, &track).await.unwrap_or_default(),
                EchoSink::Plain(_) => String::new(),
                // With `own_media` echoes go to the callback on the socket's reader
                // (`super::media`); what webrtc-rs took before that still comes through here.
                EchoSink::Callback(_) => String::new(),
            };
            while let Some(event) = track.poll().await {
                let TrackRemoteEvent::OnRtpPacket(packet) = event else { continue };
                let sent = match &echoed {
                    EchoSink::Plain(tx) => tx.send(packet).is_ok(),
                    EchoSink::ByMid(tx) => tx.send((mid.clone(), packet)).is_ok(),
                    EchoSink::Callback(on_echo) => {
                        on_echo(packet);
                        true
                    }
                };
                if !sent {
                    return;
                }
            }
        });
        self.tasks.lock().unwrap_or_else(|e| e.into_inner()).push(task);
    }
}

/// The mid of the transceiver whose receiver's track is `track` (webrtc-rs hands
/// `on_track` the receiver's own `Arc`).
async fn mid_receiving(
    pc: &OnceLock<Weak<dyn PeerConnection>>,
    track: &Arc<dyn TrackRemote>,
) -> Option<String> {
    let pc = pc.get()?.upgrade()?;
    for transceiver in pc.get_transceivers().await {
        let Ok(Some(receiver)) = transceiver.receiver().await else { continue };
        if std::ptr::addr_eq(Arc::as_ptr(receiver.track()), Arc::as_ptr(track)) {
            return transceiver.mid().await.ok().flatten();
        }
    }
    None
}

/// The id `sender` negotiated for the transport-wide sequence number extension.
async fn transport_cc_id(sender: &Arc<dyn RtpSender>) -> Option<u8> {
    let parameters = sender.get_parameters().await.ok()?;
    let extension = parameters
        .rtp_parameters
        .header_extensions
        .iter()
        .find(|extension| extension.uri == rtc::sdp::extmap::TRANSPORT_CC_URI)?;
    u8::try_from(extension.id).ok()
}

/// The mid of the transceiver `sender` belongs to.
async fn mid_sending(pc: &Arc<dyn PeerConnection>, sender: &Arc<dyn RtpSender>) -> Option<String> {
    for transceiver in pc.get_transceivers().await {
        let Ok(Some(candidate)) = transceiver.sender().await else { continue };
        if candidate.id() == sender.id() {
            return transceiver.mid().await.ok().flatten();
        }
    }
    None
}

/// A new ordered `face-echo` data channel on `pc`, the receiver of its text
/// messages, and the task that reads it.
async fn create_channel(
    pc: &Arc<dyn PeerConnection>,
) -> anyhow::Result<(Channel, mpsc::UnboundedReceiver<String>, JoinHandle<()>)> {
    let init = RTCDataChannelInit { ordered: true, ..Default::default() };
    let data_channel = pc.create_data_channel(DATA_CHANNEL_LABEL, Some(init)).await?;
    let (open_tx, open) = watch::channel(false);
    let (messages_tx, messages) = mpsc::unbounded_channel();
    let reader = tokio::spawn(read_channel(Arc::clone(&data_channel), open_tx, messages_tx));
    Ok((Channel { channel: data_channel, open }, messages, reader))
}

/// Reads the data channel's events: marks it open, forwards text messages to
/// `messages` (binary ones are dropped: the server speaks JSON text).
async fn read_channel(
    channel: Arc<dyn DataChannel>,
    open: watch::Sender<bool>,
    messages: mpsc::UnboundedSender<String>,
) {
    while let Some(event) = channel.poll().await {
        match event {
            DataChannelEvent::OnOpen => {
                let _ = open.send(true);
            }
            DataChannelEvent::OnMessage(message) if message.is_string => {
                let _ = messages.send(String::from_utf8_lossy(&message.data).into_owned());
            }
            DataChannelEvent::OnClose => break,
            _ => {}
        }
    }
    let _ = open.send(false);
}

/// A signaling socket on plain `ws://` (or `wss://` without `local`), its TCP
/// socket bound to `local` when given.
pub async fn open_signaling(ws_url: &str, local: Option<IpAddr>) -> anyhow::Result<Signaling> {
    let Some(local) = local else {
        let (ws, _) = tokio_tungstenite::connect_async(ws_url)
            .await
            .with_context(|| format!("cannot open {ws_url}"))?;
        return Ok(ws);
    };
    let request = ws_url.into_client_request()?;
    let host = request.uri().host().ok_or_else(|| anyhow!("{ws_url}: no host"))?.to_owned();
    let port = request.uri().port_u16().unwrap_or(80);
    let server = tokio::net::lookup_host((host.as_str(), port))
        .await?
        .find(|addr| addr.is_ipv4() == local.is_ipv4())
        .ok_or_else(|| anyhow!("{ws_url}: no address of the family of {local}"))?;
    let socket =
        if local.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.bind((local, 0).into()).with_context(|| format!("cannot bind to {local}"))?;
    let stream = socket.connect(server).await.with_context(|| format!("cannot connect to {server}"))?;
    let (ws, _) = tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream))
        .await
        .with_context(|| format!("cannot open {ws_url} from {local}"))?;
    Ok(ws)
}

/// The server's answer.
struct Answer {
    sdp: String,
    session: String,
    /// The publisher's watch token (empty for viewers).
    watch_token: String,
}

/// A client's signaling WebSocket.
pub type Signaling = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// Sends what the peer queues to the server, in order.
async fn write_signaling(
    mut sink: futures_util::stream::SplitSink<Signaling, Message>,
    mut queued: mpsc::UnboundedReceiver<String>,
) {
    while let Some(text) = queued.recv().await {
        if sink.send(Message::text(text)).await.is_err() {
            return;
        }
    }
}

/// Reads signaling: the answer once, candidates and errors as they come. An error
/// before the answer fails the negotiation. A candidate waits until `applied` says
/// the answer is set (webrtc-rs refuses one before, where a browser would queue it);
/// one of another transport than `transport` (`udp`, `tcp`) is left out, as a peer
/// with no socket of that kind has nothing to check it from.
async fn read_signaling(
    mut stream: futures_util::stream::SplitStream<Signaling>,
    pc: Arc<dyn PeerConnection>,
    errors: Arc<std::sync::Mutex<Vec<String>>>,
    answer: oneshot::Sender<anyhow::Result<Answer>>,
    mut applied: watch::Receiver<bool>,
    transport: &'static str,
) {
    let mut answer = Some(answer);
    while let Some(Ok(frame)) = stream.next().await {
        let Message::Text(text) = frame else { continue };
        let Ok(message) = serde_json::from_str::<Value>(text.as_str()) else {
            continue;
        };
        let field = |name: &str| message[name].as_str().unwrap_or_default().to_owned();
        match message["type"].as_str() {
            Some("answer") => {
                if let Some(tx) = answer.take() {
                    let _ = tx.send(Ok(Answer {
                        sdp: field("sdp"),
                        session: field("session"),
                        watch_token: field("watch"),
                    }));
                }
            }
            Some("ice") => {
                if let Ok(init) = serde_json::from_value::<RTCIceCandidateInit>(message["candidate"].clone())
                    && crate::session::signaling::candidate_transport(&init.candidate)
                        .is_some_and(|t| t.eq_ignore_ascii_case(transport))
                    && applied.wait_for(|applied| *applied).await.is_ok()
                {
                    let _ = pc.add_ice_candidate(init).await;
                }
            }
            Some("error") => {
                let text = format!("{}: {}", message["code"], message["message"]);
                errors.lock().unwrap_or_else(|e| e.into_inner()).push(text.clone());
                if let Some(tx) = answer.take() {
                    let _ = tx.send(Err(anyhow!("server error before the answer: {text}")));
                }
            }
            _ => {}
        }
    }
}

/// POSTs an offer to a WHIP or WHEP URL: the answer, and the resource's absolute URL.
async fn post_offer(
    url: &str,
    token: Option<&str>,
    sdp: &str,
    local: Option<IpAddr>,
) -> anyhow::Result<(Answer, String)> {
    let authorization = token.map(|token| format!("Bearer {token}"));
    let mut headers = vec![("Content-Type", "application/sdp")];
    if let Some(authorization) = &authorization {
        headers.push(("Authorization", authorization));
    }
    let response = http_request_from(local, "POST", url, &headers, sdp.as_bytes()).await?;
    if response.status != 201 {
        bail!("POST {url}: {} {}", response.status, response.body.trim());
    }
    let location = response.header("location").ok_or_else(|| anyhow!("POST {url}: 201 without Location"))?;
    let location = absolute_url(url, location);
    // A WHIP session's WHEP URL: `Link: </whep/<watch token>>; rel="urn:face-echo:whep"`.
    let rel = format!("rel=\"{}\"", crate::control::http::WHEP_LINK_REL);
    let watch_token = response
        .headers_named("link")
        .filter(|link| link.contains(&rel))
        .find_map(|link| link.split_once("</whep/")?.1.split_once('>').map(|(token, _)| token.to_owned()))
        .unwrap_or_default();
    let session = location.rsplit('/').next().unwrap_or_default().to_owned();
    Ok((Answer { sdp: response.body, session, watch_token }, location))
}

/// `location` (a path, or already absolute) resolved against `url`'s origin.
fn absolute_url(url: &str, location: &str) -> String {
    if location.contains("://") {
        return location.to_owned();
    }
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let authority = rest.split('/').next().unwrap_or(rest);
    format!("{scheme}://{authority}{location}")
}

/// An HTTP response, read whole.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names in lower case, in order, repeated ones repeated.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    /// Every value of header `name` (lower case).
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers.iter().filter(move |(key, _)| key == name).map(|(_, value)| value.as_str())
    }
}

/// One plain-HTTP/1.1 request to `url` (`http://host:port/path`), `Connection: close`,
/// the body read to the end (not chunked: the server's bodies have a length): what
/// WHIP/WHEP clients and the tests need, without an HTTP client library.
pub async fn http_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<HttpResponse> {
    http_request_from(None, method, url, headers, body).await
}

/// [`http_request`] from a TCP socket bound to `local` (e.g. 127.0.0.2), when given.
pub async fn http_request_from(
    local: Option<IpAddr>,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<HttpResponse> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").ok_or_else(|| anyhow!("{url}: only http:// URLs"))?;
    let (authority, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, "/"),
    };
    let server = tokio::net::lookup_host(authority)
        .await
        .with_context(|| format!("{url}: cannot resolve {authority}"))?
        .find(|addr| local.is_none_or(|local| local.is_ipv4() == addr.is_ipv4()))
        .ok_or_else(|| anyhow!("{url}: no usable address"))?;
    let socket =
        if server.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    if let Some(local) = local {
        socket.bind((local, 0).into()).with_context(|| format!("cannot bind to {local}"))?;
    }
    let mut stream = socket.connect(server).await.with_context(|| format!("cannot connect to {server}"))?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    stream.write_all(&bytes).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n").ok_or_else(|| anyhow!("{url}: no HTTP response"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| anyhow!("{url}: no status line"))?;
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    Ok(HttpResponse { status, headers, body: body.to_owned() })
}

/// Counts the PLIs the server relays to our SSRC (tests of the RTCP path).
async fn count_plis(track: Arc<TrackLocalStaticRTP>, ssrc: u32, count: Arc<AtomicU64>) {
    while let Some(TrackLocalEvent::OnRtcpPacket(packets)) = track.poll().await {
        for packet in packets {
            if let Some(pli) = packet.as_any().downcast_ref::<PictureLossIndication>()
                && pli.media_ssrc == ssrc
            {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl ClientPeer {
    /// Connects to `ws_url`, negotiates, and waits until media flows both ways
    /// (connection state `connected`), at most `timeout`.
    pub async fn connect(ws_url: &str, timeout: Duration) -> anyhow::Result<ClientPeer> {
        Self::connect_options(ws_url, ClientOptions::default(), timeout).await
    }

    /// Like [`ClientPeer::connect`], with the offer passed through `edit_offer`.
    pub async fn connect_with(
        ws_url: &str,
        timeout: Duration,
        edit_offer: OfferEdit,
    ) -> anyhow::Result<ClientPeer> {
        let options = ClientOptions { edit_offer: Some(edit_offer), ..Default::default() };
        Self::connect_options(ws_url, options, timeout).await
    }

    /// Like [`ClientPeer::connect`], with the signaling socket bound to `local` (e.g.
    /// 127.0.0.2), so the server sees another client address.
    pub async fn connect_from(ws_url: &str, local: IpAddr, timeout: Duration) -> anyhow::Result<ClientPeer> {
        let options = ClientOptions { local: Some(local), ..Default::default() };
        Self::connect_options(ws_url, options, timeout).await
    }

    /// A publisher offering `tracks` video tracks, its echo tagged by mid (in
    /// [`ClientPeer::echoed_by_mid`]); send on track `i` with [`ClientPeer::send_frame_on`].
    pub async fn connect_tracks(
        ws_url: &str,
        tracks: usize,
        timeout: Duration,
    ) -> anyhow::Result<ClientPeer> {
        let options = ClientOptions { tracks, echo_by_mid: true, ..Default::default() };
        Self::connect_options(ws_url, options, timeout).await
    }

    /// A publisher negotiated as `options` say.
    pub async fn connect_options(
        ws_url: &str,
        options: ClientOptions,
        timeout: Duration,
    ) -> anyhow::Result<ClientPeer> {
        Self::negotiate(Signal::WebSocket { url: ws_url, watch: None }, timeout, options).await
    }

    /// Watches the session whose watch token (a publisher's [`ClientPeer::watch_token`])
    /// is `token`: what the server sends arrives in [`ClientPeer::echoed`] (this
    /// peer's own track stays silent).
    pub async fn watch(ws_url: &str, token: &str, timeout: Duration) -> anyhow::Result<ClientPeer> {
        Self::negotiate(
            Signal::WebSocket { url: ws_url, watch: Some(token) },
            timeout,
            ClientOptions::default(),
        )
        .await
    }

    /// Like [`ClientPeer::watch`], negotiated as `options` say (e.g. with a data channel).
    pub async fn watch_options(
        ws_url: &str,
        token: &str,
        options: ClientOptions,
        timeout: Duration,
    ) -> anyhow::Result<ClientPeer> {
        Self::negotiate(Signal::WebSocket { url: ws_url, watch: Some(token) }, timeout, options).await
    }

    /// Publishes over WHIP: POSTs the offer (with every candidate, after gathering)
    /// to `url` with `token` as bearer, and waits until connected. The session's WHEP
    /// URL is in [`ClientPeer::watch_token`] (the token) and its resource in
    /// [`ClientPeer::resource`].
    pub async fn whip(
        url: &str,
        token: Option<&str>,
        options: ClientOptions,
        timeout: Duration,
    ) -> anyhow::Result<ClientPeer> {
        Self::negotiate(Signal::Http { url, token }, timeout, options).await
    }

    /// Watches over WHEP: POSTs the offer to `url` (`http://…/whep/<watch token>`).
    pub async fn whep(url: &str, options: ClientOptions, timeout: Duration) -> anyhow::Result<ClientPeer> {
        Self::negotiate(Signal::Http { url, token: None }, timeout, options).await
    }

    async fn negotiate(
        signal: Signal<'_>,
        timeout: Duration,
        options: ClientOptions,
    ) -> anyhow::Result<ClientPeer> {
        let receive_only = options.direction == RTCRtpTransceiverDirection::Recvonly;
        if options.tracks == 0 {
            bail!("a client peer offers at least one video track");
        }
        let media_ip = options.local.unwrap_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
        let own_media = match (&options.on_echo, options.own_media) {
            (Some(on_echo), true) => {
                Some(Pending::bind(Arc::clone(on_echo), media_ip, options.reader.as_ref())?)
            }
            (None, true) => bail!("own_media needs on_echo: the echo is handed there"),
            (_, false) => None,
        };
        let ws = match signal {
            Signal::WebSocket { url, .. } => Some(open_signaling(url, options.local).await?),
            Signal::Http { .. } => None,
        };

        let (ws_out, ws_out_rx) = mpsc::unbounded_channel::<String>();
        let (state_tx, mut state_rx) = watch::channel(RTCPeerConnectionState::New);
        let (echo_track_tx, echo_track) = watch::channel(None);
        let (echoed_tx, echoed) = mpsc::unbounded_channel();
        let (echoed_by_mid_tx, echoed_by_mid) = mpsc::unbounded_channel();
        let echo_sink = match (&options.on_echo, options.echo_by_mid) {
            (Some(on_echo), _) => EchoSink::Callback(Arc::clone(on_echo)),
            (None, true) => EchoSink::ByMid(echoed_by_mid_tx),
            (None, false) => EchoSink::Plain(echoed_tx),
        };
        let handler_tasks = Arc::new(std::sync::Mutex::new(Vec::new()));
        let pc_slot = Arc::new(OnceLock::new());
        let handler = Handler {
            ws_out: ws_out.clone(),
            state: state_tx,
            echo_track: echo_track_tx,
            echoed: echo_sink,
            pc: Arc::clone(&pc_slot),
            tasks: Arc::clone(&handler_tasks),
        };
        let interceptors: fn(Registry) -> Registry = if options.lean {
            |_| peer::number_sent_packets(Registry::new())
        } else {
            peer::number_sent_packets
        };
        let mut network = PeerNetwork {
            udp_addrs: vec![std::net::SocketAddr::new(media_ip, 0)],
            mux: own_media.as_ref().map(|media| media.mux().clone()),
            ..Default::default()
        };
        if options.tcp_only {
            network.tcp_addrs = std::mem::take(&mut network.udp_addrs);
        }
        // Its own media path's hook sees the server's packets first.
        let media = PeerMedia::Client {
            extend: Box::new(interceptors),
            hook: own_media.as_ref().map(Pending::hook),
            srtp_profiles: options.srtp_profiles.clone(),
        };
        let pc = peer::build(&network, None, Arc::new(handler), media).await?;
        let _ = pc_slot.set(Arc::downgrade(&pc));
        let mut tracks = Vec::with_capacity(options.tracks);
        let mut senders = Vec::with_capacity(options.tracks);
        for index in 0..options.tracks {
            if receive_only {
                let init = RTCRtpTransceiverInit { direction: options.direction, ..Default::default() };
                pc.add_transceiver_from_kind(RtpCodecKind::Video, Some(init)).await?;
                continue;
            }
            let id = if index == 0 { "camera".to_owned() } else { format!("camera-{index}") };
            let track = peer::vp8_rtp_track("publisher", &id);
            let init = RTCRtpTransceiverInit { direction: options.direction, ..Default::default() };
            let transceiver =
                pc.add_transceiver_from_track(Arc::clone(&track) as Arc<dyn TrackLocal>, Some(init)).await?;
            senders
                .push(transceiver.sender().await?.ok_or_else(|| anyhow!("a transceiver without a sender"))?);
            let ssrc =
                track.ssrcs().await.first().copied().ok_or_else(|| anyhow!("local track has no SSRC"))?;
            let packetizer = crate::loadgen::clip::vp8_packetizer(ssrc);
            tracks.push(LocalTrack {
                track,
                ssrc,
                packetizer,
                mid: String::new(),
                plis_received: Arc::default(),
            });
        }

        let mut tasks = Vec::new();
        let (mut channel, mut channel_messages) = (None, None);
        if options.data_channel {
            let (created, messages, reader) = create_channel(&pc).await?;
            tasks.push(reader);
            channel = Some(created);
            channel_messages = Some(messages);
        }

        let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (answer_tx, answer_rx) = oneshot::channel();
        let (applied_tx, applied_rx) = watch::channel(false);
        let offer = pc.create_offer(None).await?;
        pc.set_local_description(offer).await?;
        let mut resource = None;
        match (signal, ws) {
            (Signal::WebSocket { watch, .. }, Some(ws)) => {
                let (ws_sink, ws_stream) = ws.split();
                tasks.push(tokio::spawn(write_signaling(ws_sink, ws_out_rx)));
                tasks.push(tokio::spawn(read_signaling(
                    ws_stream,
                    Arc::clone(&pc),
                    Arc::clone(&errors),
                    answer_tx,
                    applied_rx,
                    if options.tcp_only { "tcp" } else { "udp" },
                )));
                let local = pc.local_description().await.ok_or_else(|| anyhow!("no local offer"))?;
                let sdp = match options.edit_offer {
                    Some(edit) => edit(local.sdp),
                    None => local.sdp,
                };
                let request = match watch {
                    Some(session) => json!({"type": "watch", "session": session, "sdp": sdp}),
                    None => json!({"type": "offer", "sdp": sdp}),
                };
                ws_out.send(request.to_string())?;
            }
            (Signal::Http { url, token }, _) => {
                // No trickle: the offer carries every candidate.
                let sdp =
                    crate::session::negotiate::gathered_local_sdp(&pc, timeout, &Default::default()).await;
                let sdp = match options.edit_offer {
                    Some(edit) => edit(sdp),
                    None => sdp,
                };
                let answer = post_offer(url, token, &sdp, options.local).await;
                if let Ok((_, location)) = &answer {
                    resource = Some(location.clone());
                }
                let _ = answer_tx.send(answer.map(|(answer, _)| answer));
            }
            (Signal::WebSocket { .. }, None) => bail!("no signaling socket"),
        }

        // Every task ends with the peer, also when negotiation fails below.
        handler_tasks.lock().unwrap_or_else(|e| e.into_inner()).extend(tasks);
        let answered = async {
            let Answer { sdp, session, watch_token } = tokio::time::timeout(timeout, answer_rx)
                .await
                .context("no answer in time")?
                .context("signaling closed before the answer")??;
            let passive = if options.tcp_only { passive_tcp_candidates(&sdp) } else { Vec::new() };
            pc.set_remote_description(RTCSessionDescription::answer(sdp)?).await?;
            let _ = applied_tx.send(true);
            // webrtc-rs dials a passive candidate only when it is trickled, never one
            // that came in an SDP: a browser would dial these (a WHIP or WHEP answer
            // names every candidate; the WebSocket's trickle them anyway).
            for candidate in passive {
                let _ = pc.add_ice_candidate(RTCIceCandidateInit { candidate, ..Default::default() }).await;
            }
            for (track, sender) in tracks.iter_mut().zip(&senders) {
                track.mid = mid_sending(&pc, sender).await.unwrap_or_default();
                let counter =
                    count_plis(Arc::clone(&track.track), track.ssrc, Arc::clone(&track.plis_received));
                handler_tasks.lock().unwrap_or_else(|e| e.into_inner()).push(tokio::spawn(counter));
            }
            tokio::time::timeout(
                timeout,
                state_rx.wait_for(|state| *state == RTCPeerConnectionState::Connected),
            )
            .await
            .context("not connected in time")?
            .context("peer connection dropped")?;
            let media = match own_media {
                Some(media) => {
                    let twcc_id = match senders.first() {
                        Some(sender) => transport_cc_id(sender).await,
                        None => None,
                    };
                    Some(media.start(pc.as_ref(), twcc_id).await?)
                }
                None => None,
            };
            anyhow::Ok((session, watch_token, media))
        };
        let (session, watch_token, media) = match answered.await {
            Ok(answered) => answered,
            Err(err) => {
                for task in handler_tasks.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
                    task.abort();
                }
                let _ = tokio::time::timeout(Duration::from_secs(3), pc.close()).await;
                return Err(err);
            }
        };

        Ok(ClientPeer {
            session,
            watch_token,
            resource,
            echoed,
            echoed_by_mid,
            pc,
            tracks,
            echo_track,
            channel,
            channel_messages,
            errors,
            tasks: handler_tasks,
            media,
        })
    }

    /// Takes the stream of echoed packets, to read it from another task.
    pub fn take_echoed(&mut self) -> mpsc::UnboundedReceiver<rtp::Packet> {
        std::mem::replace(&mut self.echoed, mpsc::unbounded_channel().1)
    }

    /// Takes the stream of echoed packets tagged by mid (see [`ClientOptions::echo_by_mid`]).
    pub fn take_echoed_by_mid(&mut self) -> mpsc::UnboundedReceiver<(String, rtp::Packet)> {
        std::mem::replace(&mut self.echoed_by_mid, mpsc::unbounded_channel().1)
    }

    /// The SSRC this publisher sends under (its first track's).
    pub fn ssrc(&self) -> u32 {
        self.tracks[0].ssrc
    }

    /// How many video tracks this peer offered.
    pub fn track_count(&self) -> usize {
        self.tracks.len()
    }

    /// The SSRC of local track `index`. Panics if there is no such track.
    pub fn ssrc_of(&self, index: usize) -> u32 {
        self.tracks[index].ssrc
    }

    /// The mid of the m-line local track `index` is sent on (and its echo comes back
    /// on). Panics if there is no such track.
    pub fn mid_of(&self, index: usize) -> &str {
        &self.tracks[index].mid
    }

    /// Packetizes one VP8 frame (`samples` = 90 kHz ticks since the previous one)
    /// and sends it on the first track; returns the packets sent.
    pub async fn send_frame(&mut self, frame: &Bytes, samples: u32) -> anyhow::Result<Vec<rtp::Packet>> {
        self.send_frame_on(0, frame, samples).await
    }

    /// Like [`ClientPeer::send_frame`], on local track `index` (its own SSRC,
    /// sequence numbers and timestamps).
    pub async fn send_frame_on(
        &mut self,
        index: usize,
        frame: &Bytes,
        samples: u32,
    ) -> anyhow::Result<Vec<rtp::Packet>> {
        let mut packets = self.packetize_on(index, frame, samples)?;
        self.send_packets_on(index, &mut packets).await?;
        Ok(packets)
    }

    /// Packetizes one VP8 frame for local track `index`, to send with
    /// [`ClientPeer::send_packets_on`] (the load generator notes send times between
    /// the two: an echo can be back before a send returns).
    pub fn packetize_on(
        &mut self,
        index: usize,
        frame: &Bytes,
        samples: u32,
    ) -> anyhow::Result<Vec<rtp::Packet>> {
        let count = self.tracks.len();
        let local = self.tracks.get_mut(index).ok_or_else(|| anyhow!("no track {index} of {count}"))?;
        Ok(local.packetizer.packetize(Instant::now(), frame, samples)?)
    }

    /// Sends packets [`ClientPeer::packetize_on`] made for local track `index`
    /// (with [`ClientOptions::own_media`], numbered with the transport-wide sequence
    /// number on the way).
    pub async fn send_packets_on(&mut self, index: usize, packets: &mut [rtp::Packet]) -> anyhow::Result<()> {
        let count = self.tracks.len();
        let local = self.tracks.get(index).ok_or_else(|| anyhow!("no track {index} of {count}"))?;
        if let Some(media) = &mut self.media {
            return media.send(packets);
        }
        for packet in packets.iter() {
            local.track.write_rtp(packet.clone()).await?;
        }
        Ok(())
    }

    /// Takes the text messages received on the `face-echo` data channel (`None`
    /// without [`ClientOptions::data_channel`], or when taken already).
    pub fn channel_messages(&mut self) -> Option<mpsc::UnboundedReceiver<String>> {
        self.channel_messages.take()
    }

    /// Waits until the `face-echo` data channel is open, at most `timeout`.
    pub async fn wait_channel_open(&self, timeout: Duration) -> anyhow::Result<()> {
        let channel = self.channel.as_ref().ok_or_else(|| anyhow!("no data channel was offered"))?;
        channel.opened(timeout).await
    }

    /// Opens one more `face-echo` data channel on the connected PeerConnection, and
    /// waits (at most `timeout`) until it is open: a client with many channels.
    pub async fn open_another_channel(&self, timeout: Duration) -> anyhow::Result<Arc<dyn DataChannel>> {
        let (channel, _messages, reader) = create_channel(&self.pc).await?;
        self.tasks.lock().unwrap_or_else(|e| e.into_inner()).push(reader);
        channel.opened(timeout).await?;
        Ok(channel.channel)
    }

    /// Sends a text message on the `face-echo` data channel.
    pub async fn send_on_channel(&self, text: &str) -> anyhow::Result<()> {
        let channel = self.channel.as_ref().ok_or_else(|| anyhow!("no data channel was offered"))?;
        channel.channel.send_text(text).await?;
        Ok(())
    }

    /// Sends a binary message on the `face-echo` data channel (the server expects
    /// text: hostile tests).
    pub async fn send_bytes_on_channel(&self, bytes: &[u8]) -> anyhow::Result<()> {
        let channel = self.channel.as_ref().ok_or_else(|| anyhow!("no data channel was offered"))?;
        channel.channel.send(BytesMut::from(bytes)).await?;
        Ok(())
    }

    /// Sends a PLI on the echo track, as a receiver that lost a keyframe would.
    pub async fn request_keyframe_on_echo(&self) -> anyhow::Result<()> {
        self.feedback_on_echo(&[], true).await
    }

    /// Sends one compound RTCP packet on the echo track: a NACK for `lost` (if any)
    /// and a PLI (if `keyframe`), as a receiver would (tests storm the server with it).
    pub async fn feedback_on_echo(&self, lost: &[u16], keyframe: bool) -> anyhow::Result<()> {
        let track = self.echo_track.borrow().clone().ok_or_else(|| anyhow!("no echo track yet"))?;
        let media_ssrc =
            track.ssrcs().await.first().copied().ok_or_else(|| anyhow!("echo track has no SSRC"))?;
        let mut packets: Vec<Box<dyn rtc::rtcp::Packet>> = Vec::new();
        if !lost.is_empty() {
            let nacks = nack_pairs_from_sequence_numbers(lost);
            packets.push(Box::new(TransportLayerNack { sender_ssrc: self.ssrc(), media_ssrc, nacks }));
        }
        if keyframe {
            packets.push(Box::new(PictureLossIndication { sender_ssrc: self.ssrc(), media_ssrc }));
        }
        track.write_rtcp(packets).await?;
        Ok(())
    }

    /// The server's answer, as applied.
    /// Connectivity and consent checks this peer sent, and the answers it got, over
    /// all its candidate pairs (its ICE agent's counts).
    pub async fn ice_checks(&self) -> (u64, u64) {
        let report = self.pc.get_stats(Instant::now(), webrtc::peer_connection::StatsSelector::None).await;
        report.candidate_pairs().fold((0, 0), |(sent, answered), pair| {
            (sent + pair.requests_sent, answered + pair.responses_received)
        })
    }

    pub async fn remote_sdp(&self) -> Option<String> {
        self.pc.remote_description().await.map(|description| description.sdp)
    }

    /// Sends `datagram` to the server as it is, from the peer's own (authenticated)
    /// address: hostile tests forge packets with it. Needs [`ClientOptions::own_media`].
    pub fn send_datagram(&self, datagram: &[u8]) -> anyhow::Result<()> {
        self.media.as_ref().ok_or_else(|| anyhow!("send_datagram needs own_media"))?.send_datagram(datagram);
        Ok(())
    }

    /// Protects the RTCP packet `plain` with the peer's SRTCP keys and sends it: what
    /// the server gets is the client's own, however absurd. Needs [`ClientOptions::own_media`].
    pub fn send_rtcp(&mut self, plain: &[u8]) -> anyhow::Result<()> {
        self.media.as_mut().ok_or_else(|| anyhow!("send_rtcp needs own_media"))?.send_rtcp(plain)
    }

    /// What the peer's own media path counted (with [`ClientOptions::own_media`]).
    pub fn own_media_stats(&self) -> Option<&super::media::MediaStats> {
        self.media.as_ref().map(OwnMedia::stats)
    }

    /// PLIs for our SSRCs received so far (all tracks).
    pub fn plis_received(&self) -> u64 {
        self.tracks.iter().map(|track| track.plis_received.load(Ordering::Relaxed)).sum()
    }

    /// PLIs for local track `index`'s SSRC received so far. Panics if there is no such track.
    pub fn plis_received_on(&self, index: usize) -> u64 {
        self.tracks[index].plis_received.load(Ordering::Relaxed)
    }

    /// Error messages the server sent after the answer.
    pub fn server_errors(&self) -> Vec<String> {
        self.errors.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Closes the PeerConnection but keeps the signaling socket open, as a client
    /// whose media path died would; the server should notice and tell us.
    pub async fn close_media_only(&self) -> anyhow::Result<()> {
        tokio::time::timeout(Duration::from_secs(3), self.pc.close())
            .await
            .context("PeerConnection close timed out")??;
        Ok(())
    }

    /// Drops the signaling socket without a close frame (as a crashed tab or a lost
    /// network would), then releases the PeerConnection on our side.
    pub async fn abandon(self) -> anyhow::Result<()> {
        for task in self.tasks.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            task.abort();
        }
        tokio::time::timeout(Duration::from_secs(3), self.pc.close())
            .await
            .context("PeerConnection close timed out")??;
        Ok(())
    }

    /// Closes the PeerConnection and the signaling socket.
    pub async fn close(self) -> anyhow::Result<()> {
        let closed = tokio::time::timeout(Duration::from_secs(3), self.pc.close()).await;
        for task in self.tasks.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            task.abort();
        }
        match closed {
            Ok(result) => Ok(result?),
            Err(_) => bail!("PeerConnection close timed out"),
        }
    }
}
