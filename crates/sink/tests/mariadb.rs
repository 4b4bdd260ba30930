//! Integration tests against the real MariaDB at 127.0.0.1:3306 (root, no password).
//! Every test works in its own database `tw_test_<pid>_<n>` and drops it at the end.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arrow_array::types::Int32Type;
use arrow_array::{
    ArrayRef, BinaryArray, BooleanArray, DictionaryArray, Float32Array, Float64Array, Int32Array,
    Int64Array, Int8Array, LargeStringArray, RecordBatch, StringArray, TimestampMicrosecondArray,
    TimestampMillisecondArray, UInt32Array, UInt64Array,
};
use arrow_schema::{Field, Schema};
use mysql_async::prelude::Queryable;
use mysql_async::Row;
use tradewind_sink::{
    Commit, CommitOutcome, IngestMode, Merge, MergeTable, MySqlSink, PartitionProgress,
    PartitionStatus, SinkError, Trend,
};

static N: AtomicUsize = AtomicUsize::new(0);

fn db_name() -> String {
    format!(
        "tw_test_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

async fn fresh() -> (MySqlSink, String) {
    let db = db_name();
    let sink = MySqlSink::connect(&format!("mysql://root@127.0.0.1:3306/{db}"))
        .await
        .expect("connect");
    sink.migrate().await.expect("migrate");
    (sink, db)
}

async fn cleanup(sink: MySqlSink, db: &str) {
    let mut conn = sink.pool().get_conn().await.unwrap();
    conn.query_drop(format!("DROP DATABASE `{db}`"))
        .await
        .unwrap();
    drop(conn);
    sink.disconnect().await.unwrap();
}

async fn rows(sink: &MySqlSink, sql: &str) -> Vec<Row> {
    let mut conn = sink.pool().get_conn().await.unwrap();
    // Prepared statement: binary protocol, so doubles come back as their exact 8 bytes.
    conn.exec(sql, ()).await.unwrap()
}

async fn count(sink: &MySqlSink, sql: &str) -> i64 {
    let r = rows(sink, sql).await;
    r[0].get::<i64, _>(0).unwrap()
}

fn batch(cols: Vec<(&str, ArrayRef)>) -> RecordBatch {
    let fields: Vec<Field> = cols
        .iter()
        .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
        .collect();
    RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        cols.into_iter().map(|(_, a)| a).collect(),
    )
    .unwrap()
}

fn ts_ms(v: Vec<i64>) -> ArrayRef {
    Arc::new(TimestampMillisecondArray::from(v).with_timezone("UTC"))
}

const T0: i64 = 1_700_000_040_000; // a minute boundary

/// asset_1m rows: (base, minute index, trades, volume, vwap, trend, is_final, revision).
#[allow(clippy::type_complexity)]
fn asset_rows(rows: &[(&str, i64, u64, f64, f64, Option<&str>, bool, u32)]) -> RecordBatch {
    batch(vec![
        (
            "base",
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
        ),
        (
            "window_start",
            ts_ms(rows.iter().map(|r| T0 + r.1 * 60_000).collect()),
        ),
        (
            "window_end",
            ts_ms(rows.iter().map(|r| T0 + (r.1 + 1) * 60_000).collect()),
        ),
        (
            "trades",
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.2))),
        ),
        (
            "volume",
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.3))),
        ),
        (
            "vwap_usd",
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.4))),
        ),
        (
            "price_trend",
            Arc::new(StringArray::from(
                rows.iter().map(|r| r.5).collect::<Vec<_>>(),
            )),
        ),
        (
            "is_final",
            Arc::new(BooleanArray::from(
                rows.iter().map(|r| r.6).collect::<Vec<_>>(),
            )),
        ),
        (
            "revision",
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.7))),
        ),
    ])
}

fn progress(partition: i32, expected: Option<i64>, next: i64) -> PartitionProgress {
    PartitionProgress {
        partition,
        expected_offset: expected,
        next_offset: next,
        max_event_ms: Some(T0 + next),
        watermark_ms: Some(T0 + next),
        status: PartitionStatus::Active,
    }
}

/// A small window table merged by the generic merge-on-write rules.
async fn window_table(sink: &MySqlSink) -> MergeTable {
    let mut conn = sink.pool().get_conn().await.unwrap();
    conn.query_drop(
        "CREATE TABLE w (k VARCHAR(8) NOT NULL, window_start DATETIME(3) NOT NULL, \
         n BIGINT NOT NULL, s DOUBLE, hi DOUBLE, lo DOUBLE, okey DECIMAL(38,0), ckey DECIMAL(38,0), \
         o DOUBLE, c DOUBLE, avg DOUBLE, trend ENUM('up','down','flat') NULL, \
         is_final TINYINT NOT NULL DEFAULT 0, stale TINYINT NOT NULL DEFAULT 0, \
         revision INT NOT NULL DEFAULT 0, \
         PRIMARY KEY (k, window_start), KEY (is_final, window_start), KEY (stale))",
    )
    .await
    .unwrap();
    let col = |n: &str, m: Merge| (n.to_string(), m);
    MergeTable {
        name: "w".into(),
        columns: vec![
            col("k", Merge::Key),
            col("window_start", Merge::Key),
            col("n", Merge::Add),
            col("s", Merge::Add),
            col("hi", Merge::Max),
            col("lo", Merge::Min),
            col("okey", Merge::Min),
            col("ckey", Merge::Max),
            col("o", Merge::FirstBy("okey".into())),
            col("c", Merge::LastBy("ckey".into())),
            col("avg", Merge::Derived("`s` / `n`".into())),
            col("trend", Merge::Keep),
            col("is_final", Merge::Keep),
            col("stale", Trend::stale_on_final_merge()),
            col("revision", Merge::Add),
        ],
        window_ms: 60_000,
        trend: Some(Trend {
            column: "trend".into(),
            value: "avg".into(),
            stale: "stale".into(),
        }),
    }
}

/// Contribution rows of `w`: (key, minute, n, sum, hi=lo=sum/n, open key/value, close key/value, late).
#[allow(clippy::type_complexity)]
fn contribution(rows: &[(&str, i64, i64, f64, (i128, f64), (i128, f64), i32)]) -> RecordBatch {
    let dec = |v: Vec<i128>| -> ArrayRef {
        Arc::new(
            arrow_array::Decimal128Array::from(v)
                .with_precision_and_scale(38, 0)
                .unwrap(),
        )
    };
    let f = |v: Vec<f64>| -> ArrayRef { Arc::new(Float64Array::from(v)) };
    batch(vec![
        (
            "k",
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
        ),
        (
            "window_start",
            ts_ms(rows.iter().map(|r| T0 + r.1 * 60_000).collect()),
        ),
        (
            "n",
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
        ),
        ("s", f(rows.iter().map(|r| r.3).collect())),
        ("hi", f(rows.iter().map(|r| r.3 / r.2 as f64).collect())),
        ("lo", f(rows.iter().map(|r| r.3 / r.2 as f64).collect())),
        ("okey", dec(rows.iter().map(|r| r.4 .0).collect())),
        ("ckey", dec(rows.iter().map(|r| r.5 .0).collect())),
        ("o", f(rows.iter().map(|r| r.4 .1).collect())),
        ("c", f(rows.iter().map(|r| r.5 .1).collect())),
        ("avg", f(rows.iter().map(|r| r.3 / r.2 as f64).collect())),
        (
            "trend",
            Arc::new(StringArray::from(vec![None::<&str>; rows.len()])),
        ),
        (
            "is_final",
            Arc::new(BooleanArray::from(vec![false; rows.len()])),
        ),
        (
            "revision",
            Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.6))),
        ),
    ])
}

#[tokio::test]
async fn connect_creates_database_and_migrate_is_idempotent() {
    let db = db_name();
    let url = format!("mysql://root@127.0.0.1:3306/{db}");
    // The database does not exist before connect.
    let admin = mysql_async::Pool::new("mysql://root@127.0.0.1:3306");
    let mut c = admin.get_conn().await.unwrap();
    let before: Vec<Row> = c
        .exec(
            "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
            (&db,),
        )
        .await
        .unwrap();
    assert!(before.is_empty());
    drop(c);
    admin.disconnect().await.unwrap();

    let sink = MySqlSink::connect(&url).await.unwrap();
    assert!(sink.max_allowed_packet() >= 1 << 20);
    sink.migrate().await.unwrap();
    sink.migrate().await.unwrap(); // second run: no-op, no error
                                   // A second sink (another replica) migrating the same database is fine too.
    let other = MySqlSink::connect(&url).await.unwrap();
    other.migrate().await.unwrap();
    other.disconnect().await.unwrap();

    let tables: Vec<Row> = rows(
        &sink,
        "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES \
         WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME",
    )
    .await;
    let names: Vec<(String, String)> = tables
        .into_iter()
        .map(|r| (r.get(0).unwrap(), r.get(1).unwrap()))
        .collect();
    let expect = [
        ("asset_1d", "BASE TABLE"),
        ("asset_1h", "BASE TABLE"),
        ("asset_1m", "BASE TABLE"),
        ("coincap_analysis", "VIEW"),
        ("market_1m", "BASE TABLE"),
        ("tw_offsets", "BASE TABLE"),
        ("tw_owner", "BASE TABLE"),
        ("tw_schema_migrations", "BASE TABLE"),
        ("v_asset_day", "VIEW"),
        ("v_asset_hour", "VIEW"),
        ("v_asset_minute", "VIEW"),
        ("v_market_minute", "VIEW"),
        ("v_quality_rollups", "VIEW"),
        ("v_tableau_asset_day", "VIEW"),
        ("v_tableau_asset_hour", "VIEW"),
        ("v_tableau_asset_minute", "VIEW"),
    ];
    assert_eq!(
        names,
        expect
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        count(&sink, "SELECT COUNT(*) FROM tw_schema_migrations").await,
        tradewind_sink::MIGRATIONS.len() as i64
    );
    // Secondary index on window_start for every window table.
    assert_eq!(
        count(
            &sink,
            "SELECT COUNT(DISTINCT TABLE_NAME) FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = DATABASE() AND COLUMN_NAME = 'window_start' \
             AND SEQ_IN_INDEX = 1 AND INDEX_NAME <> 'PRIMARY'"
        )
        .await,
        4
    );
    // The rollups have exactly asset_1m's columns (names, order, types, nullability, defaults) and
    // indexes (primary key, window_start, (is_final, window_start), trend_stale).
    let shape = |table: &str| {
        let columns = format!(
            "SELECT GROUP_CONCAT(CONCAT_WS(' ', COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, \
             COALESCE(COLUMN_DEFAULT, '-'), COLLATION_NAME) ORDER BY ORDINAL_POSITION SEPARATOR ', ') \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '{table}'"
        );
        let indexes = format!(
            "SELECT GROUP_CONCAT(CONCAT_WS(' ', INDEX_NAME, SEQ_IN_INDEX, COLUMN_NAME, NON_UNIQUE) \
             ORDER BY INDEX_NAME, SEQ_IN_INDEX SEPARATOR ', ') \
             FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '{table}'"
        );
        (columns, indexes)
    };
    let (m_cols, m_idx) = shape("asset_1m");
    let m_cols: String = rows(&sink, &m_cols).await[0].get(0).unwrap();
    let m_idx: String = rows(&sink, &m_idx).await[0].get(0).unwrap();
    assert!(m_idx.contains("trend_stale") && m_idx.contains("idx_asset_1m_open 2 window_start"));
    for rollup in ["asset_1h", "asset_1d"] {
        let (c, i) = shape(rollup);
        let c: String = rows(&sink, &c).await[0].get(0).unwrap();
        let i: String = rows(&sink, &i).await[0].get(0).unwrap();
        assert_eq!(c, m_cols, "{rollup} columns");
        assert_eq!(i, m_idx, "{rollup} indexes");
    }
    // Session time zone is UTC on pooled connections.
    let tz = rows(&sink, "SELECT @@session.time_zone").await;
    assert_eq!(tz[0].get::<String, _>(0).unwrap(), "+00:00");
    cleanup(sink, &db).await;
}

#[tokio::test]
async fn upsert_keeps_latest_values_without_duplicates() {
    let (sink, db) = fresh().await;
    let first = asset_rows(&[
        ("bitcoin", 0, 10, 1.5, 100.0, None, true, 0),
        ("bitcoin", 1, 3, 0.5, 101.0, Some("up"), false, 0),
        ("ethereum", 0, 7, 2.0, 5.0, None, true, 0),
    ]);
    assert_eq!(
        sink.ingest("asset_1m", &first, IngestMode::Upsert)
            .await
            .unwrap(),
        3
    );
    let second = asset_rows(&[
        ("bitcoin", 1, 9, 1.25, 102.5, Some("up"), true, 1),
        ("ethereum", 0, 8, 2.5, 4.0, None, true, 1),
        ("solana", 0, 1, 3.0, 20.0, None, false, 0),
    ]);
    sink.ingest("asset_1m", &second, IngestMode::Upsert)
        .await
        .unwrap();
    // Replaying the same batch is harmless.
    sink.ingest("asset_1m", &second, IngestMode::Upsert)
        .await
        .unwrap();

    let got = rows(
        &sink,
        "SELECT base, TIMESTAMPDIFF(SECOND, '1970-01-01', window_start), trades, volume, vwap_usd, \
         price_trend, is_final, revision FROM asset_1m ORDER BY base, window_start",
    )
    .await;
    type AssetRow = (String, i64, u64, f64, f64, Option<String>, u8, u32);
    let got: Vec<AssetRow> = got
        .into_iter()
        .map(|r| {
            (
                r.get(0).unwrap(),
                r.get(1).unwrap(),
                r.get(2).unwrap(),
                r.get(3).unwrap(),
                r.get(4).unwrap(),
                r.get(5).unwrap(),
                r.get(6).unwrap(),
                r.get(7).unwrap(),
            )
        })
        .collect();
    let s = T0 / 1000;
    assert_eq!(
        got,
        vec![
            ("bitcoin".into(), s, 10, 1.5, 100.0, None, 1, 0),
            (
                "bitcoin".into(),
                s + 60,
                9,
                1.25,
                102.5,
                Some("up".into()),
                1,
                1
            ),
            ("ethereum".into(), s, 8, 2.5, 4.0, None, 1, 1),
            ("solana".into(), s, 1, 3.0, 20.0, None, 0, 0),
        ]
    );
    // Views: compatibility view shows final rows only; the Tableau view shows all with a status.
    assert_eq!(
        count(&sink, "SELECT COUNT(*) FROM coincap_analysis").await,
        3
    );
    let v = rows(
        &sink,
        "SELECT total_volume, actual_avg FROM coincap_analysis WHERE base = 'ethereum'",
    )
    .await;
    assert_eq!(v[0].get::<f64, _>(0).unwrap(), 2.5);
    assert_eq!(v[0].get::<f64, _>(1).unwrap(), 4.0);
    assert_eq!(
        count(
            &sink,
            "SELECT COUNT(*) FROM v_asset_minute WHERE window_status = 'provisional'"
        )
        .await,
        1
    );
    // Append of an existing key is a permanent (non-retryable) error.
    let err = sink
        .ingest("asset_1m", &second, IngestMode::Append)
        .await
        .unwrap_err();
    assert_eq!(err.server_code(), Some(1062), "{err}");
    assert!(!err.is_transient());
    cleanup(sink, &db).await;
}

/// Tiny deterministic PRNG (xorshift64*), so the test needs no extra crates.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[tokio::test]
async fn values_round_trip_exactly() {
    let (sink, db) = fresh().await;
    sink.pool()
        .get_conn()
        .await
        .unwrap()
        .query_drop(
            "CREATE TABLE rt (id INT PRIMARY KEY, d DOUBLE NULL, f FLOAT NULL, ts DATETIME(3) NULL, \
             tus DATETIME(3) NULL, s VARCHAR(255) NULL, ls TEXT NULL, dict VARCHAR(64) NULL, \
             b VARBINARY(512) NULL, u BIGINT UNSIGNED NULL, i BIGINT NULL, t TINYINT NULL, \
             flag TINYINT(1) NULL) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
        )
        .await
        .unwrap();

    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let n = 2_000usize;
    let mut doubles = Vec::with_capacity(n);
    let mut floats = Vec::with_capacity(n);
    while doubles.len() < n {
        let d = f64::from_bits(rng.next());
        // Random bit patterns cover every magnitude (subnormals included); skip non-finite and -0.
        if d.is_finite() && d != 0.0 {
            doubles.push(d);
        }
    }
    doubles[0] = 0.1;
    doubles[1] = 1.0 / 3.0;
    doubles[2] = f64::MAX;
    doubles[3] = f64::MIN_POSITIVE;
    doubles[4] = 5e-324;
    doubles[5] = 67_890.123_456_789;
    while floats.len() < n {
        let f = f32::from_bits(rng.next() as u32);
        if f.is_normal() {
            floats.push(f);
        }
    }
    // DATETIME range: year 1000..9999, in ms.
    let lo = -30_610_224_000_000i64; // 1000-01-01
    let hi = 253_402_300_799_999i64; // 9999-12-31 23:59:59.999
    let millis: Vec<i64> = (0..n)
        .map(|i| match i {
            0 => 0,
            1 => -1,
            2 => lo,
            3 => hi,
            4 => 951_782_400_000, // 2000-02-29
            _ => lo + (rng.next() % ((hi - lo) as u64)) as i64,
        })
        .collect();
    let micros: Vec<i64> = millis.iter().map(|m| m * 1000 + 999).collect();
    let specials = [
        "",
        "it's",
        "back\\slash",
        "\\'",
        "nul\0byte",
        "line\nbreak\r\n",
        "ctrl-z\x1a",
        "unicode: é ü 中文 🚀 𝔘",
        "\"double\" `back` %_",
        "trailing\\",
    ];
    let strings: Vec<String> = (0..n)
        .map(|i| match specials.get(i) {
            Some(s) => s.to_string(),
            None => format!("s{i}-'{}'\\", "ü".repeat(i % 50)),
        })
        .collect();
    let binaries: Vec<Vec<u8>> = (0..n)
        .map(|i| match i {
            0 => Vec::new(),
            1 => (0..=255u8).collect(),
            _ => (0..(i % 40)).map(|_| rng.next() as u8).collect(),
        })
        .collect();
    let dict_keys: Vec<Option<i32>> = (0..n)
        .map(|i| {
            if i % 7 == 3 {
                None
            } else {
                Some((i % 3) as i32)
            }
        })
        .collect();
    let dict = DictionaryArray::<Int32Type>::try_new(
        Int32Array::from(dict_keys.clone()),
        Arc::new(StringArray::from(vec!["usd", "o'k", "z\\"])),
    )
    .unwrap();
    let nullable = |i: usize| i % 11 != 5; // every 11th row (from 5) has NULLs in the nullable columns
    let b = batch(vec![
        ("id", Arc::new(Int32Array::from_iter_values(0..n as i32))),
        (
            "d",
            Arc::new(Float64Array::from(
                (0..n)
                    .map(|i| nullable(i).then_some(doubles[i]))
                    .collect::<Vec<_>>(),
            )),
        ),
        ("f", Arc::new(Float32Array::from(floats.clone()))),
        (
            "ts",
            Arc::new(
                TimestampMillisecondArray::from(
                    (0..n)
                        .map(|i| nullable(i).then_some(millis[i]))
                        .collect::<Vec<_>>(),
                )
                .with_timezone("UTC"),
            ),
        ),
        (
            "tus",
            Arc::new(TimestampMicrosecondArray::from(micros.clone())),
        ),
        (
            "s",
            Arc::new(StringArray::from(
                (0..n)
                    .map(|i| nullable(i).then_some(strings[i].as_str()))
                    .collect::<Vec<_>>(),
            )),
        ),
        (
            "ls",
            Arc::new(LargeStringArray::from_iter_values(strings.iter())),
        ),
        ("dict", Arc::new(dict)),
        (
            "b",
            Arc::new(BinaryArray::from(
                (0..n)
                    .map(|i| nullable(i).then_some(binaries[i].as_slice()))
                    .collect::<Vec<_>>(),
            )),
        ),
        (
            "u",
            Arc::new(UInt64Array::from_iter_values(
                (0..n as u64).map(|i| u64::MAX - i),
            )),
        ),
        (
            "i",
            Arc::new(Int64Array::from_iter_values(
                (0..n as i64).map(|i| i64::MIN + i),
            )),
        ),
        (
            "t",
            Arc::new(Int8Array::from_iter_values(
                (0..n).map(|i| (i % 256) as u8 as i8),
            )),
        ),
        (
            "flag",
            Arc::new(BooleanArray::from(
                (0..n)
                    .map(|i| (i % 3 != 0).then_some(i % 2 == 0))
                    .collect::<Vec<_>>(),
            )),
        ),
    ]);
    assert_eq!(
        sink.ingest("rt", &b, IngestMode::Append).await.unwrap(),
        n as u64
    );

    let got = rows(
        &sink,
        "SELECT id, d, f, TIMESTAMPDIFF(MICROSECOND, '1970-01-01', ts), \
         TIMESTAMPDIFF(MICROSECOND, '1970-01-01', tus), s, ls, dict, b, u, i, t, flag, \
         DATE_FORMAT(ts, '%Y-%m-%d %H:%i:%s.%f') FROM rt ORDER BY id",
    )
    .await;
    assert_eq!(got.len(), n);
    for (i, r) in got.into_iter().enumerate() {
        assert_eq!(r.get::<i32, _>(0).unwrap(), i as i32);
        let d: Option<f64> = r.get(1).unwrap();
        match nullable(i) {
            true => assert_eq!(d.unwrap().to_bits(), doubles[i].to_bits(), "row {i}"),
            false => assert_eq!(d, None),
        }
        let f: f32 = r.get(2).unwrap();
        assert_eq!(f.to_bits(), floats[i].to_bits(), "float row {i}");
        let ts: Option<i64> = r.get(3).unwrap();
        assert_eq!(ts, nullable(i).then_some(millis[i] * 1000), "ts row {i}");
        let tus: i64 = r.get(4).unwrap();
        assert_eq!(
            tus,
            millis[i] * 1000,
            "microsecond timestamps floor to millis, row {i}"
        );
        let s: Option<String> = r.get(5).unwrap();
        assert_eq!(s.as_deref(), nullable(i).then_some(strings[i].as_str()));
        let ls: String = r.get(6).unwrap();
        assert_eq!(ls, strings[i]);
        let dv: Option<String> = r.get(7).unwrap();
        assert_eq!(
            dv.as_deref(),
            dict_keys[i].map(|k| ["usd", "o'k", "z\\"][k as usize])
        );
        let bv: Option<Vec<u8>> = r.get(8).unwrap();
        assert_eq!(bv.as_deref(), nullable(i).then_some(binaries[i].as_slice()));
        assert_eq!(r.get::<u64, _>(9).unwrap(), u64::MAX - i as u64);
        assert_eq!(r.get::<i64, _>(10).unwrap(), i64::MIN + i as i64);
        assert_eq!(r.get::<i8, _>(11).unwrap(), (i % 256) as u8 as i8);
        let flag: Option<u8> = r.get(12).unwrap();
        assert_eq!(flag, (i % 3 != 0).then_some((i % 2 == 0) as u8));
        if i == 4 {
            let text: String = r.get(13).unwrap();
            assert_eq!(text, "2000-02-29 00:00:00.000000");
        }
    }

    // Non-finite doubles are written as NULL.
    let nf = batch(vec![
        ("id", Arc::new(Int32Array::from(vec![-1, -2, -3]))),
        (
            "d",
            Arc::new(Float64Array::from(vec![
                f64::NAN,
                f64::INFINITY,
                f64::NEG_INFINITY,
            ])),
        ),
    ]);
    sink.ingest("rt", &nf, IngestMode::Upsert).await.unwrap();
    assert_eq!(
        count(&sink, "SELECT COUNT(*) FROM rt WHERE id < 0 AND d IS NULL").await,
        3
    );

    // An unsupported Arrow type is a clear, permanent error.
    let bad = batch(vec![(
        "d",
        Arc::new(arrow_array::Date32Array::from(vec![1])) as ArrayRef,
    )]);
    let err = sink
        .ingest("rt", &bad, IngestMode::Append)
        .await
        .unwrap_err();
    assert!(matches!(err, SinkError::UnsupportedType { .. }), "{err}");
    assert!(err.to_string().contains("Date32"), "{err}");
    assert!(!err.is_transient());
    cleanup(sink, &db).await;
}

#[tokio::test]
async fn chunking_splits_statements_by_rows_and_bytes() {
    let (sink, db) = fresh().await;
    sink.pool()
        .get_conn()
        .await
        .unwrap()
        .query_drop("CREATE TABLE ch (id BIGINT PRIMARY KEY, s VARCHAR(255) NOT NULL, d DOUBLE)")
        .await
        .unwrap();
    let n = 3_001i64;
    let mk = |tag: &str| {
        batch(vec![
            (
                "id",
                Arc::new(Int64Array::from_iter_values(0..n)) as ArrayRef,
            ),
            (
                "s",
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| format!("{tag}-{}", "x".repeat((i % 97) as usize))),
                )),
            ),
            (
                "d",
                Arc::new(Float64Array::from_iter_values(
                    (0..n).map(|i| i as f64 * 0.5),
                )),
            ),
        ])
    };
    // Byte-bound chunks (about 10 rows each) and row-bound chunks (7 rows each).
    for (rows_cap, bytes_cap, tag) in [(5_000, 1_200, "a"), (7, 1 << 20, "b")] {
        let small = sink.clone().with_chunk_limits(rows_cap, bytes_cap);
        assert_eq!(
            small
                .ingest("ch", &mk(tag), IngestMode::Upsert)
                .await
                .unwrap(),
            n as u64
        );
        assert_eq!(count(&sink, "SELECT COUNT(*) FROM ch").await, n);
        let like = format!("SELECT COUNT(*) FROM ch WHERE s LIKE '{tag}-%'");
        assert_eq!(count(&sink, &like).await, n);
        let sum = rows(&sink, "SELECT SUM(d), SUM(LENGTH(s)) FROM ch").await;
        assert_eq!(
            sum[0].get::<f64, _>(0).unwrap(),
            (n * (n - 1)) as f64 * 0.25
        );
        let expect_len: i64 = (0..n).map(|i| 2 + i % 97).sum();
        assert_eq!(
            sum[0].get::<mysql_async::Value, _>(1).unwrap(),
            mysql_async::Value::Bytes(expect_len.to_string().into_bytes())
        );
    }
    // A single row larger than the statement limit is a clear error, and nothing is written
    // (ingest runs in one transaction).
    let tiny = sink.clone().with_chunk_limits(5_000, 200);
    let err = tiny
        .ingest("ch", &mk("c"), IngestMode::Upsert)
        .await
        .unwrap_err();
    assert!(matches!(err, SinkError::RowTooLarge { .. }), "{err}");
    assert_eq!(
        count(&sink, "SELECT COUNT(*) FROM ch WHERE s LIKE 'c-%'").await,
        0
    );
    cleanup(sink, &db).await;
}

#[tokio::test]
async fn contributions_merge_exactly_and_rows_become_final_at_the_low_watermark() {
    let (sink, db) = fresh().await;
    let w = window_table(&sink).await;
    let (g, t) = ("grp", "trades");
    // Partition 0 and partition 1 both contribute to ("x", minute 0); only partition 0 to minute 1.
    let b0 = contribution(&[
        ("x", 0, 2, 10.0, (20, 1.0), (30, 2.0), 0),
        ("x", 1, 1, 9.0, (40, 9.0), (40, 9.0), 0),
    ]);
    let b1 = contribution(&[("x", 0, 3, 30.0, (10, 7.0), (25, 8.0), 1)]);
    let p0 = [PartitionProgress {
        watermark_ms: Some(T0 + 30_000),
        ..progress(0, None, 5)
    }];
    let (m0, m1, empty) = ([(&w, &b0)], [(&w, &b1)], contribution(&[]));
    let me = [(&w, &empty)];
    let c = |parts, merges| Commit {
        group: g,
        topic: t,
        partition_count: 2,
        partitions: parts,
        merges,
        guards: &[],
    };
    let out = sink.commit(&c(&p0, &m0)).await.unwrap();
    assert_eq!(
        out,
        CommitOutcome::Committed {
            rows: 2,
            finalized: 0,
            low_watermark: None // partition 1 has not reported yet
        }
    );
    // Partition 1's watermark is past minute 0's end: minute 0 becomes final, minute 1 does not.
    let p1 = [PartitionProgress {
        watermark_ms: Some(T0 + 90_000),
        ..progress(1, None, 3)
    }];
    let p0b = [PartitionProgress {
        watermark_ms: Some(T0 + 61_000),
        ..progress(0, Some(5), 6)
    }];
    sink.commit(&c(&p1, &m1)).await.unwrap();
    let out = sink.commit(&c(&p0b, &me)).await.unwrap();
    assert_eq!(
        out,
        CommitOutcome::Committed {
            rows: 0,
            finalized: 1,
            low_watermark: Some(T0 + 61_000)
        }
    );
    let r = rows(
        &sink,
        "SELECT n, s, hi, lo, CAST(okey AS CHAR), CAST(ckey AS CHAR) FROM w ORDER BY window_start",
    )
    .await;
    type A = (i64, f64, f64, f64, String, String);
    let got: Vec<A> = r.into_iter().map(mysql_async::from_row).collect();
    assert_eq!(
        got,
        vec![
            (5, 40.0, 10.0, 5.0, "10".into(), "30".into()),
            (1, 9.0, 9.0, 9.0, "40".into(), "40".into()),
        ],
        "sums add, high and low merge, order keys take the extremes"
    );
    let r = rows(
        &sink,
        "SELECT o, c, avg, CAST(trend AS CHAR), is_final, revision FROM w ORDER BY window_start",
    )
    .await;
    type B = (f64, f64, f64, Option<String>, i64, i64);
    let got: Vec<B> = r.into_iter().map(mysql_async::from_row).collect();
    assert_eq!(
        got,
        vec![(7.0, 2.0, 8.0, None, 1, 1), (9.0, 9.0, 9.0, None, 0, 0),],
        "open/close by order key, derived recomputed, final, revision; no trend while provisional"
    );
    // Both partitions drained: minute 1 becomes final and gets its trend against minute 0.
    let drained = |p, expected| {
        [PartitionProgress {
            status: PartitionStatus::Drained,
            ..progress(p, Some(expected), expected + 1)
        }]
    };
    let (d0, d1) = (drained(0, 6), drained(1, 3));
    sink.commit(&c(&d0, &me)).await.unwrap();
    let out = sink.commit(&c(&d1, &me)).await.unwrap();
    assert!(
        matches!(out, CommitOutcome::Committed { finalized: 1, .. }),
        "{out:?}"
    );
    let t: Vec<Option<String>> = rows(
        &sink,
        "SELECT CAST(trend AS CHAR) FROM w ORDER BY window_start",
    )
    .await
    .into_iter()
    .map(mysql_async::from_row)
    .collect();
    assert_eq!(t, vec![None, Some("up".to_string())]);
    // A late contribution lowers minute 0's average below minute 1's... and above it again: the
    // successor's trend follows, although minute 1 itself was not merged into.
    let late = contribution(&[("x", 0, 1, 1000.0, (99, 1.0), (1, 1.0), 1)]);
    let ml = [(&w, &late)];
    let d0b = drained(0, 7);
    sink.commit(&c(&d0b, &ml)).await.unwrap();
    let t: Vec<Option<String>> = rows(
        &sink,
        "SELECT CAST(trend AS CHAR) FROM w ORDER BY window_start",
    )
    .await
    .into_iter()
    .map(mysql_async::from_row)
    .collect();
    assert_eq!(t, vec![None, Some("down".to_string())]);
    assert_eq!(
        count(&sink, "SELECT SUM(stale) FROM w").await,
        0,
        "flags cleared"
    );
    cleanup(sink, &db).await;
}

#[tokio::test]
async fn every_partition_drained_finalizes_everything() {
    let (sink, db) = fresh().await;
    let w = window_table(&sink).await;
    let b = contribution(&[("x", 5, 1, 1.0, (1, 1.0), (1, 1.0), 0)]);
    for p in 0..2 {
        let parts = [PartitionProgress {
            status: PartitionStatus::Drained,
            ..progress(p, None, 1)
        }];
        let out = sink
            .commit(&Commit {
                group: "g",
                topic: "t",
                partition_count: 2,
                partitions: &parts,
                merges: &[(&w, &b)],
                guards: &[],
            })
            .await
            .unwrap();
        let CommitOutcome::Committed { low_watermark, .. } = out else {
            panic!("{out:?}")
        };
        assert_eq!(low_watermark, (p == 1).then_some(i64::MAX));
    }
    assert_eq!(
        count(&sink, "SELECT COUNT(*) FROM w WHERE is_final = 1").await,
        1
    );
    assert_eq!(count(&sink, "SELECT MAX(n) FROM w").await, 2);
    cleanup(sink, &db).await;
}

#[tokio::test]
async fn a_stale_owner_is_fenced_under_read_committed_and_writes_nothing() {
    let (sink, db) = fresh().await;
    let w = window_table(&sink).await;
    // The server default is READ COMMITTED for this database's sessions; the fence must not rely
    // on REPEATABLE READ's gap locks.
    let url = format!("mysql://root@127.0.0.1:3306/{db}");
    let rc = MySqlSink::connect(&url).await.unwrap();
    let mut conn = rc.pool().get_conn().await.unwrap();
    conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        .await
        .unwrap();
    drop(conn);
    let b = contribution(&[("x", 0, 1, 1.0, (1, 1.0), (1, 1.0), 0)]);
    let merges = [(&w, &b)];
    let c = |parts: &'static [PartitionProgress]| Commit {
        group: "g",
        topic: "t",
        partition_count: 1,
        partitions: parts,
        merges: &merges,
        guards: &[],
    };
    let ok: &'static [PartitionProgress] = Box::leak(Box::new([progress(0, None, 10)]));
    assert!(matches!(
        rc.commit(&c(ok)).await.unwrap(),
        CommitOutcome::Committed { .. }
    ));
    for stale in [progress(0, None, 11), progress(0, Some(9), 11)] {
        let stale: &'static [PartitionProgress] = Box::leak(Box::new([stale]));
        let out = rc.commit(&c(stale)).await.unwrap();
        assert_eq!(
            out,
            CommitOutcome::Fenced {
                partitions: vec![0]
            }
        );
    }
    assert_eq!(
        count(&rc, "SELECT n FROM w").await,
        1,
        "a fenced commit merged nothing"
    );
    assert_eq!(
        sink.load_partition("g", "t", 0).await.unwrap().next_offset,
        Some(10)
    );
    rc.disconnect().await.unwrap();
    cleanup(sink, &db).await;
}

#[tokio::test]
async fn rows_refused_by_mysql_are_found_one_by_one() {
    let (sink, db) = fresh().await;
    let w = window_table(&sink).await;
    let b = contribution(&[
        ("ok1", 0, 1, 1.0, (1, 1.0), (1, 1.0), 0),
        ("toolong!!", 0, 1, 1.0, (1, 1.0), (1, 1.0), 0),
        ("ok2", 0, 1, 1.0, (1, 1.0), (1, 1.0), 0),
        ("ok3", 0, 1, 1.0, (1, 1.0), (1, 1.0), 0),
        ("waytoolong", 0, 1, 1.0, (1, 1.0), (1, 1.0), 0),
    ]);
    let parts = [progress(0, None, 1)];
    let err = sink
        .commit(&Commit {
            group: "g",
            topic: "t",
            partition_count: 1,
            partitions: &parts,
            merges: &[(&w, &b)],
            guards: &[],
        })
        .await
        .unwrap_err();
    assert!(err.is_data_error() && !err.is_transient(), "{err}");
    assert_eq!(err.server_code(), Some(1406));
    let bad = sink.find_bad_rows(&w, &b).await.unwrap();
    assert_eq!(
        bad.iter().map(|b| (b.row, b.code)).collect::<Vec<_>>(),
        vec![(1, 1406), (4, 1406)]
    );
    assert!(bad[0].message.contains("Data too long"), "{:?}", bad[0]);
    assert_eq!(
        count(&sink, "SELECT COUNT(*) FROM w").await,
        0,
        "the probe writes nothing"
    );
    assert_eq!(
        sink.load_partition("g", "t", 0).await.unwrap().next_offset,
        None
    );
    cleanup(sink, &db).await;
}

#[tokio::test]
async fn unreachable_server_is_transient() {
    // Nothing listens on port 1 of loopback.
    let err = MySqlSink::connect("mysql://root@127.0.0.1:1/tw_nothing")
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
    let err = MySqlSink::connect("postgres://x").await.unwrap_err();
    assert!(matches!(err, SinkError::Url(_)), "{err}");
    assert!(!err.is_transient());
}

#[tokio::test]
async fn concurrent_owners_cannot_both_commit() {
    let (sink, db) = fresh().await;
    let w = window_table(&sink).await;
    let url = format!("mysql://root@127.0.0.1:3306/{db}");
    let other = MySqlSink::connect(&url).await.unwrap();
    let (g, t) = ("grp", "trades");
    for round in 0..5i64 {
        // Both believe they own partition 3 at the same stored offset (None first, then the winner's).
        let expected = match round {
            0 => None,
            _ => sink.load_partition(g, t, 3).await.unwrap().next_offset,
        };
        let a_rows = contribution(&[("a", round, 1, 1.0, (1, 1.0), (1, 1.0), 0)]);
        let b_rows = contribution(&[("b", round, 1, 1.0, (1, 1.0), (1, 1.0), 0)]);
        let pa = [progress(3, expected, 100 * (round + 1))];
        let pb = [progress(3, expected, 100 * (round + 1) + 1)];
        let ca = Commit {
            group: g,
            topic: t,
            partition_count: 4,
            partitions: &pa,
            merges: &[(&w, &a_rows)],
            guards: &[],
        };
        let cb = Commit {
            group: g,
            topic: t,
            partition_count: 4,
            partitions: &pb,
            merges: &[(&w, &b_rows)],
            guards: &[],
        };
        let (ra, rb) = tokio::join!(sink.commit(&ca), other.commit(&cb));
        let won =
            |r: &Result<CommitOutcome, SinkError>| matches!(r, Ok(CommitOutcome::Committed { .. }));
        let lost = |r: &Result<CommitOutcome, SinkError>| match r {
            Ok(CommitOutcome::Fenced { partitions }) => partitions == &vec![3],
            Err(e) => e.is_transient(),
            _ => false,
        };
        assert!(
            (won(&ra) && lost(&rb)) || (won(&rb) && lost(&ra)),
            "round {round}: {ra:?} / {rb:?}"
        );
        // Exactly the winner's row and offset are stored.
        let winner = if won(&ra) { "a" } else { "b" };
        let q = format!(
            "SELECT COUNT(*) FROM w WHERE window_start = FROM_UNIXTIME({}) AND k = '{winner}'",
            (T0 + round * 60_000) / 1000
        );
        assert_eq!(count(&sink, &q).await, 1);
        let q = format!(
            "SELECT COUNT(*) FROM w WHERE window_start = FROM_UNIXTIME({})",
            (T0 + round * 60_000) / 1000
        );
        assert_eq!(count(&sink, &q).await, 1);
        let stored = sink.load_partition(g, t, 3).await.unwrap().next_offset;
        assert_eq!(stored, Some(100 * (round + 1) + i64::from(winner == "b")));
        // The loser retrying with its stale expectation is fenced.
        let retry = if winner == "a" { &cb } else { &ca };
        let out = if winner == "a" {
            other.commit(retry).await
        } else {
            sink.commit(retry).await
        };
        assert_eq!(
            out.unwrap(),
            CommitOutcome::Fenced {
                partitions: vec![3]
            }
        );
    }
    other.disconnect().await.unwrap();
    cleanup(sink, &db).await;
}

/// Issue 24, point 12: on a server whose global `sql_mode` is not strict, the sink's sessions are
/// strict anyway, so a value that does not fit is an error (isolated to its trades) and never a
/// silent truncation. The global mode is changed for the moment the sink connects and restored.
#[tokio::test]
async fn sessions_are_strict_on_a_server_that_is_not() {
    let root = mysql_async::Pool::new("mysql://root@127.0.0.1:3306/test");
    let mut admin = root.get_conn().await.unwrap();
    let global: String = admin
        .query_first("SELECT @@GLOBAL.sql_mode")
        .await
        .unwrap()
        .unwrap_or_default();
    admin.query_drop("SET GLOBAL sql_mode = ''").await.unwrap();
    let db = db_name();
    let connected = MySqlSink::connect(&format!("mysql://root@127.0.0.1:3306/{db}")).await;
    admin
        .exec_drop("SET GLOBAL sql_mode = ?", (global,))
        .await
        .unwrap();
    let sink = connected.expect("connect while the server is not strict");
    let mode: String = {
        let mut c = sink.pool().get_conn().await.unwrap();
        c.query_first("SELECT @@SESSION.sql_mode")
            .await
            .unwrap()
            .unwrap()
    };
    assert!(mode.contains("STRICT_ALL_TABLES"), "session mode {mode:?}");
    // And it shows: a too-long value is refused, not cut.
    let mut c = sink.pool().get_conn().await.unwrap();
    c.query_drop("CREATE TABLE narrow (s VARCHAR(3))")
        .await
        .unwrap();
    let r = c.query_drop("INSERT INTO narrow VALUES ('abcdef')").await;
    assert!(r.is_err(), "a value too long for its column was accepted");
    drop(c);
    drop(admin);
    root.disconnect().await.ok();
    cleanup(sink, &db).await;
}

/// Issue 24, point 11: a flat market's VWAP differs in its last bits with summation order (one
/// replica against three), so the trend compares with a relative tolerance of 1e-9: the same
/// verdict on every replica.
#[tokio::test]
async fn the_trend_of_a_flat_market_does_not_depend_on_summation_order() {
    let (sink, db) = fresh().await;
    let w = window_table(&sink).await;
    // Minute 0 at 0.9999090000000002, minute 1 at 0.9999089999999999 (one ulp-scale apart), minute
    // 2 clearly up.
    let b = contribution(&[
        ("x", 0, 1, 0.999_909_000_000_000_2, (1, 1.0), (1, 1.0), 0),
        ("x", 1, 1, 0.999_908_999_999_999_9, (2, 1.0), (2, 1.0), 0),
        ("x", 2, 1, 1.000_1, (3, 1.0), (3, 1.0), 0),
    ]);
    let drained = [PartitionProgress {
        status: PartitionStatus::Drained,
        watermark_ms: Some(T0 + 600_000),
        ..progress(0, None, 3)
    }];
    let merges = [(&w, &b)];
    let c = Commit {
        group: "grp",
        topic: "trades",
        partition_count: 1,
        partitions: &drained,
        merges: &merges,
        guards: &[],
    };
    sink.commit(&c).await.unwrap();
    let t: Vec<Option<String>> = rows(
        &sink,
        "SELECT CAST(trend AS CHAR) FROM w ORDER BY window_start",
    )
    .await
    .into_iter()
    .map(mysql_async::from_row)
    .collect();
    assert_eq!(
        t,
        vec![None, Some("flat".to_string()), Some("up".to_string())]
    );
    cleanup(sink, &db).await;
}

/// Issue 24, point 10: with the topic's partition count unknown (0: no metadata answer yet), the
/// partitions committed so far are not all there are, so nothing becomes final on their watermarks
/// alone; once the count is known, the same rows do.
#[tokio::test]
async fn an_unknown_partition_count_makes_nothing_final() {
    let (sink, db) = fresh().await;
    let w = window_table(&sink).await;
    let b = contribution(&[("x", 0, 1, 5.0, (1, 1.0), (1, 1.0), 0)]);
    let empty = contribution(&[]);
    let drained = |expected, next| {
        [PartitionProgress {
            status: PartitionStatus::Drained,
            watermark_ms: Some(T0 + 600_000),
            ..progress(0, expected, next)
        }]
    };
    let (first, second) = (drained(None, 1), drained(Some(1), 2));
    let (m, me) = ([(&w, &b)], [(&w, &empty)]);
    let commit = |partitions, merges, partition_count| Commit {
        group: "grp",
        topic: "trades",
        partition_count,
        partitions,
        merges,
        guards: &[],
    };
    let out = sink.commit(&commit(&first, &m, 0)).await.unwrap();
    assert!(
        matches!(
            out,
            CommitOutcome::Committed {
                finalized: 0,
                low_watermark: None,
                ..
            }
        ),
        "{out:?}"
    );
    let out = sink.commit(&commit(&second, &me, 1)).await.unwrap();
    assert!(
        matches!(out, CommitOutcome::Committed { finalized: 1, .. }),
        "{out:?}"
    );
    cleanup(sink, &db).await;
}

/// Issue 24, point 8: `migrate` only adds missing columns, so a view whose keys or window changed
/// would merge rows of different keys (or window sizes) into the old primary key. Such a change is
/// refused, naming it; the unchanged view, and one that only gained a column, pass.
#[tokio::test]
async fn a_view_whose_keys_or_window_changed_is_refused_by_migrate() {
    let (sink, db) = fresh().await;
    let ddl = |keys: &[&str], window_ms: i64, extra: bool| {
        let mut columns: Vec<(String, String)> = keys
            .iter()
            .map(|k| (k.to_string(), "VARCHAR(64) NOT NULL".to_string()))
            .collect();
        columns.push(("window_start".into(), "DATETIME(3) NOT NULL".into()));
        columns.push(("window_end".into(), "DATETIME(3) NOT NULL".into()));
        columns.push(("n".into(), "BIGINT NOT NULL DEFAULT 0".into()));
        if extra {
            columns.push(("m".into(), "BIGINT NOT NULL DEFAULT 0".into()));
        }
        let pk: Vec<String> = keys
            .iter()
            .map(|k| k.to_string())
            .chain(["window_start".to_string()])
            .collect();
        let body: Vec<String> = columns.iter().map(|(n, d)| format!("`{n}` {d}")).collect();
        tradewind_sink::TableDdl {
            name: "vw".into(),
            create: format!(
                "CREATE TABLE IF NOT EXISTS vw ({}, PRIMARY KEY ({}))",
                body.join(", "),
                pk.join(", ")
            ),
            columns,
            primary_key: pk,
            window_ms,
        }
    };
    sink.ensure_table(&ddl(&["base"], 300_000, false))
        .await
        .unwrap();
    {
        let mut c = sink.pool().get_conn().await.unwrap();
        c.query_drop(
            "INSERT INTO vw VALUES ('bitcoin', '2023-11-14 22:10:00', '2023-11-14 22:15:00', 3)",
        )
        .await
        .unwrap();
    }
    let keys = sink
        .ensure_table(&ddl(&["base", "quote"], 300_000, false))
        .await
        .expect_err("changed keys accepted");
    assert!(
        keys.to_string()
            .contains("keys changed from (base, window_start) to (base, quote, window_start)"),
        "{keys}"
    );
    let window = sink
        .ensure_table(&ddl(&["base"], 900_000, false))
        .await
        .expect_err("changed window accepted");
    assert!(
        window
            .to_string()
            .contains("window changed from 300000 ms to 900000 ms"),
        "{window}"
    );
    sink.ensure_table(&ddl(&["base"], 300_000, true))
        .await
        .expect("a gained column is added in place");
    assert_eq!(count(&sink, "SELECT m FROM vw").await, 0);
    cleanup(sink, &db).await;
}

/// Final means final (issue 24 point 3): a commit whose trades were judged before rows it merges
/// into became final is refused with the tables' final horizons, and writes nothing; judged
/// against the horizon (its guard past it), the same contribution commits.
#[tokio::test]
async fn a_commit_judged_before_its_rows_became_final_is_refused_as_stale() {
    let (sink, db) = fresh().await;
    let w = window_table(&sink).await;
    assert_eq!(
        sink.final_horizons(std::slice::from_ref(&w)).await.unwrap(),
        [None]
    );
    let b = contribution(&[("x", 5, 1, 1.0, (1, 1.0), (1, 1.0), 0)]);
    let drained = [PartitionProgress {
        status: PartitionStatus::Drained,
        ..progress(0, None, 1)
    }];
    let commit = |parts: &'static [PartitionProgress], guards: &'static [i64]| {
        let (w, b) = (w.clone(), b.clone());
        let sink = sink.clone();
        async move {
            sink.commit(&Commit {
                group: "g",
                topic: "t",
                partition_count: 1,
                partitions: parts,
                merges: &[(&w, &b)],
                guards,
            })
            .await
            .unwrap()
        }
    };
    let drained: &'static [PartitionProgress] = Box::leak(Box::new(drained));
    assert!(matches!(
        commit(drained, &[]).await,
        CommitOutcome::Committed { finalized: 1, .. }
    ));
    let end = T0 + 6 * 60_000;
    assert_eq!(
        sink.final_horizons(std::slice::from_ref(&w)).await.unwrap(),
        [Some(end)]
    );
    let next: &'static [PartitionProgress] = Box::leak(Box::new([PartitionProgress {
        status: PartitionStatus::Drained,
        ..progress(0, Some(1), 2)
    }]));
    // Judged on time: valid only while no row of minute 5 is final.
    let guard: &'static [i64] = Box::leak(Box::new([end - 1]));
    assert_eq!(
        commit(next, guard).await,
        CommitOutcome::Stale {
            horizons: vec![Some(end)]
        }
    );
    assert_eq!(count(&sink, "SELECT MAX(n) FROM w").await, 1);
    assert_eq!(count(&sink, "SELECT next_offset FROM tw_offsets").await, 1);
    // Judged as a correction: its verdict holds up to the end plus the allowed lateness.
    let guard: &'static [i64] = Box::leak(Box::new([end + 59_999]));
    assert!(matches!(
        commit(next, guard).await,
        CommitOutcome::Committed { .. }
    ));
    assert_eq!(count(&sink, "SELECT MAX(n) FROM w").await, 2);
    cleanup(sink, &db).await;
}
