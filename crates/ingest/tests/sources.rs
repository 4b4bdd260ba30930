//! Normalising sources end to end: Binance `@trade` and Coinbase `matches` frames served over a real
//! websocket become CoinCap trades in Kafka; a CoinCap prices socket that answers `Unauthorized` is
//! dead-lettered as `source_error` and reconnected with backoff.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{consume_all, mock_cluster, start, wait_metric, wait_until, ws_server, Step};
use tradewind_ingest::IngestConfig;
use tradewind_model::{now_ms, validate, Direction, Validator};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binance_and_coinbase_are_normalised_into_coincap_trades() {
    let mock = mock_cluster(&[("trades", 3), ("trades.dlq", 1)]);
    let t = now_ms() - 2_000;
    let binance = vec![
        Step::Text(format!(
            r#"{{"stream":"btcusdt@trade","data":{{"e":"trade","E":{t},"s":"BTCUSDT","t":1,"p":"30000.10","q":"0.5","T":{t},"m":true,"M":true}}}}"#
        )),
        Step::Ping,
        Step::Text(format!(
            r#"{{"stream":"ethbtc@trade","data":{{"e":"trade","E":{t},"s":"ETHBTC","t":2,"p":"0.05","q":"2","T":{t},"m":false,"M":true}}}}"#
        )),
    ];
    let coinbase = vec![
        Step::AwaitTexts(1, Duration::from_secs(5)),
        Step::Text(
            r#"{"type":"subscriptions","channels":[{"name":"matches","product_ids":["BTC-USD"]}]}"#
                .into(),
        ),
        Step::Text(format!(
            r#"{{"type":"match","trade_id":10,"sequence":50,"time":"{}","product_id":"BTC-USD","size":"5.23512","price":"400.23","side":"sell"}}"#,
            iso(t)
        )),
        Step::Text(r#"{"type":"heartbeat","sequence":51}"#.into()),
    ];
    let (baddr, bobs) = ws_server(vec![binance]).await;
    let (caddr, cobs) = ws_server(vec![coinbase]).await;
    let cfg = IngestConfig::new(
        vec![
            format!("binance:BTCUSDT,ETHBTC@ws://{baddr}"),
            format!("coinbase:BTC-USD@ws://{caddr}/"),
        ],
        mock.bootstrap_servers(),
    );
    let (h, stop, registry) = start(cfg);
    wait_metric(&registry, &["tradewind_ingest_produced_total"], 3.0).await;
    assert!(
        wait_until(Duration::from_secs(5), || bobs.pongs.load(Ordering::SeqCst)
            >= 1)
        .await
    );
    stop.send(true).unwrap();
    let stats = h.await.unwrap();
    assert_eq!(stats.produced, 3);
    assert_eq!(stats.rejected_total(), 0, "{stats:?}");

    assert_eq!(
        bobs.paths.lock().unwrap().as_slice(),
        ["/stream?streams=btcusdt@trade/ethbtc@trade"]
    );
    let sub: serde_json::Value =
        serde_json::from_str(&cobs.texts.lock().unwrap()[0]).expect("subscribe message");
    assert_eq!(sub["type"], "subscribe");
    assert_eq!(sub["product_ids"][0], "BTC-USD");
    assert_eq!(sub["channels"][0], "matches");

    let recs = consume_all(&mock.bootstrap_servers(), "trades", 3, 3);
    assert_eq!(recs.len(), 3);
    let trades: Vec<_> = recs
        .iter()
        .map(|r| {
            let tr = validate(&r.payload, now_ms(), &Validator::default())
                .expect("valid CoinCap trade")
                .to_owned_trade();
            assert_eq!(r.key.as_deref(), Some(tr.base.as_bytes()));
            tr
        })
        .collect();
    let find = |ex: &str, base: &str| {
        trades
            .iter()
            .find(|t| t.exchange == ex && t.base == base)
            .unwrap_or_else(|| panic!("{ex}/{base} missing in {trades:?}"))
    };
    let btc = find("binance", "bitcoin");
    assert_eq!(btc.quote, "tether");
    assert_eq!(
        btc.direction,
        Direction::Sell,
        "buyer was maker: taker sold"
    );
    assert_eq!(
        (btc.price, btc.volume, btc.price_usd),
        (30000.1, 0.5, 30000.1)
    );
    let eth = find("binance", "ethereum");
    assert_eq!(eth.quote, "bitcoin");
    assert_eq!(eth.direction, Direction::Buy);
    assert!(
        (eth.price_usd - 0.05 * 30000.1).abs() < 1e-9,
        "quote rate from BTCUSDT"
    );
    let cb = find("coinbase", "bitcoin");
    assert_eq!(cb.quote, "united-states-dollar");
    assert_eq!(cb.direction, Direction::Buy, "maker sold: taker bought");
    assert_eq!(cb.timestamp, t);
    assert_eq!((cb.price, cb.volume), (400.23, 5.23512));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorized_prices_socket_is_dead_lettered_and_reconnected() {
    let mock = mock_cluster(&[("trades", 1), ("trades.dlq", 1)]);
    let (addr, obs) = ws_server(vec![
        vec![Step::Text("Unauthorized: invalid API key".into())],
        vec![Step::Text(
            r#"{"bitcoin":"6929.82176","ethereum":"404.97745"}"#.into(),
        )],
    ])
    .await;
    let mut cfg = IngestConfig::new(
        vec![format!(
            "coincap-prices:bitcoin,ethereum@ws://{addr}/prices"
        )],
        mock.bootstrap_servers(),
    );
    cfg.api_key = Some("sekrit".into());
    let (h, stop, registry) = start(cfg);
    wait_metric(&registry, &["tradewind_ingest_price_updates_total"], 2.0).await;
    stop.send(true).unwrap();
    let stats = h.await.unwrap();
    assert_eq!(stats.rejected.get("source_error"), Some(&1));
    assert!(stats.reconnects >= 1);
    assert_eq!(stats.produced, 0, "price frames are not trades");
    assert!(obs.connections.load(Ordering::SeqCst) >= 2);
    assert_eq!(
        obs.paths.lock().unwrap()[0],
        "/prices?assets=bitcoin,ethereum&apiKey=sekrit"
    );
    let dlq = consume_all(&mock.bootstrap_servers(), "trades.dlq", 1, 1);
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].header("tw-reason"), Some("source_error"));
    assert_eq!(dlq[0].payload, b"Unauthorized: invalid API key");
    let origin = dlq[0].header("tw-origin").unwrap();
    assert!(origin.contains("apiKey=REDACTED") && !origin.contains("sekrit"));
}

/// Epoch ms -> RFC 3339 with microseconds, as Coinbase writes it.
fn iso(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil from days (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}417Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms.rem_euclid(1000)
    )
}
