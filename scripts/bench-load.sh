#!/usr/bin/env bash
# Load benchmark for BENCHMARKS.md: the release server, echo only vs --decode-tap,
# at several peer counts (320x240@30), one loadgen run each, side by side in one go.
#   scripts/bench-load.sh [SECONDS] [PEERS...]     (default: 10 s; 1 8 32)
# Results: target/bench/load.jsonl and a markdown table on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
shift || true
peers=("$@")
[ ${#peers[@]} -gt 0 ] || peers=(1 8 32)

. scripts/bench-lib.sh
out=target/bench/load.jsonl
: > "$out"

for n in "${peers[@]}"; do
  for mode in echo tap; do
    args=(--max-sessions 256)
    [ "$mode" = tap ] && args+=(--decode-tap)
    start_server "target/bench/server-$mode-$n.log" "${args[@]}"
    echo "bench: $mode, $n peers, ${seconds}s" >&2
    loadgen_json "$mode" --peers "$n" --seconds "$seconds" >> "$out"
    tap=$(curl -s "http://127.0.0.1:$port/metrics" | grep -E '^face_echo_tap_(frames_decoded|packets_dropped)_total' | tr '\n' ' ')
    echo "bench:   server tap counters: ${tap:-none}" >&2
    stop_server
  done
done

python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
f = lambda v, fmt="{:.1f}": "–" if v is None else fmt.format(v)
print("| peers | mode | echoed fps | loss | RTT p50 / p99 ms | server CPU (% core) | per peer | server RSS MB (start → max) | loadgen CPU |")
print("|---|---|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['peers']} | {r['mode']} | {r['echoed_fps']:.1f} | {r['loss']*100:.3f}% | {f(r['rtt_ms_p50'])} / {f(r['rtt_ms_p99'])} | "
          f"{f(r['server_cpu_percent'])} | {f(r['server_cpu_percent_per_peer'], '{:.2f}')} | {f(r['server_rss_mb_start'])} → {f(r['server_rss_mb_max'])} | {r['client_cpu_percent']:.0f}% |")
by = {(r['peers'], r['mode']): r for r in rows}
print()
print("| peers | tap-on ÷ tap-off echoed fps |")
print("|---|---|")
for p in sorted({r['peers'] for r in rows}):
    if (p, 'echo') in by and (p, 'tap') in by and by[(p, 'echo')]['echoed_fps']:
        print(f"| {p} | {by[(p, 'tap')]['echoed_fps'] / by[(p, 'echo')]['echoed_fps']:.3f} |")
PY
