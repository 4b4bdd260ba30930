//! Oversized frames from a hostile upstream (issue 32), over a real websocket into librdkafka's mock
//! cluster: every rejected frame leaves a dead-letter record whatever its size (cut to 64 KiB with its
//! length and SHA-256 when longer), nothing far larger than a trade reaches `trades`, and a message
//! over the websocket limit is counted and the source reconnected.

mod common;

use std::collections::HashMap;

use common::{consume_all, metric, mock_cluster, start, trade, wait_metric, ws_server, Rec, Step};
use sha2::{Digest, Sha256};
use tradewind_ingest::pipeline::DEFAULT_MAX_FRAME_BYTES;
use tradewind_ingest::IngestConfig;
use tradewind_kafka::MAX_DEAD_LETTER_PAYLOAD;
use tradewind_model::now_ms;

const TRADES_PARTS: i32 = 4;

/// The websocket limit of these tests: above the 17 MB array below, so the frames of the issue are
/// read, and small enough that the one message over it stays cheap to send.
const WS_LIMIT: usize = 20 << 20;

fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// A valid trade with `field` added before the closing brace.
fn with_field(trade: &str, field: &str) -> String {
    format!("{},{field}}}", &trade[..trade.len() - 1])
}

/// A trade whose `base` is `n` bytes long (the model's reason: `invalid_id`).
fn long_base(n: usize, ts: i64) -> String {
    trade("bitcoin", 0, ts).replace("\"bitcoin\"", &format!("\"{}\"", "b".repeat(n)))
}

/// An object of `n` keys and none of a trade's fields (`missing_field`).
fn many_keys(n: usize) -> String {
    let mut s = String::with_capacity(n * 12);
    s.push('{');
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!("\"k{i}\":0"));
    }
    s.push('}');
    s
}

/// A JSON array of `n` trades (`not_object`).
fn trade_array(n: usize, ts: i64) -> String {
    let items: Vec<String> = (0..n as u64).map(|i| trade("bitcoin", i, ts)).collect();
    format!("[{}]", items.join(","))
}

/// A valid trade with an extra field holding `depth` levels of nested objects.
fn nested(depth: usize, ts: i64) -> String {
    let field = format!("\"x\":{}{{}}{}", "{\"a\":".repeat(depth), "}".repeat(depth));
    with_field(&trade("solana", 9, ts), &field)
}

fn cfg(source: String, brokers: String) -> IngestConfig {
    let mut c = IngestConfig::new(vec![source], brokers);
    c.ws_max_message_bytes = WS_LIMIT;
    c
}

/// Checks that `rec` is the dead letter of `frame` with `reason`: the whole frame when it fits the
/// dead-letter bound, otherwise its first 64 KiB with its length and SHA-256.
fn assert_dead_letter_of(rec: &Rec, frame: &[u8], reason: &str, what: &str) {
    assert_eq!(rec.header("tw-reason"), Some(reason), "{what}");
    assert_eq!(rec.header("tw-stage"), Some("ingest"), "{what}");
    let detail = rec.header("tw-detail").unwrap_or("");
    assert!(
        !detail.is_empty() && detail.len() <= 1024,
        "{what}: {detail}"
    );
    if frame.len() <= MAX_DEAD_LETTER_PAYLOAD {
        assert_eq!(rec.payload, frame, "{what}: kept whole");
        assert_eq!(rec.header("tw-original-length"), None, "{what}");
        assert_eq!(rec.header("tw-sha256"), None, "{what}");
    } else {
        assert_eq!(
            rec.payload,
            &frame[..MAX_DEAD_LETTER_PAYLOAD],
            "{what}: first 64 KiB"
        );
        let len = frame.len().to_string();
        assert_eq!(
            rec.header("tw-original-length"),
            Some(len.as_str()),
            "{what}"
        );
        let digest = sha256_hex(frame);
        assert_eq!(rec.header("tw-sha256"), Some(digest.as_str()), "{what}");
    }
}

/// Finds the dead letter whose payload starts like `frame` (every frame here has a distinct start).
fn find<'a>(dlq: &'a [Rec], frame: &[u8]) -> Option<&'a Rec> {
    let head = &frame[..frame.len().min(MAX_DEAD_LETTER_PAYLOAD)];
    dlq.iter().find(|r| r.payload == head)
}

/// The payloads of `recs` as a multiset.
fn multiset(payloads: impl IntoIterator<Item = Vec<u8>>) -> HashMap<Vec<u8>, usize> {
    let mut m = HashMap::new();
    for p in payloads {
        *m.entry(p).or_default() += 1;
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_frames_are_dead_lettered_too_large_and_only_trades_reach_trades() {
    let mock = mock_cluster(&[("trades", TRADES_PARTS), ("trades.dlq", 1)]);
    let ts = now_ms() - 1_000;
    // The frames of the issue, at its sizes, plus one just over the trade bound (kept whole) and a
    // binary one. Each is a `too_large` under the default 16 KiB bound, never parsed.
    let bad: Vec<(&str, Vec<u8>, bool)> = vec![
        ("12 MB base", long_base(12_000_000, ts).into_bytes(), false),
        ("500,000 keys", many_keys(500_000).into_bytes(), false),
        (
            "array of 100,000 trades",
            trade_array(100_000, ts).into_bytes(),
            false,
        ),
        (
            "50,000 nested levels",
            nested(50_000, ts).into_bytes(),
            false,
        ),
        (
            "valid trade of 20 KB",
            with_field(
                &trade("cardano", 3, ts),
                &format!("\"pad\":\"{}\"", "p".repeat(20_000)),
            )
            .into_bytes(),
            false,
        ),
        ("binary 100 KB", vec![b'{'; 100_000], true),
    ];
    assert!(bad[2].1.len() > 10_000_000 && bad[2].1.len() < WS_LIMIT);
    assert!(bad[4].1.len() > DEFAULT_MAX_FRAME_BYTES && bad[4].1.len() < MAX_DEAD_LETTER_PAYLOAD);
    let mut goods = Vec::new();
    let mut first = Vec::new();
    for (i, (_, frame, binary)) in bad.iter().enumerate() {
        let g = trade("ethereum", i as u64, ts);
        first.push(Step::Text(g.clone()));
        goods.push(g);
        first.push(if *binary {
            Step::Binary(frame.clone())
        } else {
            Step::Text(String::from_utf8(frame.clone()).expect("text"))
        });
    }
    // Over the websocket limit: not read, the connection is dropped. The next connection carries on.
    first.push(Step::Text(trade("xrp", 0, ts) + &" ".repeat(WS_LIMIT)));
    let second: Vec<Step> = (0..3u64)
        .map(|i| trade("dogecoin", i, ts))
        .inspect(|g| goods.push(g.clone()))
        .map(Step::Text)
        .collect();
    let (addr, _obs) = ws_server(vec![first, second]).await;
    let (h, stop, registry) = start(cfg(
        format!("ws://{addr}/trades/ALL"),
        mock.bootstrap_servers(),
    ));
    wait_metric(
        &registry,
        &["tradewind_ingest_frames_total"],
        (bad.len() + goods.len()) as f64,
    )
    .await;
    assert_eq!(
        metric(&registry, "tradewind_ingest_frames_too_large_total", None),
        1.0
    );
    assert_eq!(
        metric(
            &registry,
            "tradewind_ingest_rejected_total",
            Some(("reason", "too_large"))
        ),
        bad.len() as f64
    );
    stop.send(true).unwrap();
    let stats = h.await.unwrap();
    assert!(stats.flushed);
    assert_eq!(stats.delivery_errors, 0, "no dead letter failed: {stats:?}");
    assert_eq!(stats.frames_too_large, 1);
    assert!(stats.reconnects >= 1, "{stats:?}");
    assert_eq!(stats.produced, goods.len() as u64);
    assert_eq!(
        stats.rejected.into_iter().collect::<Vec<_>>(),
        [("too_large", bad.len() as u64)]
    );

    let dlq = consume_all(&mock.bootstrap_servers(), "trades.dlq", 1, bad.len());
    assert_eq!(dlq.len(), bad.len(), "one dead letter per rejected frame");
    for (what, frame, _) in &bad {
        let rec = find(&dlq, frame).unwrap_or_else(|| panic!("{what}: no dead letter"));
        assert_dead_letter_of(rec, frame, "too_large", what);
        assert_eq!(
            rec.header("tw-origin"),
            Some(format!("ws://{addr}/trades/ALL").as_str())
        );
    }
    // Exactly the valid frames on `trades`, none of them large.
    let trades = consume_all(
        &mock.bootstrap_servers(),
        "trades",
        TRADES_PARTS,
        goods.len(),
    );
    assert_eq!(
        multiset(trades.into_iter().map(|r| r.payload)),
        multiset(goods.into_iter().map(String::into_bytes))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejects_over_the_broker_limit_keep_their_reason_and_are_cut() {
    let mock = mock_cluster(&[("trades", TRADES_PARTS), ("trades.dlq", 1)]);
    let ts = now_ms() - 1_000;
    // With the trade bound raised past them, frames over the broker's 1 MB limit reach the
    // validator and are dead-lettered with the model's reason, cut.
    let bad: Vec<(&str, String)> = vec![
        ("invalid_id", long_base(2_000_000, ts)),
        ("missing_field", many_keys(150_000)),
        ("not_object", trade_array(10_000, ts)),
        ("syntax", format!("{{\"{}", "s".repeat(1_500_000))),
    ];
    let mut script = Vec::new();
    let mut goods = Vec::new();
    for (i, (_, frame)) in bad.iter().enumerate() {
        assert!(frame.len() > 1_000_000, "over the broker's record limit");
        script.push(Step::Text(frame.clone()));
        let g = trade("ethereum", i as u64, ts);
        script.push(Step::Text(g.clone()));
        goods.push(g);
    }
    let (addr, _obs) = ws_server(vec![script]).await;
    let mut c = cfg(format!("ws://{addr}/trades/ALL"), mock.bootstrap_servers());
    c.max_frame_bytes = WS_LIMIT;
    let (h, stop, registry) = start(c);
    wait_metric(
        &registry,
        &["tradewind_ingest_frames_total"],
        (bad.len() + goods.len()) as f64,
    )
    .await;
    stop.send(true).unwrap();
    let stats = h.await.unwrap();
    assert!(stats.flushed);
    assert_eq!(stats.delivery_errors, 0, "no dead letter failed: {stats:?}");
    assert_eq!(stats.produced, goods.len() as u64);
    let dlq = consume_all(&mock.bootstrap_servers(), "trades.dlq", 1, bad.len());
    assert_eq!(dlq.len(), bad.len(), "one dead letter per rejected frame");
    for (reason, frame) in &bad {
        let rec =
            find(&dlq, frame.as_bytes()).unwrap_or_else(|| panic!("{reason}: no dead letter"));
        assert_dead_letter_of(rec, frame.as_bytes(), reason, reason);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exchange_frame_over_the_bound_is_dead_lettered_before_normalising() {
    let mock = mock_cluster(&[("trades", 1), ("trades.dlq", 1)]);
    let t = now_ms() - 2_000;
    let binance = |extra: &str| {
        format!(
            r#"{{"e":"trade","E":{t},"s":"BTCUSDT","t":1,"p":"30000.10","q":"0.5","T":{t},"m":true,"M":true{extra}}}"#
        )
    };
    // A valid Binance trade padded to 100 KB: normalising would drop the padding and produce it.
    let padded = binance(&format!(r#","pad":"{}""#, "p".repeat(100_000)));
    let (addr, _obs) = ws_server(vec![vec![
        Step::Text(padded.clone()),
        Step::Text(binance("")),
    ]])
    .await;
    let c = cfg(
        format!("binance:BTCUSDT@ws://{addr}"),
        mock.bootstrap_servers(),
    );
    let (h, stop, registry) = start(c);
    wait_metric(&registry, &["tradewind_ingest_produced_total"], 1.0).await;
    stop.send(true).unwrap();
    let stats = h.await.unwrap();
    assert!(stats.flushed);
    assert_eq!(stats.produced, 1, "only the plain trade: {stats:?}");
    let dlq = consume_all(&mock.bootstrap_servers(), "trades.dlq", 1, 1);
    assert_eq!(dlq.len(), 1);
    assert_dead_letter_of(
        &dlq[0],
        padded.as_bytes(),
        "too_large",
        "padded Binance frame",
    );
    let trades = consume_all(&mock.bootstrap_servers(), "trades", 1, 1);
    assert_eq!(trades.len(), 1);
    assert!(trades[0].payload.len() < 200, "a normalised CoinCap trade");
}
