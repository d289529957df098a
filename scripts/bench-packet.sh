#!/usr/bin/env bash
# Server CPU per echoed RTP packet, A/B against a baseline binary in the same run.
#
#   scripts/bench-packet.sh [-b BASELINE_BIN] [-l] [-u] [-r REPEATS] [-s SECONDS] [-p] [PEERS...]
#
#   -b  a copy of an earlier release binary (e.g. `cp target/release/face-echo /tmp/face-echo-base`);
#       without it only the current build is measured
#   -l  A/B the load generator instead: BASELINE_BIN runs the load in the base runs, and the
#       server is the current build in every run (loadgen CPU per peer is the figure to read)
#   -u  both servers on a shared UDP port of their own (`--udp-port`, a free one per run)
#       instead of the default (the --listen port's number)
#   -r  repeats (default 3): runs are interleaved base, new, base, new, … and medians quoted
#   -s  seconds of load per run (default 10)
#   -p  also profile each server once (first repeat): top symbols (perf record), and syscalls and
#       context switches per echoed packet (perf stat), over the same window of the load
#   PEERS  load-generator publishers, 320x240@30 (default: 16 32)
#
# Per-packet CPU = the server's utime+stime (/proc/PID/stat) over the load window ÷ echoed
# packets; the load generator (always the current build, so the client is the same for both
# servers; with -l the server is the same and the client differs) reports its own CPU too. Results: target/bench/packet.jsonl, tables on stdout,
# a chart of CPU per packet against peers in target/bench/packet.svg (scripts/plot-svg.py).
set -euo pipefail
cd "$(dirname "$0")/.."

base=""
repeats=3
seconds=10
profile=0
ab_loadgen=0
shared_port=0
while getopts "b:lur:s:p" opt; do
  case "$opt" in
    b) base="$OPTARG" ;;
    l) ab_loadgen=1 ;;
    u) shared_port=1 ;;
    r) repeats="$OPTARG" ;;
    s) seconds="$OPTARG" ;;
    p) profile=1 ;;
    *) sed -n 2,19p "$0" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
peers=("$@")
[ ${#peers[@]} -gt 0 ] || peers=(16 32)

. scripts/bench-lib.sh
[ -z "${BENCH_BIN:-}" ] || bin="$BENCH_BIN"
new="$bin"
out=target/bench/packet.jsonl
: > "$out"
# Profiles of earlier runs would be reported with these.
[ "$profile" = 0 ] || rm -f target/bench/perf-*.data target/bench/syscalls-*.csv
builds=(new)
syscall_events=syscalls:sys_enter_sendmsg,syscalls:sys_enter_recvmmsg,syscalls:sys_enter_epoll_wait
syscall_events+=,syscalls:sys_enter_futex,context-switches
# forwarded: RTP packets the server on $port has echoed so far.
forwarded() { curl -s "http://127.0.0.1:$port/metrics" | awk '/^face_echo_rtp_packets_forwarded_total/ { print $2 }'; }
[ -n "$base" ] && builds=(base new)

for r in $(seq "$repeats"); do
  for n in "${peers[@]}"; do
    for build in "${builds[@]}"; do
      server_bin="$new"
      loadgen_bin="$new"
      if [ "$build" = base ] && [ "$ab_loadgen" = 1 ]; then
        loadgen_bin="$base"
      elif [ "$build" = base ]; then
        server_bin="$base"
      fi
      udp=()
      [ "$shared_port" = 0 ] || udp=(--udp-port "$(free_udp_port)")
      bin="$server_bin" start_server "target/bench/packet-$build-$n.log" --max-sessions 512 "${udp[@]}"
      echo "bench: repeat $r, $build server, $n peers, ${seconds}s" >&2
      perf_pid=""
      if [ "$profile" = 1 ] && [ "$r" = 1 ]; then
        # Only the load window, not connecting (DTLS handshakes): from the first echoes on.
        # Also syscalls and context switches per echoed packet over the same window.
        (until [ "$(forwarded)" -gt 100 ] 2>/dev/null; do sleep 0.2; done
         before=$(forwarded)
         perf record -q -F 1999 -p "$server" -o "target/bench/perf-$build-$n.data" -- sleep "$((seconds / 2))" &
         perf stat -x, -o "target/bench/syscalls-$build-$n.csv" -p "$server" -e "$syscall_events" -- sleep "$((seconds / 2))"
         wait
         echo "packets,$(($(forwarded) - before))" >> "target/bench/syscalls-$build-$n.csv") >/dev/null 2>&1 &
        perf_pid=$!
      fi
      "$loadgen_bin" loadgen --url "ws://127.0.0.1:$port/ws" --json --peers "$n" --seconds "$seconds" 2>/dev/null \
        | python3 -c "import json,sys; d=json.load(sys.stdin); d['build']='$build'; d['repeat']=$r; print(json.dumps(d))" \
        >> "$out"
      [ -z "$perf_pid" ] || wait "$perf_pid" || true
      stop_server
    done
  done
done

if [ "$profile" = 1 ]; then
  for f in target/bench/perf-*.data; do
    echo "## top symbols (self), $(basename "$f" .data)"
    perf report -i "$f" --no-children --sort dso,symbol --percent-limit 1 --stdio 2>/dev/null \
      | grep -E '^ +[0-9]' | cut -c1-160 | head -25 || true
  done
  echo "## per echoed packet, over the profiled window"
  for f in target/bench/syscalls-*.csv; do
    python3 - "$f" <<'PY'
import csv, sys
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 2 and r[0].replace(".", "").isdigit()]
packets = float(next(l.split(",")[1] for l in open(sys.argv[1]) if l.startswith("packets,")))
counts = " ".join(f"{r[2].split(':')[-1].replace('sys_enter_', '')} {float(r[0]) / packets:.2f}" for r in rows)
print(f"{sys.argv[1].split('/')[-1][9:-4]}: {counts} ({packets:.0f} packets)")
PY
  done
fi

python3 - "$out" "$ab_loadgen" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
med = lambda xs: statistics.median(xs) if xs else None
print("| peers | build | µs CPU / echoed packet (median; runs) | echoed packets / s | loss | RTT p50 / p99 ms | server CPU % / peer | loadgen CPU % / peer | loadgen ÷ server |")
print("|---|---|---|---|---|---|---|---|---|")
by = {}
for r in rows:
    by.setdefault((r["peers"], r["build"]), []).append(r)
for (peers, build), rs in sorted(by.items(), key=lambda kv: (kv[0][0], kv[0][1] != "base")):
    us = [r["server_cpu_us_per_packet"] for r in rs if r.get("server_cpu_us_per_packet")]
    pps = med([r["packets_echoed"] / r["seconds"] for r in rs])
    loss = max(r["loss"] for r in rs)
    p50, p99 = med([r["rtt_ms_p50"] for r in rs]), med([r["rtt_ms_p99"] for r in rs])
    client = med([r["client_cpu_percent"] / r["peers"] for r in rs])
    server = med([r["server_cpu_percent"] / r["peers"] for r in rs if r.get("server_cpu_percent")])
    client_ratio = med([r["client_cpu_percent"] / r["server_cpu_percent"] for r in rs if r.get("server_cpu_percent")])
    runs = ", ".join(f"{u:.1f}" for u in us)
    print(f"| {peers} | {build} | **{med(us):.1f}** ({runs}) | {pps:.0f} | {loss*100:.3f}% | {p50:.1f} / {p99:.1f} | {server:.2f} | {client:.2f} | {client_ratio:.2f} |")
peers = sorted({p for p, _ in by})
if any(b == "base" for _, b in by):
    print()
    # Without -l the servers differ: compare server CPU per packet; with -l the load
    # generators do: compare their CPU per peer.
    loadgen_ab = sys.argv[2] == "1"
    what = "loadgen CPU per peer" if loadgen_ab else "µs per packet"
    pick = (lambda r: r["client_cpu_percent"] / r["peers"]) if loadgen_ab else (lambda r: r["server_cpu_us_per_packet"])
    print(f"| peers | new ÷ base, {what} (median of per-repeat ratios) |")
    print("|---|---|")
    for p in peers:
        base = {r["repeat"]: pick(r) for r in by.get((p, "base"), [])}
        new = {r["repeat"]: pick(r) for r in by.get((p, "new"), [])}
        ratios = [new[k] / base[k] for k in base if k in new and base[k]]
        if ratios:
            print(f"| {p} | {med(ratios):.2f} ({', '.join(f'{x:.2f}' for x in ratios)}) |")
PY

# CPU per packet against peers says more than a table: target/bench/packet.svg.
python3 scripts/plot-svg.py "$out" target/bench/packet.svg --x peers --y server_cpu_us_per_packet \
  --series build --title "Server CPU per echoed packet (load generator, 320x240@30)" \
  --xlabel "publishers" --ylabel "µs CPU per echoed packet" && echo "bench: chart in target/bench/packet.svg" >&2
