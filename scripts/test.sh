#!/usr/bin/env bash
# The project's test command (the README's and .ci/run's): starts the local stack (MariaDB + tansu),
# runs the whole workspace's tests in release mode (unit, integration and the end-to-end suite, which
# starts the real binaries against the stack), checks the Tableau workbook against MariaDB, runs the
# operations checks (scripts/check_ops.sh: deploy/ validated offline, promtool rule tests, Grafana,
# data-quality SQL, MySQL TLS, live Prometheus; full run only), and stops the broker again on exit. The full run (no arguments) also checks formatting first
# (`cargo fmt --all --check`) and lints last (`cargo clippy --workspace --all-targets --release -- -D
# warnings`; --release so it reuses the test build's settings); TRADEWIND_SKIP_LINT=1 skips both.
# Extra arguments go to `cargo test` (and skip the lint), e.g. `bash scripts/test.sh -p tradewind-sink`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

section() { printf '\n==================== %s ====================\n' "$*"; }

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tradewind-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

section "stack up (MariaDB + tansu broker)"
trap 'section "stack down"; bash scripts/stack.sh down || true' EXIT
bash scripts/stack.sh up
eval "$(bash scripts/stack.sh env)"
bash scripts/stack.sh status
env | grep '^TRADEWIND_' | sort

section "toolchain"
cargo --version
rustc --version

lint=0
ops=0
if [ "$#" -eq 0 ]; then
    set -- --workspace
    ops=1
    [ "${TRADEWIND_SKIP_LINT:-0}" = 1 ] || lint=1
fi
if [ "$lint" = 1 ]; then
    if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
        rustup component add rustfmt clippy
    fi
    section "cargo fmt --all --check"
    cargo fmt --all --check
fi
section "cargo test --release $*"
start=$(date +%s)
log=$(mktemp)
cargo test --release "$@" 2>&1 | tee "$log"
# One plain closing line over every test binary (cargo's own last line is a doc-test run's).
passed=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | grep -Eo '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed;' "$log" | awk '{s+=$1} END {print s+0}')
rm -f "$log"
section "cargo tests passed in $(($(date +%s) - start)) s: ${passed} passed, ${failed} failed"

# The wire JSON Schema gives the corpus the same verdicts as the validator (the Rust side is
# crates/model/tests/wire_schema.rs).
section "wire JSON Schema"
python3 scripts/check_wire_schema.py

# Tableau: the committed workbook is what the generator makes, every field and calculation resolves
# against the DDL, the dashboard lays out every sheet, and every sheet's query runs on MariaDB as the
# read-only user `tradewind migrate --readonly-user` creates (tableaudocumentapi goes into a private venv).
section "Tableau workbook and data source"
# `cargo test` above built the binary (the integration tests run it); building it alone would
# re-resolve features for one package and recompile much of the tree.
[ -x "${CARGO_TARGET_DIR}/release/tradewind" ] || cargo build --release --workspace --all-targets
python3 scripts/gen_tableau.py --check
python3 scripts/check_tableau.py --live --tradewind "${CARGO_TARGET_DIR}/release/tradewind"

ops_status=0
if [ "$ops" -eq 1 ]; then
    ops_log=$(mktemp)
    bash scripts/check_ops.sh 2>&1 | tee "$ops_log" || ops_status=$?
    ops_passed=$(grep -Eo '^ops: [0-9]+ passed' "$ops_log" | grep -Eo '[0-9]+' || echo 0)
    ops_failed=$(grep -Eo '^ops: [0-9]+ passed, [0-9]+ failed' "$ops_log" | grep -Eo '[0-9]+ failed' | grep -Eo '[0-9]+' || echo 1)
    rm -f "$ops_log"
    passed=$((passed + ops_passed))
    failed=$((failed + ops_failed))
fi

if [ "$lint" = 1 ]; then
    section "cargo clippy --workspace --all-targets --release -- -D warnings"
    cargo clippy --workspace --all-targets --release -- -D warnings
    echo "clippy: clean"
fi
section "tests done in $(($(date +%s) - start)) s"
echo "tests: ${passed} passed, ${failed} failed"
exit "$ops_status"
