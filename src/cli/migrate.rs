//! `tradewind migrate` flags, mapped onto [`tradewind_sink::MigrateConfig`].

use std::path::PathBuf;

use tradewind_sink::{MigrateConfig, Secret};

fn parse_secret(s: &str) -> Result<Secret, String> {
    Ok(Secret::new(s))
}

/// Flags of `tradewind migrate`: create the database if missing, apply the schema and, when asked, create the
/// read-only user dashboards (Tableau) connect as.
#[derive(Debug, Clone, clap::Args)]
pub struct MigrateArgs {
    /// MySQL URL (mysql://user:password@host:port/database); the database is created if missing.
    #[arg(
        long,
        env = "TRADEWIND_MYSQL_URL",
        default_value = "mysql://root@127.0.0.1:3306/tradewind"
    )]
    pub mysql_url: String,
    /// Create (or update) this read-only MySQL user, with SELECT on the database's views and nothing
    /// else, for dashboards such as Tableau. Needs a password from --readonly-password-file or
    /// TRADEWIND_READONLY_PASSWORD. Running again with a new password rotates it.
    #[arg(long, env = "TRADEWIND_READONLY_USER")]
    pub readonly_user: Option<String>,
    /// File holding the read-only user's password (e.g. a mounted Kubernetes Secret); one trailing
    /// newline is ignored. The password is never logged. Ignored without --readonly-user.
    #[arg(long, env = "TRADEWIND_READONLY_PASSWORD_FILE")]
    pub readonly_password_file: Option<PathBuf>,
    /// The read-only user's password, from the environment (a flag would show in `ps`); prefer
    /// --readonly-password-file. Never logged. Ignored without --readonly-user.
    #[arg(
        long,
        env = "TRADEWIND_READONLY_PASSWORD",
        hide_env_values = true,
        value_parser = parse_secret,
        conflicts_with = "readonly_password_file"
    )]
    pub readonly_password: Option<Secret>,
    /// Host part of the read-only account (`%` is any host).
    #[arg(long, env = "TRADEWIND_READONLY_HOST", default_value = "%")]
    pub readonly_host: String,
    /// SQL pipeline file of `CREATE MATERIALIZED VIEW` statements (the same file as `run
    /// --pipeline`): creates each view's table, or adds the columns it lacks.
    #[arg(long, env = "TRADEWIND_PIPELINE")]
    pub pipeline: Option<PathBuf>,
}

impl MigrateArgs {
    /// The migration these flags describe (the pipeline file is read and checked here).
    pub fn config(self) -> anyhow::Result<MigrateConfig> {
        let pipeline = tradewind_engine::runner::load_pipeline(self.pipeline.as_deref())?;
        Ok(MigrateConfig {
            mysql_url: self.mysql_url,
            readonly_user: self.readonly_user,
            readonly_password_file: self.readonly_password_file,
            readonly_password: self.readonly_password,
            readonly_host: self.readonly_host,
            tables: pipeline
                .views
                .iter()
                .map(tradewind_pipeline::ddl::table_ddl)
                .collect(),
        })
    }
}
