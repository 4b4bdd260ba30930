//! `tradewind simulate` flags, mapped onto [`tradewind_sim::SimulateConfig`].

use std::net::SocketAddr;
use std::path::PathBuf;

use tradewind_sim::{Burst, Faults, MarketConfig, SimConfig, SimulateConfig};

/// Flags of `tradewind simulate`: a CoinCap-compatible websocket server (`/trades/{exchange}`,
/// `/trades/ALL`, `/prices?assets=...`) over a deterministic seeded market, or a replayer of a
/// JSON-lines capture.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// Address to listen on for websocket clients.
    #[arg(long, env = "TRADEWIND_LISTEN", default_value = "127.0.0.1:8765")]
    pub listen: String,
    /// Trades per second per connection (0 = as fast as the client reads).
    #[arg(long, env = "TRADEWIND_RATE", default_value_t = 1000)]
    pub rate: u64,
    /// Seed of the simulated market: the same seed sends the same trades.
    #[arg(long, env = "TRADEWIND_SEED", default_value_t = 42)]
    pub seed: u64,
    /// Replay this JSON-lines capture instead of simulating (each line sent verbatim as one frame).
    #[arg(long, env = "TRADEWIND_REPLAY")]
    pub replay: Option<PathBuf>,
    /// Replay speed over the capture's timestamp deltas (2 = twice as fast; 0 = as fast as possible).
    #[arg(long, env = "TRADEWIND_SPEED", default_value_t = 1.0)]
    pub speed: f64,
    /// Number of (exchange, base, quote) markets to simulate (e.g. 1000 or 10000).
    #[arg(long, env = "TRADEWIND_SIM_MARKETS", default_value_t = 1000)]
    pub markets: usize,
    /// Event-time jitter: trades are dated up to this many ms before they are sent (out of order).
    #[arg(long, env = "TRADEWIND_SIM_JITTER_MS", default_value_t = 250)]
    pub jitter_ms: u32,
    /// Fraction (0..1) of trades dated 1 s to --late-max-ms in the past (late data).
    #[arg(long, env = "TRADEWIND_SIM_LATE_FRACTION", default_value_t = 0.0)]
    pub late_fraction: f64,
    /// How far behind a late trade can be, in ms.
    #[arg(long, env = "TRADEWIND_SIM_LATE_MAX_MS", default_value_t = 120_000)]
    pub late_max_ms: u32,
    /// Date trades on a logical clock starting at this epoch ms (trade i at start + i*1000/rate)
    /// instead of the wall clock: frames become byte-reproducible. With --write-jsonl: the first
    /// trade's time (default: so that the last trade is dated now).
    #[arg(long, env = "TRADEWIND_SIM_START_MS")]
    pub start_ms: Option<i64>,
    /// Close each connection normally after this many frames (with --write-jsonl: trades to write).
    #[arg(long, env = "TRADEWIND_SIM_COUNT")]
    pub count: Option<u64>,
    /// Append every frame sent, exactly as sent, as JSON lines (a test oracle; use one connection).
    #[arg(long, env = "TRADEWIND_SIM_LOG")]
    pub log: Option<PathBuf>,
    /// Rate multiplier during bursts (needs --burst-every-ms).
    #[arg(long, env = "TRADEWIND_SIM_BURST_FACTOR", default_value_t = 1.0)]
    pub burst_factor: f64,
    /// Start a burst every this many ms (0 = no bursts).
    #[arg(long, env = "TRADEWIND_SIM_BURST_EVERY_MS", default_value_t = 0)]
    pub burst_every_ms: u64,
    /// Length of each burst in ms.
    #[arg(long, env = "TRADEWIND_SIM_BURST_DURATION_MS", default_value_t = 1000)]
    pub burst_duration_ms: u64,
    /// Interval between /prices frames in ms.
    #[arg(long, env = "TRADEWIND_SIM_PRICE_INTERVAL_MS", default_value_t = 500)]
    pub price_interval_ms: u64,
    /// Fault: every N-th frame is malformed (truncated JSON, wrong type, negative volume, missing
    /// field, bad direction, far-future timestamp, not an object, empty id, non-finite; rotating).
    #[arg(long, env = "TRADEWIND_SIM_FAULT_MALFORMED_EVERY")]
    pub fault_malformed_every: Option<u64>,
    /// Fault: drop the TCP connection without a close frame after N frames.
    #[arg(long, env = "TRADEWIND_SIM_FAULT_CLOSE_AFTER")]
    pub fault_close_after: Option<u64>,
    /// Fault: stall (send nothing, still answer pings) after N frames, for --fault-stall-ms.
    #[arg(long, env = "TRADEWIND_SIM_FAULT_STALL_AFTER")]
    pub fault_stall_after: Option<u64>,
    /// Length of the stall in ms.
    #[arg(long, env = "TRADEWIND_SIM_FAULT_STALL_MS", default_value_t = 5000)]
    pub fault_stall_ms: u64,
    /// Fault: answer every connection with a text frame `Unauthorized`, then close.
    #[arg(long, env = "TRADEWIND_SIM_FAULT_UNAUTHORIZED")]
    pub fault_unauthorized: bool,
    /// Serve Prometheus /metrics, /healthz and /readyz on this address.
    #[arg(long, env = "TRADEWIND_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Write --count generated trades to this JSON-lines file and exit (no server): offline data
    /// sets for benchmarks and backfills.
    #[arg(long, env = "TRADEWIND_SIM_WRITE_JSONL")]
    pub write_jsonl: Option<PathBuf>,
}

impl SimulateArgs {
    /// The market part of the flags.
    pub fn market_config(&self) -> MarketConfig {
        MarketConfig {
            seed: self.seed,
            markets: self.markets.max(1),
            jitter_ms: self.jitter_ms,
            late_fraction: self.late_fraction.clamp(0.0, 1.0),
            late_max_ms: self.late_max_ms,
            start_ms: self.start_ms,
            event_rate: if self.rate > 0 { self.rate } else { 1000 },
        }
    }

    /// The server part of the flags (without metrics).
    pub fn server_config(&self) -> SimConfig {
        SimConfig {
            market: self.market_config(),
            rate: self.rate,
            burst: (self.burst_every_ms > 0 && self.burst_factor != 1.0).then_some(Burst {
                factor: self.burst_factor,
                every_ms: self.burst_every_ms,
                duration_ms: self.burst_duration_ms,
            }),
            replay: self.replay.clone(),
            speed: self.speed,
            count: self.count,
            log: self.log.clone(),
            faults: Faults {
                malformed_every: self.fault_malformed_every.filter(|n| *n > 0),
                close_after: self.fault_close_after,
                stall_after: self.fault_stall_after,
                stall_ms: self.fault_stall_ms,
                unauthorized: self.fault_unauthorized,
            },
            price_interval_ms: self.price_interval_ms.max(1),
            metrics: None,
        }
    }
}

impl From<SimulateArgs> for SimulateConfig {
    fn from(a: SimulateArgs) -> Self {
        SimulateConfig {
            server: a.server_config(),
            listen: a.listen,
            metrics_addr: a.metrics_addr,
            write_jsonl: a.write_jsonl,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: SimulateArgs,
    }

    #[test]
    fn flags_map_onto_the_config() {
        let cli = Cli::try_parse_from([
            "simulate",
            "--write-jsonl",
            "/tmp/x.jsonl",
            "--count",
            "5000",
            "--start-ms",
            "1700000000000",
            "--seed",
            "9",
            "--markets",
            "10000",
            "--rate",
            "0",
            "--late-fraction",
            "3",
            "--fault-malformed-every",
            "10",
            "--burst-factor",
            "3",
            "--burst-every-ms",
            "1000",
            "--price-interval-ms",
            "0",
        ])
        .expect("flags parse");
        let cfg = SimulateConfig::from(cli.args);
        assert_eq!(cfg.write_jsonl, Some(PathBuf::from("/tmp/x.jsonl")));
        assert_eq!(cfg.listen, "127.0.0.1:8765");
        let s = cfg.server;
        assert_eq!(s.count, Some(5000));
        assert_eq!(s.rate, 0);
        assert_eq!(
            s.market,
            MarketConfig {
                seed: 9,
                markets: 10_000,
                jitter_ms: 250,
                late_fraction: 1.0,
                late_max_ms: 120_000,
                start_ms: Some(1_700_000_000_000),
                // A rate of 0 (as fast as the client reads) still dates trades 1 ms apart.
                event_rate: 1000,
            }
        );
        assert_eq!(s.faults.malformed_every, Some(10));
        let burst = s.burst.expect("burst");
        assert_eq!(
            (burst.factor, burst.every_ms, burst.duration_ms),
            (3.0, 1000, 1000)
        );
        assert_eq!(s.price_interval_ms, 1);
    }

    #[test]
    fn defaults_match_the_library_defaults() {
        let cli = Cli::try_parse_from(["simulate"]).expect("no flags parse");
        let cfg = SimulateConfig::from(cli.args);
        let lib = SimulateConfig::default();
        assert_eq!(cfg.listen, lib.listen);
        assert_eq!(cfg.server.market, lib.server.market);
        assert_eq!(cfg.server.rate, lib.server.rate);
        assert_eq!(cfg.server.price_interval_ms, lib.server.price_interval_ms);
        assert!(cfg.server.burst.is_none() && cfg.server.faults.malformed_every.is_none());
    }
}
