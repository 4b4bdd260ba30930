//! The engine against real parts: librdkafka's mock cluster (the Kafka wire protocol on loopback) and
//! the MariaDB server. Every test checks the window tables against the independent oracle in
//! `common::oracle`, computed from the same trades.

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    assert_same_rows, assert_tables_match, asset_key, expect_revisions, expected_log, free_port,
    http_get, market_key, oracle, produce_all, produce_spread, read_asset_table, read_full,
    read_log, read_tables, read_topic, valid_trades, AssetKey, Row, Tables, TestDb,
    DEFAULT_LATENESS,
};
use tradewind_engine::EngineConfig;
use tradewind_kafka::EmbeddedCluster;
use tradewind_model::{now_ms, write_json, OwnedTrade};
use tradewind_sim::MarketConfig;

const WINDOW_MS: i64 = 60_000;
const START_MS: i64 = 1_700_000_000_000;

/// The trades of a test and the Kafka records they became.
struct Input {
    /// Valid trades the tables must reflect, in produce order.
    good: Vec<OwnedTrade>,
    /// Records produced, in order: (key, payload).
    records: Vec<(Option<Vec<u8>>, Vec<u8>)>,
    /// Expected dead-letter reasons, sorted.
    dlq_reasons: Vec<String>,
    /// Trades dated hours before everything else, produced after the rest has been windowed (once
    /// every partition has a watermark): beyond any allowed lateness.
    late: Vec<(Option<Vec<u8>>, Vec<u8>)>,
}

fn record(t: &OwnedTrade) -> (Option<Vec<u8>>, Vec<u8>) {
    let mut p = Vec::new();
    write_json(&t.as_trade(), &mut p);
    (Some(t.base.as_bytes().to_vec()), p)
}

/// `n` simulated trades (out of order by up to `jitter_ms`, `late_fraction` of them up to 2 minutes
/// late), with invalid records mixed in and a few trades dated hours before everything at the end.
fn input(n: u64, jitter_ms: u32, late_fraction: f64, seed: u64) -> Input {
    let cfg = MarketConfig {
        seed,
        markets: 150,
        jitter_ms,
        late_fraction,
        late_max_ms: 120_000,
        start_ms: Some(START_MS),
        event_rate: 100,
    };
    let good: Vec<OwnedTrade> = tradewind_sim::generate(cfg, n).collect();
    let mut records: Vec<_> = good.iter().map(record).collect();
    let mut dlq = Vec::new();
    let long_base = format!(
        r#"{{"exchange":"binance","base":"{}","quote":"tether","direction":"buy","price":10,"volume":1,"timestamp":1700000000000,"priceUsd":10}}"#,
        "x".repeat(5_000)
    );
    let bad: [(&str, &[u8], &str); 9] = [
        ("bitcoin", b"{\"exchange\":\"binance\",\"base\":", "syntax"),
        ("bitcoin", b"[1,2,3]", "not_object"),
        (
            "bitcoin",
            br#"{"exchange":"binance","base":"bitcoin","quote":"tether","direction":"buy","price":"abc","volume":1,"timestamp":1700000000000,"priceUsd":1}"#,
            "wrong_type",
        ),
        (
            "ethereum",
            br#"{"exchange":"binance","base":"ethereum","quote":"tether","direction":"buy","price":10,"volume":-1,"timestamp":1700000000000,"priceUsd":10}"#,
            "non_positive",
        ),
        (
            "ethereum",
            br#"{"exchange":"binance","base":"ethereum","quote":"tether","direction":"buy","price":10,"volume":1,"timestamp":4102444800000,"priceUsd":10}"#,
            "future_timestamp",
        ),
        // A 5,000-character base (once fatal: MySQL error 1406 on every replica, forever).
        ("xxx", long_base.as_bytes(), "invalid_id"),
        (
            "bitcoin",
            "{\"exchange\":\"binance\",\"base\":\"bit\u{85}coin\",\"quote\":\"tether\",\"direction\":\"buy\",\"price\":10,\"volume\":1,\"timestamp\":1700000000000,\"priceUsd\":10}".as_bytes(),
            "invalid_id",
        ),
        (
            "bitcoin",
            br#"{"exchange":"binance","base":"bitcoin","quote":"tether","direction":"buy","price":10,"volume":1e400,"timestamp":1700000000000,"priceUsd":10}"#,
            "non_finite",
        ),
        // A trailing space: one group in DataFusion, merged with `bitcoin` by MySQL's PAD SPACE.
        (
            "bitcoin",
            br#"{"exchange":"binance","base":"bitcoin ","quote":"tether","direction":"buy","price":10,"volume":1,"timestamp":1700000000000,"priceUsd":10}"#,
            "invalid_id",
        ),
    ];
    for (i, (key, payload, reason)) in bad.iter().enumerate() {
        let at = (records.len() / (bad.len() + 1)) * (i + 1);
        records.insert(at, (Some(key.as_bytes().to_vec()), payload.to_vec()));
        dlq.push(reason.to_string());
    }
    dlq.sort();
    // Trades two hours older than the data: beyond any allowed lateness.
    let mut late = Vec::new();
    for t in good.iter().rev().take(3) {
        let mut l = t.clone();
        l.timestamp = START_MS - 2 * 3_600_000;
        late.push(l);
    }
    Input {
        good,
        records,
        dlq_reasons: dlq,
        late: late.iter().map(record).collect(),
    }
}

fn engine_args(brokers: &str, db: &TestDb, group: &str) -> EngineConfig {
    let mut a = EngineConfig::new(brokers, &db.url);
    a.group = group.to_string();
    a.drain = true;
    a.max_batch_rows = 1_000;
    a.commit_interval = Duration::from_millis(50);
    a.kafka_options = vec![
        "session.timeout.ms=3000".into(),
        "heartbeat.interval.ms=300".into(),
    ];
    a
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn cluster() -> EmbeddedCluster {
    EmbeddedCluster::start(1, &[("trades", 4), ("trades.dlq", 1), ("trades.late", 1)])
        .expect("mock cluster")
}

/// Checks the tables against the oracle, revisions included (computed from the trades' partitions
/// and offsets in `brokers`' log); `late_sent`: the input's too-late trades were produced too (they
/// join only their open day).
fn check_against_oracle(
    rt: &tokio::runtime::Runtime,
    brokers: &str,
    db: &TestDb,
    inp: &Input,
    late_sent: bool,
) {
    let pool = db.pool();
    let actual = rt.block_on(read_tables(&pool));
    let late: Vec<OwnedTrade> = inp
        .late
        .iter()
        .filter(|_| late_sent)
        .filter_map(|(_, p)| tradewind_model::validate(p, now_ms(), &Default::default()).ok())
        .map(|t| t.to_owned_trade())
        .collect();
    let with_late = [inp.good.clone(), late].concat();
    let log = expected_log(brokers, "trades", &with_late);
    let mut expected = oracle(&inp.good, WINDOW_MS);
    assert!(
        expected.asset.len() >= 20,
        "test data spans too few windows"
    );
    let revisions = |rows: &mut BTreeMap<AssetKey, Row>, window_ms: i64| {
        expect_revisions(rows, &log, window_ms, DEFAULT_LATENESS, asset_key)
    };
    expect_revisions(
        &mut expected.market,
        &log,
        WINDOW_MS,
        DEFAULT_LATENESS,
        market_key,
    );
    revisions(&mut expected.asset, WINDOW_MS);
    assert_tables_match(&actual, &expected);
    // The rollups: the two-hour-old trades are too late for an hour (routed to the late topic) but
    // still inside their open day, which they join.
    let hours = rt.block_on(read_asset_table(&pool, "asset_1h"));
    let mut want_hours = oracle(&inp.good, 3_600_000).asset;
    revisions(&mut want_hours, 3_600_000);
    assert_tables_match(
        &Tables {
            market: Default::default(),
            asset: hours,
        },
        &Tables {
            market: Default::default(),
            asset: want_hours,
        },
    );
    let days = rt.block_on(read_asset_table(&pool, "asset_1d"));
    let mut want_days = oracle(&with_late, 86_400_000).asset;
    revisions(&mut want_days, 86_400_000);
    // The first drain made every row final: each trade the second merges into its day is a
    // correction to a final row, whatever its partition's watermark says (final means final).
    for t in with_late.iter().skip(inp.good.len()) {
        let ws = t.timestamp.div_euclid(86_400_000) * 86_400_000;
        if let Some(r) = want_days.get_mut(&asset_key(t, ws)) {
            *r.revision.get_or_insert(0) += 1;
        }
    }
    assert_tables_match(
        &Tables {
            market: Default::default(),
            asset: days,
        },
        &Tables {
            market: Default::default(),
            asset: want_days,
        },
    );
    rt.block_on(pool.disconnect()).ok();
}

/// Runs the engine in this process until it returns (with `--drain`: until caught up).
fn drain_in_process(
    rt: &tokio::runtime::Runtime,
    args: EngineConfig,
) -> tradewind_engine::EngineSummary {
    // TW_TEST_RUST_LOG=<filter> shows the in-process engine's log in the test output.
    if let Ok(filter) = std::env::var("TW_TEST_RUST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
    let (_tx, rx) = tokio::sync::watch::channel(false);
    rt.block_on(tradewind_engine::run_engine(
        args,
        &prometheus::Registry::new(),
        tradewind_telemetry::Health::new(),
        rx,
    ))
    .expect("engine run")
}

fn run_in_process(input: &Input, tag: &str) -> tradewind_engine::EngineSummary {
    let c = cluster();
    produce_all(c.bootstrap_servers(), "trades", &input.records);
    let db = TestDb::new(tag);
    let rt = runtime();
    let drain = || drain_in_process(&rt, engine_args(c.bootstrap_servers(), &db, "g1"));
    let summary = drain();
    // Then trades far behind the (restored) watermark: routed to the late topic, tables unchanged.
    produce_all(c.bootstrap_servers(), "trades", &input.late);
    let second = drain();
    assert_eq!(second.too_late as usize, input.late.len());
    assert_eq!(second.records as usize, input.late.len());
    check_against_oracle(&rt, c.bootstrap_servers(), &db, input, true);
    // Every invalid record is in the dead-letter topic with its reason; every too-late trade is in
    // the late topic.
    let mut reasons: Vec<String> = read_topic(c.bootstrap_servers(), "trades.dlq")
        .into_iter()
        .map(|(_, r)| r.unwrap_or_default())
        .collect();
    reasons.sort();
    assert_eq!(reasons, input.dlq_reasons);
    let late = read_topic(c.bootstrap_servers(), "trades.late");
    assert_eq!(late.len(), input.late.len());
    assert!(late.iter().all(|(_, r)| r.as_deref() == Some("too_late")));
    summary
}

#[test]
fn in_order_trades_match_the_oracle() {
    let inp = input(20_000, 0, 0.0, 1);
    let s = run_in_process(&inp, "inorder");
    assert_eq!(s.trades as usize, inp.good.len());
    assert_eq!(s.too_late, 0);
    assert_eq!(s.corrected, 0, "in-order input corrects nothing");
    assert_eq!(s.rejected as usize, inp.dlq_reasons.len());
}

/// Poison records far larger than a trade (120 KB each, between ordinary trades): micro-batches are
/// cut by bytes as well as rows (here 1,000 rows, so 256 KB), and the messages that did not fit open
/// the next batch. Nothing is lost or counted twice, and each poison record is dead-lettered once.
#[test]
fn oversized_poison_records_cut_batches_by_bytes_and_lose_nothing() {
    let mut inp = input(10_000, 0, 0.0, 11);
    let big = format!(r#"{{"exchange":"{}"#, "x".repeat(120_000));
    for k in 0..40 {
        inp.records.insert(
            k * 250 + 3,
            (Some(b"bitcoin".to_vec()), big.clone().into_bytes()),
        );
        inp.dlq_reasons.push("syntax".to_string());
    }
    inp.dlq_reasons.sort();
    let s = run_in_process(&inp, "oversized");
    // 1,000 rows of 256 bytes, plus at most the one message that crossed the bound (and its '\n').
    let bound = 1_000 * 256 + big.len() + 1;
    assert!(
        s.largest_batch_bytes as usize <= bound,
        "a micro-batch of {} bytes (bound {bound})",
        s.largest_batch_bytes
    );
    assert!(s.largest_batch_bytes as usize > big.len(), "{s:?}");
    assert_eq!(s.trades as usize, inp.good.len());
    assert_eq!(s.rejected as usize, inp.dlq_reasons.len());
}

#[test]
fn out_of_order_and_late_trades_match_the_oracle() {
    let inp = input(40_000, 4_000, 0.02, 2);
    let s = run_in_process(&inp, "ooo");
    assert_eq!(s.too_late, 0);
    assert!(
        s.corrected > 0,
        "late-but-allowed trades should have corrected final windows"
    );
}

// ---- separate processes: crashes and replicas -------------------------------------------------

fn spawn_run(brokers: &str, db: &TestDb, group: &str, abort_after: Option<u64>) -> Child {
    spawn_run_with(brokers, db, group, abort_after, &[])
}

fn spawn_run_with(
    brokers: &str,
    db: &TestDb,
    group: &str,
    abort_after: Option<u64>,
    extra: &[&str],
) -> Child {
    spawn_engine(brokers, &db.url, group, true, abort_after, extra)
}

/// `tradewind run` (with `--drain` when `drain`) on `mysql_url`; a later `--metrics-addr` in `extra`
/// overrides the free port.
fn spawn_engine(
    brokers: &str,
    mysql_url: &str,
    group: &str,
    drain: bool,
    abort_after: Option<u64>,
    extra: &[&str],
) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tradewind"));
    cmd.args([
        "run",
        "--migrate",
        "--brokers",
        brokers,
        "--mysql-url",
        mysql_url,
        "--group",
        group,
        "--max-batch-rows",
        "500",
        "--commit-interval",
        "50ms",
        "--kafka-option",
        "session.timeout.ms=3000",
        "--kafka-option",
        "heartbeat.interval.ms=300",
        "--kafka-option",
        "max.poll.interval.ms=6000",
    ])
    .env(
        "RUST_LOG",
        std::env::var("TW_TEST_RUST_LOG").unwrap_or("info".into()),
    )
    .stdout(Stdio::null());
    if drain {
        cmd.arg("--drain");
    }
    if !extra.contains(&"--metrics-addr") {
        cmd.args(["--metrics-addr", "127.0.0.1:0"]);
    }
    // Set TW_TEST_LOG_DIR to keep each engine process's log for debugging.
    match std::env::var("TW_TEST_LOG_DIR") {
        Ok(dir) => {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let f = std::fs::File::create(format!("{dir}/{group}-{n}.log")).expect("log file");
            cmd.stderr(f);
        }
        Err(_) => {
            cmd.stderr(Stdio::null());
        }
    }
    if let Some(n) = abort_after {
        cmd.arg("--fault-abort-after-commits").arg(n.to_string());
    }
    cmd.args(extra);
    cmd.spawn().expect("spawn tradewind run")
}

fn wait_ok(mut child: Child, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().expect("wait") {
            assert!(st.success(), "tradewind run exited with {st}");
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("tradewind run did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A tiny deterministic PRNG for the kill schedule.
fn lcg(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *state >> 33
}

#[test]
fn killed_and_restarted_engine_leaves_exactly_the_oracle_tables() {
    let inp = input(40_000, 2_000, 0.01, 3);
    let c = cluster();
    produce_all(c.bootstrap_servers(), "trades", &inp.records);
    let db = TestDb::new("crash");
    let mut rng = 0x5eed_u64;
    let mut crashes = 0;
    let rt = runtime();
    let pool = db.pool();
    let progress = |rt: &tokio::runtime::Runtime| -> i64 {
        use mysql_async::prelude::Queryable;
        rt.block_on(async {
            let mut c = pool.get_conn().await.ok()?;
            c.query_first::<i64, _>(
                "SELECT CAST(COALESCE(SUM(next_offset), 0) AS SIGNED) FROM tw_offsets",
            )
            .await
            .ok()
            .flatten()
        })
        .unwrap_or(0)
    };
    // Static membership: a restarted engine takes over its predecessor's partitions at once instead
    // of waiting for the dead member's session to expire.
    let extra = ["--kafka-option", "group.instance.id=tw-crash-test"];
    // Alternate two kinds of crash: abort right after a MySQL commit (before the Kafka commit), and
    // SIGKILL at a random moment once the engine has made progress.
    for round in 0..10 {
        let before = progress(&rt);
        let b = c.bootstrap_servers();
        let mut child = if round % 2 == 0 {
            let n = 1 + lcg(&mut rng) % 6;
            spawn_run_with(b, &db, "g-crash", Some(n), &extra)
        } else {
            spawn_run_with(b, &db, "g-crash", None, &extra)
        };
        if round % 2 == 1 {
            let deadline = Instant::now() + Duration::from_secs(30);
            while progress(&rt) == before && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            std::thread::sleep(Duration::from_millis(lcg(&mut rng) % 150));
            let _ = child.kill(); // SIGKILL
        }
        let st = child.wait().expect("wait");
        if st.success() {
            break; // finished the whole topic before the fault hit
        }
        crashes += 1;
    }
    assert!(
        crashes >= 3,
        "the schedule should have crashed the engine several times"
    );
    // A final uninterrupted run drains whatever is left.
    wait_ok(
        spawn_run_with(c.bootstrap_servers(), &db, "g-crash", None, &extra),
        Duration::from_secs(120),
    );
    // Dead letters are delivered at least once: crashes may repeat them, but the distinct set is
    // exactly the bad records. No trade of this input is beyond the allowed lateness.
    let dlq: std::collections::BTreeSet<Vec<u8>> = read_topic(c.bootstrap_servers(), "trades.dlq")
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(dlq.len(), inp.dlq_reasons.len(), "distinct dead letters");
    assert!(read_topic(c.bootstrap_servers(), "trades.late").is_empty());
    check_against_oracle(&rt, c.bootstrap_servers(), &db, &inp, false);

    // And the same tables as one uninterrupted run over the same topic.
    let db2 = TestDb::new("nocrash");
    wait_ok(
        spawn_run(c.bootstrap_servers(), &db2, "g-clean", None),
        Duration::from_secs(120),
    );
    let (p1, p2) = (db.pool(), db2.pool());
    let (t1, t2) = rt.block_on(async { (read_tables(&p1).await, read_tables(&p2).await) });
    assert_tables_match(&t1, &t2);
}

#[test]
fn two_replicas_in_one_group_equal_one() {
    let inp = input(40_000, 1_000, 0.01, 4);
    let c = cluster();
    produce_all(c.bootstrap_servers(), "trades", &inp.records);
    let db = TestDb::new("replicas");
    let a = spawn_run(c.bootstrap_servers(), &db, "g-two", None);
    let b = spawn_run(c.bootstrap_servers(), &db, "g-two", None);
    wait_ok(a, Duration::from_secs(120));
    wait_ok(b, Duration::from_secs(120));
    let rt = runtime();
    check_against_oracle(&rt, c.bootstrap_servers(), &db, &inp, false);
}

// ---- outages -----------------------------------------------------------------------------------

#[test]
fn mysql_and_broker_outages_lose_and_duplicate_nothing() {
    let inp = input(40_000, 1_000, 0.01, 5);
    let half = inp.records.len() / 2;
    let c = Arc::new(cluster());
    produce_all(c.bootstrap_servers(), "trades", &inp.records[..half]);
    let db = TestDb::new("outage");
    let rt = runtime();
    let proxy = common::Relay::start(&rt, "127.0.0.1:3306".parse().expect("addr"), None);
    // prefer_socket=false: otherwise mysql_async switches to MariaDB's Unix socket and bypasses the proxy.
    let url = format!(
        "mysql://root@{}/{}?prefer_socket=false",
        proxy.addr, db.name
    );
    let mut args = engine_args(c.bootstrap_servers(), &db, "g-outage");
    args.mysql_url = url;
    args.drain = false;
    let registry = prometheus::Registry::new();
    let health = tradewind_telemetry::Health::new();
    let (stop_tx, rx) = tokio::sync::watch::channel(false);
    let (reg, h, a) = (registry.clone(), health.clone(), args.clone());
    let engine = rt.spawn(async move { tradewind_engine::run_engine(a, &reg, h, rx).await });

    let wait_for = |what: &str, cond: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for("first commit", &|| {
        tradewind_telemetry::metric_value(&registry, "tradewind_engine_records_in_total") > 0.0
    });

    // MySQL goes away while the second half arrives: the engine must stop, report not ready,
    // retry, and resume without loss.
    proxy.set_down(true);
    produce_all(c.bootstrap_servers(), "trades", &inp.records[half..]);
    wait_for("readiness to drop", &|| !health.is_ready());
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        tradewind_telemetry::metric_value(&registry, "tradewind_engine_sink_errors_total") > 0.0
    );
    proxy.set_down(false);
    wait_for("readiness to return", &|| health.is_ready());

    // Then the broker goes away for 3 s.
    c.broker_down(1);
    std::thread::sleep(Duration::from_secs(3));
    c.broker_up(1);
    let total = inp.records.len() as f64;
    wait_for("every record consumed", &|| {
        tradewind_telemetry::metric_value(&registry, "tradewind_engine_records_in_total") >= total
    });
    let _ = stop_tx.send(true);
    rt.block_on(engine)
        .expect("engine task")
        .expect("engine run");

    // A restarted engine drains the rest and finalizes; the tables must equal the oracle.
    args.drain = true;
    drain_in_process(&rt, args);
    assert_eq!(
        tradewind_telemetry::metric_value(&registry, "tradewind_engine_records_in_total"),
        total,
        "the first engine consumed every record exactly once"
    );
    check_against_oracle(&rt, c.bootstrap_servers(), &db, &inp, false);
}

#[test]
fn the_forming_windows_are_visible_as_provisional_rows() {
    let inp = input(20_000, 1_000, 0.0, 6);
    let c = cluster();
    produce_all(c.bootstrap_servers(), "trades", &inp.records);
    let db = TestDb::new("live");
    let rt = runtime();
    let mut args = engine_args(c.bootstrap_servers(), &db, "g-live");
    args.drain = false;
    let registry = prometheus::Registry::new();
    let (stop, rx) = tokio::sync::watch::channel(false);
    let reg = registry.clone();
    let engine = rt.spawn(async move {
        tradewind_engine::run_engine(args, &reg, tradewind_telemetry::Health::new(), rx).await
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while tradewind_telemetry::metric_value(&registry, "tradewind_engine_records_in_total")
        < inp.records.len() as f64
    {
        assert!(
            Instant::now() < deadline,
            "engine did not consume everything"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(600)); // the last batch committed
    let pool = db.pool();
    let mut actual = rt.block_on(read_tables(&pool));
    let expected = oracle(&inp.good, WINDOW_MS);
    // The last window is still open (the watermark trails the newest trade): provisional rows.
    let open: Vec<_> = actual
        .asset
        .iter()
        .filter(|(_, r)| !r.is_final)
        .map(|(k, _)| k.clone())
        .collect();
    assert!(
        !open.is_empty(),
        "the forming minute must be visible as provisional rows"
    );
    let newest = expected.asset.keys().map(|k| k.1).max().expect("windows");
    assert!(
        open.iter().all(|k| k.1 == newest),
        "only the newest window is open"
    );
    // Provisional rows hold the window so far: everything consumed, nothing missing. Their trend
    // is not set yet (it compares closed windows).
    for (k, r) in actual.market.iter_mut() {
        if !r.is_final {
            assert_eq!(r.price_trend, None);
            r.price_trend = expected.market.get(k).and_then(|e| e.price_trend.clone());
        }
        r.is_final = true;
    }
    for (k, r) in actual.asset.iter_mut() {
        if !r.is_final {
            assert_eq!(r.price_trend, None);
            r.price_trend = expected.asset.get(k).and_then(|e| e.price_trend.clone());
        }
        r.is_final = true;
    }
    assert_tables_match(&actual, &expected);
    let _ = stop.send(true);
    rt.block_on(engine)
        .expect("engine task")
        .expect("engine run");
    rt.block_on(pool.disconnect()).ok();
}

// ---- any partitioning, any replica count, rows MySQL refuses -----------------------------------

fn wait_exit(mut child: Child, limit: Duration) {
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("wait").is_none() {
        assert!(
            Instant::now() < deadline,
            "tradewind run did not exit within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sorted_payloads(brokers: &str, topic: &str) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = read_topic(brokers, topic)
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    v.sort();
    v.dedup(); // side outputs are at-least-once
    v
}

/// Every asset's trades spread over random partitions; one replica in process against three replica
/// processes of which one aborts mid-way and is restarted. Both equal the oracle over the log, and
/// equal each other in every column but `updated_at` (revision, finality, trends included), with
/// the same trades in the late topic.
#[test]
fn any_partitioning_and_any_replica_count_give_identical_exact_tables() {
    let inp = input(40_000, 2_000, 0.02, 6);
    let c = EmbeddedCluster::start(
        1,
        &[
            ("trades", 4),
            ("trades.dlq", 1),
            ("late.one", 1),
            ("late.many", 1),
        ],
    )
    .expect("mock cluster");
    produce_spread(c.bootstrap_servers(), "trades", &inp.records, 4, 99);
    produce_spread(c.bootstrap_servers(), "trades", &inp.late, 4, 7);
    let log = read_log(c.bootstrap_servers(), "trades");
    assert_eq!(log.len(), inp.records.len() + inp.late.len());
    let rt = runtime();

    let one = TestDb::new("spread1");
    let mut a = engine_args(c.bootstrap_servers(), &one, "g-one");
    a.late_topic = "late.one".into();
    let s = drain_in_process(&rt, a);
    assert_eq!(s.too_late as usize, inp.late.len(), "judged per partition");

    let many = TestDb::new("spreadn");
    let extra = ["--late-topic", "late.many"];
    let brokers = c.bootstrap_servers();
    let r1 = spawn_run_with(brokers, &many, "g-many", None, &extra);
    let r2 = spawn_run_with(brokers, &many, "g-many", Some(3), &extra);
    let r3 = spawn_run_with(brokers, &many, "g-many", None, &extra);
    wait_exit(r2, Duration::from_secs(120));
    let r2b = spawn_run_with(brokers, &many, "g-many", None, &extra);
    for r in [r1, r3, r2b] {
        wait_ok(r, Duration::from_secs(180));
    }

    // The oracle over what the topic holds, ties broken by (partition, offset) like the engine.
    let cutoff = START_MS - 3_600_000;
    let good: Vec<OwnedTrade> = valid_trades(&log)
        .into_iter()
        .filter(|t| t.timestamp > cutoff)
        .collect();
    assert_eq!(good.len(), inp.good.len());
    let expected = oracle(&good, WINDOW_MS);
    for db in [&one, &many] {
        let pool = db.pool();
        assert_tables_match(&rt.block_on(read_tables(&pool)), &expected);
        rt.block_on(pool.disconnect()).ok();
    }
    let (p1, pn) = (one.pool(), many.pool());
    let (t1, tn) = (rt.block_on(read_full(&p1)), rt.block_on(read_full(&pn)));
    assert_eq!(t1.len(), expected.market.len() + expected.asset.len());
    assert_same_rows(&t1, &tn, "1 replica vs 3 replicas");
    let mut late: Vec<Vec<u8>> = inp.late.iter().map(|(_, p)| p.clone()).collect();
    late.sort();
    assert_eq!(sorted_payloads(brokers, "late.one"), late);
    assert_eq!(sorted_payloads(brokers, "late.many"), late);
    rt.block_on(p1.disconnect()).ok();
    rt.block_on(pn.disconnect()).ok();
}

/// Issue 31: two `--drain` replicas race over every asset's records spread across 4 partitions at
/// random, and each micro-batch is gathered in two halves with a pause between them, so that the
/// seeks a fenced commit causes land inside batches being gathered (the straddle that once lost one
/// micro-batch of a partition nobody had committed yet). Several rounds, each into a fresh database:
/// every round equals the oracle over the log, and both replicas exit 0 (their offset audits agree).
#[test]
fn two_drain_replicas_with_seeks_inside_gathered_batches_lose_nothing() {
    let inp = input(20_000, 2_000, 0.0, 31);
    let c = cluster();
    let brokers = c.bootstrap_servers();
    produce_spread(brokers, "trades", &inp.records, 4, 31);
    let log = read_log(brokers, "trades");
    assert_eq!(log.len(), inp.records.len());
    let good = valid_trades(&log);
    assert_eq!(good.len(), inp.good.len());
    let expected = oracle(&good, WINDOW_MS);
    let rt = runtime();
    let rounds: usize = std::env::var("TW_STRADDLE_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    // Small fetches interleave the partitions in every micro-batch, so most commits carry several
    // partitions and a fence reloads some that were not the cause.
    let extra = [
        "--fault-gather-pause",
        "25ms",
        "--kafka-option",
        "max.partition.fetch.bytes=20000",
        "--kafka-option",
        "fetch.min.bytes=1",
    ];
    for round in 0..rounds {
        let db = TestDb::new(&format!("straddle{round}"));
        let r1 = spawn_run_with(brokers, &db, "g-straddle", None, &extra);
        let r2 = spawn_run_with(brokers, &db, "g-straddle", None, &extra);
        wait_ok(r1, Duration::from_secs(180));
        wait_ok(r2, Duration::from_secs(180));
        let pool = db.pool();
        let actual = rt.block_on(read_tables(&pool));
        let total: u64 = actual.asset.values().map(|r| r.trades).sum();
        eprintln!("round {round}: {total} of {} trades windowed", good.len());
        assert_tables_match(&actual, &expected);
        rt.block_on(pool.disconnect()).ok();
    }
}

/// Issue 24, point 1: a database's window tables belong to one consumer group and topic. Draining
/// the same topic into the same database as a second group is refused at start-up with a message
/// that names the owner and says how to reprocess, and counts nothing again; the owner goes on.
#[test]
fn a_second_consumer_group_is_refused_and_counts_nothing_again() {
    let inp = input(5_000, 1_000, 0.0, 24);
    let c = cluster();
    let brokers = c.bootstrap_servers();
    produce_all(brokers, "trades", &inp.records);
    let db = TestDb::new("owner");
    let rt = runtime();
    let first = drain_in_process(&rt, engine_args(brokers, &db, "g1"));
    assert_eq!(first.trades as usize, inp.good.len());
    let total = |rt: &tokio::runtime::Runtime| -> u64 {
        let pool = db.pool();
        let t = rt.block_on(read_tables(&pool));
        rt.block_on(pool.disconnect()).ok();
        t.asset.values().map(|r| r.trades).sum()
    };
    assert_eq!(total(&rt), inp.good.len() as u64);
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let second = rt.block_on(tradewind_engine::run_engine(
        engine_args(brokers, &db, "g2"),
        &prometheus::Registry::new(),
        tradewind_telemetry::Health::new(),
        rx,
    ));
    let err = format!("{:#}", second.expect_err("a second group was let in"));
    assert!(
        err.contains("`g1`") && err.contains("`g2`") && err.contains("new database"),
        "{err}"
    );
    assert_eq!(total(&rt), inp.good.len() as u64, "counted again");
    // A second topic into the same tables is refused the same way; the owner itself goes on.
    let mut other_topic = engine_args(brokers, &db, "g1");
    other_topic.topic = "trades.dlq".into();
    let (_tx2, rx2) = tokio::sync::watch::channel(false);
    let third = rt.block_on(tradewind_engine::run_engine(
        other_topic,
        &prometheus::Registry::new(),
        tradewind_telemetry::Health::new(),
        rx2,
    ));
    assert!(third.is_err(), "a second topic was let in");
    let again = drain_in_process(&rt, engine_args(brokers, &db, "g1"));
    assert_eq!(again.records, 0);
    assert_eq!(total(&rt), inp.good.len() as u64);
}

/// Issue 24, point 9: "too far in the future" is judged against the record's Kafka timestamp, not
/// the wall clock at decode time, so reading a record again (after a fence, a restart, or by another
/// replica) gives the same verdict. Both trades below are long past by the wall clock; the first is
/// 65 s after its record's timestamp (beyond the 60 s tolerance), the second 30 s after.
#[test]
fn the_future_check_is_judged_against_the_records_kafka_timestamp() {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let c = cluster();
    let brokers = c.bootstrap_servers();
    let trade = |ts: i64| {
        format!(
            r#"{{"exchange":"binance","base":"bitcoin","quote":"tether","direction":"buy","price":10,"volume":1,"timestamp":{ts},"priceUsd":10}}"#
        )
    };
    let producer: BaseProducer = tradewind_kafka::producer_config(brokers)
        .create()
        .expect("producer");
    for ts in [START_MS + 65_000, START_MS + 30_000] {
        let payload = trade(ts);
        let rec = BaseRecord::<[u8], [u8]>::to("trades")
            .key(b"bitcoin".as_slice())
            .payload(payload.as_bytes())
            .timestamp(START_MS);
        producer.send(rec).map_err(|(e, _)| e).expect("send");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
    let db = TestDb::new("future");
    let rt = runtime();
    let s = drain_in_process(&rt, engine_args(brokers, &db, "g1"));
    assert_eq!((s.records, s.trades, s.rejected), (2, 1, 1), "{s:?}");
    let reasons: Vec<String> = read_topic(brokers, "trades.dlq")
        .into_iter()
        .map(|(_, r)| r.unwrap_or_default())
        .collect();
    assert_eq!(reasons, ["future_timestamp"]);
}

/// The schema drifted (asset_1m.base narrowed): MySQL refuses the rows of a long but valid base
/// (error 1406). Those trades go to the dead-letter topic with the MySQL error; everything else
/// commits and equals the oracle, and the engine goes on. Both ways of committing: micro-batches
/// folded into one commit (the refused fold is read again one micro-batch per commit, and nothing
/// already routed is routed twice), and every micro-batch on its own.
#[test]
fn trades_behind_a_row_mysql_refuses_are_dead_lettered_and_the_rest_commits() {
    for interval in [Duration::from_millis(50), Duration::ZERO] {
        refused_rows_case(interval);
    }
}

fn refused_rows_case(commit_interval: Duration) {
    use mysql_async::prelude::Queryable;
    let inp = input(10_000, 0, 0.0, 8);
    let c = cluster();
    let db = TestDb::new("refused");
    let rt = runtime();
    rt.block_on(async {
        let sink = tradewind_sink::MySqlSink::connect(&db.url)
            .await
            .expect("connect");
        sink.migrate().await.expect("migrate");
        let mut conn = sink.pool().get_conn().await.expect("conn");
        conn.query_drop("ALTER TABLE asset_1m MODIFY base VARCHAR(24) NOT NULL")
            .await
            .expect("narrow");
        drop(conn);
        sink.disconnect().await.ok();
    });
    let mut records = inp.records.clone();
    let long: Vec<OwnedTrade> = inp
        .good
        .iter()
        .step_by(1_000)
        .map(|t| OwnedTrade {
            base: "averyveryverylongcoinname12345".into(),
            ..t.clone()
        })
        .collect();
    // Interleave them with the rest, so that every batch holding one must still commit the others.
    for (k, t) in long.iter().enumerate() {
        records.insert(k * 1_000 + 17, record(t));
    }
    produce_all(c.bootstrap_servers(), "trades", &records);
    let mut args = engine_args(c.bootstrap_servers(), &db, "g1");
    args.commit_interval = commit_interval;
    let s = drain_in_process(&rt, args);
    check_against_oracle(&rt, c.bootstrap_servers(), &db, &inp, false);
    assert_eq!(s.trades as usize, inp.good.len());
    if commit_interval.is_zero() {
        assert_eq!(s.refused_folds, 0);
    } else {
        assert!(s.refused_folds >= 1, "no folded commit was refused: {s:?}");
    }
    let dlq = read_topic(c.bootstrap_servers(), "trades.dlq");
    let storage: Vec<_> = dlq
        .iter()
        .filter(|(_, r)| r.as_deref() == Some("storage"))
        .collect();
    assert_eq!(storage.len(), long.len());
    assert!(storage
        .iter()
        .all(|(p, _)| String::from_utf8_lossy(p).contains("averyveryverylongcoinname12345")));
    let mut rest: Vec<String> = dlq
        .into_iter()
        .filter_map(|(_, r)| r.filter(|r| r != "storage"))
        .collect();
    rest.sort();
    assert_eq!(rest, inp.dlq_reasons);
}

/// /healthz fails when the engine loop stops moving (a stuck process a supervisor must restart),
/// while it is 200 as long as the loop runs, busy or idle.
#[test]
fn healthz_fails_when_the_engine_loop_makes_no_progress() {
    let inp = input(5_000, 0, 0.0, 9);
    let c = cluster();
    produce_all(c.bootstrap_servers(), "trades", &inp.records);
    let db = TestDb::new("stall");
    let port = free_port();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let metrics = addr.to_string();
    let live = |p: &mut Child, stall: bool| -> Vec<u16> {
        let mut codes = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some((code, _)) = http_get(addr, "/healthz") {
                codes.push(code);
                if stall && code == 503 {
                    break;
                }
                if !stall && codes.len() >= 20 {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = p.kill();
        let _ = p.wait();
        codes
    };
    // Healthy (not draining, so it stays up idle once caught up): always 200.
    let mut p = spawn_live(c.bootstrap_servers(), &db.url, "g-live", &metrics, None);
    let codes = live(&mut p, false);
    assert!(
        !codes.is_empty() && codes.iter().all(|c| *c == 200),
        "{codes:?}"
    );
    // Stuck after its 2nd commit (a fresh database, so there is work to commit): 503 within the
    // liveness timeout.
    let db2 = TestDb::new("stall2");
    let mut p = spawn_live(
        c.bootstrap_servers(),
        &db2.url,
        "g-stall",
        &metrics,
        Some(2),
    );
    let codes = live(&mut p, true);
    assert_eq!(codes.last(), Some(&503), "{codes:?}");
}

/// `tradewind run` without `--drain` on `metrics` (it stays up).
fn spawn_live(
    brokers: &str,
    mysql_url: &str,
    group: &str,
    metrics: &str,
    stall_after: Option<u64>,
) -> Child {
    let stall = stall_after.map(|n| n.to_string());
    let mut extra = vec!["--metrics-addr", metrics, "--liveness-timeout", "2s"];
    if let Some(n) = &stall {
        extra.extend(["--fault-stall-after-commits", n.as_str()]);
    }
    spawn_engine(brokers, mysql_url, group, false, None, &extra)
}

/// SIGTERM while MySQL is down and a commit is being retried, then MySQL back at once: nothing is
/// committed past what was written (the contributions are dropped with the process, the offsets
/// stay), and a later run completes the tables exactly.
#[test]
fn sigterm_during_a_mysql_outage_commits_nothing_half_written() {
    let inp = input(20_000, 1_000, 0.01, 10);
    let c = cluster();
    let rt = runtime();
    let db = TestDb::new("termoutage");
    let relay = common::Relay::start(&rt, "127.0.0.1:3306".parse().expect("addr"), None);
    let url = format!(
        "mysql://root@{}/{}?prefer_socket=false",
        relay.addr, db.name
    );
    let port = free_port();
    let metrics = format!("127.0.0.1:{port}");
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    // Half of the data, committed; then the outage; then the rest arrives.
    let half = inp.records.len() / 2;
    produce_all(c.bootstrap_servers(), "trades", &inp.records[..half]);
    let mut p = spawn_live(c.bootstrap_servers(), &url, "g-term", &metrics, None);
    let sink_errors = || -> f64 {
        http_get(addr, "/metrics")
            .map(|(_, body)| {
                body.lines()
                    .filter(|l| l.starts_with("tradewind_engine_sink_errors_total"))
                    .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
                    .sum()
            })
            .unwrap_or(0.0)
    };
    let committed = || -> i64 {
        use mysql_async::prelude::Queryable;
        let pool = db.pool();
        let n = rt.block_on(async {
            let mut c = pool.get_conn().await.ok()?;
            c.query_first::<i64, _>(
                "SELECT CAST(COALESCE(SUM(next_offset), 0) AS SIGNED) FROM tw_offsets",
            )
            .await
            .ok()
            .flatten()
        });
        rt.block_on(pool.disconnect()).ok();
        n.unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while committed() == 0 {
        assert!(Instant::now() < deadline, "nothing committed");
        std::thread::sleep(Duration::from_millis(100));
    }
    relay.set_down(true);
    produce_all(c.bootstrap_servers(), "trades", &inp.records[half..]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while sink_errors() < 1.0 {
        assert!(Instant::now() < deadline, "the outage was never noticed");
        std::thread::sleep(Duration::from_millis(100));
    }
    // SIGTERM mid-retry, and MySQL back right away: whatever the shutdown path does now must not
    // store offsets past contributions that were not written.
    let _ = Command::new("kill")
        .args(["-TERM", &p.id().to_string()])
        .status();
    relay.set_down(false);
    let deadline = Instant::now() + Duration::from_secs(30);
    while p.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Finish with a draining run straight on MariaDB: exactly the oracle.
    wait_ok(
        spawn_run(c.bootstrap_servers(), &db, "g-term", None),
        Duration::from_secs(120),
    );
    check_against_oracle(&rt, c.bootstrap_servers(), &db, &inp, false);
}

/// One trade of `base` at `ts` (epoch ms), as the wire has it.
fn trade_json(base: &str, ts: i64, price: f64, volume: f64, direction: &str) -> Vec<u8> {
    format!(
        r#"{{"exchange":"binance","base":"{base}","quote":"tether","direction":"{direction}","price":{price},"volume":{volume},"timestamp":{ts},"priceUsd":{price}}}"#
    )
    .into_bytes()
}

/// `(window start ms, trades, volume, revision, is_final)` of every `asset_1m` row of `base`.
fn minute_rows(
    rt: &tokio::runtime::Runtime,
    db: &TestDb,
    base: &str,
) -> Vec<(i64, i64, f64, i64, i64)> {
    use mysql_async::prelude::Queryable;
    rt.block_on(async {
        let pool = db.pool();
        let mut conn = pool.get_conn().await.expect("conn");
        let rows: Vec<(i64, i64, f64, i64, i64)> = conn
            .exec(
                "SELECT TIMESTAMPDIFF(MICROSECOND, '1970-01-01', window_start) DIV 1000, trades, \
                 volume, revision, is_final FROM asset_1m WHERE base = ? ORDER BY window_start",
                (base,),
            )
            .await
            .expect("rows");
        drop(conn);
        pool.disconnect().await.ok();
        rows
    })
}

/// Issue 24 point 3: final means final. A drain makes every minute of partition 0 final; then a
/// partition that had nothing (its own watermark unknown, so every trade is on time for it)
/// delivers a trade of the last final minute and one of a minute long past: the first is a
/// correction (`revision` goes up, the row stays final), the second goes to `trades.late`, and the
/// old minute's final row does not change.
#[test]
fn a_trade_for_a_final_window_is_a_correction_or_too_late_whatever_its_partition_says() {
    let c = cluster();
    let brokers = c.bootstrap_servers();
    let m0 = START_MS - START_MS.rem_euclid(WINDOW_MS);
    let minute = |k: i64| m0 + k * WINDOW_MS;
    let mut first: Vec<(Option<Vec<u8>>, Vec<u8>)> = (0..5)
        .map(|k| {
            (
                None,
                trade_json("bitcoin", minute(k) + 1_000, 10.0, 1.0, "buy"),
            )
        })
        .collect();
    for s in [10_000, 20_000, 30_000] {
        first.push((None, trade_json("bitcoin", minute(5) + s, 10.0, 1.0, "buy")));
    }
    common::produce_to(brokers, "trades", &first, |_| Some(0));
    let db = TestDb::new("final");
    let rt = runtime();
    let mut args = engine_args(brokers, &db, "g1");
    args.allowed_lateness = Duration::from_secs(120);
    let s = drain_in_process(&rt, args.clone());
    assert_eq!(s.trades, 8, "{s:?}");
    let before = minute_rows(&rt, &db, "bitcoin");
    assert_eq!(before.len(), 6, "{before:?}");
    assert!(
        before.iter().all(|r| r.4 == 1 && r.3 == 0),
        "every minute final, no revision: {before:?}"
    );
    assert_eq!(before[5].1, 3);

    let second = [
        (
            None,
            trade_json("bitcoin", minute(5) + 40_000, 10.0, 5.0, "buy"),
        ),
        (
            None,
            trade_json("bitcoin", minute(0) + 2_000, 10.0, 7.0, "buy"),
        ),
    ];
    common::produce_to(brokers, "trades", &second, |_| Some(1));
    let s = drain_in_process(&rt, args);
    // Both are corrections to the final hour and day; the old minute's trade is too late for it.
    assert_eq!((s.records, s.too_late, s.corrected), (2, 1, 2), "{s:?}");
    let after = minute_rows(&rt, &db, "bitcoin");
    assert_eq!(
        after[..5],
        before[..5],
        "minutes past the allowed lateness changed"
    );
    let (ws, trades, volume, revision, is_final) = after[5];
    assert_eq!(
        (ws, trades, volume, is_final),
        (minute(5), 4, 8.0, 1),
        "{after:?}"
    );
    assert!(
        revision > 0,
        "a final row changed without its revision: {after:?}"
    );
    let late = read_topic(brokers, "trades.late");
    assert_eq!(late.len(), 1, "{late:?}");
    assert!(String::from_utf8_lossy(&late[0].0).contains(&(minute(0) + 2_000).to_string()));
}

/// Issue 24 point 2: a user view whose filter divides by zero for trades priced under 1 fails for
/// those trades and that view only: they go to `trades.dlq` (reason `view_error`, the detail naming
/// the view), the view counts every other trade, and the built-in views count all of them.
#[test]
fn a_view_whose_sql_fails_at_run_time_dead_letters_only_the_trades_it_fails_on() {
    let c = cluster();
    let brokers = c.bootstrap_servers();
    let file = std::env::temp_dir().join(format!("tw-ratio-{}.sql", std::process::id()));
    std::fs::write(
        &file,
        "CREATE MATERIALIZED VIEW ratio_1m AS
         SELECT base, date_bin(INTERVAL '1 minute', ts) AS window_start, count(*) AS n
         FROM trades WHERE CAST(volume AS BIGINT) / CAST(price AS BIGINT) > 0
         GROUP BY base, date_bin(INTERVAL '1 minute', ts);",
    )
    .expect("pipeline file");
    let mut records = Vec::new();
    for k in 0..200i64 {
        let cheap = k % 50 == 7;
        let price = if cheap { 0.5 } else { 10.0 };
        records.push((
            None,
            trade_json("bitcoin", START_MS + k * 1_000, price, 20.0, "buy"),
        ));
    }
    common::produce_to(brokers, "trades", &records, |i| Some((i % 4) as i32));
    let db = TestDb::new("viewerr");
    let rt = runtime();
    let mut args = engine_args(brokers, &db, "g1");
    args.pipeline = Some(file.clone());
    let s = drain_in_process(&rt, args);
    std::fs::remove_file(&file).ok();
    assert_eq!((s.trades, s.view_errors), (200, 4), "{s:?}");
    use mysql_async::prelude::Queryable;
    let (builtin, user): (i64, i64) = rt.block_on(async {
        let pool = db.pool();
        let mut conn = pool.get_conn().await.expect("conn");
        let b: Option<i64> = conn
            .query_first("SELECT CAST(SUM(trades) AS SIGNED) FROM asset_1m")
            .await
            .expect("asset_1m");
        let u: Option<i64> = conn
            .query_first("SELECT CAST(SUM(n) AS SIGNED) FROM ratio_1m")
            .await
            .expect("ratio_1m");
        drop(conn);
        pool.disconnect().await.ok();
        (b.unwrap_or(0), u.unwrap_or(0))
    });
    assert_eq!((builtin, user), (200, 196));
    let dlq = read_topic(brokers, "trades.dlq");
    assert_eq!(dlq.len(), 4, "{dlq:?}");
    assert!(dlq.iter().all(|(p, r)| r.as_deref() == Some("view_error")
        && String::from_utf8_lossy(p).contains("\"price\":0.5")));
    let mut details = Vec::new();
    common::consume_all(brokers, "trades.dlq", Duration::from_secs(30), |m| {
        use rdkafka::message::{Headers, Message};
        let detail = m.headers().and_then(|h| {
            h.iter()
                .find(|x| x.key == tradewind_model::HEADER_DETAIL)
                .and_then(|x| x.value.map(|v| String::from_utf8_lossy(v).to_string()))
        });
        details.push(detail.unwrap_or_default());
    });
    assert!(
        details
            .iter()
            .all(|d| d.contains("ratio_1m") && d.to_lowercase().contains("divide by zero")),
        "{details:?}"
    );
}

/// Issue 24 point 15: a row MySQL refuses in a filtered view sets aside only the trades that view
/// aggregated into it. `buys_1m` counts buys; its `base` column is narrowed so that a long base is
/// refused there (`storage`). The buys of that base are dead-lettered; its sells, outside the
/// view's filter, are not, and count in the built-in tables.
#[test]
fn a_row_refused_in_a_filtered_view_sets_aside_only_the_trades_the_view_aggregated() {
    use mysql_async::prelude::Queryable;
    let c = cluster();
    let brokers = c.bootstrap_servers();
    let file = std::env::temp_dir().join(format!("tw-buys-{}.sql", std::process::id()));
    std::fs::write(
        &file,
        "CREATE MATERIALIZED VIEW buys_1m AS
         SELECT base, date_bin(INTERVAL '1 minute', ts) AS window_start, count(*) AS n
         FROM trades WHERE direction = 'buy'
         GROUP BY base, date_bin(INTERVAL '1 minute', ts);",
    )
    .expect("pipeline file");
    let db = TestDb::new("filtered");
    let rt = runtime();
    let args = |group: &str| {
        let mut a = engine_args(brokers, &db, group);
        a.pipeline = Some(file.clone());
        a
    };
    // The tables first (one trade), then the view's key column narrowed.
    common::produce_to(
        brokers,
        "trades",
        &[(None, trade_json("bitcoin", START_MS, 10.0, 1.0, "buy"))],
        |_| Some(0),
    );
    drain_in_process(&rt, args("g1"));
    rt.block_on(async {
        let pool = db.pool();
        let mut conn = pool.get_conn().await.expect("conn");
        conn.query_drop("ALTER TABLE buys_1m MODIFY base VARCHAR(24) NOT NULL")
            .await
            .expect("narrow");
        drop(conn);
        pool.disconnect().await.ok();
    });
    let long = "averyveryverylongcoinname12345";
    let mut records = Vec::new();
    for k in 0..120i64 {
        let direction = if k % 3 == 0 { "buy" } else { "sell" };
        let base = if k % 2 == 0 { long } else { "ethereum" };
        records.push((
            None,
            trade_json(base, START_MS + 1_000 + k * 500, 10.0, 2.0, direction),
        ));
    }
    common::produce_to(brokers, "trades", &records, |i| Some((i % 4) as i32));
    let s = drain_in_process(&rt, args("g1"));
    std::fs::remove_file(&file).ok();
    let long_buys = (0..120).filter(|k| k % 2 == 0 && k % 3 == 0).count();
    let long_sells = (0..120).filter(|k| k % 2 == 0 && k % 3 != 0).count();
    let dlq = read_topic(brokers, "trades.dlq");
    assert_eq!(dlq.len(), long_buys, "{s:?}");
    assert!(dlq.iter().all(|(p, r)| r.as_deref() == Some("storage")
        && String::from_utf8_lossy(p).contains(long)
        && String::from_utf8_lossy(p).contains("\"buy\"")));
    let (long_in_builtin, eth_in_builtin, eth_buys): (i64, i64, i64) = rt.block_on(async {
        let pool = db.pool();
        let mut conn = pool.get_conn().await.expect("conn");
        let sum = |table: &str, col: &str, base: &str| {
            format!(
                "SELECT CAST(COALESCE(SUM({col}), 0) AS SIGNED) FROM {table} WHERE base = '{base}'"
            )
        };
        let a: Option<i64> = conn
            .query_first(sum("asset_1m", "trades", long))
            .await
            .expect("asset_1m");
        let e: Option<i64> = conn
            .query_first(sum("asset_1m", "trades", "ethereum"))
            .await
            .expect("asset_1m");
        let b: Option<i64> = conn
            .query_first(sum("buys_1m", "n", "ethereum"))
            .await
            .expect("buys_1m");
        drop(conn);
        pool.disconnect().await.ok();
        (a.unwrap_or(0), e.unwrap_or(0), b.unwrap_or(0))
    });
    assert_eq!(
        long_in_builtin as usize, long_sells,
        "the sells of the refused base"
    );
    assert_eq!(eth_in_builtin, 60);
    assert_eq!(
        eth_buys as usize,
        (0..120).filter(|k| k % 2 == 1 && k % 3 == 0).count()
    );
}

/// Issue 24 point 9: a trade dated ahead of its Kafka record, within the future tolerance, is
/// windowed, but moves its partition's clock no further than the record's own timestamp (the
/// watermark cannot run ahead of the log by the tolerance).
#[test]
fn a_trade_ahead_of_its_record_moves_the_clock_no_further_than_the_record() {
    use mysql_async::prelude::Queryable;
    let c = cluster();
    let brokers = c.bootstrap_servers();
    let before = now_ms();
    common::produce_to(
        brokers,
        "trades",
        &[(
            None,
            trade_json("bitcoin", before + 55_000, 10.0, 1.0, "buy"),
        )],
        |_| Some(0),
    );
    let db = TestDb::new("ahead");
    let rt = runtime();
    let s = drain_in_process(&rt, engine_args(brokers, &db, "g1"));
    let after = now_ms();
    assert_eq!((s.trades, s.rejected), (1, 0), "{s:?}");
    let max_event: Option<i64> = rt.block_on(async {
        let pool = db.pool();
        let mut conn = pool.get_conn().await.expect("conn");
        let m = conn
            .query_first("SELECT max_event_ms FROM tw_offsets WHERE kpartition = 0")
            .await
            .expect("tw_offsets");
        drop(conn);
        pool.disconnect().await.ok();
        m.flatten()
    });
    let m = max_event.expect("partition 0's clock");
    assert!(
        (before..=after).contains(&m),
        "the clock is at {m}, the record was produced in [{before}, {after}] and the trade is dated {}",
        before + 55_000
    );
}

// ---- live chaos: a 3-member group killed and replaced, MySQL behind a fault relay ---------------

/// A window row as the final-row watcher compares it: finality, revision and the row's own
/// aggregates (not the trend, which follows the previous window).
#[derive(Debug, Clone, PartialEq)]
struct Observed {
    is_final: bool,
    revision: u64,
    trades: u64,
    volume: f64,
    notional_usd: f64,
    high_usd: f64,
    low_usd: f64,
    first_ms: i64,
    last_ms: i64,
}

impl Observed {
    fn same_values(&self, o: &Observed) -> bool {
        self.trades == o.trades
            && self.volume.to_bits() == o.volume.to_bits()
            && self.notional_usd.to_bits() == o.notional_usd.to_bits()
            && self.high_usd.to_bits() == o.high_usd.to_bits()
            && self.low_usd.to_bits() == o.low_usd.to_bits()
            && self.first_ms == o.first_ms
            && self.last_ms == o.last_ms
    }
}

/// What the watcher found over a run.
#[derive(Debug, Default)]
struct Watch {
    polls: u64,
    /// Final rows seen again with a higher revision (and usually new values).
    corrections_seen: u64,
    /// Final rows that changed without a higher revision, went back to provisional, lost revisions
    /// or vanished.
    violations: Vec<String>,
}

/// Polls `market_1m` and `asset_1m` straight on MariaDB every 200 ms until `stop`, checking that a
/// row seen final with revision r is, at every later poll, still there, still final, and either
/// unchanged or at a revision above r.
fn watch_final_rows(
    db_name: String,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Watch> {
    std::thread::spawn(move || {
        use mysql_async::prelude::Queryable;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let pool =
            mysql_async::Pool::new(format!("mysql://root@127.0.0.1:3306/{db_name}").as_str());
        let ms = |c: &str| {
            format!("CAST(TIMESTAMPDIFF(MICROSECOND, '1970-01-01', {c}) DIV 1000 AS SIGNED)")
        };
        let cols = format!(
            "is_final, revision, trades, volume, notional_usd, high_usd, low_usd, {}, {}",
            ms("first_trade_at"),
            ms("last_trade_at")
        );
        let queries = [
            format!(
                "SELECT CONCAT_WS('|', 'market_1m', exchange, base, quote, {}), {cols} FROM market_1m",
                ms("window_start")
            ),
            format!(
                "SELECT CONCAT_WS('|', 'asset_1m', base, {}), {cols} FROM asset_1m",
                ms("window_start")
            ),
        ];
        let mut finals: BTreeMap<String, Observed> = BTreeMap::new();
        let mut watch = Watch::default();
        let mut last_round = false;
        loop {
            // One more poll after `stop`, so the end state is checked too.
            if stop.load(std::sync::atomic::Ordering::SeqCst) {
                last_round = true;
            }
            let seen: Option<BTreeMap<String, Observed>> = rt.block_on(async {
                let mut conn = pool.get_conn().await.ok()?;
                let mut all = BTreeMap::new();
                for q in &queries {
                    type R = (String, i64, u64, u64, f64, f64, f64, f64, i64, i64);
                    let rows: Vec<R> = conn.query(q.as_str()).await.ok()?;
                    for (
                        k,
                        f,
                        revision,
                        trades,
                        volume,
                        notional_usd,
                        high_usd,
                        low_usd,
                        first_ms,
                        last_ms,
                    ) in rows
                    {
                        let o = Observed {
                            is_final: f != 0,
                            revision,
                            trades,
                            volume,
                            notional_usd,
                            high_usd,
                            low_usd,
                            first_ms,
                            last_ms,
                        };
                        all.insert(k, o);
                    }
                }
                Some(all)
            });
            if let Some(seen) = seen {
                watch.polls += 1;
                let poll = watch.polls;
                finals.retain(|k, old| {
                    let seen = seen.contains_key(k);
                    if !seen {
                        watch
                            .violations
                            .push(format!("poll {poll}: final row {k} vanished (was {old:?})"));
                    }
                    seen
                });
                for (k, old) in finals.iter_mut() {
                    let new = &seen[k];
                    let problem = if !new.is_final {
                        Some("went back to provisional")
                    } else if new.revision < old.revision {
                        Some("lost revisions")
                    } else if new.revision == old.revision && !new.same_values(old) {
                        Some("changed without its revision")
                    } else {
                        None
                    };
                    match problem {
                        Some(what) => watch.violations.push(format!(
                            "poll {poll}: final row {k} {what} (revision {} -> {}):\n    was {old:?}\n    now {new:?}",
                            old.revision, new.revision
                        )),
                        None if new.revision > old.revision => watch.corrections_seen += 1,
                        None => {}
                    }
                    // Each change is reported once; later ones are judged against this one.
                    if new.is_final {
                        *old = new.clone();
                    }
                }
                for (k, o) in seen {
                    if o.is_final && !finals.contains_key(&k) {
                        finals.insert(k, o);
                    }
                }
            }
            if last_round {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        rt.block_on(pool.disconnect()).ok();
        watch
    })
}

/// One live member (`tradewind run` without `--drain`) of `group`, its log in `log`.
fn spawn_member(brokers: &str, mysql_url: &str, group: &str, log: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tradewind"))
        .args([
            "run",
            "--migrate",
            "--brokers",
            brokers,
            "--mysql-url",
            mysql_url,
            "--group",
            group,
            "--max-batch-rows",
            "500",
            "--commit-interval",
            "50ms",
            "--idle-timeout",
            "1s",
            "--metrics-addr",
            "127.0.0.1:0",
            "--kafka-option",
            "session.timeout.ms=3000",
            "--kafka-option",
            "heartbeat.interval.ms=300",
            "--kafka-option",
            "max.poll.interval.ms=6000",
        ])
        .env(
            "RUST_LOG",
            std::env::var("TW_TEST_RUST_LOG").unwrap_or("info".into()),
        )
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("member log"))
        .spawn()
        .expect("spawn tradewind run")
}

/// The live members, SIGKILLed when dropped (a failing test leaves no process behind), and the
/// watcher's stop flag, set then.
struct Members(
    Vec<(Child, std::path::PathBuf)>,
    Arc<std::sync::atomic::AtomicBool>,
);

impl Members {
    fn kill_all(&mut self) {
        for (m, _) in self.0.iter_mut() {
            let _ = m.kill();
            let _ = m.wait();
        }
    }
}

impl Drop for Members {
    fn drop(&mut self) {
        self.kill_all();
        self.1.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

fn log_tail(path: &std::path::Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Issue 24's live chaos run. A backlog (out of order, some trades minutes late, invalid records,
/// trades hours too late; every asset spread over the 4 partitions) is read by a 3-member consumer
/// group of live `tradewind run` processes, one SIGKILLed and replaced every 2-4 s, with MySQL
/// behind a relay that delays every chunk, cuts connections and swallows COMMIT replies the server
/// applied. Meanwhile partitions 0 and 1 go on with newer trades while 2 and 3 stay quiet past the
/// idle timeout (rows become final on 0 and 1 alone), then 2 and 3 wake with trades for those
/// final windows, on time for their own watermark. A final `run --drain` finishes. The tables equal
/// the oracle over the log, the side topics hold exactly the bad and the too-late records, and a
/// watcher polling the tables throughout saw no final row change without a higher revision.
/// `TW_CHAOS_SEED` picks the schedule (printed).
#[test]
fn live_group_killed_behind_a_faulty_mysql_equals_the_oracle_and_final_rows_never_change_silently()
{
    use mysql_async::prelude::Queryable;
    use std::sync::atomic::{AtomicBool, Ordering};
    let t0 = Instant::now();
    let seed: u64 = std::env::var("TW_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| now_ms() as u64 % 1_000_000);
    eprintln!("[live chaos] seed {seed} (TW_CHAOS_SEED={seed} repeats the schedule)");
    let mut rng = seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1;

    // The backlog, and what follows it on partitions 0 and 1 only.
    let inp = input(30_000, 2_000, 0.02, 24);
    let backlog_end = inp.good.iter().map(|t| t.timestamp).max().expect("trades") + 1;
    let next: Vec<OwnedTrade> = tradewind_sim::generate(
        MarketConfig {
            seed: 2_400,
            markets: 150,
            jitter_ms: 2_000,
            late_fraction: 0.01,
            late_max_ms: 120_000,
            start_ms: Some(backlog_end),
            event_rate: 100,
        },
        18_000,
    )
    .collect();
    let next_end = next.iter().map(|t| t.timestamp).max().expect("trades");
    // The wake: trades for windows partitions 0 and 1 closed (the same markets and windows as
    // `next`, other volumes), well behind 0 and 1's watermark and ahead of 2 and 3's.
    let wake: Vec<OwnedTrade> = next
        .iter()
        .filter(|t| t.timestamp < next_end - 90_000)
        .step_by(10)
        .map(|t| OwnedTrade {
            volume: t.volume * 1.5 + 0.25,
            ..t.clone()
        })
        .collect();
    assert!(wake.len() > 300, "{} wake trades", wake.len());
    let first_next_window = (backlog_end + WINDOW_MS - 1).div_euclid(WINDOW_MS) * WINDOW_MS;

    let c = cluster();
    let brokers = c.bootstrap_servers().to_string();
    let db = TestDb::new("livechaos");
    let group = format!("g-livechaos-{}", std::process::id());
    let logs = std::env::temp_dir().join(format!("tw-livechaos-{}-{seed}", std::process::id()));
    std::fs::create_dir_all(&logs).expect("log dir");
    produce_spread(&brokers, "trades", &inp.records, 4, seed);
    produce_spread(&brokers, "trades", &inp.late, 4, seed + 1);

    let rt = runtime();
    let relay = common::MySqlFaultRelay::start(
        &rt,
        "127.0.0.1:3306".parse().expect("addr"),
        common::MySqlFaults {
            max_latency: Duration::from_millis(3),
            cut_per_chunk: 0.002,
            swallow_commit: 0.1,
            seed,
        },
    );
    let url = format!(
        "mysql://root@{}/{}?prefer_socket=false",
        relay.addr, db.name
    );
    // The schema first (straight on MariaDB), so the watcher has tables to read from the start.
    rt.block_on(async {
        let sink = tradewind_sink::MySqlSink::connect(&db.url)
            .await
            .expect("connect");
        sink.migrate().await.expect("migrate");
        sink.disconnect().await.ok();
    });
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch_final_rows(db.name.clone(), stop.clone());

    let mut spawned = 0;
    let mut spawn = || {
        spawned += 1;
        let log = logs.join(format!("member-{spawned}.log"));
        (spawn_member(&brokers, &url, &group, &log), log)
    };
    let mut members = Members(vec![spawn(), spawn(), spawn()], stop.clone());
    let (mut kills, mut exits) = (0u32, 0u32);
    let pool = db.pool();
    let final_next_rows = || -> i64 {
        rt.block_on(async {
            let mut c = pool.get_conn().await.ok()?;
            c.query_first::<i64, _>(format!(
                "SELECT COUNT(*) FROM asset_1m WHERE is_final = 1 AND window_start >= \
                 FROM_UNIXTIME({})",
                first_next_window / 1000
            ))
            .await
            .ok()
            .flatten()
        })
        .unwrap_or(0)
    };
    // Phase 1: the backlog under kills. Phase 2 (from 8 s): newer trades on partitions 0 and 1,
    // kills go on until rows of those windows are final (2 and 3 idle). Phase 3: 2 and 3 wake,
    // kills go on for 8 s more.
    #[derive(PartialEq, Debug)]
    enum Phase {
        Backlog,
        Idle,
        Woken(Instant),
    }
    let mut phase = Phase::Backlog;
    let mut next_kill = Instant::now() + Duration::from_millis(2_000 + lcg(&mut rng) % 2_000);
    let mut idle_proved_at = None;
    loop {
        for (i, (m, log)) in members.0.iter_mut().enumerate() {
            if let Some(st) = m.try_wait().expect("wait") {
                exits += 1;
                eprintln!(
                    "[live chaos] member {i} exited by itself ({st}); replaced. Log tail:\n{}",
                    log_tail(log, 5)
                );
                *m = spawn_member(&brokers, &url, &group, log);
            }
        }
        let elapsed = t0.elapsed();
        match phase {
            Phase::Backlog if elapsed > Duration::from_secs(8) => {
                let recs: Vec<_> = next.iter().map(record).collect();
                produce_spread(&brokers, "trades", &recs, 2, seed + 2); // partitions 0 and 1
                eprintln!(
                    "[live chaos] {:.1}s: {} trades on partitions 0 and 1",
                    elapsed.as_secs_f64(),
                    recs.len()
                );
                phase = Phase::Idle;
            }
            Phase::Idle if final_next_rows() > 0 => {
                idle_proved_at = Some(elapsed);
                eprintln!(
                    "[live chaos] {:.1}s: rows after the backlog are final (partitions 2 and 3 idle); they wake",
                    elapsed.as_secs_f64()
                );
                let mut state = seed;
                let recs: Vec<_> = wake
                    .iter()
                    .map(|t| (record(t), 2 + (lcg(&mut state) % 2) as i32))
                    .collect();
                common::produce_into(&brokers, "trades", &recs); // partitions 2 and 3
                phase = Phase::Woken(Instant::now());
            }
            Phase::Idle if elapsed > Duration::from_secs(80) => {
                panic!("no row after the backlog became final within 80 s: partitions 2 and 3 never counted as idle");
            }
            Phase::Woken(at) if at.elapsed() > Duration::from_secs(8) => break,
            _ => {}
        }
        if Instant::now() >= next_kill {
            let victim = (lcg(&mut rng) % 3) as usize;
            let (m, _) = &mut members.0[victim];
            let _ = m.kill(); // SIGKILL
            let _ = m.wait();
            kills += 1;
            members.0[victim] = spawn();
            // Every 2-4 s; every 3-6 s while partitions 2 and 3 must stay assigned long enough to
            // count as idle (each rebalance restarts their quiet time).
            let (least, spread) = if phase == Phase::Idle {
                (3_000, 3_000)
            } else {
                (2_000, 2_000)
            };
            next_kill = Instant::now() + Duration::from_millis(least + lcg(&mut rng) % spread);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    members.kill_all();
    let chaos_secs = t0.elapsed().as_secs_f64();
    // The rest, drained straight on MariaDB.
    let drain_log = logs.join("drain.log");
    let drain = Command::new(env!("CARGO_BIN_EXE_tradewind"))
        .args([
            "run",
            "--drain",
            "--migrate",
            "--brokers",
            &brokers,
            "--mysql-url",
            &db.url,
            "--group",
            &group,
            "--idle-timeout",
            "1s",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&drain_log).expect("drain log"))
        .spawn()
        .expect("spawn drain");
    wait_ok(drain, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    let watch = watcher.join().expect("watcher");
    let (conns, cuts, commits, swallowed) = relay.stats.snapshot();
    eprintln!(
        "[live chaos] seed {seed}: {:.1}s ({chaos_secs:.1}s of chaos), {kills} SIGKILLs, {exits} self-exits, \
         {spawned} members spawned; relay: {conns} connections, {cuts} cuts, {commits} COMMITs, \
         {swallowed} COMMIT replies swallowed; watcher: {} polls, {} corrections of final rows seen, \
         {} violations; idle proved at {idle_proved_at:?}; logs in {}",
        t0.elapsed().as_secs_f64(),
        watch.polls,
        watch.corrections_seen,
        watch.violations.len(),
        logs.display()
    );
    for v in watch.violations.iter().take(10) {
        eprintln!("[live chaos] {v}");
    }
    assert!(kills >= 5, "only {kills} kills");
    assert!(
        swallowed >= 1,
        "no COMMIT reply was swallowed ({commits} COMMITs)"
    );

    // The oracle over what the topic holds, ties broken by (partition, offset) like the engine.
    let log = read_log(&brokers, "trades");
    let cutoff = START_MS - 3_600_000;
    let good: Vec<OwnedTrade> = valid_trades(&log)
        .into_iter()
        .filter(|t| t.timestamp > cutoff)
        .collect();
    assert_eq!(good.len(), inp.good.len() + next.len() + wake.len());
    let mut expected = oracle(&good, WINDOW_MS);
    // Revisions: exactly the per-partition rule for rows only the backlog touched (each partition
    // had all of its backlog before any member started, so it counted as idle only once it was
    // read). Rows trades after the backlog touched may also have been final when such a trade
    // arrived (an idle partition waking): at least the rule's count, at most one more per such
    // trade.
    let by_partition = common::valid_trades_by_partition(&log);
    expect_revisions(
        &mut expected.market,
        &by_partition,
        WINDOW_MS,
        DEFAULT_LATENESS,
        market_key,
    );
    expect_revisions(
        &mut expected.asset,
        &by_partition,
        WINDOW_MS,
        DEFAULT_LATENESS,
        asset_key,
    );
    let mut after_backlog_market: BTreeMap<common::MarketKey, u64> = BTreeMap::new();
    let mut after_backlog_asset: BTreeMap<AssetKey, u64> = BTreeMap::new();
    for t in next.iter().chain(&wake) {
        let ws = t.timestamp.div_euclid(WINDOW_MS) * WINDOW_MS;
        *after_backlog_market.entry(market_key(t, ws)).or_default() += 1;
        *after_backlog_asset.entry(asset_key(t, ws)).or_default() += 1;
    }
    let actual = rt.block_on(read_tables(&pool));
    let mut revision_problems = Vec::new();
    let mut bounds =
        |kind: &str, e: &mut Row, got: Option<&Row>, extra: Option<&u64>, key: String| {
            if let (Some(n), Some(a)) = (extra, got) {
                let lo = e.revision.expect("expected revision");
                let r = a.revision.expect("revision read");
                if r < lo || r > lo + n {
                    revision_problems.push(format!(
                        "{kind} {key}: revision {r}, expected {lo}..={}",
                        lo + n
                    ));
                }
                e.revision = None; // checked here
            }
        };
    for (k, e) in expected.market.iter_mut() {
        bounds(
            "market",
            e,
            actual.market.get(k),
            after_backlog_market.get(k),
            format!("{k:?}"),
        );
    }
    for (k, e) in expected.asset.iter_mut() {
        bounds(
            "asset",
            e,
            actual.asset.get(k),
            after_backlog_asset.get(k),
            format!("{k:?}"),
        );
    }
    // A row short of (or over) the oracle: name the records behind it, to find them in the logs.
    for (k, e) in &expected.market {
        if actual.market.get(k).map(|a| a.trades) != Some(e.trades) {
            let records: Vec<(i32, i64)> = log
                .iter()
                .filter(|(_, _, p)| {
                    tradewind_model::validate(p, now_ms(), &Default::default())
                        .ok()
                        .map(|t| t.to_owned_trade())
                        .is_some_and(|t| {
                            market_key(&t, t.timestamp.div_euclid(WINDOW_MS) * WINDOW_MS) == *k
                        })
                })
                .map(|(p, o, _)| (*p, *o))
                .collect();
            eprintln!("[live chaos] market row {k:?}: records (partition, offset) {records:?}");
        }
    }
    assert_tables_match(&actual, &expected);
    assert!(
        revision_problems.is_empty(),
        "{} revisions out of bounds: {:?}",
        revision_problems.len(),
        &revision_problems[..revision_problems.len().min(8)]
    );
    // Dead letters at least once: the distinct ones are exactly the bad records, with their reasons.
    let mut dlq: Vec<(Vec<u8>, Option<String>)> = read_topic(&brokers, "trades.dlq");
    dlq.sort();
    dlq.dedup();
    let mut reasons: Vec<String> = dlq
        .into_iter()
        .map(|(_, r)| r.unwrap_or_default())
        .collect();
    reasons.sort();
    assert_eq!(reasons, inp.dlq_reasons, "distinct dead letters");
    let mut late: Vec<Vec<u8>> = inp.late.iter().map(|(_, p)| p.clone()).collect();
    late.sort();
    assert_eq!(
        sorted_payloads(&brokers, "trades.late"),
        late,
        "too-late trades"
    );
    // No final row changed without its revision.
    let mut by_window: BTreeMap<&str, usize> = BTreeMap::new();
    for v in &watch.violations {
        let window = v
            .split_whitespace()
            .find_map(|w| w.rsplit_once('|').map(|(_, ws)| ws))
            .unwrap_or("?");
        *by_window.entry(window).or_default() += 1;
    }
    assert!(
        watch.violations.is_empty(),
        "{} changes of final rows without a higher revision (seed {seed}; by window_start ms: \
         {by_window:?}; the wake trades fall in windows from {first_next_window} minus 2 minutes \
         to {}); first:\n{}",
        watch.violations.len(),
        next_end - 90_000,
        watch
            .violations
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    rt.block_on(pool.disconnect()).ok();
    let _ = std::fs::remove_dir_all(&logs);
    eprintln!(
        "[live chaos] seed {seed}: passed in {:.1}s",
        t0.elapsed().as_secs_f64()
    );
}
