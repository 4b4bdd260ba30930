//! Merge-on-write tables: how an incoming partial aggregate combines with the row already stored.
//!
//! A window row may receive trades from any number of Kafka partitions, owned by different replicas.
//! Each commit therefore writes its *contribution* (the partial aggregate of the trades it consumed)
//! and MySQL merges it into the stored row inside the same transaction that advances the offsets:
//! sums and counts add, highs and lows take `GREATEST`/`LEAST`, first/last values follow an ordering
//! column, and derived columns (VWAP, averages) are recomputed from the merged sums. The merge runs
//! under the row lock the upsert takes, so concurrent replicas serialize per row and every
//! contribution counts exactly once.
//!
//! MySQL evaluates `ON DUPLICATE KEY UPDATE` assignments left to right, each seeing the columns
//! assigned before it; [`MergeTable::upsert_suffix`] orders them so that every assignment reads the
//! values it needs (first/last values before their ordering column, derived columns last).

use crate::encode;
use crate::SinkError;

/// How one column of a [`MergeTable`] combines the incoming value with the stored one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merge {
    /// Part of the primary key (never updated).
    Key,
    /// Written on insert, left as stored afterwards (e.g. `is_final`, `price_trend`).
    Keep,
    /// The incoming value replaces the stored one (e.g. `window_end`, `updated_at`).
    Replace,
    /// Stored + incoming (counts, sums that are never NULL).
    Add,
    /// Stored + incoming where NULL means "no rows": NULL + x = x (SQL `sum` over nothing is NULL).
    Sum,
    /// `GREATEST(stored, incoming)`, ignoring a NULL side.
    Max,
    /// `LEAST(stored, incoming)`, ignoring a NULL side.
    Min,
    /// The value of the row whose ordering column (named) is smallest: the incoming value wins when
    /// its ordering value is smaller than the stored one.
    FirstBy(String),
    /// The value of the row whose ordering column (named) is largest.
    LastBy(String),
    /// A SQL expression over the merged columns (e.g. `notional_usd / volume`), evaluated after every
    /// other column has been merged.
    Derived(String),
}

/// Where a window table keeps its trend (the comparison with the previous window of the same key),
/// maintained for final rows: set when a row becomes final, refreshed when a final row (or its
/// previous window) changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trend {
    /// Column holding `up`/`down`/`flat` (NULL without a previous window).
    pub column: String,
    /// Column compared with the previous window's.
    pub value: String,
    /// Indexed flag column: the trend of this row and of its successor must be recomputed. The
    /// merge sets it when it changes a final row (declare it [`Merge::Derived`] with
    /// [`Trend::stale_on_final_merge`]); a row inserted by late trades arrives with it set (its
    /// successor may be final already); the commit clears it. Finalization computes the trend of
    /// the rows it closes itself.
    pub stale: String,
}

impl Trend {
    /// The merge rule of the [`Trend::stale`] column: raised when merging into a final row.
    pub fn stale_on_final_merge() -> Merge {
        Merge::Derived("IF(`is_final` = 1, 1, 0)".into())
    }
}

/// A window table written by merge-on-write, with the columns the commit maintains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeTable {
    /// Table name.
    pub name: String,
    /// Every column the engine writes, in batch order, with its merge rule.
    pub columns: Vec<(String, Merge)>,
    /// Window size in ms (the previous window of `window_start` is `window_start - window_ms`).
    pub window_ms: i64,
    /// The trend maintained after each merge, if any.
    pub trend: Option<Trend>,
}

impl MergeTable {
    /// Key columns other than `window_start`, in declaration order.
    pub fn key_columns(&self) -> impl Iterator<Item = &str> {
        self.columns
            .iter()
            .filter(|(n, m)| *m == Merge::Key && n != "window_start")
            .map(|(n, _)| n.as_str())
    }

    /// The ` ON DUPLICATE KEY UPDATE ...` clause merging an incoming row into the stored one.
    pub fn upsert_suffix(&self) -> Result<String, SinkError> {
        let mut phases: [Vec<String>; 3] = Default::default();
        for (name, rule) in &self.columns {
            let c = quoted(name);
            let v = format!("VALUES({c})");
            let (phase, expr) = match rule {
                Merge::Key | Merge::Keep => continue,
                Merge::FirstBy(by) => {
                    let b = quoted(by);
                    (0, format!("IF(VALUES({b}) < {b} OR {b} IS NULL, {v}, {c})"))
                }
                Merge::LastBy(by) => {
                    let b = quoted(by);
                    (0, format!("IF(VALUES({b}) > {b} OR {b} IS NULL, {v}, {c})"))
                }
                Merge::Replace => (1, v),
                Merge::Add => (1, format!("{c} + {v}")),
                Merge::Sum => (1, format!("COALESCE({c} + {v}, {c}, {v})")),
                // MySQL's GREATEST/LEAST are NULL when either side is.
                Merge::Max => (1, format!("COALESCE(GREATEST({c}, {v}), {c}, {v})")),
                Merge::Min => (1, format!("COALESCE(LEAST({c}, {v}), {c}, {v})")),
                Merge::Derived(sql) => (2, sql.clone()),
            };
            phases[phase].push(format!("{c} = {expr}"));
        }
        let all: Vec<String> = phases.into_iter().flatten().collect();
        if all.is_empty() {
            return Err(SinkError::InvalidIdentifier(format!(
                "(merge table `{}` has no mergeable column)",
                self.name
            )));
        }
        Ok(format!(" ON DUPLICATE KEY UPDATE {}", all.join(", ")))
    }
}

/// A backquoted identifier.
pub(crate) fn quoted(name: &str) -> String {
    let mut s = String::with_capacity(name.len() + 2);
    encode::write_ident(name, &mut s);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_assignments_so_each_reads_what_it_needs() {
        let t = MergeTable {
            name: "t".into(),
            columns: vec![
                ("k".into(), Merge::Key),
                ("n".into(), Merge::Add),
                ("open_key".into(), Merge::Min),
                ("open".into(), Merge::FirstBy("open_key".into())),
                ("avg".into(), Merge::Derived("`s` / `n`".into())),
                ("s".into(), Merge::Add),
                ("is_final".into(), Merge::Keep),
            ],
            window_ms: 60_000,
            trend: None,
        };
        assert_eq!(
            t.upsert_suffix().unwrap(),
            " ON DUPLICATE KEY UPDATE `open` = IF(VALUES(`open_key`) < `open_key` OR `open_key` IS NULL, VALUES(`open`), `open`), \
             `n` = `n` + VALUES(`n`), `open_key` = COALESCE(LEAST(`open_key`, VALUES(`open_key`)), `open_key`, VALUES(`open_key`)), \
             `s` = `s` + VALUES(`s`), `avg` = `s` / `n`"
        );
    }
}
