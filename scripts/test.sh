#!/usr/bin/env bash
# The project's test command (the README's and .ci/run's): starts the local stack (MariaDB + tansu),
# runs the whole workspace's tests in release mode (unit, integration and the end-to-end suite, which
# starts the real binaries against the stack), and stops the broker again on exit.
# Extra arguments go to `cargo test`, e.g. `bash scripts/test.sh -p tradewind-sink`.
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

if [ "$#" -eq 0 ]; then
    set -- --workspace
fi
section "cargo test --release $*"
start=$(date +%s)
cargo test --release "$@"
section "tests passed in $(($(date +%s) - start)) s"
