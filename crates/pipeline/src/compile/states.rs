//! Building state aggregates: each supported aggregate classified into the mergeable states the
//! engine computes per micro-batch (counts, sums, min/max, first/last values and their ordering
//! keys), each state registered once.

use arrow_schema::DataType;
use datafusion_common::Column;
use datafusion_expr::expr::AggregateFunction;
use datafusion_expr::{Expr, ExprSchemable};

use super::check::check_row_expr;
use super::compiler::{strip_alias, strip_cast, Compiler};
use crate::view::{StateAgg, StateKind};
use crate::PipelineError;

impl Compiler<'_, '_> {
    pub(super) fn agg_index(&self, c: &Column) -> Option<usize> {
        self.agg_schema.index_of_column(c).ok()
    }

    /// Registers the state(s) of aggregate `e`. With `visible` (a select alias), a single-state
    /// aggregate is stored under that name and `Some(column)` returned; `None` when the aggregate
    /// needs several states (avg): the caller then derives it.
    pub(super) fn aggregate(
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
    pub(super) fn classify(
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
    pub(super) fn state(
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
    pub(super) fn order_key(&mut self, kind: StateKind, filter: &Option<Expr>) -> String {
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

    pub(super) fn arg_type(&self, x: &Expr) -> Result<DataType, PipelineError> {
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
