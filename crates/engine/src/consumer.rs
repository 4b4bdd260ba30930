//! Consume: the Kafka side of the engine. A dedicated thread polls librdkafka and packs messages into
//! [`RawBatch`]es bounded by rows and by time, handing them to the engine through a bounded channel
//! (capacity 1: when the engine is busy or MySQL is down, polling stops and the broker keeps the
//! data — backpressure, not an unbounded queue).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::IntGaugeVec;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;

use crate::raw::RawBatch;

/// librdkafka callbacks: consumer lag from statistics, broker-down detection for readiness.
pub struct EngineContext {
    topic: String,
    lag: IntGaugeVec,
    /// Set while librdkafka reports every broker down.
    pub brokers_down: AtomicBool,
}

impl EngineContext {
    /// A context exporting lag for `topic` into `lag`.
    pub fn new(topic: &str, lag: IntGaugeVec) -> Self {
        EngineContext {
            topic: topic.to_string(),
            lag,
            brokers_down: AtomicBool::new(false),
        }
    }
}

impl ClientContext for EngineContext {
    fn stats(&self, stats: Statistics) {
        if let Some(t) = stats.topics.get(&self.topic) {
            for (id, p) in &t.partitions {
                if *id >= 0 && p.consumer_lag >= 0 {
                    self.lag
                        .with_label_values(&[&id.to_string()])
                        .set(p.consumer_lag);
                }
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::PartitionEOF)
        ) {
            return; // reported through poll() as well, where it is used; not an error
        }
        if matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::AllBrokersDown)
        ) {
            self.brokers_down.store(true, Ordering::Relaxed);
        }
        tracing::warn!(%error, reason, "kafka client error");
    }
}

impl ConsumerContext for EngineContext {}

/// The engine's consumer.
pub type EngineConsumer = BaseConsumer<EngineContext>;

/// One polled micro-batch.
pub struct Polled {
    /// The messages.
    pub raw: RawBatch,
    /// Partitions whose end had been reached (and nothing newer seen) when the batch was cut.
    pub eof: BTreeSet<i32>,
    /// When the batch was cut.
    pub at: Instant,
}

/// Handle of the polling thread.
pub struct Poller {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Batches, in poll order.
    pub batches: Receiver<Polled>,
}

impl Poller {
    /// Starts polling `consumer` into batches of at most `max_rows` messages or `max_wait`.
    pub fn start(consumer: Arc<EngineConsumer>, max_rows: usize, max_wait: Duration) -> Self {
        let (tx, rx) = sync_channel(1);
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("tw-poll".into())
            .spawn(move || poll_loop(&consumer, max_rows, max_wait, &s, tx))
            .ok();
        Poller {
            stop,
            thread,
            batches: rx,
        }
    }

    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Unblock a pending send.
        while self.batches.try_recv().is_ok() {}
        drop(self.batches);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn poll_loop(
    consumer: &EngineConsumer,
    max_rows: usize,
    max_wait: Duration,
    stop: &AtomicBool,
    tx: SyncSender<Polled>,
) {
    let mut eof = BTreeSet::new();
    while !stop.load(Ordering::Relaxed) {
        let mut raw = RawBatch::with_capacity(max_rows.min(65_536));
        let deadline = Instant::now() + max_wait;
        while raw.len() < max_rows {
            let now = Instant::now();
            if now >= deadline || stop.load(Ordering::Relaxed) {
                break;
            }
            match consumer.poll(deadline - now) {
                None => break,
                Some(Ok(m)) => {
                    eof.remove(&m.partition());
                    raw.push(
                        m.partition(),
                        m.offset(),
                        m.key(),
                        m.payload().unwrap_or(&[]),
                    );
                    consumer
                        .context()
                        .brokers_down
                        .store(false, Ordering::Relaxed);
                }
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    eof.insert(p);
                    consumer
                        .context()
                        .brokers_down
                        .store(false, Ordering::Relaxed);
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "consumer error");
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        let polled = Polled {
            raw,
            eof: eof.clone(),
            at: Instant::now(),
        };
        if tx.send(polled).is_err() {
            break;
        }
    }
}
