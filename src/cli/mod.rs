//! Command-line flags of the library-backed subcommands. Each module declares one subcommand's clap
//! `Args` (every flag with its `TRADEWIND_*` env var) and maps it onto the library's typed config;
//! the libraries themselves know nothing about clap.

pub mod ingest;
pub mod migrate;
pub mod run;
pub mod simulate;

pub use tradewind_telemetry::parse_duration;
