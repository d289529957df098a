#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time (default 20 s each; CI uses that).
# Longer: scripts/fuzz.sh 3600   One target: scripts/fuzz.sh 600 tap_pipeline
# Memory is a finding too: an input that makes the process exceed FUZZ_RSS_MB (512) of
# RSS, or ask for more than FUZZ_MALLOC_MB (256) in one allocation, fails the run
# (libFuzzer writes it to artifacts/ as oom-*). A 4096x2160 keyframe, the tap's
# largest, costs libvpx ~60 MB.
# Stable Rust: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its -Z (sanitizer) flags.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-20}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(tap_pipeline signaling media_plane mux_demux)

command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz

export RUSTC_BOOTSTRAP=1
# Build first, out loud: a target that does not build is a failure, not a quiet run.
for target in "${targets[@]}"; do
  cargo fuzz build -O "$target"
done
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target"
  echo "fuzz: $target for ${seconds}s"
  # New inputs go to corpus/ (ignored by git); seeds/ holds real VP8 and real frames.
  cargo fuzz run -O "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb="${FUZZ_RSS_MB:-512}" -malloc_limit_mb="${FUZZ_MALLOC_MB:-256}" \
    -print_final_stats=1 2>&1 | grep -E "^Done|ERROR|panicked|SUMMARY|stat::number_of_executed_units" || true
  # cargo fuzz exits non-zero and leaves artifacts/ on a crash or an out-of-memory.
  if compgen -G "artifacts/$target/*" >/dev/null; then
    echo "fuzz: $target found a crash: fuzz/artifacts/$target/" >&2
    exit 1
  fi
done
echo "fuzz: no crashes"
