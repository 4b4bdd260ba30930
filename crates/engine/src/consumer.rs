//! Consume: the Kafka side of the engine. A dedicated thread polls librdkafka and packs messages into
//! [`RawBatch`]es bounded by rows and by time, handing them to the engine through a bounded channel
//! (capacity 1: when the engine is busy or MySQL is down, polling stops and the broker keeps the
//! data — backpressure, not an unbounded queue).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::IntGaugeVec;
use rdkafka::client::ClientContext;
use rdkafka::consumer::RebalanceProtocol;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{Offset, TopicPartitionList};

use crate::raw::RawBatch;

/// librdkafka callbacks: consumer lag from statistics, broker-down detection for readiness, and the
/// start offsets of (re)assigned partitions.
pub struct EngineContext {
    topic: String,
    lag: IntGaugeVec,
    /// Set while librdkafka reports every broker down.
    pub brokers_down: AtomicBool,
    /// The next offset MySQL holds for each partition this replica has loaded or committed: a
    /// partition assigned again starts there instead of at the log's beginning.
    known_offsets: Mutex<HashMap<i32, i64>>,
}

impl EngineContext {
    /// A context exporting lag for `topic` into `lag`.
    pub fn new(topic: &str, lag: IntGaugeVec) -> Self {
        EngineContext {
            topic: topic.to_string(),
            lag,
            brokers_down: AtomicBool::new(false),
            known_offsets: Mutex::new(HashMap::new()),
        }
    }

    /// Records the next offset MySQL holds for `partition` (after a load or a commit).
    pub fn remember_offset(&self, partition: i32, next_offset: i64) {
        if let Ok(mut m) = self.known_offsets.lock() {
            m.insert(partition, next_offset);
        }
    }

    /// Start offsets for newly assigned partitions: the known MySQL offset, else the beginning.
    fn set_start_offsets(&self, tpl: &mut TopicPartitionList) {
        let known = self
            .known_offsets
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default();
        let parts: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        for (topic, p) in parts {
            let offset = known
                .get(&p)
                .map_or(Offset::Beginning, |&o| Offset::Offset(o));
            if let Err(err) = tpl.set_partition_offset(&topic, p, offset) {
                tracing::warn!(error = %err, partition = p, "cannot set the start offset");
            }
        }
    }

    /// Removes the lag series of revoked partitions (another replica reports them now).
    fn forget_lag(&self, tpl: &TopicPartitionList) {
        for e in tpl.elements() {
            let _ = self.lag.remove_label_values(&[&e.partition().to_string()]);
        }
    }
}

impl ClientContext for EngineContext {
    fn stats(&self, stats: Statistics) {
        if let Some(t) = stats.topics.get(&self.topic) {
            for (id, p) in &t.partitions {
                if *id < 0 {
                    continue;
                }
                // librdkafka keeps revoked partitions in its statistics (fetch stopped, with their
                // last lag): report only the partitions this replica fetches, and drop the series
                // of the others, or a rebalance leaves two replicas reporting one partition.
                let fetching = p.fetch_state == "active";
                if fetching && p.consumer_lag >= 0 {
                    self.lag
                        .with_label_values(&[&id.to_string()])
                        .set(p.consumer_lag);
                } else if !fetching {
                    let _ = self.lag.remove_label_values(&[&id.to_string()]);
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

impl ConsumerContext for EngineContext {
    /// Assigned partitions start at the offset MySQL holds when this replica knows it (a partition
    /// revoked and assigned again), else at the beginning of the log, never at Kafka's committed
    /// offsets: the position that counts is the one in MySQL, and the engine seeks there on the
    /// first record (Kafka's committed offsets may belong to another database, or be behind it).
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                consumer.context().set_start_offsets(tpl);
                tracing::info!(partitions = ?partitions(tpl), "partitions assigned");
                if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                tracing::info!(partitions = ?partitions(tpl), "partitions revoked");
                consumer.context().forget_lag(tpl);
                if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                }
            }
            other => {
                tracing::warn!(error = ?other, "rebalance error");
                consumer.unassign()
            }
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "applying the rebalance failed");
        }
    }
}

fn partitions(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

/// The engine's consumer.
pub type EngineConsumer = BaseConsumer<EngineContext>;

/// One polled micro-batch.
pub struct Polled {
    /// The messages.
    pub raw: RawBatch,
    /// Seek generation when polling of this batch began: messages of a batch whose generation is
    /// at least a partition's seek generation were all fetched after that seek.
    pub gen: u64,
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
    /// Emptied batches go back to the poll thread for reuse (no allocation per batch).
    pub recycle: SyncSender<RawBatch>,
    /// Bumped after every seek (see [`Polled::gen`]).
    pub seek_gen: Arc<AtomicU64>,
}

impl Poller {
    /// Starts polling `consumer` into batches of at most `max_rows` messages or `max_wait`.
    pub fn start(consumer: Arc<EngineConsumer>, max_rows: usize, max_wait: Duration) -> Self {
        let (tx, rx) = sync_channel(1);
        let (recycle, recycled) = sync_channel(2);
        let stop = Arc::new(AtomicBool::new(false));
        let seek_gen = Arc::new(AtomicU64::new(0));
        let (s, g) = (stop.clone(), seek_gen.clone());
        let thread = std::thread::Builder::new()
            .name("tw-poll".into())
            .spawn(move || poll_loop(&consumer, max_rows, max_wait, &s, &g, tx, recycled))
            .ok();
        Poller {
            stop,
            thread,
            batches: rx,
            recycle,
            seek_gen,
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
    seek_gen: &AtomicU64,
    tx: SyncSender<Polled>,
    recycled: Receiver<RawBatch>,
) {
    let mut eof = BTreeSet::new();
    while !stop.load(Ordering::Relaxed) {
        let mut raw = recycled
            .try_recv()
            .unwrap_or_else(|_| RawBatch::with_capacity(max_rows.min(65_536)));
        raw.clear();
        let gen = seek_gen.load(Ordering::Acquire);
        let deadline = Instant::now() + max_wait;
        // While messages keep coming, poll without waiting and read the clock only every 256
        // messages; when none is ready, wait for the rest of the batch window.
        let mut timeout = max_wait;
        while raw.len() < max_rows && !stop.load(Ordering::Relaxed) {
            match consumer.poll(timeout) {
                None if timeout.is_zero() => {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    timeout = deadline - now;
                }
                None => break,
                Some(Ok(m)) => {
                    eof.remove(&m.partition());
                    raw.push(
                        m.partition(),
                        m.offset(),
                        m.key(),
                        m.payload().unwrap_or(&[]),
                    );
                    timeout = Duration::ZERO;
                    if raw.len() % 256 == 0 && Instant::now() >= deadline {
                        break;
                    }
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
                    // librdkafka reconnects by itself; do not spin (or flood the log) meanwhile.
                    std::thread::sleep(Duration::from_millis(250));
                    timeout = deadline.saturating_duration_since(Instant::now());
                    if timeout.is_zero() {
                        break;
                    }
                }
            }
        }
        if !raw.is_empty() {
            consumer
                .context()
                .brokers_down
                .store(false, Ordering::Relaxed);
        }
        let polled = Polled {
            raw,
            gen,
            eof: eof.clone(),
            at: Instant::now(),
        };
        if tx.send(polled).is_err() {
            break;
        }
    }
}
