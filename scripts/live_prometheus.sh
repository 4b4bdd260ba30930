#!/usr/bin/env bash
# Live monitoring test (scripts/live_prometheus.py): a real Prometheus scrapes a running pipeline
# (simulate -> ingest -> Kafka -> run -> MariaDB) with the project's alert rules loaded; every Grafana
# query must return data, nothing may fire while healthy, and the expected alerts must fire when MySQL is
# cut and when ingest stops. Needs MariaDB on 127.0.0.1:3306; runs a private tansu broker.
# Installs Debian's `prometheus` package if missing; builds the release binary if missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tradewind-target}"

if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
    echo "live_prometheus: installing Debian's prometheus package"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
bin="$CARGO_TARGET_DIR/release/tradewind"
if [ ! -x "$bin" ]; then
    cargo build --release --bin tradewind
fi
# A private tansu broker (the binary `scripts/stack.sh up` installs), so that no other user of the shared
# broker can restart it or share its topics mid-test.
tansu="${TRADEWIND_CACHE:-$HOME/.cache/tradewind}/bin/tansu"
if [ ! -x "$tansu" ]; then
    bash scripts/stack.sh up >/dev/null
fi

rules=$(mktemp)
trap 'rm -f "$rules"' EXIT
bash scripts/check_rules.sh --emit "$rules"
python3 scripts/live_prometheus.py --binary "$bin" --rules "$rules" --tansu "$tansu" "$@"
