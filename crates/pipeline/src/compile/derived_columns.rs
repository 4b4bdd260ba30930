//! Wiring derived columns: arithmetic over aggregates (and `avg`) turned into a [`DExpr`] over
//! state columns, which the sink recomputes from the merged states.

use arrow_schema::DataType;
use datafusion_common::{Column, ScalarValue};
use datafusion_expr::expr::Alias;
use datafusion_expr::{BinaryExpr, Expr, Operator};

use super::compiler::{strip_alias, Compiler};
use crate::derived::{DExpr, Op};
use crate::view::StateKind;
use crate::PipelineError;

impl Compiler<'_, '_> {
    /// A derived output: arithmetic over aggregates.
    pub(super) fn derived(&mut self, e: &Expr, name: &str) -> Result<DExpr, PipelineError> {
        let o = self.origin;
        Ok(match e {
            Expr::Alias(Alias { expr, .. }) => self.derived(expr, name)?,
            Expr::Cast(c) if c.field.data_type().is_numeric() => self.derived(&c.expr, name)?,
            Expr::TryCast(c) if c.field.data_type().is_numeric() => self.derived(&c.expr, name)?,
            Expr::Literal(v, _) => match v.clone().cast_to(&DataType::Float64) {
                Ok(ScalarValue::Float64(Some(x))) if x.is_finite() => DExpr::Lit(x),
                // MySQL has no infinite DOUBLE: the recomputation would fail on every commit.
                Ok(ScalarValue::Float64(Some(_))) => {
                    return Err(o.unsupported(name, format!("literal `{v}` in `{name}` is beyond the range of a DOUBLE (MySQL has no infinity)")))
                }
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

    pub(super) fn derived_column(
        &mut self,
        c: &Column,
        name: &str,
    ) -> Result<DExpr, PipelineError> {
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
