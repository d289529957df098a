#!/usr/bin/env bash
# Interop suite: two independent WebRTC stacks, Python aiortc and GStreamer webrtcbin,
# each publish VP8 to a real face-echo and must get the echo back; and Medooze's WHIP and
# WHEP clients (npm whip-whep) in Debian's Chromium publish over WHIP and watch over WHEP.
#
#   FACE_ECHO_BIN=/path/to/face-echo tests/interop/run.sh
#
# Installs what is missing (Debian packages, a venv at target/interop-venv), starts the
# server on a free 127.0.0.1 port (log: target/interop/server.log), runs each client under
# `timeout`, checks that its session is gone from /api/sessions afterwards, stops the
# server with SIGTERM (it must exit 0 within 5 s) and prints `N passed, M failed`: one
# check per client run (client exit 0 and session cleaned up), plus one failure if the
# server does not shut down cleanly. Exits non-zero if anything failed.
#
# Knobs: INTEROP_SECONDS (default 6) publish time per client, INTEROP_MIN_FRAMES
# (default 30) echo frames needed, INTEROP_CLIENTS (default "aiortc gst whip") which to run,
# RUST_LOG (default face_echo=debug,rtc=info). Every client's packets must take the sessions'
# media planes (per /metrics). All traffic stays on 127.0.0.1.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

bin="${FACE_ECHO_BIN:-$root/target/debug/face-echo}"
case "$bin" in /*) ;; *) bin="$PWD/$bin" ;; esac
if [[ ! -x "$bin" ]]; then
    echo "interop: FAIL: FACE_ECHO_BIN=$bin is not an executable (build it with cargo build)" >&2
    echo "0 passed, 1 failed"
    exit 2
fi

cd "$root"
out="$root/target/interop"
venv="$root/target/interop-venv"
seconds="${INTEROP_SECONDS:-6}"
min_frames="${INTEROP_MIN_FRAMES:-30}"
clients="${INTEROP_CLIENTS:-aiortc gst whip}"
mkdir -p "$out"

# --- Debian packages --------------------------------------------------------------------
apt_packages=(
    python3 python3-venv python3-gi python3-gst-1.0
    gir1.2-gst-plugins-base-1.0 gir1.2-gst-plugins-bad-1.0
    gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
    gstreamer1.0-nice gstreamer1.0-tools
)
# The WHIP/WHEP client runs in Chromium, driven from Node.
if [[ " $clients " == *" whip "* ]]; then
    apt_packages+=(chromium)
    command -v node >/dev/null && command -v npm >/dev/null || apt_packages+=(nodejs npm)
fi
missing=()
for p in "${apt_packages[@]}"; do
    dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "interop: installing Debian packages: ${missing[*]}"
    sudo=()
    if [[ $(id -u) -ne 0 ]]; then sudo=(sudo); fi
    export DEBIAN_FRONTEND=noninteractive
    # Update the package lists only when the install cannot find what it needs.
    if ! "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"; then
        "${sudo[@]}" apt-get update -q
        "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
fi

# --- Python venv (Debian's python, so Debian's gi is visible) ---------------------------
py="$venv/bin/python"
if ! [[ -x "$py" ]] || ! "$py" -c 'import gi' >/dev/null 2>&1; then
    echo "interop: creating $venv"
    rm -rf "$venv"
    /usr/bin/python3 -m venv --system-site-packages "$venv"
fi
req="$here/requirements.txt"
stamp="$venv/.interop-requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]] || ! "$py" -c 'import aiortc, websockets' >/dev/null 2>&1; then
    echo "interop: pip install -r tests/interop/requirements.txt"
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$py" -m pip install -q -r "$req"
    echo "$want" >"$stamp"
fi

# --- npm packages for the WHIP/WHEP client (playwright-core drives Debian's chromium) --
whip_dir="$here/whip"
if [[ " $clients " == *" whip "* ]] && ! [[ -d "$whip_dir/node_modules/whip-whep" && -d "$whip_dir/node_modules/playwright-core" ]]; then
    echo "interop: npm ci in tests/interop/whip"
    (cd "$whip_dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --silent)
fi

# --- Server -----------------------------------------------------------------------------
http_get() { # URL -> body on stdout; fails on error
    "$py" - "$1" <<'EOF'
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
    sys.stdout.write(r.read().decode())
EOF
}

# A port free on TCP and on UDP: media takes the HTTP port's number, on UDP.
port="$("$py" -c '
import socket
while True:
    t = socket.socket(); t.bind(("127.0.0.1", 0)); port = t.getsockname()[1]
    u = socket.socket(type=socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", port)); break
    except OSError:
        pass
print(port)')"
base="http://127.0.0.1:$port"
log="$out/server.log"
RUST_LOG="${RUST_LOG:-face_echo=debug,rtc=info}" NO_COLOR=1 \
    "$bin" --listen "127.0.0.1:$port" --allow-origin "http://127.0.0.1:$port" >"$log" 2>&1 &
server_pid=$!

cleanup() {
    if [[ -n "${server_pid:-}" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT

# counter NAME: the server's face_echo_NAME_total from /metrics (0 if absent).
counter() {
    http_get "$base/metrics" 2>/dev/null | awk -v name="face_echo_$1_total" '$1 == name { print $2; found = 1 } END { if (!found) print 0 }'
}

log_tail() {
    echo "---- last 60 lines of $log ----"
    tail -n 60 "$log" | sed -e 's/\x1b\[[0-9;]*m//g'
    echo "----"
}

up=0
for _ in $(seq 100); do
    if ! kill -0 "$server_pid" 2>/dev/null; then break; fi
    if [[ "$(http_get "$base/healthz" 2>/dev/null)" == ok* ]]; then up=1; break; fi
    sleep 0.1
done
if ((!up)); then
    if kill -0 "$server_pid" 2>/dev/null; then
        echo "interop: FAIL: server did not answer $base/healthz within 10 s"
    else
        wait "$server_pid" && rc=0 || rc=$?
        echo "interop: FAIL: server exited ($rc) before answering $base/healthz"
    fi
    log_tail
    echo "0 passed, 1 failed"
    exit 1
fi
echo "interop: face-echo $bin on $base (log $log)"

# --- Clients ----------------------------------------------------------------------------
passed=0
failed=0
for client in $clients; do
    case "$client" in
        aiortc) command=("$py" "$here/aiortc_echo.py" --url "ws://127.0.0.1:$port/ws") ;;
        gst) command=("$py" "$here/gst_echo.py" --url "ws://127.0.0.1:$port/ws") ;;
        # WHIP publish + WHEP watch (from another origin: the server allows 127.0.0.1:$port).
        whip) command=(node "$whip_dir/whip_whep.mjs" --url "$base") ;;
        *) echo "interop: unknown client $client" >&2; failed=$((failed + 1)); continue ;;
    esac
    echo "interop: $client: publishing for ${seconds}s"
    received_before="$(counter rtp_packets_received)"
    on_plane_before="$(counter rtp_packets_on_plane)"
    rc=0
    timeout -k 5 60 "${command[@]}" --seconds "$seconds" \
        --min-frames "$min_frames" >"$out/$client.json" 2>"$out/$client.err" || rc=$?
    cat "$out/$client.json"
    ok=1
    if ((rc != 0)); then
        ok=0
        if ((rc == 124 || rc == 137)); then
            echo "interop: $client: FAIL: killed by timeout after 60 s"
        else
            echo "interop: $client: FAIL: exit $rc"
        fi
        echo "---- $client stderr ----"
        tail -n 40 "$out/$client.err"
    fi
    # The server must drop the session once the client has gone (WebSocket closed).
    sessions=""
    for _ in $(seq 30); do
        sessions="$(http_get "$base/api/sessions" 2>/dev/null || echo '?')"
        [[ "$sessions" == "[]" ]] && break
        sleep 0.1
    done
    if [[ "$sessions" != "[]" ]]; then
        ok=0
        echo "interop: $client: FAIL: /api/sessions 3 s after the client exited: $sessions"
    fi
    received=$(($(counter rtp_packets_received) - received_before))
    on_plane=$(($(counter rtp_packets_on_plane) - on_plane_before))
    echo "interop: $client: $on_plane of $received RTP packets on the media plane"
    if ((received == 0 || on_plane != received)); then
        ok=0
        echo "interop: $client: FAIL: the media plane took $on_plane of $received packets"
    fi
    if ((ok)); then
        echo "interop: $client: PASS"
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        log_tail
    fi
done

# --- Shutdown ---------------------------------------------------------------------------
kill -TERM "$server_pid"
status=""
for _ in $(seq 50); do
    if ! kill -0 "$server_pid" 2>/dev/null; then
        status=0
        wait "$server_pid" || status=$?
        break
    fi
    sleep 0.1
done
if [[ -z "$status" ]]; then
    echo "interop: FAIL: server still running 5 s after SIGTERM (killing it)"
    failed=$((failed + 1))
    log_tail
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
elif ((status != 0)); then
    echo "interop: FAIL: server exited $status after SIGTERM"
    failed=$((failed + 1))
    log_tail
else
    echo "interop: server exited 0 after SIGTERM"
fi
server_pid=""

echo "$passed passed, $failed failed"
((failed == 0))
