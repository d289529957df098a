//! Where sessions bind their media sockets, and which remote candidates they use.
//!
//! The rule: media follows the HTTP listener. A server on loopback binds media to
//! loopback only and ignores remote candidates elsewhere; a server on a wildcard
//! binds every interface and adds loopback for clients that came in over loopback
//! (some peers on this machine offer only 127.0.0.1, and webrtc-rs leaves loopback
//! out of wildcard binds).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context;

use crate::config::{Config, PortRange, UdpPorts};
use crate::peer::PeerNetwork;
use crate::udp_mux::UdpMux;

#[derive(Debug)]
pub struct MediaNetwork {
    listen_ip: IpAddr,
    ports: Option<PortRange>,
    /// Rotates through the port range so consecutive sessions try different ports.
    next_port: AtomicUsize,
    /// `--udp-port PORT`: every session on this one port.
    mux: Option<UdpMux>,
    /// Whether sessions resolve `.local` candidates (see [`multicast_available`]).
    multicast_dns: bool,
    stun_urls: Vec<String>,
    nat_ips: Vec<IpAddr>,
}

impl MediaNetwork {
    /// Reads the media flags; with `--udp-port PORT` binds the shared port now (so a
    /// taken port fails start-up), which needs a tokio runtime.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let listen_ip = config.listen.ip();
        let (ports, mux) = match config.udp_port {
            None => (None, None),
            Some(UdpPorts::Range(range)) => (Some(range), None),
            Some(UdpPorts::Shared(port)) => {
                let mux = UdpMux::bind(listen_ip, port)
                    .with_context(|| format!("cannot bind UDP {listen_ip} port {port} (--udp-port)"))?;
                (None, Some(mux))
            }
        };
        Ok(MediaNetwork {
            listen_ip,
            ports,
            next_port: AtomicUsize::new(0),
            mux,
            // A loopback-only server never meets a `.local` name it could use.
            multicast_dns: !listen_ip.is_loopback() && multicast_available(),
            stun_urls: config.stun.clone(),
            nat_ips: config.nat_ip.clone(),
        })
    }

    /// True when media is bound to loopback only.
    pub fn loopback_only(&self) -> bool {
        self.listen_ip.is_loopback()
    }

    /// The shared port's mux, with `--udp-port PORT`.
    pub fn mux(&self) -> Option<&UdpMux> {
        self.mux.as_ref()
    }

    /// Whether a remote candidate at `address` (an IP or an mDNS name) can be used.
    pub fn accepts_remote(&self, address: &str) -> bool {
        match address.parse::<IpAddr>() {
            Ok(ip) => !self.loopback_only() || ip.is_loopback(),
            // mDNS names (`<uuid>.local`) never resolve to loopback.
            Err(_) => self.multicast_dns,
        }
    }

    /// `offer` without the `a=candidate` lines a trickled candidate would be refused
    /// for: those [`accepts_remote`](Self::accepts_remote) refuses, then those past
    /// `room` (what is left of the session's cap). Every line kept is one more ICE
    /// pair the server checks, with signed STUN, at an address the offerer chose.
    pub fn screen_offered_candidates(&self, offer: String, room: usize) -> ScreenedOffer {
        let (mut kept, mut unreachable, mut over_cap) = (0, 0, 0);
        let mut screened = String::with_capacity(offer.len());
        for line in offer.split_inclusive('\n') {
            let attribute = line.trim_end().strip_prefix("a=").filter(|a| a.starts_with("candidate:"));
            if let Some(attribute) = attribute {
                let address = crate::signaling::candidate_address(attribute).unwrap_or_default();
                if !self.accepts_remote(address) {
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

    /// The networks to try, in order, for a client connecting from `client`: one
    /// per port of `--udp-port` (starting at a rotating offset), or one ephemeral
    /// (which the mux, if any, replaces by its shared port).
    pub fn attempts_for(&self, client: IpAddr) -> Vec<PeerNetwork> {
        let ips = self.bind_ips(client);
        let ports: Vec<u16> = match self.ports {
            None => vec![0],
            Some(range) => {
                let start = self.next_port.fetch_add(1, Ordering::Relaxed) % range.count();
                (0..range.count()).map(|i| range.min + ((start + i) % range.count()) as u16).collect()
            }
        };
        ports
            .into_iter()
            .map(|port| PeerNetwork {
                udp_addrs: ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect(),
                stun_urls: self.stun_urls.clone(),
                nat_ips: self.nat_ips.clone(),
                mux: self.mux.clone(),
                multicast_dns: self.multicast_dns,
            })
            .collect()
    }

    /// What `/api/sessions` says about media: the mode, and the shared sockets.
    pub fn to_json(&self) -> serde_json::Value {
        match (&self.mux, self.ports) {
            (Some(mux), _) => serde_json::json!({
                "udp": "shared",
                "port": mux.port(),
                "addrs": mux.local_addrs().iter().map(ToString::to_string).collect::<Vec<_>>(),
                "mux": mux.stats().to_json(),
                "mdns": self.multicast_dns,
            }),
            (None, Some(range)) => serde_json::json!({
                "udp": "range", "min": range.min, "max": range.max, "mdns": self.multicast_dns,
            }),
            (None, None) => serde_json::json!({ "udp": "ephemeral", "mdns": self.multicast_dns }),
        }
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

    fn network(listen: &str, ports: Option<PortRange>) -> MediaNetwork {
        let mut config = Config::new(listen.parse().unwrap());
        config.udp_port = ports.map(UdpPorts::Range);
        MediaNetwork::from_config(&config).expect("no mux, nothing to bind")
    }

    #[test]
    fn loopback_listener_binds_and_accepts_loopback_only() {
        let net = network("127.0.0.1:8080", None);
        let attempts = net.attempts_for("127.0.0.1".parse().unwrap());
        assert_eq!(attempts.len(), 1);
        assert_eq!(attempts[0].udp_addrs, vec![socket("127.0.0.1:0")]);
        assert!(net.accepts_remote("127.0.0.1"));
        assert!(!net.accepts_remote("10.1.2.3"));
        assert!(!net.accepts_remote("4f1c2d3e.local"));
    }

    #[test]
    fn wildcard_listener_adds_loopback_for_loopback_clients() {
        let net = network("0.0.0.0:8080", None);
        let local = net.attempts_for("127.0.0.1".parse().unwrap());
        assert_eq!(local[0].udp_addrs.len(), 2);
        let remote = net.attempts_for("192.0.2.7".parse().unwrap());
        assert_eq!(remote[0].udp_addrs, vec![socket("0.0.0.0:0")]);
        assert!(net.accepts_remote("10.1.2.3"));
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

        let screened = network("127.0.0.1:8080", None).screen_offered_candidates(offer.clone(), 3);
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
        // (the garbage line has no address: judged as a name, as when trickled).
        let open = network("0.0.0.0:8080", None).screen_offered_candidates(offer, 64);
        let names = if multicast_available() { 2 } else { 0 };
        assert_eq!((open.kept, open.unreachable, open.over_cap), (6 + names, 2 - names, 0));
    }

    #[test]
    fn port_range_rotates_and_covers_every_port() {
        let net = network("127.0.0.1:8080", Some(PortRange { min: 40000, max: 40002 }));
        let first: Vec<u16> =
            net.attempts_for("127.0.0.1".parse().unwrap()).iter().map(|n| n.udp_addrs[0].port()).collect();
        assert_eq!(first, vec![40000, 40001, 40002]);
        let second = net.attempts_for("127.0.0.1".parse().unwrap());
        assert_eq!(second[0].udp_addrs[0].port(), 40001);
    }
}
