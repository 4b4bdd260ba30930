//! MySQL DDL of a view's table: `CREATE TABLE IF NOT EXISTS`, and the column definitions `migrate`
//! adds to an existing table that lacks them (a view gained a column).

use arrow_schema::DataType;

use crate::view::{OutputKind, StateKind, View, REVISION};

/// One column of a view's table: name and MySQL definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDef {
    /// Column name.
    pub name: String,
    /// Type and constraints, e.g. `DOUBLE NULL`.
    pub definition: String,
}

/// The MySQL type of an Arrow state type.
fn sql_type(t: &DataType) -> &'static str {
    match t {
        DataType::Int64 => "BIGINT",
        DataType::Utf8 => "VARCHAR(64)",
        DataType::Timestamp(_, _) => "DATETIME(3)",
        DataType::Decimal128(_, _) => "DECIMAL(38,0)",
        _ => "DOUBLE",
    }
}

/// Every column of the view's table, in table order: keys, window bounds, selected columns, hidden
/// states, trend, bookkeeping.
pub fn columns(view: &View) -> Vec<ColumnDef> {
    let col = |name: &str, definition: &str| ColumnDef {
        name: name.to_string(),
        definition: definition.to_string(),
    };
    let mut out = Vec::new();
    for (name, _) in &view.keys {
        out.push(col(name, "VARCHAR(64) NOT NULL"));
    }
    out.push(col("window_start", "DATETIME(3) NOT NULL"));
    out.push(col("window_end", "DATETIME(3) NOT NULL"));
    let state_def = |kind: StateKind, t: &DataType| match kind {
        StateKind::Count | StateKind::SumOrZero => format!("{} NOT NULL DEFAULT 0", sql_type(t)),
        _ => format!("{} NULL", sql_type(t)),
    };
    for (name, kind) in &view.outputs {
        match kind {
            OutputKind::State(s) => {
                if let Some(st) = view.states.iter().find(|x| &x.column == s) {
                    out.push(col(name, &state_def(st.kind, &st.data_type)));
                }
            }
            OutputKind::Derived(_) => out.push(col(name, "DOUBLE NULL")),
            OutputKind::Key(_) | OutputKind::Window => {}
        }
    }
    for st in &view.states {
        let selected = view.outputs.iter().any(|(n, _)| *n == st.column);
        if !selected && st.kind != StateKind::Late {
            out.push(col(&st.column, &state_def(st.kind, &st.data_type)));
        }
    }
    if let Some(t) = &view.trend {
        out.push(col(&t.column, "ENUM('up','down','flat') NULL"));
        out.push(col(&t.stale, "TINYINT(1) NOT NULL DEFAULT 0"));
    }
    out.push(col("is_final", "TINYINT(1) NOT NULL DEFAULT 0"));
    out.push(col(REVISION, "INT UNSIGNED NOT NULL DEFAULT 0"));
    out.push(col(
        "updated_at",
        "DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)",
    ));
    out
}

fn ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

/// `CREATE TABLE IF NOT EXISTS` for the view: primary key (keys, `window_start`), an index for
/// finalization (`is_final`, `window_start`) and, with a trend, one on its stale flag.
pub fn create_table(view: &View) -> String {
    let mut lines: Vec<String> = columns(view)
        .iter()
        .map(|c| format!("  {} {}", ident(&c.name), c.definition))
        .collect();
    let pk: Vec<String> = view
        .keys
        .iter()
        .map(|(n, _)| ident(n))
        .chain([ident("window_start")])
        .collect();
    lines.push(format!("  PRIMARY KEY ({})", pk.join(", ")));
    lines.push(format!(
        "  KEY {} (`is_final`, `window_start`)",
        ident(&format!("idx_{}_final", view.name))
    ));
    if let Some(t) = &view.trend {
        lines.push(format!(
            "  KEY {} ({})",
            ident(&format!("idx_{}_{}", view.name, t.stale)),
            ident(&t.stale)
        ));
    }
    format!(
        "CREATE TABLE IF NOT EXISTS {} (\n{}\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
        ident(&view.name),
        lines.join(",\n")
    )
}

/// The view's table as `migrate` creates or upgrades it.
pub fn table_ddl(view: &View) -> tradewind_sink::TableDdl {
    tradewind_sink::TableDdl {
        name: view.name.clone(),
        create: create_table(view),
        columns: columns(view)
            .into_iter()
            .map(|c| (c.name, c.definition))
            .collect(),
        primary_key: view
            .keys
            .iter()
            .map(|(n, _)| n.clone())
            .chain(["window_start".to_string()])
            .collect(),
        window_ms: view.window_ms,
    }
}

#[cfg(test)]
mod tests {
    use crate::Pipeline;

    #[test]
    fn a_user_view_gets_keys_states_and_bookkeeping() {
        let p = Pipeline::parse(
            "CREATE MATERIALIZED VIEW big_5m AS SELECT base, date_bin(INTERVAL '5 minutes', ts) AS window_start, \
             count(*) AS n, avg(price_usd) AS mean FROM trades WHERE volume > 1 GROUP BY base, date_bin(INTERVAL '5 minutes', ts);",
            "t.sql",
        )
        .unwrap();
        let sql = super::create_table(&p.views[0]);
        assert!(sql.contains("`n` BIGINT NOT NULL DEFAULT 0"), "{sql}");
        assert!(sql.contains("`mean` DOUBLE NULL"), "{sql}");
        assert!(sql.contains("`_sum_1` DOUBLE NULL"), "{sql}");
        assert!(
            sql.contains("PRIMARY KEY (`base`, `window_start`)"),
            "{sql}"
        );
        assert_eq!(p.views[0].window_ms, 300_000);
    }
}
