//! Websocket sources: CoinCap v2 trades (frames forwarded unchanged), CoinCap v3 prices (quote USD
//! rates), Binance spot `@trade` and Coinbase `matches` (normalised into the CoinCap shape).
//!
//! Every source runs the same connection loop: connect, read until the stream closes, errors or stays
//! silent for the idle timeout, then reconnect with exponential backoff (125 ms doubling to a 60 s cap,
//! reset after a session that delivered data). Pings are answered by tungstenite on the next read; the
//! loop flushes the queued pong right away.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tradewind_model::{Reject, RejectKind};

use crate::normalize::{self, Normalized, PricesOutcome, RateTable};
use crate::pipeline::Pipeline;

/// Default source: the local CoinCap-compatible simulator.
pub const DEFAULT_SOURCE: &str = "ws://127.0.0.1:8765/trades/ALL";
/// CoinCap's v2 trades socket (retired 2025-03-31; kept for reference and compatible servers).
pub const COINCAP_V2_TRADES: &str = "wss://ws.coincap.io/trades/binance";
/// CoinCap's v3 prices socket (needs an API key).
pub const COINCAP_V3_PRICES: &str = "wss://wss.coincap.io/prices";
/// Binance spot combined-stream endpoint.
pub const BINANCE_WS: &str = "wss://stream.binance.com:9443";
/// Coinbase Exchange market-data feed.
pub const COINBASE_WS: &str = "wss://ws-feed.exchange.coinbase.com";

/// Which protocol a source speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind {
    /// CoinCap trades socket: every text frame is a CoinCap trade, forwarded byte for byte.
    CoinCapTrades,
    /// CoinCap prices socket: `{"id":"price"}` frames feed the quote-USD rate table (nothing produced).
    CoinCapPrices,
    /// Binance spot `@trade` streams, normalised.
    Binance,
    /// Coinbase `matches` channel for these products, normalised (subscribe sent on connect).
    Coinbase {
        /// Product ids to subscribe to (`BTC-USD`).
        products: Vec<String>,
    },
}

/// A parsed `--source` value: protocol, URL to connect to, and a label safe to log (no API key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSpec {
    /// Protocol.
    pub kind: SourceKind,
    /// Websocket URL (may carry the API key).
    pub url: String,
    /// The URL with any `apiKey` redacted, for logs and the `tw-origin` header.
    pub label: String,
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_owned)
        .collect()
}

fn redact(url: &str) -> String {
    match url.find("apiKey=") {
        Some(i) => {
            let rest = &url[i + 7..];
            let end = rest.find('&').map(|j| &rest[j..]).unwrap_or("");
            format!("{}apiKey=REDACTED{}", &url[..i], end)
        }
        None => url.to_string(),
    }
}

impl SourceSpec {
    /// Parses a source spec:
    /// * `ws://...` / `wss://...`: detected by host and path (`binance` host: Binance, `coinbase`
    ///   host: Coinbase, path `/prices`: CoinCap prices, anything else: CoinCap trades);
    /// * `binance:BTCUSDT,ETHUSDT[@ws-base-url]`: Binance combined `@trade` streams;
    /// * `coinbase:BTC-USD,ETH-USD[@ws-url]`: Coinbase `matches` for those products;
    /// * `coincap-prices:bitcoin,ethereum[@ws-url]`: CoinCap v3 prices (needs `api_key`).
    ///
    /// `api_key` is appended as `apiKey=` to CoinCap prices URLs that do not carry one.
    pub fn parse(spec: &str, api_key: Option<&str>) -> anyhow::Result<Self> {
        let spec = spec.trim();
        let (kind, url) = if let Some(rest) = spec.strip_prefix("binance:") {
            let (syms, base) = rest.split_once('@').unwrap_or((rest, BINANCE_WS));
            let streams: Vec<String> = split_list(syms)
                .iter()
                .map(|s| format!("{}@trade", s.to_ascii_lowercase()))
                .collect();
            anyhow::ensure!(!streams.is_empty(), "binance: source needs symbols");
            (
                SourceKind::Binance,
                format!(
                    "{}/stream?streams={}",
                    base.trim_end_matches('/'),
                    streams.join("/")
                ),
            )
        } else if let Some(rest) = spec.strip_prefix("coinbase:") {
            let (products, url) = rest.split_once('@').unwrap_or((rest, COINBASE_WS));
            let products: Vec<String> = split_list(products)
                .into_iter()
                .map(|p| p.to_ascii_uppercase())
                .collect();
            anyhow::ensure!(!products.is_empty(), "coinbase: source needs product ids");
            (SourceKind::Coinbase { products }, url.to_string())
        } else if let Some(rest) = spec.strip_prefix("coincap-prices:") {
            let (assets, base) = rest.split_once('@').unwrap_or((rest, COINCAP_V3_PRICES));
            let assets = split_list(assets);
            anyhow::ensure!(!assets.is_empty(), "coincap-prices: source needs asset ids");
            (
                SourceKind::CoinCapPrices,
                format!("{base}?assets={}", assets.join(",")),
            )
        } else {
            let u =
                url::Url::parse(spec).map_err(|e| anyhow::anyhow!("bad source `{spec}`: {e}"))?;
            anyhow::ensure!(
                matches!(u.scheme(), "ws" | "wss"),
                "source `{spec}` must be a ws:// or wss:// URL or a binance:/coinbase:/coincap-prices: spec"
            );
            let host = u.host_str().unwrap_or("");
            let kind = if host.contains("binance") {
                SourceKind::Binance
            } else if host.contains("coinbase") {
                anyhow::bail!("Coinbase needs product ids: use coinbase:BTC-USD,ETH-USD[@{spec}]")
            } else if u.path().starts_with("/prices") {
                SourceKind::CoinCapPrices
            } else {
                SourceKind::CoinCapTrades
            };
            (kind, spec.to_string())
        };
        let mut url = url;
        if kind == SourceKind::CoinCapPrices && !url.contains("apiKey=") {
            if let Some(key) = api_key.filter(|k| !k.is_empty()) {
                let sep = if url.contains('?') { '&' } else { '?' };
                url = format!("{url}{sep}apiKey={key}");
            }
        }
        let parsed = url::Url::parse(&url).map_err(|e| anyhow::anyhow!("bad source URL: {e}"))?;
        if parsed.scheme() == "wss" && !cfg!(feature = "tls") {
            anyhow::bail!(
                "source {} needs TLS (wss://), but this build has no TLS: rebuild with \
                 `--features tradewind-ingest/tls`",
                redact(&url)
            );
        }
        Ok(SourceSpec {
            kind,
            label: redact(&url),
            url,
        })
    }
}

/// Exponential reconnect delay: `initial` doubling up to `max`, reset after a good session.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// A backoff starting at `initial`, capped at `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            next: initial,
        }
    }

    /// The delay to wait now; doubles the following one (up to the cap).
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    /// Back to the initial delay (after a session that delivered data).
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

/// Connection-loop settings of one source.
#[derive(Debug, Clone)]
pub struct SourceOptions {
    /// No frame for this long: reconnect.
    pub idle_timeout: Duration,
    /// First reconnect delay.
    pub backoff_initial: Duration,
    /// Reconnect delay cap.
    pub backoff_max: Duration,
    /// Timeout of the TCP + TLS + websocket handshake.
    pub connect_timeout: Duration,
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions {
            idle_timeout: Duration::from_secs(30),
            backoff_initial: Duration::from_millis(125),
            backoff_max: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

enum SessionEnd {
    Shutdown,
    Lost { reason: String, got_data: bool },
}

/// Runs one source until `shutdown` flips: connect, read, reconnect with backoff.
pub async fn run_source(
    spec: SourceSpec,
    opts: SourceOptions,
    pipeline: Arc<Pipeline>,
    rates: Arc<RateTable>,
    mut shutdown: watch::Receiver<bool>,
) {
    #[cfg(feature = "tls")]
    {
        // rustls needs a process-wide crypto provider; installing twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    let mut backoff = Backoff::new(opts.backoff_initial, opts.backoff_max);
    let mut attempt_reason: Option<String> = None;
    loop {
        if *shutdown.borrow() {
            return;
        }
        if let Some(reason) = attempt_reason.take() {
            let delay = backoff.next_delay();
            pipeline.metrics().reconnects.inc();
            tracing::warn!(source = %spec.label, %reason, delay_ms = delay.as_millis() as u64, "reconnecting");
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = crate::shutdown_requested(&mut shutdown) => return,
            }
        }
        let connect = tokio_tungstenite::connect_async_with_config(
            spec.url.as_str(),
            Some(WebSocketConfig::default()),
            true,
        );
        let ws = tokio::select! {
            r = tokio::time::timeout(opts.connect_timeout, connect) => r,
            _ = crate::shutdown_requested(&mut shutdown) => return,
        };
        let mut ws = match ws {
            Ok(Ok((ws, _resp))) => ws,
            Ok(Err(e)) => {
                attempt_reason = Some(format!("connect failed: {e}"));
                continue;
            }
            Err(_) => {
                attempt_reason = Some(format!(
                    "connect timed out after {:?}",
                    opts.connect_timeout
                ));
                continue;
            }
        };
        tracing::info!(source = %spec.label, "connected");
        if let SourceKind::Coinbase { products } = &spec.kind {
            let sub = normalize::coinbase_subscribe(products);
            if let Err(e) = ws.send(Message::text(sub)).await {
                attempt_reason = Some(format!("subscribe failed: {e}"));
                continue;
            }
        }
        match session(&spec, &opts, &mut ws, &pipeline, &rates, &mut shutdown).await {
            SessionEnd::Shutdown => {
                let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                return;
            }
            SessionEnd::Lost { reason, got_data } => {
                if got_data {
                    backoff.reset();
                }
                attempt_reason = Some(reason);
            }
        }
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn session(
    spec: &SourceSpec,
    opts: &SourceOptions,
    ws: &mut Ws,
    pipeline: &Pipeline,
    rates: &RateTable,
    shutdown: &mut watch::Receiver<bool>,
) -> SessionEnd {
    let origin = Some(spec.label.as_str());
    let mut got_data = false;
    let mut last_frame = Instant::now();
    let idle = tokio::time::sleep(opts.idle_timeout);
    tokio::pin!(idle);
    let mut scratch: Vec<u8> = Vec::with_capacity(256);
    loop {
        let msg = tokio::select! {
            biased;
            _ = crate::shutdown_requested(shutdown) => return SessionEnd::Shutdown,
            m = ws.next() => m,
            _ = &mut idle => {
                let silent = last_frame.elapsed();
                if silent >= opts.idle_timeout {
                    return SessionEnd::Lost {
                        reason: format!("idle timeout: no frame for {silent:?}"),
                        got_data,
                    };
                }
                idle.as_mut().reset((last_frame + opts.idle_timeout).into());
                continue;
            }
        };
        let msg = match msg {
            None => {
                return SessionEnd::Lost {
                    reason: "server ended the stream".into(),
                    got_data,
                }
            }
            Some(Err(e)) => {
                return SessionEnd::Lost {
                    reason: format!("read error: {e}"),
                    got_data,
                }
            }
            Some(Ok(m)) => m,
        };
        last_frame = Instant::now();
        match msg {
            Message::Text(text) => {
                let frame = text.as_bytes();
                match &spec.kind {
                    SourceKind::CoinCapTrades => {
                        got_data = true;
                        match normalize::source_error(frame) {
                            None => {
                                pipeline.submit(frame, origin).await;
                            }
                            Some(r) => {
                                tracing::error!(source = %spec.label, detail = %r.detail, "source error frame");
                                pipeline.submit_rejected(frame, r, origin).await;
                            }
                        }
                    }
                    SourceKind::CoinCapPrices => match normalize::coincap_prices(frame, rates) {
                        PricesOutcome::Updated(n) => {
                            got_data = true;
                            pipeline.metrics().price_updates.inc_by(n as u64);
                        }
                        PricesOutcome::Reject(r) => {
                            let fatal = r.kind == RejectKind::SourceError;
                            tracing::error!(source = %spec.label, detail = %r.detail, "prices source error");
                            pipeline.submit_rejected(frame, r, origin).await;
                            if fatal {
                                // A refused key will not fix itself on this connection.
                                return SessionEnd::Lost {
                                    reason: "source refused the connection (Unauthorized)".into(),
                                    got_data,
                                };
                            }
                        }
                    },
                    SourceKind::Binance | SourceKind::Coinbase { .. } => {
                        scratch.clear();
                        let n = if spec.kind == SourceKind::Binance {
                            normalize::binance(frame, rates, &mut scratch)
                        } else {
                            normalize::coinbase(frame, rates, &mut scratch)
                        };
                        match n {
                            Normalized::Trade => {
                                got_data = true;
                                pipeline.submit(&scratch, origin).await;
                            }
                            Normalized::Ignore => {}
                            Normalized::Reject(r) => {
                                pipeline.submit_rejected(frame, r, origin).await;
                            }
                        }
                    }
                }
            }
            Message::Binary(bytes) => {
                let r = Reject::new(
                    RejectKind::Syntax,
                    "binary frame, expected a JSON text frame",
                );
                pipeline.submit_rejected(&bytes, r, origin).await;
            }
            Message::Ping(_) => {
                // tungstenite queued the pong; push it out now rather than on the next read.
                if let Err(e) = ws.flush().await {
                    return SessionEnd::Lost {
                        reason: format!("pong failed: {e}"),
                        got_data,
                    };
                }
            }
            Message::Close(frame) => {
                return SessionEnd::Lost {
                    reason: match frame {
                        Some(f) => format!("server closed: {} {}", f.code, f.reason),
                        None => "server closed".into(),
                    },
                    got_data,
                }
            }
            Message::Pong(_) | Message::Frame(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs() {
        let s = SourceSpec::parse(DEFAULT_SOURCE, None).unwrap();
        assert_eq!(s.kind, SourceKind::CoinCapTrades);
        let s = SourceSpec::parse("binance:BTCUSDT,ethusdt@ws://127.0.0.1:9/", None).unwrap();
        assert_eq!(s.kind, SourceKind::Binance);
        assert_eq!(
            s.url,
            "ws://127.0.0.1:9/stream?streams=btcusdt@trade/ethusdt@trade"
        );
        let s = SourceSpec::parse("coinbase:btc-usd@ws://127.0.0.1:9", None).unwrap();
        assert_eq!(
            s.kind,
            SourceKind::Coinbase {
                products: vec!["BTC-USD".into()]
            }
        );
        let s =
            SourceSpec::parse("ws://127.0.0.1:9/prices?assets=bitcoin", Some("sekrit")).unwrap();
        assert_eq!(s.kind, SourceKind::CoinCapPrices);
        assert_eq!(
            s.url,
            "ws://127.0.0.1:9/prices?assets=bitcoin&apiKey=sekrit"
        );
        assert_eq!(
            s.label,
            "ws://127.0.0.1:9/prices?assets=bitcoin&apiKey=REDACTED"
        );
        assert!(SourceSpec::parse("http://x", None).is_err());
        if !cfg!(feature = "tls") {
            let e = SourceSpec::parse(COINCAP_V2_TRADES, None).unwrap_err();
            assert!(e.to_string().contains("TLS"), "{e}");
        }
    }

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(125), Duration::from_secs(60));
        let seq: Vec<u64> = (0..12).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(
            seq,
            [125, 250, 500, 1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000]
        );
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(125));
    }
}
