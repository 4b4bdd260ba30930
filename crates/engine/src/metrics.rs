//! The engine's Prometheus metrics (names per the project's conventions: `tradewind_engine_` prefix,
//! base units, counters ending in `_total`, bounded label sets).

use prometheus::{
    Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};
use tradewind_model::RejectKind;

/// Every metric the engine exports.
#[derive(Clone)]
pub struct EngineMetrics {
    /// Records consumed (after de-duplication against committed offsets).
    pub records_in: IntCounter,
    /// Records decoded into valid trades.
    pub decoded: IntCounter,
    /// Records routed to the dead-letter topic, by reason.
    pub rejected: IntCounterVec,
    /// Late trades by outcome: `corrected` (within allowed lateness) or `routed` (to the late topic).
    pub late: IntCounterVec,
    /// Window rows emitted, by grain and kind.
    pub windows_emitted: IntCounterVec,
    /// Rows written to MySQL, by table.
    pub rows_written: IntCounterVec,
    /// Wall time to process one micro-batch (decode, window, commit).
    pub batch_duration: Histogram,
    /// Wall time of the sink transaction.
    pub sink_duration: Histogram,
    /// Consumer lag per partition, from librdkafka statistics.
    pub consumer_lag: IntGaugeVec,
    /// The engine watermark, epoch seconds.
    pub watermark: Gauge,
    /// Processing time minus watermark, seconds.
    pub event_time_lag: Gauge,
    /// Windows not yet final.
    pub open_windows: IntGauge,
    /// Time from a window becoming final (the batch that moved the watermark past its end was
    /// polled) to its row being committed in MySQL.
    pub final_to_commit: Histogram,
    /// Failed sink operations (each retried with backoff).
    pub sink_errors: IntCounter,
    /// 1 when the engine is consuming and committing, 0 otherwise.
    pub ready: IntGauge,
}

fn latency_buckets() -> Vec<f64> {
    vec![
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ]
}

impl EngineMetrics {
    /// Creates and registers the metrics on `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = EngineMetrics {
            records_in: IntCounter::new(
                "tradewind_engine_records_in_total",
                "Records consumed from Kafka.",
            )?,
            decoded: IntCounter::new(
                "tradewind_engine_records_decoded_total",
                "Records decoded into valid trades.",
            )?,
            rejected: IntCounterVec::new(
                Opts::new(
                    "tradewind_engine_records_rejected_total",
                    "Records routed to the dead-letter topic, by reason.",
                ),
                &["reason"],
            )?,
            late: IntCounterVec::new(
                Opts::new(
                    "tradewind_engine_late_records_total",
                    "Late trades: corrected (within allowed lateness) or routed (to the late topic).",
                ),
                &["outcome"],
            )?,
            windows_emitted: IntCounterVec::new(
                Opts::new(
                    "tradewind_engine_windows_emitted_total",
                    "Window rows emitted, by grain and kind.",
                ),
                &["grain", "kind"],
            )?,
            rows_written: IntCounterVec::new(
                Opts::new(
                    "tradewind_engine_rows_written_total",
                    "Rows written to MySQL, by table.",
                ),
                &["table"],
            )?,
            batch_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "tradewind_engine_batch_duration_seconds",
                    "Time to process one micro-batch.",
                )
                .buckets(latency_buckets()),
            )?,
            sink_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "tradewind_engine_sink_duration_seconds",
                    "Time of one sink transaction.",
                )
                .buckets(latency_buckets()),
            )?,
            consumer_lag: IntGaugeVec::new(
                Opts::new(
                    "tradewind_engine_consumer_lag",
                    "Consumer lag per partition (messages), from librdkafka statistics.",
                ),
                &["partition"],
            )?,
            watermark: Gauge::new(
                "tradewind_engine_watermark_seconds",
                "Engine watermark, Unix epoch seconds.",
            )?,
            event_time_lag: Gauge::new(
                "tradewind_engine_event_time_lag_seconds",
                "Processing time minus the watermark, seconds.",
            )?,
            open_windows: IntGauge::new(
                "tradewind_engine_open_windows",
                "Windows not yet final.",
            )?,
            final_to_commit: Histogram::with_opts(
                HistogramOpts::new(
                    "tradewind_engine_final_to_commit_seconds",
                    "Time from a window becoming final to its row committed in MySQL.",
                )
                .buckets(latency_buckets()),
            )?,
            sink_errors: IntCounter::new(
                "tradewind_engine_sink_errors_total",
                "Failed sink operations (retried with backoff).",
            )?,
            ready: IntGauge::new(
                "tradewind_engine_ready",
                "1 when the engine is consuming and committing.",
            )?,
        };
        registry.register(Box::new(m.records_in.clone()))?;
        registry.register(Box::new(m.decoded.clone()))?;
        registry.register(Box::new(m.rejected.clone()))?;
        registry.register(Box::new(m.late.clone()))?;
        registry.register(Box::new(m.windows_emitted.clone()))?;
        registry.register(Box::new(m.rows_written.clone()))?;
        registry.register(Box::new(m.batch_duration.clone()))?;
        registry.register(Box::new(m.sink_duration.clone()))?;
        registry.register(Box::new(m.consumer_lag.clone()))?;
        registry.register(Box::new(m.watermark.clone()))?;
        registry.register(Box::new(m.event_time_lag.clone()))?;
        registry.register(Box::new(m.open_windows.clone()))?;
        registry.register(Box::new(m.final_to_commit.clone()))?;
        registry.register(Box::new(m.sink_errors.clone()))?;
        registry.register(Box::new(m.ready.clone()))?;
        // Pre-create label values so dashboards see zeros, not gaps.
        for k in RejectKind::ALL {
            m.rejected.with_label_values(&[k.label()]);
        }
        for o in ["corrected", "routed"] {
            m.late.with_label_values(&[o]);
        }
        Ok(m)
    }
}
