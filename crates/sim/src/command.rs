//! `tradewind simulate`: command-line flags and the entry point.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use tokio::sync::watch;

use crate::market::{write_jsonl, MarketConfig};
use crate::server::{serve, Burst, Faults, SimConfig, SimMetrics};

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

impl Default for SimulateArgs {
    fn default() -> Self {
        let c = SimConfig::default();
        SimulateArgs {
            listen: "127.0.0.1:8765".to_string(),
            rate: c.rate,
            seed: c.market.seed,
            replay: None,
            speed: c.speed,
            markets: c.market.markets,
            jitter_ms: c.market.jitter_ms,
            late_fraction: c.market.late_fraction,
            late_max_ms: c.market.late_max_ms,
            start_ms: None,
            count: None,
            log: None,
            burst_factor: 1.0,
            burst_every_ms: 0,
            burst_duration_ms: 1000,
            price_interval_ms: c.price_interval_ms,
            fault_malformed_every: None,
            fault_close_after: None,
            fault_stall_after: None,
            fault_stall_ms: 5000,
            fault_unauthorized: false,
            metrics_addr: None,
            write_jsonl: None,
        }
    }
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

    /// The server configuration the flags describe (without metrics).
    pub fn to_config(&self) -> SimConfig {
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

/// Writes `n` generated trades as JSON lines to `path` (see [`crate::market::write_jsonl`]);
/// returns the bytes written.
pub fn generate_file(path: &Path, n: u64, cfg: &MarketConfig) -> anyhow::Result<u64> {
    write_jsonl(path, n, cfg).with_context(|| format!("cannot write {}", path.display()))
}

/// Runs `tradewind simulate` until `shutdown` turns true (or, with `--write-jsonl`, writes the
/// file and returns).
pub async fn run(args: SimulateArgs, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    if let Some(path) = &args.write_jsonl {
        let n = args
            .count
            .context("--write-jsonl needs --count N (number of trades)")?;
        let cfg = args.market_config();
        let started = std::time::Instant::now();
        let owned = path.clone();
        let bytes = tokio::task::spawn_blocking(move || generate_file(&owned, n, &cfg))
            .await
            .context("generator task failed")??;
        tracing::info!(path = %path.display(), trades = n, bytes,
            secs = started.elapsed().as_secs_f64(), "wrote generated trades");
        return Ok(());
    }
    let mut cfg = args.to_config();
    if let Some(addr) = args.metrics_addr {
        let registry = tradewind_telemetry::new_registry();
        cfg.metrics = Some(SimMetrics::register(&registry)?);
        let health = tradewind_telemetry::Health::new();
        health.set_ready(true, "serving");
        tradewind_telemetry::serve_http(addr, registry, health).await?;
    }
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(addr = %args.listen, "tradewind simulate listening: /trades/{{exchange}}, /trades/ALL, /prices?assets=");
    serve(listener, cfg, shutdown).await
}
