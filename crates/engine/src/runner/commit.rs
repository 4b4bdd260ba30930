//! The commit path: folded micro-batches committed on the runtime while the engine reads on
//! ([`Engine::flush`], [`Engine::settle`]), one micro-batch per commit with MySQL data errors isolated
//! ([`Engine::commit_batch`]), what each commit advances ([`Engine::progress`]) and how its outcome is
//! taken in (applied, fenced and reloaded, refused and read again).

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use arrow_array::RecordBatch;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::runtime::Handle;
use tokio::sync::watch;
use tradewind_model::now_ms;
use tradewind_pipeline::RowOrder;
use tradewind_sink::{
    Commit, CommitOutcome, MergeTable, MySqlSink, PartitionProgress, PartitionStatus, SinkError,
};

use super::retry::{retry_async, RetryIo};
use super::{Engine, Rejected};
use crate::audit::{self, Tallies};
use crate::consumer::Polled;
use crate::decode::Decoded;
use crate::views::{BatchPlan, ViewError};

/// A commit of folded micro-batches, running on the runtime while the engine reads and folds the
/// next ones. Its outcome is taken in ([`Engine::settle`]) before the next commit starts, so commits
/// stay in order and each one expects the offsets the previous one wrote.
pub(super) struct InFlight {
    /// The commit: its outcome and when it finished.
    task: tokio::task::JoinHandle<(anyhow::Result<Option<CommitOutcome>>, Instant)>,
    plan: BatchPlan,
    progress: Vec<PartitionProgress>,
    /// Partitions with records in the commit.
    partitions: BTreeSet<i32>,
    /// What the commit holds per partition (the offset audit).
    tally: Tallies,
    polled_at: Instant,
    started: Instant,
}

impl InFlight {
    /// Whether partition `p` takes part in this commit (records or a status change).
    pub(super) fn holds(&self, p: i32) -> bool {
        self.partitions.contains(&p) || self.progress.iter().any(|pp| pp.partition == p)
    }
}

/// One sink transaction, owned, so that it can run on the runtime while the engine reads on (a
/// folded commit) or be waited for (a single micro-batch's commit): the same code either way.
struct CommitJob {
    sink: MySqlSink,
    tables: Arc<[MergeTable]>,
    batches: Vec<RecordBatch>,
    group: String,
    topic: String,
    partition_count: i32,
    progress: Vec<PartitionProgress>,
    /// Per view, the final horizon the batches' verdicts hold under ([`BatchPlan::guards`]).
    guards: Vec<i64>,
}

impl CommitJob {
    /// Commits, retrying transient errors until shutdown; the outcome and when it finished.
    async fn run(
        self,
        shutdown: watch::Receiver<bool>,
        io: RetryIo,
    ) -> (anyhow::Result<Option<CommitOutcome>>, Instant) {
        let merges: Vec<(&MergeTable, &RecordBatch)> =
            self.tables.iter().zip(self.batches.iter()).collect();
        let c = Commit {
            group: &self.group,
            topic: &self.topic,
            partition_count: self.partition_count,
            partitions: &self.progress,
            merges: &merges,
            guards: &self.guards,
        };
        let sink = &self.sink;
        let result = retry_async(shutdown, io, "sink commit", || sink.commit(&c)).await;
        (result, Instant::now())
    }
}

/// How a commit attempt ended.
pub(super) enum Committed {
    Done,
    /// Shutdown came during an outage: nothing committed, nothing lost.
    Interrupted,
    /// Another replica owns a partition now; the partitions were reloaded.
    Fenced,
    /// MySQL refused a value (permanent): the rows behind it must be isolated.
    DataError(SinkError),
    /// Rows it merges into became final after its trades were judged: nothing committed; the
    /// views now know the horizons, and the trades are judged again.
    Stale,
}

impl Engine {
    /// Starts the commit of the folded micro-batches (and status changes) in one transaction, on
    /// the runtime, after taking in the outcome of the previous one. The engine reads on meanwhile.
    pub(super) fn flush(
        &mut self,
        rt: &Handle,
        shutdown: &watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        self.settle(rt, shutdown)?;
        let polled_at = self.pending.since().unwrap_or_else(Instant::now);
        let plan = self.pending.take(&self.views, now_ms())?;
        let partitions = std::mem::take(&mut self.pending.partitions);
        let tally = std::mem::take(&mut self.pending.tally);
        self.pending.clear();
        // The next fold judges lateness from where this one left the clocks, not from the
        // committed ones (this commit is not applied until it is settled).
        self.pending.clocks = plan.clocks.clone();
        let progress = self.progress(&plan, &partitions, None);
        if progress.is_empty() {
            return Ok(());
        }
        let job = self.commit_job(progress.clone(), plan.batches.clone(), plan.guards.clone());
        let task = rt.spawn(job.run(shutdown.clone(), self.io.retry_io()));
        self.in_flight = Some(InFlight {
            task,
            plan,
            progress,
            partitions,
            tally,
            polled_at,
            started: Instant::now(),
        });
        Ok(())
    }

    /// Waits for the commit in flight, if any, and takes its outcome in. `false` when it did not
    /// commit: its partitions were reloaded (fenced) or are read again one micro-batch per commit
    /// (MySQL refused a value), and the micro-batches folded since are dropped and read again.
    pub(super) fn settle(
        &mut self,
        rt: &Handle,
        shutdown: &watch::Receiver<bool>,
    ) -> anyhow::Result<bool> {
        let Some(f) = self.in_flight.take() else {
            return Ok(true);
        };
        let (result, done_at) = rt.block_on(f.task).context("the commit task failed")?;
        self.io
            .metrics
            .sink_duration
            .observe((done_at - f.started).as_secs_f64());
        let outcome = self.committed(rt, shutdown, result, &f.progress, f.polled_at, done_at)?;
        let stale = matches!(outcome, Committed::Stale);
        match outcome {
            Committed::Done => {
                self.apply(&f.plan, &f.progress, &f.tally);
                return Ok(true);
            }
            Committed::Interrupted => {
                // Nothing committed: its partitions are read again from what MySQL holds.
                for p in f.partitions {
                    self.rewind(p);
                }
            }
            Committed::Fenced => {}
            Committed::Stale => {
                // Judged again from what MySQL holds. Their dead letters and too-late trades are
                // routed again (the new verdicts may send more trades to the late topic): the side
                // topics are at-least-once.
                for p in f.partitions {
                    self.routed.remove(&p);
                    self.rewind(p);
                }
            }
            Committed::DataError(e) => {
                self.summary.refused_folds += 1;
                tracing::warn!(error = %e, partitions = ?f.partitions, "MySQL refused values of a folded commit; reading its partitions again one micro-batch per commit to isolate the rows");
                for p in f.partitions {
                    // Up to where this partition was read (the fold since included).
                    if let Some(n) = self.parts.get(&p).map(|st| st.next) {
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
            if stale {
                self.routed.remove(&p);
            }
            self.rewind(p);
        }
        Ok(false)
    }

    /// Records how far partition `p` had been read, before it is sought back: a drain is not
    /// caught up until it is read there again.
    fn remember_read_to(&mut self, p: i32) {
        if let Some(n) = self.parts.get(&p).map(|st| st.next) {
            let until = self.reread.entry(p).or_insert(n);
            *until = (*until).max(n);
        }
    }

    /// Reads partition `p` again from its committed offset: one seek, unless one to that offset is
    /// already in flight (a partition the fence path reloaded is not sought twice).
    pub(super) fn rewind(&mut self, p: i32) {
        self.remember_read_to(p);
        let Some(st) = self.parts.get_mut(&p) else {
            return;
        };
        let to = st.rewind();
        if !st.seeking_to(to) {
            self.seek_partition(p, to);
        }
    }

    /// Ends the one-micro-batch-per-commit reading of partitions that are past the refused fold.
    pub(super) fn end_isolation(&mut self) {
        let parts = &self.parts;
        self.isolate_until.retain(|p, until| {
            parts
                .get(p)
                .is_some_and(|st| st.committed.is_none_or(|c| c < *until))
        });
    }

    /// Plans, routes side outputs and commits one batch (`tally`: what it holds per partition; the
    /// partitions in it advance); on a MySQL data error, sets the trades
    /// behind the refused rows aside (dead-letter topic, reason `mysql_<code>`) and tries again.
    pub(super) fn commit_batch(
        &mut self,
        rt: &Handle,
        polled: &Polled,
        decoded: &Decoded,
        mut rejected: Rejected,
        tally: Tallies,
        shutdown: &watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        // Partitions with records (or counted gaps) in this batch: their offsets advance.
        let in_batch: &BTreeSet<i32> = &tally.keys().copied().collect();
        let raw = &polled.raw;
        let mut excluded: HashSet<usize> = HashSet::new();
        let mut sent_dlq = 0usize;
        let mut sent_late: HashSet<usize> = HashSet::new();
        let mut sent_view_errors: HashSet<(usize, usize)> = HashSet::new();
        loop {
            let plan = self.plan(raw, decoded, &excluded, RowOrder::Keys)?;
            self.route_rejects(rt, raw, &rejected[sent_dlq..])?;
            sent_dlq = rejected.len();
            let errors: Vec<&ViewError> = self
                .view_errors_to_route(raw, &plan.view_errors)
                .into_iter()
                .filter(|e| !sent_view_errors.contains(&(e.raw, e.view)))
                .collect();
            self.route_view_errors(rt, raw, &errors)?;
            sent_view_errors.extend(errors.iter().map(|e| (e.raw, e.view)));
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
            match self.commit(rt, shutdown, &progress, batches, &plan.guards, polled.at)? {
                Committed::Done => {
                    let mut tally = tally;
                    // Trades behind rows MySQL refused were dead-lettered, not merged.
                    let refused = excluded.iter().copied();
                    audit::count_by_partition(&mut tally, raw, refused.clone(), |t| {
                        &mut t.dead_lettered
                    });
                    for i in refused {
                        if let Some(t) = tally.get_mut(&raw.partitions[i]) {
                            t.trades = t.trades.saturating_sub(1);
                        }
                    }
                    let late = plan.too_late.iter().map(|(i, _, _)| *i);
                    audit::count_by_partition(&mut tally, raw, late, |t| &mut t.late);
                    self.apply(&plan, &progress, &tally);
                    return Ok(());
                }
                Committed::Interrupted => {
                    for &p in in_batch {
                        self.rewind(p);
                    }
                    return Ok(());
                }
                Committed::Fenced => return Ok(()),
                // The views know the new horizons now: judged again.
                Committed::Stale => continue,
                Committed::DataError(e) => {
                    let bad =
                        self.find_bad_trades(rt, shutdown, decoded, &plan.keep, batches, &e)?;
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
    pub(super) fn progress(
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
            let advanced = in_batch.contains(p) && st.next != st.resume_at();
            if !advanced && st.status == Some(status) {
                continue;
            }
            if !advanced && st.committed.is_none() && status == PartitionStatus::Active {
                continue; // nothing to say yet about a partition that delivered nothing
            }
            let clock = plan.clocks.get(p).copied().unwrap_or(st.clock);
            // Only a partition with records in this commit advances; a status change keeps the
            // committed offset (the read position may be ahead of what this commit merges).
            let next_offset = if advanced { st.next } else { st.resume_at() };
            out.push(PartitionProgress {
                partition: *p,
                expected_offset: st.committed,
                next_offset,
                max_event_ms: clock.max_event_ms,
                watermark_ms: clock.watermark(ooo),
                status,
            });
        }
        out
    }

    /// Takes a committed batch's effects into the engine's state, and its offsets and records
    /// (`tally`) into the offset audit.
    pub(super) fn apply(
        &mut self,
        plan: &BatchPlan,
        progress: &[PartitionProgress],
        tally: &Tallies,
    ) {
        let mut tpl = TopicPartitionList::new();
        for pp in progress {
            if let Some(st) = self.parts.get_mut(&pp.partition) {
                let from = st.resume_at();
                let t = tally.get(&pp.partition).copied().unwrap_or_default();
                if let Some(m) = self
                    .summary
                    .audit
                    .record(pp.partition, from, pp.next_offset, t)
                {
                    tracing::error!(mismatch = %m, "offset audit: a commit's offsets and records disagree");
                    self.io
                        .metrics
                        .audit_mismatches
                        .with_label_values(&[&pp.partition.to_string()])
                        .inc();
                }
                if t.gaps > 0 {
                    self.io
                        .metrics
                        .offset_gaps
                        .with_label_values(&[&pp.partition.to_string()])
                        .inc_by(t.gaps);
                }
                let clock = plan.clocks.get(&pp.partition).copied();
                st.committed_to(pp.next_offset, pp.status, clock);
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

    /// At the end of a drain: every assigned partition is committed as drained.
    pub(super) fn commit_drained(
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
            self.commit(rt, shutdown, &progress, &plan.batches, &[], Instant::now())?
        {
            self.apply(&plan, &progress, &Tallies::new());
        }
        Ok(())
    }

    /// The transaction that merges `batches` (one per view) and advances `progress`.
    fn commit_job(
        &self,
        progress: Vec<PartitionProgress>,
        batches: Vec<RecordBatch>,
        guards: Vec<i64>,
    ) -> CommitJob {
        CommitJob {
            guards,
            sink: self.io.sink.clone(),
            tables: self.views.shared_tables(),
            batches,
            group: self.args.group.clone(),
            topic: self.args.topic.clone(),
            partition_count: self.partition_count,
            progress,
        }
    }

    /// Commits one batch's contributions and progress and waits for it, retrying transient errors.
    pub(super) fn commit(
        &mut self,
        rt: &Handle,
        shutdown: &watch::Receiver<bool>,
        progress: &[PartitionProgress],
        batches: &[RecordBatch],
        guards: &[i64],
        polled_at: Instant,
    ) -> anyhow::Result<Committed> {
        let job = self.commit_job(progress.to_vec(), batches.to_vec(), guards.to_vec());
        let started = Instant::now();
        let (result, done_at) = rt.block_on(job.run(shutdown.clone(), self.io.retry_io()));
        self.io
            .metrics
            .sink_duration
            .observe((done_at - started).as_secs_f64());
        self.committed(rt, shutdown, result, progress, polled_at, done_at)
    }

    /// Takes the outcome of a commit attempt (finished at `done_at`) into the engine's state: counts
    /// and metrics when it committed, reloads when it was fenced.
    pub(super) fn committed(
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
                if let Some(low) = low_watermark {
                    self.views.learn_low_watermark(low);
                }
                self.after_commit(finalized, low_watermark, done_at - polled_at);
                Ok(Committed::Done)
            }
            Some(CommitOutcome::Stale { horizons }) => {
                self.summary.stale += 1;
                self.undone += 1;
                tracing::info!(
                    ?horizons,
                    "commit refused: windows it merges into became final meanwhile; judging its trades again"
                );
                self.views.learn_horizons(&horizons);
                Ok(Committed::Stale)
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
                    self.remember_read_to(pp.partition);
                    let base = self.parts.remove(&pp.partition).map(|st| st.base);
                    if self.load(rt, pp.partition, base, shutdown)? {
                        if let Some(to) = self.parts.get(&pp.partition).map(|st| st.next) {
                            self.seek_partition(pp.partition, to);
                        }
                    }
                }
                Ok(Committed::Fenced)
            }
        }
    }

    /// Metrics, fault injection and readiness after a successful commit.
    pub(super) fn after_commit(
        &mut self,
        finalized: u64,
        low_watermark: Option<i64>,
        latency: Duration,
    ) {
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
}
