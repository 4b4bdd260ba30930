//! Broker-side failures: transient produce errors and disconnects are retried by the idempotent
//! producer with no loss and no duplicate; a permanent error is counted as a delivery error and
//! ingestion carries on.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{consume_all, mock_cluster, start, trade, wait_metric, ws_server, Step};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use tradewind_ingest::IngestConfig;
use tradewind_model::now_ms;

fn histogram_count(registry: &prometheus::Registry, name: &str) -> u64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric())
        .map(|m| m.get_histogram().get_sample_count())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_broker_errors_are_retried_without_loss_or_duplicates() {
    let mock = mock_cluster(&[("trades", 2), ("trades.dlq", 1)]);
    use RDKafkaRespErr::*;
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[
            RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RD_KAFKA_RESP_ERR__TRANSPORT,
            RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
        ],
    );
    let ts = now_ms() - 1_000;
    let frames: Vec<String> = (0..3_000u64)
        .map(|i| trade(["bitcoin", "ethereum"][(i % 2) as usize], i, ts))
        .collect();
    let (addr, _obs) = ws_server(vec![frames.iter().cloned().map(Step::Text).collect()]).await;
    let cfg = IngestConfig::new(
        vec![format!("ws://{addr}/trades/ALL")],
        mock.bootstrap_servers(),
    );
    let (h, stop, registry) = start(cfg);
    wait_metric(&registry, &["tradewind_ingest_frames_total"], 3_000.0).await;
    stop.send(true).unwrap();
    let stats = h.await.unwrap();
    assert!(stats.flushed);
    assert_eq!(stats.delivery_errors, 0, "{stats:?}");
    assert_eq!(stats.produced, 3_000);
    assert_eq!(
        histogram_count(&registry, "tradewind_ingest_delivery_latency_seconds"),
        3_000,
        "one latency sample per acknowledged record"
    );
    let recs = consume_all(&mock.bootstrap_servers(), "trades", 2, 3_000);
    assert_eq!(recs.len(), 3_000, "idempotent retries: no duplicates");
    let distinct: HashSet<&[u8]> = recs.iter().map(|r| r.payload.as_slice()).collect();
    assert_eq!(distinct.len(), 3_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_delivery_errors_are_counted_and_ingestion_continues() {
    let mock = mock_cluster(&[("trades", 1), ("trades.dlq", 1)]);
    let ts = now_ms() - 1_000;
    let first: Vec<Step> = (0..50u64)
        .map(|i| Step::Text(trade("bitcoin", i, ts)))
        .collect();
    let mut script = vec![Step::Sleep(Duration::from_millis(300))];
    script.extend(first);
    script.push(Step::Sleep(Duration::from_millis(1_500)));
    script.extend((50..100u64).map(|i| Step::Text(trade("bitcoin", i, ts))));
    let (addr, _obs) = ws_server(vec![script]).await;
    let cfg = IngestConfig::new(
        vec![format!("ws://{addr}/trades/ALL")],
        mock.bootstrap_servers(),
    );
    // The next produce request is refused for good.
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED],
    );
    let (h, stop, registry) = start(cfg);
    let settled = [
        "tradewind_ingest_produced_total",
        "tradewind_ingest_delivery_errors_total",
    ];
    wait_metric(&registry, &settled, 100.0).await;
    stop.send(true).unwrap();
    let stats = h.await.unwrap();
    assert_eq!(stats.frames, 100);
    assert!(stats.delivery_errors >= 1, "{stats:?}");
    assert!(
        stats.produced >= 50,
        "later frames still delivered: {stats:?}"
    );
    assert_eq!(stats.produced + stats.delivery_errors, 100);
    let recs = consume_all(
        &mock.bootstrap_servers(),
        "trades",
        1,
        stats.produced as usize,
    );
    assert_eq!(recs.len() as u64, stats.produced);
}
