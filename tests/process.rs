//! The `face-echo` binary as an operator runs it: `--help`, bad flags, and a clean
//! exit on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_face-echo");

/// `face-echo [SUBCOMMAND] --help` as a reader sees it: no environment of this
/// machine in it (an `[env: …=…]` value), the width clap uses with no terminal.
fn help_of(subcommand: Option<&str>) -> String {
    let mut command = Command::new(BIN);
    command.args(subcommand).arg("--help");
    for (name, _) in std::env::vars() {
        if name.starts_with("FACE_ECHO_") || name == "ORT_DYLIB_PATH" || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    let output = command.output().expect("runs");
    assert!(output.status.success(), "{subcommand:?} --help failed");
    String::from_utf8(output.stdout).expect("UTF-8")
}

/// docs/configuration.md is `--help`, word for word, the server's and each
/// subcommand's: it cannot drift. `UPDATE_DOCS=1` writes it anew.
#[test]
fn the_configuration_doc_is_the_help() {
    let mut doc = String::from(
        "# Configuration\n\n\
         Every flag, as `face-echo --help` and each subcommand's `--help` print it (this page is\n\
         made from them and checked against them by `tests/process.rs`; after changing a flag,\n\
         `UPDATE_DOCS=1 cargo test --test process` writes it anew).\n\n\
         Flags that name an environment variable (`[env: …]`) take it from there when not given.\n",
    );
    for subcommand in [None, Some("loadgen"), Some("replay"), Some("record-stats")] {
        let title = subcommand.map_or("face-echo".to_owned(), |name| format!("face-echo {name}"));
        doc.push_str(&format!("\n## `{title}`\n\n```text\n{}```\n", help_of(subcommand)));
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md");
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, &doc).expect("writes docs/configuration.md");
    }
    let written = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        written == doc,
        "docs/configuration.md differs from --help: run `UPDATE_DOCS=1 cargo test --test process`"
    );
}

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
