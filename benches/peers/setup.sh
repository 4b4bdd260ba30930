#!/usr/bin/env bash
# Installs the Python peers for the benchmark (PySpark for the replaced Spark Structured Streaming job,
# DuckDB as a vectorised batch reference, psutil for CPU/RSS) into benches/peers/.venv. Only run when
# asked (the bench harness calls it with --peers); never in CI. Needs Java 17+ for Spark.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
VENV="${TRADEWIND_PEERS_VENV:-$PWD/.venv}"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install --disable-pip-version-check -q \
    "pyspark==${TRADEWIND_PYSPARK_VERSION:-4.0.1}" "duckdb==${TRADEWIND_DUCKDB_VERSION:-1.5.6}" "psutil>=5.9"
java -version 2>&1 | head -1 || { echo "Java 17+ is needed for PySpark" >&2; exit 1; }
"$VENV/bin/python" -c 'import pyspark, duckdb, psutil; print("peers ready: pyspark", pyspark.__version__, "duckdb", duckdb.__version__)'
echo "$VENV/bin/python"
