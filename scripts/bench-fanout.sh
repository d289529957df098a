#!/usr/bin/env bash
# Fan-out benchmark for BENCHMARKS.md: one publisher (320x240@30) watched by K viewers,
# release server, K = 0 (baseline, echo only) and each of the given counts, one run each.
#   scripts/bench-fanout.sh [SECONDS] [VIEWERS...]     (default: 10 s; 1 8 32)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
shift || true
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(1 8 32)

. scripts/bench-lib.sh
out=target/bench/fanout.jsonl
: > "$out"

for k in 0 "${counts[@]}"; do
  start_server "target/bench/server-fanout-$k.log" --max-viewers 64 --max-sessions-per-ip 64
  echo "bench: 1 publisher, $k viewers, ${seconds}s" >&2
  loadgen_json fanout --peers 1 --viewers-per-peer "$k" --seconds "$seconds" >> "$out"
  stop_server
done

python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| viewers | echo loss | echo RTT p50 / p99 ms | viewer packets | viewer loss | server CPU (% core) | per viewer | server RSS max MB | loadgen CPU |")
print("|---|---|---|---|---|---|---|---|---|")
base = rows[0]["server_cpu_percent"] or 0
for r in rows:
    v = r["viewers"]
    per = "–" if not v else f"{(r['server_cpu_percent'] - base) / v:.2f}"
    print(f"| {v} | {r['loss']*100:.3f}% | {r['rtt_ms_p50']:.1f} / {r['rtt_ms_p99']:.1f} | {r['viewer_packets']} | {r['viewer_loss']*100:.3f}% | "
          f"{r['server_cpu_percent']:.1f} | {per} | {r['server_rss_mb_max']:.1f} | {r['client_cpu_percent']:.0f}% |")
PY
