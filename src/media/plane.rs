//! The media plane: every RTP and RTCP packet of one PeerConnection, unprotected,
//! answered and echoed on the mux's reader, in the pass that read it.
//!
//! webrtc-rs keeps ICE, DTLS and the data channels; it never sees media. The plane
//! takes each SRTP datagram where the kernel put it:
//!
//! ```text
//! unprotect in place → header read in place → feedback (receive stats, missing
//! packets, transport-wide arrivals) → the side consumers' copies (only when
//! someone wants one) → echo: readdress and protect in the same buffer, keep it for
//! NACKs, send → timers that fell due (reports, NACKs, transport-cc), one compound
//! ```
//!
//! so an echoed packet costs no allocation and no copy but the one the NACK history
//! keeps. The client's RTCP is read the same way: NACKs for our streams are
//! answered from their history within the retransmission budget, sender reports
//! feed our receiver reports, PLI and FIR become keyframe wishes; the rest is
//! stepped over.
//!
//! SRTP: the plane's own contexts, from the keys DTLS exported (vendor/PATCHES.md,
//! 2), protecting in place (6); webrtc-rs sends no RTP or RTCP, so it protects
//! nothing with them. Packets that arrive before the keys (the client's DTLS
//! finishes a moment before ours is reported) wait in a short queue.
//!
//! What may cost a session work is bounded: datagrams per second per kind (a
//! budget checked before anything is unprotected), SSRCs it may bring, and every
//! count in what it sends is read from the bytes that are there.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use rtc::srtp::config::SessionKeys;
use rtc::srtp::context::Context as SrtpContext;
use rtc::srtp::protection_profile::ProtectionProfile;
use tokio::sync::mpsc;

use crate::media::feedback::FEEDBACK_INTERVAL;
use crate::media::feedback::nack::{ReceiveLog, RetransmitStats, SendHistory};
use crate::media::feedback::reports::{REPORT_INTERVAL, ReceiveStats, SendStats};
use crate::media::feedback::twcc::TwccRecorder;
use crate::media::rtcp::{
    self, Compound, FMT_NACK, MAX_REPORT_BLOCKS, PAYLOAD_FEEDBACK, ReportBlock, TRANSPORT_FEEDBACK,
};
use crate::media::rtp::{self, RtpHeader};
use crate::media::srtp::{self, Kind, kind};
use crate::media::token_bucket::TokenBucket;
use crate::media::udp_mux::{MediaHook, MuxSender, Transport};

/// RTP datagrams one session may have handled per second, and in a burst: far
/// above any video it sends (4K at 30 Mbit/s is ~3 000 packets a second), far
/// below what would let one session fill the reader that serves every session.
const RTP_PER_SECOND: f64 = 20_000.0;
const RTP_BURST: f64 = 4_000.0;
/// RTCP datagrams per second and in a burst: a browser sends a few a second.
const RTCP_PER_SECOND: f64 = 500.0;
const RTCP_BURST: f64 = 200.0;
/// Datagrams kept while the SRTP keys are not known yet.
const EARLY_DATAGRAMS: usize = 64;
/// Unknown SSRCs the plane unprotects to find their m-line (by the MID header
/// extension) before it stops trying: each leaves an SRTP state behind.
const BIND_ATTEMPTS: u32 = 64;
/// Once the RTCP buffer holds this much, it is sent and a new compound begins: a
/// compound stays under the path MTU with SRTCP's overhead.
const COMPOUND_BYTES: usize = 1000;

/// What the plane counted, for `/api/sessions` (`echo.plane`).
#[derive(Debug, Default)]
pub struct PlaneStats {
    /// RTP packets unprotected here.
    pub rtp_in: AtomicU64,
    /// RTCP datagrams unprotected here.
    pub rtcp_in: AtomicU64,
    /// Datagrams that failed SRTP authentication or the replay check.
    pub unprotect_failed: AtomicU64,
    /// Unprotected, but not a well-formed RTP or RTCP packet.
    pub malformed: AtomicU64,
    /// RTP of an SSRC no negotiated m-line takes.
    pub unknown_ssrc: AtomicU64,
    /// Datagrams over the session's budget, dropped before anything was done.
    pub over_budget: AtomicU64,
    /// Datagrams that arrived before the keys and did not fit the queue.
    pub early_dropped: AtomicU64,
    /// RTP protected and sent here (echoes, retransmissions, a viewer's stream).
    pub rtp_out: AtomicU64,
    /// Compound RTCP packets made, protected and sent here.
    pub rtcp_out: AtomicU64,
    /// Packets that could not be protected, or had nowhere to go yet.
    pub errors: AtomicU64,
    /// What the client's media arrives over now: 0 nothing yet, 1 UDP, 2 ICE-TCP.
    transport: AtomicU8,
}

impl PlaneStats {
    pub fn to_json(&self) -> serde_json::Value {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        serde_json::json!({
            "rtp_in": get(&self.rtp_in),
            "rtcp_in": get(&self.rtcp_in),
            "unprotect_failed": get(&self.unprotect_failed),
            "malformed": get(&self.malformed),
            "unknown_ssrc": get(&self.unknown_ssrc),
            "over_budget": get(&self.over_budget),
            "early_dropped": get(&self.early_dropped),
            "rtp_out": get(&self.rtp_out),
            "rtcp_out": get(&self.rtcp_out),
            "errors": get(&self.errors),
        })
    }

    /// `"udp"` or `"tcp"`: what the client's media arrives over (`None` before any).
    pub fn transport(&self) -> Option<&'static str> {
        match self.transport.load(Ordering::Relaxed) {
            1 => Some(Transport::Udp.name()),
            2 => Some(Transport::Tcp.name()),
            _ => None,
        }
    }
}

fn count(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// An incoming stream (one m-line the client sends on), as negotiated.
pub struct ReceiveLeg {
    pub mid: String,
    /// Its SSRC when the offer named it (`a=ssrc`); else the plane learns it from
    /// the first packet (the MID header extension, or the only m-line left).
    pub ssrc: Option<u32>,
    pub clock_rate: u32,
    /// NACK was negotiated: the plane asks for what is lost.
    pub nack: bool,
    /// The packet's counters and side consumers (viewers, recorder, tap).
    pub path: Box<dyn Beside>,
    /// Where its echo goes (`None`: nothing goes back, e.g. a WHIP `sendonly`).
    pub echo: Option<SendLeg>,
}

/// What a received packet means beside its echo: its counters, and the consumers
/// on the side (a session's viewers, recorder and decode tap). The plane asks first
/// whether anyone wants the payload, and takes one copy for all of them before the
/// echo reuses the buffer; it hands the copy over once the echo has gone.
pub trait Beside: Send + Sync {
    /// Counts `arrival` in; whether a copy of its payload is wanted.
    fn wants_payload(&self, arrival: &Arrival) -> bool;
    /// After the echo (`echoed`: `None` with nothing to echo to, else whether it
    /// went), with the payload if it was wanted.
    fn after_echo(&self, arrival: Arrival, payload: Option<Bytes>, echoed: Option<bool>);
}

/// A received RTP packet, as the consumers beside the echo see it.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence_number: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload_len: usize,
    pub at: Instant,
}

/// An outgoing stream: an echo, or a viewer's copy of a publisher's stream.
pub struct SendLeg {
    pub ssrc: u32,
    pub payload_type: u8,
    pub clock_rate: u32,
    /// PLI and FIR for this stream become these wishes (the session's keyframe
    /// scheduler's).
    pub keyframe_wishes: Option<mpsc::Sender<()>>,
}

/// The header extension ids negotiated for the bundle.
#[derive(Debug, Clone, Copy, Default)]
pub struct Extensions {
    /// `urn:ietf:params:rtp-hdrext:sdes:mid`: which m-line an unknown SSRC is on.
    pub mid: Option<u8>,
    /// The transport-wide sequence number: transport-cc feedback reports on it.
    pub transport_cc: Option<u8>,
}

/// Where the client's media last came from, and the socket that reaches it.
struct Route {
    to: SocketAddr,
    via: MuxSender,
}

impl Route {
    fn send(&self, datagram: &[u8]) {
        self.via.send(datagram, self.to);
    }
}

struct Receiver {
    mid: String,
    ssrc: Option<u32>,
    nack: bool,
    stats: ReceiveStats,
    log: ReceiveLog,
    path: Box<dyn Beside>,
    /// Its echo's index in `senders`.
    echo: Option<usize>,
}

struct Sender {
    ssrc: u32,
    payload_type: u8,
    history: SendHistory,
    stats: SendStats,
    keyframe_wishes: Option<mpsc::Sender<()>>,
}

struct Srtp {
    /// Unprotects what the client sends (its keys).
    inbound: SrtpContext,
    /// Protects what we send (ours).
    outbound: SrtpContext,
}

/// A datagram that came before the keys.
struct Early {
    datagram: Vec<u8>,
    from: SocketAddr,
    via: MuxSender,
}

struct PlaneState {
    srtp: Option<Srtp>,
    early: VecDeque<Early>,
    receivers: Vec<Receiver>,
    senders: Vec<Sender>,
    extensions: Extensions,
    twcc: TwccRecorder,
    /// Our SSRC on the RTCP we send that is not a sender report.
    feedback_ssrc: u32,
    route: Option<Route>,
    next_feedback: Option<Instant>,
    next_report: Option<Instant>,
    rtp_budget: TokenBucket,
    rtcp_budget: TokenBucket,
    bind_attempts: u32,
    /// Scratch buffers, kept: RTCP we send, a viewer's packet.
    rtcp: Vec<u8>,
    rtp: Vec<u8>,
}

/// One PeerConnection's media plane: a [`MediaHook`] on each of its mux sockets.
pub struct MediaPlane {
    state: Mutex<PlaneState>,
    stats: Arc<PlaneStats>,
    retransmit: Arc<RetransmitStats>,
}

fn lock(state: &Mutex<PlaneState>) -> MutexGuard<'_, PlaneState> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl MediaPlane {
    /// A plane with no streams and no keys yet: hooked on the mux before the
    /// PeerConnection sees its first packet, configured once negotiated
    /// ([`MediaPlane::configure`]), protecting once DTLS is done ([`MediaPlane::start`]).
    pub fn new(stats: Arc<PlaneStats>, retransmit: Arc<RetransmitStats>) -> Arc<MediaPlane> {
        let now = Instant::now();
        let state = PlaneState {
            srtp: None,
            early: VecDeque::new(),
            receivers: Vec::new(),
            senders: Vec::new(),
            extensions: Extensions::default(),
            twcc: TwccRecorder::new(feedback_ssrc()),
            feedback_ssrc: feedback_ssrc(),
            route: None,
            next_feedback: None,
            next_report: None,
            rtp_budget: TokenBucket::new(RTP_PER_SECOND, RTP_BURST, now),
            rtcp_budget: TokenBucket::new(RTCP_PER_SECOND, RTCP_BURST, now),
            bind_attempts: BIND_ATTEMPTS,
            rtcp: Vec::with_capacity(1500),
            rtp: Vec::with_capacity(1500),
        };
        Arc::new(MediaPlane { state: Mutex::new(state), stats, retransmit })
    }

    /// The negotiated streams: what comes in (each maybe echoed) and what else
    /// goes out (a viewer's stream).
    pub fn configure(&self, extensions: Extensions, receive: Vec<ReceiveLeg>, send: Vec<SendLeg>) {
        let now = Instant::now();
        let mut state = lock(&self.state);
        state.extensions = extensions;
        let new_sender = |leg: SendLeg| Sender {
            ssrc: leg.ssrc,
            payload_type: leg.payload_type,
            history: SendHistory::new(now),
            stats: SendStats::new(leg.ssrc, leg.clock_rate),
            keyframe_wishes: leg.keyframe_wishes,
        };
        for leg in receive {
            let echo = leg.echo.map(|echo| {
                state.senders.push(new_sender(echo));
                state.senders.len() - 1
            });
            state.receivers.push(Receiver {
                mid: leg.mid,
                ssrc: leg.ssrc,
                nack: leg.nack,
                stats: ReceiveStats::new(leg.clock_rate),
                log: ReceiveLog::new(),
                path: leg.path,
                echo,
            });
        }
        state.senders.extend(send.into_iter().map(new_sender));
    }

    /// DTLS is done: protect and unprotect with its keys from now on, starting
    /// with what waited for them.
    pub fn start(&self, profile: ProtectionProfile, keys: &SessionKeys) -> Result<(), String> {
        let (outbound, inbound) = srtp::session_contexts(profile, keys)?;
        let mut state = lock(&self.state);
        state.srtp = Some(Srtp { inbound, outbound });
        while let Some(mut early) = state.early.pop_front() {
            self.handle(&mut state, &mut early.datagram, early.from, &early.via);
        }
        Ok(())
    }

    /// Lets go of every stream (the session is closing): their side consumers (tap,
    /// recorder, viewers) end now, not when the PeerConnection's sockets go.
    pub fn close(&self) {
        let mut state = lock(&self.state);
        state.receivers.clear();
        state.senders.clear();
        state.early.clear();
    }

    /// Asks the sender of the incoming stream on m-line `mid` for a keyframe (a
    /// PLI); false when there is nobody to ask yet.
    pub fn request_keyframe(&self, mid: &str) -> bool {
        let mut state = lock(&self.state);
        let Some(ssrc) = state.receivers.iter().find(|r| r.mid == mid).and_then(|r| r.ssrc) else {
            return false;
        };
        let sender = state.feedback_ssrc;
        rtcp::append_pli(&mut state.rtcp, sender, ssrc);
        self.send_rtcp(&mut state)
    }

    /// Sends `packet` (as a publisher sent it) on outgoing stream `index` (a
    /// viewer's): readdressed, protected, kept for NACKs. False when it cannot go
    /// yet (no keys, or the client has not been heard from).
    pub fn send_rtp(&self, index: usize, packet: &rtc::rtp::Packet) -> bool {
        let now = Instant::now();
        let mut state = lock(&self.state);
        let state = &mut *state;
        let (Some(srtp), Some(route), Some(sender)) =
            (&mut state.srtp, &state.route, state.senders.get_mut(index))
        else {
            return false;
        };
        let header = &packet.header;
        let buf = &mut state.rtp;
        buf.clear();
        buf.push(0x80);
        buf.push(u8::from(header.marker) << 7 | (sender.payload_type & 0x7f));
        buf.extend_from_slice(&header.sequence_number.to_be_bytes());
        buf.extend_from_slice(&header.timestamp.to_be_bytes());
        buf.extend_from_slice(&sender.ssrc.to_be_bytes());
        buf.extend_from_slice(&packet.payload);
        let len = buf.len();
        buf.resize(len + srtp.outbound.rtp_overhead(), 0);
        match srtp.outbound.encrypt_rtp_in_place(buf, len) {
            Ok(protected) => {
                let kept =
                    sender.history.keep(header.sequence_number, packet.payload.len(), &buf[..protected], now);
                route.send(kept);
                sender.stats.on_packet(header.sequence_number, header.timestamp, packet.payload.len(), now);
                count(&self.stats.rtp_out);
            }
            Err(err) => {
                count(&self.stats.errors);
                tracing::debug!(%err, "media plane could not protect a packet");
                return false;
            }
        }
        state.next_report.get_or_insert(now + REPORT_INTERVAL);
        self.run_timers(state, now);
        true
    }

    /// Handles one datagram from `from` on the socket `via`; false when it is not
    /// media (the PeerConnection takes it).
    fn handle(&self, state: &mut PlaneState, datagram: &mut [u8], from: SocketAddr, via: &MuxSender) -> bool {
        let rtp = match kind(datagram) {
            Kind::Rtp { ssrc } => Some(ssrc),
            Kind::Rtcp => None,
            Kind::Dtls => {
                // DTLS runs on the pair ICE selected: the way to the client until
                // its media says otherwise.
                set_route(state, &self.stats, from, via);
                return false;
            }
            Kind::Other => return false,
        };
        let now = Instant::now();
        let budget = if rtp.is_some() { &mut state.rtp_budget } else { &mut state.rtcp_budget };
        if !budget.take(now) {
            count(&self.stats.over_budget);
            return true;
        }
        if state.srtp.is_none() {
            if state.early.len() < EARLY_DATAGRAMS {
                state.early.push_back(Early { datagram: datagram.to_vec(), from, via: via.clone() });
            } else {
                count(&self.stats.early_dropped);
            }
            return true;
        }
        match rtp {
            Some(ssrc) => self.on_rtp(state, datagram, ssrc, from, via, now),
            None => self.on_rtcp(state, datagram, from, via, now),
        }
        self.run_timers(state, now);
        true
    }

    /// One RTP packet: unprotect, feedback, side consumers' copies, echo.
    fn on_rtp(
        &self,
        state: &mut PlaneState,
        datagram: &mut [u8],
        ssrc: u32,
        from: SocketAddr,
        via: &MuxSender,
        now: Instant,
    ) {
        let known = state.receivers.iter().position(|r| r.ssrc == Some(ssrc));
        let binding =
            known.is_none() && state.bind_attempts > 0 && state.receivers.iter().any(|r| r.ssrc.is_none());
        if known.is_none() && !binding {
            count(&self.stats.unknown_ssrc);
            return;
        }
        let Some(srtp) = &mut state.srtp else { return };
        let len = match srtp.inbound.decrypt_rtp_in_place(datagram) {
            Ok(len) => len,
            Err(err) => {
                count(&self.stats.unprotect_failed);
                tracing::trace!(%err, "SRTP unprotect failed");
                return;
            }
        };
        let Some(header) = RtpHeader::parse(&datagram[..len]) else {
            count(&self.stats.malformed);
            return;
        };
        let Some(index) = known.or_else(|| bind(state, &header, &datagram[..len])) else {
            count(&self.stats.unknown_ssrc);
            return;
        };
        count(&self.stats.rtp_in);
        set_route(state, &self.stats, from, via);
        note_arrival(state, index, &header, &datagram[..len], now);
        let arrival = Arrival {
            marker: header.marker,
            payload_type: header.payload_type,
            sequence_number: header.sequence_number,
            timestamp: header.timestamp,
            ssrc: header.ssrc,
            payload_len: header.payload.len(),
            at: now,
        };
        let payload = state.receivers[index]
            .path
            .wants_payload(&arrival)
            .then(|| Bytes::copy_from_slice(&datagram[header.payload.clone()]));
        let echoed =
            state.receivers[index].echo.map(|echo| self.echo(state, echo, datagram, len, &header, now));
        state.receivers[index].path.after_echo(arrival, payload, echoed);
    }

    /// The echo of the unprotected packet `datagram[..len]` on outgoing stream `echo`:
    /// readdressed and protected in the same buffer, kept for NACKs, sent to the client.
    #[inline(never)] // a stage of its own in the instruction profile (benches/plane.rs)
    fn echo(
        &self,
        state: &mut PlaneState,
        echo: usize,
        datagram: &mut [u8],
        len: usize,
        header: &RtpHeader,
        now: Instant,
    ) -> bool {
        let (Some(srtp), Some(route), Some(sender)) =
            (&mut state.srtp, &state.route, state.senders.get_mut(echo))
        else {
            return false;
        };
        let start = rtp::readdress(datagram, header, sender.ssrc, sender.payload_type);
        let payload_len = header.payload.len();
        match srtp.outbound.encrypt_rtp_in_place(&mut datagram[start..], len - start) {
            Ok(protected) => {
                let kept = sender.history.keep(
                    header.sequence_number,
                    payload_len,
                    &datagram[start..start + protected],
                    now,
                );
                route.send(kept);
                sender.stats.on_packet(header.sequence_number, header.timestamp, payload_len, now);
                count(&self.stats.rtp_out);
                true
            }
            Err(err) => {
                count(&self.stats.errors);
                tracing::debug!(%err, "media plane could not protect the echo");
                false
            }
        }
    }

    /// One RTCP datagram: NACKs for our streams are answered, sender reports noted,
    /// keyframe requests become wishes.
    fn on_rtcp(
        &self,
        state: &mut PlaneState,
        datagram: &mut [u8],
        from: SocketAddr,
        via: &MuxSender,
        now: Instant,
    ) {
        let Some(srtp) = &mut state.srtp else { return };
        let len = match srtp.inbound.decrypt_rtcp_in_place(datagram) {
            Ok(len) => len,
            Err(err) => {
                count(&self.stats.unprotect_failed);
                tracing::trace!(%err, "SRTCP unprotect failed");
                return;
            }
        };
        count(&self.stats.rtcp_in);
        set_route(state, &self.stats, from, via);
        let mut compound = Compound::new(&datagram[..len]);
        for packet in compound.by_ref() {
            if let Some((ssrc, ntp)) = packet.sender_report() {
                if let Some(receiver) = state.receivers.iter_mut().find(|r| r.ssrc == Some(ssrc)) {
                    receiver.stats.on_sender_report(ntp, now);
                }
                continue;
            }
            match (packet.packet_type, packet.count) {
                (TRANSPORT_FEEDBACK, FMT_NACK) => {
                    let (Some(media), Some(pairs), Some(route)) =
                        (packet.media_ssrc(), packet.nack_pairs(), &state.route)
                    else {
                        continue;
                    };
                    if let Some(sender) = state.senders.iter_mut().find(|s| s.ssrc == media) {
                        sender.history.answer(pairs, now, &self.retransmit, |bytes| {
                            route.send(bytes);
                            count(&self.stats.rtp_out);
                        });
                    }
                }
                (PAYLOAD_FEEDBACK, _) => {
                    for sender in state.senders.iter().filter(|s| packet.asks_keyframe_of(s.ssrc)) {
                        if let Some(wishes) = &sender.keyframe_wishes {
                            // Full: a wish is pending already, which is all one more would say.
                            let _ = wishes.try_send(());
                        }
                    }
                }
                _ => {}
            }
        }
        if compound.malformed() {
            count(&self.stats.malformed);
        }
    }

    /// Sends the reports, NACKs and transport-cc feedback that fell due.
    #[inline(never)] // a stage of its own in the instruction profile (benches/plane.rs)
    fn run_timers(&self, state: &mut PlaneState, now: Instant) {
        let report_due = state.next_report.is_some_and(|at| now >= at);
        let feedback_due = state.next_feedback.is_some_and(|at| now >= at);
        if report_due {
            state.next_report = Some(now + REPORT_INTERVAL);
            let mut blocks = [ReportBlock::default(); MAX_REPORT_BLOCKS];
            let mut filled = 0;
            for receiver in state.receivers.iter_mut().take(MAX_REPORT_BLOCKS) {
                if let (Some(ssrc), Some(block)) = (receiver.ssrc, receiver.stats.report(now)) {
                    blocks[filled] = ReportBlock { ssrc, ..block };
                    filled += 1;
                }
            }
            let mut senders = state.senders.iter().filter_map(|s| s.stats.report(now));
            match senders.next() {
                Some(first) => {
                    rtcp::append_sender_report(&mut state.rtcp, &first, &blocks[..filled]);
                    senders.for_each(|info| rtcp::append_sender_report(&mut state.rtcp, &info, &[]));
                }
                None if filled > 0 => {
                    rtcp::append_receiver_report(&mut state.rtcp, state.feedback_ssrc, &blocks[..filled])
                }
                None => {}
            }
        }
        if feedback_due {
            state.next_feedback = Some(now + FEEDBACK_INTERVAL);
            for index in 0..state.receivers.len() {
                let receiver = &state.receivers[index];
                if let (true, Some(ssrc)) = (receiver.nack, receiver.ssrc) {
                    rtcp::append_nack(&mut state.rtcp, state.feedback_ssrc, ssrc, receiver.log.missing());
                }
                if state.rtcp.len() >= COMPOUND_BYTES {
                    self.send_rtcp(state);
                }
            }
            if state.extensions.transport_cc.is_some() {
                state.twcc.append_feedback(&mut state.rtcp);
            }
        }
        if !state.rtcp.is_empty() {
            self.send_rtcp(state);
        }
    }

    /// Protects and sends the RTCP gathered in `state.rtcp` as one compound packet
    /// (emptied either way); false when it could not go.
    fn send_rtcp(&self, state: &mut PlaneState) -> bool {
        let (Some(srtp), Some(route)) = (&mut state.srtp, &state.route) else {
            state.rtcp.clear();
            count(&self.stats.errors);
            return false;
        };
        let len = state.rtcp.len();
        state.rtcp.resize(len + srtp.outbound.rtcp_overhead(), 0);
        let sent = match srtp.outbound.encrypt_rtcp_in_place(&mut state.rtcp, len) {
            Ok(protected) => {
                route.send(&state.rtcp[..protected]);
                count(&self.stats.rtcp_out);
                true
            }
            Err(err) => {
                count(&self.stats.errors);
                tracing::debug!(%err, "media plane could not protect RTCP");
                false
            }
        };
        state.rtcp.clear();
        sent
    }
}

/// What an arriving packet of incoming stream `index` tells the feedback: its
/// reception (reports), the packets missing before it (NACKs), its transport-wide
/// arrival (transport-cc); and the timers start with the first.
#[inline(never)] // a stage of its own in the instruction profile (benches/plane.rs)
fn note_arrival(state: &mut PlaneState, index: usize, header: &RtpHeader, packet: &[u8], now: Instant) {
    if let Some(id) = state.extensions.transport_cc
        && let Some(sequence) = header.extension_element(packet, id).and_then(rtp::transport_sequence)
    {
        state.twcc.record(header.ssrc, sequence, now);
    }
    state.next_feedback.get_or_insert(now + FEEDBACK_INTERVAL);
    state.next_report.get_or_insert(now + REPORT_INTERVAL);
    let receiver = &mut state.receivers[index];
    receiver.stats.on_packet(header.sequence_number, header.timestamp, now);
    if receiver.nack {
        receiver.log.add(header.sequence_number);
    }
}

/// A random SSRC for the RTCP we send that is not about a stream of ours (never 0).
fn feedback_ssrc() -> u32 {
    rand::random::<u32>().max(1)
}

fn set_route(state: &mut PlaneState, stats: &PlaneStats, from: SocketAddr, via: &MuxSender) {
    if state.route.as_ref().is_none_or(|route| route.to != from || !route.via.same_socket(via)) {
        state.route = Some(Route { to: from, via: via.clone() });
        let transport = match via.transport() {
            Transport::Udp => 1,
            Transport::Tcp => 2,
        };
        stats.transport.store(transport, Ordering::Relaxed);
    }
}

/// The m-line an unknown SSRC's (unprotected) packet is on: named by its MID
/// header extension, or the only one without an SSRC yet.
fn bind(state: &mut PlaneState, header: &RtpHeader, packet: &[u8]) -> Option<usize> {
    state.bind_attempts = state.bind_attempts.saturating_sub(1);
    let mut unbound = state.receivers.iter().enumerate().filter(|(_, r)| r.ssrc.is_none());
    let named = state.extensions.mid.and_then(|id| header.extension_element(packet, id));
    let index = match named {
        Some(mid) => unbound.find(|(_, r)| r.mid.as_bytes() == mid).map(|(index, _)| index),
        None => match (unbound.next(), unbound.next()) {
            (Some((index, _)), None) => Some(index),
            _ => None,
        },
    }?;
    state.receivers[index].ssrc = Some(header.ssrc);
    tracing::debug!(mid = %state.receivers[index].mid, ssrc = header.ssrc, "incoming stream bound");
    Some(index)
}

impl MediaHook for MediaPlane {
    fn on_datagram(&self, datagram: &mut [u8], from: SocketAddr, via: &MuxSender) -> bool {
        self.handle(&mut lock(&self.state), datagram, from, via)
    }

    fn on_tick(&self, now: Instant) -> bool {
        let mut state = lock(&self.state);
        self.run_timers(&mut state, now);
        state.next_report.is_some()
    }

    fn in_use(&self, from: SocketAddr, via: &MuxSender) -> bool {
        let state = lock(&self.state);
        state.srtp.is_some()
            && state.route.as_ref().is_some_and(|route| route.to == from && route.via.same_socket(via))
    }
}
