//! The compiled view: the types the compiler produces and the engine, the sink, `ddl` and
//! `migrate` read (state aggregates, outputs, the merge table).

use arrow_schema::DataType;
use datafusion_expr::Expr;
use tradewind_sink::{Merge, MergeTable, Trend};

use crate::derived::DExpr;

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
