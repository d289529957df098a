#!/usr/bin/env bash
# --cluster costs for BENCHMARKS.md, each beside a baseline from the same run:
# redirect vs local watch lookup, heartbeat cost per node (S = 0, 100, 1000
# sessions), and what one redis-server holds (N nodes x S sessions).
# Needs redis-server (scripts/deps.sh test); starts its own on a free port.
#   scripts/bench-cluster.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v redis-server >/dev/null || { echo "bench-cluster: redis-server not found (scripts/deps.sh test)" >&2; exit 1; }
mkdir -p target/bench
RUST_LOG=error cargo bench --bench cluster 2>/dev/null | tee target/bench/cluster.md
