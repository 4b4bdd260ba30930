#!/usr/bin/env python3
"""Turns one `tradewind run --drain` (its log, GNU time output, last /metrics scrape) into one JSON line
for the bench harness. Used by benches/common.sh; not meant to be run by hand.

Fields: system, trades, seconds (process wall), seconds_after_join (partitions assigned -> process
exit), cpu_seconds (user+sys), peak_rss_bytes, trades_per_s, trades_per_s_after_join, the engine's
summary (records, too_late, corrected, rows_written, commits), per-stage sums from the histograms
(batch_seconds = whole micro-batch incl. sink, sink_seconds = MySQL transaction), broker/MySQL CPU.
"""
import argparse
import json
import re
from datetime import datetime

TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def ts(line):
    m = TS.match(line)
    if not m:
        return None
    return datetime.fromisoformat(m.group(1)[:26]).timestamp()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--label", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--time", required=True)
    ap.add_argument("--metrics")
    ap.add_argument("--broker-ticks", type=int, default=0)
    ap.add_argument("--mysql-ticks", type=int, default=0)
    ap.add_argument("--rows", default="")
    ap.add_argument("--broker", default="tansu")
    a = ap.parse_args()

    wall, user, sys_, rss_kb = open(a.time).read().split()[-4:]
    wall, cpu = float(wall), float(user) + float(sys_)
    first = assigned = stopped = None
    summary = {}
    for raw in open(a.log, errors="replace"):
        line = ANSI.sub("", raw)
        t = ts(line)
        if t is None:
            continue
        first = first if first is not None else t
        if "partition loaded from MySQL" in line or "partitions assigned" in line:
            # The first partition's load: after the group join (live) or right at start-up (--drain,
            # which assigns partitions directly).
            assigned = assigned if assigned is not None else t
        if "engine stopped" in line:
            stopped = t
            summary = {k: int(v) for k, v in re.findall(r"(\w+): (\d+)", line)}
    trades = summary.get("trades", summary.get("records", 0))
    after = (stopped - assigned) if (stopped and assigned) else None

    hist = {}
    if a.metrics:
        try:
            for line in open(a.metrics):
                m = re.match(r"^(tradewind_engine_\w+_seconds)_(sum|count)(?:\{[^}]*\})? ([0-9.eE+-]+)$", line)
                if m:
                    key = f"{m.group(1)}_{m.group(2)}"
                    hist[key] = hist.get(key, 0.0) + float(m.group(3))
        except FileNotFoundError:
            pass
    rows = a.rows.split()
    out = {
        "system": a.label,
        "trades": trades,
        "seconds": round(wall, 3),
        "seconds_after_join": round(after, 3) if after else None,
        "cpu_seconds": round(cpu, 3),
        "peak_rss_bytes": int(rss_kb) * 1024,
        "trades_per_s": round(trades / wall) if wall else None,
        "trades_per_s_after_join": round(trades / after) if after else None,
        "startup_seconds": round(assigned - first, 3) if (assigned and first) else None,
        "summary": summary,
        "batch_seconds": round(hist.get("tradewind_engine_batch_duration_seconds_sum", 0), 3),
        "batches": int(hist.get("tradewind_engine_batch_duration_seconds_count", 0)),
        "sink_seconds": round(hist.get("tradewind_engine_sink_duration_seconds_sum", 0), 3),
        "sink_commits": int(hist.get("tradewind_engine_sink_duration_seconds_count", 0)),
        "broker_cpu_seconds": a.broker_ticks / 100,
        "mysql_cpu_seconds": a.mysql_ticks / 100,
        "broker": a.broker,
    }
    if len(rows) == 3:
        out.update(market_rows=int(rows[0]), asset_rows=int(rows[1]), trades_in_tables=int(float(rows[2])))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
