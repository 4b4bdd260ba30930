#!/usr/bin/env bash
# Checks the alert rules: extracts the PrometheusRule's spec (a plain Prometheus rule file) from
# deploy/base/monitoring/prometheusrule.yaml, then `promtool check rules` and `promtool test rules`
# with prometheus/tests/*.yml. Installs Debian's `prometheus` package (promtool) with apt if missing.
# With --emit FILE it only writes the extracted rule file (used by scripts/live_prometheus.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

emit_rules() {
    # PyYAML: from the venv scripts/check_deploy.sh installs, else the system Python's.
    local py="${TRADEWIND_CACHE:-$HOME/.cache/tradewind}/deploy-venv/bin/python"
    [ -x "$py" ] || py=python3
    "$py" - "$1" <<'PY'
import json, sys
import yaml
doc = yaml.safe_load(open("deploy/base/monitoring/prometheusrule.yaml"))
# JSON is valid YAML: promtool reads it as a rule file.
json.dump(doc["spec"], open(sys.argv[1], "w"), indent=1)
PY
}

if [ "${1:-}" = "--emit" ]; then
    emit_rules "$2"
    exit 0
fi

if ! command -v promtool >/dev/null; then
    echo "check_rules: installing Debian's prometheus package (promtool)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
emit_rules "$work/tradewind.rules.yml"
cp prometheus/tests/*.yml "$work/"
promtool check rules "$work/tradewind.rules.yml"
(cd "$work" && promtool test rules ./*_test.yml)
