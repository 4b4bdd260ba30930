//! The engine loop: for each polled micro-batch — de-duplicate against committed offsets, decode,
//! route rejects, fold into windows, advance the watermark, choose the rows to write, and commit rows,
//! offsets and window state in one MySQL transaction; retry through outages; stop on SIGTERM or, with
//! `--drain`, once caught up.
//!
//! Exactly once: MySQL holds, per partition, the next offset and the window state as of the last
//! commit, written in the same transaction as the rows. A (re)started or newly assigned replica loads
//! both and skips every record below that offset; a replica that lost a partition but still commits is
//! fenced by the sink (expected offset mismatch) and reloads. Kafka offsets are committed afterwards
//! for lag tooling only.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::future::join_all;
use prometheus::Registry;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::runtime::Handle;
use tokio::sync::watch;
use tradewind_kafka::DeadLetter;
use tradewind_model::{now_ms, Validator};
use tradewind_sink::{Commit, CommitOutcome, MySqlSink, PartitionProgress, SinkError};
use tradewind_telemetry::Health;

use crate::consumer::{EngineConsumer, EngineContext, Polled, Poller};
use crate::decode::BatchDecoder;
use crate::metrics::EngineMetrics;
use crate::raw::RawBatch;
use crate::rows::RowsBuilder;
use crate::window::{self, Acc, EmitKind, Interner, Lateness, WinKey, Windows, GRAIN_MARKET};
use crate::RunArgs;

/// What one engine run did (returned at exit; also logged).
#[derive(Debug, Default, Clone)]
pub struct EngineSummary {
    /// Records consumed (after de-duplication).
    pub records: u64,
    /// Valid trades windowed.
    pub trades: u64,
    /// Records sent to the dead-letter topic.
    pub rejected: u64,
    /// Trades later than the allowed lateness, sent to the late topic.
    pub too_late: u64,
    /// Trades that corrected an already-final window.
    pub corrected: u64,
    /// Window rows written.
    pub rows_written: u64,
    /// Sink transactions committed.
    pub commits: u64,
    /// Commits refused because another replica owns the partition now.
    pub fenced: u64,
}

/// The state of one assigned partition.
struct PartState {
    /// Next offset as committed in MySQL (`None`: never committed).
    committed: Option<i64>,
    /// Next offset to accept.
    next: Option<i64>,
    /// Largest valid event time seen.
    max_event_ms: Option<i64>,
    /// Last time a record arrived (idleness).
    last_activity: Instant,
    /// Open and recently closed windows.
    windows: Windows,
    /// Records are skipped until offset `next` comes back after a seek.
    seek_pending: bool,
    /// A seek was issued since the load (never more than one per load).
    seeked: bool,
    /// Seek generation of that seek: batches polled from this generation on are all post-seek.
    seek_gen: u64,
    /// Caught up with the end of the partition (as of the last batch).
    at_eof: bool,
    /// The broker was found behind the committed offset (reported once).
    reset_reported: bool,
}

/// Runs the engine until `shutdown` flips (or, with `--drain`, until caught up).
pub async fn run_engine(
    args: RunArgs,
    registry: &Registry,
    health: Arc<Health>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<EngineSummary> {
    let metrics = EngineMetrics::register(registry)?;
    let sink = connect_sink(&args, &health, &shutdown).await?;
    let Some(sink) = sink else {
        return Ok(EngineSummary::default());
    };
    if args.migrate {
        sink.migrate().await.context("applying the MySQL schema")?;
    }
    // The engine owns its two output topics; the trades topic belongs to the ingestor (or to the
    // platform, e.g. Strimzi), which chooses its partition count.
    tradewind_kafka::ensure_topics(
        &args.brokers,
        &[(args.dlq_topic.as_str(), 1), (args.late_topic.as_str(), 1)],
    )
    .await
    .unwrap_or_else(|e| tracing::warn!(error = %e, "could not create topics; assuming they exist"));
    let producer: FutureProducer = tradewind_kafka::producer_config(&args.brokers).create()?;
    let consumer: EngineConsumer =
        tradewind_kafka::consumer_config(&args.brokers, &args.group).create_with_context(
            EngineContext::new(&args.topic, metrics.consumer_lag.clone()),
        )?;
    let consumer = Arc::new(consumer);
    consumer.subscribe(&[args.topic.as_str()])?;
    let handle = Handle::current();
    let dlq = DeadLetter::new(producer.clone(), args.dlq_topic.clone());
    let late = DeadLetter::new(producer.clone(), args.late_topic.clone());
    let mut engine = Engine::new(args, sink.clone(), consumer, dlq, late, metrics, health)?;
    let summary = tokio::task::spawn_blocking(move || {
        let r = engine.run(&handle, shutdown);
        (engine, r)
    })
    .await
    .context("engine thread panicked")?;
    let (engine, result) = summary;
    let _ = producer.flush(Duration::from_secs(30));
    drop(engine);
    if let Err(e) = sink.disconnect().await {
        tracing::debug!(error = %e, "mysql disconnect");
    }
    result
}

/// Connects to MySQL, retrying with backoff while it is unreachable (not ready meanwhile); `None`
/// if shutdown came first.
async fn connect_sink(
    args: &RunArgs,
    health: &Health,
    shutdown: &watch::Receiver<bool>,
) -> anyhow::Result<Option<MySqlSink>> {
    let mut backoff = Duration::from_millis(250);
    loop {
        match MySqlSink::connect(&args.mysql_url).await {
            Ok(s) => return Ok(Some(s)),
            Err(e) if e.is_transient() => {
                health.set_ready(false, "mysql unreachable");
                tracing::warn!(error = %e, retry_in = ?backoff, "mysql unreachable");
            }
            Err(e) => return Err(e).context("connecting to MySQL"),
        }
        if *shutdown.borrow() {
            return Ok(None);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

struct Engine {
    args: RunArgs,
    sink: MySqlSink,
    consumer: Arc<EngineConsumer>,
    dlq: DeadLetter,
    late: DeadLetter,
    metrics: EngineMetrics,
    health: Arc<Health>,
    decoder: BatchDecoder,
    names: Interner,
    parts: HashMap<i32, PartState>,
    watermark: i64,
    last_live: Instant,
    summary: EngineSummary,
    seek_gen: Arc<std::sync::atomic::AtomicU64>,
}

/// Prepared output of one batch, kept intact across commit retries.
struct Prepared {
    market: arrow_array::RecordBatch,
    asset: arrow_array::RecordBatch,
    state: arrow_array::RecordBatch,
    progress: Vec<PartitionProgress>,
    finals: usize,
    emitted: Vec<(u8, EmitKind)>,
}

impl Engine {
    fn new(
        args: RunArgs,
        sink: MySqlSink,
        consumer: Arc<EngineConsumer>,
        dlq: DeadLetter,
        late: DeadLetter,
        metrics: EngineMetrics,
        health: Arc<Health>,
    ) -> anyhow::Result<Self> {
        let policy = Validator {
            future_tolerance_ms: args.future_tolerance.as_millis() as i64,
        };
        Ok(Engine {
            decoder: BatchDecoder::new(args.max_batch_rows, policy)?,
            args,
            sink,
            consumer,
            dlq,
            late,
            metrics,
            health,
            names: Interner::default(),
            parts: HashMap::new(),
            watermark: i64::MIN,
            last_live: Instant::now(),
            summary: EngineSummary::default(),
            seek_gen: Arc::default(),
        })
    }

    fn size_ms(&self) -> i64 {
        self.args.window.as_millis().max(1) as i64
    }

    fn run(
        &mut self,
        rt: &Handle,
        shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<EngineSummary> {
        let poller = Poller::start(
            self.consumer.clone(),
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
        loop {
            if *shutdown.borrow() {
                if let Some(iv) = self.args.live_interval {
                    // Write the forming windows once more, so the provisional rows show everything
                    // consumed (their state is committed either way).
                    self.last_live = Instant::now().checked_sub(iv).unwrap_or(self.last_live);
                    self.process(rt, &polled_empty(), shutdown, false)?;
                }
                tracing::info!("shutdown: last batch committed, leaving the group");
                return Ok(());
            }
            let polled = match poller.batches.recv_timeout(Duration::from_millis(500)) {
                Ok(p) => p,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    anyhow::bail!("consumer thread stopped")
                }
            };
            let started = Instant::now();
            let caught_up = self.process(rt, &polled, shutdown, false)?;
            let _ = poller.recycle.try_send(polled.raw);
            self.metrics
                .batch_duration
                .observe(started.elapsed().as_secs_f64());
            // A batch processed without a sink error means MySQL is usable; readiness then follows
            // the brokers (an idle, caught-up engine is ready too).
            if self.consumer.context().brokers_down.load(Ordering::Relaxed) {
                self.set_ready(false, "all Kafka brokers down");
            } else {
                self.set_ready(true, "ok");
            }
            if self.args.drain && caught_up {
                tracing::info!(
                    "drain: every assigned partition is caught up; finalizing all windows"
                );
                self.process(rt, &polled_empty(), shutdown, true)?;
                return Ok(());
            }
        }
    }

    fn set_ready(&self, ready: bool, reason: &str) {
        self.health.set_ready(ready, reason);
        self.metrics.ready.set(ready as i64);
    }

    /// Loads partition `p` from MySQL (offsets and window state), retrying transient errors.
    fn load(
        &mut self,
        rt: &Handle,
        p: i32,
        shutdown: &watch::Receiver<bool>,
    ) -> anyhow::Result<bool> {
        let (sink, group, topic) = (&self.sink, &self.args.group, &self.args.topic);
        let snap = match retry(
            rt,
            shutdown,
            &self.metrics,
            &self.health,
            "load partition",
            || sink.load_partition(group, topic, p),
        )? {
            Some(s) => s,
            None => return Ok(false),
        };
        let mut windows = Windows::default();
        for e in snap.state {
            let key = WinKey::from_state_key(e.grain, &e.key, e.window_start_ms, &mut self.names);
            match (key, Acc::from_bytes(&e.acc)) {
                (Some(k), Some(a)) => {
                    windows.insert(k, a);
                }
                _ => {
                    tracing::warn!(partition = p, key = %e.key, "unreadable window state row skipped")
                }
            }
        }
        // Never committed to MySQL: accept the partition from its beginning, where the consumer
        // starts every assigned partition (see `EngineContext::rebalance`).
        let next = snap.next_offset;
        tracing::info!(
            partition = p,
            next_offset = ?next,
            committed = snap.next_offset.is_some(),
            windows = windows.len(),
            "partition loaded from MySQL"
        );
        self.parts.insert(
            p,
            PartState {
                committed: snap.next_offset,
                next,
                max_event_ms: snap.max_event_ms,
                last_activity: Instant::now(),
                windows,
                seek_pending: false,
                seeked: false,
                seek_gen: 0,
                at_eof: false,
                reset_reported: false,
            },
        );
        Ok(true)
    }

    /// Processes one polled batch. Returns whether every assigned partition is caught up.
    fn process(
        &mut self,
        rt: &Handle,
        polled: &Polled,
        shutdown: &watch::Receiver<bool>,
        finalize_all: bool,
    ) -> anyhow::Result<bool> {
        let raw = &polled.raw;
        // Partition bookkeeping: drop partitions no longer assigned, load newly assigned ones.
        let assigned: BTreeSet<i32> = self
            .consumer
            .assignment()
            .map(|tpl| tpl.elements().iter().map(|e| e.partition()).collect())
            .unwrap_or_default();
        let in_batch: BTreeSet<i32> = raw.partitions.iter().copied().collect();
        self.parts
            .retain(|p, _| assigned.contains(p) || in_batch.contains(p));
        for p in assigned.iter().chain(in_batch.iter()) {
            if !self.parts.contains_key(p) && !self.load(rt, *p, shutdown)? {
                return Ok(false);
            }
        }

        // Restored partitions bring their event times: judge lateness against them from the start.
        self.advance_watermark();
        for (p, st) in self.parts.iter_mut() {
            st.at_eof = polled.eof.contains(p);
            if st.seek_pending && polled.gen >= st.seek_gen {
                st.seek_pending = false; // everything polled before the seek has been seen
            }
        }

        // De-duplicate against committed offsets: accept offset `next`, skip what is below it
        // (already in MySQL), and seek once when the consumer starts elsewhere.
        let mut accepted = vec![true; raw.len()];
        let mut dropped = 0usize;
        for (i, keep) in accepted.iter_mut().enumerate() {
            let (p, o) = (raw.partitions[i], raw.offsets[i]);
            let Some(st) = self.parts.get_mut(&p) else {
                *keep = false;
                dropped += 1;
                continue;
            };
            if st.seek_pending {
                // A batch polled before the seek: only the seek target itself is trusted.
                if Some(o) == st.next {
                    st.seek_pending = false;
                } else {
                    *keep = false;
                    dropped += 1;
                    continue;
                }
            }
            match st.next {
                Some(n) if o < n || (o > n && !st.seeked) => {
                    *keep = false;
                    dropped += 1;
                    if st.seeked && o < n && polled.gen >= st.seek_gen && !st.reset_reported {
                        // After our seek the broker still serves older offsets: it no longer has
                        // offset n (topic recreated or truncated). Never re-count; say it loudly.
                        st.reset_reported = true;
                        tracing::error!(
                            partition = p,
                            committed = n,
                            served = o,
                            "the broker's log is behind the offset committed in MySQL (topic \
                             recreated or truncated?); skipping records below it"
                        );
                    }
                    if !st.seeked {
                        st.seeked = true;
                        st.seek_pending = true;
                        st.seek_gen = seek(&self.consumer, &self.seek_gen, &self.args.topic, p, n);
                    }
                    continue;
                }
                Some(n) if o > n => {
                    tracing::warn!(partition = p, expected = n, got = o, "offset gap");
                }
                _ => {}
            }
            st.next = Some(o + 1);
            st.last_activity = Instant::now();
        }
        let filtered;
        let raw: &RawBatch = if dropped == 0 {
            raw
        } else {
            let mut f = RawBatch::with_capacity(raw.len() - dropped);
            for (i, _) in accepted.iter().enumerate().filter(|(_, a)| **a) {
                f.push(
                    raw.partitions[i],
                    raw.offsets[i],
                    raw.key(i),
                    raw.payload(i),
                );
            }
            filtered = f;
            &filtered
        };
        self.metrics.records_in.inc_by(raw.len() as u64);
        self.summary.records += raw.len() as u64;

        // Decode and route invalid records.
        let now = now_ms();
        let decoded = self.decoder.decode(raw, now)?;
        self.metrics.decoded.inc_by(decoded.batch.num_rows() as u64);
        self.summary.trades += decoded.batch.num_rows() as u64;
        let topic = &self.args.topic;
        let origin = |i: usize| format!("{topic}/{}/{}", raw.partitions[i], raw.offsets[i]);
        let dlq_sends = decoded.rejects.iter().map(|(i, r)| {
            let i = *i as usize;
            self.metrics
                .rejected
                .with_label_values(&[r.kind.label()])
                .inc();
            let o = origin(i);
            let dlq = &self.dlq;
            async move {
                dlq.send(raw.key(i), raw.payload(i), r, "engine", Some(&o))
                    .await
            }
        });
        self.summary.rejected += decoded.rejects.len() as u64;
        for r in rt.block_on(join_all(dlq_sends)) {
            r.context("writing to the dead-letter topic")?;
        }

        // Fold into windows, run by run of one partition.
        let size = self.size_ms();
        let lateness = Lateness {
            watermark: self.watermark,
            allowed_ms: self.args.allowed_lateness.as_millis() as i64,
        };
        let batch = &decoded.batch;
        let part_of = |row: usize| raw.partitions[decoded.source[row] as usize];
        let mut too_late = Vec::new();
        let mut row = 0;
        while row < batch.num_rows() {
            let p = part_of(row);
            let mut end = row + 1;
            while end < batch.num_rows() && part_of(end) == p {
                end += 1;
            }
            if let Some(st) = self.parts.get_mut(&p) {
                let out = window::fold(
                    batch,
                    row..end,
                    |r| raw.offsets[decoded.source[r] as usize],
                    size,
                    lateness,
                    &mut self.names,
                    &mut st.windows,
                );
                if let Some(m) = out.max_event_ms {
                    st.max_event_ms = Some(st.max_event_ms.map_or(m, |x| x.max(m)));
                }
                self.summary.corrected += out.corrected;
                self.metrics
                    .late
                    .with_label_values(&["corrected"])
                    .inc_by(out.corrected);
                too_late.extend(out.too_late);
            }
            row = end;
        }
        let late_sends = too_late.iter().map(|&r| {
            let i = decoded.source[r] as usize;
            let o = origin(i);
            let late = &self.late;
            let detail = format!(
                "window closed beyond allowed lateness ({} ms) of watermark {}",
                lateness.allowed_ms, lateness.watermark
            );
            async move {
                late.send_labelled(
                    raw.key(i),
                    raw.payload(i),
                    "too_late",
                    &detail,
                    "engine",
                    Some(&o),
                )
                .await
            }
        });
        for r in rt.block_on(join_all(late_sends)) {
            r.context("writing to the late-trades topic")?;
        }
        self.metrics
            .late
            .with_label_values(&["routed"])
            .inc_by(too_late.len() as u64);
        self.summary.too_late += too_late.len() as u64;

        // Watermark.
        self.advance_watermark();

        // Emit, persist state, evict; then commit.
        let live = self
            .args
            .live_interval
            .is_some_and(|iv| self.last_live.elapsed() >= iv);
        if live {
            self.last_live = Instant::now();
        }
        let prepared = self.prepare(now, live, finalize_all)?;
        let has_work =
            !raw.is_empty() || !prepared.emitted.is_empty() || prepared.state.num_rows() > 0;
        if has_work && !prepared.progress.is_empty() {
            self.commit(rt, shutdown, &prepared, polled.at)?;
        }
        self.metrics.open_windows.set(
            self.parts
                .values()
                .map(|s| window::open_count(&s.windows))
                .sum::<usize>() as i64,
        );

        let caught_up = !assigned.is_empty()
            && polled.raw.is_empty()
            && assigned.iter().all(|p| polled.eof.contains(p));
        Ok(caught_up)
    }

    /// Engine watermark: the minimum over assigned partitions of (max event time - out-of-orderness).
    /// A partition that has not delivered yet holds it back, unless it is idle: caught up with its
    /// end and quiet for the idleness timeout (a lagging partition is slow, not idle). When every
    /// partition is idle, the largest partition watermark wins. Never moves backwards.
    fn advance_watermark(&mut self) {
        let ooo = self.args.out_of_orderness.as_millis() as i64;
        let idle = self.args.idle_timeout;
        let mut active_min: Option<i64> = None;
        let mut blocked = false;
        let mut all_max: Option<i64> = None;
        for st in self.parts.values() {
            let w = st.max_event_ms.map(|m| m.saturating_sub(ooo));
            if let Some(w) = w {
                all_max = Some(all_max.map_or(w, |x| x.max(w)));
            }
            if st.at_eof && st.last_activity.elapsed() >= idle {
                continue;
            }
            match w {
                Some(w) => active_min = Some(active_min.map_or(w, |x| x.min(w))),
                None => blocked = true,
            }
        }
        let candidate = if blocked {
            None
        } else {
            active_min.or(all_max)
        };
        if let Some(w) = candidate {
            self.watermark = self.watermark.max(w);
        }
        if self.watermark != i64::MIN {
            self.metrics.watermark.set(self.watermark as f64 / 1000.0);
            self.metrics
                .event_time_lag
                .set((now_ms() - self.watermark) as f64 / 1000.0);
        }
    }

    /// Chooses rows to write, serializes changed window state, evicts dead windows.
    fn prepare(&mut self, now: i64, live: bool, finalize_all: bool) -> anyhow::Result<Prepared> {
        let size = self.size_ms();
        let allowed = self.args.allowed_lateness.as_millis() as i64;
        let mut rows = RowsBuilder::default();
        let mut progress = Vec::with_capacity(self.parts.len());
        let mut emitted = Vec::new();
        let mut finals = 0;
        let mut emits = Vec::new();
        for (&p, st) in self.parts.iter_mut() {
            emits.clear();
            window::select_emissions(
                &st.windows,
                self.watermark,
                size,
                live,
                finalize_all,
                &mut emits,
            );
            rows.push_emits(&st.windows, &emits, size, now, &self.names);
            for (k, kind) in &emits {
                if let Some(a) = st.windows.get_mut(k) {
                    a.writes += 1;
                    if *kind != EmitKind::Provisional {
                        a.final_written = true;
                    }
                    a.dirty = true;
                    a.unwritten = false;
                }
                finals += (*kind == EmitKind::Final) as usize;
                emitted.push((k.grain, *kind));
            }
            for (k, a) in st.windows.iter_mut().filter(|(_, a)| a.dirty) {
                rows.push_state(p, k, a, &self.names);
                a.dirty = false;
            }
            let evict_before = window::evict(&mut st.windows, self.watermark, size, allowed);
            if let Some(next) = st.next {
                progress.push(PartitionProgress {
                    partition: p,
                    expected_offset: st.committed,
                    next_offset: next,
                    max_event_ms: st.max_event_ms,
                    evict_before_ms: evict_before,
                });
            }
        }
        let (w, state) = rows.finish(&self.args.group, &self.args.topic)?;
        Ok(Prepared {
            market: w.market,
            asset: w.asset,
            state,
            progress,
            finals,
            emitted,
        })
    }

    fn commit(
        &mut self,
        rt: &Handle,
        shutdown: &watch::Receiver<bool>,
        prep: &Prepared,
        polled_at: Instant,
    ) -> anyhow::Result<()> {
        let mut upserts: Vec<(&str, &arrow_array::RecordBatch)> = Vec::with_capacity(3);
        for (t, b) in [
            ("market_1m", &prep.market),
            ("asset_1m", &prep.asset),
            ("tw_window_state", &prep.state),
        ] {
            if b.num_rows() > 0 {
                upserts.push((t, b));
            }
        }
        let started = Instant::now();
        let c = Commit {
            group: &self.args.group,
            topic: &self.args.topic,
            partitions: &prep.progress,
            upserts: &upserts,
        };
        let sink = &self.sink;
        let outcome = retry(
            rt,
            shutdown,
            &self.metrics,
            &self.health,
            "sink commit",
            || sink.commit(&c),
        )?;
        self.metrics
            .sink_duration
            .observe(started.elapsed().as_secs_f64());
        match outcome {
            None => Ok(()), // shutdown during an outage: nothing committed, nothing lost
            Some(CommitOutcome::Committed { .. }) => {
                self.set_ready(true, "ok");
                self.summary.commits += 1;
                if self.args.fault_abort_after_commits == Some(self.summary.commits) {
                    tracing::error!(
                        "fault injection: aborting after MySQL commit, before Kafka commit"
                    );
                    std::process::abort();
                }
                let latency = polled_at.elapsed().as_secs_f64();
                for _ in 0..prep.finals {
                    self.metrics.final_to_commit.observe(latency);
                }
                for (grain, kind) in &prep.emitted {
                    let g = if *grain == GRAIN_MARKET {
                        "market"
                    } else {
                        "asset"
                    };
                    self.metrics
                        .windows_emitted
                        .with_label_values(&[g, kind.label()])
                        .inc();
                }
                self.metrics
                    .rows_written
                    .with_label_values(&["market_1m"])
                    .inc_by(prep.market.num_rows() as u64);
                self.metrics
                    .rows_written
                    .with_label_values(&["asset_1m"])
                    .inc_by(prep.asset.num_rows() as u64);
                self.summary.rows_written +=
                    (prep.market.num_rows() + prep.asset.num_rows()) as u64;
                let mut tpl = TopicPartitionList::new();
                for pp in &prep.progress {
                    tracing::debug!(
                        partition = pp.partition,
                        expected = ?pp.expected_offset,
                        next = pp.next_offset,
                        "committed"
                    );
                    if let Some(st) = self.parts.get_mut(&pp.partition) {
                        st.committed = Some(pp.next_offset);
                    }
                    let _ = tpl.add_partition_offset(
                        &self.args.topic,
                        pp.partition,
                        Offset::Offset(pp.next_offset),
                    );
                }
                if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
                    tracing::debug!(error = %e, "kafka offset commit (lag tooling only) failed");
                }
                Ok(())
            }
            Some(CommitOutcome::Fenced { partitions }) => {
                self.summary.fenced += 1;
                tracing::warn!(
                    ?partitions,
                    "commit fenced: another replica committed these partitions; reloading"
                );
                // The whole transaction was rolled back: every partition in it reloads.
                let reload: Vec<i32> = prep.progress.iter().map(|p| p.partition).collect();
                for p in reload {
                    self.parts.remove(&p);
                    if self.load(rt, p, shutdown)? {
                        if let Some(st) = self.parts.get_mut(&p) {
                            if let Some(n) = st.next {
                                st.seek_pending = true;
                                st.seeked = true;
                                st.seek_gen =
                                    seek(&self.consumer, &self.seek_gen, &self.args.topic, p, n);
                            }
                        }
                    }
                }
                Ok(())
            }
        }
    }
}

/// Runs a sink operation, retrying transient failures with backoff (not ready meanwhile).
/// `None` when shutdown interrupted the retries.
fn retry<T, F, Fut>(
    rt: &Handle,
    shutdown: &watch::Receiver<bool>,
    metrics: &EngineMetrics,
    health: &Health,
    what: &str,
    mut op: F,
) -> anyhow::Result<Option<T>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, SinkError>>,
{
    let mut backoff = Duration::from_millis(100);
    loop {
        match rt.block_on(op()) {
            Ok(v) => return Ok(Some(v)),
            Err(e) if e.is_transient() => {
                metrics.sink_errors.inc();
                metrics.ready.set(0);
                health.set_ready(false, "mysql unavailable");
                tracing::warn!(error = %e, retry_in = ?backoff, "{what} failed; retrying");
            }
            Err(e) => return Err(anyhow::Error::new(e).context(what.to_string())),
        }
        if *shutdown.borrow() {
            return Ok(None);
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

fn polled_empty() -> Polled {
    Polled {
        raw: RawBatch::default(),
        gen: 0,
        eof: BTreeSet::new(),
        at: Instant::now(),
    }
}

/// Seeks `partition` to `offset`; returns the seek generation from which polled batches are known
/// to hold only post-seek messages.
fn seek(
    consumer: &EngineConsumer,
    seek_gen: &std::sync::atomic::AtomicU64,
    topic: &str,
    partition: i32,
    offset: i64,
) -> u64 {
    match consumer.seek(
        topic,
        partition,
        Offset::Offset(offset),
        Duration::from_secs(5),
    ) {
        Ok(()) => tracing::info!(partition, offset, "seeked to the offset committed in MySQL"),
        Err(e) => {
            tracing::warn!(partition, offset, error = %e, "seek failed; records are filtered instead")
        }
    }
    seek_gen.fetch_add(1, Ordering::AcqRel) + 1
}
