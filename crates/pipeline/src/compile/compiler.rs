//! The compiler's working state while it walks one view, and the expression helpers every
//! phase uses.

use datafusion_common::DFSchemaRef;
use datafusion_expr::expr::Alias;
use datafusion_expr::Expr;

use crate::origin::Origin;
use crate::view::{StateAgg, StateKind};

/// What the phases share while compiling one view: the group keys and window found so far, the
/// registered states, and the aggregate node's schema and expressions.
pub(super) struct Compiler<'a, 'o> {
    pub(super) origin: &'a Origin<'o>,
    /// (trades column, group index)
    pub(super) keys: Vec<(String, usize)>,
    pub(super) window_ms: Option<i64>,
    pub(super) window_alias: Option<usize>,
    pub(super) states: Vec<StateAgg>,
    pub(super) agg_schema: DFSchemaRef,
    pub(super) group_count: usize,
    pub(super) aggr: Vec<Expr>,
    /// Ordering-key states: (kind, filter text, column).
    pub(super) first_keys: Vec<(StateKind, String, String)>,
}

/// The select alias (or column name) of a projection item, and the expression under the alias.
pub(super) fn named(e: &Expr) -> (String, &Expr) {
    match e {
        Expr::Alias(Alias { expr, name, .. }) => (name.clone(), expr.as_ref()),
        Expr::Column(c) => (c.name.clone(), e),
        other => (other.schema_name().to_string(), other),
    }
}

pub(super) fn strip_alias(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(Alias { expr, .. }) => strip_alias(expr),
        other => other,
    }
}

pub(super) fn strip_cast(e: &Expr) -> &Expr {
    match e {
        Expr::Cast(c) => strip_cast(&c.expr),
        Expr::TryCast(c) => strip_cast(&c.expr),
        Expr::Alias(Alias { expr, .. }) => strip_cast(expr),
        other => other,
    }
}
