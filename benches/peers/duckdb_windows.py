#!/usr/bin/env python3
"""DuckDB batch reference: the same 1-minute windows as tradewind over the same JSON-lines trades.

Per (exchange, base, quote) and per base, tumbling 1-minute windows on event time (`timestamp`, ms):
count, volume, notional (sum priceUsd*volume), vwap (notional/volume), min, max, open, close (USD price,
open/close by event time). Not streaming: one vectorised query over the whole file (a lower bound on the
work a columnar engine needs). Prints one JSON line {system, trades, seconds, cpu_seconds, peak_rss_bytes}.

    benches/peers/.venv/bin/python benches/peers/duckdb_windows.py trades.jsonl [--threads 2]
"""
import argparse

import duckdb

from _measure import Measure

AGGS = """
    count(*)                          AS trades,
    sum(volume)                       AS volume,
    sum(priceUsd * volume)            AS notional_usd,
    sum(priceUsd * volume) / nullif(sum(volume), 0) AS vwap_usd,
    min(priceUsd)                     AS low_usd,
    max(priceUsd)                     AS high_usd,
    arg_min(priceUsd, "timestamp")    AS open_usd,
    arg_max(priceUsd, "timestamp")    AS close_usd
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    with Measure() as m:
        con = duckdb.connect()
        con.execute(f"SET threads = {a.threads}")
        con.execute(f"""
            CREATE TEMP TABLE t AS SELECT *, ("timestamp" // 60000) * 60000 AS window_start
            FROM read_json('{a.file}', format = 'newline_delimited', columns = {{
                exchange: 'VARCHAR', base: 'VARCHAR', quote: 'VARCHAR', direction: 'VARCHAR',
                price: 'DOUBLE', volume: 'DOUBLE', "timestamp": 'BIGINT', priceUsd: 'DOUBLE'}})""")
        trades = con.execute("SELECT count(*) FROM t").fetchone()[0]
        markets = con.execute(f"""CREATE TEMP TABLE market_1m AS SELECT exchange, base, quote, window_start, {AGGS}
                                  FROM t GROUP BY ALL""").fetchone()
        assets = con.execute(f"CREATE TEMP TABLE asset_1m AS SELECT base, window_start, {AGGS} FROM t GROUP BY ALL")
        n_market = con.execute("SELECT count(*) FROM market_1m").fetchone()[0]
        n_asset = con.execute("SELECT count(*) FROM asset_1m").fetchone()[0]
        con.close()
    del markets, assets
    m.report("duckdb batch (not streaming), threads=%d" % a.threads, trades,
             market_windows=n_market, asset_windows=n_asset)


if __name__ == "__main__":
    main()
