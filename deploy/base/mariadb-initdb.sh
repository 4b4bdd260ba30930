# Sourced by the official mariadb image's entrypoint on the first start (empty data directory), after it
# created the database tradewind and the user tradewind. Creates the engine's DML-only user and Grafana's
# read-only user, whose passwords come from the Secret tradewind-mysql (keys engine-password,
# reader-password) via TRADEWIND_ENGINE_PASSWORD and TRADEWIND_READER_PASSWORD, and lets the migrating
# user create Tableau's read-only user.
# Backslashes and single quotes are escaped so any password character stays literal in the SQL string.
sql_string() {
    local v=${1//\\/\\\\}
    printf '%s' "${v//\'/\'\'}"
}
engine_pw=$(sql_string "$TRADEWIND_ENGINE_PASSWORD")
reader_pw=$(sql_string "$TRADEWIND_READER_PASSWORD")
docker_process_sql --database=mysql <<SQL
CREATE USER IF NOT EXISTS 'tradewind_engine'@'%' IDENTIFIED BY '${engine_pw}';
GRANT SELECT, INSERT, UPDATE, DELETE ON \`tradewind\`.* TO 'tradewind_engine'@'%';
CREATE USER IF NOT EXISTS 'tradewind_reader'@'%' IDENTIFIED BY '${reader_pw}';
GRANT SELECT ON \`tradewind\`.* TO 'tradewind_reader'@'%';
SQL
unset engine_pw reader_pw
# The image's own user (MARIADB_USER, `tradewind`) runs `tradewind migrate` in the engine's init
# container. With the optional Secret tradewind-tableau, migrate also creates Tableau's read-only user
# and grants it SELECT on the views: that needs CREATE USER and the grant option on the database.
if [ -n "${MARIADB_USER:-}" ]; then
    docker_process_sql --database=mysql <<SQL
GRANT CREATE USER ON *.* TO '${MARIADB_USER}'@'%';
GRANT ALL PRIVILEGES ON \`${MARIADB_DATABASE:-tradewind}\`.* TO '${MARIADB_USER}'@'%' WITH GRANT OPTION;
SQL
fi
