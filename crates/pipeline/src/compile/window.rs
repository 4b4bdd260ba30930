//! Grouping: the group keys (string columns of `trades`) and the tumbling window
//! (`date_bin(INTERVAL '<n> <unit>', ts)`) with its stride.

use datafusion_common::ScalarValue;
use datafusion_expr::expr::ScalarFunction;
use datafusion_expr::Expr;

use super::compiler::{strip_alias, strip_cast, Compiler};
use crate::PipelineError;

/// The string columns of trades a view may group by.
const KEY_COLUMNS: [&str; 4] = ["exchange", "base", "quote", "direction"];

impl Compiler<'_, '_> {
    pub(super) fn group(&mut self, g: &Expr) -> Result<(), PipelineError> {
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
    pub(super) fn stride(&self, f: &ScalarFunction) -> Result<i64, PipelineError> {
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
}
