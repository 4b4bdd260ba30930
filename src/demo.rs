//! `tradewind demo`: the whole pipeline in one process — embedded Kafka (unless `--brokers`), the
//! CoinCap-compatible simulator, the ingestor, the engine and the MySQL sink — with a live view of
//! the forming and last closed minute, throughput, lag and watermark ([`crate::live_view`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tradewind_engine::EngineConfig;
use tradewind_telemetry::parse_duration;

use crate::live_view::{self, Banner, Sampler, ViewMode};

/// The demo's topics and their partition counts.
const TOPICS: &[(&str, i32)] = &[("trades", 6), ("trades.dlq", 1), ("trades.late", 1)];
/// How often the full-screen view redraws.
const LIVE_REFRESH: Duration = Duration::from_secs(1);

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
    /// How often the plain view prints (the full-screen view redraws every second).
    #[arg(long, env = "TRADEWIND_PRINT_EVERY", default_value = "5s", value_parser = parse_duration)]
    print_every: Duration,
    /// `auto`: a full-screen view that redraws in place when stdout is a terminal, plain lines
    /// otherwise; `live` or `plain` force one.
    #[arg(long, env = "TRADEWIND_DEMO_VIEW", value_enum, default_value_t = ViewMode::Auto)]
    view: ViewMode,
    /// Where logs go while the full-screen view is up (with plain lines they go to stderr).
    #[arg(long, env = "TRADEWIND_LOG_FILE", default_value_os_t = std::env::temp_dir().join("tradewind-demo.log"))]
    log_file: PathBuf,
}

impl DemoArgs {
    /// The file logs must go to: `Some` when the full-screen view will be drawn.
    pub fn live_log_file(&self) -> Option<&Path> {
        live_view::wanted(self.view).then_some(self.log_file.as_path())
    }
}

/// The components of a running demo.
struct Pipeline {
    sim_addr: SocketAddr,
    sim: JoinHandle<anyhow::Result<()>>,
    ingest: JoinHandle<anyhow::Result<tradewind_ingest::IngestStats>>,
    engine: JoinHandle<anyhow::Result<tradewind_engine::EngineSummary>>,
}

/// The Kafka the demo uses: a given cluster, or an embedded one that lives as long as this value.
struct Kafka {
    brokers: String,
    _embedded: Option<tradewind_kafka::EmbeddedCluster>,
}

/// Runs the demo until Ctrl-C/SIGTERM, `q` in the full-screen view, or `--duration`.
pub async fn run(args: DemoArgs, signal: watch::Receiver<bool>) -> anyhow::Result<()> {
    let sink = connect_mysql(&args.mysql_url).await?;
    let (stop_tx, stop) = watch::channel(false);
    forward(signal, stop_tx.clone());
    let kafka = start_kafka(args.brokers.as_deref()).await?;
    let registry = tradewind_telemetry::new_registry();
    let health = tradewind_telemetry::Health::new();
    let metrics_addr =
        tradewind_telemetry::serve_http(args.metrics_addr, registry.clone(), health.clone())
            .await?;
    let pipeline = start_pipeline(&args, &kafka.brokers, &registry, health, &stop).await?;
    let banner = banner(&args, &kafka, pipeline.sim_addr, metrics_addr);
    if let Some(d) = args.duration {
        let tx = stop_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(d).await;
            let _ = tx.send(true);
        });
    }
    let shown = match args.live_log_file() {
        Some(_) => {
            live_view::run_live(
                &sink,
                &registry,
                &banner,
                LIVE_REFRESH,
                stop_tx.clone(),
                stop,
            )
            .await
        }
        None => {
            println!("{}", banner.flow);
            println!("metrics: {}   (Ctrl-C stops)", banner.metrics);
            plain_view(&sink, &registry, args.print_every, stop).await;
            Ok(())
        }
    };
    // Whatever ended the view, stop the components and wait for them.
    let _ = stop_tx.send(true);
    let finished = finish(pipeline).await;
    sink.disconnect().await.ok();
    shown.context("the live view failed")?;
    finished
}

/// Connects to MySQL (creating the database) and applies the schema; says plainly when MySQL is
/// missing, the most likely problem on a new machine.
async fn connect_mysql(url: &str) -> anyhow::Result<tradewind_sink::MySqlSink> {
    let sink = tradewind_sink::MySqlSink::connect(url).await.map_err(|e| {
        anyhow::anyhow!(
            "MySQL is not reachable at {url}: {e}\n  Start MariaDB/MySQL (on this project's machines: \
             `bash scripts/stack.sh up`) or point --mysql-url / TRADEWIND_MYSQL_URL at a server."
        )
    })?;
    sink.migrate().await.context("applying the MySQL schema")?;
    Ok(sink)
}

/// Uses the given brokers (creating the demo's topics there first) or starts an embedded cluster.
async fn start_kafka(brokers: Option<&str>) -> anyhow::Result<Kafka> {
    match brokers {
        Some(b) => {
            // The demo owns its set-up: the topics exist before any component starts.
            tradewind_kafka::ensure_topics(b, TOPICS)
                .await
                .context("creating the demo's topics")?;
            Ok(Kafka {
                brokers: b.to_string(),
                _embedded: None,
            })
        }
        None => {
            let c = tradewind_kafka::EmbeddedCluster::start(1, TOPICS)?;
            Ok(Kafka {
                brokers: c.bootstrap_servers().to_string(),
                _embedded: Some(c),
            })
        }
    }
}

/// Starts the simulator, the ingestor and the engine as tasks.
async fn start_pipeline(
    args: &DemoArgs,
    brokers: &str,
    registry: &prometheus::Registry,
    health: Arc<tradewind_telemetry::Health>,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<Pipeline> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sim_addr = listener.local_addr()?;
    let mut sim_cfg = tradewind_sim::SimConfig {
        rate: args.rate,
        metrics: Some(tradewind_sim::SimMetrics::register(registry)?),
        ..Default::default()
    };
    sim_cfg.market.seed = args.seed;
    sim_cfg.market.markets = args.markets;
    let sim = tokio::spawn(tradewind_sim::serve(listener, sim_cfg, stop.clone()));

    let mut ingest_cfg = tradewind_ingest::IngestConfig::new(
        vec![format!("ws://{sim_addr}/trades/ALL")],
        brokers.to_string(),
    );
    ingest_cfg.partitions = Some(6);
    let (reg, st) = (registry.clone(), stop.clone());
    let ingest = tokio::spawn(async move { tradewind_ingest::ingest(ingest_cfg, &reg, st).await });

    // Live provisional rows every second, so the forming minute is visible.
    let mut engine_args = EngineConfig::new(brokers, &args.mysql_url);
    engine_args.out_of_orderness = Duration::from_secs(2);
    if args.brokers.is_none() {
        // The embedded cluster starts empty every time: offsets stored in MySQL by an earlier demo
        // belong to a log that no longer exists, so each run is its own consumer group.
        engine_args.group = format!("demo-{}", tradewind_model::now_ms());
        // One group owns a database's window tables; an earlier demo's group owned a log that is
        // gone, so it hands them over.
        release_earlier_demos(&args.mysql_url).await?;
    }
    let (reg, st) = (registry.clone(), stop.clone());
    let engine =
        tokio::spawn(
            async move { tradewind_engine::run_engine(engine_args, &reg, health, st).await },
        );
    Ok(Pipeline {
        sim_addr,
        sim,
        ingest,
        engine,
    })
}

/// What the views say about the run: the data flow, the metrics address and the log file.
fn banner(args: &DemoArgs, kafka: &Kafka, sim_addr: SocketAddr, metrics: SocketAddr) -> Banner {
    let kind = if kafka._embedded.is_some() {
        "embedded Kafka (librdkafka mock cluster)"
    } else {
        "Kafka"
    };
    Banner {
        flow: format!(
            "tradewind demo: simulator ws://{sim_addr}/trades/ALL at {} trades/s over {} markets -> {kind} {} -> engine -> {}",
            live_view::thousands(args.rate as f64),
            args.markets,
            kafka.brokers,
            args.mysql_url
        ),
        metrics: format!("http://{metrics}/metrics"),
        log_file: args.log_file.display().to_string(),
    }
}

/// Waits for the components to stop and prints what they did.
async fn finish(p: Pipeline) -> anyhow::Result<()> {
    let summary = p.engine.await.context("engine task")??;
    let ingested = p.ingest.await.context("ingest task")??;
    p.sim.await.context("simulator task")??;
    println!(
        "stopped: ingested {} trades ({} rejected); engine windowed {} trades, wrote {} window rows in {} commits",
        ingested.produced,
        ingested.rejected_total(),
        summary.trades,
        summary.rows_written,
        summary.commits
    );
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

/// Prints one block every `every` (when stdout is not a terminal): the last closed and the forming
/// minute (trades, notional, top movers), then the engine's throughput, lag, watermark and counts.
async fn plain_view(
    sink: &tradewind_sink::MySqlSink,
    registry: &prometheus::Registry,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut sampler = Sampler::new();
    // The first sample only sets the baseline of the rates.
    let _ = sampler.sample(sink, registry).await;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        let snap = sampler.sample(sink, registry).await;
        for line in live_view::plain_lines(&snap) {
            println!("{line}");
        }
    }
}

/// Applies the schema and releases the window tables from earlier demo runs' groups (their
/// embedded cluster, and so their offsets, are gone).
async fn release_earlier_demos(mysql_url: &str) -> anyhow::Result<()> {
    let sink = tradewind_sink::MySqlSink::connect(mysql_url)
        .await
        .context("connecting to MySQL")?;
    sink.migrate().await.context("applying the MySQL schema")?;
    sink.release_ephemeral_groups("demo-")
        .await
        .context("releasing earlier demo runs' tables")?;
    let _ = sink.disconnect().await;
    Ok(())
}
