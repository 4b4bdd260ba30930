#!/usr/bin/env python3
"""Runs every SQL query of grafana/data-quality.json against MariaDB, as Grafana's MySQL datasource would.

Creates a scratch database, applies the schema with `tradewind migrate`, seeds market_1m and asset_1m with
rows over the last 10 minutes (final, provisional and corrected ones; every other NOT NULL column filled by
type, so a schema change does not break the seeding), expands Grafana's macros for a 1-hour range, and
fails if a query errors, returns no row, or (time series) has no `time` column first. The expected values
of the seeded data are checked too. Uses the `mysql` client (root@127.0.0.1:3306, no password).

  python3 scripts/check_quality_sql.py --binary target/release/tradewind
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time

NOW = int(time.time()) // 60 * 60


def mysql(sql, db=None):
    cmd = ["mysql", "-h127.0.0.1", "-P3306", "-uroot", "--batch", "--raw"]
    if db:
        cmd.append(db)
    r = subprocess.run(cmd, input="SET time_zone = '+00:00';\n" + sql, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip())
    lines = [line.split("\t") for line in r.stdout.splitlines()]
    return lines[0] if lines else [], lines[1:]


def expand(sql, t_from, t_to):
    """Grafana's MySQL macros (pkg/tsdb/mysql macros), for a fixed range."""
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)",
                 lambda m: f"{m.group(1)} BETWEEN FROM_UNIXTIME({t_from}) AND FROM_UNIXTIME({t_to})", sql)

    def group(m):
        col, interval = m.group(1).strip(), m.group(2).strip().strip("'\"")
        secs = {"s": 1, "m": 60, "h": 3600}[interval[-1]] * int(interval[:-1])
        return f'UNIX_TIMESTAMP({col}) DIV {secs} * {secs} AS "time"'

    sql = re.sub(r"\$__timeGroupAlias\(([^,]+),([^)]+)\)", group, sql)
    sql = sql.replace("$__timeFrom()", f"FROM_UNIXTIME({t_from})").replace("$__timeTo()", f"FROM_UNIXTIME({t_to})")
    if "$__" in sql:
        raise ValueError(f"unexpanded Grafana macro in: {sql}")
    return sql


def filler(data_type):
    t = data_type.lower()
    if t in ("tinyint", "smallint", "mediumint", "int", "bigint", "decimal", "double", "float"):
        return "1"
    if t in ("datetime", "timestamp"):
        return f"FROM_UNIXTIME({NOW})"
    if t == "date":
        return "CURRENT_DATE"
    return "'x'"


def seed(db):
    """Inserts rows into market_1m and asset_1m; returns the expected figures."""
    _, cols = mysql(
        "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, IS_NULLABLE, COLUMN_DEFAULT, EXTRA "
        f"FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = '{db}' "
        "AND TABLE_NAME IN ('market_1m', 'asset_1m') ORDER BY ORDINAL_POSITION")
    required = {}
    for table, col, dtype, nullable, default, extra in cols:
        if nullable == "NO" and default in ("NULL", "") and "GENERATED" not in extra.upper():
            required.setdefault(table, {})[col] = filler(dtype)
    expected = {"rows": 0, "provisional": 0, "corrected": 0, "folded": 0}
    stmts = []
    for i in range(10):  # minutes NOW-10m .. NOW-1m
        start = NOW - (10 - i) * 60
        final = i < 9  # the last minute is still forming
        for market, base in (("binance", "bitcoin"), ("binance", "ethereum"), ("coinbase", "bitcoin")):
            revision = 2 if (final and i % 3 == 0 and market == "binance") else 0
            values = dict(required.get("market_1m", {}))
            values.update({
                "exchange": f"'{market}'", "base": f"'{base}'", "quote": "'tether'",
                "window_start": f"FROM_UNIXTIME({start})", "window_end": f"FROM_UNIXTIME({start + 60})",
                "trades": "10", "is_final": "1" if final else "0", "revision": str(revision),
                "updated_at": f"FROM_UNIXTIME({start + 65})", "vwap_usd": "100",
            })
            stmts.append(f"INSERT INTO market_1m ({', '.join(values)}) VALUES ({', '.join(values.values())});")
            expected["rows"] += 1
            expected["provisional"] += 0 if final else 1
            expected["corrected"] += 1 if revision else 0
            expected["folded"] += revision
        for base, trades in (("bitcoin", 20), ("ethereum", 10)):
            values = dict(required.get("asset_1m", {}))
            values.update({
                "base": f"'{base}'", "window_start": f"FROM_UNIXTIME({start})",
                "window_end": f"FROM_UNIXTIME({start + 60})", "trades": str(trades),
                "is_final": "1" if final else "0", "revision": "0",
                "updated_at": f"FROM_UNIXTIME({start + 65})",
            })
            stmts.append(f"INSERT INTO asset_1m ({', '.join(values)}) VALUES ({', '.join(values.values())});")
    mysql("\n".join(stmts), db)
    return expected


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--dashboard", default="grafana/data-quality.json")
    args = ap.parse_args()
    db = f"tw_quality_sql_{os.getpid()}"
    with open(args.dashboard) as f:
        dash = json.load(f)
    targets = [(p["title"], t) for p in dash["panels"] for t in p.get("targets", []) if "rawSql" in t]
    if not targets:
        print("no SQL query in the dashboard")
        return 1
    failures = 0
    try:
        mysql(f"DROP DATABASE IF EXISTS `{db}`")
        subprocess.run([args.binary, "migrate", "--mysql-url", f"mysql://root@127.0.0.1:3306/{db}"],
                       check=True, capture_output=True)
        expected = seed(db)
        results = {}
        for title, t in targets:
            sql = expand(t["rawSql"], NOW - 3600, NOW + 60)
            try:
                header, rows = mysql(sql, db)
            except RuntimeError as e:
                print(f"FAIL {title!r}: {e}\n     {sql}")
                failures += 1
                continue
            if not rows:
                print(f"FAIL {title!r}: no rows\n     {sql}")
                failures += 1
                continue
            if t.get("format") == "time_series" and header[0] != "time":
                print(f"FAIL {title!r}: first column is {header[0]!r}, not time")
                failures += 1
                continue
            results[title] = (header, rows)
            print(f"ok   {title!r}: {len(rows)} rows, columns {header}")
        # The seeded figures, as the panels must show them.
        checks = {
            "Market rows in range": expected["rows"],
            "Provisional rows": expected["provisional"],
            "Corrected rows": expected["corrected"],
            "Stuck provisional rows": 0,
        }
        for title, want in checks.items():
            got = results.get(title)
            if got and int(got[1][0][0]) != want:
                print(f"FAIL {title!r}: {got[1][0][0]}, expected {want}")
                failures += 1
        got = results.get("Corrections per window minute")
        if got and sum(int(r[2]) for r in got[1]) != expected["folded"]:
            print(f"FAIL corrections: late trades folded in {got[1]}, expected {expected['folded']} in all")
            failures += 1
        got = results.get("Trades per minute: asset_1m against market_1m")
        if got and any(r[1] != r[2] for r in got[1]):
            print(f"FAIL asset/market trades differ on consistent data: {got[1]}")
            failures += 1
    finally:
        mysql(f"DROP DATABASE IF EXISTS `{db}`")
    print(f"data-quality SQL: {len(targets)} queries, {failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
