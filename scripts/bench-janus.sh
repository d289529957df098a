#!/usr/bin/env bash
# Server CPU per echoed RTP packet, face-echo vs Janus EchoTest, side by side in one run.
#
#   scripts/bench-janus.sh [-u] [-r REPEATS] [-s SECONDS] [PEERS...]
#
#   -u  face-echo on a shared UDP port of its own (`--udp-port`, a free one per run) instead
#       of the default (the --listen port's number)
#   -r  repeats (default 3); runs are interleaved janus, face-echo, janus, face-echo, … at each
#       peer count, and medians quoted
#   -s  seconds of the load window (default 20; /proc CPU counters tick at 10 ms)
#   PEERS  aiortc peers, each publishing 320x240@30 VP8 and receiving its echo (default: 8 16)
#
# Both servers get the same client: scripts/janus_peers.py (N aiortc peers in one process, in
# the venv of tests/interop/run.sh). Per-packet CPU = the server process's utime+stime
# (/proc/PID/stat) over the load window ÷ echoed RTP packets counted by the client in that
# window. Janus 1.1.2 (Debian's) runs with only the EchoTest plugin and the HTTP transport, on
# 127.0.0.1; face-echo is the release build (BENCH_BIN=path to use another binary and skip the
# build). Installs what is missing (Debian packages janus and python3-venv, the venv).
# Results: target/bench/janus.jsonl, answer SDPs target/bench/janus-answer-*.sdp, tables on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

repeats=3
seconds=20
shared_port=0
while getopts "ur:s:" opt; do
  case "$opt" in
    u) shared_port=1 ;;
    r) repeats="$OPTARG" ;;
    s) seconds="$OPTARG" ;;
    *) sed -n 2,20p "$0" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
peers=("$@")
[ ${#peers[@]} -gt 0 ] || peers=(8 16)

# --- what is missing: Debian packages, the interop venv (as tests/interop/run.sh makes it) ----
missing=()
for p in janus python3-venv; do
  dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "bench: installing ${missing[*]}" >&2
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 \
    || { "${sudo[@]}" apt-get update -q >&2 && "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >&2; }
fi
venv=target/interop-venv
py="$venv/bin/python"
req=tests/interop/requirements.txt
if ! "$py" -c 'import aiortc, websockets' >/dev/null 2>&1; then
  echo "bench: making $venv (pip install -r $req)" >&2
  [ -x "$py" ] || /usr/bin/python3 -m venv --system-site-packages "$venv"
  PIP_DISABLE_PIP_VERSION_CHECK=1 "$py" -m pip install -q -r "$req"
  sha256sum "$req" | cut -d' ' -f1 > "$venv/.interop-requirements.sha256"
fi

. scripts/bench-lib.sh
out=target/bench/janus.jsonl
: > "$out"

# --- Janus: a config folder holding only the EchoTest plugin and the HTTP transport ----------
jdir="$PWD/target/bench/janus"
rm -rf "$jdir"
mkdir -p "$jdir/plugins" "$jdir/transports" "$jdir/events" "$jdir/loggers"
ln -s /usr/lib/x86_64-linux-gnu/janus/plugins/libjanus_echotest.so "$jdir/plugins/"
ln -s /usr/lib/x86_64-linux-gnu/janus/transports/libjanus_http.so "$jdir/transports/"
echo 'general: {}' > "$jdir/janus.plugin.echotest.jcfg"
# Janus never gathers ICE candidates on loopback. With a non-loopback address it uses that one
# (and the client gathers on it too: libnice does not pair it with a 127.0.0.1 candidate; the
# packets still never leave the host). With only lo (a test namespace), it gets an ifb link
# holding 127.0.0.1/32 while it runs; traffic still goes over lo.
ifb=""
janus_addr="${JANUS_ADDR:-$(ip -4 -o addr show scope global | awk 'NR == 1 { split($4, a, "/"); print a[1] }')}"
if [ -z "$janus_addr" ]; then
  ifb=jlo0
  ip link add "$ifb" type ifb && ip addr add 127.0.0.1/32 dev "$ifb" && ip link set "$ifb" up
  janus_addr=127.0.0.1
fi
ice_enforce="${ifb:-$janus_addr}"
cat > "$jdir/janus.jcfg" <<EOF
general: {
  configs_folder = "$jdir"
  plugins_folder = "$jdir/plugins"
  transports_folder = "$jdir/transports"
  events_folder = "$jdir/events"
  loggers_folder = "$jdir/loggers"
  debug_level = 2
  session_timeout = 60
}
nat: {
  ice_enforce_list = "$ice_enforce"
  ignore_mdns = true
}
events: {
  broadcast = false
}
EOF
janus_pid=""
cleanup() {
  [ -z "$janus_pid" ] || kill -KILL "$janus_pid" 2>/dev/null || true
  [ -z "$ifb" ] || ip link del "$ifb" 2>/dev/null || true
}
trap cleanup EXIT

# start_janus LOG: Janus on a free 127.0.0.1 port, once it answers; sets $port and $server.
start_janus() {
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  cat > "$jdir/janus.transport.http.jcfg" <<EOF
general: {
  json = "compact"
  http = true
  ip = "127.0.0.1"
  port = $port
  base_path = "/janus"
  https = false
}
admin: {
  admin_http = false
  admin_https = false
}
EOF
  janus -F "$jdir" -o > "$1" 2>&1 &
  server=$!
  janus_pid=$server
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/janus/info" >/dev/null && return; sleep 0.1; done
  echo "bench: Janus did not start (log: $1)" >&2
  return 1
}

stop_janus() {
  kill -TERM "$server"
  for _ in $(seq 50); do kill -0 "$server" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  janus_pid=""
}

for r in $(seq "$repeats"); do
  for n in "${peers[@]}"; do
    for srv in janus face-echo; do
      log="target/bench/janus-$srv-$n.log"
      if [ "$srv" = janus ]; then
        start_janus "$log"
        url="http://127.0.0.1:$port/janus"
        client_addr="$janus_addr"
      else
        udp=()
        [ "$shared_port" = 0 ] || udp=(--udp-port "$(free_udp_port)")
        start_server "$log" --max-sessions 512 "${udp[@]}"
        url="ws://127.0.0.1:$port/ws"
        client_addr=127.0.0.1
      fi
      load=$(cut -d' ' -f1 /proc/loadavg)
      echo "bench: repeat $r, $srv, $n peers, ${seconds}s window (load average $load)" >&2
      timeout -k 5 $((seconds + 150)) "$py" scripts/janus_peers.py --server "$srv" --url "$url" \
        --peers "$n" --seconds "$seconds" --server-pid "$server" --client-address "$client_addr" \
        --answer-out "target/bench/janus-answer-$srv.sdp" \
        | python3 -c "import json,sys; [print(json.dumps({**json.loads(l), 'repeat': $r, 'loadavg': $load})) for l in sys.stdin]" \
        >> "$out" || echo "bench: the run failed (see $out, $log)" >&2
      if [ "$srv" = janus ]; then stop_janus; else stop_server; fi
    done
  done
done

python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
failed = [r for r in rows if not r.get("ok")]
rows = [r for r in rows if r.get("ok")]
med = statistics.median
by = {}
for r in rows:
    by.setdefault((r["peers"], r["server"]), []).append(r)
print("| peers | server | µs CPU / echoed packet (median; runs) | server CPU % of a core | echoed packets / s | echoed fps (min peer) | loss (max) | RTX received | client CPU % of a core |")
print("|---|---|---|---|---|---|---|---|---|")
for (peers, server), rs in sorted(by.items(), key=lambda kv: (kv[0][0], kv[0][1] != "janus")):
    us = [r["server_cpu_us_per_packet"] for r in rs]
    print(f"| {peers} | {server} | **{med(us):.1f}** ({', '.join(f'{u:.1f}' for u in us)}) "
          f"| {med([r['server_cpu_percent'] for r in rs]):.1f} | {med([r['echoed_pps'] for r in rs]):.0f} "
          f"| {med([r['echoed_fps'] for r in rs]):.1f} ({min(r['min_peer_echoed_fps'] for r in rs):.1f}) "
          f"| {max(r['loss'] for r in rs) * 100:.3f}% | {sum(r['rtx_received'] for r in rs)} "
          f"| {med([r['client_cpu_percent'] for r in rs]):.0f} |")
print()
print("| peers | face-echo ÷ Janus, µs per packet: median (per repeat) |")
print("|---|---|")
for p in sorted({p for p, _ in by}):
    janus = {r["repeat"]: r["server_cpu_us_per_packet"] for r in by.get((p, "janus"), [])}
    ours = {r["repeat"]: r["server_cpu_us_per_packet"] for r in by.get((p, "face-echo"), [])}
    ratios = [ours[k] / janus[k] for k in sorted(janus) if k in ours and janus[k]]
    if ratios:
        print(f"| {p} | **{med(ratios):.2f}** ({', '.join(f'{x:.2f}' for x in ratios)}) |")
print()
for server in ("janus", "face-echo"):
    rs = [r for r in rows if r["server"] == server]
    if rs:
        neg, fb = rs[-1]["negotiated"], rs[-1]["feedback_from_server"]
        print(f"- {server} answered: rtcp-fb {', '.join(neg['rtcp_fb']) or 'none'}; RTX {'yes' if neg['rtx'] else 'no'}; "
              f"extmap {', '.join(neg['extmap']) or 'none'}. RTCP it sent the peers' senders in the last window: "
              + ", ".join(f"{k} {v}" for k, v in fb.items() if v))
loads = sorted(r["loadavg"] for r in rows)
if loads:
    print(f"- load average (1 min) at the start of each run: {loads[0]}–{loads[-1]}")
if failed:
    print(f"- {len(failed)} runs failed: " + "; ".join(f"{r['server']} {r['peers']} peers: {r.get('error')}" for r in failed))
PY
