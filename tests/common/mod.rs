//! Shared test support: an independent oracle for the window tables, MariaDB scratch databases, and
//! Kafka helpers. The oracle is a plain batch computation over the trades (sort, group, fold) written
//! separately from the engine's kernel, so the tables are checked against something the engine's
//! code did not compute.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use tradewind_model::OwnedTrade;

/// One expected (or actual) window row, with the columns the oracle can compute.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub trades: u64,
    pub buys: u64,
    pub sells: u64,
    pub volume: f64,
    pub buy_volume: f64,
    pub sell_volume: f64,
    pub notional_usd: f64,
    pub vwap_usd: f64,
    pub avg_price_usd: f64,
    pub open_usd: f64,
    pub high_usd: f64,
    pub low_usd: f64,
    pub close_usd: f64,
    /// Quote-unit OHLC (market grain only; NaN for assets).
    pub ohlc_price: [f64; 4],
    pub first_trade_at: i64,
    pub last_trade_at: i64,
    pub price_change_pct: f64,
    pub price_trend: Option<String>,
    pub window_end: i64,
    pub is_final: bool,
    /// Corrections folded in after the window closed. Read back from MySQL; in the oracle `None`
    /// (not checked) unless [`expect_revisions`] computed it from the log.
    pub revision: Option<u64>,
}

/// Key of a market row: (exchange, base, quote, window_start ms).
pub type MarketKey = (String, String, String, i64);
/// Key of an asset row: (base, window_start ms).
pub type AssetKey = (String, i64);

/// Both tables.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Tables {
    pub market: BTreeMap<MarketKey, Row>,
    pub asset: BTreeMap<AssetKey, Row>,
}

/// Computes the expected tables from `trades` given in log order (the order in which they were
/// produced; one base's trades keep their order because they share a partition). Open/close: the
/// earliest/latest event time, ties to the first/last in log order.
pub fn oracle(trades: &[OwnedTrade], window_ms: i64) -> Tables {
    let mut market: BTreeMap<MarketKey, Vec<usize>> = BTreeMap::new();
    let mut asset: BTreeMap<AssetKey, Vec<usize>> = BTreeMap::new();
    for (i, t) in trades.iter().enumerate() {
        let ws = t.timestamp.div_euclid(window_ms) * window_ms;
        market
            .entry((t.exchange.clone(), t.base.clone(), t.quote.clone(), ws))
            .or_default()
            .push(i);
        asset.entry((t.base.clone(), ws)).or_default().push(i);
    }
    let fold = |idx: &[usize], ws: i64| -> Row {
        let ts: Vec<&OwnedTrade> = idx.iter().map(|&i| &trades[i]).collect();
        // Stable sort by event time keeps log order among equal timestamps.
        let mut by_time: Vec<usize> = (0..ts.len()).collect();
        by_time.sort_by_key(|&k| ts[k].timestamp);
        let open = ts[by_time[0]];
        let last_ts = ts[*by_time.last().unwrap()].timestamp;
        let close = ts[*by_time
            .iter()
            .rev()
            .find(|&&k| ts[k].timestamp == last_ts)
            .unwrap()];
        let close = {
            // Among the trades at the last timestamp, the last in log order.
            let mut c = close;
            for t in &ts {
                if t.timestamp == last_ts {
                    c = t;
                }
            }
            c
        };
        let sum = |f: &dyn Fn(&OwnedTrade) -> f64| ts.iter().map(|t| f(t)).sum::<f64>();
        let buy = |t: &OwnedTrade| t.direction == tradewind_model::Direction::Buy;
        let volume = sum(&|t| t.volume);
        let notional = sum(&|t| t.price_usd * t.volume);
        let maxf =
            |f: &dyn Fn(&OwnedTrade) -> f64| ts.iter().map(|t| f(t)).fold(f64::MIN, f64::max);
        let minf =
            |f: &dyn Fn(&OwnedTrade) -> f64| ts.iter().map(|t| f(t)).fold(f64::MAX, f64::min);
        Row {
            trades: ts.len() as u64,
            buys: ts.iter().filter(|t| buy(t)).count() as u64,
            sells: ts.iter().filter(|t| !buy(t)).count() as u64,
            volume,
            buy_volume: sum(&|t| if buy(t) { t.volume } else { 0.0 }),
            sell_volume: sum(&|t| if buy(t) { 0.0 } else { t.volume }),
            notional_usd: notional,
            vwap_usd: notional / volume,
            avg_price_usd: sum(&|t| t.price_usd) / ts.len() as f64,
            open_usd: open.price_usd,
            high_usd: maxf(&|t| t.price_usd),
            low_usd: minf(&|t| t.price_usd),
            close_usd: close.price_usd,
            ohlc_price: [
                open.price,
                maxf(&|t| t.price),
                minf(&|t| t.price),
                close.price,
            ],
            first_trade_at: open.timestamp,
            last_trade_at: close.timestamp,
            price_change_pct: (close.price_usd - open.price_usd) / open.price_usd * 100.0,
            price_trend: None,
            window_end: ws + window_ms,
            is_final: true,
            revision: None,
        }
    };
    let mut out = Tables::default();
    for (k, idx) in &market {
        out.market.insert(k.clone(), fold(idx, k.3));
    }
    for (k, idx) in &asset {
        let mut r = fold(idx, k.1);
        r.ohlc_price = [f64::NAN; 4];
        out.asset.insert(k.clone(), r);
    }
    // Trend against the previous window of the same key.
    let trend = |now: f64, prev: Option<&Row>| {
        prev.map(|p| {
            let tolerance = tradewind_sink::TREND_TOLERANCE * now.abs().max(p.vwap_usd.abs());
            if (now - p.vwap_usd).abs() <= tolerance {
                "flat"
            } else if now > p.vwap_usd {
                "up"
            } else if now < p.vwap_usd {
                "down"
            } else {
                "flat"
            }
            .to_string()
        })
    };
    let m2 = out.market.clone();
    for ((e, b, q, ws), r) in out.market.iter_mut() {
        let prev = m2.get(&(e.clone(), b.clone(), q.clone(), ws - window_ms));
        r.price_trend = trend(r.vwap_usd, prev);
    }
    let a2 = out.asset.clone();
    for ((b, ws), r) in out.asset.iter_mut() {
        r.price_trend = trend(r.vwap_usd, a2.get(&(b.clone(), ws - window_ms)));
    }
    out
}

const COLS: &str = "trades, buys, sells, volume, buy_volume, sell_volume, notional_usd, vwap_usd, \
    avg_price_usd, open_usd, high_usd, low_usd, close_usd, \
    TIMESTAMPDIFF(MICROSECOND, '1970-01-01', first_trade_at) DIV 1000, \
    TIMESTAMPDIFF(MICROSECOND, '1970-01-01', last_trade_at) DIV 1000, price_change_pct, \
    CAST(price_trend AS CHAR), TIMESTAMPDIFF(MICROSECOND, '1970-01-01', window_end) DIV 1000, is_final, \
    TIMESTAMPDIFF(MICROSECOND, '1970-01-01', window_start) DIV 1000, revision";

fn row_from(r: &mut mysql_async::Row, offset: usize) -> (Row, i64) {
    let g = |r: &mut mysql_async::Row, i: usize| -> f64 { r.take::<f64, _>(offset + i).unwrap() };
    let u = |r: &mut mysql_async::Row, i: usize| -> u64 { r.take::<u64, _>(offset + i).unwrap() };
    let row = Row {
        trades: u(r, 0),
        buys: u(r, 1),
        sells: u(r, 2),
        volume: g(r, 3),
        buy_volume: g(r, 4),
        sell_volume: g(r, 5),
        notional_usd: g(r, 6),
        vwap_usd: g(r, 7),
        avg_price_usd: g(r, 8),
        open_usd: g(r, 9),
        high_usd: g(r, 10),
        low_usd: g(r, 11),
        close_usd: g(r, 12),
        ohlc_price: [f64::NAN; 4],
        first_trade_at: r.take::<i64, _>(offset + 13).unwrap(),
        last_trade_at: r.take::<i64, _>(offset + 14).unwrap(),
        price_change_pct: g(r, 15),
        price_trend: r.take::<Option<String>, _>(offset + 16).unwrap(),
        window_end: r.take::<i64, _>(offset + 17).unwrap(),
        is_final: r.take::<i64, _>(offset + 18).unwrap() != 0,
        revision: Some(u(r, 20)),
    };
    let ws = r.take::<i64, _>(offset + 19).unwrap();
    (row, ws)
}

/// Reads `market_1m` and `asset_1m` back.
pub async fn read_tables(pool: &mysql_async::Pool) -> Tables {
    let mut conn = pool.get_conn().await.expect("mysql conn");
    let mut out = Tables::default();
    let rows: Vec<mysql_async::Row> = conn
        .query(format!(
            "SELECT exchange, base, quote, {COLS}, open_price, high_price, low_price, close_price FROM market_1m"
        ))
        .await
        .expect("read market_1m");
    for mut r in rows {
        let (e, b, q): (String, String, String) =
            (r.take(0).unwrap(), r.take(1).unwrap(), r.take(2).unwrap());
        let (mut row, ws) = row_from(&mut r, 3);
        row.ohlc_price = [
            r.take(24).unwrap(),
            r.take(25).unwrap(),
            r.take(26).unwrap(),
            r.take(27).unwrap(),
        ];
        out.market.insert((e, b, q, ws), row);
    }
    drop(conn);
    out.asset = read_asset_table(pool, "asset_1m").await;
    out
}

/// Reads an asset-grain table (`asset_1m`, `asset_1h`, `asset_1d`) back.
pub async fn read_asset_table(pool: &mysql_async::Pool, table: &str) -> BTreeMap<AssetKey, Row> {
    let mut conn = pool.get_conn().await.expect("mysql conn");
    let rows: Vec<mysql_async::Row> = conn
        .query(format!("SELECT base, {COLS} FROM {table}"))
        .await
        .unwrap_or_else(|e| panic!("read {table}: {e}"));
    let mut out = BTreeMap::new();
    for mut r in rows {
        let b: String = r.take(0).unwrap();
        let (row, ws) = row_from(&mut r, 1);
        out.insert((b, ws), row);
    }
    out
}

fn close(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || ((a - b).abs() / a.abs().max(b.abs())) <= 1e-9
}

/// Whether two rows agree: integers and strings exactly, doubles to 1e-9 relative.
pub fn rows_agree(a: &Row, e: &Row) -> bool {
    let fa = [
        a.volume,
        a.buy_volume,
        a.sell_volume,
        a.notional_usd,
        a.vwap_usd,
        a.avg_price_usd,
        a.open_usd,
        a.high_usd,
        a.low_usd,
        a.close_usd,
        a.price_change_pct,
    ];
    let fe = [
        e.volume,
        e.buy_volume,
        e.sell_volume,
        e.notional_usd,
        e.vwap_usd,
        e.avg_price_usd,
        e.open_usd,
        e.high_usd,
        e.low_usd,
        e.close_usd,
        e.price_change_pct,
    ];
    a.trades == e.trades
        && a.buys == e.buys
        && a.sells == e.sells
        && fa.iter().zip(fe.iter()).all(|(x, y)| close(*x, *y))
        && a.ohlc_price
            .iter()
            .zip(e.ohlc_price.iter())
            .all(|(x, y)| close(*x, *y))
        && a.first_trade_at == e.first_trade_at
        && a.last_trade_at == e.last_trade_at
        && a.price_trend == e.price_trend
        && a.window_end == e.window_end
        && a.is_final == e.is_final
        && e.revision.is_none_or(|r| a.revision == Some(r))
}

/// The engine's lateness bounds in the tests: its defaults (`--out-of-orderness 5s`,
/// `--allowed-lateness 10m`).
pub const DEFAULT_LATENESS: Lateness = Lateness {
    out_of_orderness_ms: 5_000,
    allowed_ms: 600_000,
};

/// Lateness bounds, as the engine is configured.
#[derive(Debug, Clone, Copy)]
pub struct Lateness {
    pub out_of_orderness_ms: i64,
    pub allowed_ms: i64,
}

/// The trades of `topic` that the tables should hold, with their partition, in (partition, offset)
/// order: the records of the log that are one of `expected` (by their exact payload, as
/// [`tradewind_model::write_json`] wrote them). Other records (invalid ones, trades MySQL refused)
/// neither count nor move a partition's clock.
pub fn expected_log(brokers: &str, topic: &str, expected: &[OwnedTrade]) -> Vec<(i32, OwnedTrade)> {
    let mut wanted: std::collections::HashMap<Vec<u8>, usize> = std::collections::HashMap::new();
    for t in expected {
        let mut p = Vec::new();
        tradewind_model::write_json(&t.as_trade(), &mut p);
        *wanted.entry(p).or_default() += 1;
    }
    let mut log = read_log(brokers, topic);
    log.retain(|(_, _, payload)| {
        wanted
            .get_mut(payload)
            .and_then(|left| left.checked_sub(1).map(|l| *left = l))
            .is_some()
    });
    valid_trades_by_partition(&log)
}

/// Sets the expected `revision` of every row of `rows` (windows of `window_ms`, keyed by `key`)
/// from `log` ([`expected_log`]), by the lateness rule written out plainly: a partition's watermark
/// before a trade is the largest event time of that partition's earlier trades minus the
/// out-of-orderness bound; a trade whose window had ended by then is a correction (one revision of
/// its row), unless it ended more than the allowed lateness before (too late: not in the tables).
pub fn expect_revisions<K: Ord>(
    rows: &mut BTreeMap<K, Row>,
    log: &[(i32, OwnedTrade)],
    window_ms: i64,
    lateness: Lateness,
    key: impl Fn(&OwnedTrade, i64) -> K,
) {
    for r in rows.values_mut() {
        r.revision = Some(0);
    }
    let mut max_event: std::collections::HashMap<i32, i64> = std::collections::HashMap::new();
    for (p, t) in log {
        let ws = t.timestamp.div_euclid(window_ms) * window_ms;
        let end = ws + window_ms;
        if let Some(wm) = max_event.get(p).map(|m| m - lateness.out_of_orderness_ms) {
            let too_late = end + lateness.allowed_ms <= wm;
            if end <= wm && !too_late {
                if let Some(r) = rows.get_mut(&key(t, ws)) {
                    *r.revision.get_or_insert(0) += 1;
                }
            }
        }
        let m = max_event.entry(*p).or_insert(t.timestamp);
        *m = (*m).max(t.timestamp);
    }
}

/// Key of a market row for [`expect_revisions`].
pub fn market_key(t: &OwnedTrade, ws: i64) -> MarketKey {
    (t.exchange.clone(), t.base.clone(), t.quote.clone(), ws)
}

/// Key of an asset row for [`expect_revisions`].
pub fn asset_key(t: &OwnedTrade, ws: i64) -> AssetKey {
    (t.base.clone(), ws)
}

/// Asserts the tables equal the oracle: same keys (nothing missing, nothing extra) and agreeing rows.
pub fn assert_tables_match(actual: &Tables, expected: &Tables) {
    let mut problems = Vec::new();
    for (k, e) in &expected.market {
        match actual.market.get(k) {
            None => problems.push(format!("market row missing: {k:?}")),
            Some(a) if !rows_agree(a, e) => problems.push(format!(
                "market row differs {k:?}\n  got  {a:?}\n  want {e:?}"
            )),
            _ => {}
        }
    }
    for k in actual
        .market
        .keys()
        .filter(|k| !expected.market.contains_key(*k))
    {
        problems.push(format!("unexpected market row {k:?}"));
    }
    for (k, e) in &expected.asset {
        match actual.asset.get(k) {
            None => problems.push(format!("asset row missing: {k:?}")),
            Some(a) if !rows_agree(a, e) => problems.push(format!(
                "asset row differs {k:?}\n  got  {a:?}\n  want {e:?}"
            )),
            _ => {}
        }
    }
    for k in actual
        .asset
        .keys()
        .filter(|k| !expected.asset.contains_key(*k))
    {
        problems.push(format!("unexpected asset row {k:?}"));
    }
    assert!(
        problems.is_empty(),
        "{} problems (of {} market / {} asset rows expected); first:\n{}",
        problems.len(),
        expected.market.len(),
        expected.asset.len(),
        problems
            .iter()
            .take(8)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// A scratch MariaDB database, dropped at the end of the test.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    /// A new uniquely named database (created by the sink on first connect).
    pub fn new(tag: &str) -> TestDb {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "tw_test_{tag}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let url = format!("mysql://root@127.0.0.1:3306/{name}");
        TestDb { name, url }
    }

    /// A pool on the database.
    pub fn pool(&self) -> mysql_async::Pool {
        mysql_async::Pool::new(self.url.as_str())
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let pool = mysql_async::Pool::new("mysql://root@127.0.0.1:3306/test");
                if let Ok(mut c) = pool.get_conn().await {
                    let _ = c
                        .query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
                        .await;
                }
                let _ = pool.disconnect().await;
            });
        })
        .join();
    }
}

/// Produces `payloads` (key, bytes) in order to `topic` with an idempotent producer and waits for all.
pub fn produce_all(brokers: &str, topic: &str, payloads: &[(Option<Vec<u8>>, Vec<u8>)]) {
    produce_to(brokers, topic, payloads, |_| None);
}

/// A Kafka record to produce: (key, payload).
pub type Record = (Option<Vec<u8>>, Vec<u8>);

/// Produces `records` in order, each to the partition it names, and waits for all.
pub fn produce_into(brokers: &str, topic: &str, records: &[(Record, i32)]) {
    let payloads: Vec<_> = records.iter().map(|(r, _)| r.clone()).collect();
    produce_to(brokers, topic, &payloads, |i| Some(records[i].1));
}

/// Produces `payloads` in order, each to the partition `partition(i)` names (`None`: the
/// producer's partitioner), and waits for all.
pub fn produce_to(
    brokers: &str,
    topic: &str,
    payloads: &[(Option<Vec<u8>>, Vec<u8>)],
    mut partition: impl FnMut(usize) -> Option<i32>,
) {
    let producer: BaseProducer = tradewind_kafka::producer_config(brokers)
        .create()
        .expect("producer");
    for (i, (k, p)) in payloads.iter().enumerate() {
        let mut rec = BaseRecord::<[u8], [u8]>::to(topic).payload(p.as_slice());
        if let Some(k) = k {
            rec = rec.key(k.as_slice());
        }
        if let Some(part) = partition(i) {
            rec = rec.partition(part);
        }
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((_, r)) => {
                    rec = r;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
}

/// Calls `each` with every record of `topic` (all partitions, from the beginning) until every
/// partition's end is reached, within `limit`.
pub fn consume_all(
    brokers: &str,
    topic: &str,
    limit: Duration,
    mut each: impl FnMut(&rdkafka::message::BorrowedMessage<'_>),
) {
    static READERS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = READERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set(
            "group.id",
            format!("tw-test-reader-{}-{n}", std::process::id()),
        )
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "true")
        .set("session.timeout.ms", "6000")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let deadline = std::time::Instant::now() + limit;
    let mut eof = std::collections::BTreeSet::new();
    while std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                each(&m);
                eof.remove(&m.partition());
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                eof.insert(p);
                let n = consumer.assignment().map(|a| a.count()).unwrap_or(0);
                if n > 0 && eof.len() >= n {
                    break;
                }
            }
            _ => {}
        }
    }
}

/// Reads every record of `topic` (all partitions) until the end: (payload, tw-reason header).
pub fn read_topic(brokers: &str, topic: &str) -> Vec<(Vec<u8>, Option<String>)> {
    let mut out = Vec::new();
    consume_all(brokers, topic, Duration::from_secs(30), |m| {
        let reason = m.headers().and_then(|h| {
            h.iter()
                .find(|x| x.key == tradewind_model::HEADER_REASON)
                .and_then(|x| x.value.map(|v| String::from_utf8_lossy(v).to_string()))
        });
        out.push((m.payload().unwrap_or(&[]).to_vec(), reason));
    });
    out
}

// ---- TCP relay (one-shot in front of the simulator; cuttable in front of MariaDB) -------------

/// A TCP relay on 127.0.0.1 to `target`. `max_conns` bounds how many connections are ever relayed
/// (later ones are closed at once); `down` cuts every relayed connection and refuses new ones.
pub struct Relay {
    /// Where clients connect.
    pub addr: std::net::SocketAddr,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Relay {
    /// Starts the relay on `rt`.
    pub fn start(
        rt: &tokio::runtime::Runtime,
        target: std::net::SocketAddr,
        max_conns: Option<usize>,
    ) -> Relay {
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind relay");
        let addr = listener.local_addr().expect("relay addr");
        let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let d = down.clone();
        rt.spawn(async move {
            let mut relayed = 0usize;
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if d.load(std::sync::atomic::Ordering::Relaxed)
                    || max_conns.is_some_and(|m| relayed >= m)
                {
                    continue; // dropped: the client sees the connection closed
                }
                let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                    continue;
                };
                relayed += 1;
                let d = d.clone();
                tokio::spawn(async move {
                    let copy = tokio::io::copy_bidirectional(&mut inbound, &mut outbound);
                    tokio::pin!(copy);
                    loop {
                        tokio::select! {
                            _ = &mut copy => return,
                            _ = tokio::time::sleep(Duration::from_millis(20)) => {
                                if d.load(std::sync::atomic::Ordering::Relaxed) { return; }
                            }
                        }
                    }
                });
            }
        });
        Relay { addr, down }
    }

    /// Cuts (`true`) or restores (`false`) the relay.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Produces `payloads` in order, each to a pseudo-random partition of `partitions` (what a
/// partition-count change, a foreign partitioner or a second producer does): one asset's trades
/// end up spread over every partition.
pub fn produce_spread(
    brokers: &str,
    topic: &str,
    payloads: &[(Option<Vec<u8>>, Vec<u8>)],
    partitions: i32,
    seed: u64,
) {
    let mut state = seed;
    produce_to(brokers, topic, payloads, |_| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        Some(((state >> 33) % partitions as u64) as i32)
    });
}

/// Every record of `topic` with its partition and offset, sorted by (partition, offset).
pub fn read_log(brokers: &str, topic: &str) -> Vec<(i32, i64, Vec<u8>)> {
    let mut out = Vec::new();
    consume_all(brokers, topic, Duration::from_secs(60), |m| {
        out.push((
            m.partition(),
            m.offset(),
            m.payload().unwrap_or(&[]).to_vec(),
        ));
    });
    out.sort_by_key(|(p, o, _)| (*p, *o));
    out
}

/// The valid trades of a log read by [`read_log`], in (partition, offset) order: the order in which
/// the engine breaks open/close ties between trades of the same millisecond.
pub fn valid_trades(log: &[(i32, i64, Vec<u8>)]) -> Vec<OwnedTrade> {
    valid_trades_by_partition(log)
        .into_iter()
        .map(|(_, t)| t)
        .collect()
}

/// The valid trades of a log read by [`read_log`] with their partition, in (partition, offset) order
/// (for [`expect_revisions`]).
pub fn valid_trades_by_partition(log: &[(i32, i64, Vec<u8>)]) -> Vec<(i32, OwnedTrade)> {
    log.iter()
        .filter_map(|(partition, _, p)| {
            tradewind_model::validate(p, tradewind_model::now_ms(), &Default::default())
                .ok()
                .map(|t| (*partition, t.to_owned_trade()))
        })
        .collect()
}

/// One row of a window table: every column but `updated_at`, the exact ones (keys, counts, times,
/// flags, trend, revision, order keys) as one text, the doubles apart.
#[derive(Debug, Clone, PartialEq)]
pub struct FullRow {
    pub exact: String,
    pub doubles: Vec<f64>,
}

/// Every row of both minute tables, sorted.
pub async fn read_full(pool: &mysql_async::Pool) -> Vec<FullRow> {
    read_full_of(pool, &["market_1m", "asset_1m"]).await
}

/// Every row of `tables`, sorted.
pub async fn read_full_of(pool: &mysql_async::Pool, tables: &[&str]) -> Vec<FullRow> {
    let mut conn = pool.get_conn().await.expect("mysql conn");
    let mut out = Vec::new();
    for &table in tables {
        let cols: Vec<(String, String)> = conn
            .exec(
                "SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND COLUMN_NAME <> 'updated_at' \
                 ORDER BY ORDINAL_POSITION",
                (table,),
            )
            .await
            .expect("columns")
            .into_iter()
            .map(mysql_async::from_row)
            .collect();
        let exact: Vec<String> = cols
            .iter()
            .filter(|(_, ty)| ty != "double")
            .map(|(n, _)| format!("IFNULL(CAST({n} AS CHAR), 'null')"))
            .collect();
        let doubles: Vec<&str> = cols
            .iter()
            .filter(|(_, ty)| ty == "double")
            .map(|(n, _)| n.as_str())
            .collect();
        let sql = format!(
            "SELECT CONCAT_WS('|', '{table}', {}), {} FROM {table}",
            exact.join(", "),
            doubles.join(", ")
        );
        let rows: Vec<mysql_async::Row> = conn.exec(sql, ()).await.expect("read table");
        for mut r in rows {
            let exact: String = r.take(0).expect("exact columns");
            let doubles = (1..=doubles.len())
                .map(|i| r.take::<Option<f64>, _>(i).flatten().unwrap_or(f64::NAN))
                .collect();
            out.push(FullRow { exact, doubles });
        }
    }
    out.sort_by(|a, b| a.exact.cmp(&b.exact));
    out
}

/// Asserts two runs wrote the same rows: exact columns equal, doubles equal to 1e-12 relative (sums
/// merged in a different order differ in the last bits).
pub fn assert_same_rows(a: &[FullRow], b: &[FullRow], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: row counts differ");
    let same = |x: f64, y: f64| {
        (x.is_nan() && y.is_nan()) || x == y || (x - y).abs() <= 1e-12 * x.abs().max(y.abs())
    };
    let differ: Vec<_> = a
        .iter()
        .zip(b)
        .filter(|(x, y)| {
            x.exact != y.exact
                || x.doubles.len() != y.doubles.len()
                || x.doubles.iter().zip(&y.doubles).any(|(p, q)| !same(*p, *q))
        })
        .take(3)
        .collect();
    assert!(differ.is_empty(), "{what}: rows differ: {differ:?}");
}

/// A free TCP port on loopback (for a process's metrics address).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// `GET path` on `addr`: (status code, body), or `None` when nothing answers.
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((code, body))
}

// ---- MySQL fault relay (latency, cut connections, swallowed COMMIT replies) ---------------------

/// What a [`MySqlFaultRelay`] does to the traffic it relays.
#[derive(Debug, Clone, Copy)]
pub struct MySqlFaults {
    /// Each relayed chunk (either way) is held back a random time up to this long.
    pub max_latency: Duration,
    /// Probability that a chunk (either way) cuts its connection instead of being relayed.
    pub cut_per_chunk: f64,
    /// Probability that a `COMMIT` is relayed to the server and its reply swallowed: the relay reads
    /// the server's answer (so the server has applied the commit), drops it and closes both sides.
    pub swallow_commit: f64,
    /// Seed of the relay's choices (each connection draws from its own stream).
    pub seed: u64,
}

/// Counters of a [`MySqlFaultRelay`].
#[derive(Debug, Default)]
pub struct MySqlFaultStats {
    pub connections: std::sync::atomic::AtomicU64,
    pub cuts: std::sync::atomic::AtomicU64,
    pub commits: std::sync::atomic::AtomicU64,
    pub swallowed: std::sync::atomic::AtomicU64,
}

impl MySqlFaultStats {
    /// (connections, cuts, COMMITs seen, COMMIT replies swallowed).
    pub fn snapshot(&self) -> (u64, u64, u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.connections.load(Relaxed),
            self.cuts.load(Relaxed),
            self.commits.load(Relaxed),
            self.swallowed.load(Relaxed),
        )
    }
}

/// A TCP relay on 127.0.0.1 to a MySQL server that understands just enough of the client/server
/// protocol to find the `COMMIT` queries in the client's packets (4-byte header: 3-byte
/// little-endian length and a sequence id; a command starts a sequence at 0, and `COM_QUERY` is
/// 0x03 followed by the SQL text), and injects [`MySqlFaults`]. Clients must connect over TCP
/// (`prefer_socket=false`), or mysql_async switches to the server's Unix socket.
pub struct MySqlFaultRelay {
    /// Where clients connect.
    pub addr: std::net::SocketAddr,
    pub stats: std::sync::Arc<MySqlFaultStats>,
}

/// Whether a `COM_QUERY` text is a commit: `COMMIT`, `COMMIT WORK`, `XA COMMIT ...`, any case,
/// trimmed, with or without a trailing `;`.
fn is_commit(sql: &[u8]) -> bool {
    let text = String::from_utf8_lossy(sql).trim().to_ascii_uppercase();
    let text = text.trim_end_matches(';').trim();
    let words: Vec<&str> = text.split_whitespace().collect();
    matches!(words.as_slice(), ["COMMIT", ..]) || matches!(words.as_slice(), ["XA", "COMMIT", ..])
}

struct FaultRng(u64);

impl FaultRng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 11
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.next() as f64 / (1u64 << 53) as f64) < p
    }

    async fn delay(&mut self, max: Duration) {
        let max_us = max.as_micros() as u64;
        if max_us > 0 {
            tokio::time::sleep(Duration::from_micros(self.next() % max_us)).await;
        }
    }
}

impl MySqlFaultRelay {
    /// Starts the relay on `rt`.
    pub fn start(
        rt: &tokio::runtime::Runtime,
        target: std::net::SocketAddr,
        faults: MySqlFaults,
    ) -> MySqlFaultRelay {
        use std::sync::atomic::Ordering::Relaxed;
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind relay");
        let addr = listener.local_addr().expect("relay addr");
        let stats = std::sync::Arc::new(MySqlFaultStats::default());
        let s = stats.clone();
        rt.spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    continue;
                };
                let Ok(outbound) = tokio::net::TcpStream::connect(target).await else {
                    continue;
                };
                let n = s.connections.fetch_add(1, Relaxed);
                let seed = faults.seed ^ (n + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                tokio::spawn(fault_connection(inbound, outbound, faults, seed, s.clone()));
            }
        });
        MySqlFaultRelay { addr, stats }
    }
}

/// Relays one connection until either side closes or a fault ends it (dropping both sockets).
async fn fault_connection(
    inbound: tokio::net::TcpStream,
    outbound: tokio::net::TcpStream,
    faults: MySqlFaults,
    seed: u64,
    stats: std::sync::Arc<MySqlFaultStats>,
) {
    use std::sync::atomic::Ordering::{Relaxed, SeqCst};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (mut client_rd, mut client_wr) = inbound.into_split();
    let (mut server_rd, mut server_wr) = outbound.into_split();
    // Set before a COMMIT to swallow reaches the server, so its reply is never relayed.
    let swallow = std::sync::atomic::AtomicBool::new(false);
    let upstream = async {
        let mut rng = FaultRng(seed);
        let mut buf = vec![0u8; 64 * 1024];
        // Bytes of the client's packets not yet complete (a packet may span chunks).
        let mut pending: Vec<u8> = Vec::new();
        loop {
            let n = match client_rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            rng.delay(faults.max_latency).await;
            if rng.chance(faults.cut_per_chunk) {
                stats.cuts.fetch_add(1, Relaxed);
                return;
            }
            pending.extend_from_slice(&buf[..n]);
            let mut at = 0;
            let mut commit = false;
            while pending.len() - at >= 4 {
                let len =
                    u32::from_le_bytes([pending[at], pending[at + 1], pending[at + 2], 0]) as usize;
                if pending.len() - at < 4 + len {
                    break;
                }
                let seq = pending[at + 3];
                let payload = &pending[at + 4..at + 4 + len];
                if seq == 0 && payload.first() == Some(&0x03) && is_commit(&payload[1..]) {
                    commit = true;
                }
                at += 4 + len;
            }
            pending.drain(..at);
            if commit {
                stats.commits.fetch_add(1, Relaxed);
                if rng.chance(faults.swallow_commit) {
                    swallow.store(true, SeqCst);
                }
            }
            if server_wr.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let downstream = async {
        let mut rng = FaultRng(seed.rotate_left(17) ^ 0x5bd1_e995);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match server_rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if swallow.load(SeqCst) {
                // The server answered the COMMIT: it is applied, and the client never hears so.
                stats.swallowed.fetch_add(1, Relaxed);
                return;
            }
            rng.delay(faults.max_latency).await;
            if rng.chance(faults.cut_per_chunk) {
                stats.cuts.fetch_add(1, Relaxed);
                return;
            }
            if client_wr.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = upstream => {}
        _ = downstream => {}
    }
}

#[cfg(test)]
mod fault_relay_tests {
    #[test]
    fn commits_are_recognised() {
        for q in [
            "COMMIT",
            "commit",
            "  Commit ;",
            "COMMIT WORK",
            "XA COMMIT 'x'",
        ] {
            assert!(super::is_commit(q.as_bytes()), "{q}");
        }
        for q in [
            "START TRANSACTION",
            "SELECT 'COMMIT'",
            "COMMITTED",
            "ROLLBACK",
        ] {
            assert!(!super::is_commit(q.as_bytes()), "{q}");
        }
    }
}
