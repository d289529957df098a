//! The `face-echo` binary as an operator runs it: `--help`, bad flags, and a clean
//! exit on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_face-echo");

#[test]
fn help_explains_every_flag() {
    let output = Command::new(BIN).arg("--help").output().expect("runs");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--listen",
        "--web-dir",
        "--stun",
        "--udp-port",
        "--tcp-port",
        "--nat-ip",
        "--max-sessions",
        "--disconnect-timeout",
        "--offer-timeout",
        "--allow-origin",
        "--whip-token",
        "--decode-tap",
        "--tap-pli",
        "--tap-queue",
        "--detect",
        "--detect-model",
        "--detect-fps",
        "--ort-lib",
        "--help",
        "--version",
    ] {
        assert!(help.contains(flag), "--help does not mention {flag}:\n{help}");
    }
}

#[test]
fn bad_flags_fail_with_a_message_naming_them() {
    for (args, needle) in [
        (vec!["--udp-port", "9-3"], "udp-port"),
        (vec!["--stun", "example.org"], "--stun"),
        (vec!["--max-sessions", "0"], "--max-sessions"),
        (vec!["--listen", "nonsense"], "--listen"),
    ] {
        let output = Command::new(BIN).args(&args).output().expect("runs");
        assert!(!output.status.success(), "{args:?} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(needle), "{args:?}: stderr does not name {needle}: {stderr}");
    }
}

#[test]
fn sigterm_exits_cleanly() {
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !line.contains("listening on") {
        line.clear();
        assert!(stderr.read_line(&mut line).expect("reads") > 0, "exited before listening");
        assert!(Instant::now() < deadline, "never said it was listening");
    }
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "still running 5 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}
