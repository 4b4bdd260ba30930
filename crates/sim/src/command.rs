//! `tradewind simulate` as a library call: serve the simulated market (or a replay) over websocket,
//! or write a generated JSON-lines file. The binary maps its flags onto [`SimulateConfig`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use tokio::sync::watch;

use crate::market::{write_jsonl, MarketConfig};
use crate::server::{serve, SimConfig, SimMetrics};

/// Everything `tradewind simulate` does, as typed settings.
#[derive(Debug, Clone)]
pub struct SimulateConfig {
    /// Address to listen on for websocket clients (`host:port`).
    pub listen: String,
    /// The market, pacing, replay, faults and per-connection frame count of the server.
    pub server: SimConfig,
    /// Serve Prometheus /metrics, /healthz and /readyz on this address.
    pub metrics_addr: Option<SocketAddr>,
    /// Write `server.count` generated trades of `server.market` to this JSON-lines file and return
    /// instead of serving.
    pub write_jsonl: Option<PathBuf>,
}

impl Default for SimulateConfig {
    fn default() -> Self {
        SimulateConfig {
            listen: "127.0.0.1:8765".to_string(),
            server: SimConfig::default(),
            metrics_addr: None,
            write_jsonl: None,
        }
    }
}

/// Writes `n` generated trades as JSON lines to `path` (see [`crate::market::write_jsonl`]);
/// returns the bytes written.
pub fn generate_file(path: &Path, n: u64, cfg: &MarketConfig) -> anyhow::Result<u64> {
    write_jsonl(path, n, cfg).with_context(|| format!("cannot write {}", path.display()))
}

/// Runs `tradewind simulate` until `shutdown` turns true (or, with `write_jsonl`, writes the file
/// and returns).
pub async fn run(cfg: SimulateConfig, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    if let Some(path) = &cfg.write_jsonl {
        let n = cfg
            .server
            .count
            .context("--write-jsonl needs --count N (number of trades)")?;
        return write_generated(path, n, cfg.server.market).await;
    }
    let mut server = cfg.server;
    if let Some(addr) = cfg.metrics_addr {
        let registry = tradewind_telemetry::new_registry();
        server.metrics = Some(SimMetrics::register(&registry)?);
        let health = tradewind_telemetry::Health::new();
        health.set_ready(true, "serving");
        tradewind_telemetry::serve_http(addr, registry, health).await?;
    }
    let listener = tokio::net::TcpListener::bind(&cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    tracing::info!(addr = %cfg.listen, "tradewind simulate listening: /trades/{{exchange}}, /trades/ALL, /prices?assets=");
    serve(listener, server, shutdown).await
}

/// Generates `n` trades into `path` on a blocking thread, and logs what it wrote.
async fn write_generated(path: &Path, n: u64, market: MarketConfig) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let owned = path.to_path_buf();
    let bytes = tokio::task::spawn_blocking(move || generate_file(&owned, n, &market))
        .await
        .context("generator task failed")??;
    tracing::info!(path = %path.display(), trades = n, bytes,
        secs = started.elapsed().as_secs_f64(), "wrote generated trades");
    Ok(())
}
