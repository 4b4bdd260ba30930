//! Checking the SQL: the query shape (Projection over Aggregate over Filter* over the `trades`
//! scan), row-level expressions, that every key and the window are selected, and that every
//! column is defined once. Each refusal names the line and the construct.

use datafusion_common::tree_node::TreeNode;
use datafusion_expr::logical_plan::{Aggregate, Projection};
use datafusion_expr::{Expr, LogicalPlan};

use super::compiler::Compiler;
use crate::origin::Origin;
use crate::view::OutputKind;
use crate::PipelineError;

/// The aggregation a view's projection reads (the error names what stands there instead).
pub(super) fn aggregate_of<'a>(
    projection: &'a Projection,
    origin: &Origin<'_>,
) -> Result<&'a Aggregate, PipelineError> {
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
pub(super) fn check_selected(
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

pub(super) fn unsupported_node(plan: &LogicalPlan, origin: &Origin<'_>) -> PipelineError {
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
pub(super) fn row_filter(
    plan: &LogicalPlan,
    origin: &Origin<'_>,
) -> Result<Option<Expr>, PipelineError> {
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
pub(super) fn check_row_expr(e: &Expr, origin: &Origin<'_>) -> Result<(), PipelineError> {
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

impl Compiler<'_, '_> {
    /// Every column of the table once: outputs, then hidden states.
    pub(super) fn check_unique(
        &self,
        outputs: &[(String, OutputKind)],
    ) -> Result<(), PipelineError> {
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
}
