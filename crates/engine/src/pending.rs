//! The micro-batches consumed since the last commit, folded together: each view's contribution
//! rows, the partition clocks they reached and their counts. While a backlog is read the engine
//! commits them in one MySQL transaction per commit interval, so each window row is merged once per
//! commit instead of once per micro-batch; a caught-up engine commits every micro-batch at once.
//!
//! Nothing here is durable: a crash loses the folded state, and the records behind it are read
//! again from the offsets MySQL holds, as after any crash.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use tradewind_pipeline::RowOrder;

use crate::audit::{self, Tallies};
use crate::views::{BatchPlan, Views};
use crate::window::PartitionClock;

/// Contribution batches of one view folded into one when this many have gathered (bounds memory
/// and the cost of the final fold).
const FOLD_EVERY: usize = 8;

/// Uncommitted micro-batches, folded.
#[derive(Debug, Default)]
pub struct Pending {
    /// Per view, contribution batches not yet folded into one.
    parts: Vec<Vec<RecordBatch>>,
    /// Partition clocks after the last folded micro-batch.
    pub clocks: HashMap<i32, PartitionClock>,
    /// Partitions that delivered records (or counted gaps) to a folded micro-batch.
    pub partitions: BTreeSet<i32>,
    /// Per partition, what the folded micro-batches did with their records (the offset audit).
    pub tally: Tallies,
    /// Trades windowed by at least one view.
    trades: u64,
    /// Late trades folded in as corrections.
    corrected: u64,
    /// Per view, the final horizon the folded verdicts hold under ([`BatchPlan::guards`]).
    guards: Vec<i64>,
    /// Micro-batches folded.
    micro_batches: usize,
    /// Window rows held in `parts`, across views (after the last partial fold).
    rows: usize,
    /// When the oldest folded micro-batch was polled.
    since: Option<Instant>,
}

impl Pending {
    /// Whether nothing has been folded since the last commit.
    pub fn is_empty(&self) -> bool {
        self.micro_batches == 0
    }

    /// When the oldest folded micro-batch was polled.
    pub fn since(&self) -> Option<Instant> {
        self.since
    }

    /// Folds one micro-batch's plan in (its side outputs are routed already).
    pub fn fold(
        &mut self,
        views: &Views,
        plan: BatchPlan,
        in_batch: &BTreeSet<i32>,
        tally: &Tallies,
        polled_at: Instant,
        now_ms: i64,
    ) -> anyhow::Result<()> {
        if self.parts.len() < plan.batches.len() {
            self.parts.resize_with(plan.batches.len(), Vec::new);
        }
        for (v, b) in plan.batches.into_iter().enumerate() {
            if b.num_rows() == 0 {
                continue;
            }
            let parts = &mut self.parts[v];
            self.rows += b.num_rows();
            parts.push(b);
            if parts.len() >= FOLD_EVERY {
                let before: usize = parts.iter().map(|p| p.num_rows()).sum();
                let folded = views.combine(v, parts, now_ms, RowOrder::Any)?;
                parts.clear();
                parts.extend(folded);
                let after: usize = parts.iter().map(|p| p.num_rows()).sum();
                self.rows = self.rows.saturating_sub(before) + after;
            }
        }
        crate::views::fold_guards(&mut self.guards, &plan.guards);
        self.clocks.extend(plan.clocks);
        self.partitions.extend(in_batch.iter().copied());
        audit::merge(&mut self.tally, tally);
        self.trades += plan.trades;
        self.corrected += plan.corrected;
        self.micro_batches += 1;
        self.since.get_or_insert(polled_at);
        Ok(())
    }

    /// Whether to commit now: something is folded and either no further micro-batch is waiting
    /// (caught up), the oldest one has waited `interval`, or the fold holds `max_rows` window rows
    /// (memory is bounded by size as well as by time).
    pub fn due(&self, more_waiting: bool, interval: Duration, max_rows: usize) -> bool {
        !self.is_empty()
            && (!more_waiting
                || self.rows >= max_rows
                || self.since.is_some_and(|t| t.elapsed() >= interval))
    }

    /// Window rows folded, across views.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Empties the fold into one plan: each view's rows folded into one batch (an empty batch for
    /// a view with none), the clocks and the counts. The partitions stay in
    /// [`Pending::partitions`] until [`Pending::clear`].
    pub fn take(&mut self, views: &Views, now_ms: i64) -> anyhow::Result<BatchPlan> {
        let mut batches = Vec::with_capacity(views.tables().len());
        let empty = views.empty_batches();
        for (v, e) in empty.into_iter().enumerate() {
            let parts = self.parts.get(v).map_or(&[][..], |p| p.as_slice());
            batches.push(
                views
                    .combine(v, parts, now_ms, RowOrder::Keys)?
                    .unwrap_or(e),
            );
        }
        let plan = BatchPlan {
            batches,
            clocks: std::mem::take(&mut self.clocks),
            too_late: Vec::new(),
            corrected: self.corrected,
            trades: self.trades,
            guards: std::mem::take(&mut self.guards),
            ..BatchPlan::default()
        };
        self.parts.clear();
        self.trades = 0;
        self.corrected = 0;
        self.micro_batches = 0;
        self.rows = 0;
        self.since = None;
        Ok(plan)
    }

    /// Forgets everything folded (after a commit, or when it was abandoned).
    pub fn clear(&mut self) {
        *self = Pending::default();
    }
}
