#!/usr/bin/env bash
# Where a short connection's cost goes, in deterministic counts: syscalls per connection
# (strace -c calls / REQUESTS) for examples/server.rs (default flags), the same with --plain
# (plain hyper-util) and nginx with 2 workers, side by side, under `ab -n REQUESTS -c 16`
# without -k (one connection per request). Each server on its own loopback address.
#
#   benches/accept_cost.sh [REQUESTS] [CALLGRIND_REQUESTS]
#
# REQUESTS defaults to 500. CALLGRIND_REQUESTS (default 0 = skipped) additionally runs the
# crate and --plain under valgrind --tool=callgrind for `ab -n N -c 4` and prints
# instructions per connection (slow: keep N at a few hundred; bounded by `timeout 300`).
# Bounded: ab's -s 10 per request, strace is detached after each ab run; every process it
# starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${1:-500}
cg_requests=${2:-0}
for tool in ab strace; do
    command -v "$tool" >/dev/null || { echo "$tool is missing: skipped"; exit 0; }
done
target=${CARGO_TARGET_DIR:-target}
cargo build --release --quiet --example server
server="$target/release/examples/server"
tmp=$(mktemp -d)
pids=()
cleanup() {
    kill "${pids[@]}" 2>/dev/null || true
    [ -f "$tmp/nginx.pid" ] && kill "$(cat "$tmp/nginx.pid")" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

wait_listening() { # file -> addr
    for _ in $(seq 100); do grep -q '^listening on' "$1" && break; sleep 0.1; done
    sed -n 's/^listening on //p' "$1" | head -1
}

start_example() { # name addr flags... -> sets pid_of[name], url[name]
    local name=$1 addr=$2
    shift 2
    "$server" --addr "$addr" "$@" >"$tmp/$name.out" 2>/dev/null &
    pids+=($!)
    pid_of[$name]=$!
    url[$name]="http://$(wait_listening "$tmp/$name.out")/"
}

declare -A url pid_of
start_example keepalive 127.0.0.40:0
start_example plain 127.0.0.41:0 --plain
names=(keepalive plain)
if command -v nginx >/dev/null; then
    mkdir -p "$tmp/nginx"
    cat >"$tmp/nginx.conf" <<CONF
worker_processes 2;
pid $tmp/nginx.pid;
error_log $tmp/nginx/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $tmp/nginx;
    proxy_temp_path $tmp/nginx;
    fastcgi_temp_path $tmp/nginx;
    uwsgi_temp_path $tmp/nginx;
    scgi_temp_path $tmp/nginx;
    server {
        listen 127.0.0.42:18081;
        location / { return 200 "Hello, world!"; }
    }
}
CONF
    nginx -c "$tmp/nginx.conf" -e "$tmp/nginx/error.log"
    for _ in $(seq 50); do [ -s "$tmp/nginx.pid" ] && break; sleep 0.1; done
    url[nginx]="http://127.0.0.42:18081/"
    names+=(nginx)
else
    echo "nginx is missing: its column is skipped"
fi

# Threads (or nginx workers) to attach to, comma-separated.
targets_of() { # name
    if [ "$1" = nginx ]; then
        pgrep -P "$(cat "$tmp/nginx.pid")" | paste -sd,
    else
        ls "/proc/${pid_of[$1]}/task" | paste -sd,
    fi
}

for n in "${names[@]}"; do
    ab -q -s 10 -n 20 -c 4 "${url[$n]}" >/dev/null 2>&1 || true # warm up
    strace -c -f -o "$tmp/$n.strace" -p "$(targets_of "$n")" 2>/dev/null &
    strace_pid=$!
    sleep 1 # let strace attach before the first connection
    ab -q -s 10 -n "$requests" -c 16 "${url[$n]}" 2>&1 | grep -E '^(Failed|Complete) requests' \
        | sed "s/^/$n: /"
    sleep 0.5 # connections closing after ab's last response
    kill -INT "$strace_pid"
    wait "$strace_pid" 2>/dev/null || true
done

python3 - "$requests" "$tmp" "${names[@]}" <<'PY'
import sys
requests, tmp, names = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
counts = {}
for n in names:
    c = {}
    for line in open(f"{tmp}/{n}.strace"):
        f = line.split()
        if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
            c[f[-1]] = int(f[3])
    counts[n] = c
calls = sorted({s for c in counts.values() for s in c},
               key=lambda s: -counts[names[0]].get(s, 0))
print(f"syscalls per connection (strace -c calls / {requests})")
print(f"{'syscall':<18}" + "".join(f"{n:>11}" for n in names))
for s in calls:
    row = [counts[n].get(s, 0) / requests for n in names]
    if max(row) >= 0.01:
        print(f"{s:<18}" + "".join(f"{v:>11.2f}" for v in row))
tot = [sum(counts[n].values()) / requests for n in names]
print(f"{'total':<18}" + "".join(f"{v:>11.2f}" for v in tot))
print(f"{'ratio to crate':<18}" + "".join(f"{tot[0] / v:>11.2f}" for v in tot))
PY

if [ "$cg_requests" -gt 0 ] && command -v valgrind >/dev/null; then
    echo
    echo "callgrind instructions per connection (ab -n $cg_requests -c 4)"
    for spec in "keepalive 127.0.0.43" "plain 127.0.0.44 --plain"; do
        read -r name addr flag <<<"$spec"
        valgrind --tool=callgrind --callgrind-out-file="$tmp/$name.cg" \
            "$server" --addr "$addr:0" $flag >"$tmp/cg-$name.out" 2>"$tmp/cg-$name.err" &
        vg=$!
        pids+=($vg)
        u="http://$(wait_listening "$tmp/cg-$name.out")/"
        timeout 300 ab -q -s 30 -n "$cg_requests" -c 4 "$u" 2>&1 | grep -E '^Failed requests' \
            | sed "s/^/$name: /" || true
        kill -TERM "$vg"
        wait "$vg" 2>/dev/null || true
        ir=$(sed -n 's/^summary: //p' "$tmp/$name.cg" | head -1)
        echo "$name: $ir Ir total (includes startup), $((ir / cg_requests)) Ir per connection"
    done
fi
