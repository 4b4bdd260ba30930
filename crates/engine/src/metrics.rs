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
    /// Window rows emitted, by grain (view) and kind.
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
    /// Offsets the log did not deliver inside committed ranges (control records, compaction,
    /// retention), by partition.
    pub offset_gaps: IntCounterVec,
    /// Commits whose offsets and records disagreed (records may be missing from MySQL), by partition.
    pub audit_mismatches: IntCounterVec,
}

fn latency_buckets() -> Vec<f64> {
    vec![
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ]
}

impl EngineMetrics {
    /// Creates and registers the metrics on `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let r = Reg(registry);
        let m = EngineMetrics {
            records_in: r.counter("records_in_total", "Records consumed from Kafka.")?,
            decoded: r.counter(
                "records_decoded_total",
                "Records decoded into valid trades.",
            )?,
            rejected: r.counters(
                "records_rejected_total",
                "Records routed to the dead-letter topic, by reason (storage: refused by MySQL).",
                &["reason"],
            )?,
            late: r.counters(
                "late_records_total",
                "Late trades, by their partition's watermark: corrected (within allowed lateness) \
                 or routed (to the late topic).",
                &["outcome"],
            )?,
            windows_emitted: r.counters(
                "windows_emitted_total",
                "Window rows written, by grain (the view's table) and kind: provisional and \
                 correction merges, and rows made final (grain any).",
                &["grain", "kind"],
            )?,
            rows_written: r.counters(
                "rows_written_total",
                "Contribution rows merged into MySQL, by table.",
                &["table"],
            )?,
            batch_duration: r
                .histogram("batch_duration_seconds", "Time to process one micro-batch.")?,
            sink_duration: r.histogram("sink_duration_seconds", "Time of one sink transaction.")?,
            consumer_lag: r.gauges(
                "consumer_lag",
                "Consumer lag per assigned partition (messages), from librdkafka statistics.",
                &["partition"],
            )?,
            watermark: r.gauge(
                "watermark_seconds",
                "The topic-wide low watermark rows are finalized up to, Unix epoch seconds.",
            )?,
            event_time_lag: r.gauge(
                "event_time_lag_seconds",
                "Processing time minus the low watermark, seconds.",
            )?,
            open_windows: r.int_gauge(
                "open_windows",
                "Windows the last commit merged trades into.",
            )?,
            final_to_commit: r.histogram(
                "final_to_commit_seconds",
                "Time from the batch that closed a window being polled to its row committed final.",
            )?,
            sink_errors: r.counter(
                "sink_errors_total",
                "Failed sink operations (retried with backoff).",
            )?,
            ready: r.int_gauge("ready", "1 when the engine is consuming and committing.")?,
            offset_gaps: r.counters(
                "offset_gaps_total",
                "Offsets inside committed ranges that the log did not deliver (control records, \
                 compaction, retention), by partition.",
                &["partition"],
            )?,
            audit_mismatches: r.counters(
                "audit_mismatches_total",
                "Commits whose offset range and accounted records disagreed (records may be \
                 missing from MySQL; alert on any), by partition.",
                &["partition"],
            )?,
        };
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

/// Creates metrics named `tradewind_engine_<name>` and registers them.
struct Reg<'a>(&'a Registry);

impl Reg<'_> {
    fn add<M: prometheus::core::Collector + Clone + 'static>(&self, m: M) -> prometheus::Result<M> {
        self.0.register(Box::new(m.clone()))?;
        Ok(m)
    }

    fn name(name: &str) -> String {
        format!("tradewind_engine_{name}")
    }

    fn counter(&self, name: &str, help: &str) -> prometheus::Result<IntCounter> {
        self.add(IntCounter::new(Self::name(name), help)?)
    }

    fn counters(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> prometheus::Result<IntCounterVec> {
        self.add(IntCounterVec::new(
            Opts::new(Self::name(name), help),
            labels,
        )?)
    }

    fn gauge(&self, name: &str, help: &str) -> prometheus::Result<Gauge> {
        self.add(Gauge::new(Self::name(name), help)?)
    }

    fn int_gauge(&self, name: &str, help: &str) -> prometheus::Result<IntGauge> {
        self.add(IntGauge::new(Self::name(name), help)?)
    }

    fn gauges(&self, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<IntGaugeVec> {
        self.add(IntGaugeVec::new(Opts::new(Self::name(name), help), labels)?)
    }

    fn histogram(&self, name: &str, help: &str) -> prometheus::Result<Histogram> {
        self.add(Histogram::with_opts(
            HistogramOpts::new(Self::name(name), help).buckets(latency_buckets()),
        )?)
    }
}
