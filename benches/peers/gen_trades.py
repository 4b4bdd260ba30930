#!/usr/bin/env python3
"""Fallback data set: N seeded CoinCap-format trades as JSON lines (stdlib only).

The harness normally uses `tradewind simulate` output; this exists so the peers can be run on their own:
    python3 benches/peers/gen_trades.py --trades 1000000 --markets 100 --seed 42 > /tmp/trades.jsonl
Event time advances ~`rate` trades per second from a fixed start, with small out-of-order jitter.
"""
import argparse
import json
import random
import sys

BASES = ["bitcoin", "ethereum", "solana", "binance-coin", "xrp", "dogecoin", "cardano", "tron", "avalanche",
         "chainlink", "polkadot", "litecoin", "uniswap", "stellar", "monero", "near-protocol", "aptos",
         "arbitrum", "optimism", "filecoin"]
QUOTES = [("tether", 1.0), ("usd-coin", 0.9998), ("bitcoin", 60000.0)]
EXCHANGES = ["binance", "coinbase", "kraken", "okx", "bybit"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trades", type=int, default=1_000_000)
    ap.add_argument("--markets", type=int, default=100)
    ap.add_argument("--rate", type=int, default=2_000, help="trades per second of event time")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--start-ms", type=int, default=1_700_000_000_000)
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    markets = []
    for i in range(a.markets):
        base = BASES[i % len(BASES)] + ("" if i < len(BASES) else f"-{i // len(BASES)}")
        quote, qusd = QUOTES[i % len(QUOTES)]
        markets.append([EXCHANGES[i % len(EXCHANGES)], base, quote, qusd, 10 ** rnd.uniform(-2, 4)])
    out = sys.stdout
    write = out.write
    for n in range(a.trades):
        m = markets[rnd.randrange(len(markets))]
        m[4] *= 1 + rnd.gauss(0, 0.0005)
        usd = m[4]
        ts = a.start_ms + n * 1000 // a.rate + rnd.randrange(-200, 50)
        write(json.dumps({"exchange": m[0], "base": m[1], "quote": m[2],
                          "direction": "buy" if rnd.random() < 0.5 else "sell",
                          "price": round(usd / m[3], 8), "volume": round(rnd.expovariate(1.0), 6),
                          "timestamp": ts, "priceUsd": usd}, separators=(",", ":")))
        write("\n")


if __name__ == "__main__":
    main()
