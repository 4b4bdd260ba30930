#!/usr/bin/env bash
# Final-window-to-MySQL latency at a steady live rate (issue 5, item 2). NOT run in CI.
#
#   bash benches/latency.sh [--rate 20000] [--seconds 90] [--markets 1000] [--out DIR]
#
# Runs, against the local stack (scripts/stack.sh up: tansu + MariaDB), for --seconds:
#   tradewind simulate --rate R (wall-clock event time)  ->  tradewind ingest (websocket -> Kafka, 6
#   partitions)  ->  tradewind run (fresh topic, group, database)
# then scrapes the engine's /metrics and reports p50/p99 of tradewind_engine_final_to_commit_seconds
# (interpolated within the histogram buckets, as Prometheus' histogram_quantile does), plus the rate
# actually produced, the engine's CPU and peak RSS. The histogram measures from the moment the batch that
# moved the watermark past a window's end was polled to the MySQL commit of that window's row (one
# observation per final row). With 1-minute windows and a 5 s out-of-orderness bound, run >= 70 s so at
# least one minute closes. Output: table on stdout, JSON + metrics under $OUT.
# TW_RUN_BIN=PATH runs `run` and `ingest` from another build (before/after comparisons).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

RATE=20000
SECS=90
M=1000
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
    --rate) RATE="$2"; shift 2 ;;
    --seconds) SECS="$2"; shift 2 ;;
    --markets) M="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    -h | --help) sed -n '2,15p' "$0"; exit 0 ;;
    *) die "unknown argument $1" ;;
    esac
done
OUT="${OUT:-$CARGO_TARGET_DIR/bench/latency-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT"
tw_build
tw_stack
log "load before start: $(uptime)"

TOPIC="twb_lat_${TW_RUN_ID}"
DB="twbench_lat_${TW_RUN_ID}"
SIM_PORT="$(free_port)"
ING_PORT="$(free_port)"
RUN_PORT="$(free_port)"
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

export NO_COLOR=1
"$TW_BIN" simulate --listen "127.0.0.1:$SIM_PORT" --rate "$RATE" --markets "$M" --seed "$TW_SEED" \
    >"$OUT/simulate.log" 2>&1 &
PIDS+=($!)
"${TW_RUN_BIN:-$TW_BIN}" run --brokers "$TRADEWIND_BROKERS" --topic "$TOPIC" --group "g_$TOPIC" \
    --mysql-url "$TW_MYSQL_BASE/$DB" --metrics-addr "127.0.0.1:$RUN_PORT" --migrate \
    --dlq-topic "$TOPIC.dlq" --late-topic "$TOPIC.late" >"$OUT/run.log" 2>&1 &
RUN_PID=$!
PIDS+=($RUN_PID)
sleep 1
"${TW_RUN_BIN:-$TW_BIN}" ingest --source "ws://127.0.0.1:$SIM_PORT/trades/ALL" --brokers "$TRADEWIND_BROKERS" \
    --topic "$TOPIC" --dlq-topic "$TOPIC.dlq" --partitions 6 --metrics-addr "127.0.0.1:$ING_PORT" \
    >"$OUT/ingest.log" 2>&1 &
PIDS+=($!)

log "live: simulate --rate $RATE -> ingest -> run on topic $TOPIC for ${SECS}s"
T0=$(date +%s.%N)
C0="$(cpu_ticks "$RUN_PID")"
sleep "$SECS"
curl -sf "http://127.0.0.1:$RUN_PORT/metrics" >"$OUT/run.metrics" || die "cannot scrape the engine's /metrics"
curl -sf "http://127.0.0.1:$ING_PORT/metrics" >"$OUT/ingest.metrics" || true
T1=$(date +%s.%N)
C1="$(cpu_ticks "$RUN_PID")"
HWM="$(awk '/VmHWM/ {print $2}' "/proc/$RUN_PID/status")"
cleanup
trap - EXIT
mariadb -uroot -h127.0.0.1 -N -e "SELECT count(*), sum(is_final) FROM $DB.market_1m" >"$OUT/rows.txt" 2>/dev/null || true
[ "${TW_KEEP_DB:-0}" = 1 ] || mariadb -uroot -h127.0.0.1 -e "DROP DATABASE IF EXISTS $DB" 2>/dev/null || true
tw_delete_topics "$TOPIC"
log "load after: $(uptime)"

python3 - "$OUT" "$RATE" "$SECS" "$T0" "$T1" "$((C1 - C0))" "$HWM" <<'EOF'
import json, re, sys
out, rate, secs, t0, t1, ticks, hwm = sys.argv[1:]
wall = float(t1) - float(t0)

def metric(path, name):
    vals = {}
    for line in open(path):
        m = re.match(r"^" + name + r"(\{[^}]*\})? ([0-9.eE+-]+)$", line)
        if m:
            vals[m.group(1) or ""] = float(m.group(2))
    return vals

b = metric(f"{out}/run.metrics", "tradewind_engine_final_to_commit_seconds_bucket")
buckets = sorted(((float("inf") if 'le="+Inf"' in k else float(re.search(r'le="([^"]+)"', k).group(1)), v)
                  for k, v in b.items()))
total = buckets[-1][1] if buckets else 0

def quantile(q):
    # Prometheus histogram_quantile: linear interpolation inside the bucket holding rank q*total.
    if total == 0:
        return None
    rank, prev_le, prev_c = q * total, 0.0, 0.0
    for le, c in buckets:
        if c >= rank:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * ((rank - prev_c) / (c - prev_c) if c > prev_c else 0)
        prev_le, prev_c = le, c

produced = sum(metric(f"{out}/ingest.metrics", "tradewind_ingest_produced_total").values()) if total else 0
records = sum(metric(f"{out}/run.metrics", "tradewind_engine_records_in_total").values())
s = sum(metric(f"{out}/run.metrics", "tradewind_engine_final_to_commit_seconds_sum").values())
batch_n = sum(metric(f"{out}/run.metrics", "tradewind_engine_batch_duration_seconds_count").values())
batch_s = sum(metric(f"{out}/run.metrics", "tradewind_engine_batch_duration_seconds_sum").values())
r = {"system": "tradewind live latency (simulate -> ingest -> tansu -> run -> MariaDB)",
     "target_rate": int(rate), "seconds": round(wall, 1), "produced": int(produced),
     "produced_per_s": round(produced / wall) if wall else None, "engine_records": int(records),
     "final_rows_observed": int(total), "p50_seconds": quantile(0.5), "p99_seconds": quantile(0.99),
     "mean_seconds": (s / total) if total else None, "engine_cpu_seconds": int(ticks) / 100,
     "engine_cpu_share": round(int(ticks) / 100 / wall, 3) if wall else None,
     "engine_peak_rss_bytes": int(hwm) * 1024 if hwm else None,
     "batches": int(batch_n), "mean_batch_seconds": batch_s / batch_n if batch_n else None,
     "buckets": [[le if le != float("inf") else "+Inf", c] for le, c in buckets]}
json.dump(r, open(f"{out}/latency.json", "w"), indent=1)
fmt = lambda x: "n/a" if x is None else f"{x * 1000:.1f} ms"
print("| rate target | produced/s | final rows | p50 final->commit | p99 final->commit | mean | engine CPU | engine peak RSS |")
print("|---|---|---|---|---|---|---|---|")
print(f"| {int(rate):,}/s | {r['produced_per_s']:,} | {int(total):,} | {fmt(r['p50_seconds'])} | {fmt(r['p99_seconds'])} | "
      f"{fmt(r['mean_seconds'])} | {r['engine_cpu_share']:.0%} of a core | "
      f"{(int(hwm) / 1024) if hwm else 0:.0f} MiB |")
print(f"\ntarget p99 <= 250 ms: {'met' if r['p99_seconds'] is not None and r['p99_seconds'] <= 0.25 else 'NOT met'}")
EOF
log "results: $OUT"
