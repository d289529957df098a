# Shared by the bench-*.sh scripts (sourced): the release binary, and a server on a
# free loopback port for one run. BENCH_BIN=path: use that binary, skip the build.
if [ -n "${BENCH_BIN:-}" ]; then
  bin="$BENCH_BIN"
else
  cargo build --release -q
  bin=target/release/face-echo
fi
mkdir -p target/bench

# free_udp_port: a UDP port free on 127.0.0.1 a moment ago (for --udp-port).
free_udp_port() {
  python3 -c 'import socket; s=socket.socket(type=socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# free_port: a port free on 127.0.0.1 for TCP and UDP a moment ago (the server's media
# takes its HTTP port's number, on UDP).
free_port() {
  python3 -c '
import socket
while True:
    t = socket.socket(); t.bind(("127.0.0.1", 0)); port = t.getsockname()[1]
    try:
        socket.socket(type=socket.SOCK_DGRAM).bind(("127.0.0.1", port)); break
    except OSError:
        pass
print(port)'
}

# start_server LOG ARGS...: starts the release server with ARGS on a free port, waits
# until it answers; sets $port and $server (its pid).
start_server() {
  local log="$1"
  shift
  port=$(free_port)
  RUST_LOG=warn "$bin" --listen "127.0.0.1:$port" "$@" 2> "$log" &
  server=$!
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && return; sleep 0.1; done
  echo "bench: the server did not start (log: $log)" >&2
  return 1
}

# loadgen_json MODE LOADGEN-ARGS...: one loadgen run against $port, its summary as
# one JSON line with "mode" added.
loadgen_json() {
  local mode="$1"
  shift
  "$bin" loadgen --url "ws://127.0.0.1:$port/ws" --json "$@" 2>/dev/null \
    | python3 -c "import json,sys; d=json.load(sys.stdin); d['mode']='$mode'; print(json.dumps(d))"
}

stop_server() {
  kill -TERM "$server"
  wait "$server" || true
}
