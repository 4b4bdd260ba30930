//! Websocket sources: CoinCap v2 trades (frames forwarded unchanged), CoinCap v3 prices (quote USD
//! rates), Binance spot `@trade` and Coinbase `matches` (normalised into the CoinCap shape).
//!
//! Every source runs the same connection loop ([`run_source`]): connect, read until the stream closes,
//! errors or stays silent for the idle timeout, then reconnect with exponential backoff (125 ms doubling
//! to a 60 s cap, reset after a session that delivered data; the delays come from `backon`). Pings are
//! answered by tungstenite on the next read; the loop flushes the queued pong right away.
//!
//! Sizes: a websocket message over [`SourceOptions::ws_max_message_bytes`] is not read at all
//! (tungstenite refuses it and the connection is lost): it is counted in
//! `tradewind_ingest_frames_too_large_total` and logged with what to do. A trade source's frame over
//! the pipeline's frame bound is dead-lettered as `too_large` before any normaliser parses it.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::watch;
use tokio::time::Sleep;
use tokio_tungstenite::tungstenite::error::CapacityError;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tradewind_model::{Reject, RejectKind};
use tradewind_telemetry::Backoff;

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
/// Default websocket message (and frame) size limit, in bytes (16 MiB, tungstenite's frame limit):
/// a longer message is refused unread and the connection dropped. Messages between the trade frame
/// bound ([`crate::pipeline::DEFAULT_MAX_FRAME_BYTES`]) and this limit are read and dead-lettered as
/// `too_large`, cut; the limit bounds the memory one message can take.
pub const DEFAULT_WS_MAX_MESSAGE_BYTES: usize = 16 << 20;

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

/// `url` for logs and the `tw-origin` header: the `apiKey` query value and any password replaced by
/// `REDACTED`. A URL with nothing secret is returned as given.
fn redact(url: &url::Url) -> String {
    let has_key = url.query_pairs().any(|(k, _)| k == "apiKey");
    if !has_key && url.password().is_none() {
        return url.as_str().to_owned();
    }
    let mut u = url.clone();
    if u.password().is_some() {
        // Only fails for URLs that cannot carry a password, which this one does.
        let _ = u.set_password(Some("REDACTED"));
    }
    if has_key {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == "apiKey" { "REDACTED".into() } else { v };
                (k.into_owned(), v.into_owned())
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    u.into()
}

/// `binance:BTCUSDT,ETHUSDT[@base-url]`: the combined-stream URL of those symbols' `@trade` streams.
fn binance_spec(rest: &str) -> anyhow::Result<(SourceKind, String)> {
    let (syms, base) = rest.split_once('@').unwrap_or((rest, BINANCE_WS));
    let streams: Vec<String> = split_list(syms)
        .iter()
        .map(|s| format!("{}@trade", s.to_ascii_lowercase()))
        .collect();
    anyhow::ensure!(!streams.is_empty(), "binance: source needs symbols");
    let base = base.trim_end_matches('/');
    let url = format!("{base}/stream?streams={}", streams.join("/"));
    Ok((SourceKind::Binance, url))
}

/// `coinbase:BTC-USD,ETH-USD[@url]`: the feed URL and the product ids to subscribe to.
fn coinbase_spec(rest: &str) -> anyhow::Result<(SourceKind, String)> {
    let (products, url) = rest.split_once('@').unwrap_or((rest, COINBASE_WS));
    let products: Vec<String> = split_list(products)
        .into_iter()
        .map(|p| p.to_ascii_uppercase())
        .collect();
    anyhow::ensure!(!products.is_empty(), "coinbase: source needs product ids");
    Ok((SourceKind::Coinbase { products }, url.to_string()))
}

/// `coincap-prices:bitcoin,ethereum[@url]`: the CoinCap v3 prices URL for those asset ids.
fn coincap_prices_spec(rest: &str) -> anyhow::Result<(SourceKind, String)> {
    let (assets, base) = rest.split_once('@').unwrap_or((rest, COINCAP_V3_PRICES));
    let assets = split_list(assets);
    anyhow::ensure!(!assets.is_empty(), "coincap-prices: source needs asset ids");
    let url = format!("{base}?assets={}", assets.join(","));
    Ok((SourceKind::CoinCapPrices, url))
}

/// The protocol of a plain `ws://` / `wss://` source URL, from its host and path.
fn url_kind(spec: &str) -> anyhow::Result<SourceKind> {
    let u = url::Url::parse(spec).map_err(|e| anyhow::anyhow!("bad source `{spec}`: {e}"))?;
    anyhow::ensure!(
        matches!(u.scheme(), "ws" | "wss"),
        "source `{spec}` must be a ws:// or wss:// URL or a binance:/coinbase:/coincap-prices: spec"
    );
    let host = u.host_str().unwrap_or("");
    Ok(if host.contains("binance") {
        SourceKind::Binance
    } else if host.contains("coinbase") {
        anyhow::bail!("Coinbase needs product ids: use coinbase:BTC-USD,ETH-USD[@{spec}]")
    } else if u.path().starts_with("/prices") {
        SourceKind::CoinCapPrices
    } else {
        SourceKind::CoinCapTrades
    })
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
            binance_spec(rest)?
        } else if let Some(rest) = spec.strip_prefix("coinbase:") {
            coinbase_spec(rest)?
        } else if let Some(rest) = spec.strip_prefix("coincap-prices:") {
            coincap_prices_spec(rest)?
        } else {
            (url_kind(spec)?, spec.to_string())
        };
        let mut parsed =
            url::Url::parse(&url).map_err(|e| anyhow::anyhow!("bad source URL `{url}`: {e}"))?;
        let has_key = parsed.query_pairs().any(|(k, _)| k == "apiKey");
        let key = api_key.filter(|k| !k.is_empty());
        let url = match key {
            Some(key) if kind == SourceKind::CoinCapPrices && !has_key => {
                parsed.query_pairs_mut().append_pair("apiKey", key);
                parsed.to_string()
            }
            _ => url,
        };
        let label = redact(&parsed);
        if parsed.scheme() == "wss" && !cfg!(feature = "tls") {
            anyhow::bail!(
                "source {label} needs TLS (wss://), but this build has no TLS: rebuild with \
                 `--features tradewind-ingest/tls`"
            );
        }
        Ok(SourceSpec { kind, url, label })
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
    /// Largest websocket message (and frame) read, in bytes; a longer one drops the connection and
    /// is counted in `tradewind_ingest_frames_too_large_total`.
    pub ws_max_message_bytes: usize,
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions {
            idle_timeout: Duration::from_secs(30),
            backoff_initial: Duration::from_millis(125),
            backoff_max: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            ws_max_message_bytes: DEFAULT_WS_MAX_MESSAGE_BYTES,
        }
    }
}

/// How a websocket session ended.
enum SessionEnd {
    /// The shutdown signal: close the socket and stop.
    Shutdown,
    /// The connection is gone or useless; reconnect after a backoff delay.
    Lost {
        /// What happened, for the `reconnecting` log line.
        reason: String,
        /// Whether the session delivered data (which resets the backoff).
        got_data: bool,
    },
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
    let mut retry_reason: Option<String> = None;
    while !*shutdown.borrow() {
        if let Some(reason) = retry_reason.take() {
            let delay = backoff.next_delay();
            pipeline.metrics().reconnects.inc();
            tracing::warn!(source = %spec.label, %reason, delay_ms = delay.as_millis() as u64, "reconnecting");
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = crate::shutdown_requested(&mut shutdown) => return,
            }
        }
        let mut ws = match connect(&spec, &opts, &mut shutdown).await {
            Connect::Open(ws) => ws,
            Connect::Failed(reason) => {
                retry_reason = Some(reason);
                continue;
            }
            Connect::Shutdown => return,
        };
        let mut session = Session::new(&spec, &pipeline, &rates);
        match session.run(&opts, &mut ws, &mut shutdown).await {
            SessionEnd::Shutdown => {
                let _ = tokio::time::timeout(Duration::from_secs(1), (*ws).close(None)).await;
                return;
            }
            SessionEnd::Lost { reason, got_data } => {
                if got_data {
                    backoff.reset();
                }
                retry_reason = Some(reason);
            }
        }
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Result of one connection attempt.
enum Connect {
    Open(Box<Ws>),
    Failed(String),
    Shutdown,
}

/// Opens the websocket (bounded by the connect timeout) and sends the subscription a Coinbase source
/// needs.
async fn connect(
    spec: &SourceSpec,
    opts: &SourceOptions,
    shutdown: &mut watch::Receiver<bool>,
) -> Connect {
    let limit = opts.ws_max_message_bytes.max(1);
    let config = WebSocketConfig::default()
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit));
    let connect =
        tokio_tungstenite::connect_async_with_config(spec.url.as_str(), Some(config), true);
    let attempt = tokio::select! {
        r = tokio::time::timeout(opts.connect_timeout, connect) => r,
        _ = crate::shutdown_requested(shutdown) => return Connect::Shutdown,
    };
    let mut ws = match attempt {
        Ok(Ok((ws, _resp))) => Box::new(ws),
        Ok(Err(e)) => return Connect::Failed(format!("connect failed: {e}")),
        Err(_) => {
            let t = opts.connect_timeout;
            return Connect::Failed(format!("connect timed out after {t:?}"));
        }
    };
    tracing::info!(source = %spec.label, "connected");
    if let SourceKind::Coinbase { products } = &spec.kind {
        let sub = normalize::coinbase_subscribe(products);
        if let Err(e) = ws.send(Message::text(sub)).await {
            return Connect::Failed(format!("subscribe failed: {e}"));
        }
    }
    Connect::Open(ws)
}

/// What waiting for the next frame gave.
enum Read {
    Message(Message),
    Shutdown,
    Lost(String),
    /// A message over the websocket size limit: refused unread, the connection is unusable.
    TooLarge {
        size: usize,
        limit: usize,
    },
}

/// Waits for the next websocket message, the shutdown signal, or `idle_timeout` of silence since
/// `last_frame`. `idle` is one long-lived timer, moved forward only when it fires early, so a busy
/// socket does not arm a new timer per frame.
async fn read_message(
    ws: &mut Ws,
    mut idle: Pin<&mut Sleep>,
    idle_timeout: Duration,
    last_frame: Instant,
    shutdown: &mut watch::Receiver<bool>,
) -> Read {
    loop {
        let next = tokio::select! {
            biased;
            _ = crate::shutdown_requested(shutdown) => return Read::Shutdown,
            m = ws.next() => m,
            _ = &mut idle => {
                let silent = last_frame.elapsed();
                if silent >= idle_timeout {
                    return Read::Lost(format!("idle timeout: no frame for {silent:?}"));
                }
                idle.as_mut().reset((last_frame + idle_timeout).into());
                continue;
            }
        };
        return match next {
            None => Read::Lost("server ended the stream".into()),
            Some(Err(tokio_tungstenite::tungstenite::Error::Capacity(
                CapacityError::MessageTooLong { size, max_size },
            ))) => Read::TooLarge {
                size,
                limit: max_size,
            },
            Some(Err(e)) => Read::Lost(format!("read error: {e}")),
            Some(Ok(m)) => Read::Message(m),
        };
    }
}

/// One connected websocket session of a source: turns frames into submissions to the pipeline.
struct Session<'a> {
    spec: &'a SourceSpec,
    pipeline: &'a Pipeline,
    rates: &'a RateTable,
    /// Whether a trade or price arrived (a good session resets the reconnect backoff).
    got_data: bool,
    /// Buffer the normalisers write CoinCap JSON into, reused across frames.
    scratch: Vec<u8>,
}

impl<'a> Session<'a> {
    fn new(spec: &'a SourceSpec, pipeline: &'a Pipeline, rates: &'a RateTable) -> Self {
        Session {
            spec,
            pipeline,
            rates,
            got_data: false,
            scratch: Vec::with_capacity(256),
        }
    }

    fn origin(&self) -> Option<&'a str> {
        Some(self.spec.label.as_str())
    }

    fn lost(&self, reason: String) -> SessionEnd {
        SessionEnd::Lost {
            reason,
            got_data: self.got_data,
        }
    }

    /// Reads and handles messages until the connection is lost or shutdown is requested.
    async fn run(
        &mut self,
        opts: &SourceOptions,
        ws: &mut Ws,
        shutdown: &mut watch::Receiver<bool>,
    ) -> SessionEnd {
        let idle = tokio::time::sleep(opts.idle_timeout);
        tokio::pin!(idle);
        let mut last_frame = Instant::now();
        loop {
            let msg = match read_message(ws, idle.as_mut(), opts.idle_timeout, last_frame, shutdown)
                .await
            {
                Read::Message(m) => m,
                Read::Shutdown => return SessionEnd::Shutdown,
                Read::Lost(reason) => return self.lost(reason),
                Read::TooLarge { size, limit } => return self.too_large(size, limit),
            };
            last_frame = Instant::now();
            if let Err(reason) = self.on_message(ws, msg).await {
                return self.lost(reason);
            }
        }
    }

    /// A message over the websocket limit: counted, logged with what to do, and the session ends
    /// (tungstenite does not read past it).
    fn too_large(&self, size: usize, limit: usize) -> SessionEnd {
        self.pipeline.metrics().frames_too_large.inc();
        tracing::error!(
            source = %self.spec.label,
            size,
            limit,
            "source sent a websocket message of {size} bytes, over the {limit}-byte limit: it was \
             not read and is not in the dead-letter topic, and the connection is dropped (a trade is \
             about 170 bytes). Check the source; to keep such messages in the dead-letter topic \
             (cut, with their length and SHA-256) instead, raise --ws-max-message-bytes \
             (TRADEWIND_WS_MAX_MESSAGE_BYTES) above {size}"
        );
        self.lost(format!(
            "websocket message of {size} bytes over the {limit}-byte limit \
             (--ws-max-message-bytes)"
        ))
    }

    /// Whether this source's frames are trades (bounded by the pipeline's frame bound); prices
    /// frames are not produced and may list many assets.
    fn carries_trades(&self) -> bool {
        self.spec.kind != SourceKind::CoinCapPrices
    }

    /// Handles one message; `Err` ends the session with that reason.
    async fn on_message(&mut self, ws: &mut Ws, msg: Message) -> Result<(), String> {
        let frame: Option<&[u8]> = match &msg {
            Message::Text(t) => Some(t.as_bytes()),
            Message::Binary(b) => Some(b),
            _ => None,
        };
        // Before any parse: a trade source's frame far larger than a trade is dead-lettered as is.
        if let Some(frame) = frame.filter(|_| self.carries_trades()) {
            if self
                .pipeline
                .reject_if_too_large(frame, self.origin())
                .await
            {
                return Ok(());
            }
        }
        match msg {
            Message::Text(text) => self.on_text(text.as_bytes()).await,
            Message::Binary(bytes) => {
                let r = Reject::new(
                    RejectKind::Syntax,
                    "binary frame, expected a JSON text frame",
                );
                self.pipeline
                    .submit_rejected(&bytes, r, self.origin())
                    .await;
                Ok(())
            }
            // tungstenite queued the pong; push it out now rather than on the next read.
            Message::Ping(_) => ws.flush().await.map_err(|e| format!("pong failed: {e}")),
            Message::Close(frame) => Err(match frame {
                Some(f) => format!("server closed: {} {}", f.code, f.reason),
                None => "server closed".into(),
            }),
            Message::Pong(_) | Message::Frame(_) => Ok(()),
        }
    }

    /// Handles one text frame according to the source's protocol.
    async fn on_text(&mut self, frame: &[u8]) -> Result<(), String> {
        match &self.spec.kind {
            SourceKind::CoinCapTrades => {
                self.coincap_trade(frame).await;
                Ok(())
            }
            SourceKind::CoinCapPrices => self.coincap_prices(frame).await,
            SourceKind::Binance | SourceKind::Coinbase { .. } => {
                self.exchange_trade(frame).await;
                Ok(())
            }
        }
    }

    /// A CoinCap trade frame, forwarded unchanged (or dead-lettered if it is a source error).
    async fn coincap_trade(&mut self, frame: &[u8]) {
        self.got_data = true;
        match normalize::source_error(frame) {
            None => {
                self.pipeline.submit(frame, self.origin()).await;
            }
            Some(r) => {
                tracing::error!(source = %self.spec.label, detail = %r.detail, "source error frame");
                self.pipeline.submit_rejected(frame, r, self.origin()).await;
            }
        }
    }

    /// A CoinCap prices frame: updates the rate table. A refused key ends the session.
    async fn coincap_prices(&mut self, frame: &[u8]) -> Result<(), String> {
        match normalize::coincap_prices(frame, self.rates) {
            PricesOutcome::Updated(n) => {
                self.got_data = true;
                self.pipeline.metrics().price_updates.inc_by(n as u64);
                Ok(())
            }
            PricesOutcome::Reject(r) => {
                let fatal = r.kind == RejectKind::SourceError;
                tracing::error!(source = %self.spec.label, detail = %r.detail, "prices source error");
                self.pipeline.submit_rejected(frame, r, self.origin()).await;
                if fatal {
                    // A refused key will not fix itself on this connection.
                    return Err("source refused the connection (Unauthorized)".into());
                }
                Ok(())
            }
        }
    }

    /// A Binance or Coinbase frame, normalised into a CoinCap trade.
    async fn exchange_trade(&mut self, frame: &[u8]) {
        self.scratch.clear();
        let n = if self.spec.kind == SourceKind::Binance {
            normalize::binance(frame, self.rates, &mut self.scratch)
        } else {
            normalize::coinbase(frame, self.rates, &mut self.scratch)
        };
        match n {
            Normalized::Trade => {
                self.got_data = true;
                self.pipeline.submit(&self.scratch, self.origin()).await;
            }
            Normalized::Ignore => {}
            Normalized::Reject(r) => {
                self.pipeline.submit_rejected(frame, r, self.origin()).await;
            }
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
        // The key is URL-encoded when appended, and never in the label.
        let s = SourceSpec::parse(
            "coincap-prices:bitcoin@ws://u:pw@127.0.0.1:9/prices",
            Some("a&b"),
        )
        .unwrap();
        assert_eq!(
            s.url,
            "ws://u:pw@127.0.0.1:9/prices?assets=bitcoin&apiKey=a%26b"
        );
        assert_eq!(
            s.label,
            "ws://u:REDACTED@127.0.0.1:9/prices?assets=bitcoin&apiKey=REDACTED"
        );
        assert!(SourceSpec::parse("http://x", None).is_err());
        if !cfg!(feature = "tls") {
            let e = SourceSpec::parse(COINCAP_V2_TRADES, None).unwrap_err();
            assert!(e.to_string().contains("TLS"), "{e}");
        }
    }
}
