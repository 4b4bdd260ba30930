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
use futures_util::future::join_all;
use prometheus::Registry;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::runtime::Handle;
use tokio::sync::watch;
use tradewind_kafka::DeadLetter;
use tradewind_model::{now_ms, Reject, Validator};
use tradewind_sink::{
    Commit, CommitOutcome, MergeTable, MySqlSink, PartitionProgress, PartitionStatus, SinkError,
};
use tradewind_telemetry::{Backoff, Health};

use crate::consumer::{EngineConsumer, EngineContext, FetchQueue, Polled, Poller};
use crate::decode::{BatchDecoder, Decoded};
use crate::metrics::EngineMetrics;
use crate::partition::{Admit, PartState, Seek};
use crate::pending::Pending;
use crate::raw::RawBatch;
use crate::views::{BatchPlan, Lateness, Origins, Views};
use crate::EngineConfig;

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
    let views = Views::new(
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
    // The run's own options (in-process runs and tests have no process-wide ones).
    let options = tradewind_kafka::ClientOptions::parse(&args.kafka_options, None)?;
    let mut producer_config = tradewind_kafka::producer_config(&args.brokers);
    let mut config = tradewind_kafka::consumer_config(&args.brokers, &args.group);
    options.apply(&mut producer_config);
    options.apply(&mut config);
    // Created on the first dead letter or late trade: an idle producer costs a polling thread.
    let producer = tradewind_kafka::LazyProducer::new(producer_config);
    let context = EngineContext::new(&args.topic, metrics.consumer_lag.clone());
    let consumer: EngineConsumer = config.create_with_context(context)?;
    let consumer = Arc::new(consumer);
    // Live mode joins the group (replicas split the partitions); `--drain` assigns every partition
    // directly once it has loaded their offsets from MySQL (Engine::assign_all): no group join.
    if !args.drain {
        consumer.subscribe(&[args.topic.as_str()])?;
    }
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

/// A commit of folded micro-batches, running on the runtime while the engine reads and folds the
/// next ones. Its outcome is taken in ([`Engine::settle`]) before the next commit starts, so commits
/// stay in order and each one expects the offsets the previous one wrote.
struct InFlight {
    /// The commit: its outcome and when it finished.
    task: tokio::task::JoinHandle<(anyhow::Result<Option<CommitOutcome>>, Instant)>,
    plan: BatchPlan,
    progress: Vec<PartitionProgress>,
    /// Partitions with records in the commit.
    partitions: BTreeSet<i32>,
    polled_at: Instant,
    started: Instant,
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
        );
        self.seek_gen = poller.seek_gen.clone();
        let result = self.run_loop(rt, &poller, &shutdown);
        poller.stop();
        result.map(|()| self.summary.clone())
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
                None => match poller.batches.recv_timeout(Duration::from_millis(500)) {
                    Ok(p) => p,
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                        self.flush(rt, shutdown)?;
                        continue;
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                        anyhow::bail!("consumer thread stopped")
                    }
                },
            };
            let started = Instant::now();
            let undone = self.undone;
            let caught_up = self.process(rt, &polled, shutdown)?;
            let _ = poller.recycle.try_send(polled.raw);
            waiting = poller.batches.try_recv().ok();
            if caught_up
                || self.pending.is_empty()
                || self
                    .pending
                    .due(waiting.is_some(), self.args.commit_interval)
            {
                self.flush(rt, shutdown)?;
            }
            self.io
                .metrics
                .batch_duration
                .observe(started.elapsed().as_secs_f64());
            if self
                .io
                .consumer
                .context()
                .brokers_down
                .load(Ordering::Relaxed)
            {
                self.set_ready(false, "all Kafka brokers down");
            } else {
                self.set_ready(true, "ok");
            }
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

    fn beat(&self) {
        self.io.heartbeat.store(now_ms(), Ordering::Relaxed);
    }

    fn set_ready(&self, ready: bool, reason: &str) {
        self.io.health.set_ready(ready, reason);
        self.io.metrics.ready.set(ready as i64);
    }

    /// Loads partition `p` from MySQL, retrying transient errors; `false` on shutdown.
    fn load(
        &mut self,
        rt: &Handle,
        p: i32,
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
        if let Some(n) = snap.next_offset {
            self.io.consumer.context().remember_offset(p, n);
        }
        self.parts.insert(p, PartState::loaded(snap));
        Ok(true)
    }

    /// `--drain`: assigns every partition of the topic directly, each at the offset MySQL holds (the
    /// log's beginning when it holds none), with no consumer-group join. Several drain replicas may
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
            if !self.load(rt, p, shutdown)? {
                return Ok(false);
            }
            let start = self
                .parts
                .get(&p)
                .and_then(|st| st.committed)
                .map_or(Offset::Beginning, Offset::Offset);
            tpl.add_partition_offset(&self.args.topic, p, start)?;
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
        // A partition revoked with folded records stays until the next commit, which carries its
        // offsets (the compare-and-set fences it if the new owner committed first).
        let pending = &self.pending.partitions;
        self.parts
            .retain(|p, _| assigned.contains(p) || in_batch.contains(p) || pending.contains(p));
        for p in assigned.iter().chain(in_batch.iter()) {
            if !self.parts.contains_key(p) && !self.load(rt, *p, shutdown)? {
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
        let highest = self.parts.keys().max().map_or(0, |p| p + 1);
        self.partition_count = self.partition_count.max(highest);
    }

    /// Marks which records of `polled` are new (see [`PartState::admit`]) and seeks where needed.
    fn admit(&mut self, polled: &Polled) -> Vec<bool> {
        let raw = &polled.raw;
        for (p, st) in self.parts.iter_mut() {
            st.at_eof = polled.eof.contains(p);
        }
        let mut accepted = vec![false; raw.len()];
        let now = Instant::now();
        for (i, keep) in accepted.iter_mut().enumerate() {
            let (p, o) = (raw.partitions[i], raw.offsets[i]);
            let Some(st) = self.parts.get_mut(&p) else {
                continue;
            };
            match st.admit(o, polled.gen) {
                Admit::Accept => {
                    *keep = true;
                    st.last_activity = now;
                }
                Admit::Skip => {}
                Admit::SkipAndSeek(n) => {
                    let gen = seek(
                        &self.io.consumer,
                        &self.seek_gen,
                        &self.args.topic,
                        p,
                        Offset::Offset(n),
                    );
                    st.seek = Seek::Pending { gen };
                }
            }
        }
        accepted
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
        let accepted = self.admit(polled);
        let records = accepted.iter().filter(|a| **a).count();
        self.io.metrics.records_in.inc_by(records as u64);
        self.summary.records += records as u64;

        let decoded = self.decoder.decode(raw, now_ms(), &|i| !accepted[i])?;
        self.io
            .metrics
            .decoded
            .inc_by(decoded.batch.num_rows() as u64);
        let in_batch: BTreeSet<i32> = (0..raw.len())
            .filter(|&i| accepted[i])
            .map(|i| raw.partitions[i])
            .collect();
        // Records read again after a refused commit were routed already.
        let routed = |i: usize| {
            self.routed
                .get(&raw.partitions[i])
                .is_some_and(|&o| raw.offsets[i] < o)
        };
        let rejected: Rejected = decoded
            .rejects
            .iter()
            .map(|(i, r)| (*i as usize, r.clone()))
            .filter(|(i, _)| !routed(*i))
            .collect();
        if commit_each {
            self.commit_batch(rt, polled, &decoded, rejected, &in_batch, shutdown)?;
            self.end_isolation();
        } else {
            self.fold_batch(rt, polled, &decoded, &rejected, &in_batch)?;
        }
        for (i, &p) in raw.partitions.iter().enumerate() {
            if accepted[i] {
                let o = self.routed.entry(p).or_insert(0);
                *o = (*o).max(raw.offsets[i] + 1);
            }
        }
        let parts = &self.parts;
        self.reread.retain(|p, until| {
            parts
                .get(p)
                .is_some_and(|st| st.next.is_none_or(|n| n < *until))
        });
        let caught_up = !assigned.is_empty()
            && raw.is_empty()
            && self.reread.is_empty()
            && assigned.iter().all(|p| polled.eof.contains(p));
        Ok(caught_up)
    }

    /// Aggregates the valid rows of `decoded` (minus `excluded` raw indices) into each view's
    /// contribution, judging lateness per partition from the committed clocks. Pure: the engine's
    /// state is unchanged.
    fn plan(
        &self,
        raw: &RawBatch,
        decoded: &Decoded,
        excluded: &HashSet<usize>,
    ) -> anyhow::Result<BatchPlan> {
        let origins = Origins {
            source: &decoded.source,
            partitions: &raw.partitions,
            offsets: &raw.offsets,
        };
        // Partitions advance from the folded, uncommitted micro-batches' clocks.
        let clock = |p: i32| {
            let st = self.parts.get(&p)?;
            Some(self.pending.clocks.get(&p).copied().unwrap_or(st.clock))
        };
        Ok(self
            .views
            .plan(decoded, &origins, clock, excluded, now_ms())?)
    }

    /// Plans one batch, routes its side outputs and folds its contributions into the pending commit.
    fn fold_batch(
        &mut self,
        rt: &Handle,
        polled: &Polled,
        decoded: &Decoded,
        rejected: &[(usize, Reject)],
        in_batch: &BTreeSet<i32>,
    ) -> anyhow::Result<()> {
        let raw = &polled.raw;
        let plan = self.plan(raw, decoded, &HashSet::new())?;
        self.route_rejects(rt, raw, rejected)?;
        let fresh: Vec<&(usize, i64, Vec<usize>)> = self.not_routed(raw, &plan.too_late);
        self.route_too_late(rt, raw, &fresh)?;
        if in_batch.is_empty() {
            return Ok(());
        }
        self.pending
            .fold(&self.views, plan, in_batch, polled.at, now_ms())
    }

    /// The too-late trades of `late` not routed before (records read again after a refused commit).
    fn not_routed<'a>(
        &self,
        raw: &RawBatch,
        late: &'a [(usize, i64, Vec<usize>)],
    ) -> Vec<&'a (usize, i64, Vec<usize>)> {
        late.iter()
            .filter(|(i, _, _)| {
                self.routed
                    .get(&raw.partitions[*i])
                    .is_none_or(|&o| raw.offsets[*i] >= o)
            })
            .collect()
    }

    /// Starts the commit of the folded micro-batches (and status changes) in one transaction, on
    /// the runtime, after taking in the outcome of the previous one. The engine reads on meanwhile.
    fn flush(&mut self, rt: &Handle, shutdown: &watch::Receiver<bool>) -> anyhow::Result<()> {
        self.settle(rt, shutdown)?;
        let polled_at = self.pending.since().unwrap_or_else(Instant::now);
        let plan = self.pending.take(&self.views, now_ms())?;
        let partitions = std::mem::take(&mut self.pending.partitions);
        self.pending.clear();
        // The next fold judges lateness from where this one left the clocks, not from the
        // committed ones (this commit is not applied until it is settled).
        self.pending.clocks = plan.clocks.clone();
        let progress = self.progress(&plan, &partitions, None);
        if progress.is_empty() {
            return Ok(());
        }
        let sink = self.io.sink.clone();
        let tables = self.views.tables().to_vec();
        let batches = plan.batches.clone();
        let (group, topic) = (self.args.group.clone(), self.args.topic.clone());
        let partition_count = self.partition_count;
        let partitions_c = progress.clone();
        let (io, stop) = (self.io.retry_io(), shutdown.clone());
        let task = rt.spawn(async move {
            let merges: Vec<(&MergeTable, &arrow_array::RecordBatch)> =
                tables.iter().zip(batches.iter()).collect();
            let c = Commit {
                group: &group,
                topic: &topic,
                partition_count,
                partitions: &partitions_c,
                merges: &merges,
            };
            let result = retry_async(stop, io, "sink commit", || sink.commit(&c)).await;
            (result, Instant::now())
        });
        self.in_flight = Some(InFlight {
            task,
            plan,
            progress,
            partitions,
            polled_at,
            started: Instant::now(),
        });
        Ok(())
    }

    /// Waits for the commit in flight, if any, and takes its outcome in. `false` when it did not
    /// commit: its partitions were reloaded (fenced) or are read again one micro-batch per commit
    /// (MySQL refused a value), and the micro-batches folded since are dropped and read again.
    fn settle(&mut self, rt: &Handle, shutdown: &watch::Receiver<bool>) -> anyhow::Result<bool> {
        let Some(f) = self.in_flight.take() else {
            return Ok(true);
        };
        let (result, done_at) = rt.block_on(f.task).context("the commit task failed")?;
        self.io
            .metrics
            .sink_duration
            .observe((done_at - f.started).as_secs_f64());
        match self.committed(rt, shutdown, result, &f.progress, f.polled_at, done_at)? {
            Committed::Done => {
                self.apply(&f.plan, &f.progress);
                return Ok(true);
            }
            Committed::Interrupted | Committed::Fenced => {}
            Committed::DataError(e) => {
                self.summary.refused_folds += 1;
                tracing::warn!(error = %e, partitions = ?f.partitions, "MySQL refused values of a folded commit; reading its partitions again one micro-batch per commit to isolate the rows");
                for p in f.partitions {
                    // Up to where this partition was read (the fold since included).
                    if let Some(n) = self.parts.get(&p).and_then(|st| st.next) {
                        self.isolate_until.insert(p, n);
                    }
                    self.rewind(p);
                }
            }
        }
        self.undone += 1;
        // What was folded since built on the commit that did not happen.
        let since = std::mem::take(&mut self.pending.partitions);
        self.pending.clear();
        for p in since {
            self.rewind(p);
        }
        Ok(false)
    }

    /// Reads partition `p` again from its committed offset.
    fn rewind(&mut self, p: i32) {
        if let Some(st) = self.parts.get_mut(&p) {
            if let Some(n) = st.next {
                let until = self.reread.entry(p).or_insert(n);
                *until = (*until).max(n);
            }
            st.next = st.committed;
            self.seek_loaded(p);
        }
    }

    /// Ends the one-micro-batch-per-commit reading of partitions that are past the refused fold.
    fn end_isolation(&mut self) {
        let parts = &self.parts;
        self.isolate_until.retain(|p, until| {
            parts
                .get(p)
                .is_some_and(|st| st.committed.is_none_or(|c| c < *until))
        });
    }

    /// Plans, routes side outputs and commits one batch; on a MySQL data error, sets the trades
    /// behind the refused rows aside (dead-letter topic, reason `mysql_<code>`) and tries again.
    fn commit_batch(
        &mut self,
        rt: &Handle,
        polled: &Polled,
        decoded: &Decoded,
        mut rejected: Rejected,
        in_batch: &BTreeSet<i32>,
        shutdown: &watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let raw = &polled.raw;
        let mut excluded: HashSet<usize> = HashSet::new();
        let mut sent_dlq = 0usize;
        let mut sent_late: HashSet<usize> = HashSet::new();
        loop {
            let plan = self.plan(raw, decoded, &excluded)?;
            self.route_rejects(rt, raw, &rejected[sent_dlq..])?;
            sent_dlq = rejected.len();
            let fresh: Vec<&(usize, i64, Vec<usize>)> = self
                .not_routed(raw, &plan.too_late)
                .into_iter()
                .filter(|(i, _, _)| !sent_late.contains(i))
                .collect();
            self.route_too_late(rt, raw, &fresh)?;
            sent_late.extend(fresh.iter().map(|(i, _, _)| *i));
            let progress = self.progress(&plan, in_batch, None);
            if progress.is_empty() {
                return Ok(());
            }
            let batches = &plan.batches;
            match self.commit(rt, shutdown, &progress, batches, polled.at)? {
                Committed::Done => {
                    self.apply(&plan, &progress);
                    return Ok(());
                }
                Committed::Interrupted | Committed::Fenced => return Ok(()),
                Committed::DataError(e) => {
                    let bad =
                        self.find_bad_trades(rt, shutdown, decoded, &excluded, batches, &e)?;
                    if bad.is_empty() {
                        return Err(anyhow::Error::new(e)
                            .context("MySQL refused the commit and no single row reproduces it"));
                    }
                    for (i, r) in bad {
                        excluded.insert(i);
                        rejected.push((i, r));
                    }
                }
            }
        }
    }

    /// The partitions to advance in this commit: those with new records, those whose status in the
    /// low watermark changes (idle, drained), and idle ones never committed (so they count).
    fn progress(
        &self,
        plan: &BatchPlan,
        in_batch: &BTreeSet<i32>,
        force: Option<PartitionStatus>,
    ) -> Vec<PartitionProgress> {
        let ooo = self.args.out_of_orderness.as_millis() as i64;
        let mut out = Vec::new();
        let mut ids: Vec<&i32> = self.parts.keys().collect();
        ids.sort_unstable();
        for p in ids {
            let st = &self.parts[p];
            let status = force.unwrap_or_else(|| st.desired_status(self.args.idle_timeout));
            let advanced = in_batch.contains(p) && st.next != st.committed;
            if !advanced && st.status == Some(status) {
                continue;
            }
            if !advanced && st.committed.is_none() && status == PartitionStatus::Active {
                continue; // nothing to say yet about a partition that delivered nothing
            }
            let clock = plan.clocks.get(p).copied().unwrap_or(st.clock);
            out.push(PartitionProgress {
                partition: *p,
                expected_offset: st.committed,
                next_offset: st.next.or(st.committed).unwrap_or(0),
                max_event_ms: clock.max_event_ms,
                watermark_ms: clock.watermark(ooo),
                status,
            });
        }
        out
    }

    /// Takes a committed batch's effects into the engine's state.
    fn apply(&mut self, plan: &BatchPlan, progress: &[PartitionProgress]) {
        let mut tpl = TopicPartitionList::new();
        for pp in progress {
            if let Some(st) = self.parts.get_mut(&pp.partition) {
                st.committed = Some(pp.next_offset);
                // Records read since (folded for the next commit) keep `next` ahead.
                if st.next.is_none_or(|n| n < pp.next_offset) {
                    st.next = Some(pp.next_offset);
                }
                st.status = Some(pp.status);
                if let Some(c) = plan.clocks.get(&pp.partition) {
                    st.clock = *c;
                }
            }
            self.io
                .consumer
                .context()
                .remember_offset(pp.partition, pp.next_offset);
            let _ = tpl.add_partition_offset(
                &self.args.topic,
                pp.partition,
                Offset::Offset(pp.next_offset),
            );
        }
        if let Err(e) = self.io.consumer.commit(&tpl, CommitMode::Async) {
            tracing::debug!(error = %e, "kafka offset commit (lag tooling only) failed");
        }
        let m = &self.io.metrics;
        self.summary.trades += plan.trades;
        self.summary.corrected += plan.corrected;
        m.late
            .with_label_values(&["corrected"])
            .inc_by(plan.corrected);
        for (table, b) in self.views.tables().iter().zip(&plan.batches) {
            let rows = b.num_rows() as u64;
            m.rows_written
                .with_label_values(&[&table.name])
                .inc_by(rows);
            self.summary.rows_written += rows;
            let corrections = b
                .column_by_name("revision")
                .and_then(|c| {
                    arrow_array::cast::AsArray::as_primitive_opt::<arrow_array::types::Int64Type>(
                        c.as_ref(),
                    )
                })
                .map_or(0, |r| r.values().iter().filter(|v| **v > 0).count() as u64);
            let emitted = |kind: &str| m.windows_emitted.with_label_values(&[&table.name, kind]);
            emitted("correction").inc_by(corrections);
            emitted("provisional").inc_by(rows - corrections);
        }
    }

    /// Sends validator and MySQL rejects to the dead-letter topic (awaited: at-least-once).
    fn route_rejects(
        &mut self,
        rt: &Handle,
        raw: &RawBatch,
        rejects: &[(usize, Reject)],
    ) -> anyhow::Result<()> {
        if rejects.is_empty() {
            return Ok(());
        }
        let topic = &self.args.topic;
        let sends = rejects.iter().map(|(i, r)| {
            self.io
                .metrics
                .rejected
                .with_label_values(&[r.kind.label()])
                .inc();
            let origin = format!("{topic}/{}/{}", raw.partitions[*i], raw.offsets[*i]);
            let dlq = &self.io.dlq;
            async move {
                dlq.send(raw.key(*i), raw.payload(*i), r, "engine", Some(&origin))
                    .await
            }
        });
        for r in rt.block_on(join_all(sends)) {
            r.context("writing to the dead-letter topic")?;
        }
        self.summary.rejected += rejects.len() as u64;
        Ok(())
    }

    /// Sends too-late trades, unchanged, to the late topic (awaited: at-least-once).
    fn route_too_late(
        &mut self,
        rt: &Handle,
        raw: &RawBatch,
        late: &[&(usize, i64, Vec<usize>)],
    ) -> anyhow::Result<()> {
        if late.is_empty() {
            return Ok(());
        }
        let topic = &self.args.topic;
        let allowed = self.args.allowed_lateness.as_millis();
        let tables = self.views.tables();
        let sends = late.iter().map(|&&(i, w, ref refused)| {
            let origin = format!("{topic}/{}/{}", raw.partitions[i], raw.offsets[i]);
            let names: Vec<&str> = refused
                .iter()
                .filter_map(|v| tables.get(*v).map(|t| t.name.as_str()))
                .collect();
            let detail = format!(
                "window closed beyond allowed lateness ({allowed} ms) of partition watermark {w} in: {}",
                names.join(", ")
            );
            let late = &self.io.late;
            async move {
                late.send_labelled(
                    raw.key(i),
                    raw.payload(i),
                    "too_late",
                    &detail,
                    "engine",
                    Some(&origin),
                )
                .await
            }
        });
        for r in rt.block_on(join_all(sends)) {
            r.context("writing to the late-trades topic")?;
        }
        self.io
            .metrics
            .late
            .with_label_values(&["routed"])
            .inc_by(late.len() as u64);
        self.summary.too_late += late.len() as u64;
        Ok(())
    }

    /// Finds the trades behind the contribution rows MySQL refuses (probing each view's table),
    /// with the MySQL error as their reason.
    fn find_bad_trades(
        &mut self,
        rt: &Handle,
        shutdown: &watch::Receiver<bool>,
        decoded: &Decoded,
        excluded: &HashSet<usize>,
        batches: &[arrow_array::RecordBatch],
        error: &SinkError,
    ) -> anyhow::Result<Vec<(usize, Reject)>> {
        tracing::warn!(error = %error, "MySQL refused values of this batch; isolating the rows");
        let mut out: Vec<(usize, Reject)> = Vec::new();
        let mut seen: HashSet<usize> = HashSet::new();
        for (v, (table, batch)) in self.views.tables().iter().zip(batches).enumerate() {
            let sink = &self.io.sink;
            let Some(bad) = retry(rt, shutdown, &self.io, "probe rows", || {
                sink.find_bad_rows(table, batch)
            })?
            else {
                return Ok(Vec::new());
            };
            for b in bad {
                let reason = Reject::new(
                    tradewind_model::RejectKind::Storage,
                    format!("MySQL error {} on `{}`: {}", b.code, table.name, b.message),
                );
                let trades = self.views.trades_of_row(v, batch, b.row, decoded, excluded);
                tracing::warn!(table = %table.name, row = b.row, trades = trades.len(), code = b.code, message = %b.message, "row refused by MySQL; its trades go to the dead-letter topic");
                for i in trades {
                    if seen.insert(i) {
                        out.push((i, reason.clone()));
                    }
                }
            }
        }
        Ok(out)
    }

    /// At the end of a drain: every assigned partition is committed as drained.
    fn commit_drained(
        &mut self,
        rt: &Handle,
        shutdown: &watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        self.settle(rt, shutdown)?;
        let plan = BatchPlan {
            batches: self.views.empty_batches(),
            ..BatchPlan::default()
        };
        let progress = self.progress(&plan, &BTreeSet::new(), Some(PartitionStatus::Drained));
        if progress.is_empty() {
            return Ok(());
        }
        if let Committed::Done =
            self.commit(rt, shutdown, &progress, &plan.batches, Instant::now())?
        {
            self.apply(&plan, &progress);
        }
        Ok(())
    }

    /// Commits one batch's contributions and progress, retrying transient errors.
    fn commit(
        &mut self,
        rt: &Handle,
        shutdown: &watch::Receiver<bool>,
        progress: &[PartitionProgress],
        batches: &[arrow_array::RecordBatch],
        polled_at: Instant,
    ) -> anyhow::Result<Committed> {
        let merges: Vec<(&MergeTable, &arrow_array::RecordBatch)> =
            self.views.tables().iter().zip(batches.iter()).collect();
        let c = Commit {
            group: &self.args.group,
            topic: &self.args.topic,
            partition_count: self.partition_count,
            partitions: progress,
            merges: &merges,
        };
        let started = Instant::now();
        let sink = &self.io.sink;
        let result = retry(rt, shutdown, &self.io, "sink commit", || sink.commit(&c));
        self.io
            .metrics
            .sink_duration
            .observe(started.elapsed().as_secs_f64());
        self.committed(rt, shutdown, result, progress, polled_at, Instant::now())
    }

    /// Takes the outcome of a commit attempt (finished at `done_at`) into the engine's state: counts
    /// and metrics when it committed, reloads when it was fenced.
    fn committed(
        &mut self,
        rt: &Handle,
        shutdown: &watch::Receiver<bool>,
        result: anyhow::Result<Option<CommitOutcome>>,
        progress: &[PartitionProgress],
        polled_at: Instant,
        done_at: Instant,
    ) -> anyhow::Result<Committed> {
        let outcome = match result {
            Ok(o) => o,
            Err(e) => match e.downcast::<SinkError>() {
                Ok(se) if se.is_data_error() => return Ok(Committed::DataError(se)),
                Ok(se) => return Err(anyhow::Error::new(se).context("sink commit")),
                Err(e) => return Err(e),
            },
        };
        match outcome {
            None => Ok(Committed::Interrupted),
            Some(CommitOutcome::Committed {
                finalized,
                low_watermark,
                ..
            }) => {
                self.summary.commits += 1;
                self.summary.rows_finalized += finalized;
                self.after_commit(finalized, low_watermark, done_at - polled_at);
                Ok(Committed::Done)
            }
            Some(CommitOutcome::Fenced { partitions }) => {
                self.summary.fenced += 1;
                self.undone += 1;
                tracing::warn!(
                    ?partitions,
                    "commit fenced: another replica committed these partitions; reloading"
                );
                // The whole transaction was rolled back: every partition in it reloads.
                for pp in progress {
                    let read_to = self.parts.get(&pp.partition).and_then(|st| st.next);
                    if let Some(n) = read_to {
                        let until = self.reread.entry(pp.partition).or_insert(n);
                        *until = (*until).max(n);
                    }
                    self.parts.remove(&pp.partition);
                    if self.load(rt, pp.partition, shutdown)? {
                        self.seek_loaded(pp.partition);
                    }
                }
                Ok(Committed::Fenced)
            }
        }
    }

    /// Metrics, fault injection and readiness after a successful commit.
    fn after_commit(&mut self, finalized: u64, low_watermark: Option<i64>, latency: Duration) {
        self.set_ready(true, "ok");
        if self.args.fault_abort_after_commits == Some(self.summary.commits) {
            tracing::error!("fault injection: aborting after MySQL commit, before Kafka commit");
            std::process::abort();
        }
        if self.args.fault_stall_after_commits == Some(self.summary.commits) {
            tracing::error!("fault injection: engine loop stalls");
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        let m = &self.io.metrics;
        let latency = latency.as_secs_f64();
        for _ in 0..finalized.min(10_000) {
            m.final_to_commit.observe(latency);
        }
        m.windows_emitted
            .with_label_values(&["any", "final"])
            .inc_by(finalized);
        if let Some(w) = low_watermark.filter(|w| *w != i64::MAX) {
            m.watermark.set(w as f64 / 1000.0);
            m.event_time_lag.set((now_ms() - w) as f64 / 1000.0);
        }
    }

    /// After a reload: seek a partition to its stored offset.
    fn seek_loaded(&mut self, p: i32) {
        if let Some(st) = self.parts.get_mut(&p) {
            // Nothing committed yet: back to the log's beginning. The rolled-back batch was consumed
            // already, and continuing from the consumer's position would skip its records.
            let to = st.next.map_or(Offset::Beginning, Offset::Offset);
            let gen = seek(&self.io.consumer, &self.seek_gen, &self.args.topic, p, to);
            st.seek = Seek::Pending { gen };
        }
    }
}

/// How a commit attempt ended.
enum Committed {
    Done,
    /// Shutdown came during an outage: nothing committed, nothing lost.
    Interrupted,
    /// Another replica owns a partition now; the partitions were reloaded.
    Fenced,
    /// MySQL refused a value (permanent): the rows behind it must be isolated.
    DataError(SinkError),
}

/// What the retries of a sink operation report to: liveness, metrics, readiness.
#[derive(Clone)]
struct RetryIo {
    heartbeat: Arc<AtomicI64>,
    metrics: EngineMetrics,
    health: Arc<Health>,
}

impl Io {
    fn retry_io(&self) -> RetryIo {
        RetryIo {
            heartbeat: self.heartbeat.clone(),
            metrics: self.metrics.clone(),
            health: self.health.clone(),
        }
    }
}

/// Runs a sink operation, retrying transient failures with backoff (not ready meanwhile).
/// `None` when shutdown interrupted the retries. A permanent error comes back as a [`SinkError`]
/// inside the `anyhow::Error`.
fn retry<T, F, Fut>(
    rt: &Handle,
    shutdown: &watch::Receiver<bool>,
    io: &Io,
    what: &str,
    op: F,
) -> anyhow::Result<Option<T>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, SinkError>>,
{
    rt.block_on(retry_async(shutdown.clone(), io.retry_io(), what, op))
}

/// [`retry`], as a future (the pipelined commit runs it on the runtime).
async fn retry_async<T, F, Fut>(
    shutdown: watch::Receiver<bool>,
    io: RetryIo,
    what: &str,
    mut op: F,
) -> anyhow::Result<Option<T>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, SinkError>>,
{
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        io.heartbeat.store(now_ms(), Ordering::Relaxed);
        let delay = match op().await {
            Ok(v) => return Ok(Some(v)),
            Err(e) if e.is_transient() => {
                let delay = backoff.next_delay();
                io.metrics.sink_errors.inc();
                io.metrics.ready.set(0);
                io.health.set_ready(false, "mysql unavailable");
                tracing::warn!(error = %e, retry_in = ?delay, "{what} failed; retrying");
                delay
            }
            Err(e) => return Err(anyhow::Error::new(e)),
        };
        if *shutdown.borrow() {
            return Ok(None);
        }
        tokio::time::sleep(delay).await;
    }
}

/// Seeks `partition` to `offset`; returns the seek generation from which polled batches are known
/// to hold only post-seek messages.
fn seek(
    consumer: &EngineConsumer,
    seek_gen: &std::sync::atomic::AtomicU64,
    topic: &str,
    partition: i32,
    offset: Offset,
) -> u64 {
    match consumer.seek(topic, partition, offset, Duration::from_secs(5)) {
        Ok(()) => tracing::info!(
            partition,
            ?offset,
            "seeked to the offset committed in MySQL"
        ),
        Err(e) => {
            tracing::warn!(partition, ?offset, error = %e, "seek failed; records are filtered instead")
        }
    }
    seek_gen.fetch_add(1, Ordering::AcqRel) + 1
}
