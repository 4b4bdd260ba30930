//! The retention task against the real MariaDB at 127.0.0.1:3306 (root, no password): at start-up it
//! deletes exactly the final rows older than each rule's age from the tables with the rule's window
//! size, counts them per table, and stops on shutdown. Works in its own database, dropped at the end.

use std::collections::BTreeSet;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use tradewind_engine::retention::{parse_rules, spawn};
use tradewind_model::now_ms;
use tradewind_sink::MySqlSink;

const DAY: i64 = 86_400_000;

fn tables() -> Vec<(String, i64)> {
    [
        ("market_1m", 60_000),
        ("asset_1m", 60_000),
        ("asset_1h", 3_600_000),
        ("asset_1d", DAY),
    ]
    .iter()
    .map(|(t, w)| (t.to_string(), *w))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_task_deletes_old_final_rows_of_matching_tables_and_stops_on_shutdown() {
    let db = format!("tw_test_retention_task_{}", std::process::id());
    let sink = MySqlSink::connect(&format!("mysql://root@127.0.0.1:3306/{db}"))
        .await
        .expect("connect");
    sink.migrate().await.expect("migrate");

    // (table, age in days, final): rows of one asset at whole minutes of those ages.
    let now = now_ms() / 60_000 * 60_000;
    let rows: Vec<(&str, i64, bool)> = vec![
        ("asset_1m", 45, true),  // deleted (1m = 30d)
        ("asset_1m", 31, true),  // deleted
        ("asset_1m", 31, false), // kept: provisional
        ("asset_1m", 29, true),  // kept: recent
        ("market_1m", 40, true), // deleted: same window size as asset_1m
        ("market_1m", 1, true),  // kept
        ("asset_1h", 500, true), // deleted (1h = 400d)
        ("asset_1h", 45, true),  // kept: a 1-minute rule does not apply to hours
        ("asset_1d", 900, true), // kept: no rule for days
    ];
    // Pooled sessions run in UTC, so FROM_UNIXTIME gives the UTC DATETIME of an epoch instant.
    let mut conn = sink.pool().get_conn().await.expect("conn");
    for (i, (table, age, final_)) in rows.iter().enumerate() {
        // Distinct minutes, so several rows of one table and age do not collide.
        let start = now - age * DAY - i as i64 * 60_000;
        let (cols, keys) = if *table == "market_1m" {
            ("exchange, base, quote", "'binance', 'bitcoin', 'tether'")
        } else {
            ("base", "'bitcoin'")
        };
        conn.query_drop(format!(
            "INSERT INTO {table} ({cols}, window_start, window_end, trades, is_final) \
             VALUES ({keys}, FROM_UNIXTIME({start} / 1000), FROM_UNIXTIME({} / 1000), 1, {})",
            start + 60_000,
            u8::from(*final_)
        ))
        .await
        .expect("insert");
    }
    let count_rows = |table: &str| format!("SELECT COUNT(*) FROM {table}");
    let expect_deleted: Vec<(&str, u64)> = vec![("asset_1m", 2), ("market_1m", 1), ("asset_1h", 1)];

    let registry = prometheus::Registry::new();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let rules = parse_rules("1m=30d,1h=400d").expect("rules");
    let task = spawn(
        &sink,
        tables(),
        &rules,
        Duration::from_secs(600),
        &registry,
        shutdown,
    )
    .expect("valid rules")
    .expect("a task");

    // The first pass runs at start-up: wait for it (the counter), however long the machine takes.
    let deleted = |table: &str| {
        registry
            .gather()
            .iter()
            .filter(|f| f.name() == "tradewind_retention_deleted_rows_total")
            .flat_map(|f| f.get_metric().iter())
            .filter(|m| m.get_label().iter().any(|l| l.value() == table))
            .map(|m| m.get_counter().get_value() as u64)
            .sum::<u64>()
    };
    let total: u64 = expect_deleted.iter().map(|(_, n)| n).sum();
    let mut waited = 0;
    while ["asset_1m", "market_1m", "asset_1h"]
        .iter()
        .map(|t| deleted(t))
        .sum::<u64>()
        < total
    {
        assert!(waited < 1200, "retention did not run within a minute");
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += 1;
    }
    for (table, n) in &expect_deleted {
        assert_eq!(deleted(table), *n, "{table} counter");
    }
    assert_eq!(deleted("asset_1d"), 0);

    // Exactly the expected rows remain: (table, age in days, final).
    let mut kept = BTreeSet::new();
    for table in ["asset_1m", "market_1m", "asset_1h", "asset_1d"] {
        let got: Vec<(i64, u8)> = conn
            .query(format!(
                "SELECT CAST(UNIX_TIMESTAMP(window_start) * 1000 AS SIGNED), is_final FROM {table}"
            ))
            .await
            .expect("select");
        for (ws, f) in got {
            kept.insert((table, (now - ws) / DAY, f == 1));
        }
        let n: Option<i64> = conn.query_first(count_rows(table)).await.expect("count");
        assert!(n.unwrap_or(0) > 0, "{table} keeps rows");
    }
    let expect_kept: BTreeSet<(&str, i64, bool)> = rows
        .iter()
        .copied()
        .filter(|(t, age, f)| {
            let limit = match *t {
                "asset_1h" => 400,
                "asset_1d" => i64::MAX,
                _ => 30,
            };
            !(*f && *age >= limit)
        })
        .collect();
    assert_eq!(kept, expect_kept);

    // Shutdown stops the task (it is waiting for its next pass).
    stop.send(true).expect("signal");
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the task stops on shutdown")
        .expect("no panic");

    // No rules: no task; a rule for a window size no table has: a start-up error naming it.
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let none = spawn(
        &sink,
        tables(),
        &[],
        Duration::ZERO,
        &registry,
        shutdown.clone(),
    );
    assert!(none.expect("no rules is fine").is_none());
    let err = spawn(
        &sink,
        tables(),
        &parse_rules("5m=30d").expect("rule"),
        Duration::ZERO,
        &prometheus::Registry::new(),
        shutdown,
    )
    .expect_err("no 5-minute table");
    assert!(err.to_string().contains("5m"), "{err}");

    conn.query_drop(format!("DROP DATABASE `{db}`"))
        .await
        .expect("drop db");
    drop(conn);
    sink.disconnect().await.expect("disconnect");
}
