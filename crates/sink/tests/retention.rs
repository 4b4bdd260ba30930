//! Retention against the real MariaDB at 127.0.0.1:3306 (root, no password): `purge_final` deletes
//! exactly the final rows older than the cutoff, in batches, and keeps provisional and recent rows
//! and other tables. Works in its own database, dropped at the end.

use std::collections::BTreeSet;

use mysql_async::prelude::Queryable;
use tradewind_sink::MySqlSink;

/// 2026-01-01T00:00:00Z: a whole day, hour and minute.
const DAY0: i64 = 1_767_225_600_000;
const HOUR: i64 = 3_600_000;

/// `'YYYY-MM-DD HH:MM:SS'` of an epoch-ms instant (whole seconds), for the SQL literals.
fn datetime(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .expect("in range")
        .format("%Y-%m-%d %H:%M:%S%.3f")
        .to_string()
}

/// The (base, window_start ms) keys of `table`.
async fn keys(sink: &MySqlSink, table: &str) -> BTreeSet<(String, i64)> {
    let mut conn = sink.pool().get_conn().await.expect("conn");
    let rows: Vec<(String, i64)> = conn
        .query(format!(
            "SELECT base, CAST(UNIX_TIMESTAMP(window_start) * 1000 AS SIGNED) FROM {table}"
        ))
        .await
        .expect("select keys");
    rows.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_deletes_exactly_the_old_final_rows_in_batches() {
    let db = format!("tw_test_retention_{}", std::process::id());
    let sink = MySqlSink::connect(&format!("mysql://root@127.0.0.1:3306/{db}"))
        .await
        .expect("connect");
    sink.migrate().await.expect("migrate");

    // asset_1h rows: 3 assets x 48 hours, every fifth one still provisional (is_final = 0).
    let mut all = Vec::new();
    for h in 0..48i64 {
        for (i, base) in ["bitcoin", "ethereum", "solana"].iter().enumerate() {
            let final_ = (h + i as i64) % 5 != 0;
            all.push((base.to_string(), DAY0 + h * HOUR, final_));
        }
    }
    let mut conn = sink.pool().get_conn().await.expect("conn");
    for table in ["asset_1h", "asset_1m"] {
        let values: Vec<String> = all
            .iter()
            .map(|(b, ws, f)| {
                format!(
                    "('{b}', '{}', '{}', 1, {})",
                    datetime(*ws),
                    datetime(ws + HOUR),
                    u8::from(*f)
                )
            })
            .collect();
        conn.query_drop(format!(
            "INSERT INTO {table} (base, window_start, window_end, trades, is_final) VALUES {}",
            values.join(", ")
        ))
        .await
        .expect("insert rows");
    }
    drop(conn);

    // The cutoff falls on a window start: that window is not older than the cutoff and stays.
    let cutoff = DAY0 + 30 * HOUR;
    let expect_deleted: BTreeSet<(String, i64)> = all
        .iter()
        .filter(|(_, ws, f)| *f && *ws < cutoff)
        .map(|(b, ws, _)| (b.clone(), *ws))
        .collect();
    let expect_kept: BTreeSet<(String, i64)> = all
        .iter()
        .map(|(b, ws, _)| (b.clone(), *ws))
        .filter(|k| !expect_deleted.contains(k))
        .collect();
    assert!(expect_deleted.len() > 20 && expect_kept.iter().any(|(_, ws)| *ws < cutoff));

    // Batches of 7 rows, repeated until a batch comes back short (as the engine's task does).
    let mut batches = Vec::new();
    loop {
        let n = sink
            .purge_final("asset_1h", cutoff, 7)
            .await
            .expect("purge");
        batches.push(n);
        if n < 7 {
            break;
        }
    }
    assert_eq!(batches.iter().sum::<u64>(), expect_deleted.len() as u64);
    assert!(batches.len() > 2 && batches[..batches.len() - 1].iter().all(|&n| n == 7));
    assert_eq!(keys(&sink, "asset_1h").await, expect_kept);
    // Another table is untouched, and purging again deletes nothing.
    assert_eq!(keys(&sink, "asset_1m").await.len(), all.len());
    assert_eq!(
        sink.purge_final("asset_1h", cutoff, 7)
            .await
            .expect("again"),
        0
    );

    // Unknown tables are an error, not a silent no-op.
    assert!(sink.purge_final("no_such_table", cutoff, 7).await.is_err());

    let mut conn = sink.pool().get_conn().await.expect("conn");
    conn.query_drop(format!("DROP DATABASE `{db}`"))
        .await
        .expect("drop db");
    drop(conn);
    sink.disconnect().await.expect("disconnect");
}
