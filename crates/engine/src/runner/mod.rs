//! The engine loop: for each polled micro-batch — skip what MySQL already holds, decode, route
//! rejects, aggregate each view's window contributions with per-partition lateness, and commit them,
//! offsets and partition watermarks in one MySQL transaction; retry through outages; stop on SIGTERM
//! or, with `--drain`, once caught up.
//!
//! Exactly once: MySQL holds, per partition, the next offset and the partition's event-time progress,
//! written in the same transaction as the merged window rows. A (re)started or newly assigned replica
//! loads them and skips every record below that offset; a replica that lost a partition but still
//! commits fails the offset compare-and-set and reloads. Kafka offsets are committed afterwards for
//! lag tooling only.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use prometheus::Registry;
use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};
use tokio::runtime::Handle;
use tokio::sync::watch;
use tradewind_kafka::DeadLetter;
use tradewind_model::{now_ms, Reject, Validator};
use tradewind_pipeline::RowOrder;
use tradewind_sink::MySqlSink;
use tradewind_telemetry::{Backoff, Health};

use crate::audit::{self, Audit, Tallies};
use crate::consumer::{EngineConsumer, EngineContext, FetchQueue, Polled, Poller};
use crate::decode::{BatchDecoder, Decoded};
use crate::metrics::EngineMetrics;
use crate::partition::{Admit, PartState};
use crate::pending::Pending;
use crate::raw::RawBatch;
use crate::views::{BatchPlan, Lateness, Origins, Views};
use crate::EngineConfig;

mod commit;
mod retry;
mod side;

use commit::InFlight;
use retry::retry;

/// What one engine run did (returned at exit; also logged).
#[derive(Debug, Default, Clone)]
pub struct EngineSummary {
    /// Records consumed (after de-duplication).
    pub records: u64,
    /// Valid trades windowed.
    pub trades: u64,
    /// Records sent to the dead-letter topic (invalid, or refused by MySQL).
    pub rejected: u64,
    /// Trades later than the allowed lateness, sent to the late topic.
    pub too_late: u64,
    /// Late trades folded in as corrections.
    pub corrected: u64,
    /// Contribution rows merged into the window tables.
    pub rows_written: u64,
    /// Rows that became final.
    pub rows_finalized: u64,
    /// Sink transactions committed.
    pub commits: u64,
    /// Commits refused because another replica owns the partition now.
    pub fenced: u64,
    /// Folded commits MySQL refused a value of (their partitions were read again one micro-batch
    /// per commit to find the trades behind the refused rows).
    pub refused_folds: u64,
    /// Commits refused because rows they merged into became final after their trades were judged
    /// (judged again as corrections or too late).
    pub stale: u64,
    /// Trades a view's SQL failed on, sent to the dead-letter topic (reason `view_error`).
    pub view_errors: u64,
    /// Payload bytes of the largest micro-batch read (batches are cut by rows, time and bytes).
    pub largest_batch_bytes: u64,
    /// Per partition: the offsets this run committed and what was in them.
    pub audit: Audit,
}

/// Runs the engine until `shutdown` flips (or, with `--drain`, until caught up).
pub async fn run_engine(
    args: EngineConfig,
    registry: &Registry,
    health: Arc<Health>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<EngineSummary> {
    let metrics = EngineMetrics::register(registry)?;
    let pipeline = load_pipeline(args.pipeline.as_deref())?;
    let mut views = Views::new(
        &pipeline,
        Lateness {
            out_of_orderness_ms: args.out_of_orderness.as_millis() as i64,
            allowed_ms: args.allowed_lateness.as_millis() as i64,
        },
    )
    .context("planning the pipeline's views")?;
    let sink = connect_sink(&args, &health, &shutdown).await?;
    let Some(sink) = sink else {
        return Ok(EngineSummary::default());
    };
    let retention = prepare(&args, &sink, &pipeline, registry, &shutdown).await?;
    // One owner per set of window tables: a second group would count every trade again.
    sink.claim_owner(&args.group, &args.topic)
        .await
        .context("checking who owns the window tables")?;
    // Final rows stay final: trades of windows already final are judged as corrections.
    let horizons = sink
        .final_horizons(views.tables())
        .await
        .context("reading where the window tables' final rows end")?;
    views.learn_horizons(&horizons);
    let (producer, consumer) = kafka_clients(&args, &metrics)?;
    let heartbeat = Arc::new(AtomicI64::new(now_ms()));
    let watchdog = tokio::spawn(watch_liveness(
        heartbeat.clone(),
        health.clone(),
        args.liveness_timeout,
    ));
    let handle = Handle::current();
    let dlq = DeadLetter::new(producer.clone(), args.dlq_topic.clone());
    let late = DeadLetter::new(producer.clone(), args.late_topic.clone());
    let flush_timeout = args.flush_timeout;
    let io = Io {
        sink: sink.clone(),
        consumer,
        dlq,
        late,
        metrics,
        health,
        heartbeat,
    };
    let mut engine = Engine::new(args, io, views);
    let (engine, result) = tokio::task::spawn_blocking(move || {
        let r = engine.run(&handle, shutdown);
        (engine, r)
    })
    .await
    .context("engine thread panicked")?;
    watchdog.abort();
    if let Some(task) = &retention {
        task.abort();
    }
    if let Err(e) = producer.flush(flush_timeout) {
        tracing::warn!(error = %e, "dead-letter producer did not flush in time");
    }
    drop(engine);
    if let Err(e) = sink.disconnect().await {
        tracing::debug!(error = %e, "mysql disconnect");
    }
    result
}

/// The run's Kafka clients: the (lazily created) producer of the dead-letter and late topics, and
/// the consumer of the trades topic, with `--kafka-option`s applied (in-process runs and tests have
/// no process-wide ones).
fn kafka_clients(
    args: &EngineConfig,
    metrics: &EngineMetrics,
) -> anyhow::Result<(tradewind_kafka::LazyProducer, Arc<EngineConsumer>)> {
    let options = tradewind_kafka::ClientOptions::parse(&args.kafka_options, None)?;
    let mut producer_config = tradewind_kafka::producer_config(&args.brokers);
    let mut config = tradewind_kafka::consumer_config(&args.brokers, &args.group);
    options.apply(&mut producer_config);
    options.apply(&mut config);
    // Created on the first dead letter or late trade: an idle producer costs a polling thread.
    let producer = tradewind_kafka::LazyProducer::new(producer_config);
    let context = EngineContext::new(&args.topic, metrics.consumer_lag.clone());
    let consumer: EngineConsumer = config.create_with_context(context)?;
    // Live mode joins the group (replicas split the partitions); `--drain` assigns every partition
    // directly once it has loaded their offsets from MySQL (Engine::assign_all): no group join.
    if !args.drain {
        consumer.subscribe(&[args.topic.as_str()])?;
    }
    Ok((producer, Arc::new(consumer)))
}

/// Before consuming: the schema (with `--migrate`), the retention task (with `--retention`) and the
/// output topics (with `--create-topics`).
async fn prepare(
    args: &EngineConfig,
    sink: &MySqlSink,
    pipeline: &tradewind_pipeline::Pipeline,
    registry: &Registry,
    shutdown: &watch::Receiver<bool>,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    if args.migrate {
        sink.migrate().await.context("applying the MySQL schema")?;
        migrate_views(sink, pipeline).await?;
    }
    let tables = pipeline
        .views
        .iter()
        .map(|v| (v.name.clone(), v.window_ms))
        .collect();
    let retention = crate::retention::spawn(
        sink,
        tables,
        &args.retention,
        args.allowed_lateness,
        registry,
        shutdown.clone(),
    )?;
    if args.create_topics {
        // The engine's two output topics; the trades topic belongs to the ingestor or the platform.
        tradewind_kafka::ensure_topics(
            &args.brokers,
            &[(args.dlq_topic.as_str(), 1), (args.late_topic.as_str(), 1)],
        )
        .await
        .unwrap_or_else(
            |e| tracing::warn!(error = %e, "could not create topics; assuming they exist"),
        );
    }
    Ok(retention)
}

/// The built-in pipeline plus the views of `file`, if given.
pub fn load_pipeline(
    file: Option<&std::path::Path>,
) -> anyhow::Result<tradewind_pipeline::Pipeline> {
    let user = match file {
        Some(path) => Some((
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the pipeline file {}", path.display()))?,
            path.display().to_string(),
        )),
        None => None,
    };
    let pipeline = tradewind_pipeline::Pipeline::with_user(
        user.as_ref().map(|(s, n)| (s.as_str(), n.as_str())),
    )?;
    Ok(pipeline)
}

/// Creates (or adds missing columns to) the tables of the pipeline's views.
pub async fn migrate_views(
    sink: &MySqlSink,
    pipeline: &tradewind_pipeline::Pipeline,
) -> anyhow::Result<()> {
    for view in &pipeline.views {
        sink.ensure_table(&tradewind_pipeline::ddl::table_ddl(view))
            .await
            .with_context(|| format!("creating the table of view `{}`", view.name))?;
    }
    Ok(())
}

/// Marks the process not live (`/healthz` 503) while the engine loop has not moved for `limit`.
async fn watch_liveness(heartbeat: Arc<AtomicI64>, health: Arc<Health>, limit: Duration) {
    let limit_ms = limit.as_millis() as i64;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let idle_ms = now_ms() - heartbeat.load(Ordering::Relaxed);
        let stalled = idle_ms > limit_ms;
        if stalled && health.is_live() {
            tracing::error!(?limit, "engine loop made no progress; reporting not live");
        }
        if stalled {
            let reason = format!("engine loop made no progress for {} s", idle_ms / 1000);
            health.set_liveness(false, &reason);
        } else {
            health.set_liveness(true, "running");
        }
    }
}

/// Connects to MySQL, retrying with backoff while it is unreachable (not ready meanwhile); `None`
/// if shutdown came first.
async fn connect_sink(
    args: &EngineConfig,
    health: &Health,
    shutdown: &watch::Receiver<bool>,
) -> anyhow::Result<Option<MySqlSink>> {
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
    loop {
        let delay = match MySqlSink::connect(&args.mysql_url).await {
            Ok(s) => return Ok(Some(s)),
            Err(e) if e.is_transient() => {
                let delay = backoff.next_delay();
                health.set_ready(false, "mysql unreachable");
                tracing::warn!(error = %e, retry_in = ?delay, "mysql unreachable");
                delay
            }
            Err(e) => return Err(e).context("connecting to MySQL"),
        };
        if *shutdown.borrow() {
            return Ok(None);
        }
        tokio::time::sleep(delay).await;
    }
}

/// The engine's connections to the outside world.
struct Io {
    sink: MySqlSink,
    consumer: Arc<EngineConsumer>,
    dlq: DeadLetter,
    late: DeadLetter,
    metrics: EngineMetrics,
    health: Arc<Health>,
    heartbeat: Arc<AtomicI64>,
}

struct Engine {
    args: EngineConfig,
    io: Io,
    decoder: BatchDecoder,
    views: Views,
    parts: HashMap<i32, PartState>,
    partition_count: i32,
    partition_count_at: Option<Instant>,
    summary: EngineSummary,
    seek_gen: Arc<std::sync::atomic::AtomicU64>,
    /// Micro-batches consumed and folded since the last commit.
    pending: Pending,
    /// Partitions being read again one micro-batch per commit after MySQL refused a folded commit,
    /// up to the offset the fold had reached (where the refused rows' trades can be found).
    isolate_until: HashMap<i32, i64>,
    /// Per partition, the offset below which dead letters and too-late trades were routed already
    /// (records read again after a refused commit are not routed twice).
    routed: HashMap<i32, i64>,
    /// The folded commit running on the runtime while the engine reads on (at most one).
    in_flight: Option<InFlight>,
    /// Commits that did not happen (fenced, refused, interrupted): their partitions are read again.
    undone: u64,
    /// Partitions sought back after such a commit, with the offset they had been read to: not
    /// caught up before they are there again (their end-of-partition flag predates the seek, and
    /// librdkafka does not signal the same end twice).
    reread: HashMap<i32, i64>,
}

/// One micro-batch's admission: which raw records are new, and per partition how many (and the
/// gaps the log left before them).
struct Admission {
    accepted: Vec<bool>,
    tally: Tallies,
}

/// Records set aside before the fold: raw index -> reason (validator or MySQL).
type Rejected = Vec<(usize, Reject)>;

impl Engine {
    fn new(args: EngineConfig, io: Io, views: Views) -> Self {
        let policy = Validator {
            future_tolerance_ms: args.future_tolerance.as_millis() as i64,
        };
        Engine {
            decoder: BatchDecoder::new(policy),
            views,
            args,
            io,
            parts: HashMap::new(),
            partition_count: 0,
            partition_count_at: None,
            summary: EngineSummary::default(),
            seek_gen: Arc::default(),
            pending: Pending::default(),
            isolate_until: HashMap::new(),
            routed: HashMap::new(),
            in_flight: None,
            undone: 0,
            reread: HashMap::new(),
        }
    }

    fn run(
        &mut self,
        rt: &Handle,
        shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<EngineSummary> {
        // Attached before any assignment, so every partition's messages go to it.
        let queue = FetchQueue::attach(&self.io.consumer)?;
        if self.args.drain && !self.assign_all(rt, &shutdown)? {
            return Ok(self.summary.clone());
        }
        let poller = Poller::start(
            self.io.consumer.clone(),
            queue,
            self.args.max_batch_rows,
            self.args.max_batch_wait,
            self.args.fault_gather_pause,
        );
        self.seek_gen = poller.seek_gen.clone();
        let result = self.run_loop(rt, &poller, &shutdown);
        poller.stop();
        result?;
        self.summary.audit.log();
        let mismatches = self.summary.audit.mismatches();
        if !mismatches.is_empty() {
            let list: Vec<String> = mismatches.iter().map(|m| m.to_string()).collect();
            anyhow::bail!(
                "offset audit failed: committed offsets and records disagree (records may be missing from MySQL): {}",
                list.join("; ")
            );
        }
        Ok(self.summary.clone())
    }

    fn run_loop(
        &mut self,
        rt: &Handle,
        poller: &Poller,
        shutdown: &watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        // A micro-batch already taken from the poller (to see whether more is waiting).
        let mut waiting: Option<Polled> = None;
        loop {
            self.beat();
            if *shutdown.borrow() {
                self.flush(rt, shutdown)?;
                self.settle(rt, shutdown)?;
                tracing::info!("shutdown: last batch committed, leaving the group");
                return Ok(());
            }
            let polled = match waiting.take() {
                Some(p) => p,
                None => match self.next_batch(rt, poller, shutdown)? {
                    Some(p) => p,
                    None => continue,
                },
            };
            let started = Instant::now();
            let bytes = polled.raw.buf.len() as u64;
            self.summary.largest_batch_bytes = self.summary.largest_batch_bytes.max(bytes);
            let undone = self.undone;
            let caught_up = self.process(rt, &polled, shutdown)?;
            let _ = poller.recycle.try_send(polled.raw);
            waiting = poller.batches.try_recv().ok();
            if caught_up
                || self.pending.is_empty()
                || self.pending.due(
                    waiting.is_some(),
                    self.args.commit_interval,
                    self.args.commit_max_rows,
                )
            {
                self.flush(rt, shutdown)?;
            }
            self.io
                .metrics
                .batch_duration
                .observe(started.elapsed().as_secs_f64());
            self.report_brokers();
            // Caught up only if no commit was undone meanwhile (its records are to be read again).
            if self.args.drain && caught_up && self.settle(rt, shutdown)? && self.undone == undone {
                tracing::info!(
                    "drain: every assigned partition is caught up; marking them drained"
                );
                self.commit_drained(rt, shutdown)?;
                return Ok(());
            }
        }
    }

    /// The next polled micro-batch, or `None` when none came within half a second (stalled
    /// partitions are sought again and the fold is committed meanwhile).
    fn next_batch(
        &mut self,
        rt: &Handle,
        poller: &Poller,
        shutdown: &watch::Receiver<bool>,
    ) -> anyhow::Result<Option<Polled>> {
        match poller.batches.recv_timeout(Duration::from_millis(500)) {
            Ok(p) => Ok(Some(p)),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                self.reseek_stalled();
                self.flush(rt, shutdown)?;
                Ok(None)
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                anyhow::bail!("consumer thread stopped")
            }
        }
    }

    /// Readiness follows the Kafka brokers: not ready while librdkafka reports them all down.
    fn report_brokers(&self) {
        let down = self
            .io
            .consumer
            .context()
            .brokers_down
            .load(Ordering::Relaxed);
        if down {
            self.set_ready(false, "all Kafka brokers down");
        } else {
            self.set_ready(true, "ok");
        }
    }

    fn beat(&self) {
        self.io.heartbeat.store(now_ms(), Ordering::Relaxed);
    }

    fn set_ready(&self, ready: bool, reason: &str) {
        self.io.health.set_ready(ready, reason);
        self.io.metrics.ready.set(ready as i64);
    }

    /// Loads partition `p` from MySQL, retrying transient errors; `false` on shutdown. Where MySQL
    /// holds no offset the partition is read from `base` (what an earlier state of it read from),
    /// else from the log's start as the broker reports it.
    fn load(
        &mut self,
        rt: &Handle,
        p: i32,
        base: Option<i64>,
        shutdown: &watch::Receiver<bool>,
    ) -> anyhow::Result<bool> {
        let (sink, group, topic) = (&self.io.sink, &self.args.group, &self.args.topic);
        let Some(snap) = retry(rt, shutdown, &self.io, "load partition", || {
            sink.load_partition(group, topic, p)
        })?
        else {
            return Ok(false);
        };
        tracing::info!(
            partition = p,
            next_offset = ?snap.next_offset,
            max_event_ms = ?snap.max_event_ms,
            "partition loaded from MySQL"
        );
        let base = match (snap.next_offset, base) {
            (Some(n), _) => {
                self.io.consumer.context().remember_offset(p, n);
                base.unwrap_or(n)
            }
            (None, Some(b)) => b,
            (None, None) => match self.log_start(p, shutdown)? {
                Some(low) => low,
                None => return Ok(false),
            },
        };
        self.parts.insert(p, PartState::loaded(snap, base));
        Ok(true)
    }

    /// The first offset the log of partition `p` holds (the broker's low watermark), retried while
    /// the broker does not answer; `None` on shutdown. A partition MySQL holds no offset for is read
    /// from here, never from the logical beginning: a seek then has a target the first record it
    /// delivers is checked against.
    fn log_start(&self, p: i32, shutdown: &watch::Receiver<bool>) -> anyhow::Result<Option<i64>> {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            self.beat();
            match self
                .io
                .consumer
                .fetch_watermarks(&self.args.topic, p, Duration::from_secs(5))
            {
                Ok((low, _high)) => {
                    tracing::info!(
                        partition = p,
                        log_start = low,
                        "no offset in MySQL: reading from the log's start"
                    );
                    return Ok(Some(low));
                }
                Err(e) => {
                    anyhow::ensure!(
                        Instant::now() < deadline,
                        "cannot read where partition {p} of {} starts: {e}",
                        self.args.topic
                    );
                    tracing::warn!(partition = p, error = %e, "cannot read where the partition's log starts; retrying");
                }
            }
            if *shutdown.borrow() {
                return Ok(None);
            }
            std::thread::sleep(backoff.next_delay());
        }
    }

    /// `--drain`: assigns every partition of the topic directly, each at the offset MySQL holds (the
    /// log's start, as the broker reports it, when it holds none), with no consumer-group join. Several drain replicas may
    /// run at once: each reads every partition, and the offsets' compare-and-set in MySQL fences the
    /// commits that lose a race (the loser reloads and seeks). `false` on shutdown during a load.
    fn assign_all(
        &mut self,
        rt: &Handle,
        shutdown: &watch::Receiver<bool>,
    ) -> anyhow::Result<bool> {
        let Some(partitions) = self.topic_partitions(shutdown)? else {
            return Ok(false);
        };
        let mut tpl = TopicPartitionList::new();
        for &p in &partitions {
            if !self.load(rt, p, None, shutdown)? {
                return Ok(false);
            }
            let Some(st) = self.parts.get(&p) else {
                continue;
            };
            tpl.add_partition_offset(&self.args.topic, p, Offset::Offset(st.next))?;
        }
        let consumer = &self.io.consumer;
        consumer.context().forward_partitions(consumer, &tpl);
        consumer.assign(&tpl)?;
        self.partition_count = partitions.len() as i32;
        self.partition_count_at = Some(Instant::now());
        tracing::info!(
            ?partitions,
            "partitions assigned directly (drain: no group join)"
        );
        Ok(true)
    }

    /// The partitions of the topic from the broker's metadata, retried for up to 30 s while the
    /// topic is missing or has none (it may be being created). `None` on shutdown.
    fn topic_partitions(
        &self,
        shutdown: &watch::Receiver<bool>,
    ) -> anyhow::Result<Option<Vec<i32>>> {
        let topic = &self.args.topic;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            self.beat();
            let found = match self
                .io
                .consumer
                .fetch_metadata(Some(topic), Duration::from_secs(5))
            {
                Ok(md) => md
                    .topics()
                    .iter()
                    .find(|t| t.name() == topic.as_str() && t.error().is_none())
                    .map(|t| t.partitions().iter().map(|p| p.id()).collect::<Vec<i32>>())
                    .unwrap_or_default(),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the topic's metadata");
                    Vec::new()
                }
            };
            if !found.is_empty() {
                let mut found = found;
                found.sort_unstable();
                return Ok(Some(found));
            }
            if *shutdown.borrow() {
                return Ok(None);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "topic {topic} has no partitions (does it exist?)"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Drops partitions no longer assigned and loads newly assigned ones. Returns the assignment,
    /// or `None` on shutdown during a load.
    fn sync_partitions(
        &mut self,
        rt: &Handle,
        raw: &RawBatch,
        shutdown: &watch::Receiver<bool>,
    ) -> anyhow::Result<Option<BTreeSet<i32>>> {
        let assigned: BTreeSet<i32> = self
            .io
            .consumer
            .assignment()
            .map(|tpl| tpl.elements().iter().map(|e| e.partition()).collect())
            .unwrap_or_default();
        let in_batch: BTreeSet<i32> = raw.partitions.iter().copied().collect();
        // A partition revoked with folded records, or in the commit in flight, stays until that
        // commit is taken in: it carries its offsets (the compare-and-set fences it if the new
        // owner committed first), and a reload now would read the pre-commit offset and then take
        // the commit's outcome as its own (records merged twice).
        let pending = &self.pending.partitions;
        let in_flight = self.in_flight.as_ref();
        self.parts.retain(|p, _| {
            assigned.contains(p)
                || in_batch.contains(p)
                || pending.contains(p)
                || in_flight.is_some_and(|f| f.holds(*p))
        });
        for p in assigned.iter().chain(in_batch.iter()) {
            if !self.parts.contains_key(p) && !self.load(rt, *p, None, shutdown)? {
                return Ok(None);
            }
        }
        self.refresh_partition_count();
        Ok(Some(assigned))
    }

    /// The topic's partition count (every 10 s; a partition-count increase is picked up).
    fn refresh_partition_count(&mut self) {
        if self
            .partition_count_at
            .is_some_and(|t| t.elapsed() < Duration::from_secs(10))
        {
            return;
        }
        match self
            .io
            .consumer
            .fetch_metadata(Some(&self.args.topic), Duration::from_secs(5))
        {
            Ok(md) => {
                let n = md
                    .topics()
                    .iter()
                    .find(|t| t.name() == self.args.topic)
                    .map_or(0, |t| t.partitions().len() as i32);
                if n != self.partition_count && n > 0 {
                    tracing::info!(partitions = n, "topic partition count");
                    self.partition_count = n;
                }
                self.partition_count_at = Some(Instant::now());
            }
            Err(e) => tracing::warn!(error = %e, "could not read the topic's partition count"),
        }
        // A partition owned beyond the metadata's count is a count increase not seen yet. While the
        // count is unknown (no metadata answer yet) it stays 0: the partitions owned are not all
        // there are, so nothing is made final on their watermarks alone.
        if self.partition_count > 0 {
            let highest = self.parts.keys().max().map_or(0, |p| p + 1);
            self.partition_count = self.partition_count.max(highest);
        }
    }

    /// Marks which records of `polled` are new (see [`PartState::admit`]), seeks where needed, and
    /// counts per partition the records accepted and the gaps the log left before them.
    fn admit(&mut self, polled: &Polled) -> Admission {
        let raw = &polled.raw;
        for (p, st) in self.parts.iter_mut() {
            st.at_eof = polled.eof.contains(p);
        }
        for &(p, end) in &polled.ends {
            if let Some(st) = self.parts.get_mut(&p) {
                st.reached_end(end);
            }
        }
        let mut accepted = vec![false; raw.len()];
        let mut tally = Tallies::new();
        let now = Instant::now();
        // Messages come in runs of one partition (a fetched batch each): one lookup per run.
        for (p, run) in partition_runs(&raw.partitions) {
            let Some(st) = self.parts.get_mut(&p) else {
                continue;
            };
            let (mut records, mut gaps, mut seek) = (0u64, 0u64, None);
            for i in run.clone() {
                match st.admit(raw.offsets[i], polled.gen) {
                    Admit::Accept { gap } => {
                        accepted[i] = true;
                        st.last_activity = now;
                        records += 1;
                        if gap > 0 {
                            gaps += gap;
                            let from = raw.offsets[i] - gap as i64;
                            tracing::warn!(
                                partition = p,
                                from,
                                to = raw.offsets[i],
                                "offset gap in the log (control records or compaction); counted"
                            );
                        }
                    }
                    Admit::Skip => {}
                    Admit::SeekTo(n) => {
                        // The rest of the run is skipped: the seek delivers it again from `n`.
                        seek = Some((n, raw.offsets[i]));
                        break;
                    }
                }
            }
            tracing::trace!(
                partition = p,
                first = raw.offsets[run.start],
                last = raw.offsets[run.end - 1],
                accepted = records,
                gen = polled.gen,
                "admitted a run"
            );
            if let Some((to, served)) = seek {
                gaps += self.seek_to(p, to, served);
            }
            if records > 0 || gaps > 0 {
                let t = tally.entry(p).or_default();
                t.records += records;
                t.gaps += gaps;
            }
        }
        self.retry_failed_seeks();
        Admission { accepted, tally }
    }

    /// Seeks partition `p` to `to` because the consumer delivered `served` instead. When the log no
    /// longer holds `to` (retention removed records never read), reading goes on from the log's
    /// start instead; returns the offsets so skipped, a gap for the audit.
    fn seek_to(&mut self, p: i32, to: i64, served: i64) -> u64 {
        let mut gap = 0;
        let mut to = to;
        if served > to {
            if let Ok((low, _)) =
                self.io
                    .consumer
                    .fetch_watermarks(&self.args.topic, p, Duration::from_secs(5))
            {
                if low > to {
                    if let Some(st) = self.parts.get_mut(&p) {
                        gap = st.skip_deleted(low);
                        to = st.next;
                    }
                    tracing::error!(partition = p, from = to - gap as i64, to, "records removed from the log before they were read (retention); counted as a gap");
                }
            }
        }
        self.seek_partition(p, to);
        gap
    }

    /// Issues again the seeks whose call failed (once per micro-batch).
    fn retry_failed_seeks(&mut self) {
        let failed: Vec<(i32, i64)> = self
            .parts
            .iter()
            .filter_map(|(p, st)| st.seek_to_retry().map(|to| (*p, to)))
            .collect();
        for (p, to) in failed {
            self.seek_partition(p, to);
        }
    }

    /// Processes one polled batch. Returns whether every assigned partition is caught up.
    fn process(
        &mut self,
        rt: &Handle,
        polled: &Polled,
        shutdown: &watch::Receiver<bool>,
    ) -> anyhow::Result<bool> {
        let raw = &polled.raw;
        let commit_each = self.args.commit_interval.is_zero() || !self.isolate_until.is_empty();
        if commit_each {
            // Before admitting anything: a refused or fenced commit seeks partitions back.
            self.flush(rt, shutdown)?;
            self.settle(rt, shutdown)?;
        }
        let Some(assigned) = self.sync_partitions(rt, raw, shutdown)? else {
            return Ok(false);
        };
        let Admission {
            accepted,
            mut tally,
        } = self.admit(polled);
        let records = accepted.iter().filter(|a| **a).count();
        self.io.metrics.records_in.inc_by(records as u64);
        self.summary.records += records as u64;

        let decoded = self.decoder.decode(raw, now_ms(), &|i| !accepted[i])?;
        self.io
            .metrics
            .decoded
            .inc_by(decoded.batch.num_rows() as u64);
        // Partitions with records (or counted gaps) in this batch: their offsets advance.
        let in_batch: BTreeSet<i32> = tally.keys().copied().collect();
        let sources = decoded.source.iter().map(|&i| i as usize);
        audit::count_by_partition(&mut tally, raw, sources, |t| &mut t.trades);
        let invalid = decoded.rejects.iter().map(|(i, _)| *i as usize);
        audit::count_by_partition(&mut tally, raw, invalid, |t| &mut t.dead_lettered);
        let rejected = self.rejects_to_route(raw, &decoded);
        if commit_each {
            self.commit_batch(rt, polled, &decoded, rejected, tally, shutdown)?;
            self.end_isolation();
        } else {
            self.fold_batch(rt, polled, &decoded, &rejected, &in_batch, tally)?;
        }
        self.remember_routed(raw, &accepted);
        self.reseek_stalled();
        Ok(self.caught_up(polled, &assigned))
    }

    /// The rejects of `decoded` still to dead-letter: records read again after a refused commit
    /// were routed already.
    fn rejects_to_route(&self, raw: &RawBatch, decoded: &Decoded) -> Rejected {
        let routed = |i: usize| {
            self.routed
                .get(&raw.partitions[i])
                .is_some_and(|&o| raw.offsets[i] < o)
        };
        decoded
            .rejects
            .iter()
            .map(|(i, r)| (*i as usize, r.clone()))
            .filter(|(i, _)| !routed(*i))
            .collect()
    }

    /// Records how far each partition's accepted records have been routed (dead-lettered or sent
    /// to the late topic), so that a re-read after a refused commit does not route them twice.
    fn remember_routed(&mut self, raw: &RawBatch, accepted: &[bool]) {
        for (p, run) in partition_runs(&raw.partitions) {
            let last = run
                .filter(|&i| accepted[i])
                .map(|i| raw.offsets[i] + 1)
                .max();
            if let Some(next) = last {
                let o = self.routed.entry(p).or_insert(0);
                *o = (*o).max(next);
            }
        }
    }

    /// Whether every assigned partition is caught up: the poll came back empty at the end of each
    /// of them, and no partition is still being read again up to where it had been.
    fn caught_up(&mut self, polled: &Polled, assigned: &BTreeSet<i32>) -> bool {
        let parts = &self.parts;
        self.reread
            .retain(|p, until| parts.get(p).is_some_and(|st| st.next < *until));
        !assigned.is_empty()
            && polled.raw.is_empty()
            && self.reread.is_empty()
            && assigned.iter().all(|p| polled.eof.contains(p))
    }

    /// Aggregates the valid rows of `decoded` (minus `excluded` raw indices) into each view's
    /// contribution, judging lateness per partition from the committed clocks. Pure: the engine's
    /// state is unchanged.
    fn plan(
        &self,
        raw: &RawBatch,
        decoded: &Decoded,
        excluded: &HashSet<usize>,
        order: RowOrder,
    ) -> anyhow::Result<BatchPlan> {
        let origins = Origins {
            source: &decoded.source,
            partitions: &raw.partitions,
            offsets: &raw.offsets,
            timestamps: &raw.timestamps,
        };
        // Partitions advance from the folded, uncommitted micro-batches' clocks.
        let clock = |p: i32| {
            let st = self.parts.get(&p)?;
            Some(self.pending.clocks.get(&p).copied().unwrap_or(st.clock))
        };
        Ok(self
            .views
            .plan(decoded, &origins, clock, excluded, now_ms(), order)?)
    }

    /// Seeks partition `p` to `to` (its state records the seek, or that the call failed, in which
    /// case it is issued again with the next micro-batch).
    pub(super) fn seek_partition(&mut self, p: i32, to: i64) {
        let Some(st) = self.parts.get_mut(&p) else {
            return;
        };
        let offset = Offset::Offset(to);
        match self
            .io
            .consumer
            .seek(&self.args.topic, p, offset, Duration::from_secs(5))
        {
            Ok(()) => {
                let gen = self.seek_gen.fetch_add(1, Ordering::AcqRel) + 1;
                st.sought(to, gen);
                tracing::info!(partition = p, offset = to, "sought");
            }
            Err(e) => {
                st.seek_failed(to);
                tracing::warn!(partition = p, offset = to, error = %e, "seek failed; only that offset is accepted until it is issued again");
            }
        }
    }

    /// Seeks again the partitions sought back to be read again whose records have not come for
    /// 5 s: a safety net, so that a seek librdkafka does not act on cannot leave a drain waiting for
    /// records that never come (seen with seeks to the log's logical beginning, which the engine no
    /// longer issues for partitions it has read).
    fn reseek_stalled(&mut self) {
        let stalled: Vec<i32> = self
            .reread
            .keys()
            .copied()
            .filter(|p| {
                self.parts.get(p).is_some_and(|st| {
                    st.seeking_to(st.next)
                        && st
                            .sought_at
                            .is_some_and(|t| t.elapsed() >= Duration::from_secs(5))
                })
            })
            .collect();
        for p in stalled {
            tracing::warn!(
                partition = p,
                "nothing read 5 s after seeking back; seeking again"
            );
            if let Some(to) = self.parts.get(&p).map(|st| st.next) {
                self.seek_partition(p, to);
            }
        }
    }
}

/// The runs of equal partitions in `partitions`: each partition with the index range of its run.
fn partition_runs(partitions: &[i32]) -> impl Iterator<Item = (i32, std::ops::Range<usize>)> + '_ {
    let mut from = 0;
    std::iter::from_fn(move || {
        let &p = partitions.get(from)?;
        let len = partitions[from..].iter().take_while(|&&q| q == p).count();
        let run = from..from + len;
        from += len;
        Some((p, run))
    })
}

#[cfg(test)]
mod tests {
    use super::partition_runs;

    #[test]
    fn partition_runs_cover_every_index_once_in_order() {
        let parts = [3, 3, 1, 1, 1, 3, 2];
        let runs: Vec<(i32, std::ops::Range<usize>)> = partition_runs(&parts).collect();
        assert_eq!(runs, vec![(3, 0..2), (1, 2..5), (3, 5..6), (2, 6..7)]);
        assert_eq!(partition_runs(&[]).count(), 0);
    }
}
