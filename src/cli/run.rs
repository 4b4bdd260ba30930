//! `tradewind run` flags, mapped onto [`tradewind_engine::EngineConfig`].

use std::net::SocketAddr;
use std::time::Duration;

use tradewind_engine::retention::RetentionRule;
use tradewind_engine::EngineConfig;

use super::parse_duration;

/// Flags of `tradewind run`: the engine (each also read from its `TRADEWIND_*` environment variable).
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
    /// SQL pipeline file: `CREATE MATERIALIZED VIEW` statements whose tumbling-window views are
    /// maintained beside the built-in tables, with the same guarantees (see docs/sql.md). Apply their
    /// tables with `migrate --pipeline` (or `--migrate`, the default).
    #[arg(long, env = "TRADEWIND_PIPELINE")]
    pub pipeline: Option<std::path::PathBuf>,
    /// Out-of-orderness bound: each partition's watermark trails the largest event time seen on that
    /// partition by this much.
    #[arg(long, env = "TRADEWIND_OUT_OF_ORDERNESS", default_value = "5s", value_parser = parse_duration)]
    pub out_of_orderness: Duration,
    /// Allowed lateness: a trade this late after its window closed (by its partition's watermark)
    /// still corrects the row (`revision` + 1); later ones go to the late-trades topic.
    #[arg(long, env = "TRADEWIND_ALLOWED_LATENESS", default_value = "10m", value_parser = parse_duration)]
    pub allowed_lateness: Duration,
    /// No effect, accepted so existing commands keep working: every commit already
    /// writes the open windows as provisional rows (is_final = 0).
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
    /// Largest micro-batch, in records; a batch is also cut once its payloads reach 256 bytes per
    /// record of this limit (5.1 MB at the default), so large messages cannot make it unbounded.
    #[arg(long, env = "TRADEWIND_MAX_BATCH_ROWS", default_value_t = tradewind_engine::DEFAULT_MAX_BATCH_ROWS)]
    pub max_batch_rows: usize,
    /// Longest time to gather one micro-batch (e.g. 100ms).
    #[arg(long, env = "TRADEWIND_MAX_BATCH_WAIT", default_value = "100ms", value_parser = parse_duration)]
    pub max_batch_wait: Duration,
    /// Longest time micro-batches are folded in memory before one MySQL transaction commits them
    /// (each window row merged once) while a backlog is read; with nothing more waiting the engine
    /// commits at once. 0 commits every micro-batch on its own.
    #[arg(long, env = "TRADEWIND_COMMIT_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub commit_interval: Duration,
    /// Most window rows (across views) folded in memory before they are committed, whatever the
    /// commit interval: bounds the engine's memory when keys are many (a producer emitting unique
    /// ids), at the cost of more commits.
    #[arg(long, env = "TRADEWIND_COMMIT_MAX_ROWS", default_value_t = tradewind_engine::DEFAULT_COMMIT_MAX_ROWS)]
    pub commit_max_rows: usize,
    /// Address of the /metrics, /healthz and /readyz endpoint.
    #[arg(long, env = "TRADEWIND_METRICS_ADDR", default_value = "127.0.0.1:9102")]
    pub metrics_addr: SocketAddr,
    /// Consume until every partition is caught up, mark them drained (when every partition of the
    /// topic is drained, every row is final), exit 0. Assigns every partition of the topic directly
    /// (no consumer-group join); concurrent drain replicas are kept apart by MySQL's offset fence.
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
    /// Retention, `<window size>=<max age>` (repeatable; env: comma-separated), e.g. `1m=30d,1h=400d`:
    /// every window table with that window size deletes its final rows whose window started more than
    /// the age ago, in batches of 5,000, at start-up and every 5 minutes. Provisional rows are never
    /// deleted. Without it rows are kept forever.
    #[arg(long, env = "TRADEWIND_RETENTION", value_delimiter = ',')]
    pub retention: Vec<RetentionRule>,
    /// Testing only: abort the process right after the N-th MySQL commit, before the Kafka offset
    /// commit (proves a crash between the two loses and duplicates nothing).
    #[arg(long, env = "TRADEWIND_FAULT_ABORT_AFTER_COMMITS")]
    pub fault_abort_after_commits: Option<u64>,
    /// Testing only: the engine loop stops moving after the N-th commit (proves /healthz fails).
    #[arg(long, env = "TRADEWIND_FAULT_STALL_AFTER_COMMITS")]
    pub fault_stall_after_commits: Option<u64>,
    /// Testing only: gather each micro-batch in two halves with this pause between them, so that
    /// seeks land inside batches being gathered (proves no record is skipped then).
    #[arg(long, env = "TRADEWIND_FAULT_GATHER_PAUSE", value_parser = parse_duration)]
    pub fault_gather_pause: Option<Duration>,
}

impl RunArgs {
    /// The engine settings these flags describe.
    pub fn config(self) -> EngineConfig {
        EngineConfig {
            brokers: self.brokers,
            topic: self.topic,
            group: self.group,
            mysql_url: self.mysql_url,
            pipeline: self.pipeline,
            out_of_orderness: self.out_of_orderness,
            allowed_lateness: self.allowed_lateness,
            idle_timeout: self.idle_timeout,
            future_tolerance: self.future_tolerance,
            dlq_topic: self.dlq_topic,
            late_topic: self.late_topic,
            max_batch_rows: self.max_batch_rows,
            max_batch_wait: self.max_batch_wait,
            commit_interval: self.commit_interval,
            commit_max_rows: self.commit_max_rows,
            metrics_addr: self.metrics_addr,
            drain: self.drain,
            migrate: self.migrate,
            kafka_options: self.kafka_options,
            create_topics: self.create_topics,
            flush_timeout: self.flush_timeout,
            liveness_timeout: self.liveness_timeout,
            retention: self.retention,
            fault_abort_after_commits: self.fault_abort_after_commits,
            fault_stall_after_commits: self.fault_stall_after_commits,
            fault_gather_pause: self.fault_gather_pause,
        }
    }
}
