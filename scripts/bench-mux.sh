#!/usr/bin/env bash
# One shared UDP port (--udp-port PORT, the mux) vs a port per session (--udp-port
# MIN-MAX), release server, 320x240@30 publishers from `face-echo loadgen`, side by
# side in one go. Each peer count runs ROUNDS times, the two modes alternating (and
# swapping which goes first), so both see the same machine; the table shows medians.
#   scripts/bench-mux.sh [SECONDS] [ROUNDS] [PEERS...]     (default: 10 s; 3; 1 8 32 64)
# Results: target/bench/mux.jsonl and a markdown table on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
rounds="${2:-3}"
shift 2 || true
peers=("$@")
[ ${#peers[@]} -gt 0 ] || peers=(1 8 32 64)

. scripts/bench-lib.sh
out=target/bench/mux.jsonl
: > "$out"
udp=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

for n in "${peers[@]}"; do
  for round in $(seq "$rounds"); do
    modes=(shared per-session)
    [ $((round % 2)) -eq 0 ] && modes=(per-session shared)
    for mode in "${modes[@]}"; do
      case "$mode" in
        shared) ports="$udp" ;;
        per-session) ports="40000-40200" ;;
      esac
      start_server "target/bench/server-mux-$mode-$n.log" --max-sessions 256 --udp-port "$ports"
      echo "bench: $mode, $n peers, round $round, ${seconds}s" >&2
      loadgen_json "$mode" --peers "$n" --seconds "$seconds" >> "$out"
      stop_server
    done
  done
done

python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def us_per_packet(r):
    # Server CPU-seconds over the run, per echoed packet, in microseconds.
    if r['server_cpu_percent'] is None or not r['packets_echoed']:
        return None
    return r['server_cpu_percent'] / 100 * r['seconds'] / r['packets_echoed'] * 1e6
groups = {}
for r in rows:
    groups.setdefault((r['peers'], r['mode']), []).append(r)
med = lambda xs: statistics.median(xs) if xs else None
def summary(rs):
    return {
        'us': med([v for v in map(us_per_packet, rs) if v is not None]),
        'p99': med([r['rtt_ms_p99'] for r in rs if r['rtt_ms_p99'] is not None]),
        'p50': med([r['rtt_ms_p50'] for r in rs if r['rtt_ms_p50'] is not None]),
        'loss': med([r['loss'] for r in rs]),
        'fps': med([r['echoed_fps'] for r in rs]),
        'n': len(rs),
    }
f = lambda v, fmt="{:.1f}": "–" if v is None else fmt.format(v)
print("| peers | UDP | runs | echoed fps | loss | RTT p50 / p99 ms | server CPU µs per echoed packet |")
print("|---|---|---|---|---|---|---|")
table = {}
for (p, mode) in sorted(groups, key=lambda k: (k[0], k[1] != 'per-session')):
    s = table[(p, mode)] = summary(groups[(p, mode)])
    print(f"| {p} | {mode} | {s['n']} | {f(s['fps'])} | {s['loss']*100:.3f}% | {f(s['p50'])} / {f(s['p99'])} | {f(s['us'], '{:.2f}')} |")
print()
print("| peers | shared ÷ per-session: CPU per packet | RTT p99 |")
print("|---|---|---|")
for p in sorted({k[0] for k in table}):
    a, b = table.get((p, 'shared')), table.get((p, 'per-session'))
    if a and b and a['us'] and b['us'] and a['p99'] and b['p99']:
        print(f"| {p} | {a['us'] / b['us']:.3f} | {a['p99'] / b['p99']:.3f} |")
PY
