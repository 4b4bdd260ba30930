//! Views: one micro-batch through every view of the pipeline. Judges lateness per partition and per
//! view, then runs each view's DataFusion aggregation ([`tradewind_pipeline::ViewExec`]) over the
//! trades it admits, giving one contribution batch per view for the sink to merge.
//!
//! Lateness is decided record by record in offset order: a trade is judged against the watermark of
//! its own partition as of the records before it ([`PartitionClock`]), so the verdict depends only on
//! the partition's log, never on replicas, batch sizes or restarts. Each view judges against its own
//! window: a trade too late for a closed minute may still belong in an open hour.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMillisecondType;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_array::{BooleanArray, Decimal128Array};
use arrow_buffer::BooleanBuffer;
use tradewind_pipeline::{Pipeline, PipelineError, RowOrder, ViewExec, ViewInput};
use tradewind_sink::MergeTable;

use crate::decode::Decoded;
use crate::window::{order_key, window_start, PartitionClock};

/// Pass-1 mark of a row that is not ours (partition not assigned) or set aside (refused by MySQL).
const NO_ROW: i64 = i64::MIN;
/// Pass-1 mark of a row whose partition has no watermark yet (nothing is late).
const NO_WATERMARK: i64 = i64::MIN + 1;

/// Lateness settings shared by every view.
#[derive(Debug, Clone, Copy)]
pub struct Lateness {
    /// Out-of-orderness bound: the watermark trails the largest event time by this much, ms.
    pub out_of_orderness_ms: i64,
    /// Allowed lateness after a window closes, ms: later trades are corrections, beyond it too late.
    pub allowed_ms: i64,
}

/// The planned views of a pipeline.
pub struct Views {
    execs: Vec<ViewExec>,
    tables: Arc<[MergeTable]>,
    lateness: Lateness,
}

/// One micro-batch's window work, computed without touching the engine's committed state.
#[derive(Debug, Default)]
pub struct BatchPlan {
    /// Contribution rows per view, in pipeline order.
    pub batches: Vec<RecordBatch>,
    /// Partition clocks after the batch.
    pub clocks: HashMap<i32, PartitionClock>,
    /// Raw indices of trades too late for at least one view, with the partition watermark they were
    /// judged against and the views that refused them.
    pub too_late: Vec<(usize, i64, Vec<usize>)>,
    /// Trades that were late but within the allowed lateness for at least one view.
    pub corrected: u64,
    /// Trades windowed by at least one view.
    pub trades: u64,
}

/// Where each decoded row came from: raw index -> (partition, offset).
pub struct Origins<'a> {
    /// Raw index of each decoded row.
    pub source: &'a [u32],
    /// Partition of each raw record.
    pub partitions: &'a [i32],
    /// Offset of each raw record.
    pub offsets: &'a [i64],
}

impl Views {
    /// Plans every view of `pipeline` once.
    pub fn new(pipeline: &Pipeline, lateness: Lateness) -> Result<Views, PipelineError> {
        let mut execs = pipeline
            .views
            .iter()
            .cloned()
            .map(ViewExec::new)
            .collect::<Result<Vec<_>, _>>()?;
        // A view that can be re-aggregated from an earlier view's rows is (the coarsest such view:
        // asset_1d from asset_1h, not from the minutes).
        let views = &pipeline.views;
        for (v, exec) in execs.iter_mut().enumerate().skip(1) {
            let mut sources: Vec<usize> = (0..v)
                .filter(|&u| tradewind_pipeline::rollup_of(&views[v], &views[u]).is_some())
                .collect();
            sources.sort_by_key(|&u| (std::cmp::Reverse(views[u].window_ms), views[u].keys.len()));
            if let Some(&u) = sources.first() {
                let rolled = exec.roll_up_from(u, &views[u]);
                tracing::info!(view = %views[v].name, from = %views[u].name, rolled, "view rolls up from another view's rows");
            }
        }
        Ok(Views {
            tables: pipeline.merge_tables().into(),
            execs,
            lateness,
        })
    }

    /// The views' merge tables, in pipeline order.
    pub fn tables(&self) -> &[MergeTable] {
        &self.tables
    }

    /// The merge tables, shared (a commit running on the runtime holds them).
    pub fn shared_tables(&self) -> Arc<[MergeTable]> {
        self.tables.clone()
    }

    /// Judges and aggregates one decoded batch. `clock(p)` is partition `p`'s committed clock (`None`:
    /// not ours, its rows are skipped); `excluded` holds raw indices set aside (refused by MySQL).
    /// Contribution rows come in `order` (a micro-batch folded before its commit needs none).
    pub fn plan(
        &self,
        decoded: &Decoded,
        origins: &Origins<'_>,
        clock: impl Fn(i32) -> Option<PartitionClock>,
        excluded: &HashSet<usize>,
        now_ms: i64,
        order: RowOrder,
    ) -> Result<BatchPlan, PipelineError> {
        let batch = &decoded.batch;
        let ts = batch
            .column(6)
            .as_primitive_opt::<TimestampMillisecondType>()
            .ok_or_else(|| arrow_schema::ArrowError::SchemaError("timestamp column".into()))?
            .values();
        let mut plan = BatchPlan::default();
        let (marks, ord) = self.marks(ts, origins, clock, excluded, &mut plan.clocks);
        let (keep, late) = self.verdicts(ts, &marks);
        count(&marks, &keep, &late, origins, &mut plan);
        let ord = Decimal128Array::from(ord).with_precision_and_scale(38, 0)?;
        let input = ViewInput {
            trades: trades_batch(batch)?,
            ord: Arc::new(ord) as ArrayRef,
        };
        for (v, exec) in self.execs.iter().enumerate() {
            // Rolled up from its source's rows when both judged every trade alike (always, unless
            // a trade was late for one window size and not the other).
            let same = |u: usize| keep[u] == keep[v] && late[u] == late[v];
            let batch = match exec.rollup_source() {
                Some(u) if u < v && same(u) => {
                    exec.contribute_from(&plan.batches[u], now_ms, order)?
                }
                _ => exec.contribute(&input, &keep[v], &late[v], now_ms, order)?,
            };
            plan.batches.push(batch);
        }
        Ok(plan)
    }

    /// Pass 1, record by record in offset order: each trade's ordering key and the watermark of its
    /// partition before it ([`NO_ROW`]: not ours or set aside; [`NO_WATERMARK`]: none yet). Advances
    /// the partition clocks in `clocks`.
    fn marks(
        &self,
        ts: &[i64],
        origins: &Origins<'_>,
        clock: impl Fn(i32) -> Option<PartitionClock>,
        excluded: &HashSet<usize>,
        clocks: &mut HashMap<i32, PartitionClock>,
    ) -> (Vec<i64>, Vec<i128>) {
        let n = ts.len();
        let mut marks: Vec<i64> = Vec::with_capacity(n);
        let mut ord: Vec<i128> = Vec::with_capacity(n);
        let ooo = self.lateness.out_of_orderness_ms;
        let mut current: Option<(i32, PartitionClock)> = None;
        for (row, &t) in ts.iter().enumerate() {
            let i = origins.source[row] as usize;
            let p = origins.partitions[i];
            if current.is_none_or(|(cp, _)| cp != p) {
                if let Some((cp, c)) = current.take() {
                    clocks.insert(cp, c);
                }
                current = clocks.get(&p).copied().or_else(|| clock(p)).map(|c| (p, c));
            }
            let st = match &mut current {
                Some((_, st)) if excluded.is_empty() || !excluded.contains(&i) => st,
                _ => {
                    marks.push(NO_ROW);
                    ord.push(0);
                    continue;
                }
            };
            ord.push(order_key(t, p, origins.offsets[i]));
            marks.push(st.watermark(ooo).unwrap_or(NO_WATERMARK));
            st.max_event_ms = Some(st.max_event_ms.map_or(t, |m| m.max(t)));
        }
        if let Some((cp, c)) = current {
            clocks.insert(cp, c);
        }
        (marks, ord)
    }

    /// Pass 2, per view, vectorised: kept (not too late) and late (a correction).
    fn verdicts(&self, ts: &[i64], marks: &[i64]) -> (Vec<BooleanArray>, Vec<BooleanArray>) {
        let n = ts.len();
        let allowed = self.lateness.allowed_ms;
        let mut keep = Vec::with_capacity(self.execs.len());
        let mut late = Vec::with_capacity(self.execs.len());
        for exec in &self.execs {
            let size = exec.view().window_ms;
            let end = |r: usize| window_start(ts[r], size).saturating_add(size);
            // A window ends after each of its trades, so a trade at or after the watermark is on
            // time for every view: only the (few) older ones need their window computed.
            let may_be_late = |r: usize| marks[r] > NO_WATERMARK && ts[r] < marks[r];
            let too_late = |r: usize| may_be_late(r) && end(r).saturating_add(allowed) <= marks[r];
            keep.push(BooleanArray::new(
                BooleanBuffer::collect_bool(n, |r| marks[r] != NO_ROW && !too_late(r)),
                None,
            ));
            late.push(BooleanArray::new(
                BooleanBuffer::collect_bool(n, |r| {
                    may_be_late(r) && end(r) <= marks[r] && !too_late(r)
                }),
                None,
            ));
        }
        (keep, late)
    }

    /// View `v`'s contribution batches `parts` folded into one (see [`ViewExec::combine`]); `None`
    /// when they hold no row; in `order`.
    pub fn combine(
        &self,
        v: usize,
        parts: &[RecordBatch],
        now_ms: i64,
        order: RowOrder,
    ) -> Result<Option<RecordBatch>, PipelineError> {
        match self.execs.get(v) {
            Some(exec) => exec.combine(parts, now_ms, order),
            None => Ok(None),
        }
    }

    /// Empty contribution batches (a commit that only moves offsets or statuses).
    pub fn empty_batches(&self) -> Vec<RecordBatch> {
        self.tables
            .iter()
            .map(|_| RecordBatch::new_empty(Arc::new(arrow_schema::Schema::empty())))
            .collect()
    }

    /// The raw indices of the trades behind row `row` of view `view`'s contribution batch: same key
    /// values, same window.
    pub fn trades_of_row(
        &self,
        view: usize,
        contribution: &RecordBatch,
        row: usize,
        decoded: &Decoded,
        excluded: &HashSet<usize>,
    ) -> Vec<usize> {
        let Some(exec) = self.execs.get(view) else {
            return Vec::new();
        };
        let v = exec.view();
        let keys: Vec<(usize, String)> = v
            .keys
            .iter()
            .filter_map(|(name, trade_col)| {
                let value = contribution
                    .column_by_name(name)?
                    .as_string_opt::<i32>()?
                    .value(row)
                    .to_string();
                let idx = decoded.batch.schema().index_of(trade_col).ok()?;
                Some((idx, value))
            })
            .collect();
        let start = contribution
            .column_by_name("window_start")
            .and_then(|c| c.as_primitive_opt::<TimestampMillisecondType>())
            .map(|a| a.value(row));
        let ts = decoded
            .batch
            .column(6)
            .as_primitive::<TimestampMillisecondType>();
        (0..decoded.batch.num_rows())
            .filter(|&r| !excluded.contains(&(decoded.source[r] as usize)))
            .filter(|&r| Some(window_start(ts.value(r), v.window_ms)) == start)
            .filter(|&r| {
                keys.iter().all(|(c, value)| {
                    decoded
                        .batch
                        .column(*c)
                        .as_string_opt::<i32>()
                        .is_some_and(|a| a.value(r) == value)
                })
            })
            .map(|r| decoded.source[r] as usize)
            .collect()
    }
}

/// Pass 3: how many trades some view kept and how many were corrections, and the trades some view
/// refused (with the watermark and the views).
fn count(
    marks: &[i64],
    keep: &[BooleanArray],
    late: &[BooleanArray],
    origins: &Origins<'_>,
    plan: &mut BatchPlan,
) {
    let ours = marks.iter().filter(|m| **m != NO_ROW).count();
    let kept_by_all = keep.iter().all(|k| k.true_count() == ours);
    for (r, &m) in marks.iter().enumerate() {
        if m == NO_ROW {
            continue;
        }
        plan.corrected += u64::from(late.iter().any(|l| l.value(r)));
        if kept_by_all {
            plan.trades += 1;
            continue;
        }
        let refused: Vec<usize> = (0..keep.len()).filter(|&v| !keep[v].value(r)).collect();
        plan.trades += u64::from(refused.len() < keep.len());
        if !refused.is_empty() {
            plan.too_late.push((origins.source[r] as usize, m, refused));
        }
    }
}

/// The decoded batch as `trades` ([`tradewind_pipeline::trades_schema`]): same arrays, renamed and
/// reordered (no copy).
fn trades_batch(batch: &RecordBatch) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let c = |i: usize| batch.column(i).clone();
    RecordBatch::try_new(
        tradewind_pipeline::trades_schema(),
        vec![c(0), c(1), c(2), c(3), c(4), c(5), c(7), c(6)],
    )
}
