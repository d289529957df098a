#!/usr/bin/env bash
# What connected, silent sessions cost: the server's CPU and wake-ups with N
# load-generator publishers connected and sending nothing (`loadgen --idle`), against
# the same server holding no session, in the same run (empty window first, then idle).
#
#   scripts/bench-idle.sh [-b BASELINE_BIN] [-r REPEATS] [-s SECONDS] [SESSIONS]
#
#   -b  also another server binary, interleaved with this one (A/B); the load is this one's
#   -r  repeats (default 3), each on a fresh server; medians quoted
#   -s  seconds per measured window (default 20)
#   SESSIONS  idle publishers (default 64)
#
# CPU = the server's threads' run time (/proc/PID/task/*/schedstat, ns: an idle server
# runs for a few clock ticks a second, too few to count in utime+stime); wake-ups =
# their context switches (voluntary + nonvoluntary), both by thread name. The server runs
# at default flags plus --max-sessions 512. Results: target/bench/idle.jsonl, a table on
# stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

base=""
repeats=3
seconds=20
while getopts "b:r:s:" opt; do
  case "$opt" in
    b) base="$OPTARG" ;;
    r) repeats="$OPTARG" ;;
    s) seconds="$OPTARG" ;;
    *) sed -n 2,16p "$0" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
sessions="${1:-64}"

. scripts/bench-lib.sh
new="$bin"
builds=(new)
[ -z "$base" ] || builds=(base new)
out=target/bench/idle.jsonl
: > "$out"

# threads PID: {thread name: [run ns, context switches]} of every thread of PID now.
threads() {
  python3 - "$1" <<'PY'
import json, os, sys
pid, by_name = sys.argv[1], {}
for tid in os.listdir(f"/proc/{pid}/task"):
    try:
        base = f"/proc/{pid}/task/{tid}"
        name = open(f"{base}/comm").read().strip()
        ns = int(open(f"{base}/schedstat").read().split()[0])
        status = dict(line.split(":", 1) for line in open(f"{base}/status"))
        switches = int(status["voluntary_ctxt_switches"]) + int(status["nonvoluntary_ctxt_switches"])
    except (FileNotFoundError, ProcessLookupError):
        continue
    ns_, sw_ = by_name.get(name, (0, 0))
    by_name[name] = (ns_ + ns, sw_ + switches)
print(json.dumps(by_name))
PY
}

active() { curl -s "http://127.0.0.1:$port/metrics" | awk '/^face_echo_sessions_active / { print $2 }'; }

for repeat in $(seq "$repeats"); do for build in "${builds[@]}"; do
  bin="$new"
  [ "$build" = new ] || bin="$base"
  start_server "target/bench/idle-$build-$repeat.log" --max-sessions 512
  sleep 2
  e0=$(threads "$server"); sleep "$seconds"; e1=$(threads "$server")
  echo "bench: repeat $repeat, $build server, $sessions idle sessions" >&2
  "$new" loadgen --url "ws://127.0.0.1:$port/ws" --json --idle --peers "$sessions" --seconds "$((seconds + 60))" \
    > "target/bench/idle-loadgen-$build-$repeat.json" 2>/dev/null &
  loadgen=$!
  until [ "$(active)" = "$sessions" ]; do sleep 0.5; done
  sleep 5 # past connecting: nominations, DTLS, the first keepalives
  i0=$(threads "$server"); sleep "$seconds"; i1=$(threads "$server")
  [ "$(active)" = "$sessions" ] || { echo "bench: sessions dropped while idle" >&2; exit 1; }
  kill -INT "$loadgen" 2>/dev/null || true
  wait "$loadgen" || true
  stop_server
  python3 - "$build" "$repeat" "$sessions" "$seconds" "$e0" "$e1" "$i0" "$i1" <<'PY' | tee -a "$out" >/dev/null
import json, sys
build, repeat, sessions, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
e0, e1, i0, i1 = (json.loads(a) for a in sys.argv[5:9])
def window(a, b):
    by = {n: ((b[n][0] - a.get(n, (0, 0))[0]) / seconds / 1e9 * 100, (b[n][1] - a.get(n, (0, 0))[1]) / seconds) for n in b}
    return {"cpu_percent": sum(v[0] for v in by.values()), "wakeups_per_s": sum(v[1] for v in by.values()),
            "by_thread": {n: [round(c, 3), round(w, 1)] for n, (c, w) in sorted(by.items(), key=lambda kv: -kv[1][1]) if w > 0}}
empty, idle = window(e0, e1), window(i0, i1)
print(json.dumps({"build": build, "repeat": repeat, "sessions": sessions, "seconds": seconds, "empty": empty, "idle": idle,
                  "per_session_cpu_percent": (idle["cpu_percent"] - empty["cpu_percent"]) / sessions,
                  "per_session_wakeups_per_s": (idle["wakeups_per_s"] - empty["wakeups_per_s"]) / sessions}))
PY
done; done

python3 - "$out" <<'PY'
import json, statistics, sys
every = [json.loads(line) for line in open(sys.argv[1])]
n = every[0]["sessions"]
print("| server | sessions | CPU, % of a core (median; runs) | wake-ups / s (median; runs) |")
print("|---|---|---|---|")
for build in dict.fromkeys(r["build"] for r in every):
    runs = [r for r in every if r["build"] == build]
    def cell(f, fmt):
        return f"**{fmt.format(statistics.median(f(r) for r in runs))}** ({', '.join(fmt.format(f(r)) for r in runs)})"
    print(f"| {build} | none | {cell(lambda r: r['empty']['cpu_percent'], '{:.3f}')} | {cell(lambda r: r['empty']['wakeups_per_s'], '{:.1f}')} |")
    print(f"| {build} | {n} idle | {cell(lambda r: r['idle']['cpu_percent'], '{:.3f}')} | {cell(lambda r: r['idle']['wakeups_per_s'], '{:.1f}')} |")
    print(f"| {build} | per idle session, over none | {cell(lambda r: r['per_session_cpu_percent'], '{:.4f}')} | {cell(lambda r: r['per_session_wakeups_per_s'], '{:.2f}')} |")
for build in dict.fromkeys(r["build"] for r in every):
    last = [r for r in every if r["build"] == build][-1]
    print(f"\n{build}: [% of a core, wake-ups / s] by thread, idle, last run: {json.dumps(last['idle']['by_thread'])}")
PY
