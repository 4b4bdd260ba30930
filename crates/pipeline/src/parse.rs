//! Parsing: the pipeline file into `CREATE MATERIALIZED VIEW` statements, each planned by DataFusion
//! (SQL planner, then the analyzer's type coercion) against the `trades` relation.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_schema::{DataType, FieldRef};
use datafusion_common::config::ConfigOptions;
use datafusion_common::{plan_err, Result as DfResult, TableReference};
use datafusion_expr::logical_plan::builder::LogicalTableSource;
use datafusion_expr::planner::ContextProvider;
use datafusion_expr::{
    AggregateUDF, HigherOrderUDF, LogicalPlan, ScalarUDF, TableSource, WindowUDF,
};
use datafusion_optimizer::analyzer::Analyzer;
use datafusion_sql::planner::SqlToRel;
use datafusion_sql::sqlparser::ast::{Spanned, Statement};
use datafusion_sql::sqlparser::dialect::GenericDialect;
use datafusion_sql::sqlparser::parser::Parser;

use crate::compile;
use crate::origin::Origin;
use crate::view::View;
use crate::PipelineError;

/// What the planner may resolve: the `trades` table, the scalar functions of DataFusion's datetime
/// set (`date_bin`, ...) and the default aggregate functions. Anything else is unknown to it.
struct Catalog {
    trades: Arc<dyn TableSource>,
    functions: HashMap<String, Arc<ScalarUDF>>,
    aggregates: HashMap<String, Arc<AggregateUDF>>,
    options: ConfigOptions,
}

impl Catalog {
    fn new() -> Self {
        let mut aggregates = HashMap::new();
        for f in datafusion_functions_aggregate::all_default_aggregate_functions() {
            for alias in f.aliases() {
                aggregates.insert(alias.to_string(), f.clone());
            }
            aggregates.insert(f.name().to_string(), f);
        }
        let functions = datafusion_functions::all_default_functions()
            .into_iter()
            .map(|f| (f.name().to_string(), f))
            .collect();
        Catalog {
            trades: Arc::new(LogicalTableSource::new(crate::trades_schema())),
            functions,
            aggregates,
            options: ConfigOptions::default(),
        }
    }
}

impl ContextProvider for Catalog {
    fn get_table_source(&self, name: TableReference) -> DfResult<Arc<dyn TableSource>> {
        if name.table().eq_ignore_ascii_case("trades") && name.schema().is_none() {
            Ok(self.trades.clone())
        } else {
            plan_err!("unknown relation `{name}`: views select FROM trades")
        }
    }

    fn get_function_meta(&self, name: &str) -> Option<Arc<ScalarUDF>> {
        self.functions.get(name).cloned()
    }

    fn get_higher_order_meta(&self, _name: &str) -> Option<Arc<HigherOrderUDF>> {
        None
    }

    fn get_aggregate_meta(&self, name: &str) -> Option<Arc<AggregateUDF>> {
        self.aggregates.get(name).cloned()
    }

    fn get_window_meta(&self, _name: &str) -> Option<Arc<WindowUDF>> {
        None
    }

    fn get_variable_type(&self, _names: &[String]) -> Option<DataType> {
        None
    }

    fn get_variable_field(&self, _names: &[String]) -> Option<FieldRef> {
        None
    }

    fn options(&self) -> &ConfigOptions {
        &self.options
    }

    fn udf_names(&self) -> Vec<String> {
        self.functions.keys().cloned().collect()
    }

    fn udaf_names(&self) -> Vec<String> {
        self.aggregates.keys().cloned().collect()
    }

    fn udwf_names(&self) -> Vec<String> {
        Vec::new()
    }

    fn higher_order_function_names(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Parses every statement of `sql` into a checked [`View`].
pub(crate) fn parse_views(sql: &str, source_name: &str) -> Result<Vec<View>, PipelineError> {
    let statements =
        Parser::parse_sql(&GenericDialect {}, sql).map_err(|e| PipelineError::Syntax {
            source_name: source_name.to_string(),
            message: e.to_string(),
        })?;
    let catalog = Catalog::new();
    let mut views: Vec<View> = Vec::new();
    for statement in statements {
        let line = statement.span().start.line.max(1);
        let text = statement.to_string();
        let mut origin = Origin {
            source_name,
            text: statement_text(sql, line).unwrap_or(text),
            line,
            view: "?".into(),
        };
        let Statement::CreateView(cv) = statement else {
            return Err(origin.unsupported(
                "",
                "only CREATE MATERIALIZED VIEW <name> AS SELECT ... statements are allowed",
            ));
        };
        origin.view = cv
            .name
            .to_string()
            .trim_matches('`')
            .trim_matches('"')
            .to_string();
        // The built-in views' tables are the schema's own: only users' names are checked.
        if let Some(why) = (source_name != "builtin")
            .then(|| reserved_name(&origin.view))
            .flatten()
        {
            return Err(origin.unsupported("", why));
        }
        if !cv.materialized {
            return Err(origin.unsupported("view", "the view must be MATERIALIZED"));
        }
        if !cv.columns.is_empty() {
            return Err(origin.unsupported(
                "(",
                "a column list after the view name: name the columns with AS aliases",
            ));
        }
        if views
            .iter()
            .any(|v| v.name.eq_ignore_ascii_case(&origin.view))
        {
            return Err(origin.unsupported("", "a view of this name is defined twice"));
        }
        let plan = plan_query(&catalog, Statement::Query(cv.query), &origin)?;
        views.push(compile::compile(&plan, &origin)?);
    }
    if views.is_empty() {
        return Err(PipelineError::Syntax {
            source_name: source_name.to_string(),
            message: "no CREATE MATERIALIZED VIEW statement".into(),
        });
    }
    Ok(views)
}

/// The longest view name: its table's index names (`idx_<name>_trend_stale`) must fit MySQL's
/// 64-character identifiers.
pub const MAX_VIEW_NAME: usize = 48;

/// Why `name` cannot be a view's (its table's) name, if it cannot: too long, or one of the tables
/// and views tradewind's own schema keeps (`migrate` would otherwise alter them).
pub(crate) fn reserved_name(name: &str) -> Option<String> {
    if name.chars().count() > MAX_VIEW_NAME {
        return Some(format!(
            "a view name of {} characters: at most {MAX_VIEW_NAME} (its table's index names must fit MySQL's 64)",
            name.chars().count()
        ));
    }
    let lower = name.to_ascii_lowercase();
    if lower.starts_with("tw_") || lower.starts_with("v_") {
        return Some(format!(
            "the view name `{name}`: names starting with tw_ or v_ are reserved for tradewind's own tables and views"
        ));
    }
    if schema_objects().contains(&lower) {
        return Some(format!(
            "the view name `{name}`: tradewind's schema keeps a table or view of that name"
        ));
    }
    None
}

/// The tables and views the schema migrations create, lower-case.
fn schema_objects() -> Vec<String> {
    let mut out = Vec::new();
    for (_, sql) in tradewind_sink::MIGRATIONS {
        let words: Vec<&str> = sql.split_whitespace().collect();
        for w in words.windows(6) {
            let name = match w {
                ["CREATE", "TABLE", "IF", "NOT", "EXISTS", n, ..] => n,
                ["CREATE", "OR", "REPLACE", "VIEW", n, ..] => n,
                _ => continue,
            };
            let n = name
                .trim_matches(|c: char| c == '`' || c == '(')
                .to_ascii_lowercase();
            out.push(n);
        }
    }
    out
}

/// The source text from `line` to the statement's closing `;` (for error line numbers).
fn statement_text(sql: &str, line: u64) -> Option<String> {
    let start: usize = sql
        .split_inclusive('\n')
        .take(line.saturating_sub(1) as usize)
        .map(str::len)
        .sum();
    let rest = sql.get(start..)?;
    let end = rest.find(';').unwrap_or(rest.len());
    Some(rest[..end].to_string())
}

/// Plans the view's query and runs the analyzer (type coercion, function rewrites).
fn plan_query(
    catalog: &Catalog,
    query: Statement,
    origin: &Origin<'_>,
) -> Result<LogicalPlan, PipelineError> {
    let planner = SqlToRel::new(catalog);
    let plan = planner.sql_statement_to_plan(query).map_err(|e| {
        origin.unsupported("", format!("cannot plan the query: {}", first_line(&e)))
    })?;
    Analyzer::new()
        .execute_and_check(plan, &catalog.options, |_, _| {})
        .map_err(|e| origin.unsupported("", format!("cannot plan the query: {}", first_line(&e))))
}

fn first_line(e: &datafusion_common::DataFusionError) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}
