//! The tradewind engine: consumes the trades topic in micro-batches, decodes each batch into an Arrow
//! `RecordBatch`, aggregates it into the event-time tumbling windows of the SQL pipeline's views
//! (DataFusion, `tradewind_pipeline`), and merges each window's contribution into MySQL in the
//! transaction that advances the offsets (exactly once, whatever the partitioning).
//!
//! Modules, in data-path order: [`consumer`] (poll thread, bounded batches) → [`raw`] (the polled
//! bytes) → [`partition`] (which records are new, seeks) → [`decode`] (the model's validator into
//! Arrow builders) → [`views`] (per-partition, per-view lateness, then each view's aggregation:
//! contribution batches for the sink; [`window`] holds the ordering key and partition clocks) →
//! [`pending`] (micro-batches folded until the next commit) → [`audit`] (every committed offset accounted for) → [`runner`] (the loop: commit, fencing, data-error isolation, retry, liveness, drain). [`metrics`]
//! holds the Prometheus metrics, and [`retention`] deletes old final rows in a task of its own
//! (`--retention`).

#![warn(missing_docs)]

pub mod audit;
pub mod consumer;
pub mod decode;
pub mod metrics;
pub mod partition;
pub mod pending;
pub mod raw;
pub mod retention;
pub mod runner;
pub mod views;
pub mod window;

/// The default largest micro-batch, in records. 20,000 rather than 50,000: about 30 MiB less peak RSS
/// on the 2 M-trade drain, because up to four raw batches are alive at once; the same CPU on the
/// mock broker, about 5% more on tansu, where the engine finds no batch waiting more often and
/// commits more often (benches/RESULTS.md). Below about 12,500 the per-batch work shows.
pub const DEFAULT_MAX_BATCH_ROWS: usize = 20_000;

/// Default for [`EngineConfig::commit_max_rows`]: a fold of high-cardinality keys (every trade
/// its own row in every view) commits every few micro-batches instead of growing for a second.
pub const DEFAULT_COMMIT_MAX_ROWS: usize = 50_000;

use std::net::SocketAddr;
use std::time::Duration;

pub use runner::{run_engine, EngineSummary};

/// The engine's settings (`tradewind run` maps its flags onto them; tests and `demo` build them with
/// [`EngineConfig::new`]).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Kafka bootstrap servers (comma-separated host:port).
    pub brokers: String,
    /// Topic of CoinCap trades, keyed by base asset.
    pub topic: String,
    /// Consumer group; replicas in one group split the partitions between them.
    pub group: String,
    /// MySQL URL of the database holding the window tables (created if missing).
    pub mysql_url: String,
    /// A pipeline file of `CREATE MATERIALIZED VIEW` statements whose views are maintained beside the
    /// built-in tables (see `tradewind_pipeline`).
    pub pipeline: Option<std::path::PathBuf>,
    /// Out-of-orderness bound: each partition's watermark trails the largest event time seen on that
    /// partition by this much.
    pub out_of_orderness: Duration,
    /// Allowed lateness: a trade this late after its window closed (by its partition's watermark)
    /// still corrects the row (`revision` + 1); later ones go to the late-trades topic.
    pub allowed_lateness: Duration,
    /// A partition caught up with its end and quiet for this long no longer holds the topic's low
    /// watermark (which makes rows final) back; a lagging partition always does.
    pub idle_timeout: Duration,
    /// Trades dated further than this ahead of processing time are invalid (dead-letter topic).
    pub future_tolerance: Duration,
    /// Dead-letter topic for undecodable or invalid records.
    pub dlq_topic: String,
    /// Topic for trades later than the allowed lateness.
    pub late_topic: String,
    /// Largest micro-batch, in records.
    pub max_batch_rows: usize,
    /// Longest time to gather one micro-batch (e.g. 100ms).
    pub max_batch_wait: Duration,
    /// Longest time micro-batches are folded in memory before one MySQL transaction commits them
    /// (each window row merged once) while a backlog is read; an engine with nothing more waiting
    /// commits at once. Zero commits every micro-batch on its own.
    pub commit_interval: Duration,
    /// Most window rows (across views) folded before they are committed, whatever the interval:
    /// the fold's memory is bounded by size, not only by time.
    pub commit_max_rows: usize,
    /// Address of the /metrics, /healthz and /readyz endpoint.
    pub metrics_addr: SocketAddr,
    /// Consume until every partition is caught up, mark them drained (when every partition of the
    /// topic is drained, every row is final), exit 0. Assigns every partition of the topic directly
    /// (no consumer-group join); concurrent drain replicas are kept apart by MySQL's offset fence.
    pub drain: bool,
    /// Apply the MySQL schema before starting.
    pub migrate: bool,
    /// Extra librdkafka consumer setting `key=value` (repeatable; env: comma-separated), e.g.
    /// `session.timeout.ms=10000` or security settings.
    pub kafka_options: Vec<String>,
    /// Create the dead-letter and late topics if missing (off where a platform, e.g. Strimzi's
    /// topic operator, owns them).
    pub create_topics: bool,
    /// How long to wait at shutdown for dead-letter and late records to be delivered.
    pub flush_timeout: Duration,
    /// /healthz fails when the engine loop has not moved for this long (a stuck process).
    pub liveness_timeout: Duration,
    /// Retention rules (`1m=30d`): the final rows of every window table with that window size are
    /// deleted once their window starts more than the age ago. Empty: rows are kept forever.
    pub retention: Vec<retention::RetentionRule>,
    /// Testing only: abort the process right after the N-th MySQL commit, before the Kafka offset
    /// commit (proves a crash between the two loses and duplicates nothing).
    pub fault_abort_after_commits: Option<u64>,
    /// Testing only: the engine loop stops moving after the N-th commit (proves /healthz fails).
    pub fault_stall_after_commits: Option<u64>,
    /// Testing only: the poll thread gathers each micro-batch in two halves with this pause between
    /// them, so that seeks land inside batches being gathered (the straddle of issue 31).
    pub fault_gather_pause: Option<Duration>,
}

impl EngineConfig {
    /// The defaults, pointed at `brokers` and `mysql_url` (for in-process use and tests).
    pub fn new(brokers: &str, mysql_url: &str) -> Self {
        EngineConfig {
            brokers: brokers.to_string(),
            topic: "trades".into(),
            group: "tradewind".into(),
            mysql_url: mysql_url.to_string(),
            pipeline: None,
            out_of_orderness: Duration::from_secs(5),
            allowed_lateness: Duration::from_secs(600),
            idle_timeout: Duration::from_secs(10),
            future_tolerance: Duration::from_secs(60),
            dlq_topic: "trades.dlq".into(),
            late_topic: "trades.late".into(),
            max_batch_rows: DEFAULT_MAX_BATCH_ROWS,
            max_batch_wait: Duration::from_millis(100),
            commit_interval: Duration::from_secs(1),
            commit_max_rows: DEFAULT_COMMIT_MAX_ROWS,
            metrics_addr: ([127, 0, 0, 1], 0).into(),
            drain: false,
            migrate: true,
            kafka_options: Vec::new(),
            create_topics: true,
            flush_timeout: Duration::from_secs(30),
            liveness_timeout: Duration::from_secs(120),
            retention: Vec::new(),
            fault_abort_after_commits: None,
            fault_stall_after_commits: None,
            fault_gather_pause: None,
        }
    }
}

/// `tradewind run`: serves /metrics and runs the engine until SIGTERM (or, with `--drain`, until caught up).
pub async fn run(
    args: EngineConfig,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let registry = tradewind_telemetry::new_registry();
    let health = tradewind_telemetry::Health::new();
    tradewind_telemetry::serve_http(args.metrics_addr, registry.clone(), health.clone()).await?;
    let summary = run_engine(args, &registry, health, shutdown).await?;
    tracing::info!(?summary, "engine stopped");
    Ok(())
}
