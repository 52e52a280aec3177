#!/usr/bin/env bash
# Memory per idle keep-alive connection after a burst, by allocator and by glibc setting
# (BENCHMARKS.md, "Idle connections by allocator"). Loopback only; every load is bounded.
#
#   bash benches/idle_memory.sh allocators   # server: 3 allocators x bare/keepalive/plain (~25 min)
#   bash benches/idle_memory.sh knobs        # server: glibc's environment settings (~15 min)
#   bash benches/idle_memory.sh knob-cost    # wrk against examples/server.rs with each setting
#   bash benches/idle_memory.sh client       # client pool: 3 allocators x keepalive/bare
#   OTHER_SERVER=path/to/server bash benches/idle_memory.sh server-cost
#                                            # wrk: examples/server.rs against another build
#
# Results: one JSON line per measure in $OUT (default /tmp/idle_memory), the summary tables on
# stderr. The load average is printed before and after each part: the machine is shared.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-/tmp/idle_memory}
mkdir -p "$OUT"
cargo build --release --example server_idle --example client_figures --example server
TARGET=${CARGO_TARGET_DIR:-target}
IDLE=$TARGET/release/examples/server_idle
CLIENT=$TARGET/release/examples/client_figures
SERVER=$TARGET/release/examples/server

load() { printf 'load average: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)" >&2; }

# The allocator settings an operator can make without code: name, allocator, environment.
# (tikv-jemallocator's jemalloc reads _RJEM_MALLOC_CONF.)
KNOBS=(
    "default|system|"
    "arena_max_1|system|MALLOC_ARENA_MAX=1"
    "arena_max_2|system|MALLOC_ARENA_MAX=2"
    "trim_threshold_0|system|MALLOC_TRIM_THRESHOLD_=0"
    "mmap_threshold_4k|system|MALLOC_MMAP_THRESHOLD_=4096"
    "tcache_0|system|GLIBC_TUNABLES=glibc.malloc.tcache_count=0"
    "arena_max_1_tcache_0|system|MALLOC_ARENA_MAX=1 GLIBC_TUNABLES=glibc.malloc.tcache_count=0"
    "jemalloc_background_thread|jemalloc|_RJEM_MALLOC_CONF=background_thread:true"
    "jemalloc_decay_1s_background|jemalloc|_RJEM_MALLOC_CONF=background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0"
    "mimalloc_purge_0|mimalloc|MIMALLOC_PURGE_DELAY=0"
)

# Splits a KNOBS entry into $name $allocator $env.
knob_fields() {
    name=${1%%|*}
    local rest=${1#*|}
    allocator=${rest%%|*}
    env=${rest#*|}
}

allocators() {
    load
    "$IDLE" --connections 2000,max --servers bare,keepalive,plain --patterns burst,trickle \
        --load-secs 0 --after 5s,15s --heap-profile --allocator system,jemalloc,mimalloc \
        >"$OUT/allocators.json" 2>"$OUT/allocators.err"
    load
    grep -A40 '^server ' "$OUT/allocators.err" >&2
}

knobs() {
    local knob name allocator env
    for knob in "${KNOBS[@]}"; do
        knob_fields "$knob"
        load
        echo "== $name: $allocator ${env:-(no setting)}" >&2
        # shellcheck disable=SC2086 # env is a list of NAME=VALUE words
        env $env "$IDLE" --connections 2000,max --servers bare,keepalive --patterns burst \
            --load-secs 0 --after 15s --heap-profile --allocator "$allocator" \
            >"$OUT/knob-$name.json" 2>"$OUT/knob-$name.err"
        grep -A6 '^server ' "$OUT/knob-$name.err" >&2
    done
    load
}

# Requests/s of examples/server.rs (the crate's serve) under wrk -t1 -c32 -d3s, each setting
# against the default in alternating rounds, 5 rounds each.
knob_cost() {
    local knob name allocator env round port=3311 pid rps
    for knob in "${KNOBS[@]:1}"; do
        knob_fields "$knob"
        # examples/server.rs runs on the system allocator only.
        [ "$allocator" = system ] || continue
        load
        for round in 1 2 3 4 5; do
            for variant in default "$name"; do
                if [ "$variant" = default ]; then
                    "$SERVER" --addr 127.0.0.1:$port >/dev/null 2>&1 &
                else
                    # shellcheck disable=SC2086
                    env $env "$SERVER" --addr 127.0.0.1:$port >/dev/null 2>&1 &
                fi
                pid=$!
                for _ in $(seq 50); do
                    curl -s -o /dev/null "http://127.0.0.1:$port/" && break
                    sleep 0.1
                done
                rps=$(wrk -t1 -c32 -d3s "http://127.0.0.1:$port/" | awk '/Requests\/sec/ {print $2}')
                kill "$pid"
                wait "$pid" 2>/dev/null || true
                echo "$name round $round $variant rps $rps"
                port=$((port + 1))
            done
        done
    done | tee "$OUT/knob-cost.txt"
    load
}

# Requests/s of this build's examples/server.rs against another build's ($OTHER_SERVER, e.g.
# a prototype branch's), wrk -t1 -c32 -d3s keep-alive, 7 alternating rounds.
server_cost() {
    local round variant bin port=3411 pid rps
    [ -x "${OTHER_SERVER:-}" ] || { echo "set OTHER_SERVER to the other build's server" >&2; exit 2; }
    load
    for round in 1 2 3 4 5 6 7; do
        for variant in this other; do
            bin=$SERVER
            [ "$variant" = other ] && bin=$OTHER_SERVER
            "$bin" --addr 127.0.0.1:$port >/dev/null 2>&1 &
            pid=$!
            for _ in $(seq 50); do
                curl -s -o /dev/null "http://127.0.0.1:$port/" && break
                sleep 0.1
            done
            rps=$(wrk -t1 -c32 -d3s "http://127.0.0.1:$port/" | awk '/Requests\/sec/ {print $2}')
            kill "$pid"
            wait "$pid" 2>/dev/null || true
            echo "round $round $variant rps $rps"
            port=$((port + 1))
        done
    done | tee "$OUT/server-cost.txt"
    load
}

client() {
    local allocator c
    load
    for allocator in system jemalloc mimalloc; do
        for c in bare keepalive bare keepalive; do
            "$CLIENT" memory --connections 2000 --client $c --settle 15s --heap-profile \
                --allocator $allocator
        done
    done | tee "$OUT/client.json"
    load
}

for part in "${@:-allocators knobs knob-cost client}"; do
    for p in $part; do
        case $p in
            allocators) allocators ;;
            knobs) knobs ;;
            knob-cost) knob_cost ;;
            client) client ;;
            server-cost) server_cost ;;
            *) echo "unknown part: $p" >&2; exit 2 ;;
        esac
    done
done
