#!/usr/bin/env bash
# MySQL over TLS, end to end: starts a second, throwaway MariaDB on 127.0.0.1:${TW_TLS_PORT:-13307} whose
# server certificate is signed by a self-signed CA made here with the openssl CLI, and a user that the
# server only admits over TLS (REQUIRE SSL). Then `tradewind migrate` (the same MySqlSink::connect the
# engine uses) must
#   - connect with `?ssl_ca=<that CA>` (chain and host name verified) and create the schema,
#   - be refused with `?ssl_ca=<another CA>` (verification on: an unknown CA is not trusted),
#   - be refused without TLS (the server requires it),
#   - be refused when the host name does not match the certificate (`localhost`; the certificate names
#     only IP 127.0.0.1).
# Each refusal must be for the expected reason (certificate verification, or access denied), not a
# connection error.
# Then deploy/base/mariadb-initdb.sh runs on the same server: the engine's MySQL user can write rows but
# not change the schema, Grafana's reader can only read.
# The server is stopped and its files removed on exit. Needs mariadbd, mariadb-install-db and openssl.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tradewind-target}"
bin="${TRADEWIND_BIN:-$CARGO_TARGET_DIR/release/tradewind}"
[ -x "$bin" ] || cargo build --release --bin tradewind
port="${TW_TLS_PORT:-13307}"
if ! command -v openssl >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssl >/dev/null
fi

dir=$(mktemp -d /tmp/tw-mysql-tls.XXXXXX)
pid=""
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    fi
    rm -rf "$dir"
}
trap cleanup EXIT

# A CA, a server certificate for 127.0.0.1 / localhost signed by it, and an unrelated second CA.
mkca() {
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=$2" \
        -keyout "$dir/$1.key" -out "$dir/$1.pem" 2>/dev/null
}
mkca ca "tradewind test CA"
mkca wrong-ca "some other CA"
openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' > "$dir/san.ext"
openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
    -days 2 -extfile "$dir/san.ext" -out "$dir/server.pem" 2>/dev/null
chmod 644 "$dir"/*.pem "$dir"/*.key

mariadb-install-db --no-defaults --user=root --datadir="$dir/data" \
    --auth-root-authentication-method=socket >"$dir/install.log" 2>&1
mariadbd --no-defaults --user=root --datadir="$dir/data" --socket="$dir/mysqld.sock" \
    --port="$port" --bind-address=127.0.0.1 --skip-name-resolve --pid-file="$dir/mysqld.pid" \
    --ssl-ca="$dir/ca.pem" --ssl-cert="$dir/server.pem" --ssl-key="$dir/server.key" \
    --innodb-buffer-pool-size=32M >"$dir/mysqld.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
    mariadb --no-defaults -uroot --socket="$dir/mysqld.sock" -e 'SELECT 1' >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || { cat "$dir/mysqld.log"; exit 1; }
    sleep 0.2
done
pw=$(openssl rand -hex 12)
mariadb --no-defaults -uroot --socket="$dir/mysqld.sock" -e "
    CREATE USER 'tw_secure'@'127.0.0.1' IDENTIFIED BY '$pw' REQUIRE SSL;
    GRANT ALL ON tw_tls.* TO 'tw_secure'@'127.0.0.1';"
have_ssl=$(mariadb --no-defaults -uroot --socket="$dir/mysqld.sock" -N -e "SELECT @@have_ssl")
echo "mysql_tls_test: MariaDB on 127.0.0.1:$port, have_ssl=$have_ssl"
[ "$have_ssl" = "YES" ]

passed=0
failed=0
expect() { # expect ok|refused NAME URL [REASON-REGEX]
    local want=$1 name=$2 url=$3 reason=${4:-} out rc
    set +e
    out=$("$bin" migrate --mysql-url "$url" 2>&1)
    rc=$?
    set -e
    if { [ "$want" = ok ] && [ $rc -eq 0 ]; } \
        || { [ "$want" = refused ] && [ $rc -ne 0 ] && grep -Eqi "$reason" <<<"$out"; }; then
        if [ "$want" = refused ]; then
            echo "ok   $name (refused: $(echo "$out" | grep -Eio ".{0,60}($reason).{0,60}" | head -1))"
        else
            echo "ok   $name"
        fi
        passed=$((passed + 1))
    else
        echo "FAIL $name: expected $want, exit $rc"
        echo "$out" | tail -5
        failed=$((failed + 1))
    fi
    if grep -qF "$pw" <<<"$out"; then
        echo "FAIL $name: the password appears in the output"
        failed=$((failed + 1))
    fi
}
base="mysql://tw_secure:$pw@127.0.0.1:$port/tw_tls"
# prefer_socket=false: mysql_async would otherwise switch a loopback connection to the server's socket.
expect ok "TLS, server verified against the right CA" "$base?prefer_socket=false&ssl_ca=$dir/ca.pem"
ssl_accepts=$(mariadb --no-defaults -uroot --socket="$dir/mysqld.sock" -N -e \
    "SHOW GLOBAL STATUS LIKE 'Ssl_finished_accepts'" | awk '{print $2}')
if [ "${ssl_accepts:-0}" -gt 0 ]; then
    echo "ok   the server completed $ssl_accepts TLS handshakes"
    passed=$((passed + 1))
else
    echo "FAIL the server saw no TLS handshake"
    failed=$((failed + 1))
fi
tables=$(mariadb --no-defaults -uroot --socket="$dir/mysqld.sock" -N -e \
    "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'tw_tls'")
if [ "$tables" -gt 0 ]; then
    echo "ok   schema created over TLS ($tables tables and views)"
    passed=$((passed + 1))
else
    echo "FAIL no schema in tw_tls after a successful migrate"
    failed=$((failed + 1))
fi
verify='certificate verify failed|0A000086'
expect refused "TLS with a CA that did not sign the server certificate" \
    "$base?prefer_socket=false&ssl_ca=$dir/wrong-ca.pem" "$verify"
expect refused "no TLS, server requires it" "$base?prefer_socket=false" 'access denied'
expect refused "host name not in the certificate" \
    "mysql://tw_secure:$pw@localhost:$port/tw_tls?prefer_socket=false&ssl_ca=$dir/ca.pem" "$verify"

# deploy/base/mariadb-initdb.sh on this private server, as the mariadb image's entrypoint runs it: the
# engine's user may read and write rows but not change the schema; Grafana's reader may only read.
sock() { mariadb --no-defaults -uroot --socket="$dir/mysqld.sock" "$@"; }
sock -e "CREATE DATABASE tradewind; GRANT ALL ON tradewind.* TO 'tw_secure'@'127.0.0.1';"
expect ok "schema into database tradewind over TLS" \
    "mysql://tw_secure:$pw@127.0.0.1:$port/tradewind?prefer_socket=false&ssl_ca=$dir/ca.pem"
epw=$(openssl rand -hex 8)"'q\\"
rpw=$(openssl rand -hex 8)
mpw=$(openssl rand -hex 8)
# The image's own user, as its entrypoint creates it (MARIADB_USER): it runs `tradewind migrate`.
sock -e "CREATE USER 'tw_migrate'@'%' IDENTIFIED BY '$mpw'; GRANT ALL ON tradewind.* TO 'tw_migrate'@'%';"
(
    docker_process_sql() { sock "$@"; }
    MARIADB_USER=tw_migrate MARIADB_DATABASE=tradewind
    TRADEWIND_ENGINE_PASSWORD=$epw TRADEWIND_READER_PASSWORD=$rpw
    # shellcheck source=../deploy/base/mariadb-initdb.sh
    . deploy/base/mariadb-initdb.sh
)
as_user() { # as_user USER PASSWORD SQL: exit status of the statement
    mariadb --no-defaults -h127.0.0.1 -P"$port" -u"$1" -p"$2" tradewind -e "$3" >/dev/null 2>&1
}
grant_check() { # grant_check allowed|denied NAME USER PASSWORD SQL
    local want=$1 name=$2 rc=0
    as_user "$3" "$4" "$5" || rc=$?
    if { [ "$want" = allowed ] && [ $rc -eq 0 ]; } || { [ "$want" = denied ] && [ $rc -ne 0 ]; }; then
        echo "ok   $name ($want)"
        passed=$((passed + 1))
    else
        echo "FAIL $name: expected $want"
        failed=$((failed + 1))
    fi
}
grant_check allowed "engine user writes rows" tradewind_engine "$epw" \
    "INSERT INTO market_1m SELECT * FROM market_1m WHERE 1 = 0; UPDATE market_1m SET revision = revision WHERE 1 = 0; DELETE FROM market_1m WHERE 1 = 0"
grant_check denied "engine user cannot create tables" tradewind_engine "$epw" "CREATE TABLE x (a INT)"
grant_check denied "engine user cannot drop tables" tradewind_engine "$epw" "DROP TABLE market_1m"
grant_check allowed "reader reads the views" tradewind_reader "$rpw" "SELECT COUNT(*) FROM v_market_minute"
grant_check denied "reader cannot write" tradewind_reader "$rpw" "DELETE FROM market_1m"
grant_check allowed "migrating user creates Tableau's read-only user" tw_migrate "$mpw" \
    "CREATE USER 'tw_tableau'@'%' IDENTIFIED BY 'x'; GRANT SELECT ON tradewind.v_market_minute TO 'tw_tableau'@'%'"

echo "mysql_tls_test: $passed ok, $failed failed"
[ "$failed" -eq 0 ]
