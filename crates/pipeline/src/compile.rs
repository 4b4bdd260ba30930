//! Compiling: a planned view query into the view's merge plan — key columns, window size, row
//! filter, the *state* aggregates the engine computes per micro-batch, and the columns derived from
//! them. Anything that is not a mergeable tumbling-window aggregation is refused here, with the line
//! and the construct.

use arrow_schema::DataType;
use datafusion_common::{Column, DFSchemaRef, ScalarValue};
use datafusion_expr::expr::{AggregateFunction, Alias, ScalarFunction};
use datafusion_expr::{BinaryExpr, Expr, ExprSchemable, LogicalPlan, Operator};
use tradewind_sink::{Merge, MergeTable, Trend};

use crate::derived::{DExpr, Op};
use crate::parse::Origin;
use crate::PipelineError;

/// What a state column accumulates. Every kind merges exactly: see [`StateKind::merge`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StateKind {
    /// `count(*)`, `count(x)` (trades has no NULLs, so both count rows).
    Count,
    /// `sum(x)`: NULL over no rows.
    Sum,
    /// `coalesce(sum(x), 0)`.
    SumOrZero,
    /// `min(x)`.
    Min,
    /// `max(x)`.
    Max,
    /// `first_value(x ORDER BY ts)`: the value of the trade with the smallest ordering key.
    First,
    /// `last_value(x ORDER BY ts)`.
    Last,
    /// The smallest ordering key (of the rows a `First` state saw).
    FirstKey,
    /// The largest ordering key.
    LastKey,
    /// Late trades among the rows: added to `revision`.
    Late,
}

/// One state aggregate of a view: a column of its table and of its contribution batches.
#[derive(Debug, Clone)]
pub struct StateAgg {
    /// Column name (the select alias when the state is itself an output).
    pub column: String,
    /// What it accumulates.
    pub kind: StateKind,
    /// The aggregated expression over `trades` (none for counts and ordering keys).
    pub arg: Option<Expr>,
    /// The aggregate's `FILTER (WHERE ...)`.
    pub filter: Option<Expr>,
    /// The column's Arrow type.
    pub data_type: DataType,
    /// For `First`/`Last`: the ordering-key column it follows.
    pub order_key: Option<String>,
}

impl StateKind {
    fn merge(self, order_key: Option<&str>) -> Merge {
        match self {
            StateKind::Count | StateKind::SumOrZero | StateKind::Late => Merge::Add,
            StateKind::Sum => Merge::Sum,
            StateKind::Min | StateKind::FirstKey => Merge::Min,
            StateKind::Max | StateKind::LastKey => Merge::Max,
            StateKind::First => Merge::FirstBy(order_key.unwrap_or_default().to_string()),
            StateKind::Last => Merge::LastBy(order_key.unwrap_or_default().to_string()),
        }
    }
}

/// How a selected column is produced.
#[derive(Debug, Clone)]
pub enum OutputKind {
    /// A group key: the `trades` column it holds.
    Key(String),
    /// `window_start`.
    Window,
    /// A state column, by name.
    State(String),
    /// Recomputed from the merged states.
    Derived(DExpr),
}

/// A checked view: everything the engine, the sink and `migrate` need.
#[derive(Debug, Clone)]
pub struct View {
    /// View (= table) name.
    pub name: String,
    /// Line of the statement in its file.
    pub line: u64,
    /// Tumbling window size, ms.
    pub window_ms: i64,
    /// Group keys: (table column, `trades` column).
    pub keys: Vec<(String, String)>,
    /// The row filter (`WHERE`), over `trades`.
    pub filter: Option<Expr>,
    /// State aggregates, in table order.
    pub states: Vec<StateAgg>,
    /// Selected columns in select order.
    pub outputs: Vec<(String, OutputKind)>,
    /// The trend kept for final rows, if any.
    pub trend: Option<Trend>,
}

/// The name of a `revision` state: the count of late trades merged into the row.
pub const REVISION: &str = "revision";

impl View {
    /// Keeps `column` = up/down/flat of `value` against the previous window (built-in tables).
    pub fn enable_trend(&mut self, column: &str, value: &str, stale: &str) {
        if self.outputs.iter().any(|(n, _)| n == value) {
            self.trend = Some(Trend {
                column: column.into(),
                value: value.into(),
                stale: stale.into(),
            });
        }
    }

    /// Derived outputs with their expressions, in select order.
    pub fn derived(&self) -> impl Iterator<Item = (&str, &DExpr)> {
        self.outputs.iter().filter_map(|(n, k)| match k {
            OutputKind::Derived(e) => Some((n.as_str(), e)),
            _ => None,
        })
    }

    /// The view's table as the sink merges it; the contribution batches have these columns in this
    /// order: keys, `window_start`, `window_end`, states, derived columns, trend columns,
    /// `is_final`, `revision`, `updated_at`.
    pub fn merge_table(&self) -> MergeTable {
        let mut columns: Vec<(String, Merge)> = self
            .keys
            .iter()
            .map(|(n, _)| (n.clone(), Merge::Key))
            .collect();
        columns.push(("window_start".into(), Merge::Key));
        columns.push(("window_end".into(), Merge::Replace));
        for s in &self.states {
            if s.kind != StateKind::Late {
                columns.push((s.column.clone(), s.kind.merge(s.order_key.as_deref())));
            }
        }
        for (n, e) in self.derived() {
            columns.push((n.to_string(), Merge::Derived(e.to_sql())));
        }
        if let Some(t) = &self.trend {
            columns.push((t.column.clone(), Merge::Keep));
            columns.push((t.stale.clone(), Trend::stale_on_final_merge()));
        }
        columns.push(("is_final".into(), Merge::Keep));
        columns.push((REVISION.into(), Merge::Add));
        columns.push(("updated_at".into(), Merge::Replace));
        MergeTable {
            name: self.name.clone(),
            columns,
            window_ms: self.window_ms,
            trend: self.trend.clone(),
        }
    }
}

/// Compiles a planned `SELECT` (Projection over Aggregate over Filter* over the `trades` scan).
pub(crate) fn compile(plan: &LogicalPlan, origin: &Origin<'_>) -> Result<View, PipelineError> {
    let LogicalPlan::Projection(projection) = plan else {
        return Err(unsupported_node(plan, origin));
    };
    let agg = aggregate_of(projection, origin)?;
    let filter = row_filter(&agg.input, origin)?;
    let mut c = Compiler {
        origin,
        keys: Vec::new(),
        window_ms: None,
        window_alias: None,
        states: Vec::new(),
        agg_schema: agg.schema.clone(),
        group_count: agg.group_expr.len(),
        aggr: agg.aggr_expr.clone(),
        first_keys: Vec::new(),
    };
    for g in &agg.group_expr {
        c.group(g)?;
    }
    let Some(window_ms) = c.window_ms else {
        return Err(origin.unsupported(
            "group by",
            "GROUP BY needs date_bin(INTERVAL '<n> <unit>', ts): views are tumbling windows",
        ));
    };
    let outputs = c.outputs(&projection.expr)?;
    c.check_unique(&outputs)?;
    check_selected(&c.keys, &outputs, origin)?;
    let late = StateAgg {
        column: REVISION.into(),
        kind: StateKind::Late,
        arg: None,
        filter: None,
        data_type: DataType::Int64,
        order_key: None,
    };
    let mut states = c.states;
    states.push(late);
    let keys = outputs
        .iter()
        .filter_map(|(n, k)| match k {
            OutputKind::Key(t) => Some((n.clone(), t.clone())),
            _ => None,
        })
        .collect();
    Ok(View {
        name: origin.view.clone(),
        line: origin.line,
        window_ms,
        keys,
        filter,
        states,
        outputs,
        trend: None,
    })
}

/// The aggregation a view's projection reads (the error names what stands there instead).
fn aggregate_of<'a>(
    projection: &'a datafusion_expr::logical_plan::Projection,
    origin: &Origin<'_>,
) -> Result<&'a datafusion_expr::logical_plan::Aggregate, PipelineError> {
    match projection.input.as_ref() {
        LogicalPlan::Aggregate(agg) => Ok(agg),
        LogicalPlan::Window(_) => Err(origin.unsupported(
            "over",
            "window functions (OVER): views are tumbling windows, use date_bin in GROUP BY",
        )),
        LogicalPlan::Filter(_) | LogicalPlan::TableScan(_) => Err(origin.unsupported(
            "select",
            "a view must aggregate: GROUP BY its keys and date_bin(INTERVAL '<n> <unit>', ts)",
        )),
        other => Err(unsupported_node(other, origin)),
    }
}

/// Every group key and the window must be selected: they are the table's primary key.
fn check_selected(
    keys: &[(String, usize)],
    outputs: &[(String, OutputKind)],
    origin: &Origin<'_>,
) -> Result<(), PipelineError> {
    for (key, _) in keys {
        if !outputs
            .iter()
            .any(|(_, k)| matches!(k, OutputKind::Key(t) if t == key))
        {
            return Err(origin.unsupported(
                key,
                format!(
                    "group key `{key}` must be selected: it is part of the table's primary key"
                ),
            ));
        }
    }
    if !outputs.iter().any(|(_, k)| matches!(k, OutputKind::Window)) {
        return Err(origin.unsupported(
            "date_bin",
            "select the window as date_bin(...) AS window_start",
        ));
    }
    Ok(())
}

fn unsupported_node(plan: &LogicalPlan, origin: &Origin<'_>) -> PipelineError {
    let (needle, what) = match plan {
        LogicalPlan::Join(_) => ("join", "JOIN: a view reads trades only"),
        LogicalPlan::Sort(_) => ("order by", "ORDER BY on a view: rows are keyed by window, not ordered"),
        LogicalPlan::Limit(_) => ("limit", "LIMIT on a view"),
        LogicalPlan::Distinct(_) => ("distinct", "DISTINCT"),
        LogicalPlan::Union(_) => ("union", "UNION"),
        LogicalPlan::Window(_) => ("over", "window functions (OVER)"),
        LogicalPlan::SubqueryAlias(_) | LogicalPlan::Subquery(_) => ("(", "subqueries"),
        _ => ("", "this query shape: a view is SELECT keys, date_bin(...) AS window_start, aggregates FROM trades [WHERE ...] GROUP BY keys, date_bin(...)"),
    };
    let detail = if what.contains("query shape") {
        what.to_string()
    } else {
        format!("{what} is not supported")
    };
    origin.unsupported(needle, detail)
}

/// The conjunction of the `WHERE` filters between the aggregate and the `trades` scan.
fn row_filter(plan: &LogicalPlan, origin: &Origin<'_>) -> Result<Option<Expr>, PipelineError> {
    match plan {
        LogicalPlan::TableScan(_) => Ok(None),
        LogicalPlan::Filter(f) => {
            check_row_expr(&f.predicate, origin)?;
            let below = row_filter(&f.input, origin)?;
            Ok(Some(match below {
                Some(b) => f.predicate.clone().and(b),
                None => f.predicate.clone(),
            }))
        }
        other => Err(unsupported_node(other, origin)),
    }
}

/// Row-level expressions (filters, aggregate arguments) must not hold subqueries or aggregates.
fn check_row_expr(e: &Expr, origin: &Origin<'_>) -> Result<(), PipelineError> {
    let mut bad: Option<&str> = None;
    let _ = e.apply(|x| {
        match x {
            Expr::ScalarSubquery(_) | Expr::Exists(_) | Expr::InSubquery(_) => bad = Some("subqueries"),
            Expr::AggregateFunction(_) => bad = Some("aggregates inside a row expression"),
            Expr::WindowFunction(_) => bad = Some("window functions (OVER)"),
            Expr::ScalarFunction(f) if f.func.name() == "now" || f.func.name().starts_with("current_") => {
                bad = Some("time-of-processing functions (now, current_*): results must depend on the trades only")
            }
            _ => {}
        }
        Ok(if bad.is_some() {
            datafusion_common::tree_node::TreeNodeRecursion::Stop
        } else {
            datafusion_common::tree_node::TreeNodeRecursion::Continue
        })
    });
    match bad {
        Some(what) => Err(origin.unsupported("", format!("{what} are not supported in `{e}`"))),
        None => Ok(()),
    }
}

use datafusion_common::tree_node::TreeNode;

struct Compiler<'a, 'o> {
    origin: &'a Origin<'o>,
    /// (trades column, group index)
    keys: Vec<(String, usize)>,
    window_ms: Option<i64>,
    window_alias: Option<usize>,
    states: Vec<StateAgg>,
    agg_schema: DFSchemaRef,
    group_count: usize,
    aggr: Vec<Expr>,
    /// Ordering-key states: (kind, filter text, column).
    first_keys: Vec<(StateKind, String, String)>,
}

/// The string columns of trades a view may group by.
const KEY_COLUMNS: [&str; 4] = ["exchange", "base", "quote", "direction"];

impl Compiler<'_, '_> {
    fn group(&mut self, g: &Expr) -> Result<(), PipelineError> {
        let index = self.keys.len() + usize::from(self.window_ms.is_some());
        match strip_alias(g) {
            Expr::Column(c) if KEY_COLUMNS.contains(&c.name.as_str()) => {
                self.keys.push((c.name.clone(), index));
                Ok(())
            }
            Expr::ScalarFunction(f) if f.func.name() == "date_bin" => {
                if self.window_ms.is_some() {
                    return Err(self.origin.unsupported("date_bin", "more than one date_bin in GROUP BY"));
                }
                self.window_ms = Some(self.stride(f)?);
                self.window_alias = Some(index);
                Ok(())
            }
            Expr::Column(c) => Err(self.origin.unsupported(&c.name, format!(
                "GROUP BY `{}`: group keys are the string columns exchange, base, quote, direction",
                c.name
            ))),
            other => Err(self.origin.unsupported("group by", format!(
                "GROUP BY `{other}`: group by string columns of trades and one date_bin(INTERVAL '<n> <unit>', ts) (tumbling windows only)"
            ))),
        }
    }

    /// The stride of `date_bin(INTERVAL '<n> <unit>', ts)` in ms.
    fn stride(&self, f: &ScalarFunction) -> Result<i64, PipelineError> {
        let o = self.origin;
        if f.args.len() != 2 {
            return Err(o.unsupported(
                "date_bin",
                "date_bin with an origin argument: windows are aligned to the epoch (UTC)",
            ));
        }
        if !matches!(strip_cast(&f.args[1]), Expr::Column(c) if c.name == "ts") {
            return Err(o.unsupported("date_bin", "date_bin must bin `ts`, the event time"));
        }
        let ms = match strip_cast(&f.args[0]) {
            Expr::Literal(ScalarValue::IntervalMonthDayNano(Some(v)), _) if v.months == 0 => {
                Some(i64::from(v.days) * 86_400_000 + v.nanoseconds / 1_000_000)
                    .filter(|_| v.nanoseconds % 1_000_000 == 0)
            }
            Expr::Literal(ScalarValue::IntervalDayTime(Some(v)), _) => {
                Some(i64::from(v.days) * 86_400_000 + i64::from(v.milliseconds))
            }
            Expr::Literal(ScalarValue::IntervalMonthDayNano(Some(_)), _) => {
                return Err(o.unsupported(
                    "interval",
                    "month and year windows are not fixed-length: use days",
                ))
            }
            _ => None,
        };
        match ms {
            Some(ms) if ms > 0 => Ok(ms),
            _ => Err(o.unsupported(
                "interval",
                "the date_bin stride must be a positive INTERVAL literal of whole milliseconds",
            )),
        }
    }

    /// Resolves the projection into outputs, registering state aggregates: plain aggregates first
    /// (so that a derived column reuses a selected aggregate rather than a hidden copy).
    fn outputs(&mut self, exprs: &[Expr]) -> Result<Vec<(String, OutputKind)>, PipelineError> {
        let mut out: Vec<Option<(String, OutputKind)>> = vec![None; exprs.len()];
        for (i, e) in exprs.iter().enumerate() {
            let (name, inner) = named(e);
            if let Some(kind) = self.direct(inner, &name)? {
                out[i] = Some((name, kind));
            }
        }
        for (i, e) in exprs.iter().enumerate() {
            if out[i].is_some() {
                continue;
            }
            let (name, inner) = named(e);
            let d = self.derived(inner, &name)?;
            out[i] = Some((name, OutputKind::Derived(d)));
        }
        let out: Vec<(String, OutputKind)> = out.into_iter().flatten().collect();
        let reserved = [
            "window_end",
            "is_final",
            REVISION,
            "updated_at",
            "price_trend",
            "trend_stale",
        ];
        for (n, _) in &out {
            if reserved.contains(&n.as_str()) || n.starts_with('_') {
                return Err(self.origin.unsupported(n, format!("`{n}` is a column tradewind maintains (or a hidden state's name): choose another alias")));
            }
        }
        Ok(out)
    }

    /// Every column of the table once: outputs, then hidden states.
    fn check_unique(&self, outputs: &[(String, OutputKind)]) -> Result<(), PipelineError> {
        let mut seen: Vec<String> = Vec::new();
        let hidden = self
            .states
            .iter()
            .filter(|s| !outputs.iter().any(|(n, _)| *n == s.column))
            .map(|s| &s.column);
        for n in outputs.iter().map(|(n, _)| n).chain(hidden) {
            let lower = n.to_ascii_lowercase();
            if seen.contains(&lower) {
                return Err(self.origin.unsupported(n, format!("column `{n}` is defined twice (open_key and close_key order first and last values)")));
            }
            seen.push(lower);
        }
        Ok(())
    }

    /// A selected expression that is a key, the window, or a single mergeable aggregate.
    fn direct(&mut self, e: &Expr, name: &str) -> Result<Option<OutputKind>, PipelineError> {
        if let Expr::Column(c) = e {
            match self.agg_index(c) {
                Some(i) if i < self.group_count => {
                    if Some(i) == self.window_alias {
                        if name != "window_start" {
                            return Err(self.origin.unsupported(
                                "date_bin",
                                "name the window `date_bin(...) AS window_start`",
                            ));
                        }
                        return Ok(Some(OutputKind::Window));
                    }
                    let key = self
                        .keys
                        .iter()
                        .find(|(_, gi)| *gi == i)
                        .map(|(k, _)| k.clone());
                    return Ok(key.map(OutputKind::Key));
                }
                Some(i) => {
                    let agg = self.aggr[i - self.group_count].clone();
                    let col = self.aggregate(&agg, Some(name), false)?;
                    return Ok(col.map(|c| self.state_output(c, name)));
                }
                None => return Ok(None),
            }
        }
        if let Some(sum) = self.coalesce_sum_zero(e) {
            let col = self.aggregate(&sum, Some(name), true)?;
            return Ok(col.map(|c| self.state_output(c, name)));
        }
        Ok(None)
    }

    /// The output for state `column` selected as `name`: the state itself, or a copy of it when the
    /// same aggregate is selected twice.
    fn state_output(&self, column: String, name: &str) -> OutputKind {
        if column == name {
            return OutputKind::State(column);
        }
        let integer = self
            .states
            .iter()
            .any(|s| s.column == column && s.data_type.is_integer());
        OutputKind::Derived(DExpr::State { column, integer })
    }

    /// `coalesce(sum(x) [FILTER ...], 0)`: a sum that is 0 over no rows, still additive.
    fn coalesce_sum_zero(&self, e: &Expr) -> Option<Expr> {
        let Expr::ScalarFunction(f) = e else {
            return None;
        };
        if f.func.name() != "coalesce" || f.args.len() != 2 {
            return None;
        }
        let zero = matches!(strip_cast(&f.args[1]), Expr::Literal(v, _) if v.is_null() || matches!(v.clone().cast_to(&DataType::Float64), Ok(ScalarValue::Float64(Some(z))) if z == 0.0));
        let Expr::Column(c) = strip_cast(&f.args[0]) else {
            return None;
        };
        let i = self.agg_index(c)?.checked_sub(self.group_count)?;
        let agg = self.aggr.get(i)?;
        let is_sum =
            matches!(strip_alias(agg), Expr::AggregateFunction(a) if a.func.name() == "sum");
        (zero && is_sum).then(|| agg.clone())
    }

    fn agg_index(&self, c: &Column) -> Option<usize> {
        self.agg_schema.index_of_column(c).ok()
    }

    /// Registers the state(s) of aggregate `e`. With `visible` (a select alias), a single-state
    /// aggregate is stored under that name and `Some(column)` returned; `None` when the aggregate
    /// needs several states (avg): the caller then derives it.
    fn aggregate(
        &mut self,
        e: &Expr,
        visible: Option<&str>,
        or_zero: bool,
    ) -> Result<Option<String>, PipelineError> {
        let Expr::AggregateFunction(a) = strip_alias(e) else {
            return Err(self
                .origin
                .unsupported("", format!("`{e}` is not an aggregate")));
        };
        let (kind, arg, filter) = self.classify(a)?;
        let kind = if or_zero { StateKind::SumOrZero } else { kind };
        if kind == StateKind::Sum && a.func.name() == "avg" {
            return Ok(None);
        }
        Ok(Some(self.state(kind, arg, filter, visible)?))
    }

    /// The state kind, argument and filter of a supported aggregate (avg reports `Sum`).
    fn classify(
        &self,
        a: &AggregateFunction,
    ) -> Result<(StateKind, Option<Expr>, Option<Expr>), PipelineError> {
        let name = a.func.name().to_ascii_lowercase();
        let p = &a.params;
        let o = self.origin;
        if p.distinct {
            return Err(o.unsupported(
                "distinct",
                format!("{name}(DISTINCT ...) cannot be merged across micro-batches"),
            ));
        }
        if p.null_treatment.is_some() {
            return Err(o.unsupported(&name, "IGNORE/RESPECT NULLS"));
        }
        let filter = p.filter.as_deref().cloned();
        if let Some(f) = &filter {
            check_row_expr(f, o)?;
        }
        let arg = p.args.first().cloned();
        if let Some(x) = &arg {
            check_row_expr(x, o)?;
        }
        let kind = match name.as_str() {
            "count" => StateKind::Count,
            "sum" | "avg" => StateKind::Sum,
            "min" => StateKind::Min,
            "max" => StateKind::Max,
            "first_value" => StateKind::First,
            "last_value" => StateKind::Last,
            other => {
                return Err(o.unsupported(other, format!(
                    "aggregate `{other}` cannot be merged across micro-batches (supported: count, sum, min, max, avg, first_value, last_value)"
                )))
            }
        };
        let ordered = matches!(kind, StateKind::First | StateKind::Last);
        let by_ts = p.order_by.len() == 1
            && p.order_by[0].asc
            && matches!(strip_cast(&p.order_by[0].expr), Expr::Column(c) if c.name == "ts");
        if ordered && !by_ts {
            return Err(o.unsupported(
                &name,
                format!("{name} needs ORDER BY ts (ascending): ties go by arrival order"),
            ));
        }
        if !ordered && !p.order_by.is_empty() {
            return Err(o.unsupported("order by", format!("ORDER BY inside {name}")));
        }
        if p.args.len() > 1 {
            return Err(o.unsupported(&name, format!("{name} with several arguments")));
        }
        let arg = if kind == StateKind::Count { None } else { arg };
        Ok((kind, arg, filter))
    }

    /// Finds or adds a state; returns its column.
    fn state(
        &mut self,
        kind: StateKind,
        arg: Option<Expr>,
        filter: Option<Expr>,
        visible: Option<&str>,
    ) -> Result<String, PipelineError> {
        let same = |s: &StateAgg| s.kind == kind && s.arg == arg && s.filter == filter;
        if let Some(s) = self.states.iter().find(|s| same(s)) {
            return Ok(s.column.clone());
        }
        let data_type = match (&kind, &arg) {
            (StateKind::Count, _) => DataType::Int64,
            (_, Some(x)) => self.arg_type(x)?,
            (_, None) => DataType::Int64,
        };
        let data_type = match kind {
            StateKind::Sum | StateKind::SumOrZero
                if data_type.is_floating() || data_type.is_integer() =>
            {
                if data_type.is_integer() {
                    DataType::Int64
                } else {
                    DataType::Float64
                }
            }
            StateKind::Sum | StateKind::SumOrZero => {
                return Err(self
                    .origin
                    .unsupported("sum", format!("sum over {data_type}")))
            }
            _ => data_type,
        };
        let order_key = match kind {
            StateKind::First | StateKind::Last => Some(self.order_key(kind, &filter)),
            _ => None,
        };
        let column = match visible {
            Some(n) => n.to_string(),
            None => format!("_{}_{}", kind_name(kind), self.states.len()),
        };
        self.states.push(StateAgg {
            column: column.clone(),
            kind,
            arg,
            filter,
            data_type,
            order_key,
        });
        Ok(column)
    }

    /// The ordering-key state of first (or last) values under `filter`: `open_key` / `close_key`
    /// (numbered when several filters need their own).
    fn order_key(&mut self, kind: StateKind, filter: &Option<Expr>) -> String {
        let key_kind = if kind == StateKind::First {
            StateKind::FirstKey
        } else {
            StateKind::LastKey
        };
        let f = filter.as_ref().map(|f| f.to_string()).unwrap_or_default();
        if let Some((_, _, c)) = self
            .first_keys
            .iter()
            .find(|(k, ff, _)| *k == key_kind && *ff == f)
        {
            return c.clone();
        }
        let base = if kind == StateKind::First {
            "open_key"
        } else {
            "close_key"
        };
        let n = self
            .first_keys
            .iter()
            .filter(|(k, _, _)| *k == key_kind)
            .count();
        let column = if n == 0 {
            base.to_string()
        } else {
            format!("{base}_{}", n + 1)
        };
        self.first_keys.push((key_kind, f, column.clone()));
        self.states.push(StateAgg {
            column: column.clone(),
            kind: key_kind,
            arg: None,
            filter: filter.clone(),
            data_type: DataType::Decimal128(38, 0),
            order_key: None,
        });
        column
    }

    fn arg_type(&self, x: &Expr) -> Result<DataType, PipelineError> {
        let schema = datafusion_common::DFSchema::try_from_qualified_schema(
            "trades",
            &crate::trades_schema(),
        )?;
        let t = x
            .get_type(&schema)
            .map_err(|e| self.origin.unsupported("", format!("`{x}`: {e}")))?;
        match &t {
            DataType::Float64 | DataType::Int64 | DataType::Utf8 | DataType::Timestamp(_, _) => {
                Ok(t)
            }
            t if t.is_floating() || t.is_integer() => Ok(if t.is_integer() {
                DataType::Int64
            } else {
                DataType::Float64
            }),
            other => Err(self
                .origin
                .unsupported("", format!("aggregating `{x}` of type {other}"))),
        }
    }

    /// A derived output: arithmetic over aggregates.
    fn derived(&mut self, e: &Expr, name: &str) -> Result<DExpr, PipelineError> {
        let o = self.origin;
        Ok(match e {
            Expr::Alias(Alias { expr, .. }) => self.derived(expr, name)?,
            Expr::Cast(c) if c.field.data_type().is_numeric() => self.derived(&c.expr, name)?,
            Expr::TryCast(c) if c.field.data_type().is_numeric() => self.derived(&c.expr, name)?,
            Expr::Literal(v, _) => match v.clone().cast_to(&DataType::Float64) {
                Ok(ScalarValue::Float64(Some(x))) => DExpr::Lit(x),
                _ => return Err(o.unsupported(name, format!("literal `{v}` in `{name}`: numbers only"))),
            },
            Expr::Negative(x) => DExpr::Neg(Box::new(self.derived(x, name)?)),
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let op = match op {
                    Operator::Plus => Op::Add,
                    Operator::Minus => Op::Sub,
                    Operator::Multiply => Op::Mul,
                    Operator::Divide => Op::Div,
                    other => return Err(o.unsupported(name, format!("operator `{other}` in `{name}`: + - * / over aggregates only"))),
                };
                DExpr::Bin(op, Box::new(self.derived(left, name)?), Box::new(self.derived(right, name)?))
            }
            Expr::ScalarFunction(f) if f.func.name() == "coalesce" => {
                DExpr::Coalesce(f.args.iter().map(|a| self.derived(a, name)).collect::<Result<_, _>>()?)
            }
            Expr::Column(c) => self.derived_column(c, name)?,
            other => return Err(o.unsupported(name, format!("`{other}` in `{name}`: select keys, the window, aggregates and + - * / over aggregates"))),
        })
    }

    fn derived_column(&mut self, c: &Column, name: &str) -> Result<DExpr, PipelineError> {
        let o = self.origin;
        let Some(i) = self
            .agg_index(c)
            .and_then(|i| i.checked_sub(self.group_count))
        else {
            return Err(o.unsupported(name, format!("`{name}` uses a group key or the window in arithmetic: only aggregates can be combined")));
        };
        let agg = self.aggr[i].clone();
        let Expr::AggregateFunction(a) = strip_alias(&agg) else {
            return Err(o.unsupported(name, format!("`{agg}` is not an aggregate")));
        };
        let (kind, arg, filter) = self.classify(a)?;
        let state = |s: &mut Self,
                     kind,
                     arg: Option<Expr>,
                     filter: Option<Expr>|
         -> Result<DExpr, PipelineError> {
            let column = s.state(kind, arg, filter, None)?;
            let integer = s
                .states
                .iter()
                .find(|x| x.column == column)
                .is_some_and(|x| x.data_type.is_integer());
            let is_time = s
                .states
                .iter()
                .find(|x| x.column == column)
                .is_some_and(|x| !x.data_type.is_numeric());
            if is_time {
                return Err(s.origin.unsupported(
                    name,
                    format!("arithmetic over a non-numeric aggregate in `{name}`"),
                ));
            }
            Ok(DExpr::State { column, integer })
        };
        if a.func.name() == "avg" {
            let sum = state(self, StateKind::Sum, arg, filter.clone())?;
            let count = state(self, StateKind::Count, None, filter)?;
            return Ok(DExpr::Bin(Op::Div, Box::new(sum), Box::new(count)));
        }
        state(self, kind, arg, filter)
    }
}

fn kind_name(k: StateKind) -> &'static str {
    match k {
        StateKind::Count => "count",
        StateKind::Sum | StateKind::SumOrZero => "sum",
        StateKind::Min => "min",
        StateKind::Max => "max",
        StateKind::First => "first",
        StateKind::Last => "last",
        StateKind::FirstKey => "first_key",
        StateKind::LastKey => "last_key",
        StateKind::Late => "late",
    }
}

/// The select alias (or column name) of a projection item, and the expression under the alias.
fn named(e: &Expr) -> (String, &Expr) {
    match e {
        Expr::Alias(Alias { expr, name, .. }) => (name.clone(), expr.as_ref()),
        Expr::Column(c) => (c.name.clone(), e),
        other => (other.schema_name().to_string(), other),
    }
}

fn strip_alias(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(Alias { expr, .. }) => strip_alias(expr),
        other => other,
    }
}

fn strip_cast(e: &Expr) -> &Expr {
    match e {
        Expr::Cast(c) => strip_cast(&c.expr),
        Expr::TryCast(c) => strip_cast(&c.expr),
        Expr::Alias(Alias { expr, .. }) => strip_cast(expr),
        other => other,
    }
}

/// How view `b` can be computed from view `a`'s contribution rows instead of from the trades: for
/// each of `b`'s states (in order), the index of the `a` state it re-aggregates. `None` unless `b`
/// has the same row filter, a subset of `a`'s keys, a window that is a multiple of `a`'s, and only
/// states `a` also keeps (same aggregate, argument and `FILTER`).
pub fn rollup_of(b: &View, a: &View) -> Option<Vec<usize>> {
    if b.filter != a.filter || b.window_ms % a.window_ms != 0 {
        return None;
    }
    let a_keys: Vec<&str> = a.keys.iter().map(|(_, t)| t.as_str()).collect();
    if !b.keys.iter().all(|(_, t)| a_keys.contains(&t.as_str())) {
        return None;
    }
    b.states
        .iter()
        .map(|s| {
            a.states
                .iter()
                .position(|x| x.kind == s.kind && x.arg == s.arg && x.filter == s.filter)
        })
        .collect()
}
