//! Any host: the server needs no multicast. It runs in a fresh network namespace
//! that has only loopback (so no multicast route, and no mDNS socket can be made),
//! and `face-echo loadgen` in the same namespace echoes through it: on the shared
//! port behind a wildcard listener (where `.local` resolution would be wanted, and
//! is given up with one warning), and on the default port behind a loopback one;
//! either way the server holds no UDP socket but the mux's.
//! Skipped, saying so, where the kernel does not allow a network namespace.

mod common;

use std::process::Command;

/// `unshare` arguments for a new network namespace: as root `-n`, else try an
/// unprivileged user namespace too (`-rn`); `None` where neither is allowed.
fn unshare_flags() -> Option<&'static str> {
    ["-n", "-rn"].into_iter().find(|flags| {
        Command::new("unshare").args([flags, "true"]).status().is_ok_and(|status| status.success())
    })
}

/// Runs the server with `server_args` and a 2-publisher loadgen in one namespace;
/// returns the loadgen summary, the server's log and its UDP sockets (`ss` lines).
fn echo_in_namespace(flags: &str, listen_ip: &str, server_args: &str) -> (serde_json::Value, String, String) {
    let port = 18000 + (std::process::id() % 1000) as u16;
    let dir = std::env::temp_dir().join(format!("face-echo-no-multicast-{}-{listen_ip}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("server.log");
    let sockets = dir.join("sockets.txt");
    let bin = common::BIN;
    let script = format!(
        r#"
set -u
ip link set lo up || exit 90
# The premise: nothing but loopback, and no route a multicast group could use.
if ip -o link | grep -v ': lo:' | grep -q .; then exit 91; fi
if ip route show table all | grep -Eq '^(multicast|224\.|ff00::)'; then exit 92; fi
RUST_LOG=warn "{bin}" --listen {listen_ip}:{port} {server_args} >/dev/null 2>"{log}" &
server=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null && break; sleep 0.1; done
# Mid-run, the server's UDP sockets (to see that media has no port but the mux's).
(sleep 2; ss -Huanp | grep "pid=$server," >"{sockets}") &
"{bin}" loadgen --url ws://127.0.0.1:{port}/ws --peers 2 --seconds 3 --json 2>/dev/null
status=$?
wait $!
kill -TERM $server; wait $server
exit $status
"#,
        log = log.display(),
        sockets = sockets.display()
    );
    let output = Command::new("unshare").args([flags, "bash", "-c", &script]).output().expect("unshare runs");
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    let sockets = std::fs::read_to_string(&sockets).unwrap_or_default();
    assert!(
        output.status.success(),
        "namespace run failed ({:?}): {}\nserver log:\n{log}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "loadgen printed no summary ({e}): {}\nserver log:\n{log}",
            String::from_utf8_lossy(&output.stdout)
        )
    });
    let _ = std::fs::remove_dir_all(&dir);
    (summary, log, sockets)
}

/// Every UDP socket the server holds is on `port`: no session's media arrives
/// beside the mux (a wildcard or ephemeral socket would take it past the plane).
fn assert_media_on_port(sockets: &str, port: u16) {
    let locals: Vec<&str> = sockets.lines().filter_map(|line| line.split_whitespace().nth(3)).collect();
    assert!(!locals.is_empty(), "no server UDP socket seen:\n{sockets}");
    assert!(
        locals.iter().all(|local| local.ends_with(&format!(":{port}"))),
        "a UDP socket beside the mux port {port}:\n{sockets}"
    );
}

fn assert_echoed(summary: &serde_json::Value, log: &str) {
    assert_eq!(summary["connect_failures"], 0, "{summary}\nserver log:\n{log}");
    assert!(summary["packets_echoed"].as_u64().unwrap_or(0) > 100, "{summary}\nserver log:\n{log}");
    assert!(summary["loss"].as_f64().unwrap_or(1.0) < 0.05, "{summary}");
}

#[test]
fn echoes_in_a_namespace_with_only_loopback() {
    let Some(flags) = unshare_flags() else {
        eprintln!("SKIPPED: this kernel allows no network namespace here (unshare -n and -rn both refused)");
        return;
    };

    // A wildcard listener would resolve `.local` candidates: here it cannot, says so
    // once, and serves anyway (on one shared port).
    let udp_port = 18000 + (std::process::id() % 1000) as u16 + 1000;
    let (summary, log, sockets) = echo_in_namespace(flags, "0.0.0.0", &format!("--udp-port {udp_port}"));
    assert_echoed(&summary, &log);
    assert_media_on_port(&sockets, udp_port);
    assert_eq!(log.matches("no multicast here").count(), 1, "one warning, not one per session:\n{log}");

    // Loopback only, ephemeral ports: mDNS is never asked for at all.
    let (summary, log, sockets) = echo_in_namespace(flags, "127.0.0.1", "");
    assert_echoed(&summary, &log);
    assert_media_on_port(&sockets, 18000 + (std::process::id() % 1000) as u16);
    assert!(!log.contains("multicast"), "{log}");
}
