//! Execution: a view's state aggregation as DataFusion's hash aggregation operator
//! (`AggregateExec`, planned once per view) over each micro-batch, and the contribution batch the
//! sink merges.

use std::sync::{Arc, Mutex};

use arrow_array::builder::{BooleanBuilder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampMillisecondType};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, RecordBatch, TimestampMillisecondArray,
};
use arrow_schema::{DataType, SchemaRef, SortOptions};
use datafusion_common::{DFSchema, Result as DfResult};
use datafusion_execution::TaskContext;
use datafusion_expr::execution_props::ExecutionProps;
use datafusion_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion_expr::{AggregateUDF, Expr};
use datafusion_physical_expr::aggregate::{AggregateExprBuilder, AggregateFunctionExpr};
use datafusion_physical_expr::expressions::col;
use datafusion_physical_expr::{create_physical_expr, PhysicalExpr, PhysicalSortExpr};
use datafusion_physical_plan::aggregates::{AggregateExec, AggregateMode, PhysicalGroupBy};
use datafusion_physical_plan::memory::{LazyBatchGenerator, LazyMemoryExec};
use datafusion_physical_plan::ExecutionPlan;
use futures::TryStreamExt;
use parking_lot::RwLock;

use crate::compile::{StateAgg, StateKind, View};
use crate::{PipelineError, LATE_COLUMN, ORD_COLUMN, UTC, WINDOW_COLUMN};

/// One micro-batch as every view reads it: the valid trades ([`crate::trades_schema`]) and each
/// trade's ordering key.
#[derive(Debug, Clone)]
pub struct ViewInput {
    /// The trades, in [`crate::trades_schema`].
    pub trades: RecordBatch,
    /// `DECIMAL(38,0)` ordering key per trade ([`crate::ORD_COLUMN`]).
    pub ord: ArrayRef,
}

/// The order of a view's contribution rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowOrder {
    /// Sorted by keys and window start: what a commit needs (concurrent replicas lock rows in one
    /// order).
    Keys,
    /// As the aggregation left them: for rows that are folded again before any commit.
    Any,
}

/// The batch slot the planned `AggregateExec` reads from: set before each execution.
#[derive(Debug, Default)]
struct Slot {
    shared: Arc<Mutex<Option<RecordBatch>>>,
}

impl std::fmt::Display for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("micro-batch")
    }
}

impl LazyBatchGenerator for Slot {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn generate_next_batch(&mut self) -> DfResult<Option<RecordBatch>> {
        Ok(self.shared.lock().ok().and_then(|mut s| s.take()))
    }

    fn reset_state(&self) -> Arc<RwLock<dyn LazyBatchGenerator>> {
        Arc::new(RwLock::new(Slot {
            shared: self.shared.clone(),
        }))
    }
}

/// The error of a row filter whose value is not boolean.
fn not_boolean() -> arrow_schema::ArrowError {
    arrow_schema::ArrowError::SchemaError("the row filter is not boolean".into())
}

/// An aggregate's `FILTER (WHERE ...)`, physical.
type Filter = Option<Arc<dyn PhysicalExpr>>;

/// One planned `AggregateExec` over a slot that holds the batch of the current execution.
#[derive(Debug)]
struct Planned {
    plan: Arc<dyn ExecutionPlan>,
    slot: Arc<Mutex<Option<RecordBatch>>>,
    /// Held for a whole execution: one batch in the slot at a time.
    running: Mutex<()>,
    task: Arc<TaskContext>,
}

impl Planned {
    /// Plans `GROUP BY groups` with `aggs` (and their filters) over batches of `schema`.
    fn new(
        schema: SchemaRef,
        groups: Vec<(Arc<dyn PhysicalExpr>, String)>,
        aggs: Vec<Arc<AggregateFunctionExpr>>,
        filters: Vec<Filter>,
    ) -> DfResult<Planned> {
        let slot = Arc::new(Mutex::new(None));
        let source: Arc<RwLock<dyn LazyBatchGenerator>> = Arc::new(RwLock::new(Slot {
            shared: slot.clone(),
        }));
        let input = Arc::new(LazyMemoryExec::try_new(schema.clone(), vec![source])?);
        let plan = Arc::new(AggregateExec::try_new(
            AggregateMode::Single,
            PhysicalGroupBy::new_single(groups),
            aggs,
            filters,
            input,
            schema,
        )?);
        let task = Arc::new(TaskContext::default().with_session_config(
            datafusion_execution::config::SessionConfig::new().with_batch_size(1 << 20),
        ));
        Ok(Planned {
            plan,
            slot,
            running: Mutex::new(()),
            task,
        })
    }

    /// Runs the aggregation over `batch`: one output batch (groups, then aggregates).
    fn run(&self, batch: RecordBatch) -> Result<RecordBatch, PipelineError> {
        if batch.num_rows() == 0 {
            return Ok(RecordBatch::new_empty(self.plan.schema()));
        }
        let _running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Ok(mut s) = self.slot.lock() {
            *s = Some(batch);
        }
        let stream = self.plan.execute(0, self.task.clone())?;
        let mut batches: Vec<RecordBatch> = futures::executor::block_on(stream.try_collect())?;
        if batches.len() == 1 {
            return Ok(batches.remove(0));
        }
        Ok(arrow_select::concat::concat_batches(
            &self.plan.schema(),
            &batches,
        )?)
    }
}

/// A view computed from another view's contribution rows (see [`crate::compile::rollup_of`]):
/// re-aggregating a few window rows instead of every trade.
#[derive(Debug)]
struct Rollup {
    /// Index of the source view in the pipeline.
    source: usize,
    /// The source view.
    from: View,
    /// For each of this view's states, the source state it re-aggregates.
    states: Vec<usize>,
    /// Planned on first use, over the source's contribution schema.
    planned: std::sync::OnceLock<Planned>,
}

/// A view, planned: run [`ViewExec::contribute`] (or [`ViewExec::contribute_from`]) once per
/// micro-batch.
#[derive(Debug)]
pub struct ViewExec {
    view: View,
    /// The trades and hidden columns ([`crate::input_schema`]).
    schema: SchemaRef,
    /// `schema` plus one boolean column per distinct `FILTER` clause: what the aggregation reads.
    planned_schema: SchemaRef,
    filter: Option<Arc<dyn PhysicalExpr>>,
    /// The distinct `FILTER (WHERE ...)` clauses of the view's states, each evaluated once per
    /// micro-batch into its column of `planned_schema` (the built-in views ask `direction = 'buy'`
    /// of every trade twice: for the count and for the volume).
    state_filters: Vec<Arc<dyn PhysicalExpr>>,
    planned: Planned,
    rollup: Option<Rollup>,
    /// Re-aggregation of this view's own contribution rows ([`ViewExec::combine`]), planned on
    /// first use.
    combined: std::sync::OnceLock<Planned>,
}

fn udaf(kind: StateKind) -> Arc<AggregateUDF> {
    use datafusion_functions_aggregate as f;
    match kind {
        StateKind::Count | StateKind::Late => f::count::count_udaf(),
        StateKind::Sum | StateKind::SumOrZero => f::sum::sum_udaf(),
        StateKind::Min | StateKind::FirstKey => f::min_max::min_udaf(),
        StateKind::Max | StateKind::LastKey => f::min_max::max_udaf(),
        StateKind::First => f::first_last::first_value_udaf(),
        StateKind::Last => f::first_last::last_value_udaf(),
    }
}

/// The aggregate of one state of `kind` over `value`. A first/last state is ordered by `key`: a
/// `DOUBLE` by a `DECIMAL(38,0)` key runs on the typed aggregates of [`crate::by_ord`], where a NULL
/// key never wins; any other type on DataFusion's `first_value` / `last_value`, with NULL keys
/// sorted so that they lose the same way (last for first values, first for last values).
fn state_aggregate(
    kind: StateKind,
    value: Arc<dyn PhysicalExpr>,
    key: Option<Arc<dyn PhysicalExpr>>,
    schema: &SchemaRef,
) -> DfResult<AggregateExprBuilder> {
    let Some(key) = key.filter(|_| matches!(kind, StateKind::First | StateKind::Last)) else {
        return Ok(AggregateExprBuilder::new(udaf(kind), vec![value]));
    };
    let typed = value.data_type(schema)? == DataType::Float64
        && key.data_type(schema)? == DataType::Decimal128(38, 0);
    Ok(match (typed, kind) {
        (true, StateKind::First) => {
            AggregateExprBuilder::new(crate::by_ord::first_by_ord(), vec![value, key])
        }
        (true, _) => AggregateExprBuilder::new(crate::by_ord::last_by_ord(), vec![value, key]),
        (false, _) => {
            let options = SortOptions {
                descending: false,
                nulls_first: kind == StateKind::Last,
            };
            AggregateExprBuilder::new(udaf(kind), vec![value])
                .order_by(vec![PhysicalSortExpr::new(key, options)])
        }
    })
}

struct Planner {
    /// The aggregation's input: the trades, hidden columns and state filter columns.
    schema: SchemaRef,
    /// The trades and hidden columns, for expressions over them.
    df_schema: DFSchema,
    props: ExecutionProps,
    /// The distinct state filters; the `k`-th is column [`filter_column`]`(k)` of `schema`.
    state_filters: Vec<Expr>,
}

/// The distinct `FILTER` clauses of `view`'s states (the late count's is the hidden late column),
/// and `schema` with a boolean column for each, named by [`filter_column`].
fn state_filter_columns(view: &View, schema: &SchemaRef) -> (Vec<Expr>, SchemaRef) {
    let mut filters: Vec<Expr> = Vec::new();
    for s in view.states.iter().filter(|s| s.kind != StateKind::Late) {
        if let Some(f) = &s.filter {
            if !filters.contains(f) {
                filters.push(f.clone());
            }
        }
    }
    let mut fields: Vec<arrow_schema::FieldRef> = schema.fields().iter().cloned().collect();
    fields.extend((0..filters.len()).map(|k| {
        Arc::new(arrow_schema::Field::new(
            filter_column(k),
            DataType::Boolean,
            true,
        ))
    }));
    (filters, Arc::new(arrow_schema::Schema::new(fields)))
}

/// The name of the column holding the `k`-th distinct state filter of a view.
fn filter_column(k: usize) -> String {
    format!("__tw_filter_{k}")
}

impl Planner {
    fn physical(&self, e: &Expr) -> DfResult<Arc<dyn PhysicalExpr>> {
        create_physical_expr(
            e,
            &self.df_schema,
            &self.props,
            &PhysicalPlanningContext::default(),
        )
    }

    /// The aggregate and its filter for one state.
    fn aggregate(&self, s: &StateAgg) -> DfResult<(Arc<AggregateFunctionExpr>, Filter)> {
        let ord = col(ORD_COLUMN, &self.schema)?;
        let arg = match (&s.arg, s.kind) {
            (Some(a), _) => self.physical(a)?,
            (None, _) => ord.clone(),
        };
        let b = state_aggregate(s.kind, arg, Some(ord), &self.schema)?
            .schema(self.schema.clone())
            .alias(s.column.clone());
        let filter = match (&s.filter, s.kind) {
            (_, StateKind::Late) => Some(col(LATE_COLUMN, &self.schema)?),
            (Some(f), _) => {
                let k = self
                    .state_filters
                    .iter()
                    .position(|x| x == f)
                    .ok_or_else(|| {
                        datafusion_common::DataFusionError::Internal(
                            "a state filter without its column".into(),
                        )
                    })?;
                Some(col(&filter_column(k), &self.schema)?)
            }
            (None, _) => None,
        };
        Ok((Arc::new(b.build()?), filter))
    }
}

impl ViewExec {
    /// Plans `view`'s state aggregation once.
    pub fn new(view: View) -> Result<ViewExec, PipelineError> {
        let schema = crate::input_schema();
        let (state_filters, planned_schema) = state_filter_columns(&view, &schema);
        let planner = Planner {
            schema: planned_schema.clone(),
            df_schema: DFSchema::try_from_qualified_schema("trades", &schema)?,
            props: ExecutionProps::new(),
            state_filters,
        };
        let filter = view
            .filter
            .as_ref()
            .map(|f| planner.physical(f))
            .transpose()?;
        let mut groups = Vec::new();
        for (name, trade_col) in &view.keys {
            groups.push((col(trade_col, &schema)?, name.clone()));
        }
        groups.push((col(WINDOW_COLUMN, &schema)?, "window_start".to_string()));
        let mut aggs = Vec::new();
        let mut filters = Vec::new();
        for s in &view.states {
            let (a, f) = planner.aggregate(s)?;
            aggs.push(a);
            filters.push(f);
        }
        let planned = Planned::new(planned_schema.clone(), groups, aggs, filters)?;
        let state_filters = planner
            .state_filters
            .iter()
            .map(|f| planner.physical(f))
            .collect::<DfResult<Vec<_>>>()?;
        Ok(ViewExec {
            view,
            schema,
            planned_schema,
            filter,
            state_filters,
            planned,
            rollup: None,
            combined: std::sync::OnceLock::new(),
        })
    }

    /// Lets the view be computed from the contribution rows of view `from` (pipeline index
    /// `source`) when the two judged every trade alike; `false` (and nothing changes) when `from`
    /// cannot serve (see [`crate::compile::rollup_of`]).
    pub fn roll_up_from(&mut self, source: usize, from: &View) -> bool {
        let Some(states) = crate::compile::rollup_of(&self.view, from) else {
            return false;
        };
        self.rollup = Some(Rollup {
            source,
            from: from.clone(),
            states,
            planned: std::sync::OnceLock::new(),
        });
        true
    }

    /// The pipeline index of the view this one can be rolled up from.
    pub fn rollup_source(&self) -> Option<usize> {
        self.rollup.as_ref().map(|r| r.source)
    }

    /// The view.
    pub fn view(&self) -> &View {
        &self.view
    }

    /// The contribution of the trades `keep` selects (too-late and refused trades are not kept;
    /// `late` marks corrections) to the view's windows: one row per (keys, window), in `order`,
    /// with the columns of [`View::merge_table`].
    pub fn contribute(
        &self,
        input: &ViewInput,
        keep: &BooleanArray,
        late: &BooleanArray,
        now_ms: i64,
        order: RowOrder,
    ) -> Result<RecordBatch, PipelineError> {
        let batch = self.input_batch(input, keep, late)?;
        let states = self.planned.run(batch)?;
        let out = self.contribution(&states, now_ms)?;
        self.in_order(out, order)
    }

    /// `rows` in `order`.
    fn in_order(&self, rows: RecordBatch, order: RowOrder) -> Result<RecordBatch, PipelineError> {
        match order {
            RowOrder::Keys => sort_by_key(&rows, self.view.keys.len() + 1),
            RowOrder::Any => Ok(rows),
        }
    }

    /// The view's input rows: trades plus hidden columns, filtered by `keep` and the row filter.
    fn input_batch(
        &self,
        input: &ViewInput,
        keep: &BooleanArray,
        late: &BooleanArray,
    ) -> Result<RecordBatch, PipelineError> {
        let (batch, mask) = self.admit(input, keep, late)?;
        let batch = if mask.true_count() == batch.num_rows() {
            batch
        } else {
            arrow_select::filter::filter_record_batch(&batch, &mask)?
        };
        self.with_state_filters(batch)
    }

    /// Which trades of `input` the view aggregates: those `keep` selects that its row filter
    /// admits. The trades behind its contribution rows (a row MySQL refuses sets aside only these).
    pub fn admitted(
        &self,
        input: &ViewInput,
        keep: &BooleanArray,
    ) -> Result<BooleanArray, PipelineError> {
        let late = BooleanArray::from(vec![false; keep.len()]);
        Ok(self.admit(input, keep, &late)?.1)
    }

    /// The trades with the hidden columns, and the mask of those the view aggregates. The row
    /// filter is evaluated over the kept trades only: a trade set aside (too late, not ours,
    /// refused) cannot make the view's SQL fail.
    fn admit(
        &self,
        input: &ViewInput,
        keep: &BooleanArray,
        late: &BooleanArray,
    ) -> Result<(RecordBatch, BooleanArray), PipelineError> {
        let n = input.trades.num_rows();
        let ts = input
            .trades
            .column(7)
            .as_primitive_opt::<TimestampMillisecondType>()
            .ok_or_else(|| arrow_schema::ArrowError::SchemaError("ts is not a timestamp".into()))?;
        let size = self.view.window_ms;
        let window: TimestampMillisecondArray = ts
            .unary::<_, TimestampMillisecondType>(|t| t - t.rem_euclid(size))
            .with_timezone(UTC);
        let mut columns: Vec<ArrayRef> = input.trades.columns().to_vec();
        columns.push(input.ord.clone());
        columns.push(Arc::new(late.clone()));
        columns.push(Arc::new(window));
        let batch = RecordBatch::try_new(self.schema.clone(), columns)?;
        let Some(f) = &self.filter else {
            return Ok((batch, keep.clone()));
        };
        let kept = keep.true_count();
        if kept == n {
            let v = f.evaluate(&batch)?.into_array(n)?;
            let v = v.as_boolean_opt().ok_or_else(not_boolean)?;
            let mask = arrow_arith::boolean::and(keep, v)?;
            return Ok((batch, mask));
        }
        // Evaluated over the kept rows, then spread back over the batch.
        let subset = arrow_select::filter::filter_record_batch(&batch, keep)?;
        let v = f.evaluate(&subset)?.into_array(kept)?;
        let v = v.as_boolean_opt().ok_or_else(not_boolean)?;
        let mut values = v.iter();
        let mask: BooleanArray = keep
            .iter()
            .map(|k| match k {
                Some(true) => Some(values.next().flatten() == Some(true)),
                _ => Some(false),
            })
            .collect();
        Ok((batch, mask))
    }

    /// `batch` (the rows the view aggregates) with a column per distinct state filter, evaluated
    /// over exactly those rows, as the aggregation would evaluate each `FILTER` clause.
    fn with_state_filters(&self, batch: RecordBatch) -> Result<RecordBatch, PipelineError> {
        if self.state_filters.is_empty() {
            return Ok(batch);
        }
        let n = batch.num_rows();
        let mut columns = batch.columns().to_vec();
        for f in &self.state_filters {
            columns.push(f.evaluate(&batch)?.into_array(n)?);
        }
        Ok(RecordBatch::try_new(self.planned_schema.clone(), columns)?)
    }

    /// This view's contribution from the source view's contribution `source` (same trades, same
    /// verdicts): its rows re-aggregated to this view's keys and window.
    pub fn contribute_from(
        &self,
        source: &RecordBatch,
        now_ms: i64,
        order: RowOrder,
    ) -> Result<RecordBatch, PipelineError> {
        let Some(r) = &self.rollup else {
            return Err(PipelineError::DataFusion(
                datafusion_common::DataFusionError::Internal("view has no rollup source".into()),
            ));
        };
        let input = self.rollup_input(source)?;
        let planned = match r.planned.get() {
            Some(p) => p,
            None => {
                let p = self.plan_reaggregation(&r.from, &r.states, input.schema())?;
                r.planned.get_or_init(|| p)
            }
        };
        let states = planned.run(input)?;
        let out = self.contribution(&states, now_ms)?;
        self.in_order(out, order)
    }

    /// The source's contribution plus this view's window start.
    fn rollup_input(&self, source: &RecordBatch) -> Result<RecordBatch, PipelineError> {
        let start = source
            .column_by_name("window_start")
            .and_then(|c| c.as_primitive_opt::<TimestampMillisecondType>())
            .ok_or_else(|| arrow_schema::ArrowError::SchemaError("window_start".into()))?;
        let size = self.view.window_ms;
        let window: TimestampMillisecondArray = start
            .unary::<_, TimestampMillisecondType>(|t| t - t.rem_euclid(size))
            .with_timezone(UTC);
        let mut fields: Vec<arrow_schema::FieldRef> =
            source.schema().fields().iter().cloned().collect();
        fields.push(Arc::new(arrow_schema::Field::new(
            WINDOW_COLUMN,
            window.data_type().clone(),
            false,
        )));
        let mut columns = source.columns().to_vec();
        columns.push(Arc::new(window));
        Ok(RecordBatch::try_new(
            Arc::new(arrow_schema::Schema::new(fields)),
            columns,
        )?)
    }

    /// Several contribution batches of this view folded into one, as the sink's merge would fold
    /// them into the stored rows: one row per key and window (counts and sums added, first/last by
    /// the ordering key, extremes kept, derived columns recomputed). The engine commits several
    /// micro-batches at once this way, writing each window once instead of once per micro-batch.
    pub fn combine(
        &self,
        parts: &[RecordBatch],
        now_ms: i64,
        order: RowOrder,
    ) -> Result<Option<RecordBatch>, PipelineError> {
        let parts: Vec<&RecordBatch> = parts.iter().filter(|b| b.num_rows() > 0).collect();
        let (first, rest) = match parts.as_slice() {
            [] => return Ok(None),
            [only] => return Ok(Some(self.in_order((*only).clone(), order)?)),
            [first, rest @ ..] => (*first, rest),
        };
        // Each batch's schema says a column is nullable only if that batch holds a NULL (a FILTER
        // that matched nothing in some window): fold under a schema where every column may be.
        let fields: Vec<arrow_schema::Field> = first
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        let schema = Arc::new(arrow_schema::Schema::new(fields));
        let all = std::iter::once(first)
            .chain(rest.iter().copied())
            .map(|b| b.clone().with_schema(schema.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        let source = arrow_select::concat::concat_batches(&schema, &all)?;
        let input = self.rollup_input(&source)?;
        let planned = match self.combined.get() {
            Some(p) => p,
            None => {
                let identity: Vec<usize> = (0..self.view.states.len()).collect();
                let p = self.plan_reaggregation(&self.view, &identity, input.schema())?;
                self.combined.get_or_init(|| p)
            }
        };
        let states = planned.run(input)?;
        let out = self.contribution(&states, now_ms)?;
        Ok(Some(self.in_order(out, order)?))
    }

    /// Plans the re-aggregation of `from`'s contribution rows into this view: `states[i]` is the
    /// state of `from` that this view's state `i` re-aggregates.
    fn plan_reaggregation(
        &self,
        from: &View,
        states: &[usize],
        schema: SchemaRef,
    ) -> Result<Planned, PipelineError> {
        let mut groups = Vec::new();
        for (name, trade_col) in &self.view.keys {
            let Some((source_name, _)) = from.keys.iter().find(|(_, t)| t == trade_col) else {
                return Err(
                    arrow_schema::ArrowError::SchemaError(format!("key {trade_col}")).into(),
                );
            };
            groups.push((col(source_name, &schema)?, name.clone()));
        }
        groups.push((col(WINDOW_COLUMN, &schema)?, "window_start".to_string()));
        let mut aggs = Vec::new();
        for (s, &j) in self.view.states.iter().zip(states) {
            let source = &from.states[j];
            let kind = match s.kind {
                StateKind::Count | StateKind::Late | StateKind::SumOrZero => StateKind::Sum,
                other => other,
            };
            let key = source
                .order_key
                .as_ref()
                .map(|k| col(k, &schema))
                .transpose()?;
            let b = state_aggregate(kind, col(&source.column, &schema)?, key, &schema)?
                .schema(schema.clone())
                .alias(s.column.clone());
            aggs.push(Arc::new(b.build()?));
        }
        let filters = vec![None; aggs.len()];
        Ok(Planned::new(schema, groups, aggs, filters)?)
    }

    /// Assembles the contribution batch from the aggregated states.
    fn contribution(
        &self,
        states: &RecordBatch,
        now_ms: i64,
    ) -> Result<RecordBatch, PipelineError> {
        let v = &self.view;
        let rows = states.num_rows();
        let nkeys = v.keys.len();
        let mut names: Vec<String> = Vec::new();
        let mut columns: Vec<ArrayRef> = Vec::new();
        for (i, (name, _)) in v.keys.iter().enumerate() {
            names.push(name.clone());
            columns.push(states.column(i).clone());
        }
        let start = states.column(nkeys).clone();
        let end: TimestampMillisecondArray = start
            .as_primitive::<TimestampMillisecondType>()
            .unary::<_, TimestampMillisecondType>(|t| t.saturating_add(v.window_ms))
            .with_timezone(UTC);
        names.extend(["window_start".to_string(), "window_end".to_string()]);
        columns.extend([start, Arc::new(end) as ArrayRef]);
        let mut revision: Option<ArrayRef> = None;
        for (i, s) in v.states.iter().enumerate() {
            let a = states.column(nkeys + 1 + i).clone();
            if s.kind == StateKind::Late {
                revision = Some(a);
                continue;
            }
            let a = if s.kind == StateKind::SumOrZero {
                zero_nulls(&a)?
            } else {
                a
            };
            names.push(s.column.clone());
            columns.push(a);
        }
        let derived = self.derived_columns(&names, &columns, rows);
        for (n, a) in derived {
            names.push(n);
            columns.push(a);
        }
        self.bookkeeping_columns(revision, rows, now_ms, &mut names, &mut columns);
        Ok(RecordBatch::try_from_iter(names.into_iter().zip(columns))?)
    }

    /// The view's derived columns (e.g. `vwap_usd`) over the contribution's state columns
    /// (`names`, `columns`), evaluated a whole column at a time.
    fn derived_columns(
        &self,
        names: &[String],
        columns: &[ArrayRef],
        rows: usize,
    ) -> Vec<(String, ArrayRef)> {
        // Each column is converted once, when an expression first reads it.
        let converted: Vec<std::cell::OnceCell<Vec<Option<f64>>>> =
            columns.iter().map(|_| std::cell::OnceCell::new()).collect();
        let column = |name: &str| -> Option<&[Option<f64>]> {
            let i = names.iter().position(|n| n == name)?;
            Some(converted[i].get_or_init(|| numbers(&columns[i])).as_slice())
        };
        self.view
            .derived()
            .map(|(name, e)| {
                let values = Float64Array::from(e.eval_rows(rows, &column));
                (name.to_string(), Arc::new(values) as ArrayRef)
            })
            .collect()
    }

    /// The columns the sink keeps beside the view's own: the trend and its repair flag (for a view
    /// with a trend), `is_final`, `revision` (the late-trade count, 0 without one) and `updated_at`.
    fn bookkeeping_columns(
        &self,
        revision: Option<ArrayRef>,
        rows: usize,
        now_ms: i64,
        names: &mut Vec<String>,
        columns: &mut Vec<ArrayRef>,
    ) {
        let v = &self.view;
        if let Some(t) = &v.trend {
            // A row holding late trades may be created behind a final successor: flagged, so the
            // commit repairs the successor's trend (see `tradewind_sink::Trend::stale`).
            let late = revision
                .as_ref()
                .and_then(|r| r.as_primitive_opt::<Int64Type>());
            let mut trend = StringBuilder::new();
            let mut stale = BooleanBuilder::new();
            for r in 0..rows {
                trend.append_null();
                stale.append_value(late.is_some_and(|l| l.is_valid(r) && l.value(r) > 0));
            }
            names.extend([t.column.clone(), t.stale.clone()]);
            columns.extend([
                Arc::new(trend.finish()) as ArrayRef,
                Arc::new(stale.finish()) as ArrayRef,
            ]);
        }
        names.push("is_final".into());
        columns.push(Arc::new(BooleanArray::from(vec![false; rows])));
        names.push(crate::compile::REVISION.into());
        columns.push(
            revision.unwrap_or_else(|| Arc::new(arrow_array::Int64Array::from(vec![0; rows]))),
        );
        names.push("updated_at".into());
        columns.push(Arc::new(
            TimestampMillisecondArray::from(vec![now_ms; rows]).with_timezone(UTC),
        ));
    }
}

/// A numeric state column's values as doubles (`None` for NULL; every row `None` for a column
/// that is not a number).
fn numbers(a: &ArrayRef) -> Vec<Option<f64>> {
    match a.data_type() {
        DataType::Float64 => a.as_primitive::<Float64Type>().iter().collect(),
        DataType::Int64 => a
            .as_primitive::<Int64Type>()
            .iter()
            .map(|v| v.map(|x| x as f64))
            .collect(),
        _ => vec![None; a.len()],
    }
}

/// NULL -> 0 for `coalesce(sum(x), 0)` states.
fn zero_nulls(a: &ArrayRef) -> Result<ArrayRef, PipelineError> {
    Ok(match a.data_type() {
        DataType::Float64 => Arc::new(
            a.as_primitive::<Float64Type>()
                .iter()
                .map(|v| Some(v.unwrap_or(0.0)))
                .collect::<Float64Array>(),
        ),
        DataType::Int64 => Arc::new(
            a.as_primitive::<Int64Type>()
                .iter()
                .map(|v| Some(v.unwrap_or(0)))
                .collect::<arrow_array::Int64Array>(),
        ),
        _ => a.clone(),
    })
}

/// Rows sorted by the first `n` columns (keys, window start): concurrent replicas then lock rows in
/// the same order.
fn sort_by_key(batch: &RecordBatch, n: usize) -> Result<RecordBatch, PipelineError> {
    if batch.num_rows() < 2 {
        return Ok(batch.clone());
    }
    let sort: Vec<arrow_ord::sort::SortColumn> = batch.columns()[..n]
        .iter()
        .map(|c| arrow_ord::sort::SortColumn {
            values: c.clone(),
            options: None,
        })
        .collect();
    let idx = arrow_ord::sort::lexsort_to_indices(&sort, None)?;
    Ok(arrow_select::take::take_record_batch(batch, &idx)?)
}
