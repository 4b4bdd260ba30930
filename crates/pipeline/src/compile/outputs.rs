//! The select list: each selected expression resolved to a key, the window, a state column or
//! a derived column, and the names tradewind keeps for itself refused.

use arrow_schema::DataType;
use datafusion_common::ScalarValue;
use datafusion_expr::Expr;

use super::compiler::{named, strip_alias, strip_cast, Compiler};
use crate::derived::DExpr;
use crate::view::{OutputKind, REVISION};
use crate::PipelineError;

impl Compiler<'_, '_> {
    /// Resolves the projection into outputs, registering state aggregates: plain aggregates first
    /// (so that a derived column reuses a selected aggregate rather than a hidden copy).
    pub(super) fn outputs(
        &mut self,
        exprs: &[Expr],
    ) -> Result<Vec<(String, OutputKind)>, PipelineError> {
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

    /// A selected expression that is a key, the window, or a single mergeable aggregate.
    pub(super) fn direct(
        &mut self,
        e: &Expr,
        name: &str,
    ) -> Result<Option<OutputKind>, PipelineError> {
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
    pub(super) fn state_output(&self, column: String, name: &str) -> OutputKind {
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
    pub(super) fn coalesce_sum_zero(&self, e: &Expr) -> Option<Expr> {
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
}
