#!/usr/bin/env python3
"""One rate of benches/live.sh as a table: CPU per thread name and per process (share of one core and CPU
seconds per million trades), trades per second consumed, p50/p99 final-window-to-commit latency. Reads
$OUT/threads{0,1}-R.tsv and $OUT/metrics{0,1}-R.txt; writes $OUT/live-R.json. Not meant to be run by hand.
"""
import argparse
import json
import re
from collections import defaultdict


def threads(path):
    out = defaultdict(int)
    for line in open(path):
        name, _, ticks = line.rstrip("\n").rpartition("\t")
        if name:
            out[name] += int(float(ticks))
    return out


def metric(path, name):
    vals = {}
    for line in open(path):
        m = re.match(r"^" + name + r"(\{[^}]*\})? ([0-9.eE+-]+)$", line)
        if m:
            vals[m.group(1) or ""] = float(m.group(2))
    return vals


def quantile(buckets, q):
    """Prometheus histogram_quantile over [(le, cumulative count)] sorted by le."""
    total = buckets[-1][1] if buckets else 0
    if total == 0:
        return None
    rank, prev_le, prev_c = q * total, 0.0, 0.0
    for le, c in buckets:
        if c >= rank:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * ((rank - prev_c) / (c - prev_c) if c > prev_c else 0)
        prev_le, prev_c = le, c
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--rate", type=int, required=True)
    ap.add_argument("--wall", type=float, required=True)
    ap.add_argument("--process-ticks", type=int, required=True)
    ap.add_argument("--mariadb-ticks", type=int, required=True)
    ap.add_argument("--hwm-kb", type=int, default=0)
    a = ap.parse_args()
    o, r = a.out, a.rate
    t0, t1 = threads(f"{o}/threads0-{r}.tsv"), threads(f"{o}/threads1-{r}.tsv")
    per = sorted(((n, t1[n] - t0.get(n, 0)) for n in t1), key=lambda x: -x[1])
    rec = lambda p: sum(metric(p, "tradewind_engine_records_in_total").values())
    trades = rec(f"{o}/metrics1-{r}.txt") - rec(f"{o}/metrics0-{r}.txt")
    per_m = lambda ticks: (ticks / 100) / (trades / 1e6) if trades else None

    def hist(p):
        b = metric(p, "tradewind_engine_final_to_commit_seconds_bucket")
        return {(float("inf") if 'le="+Inf"' in k else float(re.search(r'le="([^"]+)"', k).group(1))): v
                for k, v in b.items()}

    h1 = hist(f"{o}/metrics1-{r}.txt")
    buckets = sorted(h1.items())  # whole run (the warm-up's closes included)
    res = {
        "rate_target": r, "seconds": round(a.wall, 1), "trades": int(trades),
        "trades_per_s": round(trades / a.wall) if a.wall else None,
        "demo_cores": round(a.process_ticks / 100 / a.wall, 3),
        "demo_cpu_s_per_m": per_m(a.process_ticks),
        "mariadb_cores": round(a.mariadb_ticks / 100 / a.wall, 3),
        "mariadb_cpu_s_per_m": per_m(a.mariadb_ticks),
        "total_cores": round((a.process_ticks + a.mariadb_ticks) / 100 / a.wall, 3),
        "threads": {n: round(t / 100 / a.wall, 4) for n, t in per if t > 0},
        "final_rows": int(buckets[-1][1]) if buckets else 0,
        "p50_final_s": quantile(buckets, 0.5), "p99_final_s": quantile(buckets, 0.99),
        "peak_rss_mib": round(a.hwm_kb / 1024),
    }
    json.dump(res, open(f"{o}/live-{r}.json", "w"), indent=1)
    pct = lambda x: f"{x:.1%}"
    fmt_ms = lambda x: "n/a" if x is None else f"{x * 1000:.0f} ms"
    f2 = lambda x: "n/a" if x is None else f"{x:.2f}"
    print(f"\n### {r:,} trades/s target: {res['trades_per_s']:,} consumed/s over {res['seconds']} s\n")
    print("| process / thread | share of one core | CPU s per M trades |")
    print("|---|---|---|")
    print(f"| **tradewind demo (whole process)** | {pct(res['demo_cores'])} | {f2(res['demo_cpu_s_per_m'])} |")
    for n, t in per:
        if t > 0:
            print(f"| &nbsp; thread `{n}` | {pct(t / 100 / a.wall)} | {f2(per_m(t))} |")
    print(f"| **MariaDB (mariadbd)** | {pct(res['mariadb_cores'])} | {f2(res['mariadb_cpu_s_per_m'])} |")
    print(f"| **total** | {pct(res['total_cores'])} | {f2(per_m(a.process_ticks + a.mariadb_ticks))} |")
    print(f"\nfinal rows {res['final_rows']:,}; final-window-to-commit p50 {fmt_ms(res['p50_final_s'])}, "
          f"p99 {fmt_ms(res['p99_final_s'])} (target <= 250 ms); demo peak RSS {res['peak_rss_mib']} MiB")


if __name__ == "__main__":
    main()
