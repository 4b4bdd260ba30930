//! User views (`--pipeline FILE`) against real parts: librdkafka's mock cluster (the Kafka wire
//! protocol on loopback), MariaDB, and the `tradewind` binary. The tables are compared with an
//! independent oracle: a plain fold over the trades the topic holds, written here from the SQL's
//! meaning, not from the engine's code.

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{assert_same_rows, produce_spread, read_full_of, read_log, TestDb};
use mysql_async::prelude::Queryable;
use tradewind_engine::EngineConfig;
use tradewind_kafka::EmbeddedCluster;
use tradewind_model::{write_json, Direction, OwnedTrade};
use tradewind_sim::MarketConfig;

const START_MS: i64 = 1_700_000_000_000;

/// Two user views: 5-minute windows per (exchange, base) with counts under FILTER, sums (one that is
/// NULL over no rows), min/max, first/last, avg and arithmetic; hourly windows of big trades (a row
/// filter) with a filtered last value.
const PIPELINE: &str = "
-- Five-minute bars per exchange and asset.
CREATE MATERIALIZED VIEW pair_5m AS
SELECT exchange, base,
       date_bin(INTERVAL '5 minutes', ts) AS window_start,
       count(*) AS n,
       count(*) FILTER (WHERE direction = 'sell') AS sells,
       sum(volume) AS volume,
       sum(volume) FILTER (WHERE direction = 'buy') AS buy_volume,
       min(price) AS low,
       max(price_usd) AS high_usd,
       first_value(price ORDER BY ts) AS open,
       last_value(price ORDER BY ts) AS close,
       sum(price_usd * volume) / sum(volume) AS vwap_usd,
       avg(volume) AS avg_volume,
       (max(price) - min(price)) / avg(price) * 100 AS range_pct
FROM trades
GROUP BY exchange, base, date_bin(INTERVAL '5 minutes', ts);

-- Big trades only (notional over $1,000, kraken excluded), per asset and hour.
CREATE MATERIALIZED VIEW big_1h AS
SELECT base,
       date_bin(INTERVAL '1 hour', ts) AS window_start,
       count(*) AS n,
       sum(price_usd * volume) AS notional_usd,
       max(ts) AS last_at,
       last_value(price_usd ORDER BY ts) FILTER (WHERE direction = 'buy') AS last_buy_usd
FROM trades
WHERE price_usd * volume > 1000 AND exchange <> 'kraken'
GROUP BY base, date_bin(INTERVAL '1 hour', ts);
";

/// A trade with its place in the log (ties in event time go by partition, then offset).
struct Logged {
    p: i32,
    o: i64,
    t: OwnedTrade,
}

/// One row of either view, as numbers: exact integers apart from doubles.
#[derive(Debug, Clone, PartialEq)]
struct ViewRow {
    exact: Vec<i64>,
    doubles: Vec<Option<f64>>,
}

type Key = (String, i64);

fn order(a: &&Logged, b: &&Logged) -> std::cmp::Ordering {
    (a.t.timestamp, a.p, a.o).cmp(&(b.t.timestamp, b.p, b.o))
}

fn oracle_pair_5m(log: &[Logged]) -> BTreeMap<Key, ViewRow> {
    let mut groups: BTreeMap<Key, Vec<&Logged>> = BTreeMap::new();
    for l in log {
        let ws = l.t.timestamp.div_euclid(300_000) * 300_000;
        let key = format!("{}|{}", l.t.exchange, l.t.base);
        groups.entry((key, ws)).or_default().push(l);
    }
    groups
        .into_iter()
        .map(|(k, mut g)| {
            g.sort_by(order);
            let n = g.len() as f64;
            let sum = |f: &dyn Fn(&OwnedTrade) -> f64| g.iter().map(|l| f(&l.t)).sum::<f64>();
            let buys: Vec<f64> = g
                .iter()
                .filter(|l| l.t.direction == Direction::Buy)
                .map(|l| l.t.volume)
                .collect();
            let low = g.iter().map(|l| l.t.price).fold(f64::MAX, f64::min);
            let high = g.iter().map(|l| l.t.price).fold(f64::MIN, f64::max);
            let high_usd = g.iter().map(|l| l.t.price_usd).fold(f64::MIN, f64::max);
            let volume = sum(&|t| t.volume);
            let row = ViewRow {
                exact: vec![
                    g.len() as i64,
                    g.iter()
                        .filter(|l| l.t.direction == Direction::Sell)
                        .count() as i64,
                ],
                doubles: vec![
                    Some(volume),
                    (!buys.is_empty()).then(|| buys.iter().sum()),
                    Some(low),
                    Some(high_usd),
                    Some(g[0].t.price),
                    Some(g[g.len() - 1].t.price),
                    Some(sum(&|t| t.price_usd * t.volume) / volume),
                    Some(volume / n),
                    Some((high - low) / (sum(&|t| t.price) / n) * 100.0),
                ],
            };
            (k, row)
        })
        .collect()
}

fn oracle_big_1h(log: &[Logged]) -> BTreeMap<Key, ViewRow> {
    let mut groups: BTreeMap<Key, Vec<&Logged>> = BTreeMap::new();
    for l in log {
        if l.t.price_usd * l.t.volume > 1000.0 && l.t.exchange != "kraken" {
            let ws = l.t.timestamp.div_euclid(3_600_000) * 3_600_000;
            groups.entry((l.t.base.clone(), ws)).or_default().push(l);
        }
    }
    groups
        .into_iter()
        .map(|(k, mut g)| {
            g.sort_by(order);
            let last_buy = g
                .iter()
                .rev()
                .find(|l| l.t.direction == Direction::Buy)
                .map(|l| l.t.price_usd);
            let row = ViewRow {
                exact: vec![
                    g.len() as i64,
                    g.iter().map(|l| l.t.timestamp).max().unwrap_or(0),
                ],
                doubles: vec![
                    Some(g.iter().map(|l| l.t.price_usd * l.t.volume).sum()),
                    last_buy,
                ],
            };
            (k, row)
        })
        .collect()
}

/// Reads a view back: (key, window start ms) -> row; `exact` and `doubles` are SQL expressions.
async fn read_view(
    pool: &mysql_async::Pool,
    table: &str,
    key: &str,
    exact: &[&str],
    doubles: &[&str],
) -> BTreeMap<Key, ViewRow> {
    let mut conn = pool.get_conn().await.expect("mysql conn");
    let sql = format!(
        "SELECT {key}, TIMESTAMPDIFF(MICROSECOND, '1970-01-01', window_start) DIV 1000, is_final, {}, {} FROM {table}",
        exact.join(", "),
        doubles.join(", ")
    );
    let rows: Vec<mysql_async::Row> = conn.query(sql).await.expect("read view");
    let mut out = BTreeMap::new();
    for mut r in rows {
        let k: String = r.take(0).expect("key");
        let ws: i64 = r.take(1).expect("window");
        let is_final: i64 = r.take(2).expect("is_final");
        assert_eq!(
            is_final, 1,
            "{table} {k} {ws}: every window is final after a drain"
        );
        let n = exact.len();
        let exact: Vec<i64> = (0..n)
            .map(|i| r.take::<i64, _>(3 + i).expect("exact"))
            .collect();
        let doubles: Vec<Option<f64>> = (0..doubles.len())
            .map(|i| r.take::<Option<f64>, _>(3 + n + i).expect("double"))
            .collect();
        out.insert((k, ws), ViewRow { exact, doubles });
    }
    out
}

fn assert_view(actual: &BTreeMap<Key, ViewRow>, expected: &BTreeMap<Key, ViewRow>, what: &str) {
    let close = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (None, None) => true,
        (Some(x), Some(y)) => x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs()),
        _ => false,
    };
    let mut problems = Vec::new();
    for (k, e) in expected {
        match actual.get(k) {
            None => problems.push(format!("missing {k:?}")),
            Some(a)
                if a.exact != e.exact
                    || a.doubles.len() != e.doubles.len()
                    || a.doubles
                        .iter()
                        .zip(&e.doubles)
                        .any(|(x, y)| !close(*x, *y)) =>
            {
                problems.push(format!("differs {k:?}\n  got  {a:?}\n  want {e:?}"))
            }
            _ => {}
        }
    }
    for k in actual.keys().filter(|k| !expected.contains_key(*k)) {
        problems.push(format!("unexpected {k:?}"));
    }
    assert!(
        problems.is_empty(),
        "{what}: {} problems of {} rows; first:\n{}",
        problems.len(),
        expected.len(),
        problems[..problems.len().min(6)].join("\n")
    );
}

async fn read_views(pool: &mysql_async::Pool) -> [BTreeMap<Key, ViewRow>; 2] {
    let pair = read_view(
        pool,
        "pair_5m",
        "CONCAT(exchange, '|', base)",
        &["n", "sells"],
        &[
            "volume",
            "buy_volume",
            "low",
            "high_usd",
            "open",
            "close",
            "vwap_usd",
            "avg_volume",
            "range_pct",
        ],
    )
    .await;
    let big = read_view(
        pool,
        "big_1h",
        "base",
        &[
            "n",
            "TIMESTAMPDIFF(MICROSECOND, '1970-01-01', last_at) DIV 1000",
        ],
        &["notional_usd", "last_buy_usd"],
    )
    .await;
    [pair, big]
}

fn tradewind() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tradewind"));
    cmd.env("RUST_LOG", "warn").stdout(Stdio::null());
    cmd
}

fn spawn_replica(brokers: &str, db: &TestDb, file: &str, abort_after: Option<u64>) -> Child {
    let mut cmd = tradewind();
    cmd.args([
        "run",
        "--drain",
        "--brokers",
        brokers,
        "--mysql-url",
        &db.url,
        "--group",
        "g-views",
        "--pipeline",
        file,
        "--max-batch-rows",
        "700",
        "--metrics-addr",
        "127.0.0.1:0",
        "--kafka-option",
        "session.timeout.ms=3000",
        "--kafka-option",
        "heartbeat.interval.ms=300",
    ]);
    // Set TW_TEST_LOG_DIR to keep each replica's log for debugging.
    match std::env::var("TW_TEST_LOG_DIR") {
        Ok(dir) => {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let f = std::fs::File::create(format!("{dir}/views-{n}.log")).expect("log file");
            cmd.stderr(f);
        }
        Err(_) => {
            cmd.stderr(Stdio::null());
        }
    }
    match abort_after {
        // One commit per micro-batch: the N-th commit surely comes before the end.
        Some(n) => cmd.args([
            "--commit-interval",
            "0",
            "--fault-abort-after-commits",
            &n.to_string(),
        ]),
        // Micro-batches folded into commits.
        None => cmd.args(["--commit-interval", "50ms"]),
    };
    cmd.spawn().expect("spawn tradewind run")
}

fn wait(mut child: Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().expect("wait") {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("tradewind run did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Out-of-order and late trades on randomly chosen partitions; one replica in process against a
/// replica process killed after its third commit, then two replica processes together. Both databases
/// equal the oracle, and each other in every column (revision and finality included).
#[test]
fn user_views_equal_the_oracle_under_disorder_kills_and_two_replicas() {
    let cfg = MarketConfig {
        seed: 11,
        markets: 120,
        jitter_ms: 3_000,
        late_fraction: 0.03,
        late_max_ms: 120_000,
        start_ms: Some(START_MS),
        event_rate: 50,
    };
    let trades: Vec<OwnedTrade> = tradewind_sim::generate(cfg, 30_000).collect();
    let records: Vec<(Option<Vec<u8>>, Vec<u8>)> = trades
        .iter()
        .map(|t| {
            let mut p = Vec::new();
            write_json(&t.as_trade(), &mut p);
            (Some(t.base.as_bytes().to_vec()), p)
        })
        .collect();
    let c = EmbeddedCluster::start(1, &[("trades", 4), ("trades.dlq", 1), ("trades.late", 1)])
        .expect("mock cluster");
    let brokers = c.bootstrap_servers().to_string();
    produce_spread(&brokers, "trades", &records, 4, 5);
    let log: Vec<Logged> = read_log(&brokers, "trades")
        .into_iter()
        .filter_map(|(p, o, payload)| {
            tradewind_model::validate(&payload, tradewind_model::now_ms(), &Default::default())
                .ok()
                .map(|t| Logged {
                    p,
                    o,
                    t: t.to_owned_trade(),
                })
        })
        .collect();
    assert_eq!(log.len(), trades.len());
    let expected = [oracle_pair_5m(&log), oracle_big_1h(&log)];
    assert!(
        expected[0].len() > 300 && expected[1].len() > 20,
        "too few windows"
    );

    let dir = std::env::temp_dir().join(format!("tw-views-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("views.sql");
    std::fs::write(&file, PIPELINE).expect("write pipeline");
    let file_s = file.display().to_string();
    let rt = tokio::runtime::Runtime::new().expect("runtime");

    // One replica, in process.
    let one = TestDb::new("views1");
    let mut a = EngineConfig::new(&brokers, &one.url);
    a.group = "g-one".into();
    a.drain = true;
    a.max_batch_rows = 1_000;
    a.commit_interval = std::time::Duration::from_millis(50);
    a.pipeline = Some(file.clone());
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let summary = rt
        .block_on(tradewind_engine::run_engine(
            a,
            &prometheus::Registry::new(),
            tradewind_telemetry::Health::new(),
            rx,
        ))
        .expect("engine run");
    assert_eq!(summary.trades as usize, trades.len());

    // Two replica processes on a database migrated by `tradewind migrate --pipeline`.
    let many = TestDb::new("views2");
    let st = tradewind()
        .args(["migrate", "--mysql-url", &many.url, "--pipeline", &file_s])
        .status()
        .expect("migrate");
    assert!(st.success(), "migrate --pipeline failed");
    // The first replica is killed after its third commit (alone, so it surely gets there), then two
    // replicas finish the job together.
    let r0 = spawn_replica(&brokers, &many, &file_s, Some(3));
    assert!(
        !wait(r0, Duration::from_secs(120)).success(),
        "the fault aborts"
    );
    let r1 = spawn_replica(&brokers, &many, &file_s, None);
    let r2 = spawn_replica(&brokers, &many, &file_s, None);
    for r in [r1, r2] {
        assert!(wait(r, Duration::from_secs(180)).success());
    }

    for (db, what) in [(&one, "1 replica"), (&many, "2 replicas, one killed")] {
        let pool = db.pool();
        let [pair, big] = rt.block_on(read_views(&pool));
        assert_view(&pair, &expected[0], &format!("pair_5m, {what}"));
        assert_view(&big, &expected[1], &format!("big_1h, {what}"));
        rt.block_on(pool.disconnect()).ok();
    }
    let (p1, pn) = (one.pool(), many.pool());
    let tables = ["pair_5m", "big_1h"];
    let (t1, tn) = (
        rt.block_on(read_full_of(&p1, &tables)),
        rt.block_on(read_full_of(&pn, &tables)),
    );
    assert_same_rows(&t1, &tn, "user views, 1 replica vs 2");
    let revisions: u64 = rt.block_on(async {
        let mut conn = p1.get_conn().await.expect("conn");
        conn.query_first("SELECT CAST(SUM(revision) AS UNSIGNED) FROM pair_5m")
            .await
            .expect("revisions")
            .unwrap_or(0)
    });
    assert!(
        revisions > 0,
        "late trades corrected closed five-minute windows"
    );
    rt.block_on(p1.disconnect()).ok();
    rt.block_on(pn.disconnect()).ok();
    let _ = std::fs::remove_dir_all(&dir);
}

/// An unsupported view stops `run` and `migrate` at start-up with the file, the line and the
/// construct.
#[test]
fn unsupported_views_stop_start_up_with_the_line_and_the_construct() {
    let dir = std::env::temp_dir().join(format!("tw-badviews-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("bad.sql");
    std::fs::write(
        &file,
        "-- medians cannot be merged\nCREATE MATERIALIZED VIEW m AS\nSELECT base, date_bin(INTERVAL '1 minute', ts) AS window_start,\n  median(price) AS p\nFROM trades GROUP BY base, date_bin(INTERVAL '1 minute', ts);\n",
    )
    .expect("write");
    let f = file.display().to_string();
    for sub in ["run", "migrate"] {
        let out = tradewind()
            .args([
                sub,
                "--pipeline",
                &f,
                "--mysql-url",
                "mysql://root@127.0.0.1:1/none",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .expect("run tradewind");
        assert!(!out.status.success(), "{sub} accepted a median");
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(
            text.contains("bad.sql:4")
                && text.contains("median")
                && text.contains("cannot be merged"),
            "{sub}: {text}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
