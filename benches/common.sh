# Shared helpers for the benchmark harnesses (benches/e2e.sh, benches/scaling.sh, benches/latency.sh).
# Sourced, not run. Needs: cargo, python3, curl, GNU time (/usr/bin/time), MariaDB + tansu via
# scripts/stack.sh. Every run uses a fresh topic, consumer group and database (names carry $TW_RUN_ID)
# and drops the database afterwards unless TW_KEEP_DB=1.

TW_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tradewind-target}"
TW_RUN_ID="${TW_RUN_ID:-$(date +%s)$$}"
TW_MYSQL_BASE="${TW_MYSQL_BASE:-mysql://root@127.0.0.1:3306}"
TW_START_MS="${TW_START_MS:-1704067200000}" # fixed event-time start: the data set is byte-reproducible
TW_SEED="${TW_SEED:-42}"

log() { printf '[bench] %s\n' "$*" >&2; }
die() {
    printf '[bench] ERROR: %s\n' "$*" >&2
    exit 1
}

# Builds the binary and the bench executables; sets TW_BIN, TW_KERNELS_BIN, TW_CONSUME_BIN, TW_MOCK_BIN.
tw_build() {
    log "building the workspace (release, all targets: the feature set the tests use, so nothing rebuilds)"
    local json
    json="$(cd "$TW_ROOT" && cargo build --release --workspace --all-targets --message-format=json 2>/dev/null)" ||
        die "cargo build failed"
    TW_BIN="$CARGO_TARGET_DIR/release/tradewind"
    exe() { jq -r --arg n "$1" 'select(.reason=="compiler-artifact" and .target.name==$n) | .executable // empty' <<<"$json" | tail -1; }
    TW_KERNELS_BIN="$(exe kernels)"
    TW_CONSUME_BIN="$(exe consume)"
    TW_MOCK_BIN="$(exe mock_broker)"
    [ -x "$TW_BIN" ] && [ -x "$TW_KERNELS_BIN" ] && [ -x "$TW_CONSUME_BIN" ] && [ -x "$TW_MOCK_BIN" ] ||
        die "bench executables not found"
}

# Starts the bench-only mock broker (benches/mock_broker.rs) with TOPIC (PARTITIONS) and its .dlq and
# .late companions; sets MOCK_PID and MOCK_BROKERS. Stop it with tw_mock_stop.
tw_mock_start() { # TOPIC PARTITIONS OUTDIR
    local i
    "$TW_MOCK_BIN" --topic "$1:$2" --topic "$1.dlq:1" --topic "$1.late:1" >"$3/mock_broker.out" 2>&1 &
    MOCK_PID=$!
    for ((i = 0; i < 100; i++)); do
        MOCK_BROKERS="$(sed -n 's/^bootstrap=//p' "$3/mock_broker.out" 2>/dev/null || true)"
        [ -n "$MOCK_BROKERS" ] && break
        sleep 0.1
    done
    [ -n "$MOCK_BROKERS" ] || die "mock broker did not start ($3/mock_broker.out)"
    log "mock broker (pid $MOCK_PID) at $MOCK_BROKERS"
}

tw_mock_stop() {
    [ -n "${MOCK_PID:-}" ] || return 0
    kill -TERM "$MOCK_PID" 2>/dev/null || true
    wait "$MOCK_PID" 2>/dev/null || true
    MOCK_PID=""
}

# Points the helpers below at one broker: `tansu` (scripts/stack.sh) or `mock` (tw_mock_start first).
# Sets TRADEWIND_BROKERS (exported), BROKER_PID (whose CPU is reported) and BROKER_NAME.
tw_use_broker() { # tansu|mock
    BROKER_NAME="$1"
    case "$1" in
    tansu) TRADEWIND_BROKERS="$TANSU_BROKERS" BROKER_PID="$TANSU_PID" ;;
    mock) TRADEWIND_BROKERS="$MOCK_BROKERS" BROKER_PID="$MOCK_PID" ;;
    *) die "unknown broker $1" ;;
    esac
    export TRADEWIND_BROKERS
}

# Starts MariaDB + tansu (idempotent) and exports TRADEWIND_BROKERS.
tw_stack() {
    bash "$TW_ROOT/scripts/stack.sh" up >&2 || die "stack up failed"
    eval "$(bash "$TW_ROOT/scripts/stack.sh" env)"
    TANSU_PID="$(cat "${TRADEWIND_CACHE:-$HOME/.cache/tradewind}/run/tansu.pid")"
    TANSU_BROKERS="$TRADEWIND_BROKERS"
    BROKER_PID="$TANSU_PID"
    BROKER_NAME=tansu
    MARIADB_PID="$(pgrep -x mariadbd | head -1 || true)"
}

# CPU ticks (user+sys, 1/100 s) a process has used so far; 0 if unknown.
cpu_ticks() {
    [ -n "${1:-}" ] && [ -r "/proc/$1/stat" ] || {
        echo 0
        return
    }
    awk '{print $14+$15}' "/proc/$1/stat"
}

# Writes N trades over M markets to FILE (seeded, fixed start) unless it already exists.
tw_generate() { # FILE N M [extra simulate flags...]
    local file="$1" n="$2" m="$3"
    shift 3
    if [ -s "$file" ]; then
        log "data set $file exists ($(wc -l <"$file") lines)"
        return 0
    fi
    log "generating $n trades over $m markets into $file"
    "$TW_BIN" simulate --write-jsonl "$file" --count "$n" --markets "$m" --seed "$TW_SEED" \
        --start-ms "$TW_START_MS" "$@" >/dev/null 2>&1 || die "simulate --write-jsonl failed"
}

# Backfills FILE into a fresh TOPIC (6 partitions, keyed by base). Extra args go to `tradewind produce`.
tw_produce() { # FILE TOPIC [PARTITIONS [extra produce args...]]
    local file="$1" topic="$2" parts="${3:-6}"
    shift 2
    [ $# -gt 0 ] && shift
    log "producing $file into topic $topic ($parts partitions) $*"
    "$TW_BIN" produce --file "$file" --topic "$topic" --dlq-topic "$topic.dlq" --partitions "$parts" \
        --brokers "$TRADEWIND_BROKERS" "$@" 2>&1 | grep -E '^produced' >&2 || die "produce failed"
}

# A free TCP port on 127.0.0.1.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Runs `tradewind run --drain` on TOPIC into a fresh database under GNU time, scraping /metrics every
# 0.5 s (the last scrape is kept), and prints one JSON result line. Extra args go to `tradewind run`.
# TW_RUN_BIN=PATH runs another build of tradewind for this step (before/after comparisons).
tw_run_drain() { # LABEL TOPIC OUTDIR [extra run args...]
    local label="$1" topic="$2" out="$3"
    shift 3
    local tag db port t0 m0 pid
    TW_RUN_SEQ=$((${TW_RUN_SEQ:-0} + 1))
    tag="${topic//[^a-zA-Z0-9]/_}_r${TW_RUN_SEQ}_$RANDOM"
    db="twbench_${tag}"
    port="$(free_port)"
    mkdir -p "$out"
    t0="$(cpu_ticks "$BROKER_PID")"
    m0="$(cpu_ticks "$MARIADB_PID")"
    log "tradewind run --drain on $topic ($label)"
    /usr/bin/time -f '%e %U %S %M' -o "$out/$tag.time" \
        env NO_COLOR=1 RUST_LOG="${RUST_LOG:-info}" "${TW_RUN_BIN:-$TW_BIN}" run --drain --brokers "$TRADEWIND_BROKERS" \
        --topic "$topic" --group "g_$tag" --mysql-url "$TW_MYSQL_BASE/$db" \
        --metrics-addr "127.0.0.1:$port" --migrate --dlq-topic "$topic.dlq" --late-topic "$topic.late" "$@" \
        >"$out/$tag.log" 2>&1 &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        curl -sf -m 1 "http://127.0.0.1:$port/metrics" >"$out/$tag.metrics.tmp" 2>/dev/null &&
            mv -f "$out/$tag.metrics.tmp" "$out/$tag.metrics"
        sleep 0.5
    done
    wait "$pid" || die "tradewind run failed (log $out/$tag.log)"
    local t1 m1
    t1="$(cpu_ticks "$BROKER_PID")"
    m1="$(cpu_ticks "$MARIADB_PID")"
    local rows
    rows="$(mariadb -uroot -h127.0.0.1 -N -e "SELECT (SELECT count(*) FROM $db.market_1m), (SELECT count(*) FROM $db.asset_1m), (SELECT coalesce(sum(trades),0) FROM $db.market_1m)" 2>/dev/null | tr '\t' ' ')"
    [ "${TW_KEEP_DB:-0}" = 1 ] || mariadb -uroot -h127.0.0.1 -e "DROP DATABASE IF EXISTS $db" 2>/dev/null || true
    python3 "$TW_ROOT/benches/parse_run.py" --label "$label" --log "$out/$tag.log" --time "$out/$tag.time" \
        --metrics "$out/$tag.metrics" --broker-ticks "$((t1 - t0))" --mysql-ticks "$((m1 - m0))" --rows "$rows" \
        --broker "${BROKER_NAME:-tansu}"
}

# Runs the consume-only ceiling on TOPIC; prints one JSON line (CPU and RSS from GNU time).
tw_consume() { # TOPIC OUTDIR
    local t0 t1 line
    t0="$(cpu_ticks "$BROKER_PID")"
    line="$(TW_CONSUME_TOPIC="$1" /usr/bin/time -f '%e %U %S %M' -o "$2/consume.time" "$TW_CONSUME_BIN")" ||
        die "consume failed"
    t1="$(cpu_ticks "$BROKER_PID")"
    python3 - "$line" "$2/consume.time" "$((t1 - t0))" "${BROKER_NAME:-tansu}" <<'EOF'
import json, sys
r = json.loads(sys.argv[1])
e, u, s, m = open(sys.argv[2]).read().split()[-4:]
r.update(cpu_seconds=round(float(u) + float(s), 3), peak_rss_bytes=int(m) * 1024,
         broker_cpu_seconds=int(sys.argv[3]) / 100, broker=sys.argv[4])
r["system"] += f" [{sys.argv[4]}]"
print(json.dumps(r))
EOF
}

# Deletes TOPIC and its .dlq/.late companions from the local tansu (its memory storage keeps every record
# in RAM: a 2 M-trade topic holds ~0.5 GB). Skipped with TW_KEEP_TOPICS=1.
tw_delete_topics() { # TOPIC...
    [ "${TW_KEEP_TOPICS:-0}" = 1 ] && return 0
    local tansu="${TRADEWIND_CACHE:-$HOME/.cache/tradewind}/bin/tansu" t s
    [ -x "$tansu" ] || return 0
    for t in "$@"; do
        for s in "" .dlq .late; do
            "$tansu" topic delete --broker "tcp://127.0.0.1:${TRADEWIND_TANSU_PORT:-19092}" "$t$s" >/dev/null 2>&1 || true
        done
    done
}
