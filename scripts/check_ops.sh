#!/usr/bin/env bash
# Operations checks, run by scripts/test.sh after the cargo tests (stack up): deploy/ validated offline,
# alert rules unit-tested, Grafana files checked, the data-quality SQL run against MariaDB, MySQL over TLS
# with CA verification, a live Prometheus scraping a running pipeline, and no dead relative links in the
# Markdown docs. Runs every check even when one fails; prints one line per check and `ops: N passed, M
# failed`; exits 1 if any failed.
# Run alone: `bash scripts/check_ops.sh` (starts the stack if needed).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tradewind-target}"
bin="$CARGO_TARGET_DIR/release/tradewind"
if [ ! -x "$bin" ]; then
    cargo build --release --bin tradewind || exit 1
fi
if [ -z "${TRADEWIND_BROKERS:-}" ]; then
    bash scripts/stack.sh up >/dev/null && eval "$(bash scripts/stack.sh env)"
fi
py="${TRADEWIND_CACHE:-$HOME/.cache/tradewind}/deploy-venv/bin/python"

passed=0
failed=0
names=()
run() { # run NAME COMMAND...
    local name=$1
    shift
    printf '\n==================== ops: %s ====================\n' "$name"
    local start=$SECONDS
    if "$@"; then
        passed=$((passed + 1))
        names+=("ok   $name ($((SECONDS - start)) s)")
    else
        failed=$((failed + 1))
        names+=("FAIL $name ($((SECONDS - start)) s)")
    fi
}
run "deploy manifests (kustomize + schemas)" bash scripts/check_deploy.sh
run "alert rules (promtool)" bash scripts/check_rules.sh
run "grafana provisioning and dashboards" "$py" scripts/check_grafana.py
run "data-quality SQL on MariaDB" python3 scripts/check_quality_sql.py --binary "$bin"
run "MySQL over TLS with CA verification" bash scripts/mysql_tls_test.sh
run "live Prometheus on a running pipeline" bash scripts/live_prometheus.sh
run "Markdown links (README, docs/, CONTRIBUTING.md)" python3 scripts/check_links.py

printf '\n==================== ops checks ====================\n'
printf '%s\n' "${names[@]}"
echo "ops: ${passed} passed, ${failed} failed"
[ "$failed" -eq 0 ]
