//! Schema migrations: the `schemas/mysql/*.sql` files, embedded and applied in order.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Pool, Row};

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

/// `tradewind migrate`: create the database if missing and apply the schema.
#[derive(Debug, Clone, clap::Args)]
pub struct MigrateArgs {
    /// MySQL URL (mysql://user:password@host:port/database); the database is created if missing.
    #[arg(
        long,
        env = "TRADEWIND_MYSQL_URL",
        default_value = "mysql://root@127.0.0.1:3306/tradewind"
    )]
    pub mysql_url: String,
}

/// Runs `tradewind migrate`: connect (creating the database), apply migrations, disconnect.
pub async fn run(
    args: MigrateArgs,
    _shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let sink = MySqlSink::connect(&args.mysql_url).await?;
    let result = sink.migrate().await;
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
    }
}
