//! SQL-defined tumbling-window views, planned by DataFusion and executed on each micro-batch.
//!
//! A pipeline file holds `CREATE MATERIALIZED VIEW <name> AS SELECT ... FROM trades GROUP BY <keys>,
//! date_bin(INTERVAL '<n> <unit>', ts)` statements. [`Pipeline::parse`] plans each one with DataFusion's
//! SQL planner and analyzer (type coercion), checks that it is a tumbling-window aggregation whose
//! aggregates can be merged, and rewrites it into *state* aggregates: counts, sums, min/max and
//! first/last values with an exact ordering key ([`compile`]). Averages and arithmetic over
//! aggregates become derived columns recomputed from the merged states ([`derived`]).
//!
//! For each micro-batch, [`ViewExec::contribute`] runs the view's state aggregation with DataFusion's
//! hash aggregation operator (planned once per view) and returns the contribution rows; the sink
//! merges them into the view's MySQL table (`tradewind_sink::MergeTable`), in the transaction that
//! advances the Kafka offsets. The built-in tables are a pipeline too ([`Pipeline::builtin`]).

#![warn(missing_docs)]

mod by_ord;
mod compile;
pub mod ddl;
pub mod derived;
mod exec;
mod origin;
mod parse;
mod view;

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use tradewind_sink::MergeTable;

pub use compile::rollup_of;
pub use exec::{RowOrder, ViewExec, ViewInput};
pub use view::{OutputKind, StateAgg, StateKind, View};

/// The shipped pipeline: `market_1m`, `asset_1m`, and the `asset_1h` / `asset_1d` rollups.
pub const BUILTIN_SQL: &str = include_str!("builtin.sql");

/// The time zone of `ts` and of every window bound: UTC.
pub const UTC: &str = "+00:00";

/// Hidden input column: the exact ordering key of each trade (event time, partition, offset) as
/// `DECIMAL(38,0)`; it decides first/last values and breaks ties by arrival order.
pub const ORD_COLUMN: &str = "__tw_ord";
/// Hidden input column: the trade is late (its window had closed on its partition, within the
/// allowed lateness); counted into `revision`.
pub const LATE_COLUMN: &str = "__tw_late";
/// Hidden input column: the trade's window start for this view.
pub const WINDOW_COLUMN: &str = "__tw_window";

/// Why a pipeline file was refused.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The SQL does not parse.
    #[error("{source_name}: SQL syntax error: {message}")]
    Syntax {
        /// File name (or `builtin`).
        source_name: String,
        /// Parser message (with line and column).
        message: String,
    },
    /// A statement parses but is not a supported view.
    #[error("{source_name}:{line}: view `{view}`: {construct}")]
    Unsupported {
        /// File name (or `builtin`).
        source_name: String,
        /// 1-based line of the construct (or of the statement).
        line: u64,
        /// View name (`?` before it is known).
        view: String,
        /// What is not supported, and why.
        construct: String,
    },
    /// DataFusion failed while planning or executing.
    #[error("DataFusion: {0}")]
    DataFusion(#[from] datafusion_common::DataFusionError),
    /// Arrow failed while assembling a batch.
    #[error("Arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
}

/// The columns of `trades`, the relation every view selects from: valid trades only.
pub fn trades_schema() -> SchemaRef {
    let s = |n: &str| Field::new(n, DataType::Utf8, false);
    let f = |n: &str| Field::new(n, DataType::Float64, false);
    Arc::new(Schema::new(vec![
        s("exchange"),
        s("base"),
        s("quote"),
        s("direction"),
        f("price"),
        f("volume"),
        f("price_usd"),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, Some(UTC.into())),
            false,
        ),
    ]))
}

/// The schema a view's aggregation reads: [`trades_schema`] plus the hidden columns.
pub fn input_schema() -> SchemaRef {
    let mut fields: Vec<Field> = trades_schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(ORD_COLUMN, DataType::Decimal128(38, 0), false));
    fields.push(Field::new(LATE_COLUMN, DataType::Boolean, false));
    fields.push(Field::new(
        WINDOW_COLUMN,
        DataType::Timestamp(TimeUnit::Millisecond, Some(UTC.into())),
        false,
    ));
    Arc::new(Schema::new(fields))
}

/// A parsed and checked pipeline: its views in file order.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// The views.
    pub views: Vec<View>,
}

impl Pipeline {
    /// Parses and checks `sql` (`source_name` names it in errors).
    pub fn parse(sql: &str, source_name: &str) -> Result<Pipeline, PipelineError> {
        let views = parse::parse_views(sql, source_name)?;
        Ok(Pipeline { views })
    }

    /// The shipped pipeline ([`BUILTIN_SQL`]) with the trend of the built-in tables.
    pub fn builtin() -> Result<Pipeline, PipelineError> {
        let mut p = Pipeline::parse(BUILTIN_SQL, "builtin")?;
        for v in &mut p.views {
            v.enable_trend("price_trend", "vwap_usd", "trend_stale");
        }
        Ok(p)
    }

    /// The shipped pipeline plus the views of `extra` (a user pipeline file), refusing name clashes.
    pub fn with_user(extra: Option<(&str, &str)>) -> Result<Pipeline, PipelineError> {
        let mut p = Pipeline::builtin()?;
        if let Some((sql, name)) = extra {
            let user = Pipeline::parse(sql, name)?;
            for v in user.views {
                if p.views.iter().any(|b| b.name.eq_ignore_ascii_case(&v.name)) {
                    return Err(PipelineError::Unsupported {
                        source_name: name.to_string(),
                        line: v.line,
                        view: v.name.clone(),
                        construct:
                            "a view of this name already exists (built-in or earlier in the file)"
                                .into(),
                    });
                }
                p.views.push(v);
            }
        }
        Ok(p)
    }

    /// The merge tables of every view, in order.
    pub fn merge_tables(&self) -> Vec<MergeTable> {
        self.views.iter().map(View::merge_table).collect()
    }
}
