//! Forged media on the media port, against the real binary in its own process (so
//! its memory and log are its own): keyless SRTP and SRTCP cost no memory and no
//! log lines, whether they come from a stranger or from a session's own address,
//! and SRTCP without its tag (the E flag cleared, RFC 3711 §3.4) is refused under
//! every profile a client may negotiate.

mod common;

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use face_echo::loadgen::client::{ClientOptions, ClientPeer};
use webrtc::peer_connection::SrtpProtectionProfile;

/// The server's resident memory now (VmRSS), bytes.
fn rss(server: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).expect("status");
    let kb: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

/// A publisher with its own media path (so it can send raw datagrams from the
/// address the server authenticated), offering `profiles` in DTLS.
async fn publisher(server: &Server, profiles: Vec<SrtpProtectionProfile>) -> ClientPeer {
    let options = ClientOptions {
        on_echo: Some(Arc::new(|_| {})),
        own_media: true,
        lean: true,
        srtp_profiles: profiles,
        ..Default::default()
    };
    ClientPeer::connect_options(&ws_url(server.addr), options, CONNECT_TIMEOUT).await.expect("connects")
}

/// The session's media plane counters.
async fn plane(server: &Server) -> serde_json::Value {
    sessions(server.addr).await.remove(0)["echo"]["plane"].clone()
}

fn counter(value: &serde_json::Value, name: &str) -> u64 {
    value[name].as_u64().unwrap_or_else(|| panic!("{name} in {value}"))
}

/// A 48-byte keyless "SRTP" packet with SSRC `ssrc`, or "SRTCP" (a receiver report
/// from it), random beyond the header.
fn forgery(ssrc: u32, rtcp: bool) -> Vec<u8> {
    let mut packet = vec![0u8; 48];
    packet[..4].copy_from_slice(if rtcp { &[0x80, 201, 0, 6] } else { &[0x80, 96, 0x12, 0x34] });
    let at = if rtcp { 4 } else { 8 };
    packet[at..at + 4].copy_from_slice(&ssrc.to_be_bytes());
    for (index, byte) in packet.iter_mut().enumerate().skip(12) {
        *byte = (ssrc.wrapping_mul(2_654_435_761) >> (index % 24)) as u8;
    }
    packet
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_forgeries_cost_no_memory_and_no_log_lines() {
    let (mut command, addr) = server_command();
    command.env("RUST_LOG", "warn").env("NO_COLOR", "1").stderr(std::process::Stdio::piped());
    let mut server = spawn(command, addr).await;
    let mut publisher = publisher(&server, Vec::new()).await;
    publish(&mut publisher, 30).await;
    let before = rss(&server);

    // 150 000 from the session's own address: RTP of random SSRCs and RTCP from them.
    const FORGED: u32 = 150_000;
    for index in 0..FORGED {
        let ssrc = index.wrapping_mul(0x9e37_79b9) | 1;
        publisher.send_datagram(&forgery(ssrc, index % 2 == 1)).expect("sent");
        if index % 2_000 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await; // the socket's buffer is finite
        }
    }
    // 20 000 from a socket that never sent STUN, to the port the session uses.
    let stranger = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for index in 0..20_000u32 {
        let _ = stranger.send_to(&forgery(index, index % 2 == 1), ("127.0.0.1", addr.port()));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let plane = plane(&server).await;
    let refused = counter(&plane, "unknown_ssrc")
        + counter(&plane, "unprotect_failed")
        + counter(&plane, "over_budget");
    assert!(refused >= u64::from(FORGED) * 95 / 100, "{refused} of {FORGED} counted as refused: {plane}");
    let mux = &sessions(server.addr).await[0]["media"]["mux"];
    assert!(mux["dropped_unknown"].as_u64().unwrap() >= 19_000, "the stranger's: {mux}");
    let grown = rss(&server).saturating_sub(before);
    println!("RSS {} -> {} MB (+{} kB); plane {plane}", before >> 20, rss(&server) >> 20, grown >> 10);
    assert!(grown < 4 << 20, "forgeries grew the server by {} kB", grown >> 10);
    // The session is untouched.
    let sent = publish(&mut publisher, 30).await;
    let stats = publisher.own_media_stats().expect("own media");
    assert!(stats.rtp_in.load(std::sync::atomic::Ordering::Relaxed) >= sent.len() as u64 * 2 - 10);

    publisher.close().await.expect("closes");
    let _ = server.child.kill();
    let mut log = String::new();
    server.child.stderr.take().expect("stderr").read_to_string(&mut log).expect("log");
    let lines = log.lines().count();
    assert!(
        lines < 50,
        "{lines} log lines for {FORGED} forgeries:\n{}",
        log.lines().take(20).collect::<Vec<_>>().join("\n")
    );
}

/// SRTCP as a keyless attacker makes it: the client's PLI for the echo, the E flag
/// off (claiming "not encrypted") and a tag of zeros.
fn untagged_pli(sender: u32, media: u32, index: u32, tag_len: usize) -> Vec<u8> {
    let mut packet = vec![0x81, 206, 0, 2];
    packet.extend_from_slice(&sender.to_be_bytes());
    packet.extend_from_slice(&media.to_be_bytes());
    packet.extend_from_slice(&(index & 0x7fff_ffff).to_be_bytes());
    packet.extend(std::iter::repeat_n(0, tag_len));
    packet
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srtcp_without_its_tag_is_refused_under_every_profile() {
    let profiles = [
        (SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80, 10),
        (SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_32, 10),
        (SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm, 16),
        (SrtpProtectionProfile::Srtp_Aead_Aes_256_Gcm, 16),
    ];
    for (profile, tag_len) in profiles {
        let server = spawn_server(&[]).await;
        let mut publisher = publisher(&server, vec![profile]).await;
        publish(&mut publisher, 10).await;
        let answer = publisher.remote_sdp().await.expect("answer");
        let echo_ssrc: u32 = answer
            .lines()
            .find_map(|line| line.strip_prefix("a=ssrc:")?.split_whitespace().next()?.parse().ok())
            .expect("the echo's SSRC");
        let before = plane(&server).await;
        let sessions_before = sessions(server.addr).await.remove(0);
        const FORGED: u32 = 400;
        for index in 0..FORGED {
            publisher
                .send_datagram(&untagged_pli(publisher.ssrc(), echo_ssrc, 1_000 + index, tag_len))
                .unwrap();
            if index % 50 == 49 {
                tokio::time::sleep(Duration::from_millis(150)).await; // under the RTCP budget
            }
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
        let after = plane(&server).await;
        let failed = counter(&after, "unprotect_failed") - counter(&before, "unprotect_failed");
        let over = counter(&after, "over_budget") - counter(&before, "over_budget");
        assert_eq!(failed + over, u64::from(FORGED), "{profile:?}: every forgery refused: {after}");
        let relayed = |session: &serde_json::Value| session["echo"]["plis_relayed"].as_u64().unwrap();
        assert_eq!(
            relayed(&sessions(server.addr).await.remove(0)),
            relayed(&sessions_before),
            "{profile:?}: a forged PLI reached the publisher"
        );
        // Genuine RTCP (the client's own keys) still gets through.
        let mut pli = vec![0x81, 206, 0, 2];
        pli.extend_from_slice(&publisher.ssrc().to_be_bytes());
        pli.extend_from_slice(&echo_ssrc.to_be_bytes());
        publisher.send_rtcp(&pli).expect("sent");
        let before = relayed(&sessions_before);
        assert!(
            eventually(Duration::from_secs(3), || async {
                relayed(&sessions(server.addr).await.remove(0)) > before
            })
            .await,
            "{profile:?}: a genuine PLI on the echo reaches the publisher"
        );
        publisher.close().await.expect("closes");
    }
}
