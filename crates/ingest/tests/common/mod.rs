//! Test harness: a scripted websocket server over real loopback TCP, a librdkafka mock cluster,
//! and a consumer that reads a topic back with partitions, keys and headers.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message as _};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::{Offset, TopicPartitionList};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tradewind_ingest::{ingest, IngestConfig, IngestStats};

/// One step of a scripted connection.
#[derive(Clone, Debug)]
pub enum Step {
    /// Send a text frame.
    Text(String),
    /// Send a binary frame.
    Binary(Vec<u8>),
    /// Send a ping.
    Ping,
    /// Wait.
    Sleep(Duration),
    /// Drop the TCP connection without a close handshake.
    Abort,
    /// Wait until the client has sent this many text messages in total (recorded), up to the duration.
    AwaitTexts(usize, Duration),
}

/// What the server observed.
#[derive(Default, Debug)]
pub struct Observed {
    /// Connections accepted.
    pub connections: AtomicUsize,
    /// Pongs received from the client.
    pub pongs: AtomicUsize,
    /// Text messages received from the client (e.g. subscribe requests).
    pub texts: Mutex<Vec<String>>,
    /// Request paths of the handshakes.
    pub paths: Mutex<Vec<String>>,
}

/// A websocket server whose n-th connection plays `scripts[n]` (the last script repeats) and then
/// stays open, reading (so pongs and client messages are observed), until the client leaves.
pub async fn ws_server(scripts: Vec<Vec<Step>>) -> (SocketAddr, Arc<Observed>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let obs = Arc::new(Observed::default());
    let o = Arc::clone(&obs);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            tcp.set_nodelay(true).ok();
            let n = o.connections.fetch_add(1, Ordering::SeqCst);
            let script = scripts[n.min(scripts.len() - 1)].clone();
            let o = Arc::clone(&o);
            tokio::spawn(async move {
                let paths = Arc::clone(&o);
                #[allow(clippy::result_large_err)] // the callback signature is tungstenite's
                let cb = move |req: &tokio_tungstenite::tungstenite::handshake::server::Request,
                               resp| {
                    paths.paths.lock().unwrap().push(req.uri().to_string());
                    Ok(resp)
                };
                let Ok(ws) = tokio_tungstenite::accept_hdr_async(tcp, cb).await else {
                    return;
                };
                let (mut tx, mut rx) = ws.split();
                // Read concurrently with the script, so pongs and client messages are seen at once.
                let ro = Arc::clone(&o);
                let reader = tokio::spawn(async move {
                    while let Some(Ok(m)) = rx.next().await {
                        match m {
                            Message::Pong(_) => {
                                ro.pongs.fetch_add(1, Ordering::SeqCst);
                            }
                            Message::Text(t) => ro.texts.lock().unwrap().push(t.to_string()),
                            Message::Close(_) => break,
                            _ => {}
                        }
                    }
                });
                for step in script {
                    let r = match step {
                        Step::Text(t) => tx.feed(Message::text(t)).await,
                        Step::Binary(b) => tx.feed(Message::binary(b)).await,
                        Step::Ping => tx.send(Message::Ping(b"hi".to_vec().into())).await,
                        Step::Sleep(d) => {
                            let _ = tx.flush().await;
                            tokio::time::sleep(d).await;
                            Ok(())
                        }
                        Step::Abort => {
                            let _ = tx.flush().await;
                            // Dropping both halves closes the socket with no close frame.
                            reader.abort();
                            let _ = reader.await;
                            return;
                        }
                        Step::AwaitTexts(n, d) => {
                            let _ = tx.flush().await;
                            let deadline = tokio::time::Instant::now() + d;
                            while o.texts.lock().unwrap().len() < n
                                && tokio::time::Instant::now() < deadline
                            {
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                            Ok(())
                        }
                    };
                    if r.is_err() {
                        reader.abort();
                        return;
                    }
                }
                let _ = tx.flush().await;
                // Keep the connection open until the client leaves.
                let _ = reader.await;
                drop(tx);
            });
        }
    });
    (addr, obs)
}

/// A mock Kafka cluster with `topics` created (`(name, partitions)`).
pub fn mock_cluster(topics: &[(&str, i32)]) -> MockCluster<'static, DefaultProducerContext> {
    let mock = MockCluster::new(1).unwrap();
    for (t, p) in topics {
        mock.create_topic(t, *p, 1).unwrap();
    }
    mock
}

/// A record read back from Kafka.
#[derive(Debug, Clone)]
pub struct Rec {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Payload bytes.
    pub payload: Vec<u8>,
    /// Headers as (key, value) strings.
    pub headers: Vec<(String, String)>,
}

impl Rec {
    /// Value of header `k`.
    pub fn header(&self, k: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(h, _)| h == k)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads every record of `topic` (all `partitions`) from the beginning until `expect` records have
/// arrived and nothing more shows up for a short while, or `timeout` passes. Sorted by
/// (partition, offset).
pub fn consume_all(brokers: &str, topic: &str, partitions: i32, expect: usize) -> Vec<Rec> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "tw-ingest-test-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut quiet_since: Option<Instant> = None;
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                quiet_since = None;
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|x| {
                                (
                                    x.key.to_string(),
                                    String::from_utf8_lossy(x.value.unwrap_or_default())
                                        .into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(Rec {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    payload: m.payload().unwrap_or_default().to_vec(),
                    headers,
                });
            }
            Some(Err(e)) => panic!("consume error: {e}"),
            None => {
                if out.len() >= expect {
                    let q = *quiet_since.get_or_insert_with(Instant::now);
                    if q.elapsed() > Duration::from_millis(500) {
                        break;
                    }
                }
            }
        }
    }
    out.sort_by_key(|r| (r.partition, r.offset));
    out
}

/// Current value of a counter/gauge family member in `registry` (0 if absent). `label` filters on
/// `(name, value)`.
pub fn metric(registry: &prometheus::Registry, name: &str, label: Option<(&str, &str)>) -> f64 {
    for fam in registry.gather() {
        if fam.name() != name {
            continue;
        }
        for m in fam.get_metric() {
            let ok = match label {
                None => true,
                Some((k, v)) => m
                    .get_label()
                    .iter()
                    .any(|l| l.name() == k && l.value() == v),
            };
            if ok {
                // Exactly one of the two is set for counters/gauges; the other reads 0.
                return m.get_counter().get_value() + m.get_gauge().get_value();
            }
        }
    }
    0.0
}

/// Starts `ingest(cfg)` on its own task with a fresh registry; returns the task, the shutdown
/// sender and the registry.
pub fn start(
    cfg: IngestConfig,
) -> (
    JoinHandle<IngestStats>,
    watch::Sender<bool>,
    prometheus::Registry,
) {
    let registry = prometheus::Registry::new();
    let (tx, rx) = watch::channel(false);
    let reg = registry.clone();
    let h = tokio::spawn(async move { ingest(cfg, &reg, rx).await.expect("ingest runs") });
    (h, tx, registry)
}

/// Waits until the sum of the counters `names` in `registry` reaches `at_least`; fails the test with
/// the value reached if it does not within 30 s.
pub async fn wait_metric(registry: &prometheus::Registry, names: &[&str], at_least: f64) {
    let sum = || names.iter().map(|n| metric(registry, n, None)).sum::<f64>();
    let ok = wait_until(Duration::from_secs(30), || sum() >= at_least).await;
    assert!(ok, "{names:?} reached only {} of {at_least}", sum());
}

/// Polls until `f()` is true or `timeout` passes; returns whether it became true.
pub async fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

/// A valid CoinCap trade frame, unique by `seq` (in the volume), dated `ts`.
pub fn trade(base: &str, seq: u64, ts: i64) -> String {
    format!(
        r#"{{"exchange":"binance","base":"{base}","quote":"tether","direction":"{}","price":{}.5,"volume":{}.001,"timestamp":{ts},"priceUsd":{}.51}}"#,
        if seq % 2 == 0 { "buy" } else { "sell" },
        100 + seq % 7,
        seq + 1,
        100 + seq % 7,
    )
}
