#!/usr/bin/env bash
# Short connections: `ab -n 5000 -c 16` without -k (a new connection per request) against
# examples/server.rs, the same with --plain (plain hyper-util), and nginx with 2 workers when
# it is installed, alternating, ROUNDS rounds; prints requests/s and failed requests per run
# and the ratios per round. Each server on its own loopback address; ab runs from 127.0.0.1.
#
#   benches/ab_short.sh [ROUNDS] [REQUESTS]
#
# Bounded: ROUNDS x servers runs of REQUESTS requests each, ab's -s 10 timeout per request.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
requests=${2:-5000}
command -v ab >/dev/null || { echo "ab (apache2-utils) is missing: skipped"; exit 0; }
cargo build --release --quiet --example server
tmp=$(mktemp -d)
pids=()
cleanup() {
    kill "${pids[@]}" 2>/dev/null || true
    [ -f "$tmp/nginx.pid" ] && kill "$(cat "$tmp/nginx.pid")" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

start_example() { # name addr flags...
    local name=$1 addr=$2
    shift 2
    target/release/examples/server --addr "$addr" "$@" >"$tmp/$name.out" 2>/dev/null &
    pids+=($!)
    for _ in $(seq 50); do grep -q '^listening on' "$tmp/$name.out" && break; sleep 0.1; done
    sed -n 's/^listening on //p' "$tmp/$name.out" | head -1
}

declare -A url
url[keepalive]="http://$(start_example keepalive 127.0.0.30:0)/"
url[plain]="http://$(start_example plain 127.0.0.31:0 --plain)/"
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
        listen 127.0.0.32:18080;
        location / { return 200 "Hello, world!"; }
    }
}
CONF
    nginx -c "$tmp/nginx.conf" -e "$tmp/nginx/error.log"
    for _ in $(seq 50); do [ -f "$tmp/nginx.pid" ] && break; sleep 0.1; done
    url[nginx]="http://127.0.0.32:18080/"
    names+=(nginx)
else
    echo "nginx is missing: its column is skipped"
fi

run_ab() { # url -> "req/s failed"
    ab -q -s 10 -n "$requests" -c 16 "$1" 2>&1 |
        awk '/^Requests per second/ {rps=$4} /^Failed requests/ {failed=$3}
             END {printf "%.0f %s", rps, failed}'
}

printf '%-6s' round
for n in "${names[@]}"; do printf ' %14s' "$n"; done
for n in "${names[@]:1}"; do printf ' %16s' "keepalive/$n"; done
echo
for r in $(seq "$rounds"); do
    declare -A rps=()
    printf '%-6s' "$r"
    for n in "${names[@]}"; do
        read -r value failed < <(run_ab "${url[$n]}")
        rps[$n]=$value
        printf ' %8s (%s f)' "$value" "$failed"
    done
    for n in "${names[@]:1}"; do
        printf ' %16s' "$(python3 -c "print(f'{${rps[keepalive]} / ${rps[$n]}:.2f}')")"
    done
    echo
done
