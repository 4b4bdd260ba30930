//! Views: one micro-batch through every view of the pipeline. Judges lateness per partition and per
//! view, then runs each view's DataFusion aggregation ([`tradewind_pipeline::ViewExec`]) over the
//! trades it admits, giving one contribution batch per view for the sink to merge.
//!
//! Lateness is decided record by record in offset order: a trade is judged against the watermark of
//! its own partition as of the records before it ([`PartitionClock`]), so the verdict depends only on
//! the partition's log, never on replicas, batch sizes or restarts. Each view judges against its own
//! window: a trade too late for a closed minute may still belong in an open hour.
//!
//! Final means final: a trade of a window MySQL already holds as final is a correction (counted in
//! `revision`) or, past the allowed lateness, too late, whatever its own partition's watermark
//! says (an idle partition that wakes, a new partition, a live run after a drain). Each view judges
//! against the larger of the partition's watermark and its table's final horizon ([`Views::learn_horizons`]);
//! each plan says up to which horizon its verdicts hold ([`BatchPlan::guards`]), and the commit
//! refuses to merge when MySQL's final rows reach further (they were made final meanwhile).
//!
//! A view's SQL that fails at run time (a division by zero in its filter) fails for that view
//! only: the trades that make it fail are found by bisection and dead-lettered ([`ViewError`]),
//! every other trade and view goes on.

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
    /// Per view, the end of the latest window MySQL holds as final, as far as this engine knows.
    horizons: Vec<Option<i64>>,
}

/// A trade one view's SQL failed on at run time: dead-lettered with reason `view_error`, left out
/// of that view only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewError {
    /// Raw index of the trade's record.
    pub raw: usize,
    /// Pipeline index of the view.
    pub view: usize,
    /// The view's name and the error.
    pub message: String,
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
    /// Per view, the largest final horizon under which this plan's verdicts hold (`i64::MAX`: any):
    /// the commit is refused when the view's table has final rows further on.
    pub guards: Vec<i64>,
    /// Per view, the decoded rows it judged on time or a correction (before its own filter).
    pub keep: Vec<BooleanArray>,
    /// Trades a view's SQL failed on (dead-lettered, left out of that view).
    pub view_errors: Vec<ViewError>,
}

/// Folds `other`'s guards ([`BatchPlan::guards`]) into `into`: the smaller holds for both.
pub fn fold_guards(into: &mut Vec<i64>, other: &[i64]) {
    if into.len() < other.len() {
        into.resize(other.len(), i64::MAX);
    }
    for (g, o) in into.iter_mut().zip(other) {
        *g = (*g).min(*o);
    }
}

/// Where each decoded row came from: raw index -> (partition, offset).
pub struct Origins<'a> {
    /// Raw index of each decoded row.
    pub source: &'a [u32],
    /// Partition of each raw record.
    pub partitions: &'a [i32],
    /// Offset of each raw record.
    pub offsets: &'a [i64],
    /// Kafka timestamp of each raw record (epoch ms, negative or absent: none): a trade dated
    /// ahead of its record moves its partition's clock no further than the record's time.
    pub timestamps: &'a [i64],
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
            horizons: vec![None; execs.len()],
            execs,
            lateness,
        })
    }

    /// Takes in the final horizons MySQL reported (one per view, see
    /// [`tradewind_sink::MySqlSink::final_horizons`]); a horizon only moves forward.
    pub fn learn_horizons(&mut self, horizons: &[Option<i64>]) {
        for (h, new) in self.horizons.iter_mut().zip(horizons) {
            *h = (*h).max(*new);
        }
    }

    /// Takes in a committed low watermark: every window ending at or before it is final in every
    /// table (`i64::MAX`, a drain's end, says nothing about where the rows end).
    pub fn learn_low_watermark(&mut self, low: i64) {
        if low != i64::MAX {
            for h in &mut self.horizons {
                *h = (*h).max(Some(low));
            }
        }
    }

    /// Per view, the final horizon lateness is judged against.
    pub fn horizons(&self) -> &[Option<i64>] {
        &self.horizons
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
        let (keep, late) = self.verdicts(ts, &marks, &mut plan.guards);
        count(&marks, &keep, &late, origins, &mut plan);
        let ord = Decimal128Array::from(ord).with_precision_and_scale(38, 0)?;
        let input = ViewInput {
            trades: trades_batch(batch)?,
            ord: Arc::new(ord) as ArrayRef,
        };
        let mut failed = vec![false; self.execs.len()];
        for (v, exec) in self.execs.iter().enumerate() {
            // Rolled up from its source's rows when both judged every trade alike (always, unless
            // a trade was late for one window size and not the other) and the source's SQL failed
            // on none of them.
            let same = |u: usize| keep[u] == keep[v] && late[u] == late[v] && !failed[u];
            let rolled = match exec.rollup_source() {
                Some(u) if u < v && same(u) => {
                    exec.contribute_from(&plan.batches[u], now_ms, order).ok()
                }
                _ => None,
            };
            let batch = match rolled {
                Some(b) => b,
                None => {
                    let errors_before = plan.view_errors.len();
                    let b = self.contribute_isolating(
                        v,
                        &input,
                        (&keep[v], &late[v]),
                        (now_ms, order),
                        &decoded.source,
                        &mut plan.view_errors,
                    )?;
                    failed[v] = plan.view_errors.len() > errors_before;
                    b
                }
            };
            plan.batches.push(batch);
        }
        plan.keep = keep;
        Ok(plan)
    }

    /// View `v`'s contribution of the trades `keep` selects; when its SQL fails at run time, the
    /// trades that make it fail are found by bisection, recorded in `errors` and left out (all of
    /// them, when the failure needs no particular trade).
    fn contribute_isolating(
        &self,
        v: usize,
        input: &ViewInput,
        (keep, late): (&BooleanArray, &BooleanArray),
        (now_ms, order): (i64, RowOrder),
        source: &[u32],
        errors: &mut Vec<ViewError>,
    ) -> Result<RecordBatch, PipelineError> {
        let exec = &self.execs[v];
        let first = match exec.contribute(input, keep, late, now_ms, order) {
            Ok(b) => return Ok(b),
            Err(e) => e,
        };
        let name = &exec.view().name;
        let rows: Vec<usize> = (0..keep.len()).filter(|&r| keep.value(r)).collect();
        let attempt = |rows: &[usize]| {
            let mask = mask_of(keep.len(), rows);
            exec.contribute(input, &mask, late, now_ms, RowOrder::Any)
                .err()
                .map(|e| e.to_string())
        };
        let mut bad: Vec<(usize, String)> = Vec::new();
        bisect(&rows, first.to_string(), &attempt, &mut bad);
        let bad_rows: HashSet<usize> = bad.iter().map(|(r, _)| *r).collect();
        let good: Vec<usize> = rows
            .iter()
            .copied()
            .filter(|r| !bad_rows.contains(r))
            .collect();
        let out = match exec.contribute(input, &mask_of(keep.len(), &good), late, now_ms, order) {
            Ok(b) => b,
            Err(e) => {
                // Only all of them together fail: none of this batch reaches the view.
                let msg = e.to_string();
                bad.extend(good.iter().map(|&r| (r, msg.clone())));
                exec.contribute(input, &mask_of(keep.len(), &[]), late, now_ms, order)?
            }
        };
        tracing::warn!(view = %name, trades = bad.len(), error = %first, "the view's SQL failed at run time; the trades it fails on go to the dead-letter topic (view_error), the rest go on");
        errors.extend(bad.into_iter().map(|(r, message)| ViewError {
            raw: source[r] as usize,
            view: v,
            message: format!("view `{name}`: {message}"),
        }));
        Ok(out)
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
            // A trade dated ahead of its record (within the future tolerance) moves the clock
            // only to the record's time: the watermark never runs ahead of the log.
            let logged = origins.timestamps.get(i).copied().filter(|k| *k >= 0);
            let t = logged.map_or(t, |k| t.min(k));
            st.max_event_ms = Some(st.max_event_ms.map_or(t, |m| m.max(t)));
        }
        if let Some((cp, c)) = current {
            clocks.insert(cp, c);
        }
        (marks, ord)
    }

    /// Pass 2, per view, vectorised: kept (not too late) and late (a correction), each trade judged
    /// against the larger of its partition's watermark and the view's final horizon; and per view
    /// the largest horizon under which these verdicts hold (into `guards`).
    fn verdicts(
        &self,
        ts: &[i64],
        marks: &[i64],
        guards: &mut Vec<i64>,
    ) -> (Vec<BooleanArray>, Vec<BooleanArray>) {
        let n = ts.len();
        let allowed = self.lateness.allowed_ms;
        let mut keep = Vec::with_capacity(self.execs.len());
        let mut late = Vec::with_capacity(self.execs.len());
        for (exec, horizon) in self.execs.iter().zip(&self.horizons) {
            let size = exec.view().window_ms;
            let end = |r: usize| window_start(ts[r], size).saturating_add(size);
            let mark = |r: usize| match (marks[r], *horizon) {
                (NO_ROW, _) => NO_ROW,
                (NO_WATERMARK, Some(h)) => h,
                (m, Some(h)) => m.max(h),
                (m, None) => m,
            };
            // A window ends after each of its trades, so a trade at or after the mark is on time
            // for every view: only the (few) older ones need their window computed.
            let may_be_late = |r: usize| mark(r) > NO_WATERMARK && ts[r] < mark(r);
            let too_late = |r: usize| may_be_late(r) && end(r).saturating_add(allowed) <= mark(r);
            let k = BooleanArray::new(
                BooleanBuffer::collect_bool(n, |r| mark(r) != NO_ROW && !too_late(r)),
                None,
            );
            let l = BooleanArray::new(
                BooleanBuffer::collect_bool(n, |r| {
                    may_be_late(r) && end(r) <= mark(r) && !too_late(r)
                }),
                None,
            );
            guards.push(guard(ts, &k, &l, size, allowed));
            keep.push(k);
            late.push(l);
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
    /// values, same window, and aggregated by the view (`keep`: the plan's verdicts for the view,
    /// and its row filter), so a refused row sets aside no trade outside the view's filter and none
    /// routed as too late.
    pub fn trades_of_row(
        &self,
        view: usize,
        contribution: &RecordBatch,
        row: usize,
        decoded: &Decoded,
        keep: Option<&BooleanArray>,
    ) -> Vec<usize> {
        let Some(exec) = self.execs.get(view) else {
            return Vec::new();
        };
        let v = exec.view();
        let n = decoded.batch.num_rows();
        let all = BooleanArray::from(vec![true; n]);
        let keep = keep.filter(|k| k.len() == n).unwrap_or(&all);
        let admitted = trades_batch(&decoded.batch)
            .map_err(PipelineError::from)
            .and_then(|trades| {
                let ord = Decimal128Array::from(vec![0i128; n]).with_precision_and_scale(38, 0)?;
                let input = ViewInput {
                    trades,
                    ord: Arc::new(ord) as ArrayRef,
                };
                exec.admitted(&input, keep)
            })
            .unwrap_or_else(|_| keep.clone());
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
        (0..n)
            .filter(|&r| admitted.value(r))
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

/// The largest final horizon under which a view's verdicts (`keep`, `late`, windows of `size`)
/// hold: a horizon reaching the end of an on-time trade's window would make it a correction, one
/// reaching the end of a correction's window plus the allowed lateness would make it too late.
fn guard(ts: &[i64], keep: &BooleanArray, late: &BooleanArray, size: i64, allowed: i64) -> i64 {
    let (mut on_time, mut corrections) = (i64::MAX, i64::MAX);
    for r in keep.values().set_indices() {
        if late.value(r) {
            corrections = corrections.min(ts[r]);
        } else {
            on_time = on_time.min(ts[r]);
        }
    }
    let end = |t: i64| window_start(t, size).saturating_add(size);
    let holds = |t: i64, slack: i64| {
        if t == i64::MAX {
            i64::MAX
        } else {
            end(t).saturating_add(slack).saturating_sub(1)
        }
    };
    holds(on_time, 0).min(holds(corrections, allowed))
}

/// A mask over `n` rows selecting `rows`.
fn mask_of(n: usize, rows: &[usize]) -> BooleanArray {
    let mut bits = vec![false; n];
    for &r in rows {
        if let Some(b) = bits.get_mut(r) {
            *b = true;
        }
    }
    BooleanArray::from(bits)
}

/// At most this many extra aggregation runs to find the trades a view's SQL fails on; past it the
/// failing subsets are set aside whole.
const BISECT_BUDGET: usize = 512;

/// Finds the rows of `rows` (which fail together with `err`) that make `attempt` fail: halves that
/// fail are split again; a failing row alone, or a failing set neither of whose halves fails, or
/// any failing set once the budget is spent, goes into `bad` with its error.
fn bisect(
    rows: &[usize],
    err: String,
    attempt: &dyn Fn(&[usize]) -> Option<String>,
    bad: &mut Vec<(usize, String)>,
) {
    let mut budget = BISECT_BUDGET;
    let mut stack = vec![(rows, err)];
    while let Some((rows, err)) = stack.pop() {
        if rows.len() <= 1 || budget < 2 {
            bad.extend(rows.iter().map(|&r| (r, err.clone())));
            continue;
        }
        budget -= 2;
        let (a, b) = rows.split_at(rows.len() / 2);
        match (attempt(a), attempt(b)) {
            (None, None) => bad.extend(rows.iter().map(|&r| (r, err.clone()))),
            (ea, eb) => {
                stack.extend(ea.map(|e| (a, e)));
                stack.extend(eb.map(|e| (b, e)));
            }
        }
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
