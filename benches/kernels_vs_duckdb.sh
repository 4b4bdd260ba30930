#!/usr/bin/env bash
# The built-in pipeline on DataFusion against DuckDB, side by side in one run (issue 9). NOT run in CI.
#
#   bash benches/kernels_vs_duckdb.sh [--trades N (default 2000000)] [--markets M (default 1000)]
#
# On one seeded JSON-lines data set (the e2e one: `tradewind simulate --write-jsonl`, seed 42):
#   1. tradewind decode + the built-in pipeline's four views (market_1m, asset_1m, asset_1h, asset_1d;
#      DataFusion AggregateExec per view), payloads in memory, micro-batches of the engine's default
#      size (the kernels bench's default; decode uses both cores for large batches; rows out =
#      contribution rows summed over batches)
#      (benches/kernels.rs direct mode; best of 3 passes);
#   2. the same plus one user view (5-minute bars per exchange with FILTER, first/last, arithmetic and a
#      row filter): the difference is the per-view cost;
#   3. DuckDB: one query per view with the same aggregates over the same file (JSON parse included),
#      with 1 and 2 threads (benches/peers/duckdb_views.py, in benches/peers/.venv-duckdb).
# Prints the JSON lines and a table of ratios; writes nothing to the repository.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

N=2000000
M=1000
while [ $# -gt 0 ]; do
    case "$1" in
    --trades) N="$2"; shift 2 ;;
    --markets) M="$2"; shift 2 ;;
    -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
    esac
done
DATA="${TW_BENCH_DATA_DIR:-${TMPDIR:-/tmp}/tradewind-bench}"
mkdir -p "$DATA"
FILE="$DATA/trades-n$N-m$M-s$TW_SEED.jsonl"
OUT="$(mktemp -d)"

# One build of the whole workspace (the feature set the tests use: no DataFusion rebuild).
log "building the workspace (release, all targets)"
json="$(cd "$TW_ROOT" && cargo build --release --workspace --all-targets --message-format=json 2>/dev/null)" ||
    die "cargo build failed"
TW_BIN="$CARGO_TARGET_DIR/release/tradewind"
TW_KERNELS_BIN="$(jq -r 'select(.reason=="compiler-artifact" and .target.name=="kernels") | .executable // empty' <<<"$json" | tail -1)"
[ -x "$TW_KERNELS_BIN" ] || die "kernels bench executable not found"
tw_generate "$FILE" "$N" "$M"

VENV="$TW_ROOT/benches/peers/.venv-duckdb"
if [ ! -x "$VENV/bin/python" ]; then
    log "installing duckdb into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --disable-pip-version-check -q "duckdb==${TRADEWIND_DUCKDB_VERSION:-1.5.6}" "psutil>=5.9"
fi

log "load before: $(uptime)"
log "tradewind decode + built-in views (1 thread)"
TW_KERNELS_DIRECT=0 TW_KERNELS_FILE="$FILE" "$TW_KERNELS_BIN" | tee "$OUT/tw.json"
log "tradewind decode + built-in views + one user view"
TW_KERNELS_DIRECT=0 TW_KERNELS_FILE="$FILE" TW_KERNELS_USER_VIEW=1 "$TW_KERNELS_BIN" | tee "$OUT/tw_user.json"
for t in 1 2; do
    log "DuckDB, $t thread(s)"
    "$VENV/bin/python" "$TW_ROOT/benches/peers/duckdb_views.py" "$FILE" --threads "$t" | tail -1 | tee "$OUT/duck$t.json"
done
log "load after: $(uptime)"

python3 - "$OUT" <<'PY'
import json, sys, os
d = sys.argv[1]
r = {k: json.load(open(os.path.join(d, k + ".json"))) for k in ["tw", "tw_user", "duck1", "duck2"]}
n = r["tw"]["trades"]
print()
print("| system | trades | wall s | trades/s | CPU s per M trades | rows out |")
print("|---|---|---|---|---|---|")
rows = f'{r["tw"]["batch_rows"]:,}'
for k, label in [("tw", f"tradewind decode (2 threads) + 4 built-in views (DataFusion, 1 thread), {rows}-trade batches"),
                 ("tw_user", "same + 1 user view"),
                 ("duck1", "DuckDB, same 4 views over the file, 1 thread"),
                 ("duck2", "DuckDB, same 4 views over the file, 2 threads")]:
    x = r[k]
    print(f"| {label} | {x['trades']:,} | {x['seconds']:.2f} | {x['trades_per_s']:,.0f} | "
          f"{x['cpu_seconds'] / x['trades'] * 1e6:.2f} | {x.get('windows', '')} |")
per_view = (r["tw_user"]["seconds"] - r["tw"]["seconds"]) / n * 1e6
print()
print(f"tradewind vs DuckDB 1 thread (throughput): {r['tw']['trades_per_s'] / r['duck1']['trades_per_s']:.2f}x")
print(f"tradewind vs DuckDB 2 threads (throughput): {r['tw']['trades_per_s'] / r['duck2']['trades_per_s']:.2f}x")
print(f"tradewind vs DuckDB 2 threads (CPU per trade): {r['duck2']['cpu_seconds'] / r['tw']['cpu_seconds']:.2f}x less")
print(f"one user view costs {per_view:.3f} CPU s per M trades")
PY
rm -rf "$OUT"
