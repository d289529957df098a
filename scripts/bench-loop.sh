#!/usr/bin/env bash
# The loop's latency for BENCHMARKS.md: how old a detection is when it leaves the
# server (from its frame's last packet) against the model's own run time, per model
# and load. The load generator's publishers open their `face-echo` data channels
# (--results); the server runs --detect at its default 5 fps per session.
#   scripts/bench-loop.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-8}"
export ORT_DYLIB_PATH="$(scripts/onnxruntime.sh)"
source scripts/bench-lib.sh
printf '%-6s %5s %9s %12s %12s %14s %6s\n' model peers results "age p50 ms" "age p99 ms" "model p50 ms" ratio
for model in back front; do
  start_server "target/bench/loop-$model.log" --detect --detect-model "$model" --max-sessions-per-ip 64
  for peers in 1 4 8; do
    loadgen_json "$model" --peers "$peers" --seconds "$seconds" --results | python3 -c '
import json, sys
d = json.load(sys.stdin)
age, model = d["result_age_ms_p50"], d["result_infer_ms_p50"]
print("%-6s %5d %9d %12.1f %12.1f %14.1f %6.2f" % (d["mode"], d["peers"], d["results_received"], age,
      d["result_age_ms_p99"], model, age / model))'
  done
  stop_server
done
