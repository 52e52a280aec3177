#!/usr/bin/env python3
"""Markdown tables from examples/server_idle.rs JSON lines (benches/idle_memory.sh).

    python3 benches/idle_memory_table.py FILE.json [--arenas]

One row per (allocator, connections, pattern, server): VmRSS per connection at each --after
time, x bare (same allocator, count and pattern, last time), live heap, the allocator's free
bytes and the figure after malloc_trim (glibc). --arenas adds glibc's malloc_info per arena
for the rows that have a heap profile.
"""
import json
import sys


def fmt(v):
    return "-" if v is None else f"{v:,.0f}"


def main():
    rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
    arenas = "--arenas" in sys.argv
    times = [p["after_s"] for p in rows[0]["after"]]
    head = ["allocator", "N", "arrival", "server"]
    head += [f"VmRSS/conn {t:g} s" for t in times]
    head += [f"x bare ({times[-1]:g} s)", "x glibc bare", "live heap/conn",
             "allocator free/conn", "after malloc_trim"]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" if i < 4 else "---:" for i in range(len(head))) + "|")
    for r in rows:
        bare = next((b for b in rows if b["server"] == "bare"
                     and b["allocator"] == r["allocator"]
                     and b["connections"] == r["connections"]
                     and b["pattern"] == r["pattern"]), None)
        glibc_bare = next((b for b in rows if b["server"] == "bare"
                           and b["allocator"] == "system"
                           and b["connections"] == r["connections"]
                           and b["pattern"] == r["pattern"]), None)
        last = r["after"][-1]["rss_per_connection"]
        ratio = (f"{last / max(bare['after'][-1]['rss_per_connection'], 1):.1f}"
                 if bare else "-")
        glibc_ratio = (f"{last / max(glibc_bare['after'][-1]['rss_per_connection'], 1):.1f}"
                       if glibc_bare else "-")
        cells = [r["allocator"], f"{r['held']:,}", r["pattern"], r["server"]]
        cells += [fmt(p["rss_per_connection"]) for p in r["after"]]
        server = f"**{r['server']}**" if r["server"] == "keepalive" else r["server"]
        cells[3] = server
        cells += [ratio, glibc_ratio, fmt(r["heap_per_connection"]),
                  fmt(r["after"][-1]["malloc_free_per_connection"]),
                  fmt(r.get("rss_after_malloc_trim_per_connection"))]
        print("| " + " | ".join(cells) + " |")
    if not arenas:
        return
    print()
    print("| allocator | N | arrival | server | arena | from the kernel | in use | "
          "free in holes (chunks) | holes <=1K / <=16K / <=64K / <=1M / larger | free top |")
    print("|---|---|---|---|---:|---:|---:|---:|---|---:|")
    for r in rows:
        profile = r.get("heap_profile") or {}
        for a in profile.get("arenas", []):
            holes = " / ".join(fmt(h) for h in a["holes_by_size"])
            print(f"| {r['allocator']} | {r['held']:,} | {r['pattern']} | {r['server']} | "
                  f"{a['nr']} | {fmt(a['system'])} | {fmt(a['in_use'])} | "
                  f"{fmt(a['free_bytes'])} ({a['free_chunks']:,}) | {holes} | {fmt(a['top'])} |")


if __name__ == "__main__":
    main()
