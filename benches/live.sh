#!/usr/bin/env bash
# Live-mode cost (issue 11): CPU per process and per thread of `tradewind demo` (simulator, ingestor,
# embedded mock Kafka cluster and engine in one process) and of MariaDB, at steady rates, plus the
# p99 final-window-to-commit latency. NOT run in CI.
#
#   bash benches/live.sh [--rates "5000 20000"] [--seconds 90] [--markets 2000] [--warmup 15] [--out DIR]
#
# For each rate: `tradewind demo --rate R --markets M --duration (warmup + seconds) --view plain` into a
# fresh database; after --warmup seconds the CPU ticks of every thread of the demo (/proc/PID/task/*/stat,
# user+sys) and of mariadbd are read, again --seconds later; the difference is reported as a share of
# one core, per thread name (threads of one name summed: tokio workers, librdkafka broker threads) and
# per process, with CPU seconds per million trades. The p99 of tradewind_engine_final_to_commit_seconds
# comes from the demo's /metrics at the end (interpolated in the buckets like histogram_quantile).
# With 1-minute windows run --seconds >= 70 so at least one minute closes.
# Output: one table per rate on stdout; JSON under $OUT.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

RATES="5000 20000"
SECS=90
WARMUP=15
M=2000
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
    --rates) RATES="$2"; shift 2 ;;
    --seconds) SECS="$2"; shift 2 ;;
    --warmup) WARMUP="$2"; shift 2 ;;
    --markets) M="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    -h | --help) sed -n '2,17p' "$0"; exit 0 ;;
    *) die "unknown argument $1" ;;
    esac
done
OUT="${OUT:-$CARGO_TARGET_DIR/bench/live-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT"
TW_BIN="${TW_BIN:-}"
if [ -z "$TW_BIN" ]; then
    log "building tradewind (release)"
    (cd "$TW_ROOT" && cargo build --release -q --workspace --all-targets) || die "cargo build failed"
    TW_BIN="$CARGO_TARGET_DIR/release/tradewind"
fi
MARIADB_PID="$(pgrep -x mariadbd | head -1 || true)"
[ -n "$MARIADB_PID" ] || die "no mariadbd running (bash scripts/stack.sh up)"

# "name ticks" for every thread of PID, one per line.
thread_ticks() {
    local t
    for t in /proc/"$1"/task/*; do
        # comm may contain spaces: take the fields after the last ')'.
        awk -v comm="$(cat "$t/comm" 2>/dev/null)" '{sub(/.*\) /, ""); print comm "\t" $12 + $13}' "$t/stat" 2>/dev/null || true
    done
}

DEMO_PID=""
cleanup() { [ -n "$DEMO_PID" ] && kill -TERM "$DEMO_PID" 2>/dev/null && wait "$DEMO_PID" 2>/dev/null || true; }
trap cleanup EXIT

for R in $RATES; do
    DB="twbench_live_${TW_RUN_ID}_$R"
    PORT="$(free_port)"
    log "demo --rate $R --markets $M: warm-up ${WARMUP}s, measure ${SECS}s (load $(cut -d' ' -f1-3 /proc/loadavg))"
    NO_COLOR=1 RUST_LOG="${RUST_LOG:-warn}" "$TW_BIN" demo --rate "$R" --markets "$M" --view plain \
        --duration "$((WARMUP + SECS + 5))s" --mysql-url "$TW_MYSQL_BASE/$DB" --metrics-addr "127.0.0.1:$PORT" \
        --print-every 30s >"$OUT/demo-$R.log" 2>&1 &
    DEMO_PID=$!
    sleep "$WARMUP"
    thread_ticks "$DEMO_PID" >"$OUT/threads0-$R.tsv"
    M0="$(cpu_ticks "$MARIADB_PID")"
    C0="$(cpu_ticks "$DEMO_PID")"
    curl -sf "http://127.0.0.1:$PORT/metrics" >"$OUT/metrics0-$R.txt" || die "cannot scrape the demo's /metrics"
    T0=$(date +%s.%N)
    sleep "$SECS"
    thread_ticks "$DEMO_PID" >"$OUT/threads1-$R.tsv"
    M1="$(cpu_ticks "$MARIADB_PID")"
    C1="$(cpu_ticks "$DEMO_PID")"
    T1=$(date +%s.%N)
    curl -sf "http://127.0.0.1:$PORT/metrics" >"$OUT/metrics1-$R.txt" || die "cannot scrape the demo's /metrics"
    HWM="$(awk '/VmHWM/ {print $2}' "/proc/$DEMO_PID/status")"
    cleanup
    DEMO_PID=""
    [ "${TW_KEEP_DB:-0}" = 1 ] || mariadb -uroot -h127.0.0.1 -e "DROP DATABASE IF EXISTS $DB" 2>/dev/null || true
    python3 "$TW_ROOT/benches/live_report.py" --out "$OUT" --rate "$R" --wall "$(echo "$T1 - $T0" | bc)" \
        --process-ticks "$((C1 - C0))" --mariadb-ticks "$((M1 - M0))" --hwm-kb "${HWM:-0}"
done
log "results: $OUT"
