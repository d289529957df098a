//! A webrtc-rs client peer that publishes VP8 to a face-echo server and receives
//! the echo: the other end of the integration tests and the load generator.
//!
//! It speaks the same signaling protocol as the page (JSON over `/ws`, trickle
//! ICE), so it tests the server the way a browser uses it.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::{
    TransportLayerNack, nack_pairs_from_sequence_numbers,
};
use rtc::rtp;
use rtc::rtp::packetizer::Packetizer;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use webrtc::media_stream::Track;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionEventHandler, RTCIceCandidateInit, RTCPeerConnectionIceEvent,
    RTCPeerConnectionState, RTCSessionDescription,
};

use crate::peer::{self, PeerNetwork};

/// Changes the offer before it is sent (tests use it to pin the DTLS role).
pub type OfferEdit = Box<dyn FnOnce(String) -> String + Send>;

/// A connected webrtc-rs client of face-echo: a publisher (its echo arrives in
/// [`ClientPeer::echoed`]) or, from [`ClientPeer::watch`], a viewer.
pub struct ClientPeer {
    /// The session id the server gave in its answer.
    pub session: String,
    /// The secret others watch this session with (publishers only; empty for viewers).
    pub watch_token: String,
    /// Echoed RTP packets, in arrival order.
    pub echoed: mpsc::UnboundedReceiver<rtp::Packet>,
    pc: Arc<dyn PeerConnection>,
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    packetizer: Box<dyn Packetizer>,
    echo_track: watch::Receiver<Option<Arc<dyn TrackRemote>>>,
    plis_received: Arc<AtomicU64>,
    errors: Arc<std::sync::Mutex<Vec<String>>>,
    /// Every task of this peer, the handler's included: aborted on close.
    tasks: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
}

struct Handler {
    ws_out: mpsc::UnboundedSender<String>,
    state: watch::Sender<RTCPeerConnectionState>,
    echo_track: watch::Sender<Option<Arc<dyn TrackRemote>>>,
    echoed: mpsc::UnboundedSender<rtp::Packet>,
    tasks: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(init) = event.candidate.to_json() {
            let message = json!({"type": "ice", "candidate": {
                "candidate": init.candidate,
                "sdpMid": init.sdp_mid,
                "sdpMLineIndex": init.sdp_mline_index,
            }});
            let _ = self.ws_out.send(message.to_string());
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.state.send(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let _ = self.echo_track.send(Some(Arc::clone(&track)));
        let echoed = self.echoed.clone();
        let task = tokio::spawn(async move {
            while let Some(event) = track.poll().await {
                if let TrackRemoteEvent::OnRtpPacket(packet) = event
                    && echoed.send(packet).is_err()
                {
                    return;
                }
            }
        });
        self.tasks.lock().unwrap_or_else(|e| e.into_inner()).push(task);
    }
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

type Signaling = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

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
/// before the answer fails the negotiation.
async fn read_signaling(
    mut stream: futures_util::stream::SplitStream<Signaling>,
    pc: Arc<dyn PeerConnection>,
    errors: Arc<std::sync::Mutex<Vec<String>>>,
    answer: oneshot::Sender<anyhow::Result<Answer>>,
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
        Self::connect_with(ws_url, timeout, Box::new(|sdp| sdp)).await
    }

    /// Like [`ClientPeer::connect`], with the offer passed through `edit_offer`.
    pub async fn connect_with(
        ws_url: &str,
        timeout: Duration,
        edit_offer: OfferEdit,
    ) -> anyhow::Result<ClientPeer> {
        Self::negotiate(ws_url, timeout, edit_offer, None, None).await
    }

    /// Like [`ClientPeer::connect`], with the signaling socket bound to `local` (e.g.
    /// 127.0.0.2), so the server sees another client address.
    pub async fn connect_from(ws_url: &str, local: IpAddr, timeout: Duration) -> anyhow::Result<ClientPeer> {
        Self::negotiate(ws_url, timeout, Box::new(|sdp| sdp), None, Some(local)).await
    }

    /// Watches the session whose watch token (a publisher's [`ClientPeer::watch_token`])
    /// is `token`: what the server sends arrives in [`ClientPeer::echoed`] (this
    /// peer's own track stays silent).
    pub async fn watch(ws_url: &str, token: &str, timeout: Duration) -> anyhow::Result<ClientPeer> {
        Self::negotiate(ws_url, timeout, Box::new(|sdp| sdp), Some(token), None).await
    }

    async fn negotiate(
        ws_url: &str,
        timeout: Duration,
        edit_offer: OfferEdit,
        watch: Option<&str>,
        local: Option<IpAddr>,
    ) -> anyhow::Result<ClientPeer> {
        let ws = open_signaling(ws_url, local).await?;
        let (ws_sink, ws_stream) = ws.split();

        let (ws_out, ws_out_rx) = mpsc::unbounded_channel::<String>();
        let (state_tx, mut state_rx) = watch::channel(RTCPeerConnectionState::New);
        let (echo_track_tx, echo_track) = watch::channel(None);
        let (echoed_tx, echoed) = mpsc::unbounded_channel();
        let handler_tasks = Arc::new(std::sync::Mutex::new(Vec::new()));
        let handler = Handler {
            ws_out: ws_out.clone(),
            state: state_tx,
            echo_track: echo_track_tx,
            echoed: echoed_tx,
            tasks: Arc::clone(&handler_tasks),
        };
        let pc = peer::build_with(
            &PeerNetwork::loopback(),
            None,
            Arc::new(handler),
            Arc::default(),
            peer::number_sent_packets,
        )
        .await?;
        let track = peer::vp8_rtp_track("publisher", "camera");
        pc.add_track(Arc::clone(&track) as Arc<dyn TrackLocal>).await?;
        let ssrc = track.ssrcs().await.first().copied().ok_or_else(|| anyhow!("local track has no SSRC"))?;

        let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (answer_tx, answer_rx) = oneshot::channel();
        let mut tasks = vec![
            tokio::spawn(write_signaling(ws_sink, ws_out_rx)),
            tokio::spawn(read_signaling(ws_stream, Arc::clone(&pc), Arc::clone(&errors), answer_tx)),
        ];

        let offer = pc.create_offer(None).await?;
        pc.set_local_description(offer).await?;
        let local = pc.local_description().await.ok_or_else(|| anyhow!("no local offer"))?;
        let sdp = edit_offer(local.sdp);
        let request = match watch {
            Some(session) => json!({"type": "watch", "session": session, "sdp": sdp}),
            None => json!({"type": "offer", "sdp": sdp}),
        };
        ws_out.send(request.to_string())?;

        let Answer { sdp, session, watch_token } = tokio::time::timeout(timeout, answer_rx)
            .await
            .context("no answer in time")?
            .context("signaling closed before the answer")??;
        pc.set_remote_description(RTCSessionDescription::answer(sdp)?).await?;
        let plis_received = Arc::new(AtomicU64::new(0));
        tasks.push(tokio::spawn(count_plis(Arc::clone(&track), ssrc, Arc::clone(&plis_received))));

        tokio::time::timeout(timeout, state_rx.wait_for(|state| *state == RTCPeerConnectionState::Connected))
            .await
            .context("not connected in time")?
            .context("peer connection dropped")?;

        handler_tasks.lock().unwrap_or_else(|e| e.into_inner()).extend(tasks);
        let packetizer = crate::loadgen::clip::vp8_packetizer(ssrc);
        Ok(ClientPeer {
            session,
            watch_token,
            echoed,
            pc,
            track,
            ssrc,
            packetizer,
            echo_track,
            plis_received,
            errors,
            tasks: handler_tasks,
        })
    }

    /// Takes the stream of echoed packets, to read it from another task.
    pub fn take_echoed(&mut self) -> mpsc::UnboundedReceiver<rtp::Packet> {
        std::mem::replace(&mut self.echoed, mpsc::unbounded_channel().1)
    }

    /// The SSRC this publisher sends under.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Packetizes one VP8 frame (`samples` = 90 kHz ticks since the previous one)
    /// and sends it; returns the packets sent.
    pub async fn send_frame(&mut self, frame: &Bytes, samples: u32) -> anyhow::Result<Vec<rtp::Packet>> {
        let packets = self.packetizer.packetize(Instant::now(), frame, samples)?;
        for packet in &packets {
            self.track.write_rtp(packet.clone()).await?;
        }
        Ok(packets)
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
            packets.push(Box::new(TransportLayerNack { sender_ssrc: self.ssrc, media_ssrc, nacks }));
        }
        if keyframe {
            packets.push(Box::new(PictureLossIndication { sender_ssrc: self.ssrc, media_ssrc }));
        }
        track.write_rtcp(packets).await?;
        Ok(())
    }

    /// PLIs for our SSRC received so far.
    pub fn plis_received(&self) -> u64 {
        self.plis_received.load(Ordering::Relaxed)
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
