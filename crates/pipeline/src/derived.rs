//! Derived columns: arithmetic over a view's merged aggregate states (e.g. `sum(a) / sum(b)`, `avg`).
//!
//! One small expression tree is both evaluated in Rust (for the contribution row a new window is
//! inserted with) and rendered as the MySQL expression that recomputes the column after every merge,
//! so the two always agree: every operand is a double, a NULL operand gives NULL, and a division by
//! zero or a non-finite result gives NULL (MySQL's `/ NULLIF(x, 0)`).

/// An arithmetic operator of a derived column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/` (NULL when the divisor is 0).
    Div,
}

/// A derived column's expression over state columns.
#[derive(Debug, Clone, PartialEq)]
pub enum DExpr {
    /// A state column of the view, by name; `integer` for BIGINT states (cast to DOUBLE in SQL).
    State {
        /// Column name.
        column: String,
        /// Stored as BIGINT.
        integer: bool,
    },
    /// A numeric literal.
    Lit(f64),
    /// Unary minus.
    Neg(Box<DExpr>),
    /// A binary operation.
    Bin(Op, Box<DExpr>, Box<DExpr>),
    /// The first non-NULL operand.
    Coalesce(Vec<DExpr>),
}

impl DExpr {
    /// Evaluates the expression; `value(column)` gives a state's value (`None` = NULL).
    pub fn eval(&self, value: &dyn Fn(&str) -> Option<f64>) -> Option<f64> {
        let v = match self {
            DExpr::State { column, .. } => value(column)?,
            DExpr::Lit(x) => *x,
            DExpr::Neg(e) => -e.eval(value)?,
            DExpr::Bin(op, a, b) => {
                let (a, b) = (a.eval(value)?, b.eval(value)?);
                match op {
                    Op::Add => a + b,
                    Op::Sub => a - b,
                    Op::Mul => a * b,
                    Op::Div if b == 0.0 => return None,
                    Op::Div => a / b,
                }
            }
            DExpr::Coalesce(args) => return args.iter().find_map(|a| a.eval(value)),
        };
        v.is_finite().then_some(v)
    }

    /// The MySQL expression over the stored (merged) columns.
    pub fn to_sql(&self) -> String {
        match self {
            DExpr::State { column, integer } => {
                let c = format!("`{}`", column.replace('`', "``"));
                if *integer {
                    format!("CAST({c} AS DOUBLE)")
                } else {
                    c
                }
            }
            // Exponent notation: a DOUBLE literal in MySQL, exact (shortest round-trip digits).
            DExpr::Lit(x) => format!("{x:e}"),
            DExpr::Neg(e) => format!("(-{})", e.to_sql()),
            DExpr::Bin(op, a, b) => {
                let (a, b) = (a.to_sql(), b.to_sql());
                match op {
                    Op::Add => format!("({a} + {b})"),
                    Op::Sub => format!("({a} - {b})"),
                    Op::Mul => format!("({a} * {b})"),
                    Op::Div => format!("({a} / NULLIF({b}, 0))"),
                }
            }
            DExpr::Coalesce(args) => {
                let args: Vec<String> = args.iter().map(DExpr::to_sql).collect();
                format!("COALESCE({})", args.join(", "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(c: &str) -> Box<DExpr> {
        Box::new(DExpr::State {
            column: c.into(),
            integer: c == "n",
        })
    }

    #[test]
    fn evaluates_like_the_sql_it_renders() {
        let e = DExpr::Bin(Op::Div, st("s"), st("n"));
        assert_eq!(e.to_sql(), "(`s` / NULLIF(CAST(`n` AS DOUBLE), 0))");
        let v = |c: &str| match c {
            "s" => Some(3.0),
            "n" => Some(0.0),
            _ => None,
        };
        assert_eq!(e.eval(&v), None, "x / 0 is NULL");
        let e = DExpr::Bin(
            Op::Mul,
            Box::new(DExpr::Neg(st("s"))),
            Box::new(DExpr::Lit(100.0)),
        );
        assert_eq!(e.eval(&v), Some(-300.0));
        assert_eq!(e.to_sql(), "((-`s`) * 1e2)");
        let e = DExpr::Coalesce(vec![*st("x"), DExpr::Lit(0.5)]);
        assert_eq!(e.eval(&v), Some(0.5));
        assert_eq!(DExpr::Lit(1.5).to_sql(), "1.5e0");
    }
}
