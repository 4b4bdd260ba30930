#!/usr/bin/env python3
"""Renders the bench harness's JSON result lines as ONE table (stdout + markdown + JSON copies) with
trades/s, CPU seconds per million trades, peak RSS and the ratio of tradewind's end-to-end rate to each
system's, then checks the targets of issue 5. Used by benches/e2e.sh.

    python3 benches/report.py results.jsonl --trades N --markets M [--md table.md] [--json table.json]
"""
import argparse
import json
import os
import platform
import subprocess


def mib(b):
    return f"{b / 2**20:,.0f}" if b else "n/a"


def fmt_rate(x):
    return f"{x:,.0f}" if x else "n/a"


def machine():
    model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        kb = int(open("/proc/meminfo").readline().split()[1])
        mem = f"{kb / 2**20:.1f} GiB"
    except OSError:
        pass
    load = open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else []
    return f"{os.cpu_count()} CPUs ({model}), {mem} RAM, {platform.system()} {platform.release()}, load {' '.join(load)}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--trades", type=int)
    ap.add_argument("--markets", type=int)
    ap.add_argument("--md")
    ap.add_argument("--json")
    a = ap.parse_args()
    rows = [json.loads(l) for l in open(a.results) if l.strip()]
    tw = next((r for r in rows if r["system"].startswith("tradewind end to end")), None)
    ref = tw["trades_per_s"] if tw else None

    table = []
    for r in rows:
        cpu_per_m = r["cpu_seconds"] / (r["trades"] / 1e6) if r.get("cpu_seconds") and r.get("trades") else None
        name = r["system"]
        if "spark" in name.lower():
            name += " [FILE SOURCE, not Kafka]"
        table.append((name, r.get("trades"), r.get("seconds"), r.get("trades_per_s"), cpu_per_m,
                      r.get("peak_rss_bytes"), (ref / r["trades_per_s"]) if ref and r.get("trades_per_s") else None))
        if r is tw and tw.get("trades_per_s_after_join"):
            table.append(("  same run, from partition assignment to exit (no start-up/group join)", tw["trades"],
                          tw["seconds_after_join"], tw["trades_per_s_after_join"], None, None,
                          ref / tw["trades_per_s_after_join"]))
    head = ["system", "trades", "wall s", "trades/s", "CPU s per M trades", "peak RSS MiB", "tradewind e2e / this"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, n, s, tps, cpm, rss, ratio in table:
        cpm_s = "n/a" if cpm is None else f"{cpm:.2f}"
        ratio_s = "n/a" if ratio is None else f"{ratio:.2f}x"
        lines.append(f"| {name} | {n:,} | {s:.2f} | {fmt_rate(tps)} | {cpm_s} | {mib(rss)} | {ratio_s} |")

    notes = [f"Data: {a.trades:,} seeded CoinCap trades over {a.markets:,} markets, one JSON-lines file; "
             f"machine: {machine()}."]
    if tw:
        s = tw.get("summary", {})
        notes.append(
            f"tradewind run: {tw.get('batches', 0)} micro-batches, batch time {tw.get('batch_seconds')} s "
            f"(of which MySQL sink {tw.get('sink_seconds')} s over {tw.get('sink_commits')} commits), start-up + "
            f"group join {tw.get('startup_seconds')} s; broker CPU {tw.get('broker_cpu_seconds')} s, MariaDB CPU "
            f"{tw.get('mysql_cpu_seconds')} s (not in the tradewind CPU column); rows written {s.get('rows_written')}, "
            f"too_late {s.get('too_late')}, corrected {s.get('corrected')}, commits {s.get('commits')}.")
        if s.get("too_late"):
            notes.append(f"WARNING: the engine routed {s['too_late']:,} of {tw['trades']:,} trades to the late "
                         f"topic: the tables are incomplete (see benches/RESULTS.md, watermark with unread partitions).")
    notes.append("Spark reads a FILE source (it measures Spark's processing cost, not its Kafka client); "
                 "DuckDB is a batch query (not streaming); kernels run on one thread with payloads in memory.")

    # Targets of issue 5 (throughput) and issue 11 (CPU per trade, memory), from this run.
    by = {k: next((r for r in rows if k in r["system"].lower()), None) for k in ("spark", "duckdb", "ceiling", "kernels")}

    def cpm(r):
        return r["cpu_seconds"] / (r["trades"] / 1e6) if r and r.get("cpu_seconds") and r.get("trades") else None

    checks = []
    if tw:
        checks.append(("issue 5: end to end >= 500,000 trades/s", tw["trades_per_s"], tw["trades_per_s"] / 500_000))
        if by["spark"]:
            x = tw["trades_per_s"] / by["spark"]["trades_per_s"]
            checks.append(("issue 5: end to end throughput >= 25x Spark's", f"{x:.1f}x", x / 25))
        if by["ceiling"]:
            x = tw["trades_per_s"] / by["ceiling"]["trades_per_s"]
            checks.append(("issue 5: end to end >= 50% of consume-only ceiling", f"{x:.0%}", x / 0.5))
        checks.append(("issue 5: peak RSS <= 200 MiB", f"{mib(tw['peak_rss_bytes'])} MiB",
                       200 * 2**20 / tw["peak_rss_bytes"]))
    for t in (r for r in rows if r["system"].startswith("tradewind end to end")):
        b = t.get("broker", "tansu")
        if cpm(t):
            checks.append((f"issue 11 [{b}]: CPU <= 0.55 s per M trades", f"{cpm(t):.2f}", 0.55 / cpm(t)))
            if cpm(by["spark"]):
                x = cpm(by["spark"]) / cpm(t)
                checks.append((f"issue 11 [{b}]: CPU per trade >= 25x less than Spark's", f"{x:.1f}x", x / 25))
        if t.get("peak_rss_bytes"):
            checks.append((f"issue 11 [{b}]: peak RSS <= 150 MiB", f"{mib(t['peak_rss_bytes'])} MiB",
                           150 * 2**20 / t["peak_rss_bytes"]))
        if b == "mock" and t.get("trades_per_s"):
            checks.append((f"issue 11 [{b}]: end to end >= 1,000,000 trades/s", t["trades_per_s"],
                           t["trades_per_s"] / 1e6))
    if by["kernels"] and by["duckdb"]:
        x = by["kernels"]["trades_per_s"] / by["duckdb"]["trades_per_s"]
        checks.append(("kernels >= DuckDB batch", f"{x:.2f}x", x))
    if by["kernels"]:
        checks.append(("decode + window >= 2,000,000 trades/s (issue 3)", by["kernels"]["trades_per_s"],
                       by["kernels"]["trades_per_s"] / 2e6))
    tl = ["| target | measured | met? (measured / target) |", "|---|---|---|"]
    for name, val, frac in checks:
        v = f"{val:,}" if isinstance(val, int) else str(val)
        tl.append(f"| {name} | {v} | {'yes' if frac >= 1 else 'NO'} ({frac:.2f}) |")

    # Ratios (issue 11), one line per broker where it applies.
    tws = [r for r in rows if r["system"].startswith("tradewind end to end")]
    ceilings = {r.get("broker", "tansu"): r for r in rows if "ceiling" in r["system"].lower()}
    rl = ["| ratio | value | numbers |", "|---|---|---|"]
    for t in tws:
        b = t.get("broker", "tansu")
        if by["spark"] and cpm(t) and cpm(by["spark"]):
            rl.append(f"| CPU per trade, Spark / tradewind [{b}] | {cpm(by['spark']) / cpm(t):.1f}x | "
                      f"{cpm(by['spark']):.2f} vs {cpm(t):.2f} CPU s per M trades |")
        c = ceilings.get(b)
        if c and c.get("trades_per_s") and t.get("trades_per_s"):
            rl.append(f"| end to end / consume-only ceiling [{b}] | {t['trades_per_s'] / c['trades_per_s']:.0%} | "
                      f"{t['trades_per_s']:,} vs {c['trades_per_s']:,} trades/s; CPU {cpm(t):.2f} vs "
                      f"{cpm(c) or 0:.2f} s per M; broker CPU {t.get('broker_cpu_seconds')} vs "
                      f"{c.get('broker_cpu_seconds')} s; start-up {t.get('startup_seconds')} s |")
    if by["kernels"] and by["duckdb"]:
        k, d = by["kernels"], by["duckdb"]
        rl.append(f"| kernels / DuckDB (trades/s) | {k['trades_per_s'] / d['trades_per_s']:.2f}x | "
                  f"{k['trades_per_s']:,} vs {d['trades_per_s']:,} trades/s |")
    for t in tws:
        if a.trades and t.get("trades_in_tables") is not None and t["trades_in_tables"] != a.trades:
            notes.append(f"WARNING: {t['system']}: {t['trades_in_tables']:,} trades in MySQL, not the file's "
                         f"{a.trades:,} (the broker lost data, or the tables are wrong).")
        notes.append(f"{t['system']}: CPU {t.get('cpu_seconds')} s, wall {t.get('seconds')} s, start-up "
                     f"{t.get('startup_seconds')} s, broker CPU {t.get('broker_cpu_seconds')} s, MariaDB CPU "
                     f"{t.get('mysql_cpu_seconds')} s, rows {t.get('market_rows')} + {t.get('asset_rows')}, "
                     f"trades in tables {t.get('trades_in_tables')}.")

    text = ("\n".join(lines) + "\n\n" + "\n".join(rl) + "\n\n" + "\n".join("- " + n for n in notes) + "\n\n"
            + "\n".join(tl) + "\n")
    print(text)
    if a.md:
        open(a.md, "w").write(text)
    if a.json:
        json.dump({"rows": rows, "targets": [{"target": n, "measured": v, "ratio": f} for n, v, f in checks]},
                  open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()
