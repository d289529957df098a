#!/usr/bin/env bash
# The kernel floor under the server's CPU per echoed RTP packet: CPU per echoed
# UDP datagram of the cheapest possible userspace reflector (scripts/udp-floor.c: poll, then
# recvmmsg, then one sendmsg per datagram, as the server's media plane echoes) over loopback,
# with the load generator's arrivals: per peer one UDP socket, 39 datagrams/s of 1000 bytes
# (~1.3 packets per frame at 30 fps), the peers' sends spread evenly over the interval.
#
#   scripts/bench-floor.sh [-b] [-r REPEATS] [-s SECONDS] [PEERS...]
#
#   -b  also the blocking shape, interleaved with the first: the reflector sleeps in a
#       blocking recvmmsg (MSG_WAITFORONE) instead of poll, one syscall fewer per wake-up
#   -r  repeats (default 3): runs are interleaved by peers, medians quoted
#   -s  seconds of load per run (default 10)
#   PEERS  simulated peers (default: 16 32)
#
# No cargo: cc builds target/bench/udp-floor. Per-datagram CPU = the reflector's utime+stime
# (/proc/PID/stat) over the load window ÷ echoed datagrams, comparable with bench-packet.sh's
# per-packet figure; context switches (voluntary + nonvoluntary, /proc/PID/status) likewise.
# The JSON lines also carry the same CPU from /proc/PID/schedstat (ns, not clock ticks: a
# floor of a few µs per datagram is only a few ticks of CPU in a short run). Results: appended
# to target/bench/floor.jsonl, a table on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

repeats=3
seconds=10
shapes=(reflect)
while getopts "br:s:" opt; do
  case "$opt" in
    b) shapes=(reflect reflect-blocking) ;;
    r) repeats="$OPTARG" ;;
    s) seconds="$OPTARG" ;;
    *) sed -n 2,21p "$0" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
peers=("$@")
[ ${#peers[@]} -gt 0 ] || peers=(16 32)

mkdir -p target/bench
floor=target/bench/udp-floor
cc -O2 -std=c99 -Wall -Wextra -o "$floor" scripts/udp-floor.c
out=target/bench/floor.jsonl
# This invocation's rows, for the table; floor.jsonl keeps every run's.
rows=$(mktemp)
ticks=$(getconf CLK_TCK)

reflector=""
cleanup() {
  [ -z "$reflector" ] || kill -TERM "$reflector" 2>/dev/null || true
  rm -f "$rows"
}
trap cleanup EXIT

# For free_udp_port only: no face-echo binary is needed here, so none is built.
BENCH_BIN="${BENCH_BIN:-/bin/true}" . scripts/bench-lib.sh

# start_reflector SHAPE: the reflector on a free port, once it is bound; sets $port and $reflector.
start_reflector() {
  port=$(free_udp_port)
  "$floor" "$1" "$port" &
  reflector=$!
  local bound
  bound=$(printf ': 0100007F:%04X ' "$port")
  for _ in $(seq 50); do
    grep -q "$bound" /proc/net/udp && return
    kill -0 "$reflector" 2>/dev/null || break
    sleep 0.02
  done
  echo "bench: the reflector did not start on port $port" >&2
  return 1
}

stop_reflector() {
  local rc=0
  kill -TERM "$reflector"
  wait "$reflector" || rc=$?
  reflector=""
  [ "$rc" = 0 ] || echo "bench: the reflector exited with $rc" >&2
}

# The reflector's CPU in clock ticks (utime + stime; the fields after "(comm) " from state on),
# its CPU in ns, and its context switches.
cpu_ticks() { sed 's/.*) //' "/proc/$reflector/stat" | awk '{ print $12 + $13 }'; }
cpu_ns() { awk '{ print $1 }' "/proc/$reflector/schedstat"; }
ctx_switches() { awk '/^(non)?voluntary_ctxt_switches:/ { s += $2 } END { print s }' "/proc/$reflector/status"; }

for r in $(seq "$repeats"); do
  for n in "${peers[@]}"; do
   for shape in "${shapes[@]}"; do
    start_reflector "$shape"
    echo "bench: repeat $r, $n peers, $shape, ${seconds}s" >&2
    t0=$(cpu_ticks) ns0=$(cpu_ns) c0=$(ctx_switches)
    result=$("$floor" load "$port" "$n" "$seconds")
    t1=$(cpu_ticks) ns1=$(cpu_ns) c1=$(ctx_switches)
    stop_reflector
    python3 - "$result" "$shape" "$r" "$ticks" "$((t1 - t0))" "$((ns1 - ns0))" "$((c1 - c0))" <<'PY' | tee -a "$out" >> "$rows"
import json, sys
d = json.loads(sys.argv[1])
repeat, clk_tck, ticks, ns, ctx = map(int, sys.argv[3:])
echoed = d["echoed"] or None
d.update(shape=sys.argv[2], repeat=repeat, pps_per_peer=39, size=1000, clk_tck=clk_tck,
         reflector_cpu_ticks=ticks, reflector_cpu_ns=ns, reflector_ctx_switches=ctx,
         reflector_cpu_us_per_datagram=echoed and ticks * 1e6 / clk_tck / echoed,
         reflector_schedstat_us_per_datagram=echoed and ns / 1e3 / echoed,
         reflector_ctx_switches_per_datagram=echoed and ctx / echoed)
print(json.dumps(d))
PY
   done
  done
done

python3 - "$rows" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
med = lambda xs: statistics.median(xs) if xs else float("nan")
print("| peers | reflector | µs CPU / echoed datagram (median; runs) | echoed / s | loss | RTT p50 / p99 µs | ctx switches / datagram |")
print("|---|---|---|---|---|---|---|")
by = {}
for r in rows:
    by.setdefault((r["peers"], r["shape"]), []).append(r)
for (peers, shape), rs in sorted(by.items()):
    us = [r["reflector_cpu_us_per_datagram"] for r in rs if r["reflector_cpu_us_per_datagram"] is not None]
    runs = ", ".join(f"{u:.1f}" for u in us)
    pps = med([r["echoed"] / r["seconds"] for r in rs])
    loss = max(r["loss"] for r in rs)
    p50, p99 = med([r["rtt_us_p50"] for r in rs]), med([r["rtt_us_p99"] for r in rs])
    ctx = med([r["reflector_ctx_switches_per_datagram"] for r in rs if r["reflector_ctx_switches_per_datagram"] is not None])
    print(f"| {peers} | {shape} | **{med(us):.1f}** ({runs}) | {pps:.0f} | {loss*100:.3f}% | {p50:.0f} / {p99:.0f} | {ctx:.2f} |")
PY
