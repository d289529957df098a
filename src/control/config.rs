//! Every flag of the server (`face-echo` with no subcommand), with its default,
//! in one struct, in the groups `--help` shows.
//!
//! clap parses and documents the flags (`--help`); [`Config::validate`] checks what
//! clap cannot, so a bad combination fails at start-up with a message naming the flag.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::control::auth::Secret;
use crate::seeing::detect::{DetectConfig, ModelKind};
use crate::seeing::tap::TapConfig;

/// How the server runs. Built from the command line by clap, or directly by tests.
#[derive(Args, Debug, Clone)]
pub struct Config {
    /// Address for HTTP, the page and the signaling WebSocket. Loopback by default:
    /// the demo is meant for this machine; bind elsewhere only behind TLS or a proxy.
    #[arg(help_heading = "Network", long, default_value = "127.0.0.1:8080", value_name = "ADDR:PORT")]
    pub listen: SocketAddr,

    /// Serve the page from this folder instead of the copy embedded in the binary
    /// (for editing web/ without rebuilding). Models are always served from the binary.
    #[arg(help_heading = "Network", long, value_name = "DIR")]
    pub web_dir: Option<PathBuf>,

    /// STUN server URL, e.g. stun:stun.example.org:3478. Repeatable. None by default,
    /// so the demo works offline; add one when clients reach the server through NAT.
    #[arg(help_heading = "Network", long = "stun", value_name = "URL")]
    pub stun: Vec<String>,

    /// UDP port for media (ICE, DTLS, RTP, RTCP). One number (PORT): every session
    /// and viewer shares that one port (one socket per local address, demultiplexed
    /// by ICE username and remote address); a firewall opens just it. 0: any free
    /// port. A range (MIN-MAX): a port per session, from the range. Default: the
    /// --listen port's number, on UDP (8080).
    #[arg(help_heading = "Network", long, value_name = "PORT|MIN-MAX", value_parser = parse_udp_ports)]
    pub udp_port: Option<UdpPorts>,

    /// TCP port for ICE-TCP, for clients whose UDP is blocked (many office, hotel and
    /// school networks): every session's passive TCP candidate names it, and UDP is
    /// tried first. Default: the --listen port itself, which tells ICE-TCP from HTTP
    /// by their first bytes (a firewall opens one port number, on TCP and UDP). A port
    /// number: a listener of its own (0: any free port). `off`: no ICE-TCP.
    #[arg(help_heading = "Network", long, value_name = "PORT|off", value_parser = parse_tcp_port)]
    pub tcp_port: Option<TcpPort>,

    /// Public IP to tell clients in place of the host's own (1:1 NAT, e.g. a cloud
    /// VM with an elastic IP): every host candidate beyond loopback, UDP and TCP,
    /// names it. One per address family (IPv4, IPv6).
    #[arg(help_heading = "Network", long, value_name = "IP")]
    pub nat_ip: Vec<IpAddr>,

    /// Most concurrent sessions (PeerConnections). Beyond it a new offer gets the
    /// error `server_full`.
    #[arg(help_heading = "Limits", long, default_value_t = 64, value_name = "N")]
    pub max_sessions: usize,

    /// Most sessions (publishers and viewers) from one client IP; beyond it a new
    /// offer gets `ip_full`. Default: a quarter of --max-sessions (at least 1).
    #[arg(help_heading = "Limits", long, value_name = "N")]
    pub max_sessions_per_ip: Option<usize>,

    /// Most signaling WebSockets open without a negotiated session (and WHIP/WHEP
    /// POSTs negotiating), over all clients. When full, the socket that has waited
    /// longest without a session is closed to make room for a newcomer (only when
    /// none is idle does /ws answer `503`). Default: half the connections the file
    /// limit allows.
    #[arg(help_heading = "Limits", long, value_name = "N")]
    pub max_pending: Option<usize>,

    /// Most signaling WebSockets without a negotiated session from one client IP;
    /// beyond it /ws answers `503` before the upgrade.
    #[arg(help_heading = "Limits", long, default_value_t = 8, value_name = "N")]
    pub max_pending_per_ip: usize,

    /// Most open TCP connections (HTTP, WebSocket and ICE-TCP) from one client IP;
    /// beyond it new ones get `503` at once. Default: a quarter of what the file
    /// limit allows.
    #[arg(help_heading = "Limits", long, value_name = "N")]
    pub max_connections_per_ip: Option<usize>,

    /// Most viewers watching one session (GET /watch/{session}). Beyond it a new
    /// viewer gets the error `viewers_full`.
    #[arg(help_heading = "Limits", long, default_value_t = 16, value_name = "N")]
    pub max_viewers: usize,

    /// Seconds an ICE connection may stay `disconnected` before the session is closed
    /// and the client told.
    #[arg(help_heading = "Timeouts", long, default_value_t = 10, value_name = "SECS")]
    pub disconnect_timeout: u64,

    /// Seconds a signaling WebSocket may stay open without sending an offer; also
    /// how long a negotiated session or viewer may take to connect (ICE) after the
    /// answer before it is closed (`ice_failed`).
    #[arg(help_heading = "Timeouts", long, default_value_t = 30, value_name = "SECS")]
    pub offer_timeout: u64,

    /// Seconds a new signaling WebSocket may stay silent before its first message
    /// (the page sends its offer at once); then `idle_timeout` and close.
    #[arg(help_heading = "Timeouts", long, default_value_t = 10, value_name = "SECS")]
    pub first_message_timeout: u64,

    /// Token a client needs to publish (an `offer` on /ws): `Authorization: Bearer`,
    /// `/ws?token=`, or the offer's `token` field. Watching needs none. Without it,
    /// anyone who reaches the port may publish. Prefer the environment variable:
    /// command lines are visible to other users.
    #[arg(
        help_heading = "TLS, tokens and origins",
        long,
        env = "FACE_ECHO_PUBLISH_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub publish_token: Option<Secret>,

    /// Token a WHIP encoder needs to publish (`POST /whip` with `Authorization:
    /// Bearer`), so encoders can get a token apart from the page's. /whip also accepts
    /// --publish-token: with either set, /whip is closed to anyone without one of them.
    #[arg(
        help_heading = "TLS, tokens and origins",
        long,
        env = "FACE_ECHO_WHIP_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub whip_token: Option<Secret>,

    /// Token for the operator's endpoints (/api/*, snapshots, /metrics), as
    /// `Authorization: Bearer` (or `?token=`). Without it they are open to anyone who
    /// reaches the port.
    #[arg(
        help_heading = "TLS, tokens and origins",
        long,
        env = "FACE_ECHO_ADMIN_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub admin_token: Option<Secret>,

    /// Browser origin allowed to open /ws and to use WHIP/WHEP (CORS) besides the
    /// server's own (repeatable), e.g. `https://demo.example.org`. Browsers send Origin;
    /// tools that send none are allowed.
    #[arg(help_heading = "TLS, tokens and origins", long, value_name = "ORIGIN")]
    pub allow_origin: Vec<String>,

    /// A host name this server answers to besides its --listen address (and, on a
    /// loopback or wildcard listener, `localhost`), with or without `:PORT`
    /// (repeatable), e.g. `face.example.org`. Requests naming another host in `Host`
    /// get `421`: a DNS name that points here is not enough (DNS rebinding). On a
    /// wildcard --listen any IP address is accepted.
    #[arg(help_heading = "TLS, tokens and origins", long, value_name = "HOST[:PORT]")]
    pub allowed_host: Vec<String>,

    /// Serve HTTPS and WSS with this PEM certificate chain (with --tls-key).
    /// Browsers give the camera only to https:// pages (or localhost).
    #[arg(help_heading = "TLS, tokens and origins", long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key for --tls-cert.
    #[arg(help_heading = "TLS, tokens and origins", long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Decode the VP8 each session forwards (depacketize, assemble, libvpx) for
    /// metrics in /api/sessions and /metrics and a snapshot at
    /// /api/sessions/{id}/snapshot.jpg. The echo never waits for it.
    #[arg(help_heading = "Decode tap and detection", long)]
    pub decode_tap: bool,

    /// With --decode-tap: while the tap waits for a keyframe (after loss), ask the
    /// publisher for one (within the publisher's keyframe budget: one PLI per 500 ms
    /// for the echo's receiver, the tap and the viewers together).
    #[arg(help_heading = "Decode tap and detection", long)]
    pub tap_pli: bool,

    /// With --decode-tap: the largest keyframe (width × height) the tap decodes.
    /// Bigger ones, and the frames after them, are refused before libvpx
    /// (`frames_refused`) and a keyframe is asked for. Memory and decode time per
    /// session follow this number. A size (`1920x1080`) or a count of pixels.
    #[arg(
        help_heading = "Decode tap and detection",
        long,
        default_value = crate::seeing::tap::admission::DEFAULT_MAX_PIXELS_TEXT,
        value_parser = crate::seeing::tap::admission::parse_max_pixels,
        value_name = "WxH|PIXELS"
    )]
    pub tap_max_pixels: u64,

    /// With --decode-tap: packets the tap may fall behind the echo before it drops
    /// them (counted as tap_packets_dropped).
    #[arg(help_heading = "Decode tap and detection", long, default_value_t = crate::seeing::tap::DEFAULT_QUEUE_PACKETS, value_name = "PACKETS")]
    pub tap_queue: usize,

    /// Run a face detector (BlazeFace, ONNX Runtime) on the frames the decode tap
    /// decoded; implies --decode-tap. Faces appear in /api/sessions under "detect"
    /// and as boxes in the snapshot. Needs libonnxruntime.so (see --ort-lib).
    #[arg(help_heading = "Decode tap and detection", long)]
    pub detect: bool,

    /// With --detect: `back` (256x256, faces near and far) or `front` (128x128,
    /// one close face, faster).
    #[arg(help_heading = "Decode tap and detection", long, value_enum, default_value_t = ModelKind::Back, value_name = "MODEL")]
    pub detect_model: ModelKind,

    /// With --detect: most detections per second per session. Frames in between,
    /// and frames arriving while the detector is busy, are skipped.
    #[arg(help_heading = "Decode tap and detection", long, default_value_t = 5.0, value_name = "FPS")]
    pub detect_fps: f64,

    /// With --detect: the ONNX Runtime library (1.24 or newer). Default:
    /// ../onnxruntime/libonnxruntime.so beside the binary's folder, where
    /// scripts/onnxruntime.sh (run by `make run`) puts it, i.e. target/onnxruntime/.
    #[arg(help_heading = "Decode tap and detection", long, env = "ORT_DYLIB_PATH", value_name = "FILE")]
    pub ort_lib: Option<PathBuf>,

    /// Record each publisher's incoming VP8, as it arrived, to DIR/<session>.ivf
    /// (plays in vpxdec; `face-echo replay` runs it through the decoder and
    /// detector) and what is known about each frame to DIR/<session>.jsonl. Created
    /// if missing; a directory that cannot be written is a start-up error.
    #[arg(help_heading = "Recording", long, value_name = "DIR")]
    pub record: Option<PathBuf>,

    /// Join a cluster of face-echo nodes sharing a session directory in this Redis
    /// (redis://HOST:PORT[/DB]): a watch link, WHEP URL or `watch` that reaches a node
    /// other than the publisher's is sent there, a full node names a less loaded one,
    /// and /api/cluster lists the fleet. Without it nothing is shared and no Redis
    /// is needed. Redis unreachable: this node keeps serving its own sessions.
    #[arg(help_heading = "Cluster", long, value_name = "redis://HOST:PORT")]
    pub cluster: Option<String>,

    /// With --cluster: the URL clients reach this node at, http(s)://HOST[:PORT], as
    /// other nodes name it in redirects. Default: http(s)://<the --listen address>
    /// (then --listen must not be 0.0.0.0 or [::]).
    #[arg(help_heading = "Cluster", long, value_name = "URL", requires = "cluster")]
    pub node_url: Option<url::Url>,

    /// With --cluster: seconds this node's entries stay in Redis without a heartbeat
    /// (renewed every third of it). A node that dies drops out within this time.
    #[arg(help_heading = "Cluster", long, default_value_t = 5, value_name = "SECS")]
    pub cluster_ttl: u64,
}

/// What `--udp-port` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpPorts {
    /// `PORT`: one port shared by every session (the UDP mux).
    Shared(u16),
    /// `MIN-MAX`: a port per session, from the range.
    Range(PortRange),
}

/// What `--tcp-port` asked for (unset: ICE-TCP on the `--listen` port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpPort {
    /// A listener of its own on this port (0: any free one).
    Port(u16),
    /// No ICE-TCP.
    Off,
}

fn parse_tcp_port(text: &str) -> Result<TcpPort, String> {
    match text.trim() {
        "off" => Ok(TcpPort::Off),
        port => port
            .parse()
            .map(TcpPort::Port)
            .map_err(|_| format!("`{text}` is neither a port number (0-65535) nor `off`")),
    }
}

/// An inclusive UDP port range from `--udp-port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub min: u16,
    pub max: u16,
}

impl PortRange {
    /// How many ports the range holds (at least one: MIN <= MAX).
    pub fn count(&self) -> usize {
        usize::from(self.max - self.min) + 1
    }
}

fn parse_udp_ports(text: &str) -> Result<UdpPorts, String> {
    match text.contains('-') {
        true => parse_port_range(text).map(UdpPorts::Range),
        false if text.trim() == "0" => Ok(UdpPorts::Shared(0)),
        false => parse_port_range(text).map(|range| UdpPorts::Shared(range.min)),
    }
}

fn parse_port_range(text: &str) -> Result<PortRange, String> {
    let (min, max) = match text.split_once('-') {
        Some((min, max)) => (min, max),
        None => (text, text),
    };
    let port = |s: &str| s.trim().parse::<u16>().map_err(|_| format!("`{s}` is not a port number (1-65535)"));
    let (min, max) = (port(min)?, port(max)?);
    if min == 0 || min > max {
        return Err(format!("expected MIN-MAX with 1 <= MIN <= MAX, got `{text}`"));
    }
    Ok(PortRange { min, max })
}

impl Config {
    /// The defaults, listening on `listen`: what `face-echo` runs with no flags
    /// (and this environment). The defaults live in the clap attributes alone.
    pub fn new(listen: SocketAddr) -> Self {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            config: Config,
        }
        let mut config = <Defaults as clap::Parser>::try_parse_from(["face-echo"])
            .map(|defaults| defaults.config)
            // Not input: the attributes above parse, or no binary would start.
            .expect("the flags' defaults parse");
        config.listen = listen;
        config
    }

    /// Checks what clap cannot check flag by flag (the flags whose meaning a part of
    /// the server owns, that part checks: see `server::check`).
    pub fn validate(&self) -> anyhow::Result<()> {
        for url in &self.stun {
            if !(url.starts_with("stun:") || url.starts_with("stuns:")) {
                anyhow::bail!("--stun {url}: expected a URL like stun:host:port");
            }
        }
        if self.tap_pli && !(self.decode_tap || self.detect) {
            anyhow::bail!("--tap-pli needs the decode tap: add --decode-tap (or --detect)");
        }
        if self.tap_max_pixels < 16 * 16 {
            anyhow::bail!("--tap-max-pixels must be at least 256 (16x16)");
        }
        if self.tap_queue == 0 {
            anyhow::bail!("--tap-queue must be at least 1");
        }
        if !(self.detect_fps > 0.0 && self.detect_fps <= 120.0) {
            anyhow::bail!("--detect-fps must be above 0 and at most 120");
        }
        if self.offer_timeout == 0 {
            anyhow::bail!("--offer-timeout must be at least 1 second");
        }
        if self.max_sessions == 0 {
            anyhow::bail!("--max-sessions must be at least 1");
        }
        if self.first_message_timeout == 0 {
            anyhow::bail!("--first-message-timeout must be at least 1 second");
        }
        let at_least_one = [
            ("--max-sessions-per-ip", self.max_sessions_per_ip),
            ("--max-pending", self.max_pending),
            ("--max-pending-per-ip", Some(self.max_pending_per_ip)),
            ("--max-connections-per-ip", self.max_connections_per_ip),
        ];
        for (flag, value) in at_least_one {
            if value == Some(0) {
                anyhow::bail!("{flag} must be at least 1");
            }
        }
        if self.cluster_ttl == 0 {
            anyhow::bail!("--cluster-ttl must be at least 1 second");
        }
        if let Some(dir) = &self.web_dir
            && !dir.join("index.html").is_file()
        {
            anyhow::bail!("--web-dir {}: no index.html there", dir.display());
        }
        Ok(())
    }

    /// The tap's settings, when `--decode-tap` (or `--detect`) is on. The
    /// detector itself is loaded by the server at start-up.
    pub fn tap(&self) -> Option<TapConfig> {
        (self.decode_tap || self.detect).then(|| TapConfig {
            queue_packets: self.tap_queue,
            request_keyframes: self.tap_pli,
            max_pixels: self.tap_max_pixels,
            detector: None,
        })
    }

    /// Detection settings, when `--detect` is on.
    pub fn detect(&self) -> Option<DetectConfig> {
        self.detect.then(|| DetectConfig {
            model: self.detect_model,
            fps: self.detect_fps,
            ort_lib: self.ort_lib.clone().unwrap_or_else(crate::seeing::detect::default_ort_lib),
        })
    }

    pub fn offer_timeout(&self) -> Duration {
        Duration::from_secs(self.offer_timeout)
    }

    pub fn first_message_timeout(&self) -> Duration {
        Duration::from_secs(self.first_message_timeout)
    }

    pub fn cluster_ttl(&self) -> Duration {
        Duration::from_secs(self.cluster_ttl)
    }

    pub fn disconnect_timeout(&self) -> Duration {
        Duration::from_secs(self.disconnect_timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_come_from_the_flags_and_validate() {
        let listen: SocketAddr = "127.0.0.1:0".parse().expect("an address");
        let config = Config::new(listen);
        assert_eq!(config.listen, listen);
        assert_eq!((config.max_sessions, config.max_viewers, config.tap_queue), (64, 16, 1024));
        assert_eq!(config.tap().map(|tap| tap.queue_packets), None, "the tap is off by default");
        config.validate().expect("the defaults are valid");
    }

    #[test]
    fn port_ranges_parse_and_reject_nonsense() {
        assert_eq!(parse_port_range("40000-40010"), Ok(PortRange { min: 40000, max: 40010 }));
        assert_eq!(parse_port_range("5000"), Ok(PortRange { min: 5000, max: 5000 }));
        assert!(parse_port_range("10-5").is_err());
        assert!(parse_port_range("0-5").is_err());
        assert!(parse_port_range("a-b").is_err());
        assert!(parse_port_range("1-70000").is_err());
        assert_eq!(parse_udp_ports("5000"), Ok(UdpPorts::Shared(5000)));
        assert_eq!(parse_udp_ports("5000-5000"), Ok(UdpPorts::Range(PortRange { min: 5000, max: 5000 })));
        assert_eq!(parse_udp_ports("0"), Ok(UdpPorts::Shared(0)), "any free port");
        assert_eq!(parse_tcp_port("443"), Ok(TcpPort::Port(443)));
        assert_eq!(parse_tcp_port("off"), Ok(TcpPort::Off));
        assert!(parse_tcp_port("70000").is_err() && parse_tcp_port("on").is_err());
        assert!(parse_udp_ports("0-10").is_err());
    }
}
