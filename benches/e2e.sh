#!/usr/bin/env bash
# End-to-end benchmark (issue 5): tradewind against the consume-only ceiling, its own kernels, and the
# pipeline it replaces, all on ONE seeded data set of N CoinCap-format trades. NOT run in CI.
#
#   bash benches/e2e.sh [--trades N] [--markets M] [--with-peers] [--spark-batches B] [--out DIR]
#                       [--repeat R] [--partitions P (default 6)] [--broker mock|tansu|both (default both)]
#                       [--mock-partitions P (default 32)] [-- extra `tradewind run` flags]
#
# Steps (one invocation, one table):
#   1. build tradewind + the bench executables (release), start MariaDB + tansu (scripts/stack.sh up);
#   2. `tradewind simulate --write-jsonl` N trades over M markets (seed 42, fixed start: reproducible);
#   then for each broker (`mock`: benches/mock_broker.rs, librdkafka's mock cluster over TCP in a process
#   of its own, which is not the bottleneck; `tansu`: the local tansu, the separate-process reference):
#   3. `tradewind produce` the file into a fresh 6-partition (--partitions) topic on that broker; on the
#      mock, 32 partitions (--mock-partitions) filled evenly (librdkafka's random partitioner, 50 ms
#      linger): the mock keeps at most 5 MB of (lz4) log per partition and silently drops older data,
#      and the 2 M-trade set is ~120 MB in lz4; keyed by base, the busiest partitions overflow. The
#      tables are exact for any partitioning (merge-on-write), and the report checks the trades in
#      MySQL against the file;
#   4. tradewind end to end: `tradewind run --drain` (fresh group + database, --migrate) under GNU time;
#      CPU = user+sys of the process (getrusage via GNU time), peak RSS = max resident; broker and
#      MariaDB CPU (from /proc) reported apart;
#   5. consume-only ceiling: benches/consume.rs reads the same topic with the engine's librdkafka
#      settings, does nothing else (CPU from GNU time as well);
#   6. decode + window kernels alone on the same payloads in memory (benches/kernels.rs direct mode);
#   7. with --with-peers: installs benches/peers/.venv (PySpark, DuckDB) and runs Spark Structured
#      Streaming (local[2], FILE SOURCE split into B micro-batches, noop sink) and a DuckDB batch query
#      over the same JSON file.
# Output: the table on stdout; JSON lines + markdown copy under $OUT (default
# $CARGO_TARGET_DIR/bench/e2e-<date>), never committed. The topic is deleted from tansu at the end
# (TW_KEEP_TOPICS=1 keeps it); databases are dropped after each run (TW_KEEP_DB=1 keeps them).
# With --repeat R the tradewind run and the ceiling are repeated R times and the best (fastest) run of
# each is reported (the machine is shared).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

N=2000000
M=1000
PEERS=0
SPARK_BATCHES=10
REPEAT=1
PARTS=6
BROKERS=both
MOCK_PARTS=32
OUT=""
EXTRA=()
while [ $# -gt 0 ]; do
    case "$1" in
    --trades) N="$2"; shift 2 ;;
    --markets) M="$2"; shift 2 ;;
    --with-peers) PEERS=1; shift ;;
    --spark-batches) SPARK_BATCHES="$2"; shift 2 ;;
    --repeat) REPEAT="$2"; shift 2 ;;
    --partitions) PARTS="$2"; shift 2 ;;
    --broker) BROKERS="$2"; shift 2 ;;
    --mock-partitions) MOCK_PARTS="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --) shift; EXTRA=("$@"); break ;;
    -h | --help) sed -n '2,33p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
    esac
done
OUT="${OUT:-$CARGO_TARGET_DIR/bench/e2e-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: >"$RESULTS"
DATA="${TW_BENCH_DATA_DIR:-${TMPDIR:-/tmp}/tradewind-bench}"
mkdir -p "$DATA"
FILE="$DATA/trades-n$N-m$M-s$TW_SEED.jsonl"

tw_build
tw_stack
log "load before start: $(uptime)"
tw_generate "$FILE" "$N" "$M"

case "$BROKERS" in
both) BROKER_LIST=(mock tansu) ;;
mock | tansu) BROKER_LIST=("$BROKERS") ;;
*) die "--broker must be mock, tansu or both" ;;
esac

best() { # keep the line with the highest trades_per_s among stdin lines
    python3 -c 'import sys,json; ls=[json.loads(l) for l in sys.stdin if l.strip()]; print(json.dumps(max(ls,key=lambda r:r.get("trades_per_s") or 0)))'
}
trap tw_mock_stop EXIT

for B in "${BROKER_LIST[@]}"; do
    TOPIC="twb_e2e_${TW_RUN_ID}_$B"
    P="$PARTS"
    PRODUCE_ARGS=()
    if [ "$B" = mock ]; then
        P="$MOCK_PARTS"
        PRODUCE_ARGS=(--kafka-option partitioner=random --kafka-option linger.ms=50)
        tw_mock_start "$TOPIC" "$P" "$OUT"
    fi
    tw_use_broker "$B"
    tw_produce "$FILE" "$TOPIC" "$P" "${PRODUCE_ARGS[@]}"
    for ((r = 1; r <= REPEAT; r++)); do
        # Each repeat consumes the same topic with a fresh group and database.
        tw_run_drain "tradewind end to end ($B -> run --drain -> MariaDB)" "$TOPIC" "$OUT" "${EXTRA[@]}" \
            >>"$OUT/tw-$B.jsonl"
    done
    best <"$OUT/tw-$B.jsonl" >>"$RESULTS"
    for ((r = 1; r <= REPEAT; r++)); do
        log "consume-only ceiling on $TOPIC ($B, run $r)"
        tw_consume "$TOPIC" "$OUT" >>"$OUT/consume-$B.jsonl"
    done
    best <"$OUT/consume-$B.jsonl" >>"$RESULTS"
    if [ "$B" = mock ]; then
        tw_mock_stop
    else
        tw_delete_topics "$TOPIC"
    fi
done

log "decode + window kernels on $FILE (in memory)"
TW_KERNELS_DIRECT=0 TW_KERNELS_FILE="$FILE" /usr/bin/time -f '%e %U %S %M' -o "$OUT/kernels.time" "$TW_KERNELS_BIN" |
    python3 -c 'import sys,json; r=json.loads(sys.stdin.read()); r["peak_rss_bytes"]=None; r["note"]="payloads held in memory; 1 thread"; print(json.dumps(r))' >>"$RESULTS"

if [ "$PEERS" = 1 ]; then
    PY="$(bash "$TW_ROOT/benches/peers/setup.sh" | tail -1)"
    log "DuckDB over $FILE"
    "$PY" "$TW_ROOT/benches/peers/duckdb_windows.py" "$FILE" --threads 2 2>"$OUT/duckdb.err" | tail -1 >>"$RESULTS"
    log "Spark Structured Streaming over $FILE (file source, $SPARK_BATCHES micro-batches)"
    "$PY" "$TW_ROOT/benches/peers/spark_windows.py" "$FILE" --batches "$SPARK_BATCHES" 2>"$OUT/spark.err" | tail -1 >>"$RESULTS"
fi
log "load after: $(uptime)"

python3 "$TW_ROOT/benches/report.py" "$RESULTS" --trades "$N" --markets "$M" --md "$OUT/table.md" --json "$OUT/table.json"
log "results: $OUT (results.jsonl, table.md, table.json, logs)"
