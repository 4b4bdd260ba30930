#!/usr/bin/env python3
"""Runs every SQL query of grafana/data-quality.json against MariaDB, as Grafana's MySQL datasource would.

Creates a scratch database, applies the schema with `tradewind migrate`, seeds market_1m and asset_1m with
rows over the last 10 minutes (final, provisional and corrected ones; every other NOT NULL column filled by
type, so a schema change does not break the seeding), and asset_1h / asset_1d with the rollups of those
minutes computed here (one asset_1h row with a wrong high, which the rollup checks must flag), expands
Grafana's macros for a 1-hour range, and fails if a query errors, returns no row, or (time series) has no
`time` column first. The expected values of the seeded data are checked too. Uses the `mysql` client
(root@127.0.0.1:3306, no password).

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
        "AND TABLE_NAME IN ('market_1m', 'asset_1m', 'asset_1h', 'asset_1d') ORDER BY ORDINAL_POSITION")
    required = {}
    for table, col, dtype, nullable, default, extra in cols:
        if nullable == "NO" and default in ("NULL", "") and "GENERATED" not in extra.upper():
            required.setdefault(table, {})[col] = filler(dtype)
    expected = {"rows": 0, "provisional": 0, "corrected": 0, "folded": 0}
    stmts = []
    minutes = []  # asset_1m rows as dicts of Python values, for the rollups
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
            row = {"base": base, "start": start, "trades": trades, "buys": trades // 4 + i % 3, "sells": trades - trades // 4 - i % 3,
                   "volume": trades * 0.25 + i * 0.1, "notional_usd": trades * 2500.5 + i, "high_usd": 100.0 + (i * 7) % 5,
                   "low_usd": 90.0 - (i * 3) % 4, "open_key": (start * 1000) * 10**19 + 2 * i,
                   "close_key": (start * 1000 + 59_000) * 10**19 + 2 * i + 1, "first_ms": start * 1000 + 10 * i,
                   "last_ms": start * 1000 + 59_000 - i, "final": final}
            minutes.append(row)
            stmts.append(insert_asset("asset_1m", required, row, start + 60, 1 if final else 0))
    # One old minute (2 days ago): the rollup windows of the range all start after the oldest minute,
    # so v_quality_rollups compares them (it skips windows retention may have trimmed).
    old = dict(minutes[0], start=NOW - 2 * 86400, trades=1, buys=1, sells=0, final=True)
    stmts.append(insert_asset("asset_1m", required, old, old["start"] + 60, 1))
    expected["rollups_bad"] = seed_rollups(stmts, required, minutes)
    mysql("\n".join(stmts), db)
    return expected


def insert_asset(table, required, row, end, final):
    """INSERT of one asset_1m / asset_1h / asset_1d row from `row` (Python values)."""
    values = dict(required.get(table, {}))
    values.update({
        "base": f"'{row['base']}'", "window_start": f"FROM_UNIXTIME({row['start']})",
        "window_end": f"FROM_UNIXTIME({end})", "trades": str(row["trades"]), "buys": str(row["buys"]),
        "sells": str(row["sells"]), "volume": repr(row["volume"]), "notional_usd": repr(row["notional_usd"]),
        "high_usd": repr(row["high_usd"]), "low_usd": repr(row["low_usd"]), "open_key": str(row["open_key"]),
        "close_key": str(row["close_key"]), "first_trade_at": f"FROM_UNIXTIME({row['first_ms'] / 1000:.3f})",
        "last_trade_at": f"FROM_UNIXTIME({row['last_ms'] / 1000:.3f})", "is_final": str(final), "revision": "0",
        "updated_at": f"FROM_UNIXTIME({row['start'] + 65})",
    })
    return f"INSERT INTO {table} ({', '.join(values)}) VALUES ({', '.join(values.values())});"


def seed_rollups(stmts, required, minutes):
    """Appends asset_1h and asset_1d rows, the rollups of `minutes` computed here, with the first hour's
    high off by one; returns how many rollup rows must be flagged (1)."""
    for table, size in (("asset_1h", 3600), ("asset_1d", 86400)):
        groups = {}
        for m in minutes:
            groups.setdefault((m["base"], m["start"] // size * size), []).append(m)
        for n, ((base, start), ms) in enumerate(sorted(groups.items())):
            row = {"base": base, "start": start, "trades": sum(m["trades"] for m in ms),
                   "buys": sum(m["buys"] for m in ms), "sells": sum(m["sells"] for m in ms),
                   "volume": sum(m["volume"] for m in ms), "notional_usd": sum(m["notional_usd"] for m in ms),
                   "high_usd": max(m["high_usd"] for m in ms), "low_usd": min(m["low_usd"] for m in ms),
                   "open_key": min(m["open_key"] for m in ms), "close_key": max(m["close_key"] for m in ms),
                   "first_ms": min(m["first_ms"] for m in ms), "last_ms": max(m["last_ms"] for m in ms)}
            if table == "asset_1h" and n == 0:
                row["high_usd"] += 1
            final = 1 if all(m["final"] for m in ms) else 0
            stmts.append(insert_asset(table, required, row, start + size, final))
    return 1


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
        got = results.get("Rollup rows that disagree with asset_1m")
        if got and int(got[1][0][0]) != expected["rollups_bad"]:
            print(f"FAIL rollup rows disagreeing: {got[1][0][0]}, expected {expected['rollups_bad']}")
            failures += 1
        got = results.get("Rollup rows that disagree: details")
        if got and [r[:2] for r in got[1]] != [["asset_1h", "bitcoin"]]:
            print(f"FAIL rollup details: {got[1]}, expected the first bitcoin hour only")
            failures += 1
        got = results.get("Trades per hour: asset_1h against asset_1m")
        if got and any(r[1] != r[2] for r in got[1]):
            print(f"FAIL asset_1h/asset_1m trades differ on consistent data: {got[1]}")
            failures += 1
    finally:
        mysql(f"DROP DATABASE IF EXISTS `{db}`")
    print(f"data-quality SQL: {len(targets)} queries, {failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
