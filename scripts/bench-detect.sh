#!/usr/bin/env bash
# Detection benchmark for BENCHMARKS.md: BlazeFace through our `ort` path (criterion,
# benches/detect.rs) and through onnxruntime-python, same model files, same ONNX Runtime
# version, one intra-op thread each.
#   scripts/bench-detect.sh [ROUNDS]
# First the whole Rust bench once (the input from I420 against the old RGB path, the
# model, decode), then ROUNDS (default 5) rounds of Rust model run, Python model run,
# back to back, each side's median, and the ratio per round: the machine's drift hits
# both sides of a round alike.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-5}"
export ORT_DYLIB_PATH="$(scripts/onnxruntime.sh)"
py="$(scripts/onnxruntime.sh python)"
echo "== Rust: ort $(grep -m1 -A1 'name = "ort"' Cargo.lock | tail -1 | cut -d'"' -f2), $ORT_DYLIB_PATH"
cargo bench -q --bench detect -- --noplot 2>&1 | grep -E "^detect_|time:"

median_ms() { # criterion's median estimate of one bench, in ms
  python3 -c "import json,sys; print('%.3f' % (json.load(open(sys.argv[1]))['median']['point_estimate'] / 1e6))" \
    "target/criterion/$1/model_1_thread/new/estimates.json"
}
echo "== model run, median ms: Rust (criterion) vs Python (median of 50 InferenceSession.run), $rounds rounds"
printf '%-6s %-6s %9s %9s %7s\n' round model rust python ratio
for round in $(seq "$rounds"); do
  cargo bench -q --bench detect -- --noplot model_1_thread >/dev/null 2>&1
  python_out="$("$py" tests/detect/reference.py --time-only)"
  for model in back front; do
    group=$([ "$model" = back ] && echo detect_back_256 || echo detect_front_128)
    rust="$(median_ms "$group")"
    python="$(echo "$python_out" | awk -v m="$model" '$1 == m { print $3 }')"
    printf '%-6s %-6s %9s %9s %7.3f\n' "$round" "$model" "$rust" "$python" "$(python3 -c "print($rust / $python)")"
  done
done
