//! Schema migrations: the `schemas/mysql/*.sql` files, embedded and applied in order.

use std::path::PathBuf;

use anyhow::Context as _;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Pool, Row};

use crate::encode::{write_ident, write_str_literal};
use crate::{MySqlSink, SinkError};

/// The embedded migrations, `(version, sql)` in the order they are applied.
pub const MIGRATIONS: &[(&str, &str)] = &[
    (
        "001_tables",
        include_str!("../../../schemas/mysql/001_tables.sql"),
    ),
    (
        "002_views",
        include_str!("../../../schemas/mysql/002_views.sql"),
    ),
    (
        "003_merge_on_write",
        include_str!("../../../schemas/mysql/003_merge_on_write.sql"),
    ),
    (
        "004_rollups",
        include_str!("../../../schemas/mysql/004_rollups.sql"),
    ),
    (
        "010_tableau_views",
        include_str!("../../../schemas/mysql/010_tableau_views.sql"),
    ),
    (
        "011_rollup_views",
        include_str!("../../../schemas/mysql/011_rollup_views.sql"),
    ),
    (
        "012_owner",
        include_str!("../../../schemas/mysql/012_owner.sql"),
    ),
];

/// Splits a migration file into statements: a statement ends at a line ending with `;`.
/// Comment-only lines (`-- ...`) are dropped.
pub(crate) fn split_statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in sql.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with("--") {
            continue;
        }
        if let Some(body) = t.strip_suffix(';') {
            cur.push_str(body);
            if !cur.trim().is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            cur.clear();
        } else {
            cur.push_str(line);
            cur.push('\n');
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out
}

pub(crate) async fn run_migrations(pool: &Pool) -> Result<(), SinkError> {
    let mut conn = pool
        .get_conn()
        .await
        .map_err(SinkError::mysql("connecting for migrate"))?;
    // Serialize concurrent migrators (several replicas starting at once) per database.
    let got: Option<Row> = conn
        .query_first("SELECT GET_LOCK(CONCAT('tradewind_migrate.', DATABASE()), 60)")
        .await
        .map_err(SinkError::mysql("taking the migration lock"))?;
    let locked = got.and_then(|r| {
        r.get_opt::<Option<i64>, _>(0)
            .and_then(Result::ok)
            .flatten()
    }) == Some(1);
    if !locked {
        tracing::warn!("could not take the migration lock within 60 s; migrating anyway");
    }
    let result = apply(&mut conn).await;
    if locked {
        let _ = conn
            .query_drop("DO RELEASE_LOCK(CONCAT('tradewind_migrate.', DATABASE()))")
            .await;
    }
    result
}

async fn apply(conn: &mut Conn) -> Result<(), SinkError> {
    conn.query_drop(
        "CREATE TABLE IF NOT EXISTS tw_schema_migrations (\
           version VARCHAR(64) NOT NULL PRIMARY KEY, \
           applied_at DATETIME(3) NOT NULL\
         ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
    )
    .await
    .map_err(SinkError::mysql("creating tw_schema_migrations"))?;
    let applied: Vec<Row> = conn
        .query("SELECT version FROM tw_schema_migrations")
        .await
        .map_err(SinkError::mysql("reading tw_schema_migrations"))?;
    let applied: Vec<String> = applied
        .into_iter()
        .filter_map(|r| r.get_opt::<String, _>(0).and_then(Result::ok))
        .collect();
    for (version, sql) in MIGRATIONS {
        if applied.iter().any(|a| a == version) {
            continue;
        }
        for stmt in split_statements(sql) {
            conn.query_drop(stmt)
                .await
                .map_err(SinkError::mysql(format!("applying migration {version}")))?;
        }
        conn.exec_drop(
            "INSERT INTO tw_schema_migrations (version, applied_at) VALUES (?, UTC_TIMESTAMP(3))",
            (*version,),
        )
        .await
        .map_err(SinkError::mysql(format!("recording migration {version}")))?;
        tracing::info!(version, "applied migration");
    }
    Ok(())
}

impl MySqlSink {
    /// Creates a pipeline view's table (`create`: `CREATE TABLE IF NOT EXISTS ...`) and adds the
    /// columns of `columns` (name, definition) it lacks: a view that gained a column is upgraded in
    /// place. Existing columns are left as they are.
    pub async fn ensure_table(&self, ddl: &TableDdl) -> Result<(), SinkError> {
        let (table, create, columns) = (ddl.name.as_str(), ddl.create.as_str(), &ddl.columns);
        let mut conn = self
            .pool
            .get_conn()
            .await
            .map_err(SinkError::mysql("connecting for migrate"))?;
        conn.query_drop(create)
            .await
            .map_err(SinkError::mysql(format!("creating table `{table}`")))?;
        check_unchanged(&mut conn, ddl).await?;
        let existing: Vec<String> = conn
            .exec(
                "SELECT COLUMN_NAME FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?",
                (table,),
            )
            .await
            .map_err(SinkError::mysql(format!(
                "reading the columns of `{table}`"
            )))?;
        for (name, definition) in columns {
            if existing.iter().any(|e| e.eq_ignore_ascii_case(name)) {
                continue;
            }
            let mut sql = String::from("ALTER TABLE ");
            write_ident(table, &mut sql);
            sql.push_str(" ADD COLUMN ");
            write_ident(name, &mut sql);
            sql.push(' ');
            sql.push_str(definition);
            conn.query_drop(&sql)
                .await
                .map_err(SinkError::mysql(format!(
                    "adding column `{name}` to `{table}`"
                )))?;
            tracing::info!(table, column = %name, "added column to view table");
        }
        Ok(())
    }
}

/// Refuses a view whose keys or window differ from its existing table's: `ALTER` cannot change
/// them in place, and merging on would fold rows of different keys or window sizes into one.
async fn check_unchanged(conn: &mut mysql_async::Conn, ddl: &TableDdl) -> Result<(), SinkError> {
    let table = ddl.name.as_str();
    let read = |what: &str| SinkError::mysql(format!("reading the {what} of `{table}`"));
    let pk: Vec<String> = conn
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY' \
             ORDER BY ORDINAL_POSITION",
            (table,),
        )
        .await
        .map_err(read("primary key"))?;
    let same = pk.len() == ddl.primary_key.len()
        && pk
            .iter()
            .zip(&ddl.primary_key)
            .all(|(a, b)| a.eq_ignore_ascii_case(b));
    if !same {
        return Err(SinkError::ViewChanged {
            table: table.to_string(),
            change: format!(
                "its keys changed from ({}) to ({})",
                pk.join(", "),
                ddl.primary_key.join(", ")
            ),
        });
    }
    let mut sql =
        String::from("SELECT TIMESTAMPDIFF(MICROSECOND, window_start, window_end) DIV 1000 FROM ");
    write_ident(table, &mut sql);
    sql.push_str(" LIMIT 1");
    let stored: Option<i64> = conn.query_first(sql).await.map_err(read("window"))?;
    match stored {
        Some(w) if w != ddl.window_ms => Err(SinkError::ViewChanged {
            table: table.to_string(),
            change: format!("its window changed from {w} ms to {} ms", ddl.window_ms),
        }),
        _ => Ok(()),
    }
}

/// A password that never shows in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a password.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The password itself (to send to the server, never to print).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// What `tradewind migrate` does: create the database if missing, apply the schema and, when asked,
/// create the read-only user dashboards (Tableau) connect as.
#[derive(Debug, Clone)]
pub struct MigrateConfig {
    /// MySQL URL (mysql://user:password@host:port/database); the database is created if missing.
    pub mysql_url: String,
    /// Create (or update) this read-only MySQL user, with SELECT on the database's views and nothing
    /// else, for dashboards such as Tableau. Needs a password from --readonly-password-file or
    /// TRADEWIND_READONLY_PASSWORD. Running again with a new password rotates it.
    pub readonly_user: Option<String>,
    /// File holding the read-only user's password (e.g. a mounted Kubernetes Secret); one trailing
    /// newline is ignored. The password is never logged. Ignored without --readonly-user.
    pub readonly_password_file: Option<PathBuf>,
    /// The read-only user's password, from the environment (a flag would show in `ps`); prefer
    /// --readonly-password-file. Never logged. Ignored without --readonly-user.
    pub readonly_password: Option<Secret>,
    /// Host part of the read-only account (`%` is any host).
    pub readonly_host: String,
    /// Tables defined outside the embedded migrations (the SQL pipeline's views), created or
    /// upgraded after them.
    pub tables: Vec<TableDdl>,
}

/// A table whose DDL is generated (a pipeline view's): created if missing, missing columns added;
/// a changed primary key or window is refused (the rows would merge into the old definition's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDdl {
    /// Table name.
    pub name: String,
    /// `CREATE TABLE IF NOT EXISTS ...`.
    pub create: String,
    /// Every column: (name, definition), e.g. `("n", "BIGINT NOT NULL DEFAULT 0")`.
    pub columns: Vec<(String, String)>,
    /// The primary key's columns, in order (the view's keys, then `window_start`).
    pub primary_key: Vec<String>,
    /// The view's window length, ms (rows hold `window_end - window_start` of it).
    pub window_ms: i64,
}

impl MigrateConfig {
    /// The read-only user's password from the file or the environment (`None` without a user).
    fn readonly_password(&self) -> anyhow::Result<Option<Secret>> {
        if self.readonly_user.is_none() {
            return Ok(None);
        }
        if let Some(p) = &self.readonly_password {
            return Ok(Some(p.clone()));
        }
        let Some(path) = &self.readonly_password_file else {
            anyhow::bail!(
                "--readonly-user needs a password: --readonly-password-file \
                 (TRADEWIND_READONLY_PASSWORD_FILE) or TRADEWIND_READONLY_PASSWORD"
            );
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the read-only password file {}", path.display()))?;
        let pw = text
            .strip_suffix("\r\n")
            .or_else(|| text.strip_suffix('\n'))
            .unwrap_or(&text);
        Ok(Some(Secret::new(pw)))
    }
}

/// Whether `name` is a plain account name or host pattern (letters, digits, `_ . - %` and `:`).
fn plain_account_part(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'%' | b':'))
}

/// Creates (or updates the password of) the account `user`@`host` and grants it SELECT on every
/// view of the pool's database, and nothing else: what a dashboard needs to read the results and
/// nothing that could change them or read the engine's bookkeeping tables. Idempotent; run it
/// after the migrations so new views are granted. Returns the views granted. The password is sent
/// to the server only, never logged.
pub async fn ensure_readonly_user(
    pool: &Pool,
    user: &str,
    host: &str,
    password: &Secret,
) -> Result<Vec<String>, SinkError> {
    if !plain_account_part(user, 80) || user.contains('%') {
        return Err(SinkError::InvalidIdentifier(user.to_string()));
    }
    if !plain_account_part(host, 255) {
        return Err(SinkError::InvalidIdentifier(host.to_string()));
    }
    if password.expose().is_empty() {
        return Err(SinkError::ValueOutOfRange(
            "the read-only user's password is empty".into(),
        ));
    }
    let mut conn = pool
        .get_conn()
        .await
        .map_err(SinkError::mysql("connecting to create the read-only user"))?;
    let mut account = String::new();
    write_str_literal(user, &mut account);
    account.push('@');
    write_str_literal(host, &mut account);
    let mut identified = String::from(" IDENTIFIED BY ");
    write_str_literal(password.expose(), &mut identified);
    conn.query_drop(format!("CREATE USER IF NOT EXISTS {account}{identified}"))
        .await
        .map_err(SinkError::mysql(format!("creating user {account}")))?;
    // An existing account gets the password given now (rotation).
    conn.query_drop(format!("ALTER USER {account}{identified}"))
        .await
        .map_err(SinkError::mysql(format!(
            "setting the password of {account}"
        )))?;
    let db: Option<String> = conn
        .query_first("SELECT DATABASE()")
        .await
        .map_err(SinkError::mysql("reading the current database"))?;
    let Some(db) = db else {
        return Err(SinkError::InvalidIdentifier(
            "(no database in the MySQL URL)".into(),
        ));
    };
    let views: Vec<String> = conn
        .exec(
            "SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = ? \
             ORDER BY TABLE_NAME",
            (&db,),
        )
        .await
        .map_err(SinkError::mysql("listing the views"))?;
    for view in &views {
        let mut sql = String::from("GRANT SELECT ON ");
        write_ident(&db, &mut sql);
        sql.push('.');
        write_ident(view, &mut sql);
        sql.push_str(" TO ");
        sql.push_str(&account);
        conn.query_drop(sql)
            .await
            .map_err(SinkError::mysql(format!(
                "granting SELECT on {view} to {account}"
            )))?;
    }
    tracing::info!(user, host, database = %db, views = views.len(), "read-only user has SELECT on the views");
    Ok(views)
}

/// Runs `tradewind migrate`: connect (creating the database), apply migrations, create the
/// read-only user if asked, disconnect.
pub async fn run(
    args: MigrateConfig,
    _shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    // Read the password before touching the database: a missing file fails fast.
    let password = args.readonly_password()?;
    let sink = MySqlSink::connect(&args.mysql_url).await?;
    let mut result = sink.migrate().await.map_err(anyhow::Error::from);
    for t in &args.tables {
        if result.is_ok() {
            result = sink.ensure_table(t).await.map_err(anyhow::Error::from);
        }
    }
    if let (Ok(()), Some(user), Some(pw)) = (&result, &args.readonly_user, &password) {
        result = ensure_readonly_user(sink.pool(), user, &args.readonly_host, pw)
            .await
            .map(|_| ())
            .map_err(anyhow::Error::from);
    }
    let _ = sink.disconnect().await;
    result?;
    tracing::info!("schema is up to date");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_embedded_files() {
        let t = split_statements(MIGRATIONS[0].1);
        assert_eq!(t.len(), 4);
        assert!(t
            .iter()
            .all(|s| s.trim_start().starts_with("CREATE TABLE IF NOT EXISTS")));
        assert!(t.iter().all(|s| !s.contains(';')));
        let v = split_statements(MIGRATIONS[1].1);
        assert_eq!(v.len(), 3);
        assert!(v.iter().all(|s| s.starts_with("CREATE OR REPLACE VIEW")));
        let tableau = MIGRATIONS
            .iter()
            .find(|(v, _)| *v == "010_tableau_views")
            .map_or("", |(_, sql)| sql);
        let t = split_statements(tableau);
        assert_eq!(t.len(), 1);
        assert!(t[0].starts_with("CREATE OR REPLACE VIEW v_tableau_asset_minute"));
    }

    #[test]
    fn secrets_do_not_print_and_account_names_are_plain() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert!(plain_account_part("tableau", 80));
        assert!(plain_account_part("%", 255));
        assert!(!plain_account_part("a'b", 80));
        assert!(!plain_account_part("", 80));
        assert!(!plain_account_part("a b", 80));
    }
}
