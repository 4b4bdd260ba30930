//! The produce path shared by live ingestion and file backfill: validate a frame, produce good frames
//! unchanged (keyed by `base`) through a bounded in-flight window, route bad frames to the dead-letter
//! topic, and flush everything at the end.
//!
//! A frame over [`PipelineConfig::max_frame_bytes`] is not parsed: it is dead-lettered as
//! [`TOO_LARGE`]. Every dead letter is bounded by [`tradewind_kafka::BoundedPayload`]: over 64 KiB,
//! only its first 64 KiB are written, with its length and SHA-256 in headers, so a dead letter never
//! fails for its size.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::FromClientConfigAndContext;
use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;
use tokio::sync::Semaphore;
use tradewind_kafka::{BoundedPayload, DeadLetter};
use tradewind_model::{validate, Reject, Validator};

use crate::metrics::IngestMetrics;

/// The `tw-stage` header value of records this crate dead-letters.
pub const STAGE: &str = "ingest";

/// The `tw-reason` header and `reason` metric label of a frame over
/// [`PipelineConfig::max_frame_bytes`], rejected before any parse.
pub const TOO_LARGE: &str = "too_large";

/// Default bound on a trade frame, in bytes (16 KiB): a CoinCap trade is about 170 bytes and a
/// Binance or Coinbase trade frame about 300, so anything this large is not a trade. Larger frames
/// are dead-lettered as [`TOO_LARGE`] without being parsed, and nothing larger reaches the trade
/// topic.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 16 * 1024;

/// State the delivery callback needs: the in-flight window and the metrics.
struct Shared {
    window: Arc<Semaphore>,
    metrics: IngestMetrics,
    epoch: Instant,
}

/// librdkafka context whose delivery callback releases an in-flight slot and records the outcome.
/// The opaque carries the enqueue time (ns since `epoch`), so no per-record allocation is needed.
struct DeliveryContext(Arc<Shared>);

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, enqueued_ns: usize) {
        let s = &self.0;
        let now_ns = s.epoch.elapsed().as_nanos() as usize;
        s.metrics
            .delivery_latency
            .observe(now_ns.saturating_sub(enqueued_ns) as f64 * 1e-9);
        match result {
            Ok(_) => s.metrics.produced.inc(),
            Err((e, _)) => {
                s.metrics.delivery_errors.inc();
                let n = s.metrics.delivery_errors.get();
                if n <= 10 || n.is_power_of_two() {
                    tracing::error!(error = %e, failed_so_far = n, "trade delivery failed after retries");
                }
            }
        }
        s.metrics.inflight.dec();
        s.window.add_permits(1);
    }
}

/// Producer-side settings of a [`Pipeline`].
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// Topic for valid trades.
    pub topic: String,
    /// Dead-letter topic for rejected frames.
    pub dlq_topic: String,
    /// Maximum records handed to the producer and not yet acknowledged (trades + dead letters).
    pub max_inflight: usize,
    /// How far in the future a trade's timestamp may be.
    pub future_tolerance: Duration,
    /// How long shutdown waits for outstanding deliveries.
    pub flush_timeout: Duration,
    /// Frames longer than this many bytes are dead-lettered as [`TOO_LARGE`], unparsed (default
    /// [`DEFAULT_MAX_FRAME_BYTES`]).
    pub max_frame_bytes: usize,
}

/// Validate-and-produce stage: one per ingest run or backfill, shared by all sources.
pub struct Pipeline {
    producer: ThreadedProducer<DeliveryContext>,
    dead_letter: DeadLetter,
    shared: Arc<Shared>,
    topic: String,
    validator: Validator,
    max_inflight: usize,
    flush_timeout: Duration,
    max_frame_bytes: usize,
}

/// Whether a submitted frame was accepted for production or dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Valid: handed to the producer.
    Produced,
    /// Invalid: routed to the dead-letter topic.
    Rejected,
}

impl Pipeline {
    /// Creates the trade producer (idempotent, lz4, via [`tradewind_kafka::producer_config`]) and the
    /// dead-letter producer.
    pub fn new(cfg: &PipelineConfig, metrics: IngestMetrics) -> anyhow::Result<Self> {
        let max_inflight = cfg
            .max_inflight
            .clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        let mut pc = tradewind_kafka::producer_config(&cfg.brokers);
        // librdkafka's own queue must hold the whole window, or sends fail with QueueFull first.
        let queue = (max_inflight + 1000).max(200_000);
        pc.set("queue.buffering.max.messages", queue.to_string());
        let shared = Arc::new(Shared {
            window: Arc::new(Semaphore::new(max_inflight)),
            metrics,
            epoch: Instant::now(),
        });
        let producer =
            ThreadedProducer::from_config_and_context(&pc, DeliveryContext(Arc::clone(&shared)))?;
        // Created on the first rejected frame: an idle producer costs a polling thread.
        let dlq_producer =
            tradewind_kafka::LazyProducer::new(tradewind_kafka::producer_config(&cfg.brokers));
        Ok(Pipeline {
            producer,
            dead_letter: DeadLetter::new(dlq_producer, cfg.dlq_topic.clone()),
            shared,
            topic: cfg.topic.clone(),
            validator: Validator {
                future_tolerance_ms: i64::try_from(cfg.future_tolerance.as_millis())
                    .unwrap_or(i64::MAX),
            },
            max_inflight,
            flush_timeout: cfg.flush_timeout,
            max_frame_bytes: cfg.max_frame_bytes,
        })
    }

    /// The metrics this pipeline updates.
    pub fn metrics(&self) -> &IngestMetrics {
        &self.shared.metrics
    }

    /// Validates `frame` and produces it unchanged keyed by its `base`, or dead-letters it (unparsed,
    /// as [`TOO_LARGE`], when it is over the frame bound). Waits for a free in-flight slot first,
    /// which is what backpressures the caller's read loop.
    pub async fn submit(&self, frame: &[u8], origin: Option<&str>) -> Outcome {
        if self.reject_if_too_large(frame, origin).await {
            return Outcome::Rejected;
        }
        self.shared.metrics.frames.inc();
        match validate(frame, tradewind_model::now_ms(), &self.validator) {
            Ok(trade) => {
                self.produce(trade.base.as_bytes(), frame).await;
                Outcome::Produced
            }
            Err(reject) => {
                self.reject(frame, reject.kind.label(), &reject.detail, origin)
                    .await;
                Outcome::Rejected
            }
        }
    }

    /// Counts a frame (it entered validation) and dead-letters it with `reject`; for frames that fail
    /// before model validation (binary frames, source errors, normalisation failures).
    pub async fn submit_rejected(&self, frame: &[u8], reject: Reject, origin: Option<&str>) {
        self.shared.metrics.frames.inc();
        self.reject(frame, reject.kind.label(), &reject.detail, origin)
            .await;
    }

    /// When `frame` is over the frame bound, counts it and dead-letters it as [`TOO_LARGE`] (cut to
    /// the dead-letter bound) without looking inside, and returns true; otherwise does nothing and
    /// returns false. Sources call it before normalising; [`Pipeline::submit`] calls it first too.
    pub async fn reject_if_too_large(&self, frame: &[u8], origin: Option<&str>) -> bool {
        if frame.len() <= self.max_frame_bytes {
            return false;
        }
        self.shared.metrics.frames.inc();
        let detail = format!(
            "frame of {} bytes is over the {}-byte trade frame bound (--max-frame-bytes); not parsed",
            frame.len(),
            self.max_frame_bytes
        );
        self.reject(frame, TOO_LARGE, &detail, origin).await;
        true
    }

    async fn acquire_slot(&self) {
        let permit = match self.shared.window.try_acquire() {
            Ok(p) => p,
            Err(_) => match self.shared.window.acquire().await {
                Ok(p) => p,
                // The semaphore is never closed.
                Err(_) => return,
            },
        };
        permit.forget();
        self.shared.metrics.inflight.inc();
    }

    fn release_slot(&self) {
        self.shared.metrics.inflight.dec();
        self.shared.window.add_permits(1);
    }

    async fn produce(&self, key: &[u8], payload: &[u8]) {
        self.acquire_slot().await;
        loop {
            let enqueued = self.shared.epoch.elapsed().as_nanos() as usize;
            let record = BaseRecord::with_opaque_to(&self.topic, enqueued)
                .key(key)
                .payload(payload);
            match self.producer.send(record) {
                Ok(()) => return,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    // The local queue is bounded separately (bytes); wait for deliveries to drain it.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((e, _)) => {
                    self.shared.metrics.delivery_errors.inc();
                    tracing::error!(error = %e, "cannot enqueue trade record");
                    self.release_slot();
                    return;
                }
            }
        }
    }

    /// Dead-letters `frame` with reason label `reason` (a [`tradewind_model::RejectKind`] label or
    /// [`TOO_LARGE`]) on its own task.
    async fn reject(&self, frame: &[u8], reason: &'static str, detail: &str, origin: Option<&str>) {
        self.shared
            .metrics
            .rejected
            .with_label_values(&[reason])
            .inc();
        tracing::debug!(reason, detail, bytes = frame.len(), "frame rejected");
        // Dead letters are rare: send each on its own task (bounded by the same window) so a burst of
        // bad frames does not serialise the read loop on broker round trips.
        let permit = match Arc::clone(&self.shared.window).acquire_owned().await {
            Ok(p) => p,
            Err(_) => return,
        };
        self.shared.metrics.inflight.inc();
        let dl = self.dead_letter.clone();
        let shared = Arc::clone(&self.shared);
        // Cut here (hashing the whole frame when it is over the bound): the task holds at most the
        // dead-letter bound, not a frame of many megabytes.
        let payload = BoundedPayload::new(frame).into_owned();
        let detail = detail.to_owned();
        let origin = origin.map(str::to_owned);
        tokio::spawn(async move {
            if let Err(e) = dl
                .send_bounded(None, &payload, reason, &detail, STAGE, origin.as_deref())
                .await
            {
                shared.metrics.delivery_errors.inc();
                tracing::error!(error = %e, reason, "dead-letter delivery failed");
            }
            shared.metrics.inflight.dec();
            drop(permit);
        });
    }

    /// Flushes both producers and waits until every record handed over so far is acknowledged (or has
    /// definitively failed), bounded by the flush timeout. Returns whether everything settled.
    pub async fn flush(&self) -> bool {
        let deadline = Instant::now() + self.flush_timeout;
        let producer = self.producer.clone();
        let timeout = self.flush_timeout;
        let flushed = tokio::task::spawn_blocking(move || producer.flush(timeout))
            .await
            .map_err(|e| anyhow::anyhow!("flush task: {e}"))
            .and_then(|r| r.map_err(anyhow::Error::from));
        if let Err(e) = &flushed {
            tracing::error!(error = %e, "trade producer flush incomplete");
        }
        // Every slot back means every trade and dead letter settled.
        let remaining = deadline.saturating_duration_since(Instant::now());
        let all = u32::try_from(self.max_inflight).unwrap_or(u32::MAX);
        let settled = tokio::time::timeout(remaining, self.shared.window.acquire_many(all))
            .await
            .ok()
            .and_then(Result::ok);
        match settled {
            Some(p) => {
                drop(p);
                flushed.is_ok()
            }
            None => {
                tracing::error!(
                    inflight = self.shared.metrics.inflight.get(),
                    "records still in flight at flush timeout"
                );
                false
            }
        }
    }
}
