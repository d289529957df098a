#!/usr/bin/env bash
# Per echoed packet, figures this VM's noise cannot blur: heap allocations, and
# instructions by stage under callgrind, of the media plane in-process (benches/plane.rs:
# a browser-shaped SRTP stream routed through the mux as its reader would).
#
#   scripts/bench-plane.sh [PACKETS]    (default 5000 under callgrind)
#
# Instructions count user space only (callgrind); the syscalls themselves are the floor
# (scripts/bench-floor.sh). Stages are the inclusive cost of their functions:
#   demux      the mux's routing of a datagram (dispatch) less the plane's share
#   unprotect  SRTP in place (rtc-srtp decrypt_rtp_in_place)
#   feedback   reception stats, missing packets, transport-wide arrivals (note_arrival),
#              and the reports, NACKs and transport-cc that fell due (run_timers)
#   protect    SRTP of the echo in place (encrypt_rtp_in_place)
#   send       the echo's hand-off to the socket (send_now) and the batch's sendmsg,
#              user-space side (what routing costs beyond dispatching)
#   the rest   header reading, the echo's bookkeeping, counters
# Installs valgrind if missing. Results: target/bench/plane.callgrind, a table on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
packets="${1:-5000}"

if ! command -v valgrind >/dev/null; then
  echo "bench: installing valgrind" >&2
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q valgrind >&2
fi
mkdir -p target/bench
exe=$(cargo bench --bench plane --no-run --message-format=json 2>/dev/null \
  | sed -n 's/.*"executable":"\([^"]*plane[^"]*\)".*/\1/p' | tail -1)
[ -x "$exe" ] || { echo "bench: no plane bench binary" >&2; exit 1; }

echo "allocations: $("$exe" 20000)"
out=target/bench/plane.callgrind
valgrind --tool=callgrind --toggle-collect='plane::measure' --callgrind-out-file="$out" "$exe" "$packets" \
  >/dev/null 2>target/bench/plane.valgrind.log
annotated=$(callgrind_annotate --inclusive=yes --threshold=100 "$out")
total=$(sed -n 's/^summary: *//p' "$out" | tr -d ,)
# inclusive NAME: the inclusive instruction count of the first function matching NAME.
inclusive() { echo "$annotated" | grep -m1 -- "$1" | awk '{ gsub(",", "", $1); print $1 }' || true; }
dispatch=$(inclusive 'udp_mux::Shared::dispatch')
hook=$(inclusive 'MediaPlane as face_echo::media::udp_mux::MediaHook>::on_datagram')
route=$(inclusive 'udp_mux::MuxSender::route')
unprotect=$(inclusive 'decrypt_rtp_in_place')
arrival=$(inclusive 'plane::note_arrival')
timers=$(inclusive 'MediaPlane::run_timers')
protect=$(inclusive 'encrypt_rtp_in_place')
send_now=$(inclusive 'udp_mux::Shared::send_now')
awk -v n="$packets" -v total="$total" -v dispatch="${dispatch:-0}" -v hook="${hook:-0}" \
    -v unprotect="${unprotect:-0}" -v arrival="${arrival:-0}" -v timers="${timers:-0}" \
    -v protect="${protect:-0}" -v send_now="${send_now:-0}" -v route="${route:-0}" 'BEGIN {
  flush = route - dispatch
  printf "| stage | instructions per echoed packet | share |\n|---|---|---|\n"
  row("demux", dispatch - hook)
  row("unprotect", unprotect)
  row("feedback", arrival + timers)
  row("protect", protect)
  row("send", send_now + flush)
  row("the rest", total - (dispatch - hook) - unprotect - arrival - timers - protect - send_now - flush)
  printf "| **all** | **%.0f** | 100 %% |\n", total / n
}
function row(name, count) { printf "| %s | %.0f | %.0f %% |\n", name, count / n, 100 * count / total }'
