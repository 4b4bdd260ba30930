//! tradewind-ingest: websocket trade feeds into Kafka, and file backfill (`tradewind produce`).
//!
//! Every frame is validated against the shared trade model ([`tradewind_model::validate`]). Good frames
//! are produced **unchanged** (bytes as received) keyed by `base`, so one asset stays in one partition
//! and in order; bad frames go to the dead-letter topic with the reason in the `tw-reason` header,
//! are counted, and never stop ingestion. A frame over 16 KiB ([`IngestConfig::max_frame_bytes`]) is
//! not a trade: it is dead-lettered as `too_large` before any parse. A dead letter over 64 KiB keeps
//! its first 64 KiB, with the whole frame's length and SHA-256 in headers
//! ([`tradewind_kafka::BoundedPayload`]), so every rejected frame leaves a record, whatever its size. The producer is idempotent and lz4-compressed; a bounded
//! in-flight window (`--max-inflight`) backpressures the socket read loop instead of growing memory;
//! shutdown stops reading and flushes, so nothing already received is lost.
//!
//! Sources ([`source`]): the CoinCap v2 trades socket (default: the local simulator), CoinCap v3
//! prices (quote USD rates), Binance spot `@trade` and Coinbase `matches` normalised into the CoinCap
//! shape ([`normalize`]). `wss://` needs the `tls` cargo feature (off by default).

#![warn(missing_docs)]

pub mod metrics;
pub mod normalize;
pub mod pipeline;
pub mod produce;
pub mod source;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

pub use metrics::IngestMetrics;
pub use produce::{backfill, produce, BackfillConfig, BackfillStats};
/// Re-exported so callers (the binary, benches) can build a registry without their own dependency.
pub use prometheus;

use pipeline::{Pipeline, PipelineConfig};
use source::{SourceOptions, SourceSpec};

/// Resolves when `shutdown` is (or becomes) true; never if the sender is gone without flipping it.
pub(crate) async fn shutdown_requested(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|v| *v).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Settings of an ingest run: the `tradewind ingest` flags (mapped in the binary's `src/cli`) and
/// what in-process callers (`demo`, tests, benches) set.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Source specs (see [`SourceSpec::parse`]).
    pub sources: Vec<String>,
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// Trade topic.
    pub topic: String,
    /// Dead-letter topic.
    pub dlq_topic: String,
    /// Idle timeout per source connection.
    pub idle_timeout: Duration,
    /// In-flight window size.
    pub max_inflight: usize,
    /// Future timestamp tolerance.
    pub future_tolerance: Duration,
    /// CoinCap API key for prices sources.
    pub api_key: Option<String>,
    /// Create missing topics with this many partitions (`None`: leave topics alone).
    pub partitions: Option<i32>,
    /// Shutdown flush bound.
    pub flush_timeout: Duration,
    /// First reconnect delay (doubles up to `backoff_max`).
    pub backoff_initial: Duration,
    /// Reconnect delay cap.
    pub backoff_max: Duration,
    /// Readiness reporting (ready once the producer exists and the sources start).
    pub health: Option<Arc<tradewind_telemetry::Health>>,
    /// Trade frames longer than this many bytes are dead-lettered as `too_large`, unparsed
    /// ([`pipeline::DEFAULT_MAX_FRAME_BYTES`]).
    pub max_frame_bytes: usize,
    /// Largest websocket message read; a longer one drops the connection and is counted in
    /// `tradewind_ingest_frames_too_large_total` ([`source::DEFAULT_WS_MAX_MESSAGE_BYTES`]).
    pub ws_max_message_bytes: usize,
}

impl IngestConfig {
    /// Defaults for everything but the sources and brokers.
    pub fn new(sources: Vec<String>, brokers: impl Into<String>) -> Self {
        IngestConfig {
            sources,
            brokers: brokers.into(),
            topic: "trades".into(),
            dlq_topic: "trades.dlq".into(),
            idle_timeout: Duration::from_secs(30),
            max_inflight: 100_000,
            future_tolerance: Duration::from_secs(60),
            api_key: None,
            partitions: None,
            flush_timeout: Duration::from_secs(30),
            backoff_initial: Duration::from_millis(125),
            backoff_max: Duration::from_secs(60),
            health: None,
            max_frame_bytes: pipeline::DEFAULT_MAX_FRAME_BYTES,
            ws_max_message_bytes: source::DEFAULT_WS_MAX_MESSAGE_BYTES,
        }
    }
}

/// What an ingest run did (counter values at the end of the run).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestStats {
    /// Frames that entered validation.
    pub frames: u64,
    /// Trades acknowledged by Kafka.
    pub produced: u64,
    /// Dead-lettered frames by reason label.
    pub rejected: BTreeMap<&'static str, u64>,
    /// Source reconnects.
    pub reconnects: u64,
    /// Websocket messages over the websocket size limit (not read; each cost a reconnect).
    pub frames_too_large: u64,
    /// Failed deliveries.
    pub delivery_errors: u64,
    /// CoinCap prices received.
    pub price_updates: u64,
    /// True when the final flush settled every record.
    pub flushed: bool,
}

impl IngestStats {
    /// The counters of `metrics` now; `flushed` is the final flush's outcome.
    fn of(metrics: &IngestMetrics, flushed: bool) -> Self {
        IngestStats {
            frames: metrics.frames.get(),
            produced: metrics.produced.get(),
            rejected: metrics.rejected_by_reason(),
            reconnects: metrics.reconnects.get(),
            frames_too_large: metrics.frames_too_large.get(),
            delivery_errors: metrics.delivery_errors.get(),
            price_updates: metrics.price_updates.get(),
            flushed,
        }
    }

    /// Total dead-lettered frames.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }
}

/// Runs ingestion in-process until `shutdown` flips, then stops reading, flushes and returns the
/// counts. Metrics are registered on `registry` (once per registry).
pub async fn ingest(
    cfg: IngestConfig,
    registry: &prometheus::Registry,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<IngestStats> {
    let specs = cfg
        .sources
        .iter()
        .map(|s| SourceSpec::parse(s, cfg.api_key.as_deref()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    anyhow::ensure!(!specs.is_empty(), "no source given");
    if let Some(p) = cfg.partitions {
        tradewind_kafka::ensure_topics(
            &cfg.brokers,
            &[(cfg.topic.as_str(), p), (cfg.dlq_topic.as_str(), p)],
        )
        .await?;
    }
    let metrics = IngestMetrics::register(registry)?;
    let pipeline = Arc::new(Pipeline::new(&pipeline_config(&cfg), metrics.clone())?);
    let started = Instant::now();
    run_sources(&cfg, specs, &pipeline, shutdown).await;
    if let Some(h) = &cfg.health {
        h.set_ready(false, "shutting down: flushing");
    }
    tracing::info!(
        inflight = metrics.inflight.get(),
        "sources stopped; flushing producer"
    );
    let stats = IngestStats::of(&metrics, pipeline.flush().await);
    tracing::info!(
        frames = stats.frames,
        produced = stats.produced,
        rejected = stats.rejected_total(),
        reconnects = stats.reconnects,
        frames_too_large = stats.frames_too_large,
        delivery_errors = stats.delivery_errors,
        flushed = stats.flushed,
        secs = started.elapsed().as_secs_f64(),
        "ingest stopped"
    );
    Ok(stats)
}

/// The producer-side part of `cfg`.
fn pipeline_config(cfg: &IngestConfig) -> PipelineConfig {
    PipelineConfig {
        brokers: cfg.brokers.clone(),
        topic: cfg.topic.clone(),
        dlq_topic: cfg.dlq_topic.clone(),
        max_inflight: cfg.max_inflight,
        future_tolerance: cfg.future_tolerance,
        flush_timeout: cfg.flush_timeout,
        max_frame_bytes: cfg.max_frame_bytes,
    }
}

/// Runs one task per source (sharing the pipeline and the quote-USD rates) until all have stopped
/// on `shutdown`; ready meanwhile.
async fn run_sources(
    cfg: &IngestConfig,
    specs: Vec<SourceSpec>,
    pipeline: &Arc<Pipeline>,
    shutdown: watch::Receiver<bool>,
) {
    let rates = Arc::new(normalize::RateTable::new());
    let opts = SourceOptions {
        idle_timeout: cfg.idle_timeout,
        backoff_initial: cfg.backoff_initial,
        backoff_max: cfg.backoff_max,
        ws_max_message_bytes: cfg.ws_max_message_bytes,
        ..SourceOptions::default()
    };
    let mut tasks = tokio::task::JoinSet::new();
    for spec in specs {
        tracing::info!(source = %spec.label, kind = ?spec.kind, topic = %cfg.topic, "starting source");
        tasks.spawn(source::run_source(
            spec,
            opts.clone(),
            Arc::clone(pipeline),
            Arc::clone(&rates),
            shutdown.clone(),
        ));
    }
    if let Some(h) = &cfg.health {
        h.set_ready(true, "ingesting");
    }
    while let Some(r) = tasks.join_next().await {
        if let Err(e) = r {
            tracing::error!(error = %e, "source task failed");
        }
    }
}

/// `tradewind ingest` entry point: serves /metrics, /healthz, /readyz on `metrics_addr`, ingests
/// until `shutdown`, flushes, returns (an error if the flush left records unsettled).
pub async fn run(
    mut cfg: IngestConfig,
    metrics_addr: SocketAddr,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let registry = tradewind_telemetry::new_registry();
    let health = tradewind_telemetry::Health::new();
    let addr = tradewind_telemetry::serve_http(metrics_addr, registry.clone(), Arc::clone(&health))
        .await?;
    tracing::info!(%addr, "metrics endpoint listening");
    cfg.health = Some(health);
    let stats = ingest(cfg, &registry, shutdown).await?;
    anyhow::ensure!(
        stats.flushed,
        "shutdown flush did not settle every record (see logs)"
    );
    Ok(())
}
