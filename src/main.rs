//! `tradewind`: one binary for the whole pipeline. Each subcommand is one component; `demo` runs them
//! all in one process.

mod cli;
mod demo;
mod live_view;

use clap::{Parser, Subcommand};

/// Arrow-native micro-batch stream processor for live cryptocurrency trades
/// (CoinCap websocket -> Kafka -> 1-minute event-time windows -> MySQL).
///
/// Every flag can also be set with the environment variable named in its help (TRADEWIND_*).
/// Logs go to stderr; RUST_LOG sets the level, TRADEWIND_LOG_FORMAT=json makes them JSON lines.
#[derive(Parser, Debug)]
#[command(name = "tradewind", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// File holding the SASL password for Kafka (e.g. a mounted Kubernetes Secret), used as
    /// librdkafka's `sasl.password` by ingest, produce and run alongside --kafka-option. Never logged.
    #[arg(
        long,
        global = true,
        env = "TRADEWIND_KAFKA_PASSWORD_FILE",
        value_name = "PATH"
    )]
    kafka_password_file: Option<std::path::PathBuf>,
}

/// Applies the Kafka client options of a subcommand (and the password file) process-wide.
fn kafka_options(items: &[String], password_file: Option<&std::path::Path>) -> anyhow::Result<()> {
    let options = tradewind_kafka::ClientOptions::parse(items, password_file)?;
    tradewind_kafka::set_client_options(options);
    Ok(())
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the whole pipeline in one process: embedded Kafka (unless --brokers), simulator,
    /// ingestor, engine and MySQL sink, with a live view of closed minutes.
    Demo(demo::DemoArgs),
    /// Serve a CoinCap-compatible trades websocket from a seeded market (or replay a capture).
    Simulate(cli::simulate::SimulateArgs),
    /// Read trades from a websocket (CoinCap, Binance, Coinbase) and produce them to Kafka.
    Ingest(cli::ingest::IngestArgs),
    /// Backfill a JSON-lines capture into the trades topic, with a progress bar.
    Produce(cli::ingest::ProduceArgs),
    /// Run the engine: Kafka -> Arrow micro-batches -> tumbling windows -> MySQL, exactly once.
    Run(cli::run::RunArgs),
    /// Create or upgrade the MySQL schema (tables, views) and exit.
    Migrate(cli::migrate::MigrateArgs),
}

fn main() -> std::process::ExitCode {
    limit_malloc_arenas();
    cap_mysql_buffers();
    let cli = Cli::parse();
    // The demo's full-screen view owns the terminal: its logs go to a file it names on screen.
    let demo_log = match &cli.command {
        Command::Demo(a) => a.live_log_file().map(std::path::Path::to_path_buf),
        _ => None,
    };
    match demo_log {
        Some(path) => {
            if let Err(e) = live_view::init_file_logging(&path) {
                eprintln!("error: cannot write the log file {}: {e}", path.display());
                return std::process::ExitCode::FAILURE;
            }
        }
        None => tradewind_telemetry::init_tracing(),
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let password_file = cli.kafka_password_file.clone();
    let options = match &cli.command {
        Command::Ingest(a) => kafka_options(&a.kafka.kafka_options, password_file.as_deref()),
        Command::Produce(a) => kafka_options(&a.kafka.kafka_options, password_file.as_deref()),
        Command::Run(a) => kafka_options(&a.kafka_options, password_file.as_deref()),
        _ => Ok(()),
    };
    if let Err(e) = options {
        tracing::error!("{e:#}");
        eprintln!("error: {e:#}");
        return std::process::ExitCode::FAILURE;
    }
    let result = rt.block_on(async move {
        let shutdown = tradewind_telemetry::shutdown_signal();
        match cli.command {
            Command::Demo(a) => demo::run(a, shutdown).await,
            Command::Simulate(a) => tradewind_sim::run(a.into(), shutdown).await,
            Command::Ingest(a) => {
                let metrics_addr = a.metrics_addr;
                tradewind_ingest::run(a.into(), metrics_addr, shutdown).await
            }
            Command::Produce(a) => tradewind_ingest::produce(a.into(), shutdown).await,
            Command::Run(a) => tradewind_engine::run(a.config(), shutdown).await,
            Command::Migrate(a) => tradewind_sink::run(a.config()?, shutdown).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let text = report(&e);
            // Once: a JSON log line for log pipelines, else a plain line for the person at the terminal.
            if std::env::var("TRADEWIND_LOG_FORMAT").is_ok_and(|v| v == "json") {
                tracing::error!(error = %text, "tradewind failed");
            } else {
                eprintln!("error: {text}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its chain of causes, each said once. Many errors already print their source inside
/// their own message (mysql_async's `Server error: `ERROR 1045 ...'` wraps the server's text, which
/// is also its `source()`); a cause whose text is already in the report is skipped.
fn report(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(text.as_str()) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// At most two glibc malloc arenas. By default every thread that allocates may get an arena of its
/// own (up to 8 per core), and the engine's decode threads and librdkafka's threads each keep freed
/// column buffers in theirs: about 20 MiB more peak RSS on the 2 M-trade benchmark for no speed.
/// `MALLOC_ARENA_MAX` in the environment still wins (glibc reads it first).
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; called before any thread starts.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

/// mysql_async keeps up to 128 spent packet buffers for reuse, each shrunk to at most
/// `MYSQL_ASYNC_BUFFER_SIZE_CAP` bytes (4 MiB by default). The sink's statements are up to 1 MiB, so
/// the buffers it kept were 1 MiB each: 15-16 MB of a drain's peak heap in heaptrack, under 3 MB
/// with a 64 KiB cap. Larger buffers are allocated per statement instead (a few dozen per second at most).
/// A value in the environment still wins. Called before any thread starts, like the arena limit.
fn cap_mysql_buffers() {
    const VAR: &str = "MYSQL_ASYNC_BUFFER_SIZE_CAP";
    if std::env::var_os(VAR).is_none() {
        std::env::set_var(VAR, "65536");
    }
}

#[cfg(test)]
mod tests {
    use std::fmt;

    /// An error that, like mysql_async's, prints its source inside its own message.
    #[derive(Debug)]
    struct Wrapping(&'static str, Option<Box<Wrapping>>);

    impl fmt::Display for Wrapping {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match &self.1 {
                Some(inner) => write!(f, "{}: `{inner}'", self.0),
                None => f.write_str(self.0),
            }
        }
    }

    impl std::error::Error for Wrapping {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn report_says_each_cause_once() {
        let denied = "ERROR 1045 (28000): Access denied for user 'root'@'127.0.0.1'";
        let server = Wrapping("Server error", Some(Box::new(Wrapping(denied, None))));
        let e =
            anyhow::Error::new(server).context("cannot connect to MySQL at root@127.0.0.1:3306");
        let text = super::report(&e);
        assert_eq!(
            text,
            format!("cannot connect to MySQL at root@127.0.0.1:3306: Server error: `{denied}'")
        );
        assert_eq!(text.matches("Access denied").count(), 1);
        // Plain context chains keep every layer.
        let e = anyhow::anyhow!("disk full").context("cannot write x.jsonl");
        assert_eq!(super::report(&e), "cannot write x.jsonl: disk full");
    }
}
