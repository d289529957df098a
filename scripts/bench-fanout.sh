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

cargo build --release -q
bin=target/release/face-echo
mkdir -p target/bench
out=target/bench/fanout.jsonl
: > "$out"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

for k in 0 "${counts[@]}"; do
  port=$(free_port)
  RUST_LOG=warn "$bin" --listen "127.0.0.1:$port" --max-viewers 64 2> "target/bench/server-fanout-$k.log" &
  server=$!
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
  echo "bench: 1 publisher, $k viewers, ${seconds}s" >&2
  "$bin" loadgen --url "ws://127.0.0.1:$port/ws" --peers 1 --viewers-per-peer "$k" --seconds "$seconds" --json 2>/dev/null \
    | python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin)))' >> "$out"
  kill -TERM "$server"; wait "$server" || true
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
