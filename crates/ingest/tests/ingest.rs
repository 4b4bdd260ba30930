//! End-to-end ingest tests: a real websocket server over loopback -> `ingest` -> librdkafka's mock
//! cluster (real Kafka wire protocol), read back with a consumer.

mod common;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{
    consume_all, metric, mock_cluster, start, trade, wait_metric, wait_until, ws_server, Step,
};
use tradewind_ingest::IngestConfig;
use tradewind_model::now_ms;

const TRADES_PARTS: i32 = 4;

fn cfg(source: String, brokers: String) -> IngestConfig {
    let mut c = IngestConfig::new(vec![source], brokers);
    c.flush_timeout = Duration::from_secs(30);
    c
}

async fn wait_frames(registry: &prometheus::Registry, n: u64) {
    let frames = ["tradewind_ingest_frames_total"];
    wait_metric(registry, &frames, n as f64).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_frames_delivered_once_unchanged_keyed_and_ordered() {
    let mock = mock_cluster(&[("trades", TRADES_PARTS), ("trades.dlq", 1)]);
    let bases = ["bitcoin", "ethereum", "solana", "dogecoin", "xrp"];
    let ts = now_ms() - 5_000;
    let mut frames = Vec::new();
    for i in 0..5_000u64 {
        let base = bases[(i * 7 % 5) as usize];
        let mut f = trade(base, i, ts + i as i64);
        if i % 10 == 0 {
            // Unusual but valid formatting and an unknown field must survive byte for byte.
            f = f.replace(",\"quote\"", " , \"quote\"");
            f.insert_str(f.len() - 1, r#","extra":[1,{"a":null}]"#);
        }
        frames.push(f);
    }
    let script = frames.iter().cloned().map(Step::Text).collect();
    let (addr, _obs) = ws_server(vec![script]).await;
    let (h, stop, registry) = start(cfg(
        format!("ws://{addr}/trades/binance"),
        mock.bootstrap_servers(),
    ));
    wait_frames(&registry, frames.len() as u64).await;
    stop.send(true).unwrap();
    let stats = h.await.unwrap();
    assert!(stats.flushed);
    assert_eq!(stats.frames, 5_000);
    assert_eq!(stats.produced, 5_000);
    assert_eq!(stats.rejected_total(), 0);
    assert_eq!(stats.delivery_errors, 0);

    let recs = consume_all(
        &mock.bootstrap_servers(),
        "trades",
        TRADES_PARTS,
        frames.len(),
    );
    assert_eq!(
        recs.len(),
        frames.len(),
        "exactly once: no loss, no duplicate"
    );
    // Every frame exactly once, bytes unchanged.
    let mut want: HashMap<&[u8], usize> = HashMap::new();
    for f in &frames {
        *want.entry(f.as_bytes()).or_default() += 1;
    }
    for r in &recs {
        let left = want.get_mut(r.payload.as_slice()).unwrap_or_else(|| {
            panic!("unexpected payload {}", String::from_utf8_lossy(&r.payload))
        });
        assert!(*left > 0, "duplicate payload");
        *left -= 1;
    }
    // Keyed by base; each base in one partition, in send order.
    let mut part_of: HashMap<String, i32> = HashMap::new();
    let mut seq_of: HashMap<String, Vec<String>> = HashMap::new();
    for r in &recs {
        let key = String::from_utf8(r.key.clone().expect("keyed")).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
        assert_eq!(v["base"], key.as_str(), "key is the base");
        let p = *part_of.entry(key.clone()).or_insert(r.partition);
        assert_eq!(p, r.partition, "base {key} spread over partitions");
        seq_of
            .entry(key)
            .or_default()
            .push(String::from_utf8(r.payload.clone()).unwrap());
    }
    for (base, got) in seq_of {
        let sent: Vec<&String> = frames
            .iter()
            .filter(|f| f.contains(&format!("\"base\":\"{base}\"")))
            .collect();
        assert_eq!(got.iter().collect::<Vec<_>>(), sent, "order of {base}");
    }
    assert_eq!(
        metric(&registry, "tradewind_ingest_produced_total", None),
        5_000.0
    );
    assert_eq!(metric(&registry, "tradewind_ingest_inflight", None), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_bad_frame_is_dead_lettered_with_its_reason() {
    let mock = mock_cluster(&[("trades", TRADES_PARTS), ("trades.dlq", 1)]);
    let ts = now_ms() - 1_000;
    let good = trade("bitcoin", 1, ts);
    let bad: Vec<(&str, Step)> = vec![
        ("syntax", Step::Text("{not json".into())),
        ("syntax", Step::Binary(good.clone().into_bytes())),
        ("not_object", Step::Text("[1,2,3]".into())),
        (
            "missing_field",
            Step::Text(good.replace(r#""volume":2.001,"#, "")),
        ),
        (
            "wrong_type",
            Step::Text(good.replace(r#""price":101.5"#, r#""price":"101.5""#)),
        ),
        (
            "non_positive",
            Step::Text(good.replace(r#""price":101.5"#, r#""price":-101.5"#)),
        ),
        (
            "non_positive",
            Step::Text(good.replace(r#""volume":2.001"#, r#""volume":0"#)),
        ),
        ("non_finite", Step::Text(good.replace("2.001", "1e999"))),
        (
            "bad_direction",
            Step::Text(good.replace(r#""sell""#, r#""hold""#)),
        ),
        (
            "empty_id",
            Step::Text(good.replace(r#""bitcoin""#, r#""""#)),
        ),
        (
            "future_timestamp",
            Step::Text(good.replace(&ts.to_string(), &(ts + 3_600_000).to_string())),
        ),
        (
            "source_error",
            Step::Text("Unauthorized: invalid or missing API key".into()),
        ),
    ];
    // Bad frames interleaved with good ones: ingestion must carry on after each.
    let mut script = Vec::new();
    let mut goods = Vec::new();
    for (i, (_, step)) in bad.iter().enumerate() {
        script.push(step.clone());
        let g = trade("ethereum", i as u64, ts);
        goods.push(g.clone());
        script.push(Step::Text(g));
    }
    let (addr, _obs) = ws_server(vec![script]).await;
    let (h, stop, registry) = start(cfg(
        format!("ws://{addr}/trades/ALL"),
        mock.bootstrap_servers(),
    ));
    wait_frames(&registry, (bad.len() + goods.len()) as u64).await;
    // Counters match per reason as soon as the frames are in.
    let mut want: HashMap<&str, u64> = HashMap::new();
    for (reason, _) in &bad {
        *want.entry(reason).or_default() += 1;
    }
    for (reason, n) in &want {
        assert_eq!(
            metric(
                &registry,
                "tradewind_ingest_rejected_total",
                Some(("reason", reason))
            ),
            *n as f64,
            "counter for {reason}"
        );
    }
    stop.send(true).unwrap();
    let stats = h.await.unwrap();
    assert!(stats.flushed);
    assert_eq!(stats.produced, goods.len() as u64);
    assert_eq!(stats.rejected_total(), bad.len() as u64);
    assert_eq!(
        stats
            .rejected
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect::<HashMap<_, _>>(),
        want
    );

    let dlq = consume_all(&mock.bootstrap_servers(), "trades.dlq", 1, bad.len());
    assert_eq!(dlq.len(), bad.len());
    let mut seen: HashMap<String, u64> = HashMap::new();
    for r in &dlq {
        let reason = r.header("tw-reason").expect("tw-reason header").to_string();
        assert_eq!(r.header("tw-stage"), Some("ingest"));
        assert!(!r.header("tw-detail").unwrap_or("").is_empty());
        assert_eq!(
            r.header("tw-origin"),
            Some(format!("ws://{addr}/trades/ALL").as_str())
        );
        // The payload is the frame as received.
        let sent = bad
            .iter()
            .filter(|(k, _)| *k == reason)
            .any(|(_, s)| match s {
                Step::Text(t) => t.as_bytes() == r.payload.as_slice(),
                Step::Binary(b) => b == &r.payload,
                _ => false,
            });
        assert!(
            sent,
            "{reason}: payload {:?} not sent",
            String::from_utf8_lossy(&r.payload)
        );
        *seen.entry(reason).or_default() += 1;
    }
    assert_eq!(
        seen,
        want.iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect::<HashMap<_, _>>()
    );
    let trades = consume_all(
        &mock.bootstrap_servers(),
        "trades",
        TRADES_PARTS,
        goods.len(),
    );
    assert_eq!(trades.len(), goods.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_and_idle_connections_are_reestablished_and_counted() {
    let mock = mock_cluster(&[("trades", TRADES_PARTS), ("trades.dlq", 1)]);
    let ts = now_ms() - 1_000;
    let batch = |from: u64| -> Vec<Step> {
        (from..from + 10)
            .map(|i| Step::Text(trade("bitcoin", i, ts + i as i64)))
            .collect()
    };
    // Connection 0: 10 frames then an abrupt TCP drop. Connection 1: 10 frames, a ping, then
    // silence (the idle timeout must fire). Connection 2 onwards: 10 frames, then open and quiet.
    let mut c1 = batch(10);
    c1.push(Step::Ping);
    c1.push(Step::Sleep(Duration::from_secs(30)));
    let mut c0 = batch(0);
    c0.push(Step::Abort);
    let (addr, obs) = ws_server(vec![c0, c1, batch(20)]).await;
    let mut c = cfg(format!("ws://{addr}/trades/ALL"), mock.bootstrap_servers());
    c.idle_timeout = Duration::from_millis(700);
    let (h, stop, registry) = start(c);
    wait_frames(&registry, 30).await;
    assert!(
        wait_until(Duration::from_secs(5), || obs.pongs.load(Ordering::SeqCst)
            >= 1)
        .await,
        "ping answered with a pong"
    );
    assert!(obs.connections.load(Ordering::SeqCst) >= 3);
    assert!(metric(&registry, "tradewind_ingest_reconnects_total", None) >= 2.0);
    stop.send(true).unwrap();
    let stats = h.await.unwrap();
    assert!(
        stats.reconnects >= 2,
        "abrupt close + idle timeout: {stats:?}"
    );
    // The idle timeout keeps cycling connection >= 2, but frames are 10 per connection: at least 30.
    assert!(stats.frames >= 30);
    assert_eq!(stats.produced, stats.frames);
    let recs = consume_all(
        &mock.bootstrap_servers(),
        "trades",
        TRADES_PARTS,
        stats.produced as usize,
    );
    assert_eq!(recs.len() as u64, stats.produced);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_mid_stream_loses_nothing_received() {
    let mock = mock_cluster(&[("trades", TRADES_PARTS), ("trades.dlq", 1)]);
    let ts = now_ms() - 60_000;
    let bases = ["bitcoin", "ethereum", "tether", "cardano"];
    let script: Vec<Step> = (0..300_000u64)
        .map(|i| Step::Text(trade(bases[(i % 4) as usize], i, ts + (i / 100) as i64)))
        .collect();
    let (addr, _obs) = ws_server(vec![script]).await;
    let mut c = cfg(format!("ws://{addr}/trades/ALL"), mock.bootstrap_servers());
    // A small window: reading is throttled by Kafka acknowledgements (backpressure).
    c.max_inflight = 2_000;
    let (h, stop, registry) = start(c);
    wait_frames(&registry, 20_000).await;
    assert!(metric(&registry, "tradewind_ingest_inflight", None) <= 2_000.0);
    stop.send(true).unwrap();
    let stats = h.await.unwrap();
    assert!(stats.flushed);
    assert!(stats.frames >= 20_000);
    assert!(
        stats.frames < 300_000,
        "shutdown stopped reading mid-stream"
    );
    assert_eq!(
        stats.produced, stats.frames,
        "every received frame acknowledged"
    );
    assert_eq!(stats.delivery_errors, 0);
    let recs = consume_all(
        &mock.bootstrap_servers(),
        "trades",
        TRADES_PARTS,
        stats.frames as usize,
    );
    assert_eq!(
        recs.len() as u64,
        stats.frames,
        "everything received is in Kafka"
    );
    // What arrived is a prefix of what was sent, per base, with no gap.
    let mut per_base: HashMap<Vec<u8>, u64> = HashMap::new();
    for r in &recs {
        *per_base.entry(r.key.clone().unwrap()).or_default() += 1;
    }
    let total: u64 = per_base.values().sum();
    assert_eq!(total, stats.frames);
}
