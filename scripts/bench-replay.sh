#!/usr/bin/env bash
# Replay benchmark for BENCHMARKS.md: record 10 s of the load generator's clip at
# 320x240 and 640x480 (--record), then on each file: vpxdec (decode only), `face-echo
# replay` (decode only: admission + libvpx), and replay --detect with both models.
#   scripts/bench-replay.sh   (compare best runs: the VM is shared)
set -euo pipefail
cd "$(dirname "$0")/.."
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$(scripts/onnxruntime.sh)}"
source scripts/bench-lib.sh
command -v vpxdec >/dev/null || { echo "bench: vpxdec missing (apt-get install vpx-tools)" >&2; exit 1; }

for size in 320x240 640x480; do
  dir="target/bench/record-$size"
  rm -rf "$dir"
  start_server "target/bench/record-$size.log" --record "$dir"
  loadgen_json "record" --size "$size" --seconds 10 --bitrate "$([ "$size" = 320x240 ] && echo 500 || echo 1200)" >/dev/null
  stop_server
  ivf="$(ls "$dir"/*.ivf | head -1)"
  echo "== $size: $("$bin" record-stats "$dir")"
  # vpxdec: "300 decoded frames/300 showed frames in 123456 us (2430.00 fps)"
  for run in 1 2 3 4 5; do
    echo "vpxdec:        $(vpxdec --noblit --summary --threads=1 "$ivf" 2>&1 | tail -1)"
  done
  for run in 1 2 3 4 5; do
    "$bin" replay --quiet --json "$ivf" \
      | python3 -c "import json,sys; d=json.load(sys.stdin); print(f\"replay:        {d['frames_decoded']} frames, {d['fps']:.0f} frames/s, decode p50 {d['decode_us']['p50']} us p99 {d['decode_us']['p99']} us\")"
  done
  for model in back front; do
    "$bin" replay --quiet --json --detect --detect-model "$model" "$ivf" \
      | python3 -c "import json,sys; d=json.load(sys.stdin); t=d['detect']; print(f\"replay --detect $model: {d['frames_decoded']} frames, {d['fps']:.1f} frames/s, decode p50 {d['decode_us']['p50']} us, detect p50 {t['detect_us']['p50']} us p99 {t['detect_us']['p99']} us, faces/frame {t['faces_per_frame']:.2f}\")"
  done
done
