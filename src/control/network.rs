//! Where sessions bind their media sockets, and which remote candidates they use.
//!
//! Every PeerConnection's media goes through a [`UdpMux`] and its media plane: by
//! default one port for all of them (the `--listen` port's number, on UDP), or a
//! port per session from a `--udp-port MIN-MAX` range, each a mux of its own whose
//! socket one reader thread reads with all the others ([`ReaderGroup`]).
//!
//! The rule for addresses: media follows the HTTP listener. A server on loopback
//! binds media to loopback only and ignores remote candidates elsewhere; a server on
//! a wildcard binds every interface and adds loopback for clients that came in over
//! loopback (some peers on this machine offer only 127.0.0.1, and webrtc-rs leaves
//! loopback out of wildcard binds).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use anyhow::Context;

use crate::control::config::{Config, PortRange, UdpPorts};
use crate::media::udp_mux::{MuxStats, ReaderGroup, TcpMux, UdpMux};
use crate::session::peer::PeerNetwork;

/// How sessions get their media port.
#[derive(Debug)]
enum Ports {
    /// One port for every session.
    Shared(UdpMux),
    /// A port per session from the range, tried from a rotating offset.
    Range { range: PortRange, next: AtomicUsize, reader: ReaderGroup, stats: Arc<MuxStats> },
}

#[derive(Debug)]
pub struct MediaNetwork {
    listen_ip: IpAddr,
    ports: Ports,
    /// Whether sessions resolve `.local` candidates (see [`multicast_available`]).
    multicast_dns: bool,
    stun_urls: Vec<String>,
    nat_ips: Vec<IpAddr>,
    /// ICE-TCP's port, for clients whose UDP is blocked: the `--listen` port, or
    /// `--tcp-port`'s (`None` with `--tcp-port off`).
    tcp: Option<TcpMux>,
}

impl MediaNetwork {
    /// Reads the media flags and binds the shared port now (so a taken port fails
    /// start-up, naming the flag); `http_port` is the port the HTTP listener got,
    /// whose number the shared port takes by default; `tcp` the ICE-TCP port, if any.
    pub fn from_config(config: &Config, http_port: u16, tcp: Option<TcpMux>) -> anyhow::Result<Self> {
        let listen_ip = config.listen.ip();
        let ports = match config.udp_port {
            Some(UdpPorts::Range(range)) => Ports::Range {
                range,
                next: AtomicUsize::new(0),
                reader: ReaderGroup::new().context("starting the media reader")?,
                stats: Arc::default(),
            },
            shared => {
                // The same number as HTTP; an ephemeral HTTP port (0) asks for any.
                let (port, flag) = match shared {
                    Some(UdpPorts::Shared(port)) => (port, "--udp-port"),
                    _ if config.listen.port() == 0 => (0, "--listen"),
                    _ => (http_port, "--listen's port, which --udp-port defaults to"),
                };
                let mux = UdpMux::bind(listen_ip, port)
                    .with_context(|| format!("cannot bind UDP {listen_ip} port {port} for media ({flag})"))?;
                Ports::Shared(mux)
            }
        };
        Ok(MediaNetwork {
            listen_ip,
            ports,
            // A loopback-only server never meets a `.local` name it could use.
            multicast_dns: !listen_ip.is_loopback() && multicast_available(),
            stun_urls: config.stun.clone(),
            nat_ips: config.nat_ip.clone(),
            tcp,
        })
    }

    /// True when media is bound to loopback only.
    pub fn loopback_only(&self) -> bool {
        self.listen_ip.is_loopback()
    }

    /// What start-up says about media: where it goes, what a firewall opens.
    pub fn describe(&self) -> String {
        let udp = match &self.ports {
            Ports::Shared(mux) => {
                format!(
                    "media on UDP {}:{} for every session (open UDP {})",
                    self.listen_ip,
                    mux.port(),
                    mux.port()
                )
            }
            Ports::Range { range, .. } => format!(
                "media on UDP {} ports {}-{}, one per session (open UDP {}-{})",
                self.listen_ip, range.min, range.max, range.min, range.max
            ),
        };
        match &self.tcp {
            Some(tcp) => {
                format!("{udp}; ICE-TCP on TCP {}:{} when UDP is blocked", self.listen_ip, tcp.port())
            }
            None => format!("{udp}; no ICE-TCP"),
        }
    }

    /// Whether a remote candidate (an `a=candidate` attribute without its `a=`, or a
    /// trickled one) can be used: UDP only, at an address [`accepts_remote`](Self::accepts_remote)
    /// takes. A TCP candidate never is: the server dials nobody (a client's passive
    /// candidate would make it connect wherever the client said), and a client's
    /// ICE-TCP connection reaches it as a peer-reflexive candidate anyway.
    pub fn accepts_candidate(&self, attribute: &str) -> bool {
        let udp = crate::session::signaling::candidate_transport(attribute)
            .is_some_and(|t| t.eq_ignore_ascii_case("udp"));
        udp && self
            .accepts_remote(crate::session::signaling::candidate_address(attribute).unwrap_or_default())
    }

    /// Whether a remote candidate at `address` (an IP or an mDNS name) can be used.
    fn accepts_remote(&self, address: &str) -> bool {
        match address.parse::<IpAddr>() {
            Ok(ip) => !self.loopback_only() || ip.is_loopback(),
            // mDNS names (`<uuid>.local`) never resolve to loopback.
            Err(_) => self.multicast_dns,
        }
    }

    /// `offer` without the `a=candidate` lines a trickled candidate would be refused
    /// for: those [`accepts_candidate`](Self::accepts_candidate) refuses, then those past
    /// `room` (what is left of the session's cap). Every line kept is one more ICE
    /// pair the server checks, with signed STUN, at an address the offerer chose.
    pub fn screen_offered_candidates(&self, offer: String, room: usize) -> ScreenedOffer {
        let (mut kept, mut unreachable, mut over_cap) = (0, 0, 0);
        let mut screened = String::with_capacity(offer.len());
        for line in offer.split_inclusive('\n') {
            let attribute = line.trim_end().strip_prefix("a=").filter(|a| a.starts_with("candidate:"));
            if let Some(attribute) = attribute {
                if !self.accepts_candidate(attribute) {
                    unreachable += 1;
                    continue;
                }
                if kept >= room {
                    over_cap += 1;
                    continue;
                }
                kept += 1;
            }
            screened.push_str(line);
        }
        let sdp = if unreachable + over_cap == 0 { offer } else { screened };
        ScreenedOffer { sdp, kept, unreachable, over_cap }
    }

    /// The network for a client connecting from `client`: the shared port's mux, or
    /// a mux on the first free port of the range (from a rotating offset). Empty
    /// when every port of the range is taken.
    pub fn attempts_for(&self, client: IpAddr) -> Vec<PeerNetwork> {
        self.attempt_for(client).into_iter().collect()
    }

    fn attempt_for(&self, client: IpAddr) -> Option<PeerNetwork> {
        let ips = self.bind_ips(client);
        let mux = match &self.ports {
            Ports::Shared(mux) => mux.clone(),
            Ports::Range { range, next, reader, stats } => {
                let start = next.fetch_add(1, Ordering::Relaxed) % range.count();
                (0..range.count()).find_map(|i| {
                    let port = range.min + ((start + i) % range.count()) as u16;
                    UdpMux::bind_in(self.listen_ip, port, Some(reader), Arc::clone(stats)).ok()
                })?
            }
        };
        let addrs: Vec<SocketAddr> = ips.iter().map(|ip| SocketAddr::new(*ip, 0)).collect();
        Some(PeerNetwork {
            // The TCP listeners bound here are dropped for views of the ICE-TCP port.
            tcp_addrs: if self.tcp.is_some() { addrs.clone() } else { Vec::new() },
            udp_addrs: addrs,
            stun_urls: self.stun_urls.clone(),
            nat_ips: self.nat_ips.clone(),
            mux: Some(mux),
            multicast_dns: self.multicast_dns,
            tcp: self.tcp.clone(),
        })
    }

    /// What `/api/sessions` says about media: the mode, and the shared sockets.
    pub fn to_json(&self) -> serde_json::Value {
        let tcp = self
            .tcp
            .as_ref()
            .map(|tcp| serde_json::json!({"port": tcp.port(), "stats": tcp.stats().to_json()}));
        let mut media = match &self.ports {
            Ports::Shared(mux) => serde_json::json!({
                "udp": "shared",
                "port": mux.port(),
                "addrs": mux.local_addrs().iter().map(ToString::to_string).collect::<Vec<_>>(),
                "mux": mux.stats().to_json(),
                "mdns": self.multicast_dns,
            }),
            Ports::Range { range, stats, .. } => serde_json::json!({
                "udp": "range",
                "min": range.min,
                "max": range.max,
                "mux": stats.to_json(),
                "mdns": self.multicast_dns,
            }),
        };
        media["tcp"] = tcp.unwrap_or_default();
        media
    }

    fn bind_ips(&self, client: IpAddr) -> Vec<IpAddr> {
        if !self.listen_ip.is_unspecified() {
            return vec![self.listen_ip];
        }
        let mut ips = vec![self.listen_ip];
        if client.is_loopback() {
            ips.push(match self.listen_ip {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        ips
    }
}

/// An offer after [`MediaNetwork::screen_offered_candidates`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScreenedOffer {
    pub sdp: String,
    /// Candidates left in it.
    pub kept: usize,
    /// Candidates taken out because media cannot reach them.
    pub unreachable: usize,
    /// Candidates taken out because the session's cap was reached.
    pub over_cap: usize,
}

/// Whether this host can open the multicast socket mDNS needs (probed once per
/// process: a host or namespace without a multicast route cannot, and webrtc-rs
/// would then fail every PeerConnection that asked for one).
pub fn multicast_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| match rtc::mdns::MulticastSocket::new().into_std() {
        Ok(_) => true,
        Err(err) => {
            tracing::warn!(%err, "no multicast here: browsers' .local candidates will not be resolved");
            false
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn socket(text: &str) -> std::net::SocketAddr {
        text.parse().expect("test address")
    }

    fn network(listen: &str, ports: Option<UdpPorts>) -> MediaNetwork {
        let mut config = Config::new(listen.parse().unwrap());
        config.udp_port = ports;
        MediaNetwork::from_config(&config, 0, None).expect("binds")
    }

    #[test]
    fn loopback_listener_binds_and_accepts_loopback_only() {
        let net = network("127.0.0.1:0", None);
        let attempt = net.attempt_for("127.0.0.1".parse().unwrap()).expect("a network");
        assert_eq!(attempt.udp_addrs, vec![socket("127.0.0.1:0")]);
        assert!(attempt.mux.is_some(), "media is always on a mux");
        assert!(net.accepts_candidate(&udp("127.0.0.1")));
        assert!(!net.accepts_candidate(&udp("10.1.2.3")));
        assert!(!net.accepts_candidate(&udp("4f1c2d3e.local")));
    }

    #[test]
    fn wildcard_listener_adds_loopback_for_loopback_clients() {
        let net = network("0.0.0.0:0", None);
        let local = net.attempt_for("127.0.0.1".parse().unwrap()).expect("a network");
        assert_eq!(local.udp_addrs.len(), 2);
        let remote = net.attempt_for("192.0.2.7".parse().unwrap()).expect("a network");
        assert_eq!(remote.udp_addrs, vec![socket("0.0.0.0:0")]);
        assert!(net.accepts_candidate(&udp("10.1.2.3")));
    }

    #[test]
    fn tcp_candidates_are_never_used() {
        let net = network("0.0.0.0:0", None);
        for tcptype in ["passive", "active", "so"] {
            let attribute = format!("candidate:1 1 tcp 2105458943 10.1.2.3 9 typ host tcptype {tcptype}");
            assert!(!net.accepts_candidate(&attribute), "{attribute}");
        }
        assert!(!net.accepts_candidate("candidate:1 1"), "no transport");
    }

    fn udp(address: &str) -> String {
        format!("candidate:1 1 udp 2130706431 {address} 50000 typ host")
    }

    #[test]
    fn the_shared_port_is_the_listen_port_by_default() {
        let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = Config::new(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port));
        let net = MediaNetwork::from_config(&config, port, None).expect("binds");
        assert_eq!(net.to_json()["port"], port);
        assert!(net.describe().contains(&format!("127.0.0.1:{port}")), "{}", net.describe());
    }

    #[test]
    fn a_port_range_rotates_and_gives_each_session_its_own_mux() {
        let free = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let min = free.local_addr().unwrap().port();
        drop(free);
        let net = network("127.0.0.1:0", Some(UdpPorts::Range(PortRange { min, max: min + 1 })));
        let client: IpAddr = "127.0.0.1".parse().unwrap();
        let first = net.attempt_for(client).expect("a port");
        let second = net.attempt_for(client).expect("the other port");
        let port = |network: &PeerNetwork| network.mux.as_ref().map(UdpMux::port);
        assert_ne!(port(&first), port(&second));
        assert!(net.attempt_for(client).is_none(), "both ports are taken");
        drop(first);
        assert!(net.attempt_for(client).is_some(), "a port is free again once its session is gone");
    }

    #[test]
    fn offered_candidates_are_filtered_then_capped() {
        let candidate =
            |ip: &str, port: u16| format!("a=candidate:1 1 udp 2122260223 {ip} {port} typ host\r\n");
        let mut offer = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\n".to_owned();
        offer += &candidate("10.1.2.3", 1000);
        offer += &candidate("4f1c2d3e.local", 1001);
        offer += "a=candidate:garbage\r\n";
        for port in 0..5 {
            offer += &candidate("127.0.0.1", 2000 + port);
        }
        offer += "a=end-of-candidates\r\n";

        let screened = network("127.0.0.1:0", None).screen_offered_candidates(offer.clone(), 3);
        assert_eq!((screened.kept, screened.unreachable, screened.over_cap), (3, 3, 2));
        let expected: String = ["v=0", "m=video 9 UDP/TLS/RTP/SAVPF 96", "a=mid:0"]
            .into_iter()
            .map(str::to_owned)
            .chain((0..3).map(|port| candidate("127.0.0.1", 2000 + port).trim_end().to_owned()))
            .chain(["a=end-of-candidates".to_owned()])
            .map(|line| line + "\r\n")
            .collect();
        assert_eq!(screened.sdp, expected);

        // A wildcard listener reaches any IP, and names too where it resolves mDNS
        // (the garbage line names no transport: never used).
        let open = network("0.0.0.0:0", None).screen_offered_candidates(offer, 64);
        let names = if multicast_available() { 1 } else { 0 };
        assert_eq!((open.kept, open.unreachable, open.over_cap), (6 + names, 2 - names, 0));
    }
}
