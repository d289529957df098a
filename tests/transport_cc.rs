//! Congestion-control feedback: the server's answer advertises exactly the
//! feedback the server sends. A real publisher, built as the load generator's clients
//! are (`peer::PeerMedia::client()`: webrtc-rs's interceptors, its packets numbered), sends VP8 and decodes the
//! server's RTCP in an interceptor of its own, wire-most, before anything else in its
//! chain can look at it.

mod common;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use face_echo::loadgen::client::open_signaling;
use face_echo::loadgen::clip::{encode_test_pattern, vp8_packetizer};
use face_echo::session::peer::{self, PeerNetwork};
use futures_util::{SinkExt, StreamExt};
use rtc::interceptor::{Interceptor, Packet, Slot, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;
use rtc::shared::error::Error;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use webrtc::media_stream::Track;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::peer_connection::{
    PeerConnectionEventHandler, RTCIceCandidateInit, RTCPeerConnectionIceEvent, RTCPeerConnectionState,
    RTCSessionDescription,
};

const TRANSPORT_CC_URI: &str = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";

/// What crossed the publisher's wire, counted below every other interceptor.
#[derive(Debug, Default)]
struct Wire {
    rtp_sent: AtomicU64,
    /// RTP received: the echo.
    rtp_received: AtomicU64,
    /// Sent RTP carrying the transport-wide sequence number (the server reports on these).
    rtp_sent_with_transport_seq: AtomicU64,
    /// RTCP TransportLayerCC (PT 205, FMT 15) received.
    transport_cc_received: AtomicU64,
    /// Packets those TransportLayerCC report as received (one arrival delta each).
    transport_cc_arrivals: AtomicU64,
    /// RTCP REMB (PT 206, FMT 15, "REMB") received.
    remb_received: AtomicU64,
    /// Reports with a reception report block (about our stream), and sender reports.
    receiver_reports: AtomicU64,
    sender_reports: AtomicU64,
}

impl Wire {
    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Counts into [`Wire`]; passes everything through untouched.
struct WireTap {
    wire: Arc<Wire>,
    /// The transport-cc extension id negotiated for our sending stream.
    transport_seq_id: Option<u8>,
    reads: VecDeque<TaggedPacket>,
    writes: VecDeque<TaggedPacket>,
}

/// Wire-most: reads reach it first, writes leave it last (after the TWCC sender's stamp).
const WIRE_TAP_SLOT: usize = 500;

impl rtc::sansio::Protocol<TaggedPacket, TaggedPacket, ()> for WireTap {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Error> {
        if let Packet::Rtp(_) = &msg.message.packet {
            self.wire.rtp_received.fetch_add(1, Ordering::Relaxed);
        }
        if let Packet::Rtcp(packets) = &msg.message.packet {
            for packet in packets {
                let any = packet.as_any();
                if let Some(feedback) = any.downcast_ref::<TransportLayerCc>() {
                    self.wire.transport_cc_received.fetch_add(1, Ordering::Relaxed);
                    self.wire
                        .transport_cc_arrivals
                        .fetch_add(feedback.recv_deltas.len() as u64, Ordering::Relaxed);
                }
                if any.is::<ReceiverEstimatedMaximumBitrate>() {
                    self.wire.remb_received.fetch_add(1, Ordering::Relaxed);
                }
                // Reception reports: in a receiver report, or in the blocks of a sender
                // report (a sender that also receives reports there, RFC 3550 §6.4.1).
                let blocks = any
                    .downcast_ref::<ReceiverReport>()
                    .map(|rr| rr.reports.len())
                    .or_else(|| any.downcast_ref::<SenderReport>().map(|sr| sr.reports.len()));
                if blocks.is_some_and(|blocks| blocks > 0) {
                    self.wire.receiver_reports.fetch_add(1, Ordering::Relaxed);
                }
                if any.is::<SenderReport>() {
                    self.wire.sender_reports.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.reads.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.reads.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Error> {
        if let Packet::Rtp(packet) = &msg.message.packet {
            self.wire.rtp_sent.fetch_add(1, Ordering::Relaxed);
            if self.transport_seq_id.is_some_and(|id| packet.header.get_extension(id).is_some()) {
                self.wire.rtp_sent_with_transport_seq.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.writes.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.writes.pop_front()
    }
}

impl Interceptor for WireTap {
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        if let Some(ext) = info.rtp_header_extensions.iter().find(|ext| ext.uri == TRANSPORT_CC_URI) {
            self.transport_seq_id = Some(ext.id as u8);
        }
    }
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

struct Handler {
    ws_out: mpsc::UnboundedSender<String>,
    state: watch::Sender<RTCPeerConnectionState>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Some(message) = face_echo::loadgen::client::candidate_message(event) {
            let _ = self.ws_out.send(message);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.state.send(state);
    }
}

/// The `a=rtcp-fb` and `a=extmap` lines of `sdp`'s video section that concern
/// congestion control.
fn congestion_lines(sdp: &str) -> Vec<String> {
    sdp.lines()
        .map(str::trim)
        .filter(|line| {
            (line.starts_with("a=rtcp-fb:")
                && (line.ends_with(" transport-cc") || line.ends_with(" goog-remb")))
                || (line.starts_with("a=extmap:") && line.contains("transport-wide-cc"))
        })
        .map(str::to_owned)
        .collect()
}

fn advertises_transport_cc(sdp: &str) -> bool {
    let lines = congestion_lines(sdp);
    lines.iter().any(|l| l.ends_with(" transport-cc")) && lines.iter().any(|l| l.contains(TRANSPORT_CC_URI))
}

fn advertises_remb(sdp: &str) -> bool {
    congestion_lines(sdp).iter().any(|l| l.ends_with(" goog-remb"))
}

/// The session's media plane sends the feedback (reports both ways, transport-cc
/// on every numbered packet), and the answer advertises exactly that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_answer_advertises_exactly_the_congestion_feedback_the_server_sends() {
    let echo = congestion_feedback(test_config()).await;
    let (on_plane, packets_in) =
        (echo["packets_on_plane"].as_u64().unwrap(), echo["packets_in"].as_u64().unwrap());
    assert_eq!(on_plane, packets_in, "every packet on the plane: {echo}");
    assert_eq!(echo["plane"]["unprotect_failed"], 0, "{echo}");
    assert_eq!(echo["plane"]["errors"], 0, "{echo}");
}

/// One publisher's three seconds against a server started with `config`; returns
/// its session's `echo` counters.
async fn congestion_feedback(config: face_echo::control::config::Config) -> Value {
    let server = start(config).await;

    // Signaling, as the page does it: offer, answer, trickled candidates both ways.
    let ws = open_signaling(&ws_url(server.addr), None).await.expect("signaling opens");
    let (mut ws_sink, mut ws_stream) = ws.split();
    let (ws_out, mut ws_out_rx) = mpsc::unbounded_channel::<String>();
    let writer = tokio::spawn(async move {
        while let Some(text) = ws_out_rx.recv().await {
            if ws_sink.send(Message::text(text)).await.is_err() {
                return;
            }
        }
    });
    let (state_tx, mut state_rx) = watch::channel(RTCPeerConnectionState::New);
    let handler = Arc::new(Handler { ws_out: ws_out.clone(), state: state_tx });

    let wire = Arc::new(Wire::default());
    let tap = WireTap {
        wire: Arc::clone(&wire),
        transport_seq_id: None,
        reads: VecDeque::new(),
        writes: VecDeque::new(),
    };
    let extend =
        Box::new(|registry| peer::number_sent_packets(registry).with(Slot::from(WIRE_TAP_SLOT), tap));
    let pc = peer::build(
        &PeerNetwork::loopback(),
        None,
        handler,
        peer::PeerMedia::Client { extend, hook: None, srtp_profiles: Vec::new() },
    )
    .await
    .expect("publisher PeerConnection");
    let track = peer::vp8_rtp_track("publisher", "camera");
    pc.add_track(Arc::clone(&track) as Arc<dyn TrackLocal>).await.expect("add track");
    let ssrc = track.ssrcs().await[0];

    let offer = pc.create_offer(None).await.expect("offer");
    pc.set_local_description(offer).await.expect("set offer");
    let offer_sdp = pc.local_description().await.expect("local offer").sdp;
    // Asks for REMB too, as Chrome's offer does: the answer must take only what it sends.
    let pt = peer::VP8_PAYLOAD_TYPE;
    let offer_sdp = if advertises_remb(&offer_sdp) {
        offer_sdp
    } else {
        offer_sdp.replace(
            &format!("a=rtcp-fb:{pt} nack\r\n"),
            &format!("a=rtcp-fb:{pt} goog-remb\r\na=rtcp-fb:{pt} nack\r\n"),
        )
    };
    ws_out.send(json!({"type": "offer", "sdp": offer_sdp}).to_string()).unwrap();

    let answer_sdp = loop {
        let frame = tokio::time::timeout(CONNECT_TIMEOUT, ws_stream.next())
            .await
            .expect("an answer in time")
            .expect("signaling open")
            .expect("signaling frame");
        let Message::Text(text) = frame else { continue };
        let message: Value = serde_json::from_str(text.as_str()).expect("JSON");
        match message["type"].as_str() {
            Some("answer") => break message["sdp"].as_str().expect("answer SDP").to_owned(),
            Some("ice") => {
                let init: RTCIceCandidateInit = serde_json::from_value(message["candidate"].clone()).unwrap();
                pc.add_ice_candidate(init).await.expect("candidate");
            }
            other => panic!("unexpected {other:?} before the answer: {message}"),
        }
    };
    pc.set_remote_description(RTCSessionDescription::answer(answer_sdp.clone()).unwrap())
        .await
        .expect("set answer");
    let pc_for_candidates = Arc::clone(&pc);
    let reader = tokio::spawn(async move {
        while let Some(Ok(Message::Text(text))) = ws_stream.next().await {
            let Ok(message) = serde_json::from_str::<Value>(text.as_str()) else { continue };
            if message["type"] == "ice"
                && let Ok(init) = serde_json::from_value::<RTCIceCandidateInit>(message["candidate"].clone())
            {
                let _ = pc_for_candidates.add_ice_candidate(init).await;
            }
        }
    });
    tokio::time::timeout(CONNECT_TIMEOUT, state_rx.wait_for(|s| *s == RTCPeerConnectionState::Connected))
        .await
        .expect("connected in time")
        .expect("peer connection alive");

    println!("offer:  {:?}", congestion_lines(&offer_sdp));
    println!("answer: {:?}", congestion_lines(&answer_sdp));

    // Three seconds of VP8 at 30 fps.
    let clip = encode_test_pattern(320, 240, 90, FPS, 600).expect("clip encodes");
    let mut packetizer = vp8_packetizer(ssrc);
    let mut ticker = tokio::time::interval(Duration::from_millis(1000 / u64::from(FPS)));
    for frame in &clip {
        ticker.tick().await;
        for packet in packetizer.packetize(Instant::now(), &frame.data, SAMPLES_PER_FRAME).expect("packetize")
        {
            track.write_rtp(packet).await.expect("write");
        }
    }
    // TWCC is due every 100 ms, REMB (in browsers) every second: wait for either to catch up.
    let advertised_remb = advertises_remb(&answer_sdp);
    let advertised_transport_cc = advertises_transport_cc(&answer_sdp);
    eventually(Duration::from_secs(3), || async {
        (!advertised_transport_cc
            || Wire::get(&wire.transport_cc_arrivals) >= Wire::get(&wire.rtp_sent_with_transport_seq))
            && (!advertised_remb || Wire::get(&wire.remb_received) > 0)
    })
    .await;

    let rtp_sent = Wire::get(&wire.rtp_sent);
    let stamped = Wire::get(&wire.rtp_sent_with_transport_seq);
    let transport_cc = Wire::get(&wire.transport_cc_received);
    let arrivals = Wire::get(&wire.transport_cc_arrivals);
    let remb = Wire::get(&wire.remb_received);
    let echoed = Wire::get(&wire.rtp_received);
    let (receiver_reports, sender_reports) =
        (Wire::get(&wire.receiver_reports), Wire::get(&wire.sender_reports));
    println!(
        "publisher sent {rtp_sent} RTP packets, {stamped} with a transport-wide sequence number; \
         received {echoed} RTP back, {transport_cc} TransportLayerCC reporting {arrivals} arrivals, \
         {remb} REMB, {receiver_reports} receiver and {sender_reports} sender reports"
    );
    // Reports every second, on our stream and on the echo.
    assert!(receiver_reports >= 2, "{receiver_reports} receiver reports in 3 s");
    assert!(sender_reports >= 2, "{sender_reports} sender reports in 3 s");

    // The publisher asks for transport-cc and, having asked, numbers what it sends.
    assert!(advertises_transport_cc(&offer_sdp), "the offer asks for transport-cc: {offer_sdp}");
    assert!(advertises_remb(&offer_sdp), "the offer asks for goog-remb: {offer_sdp}");
    assert!(rtp_sent > 0);
    assert_eq!(stamped, rtp_sent, "every RTP packet the publisher sends carries the transport-wide sequence");

    // Numbered packets still echo (the echo drops the publisher's extensions).
    assert!(echoed * 10 >= rtp_sent * 9, "{echoed} of {rtp_sent} packets echoed");

    // The answer advertises transport-cc, and the server sends it.
    assert!(advertised_transport_cc, "the answer advertises transport-cc: {answer_sdp}");
    assert!(transport_cc > 0, "the answer advertises transport-cc but the server sent none");
    // ... about the packets we sent: on loopback, nearly all of them arrived.
    assert!(
        arrivals * 10 >= stamped * 9,
        "TransportLayerCC reports {arrivals} arrivals of {stamped} numbered packets"
    );

    // goog-remb is advertised if and only if REMB arrives (today: neither).
    assert_eq!(
        advertised_remb,
        remb > 0,
        "the answer {} goog-remb and the server sent {remb} REMB: {answer_sdp}",
        if advertised_remb { "advertises" } else { "does not advertise" }
    );

    let echo =
        sessions(server.addr).await.first().map(|session| session["echo"].clone()).expect("the session");
    println!("server's echo counters: {echo}");
    reader.abort();
    writer.abort();
    let _ = tokio::time::timeout(Duration::from_secs(3), pc.close()).await;
    server.shutdown().await.expect("shutdown");
    echo
}
