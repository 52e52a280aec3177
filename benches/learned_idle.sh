#!/usr/bin/env bash
# Servers that advertise no idle limit (Go's net/http IdleTimeout, lighttpd, aiohttp), each
# closing idle keep-alive connections after 2 s: examples/client.rs sends 24 requests on 2
# workers with a gap just over (2.5 s) and just under (1.5 s) that limit, with the client's
# learning of idle limits off and on. Prints, per run: server-side TIME_WAIT (read from the
# kernel: sockets whose local port is the server's), failed requests, connections opened,
# stale retries and the client's close reasons.
#
#   benches/learned_idle.sh [go|lighttpd|aiohttp ...]
#
# Each run has its own server on its own port (TIME_WAIT counts never mix); every loop is
# bounded (24 requests, `timeout 120` per run). Missing servers are skipped with a note.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$#" -eq 0 ] && set -- go lighttpd aiohttp
cargo build --release --quiet --example client
tmp=$(mktemp -d)
server=
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
port=28400

start() { # kind port -> sets $server
    case $1 in
    go)
        if [ ! -x "$tmp/gosrv" ]; then
            mkdir -p "$tmp/go"
            cat >"$tmp/go/main.go" <<'GO'
package main

import (
	"fmt"
	"net/http"
	"os"
	"time"
)

func main() {
	srv := &http.Server{Addr: os.Args[1], IdleTimeout: 2 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, "ok")
		})}
	srv.ListenAndServe()
}
GO
            (cd "$tmp/go" && go mod init gosrv >/dev/null 2>&1 && go build -o "$tmp/gosrv" .)
        fi
        "$tmp/gosrv" "127.0.0.40:$2" &
        ;;
    lighttpd)
        mkdir -p "$tmp/www" && echo ok >"$tmp/www/index.html"
        cat >"$tmp/lighttpd.conf" <<CONF
server.document-root = "$tmp/www"
server.bind = "127.0.0.40"
server.port = $2
server.max-keep-alive-idle = 2
server.max-keep-alive-requests = 1000
server.errorlog = "$tmp/lighttpd.log"
CONF
        lighttpd -D -f "$tmp/lighttpd.conf" &
        ;;
    aiohttp)
        cat >"$tmp/aio.py" <<'PY'
import sys
from aiohttp import web

async def hello(request):
    return web.Response(text="ok")

app = web.Application()
app.router.add_get("/", hello)
web.run_app(app, host=sys.argv[1], port=int(sys.argv[2]), keepalive_timeout=2, print=None)
PY
        /usr/bin/python3 "$tmp/aio.py" 127.0.0.40 "$2" 2>/dev/null &
        ;;
    esac
    server=$!
    for _ in $(seq 100); do
        curl -s -o /dev/null --max-time 1 "http://127.0.0.40:$2/" && return 0
        sleep 0.1
    done
    echo "$1 did not start"
    return 1
}

available() {
    case $1 in
    go) command -v go >/dev/null ;;
    lighttpd) command -v lighttpd >/dev/null ;;
    aiohttp) /usr/bin/python3 -c 'import aiohttp' 2>/dev/null ;;
    *) return 1 ;;
    esac
}

for kind in "$@"; do
    if ! available "$kind"; then
        echo "$kind is missing (apt-get install golang-go lighttpd python3-aiohttp): skipped"
        continue
    fi
    for gap in 2500ms 1500ms; do
        for learn in false true; do
            port=$((port + 1))
            start "$kind" "$port"
            out=$(timeout 120 target/release/examples/client --url "http://127.0.0.40:$port/" \
                --requests 24 --concurrency 2 --interval "$gap" --learn-idle-limits "$learn" 2>&1)
            tw=$(ss -tan state time-wait "( sport = :$port )" | tail -n +2 | wc -l)
            kill "$server" 2>/dev/null || true
            wait "$server" 2>/dev/null || true
            server=
            summary=$(echo "$out" | tail -1 | /usr/bin/python3 -c '
import json, sys
d = json.load(sys.stdin)
closed = " ".join(f"{k}={v}" for k, v in d["closed"].items() if v)
print("opened=%d retries=%d closed: %s" % (d["opened"], d["retries"], closed))')
            echo "$kind gap=$gap learn=$learn server_time_wait=$tw $(echo "$out" | head -1) $summary"
        done
    done
done
