#!/usr/bin/env bash
# Scaling curve (issue 5, item 3): throughput, CPU and peak RSS of `tradewind run --drain` against the
# number of markets and the micro-batch size. NOT run in CI.
#
#   bash benches/scaling.sh [--trades 500000] [--markets "10 100 1000 10000"] [--rows "10000 100000"]
#                           [--out DIR] [-- extra `tradewind run` flags]
#
# For each market count: one seeded data set (tradewind simulate --write-jsonl, fixed start), one fresh
# 6-partition topic on the local tansu broker; for each batch size: a fresh group + database and
# `tradewind run --drain --max-batch-rows R` under GNU time. Also the in-memory decode + window kernels on
# the same file (benches/kernels.rs direct mode), to separate engine CPU from broker/MySQL waits.
# Output: one table on stdout; JSON lines + markdown under $OUT.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

N=500000
MARKETS="10 100 1000 10000"
ROWS="10000 100000"
OUT=""
EXTRA=()
while [ $# -gt 0 ]; do
    case "$1" in
    --trades) N="$2"; shift 2 ;;
    --markets) MARKETS="$2"; shift 2 ;;
    --rows) ROWS="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --) shift; EXTRA=("$@"); break ;;
    -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
    *) die "unknown argument $1" ;;
    esac
done
OUT="${OUT:-$CARGO_TARGET_DIR/bench/scaling-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT"
DATA="${TW_BENCH_DATA_DIR:-${TMPDIR:-/tmp}/tradewind-bench}"
mkdir -p "$DATA"
RES="$OUT/scaling.jsonl"
: >"$RES"
tw_build
tw_stack
log "load before start: $(uptime)"

for m in $MARKETS; do
    file="$DATA/trades-n$N-m$m-s$TW_SEED.jsonl"
    tw_generate "$file" "$N" "$m"
    topic="twb_scale_${TW_RUN_ID}_m$m"
    tw_produce "$file" "$topic" 6
    for r in $ROWS; do
        tw_run_drain "markets=$m rows=$r" "$topic" "$OUT" --max-batch-rows "$r" "${EXTRA[@]}" |
            python3 -c 'import sys,json; d=json.loads(sys.stdin.read()); d.update(markets=int(sys.argv[1]), batch_rows=int(sys.argv[2])); print(json.dumps(d))' "$m" "$r" >>"$RES"
    done
    TW_KERNELS_DIRECT=0 TW_KERNELS_FILE="$file" TW_BENCH_ROWS=100000 "$TW_KERNELS_BIN" |
        python3 -c 'import sys,json; d=json.loads(sys.stdin.read()); d.update(markets=int(sys.argv[1]), kernels=True); print(json.dumps(d))' "$m" >>"$RES"
    tw_delete_topics "$topic"
done
log "load after: $(uptime)"

python3 - "$RES" "$OUT/scaling.md" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
k = {r["markets"]: r for r in rows if r.get("kernels")}
lines = ["| markets | batch rows | trades/s (process) | trades/s (after join) | CPU s per M trades | peak RSS MiB | "
         "batch s (sink s) | rows written | too late / corrected | kernels trades/s (1 thread) |",
         "|---|---|---|---|---|---|---|---|---|---|"]
for r in rows:
    if r.get("kernels"):
        continue
    s = r.get("summary", {})
    kr = k.get(r["markets"], {}).get("trades_per_s")
    lines.append(f"| {r['markets']:,} | {r['batch_rows']:,} | {r['trades_per_s']:,} | {r.get('trades_per_s_after_join') or 0:,} | "
                 f"{r['cpu_seconds'] / (r['trades'] / 1e6):.2f} | {r['peak_rss_bytes'] / 2**20:.0f} | "
                 f"{r['batch_seconds']:.2f} ({r['sink_seconds']:.2f}) | {s.get('rows_written', 0):,} | "
                 f"{s.get('too_late', 0):,} / {s.get('corrected', 0):,} | {kr or 0:,} |")
text = "\n".join(lines) + "\n"
print(text)
open(sys.argv[2], "w").write(text)
EOF
log "results: $OUT"
