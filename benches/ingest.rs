//! Ingest throughput, end to end: an in-process websocket server sends pre-generated valid CoinCap
//! frames as fast as it can over loopback -> `tradewind_ingest::ingest` (validate, key by base,
//! idempotent lz4 producer) -> librdkafka's mock cluster. The clock stops when every frame has been
//! received, the shutdown flush has returned and every record is acknowledged.
//!
//! `cargo bench --bench ingest` (frames: `TRADEWIND_BENCH_FRAMES`, default 1,000,000).

use std::time::{Duration, Instant};

use futures_util::SinkExt;
use rdkafka::mocking::MockCluster;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tradewind_ingest::{ingest, prometheus, IngestConfig};

const BASES: [&str; 12] = [
    "bitcoin", "ethereum", "bitcoin", "solana", "ethereum", "xrp", "bitcoin", "dogecoin",
    "cardano", "tron", "bitcoin", "litecoin",
];

fn frames(n: usize) -> Vec<Utf8Bytes> {
    let ts = tradewind_model::now_ms() - 600_000;
    (0..n)
        .map(|i| {
            let base = BASES[i % BASES.len()];
            let price = 100.0 + (i % 997) as f64 * 0.25;
            format!(
                r#"{{"exchange":"binance","base":"{base}","quote":"tether","direction":"{}","price":{price},"volume":{},"timestamp":{},"priceUsd":{}}}"#,
                if i % 3 == 0 { "sell" } else { "buy" },
                0.001 * (1 + i % 5000) as f64,
                ts + (i / 200) as i64,
                price * 1.0003,
            )
            .into()
        })
        .collect()
}

fn main() {
    let n: usize = std::env::var("TRADEWIND_BENCH_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic("trades", 6, 1).expect("topic");
    mock.create_topic("trades.dlq", 1, 1).expect("dlq topic");
    let brokers = mock.bootstrap_servers();
    let payload = frames(n);
    let bytes: usize = payload.iter().map(|f| f.len()).sum();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("accept");
            tcp.set_nodelay(true).ok();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.expect("handshake");
            for f in payload {
                if ws.feed(Message::Text(f)).await.is_err() {
                    return;
                }
            }
            let _ = ws.flush().await;
            // Stay connected until the client leaves.
            tokio::time::sleep(Duration::from_secs(3600)).await;
        });

        let registry = prometheus::Registry::new();
        let (stop, rx) = tokio::sync::watch::channel(false);
        let mut cfg = IngestConfig::new(vec![format!("ws://{addr}/trades/ALL")], brokers);
        cfg.flush_timeout = Duration::from_secs(120);
        let reg = registry.clone();
        let started = Instant::now();
        let run = tokio::spawn(async move { ingest(cfg, &reg, rx).await });
        while tradewind_telemetry::metric_value(&registry, "tradewind_ingest_frames_total") < n as f64 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let received = started.elapsed();
        stop.send(true).expect("stop");
        let stats = run.await.expect("join").expect("ingest");
        let total = started.elapsed();
        assert_eq!(stats.produced, n as u64, "every frame acknowledged: {stats:?}");
        assert!(stats.flushed && stats.delivery_errors == 0);
        println!(
            "ingest: {n} frames ({:.1} MB) websocket -> validate -> Kafka (mock cluster, idempotent, lz4)",
            bytes as f64 / 1e6
        );
        println!(
            "  received in {:.2}s; all acknowledged in {:.2}s",
            received.as_secs_f64(),
            total.as_secs_f64()
        );
        println!(
            "  end to end: {:.0} frames/s ({:.1} MB/s)",
            n as f64 / total.as_secs_f64(),
            bytes as f64 / 1e6 / total.as_secs_f64()
        );
    });
}
