//! Prometheus metrics of the ingestor (names fixed by the project's metric contract).

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use tradewind_model::RejectKind;

use crate::pipeline::TOO_LARGE;

/// Every counter, gauge and histogram the ingestor updates, registered on one [`Registry`].
#[derive(Clone)]
pub struct IngestMetrics {
    /// Frames that entered validation (trade candidates, good or bad).
    pub frames: IntCounter,
    /// Records acknowledged by Kafka on the trade topic.
    pub produced: IntCounter,
    /// Records routed to the dead-letter topic, by reason label (the model's reasons and
    /// [`TOO_LARGE`]).
    pub rejected: IntCounterVec,
    /// Websocket messages over the websocket size limit: not read, the connection was dropped.
    pub frames_too_large: IntCounter,
    /// Reconnects of any source.
    pub reconnects: IntCounter,
    /// Records whose delivery failed after librdkafka's retries (trade or dead-letter topic).
    pub delivery_errors: IntCounter,
    /// Enqueue-to-acknowledgement latency of trade records.
    pub delivery_latency: Histogram,
    /// Records handed to the producer and not yet acknowledged.
    pub inflight: IntGauge,
    /// Asset prices received from a CoinCap prices source.
    pub price_updates: IntCounter,
}

impl IngestMetrics {
    /// Creates the metrics and registers them on `registry` (every reject reason pre-registered at 0).
    pub fn register(registry: &Registry) -> anyhow::Result<Self> {
        let m = IngestMetrics {
            frames: IntCounter::new(
                "tradewind_ingest_frames_total",
                "Frames received from sources that entered validation",
            )?,
            produced: IntCounter::new(
                "tradewind_ingest_produced_total",
                "Trade records acknowledged by Kafka",
            )?,
            rejected: IntCounterVec::new(
                Opts::new(
                    "tradewind_ingest_rejected_total",
                    "Frames routed to the dead-letter topic, by reason",
                ),
                &["reason"],
            )?,
            frames_too_large: IntCounter::new(
                "tradewind_ingest_frames_too_large_total",
                "Websocket messages over the websocket size limit (not read; the source was reconnected)",
            )?,
            reconnects: IntCounter::new(
                "tradewind_ingest_reconnects_total",
                "Source websocket reconnects",
            )?,
            delivery_errors: IntCounter::new(
                "tradewind_ingest_delivery_errors_total",
                "Records whose Kafka delivery failed after retries",
            )?,
            delivery_latency: Histogram::with_opts(
                HistogramOpts::new(
                    "tradewind_ingest_delivery_latency_seconds",
                    "Time from enqueue to Kafka acknowledgement",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0,
                ]),
            )?,
            inflight: IntGauge::new(
                "tradewind_ingest_inflight",
                "Records handed to the producer and not yet acknowledged",
            )?,
            price_updates: IntCounter::new(
                "tradewind_ingest_price_updates_total",
                "Asset prices received from CoinCap prices sources",
            )?,
        };
        for k in RejectKind::ALL {
            m.rejected.with_label_values(&[k.label()]);
        }
        m.rejected.with_label_values(&[TOO_LARGE]);
        registry.register(Box::new(m.frames.clone()))?;
        registry.register(Box::new(m.produced.clone()))?;
        registry.register(Box::new(m.rejected.clone()))?;
        registry.register(Box::new(m.frames_too_large.clone()))?;
        registry.register(Box::new(m.reconnects.clone()))?;
        registry.register(Box::new(m.delivery_errors.clone()))?;
        registry.register(Box::new(m.delivery_latency.clone()))?;
        registry.register(Box::new(m.inflight.clone()))?;
        registry.register(Box::new(m.price_updates.clone()))?;
        Ok(m)
    }

    /// Rejections so far, by reason label (only non-zero reasons).
    pub fn rejected_by_reason(&self) -> std::collections::BTreeMap<&'static str, u64> {
        RejectKind::ALL
            .iter()
            .map(|k| k.label())
            .chain([TOO_LARGE])
            .map(|label| (label, self.rejected.with_label_values(&[label]).get()))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}
