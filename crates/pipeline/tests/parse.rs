//! Pipeline files: what is accepted (and how each column merges), and what is refused, with the
//! line and the construct in the error.

use tradewind_pipeline::{Pipeline, PipelineError};
use tradewind_sink::Merge;

fn view(select: &str) -> String {
    format!(
        "CREATE MATERIALIZED VIEW v AS SELECT base, date_bin(INTERVAL '5 minutes', ts) AS window_start, {select} \
         FROM trades GROUP BY base, date_bin(INTERVAL '5 minutes', ts);"
    )
}

fn refused(sql: &str) -> (u64, String) {
    match Pipeline::parse(sql, "user.sql") {
        Err(PipelineError::Unsupported {
            line, construct, ..
        }) => (line, construct),
        Err(e) => panic!("expected an unsupported-construct error, got {e}"),
        Ok(_) => panic!("accepted: {sql}"),
    }
}

#[test]
fn the_builtin_pipeline_keeps_the_tables_columns_and_merge_rules() {
    let p = match Pipeline::builtin() {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    };
    let names: Vec<&str> = p.views.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["market_1m", "asset_1m", "asset_1h", "asset_1d"]);
    let sizes: Vec<i64> = p.views.iter().map(|v| v.window_ms).collect();
    assert_eq!(sizes, [60_000, 60_000, 3_600_000, 86_400_000]);
    let market = p.views[0].merge_table();
    let rule = |c: &str| {
        market
            .columns
            .iter()
            .find(|(n, _)| n == c)
            .map(|(_, m)| m.clone())
            .unwrap_or_else(|| panic!("market_1m has no column {c}"))
    };
    assert_eq!(rule("exchange"), Merge::Key);
    assert_eq!(rule("window_start"), Merge::Key);
    assert_eq!(rule("trades"), Merge::Add);
    assert_eq!(rule("buy_volume"), Merge::Add, "coalesce(sum, 0) adds");
    assert_eq!(rule("volume"), Merge::Sum);
    assert_eq!(rule("open_usd"), Merge::FirstBy("open_key".into()));
    assert_eq!(rule("close_price"), Merge::LastBy("close_key".into()));
    assert_eq!(rule("open_key"), Merge::Min);
    assert_eq!(rule("high_usd"), Merge::Max);
    assert_eq!(rule("first_trade_at"), Merge::Min);
    assert_eq!(
        rule("vwap_usd"),
        Merge::Derived("(`notional_usd` / NULLIF(`volume`, 0))".into())
    );
    assert_eq!(
        rule("avg_price_usd"),
        Merge::Derived("(`sum_price_usd` / NULLIF(CAST(`trades` AS DOUBLE), 0))".into()),
        "avg reuses the selected sum and count"
    );
    assert_eq!(rule("revision"), Merge::Add);
    // Exactly the columns of the existing table (schemas/mysql/001 + 003), no hidden ones.
    let mut cols: Vec<&str> = market.columns.iter().map(|(n, _)| n.as_str()).collect();
    cols.sort_unstable();
    let mut expected = vec![
        "exchange",
        "base",
        "quote",
        "window_start",
        "window_end",
        "trades",
        "buys",
        "sells",
        "volume",
        "buy_volume",
        "sell_volume",
        "notional_usd",
        "sum_price_usd",
        "open_usd",
        "high_usd",
        "low_usd",
        "close_usd",
        "first_trade_at",
        "last_trade_at",
        "open_price",
        "high_price",
        "low_price",
        "close_price",
        "open_key",
        "close_key",
        "vwap_usd",
        "avg_price_usd",
        "price_change_pct",
        "price_trend",
        "trend_stale",
        "is_final",
        "revision",
        "updated_at",
    ];
    expected.sort_unstable();
    assert_eq!(cols, expected);
    assert!(market.trend.is_some());
}

#[test]
fn user_views_get_hidden_states_for_what_they_derive() {
    let sql = view(
        "count(*) FILTER (WHERE direction = 'buy') AS buys, avg(price) AS mean_price, \
         sum(price_usd * volume) / sum(volume) AS vwap, min(ts) AS first_at",
    );
    let p = Pipeline::parse(&sql, "user.sql").unwrap_or_else(|e| panic!("{e}"));
    let t = p.views[0].merge_table();
    let cols: Vec<&str> = t.columns.iter().map(|(n, _)| n.as_str()).collect();
    assert!(cols.contains(&"mean_price") && cols.contains(&"vwap") && cols.contains(&"first_at"));
    assert!(
        cols.iter().filter(|c| c.starts_with('_')).count() >= 4,
        "hidden sums and counts: {cols:?}"
    );
    assert_eq!(p.views[0].window_ms, 300_000);
}

#[test]
fn unsupported_sql_names_the_line_and_the_construct() {
    let join = "-- a comment\nCREATE MATERIALIZED VIEW j AS\nSELECT t.base, count(*) AS n\nFROM trades t\nJOIN trades u ON t.base = u.base\nGROUP BY t.base;";
    let (line, what) = refused(join);
    assert_eq!(line, 5, "{what}");
    assert!(what.contains("JOIN"), "{what}");

    let (line, what) = refused(&format!("\n\n{}", view("median(price) AS m")));
    assert_eq!(line, 3);
    assert!(
        what.contains("median") && what.contains("cannot be merged"),
        "{what}"
    );

    let (_, what) = refused(&view("count(DISTINCT exchange) AS n"));
    assert!(what.contains("DISTINCT"), "{what}");

    let (_, what) = refused(
        "CREATE MATERIALIZED VIEW h AS SELECT base, count(*) AS n FROM trades GROUP BY base;",
    );
    assert!(what.contains("date_bin"), "{what}");

    let (_, what) = refused(
        "CREATE MATERIALIZED VIEW m AS SELECT base, date_bin(INTERVAL '1 month', ts) AS window_start, count(*) AS n \
         FROM trades GROUP BY base, date_bin(INTERVAL '1 month', ts);",
    );
    assert!(what.contains("month"), "{what}");

    let (_, what) = refused(&view("first_value(price) AS p"));
    assert!(what.contains("ORDER BY ts"), "{what}");

    let (_, what) = refused(&view("sum(count(*)) OVER () AS p"));
    assert!(what.to_lowercase().contains("window"), "{what}");

    let (_, what) = refused("CREATE VIEW x AS SELECT 1;");
    assert!(what.contains("MATERIALIZED"), "{what}");

    let (_, what) = refused("DELETE FROM trades;");
    assert!(what.contains("CREATE MATERIALIZED VIEW"), "{what}");

    // A literal that overflows to infinity cannot be rendered for MySQL's recomputation.
    let (_, what) = refused(&view("sum(volume) * 1e400 AS huge"));
    assert!(what.contains("1e400") || what.contains("inf"), "{what}");
    assert!(what.contains("huge") && what.contains("DOUBLE"), "{what}");

    let (_, what) = refused(&view("count(*) AS revision"));
    assert!(what.contains("revision"), "{what}");

    let (_, what) = refused(
        "CREATE MATERIALIZED VIEW u AS SELECT base, date_bin(INTERVAL '1 minute', ts) AS window_start, count(*) AS n \
         FROM unknown_table GROUP BY base, date_bin(INTERVAL '1 minute', ts);",
    );
    assert!(what.contains("unknown_table"), "{what}");
}

#[test]
fn syntax_errors_and_name_clashes_are_refused() {
    assert!(matches!(
        Pipeline::parse("CREATE MATERIALIZED VIEW AS SELEKT", "x.sql"),
        Err(PipelineError::Syntax { .. })
    ));
    let clash = "CREATE MATERIALIZED VIEW market_1m AS SELECT base, date_bin(INTERVAL '1 minute', ts) AS window_start, \
                 count(*) AS n FROM trades GROUP BY base, date_bin(INTERVAL '1 minute', ts);";
    assert!(Pipeline::with_user(Some((clash, "x.sql"))).is_err());
    let twice = format!("{}\n{}", view("count(*) AS n"), view("count(*) AS n"));
    let (line, what) = refused(&twice);
    assert_eq!(line, 2);
    assert!(what.contains("twice"), "{what}");
}

/// Issue 24, point 14: a view named like a table or view tradewind keeps would make `migrate`
/// alter it, and a name over 48 characters makes an index name over MySQL's 64: both are refused
/// at parse, with the file's line.
#[test]
fn reserved_and_overlong_view_names_are_refused_at_parse() {
    let named = |name: &str| {
        format!(
            "\n\nCREATE MATERIALIZED VIEW {name} AS SELECT base, date_bin(INTERVAL '5 minutes', ts) AS window_start, \
             count(*) AS n FROM trades GROUP BY base, date_bin(INTERVAL '5 minutes', ts);"
        )
    };
    for name in [
        "tw_offsets",
        "TW_owner",
        "v_asset_minute",
        "coincap_analysis",
    ] {
        let (line, construct) = refused(&named(name));
        assert_eq!(line, 3, "{name}");
        assert!(
            construct.contains("reserved") || construct.contains("schema keeps"),
            "{name}: {construct}"
        );
    }
    let long = "x".repeat(49);
    let (line, construct) = refused(&named(&long));
    assert_eq!(line, 3);
    assert!(construct.contains("at most 48"), "{construct}");
    assert!(Pipeline::parse(&named(&"x".repeat(48)), "user.sql").is_ok());
}
