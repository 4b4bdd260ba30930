//! The tradewind engine: consumes the trades topic in micro-batches, decodes each batch into an Arrow
//! `RecordBatch`, folds it into event-time tumbling windows, and commits window rows, offsets and
//! window state to MySQL in one transaction (exactly once).
//!
//! Modules, in data-path order: [`consumer`] (poll thread, bounded batches) → [`raw`] (the polled
//! bytes) → [`decode`] (arrow-json + vectorized validation) → [`window`] (the windowing kernel,
//! emission and eviction rules) → [`rows`] (Arrow batches for the sink) → [`runner`] (the loop:
//! watermark, lateness, commit, retry, drain). [`metrics`] holds the Prometheus metrics.

pub mod consumer;
pub mod decode;
pub mod metrics;
pub mod partition;
pub mod raw;
pub mod rows;
pub mod runner;
pub mod window;

use std::net::SocketAddr;
use std::time::Duration;

pub use runner::{run_engine, EngineSummary};

pub use tradewind_telemetry::parse_duration;

/// `tradewind run`: the engine's flags (each also read from its `TRADEWIND_*` environment variable).
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Kafka bootstrap servers (comma-separated host:port).
    #[arg(long, env = "TRADEWIND_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Topic of CoinCap trades, keyed by base asset.
    #[arg(long, env = "TRADEWIND_TOPIC", default_value = "trades")]
    pub topic: String,
    /// Consumer group; replicas in one group split the partitions between them.
    #[arg(long, env = "TRADEWIND_GROUP", default_value = "tradewind")]
    pub group: String,
    /// MySQL URL of the database holding the window tables (created if missing).
    #[arg(
        long,
        env = "TRADEWIND_MYSQL_URL",
        default_value = "mysql://root@127.0.0.1:3306/tradewind"
    )]
    pub mysql_url: String,
    /// Tumbling window size (e.g. 1m).
    #[arg(long, env = "TRADEWIND_WINDOW", default_value = "1m", value_parser = parse_duration)]
    pub window: Duration,
    /// Out-of-orderness bound: each partition's watermark trails the largest event time seen on that
    /// partition by this much.
    #[arg(long, env = "TRADEWIND_OUT_OF_ORDERNESS", default_value = "5s", value_parser = parse_duration)]
    pub out_of_orderness: Duration,
    /// Allowed lateness: a trade this late after its window closed (by its partition's watermark)
    /// still corrects the row (`revision` + 1); later ones go to the late-trades topic.
    #[arg(long, env = "TRADEWIND_ALLOWED_LATENESS", default_value = "10m", value_parser = parse_duration)]
    pub allowed_lateness: Duration,
    /// Kept for compatibility: every commit (one per micro-batch) writes the open windows as
    /// provisional rows (is_final = 0), merged into as trades arrive.
    #[arg(long, env = "TRADEWIND_LIVE_INTERVAL", value_parser = parse_duration)]
    pub live_interval: Option<Duration>,
    /// A partition caught up with its end and quiet for this long no longer holds the topic's low
    /// watermark (which makes rows final) back; a lagging partition always does.
    #[arg(long, env = "TRADEWIND_WATERMARK_IDLE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Trades dated further than this ahead of processing time are invalid (dead-letter topic).
    #[arg(long, env = "TRADEWIND_FUTURE_TOLERANCE", default_value = "60s", value_parser = parse_duration)]
    pub future_tolerance: Duration,
    /// Dead-letter topic for undecodable or invalid records.
    #[arg(long, env = "TRADEWIND_DLQ_TOPIC", default_value = "trades.dlq")]
    pub dlq_topic: String,
    /// Topic for trades later than the allowed lateness.
    #[arg(long, env = "TRADEWIND_LATE_TOPIC", default_value = "trades.late")]
    pub late_topic: String,
    /// Largest micro-batch, in records.
    #[arg(long, env = "TRADEWIND_MAX_BATCH_ROWS", default_value_t = 50_000)]
    pub max_batch_rows: usize,
    /// Longest time to gather one micro-batch (e.g. 100ms).
    #[arg(long, env = "TRADEWIND_MAX_BATCH_WAIT", default_value = "100ms", value_parser = parse_duration)]
    pub max_batch_wait: Duration,
    /// Address of the /metrics, /healthz and /readyz endpoint.
    #[arg(long, env = "TRADEWIND_METRICS_ADDR", default_value = "127.0.0.1:9102")]
    pub metrics_addr: SocketAddr,
    /// Consume until every assigned partition is caught up, mark them drained (when every partition
    /// of the topic is drained, every row is final), exit 0.
    #[arg(long, env = "TRADEWIND_DRAIN")]
    pub drain: bool,
    /// Apply the MySQL schema before starting.
    #[arg(long, env = "TRADEWIND_MIGRATE")]
    pub migrate: bool,
    /// Extra librdkafka consumer setting `key=value` (repeatable; env: comma-separated), e.g.
    /// `session.timeout.ms=10000` or security settings.
    #[arg(
        long = "kafka-option",
        env = "TRADEWIND_KAFKA_OPTIONS",
        value_delimiter = ','
    )]
    pub kafka_options: Vec<String>,
    /// Create the dead-letter and late topics if missing (off where a platform, e.g. Strimzi's
    /// topic operator, owns them).
    #[arg(long, env = "TRADEWIND_CREATE_TOPICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub create_topics: bool,
    /// How long to wait at shutdown for dead-letter and late records to be delivered.
    #[arg(long, env = "TRADEWIND_FLUSH_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub flush_timeout: Duration,
    /// /healthz fails when the engine loop has not moved for this long (a stuck process).
    #[arg(long, env = "TRADEWIND_LIVENESS_TIMEOUT", default_value = "2m", value_parser = parse_duration)]
    pub liveness_timeout: Duration,
    /// Testing only: abort the process right after the N-th MySQL commit, before the Kafka offset
    /// commit (proves a crash between the two loses and duplicates nothing).
    #[arg(long, env = "TRADEWIND_FAULT_ABORT_AFTER_COMMITS")]
    pub fault_abort_after_commits: Option<u64>,
    /// Testing only: the engine loop stops moving after the N-th commit (proves /healthz fails).
    #[arg(long, env = "TRADEWIND_FAULT_STALL_AFTER_COMMITS")]
    pub fault_stall_after_commits: Option<u64>,
}

impl RunArgs {
    /// The defaults, pointed at `brokers` and `mysql_url` (for in-process use and tests).
    pub fn new(brokers: &str, mysql_url: &str) -> Self {
        RunArgs {
            brokers: brokers.to_string(),
            topic: "trades".into(),
            group: "tradewind".into(),
            mysql_url: mysql_url.to_string(),
            window: Duration::from_secs(60),
            out_of_orderness: Duration::from_secs(5),
            allowed_lateness: Duration::from_secs(600),
            live_interval: None,
            idle_timeout: Duration::from_secs(10),
            future_tolerance: Duration::from_secs(60),
            dlq_topic: "trades.dlq".into(),
            late_topic: "trades.late".into(),
            max_batch_rows: 50_000,
            max_batch_wait: Duration::from_millis(100),
            metrics_addr: ([127, 0, 0, 1], 0).into(),
            drain: false,
            migrate: true,
            kafka_options: Vec::new(),
            create_topics: true,
            flush_timeout: Duration::from_secs(30),
            liveness_timeout: Duration::from_secs(120),
            fault_abort_after_commits: None,
            fault_stall_after_commits: None,
        }
    }
}

/// `tradewind run`: serves /metrics and runs the engine until SIGTERM (or, with `--drain`, until caught up).
pub async fn run(
    args: RunArgs,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let registry = tradewind_telemetry::new_registry();
    let health = tradewind_telemetry::Health::new();
    tradewind_telemetry::serve_http(args.metrics_addr, registry.clone(), health.clone()).await?;
    let summary = run_engine(args, &registry, health, shutdown).await?;
    tracing::info!(?summary, "engine stopped");
    Ok(())
}
