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

use arrow_array::builder::{BooleanBuilder, Decimal128Builder};
use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMillisecondType;
use arrow_array::{ArrayRef, RecordBatch};
use tradewind_pipeline::{Pipeline, PipelineError, View, ViewExec, ViewInput};
use tradewind_sink::MergeTable;

use crate::decode::Decoded;
use crate::window::{order_key, window_start, PartitionClock};

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
    tables: Vec<MergeTable>,
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
        let execs = pipeline
            .views
            .iter()
            .cloned()
            .map(ViewExec::new)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Views {
            tables: pipeline.merge_tables(),
            execs,
            lateness,
        })
    }

    /// The views' merge tables, in pipeline order.
    pub fn tables(&self) -> &[MergeTable] {
        &self.tables
    }

    /// The views, in pipeline order.
    pub fn views(&self) -> impl Iterator<Item = &View> {
        self.execs.iter().map(ViewExec::view)
    }

    /// Judges and aggregates one decoded batch. `clock(p)` is partition `p`'s committed clock (`None`:
    /// not ours, its rows are skipped); `excluded` holds raw indices set aside (refused by MySQL).
    pub fn plan(
        &self,
        decoded: &Decoded,
        origins: &Origins<'_>,
        clock: impl Fn(i32) -> Option<PartitionClock>,
        excluded: &HashSet<usize>,
        now_ms: i64,
    ) -> Result<BatchPlan, PipelineError> {
        let batch = &decoded.batch;
        let n = batch.num_rows();
        let ts = batch
            .column(6)
            .as_primitive_opt::<TimestampMillisecondType>()
            .ok_or_else(|| arrow_schema::ArrowError::SchemaError("timestamp column".into()))?;
        let mut plan = BatchPlan::default();
        let nv = self.execs.len();
        let mut keep: Vec<BooleanBuilder> =
            (0..nv).map(|_| BooleanBuilder::with_capacity(n)).collect();
        let mut late: Vec<BooleanBuilder> =
            (0..nv).map(|_| BooleanBuilder::with_capacity(n)).collect();
        let mut ord = Decimal128Builder::with_capacity(n)
            .with_data_type(arrow_schema::DataType::Decimal128(38, 0));
        let sizes: Vec<i64> = self.execs.iter().map(|e| e.view().window_ms).collect();
        let (ooo, allowed) = (self.lateness.out_of_orderness_ms, self.lateness.allowed_ms);
        for row in 0..n {
            let i = origins.source[row] as usize;
            let (p, t) = (origins.partitions[i], ts.value(row));
            let st = match plan.clocks.get_mut(&p) {
                Some(c) => Some(c),
                None => clock(p).map(|c| plan.clocks.entry(p).or_insert(c)),
            };
            let Some(st) = st.filter(|_| !excluded.contains(&i)) else {
                ord.append_value(0);
                for v in 0..nv {
                    keep[v].append_value(false);
                    late[v].append_value(false);
                }
                continue;
            };
            ord.append_value(order_key(t, p, origins.offsets[i]));
            let w = st.watermark(ooo);
            st.max_event_ms = Some(st.max_event_ms.map_or(t, |m| m.max(t)));
            let (mut refused, mut any_kept, mut any_late) = (Vec::new(), false, false);
            for (v, size) in sizes.iter().enumerate() {
                let end = window_start(t, *size).saturating_add(*size);
                let too_late = w.is_some_and(|w| end.saturating_add(allowed) <= w);
                let is_late = !too_late && w.is_some_and(|w| end <= w);
                keep[v].append_value(!too_late);
                late[v].append_value(is_late);
                if too_late {
                    refused.push(v);
                }
                any_kept |= !too_late;
                any_late |= is_late;
            }
            if let (false, Some(w)) = (refused.is_empty(), w) {
                plan.too_late.push((i, w, refused));
            }
            plan.trades += u64::from(any_kept);
            plan.corrected += u64::from(any_late);
        }
        let input = ViewInput {
            trades: trades_batch(batch)?,
            ord: Arc::new(ord.finish()) as ArrayRef,
        };
        for (v, exec) in self.execs.iter().enumerate() {
            let (k, l) = (keep[v].finish(), late[v].finish());
            plan.batches.push(exec.contribute(&input, &k, &l, now_ms)?);
        }
        Ok(plan)
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

/// The decoded batch as `trades` ([`tradewind_pipeline::trades_schema`]): same arrays, renamed and
/// reordered (no copy).
fn trades_batch(batch: &RecordBatch) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let c = |i: usize| batch.column(i).clone();
    RecordBatch::try_new(
        tradewind_pipeline::trades_schema(),
        vec![c(0), c(1), c(2), c(3), c(4), c(5), c(7), c(6)],
    )
}
