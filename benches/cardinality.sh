#!/usr/bin/env bash
# Memory under key cardinality (issue 24 point 4): the same number of trades drained twice, side by
# side in one run, once over a few markets and once with every trade its own base (a producer that
# emits unique ids), each `tradewind run --drain` under GNU time (peak RSS, CPU, wall). NOT run in CI.
#
#   bash benches/cardinality.sh [--trades N (default 1000000)] [--markets M (default 1000)]
#
# Needs MariaDB + tansu (scripts/stack.sh up) and the release binary. The files, topics and
# databases are temporary (databases dropped at the end).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
N=1000000
M=1000
while [ $# -gt 0 ]; do
    case "$1" in
    --trades) N="$2"; shift 2 ;;
    --markets) M="$2"; shift 2 ;;
    *) die "unknown argument $1" ;;
    esac
done
bash "$TW_ROOT/scripts/stack.sh" up >&2
eval "$(bash "$TW_ROOT/scripts/stack.sh" env)"
TW_BIN="$CARGO_TARGET_DIR/release/tradewind"
[ -x "$TW_BIN" ] || (cd "$TW_ROOT" && cargo build --release --workspace --all-targets >&2)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
printf '| bases | trades | peak RSS (KiB) | CPU user+sys (s) | wall | rows in market_1m |\n|---|---|---|---|---|---|\n'
for bases in "$M" "$N"; do
    name="card_${bases}_${TW_RUN_ID}"
    python3 - "$N" "$bases" "$TW_START_MS" >"$work/trades.jsonl" <<'PY'
import sys
n, bases, start = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
out = sys.stdout
for i in range(n):
    p = 100 + i % 97
    d = "buy" if i % 2 else "sell"
    out.write(f'{{"exchange":"binance","base":"coin{i % bases}","quote":"tether","direction":"{d}",'
              f'"price":{p},"volume":{1 + (i % 13) / 10},"timestamp":{start + i},"priceUsd":{p}}}\n')
PY
    "$TW_BIN" produce --file "$work/trades.jsonl" --brokers "$TRADEWIND_BROKERS" --topic "$name" \
        --dlq-topic "$name.dlq" --partitions 6 >&2
    /usr/bin/time -v "$TW_BIN" run --drain --migrate --brokers "$TRADEWIND_BROKERS" --topic "$name" \
        --dlq-topic "$name.dlq" --late-topic "$name.late" --group "g-$name" \
        --mysql-url "$TW_MYSQL_BASE/$name" --metrics-addr 127.0.0.1:0 2>"$work/time.log" >/dev/null
    rss=$(awk -F': ' '/Maximum resident/ {print $2}' "$work/time.log")
    cpu=$(awk -F': ' '/User time|System time/ {s += $2} END {printf "%.2f", s}' "$work/time.log")
    wall=$(awk -F': ' '/Elapsed/ {print $2}' "$work/time.log")
    rows=$(mysql -uroot -h127.0.0.1 -N -e "SELECT COUNT(*) FROM \`$name\`.market_1m")
    printf '| %s | %s | %s | %s | %s | %s |\n' "$bases" "$N" "$rss" "$cpu" "$wall" "$rows"
    [ "${TW_KEEP_DB:-0}" = 1 ] || mysql -uroot -h127.0.0.1 -e "DROP DATABASE \`$name\`"
done
