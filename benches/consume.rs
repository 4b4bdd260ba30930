//! The consume-only ceiling: a librdkafka consumer (same client and fetch settings as the engine,
//! `tradewind_kafka::consumer_config`) that reads every partition of a topic from the beginning until
//! partition EOF on all of them and does nothing else with the records (counts messages and bytes).
//!
//! Used by `benches/e2e.sh` as the "limit" the end-to-end engine is compared with. Partitions are
//! assigned directly (no group join), so the time is pure fetch throughput.
//!
//! Two ways to read (`TW_CONSUME_MODE`):
//! - `batch` (default): the engine's own consumer path (`tradewind_engine::consumer`: every partition
//!   forwarded to one queue, `rd_kafka_consume_batch_queue` on the poll thread, payloads copied into
//!   raw batches of the engine's default size) with nothing done to the batches: the engine's floor;
//! - `poll`: one `BaseConsumer::poll` per message, as a plain rdkafka application reads.
//!
//! Run: `TRADEWIND_BROKERS=127.0.0.1:19092 TW_CONSUME_TOPIC=bench cargo bench --bench consume`
//! Prints one JSON line: {system, trades, seconds (first record to last EOF), seconds_total, bytes, ...}.
//! Without `TW_CONSUME_TOPIC` it prints a note and exits 0 (so `cargo test --benches` stays offline).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};

fn main() -> anyhow::Result<()> {
    let Ok(topic) = std::env::var("TW_CONSUME_TOPIC") else {
        eprintln!("consume: set TW_CONSUME_TOPIC (and TRADEWIND_BROKERS) to run; skipping");
        return Ok(());
    };
    let brokers =
        std::env::var("TRADEWIND_BROKERS").unwrap_or_else(|_| "127.0.0.1:19092".to_string());
    let t_start = Instant::now();
    let mut cfg = tradewind_kafka::consumer_config(
        &brokers,
        &format!("tw-consume-ceiling-{}", std::process::id()),
    );
    cfg.set("statistics.interval.ms", "0");
    // Experiments: TW_CONSUME_SET="fetch.wait.max.ms=10,fetch.min.bytes=1" overrides librdkafka settings.
    if let Ok(extra) = std::env::var("TW_CONSUME_SET") {
        for kv in extra.split(',').filter(|s| !s.is_empty()) {
            if let Some((k, v)) = kv.split_once('=') {
                cfg.set(k.trim(), v.trim());
            }
        }
    }
    if std::env::var("TW_CONSUME_MODE").as_deref() != Ok("poll") {
        return batch_mode(&cfg, &topic, t_start);
    }
    let consumer: BaseConsumer = cfg.create()?;
    let (parts, tpl) = every_partition(&consumer, &topic)?;
    // TW_CONSUME_SUBSCRIBE=1: join a consumer group (as the engine does) instead of assigning the
    // partitions directly; the time still counts from the first record.
    if std::env::var("TW_CONSUME_SUBSCRIBE").is_ok_and(|v| v == "1") {
        consumer.subscribe(&[topic.as_str()])?;
    } else {
        consumer.assign(&tpl)?;
    }
    let mut eof: HashSet<i32> = HashSet::new();
    let mut count = 0u64;
    let mut bytes = 0u64;
    let mut first: Option<Instant> = None;
    let deadline = Duration::from_secs(
        std::env::var("TW_CONSUME_TIMEOUT_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(600),
    );
    while eof.len() < parts.len() {
        anyhow::ensure!(
            t_start.elapsed() < deadline,
            "timed out after {count} records"
        );
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(m)) => {
                first.get_or_insert_with(Instant::now);
                count += 1;
                bytes += m.payload_len() as u64;
                eof.remove(&m.partition());
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                eof.insert(p);
            }
            Some(Err(e)) => eprintln!("consume: {e}"),
        }
    }
    let end = Instant::now();
    let secs = first.map_or(0.0, |f| (end - f).as_secs_f64());
    println!(
        "{{\"system\":\"consume-only ceiling (librdkafka, no processing)\",\"trades\":{count},\"seconds\":{secs:.4},\"seconds_total\":{:.4},\"bytes\":{bytes},\"partitions\":{},\"trades_per_s\":{:.0}}}",
        (end - t_start).as_secs_f64(),
        parts.len(),
        if secs > 0.0 { count as f64 / secs } else { 0.0 }
    );
    Ok(())
}

/// The engine's consumer path with nothing done to the batches (see the module docs).
fn batch_mode(cfg: &rdkafka::ClientConfig, topic: &str, t_start: Instant) -> anyhow::Result<()> {
    use std::sync::Arc;
    use tradewind_engine::consumer::{EngineConsumer, EngineContext, FetchQueue, Poller};
    let lag = prometheus::IntGaugeVec::new(prometheus::Opts::new("lag", "lag"), &["partition"])?;
    let consumer: EngineConsumer = cfg.create_with_context(EngineContext::new(topic, lag))?;
    let consumer = Arc::new(consumer);
    let queue = FetchQueue::attach(&consumer)?;
    let (parts, tpl) = every_partition(&consumer, topic)?;
    consumer.context().forward_partitions(&consumer, &tpl);
    consumer.assign(&tpl)?;
    let poller = Poller::start(
        consumer.clone(),
        queue,
        tradewind_engine::DEFAULT_MAX_BATCH_ROWS,
        Duration::from_millis(100),
        None,
    );
    let (mut count, mut bytes) = (0u64, 0u64);
    let mut first: Option<Instant> = None;
    loop {
        anyhow::ensure!(
            t_start.elapsed() < Duration::from_secs(600),
            "timed out after {count} records"
        );
        let polled = match poller.batches.recv_timeout(Duration::from_secs(1)) {
            Ok(p) => p,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
            Err(e) => anyhow::bail!("poll thread stopped: {e}"),
        };
        if !polled.raw.is_empty() {
            first.get_or_insert(polled.at);
        }
        count += polled.raw.len() as u64;
        bytes += (0..polled.raw.len())
            .map(|i| polled.raw.payload(i).len() as u64)
            .sum::<u64>();
        let done = polled.raw.is_empty() && parts.iter().all(|p| polled.eof.contains(p));
        let _ = poller.recycle.try_send(polled.raw);
        if done {
            break;
        }
    }
    let end = Instant::now();
    poller.stop();
    let secs = first.map_or(0.0, |f| (end - f).as_secs_f64());
    println!(
        "{{\"system\":\"consume-only ceiling (the engine's batch poll path, no processing)\",\"trades\":{count},\"seconds\":{secs:.4},\"seconds_total\":{:.4},\"bytes\":{bytes},\"partitions\":{},\"trades_per_s\":{:.0}}}",
        (end - t_start).as_secs_f64(),
        parts.len(),
        if secs > 0.0 { count as f64 / secs } else { 0.0 }
    );
    Ok(())
}

/// Every partition of `topic`, and a list assigning each from the log's beginning.
fn every_partition<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
) -> anyhow::Result<(Vec<i32>, TopicPartitionList)> {
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let parts: Vec<i32> = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    anyhow::ensure!(!parts.is_empty(), "topic {topic} has no partitions");
    let mut tpl = TopicPartitionList::new();
    for &p in &parts {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    Ok((parts, tpl))
}
