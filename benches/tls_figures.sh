#!/usr/bin/env bash
# Short versus long connections, plain TCP against TLS, at concurrency 1 and 8: the runs
# alternate (plain, TLS, plain, TLS, ...) so both see the same machine, and the table gives
# each run's long/short ratio and the medians.
#
#   bash benches/tls_figures.sh [rounds] [requests]      # default 3 rounds, 5000 requests
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
requests=${2:-5000}
cargo build --release --features rustls --example short_vs_long >&2
bin=target/release/examples/short_vs_long
out=$(mktemp)
for round in $(seq "$rounds"); do
    for concurrency in 1 8; do
        for tls in "" "--tls"; do
            "$bin" $tls --concurrency "$concurrency" --requests "$requests" --duration 20s --json 2>/dev/null |
                python3 -c "import json,sys; [print(json.dumps(dict(json.loads(l), round=$round, concurrency=$concurrency))) for l in sys.stdin]" >>"$out"
        done
    done
done
python3 - "$out" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
key = lambda r: (r["concurrency"], r["tls"], r["round"])
by = {}
for r in runs:
    by.setdefault(key(r), {})[r["mode"]] = r
print("| concurrency | transport | round | short req/s | long req/s | long / short | short: server TIME_WAIT | errors |")
print("|---:|---|---:|---:|---:|---:|---:|---:|")
ratios = {}
for (c, tls, rnd), modes in sorted(by.items()):
    s, l = modes["short"], modes["long"]
    ratio = l["rps"] / s["rps"] if s["rps"] else float("nan")
    ratios.setdefault((c, tls), []).append(ratio)
    print(f"| {c} | {'TLS' if tls else 'TCP'} | {rnd} | {s['rps']:,.0f} | {l['rps']:,.0f} | {ratio:.1f}x | {s['time_wait_server']} | {s['errors'] + l['errors']} |")
print()
for (c, tls), values in sorted(ratios.items()):
    print(f"concurrency {c}, {'TLS' if tls else 'TCP'}: long/short median {statistics.median(values):.1f}x over {len(values)} runs")
PY
rm -f "$out"
