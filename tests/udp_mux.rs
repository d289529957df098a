//! Media on one UDP port: by default the `--listen` port's number (or `--udp-port
//! PORT`). The real binary serves several webrtc-rs publishers and a viewer through a
//! single UDP socket, names that port in every session's candidates, drops what
//! strangers send to it, and a range (`--udp-port MIN-MAX`) gives each session a port
//! of its own. A connected session's consent checks are answered on the port's
//! reader. A taken port stops the server at start, naming the flag.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use face_echo::loadgen::client::{ClientOptions, ClientPeer};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The UDP sockets process `pid` holds, by local address (Linux: its socket inodes
/// in /proc/PID/fd matched against /proc/net/udp{,6}).
fn udp_sockets(pid: u32) -> Vec<SocketAddr> {
    let mut by_inode = HashMap::new();
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if let (Some(local), Some(inode)) = (fields.get(1), fields.get(9)) {
                by_inode.insert(inode.to_string(), parse_proc_addr(local));
            }
        }
    }
    let mut sockets = Vec::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).expect("the server's fds") {
        let Ok(link) = std::fs::read_link(fd.expect("an fd").path()) else { continue };
        let link = link.to_string_lossy().into_owned();
        if let Some(inode) = link.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']'))
            && let Some(addr) = by_inode.get(inode)
        {
            sockets.push(*addr);
        }
    }
    sockets.sort();
    sockets
}

/// `0100007F:9C40` (IPv4, little-endian) or the 32-hex-digit IPv6 form.
fn parse_proc_addr(text: &str) -> SocketAddr {
    let (ip, port) = text.split_once(':').expect("ADDR:PORT");
    let port = u16::from_str_radix(port, 16).expect("a port");
    let ip: std::net::IpAddr = if ip.len() == 8 {
        std::net::Ipv4Addr::from(u32::from_str_radix(ip, 16).expect("hex").to_le_bytes()).into()
    } else {
        let mut bytes = [0u8; 16];
        for (word, chunk) in ip.as_bytes().chunks(8).enumerate() {
            let value = u32::from_str_radix(std::str::from_utf8(chunk).unwrap(), 16).expect("hex");
            bytes[word * 4..word * 4 + 4].copy_from_slice(&value.to_le_bytes());
        }
        std::net::Ipv6Addr::from(bytes).into()
    };
    SocketAddr::new(ip, port)
}

/// The port of every UDP candidate the server listed for its sessions.
fn candidate_ports(sessions: &[serde_json::Value]) -> Vec<u16> {
    sessions
        .iter()
        .flat_map(|session| session["candidates"].as_array().cloned().unwrap_or_default())
        .filter(|candidate| candidate.as_str().is_some_and(|text| text.contains(" udp ")))
        .map(|candidate| {
            let text = candidate.as_str().expect("a candidate string");
            text.rsplit(':').next().and_then(|port| port.parse().ok()).expect("typ udp address:port")
        })
        .collect()
}

async fn echoes(publisher: &mut ClientPeer) -> f64 {
    echoes_to(publisher, None).await.0
}

/// Publishes 30 frames: the fraction echoed identical, and that `viewer` got.
async fn echoes_to(publisher: &mut ClientPeer, viewer: Option<&mut ClientPeer>) -> (f64, f64) {
    let sent = publish(publisher, 30).await;
    let echoed = collect_echo(publisher, Duration::from_millis(1000)).await;
    let watched = match viewer {
        Some(viewer) => collect_echo(viewer, Duration::from_millis(500)).await,
        None => Vec::new(),
    };
    let ratio = |got: &[rtc::rtp::Packet]| identical_payloads(&sent, got) as f64 / sent.len() as f64;
    (ratio(&echoed), ratio(&watched))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_session_and_viewer_echoes_through_one_udp_socket() {
    let port = free_udp_port();
    let server = spawn_server(&["--udp-port", &port.to_string()]).await;
    let shared: SocketAddr = ([127, 0, 0, 1], port).into();
    assert_eq!(udp_sockets(server.child.id()), vec![shared], "bound at start, alone");

    let mut publishers = Vec::new();
    for _ in 0..4 {
        publishers.push(ClientPeer::connect(&ws_url(server.addr), CONNECT_TIMEOUT).await.expect("connects"));
    }
    let mut viewer = ClientPeer::watch(&ws_url(server.addr), &publishers[0].watch_token, CONNECT_TIMEOUT)
        .await
        .expect("the viewer connects");
    let (ratio, watched) = echoes_to(&mut publishers[0], Some(&mut viewer)).await;
    assert!(ratio >= 0.95 && watched >= 0.95, "echo {ratio:.2}, viewer {watched:.2} identical");
    for publisher in &mut publishers[1..] {
        let ratio = echoes(publisher).await;
        assert!(ratio >= 0.95, "only {:.1}% echoed identical", ratio * 100.0);
    }

    assert_eq!(udp_sockets(server.child.id()), vec![shared], "4 sessions and a viewer, still one UDP socket");
    let listed = sessions(server.addr).await;
    assert_eq!(listed.len(), 4);
    let ports = candidate_ports(&listed);
    assert!(!ports.is_empty() && ports.iter().all(|p| *p == port), "candidates name {port}: {ports:?}");
    let media = &listed[0]["media"];
    assert_eq!(media["udp"], "shared");
    assert_eq!(media["port"], port);
    assert_eq!(media["addrs"], serde_json::json!([shared.to_string()]));
    // Media of the echoed tracks goes to the sessions' planes (hooked), the rest to
    // the PeerConnections (delivered).
    let (delivered, hooked) =
        (media["mux"]["delivered"].as_u64().unwrap(), media["mux"]["hooked"].as_u64().unwrap());
    assert!(delivered + hooked > 4 * 30 && hooked > 4 * 20, "{media}");
    assert_eq!(media["mux"]["addresses_learned"], 5, "one client address each: {media}");

    viewer.close().await.expect("closes");
    for publisher in publishers {
        publisher.close().await.expect("closes");
    }
}

/// Once a session is connected, its client's consent checks are answered by the mux
/// on its reader (`udp_mux::consent`), not by the PeerConnection's driver: every
/// check gets an answer the client's ICE agent accepts, for as long as it stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connected_sessions_consent_checks_are_answered_by_the_mux() {
    let server = spawn_server(&[]).await;
    let mut publisher = ClientPeer::connect(&ws_url(server.addr), CONNECT_TIMEOUT).await.expect("connects");
    assert!(echoes(&mut publisher).await >= 0.95, "echoes");
    let (sent_before, answered_before) = publisher.ice_checks().await;
    // webrtc-rs checks consent every 2 s.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let (sent, answered) = publisher.ice_checks().await;
    assert!(sent >= sent_before + 3, "checks sent {sent_before} → {sent}");
    // One may be on its way back.
    assert!(answered + 1 >= sent && answered >= answered_before + 3, "{answered} of {sent} checks answered");
    let mux = &sessions(server.addr).await[0]["media"]["mux"];
    assert!(mux["consent_answered"].as_u64().unwrap_or(0) >= 3, "answered by the mux: {mux}");
    assert!(echoes(&mut publisher).await >= 0.95, "still echoing");
    publisher.close().await.expect("closes");
}

/// A client that floods consent checks on its pair gets a budget of them answered on
/// the reader; the rest go to its PeerConnection, as every check once did (its
/// bounded inbox, its own driver): the reader's work for one session stays bounded,
/// and the session goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_consent_checks_is_answered_on_the_reader_within_a_budget() {
    let server = spawn_server(&[]).await;
    let echoed = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&echoed);
    let on_echo = Arc::new(move |_| {
        count.fetch_add(1, Ordering::Relaxed);
    });
    let options = ClientOptions { on_echo: Some(on_echo), own_media: true, lean: true, ..Default::default() };
    let mut publisher =
        ClientPeer::connect_options(&ws_url(server.addr), options, CONNECT_TIMEOUT).await.expect("connects");
    let echoes_of_30_frames = async |publisher: &mut ClientPeer| {
        let before = echoed.load(Ordering::Relaxed);
        let sent = publish(publisher, 30).await.len() as u64;
        tokio::time::sleep(Duration::from_millis(500)).await;
        (echoed.load(Ordering::Relaxed) - before, sent)
    };
    let (got, sent) = echoes_of_30_frames(&mut publisher).await;
    assert!(got * 20 >= sent * 19, "{got} of {sent} echoed");
    let server_credentials = answer_credentials(&publisher.remote_sdp().await.expect("the server's answer"));
    let answered =
        |listed: &[serde_json::Value]| listed[0]["media"]["mux"]["consent_answered"].as_u64().unwrap();
    let before = answered(&sessions(server.addr).await);
    for _ in 0..500 {
        publisher.send_datagram(&server_credentials.binding_request()).expect("sent");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let flood = answered(&sessions(server.addr).await) - before;
    assert!((10..=30).contains(&flood), "{flood} of 500 answered on the reader");
    let (got, sent) = echoes_of_30_frames(&mut publisher).await;
    assert!(got * 20 >= sent * 19, "the session goes on: {got} of {sent} echoed");
    publisher.close().await.expect("closes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_on_the_shared_port_are_counted_and_dropped() {
    let port = free_udp_port();
    let server = spawn_server(&["--udp-port", &port.to_string()]).await;
    let mut publisher = ClientPeer::connect(&ws_url(server.addr), CONNECT_TIMEOUT).await.expect("connects");

    // Not STUN (RTP-looking, DTLS-looking), and a binding request for a ufrag the
    // server never gave out, without integrity: none may reach a session or answer.
    let stranger = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut binding = vec![0x00, 0x01, 0x00, 0x0c, 0x21, 0x12, 0xa4, 0x42];
    binding.extend_from_slice(&[7; 12]);
    binding.extend_from_slice(&[0x00, 0x06, 0x00, 0x09]);
    binding.extend_from_slice(b"nobody:me\0\0\0");
    let strays: [&[u8]; 4] = [b"\x80\x60\x00\x01rtp-ish", b"\x16\xfe\xfd dtls-ish", &binding, &[]];
    for stray in strays {
        stranger.send_to(stray, ("127.0.0.1", port)).await.unwrap();
    }
    let mut buf = [0u8; 1500];
    let answer = tokio::time::timeout(Duration::from_millis(500), stranger.recv_from(&mut buf)).await;
    assert!(answer.is_err(), "the server answered a stranger");

    assert!(echoes(&mut publisher).await >= 0.95, "the session suffered");
    let listed = sessions(server.addr).await;
    let mux = &listed[0]["media"]["mux"];
    assert!(mux["dropped_unknown"].as_u64().unwrap() >= 3, "{mux}");
    assert_eq!(mux["addresses_learned"], 1, "{mux}");
    publisher.close().await.expect("closes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_range_still_gives_each_session_its_own_port() {
    let first = free_udp_port().clamp(1024, 60000);
    let range = format!("{first}-{}", first + 20);
    let server = spawn_server(&["--udp-port", &range]).await;
    let mut publishers = Vec::new();
    for _ in 0..2 {
        let mut publisher =
            ClientPeer::connect(&ws_url(server.addr), CONNECT_TIMEOUT).await.expect("connects");
        assert!(echoes(&mut publisher).await >= 0.95);
        publishers.push(publisher);
    }
    let listed = sessions(server.addr).await;
    let ports: BTreeSet<u16> = candidate_ports(&listed).into_iter().collect();
    assert_eq!(ports.len(), 2, "a port per session: {ports:?}");
    assert!(ports.iter().all(|p| (first..=first + 20).contains(p)), "{ports:?} outside {range}");
    assert_eq!(listed[0]["media"]["udp"], "range");
    assert_eq!(udp_sockets(server.child.id()).len(), 2);
    // A session's own port takes only what its client authenticated, as the shared one.
    let stranger = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for port in &ports {
        stranger.send_to(b"\x80\x60\x00\x01rtp-ish", ("127.0.0.1", *port)).await.unwrap();
    }
    assert!(echoes(&mut publishers[0]).await >= 0.95);
    let mux = &sessions(server.addr).await[0]["media"]["mux"];
    assert_eq!(mux["dropped_unknown"], 2, "{mux}");
    assert_eq!(mux["addresses_learned"], 2, "{mux}");
}

#[test]
fn a_taken_shared_port_stops_the_server_at_start_naming_the_flag() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let mut child = std::process::Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--udp-port", &port])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runs");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while child.try_wait().expect("waits").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("still running on a taken UDP port");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "exited 0 on a taken port: {stderr}");
    assert!(stderr.contains("--udp-port") && stderr.contains(&port), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_media_takes_the_listen_ports_number_on_udp_and_says_so() {
    let (mut command, addr) = server_command();
    command.env("RUST_LOG", "face_echo=info").env("NO_COLOR", "1").stderr(std::process::Stdio::piped());
    let mut server = spawn(command, addr).await;
    let mut publisher = ClientPeer::connect(&ws_url(server.addr), CONNECT_TIMEOUT).await.expect("connects");
    assert!(echoes(&mut publisher).await >= 0.95);
    let listed = sessions(server.addr).await;
    assert_eq!(listed[0]["media"]["udp"], "shared");
    assert_eq!(listed[0]["media"]["port"], addr.port());
    assert_eq!(candidate_ports(&listed), vec![addr.port()]);
    assert_eq!(udp_sockets(server.child.id()), vec![SocketAddr::new(addr.ip(), addr.port())]);
    publisher.close().await.expect("closes");
    let _ = server.child.kill();
    let mut log = String::new();
    std::io::Read::read_to_string(&mut server.child.stderr.take().expect("stderr"), &mut log).expect("log");
    let line =
        format!("media on UDP 127.0.0.1:{port} for every session (open UDP {port})", port = addr.port());
    assert!(log.contains(&line), "start-up names the port: {log}");
}

#[test]
fn a_taken_default_port_stops_the_server_at_start_naming_the_flags() {
    let port = free_port();
    let _taken = std::net::UdpSocket::bind(("127.0.0.1", port)).unwrap();
    let output = std::process::Command::new(BIN)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "exited 0 on a taken port: {stderr}");
    assert!(
        stderr.contains(&port.to_string()) && stderr.contains("--listen") && stderr.contains("--udp-port"),
        "{stderr}"
    );
}
