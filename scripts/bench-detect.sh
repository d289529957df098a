#!/usr/bin/env bash
# Detection benchmark for BENCHMARKS.md: BlazeFace through our `ort` path (criterion,
# benches/detect.rs) and through onnxruntime-python, same model files, same ONNX Runtime
# version, one intra-op thread each, back to back in one run.
#   scripts/bench-detect.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export ORT_DYLIB_PATH="$(scripts/onnxruntime.sh)"
py="$(scripts/onnxruntime.sh python)"
echo "== Rust: ort $(grep -m1 -A1 'name = "ort"' Cargo.lock | tail -1 | cut -d'"' -f2), $ORT_DYLIB_PATH"
cargo bench -q --bench detect -- --noplot 2>&1 | grep -E "^detect_|time:"
echo "== Python: onnxruntime"
"$py" tests/detect/reference.py --time-only
