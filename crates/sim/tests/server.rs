//! The simulator over a real websocket on loopback, with a tokio-tungstenite client.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tradewind_model::{now_ms, validate, RejectKind, Validator};
use tradewind_sim::{
    generate, serve, Faults, MarketConfig, SimConfig, SimMetrics, SimulateConfig,
    MALFORMED_ROTATION,
};

const START: i64 = 1_700_000_000_000;

struct Server {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Server {
    async fn start(cfg: SimConfig) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(serve(listener, cfg, rx));
        Server { addr, stop, task }
    }

    fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("server stops")
            .unwrap()
            .unwrap();
    }
}

#[derive(Debug)]
enum Ending {
    /// The server sent a close frame (then the stream ended).
    Closed(Option<CloseFrame>),
    /// The connection failed without a close handshake.
    Error(String),
}

/// Reads every frame until the connection ends; returns the text frames and how it ended.
async fn collect(url: &str) -> (Vec<String>, Ending) {
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    let mut frames = Vec::new();
    let mut closed = None;
    loop {
        let next = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("a frame or the end within 30 s");
        match next {
            Some(Ok(Message::Text(t))) => frames.push(t.to_string()),
            Some(Ok(Message::Close(f))) => closed = Some(f),
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                return match closed {
                    Some(f) => (frames, Ending::Closed(f)),
                    None => (frames, Ending::Error(e.to_string())),
                }
            }
            None => {
                return (
                    frames,
                    Ending::Closed(closed.expect("stream ended without a close frame")),
                )
            }
        }
    }
}

fn logical(count: u64) -> SimConfig {
    SimConfig {
        market: MarketConfig {
            start_ms: Some(START),
            ..MarketConfig::default()
        },
        rate: 0,
        count: Some(count),
        ..SimConfig::default()
    }
}

fn assert_normal_close(e: &Ending) {
    match e {
        Ending::Closed(Some(f)) => assert_eq!(f.code, CloseCode::Normal),
        other => panic!("expected a normal close, got {other:?}"),
    }
}

fn tmp(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("tw_sim_{}_{name}", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_are_valid_trades_and_reproducible() {
    let n = 20_000;
    let a = Server::start(logical(n)).await;
    let b = Server::start(logical(n)).await;
    let c = Server::start(SimConfig {
        market: MarketConfig {
            seed: 7,
            start_ms: Some(START),
            ..MarketConfig::default()
        },
        ..logical(n)
    })
    .await;
    let (fa, ea) = collect(&a.url("/trades/ALL")).await;
    let (fa2, _) = collect(&a.url("/trades/ALL")).await;
    let (fb, _) = collect(&b.url("/trades/ALL")).await;
    let (fc, _) = collect(&c.url("/trades/ALL")).await;
    assert_normal_close(&ea);
    assert_eq!(fa.len() as u64, n);
    assert_eq!(fa, fb, "same seed, same byte stream (two servers)");
    assert_eq!(fa, fa2, "same seed, same byte stream (two connections)");
    assert_ne!(fa[..100], fc[..100], "different seed, different stream");

    // The same bytes the offline generator produces.
    let offline: Vec<String> = generate(
        MarketConfig {
            start_ms: Some(START),
            ..MarketConfig::default()
        },
        100,
    )
    .map(|t| {
        let mut b = Vec::new();
        tradewind_model::write_json(&t.as_trade(), &mut b);
        String::from_utf8(b).unwrap()
    })
    .collect();
    // Offline uses the market's event rate (1000/s); the server at rate 0 uses the same.
    assert_eq!(fa[..100], offline[..]);

    let now = now_ms();
    let mut bases: HashMap<String, usize> = HashMap::new();
    let mut exchanges: HashMap<String, usize> = HashMap::new();
    let mut last_usd: HashMap<String, f64> = HashMap::new();
    let mut crypto_quoted = 0;
    for f in &fa {
        let t = validate(f.as_bytes(), now, &Validator::default()).expect("valid trade");
        *bases.entry(t.base.to_string()).or_default() += 1;
        *exchanges.entry(t.exchange.to_string()).or_default() += 1;
        assert!(t.timestamp <= START + n as i64 && t.timestamp > START - 1000);
        if matches!(t.quote, "bitcoin" | "ethereum") {
            // price (quote units) * quote's USD price == priceUsd; the quote's USD price seen on
            // the wire moments before agrees within a few per mille.
            if let Some(q) = last_usd.get(t.quote) {
                let implied = t.price_usd / t.price;
                assert!((implied / q - 1.0).abs() < 0.005, "{f} vs {q}");
                crypto_quoted += 1;
            }
        }
        last_usd.insert(t.base.to_string(), t.price_usd);
    }
    assert!(crypto_quoted > 100, "{crypto_quoted} crypto-quoted trades");
    let mut v: Vec<_> = bases.into_iter().collect();
    v.sort_by_key(|x| std::cmp::Reverse(x.1));
    assert_eq!(v[0].0, "bitcoin");
    assert_eq!(v[1].0, "ethereum");
    assert!(v.len() >= 80, "{} bases", v.len());
    assert!(exchanges.len() >= 5);
    for s in [a, b, c] {
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_path_filters_and_unknown_paths_are_refused() {
    let s = Server::start(logical(2000)).await;
    let (frames, end) = collect(&s.url("/trades/binance")).await;
    assert_normal_close(&end);
    assert_eq!(frames.len(), 2000);
    for f in &frames {
        let t = validate(f.as_bytes(), now_ms(), &Validator::default()).unwrap();
        assert_eq!(t.exchange, "binance");
    }
    let (kraken, _) = collect(&s.url("/trades/kraken")).await;
    assert!(kraken.iter().all(|f| f.contains("\"exchange\":\"kraken\"")));
    for bad in ["/trades/nowhere", "/nothing", "/prices"] {
        let r = tokio_tungstenite::connect_async(s.url(bad)).await;
        assert!(r.is_err(), "{bad} must be refused");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prices_frames_map_ids_to_price_strings() {
    let s = Server::start(SimConfig {
        rate: 20_000,
        price_interval_ms: 20,
        count: Some(5),
        ..SimConfig::default()
    })
    .await;
    let (frames, end) = collect(&s.url("/prices?assets=bitcoin,ethereum")).await;
    assert_normal_close(&end);
    assert_eq!(frames.len(), 5);
    for f in &frames {
        let m: HashMap<String, String> = serde_json::from_str(f).expect("id -> string map");
        assert!(!m.is_empty());
        for (k, v) in &m {
            assert!(k == "bitcoin" || k == "ethereum", "{k}");
            assert!(v.parse::<f64>().unwrap() > 0.0);
        }
    }
    let (all, _) = collect(&s.url("/prices?assets=ALL")).await;
    let m: HashMap<String, String> = serde_json::from_str(&all[0]).unwrap();
    assert!(m.len() > 10, "ALL covers many assets: {}", m.len());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_rotate_through_reject_kinds_and_log_records_what_was_sent() {
    let log = tmp("malformed.log");
    let s = Server::start(SimConfig {
        faults: Faults {
            malformed_every: Some(4),
            ..Faults::default()
        },
        log: Some(log.clone()),
        ..logical(400)
    })
    .await;
    let (frames, end) = collect(&s.url("/trades/ALL")).await;
    assert_normal_close(&end);
    assert_eq!(frames.len(), 400);
    let now = now_ms();
    for (i, f) in frames.iter().enumerate() {
        let r = validate(f.as_bytes(), now, &Validator::default());
        if (i + 1) % 4 == 0 {
            let k = (i + 1) / 4 - 1;
            assert_eq!(
                r.expect_err("malformed").kind,
                MALFORMED_ROTATION[k % MALFORMED_ROTATION.len()],
                "frame {i}: {f}"
            );
        } else {
            r.expect("valid");
        }
    }
    let seen: Vec<RejectKind> = frames
        .iter()
        .filter_map(|f| validate(f.as_bytes(), now, &Validator::default()).err())
        .map(|r| r.kind)
        .collect();
    for k in MALFORMED_ROTATION {
        assert!(seen.contains(&k), "{k:?} never sent");
    }
    s.stop().await;
    let logged = std::fs::read_to_string(&log).unwrap();
    let logged: Vec<&str> = logged.lines().collect();
    assert_eq!(logged, frames, "the log holds exactly the frames sent");
    let _ = std::fs::remove_file(log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_after_drops_the_connection_without_a_close_frame() {
    let s = Server::start(SimConfig {
        faults: Faults {
            close_after: Some(25),
            ..Faults::default()
        },
        ..logical(1000)
    })
    .await;
    let (frames, end) = collect(&s.url("/trades/ALL")).await;
    assert_eq!(frames.len(), 25);
    match end {
        Ending::Error(e) => assert!(e.contains("without closing handshake"), "{e}"),
        other => panic!("expected an abrupt close, got {other:?}"),
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorized_sends_the_frame_then_closes() {
    let s = Server::start(SimConfig {
        faults: Faults {
            unauthorized: true,
            ..Faults::default()
        },
        ..logical(1000)
    })
    .await;
    let (frames, end) = collect(&s.url("/prices?assets=ALL")).await;
    assert_eq!(frames, vec!["Unauthorized".to_string()]);
    match end {
        Ending::Closed(Some(f)) => assert_eq!(f.code, CloseCode::Policy),
        other => panic!("{other:?}"),
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stall_goes_quiet_but_answers_pings() {
    let s = Server::start(SimConfig {
        faults: Faults {
            stall_after: Some(5),
            stall_ms: 800,
            ..Faults::default()
        },
        ..logical(10)
    })
    .await;
    let (mut ws, _) = tokio_tungstenite::connect_async(s.url("/trades/ALL"))
        .await
        .unwrap();
    let mut texts = 0;
    while texts < 5 {
        if let Some(Ok(Message::Text(_))) = ws.next().await {
            texts += 1;
        }
    }
    let stalled_at = Instant::now();
    ws.send(Message::Ping(b"are you there".to_vec().into()))
        .await
        .unwrap();
    let mut pong_in_stall = false;
    let mut resumed_after = None;
    while let Some(m) = ws.next().await {
        match m.unwrap() {
            Message::Pong(p) => {
                assert_eq!(&p[..], b"are you there");
                pong_in_stall = resumed_after.is_none();
            }
            Message::Text(_) => {
                texts += 1;
                resumed_after.get_or_insert(stalled_at.elapsed());
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    assert_eq!(texts, 10);
    assert!(pong_in_stall, "ping answered during the stall");
    let gap = resumed_after.unwrap();
    assert!(gap >= Duration::from_millis(600), "stalled only {gap:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_sends_lines_verbatim_in_order_and_filters_by_exchange() {
    let capture = tmp("capture.jsonl");
    let lines = [
        r#"{"exchange":"binance","base":"enzyme","quote":"tether","direction":"buy","price":36.59,"volume":0.901,"timestamp":1666422331415,"priceUsd":36.61348314172131}"#,
        r#"{"exchange":"kraken","base":"bitcoin","quote":"united-states-dollar","direction":"sell","price":19365.5,"volume":0.07,"timestamp":1666422331500,"priceUsd":19365.5}"#,
        r#"{"exchange": "binance", "base":"bitcoin","quote":"tether","direction":"buy","price":19365.59,"volume":0.07,"timestamp":1666422331400,"priceUsd":19371.064153143514}"#,
        r#"{"broken json"#,
        r#"{"exchange":"binance","base":"ethereum","quote":"tether","direction":"sell","price":1300.1,"volume":2,"timestamp":1666422331700,"priceUsd":1300.4}"#,
    ];
    // A blank line, a CRLF line ending, a non-UTF-8 line (cannot be a text frame: skipped) and
    // no final newline.
    let mut bytes = format!("{}\n\n{}\r\n{}\n", lines[0], lines[1], lines[2]).into_bytes();
    bytes.extend_from_slice(b"\xff\xfe not utf-8\n");
    bytes.extend_from_slice(format!("{}\n{}", lines[3], lines[4]).as_bytes());
    std::fs::write(&capture, bytes).unwrap();
    let fast = Server::start(SimConfig {
        replay: Some(capture.clone()),
        speed: 0.0,
        ..SimConfig::default()
    })
    .await;
    let (all, end) = collect(&fast.url("/trades/ALL")).await;
    assert_normal_close(&end);
    assert_eq!(all, lines, "every line verbatim, in order");
    let (binance, _) = collect(&fast.url("/trades/binance")).await;
    assert_eq!(binance, vec![lines[0], lines[2], lines[3], lines[4]]);
    fast.stop().await;

    // At its own pace (x1) the capture spans 285 ms of timestamps; at x0.5 it takes >= 570 ms.
    let paced = Server::start(SimConfig {
        replay: Some(capture.clone()),
        speed: 0.5,
        count: Some(4),
        ..SimConfig::default()
    })
    .await;
    let t0 = Instant::now();
    let (frames, _) = collect(&paced.url("/trades/ALL")).await;
    assert_eq!(frames, lines[..4]);
    assert!(
        t0.elapsed() >= Duration::from_millis(170),
        "{:?}",
        t0.elapsed()
    );
    paced.stop().await;
    let _ = std::fs::remove_file(capture);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_is_paced_and_metrics_count_frames() {
    let registry = prometheus::Registry::new();
    let metrics = SimMetrics::register(&registry).unwrap();
    let s = Server::start(SimConfig {
        rate: 200,
        count: Some(100),
        metrics: Some(metrics.clone()),
        ..SimConfig::default()
    })
    .await;
    let t0 = Instant::now();
    let (frames, end) = collect(&s.url("/trades/ALL")).await;
    let took = t0.elapsed();
    assert_normal_close(&end);
    assert_eq!(frames.len(), 100);
    // 100 frames at 200/s: about half a second (the first is immediate).
    assert!(took >= Duration::from_millis(400), "{took:?}");
    // Wall-clock timestamps: around now.
    let t = validate(frames[99].as_bytes(), now_ms(), &Validator::default()).unwrap();
    assert!((now_ms() - t.timestamp).abs() < 60_000);
    assert_eq!(metrics.frames_sent.get(), 100);
    s.stop().await;
    assert_eq!(metrics.connections.get(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_clients_with_going_away() {
    let s = Server::start(SimConfig {
        rate: 100,
        ..SimConfig::default()
    })
    .await;
    let url = s.url("/trades/ALL");
    let client = tokio::spawn(async move { collect(&url).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.stop().await;
    let (frames, end) = client.await.unwrap();
    assert!(!frames.is_empty());
    match end {
        Ending::Closed(Some(f)) => assert_eq!(f.code, CloseCode::Away),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_jsonl_generates_the_offline_stream() {
    let out = tmp("gen.jsonl");
    let mut cfg = SimulateConfig {
        write_jsonl: Some(out.clone()),
        ..SimulateConfig::default()
    };
    cfg.server.count = Some(5000);
    cfg.server.market = MarketConfig {
        seed: 9,
        markets: 10_000,
        start_ms: Some(1_700_000_000_000),
        ..MarketConfig::default()
    };
    let market = cfg.server.market.clone();
    let (_tx, rx) = watch::channel(false);
    tradewind_sim::run(cfg.clone(), rx.clone()).await.unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    let expect: Vec<String> = generate(market, 5000)
        .map(|t| {
            let mut b = Vec::new();
            tradewind_model::write_json(&t.as_trade(), &mut b);
            String::from_utf8(b).unwrap()
        })
        .collect();
    assert_eq!(text.lines().collect::<Vec<_>>(), expect);
    // Without a count there is nothing to write: an error that names the flag, not a server.
    cfg.server.count = None;
    let e = tradewind_sim::run(cfg, rx).await.unwrap_err();
    assert!(e.to_string().contains("--count"), "{e}");
    let _ = std::fs::remove_file(out);
}
