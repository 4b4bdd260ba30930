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

    /// Evaluates the expression for `rows` rows at once, one operator at a time over whole columns:
    /// row for row what [`DExpr::eval`] gives. `column(name)` gives a state column's values (`None`
    /// for a column it does not know: NULL in every row).
    pub fn eval_rows<'a>(
        &self,
        rows: usize,
        column: &dyn Fn(&str) -> Option<&'a [Option<f64>]>,
    ) -> Vec<Option<f64>> {
        let finite = |v: f64| v.is_finite().then_some(v);
        match self {
            DExpr::State { column: c, .. } => match column(c) {
                Some(values) => values.iter().map(|v| v.and_then(finite)).collect(),
                None => vec![None; rows],
            },
            DExpr::Lit(x) => vec![finite(*x); rows],
            DExpr::Neg(e) => e
                .eval_rows(rows, column)
                .into_iter()
                .map(|v| v.and_then(|v| finite(-v)))
                .collect(),
            DExpr::Bin(op, a, b) => {
                let (a, b) = (a.eval_rows(rows, column), b.eval_rows(rows, column));
                a.into_iter()
                    .zip(b)
                    .map(|(a, b)| {
                        let (a, b) = (a?, b?);
                        finite(match op {
                            Op::Add => a + b,
                            Op::Sub => a - b,
                            Op::Mul => a * b,
                            Op::Div if b == 0.0 => return None,
                            Op::Div => a / b,
                        })
                    })
                    .collect()
            }
            DExpr::Coalesce(args) => {
                let mut out = vec![None; rows];
                for a in args {
                    for (o, v) in out.iter_mut().zip(a.eval_rows(rows, column)) {
                        if o.is_none() {
                            *o = v;
                        }
                    }
                }
                out
            }
        }
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

    /// A random expression over the states `a`, `b`, `n`, from `next`.
    fn random_expr(next: &mut dyn FnMut() -> u64, depth: u32) -> DExpr {
        let leaf = depth == 0 || next() % 3 == 0;
        match (leaf, next() % 4) {
            (true, 0) => DExpr::Lit([0.0, 1.5, -2.0, f64::MAX][(next() % 4) as usize]),
            (true, k) => *st(["a", "b", "n"][(k - 1) as usize]),
            (false, 0) => DExpr::Neg(Box::new(random_expr(next, depth - 1))),
            (false, 1) => DExpr::Coalesce(vec![
                random_expr(next, depth - 1),
                random_expr(next, depth - 1),
            ]),
            (false, _) => DExpr::Bin(
                [Op::Add, Op::Sub, Op::Mul, Op::Div][(next() % 4) as usize],
                Box::new(random_expr(next, depth - 1)),
                Box::new(random_expr(next, depth - 1)),
            ),
        }
    }

    #[test]
    fn evaluates_whole_columns_as_it_evaluates_each_row() {
        let mut seed: u64 = 11;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let values = [
            None,
            Some(0.0),
            Some(-0.0),
            Some(1.0),
            Some(-3.25),
            Some(1e308),
            Some(f64::INFINITY),
            Some(f64::NAN),
        ];
        for _ in 0..2_000 {
            let e = random_expr(&mut next, 4);
            let rows = 16;
            let mut cols: Vec<Vec<Option<f64>>> = Vec::new();
            for _ in 0..3 {
                cols.push((0..rows).map(|_| values[(next() % 8) as usize]).collect());
            }
            let slot = |c: &str| ["a", "b", "n"].iter().position(|x| *x == c);
            let whole = e.eval_rows(rows, &|c| slot(c).map(|i| cols[i].as_slice()));
            for (r, got) in whole.iter().enumerate() {
                let want = e.eval(&|c| slot(c).and_then(|i| cols[i][r]));
                assert_eq!(
                    got.map(f64::to_bits),
                    want.map(f64::to_bits),
                    "{e:?} row {r}"
                );
            }
        }
        let unknown = DExpr::Bin(Op::Add, st("zz"), Box::new(DExpr::Lit(1.0)));
        assert_eq!(unknown.eval_rows(3, &|_| None), vec![None; 3]);
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
