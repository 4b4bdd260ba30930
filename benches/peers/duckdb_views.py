#!/usr/bin/env python3
"""DuckDB batch reference for the built-in pipeline: the same four views as tradewind's
crates/pipeline/src/builtin.sql (market_1m, asset_1m, asset_1h, asset_1d, with every aggregate: counts
under FILTER, sums, first/last by event time, min/max, VWAP, average, change %) over the same JSON-lines
trades, parsed by DuckDB's JSON reader. Not streaming: one vectorised pass per view over the whole file,
a lower bound on the work a columnar engine needs. Prints one JSON line
{system, trades, seconds, cpu_seconds, peak_rss_bytes, windows}.

    python duckdb_views.py trades.jsonl [--threads 2]
"""
import argparse

import duckdb

from _measure import Measure

AGGS = """
    count(*) AS trades,
    count(*) FILTER (WHERE direction = 'buy') AS buys,
    count(*) FILTER (WHERE direction = 'sell') AS sells,
    sum(volume) AS volume,
    coalesce(sum(volume) FILTER (WHERE direction = 'buy'), 0) AS buy_volume,
    coalesce(sum(volume) FILTER (WHERE direction = 'sell'), 0) AS sell_volume,
    sum(priceUsd * volume) AS notional_usd,
    sum(priceUsd) AS sum_price_usd,
    arg_min(priceUsd, "timestamp") AS open_usd,
    max(priceUsd) AS high_usd,
    min(priceUsd) AS low_usd,
    arg_max(priceUsd, "timestamp") AS close_usd,
    min("timestamp") AS first_trade_at,
    max("timestamp") AS last_trade_at,
    sum(priceUsd * volume) / nullif(sum(volume), 0) AS vwap_usd,
    avg(priceUsd) AS avg_price_usd,
    (arg_max(priceUsd, "timestamp") - arg_min(priceUsd, "timestamp")) / arg_min(priceUsd, "timestamp") * 100
        AS price_change_pct
"""
QUOTE_OHLC = """,
    arg_min(price, "timestamp") AS open_price, max(price) AS high_price, min(price) AS low_price,
    arg_max(price, "timestamp") AS close_price
"""
VIEWS = [
    ("market_1m", "exchange, base, quote", 60_000, True),
    ("asset_1m", "base", 60_000, False),
    ("asset_1h", "base", 3_600_000, False),
    ("asset_1d", "base", 86_400_000, False),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    windows = {}
    with Measure() as m:
        con = duckdb.connect()
        con.execute(f"SET threads = {a.threads}")
        con.execute(f"""
            CREATE TEMP TABLE t AS SELECT * FROM read_json('{a.file}', format = 'newline_delimited',
                columns = {{exchange: 'VARCHAR', base: 'VARCHAR', quote: 'VARCHAR', direction: 'VARCHAR',
                price: 'DOUBLE', volume: 'DOUBLE', "timestamp": 'BIGINT', priceUsd: 'DOUBLE'}})""")
        trades = con.execute("SELECT count(*) FROM t").fetchone()[0]
        for name, keys, size, quote in VIEWS:
            aggs = AGGS + (QUOTE_OHLC if quote else "")
            con.execute(f"""CREATE TEMP TABLE {name} AS SELECT {keys},
                                ("timestamp" // {size}) * {size} AS window_start, {aggs}
                            FROM t GROUP BY ALL""")
            windows[name] = con.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
        con.close()
    m.report("duckdb batch, built-in pipeline's 4 views (not streaming), threads=%d" % a.threads,
             trades, windows=sum(windows.values()), **{f"{k}_windows": v for k, v in windows.items()})


if __name__ == "__main__":
    main()
