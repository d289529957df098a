//! A client's own media path ([`super::client::ClientOptions::own_media`], what the
//! load generator's publishers use): its RTP leaves and its echo arrives on a UDP
//! socket of its own, protected with SRTP contexts of its own (the keys DTLS
//! exported, vendor/PATCHES.md 2), past webrtc-rs's driver, which keeps ICE, DTLS
//! and the data channel.
//!
//! Why: a load generator must cost less than the server it measures.
//! Through the driver each of its packets would pay webrtc-rs's whole pipeline
//! twice, once out and once back: the cost the server's media plane
//! (`media::plane`) avoids on the other side. Here a frame costs its SRTP and one
//! GSO `sendmsg`, and an echo an SRTP unprotect and the caller's callback on the
//! socket's reader (the load generator's publishers share one,
//! [`crate::media::udp_mux::ReaderGroup`]: what arrives together is read in one
//! wake-up).
//!
//! What the server sees does not change: the same SRTP, a frame's packets in one
//! send, and each packet numbered with the transport-wide sequence number as
//! webrtc-rs's TWCC sender would (the server's transport-cc feedback reports on it).
//! What the server sends back besides the echo (receiver reports, transport-cc) is
//! counted and dropped: as in a `lean` client, nothing here adapts its rate.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{Context, anyhow};
use rtc::rtp;
use rtc::shared::marshal::{Marshal, Unmarshal};
use rtc::srtp::context::Context as SrtpContext;
use webrtc::peer_connection::PeerConnection;

use crate::media::srtp::{self, Kind, kind};
use crate::media::udp_mux::{MediaHook, MuxSender, ReaderGroup, UdpMux};

/// Called with each echoed packet (see `ClientOptions::on_echo`); must not block.
pub type EchoCallback = Arc<dyn Fn(rtp::Packet) + Send + Sync>;

/// What a client's own media path counted.
#[derive(Debug, Default)]
pub struct MediaStats {
    /// Echoed RTP packets unprotected and handed to the callback.
    pub rtp_in: AtomicU64,
    /// RTCP datagrams from the server, dropped unread.
    pub rtcp_dropped: AtomicU64,
    /// RTP that failed SRTP authentication or the replay check, or did not parse.
    pub rtp_refused: AtomicU64,
    /// RTP packets protected and sent.
    pub rtp_out: AtomicU64,
}

/// The socket a client's PeerConnection is built on, and the hook that will take
/// its echo: made before the offer, [`Pending::start`]ed once DTLS is done.
pub(crate) struct Pending {
    mux: UdpMux,
    receiver: Arc<EchoReceiver>,
}

/// The sending half, which the client owns.
pub(crate) struct OwnMedia {
    outbound: SrtpContext,
    sender: MuxSender,
    server: SocketAddr,
    /// The negotiated id of the transport-wide sequence number extension, if any.
    twcc_id: Option<u8>,
    next_twcc: u16,
    receiver: Arc<EchoReceiver>,
    /// Owns the socket (its reader thread ends when the last clone goes).
    _mux: UdpMux,
}

/// The receiving half: a hook on the client's socket.
struct EchoReceiver {
    /// Set once DTLS is done: from then on every RTP and RTCP datagram is ours.
    inbound: OnceLock<Mutex<SrtpContext>>,
    /// Where the server's DTLS came from, and the socket it came in on: where media goes.
    server: Mutex<Option<(SocketAddr, MuxSender)>>,
    on_echo: EchoCallback,
    stats: Arc<MediaStats>,
}

impl Pending {
    /// A socket of its own on `ip` (an ephemeral port), for
    /// [`crate::session::peer::PeerNetwork::mux`]; read by `group`'s thread if given.
    pub(crate) fn bind(
        on_echo: EchoCallback,
        ip: IpAddr,
        group: Option<&ReaderGroup>,
    ) -> anyhow::Result<Pending> {
        let mux = UdpMux::bind_in(ip, 0, group, Arc::default())
            .with_context(|| format!("binding the client's socket on {ip}"))?;
        let receiver = Arc::new(EchoReceiver {
            inbound: OnceLock::new(),
            server: Mutex::new(None),
            on_echo,
            stats: Arc::default(),
        });
        Ok(Pending { mux, receiver })
    }

    pub(crate) fn mux(&self) -> &UdpMux {
        &self.mux
    }

    /// The hook that takes the echo: the PeerConnection is built with it (so it sees
    /// where the server's DTLS comes from before anything else arrives).
    pub(crate) fn hook(&self) -> Arc<dyn MediaHook> {
        Arc::clone(&self.receiver) as Arc<dyn MediaHook>
    }

    /// Takes the media over from the (connected) PeerConnection: keys from DTLS,
    /// the server's address, and `twcc_id` to number packets with.
    pub(crate) async fn start(
        self,
        pc: &dyn PeerConnection,
        twcc_id: Option<u8>,
    ) -> anyhow::Result<OwnMedia> {
        let (profile, keys) =
            pc.srtp_session_keys().await.ok_or_else(|| anyhow!("DTLS exported no SRTP keys"))?;
        let (server, sender) =
            lock(&self.receiver.server).clone().ok_or_else(|| anyhow!("no DTLS from the server seen"))?;
        let (outbound, inbound) = srtp::session_contexts(profile, &keys).map_err(|e| anyhow!(e))?;
        let _ = self.receiver.inbound.set(Mutex::new(inbound));
        Ok(OwnMedia {
            outbound,
            sender,
            server,
            twcc_id,
            next_twcc: 0,
            receiver: self.receiver,
            _mux: self.mux,
        })
    }
}

impl OwnMedia {
    /// Numbers, protects and sends `packets` (one frame's) to the server.
    pub(crate) fn send(&mut self, packets: &mut [rtp::Packet]) -> anyhow::Result<()> {
        let mut protected = Vec::with_capacity(packets.len());
        for packet in packets.iter_mut() {
            if let Some(id) = self.twcc_id {
                let sequence = self.next_twcc.to_be_bytes();
                self.next_twcc = self.next_twcc.wrapping_add(1);
                packet.header.set_extension(id, bytes::Bytes::copy_from_slice(&sequence))?;
            }
            protected.push(self.outbound.encrypt_rtp(&packet.marshal()?)?);
        }
        self.sender.send_all(protected.iter().map(|p| &p[..]), self.server);
        self.receiver.stats.rtp_out.fetch_add(packets.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    pub(crate) fn stats(&self) -> &MediaStats {
        &self.receiver.stats
    }

    /// Sends `datagram` to the server as it is, from the client's own address.
    pub(crate) fn send_datagram(&self, datagram: &[u8]) {
        self.sender.send(datagram, self.server);
    }

    /// Protects the RTCP packet `plain` with the client's keys and sends it.
    pub(crate) fn send_rtcp(&mut self, plain: &[u8]) -> anyhow::Result<()> {
        let protected = self.outbound.encrypt_rtcp(plain)?;
        self.sender.send(&protected, self.server);
        Ok(())
    }
}

impl MediaHook for EchoReceiver {
    fn on_datagram(&self, datagram: &mut [u8], from: SocketAddr, via: &MuxSender) -> bool {
        match kind(datagram) {
            Kind::Dtls => {
                *lock(&self.server) = Some((from, via.clone()));
                false
            }
            Kind::Rtp { .. } => {
                let Some(inbound) = self.inbound.get() else { return false };
                let packet = lock(inbound)
                    .decrypt_rtp(&datagram[..])
                    .ok()
                    .and_then(|plain| rtp::Packet::unmarshal(&mut plain.freeze()).ok());
                match packet {
                    Some(packet) => {
                        self.stats.rtp_in.fetch_add(1, Ordering::Relaxed);
                        (self.on_echo)(packet);
                    }
                    None => {
                        self.stats.rtp_refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
                true
            }
            Kind::Rtcp if self.inbound.get().is_some() => {
                self.stats.rtcp_dropped.fetch_add(1, Ordering::Relaxed);
                true
            }
            Kind::Rtcp | Kind::Other => false,
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
