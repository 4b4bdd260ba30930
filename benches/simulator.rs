//! Simulator throughput over loopback: the server runs in-process at unlimited rate (`--rate 0`),
//! one tokio-tungstenite client counts text frames for about 3 s and prints frames/s.
//!
//! Run: `cargo bench --bench simulator` (target on a 2-core machine: >= 200,000 frames/s).
//! Optional env: `TW_BENCH_SECS` (default 3), `TW_BENCH_MARKETS` (default 1000).

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tradewind_sim::{serve, MarketConfig, SimConfig};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too: keep that short.
    let quick = std::env::args().all(|a| a != "--bench");
    let secs = if quick {
        0.2
    } else {
        env_u64("TW_BENCH_SECS", 3) as f64
    };
    let markets = env_u64("TW_BENCH_MARKETS", 1000) as usize;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, rx) = watch::channel(false);
        let cfg = SimConfig {
            market: MarketConfig {
                markets,
                ..MarketConfig::default()
            },
            rate: 0,
            ..SimConfig::default()
        };
        let server = tokio::spawn(serve(listener, cfg, rx));
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/trades/ALL")).await?;
        // Warm up, then measure.
        let mut bytes = 0u64;
        let mut frames = 0u64;
        while frames < 20_000 {
            if let Some(Ok(Message::Text(_))) = ws.next().await {
                frames += 1;
            }
        }
        frames = 0;
        let t0 = Instant::now();
        let window = Duration::from_secs_f64(secs);
        while t0.elapsed() < window {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    frames += 1;
                    bytes += t.len() as u64;
                }
                Some(Ok(_)) => {}
                _ => anyhow::bail!("connection ended early"),
            }
        }
        let el = t0.elapsed().as_secs_f64();
        println!(
            "simulator: {frames} frames in {el:.2} s over loopback, one client, {markets} markets: {:.0} frames/s ({:.1} MB/s, {:.0} B/frame)",
            frames as f64 / el,
            bytes as f64 / el / 1e6,
            bytes as f64 / frames.max(1) as f64
        );
        drop(ws);
        let _ = stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
        Ok(())
    })
}
