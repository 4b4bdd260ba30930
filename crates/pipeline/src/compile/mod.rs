//! Compiling: a planned view query into the view's merge plan — key columns, window size, row
//! filter, the *state* aggregates the engine computes per micro-batch, and the columns derived from
//! them. Anything that is not a mergeable tumbling-window aggregation is refused here, with the line
//! and the construct.
//!
//! The phases, one module each: [`check`] (the query shape and row expressions), [`window`] (group
//! keys and the window), [`outputs`] (the select list), [`states`] (state aggregates),
//! [`derived_columns`] (derived columns over the states) and [`rollup`] (which views a rollup can
//! read). They share the working state in [`compiler`]; the types they produce live in
//! [`crate::view`].

mod check;
mod compiler;
mod derived_columns;
mod outputs;
mod rollup;
mod states;
mod window;

use arrow_schema::DataType;
use datafusion_expr::LogicalPlan;

/// The view types under their old path (`crate::compile::View`, ...), as the engine-facing code
/// names them.
pub use crate::view::{OutputKind, StateAgg, StateKind, View, REVISION};
pub use rollup::rollup_of;

use crate::origin::Origin;
use crate::PipelineError;
use check::{aggregate_of, check_selected, row_filter, unsupported_node};
use compiler::Compiler;

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
