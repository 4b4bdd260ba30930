//! Kafka client settings and helpers shared by the ingestor and the engine, so both talk to the
//! broker the same way: one idempotent, compressed, bounded producer configuration; one consumer
//! configuration; topic creation; and the dead-letter writer that carries reject reasons in headers.

#![warn(missing_docs)]

use std::time::Duration;

pub mod security;
pub use security::{apply_client_options, set_client_options, ClientOptions};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use tradewind_model::{Reject, HEADER_DETAIL, HEADER_ORIGIN, HEADER_REASON, HEADER_STAGE};

/// Producer settings: idempotent (no duplicates or reordering on retry), lz4-compressed, a 25 ms
/// linger (at live rates a 5 ms linger meant ~200 small produce requests a second, each costing
/// the broker and the client more than its records), a bounded local queue (backpressure instead of
/// unbounded memory) and a long delivery timeout so librdkafka keeps retrying through a broker
/// outage.
pub fn producer_config(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "lz4")
        .set("linger.ms", "25")
        .set("batch.num.messages", "10000")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "200000")
        .set("queue.buffering.max.kbytes", "262144")
        .set("message.timeout.ms", "300000")
        .set("statistics.interval.ms", "0");
    apply_client_options(&mut c);
    c
}

/// Consumer settings for a group member that manages its own offsets: no auto-commit (offsets live in
/// MySQL, Kafka commits are only for lag tooling), cooperative rebalancing, earliest reset, partition
/// EOF events (to detect "caught up" on brokers whose ListOffsets is unreliable), statistics every
/// second (consumer lag per partition), and fetches that wait for 64 KiB or 100 ms on the broker
/// (at live rates the broker otherwise answers every fetch at once with a few records: many
/// requests for few records; a backlog fills 64 KiB at once and is not slowed down).
pub fn consumer_config(brokers: &str, group: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .set("enable.partition.eof", "true")
        .set("fetch.wait.max.ms", "100")
        .set("fetch.min.bytes", "65536")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "4194304")
        .set("queued.max.messages.kbytes", "65536")
        // Prefetch what a micro-batch or so needs, not librdkafka's 100,000 messages: a queued
        // message costs about 500 bytes there (its op plus its share of the decompressed batch),
        // against about 200 in the engine's own batch. Measured on the 2 M-trade mock drain: about
        // 25 MiB less peak RSS at the same CPU and wall time (benches/RESULTS.md).
        .set("queued.min.messages", "30000")
        // When the prefetch queue is full, look again after 20 ms, not librdkafka's 1 s: with the
        // default, a backlog was read in bursts with half a second of nothing in between (the
        // engine's 2 M-trade drain took 7.7 s instead of 3.7 s).
        .set("fetch.queue.backoff.ms", "20")
        .set("statistics.interval.ms", "1000")
        // A subscribed topic created after start-up is picked up within seconds, not minutes.
        .set("topic.metadata.refresh.interval.ms", "10000");
    apply_client_options(&mut c);
    c
}

/// Creates each `(topic, partitions)` that does not exist yet (replication factor 1 is for local
/// brokers; production topics are declared in `deploy/`). Existing topics are left alone.
pub async fn ensure_topics(brokers: &str, topics: &[(&str, i32)]) -> anyhow::Result<()> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    apply_client_options(&mut config);
    let admin: AdminClient<DefaultClientContext> = config.create()?;
    // Create only what is missing: some Kafka-compatible brokers (librdkafka's mock cluster) do not
    // implement CreateTopics, and there is nothing to ask for when every topic exists.
    let existing: Vec<String> = {
        let client = admin.inner();
        let md =
            tokio::task::block_in_place(|| client.fetch_metadata(None, Duration::from_secs(10)))
                .map_err(|e| anyhow::anyhow!("cannot read topic metadata from {brokers}: {e}"))?;
        md.topics()
            .iter()
            .filter(|t| t.error().is_none() && !t.partitions().is_empty())
            .map(|t| t.name().to_string())
            .collect()
    };
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .filter(|(name, _)| !existing.iter().any(|e| e == name))
        .map(|(name, parts)| NewTopic::new(name, *parts, TopicReplication::Fixed(1)))
        .collect();
    if new.is_empty() {
        return Ok(());
    }
    let opts = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(10)))
        .request_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(new.iter(), &opts).await? {
        match result {
            Ok(topic) => tracing::info!(%topic, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => anyhow::bail!("cannot create topic {topic}: {code}"),
        }
    }
    Ok(())
}

/// A producer created on first use. An idle librdkafka producer is not free: the client's polling
/// thread wakes every 100 ms and spins through the last sub-millisecond of each wait (rdkafka's
/// `poll` rounds the remaining time down to 0 ms), and its broker threads keep connections and
/// metadata alive. The dead-letter and late-trades writers usually have nothing to send, so they
/// create their producer only when the first record comes.
#[derive(Clone)]
pub struct LazyProducer {
    config: std::sync::Arc<ClientConfig>,
    cell: std::sync::Arc<std::sync::Mutex<Option<FutureProducer>>>,
}

impl LazyProducer {
    /// A producer with `config`, created by the first [`LazyProducer::get`].
    pub fn new(config: ClientConfig) -> Self {
        LazyProducer {
            config: std::sync::Arc::new(config),
            cell: std::sync::Arc::default(),
        }
    }

    /// The producer, created now if it does not exist yet.
    pub fn get(&self) -> anyhow::Result<FutureProducer> {
        let mut cell = self
            .cell
            .lock()
            .map_err(|_| anyhow::anyhow!("producer lock poisoned"))?;
        if let Some(p) = cell.as_ref() {
            return Ok(p.clone());
        }
        let p: FutureProducer = self.config.create()?;
        *cell = Some(p.clone());
        Ok(p)
    }

    /// Whether the producer has been created.
    pub fn is_created(&self) -> bool {
        self.cell.lock().map(|c| c.is_some()).unwrap_or(false)
    }

    /// Waits up to `timeout` for every record sent to be delivered (nothing to do if the producer
    /// was never created).
    pub fn flush(&self, timeout: Duration) -> anyhow::Result<()> {
        use rdkafka::producer::Producer;
        let p = self.cell.lock().ok().and_then(|c| c.clone());
        match p {
            Some(p) => Ok(p.flush(timeout)?),
            None => Ok(()),
        }
    }
}

impl From<FutureProducer> for LazyProducer {
    fn from(p: FutureProducer) -> Self {
        LazyProducer {
            config: std::sync::Arc::new(ClientConfig::new()),
            cell: std::sync::Arc::new(std::sync::Mutex::new(Some(p))),
        }
    }
}

/// Largest payload a dead-letter record carries, in bytes (64 KiB). A longer record is cut to its
/// first `MAX_DEAD_LETTER_PAYLOAD` bytes, with its length in [`HEADER_ORIGINAL_LENGTH`] and the
/// SHA-256 of the whole of it in [`HEADER_SHA256`]. Far under the broker's and librdkafka's 1 MB
/// `message.max.bytes`: a dead letter never fails for its size, whatever was rejected.
pub const MAX_DEAD_LETTER_PAYLOAD: usize = 64 * 1024;

/// Largest key, `tw-detail` or `tw-origin` value a dead-letter record carries, in bytes; longer ones
/// are cut (on a character boundary for the headers). Keeps the record's size bounded when a
/// rejected frame's content leaks into the detail (an over-long id or symbol).
pub const MAX_DEAD_LETTER_FIELD: usize = 1024;

/// Header of a cut dead-letter record: the length in bytes of the whole rejected record (decimal).
pub const HEADER_ORIGINAL_LENGTH: &str = "tw-original-length";

/// Header of a cut dead-letter record: the SHA-256 of the whole rejected record (64 lower-case hex
/// digits, as `sha256sum` prints it), to match the record against the source.
pub const HEADER_SHA256: &str = "tw-sha256";

/// A dead-letter payload bounded to [`MAX_DEAD_LETTER_PAYLOAD`]: the record itself, or its first
/// bytes with the whole record's length and SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundedPayload<'a> {
    bytes: std::borrow::Cow<'a, [u8]>,
    original_len: usize,
    sha256: Option<[u8; 32]>,
}

impl<'a> BoundedPayload<'a> {
    /// `payload` as is when it fits; otherwise its first [`MAX_DEAD_LETTER_PAYLOAD`] bytes, its length
    /// and its SHA-256 (hashing costs about a millisecond per MB; only cut records pay it).
    pub fn new(payload: &'a [u8]) -> Self {
        if payload.len() <= MAX_DEAD_LETTER_PAYLOAD {
            return BoundedPayload {
                bytes: std::borrow::Cow::Borrowed(payload),
                original_len: payload.len(),
                sha256: None,
            };
        }
        use sha2::Digest as _;
        BoundedPayload {
            bytes: std::borrow::Cow::Borrowed(&payload[..MAX_DEAD_LETTER_PAYLOAD]),
            original_len: payload.len(),
            sha256: Some(sha2::Sha256::digest(payload).into()),
        }
    }

    /// The same payload owning its (at most [`MAX_DEAD_LETTER_PAYLOAD`]) bytes, e.g. to send it
    /// from another task without copying the whole record.
    pub fn into_owned(self) -> BoundedPayload<'static> {
        BoundedPayload {
            bytes: std::borrow::Cow::Owned(self.bytes.into_owned()),
            original_len: self.original_len,
            sha256: self.sha256,
        }
    }

    /// The bytes the dead-letter record carries.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The length of the whole rejected record.
    pub fn original_len(&self) -> usize {
        self.original_len
    }

    /// Whether the record was cut.
    pub fn is_cut(&self) -> bool {
        self.sha256.is_some()
    }

    /// The SHA-256 of the whole record in lower-case hex, when it was cut.
    pub fn sha256_hex(&self) -> Option<String> {
        self.sha256.map(|d| {
            d.iter().fold(String::with_capacity(64), |mut s, b| {
                use std::fmt::Write as _;
                let _ = write!(s, "{b:02x}");
                s
            })
        })
    }
}

/// `s` cut to at most `max` bytes on a character boundary.
fn cut_str(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Writes rejected records to a dead-letter (or late-trades) topic, unchanged, with the reason in
/// headers: `tw-reason` (machine label), `tw-detail` (human detail), `tw-stage` (who rejected it) and,
/// when known, `tw-origin` (`topic/partition/offset` of the source record). A record over
/// [`MAX_DEAD_LETTER_PAYLOAD`] is cut, with `tw-original-length` and `tw-sha256` headers (see
/// [`BoundedPayload`]); key, detail and origin are cut at [`MAX_DEAD_LETTER_FIELD`] bytes.
#[derive(Clone)]
pub struct DeadLetter {
    producer: LazyProducer,
    topic: String,
}

impl DeadLetter {
    /// A dead-letter writer on `topic` using `producer` (a [`FutureProducer`] or a
    /// [`LazyProducer`], created on the first record).
    pub fn new(producer: impl Into<LazyProducer>, topic: impl Into<String>) -> Self {
        DeadLetter {
            producer: producer.into(),
            topic: topic.into(),
        }
    }

    /// The topic records are written to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The underlying producer (for flushing at shutdown).
    pub fn producer(&self) -> &LazyProducer {
        &self.producer
    }

    /// Sends one rejected record and waits for the broker's acknowledgement, so a caller that commits
    /// progress afterwards never loses a dead letter.
    pub async fn send(
        &self,
        key: Option<&[u8]>,
        payload: &[u8],
        reject: &Reject,
        stage: &str,
        origin: Option<&str>,
    ) -> anyhow::Result<()> {
        self.send_labelled(
            key,
            payload,
            reject.kind.label(),
            &reject.detail,
            stage,
            origin,
        )
        .await
    }

    /// Like [`DeadLetter::send`] with a free-form reason label (e.g. `too_late` for the late-trades topic).
    pub async fn send_labelled(
        &self,
        key: Option<&[u8]>,
        payload: &[u8],
        reason: &str,
        detail: &str,
        stage: &str,
        origin: Option<&str>,
    ) -> anyhow::Result<()> {
        let payload = BoundedPayload::new(payload);
        self.send_bounded(key, &payload, reason, detail, stage, origin)
            .await
    }

    /// Like [`DeadLetter::send_labelled`] with the payload already bounded (a caller that sends from
    /// another task keeps only the cut bytes, not the whole record).
    pub async fn send_bounded(
        &self,
        key: Option<&[u8]>,
        payload: &BoundedPayload<'_>,
        reason: &str,
        detail: &str,
        stage: &str,
        origin: Option<&str>,
    ) -> anyhow::Result<()> {
        let detail = cut_str(detail, MAX_DEAD_LETTER_FIELD);
        let original_len = payload.original_len().to_string();
        let sha256 = payload.sha256_hex();
        let mut headers = OwnedHeaders::new_with_capacity(6)
            .insert(Header {
                key: HEADER_REASON,
                value: Some(reason),
            })
            .insert(Header {
                key: HEADER_DETAIL,
                value: Some(detail),
            })
            .insert(Header {
                key: HEADER_STAGE,
                value: Some(stage),
            });
        if let Some(origin) = origin {
            headers = headers.insert(Header {
                key: HEADER_ORIGIN,
                value: Some(cut_str(origin, MAX_DEAD_LETTER_FIELD)),
            });
        }
        if let Some(sha256) = &sha256 {
            headers = headers
                .insert(Header {
                    key: HEADER_ORIGINAL_LENGTH,
                    value: Some(&original_len),
                })
                .insert(Header {
                    key: HEADER_SHA256,
                    value: Some(sha256),
                });
        }
        let mut record = FutureRecord::<[u8], [u8]>::to(&self.topic)
            .payload(payload.bytes())
            .headers(headers);
        if let Some(key) = key {
            record = record.key(&key[..key.len().min(MAX_DEAD_LETTER_FIELD)]);
        }
        self.producer
            .get()?
            .send(record, Duration::from_secs(300))
            .await
            .map_err(|(e, _)| anyhow::anyhow!("dead-letter write to {} failed: {e}", self.topic))?;
        Ok(())
    }
}

/// An in-process Kafka cluster (librdkafka's mock cluster) listening on real loopback ports: the Kafka
/// wire protocol without a broker process. Used by `tradewind demo` when no `--brokers` is given, and
/// by tests. The cluster lives on its own thread (librdkafka's mock handle is not `Send`) until the
/// value is dropped.
pub struct EmbeddedCluster {
    bootstrap: String,
    stop: Option<std::sync::mpsc::Sender<MockCommand>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EmbeddedCluster {
    /// Starts a cluster of `brokers` brokers with `topics` created (`(name, partitions)`), with the
    /// group coordinator's initial rebalance delay set to 0 so consumers join in well under a second.
    pub fn start(brokers: i32, topics: &[(&str, i32)]) -> anyhow::Result<Self> {
        let topics: Vec<(String, i32)> = topics.iter().map(|(t, p)| (t.to_string(), *p)).collect();
        let (tx, rx) = std::sync::mpsc::channel::<Result<String, String>>();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<MockCommand>();
        let thread = std::thread::Builder::new()
            .name("tw-mock-kafka".into())
            .spawn(move || match start_mock(brokers, &topics) {
                Ok((owner, bootstrap)) => {
                    let _ = tx.send(Ok(bootstrap));
                    serve_mock_commands(&owner, &stop_rx);
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            })?;
        let bootstrap = rx
            .recv()
            .map_err(|_| anyhow::anyhow!("mock cluster thread died"))?
            .map_err(|e| anyhow::anyhow!(e))?;
        Ok(EmbeddedCluster {
            bootstrap,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The `bootstrap.servers` string of the cluster.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// Takes broker `id` (1-based) down: its connections are closed and new ones refused, as in a
    /// broker outage (the log is kept).
    pub fn broker_down(&self, id: i32) {
        if let Some(tx) = &self.stop {
            let _ = tx.send(MockCommand::BrokerDown(id));
        }
    }

    /// Brings broker `id` back up.
    pub fn broker_up(&self, id: i32) {
        if let Some(tx) = &self.stop {
            let _ = tx.send(MockCommand::BrokerUp(id));
        }
    }
}

/// Creates the client that owns a mock cluster of `brokers` brokers, with no initial rebalance delay
/// and `topics` created; returns it with the cluster's bootstrap servers.
fn start_mock(
    brokers: i32,
    topics: &[(String, i32)],
) -> Result<(rdkafka::producer::BaseProducer, String), String> {
    use rdkafka::producer::{BaseProducer, Producer};
    let owner: BaseProducer = ClientConfig::new()
        .set("test.mock.num.brokers", brokers.to_string())
        .create()
        .map_err(|e| format!("cannot start the mock cluster: {e}"))?;
    // SAFETY: the pointer comes from a live client that owns the mock cluster, and it is used before
    // that client is dropped.
    unsafe {
        let mc = rdkafka::bindings::rd_kafka_handle_mock_cluster(owner.client().native_ptr());
        if !mc.is_null() {
            rdkafka::bindings::rd_kafka_mock_group_initial_rebalance_delay_ms(mc, 0);
        }
    }
    let mock = owner
        .client()
        .mock_cluster()
        .ok_or("the client has no mock cluster")?;
    for (t, p) in topics {
        mock.create_topic(t, *p, 1)
            .map_err(|e| format!("cannot create topic {t}: {e}"))?;
    }
    let bootstrap = mock.bootstrap_servers();
    drop(mock);
    Ok((owner, bootstrap))
}

/// Applies broker up/down commands to the mock cluster until the [`EmbeddedCluster`] is dropped.
fn serve_mock_commands(
    owner: &rdkafka::producer::BaseProducer,
    commands: &std::sync::mpsc::Receiver<MockCommand>,
) {
    use rdkafka::producer::Producer;
    while let Ok(cmd) = commands.recv() {
        if let Some(mock) = owner.client().mock_cluster() {
            let r = match cmd {
                MockCommand::BrokerDown(b) => mock.broker_down(b),
                MockCommand::BrokerUp(b) => mock.broker_up(b),
            };
            if let Err(e) = r {
                tracing::warn!(error = %e, "mock cluster command failed");
            }
        }
    }
}

/// Control messages to the thread that owns the mock cluster.
enum MockCommand {
    BrokerDown(i32),
    BrokerUp(i32),
}

impl Drop for EmbeddedCluster {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::producer::FutureProducer;
    use tradewind_model::{Reject, RejectKind};

    use super::*;

    fn partitions(brokers: &str, topic: &str) -> usize {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .create()
            .expect("consumer");
        let md = c
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .expect("metadata");
        md.topics()
            .iter()
            .find(|t| t.name() == topic)
            .map_or(0, |t| t.partitions().len())
    }

    /// The first record of partition 0 of `topic`: payload and headers.
    fn first_record(brokers: &str, topic: &str) -> (Vec<u8>, Vec<(String, String)>) {
        use rdkafka::message::{Headers, Message};
        let c: BaseConsumer = consumer_config(brokers, "tw-kafka-test")
            .create()
            .expect("consumer");
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
            .expect("partition");
        c.assign(&tpl).expect("assign");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            match c.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    let headers = m.headers().map_or(Vec::new(), |h| {
                        h.iter()
                            .map(|h| {
                                let v = String::from_utf8_lossy(h.value.unwrap_or_default());
                                (h.key.to_string(), v.into_owned())
                            })
                            .collect()
                    });
                    return (m.payload().unwrap_or_default().to_vec(), headers);
                }
                // Partition EOF events and the like: keep polling.
                _ => continue,
            }
        }
        panic!("no record on {topic} within 20 s");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn embedded_cluster_has_its_topics_and_takes_dead_letters() {
        let cluster =
            EmbeddedCluster::start(1, &[("trades", 3), ("trades.dlq", 1)]).expect("mock cluster");
        let brokers = cluster.bootstrap_servers().to_string();
        assert_eq!(partitions(&brokers, "trades"), 3);
        // Existing topics are left alone (no CreateTopics needed).
        ensure_topics(&brokers, &[("trades", 3)])
            .await
            .expect("ensure");
        let producer: FutureProducer = producer_config(&brokers).create().expect("producer");
        let dl = DeadLetter::new(producer, "trades.dlq");
        let reject = Reject::new(RejectKind::Syntax, "truncated");
        dl.send(
            Some(b"bitcoin"),
            b"{oops",
            &reject,
            "test",
            Some("trades/0/1"),
        )
        .await
        .expect("dead letter acknowledged");
        let (payload, headers) = first_record(&brokers, "trades.dlq");
        assert_eq!(payload, b"{oops", "the record is dead-lettered unchanged");
        let h = |k: &str| {
            headers
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(h(HEADER_REASON), Some(RejectKind::Syntax.label()));
        assert_eq!(h(HEADER_DETAIL), Some("truncated"));
        assert_eq!(h(HEADER_STAGE), Some("test"));
        assert_eq!(h(HEADER_ORIGIN), Some("trades/0/1"));
        assert_eq!(h(HEADER_ORIGINAL_LENGTH), None, "a small record is not cut");
        assert_eq!(h(HEADER_SHA256), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_record_over_the_broker_limit_is_dead_lettered_cut_with_its_length_and_digest() {
        let cluster = EmbeddedCluster::start(1, &[("trades.dlq", 1)]).expect("mock cluster");
        let brokers = cluster.bootstrap_servers().to_string();
        let producer: FutureProducer = producer_config(&brokers).create().expect("producer");
        let dl = DeadLetter::new(producer, "trades.dlq");
        // 2 MB: over librdkafka's and the broker's 1 MB message.max.bytes. The detail echoes a piece
        // of it (as a normaliser's "unknown symbol `...`" would), with a multi-byte character at the cut.
        let payload: Vec<u8> = (0..2_000_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let detail = format!("x{}", "é".repeat(5_000));
        dl.send_labelled(
            Some(&[7u8; 5_000]),
            &payload,
            "syntax",
            &detail,
            "test",
            None,
        )
        .await
        .expect("a dead letter is acknowledged whatever its size");
        let (got, headers) = first_record(&brokers, "trades.dlq");
        assert_eq!(got.len(), MAX_DEAD_LETTER_PAYLOAD);
        assert_eq!(
            got,
            payload[..MAX_DEAD_LETTER_PAYLOAD],
            "the first bytes, unchanged"
        );
        let h = |k: &str| {
            headers
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(h(HEADER_ORIGINAL_LENGTH), Some("2000000"));
        let want = BoundedPayload::new(&payload).sha256_hex();
        assert_eq!(h(HEADER_SHA256), want.as_deref());
        let d = h(HEADER_DETAIL).unwrap_or_default();
        assert!(
            d.len() <= MAX_DEAD_LETTER_FIELD && d.len() > 1_000,
            "{}",
            d.len()
        );
        assert!(detail.starts_with(d));
    }

    #[test]
    fn bounded_payload_digest_is_sha256_of_the_whole_record() {
        let small = BoundedPayload::new(b"abc");
        assert!(!small.is_cut());
        assert_eq!(small.bytes(), b"abc");
        assert_eq!(small.sha256_hex(), None);
        let whole = vec![b'z'; MAX_DEAD_LETTER_PAYLOAD + 1];
        let cut = BoundedPayload::new(&whole).into_owned();
        assert!(cut.is_cut());
        assert_eq!(cut.bytes().len(), MAX_DEAD_LETTER_PAYLOAD);
        assert_eq!(cut.original_len(), MAX_DEAD_LETTER_PAYLOAD + 1);
        // What `sha256sum` prints for 65,536 dots then `abc` (checked with Python's hashlib).
        let mut rec = vec![b'.'; MAX_DEAD_LETTER_PAYLOAD];
        rec.extend_from_slice(b"abc");
        assert_eq!(
            BoundedPayload::new(&rec).sha256_hex().as_deref(),
            Some("aee4faab52af54bf566053785cf06c4abda0d9b880750710bbce64c83138a396")
        );
        assert_eq!(cut_str("aé", 2), "a");
        assert_eq!(cut_str("aé", 3), "aé");
    }
}
