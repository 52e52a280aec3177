#!/usr/bin/env bash
# The crate's client against real servers, beside hyper-util's legacy client and reqwest in the
# same run (`examples/interop_client.rs` does the requests and the counting).
#
#   bash benches/interop.sh                  # every server (about 10 minutes)
#   bash benches/interop.sh apache keepalive # some: keepalive apache nginx lighttpd go node
#                                            # aiohttp keepalive-20 apache-20
#   DURATION=5s bash benches/interop.sh      # shorter loads
#   PARTS=gaps bash benches/interop.sh go    # only the gaps (or PARTS=load)
#
# Servers, each on its own 127.0.2.N address and port, all with a 2 s idle timeout and, where
# the server has one, a limit of 100 requests per connection (Apache's default; at 20, a load
# on 4 workers against the faster servers opens more connections in 10 s than one source
# address has ports, each leaving a TIME_WAIT for 60 s). Configs are written to a temp dir.
#
#   keepalive  examples/server.rs --idle-timeout 2s --max-requests 100 (advertises timeout=2, max=)
#   apache     Debian's apache2, event MPM, KeepAliveTimeout 2, MaxKeepAliveRequests 100
#              (advertises timeout=2, max= to requests that carry the keep-alive token)
#   nginx      keepalive_timeout 2s 2s; keepalive_requests 100 (advertises timeout=2)
#   lighttpd   server.max-keep-alive-idle = 2, server.max-keep-alive-requests = 100 (its clock
#              counts whole seconds: an idle connection is closed at 2.0 or 3.0 s, measured)
#   go         net/http Server{IdleTimeout: 2s} (no limit per connection)
#   node       http.createServer, keepAliveTimeout = 2000 (advertises timeout=2)
#   aiohttp    web.run_app(keepalive_timeout=2), Debian's /usr/bin/python3
#   keepalive-20, apache-20: the same two with a limit of 20 (the last-request policies)
#
# For each server, each client (crate, hyper-util, reqwest; the crate's with its default
# `LastAllowedRequest::Learn`):
#   gaps  6 GETs one at a time, 1.9 s apart and 2.1 s apart (just under and just over the idle
#         timeout; 3.1 s for lighttpd, whose whole-second clock closes idle connections after
#         2.0 to 3.0 s; the three clients run side by side, each from its own source address):
#         failed requests, TIME_WAIT on each side, the client's longest CLOSE_WAIT; all servers'
#         gaps run first, while the kernel's socket table is small;
#   load  DURATION (10 s) of back-to-back GETs on 4 workers, one client at a time: errors,
#         connections opened against the ones the server's limit forces, TIME_WAIT on each side.
# Against keepalive-20 and apache-20, only the crate's client, POLICY_DURATION (5 s) of load
# with each `--last-request` policy (learn, send, close-instead).
#
# Missing servers are installed with apt-get when it can be run (root); what still cannot be had
# is skipped with a note. Every loop is bounded in count and time; every server is stopped at the
# end (and on any exit). Results: target/interop/<time>/results.jsonl and tables.md.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

DURATION=${DURATION:-10s}
POLICY_DURATION=${POLICY_DURATION:-5s}
CONCURRENCY=${CONCURRENCY:-4}
GAP_UNDER=${GAP_UNDER:-1900ms}
GAP_OVER=${GAP_OVER:-2100ms}
GAP_REQUESTS=${GAP_REQUESTS:-6}
# Which parts run: gaps, load (the policy loads against the -20 servers count as load).
PARTS=${PARTS:-gaps load}
# lighttpd's clock counts whole seconds: with max-keep-alive-idle = 2 it closes an idle
# connection after 2.0 to 3.0 s (measured), so "just over" is 3.1 s there.
declare -A GAP_OVER_FOR=([lighttpd]=3100ms)
ALL_SERVERS=(keepalive apache nginx lighttpd go node aiohttp keepalive-20 apache-20)
SERVERS=("$@")
[ ${#SERVERS[@]} -gt 0 ] || SERVERS=("${ALL_SERVERS[@]}")
CLIENTS=(keepalive hyper-util reqwest)
DEBIAN_PYTHON=/usr/bin/python3

TARGET_DIR=${CARGO_TARGET_DIR:-target}
DRIVER=$TARGET_DIR/release/examples/interop_client
CRATE_SERVER=$TARGET_DIR/release/examples/server
OUT=target/interop/$(date -u +%Y%m%dT%H%M%SZ)
RESULTS=$OUT/results.jsonl
WORK=$(mktemp -d "${TMPDIR:-/tmp}/interop.XXXXXX")
chmod 755 "$WORK"
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    sleep 0.2
    for pid in "${PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

note() { printf '# %s\n' "$*" >&2; }

mkdir -p "$OUT"
: >"$RESULTS"

# ---------------------------------------------------------------------------------------------
# What is needed, installed when missing

have_python_aiohttp() { [ -x "$DEBIAN_PYTHON" ] && "$DEBIAN_PYTHON" -c 'import aiohttp' 2>/dev/null; }

install_missing() {
    local want=()
    command -v apache2 >/dev/null || [ -x /usr/sbin/apache2 ] || want+=(apache2)
    command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || want+=(nginx-light)
    command -v lighttpd >/dev/null || [ -x /usr/sbin/lighttpd ] || want+=(lighttpd)
    command -v go >/dev/null || want+=(golang-go)
    command -v node >/dev/null || want+=(nodejs)
    have_python_aiohttp || want+=(python3-aiohttp)
    [ ${#want[@]} -gt 0 ] || return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        note "installing ${want[*]}"
        timeout 600 apt-get install -y --no-install-recommends "${want[@]}" >"$WORK/apt.log" 2>&1 ||
            note "apt-get install failed (see below); what is missing is skipped"
        tail -n 3 "$WORK/apt.log" >&2 || true
    else
        note "missing ${want[*]} and apt-get cannot run here: those servers are skipped"
    fi
}

install_missing
export PATH=$PATH:/usr/sbin

note "building the driver and the crate's server (release)"
cargo build --release -j1 --example interop_client --example server >&2

# ---------------------------------------------------------------------------------------------
# Servers

# Distinct addresses and ports per server: the kernel filters by port when the driver polls.
declare -A SERVER_IP=([keepalive]=127.0.2.11 [apache]=127.0.2.12 [nginx]=127.0.2.13
    [lighttpd]=127.0.2.14 [go]=127.0.2.15 [node]=127.0.2.16 [aiohttp]=127.0.2.17
    [keepalive-20]=127.0.2.18 [apache-20]=127.0.2.19)
declare -A SERVER_PORT=([keepalive]=18211 [apache]=18212 [nginx]=18213 [lighttpd]=18214
    [go]=18215 [node]=18216 [aiohttp]=18217 [keepalive-20]=18218 [apache-20]=18219)
# Requests one connection carries at most (empty: no limit). Apache answers MaxKeepAliveRequests
# requests with keep-alive and one more with Connection: close; lighttpd too (measured: a limit
# of 5 closed after the 6th).
declare -A PER_CONNECTION=([keepalive]=100 [apache]=101 [nginx]=100 [lighttpd]=101
    [keepalive-20]=20 [apache-20]=21)

mkdir -p "$WORK/www"
printf 'hello, world!\n' >"$WORK/www/hello.txt"
chmod -R a+rX "$WORK/www"

# start_server NAME: starts it in the background (sets SRV_PID) or returns 1 when it cannot.
start_server() {
    local name=$1 ip=${SERVER_IP[$1]} port=${SERVER_PORT[$1]} dir=$WORK/$1
    local limit=100
    case $name in *-20) limit=20 ;; esac
    mkdir -p "$dir"
    chmod 755 "$dir"
    case $name in
    keepalive | keepalive-20)
        "$CRATE_SERVER" --addr "$ip:$port" --idle-timeout 2s --max-requests "$limit" \
            >"$dir/out" 2>"$dir/err" &
        ;;
    apache | apache-20)
        [ -x /usr/sbin/apache2 ] || return 1
        cat >"$dir/httpd.conf" <<EOF
ServerRoot "$dir"
ServerName localhost
LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
Listen $ip:$port
PidFile "$dir/httpd.pid"
DefaultRuntimeDir "$dir"
Mutex file:$dir default
ErrorLog "$dir/error.log"
LogLevel warn
User www-data
Group www-data
DocumentRoot "$WORK/www"
<Directory "$WORK/www">
    Require all granted
</Directory>
KeepAlive On
KeepAliveTimeout 2
MaxKeepAliveRequests $limit
EOF
        /usr/sbin/apache2 -f "$dir/httpd.conf" -DFOREGROUND >"$dir/out" 2>"$dir/err" &
        ;;
    nginx)
        command -v nginx >/dev/null || return 1
        mkdir -p "$dir/tmp"
        cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    keepalive_timeout 2s 2s;
    keepalive_requests $limit;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    server {
        listen $ip:$port;
        location / { return 200 "hello, world!\n"; }
    }
}
EOF
        nginx -c "$dir/nginx.conf" -p "$dir" >"$dir/out" 2>"$dir/err" &
        ;;
    lighttpd)
        command -v lighttpd >/dev/null || return 1
        # (It opens its error log as www-data.)
        chown www-data:www-data "$dir"
        cat >"$dir/lighttpd.conf" <<EOF
server.document-root = "$WORK/www"
server.bind = "$ip"
server.port = $port
server.pid-file = "$dir/lighttpd.pid"
server.errorlog = "$dir/error.log"
server.username = "www-data"
server.groupname = "www-data"
server.max-keep-alive-idle = 2
server.max-keep-alive-requests = $limit
EOF
        lighttpd -D -f "$dir/lighttpd.conf" >"$dir/out" 2>"$dir/err" &
        ;;
    go)
        command -v go >/dev/null || return 1
        cat >"$dir/main.go" <<'EOF'
package main

import (
	"net/http"
	"os"
	"time"
)

func main() {
	server := &http.Server{
		Addr:        os.Args[1],
		IdleTimeout: 2 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte("hello, world!\n"))
		}),
	}
	panic(server.ListenAndServe())
}
EOF
        (cd "$dir" && GO111MODULE=off timeout 300 go build -o goserver main.go) >"$dir/build" 2>&1 ||
            { note "go build failed: $(tail -n 2 "$dir/build")"; return 1; }
        "$dir/goserver" "$ip:$port" >"$dir/out" 2>"$dir/err" &
        ;;
    node)
        command -v node >/dev/null || return 1
        cat >"$dir/server.js" <<'EOF'
const http = require('http');
const [host, port] = [process.argv[2], Number(process.argv[3])];
const body = 'hello, world!\n';
const server = http.createServer((req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': body.length });
  res.end(body);
});
server.keepAliveTimeout = 2000;
server.listen(port, host);
EOF
        node "$dir/server.js" "$ip" "$port" >"$dir/out" 2>"$dir/err" &
        ;;
    aiohttp)
        have_python_aiohttp || return 1
        cat >"$dir/server.py" <<'EOF'
import sys
from aiohttp import web

async def hello(request):
    return web.Response(text="hello, world!\n")

app = web.Application()
app.router.add_get("/{tail:.*}", hello)
web.run_app(app, host=sys.argv[1], port=int(sys.argv[2]), keepalive_timeout=2,
            access_log=None, print=None)
EOF
        "$DEBIAN_PYTHON" "$dir/server.py" "$ip" "$port" >"$dir/out" 2>"$dir/err" &
        ;;
    *) return 1 ;;
    esac
    SRV_PID=$!
    PIDS+=("$SRV_PID")
    # Up to 10 s for it to answer.
    local i
    for i in $(seq 1 100); do
        if curl -s -o /dev/null --max-time 1 "http://$ip:$port/hello.txt"; then
            return 0
        fi
        kill -0 "$SRV_PID" 2>/dev/null || break
        sleep 0.1
    done
    note "$name did not start: $(tail -n 3 "$dir/err" "$dir/error.log" 2>/dev/null | tr '\n' ' ')"
    stop_server
    return 1
}

stop_server() {
    kill -TERM "$SRV_PID" 2>/dev/null || true
    local i
    for i in $(seq 1 50); do
        kill -0 "$SRV_PID" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$SRV_PID" 2>/dev/null || true
}

version_of() {
    case $1 in
    keepalive | keepalive-20) echo "keepalive $(git rev-parse --short HEAD)$(git diff --quiet || echo +dirty)" ;;
    apache | apache-20) /usr/sbin/apache2 -v | head -n 1 ;;
    nginx) nginx -v 2>&1 ;;
    lighttpd) lighttpd -v | head -n 1 ;;
    go) go version ;;
    node) echo "node $(node --version)" ;;
    aiohttp) echo "aiohttp $("$DEBIAN_PYTHON" -c 'import aiohttp; print(aiohttp.__version__)'), $("$DEBIAN_PYTHON" --version)" ;;
    esac
}

# ---------------------------------------------------------------------------------------------
# Runs

# A source address of its own per run: 127.251.R.N, R random per invocation (so a re-run within
# TIME_WAIT's 60 s does not see the last one's sockets).
SRC_HI=$((RANDOM % 250))
SRC_LO=0
next_source() {
    SRC_LO=$((SRC_LO + 1))
    if [ "$SRC_LO" -gt 250 ]; then SRC_LO=1; SRC_HI=$(((SRC_HI + 1) % 250)); fi
    SOURCE=127.251.$SRC_HI.$SRC_LO
}

record() { tee -a "$RESULTS"; }

run_driver() {
    timeout 180 "$DRIVER" "$@" || note "driver failed: $*"
}

# TIME_WAIT sockets in the whole namespace (the kernel keeps at most tcp_max_tw_buckets; past
# it, closing sockets skip TIME_WAIT and the counts here would be wrong).
time_wait_total() { awk '/^TCP:/ { for (i = 1; i < NF; i++) if ($i == "tw") print $(i + 1) }' /proc/net/sockstat; }
TW_LIMIT=$(($(cat /proc/sys/net/ipv4/tcp_max_tw_buckets) - 40000))
# Waits (at most 70 s) until a run of up to 30,000 connections fits under the kernel's limit.
wait_for_time_wait_room() {
    local i
    for i in $(seq 1 70); do
        [ "$(time_wait_total)" -lt "$TW_LIMIT" ] && return 0
        sleep 1
    done
    note "TIME_WAIT still at $(time_wait_total): the next run may overflow the kernel's table"
}

STARTED=()
declare -A URL SRV
for name in "${SERVERS[@]}"; do
    if ! start_server "$name"; then
        note "skipped $name"
        echo "{\"scenario\":\"skipped\",\"label\":\"$name\"}" >>"$RESULTS"
        continue
    fi
    SRV[$name]=$SRV_PID
    STARTED+=("$name")
    URL[$name]="http://${SERVER_IP[$name]}:${SERVER_PORT[$name]}/hello.txt"
    version=$(version_of "$name")
    note "$name ($version) at ${URL[$name]}"
    run_driver probe --url "${URL[$name]}" --label "$name" |
        "$DEBIAN_PYTHON" -c 'import json,sys; d=json.loads(sys.stdin.read()); d["version"]=sys.argv[1]; print(json.dumps(d))' "$version" |
        record
done

# Gaps first, for every server, while few sockets exist (the CLOSE_WAIT watch reads the kernel's
# socket table every millisecond: the fewer sockets, the finer its clock).
for name in "${STARTED[@]}"; do
    case " $PARTS " in *" gaps "*) ;; *) break ;; esac
    case $name in *-20) continue ;; esac
    for gap in "$GAP_UNDER" "${GAP_OVER_FOR[$name]:-$GAP_OVER}"; do
        note "$name: gaps of $gap"
        jobs_started=()
        for client in "${CLIENTS[@]}"; do
            next_source
            run_driver gaps --url "${URL[$name]}" --client "$client" --source-ip "$SOURCE" \
                --label "$name" --gap "$gap" --requests "$GAP_REQUESTS" >"$WORK/gaps-$client.json" &
            jobs_started+=($!)
        done
        for job in "${jobs_started[@]}"; do wait "$job" || true; done
        for client in "${CLIENTS[@]}"; do record <"$WORK/gaps-$client.json"; done
    done
done

# Loads, one client at a time.
for name in "${STARTED[@]}"; do
    case " $PARTS " in *" load "*) ;; *) break ;; esac
    limit=()
    [ -z "${PER_CONNECTION[$name]:-}" ] || limit=(--per-connection "${PER_CONNECTION[$name]}")
    case $name in
    *-20)
        # The last allowed request: the crate's client with each policy, shorter loads (a limit
        # of 20 at tens of thousands of requests a second opens thousands of connections a
        # second, each leaving a TIME_WAIT, and one source address has 28,232 ports).
        for policy in learn send close-instead; do
            wait_for_time_wait_room
            next_source
            note "$name: load, the crate's client, --last-request $policy"
            run_driver load --url "${URL[$name]}" --client keepalive --last-request "$policy" \
                --source-ip "$SOURCE" --label "$name" --duration "$POLICY_DURATION" \
                --concurrency "$CONCURRENCY" "${limit[@]}" | record
        done
        ;;
    *)
        for client in "${CLIENTS[@]}"; do
            wait_for_time_wait_room
            next_source
            note "$name: load, $client"
            run_driver load --url "${URL[$name]}" --client "$client" --source-ip "$SOURCE" \
                --label "$name" --duration "$DURATION" --concurrency "$CONCURRENCY" \
                "${limit[@]}" | record
        done
        ;;
    esac
done

for name in "${STARTED[@]}"; do
    SRV_PID=${SRV[$name]}
    stop_server
done

"$DEBIAN_PYTHON" benches/interop_tables.py "$RESULTS" | tee "$OUT/tables.md"
note "results: $RESULTS, tables: $OUT/tables.md"
