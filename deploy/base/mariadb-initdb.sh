# Sourced by the official mariadb image's entrypoint on the first start (empty data directory), after it
# created the database tradewind and the user tradewind. Creates the engine's DML-only user, whose
# password comes from the Secret tradewind-mysql (key engine-password) via TRADEWIND_ENGINE_PASSWORD.
# Backslashes and single quotes are escaped so any password character stays literal in the SQL string.
engine_pw=${TRADEWIND_ENGINE_PASSWORD//\\/\\\\}
engine_pw=${engine_pw//\'/\'\'}
docker_process_sql --database=mysql <<SQL
CREATE USER IF NOT EXISTS 'tradewind_engine'@'%' IDENTIFIED BY '${engine_pw}';
GRANT SELECT, INSERT, UPDATE, DELETE ON \`tradewind\`.* TO 'tradewind_engine'@'%';
SQL
unset engine_pw
