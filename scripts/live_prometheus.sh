#!/usr/bin/env bash
# Live monitoring test (scripts/live_prometheus.py): a real Prometheus scrapes a running pipeline
# (simulate -> ingest -> Kafka -> run -> MariaDB) with the project's alert rules loaded; every Grafana
# query must return data, nothing may fire while healthy, and the expected alerts must fire when MySQL is
# cut and when ingest stops. Needs MariaDB on 127.0.0.1:3306 and a Kafka broker ($TRADEWIND_BROKERS,
# default: the tansu broker of `scripts/stack.sh up`, which this script starts if needed).
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
if [ -z "${TRADEWIND_BROKERS:-}" ]; then
    bash scripts/stack.sh up >/dev/null
    eval "$(bash scripts/stack.sh env)"
fi

rules=$(mktemp)
trap 'rm -f "$rules"' EXIT
bash scripts/check_rules.sh --emit "$rules"
python3 scripts/live_prometheus.py --binary "$bin" --rules "$rules" --brokers "$TRADEWIND_BROKERS" "$@"
