#!/usr/bin/env bash
# Heap allocations per echoed packet of the whole server process, by thread, in the
# steady state: the server runs under scripts/malloc-count.c (LD_PRELOAD), the load
# generator publishes, and the counts are read twice inside the load window (SIGUSR2)
# and divided by the packets echoed in between (/metrics).
#
#   scripts/bench-alloc.sh [-b BASELINE_BIN] [-w SECONDS] [-s SECONDS] [PEERS...]
#
#   -b  also an earlier binary, same load, run before the current one
#   -w  seconds of load before the first reading (default 16: every stream's NACK history,
#       512 packets, has filled its places once at 320x240@30)
#   -s  seconds between the two readings (default 10)
#   PEERS  load-generator publishers, 320x240@30 (default: 16)
# Both servers run with default flags. Results: target/bench/alloc.jsonl, a table on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

base=""
warm_up=16
seconds=10
while getopts "b:w:s:" opt; do
  case "$opt" in
    b) base="$OPTARG" ;;
    w) warm_up="$OPTARG" ;;
    s) seconds="$OPTARG" ;;
    *) sed -n 2,14p "$0" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
peers=("$@")
[ ${#peers[@]} -gt 0 ] || peers=(16)

. scripts/bench-lib.sh
new="$bin"
shim=target/bench/malloc-count.so
cc -O2 -Wall -Wextra -shared -fPIC -o "$shim" scripts/malloc-count.c
out=target/bench/alloc.jsonl
: > "$out"
builds=(new)
[ -z "$base" ] || builds=(base new)
forwarded() { curl -s "http://127.0.0.1:$port/metrics" | awk '/^face_echo_rtp_packets_forwarded_total/ { print $2 }'; }

for n in "${peers[@]}"; do
  for build in "${builds[@]}"; do
    server_bin="$new"
    [ "$build" = new ] || server_bin="$base"
    log="target/bench/alloc-$build-$n.log"
    port=$(free_port)
    LD_PRELOAD="$PWD/$shim" RUST_LOG=error "$server_bin" --listen "127.0.0.1:$port" --max-sessions 512 2> "$log" &
    server=$!
    for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
    echo "bench: $build server, $n peers" >&2
    "$new" loadgen --url "ws://127.0.0.1:$port/ws" --json --peers "$n" --seconds "$((warm_up + seconds + 4))" \
      > "target/bench/alloc-$build-$n.json" 2>/dev/null &
    loadgen=$!
    until [ "$(forwarded)" -gt $((n * 10)) ] 2>/dev/null; do sleep 0.2; done
    sleep "$warm_up"
    p0=$(forwarded); kill -USR2 "$server"; sleep "$seconds"
    p1=$(forwarded); kill -USR2 "$server"
    wait "$loadgen" || true
    stop_server
    python3 - "$log" "$build" "$n" "$((p1 - p0))" <<'PY' | tee -a "$out" >/dev/null
import json, sys
log, build, peers, packets = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
readings, current = [], {}
for line in open(log, errors="replace"):
    if line.startswith("malloc-count "):
        _, name, count = line.split()
        current[name] = current.get(name, 0) + int(count)
        if name == "total":
            readings.append(current)
            current = {}
first, second = readings[0], readings[-1]
per_thread = {name: (second.get(name, 0) - first.get(name, 0)) / packets for name in second if name != "total"}
print(json.dumps({"build": build, "peers": peers, "packets": packets,
                  "per_packet": (second["total"] - first["total"]) / packets,
                  "by_thread": {k: round(v, 3) for k, v in sorted(per_thread.items(), key=lambda kv: -kv[1]) if v > 0.0005}}))
PY
  done
done

python3 - "$out" <<'PY'
import json, sys
print("| peers | build | heap allocations per echoed packet | by thread | packets counted |")
print("|---|---|---|---|---|")
for line in open(sys.argv[1]):
    r = json.loads(line)
    threads = ", ".join(f"{k} {v:.2f}" for k, v in list(r["by_thread"].items())[:4])
    print(f"| {r['peers']} | {r['build']} | **{r['per_packet']:.2f}** | {threads} | {r['packets']} |")
PY
