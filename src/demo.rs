//! `tradewind demo`: the whole pipeline in one process — embedded Kafka (unless `--brokers`), the
//! CoinCap-compatible simulator, the ingestor, the engine and the MySQL sink — with a compact live
//! view of closed minutes, throughput, lag and watermark.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use mysql_async::prelude::Queryable;
use tokio::sync::watch;
use tradewind_engine::{parse_duration, RunArgs};

/// Flags of `tradewind demo` (each also read from its `TRADEWIND_*` environment variable).
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Kafka bootstrap servers; when absent an embedded in-process Kafka cluster is started.
    #[arg(long, env = "TRADEWIND_BROKERS")]
    brokers: Option<String>,
    /// MySQL URL; the database is created if missing.
    #[arg(
        long,
        env = "TRADEWIND_MYSQL_URL",
        default_value = "mysql://root@127.0.0.1:3306/tradewind"
    )]
    mysql_url: String,
    /// Simulated trades per second.
    #[arg(long, env = "TRADEWIND_RATE", default_value_t = 2_000)]
    rate: u64,
    /// Stop after this long (e.g. 90s, 5m); runs until Ctrl-C when absent.
    #[arg(long, env = "TRADEWIND_DURATION", value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Seed of the simulated market.
    #[arg(long, env = "TRADEWIND_SEED", default_value_t = 42)]
    seed: u64,
    /// Number of simulated markets (exchange, base, quote).
    #[arg(long, env = "TRADEWIND_MARKETS", default_value_t = 300)]
    markets: usize,
    /// Address of the /metrics, /healthz and /readyz endpoint.
    #[arg(long, env = "TRADEWIND_METRICS_ADDR", default_value = "127.0.0.1:9100")]
    metrics_addr: SocketAddr,
    /// How often the live view prints.
    #[arg(long, env = "TRADEWIND_PRINT_EVERY", default_value = "5s", value_parser = parse_duration)]
    print_every: Duration,
}

/// Runs the demo until Ctrl-C/SIGTERM or `--duration`.
pub async fn run(args: DemoArgs, signal: watch::Receiver<bool>) -> anyhow::Result<()> {
    // MySQL first: the most likely thing to be missing on a new machine, so say so plainly.
    let sink = tradewind_sink::MySqlSink::connect(&args.mysql_url)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "MySQL is not reachable at {}: {e}\n  Start MariaDB/MySQL (on this project's machines: \
                 `bash scripts/stack.sh up`) or point --mysql-url / TRADEWIND_MYSQL_URL at a server.",
                args.mysql_url
            )
        })?;
    sink.migrate().await.context("applying the MySQL schema")?;

    let (stop_tx, stop) = watch::channel(false);
    forward(signal, stop_tx.clone());

    let _cluster;
    let brokers = match &args.brokers {
        Some(b) => {
            // The demo owns its set-up: the topics exist before any component starts.
            tradewind_kafka::ensure_topics(
                b,
                &[("trades", 6), ("trades.dlq", 1), ("trades.late", 1)],
            )
            .await
            .context("creating the demo's topics")?;
            b.clone()
        }
        None => {
            let c = tradewind_kafka::EmbeddedCluster::start(
                1,
                &[("trades", 6), ("trades.dlq", 1), ("trades.late", 1)],
            )?;
            let b = c.bootstrap_servers().to_string();
            println!("embedded Kafka (librdkafka mock cluster) on {b}");
            _cluster = c;
            b
        }
    };

    let registry = tradewind_telemetry::new_registry();
    let health = tradewind_telemetry::Health::new();
    let metrics_addr =
        tradewind_telemetry::serve_http(args.metrics_addr, registry.clone(), health.clone())
            .await?;

    // Simulator.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sim_addr = listener.local_addr()?;
    let mut sim_cfg = tradewind_sim::SimConfig {
        rate: args.rate,
        metrics: Some(tradewind_sim::SimMetrics::register(&registry)?),
        ..Default::default()
    };
    sim_cfg.market.seed = args.seed;
    sim_cfg.market.markets = args.markets;
    let sim = tokio::spawn(tradewind_sim::serve(listener, sim_cfg, stop.clone()));

    // Ingestor.
    let mut ingest_cfg = tradewind_ingest::IngestConfig::new(
        vec![format!("ws://{sim_addr}/trades/ALL")],
        brokers.clone(),
    );
    ingest_cfg.partitions = Some(6);
    let (reg, st) = (registry.clone(), stop.clone());
    let ingest = tokio::spawn(async move { tradewind_ingest::ingest(ingest_cfg, &reg, st).await });

    // Engine, with live provisional rows every second so the forming minute is visible.
    let mut engine_args = RunArgs::new(&brokers, &args.mysql_url);
    engine_args.live_interval = Some(Duration::from_secs(1));
    engine_args.out_of_orderness = Duration::from_secs(2);
    if args.brokers.is_none() {
        // The embedded cluster starts empty every time: offsets stored in MySQL by an earlier demo
        // belong to a log that no longer exists, so each run is its own consumer group.
        engine_args.group = format!("demo-{}", tradewind_model::now_ms());
    }
    let (reg, st, h) = (registry.clone(), stop.clone(), health.clone());
    let engine =
        tokio::spawn(async move { tradewind_engine::run_engine(engine_args, &reg, h, st).await });

    println!(
        "tradewind demo: simulator ws://{sim_addr}/trades/ALL at {} trades/s -> Kafka {brokers} -> engine -> {}",
        args.rate, args.mysql_url
    );
    println!("metrics: http://{metrics_addr}/metrics   (Ctrl-C stops)");
    if let Some(d) = args.duration {
        let tx = stop_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(d).await;
            let _ = tx.send(true);
        });
    }

    live_view(&sink, &registry, args.print_every, stop.clone()).await;

    let summary = engine.await.context("engine task")??;
    let ingested = ingest.await.context("ingest task")??;
    sim.await.context("simulator task")??;
    println!(
        "stopped: ingested {} trades ({} rejected); engine windowed {} trades, wrote {} window rows in {} commits",
        ingested.produced,
        ingested.rejected_total(),
        summary.trades,
        summary.rows_written,
        summary.commits
    );
    sink.disconnect().await.ok();
    Ok(())
}

fn forward(mut signal: watch::Receiver<bool>, tx: watch::Sender<bool>) {
    tokio::spawn(async move {
        while !*signal.borrow() {
            if signal.changed().await.is_err() {
                return;
            }
        }
        let _ = tx.send(true);
    });
}

/// Prints one block every `every`: the last closed minute (trades, notional, top movers), the
/// forming minute, and the engine's throughput, lag and watermark.
async fn live_view(
    sink: &tradewind_sink::MySqlSink,
    registry: &prometheus::Registry,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut last_in = 0.0;
    let mut last_at = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        let now_in =
            tradewind_telemetry::metric_value(registry, "tradewind_engine_records_in_total");
        let rate = (now_in - last_in) / last_at.elapsed().as_secs_f64();
        last_in = now_in;
        last_at = Instant::now();
        let lag =
            tradewind_telemetry::metric_value(registry, "tradewind_engine_consumer_lag").max(0.0);
        let wm = tradewind_telemetry::metric_value(registry, "tradewind_engine_watermark_seconds");
        let behind =
            tradewind_telemetry::metric_value(registry, "tradewind_engine_event_time_lag_seconds");
        let rejected =
            tradewind_telemetry::metric_value(registry, "tradewind_engine_records_rejected_total");
        let late =
            tradewind_telemetry::metric_value(registry, "tradewind_engine_late_records_total");
        match minute_lines(sink).await {
            Ok(lines) => {
                for l in lines {
                    println!("{l}");
                }
            }
            Err(e) => println!("  (MySQL query failed: {e})"),
        }
        println!(
            "  engine {rate:>8.0} trades/s | lag {lag:.0} | watermark {} ({behind:.1}s behind) | rejected {rejected:.0} | late {late:.0}",
            hhmmss(wm)
        );
    }
}

async fn minute_lines(sink: &tradewind_sink::MySqlSink) -> anyhow::Result<Vec<String>> {
    let mut conn = sink.pool().get_conn().await?;
    let mut out = Vec::new();
    for (label, final_flag) in [("closed ", 1), ("forming", 0)] {
        let row: Option<(String, u64, f64)> = conn
            .exec_first(
                "SELECT DATE_FORMAT(window_start, '%H:%i'), SUM(trades), SUM(notional_usd) \
                 FROM asset_1m WHERE is_final = ? GROUP BY window_start \
                 ORDER BY window_start DESC LIMIT 1",
                (final_flag,),
            )
            .await?;
        let Some((minute, trades, notional)) = row else {
            continue;
        };
        let movers: Vec<(String, f64)> = conn
            .exec(
                "SELECT base, price_change_pct FROM asset_1m \
                 WHERE is_final = ? AND DATE_FORMAT(window_start, '%H:%i') = ? AND trades >= 5 \
                 ORDER BY ABS(price_change_pct) DESC LIMIT 3",
                (final_flag, &minute),
            )
            .await?;
        let movers: Vec<String> = movers
            .iter()
            .map(|(b, p)| format!("{b} {p:+.3}%"))
            .collect();
        out.push(format!(
            "{minute} UTC {label} | {trades:>7} trades | ${notional:>15.0} notional | top movers: {}",
            movers.join(", ")
        ));
    }
    Ok(out)
}

fn hhmmss(epoch_s: f64) -> String {
    if epoch_s <= 0.0 {
        return "-".into();
    }
    let s = epoch_s as i64 % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}
