"""Markdown tables from the JSON lines of benches/interop.sh (examples/interop_client.rs).

    python3 benches/interop_tables.py target/interop/<time>/results.jsonl
"""

import json
import sys

CLIENTS = ["keepalive", "hyper-util", "reqwest"]


def load(path):
    runs = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    runs.append(json.loads(line))
                except ValueError:
                    pass
    return runs


def fmt_int(n):
    return "-" if n is None else f"{n:,}"


def closes(run):
    c = run.get("closes")
    if not c:
        return ""
    return ", ".join(f"{k}={v:,}" for k, v in sorted(c.items()))


def errors(run):
    n = run.get("errors", 0)
    if not n:
        return "0"
    kinds = run.get("error_kinds", {})
    top = sorted(kinds.items(), key=lambda kv: -kv[1])[:2]
    return f"**{n}** (" + "; ".join(f"{v}x {k[:90]}" for k, v in top) + ")"


def time_wait(run):
    seen = run.get("server_time_wait_seen", run["server_time_wait"])
    return f"{run['server_time_wait']:,} ({seen:,} seen) / {run['client_time_wait']:,}"


def close_wait(run):
    episodes = run.get("close_wait_episodes", 0)
    if run.get("close_wait_watch", "ok") != "ok":
        return f"not watched ({run['close_wait_watch']})"
    if not episodes:
        return "none seen"
    longest = run.get("close_wait_longest_ms", 0)
    open_end = " (one still open at the end)" if run.get("close_wait_open_at_end") else ""
    return f"{longest:.2f} ms ({episodes} seen){open_end}"


def main(path):
    runs = load(path)
    probes = {r["label"]: r for r in runs if r.get("scenario") == "probe"}
    skipped = [r["label"] for r in runs if r.get("scenario") == "skipped"]
    labels = []
    for r in runs:
        if (r.get("scenario") in ("gaps", "load") and r["label"] not in labels
                and not r["label"].endswith("-20")):
            labels.append(r["label"])

    print("## Servers\n")
    print("| server | version | answer to `Connection: keep-alive` |")
    print("|---|---|---|")
    for label in labels:
        p = probes.get(label, {})
        said = []
        if p.get("connection"):
            said.append(f"Connection: {p['connection']}")
        if p.get("keep_alive"):
            said.append(f"Keep-Alive: {p['keep_alive']}")
        print(f"| {label} | {p.get('version', '')} | {'; '.join(said) or 'no keep-alive header'} |")
    for label in [l for l in probes if l.endswith("-20")]:
        p = probes[label]
        print(f"| {label} | {p.get('version', '')} | Keep-Alive: {p.get('keep_alive')} |")
    for label in skipped:
        print(f"| {label} | skipped (not installed) | |")
    print()

    def pick(label, scenario, client, **match):
        for r in runs:
            if (r.get("label") == label and r.get("scenario") == scenario
                    and r.get("client") == client
                    and all(r.get(k) == v for k, v in match.items())):
                return r
        return None

    for label in labels:
        print(f"## {label}\n")
        print("| | " + " | ".join(CLIENTS) + " |")
        print("|---|" + "---|" * len(CLIENTS))
        gaps = sorted({r["gap_ms"] for r in runs
                       if r.get("label") == label and r.get("scenario") == "gaps"})
        for gap in gaps:
            cells = {c: pick(label, "gaps", c, gap_ms=gap) for c in CLIENTS}
            name = f"gaps {gap / 1000:g} s"

            def row(title, f):
                print(f"| {name}: {title} | " + " | ".join(
                    f(cells[c]) if cells[c] else "-" for c in CLIENTS) + " |")

            row("failed requests", lambda r: errors(r) + f" of {r['requests']}")
            row("connections opened", lambda r: fmt_int(r.get("opened")))
            row("TIME_WAIT server (kernel saw) / client", time_wait)
            row("client's longest CLOSE_WAIT", close_wait)
            row("crate client's closes", closes)
        cells = {c: pick(label, "load", c, **({"policy": "learn"} if c == "keepalive" else {}))
                 for c in CLIENTS}
        base = cells.get("keepalive")

        def row(title, f):
            print(f"| load: {title} | " + " | ".join(
                f(cells[c]) if cells[c] else "-" for c in CLIENTS) + " |")

        row("requests (req/s)", lambda r: f"{r['requests']:,} ({r['rps']:,.0f})")
        if base:
            row("req/s, ratio to the crate's client",
                lambda r: f"{r['rps'] / base['rps']:.2f}" if base["rps"] else "-")
        row("errors", errors)
        row("connections opened / forced by the server's limit (excess)",
            lambda r: f"{r['opened']:,} / {r['forced']:,} ({r['excess']:+,})")
        row("requests per connection", lambda r: f"{r['requests_per_connection']:.2f}")
        row("TIME_WAIT server (kernel saw) / client", time_wait)
        row("crate client's closes", closes)
        print()

    policy_runs = [r for r in runs if r.get("scenario") == "load" and r.get("client") == "keepalive"
                   and r.get("label", "").endswith("-20")]
    if policy_runs:
        print("## The last allowed request: `--last-request` against apache-20 and keepalive-20"
              " (load)\n")
        print("| server | policy | requests | errors | opened / forced (excess) | requests per"
              " connection | TIME_WAIT server (kernel saw) / client | server TIME_WAIT per 1,000"
              " connections closed | closes |")
        print("|---|---|---:|---:|---|---:|---|---:|---|")
        for r in sorted(policy_runs, key=lambda r: (r["label"], r.get("policy", ""))):
            closed = r.get("closed", 0)
            per_k = 1000 * r["server_time_wait"] / closed if closed else 0
            print(f"| {r['label']} | {r.get('policy')} | {r['requests']:,} | {errors(r)} | "
                  f"{r['opened']:,} / {r['forced']:,} ({r['excess']:+,}) | "
                  f"{r['requests_per_connection']:.2f} | "
                  f"{time_wait(r)} | {per_k:.0f} | "
                  f"{closes(r)} |")
        print()

    print("## Targets, the crate's client (default policy)\n")
    print("| server | errors (all runs) | load: reconnects beyond the server's limit"
          " | server TIME_WAIT: gaps 1.9 s + gaps 2.1 s + load | longest CLOSE_WAIT |")
    print("|---|---:|---:|---|---|")
    for label in labels:
        mine = [r for r in runs if r.get("label") == label and r.get("client") == "keepalive"
                and r.get("scenario") in ("gaps", "load") and r.get("policy") == "learn"]
        errs = sum(r.get("errors", 0) for r in mine)
        load_run = next((r for r in mine if r["scenario"] == "load"), None)
        tw = " + ".join(str(r["server_time_wait"]) for r in
                        sorted(mine, key=lambda r: (r["scenario"] != "gaps", r.get("gap_ms", 0))))
        cw = max((r.get("close_wait_longest_ms", 0) for r in mine if r["scenario"] == "gaps"),
                 default=0)
        seen = sum(r.get("close_wait_episodes", 0) for r in mine if r["scenario"] == "gaps")
        longest = f"{cw:.2f} ms ({seen} seen)" if seen else "none seen"
        print(f"| {label} | {errs} | {load_run['excess'] if load_run else '-'} | {tw} | "
              f"{longest} |")
    print()


if __name__ == "__main__":
    main(sys.argv[1])
