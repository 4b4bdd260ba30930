//! `tradewind`: one binary for the whole pipeline. Each subcommand is one component; `demo` runs them
//! all in one process.

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
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the whole pipeline in one process: embedded Kafka (unless --brokers), simulator,
    /// ingestor, engine and MySQL sink, with a live view of closed minutes.
    Demo(demo::DemoArgs),
    /// Serve a CoinCap-compatible trades websocket from a seeded market (or replay a capture).
    Simulate(tradewind_sim::SimulateArgs),
    /// Read trades from a websocket (CoinCap, Binance, Coinbase) and produce them to Kafka.
    Ingest(tradewind_ingest::IngestArgs),
    /// Backfill a JSON-lines capture into the trades topic, with a progress bar.
    Produce(tradewind_ingest::ProduceArgs),
    /// Run the engine: Kafka -> Arrow micro-batches -> tumbling windows -> MySQL, exactly once.
    Run(tradewind_engine::RunArgs),
    /// Create or upgrade the MySQL schema (tables, views) and exit.
    Migrate(tradewind_sink::MigrateArgs),
}

fn main() -> std::process::ExitCode {
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
    let result = rt.block_on(async move {
        let shutdown = tradewind_telemetry::shutdown_signal();
        match cli.command {
            Command::Demo(a) => demo::run(a, shutdown).await,
            Command::Simulate(a) => tradewind_sim::run(a, shutdown).await,
            Command::Ingest(a) => tradewind_ingest::run(a, shutdown).await,
            Command::Produce(a) => tradewind_ingest::produce(a, shutdown).await,
            Command::Run(a) => tradewind_engine::run(a, shutdown).await,
            Command::Migrate(a) => tradewind_sink::run(a, shutdown).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
