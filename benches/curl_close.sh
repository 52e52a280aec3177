#!/usr/bin/env bash
# Client-first close under a CPU burner (BENCHMARKS.md, "Client-first close under a CPU
# burner"): 1,000 sequential `curl -H 'Connection: close'` from 127.0.0.21 against
# examples/server.rs on 127.0.0.20, with N busy-loop burners beside them; prints the
# server-side TIME_WAIT count read from the kernel and the server's own counters.
#
#   benches/curl_close.sh [BURNERS] [REQUESTS] [-- server flags...]
#   benches/curl_close.sh 1 1000
#   benches/curl_close.sh 0 1000 -- --plain
#
# One fresh server per run; every loop is bounded (REQUESTS curls, each with --max-time 5;
# burners end after 120 s at most).
set -euo pipefail
cd "$(dirname "$0")/.."
burners=${1:-0}
requests=${2:-1000}
shift $(( $# >= 2 ? 2 : $# )) || true
[ "${1:-}" = "--" ] && shift
command -v curl >/dev/null || { echo "curl is missing: skipped"; exit 0; }
command -v ss >/dev/null || { echo "ss (iproute2) is missing: skipped"; exit 0; }
cargo build --release --quiet --example server
out=$(mktemp)
target/release/examples/server --addr 127.0.0.20:0 "$@" >"$out" 2>/dev/null &
server=$!
pids=()
cleanup() {
    kill "$server" "${pids[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -f "$out"
}
trap cleanup EXIT
for _ in $(seq 50); do grep -q '^listening on' "$out" && break; sleep 0.1; done
addr=$(sed -n 's/^listening on //p' "$out" | head -1)
[ -n "$addr" ] || { echo "the server did not start"; exit 1; }
port=${addr##*:}
for _ in $(seq "$burners"); do
    timeout 120 python3 -c 'while 1: pass' &
    pids+=($!)
done
start=$(date +%s%N)
failed=0
for _ in $(seq "$requests"); do
    curl -s -o /dev/null --max-time 5 --interface 127.0.0.21 -H 'Connection: close' \
        "http://$addr/" || failed=$((failed + 1))
done
ms=$(( ($(date +%s%N) - start) / 1000000 ))
tw=$(ss -tan state time-wait "( sport = :$port )" | tail -n +2 | wc -l)
stats=$(curl -s --max-time 5 --interface 127.0.0.22 "http://$addr/stats" || echo '{}')
echo "burners=$burners requests=$requests failed=$failed ms=$ms server_time_wait=$tw" \
    "($(( tw * 1000 / requests )) per mille)"
echo "server stats: $stats"
