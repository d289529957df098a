//! `--nat-ip`: behind 1:1 NAT (a cloud VM's elastic IP) clients are told the public
//! address, and media reaches the server through the NAT. A network namespace plays
//! the cloud: the server's interface has 10.99.0.1, nftables maps 203.0.113.7 to it
//! (DNAT) and drops every datagram and segment that reaches or leaves the server's
//! port without going through that mapping, so only candidates naming the public
//! address can work. In it, `face-echo loadgen` echoes through the public address,
//! and a WHIP answer names it on UDP and on ICE-TCP. Skipped, saying so, where the
//! kernel allows no network namespace or nftables is missing.

mod common;

use std::process::Command;

const PUBLIC: &str = "203.0.113.7";
const PRIVATE: &str = "10.99.0.1";

fn namespace_allowed() -> bool {
    let ok = |program: &str, args: &[&str]| {
        Command::new(program).args(args).output().is_ok_and(|o| o.status.success())
    };
    ok("unshare", &["-n", "true"]) && ok("nft", &["--version"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_reaches_the_server_through_its_public_address() {
    if !namespace_allowed() {
        eprintln!("SKIPPED: needs `unshare -n` (root) and nft (apt-get install nftables)");
        return;
    }
    let port = 18000 + (std::process::id() % 1000) as u16 + 2000;
    let dir = std::env::temp_dir().join(format!("face-echo-nat-ip-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (_pc, offer) = common::real_offer().await;
    std::fs::write(dir.join("offer.sdp"), offer).unwrap();
    let bin = common::BIN;
    let script = format!(
        r#"
set -eu
cd "{dir}"
ip link set lo up
ip link add fe0 type veth peer name fe1
ip addr add {PRIVATE}/24 dev fe0
ip link set fe0 up; ip link set fe1 up
ip route add {PUBLIC}/32 dev fe0
nft -f - <<NFT
table ip nat {{
  chain out {{
    type nat hook output priority -100;
    ip daddr {PUBLIC} dnat to {PRIVATE}
  }}
}}
table ip filter {{
  chain out {{
    type filter hook output priority 0;
    ip saddr {PRIVATE} udp sport {port} ct status & dnat == 0 drop
    ip daddr {PRIVATE} udp dport {port} ct status & dnat == 0 drop
    ip saddr {PRIVATE} tcp sport {port} ct status & dnat == 0 drop
    ip daddr {PRIVATE} tcp dport {port} ct status & dnat == 0 drop
  }}
}}
NFT
RUST_LOG=warn "{bin}" --listen 0.0.0.0:{port} --nat-ip {PUBLIC} >/dev/null 2>server.log &
server=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/{PUBLIC}/{port}) 2>/dev/null && break; sleep 0.1; done
"{bin}" loadgen --url ws://{PUBLIC}:{port}/ws --peers 2 --seconds 2 --json >summary.json 2>loadgen.log || true
curl -s -o answer.sdp -H 'Content-Type: application/sdp' --data-binary @offer.sdp http://{PUBLIC}:{port}/whip || true
kill -TERM $server; wait $server || true
"#,
        dir = dir.display()
    );
    let output = Command::new("unshare").args(["-n", "bash", "-c", &script]).output().expect("unshare runs");
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    let (log, loadgen) = (read("server.log"), read("loadgen.log"));
    assert!(
        output.status.success(),
        "namespace run failed ({:?}): {}\nserver log:\n{log}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );

    let summary: serde_json::Value = serde_json::from_str(&read("summary.json"))
        .unwrap_or_else(|e| panic!("no loadgen summary ({e})\nloadgen:\n{loadgen}\nserver log:\n{log}"));
    assert_eq!(summary["connect_failures"], 0, "{summary}\nloadgen:\n{loadgen}\nserver log:\n{log}");
    assert!(summary["packets_echoed"].as_u64().unwrap_or(0) > 50, "{summary}\nloadgen:\n{loadgen}");
    assert!(summary["loss"].as_f64().unwrap_or(1.0) < 0.05, "{summary}");

    let answer = read("answer.sdp");
    let candidates: Vec<&str> = answer.lines().filter_map(|l| l.strip_prefix("a=candidate:")).collect();
    for transport in ["udp", "tcp"] {
        assert!(
            candidates
                .iter()
                .any(|c| c.contains(&format!(" {transport} ")) && c.contains(&format!(" {PUBLIC} "))),
            "no {transport} candidate names the public address:\n{answer}"
        );
    }
    assert!(!answer.contains(PRIVATE), "the private address is not told:\n{answer}");
    let _ = std::fs::remove_dir_all(&dir);
}
