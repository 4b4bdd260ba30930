//! The websocket server: CoinCap v2 paths, pacing, replay, replay log and fault injection.
//!
//! Paths:
//! * `/trades/{exchange}`: one compact JSON trade per text frame, only that exchange's trades;
//!   `/trades/ALL` for every exchange. Unknown exchanges get HTTP 404 (in replay mode any name is
//!   accepted and filters the capture by its `exchange` field).
//! * `/prices?assets=bitcoin,ethereum` (or `assets=ALL`): one frame per tick mapping each asset id
//!   whose USD price changed to the price as a string.
//!
//! With `replay` set, `/trades/...` paths replay the capture (filtered by exchange unless `ALL`;
//! lines whose exchange cannot be read go to every path) and `/prices` still serves the generated
//! market. Malformed-frame injection applies to generated trades only; the other faults apply to
//! every path.
//!
//! Faults apply to every connection (a client that reconnects after `close_after` is cut again
//! after N frames, and gets the seed's stream from its start).
//!
//! Every connection gets its own deterministic stream, a function of the seed (and the exchange):
//! what is sent never depends on wall-clock timing. Only the trade timestamps follow the wall clock,
//! unless `market.start_ms` is set, in which case a logical clock dates trade `i` at
//! `start_ms + i * 1000 / rate` and the frames are byte-reproducible.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use prometheus::{IntCounter, IntGauge, Registry};
use tokio::io::AsyncBufReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Bytes, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;
use tradewind_model::{write_json, RejectKind};

use crate::market::{LogicalClock, Market, MarketConfig, PriceSubscription};

/// Most frames generated and written per batch (one `flush` per batch).
const BATCH_MAX: u64 = 1024;
/// A timestamp far in the future (2100-01-01T00:00:00Z) for the `future_timestamp` fault.
pub const FAR_FUTURE_MS: i64 = 4_102_444_800_000;

/// Which reject each malformed frame provokes, in the order `--fault-malformed-every` rotates
/// through them: the k-th malformed frame (k = 0, 1, ...) is of kind `MALFORMED_ROTATION[k % 11]`.
pub const MALFORMED_ROTATION: [RejectKind; 11] = [
    RejectKind::Syntax,
    RejectKind::WrongType,
    RejectKind::NonPositive,
    RejectKind::MissingField,
    RejectKind::BadDirection,
    RejectKind::FutureTimestamp,
    RejectKind::NotObject,
    RejectKind::EmptyId,
    RejectKind::NonFinite,
    RejectKind::InvalidId,
    RejectKind::OutOfRange,
];

/// Periodic bursts: during the first `duration_ms` of every `every_ms` the rate is multiplied by
/// `factor`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Burst {
    /// Rate multiplier during a burst (e.g. 5.0).
    pub factor: f64,
    /// Period between burst starts, ms.
    pub every_ms: u64,
    /// Length of each burst, ms.
    pub duration_ms: u64,
}

/// Fault injection, per connection. Frame numbers count every frame sent on the connection.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Every N-th frame is malformed (kinds rotate through [`MALFORMED_ROTATION`]); generated
    /// trades only, not replay.
    pub malformed_every: Option<u64>,
    /// After N frames, drop the TCP connection without a close frame.
    pub close_after: Option<u64>,
    /// After N frames, go silent for `stall_ms` (pings are still answered), then resume.
    pub stall_after: Option<u64>,
    /// Length of the stall, ms.
    pub stall_ms: u64,
    /// Send a text frame `Unauthorized`, then close (policy violation), like CoinCap v3 on a bad key.
    pub unauthorized: bool,
}

/// Everything the server needs; `Default` is a 1,000 trades/s wall-clock market with seed 42.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The generated market (seed, number of markets, jitter, late trades, logical start).
    pub market: MarketConfig,
    /// Trades per second per connection; 0 means as fast as the client reads.
    pub rate: u64,
    /// Optional periodic bursts.
    pub burst: Option<Burst>,
    /// Replay this JSON-lines capture (lines sent verbatim) instead of generating trades.
    pub replay: Option<PathBuf>,
    /// Replay speed factor over the capture's own timestamp deltas; 0 means as fast as possible.
    pub speed: f64,
    /// Close the connection normally after this many frames.
    pub count: Option<u64>,
    /// Append every frame sent, exactly as sent, one per line (a test oracle; meaningful with a
    /// single connection, as frames of concurrent connections interleave by batch).
    pub log: Option<PathBuf>,
    /// Fault injection.
    pub faults: Faults,
    /// Interval between `/prices` frames, ms.
    pub price_interval_ms: u64,
    /// Metrics to update (register them with [`SimMetrics::register`]).
    pub metrics: Option<SimMetrics>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            market: MarketConfig::default(),
            rate: 1000,
            burst: None,
            replay: None,
            speed: 1.0,
            count: None,
            log: None,
            faults: Faults::default(),
            price_interval_ms: 500,
            metrics: None,
        }
    }
}

/// The simulator's Prometheus metrics.
#[derive(Debug, Clone)]
pub struct SimMetrics {
    /// `tradewind_sim_frames_sent_total`: frames written to clients.
    pub frames_sent: IntCounter,
    /// `tradewind_sim_connections`: open client connections.
    pub connections: IntGauge,
}

impl SimMetrics {
    /// Creates the metrics and registers them on `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<SimMetrics> {
        let frames_sent = IntCounter::new(
            "tradewind_sim_frames_sent_total",
            "Websocket frames sent by the simulator to its clients.",
        )?;
        let connections = IntGauge::new(
            "tradewind_sim_connections",
            "Client connections currently open on the simulator.",
        )?;
        registry.register(Box::new(frames_sent.clone()))?;
        registry.register(Box::new(connections.clone()))?;
        Ok(SimMetrics {
            frames_sent,
            connections,
        })
    }
}

type Log = Arc<Mutex<BufWriter<File>>>;
type WsSink = SplitSink<WebSocketStream<TcpStream>, Message>;

/// Serves simulator connections on `listener` until `shutdown` turns true; then closes every
/// connection with a normal close frame (waiting up to 5 s) and returns.
pub async fn serve(
    listener: TcpListener,
    cfg: SimConfig,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let log = match &cfg.log {
        Some(p) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("cannot open replay log {}", p.display()))?;
            Some(Arc::new(Mutex::new(BufWriter::with_capacity(1 << 16, f))))
        }
        None => None,
    };
    if let Some(p) = &cfg.replay {
        // Fail at start, not on the first connection.
        std::fs::metadata(p).with_context(|| format!("cannot read capture {}", p.display()))?;
    }
    let cfg = Arc::new(cfg);
    let mut tasks = JoinSet::new();
    tracing::info!(addr = ?listener.local_addr().ok(), rate = cfg.rate, seed = cfg.market.seed,
        replay = ?cfg.replay, "simulator serving");
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((tcp, peer)) => {
                    let _ = tcp.set_nodelay(true);
                    let (cfg, log, shutdown) = (cfg.clone(), log.clone(), shutdown.clone());
                    tasks.spawn(async move {
                        if let Err(e) = connection(tcp, peer, cfg, log, shutdown).await {
                            tracing::debug!(%peer, error = %e, "connection ended with error");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = flag(&mut shutdown) => break,
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(Duration::from_secs(5), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tasks.abort_all();
    }
    tracing::info!("simulator stopped");
    Ok(())
}

/// Resolves once the flag is true; never, if its sender is gone without setting it.
async fn flag(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            if *rx.borrow() {
                return;
            }
            std::future::pending::<()>().await;
        }
    }
}

#[derive(Debug, Clone)]
enum Route {
    /// `/trades/{exchange}`; `None` is ALL.
    Trades(Option<String>),
    /// `/prices?assets=...`.
    Prices(PriceSubscription),
}

fn reject(status: u16, msg: &str) -> ErrorResponse {
    let mut r = ErrorResponse::new(Some(msg.to_string()));
    *r.status_mut() = tokio_tungstenite::tungstenite::http::StatusCode::from_u16(status)
        .unwrap_or(tokio_tungstenite::tungstenite::http::StatusCode::NOT_FOUND);
    r
}

// The error type is tungstenite's handshake callback contract.
#[allow(clippy::result_large_err)]
fn route(req: &Request, replay: bool) -> Result<Route, ErrorResponse> {
    let uri = req.uri();
    let path = uri.path().trim_end_matches('/');
    if let Some(ex) = path.strip_prefix("/trades/") {
        if ex.eq_ignore_ascii_case("all") {
            return Ok(Route::Trades(None));
        }
        if replay || crate::assets::EXCHANGES.iter().any(|(e, _)| *e == ex) {
            return Ok(Route::Trades(Some(ex.to_string())));
        }
        return Err(reject(404, "unknown exchange"));
    }
    if path == "/prices" {
        let assets = uri.query().unwrap_or("").split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == "assets").then_some(v)
        });
        return match assets {
            Some(a) if a.eq_ignore_ascii_case("all") => Ok(Route::Prices(PriceSubscription::all())),
            Some(a) if !a.is_empty() => Ok(Route::Prices(PriceSubscription::of(
                a.split(',').filter(|s| !s.is_empty()),
            ))),
            _ => Err(reject(400, "missing assets parameter")),
        };
    }
    Err(reject(
        404,
        "no such path; use /trades/{exchange} or /prices?assets=",
    ))
}

/// How a connection's stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Count reached or capture exhausted: close normally.
    Done,
    /// Server shutdown: close normally (going away).
    Shutdown,
    /// Fault: drop TCP without a close frame.
    Abrupt,
    /// Client closed or the socket failed.
    ClientGone,
}

/// The writing half of a connection plus its bookkeeping.
struct Tx {
    sink: WsSink,
    log: Option<Log>,
    metrics: Option<SimMetrics>,
    sent: u64,
}

impl Tx {
    /// Sends the frames `buf[ends[i-1]..ends[i]]` (one `feed` each, one `flush`), logging them first.
    async fn send_batch(&mut self, buf: Vec<u8>, ends: &[usize]) -> anyhow::Result<()> {
        if ends.is_empty() {
            return Ok(());
        }
        if let Some(log) = &self.log {
            let mut w = log.lock().unwrap_or_else(|e| e.into_inner());
            let mut start = 0;
            let mut res = Ok(());
            for &end in ends {
                res = res
                    .and_then(|_| w.write_all(&buf[start..end]))
                    .and_then(|_| w.write_all(b"\n"));
                start = end;
            }
            if let Err(e) = res.and_then(|_| w.flush()) {
                tracing::warn!(error = %e, "replay log write failed");
            }
        }
        let bytes = Bytes::from(buf);
        let mut start = 0;
        for &end in ends {
            let text = Utf8Bytes::try_from(bytes.slice(start..end))?;
            self.sink.feed(Message::Text(text)).await?;
            start = end;
        }
        self.sink.flush().await?;
        self.sent += ends.len() as u64;
        if let Some(m) = &self.metrics {
            m.frames_sent.inc_by(ends.len() as u64);
        }
        Ok(())
    }

    async fn close(&mut self, code: CloseCode, reason: &str) {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = self.sink.send(Message::Close(Some(frame))).await;
    }
}

struct ConnGuard(Option<SimMetrics>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if let Some(m) = &self.0 {
            m.connections.dec();
        }
    }
}

/// Serves one client: handshake (which picks the route), stream frames until the route ends, close.
async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    cfg: Arc<SimConfig>,
    log: Option<Log>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let replay = cfg.replay.is_some();
    let (ws, route) = handshake(tcp, replay).await?;
    if let Some(m) = &cfg.metrics {
        m.connections.inc();
    }
    let _guard = ConnGuard(cfg.metrics.clone());
    tracing::info!(%peer, ?route, "client connected");

    let (sink, stream) = ws.split();
    let (gone_tx, gone) = watch::channel(false);
    let reader = tokio::spawn(read_loop(stream, gone_tx));
    let mut tx = Tx {
        sink,
        log,
        metrics: cfg.metrics.clone(),
        sent: 0,
    };
    let end = if cfg.faults.unauthorized {
        refuse(&mut tx).await
    } else {
        let mut s = Session {
            cfg: &cfg,
            tx: &mut tx,
            shutdown,
            gone,
            stalled: false,
        };
        match route {
            Route::Trades(ex) if replay => s.replay(ex.as_deref()).await,
            Route::Trades(ex) => s.trades(ex.as_deref()).await,
            Route::Prices(sub) => s.prices(&sub).await,
        }
    };
    let end = end.unwrap_or_else(|e| {
        tracing::debug!(%peer, error = %e, "send failed");
        End::ClientGone
    });
    tracing::info!(%peer, sent = tx.sent, ?end, "client stream ended");
    finish(tx, reader, end, cfg.faults.unauthorized).await;
    Ok(())
}

/// Accepts the websocket handshake; the request path picks the [`Route`] (unknown paths are refused
/// with an HTTP error during the handshake).
#[allow(clippy::result_large_err)] // the handshake callback's error type is tungstenite's
async fn handshake(
    tcp: TcpStream,
    replay: bool,
) -> anyhow::Result<(WebSocketStream<TcpStream>, Route)> {
    let slot: Arc<Mutex<Option<Route>>> = Arc::new(Mutex::new(None));
    let slot2 = slot.clone();
    let ws = tokio_tungstenite::accept_hdr_async(tcp, move |req: &Request, resp: Response| {
        let r = route(req, replay)?;
        *slot2.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
        Ok(resp)
    })
    .await
    .context("websocket handshake")?;
    let Some(route) = slot.lock().unwrap_or_else(|e| e.into_inner()).take() else {
        anyhow::bail!("handshake completed without a route");
    };
    Ok((ws, route))
}

/// The `Unauthorized` fault: CoinCap's text frame for a bad key, then a policy close.
async fn refuse(tx: &mut Tx) -> anyhow::Result<End> {
    tx.send_batch(b"Unauthorized".to_vec(), &[12]).await?;
    tx.close(CloseCode::Policy, "Unauthorized").await;
    Ok(End::Done)
}

/// Ends the connection as `end` says: a close frame (normal, or going away on shutdown) and a short
/// wait for the client's answer, or, for an abrupt fault or a vanished client, just dropping TCP.
async fn finish(mut tx: Tx, reader: tokio::task::JoinHandle<()>, end: End, closed: bool) {
    match end {
        // Already closed (the Unauthorized fault).
        End::Done if closed => wait_reader(reader).await,
        End::Done | End::Shutdown => {
            let code = if end == End::Done {
                CloseCode::Normal
            } else {
                CloseCode::Away
            };
            tx.close(code, "").await;
            wait_reader(reader).await;
        }
        End::Abrupt | End::ClientGone => {
            reader.abort();
            let _ = reader.await;
        }
    }
    // Dropping the sink (and the reader's half) drops the TCP stream.
    drop(tx);
}

/// A JSON-lines capture being replayed: its lines in order, each with the instant it is due (its
/// timestamp's distance from the first line's, divided by the speed; at once without a speed).
struct Capture<'a> {
    reader: tokio::io::BufReader<tokio::fs::File>,
    /// Only lines of this exchange (`/trades/{exchange}`).
    exchange: Option<&'a str>,
    /// Replay speed; `None` sends as fast as the client reads.
    speed: Option<f64>,
    origin: Instant,
    first_ts: Option<i64>,
    max_ts: i64,
    /// A line read but not yet due.
    pending: Option<(Vec<u8>, Instant)>,
    /// The file is exhausted (and nothing is pending once `next_line` returned `None`).
    eof: bool,
}

impl<'a> Capture<'a> {
    async fn open(path: &Path, exchange: Option<&'a str>, speed: f64) -> anyhow::Result<Self> {
        let file = tokio::fs::File::open(path)
            .await
            .with_context(|| format!("cannot open capture {}", path.display()))?;
        Ok(Capture {
            reader: tokio::io::BufReader::with_capacity(1 << 20, file),
            exchange,
            speed: (speed.is_finite() && speed > 0.0).then_some(speed),
            origin: Instant::now(),
            first_ts: None,
            max_ts: i64::MIN,
            pending: None,
            eof: false,
        })
    }

    /// The pending line, else the next line to send (line ending stripped) with its due instant;
    /// `None` at the end of the file. Blank, non-UTF-8 and other exchanges' lines are skipped.
    async fn next_line(&mut self) -> std::io::Result<Option<(Vec<u8>, Instant)>> {
        if let Some(p) = self.pending.take() {
            return Ok(Some(p));
        }
        while !self.eof {
            let mut line = Vec::with_capacity(256);
            if self.reader.read_until(b'\n', &mut line).await? == 0 {
                self.eof = true;
                break;
            }
            while matches!(line.last(), Some(b'\n' | b'\r')) {
                line.pop();
            }
            if self.wanted(&line) {
                let due = self.due(&line);
                return Ok(Some((line, due)));
            }
        }
        Ok(None)
    }

    fn wanted(&self, line: &[u8]) -> bool {
        if line.iter().all(u8::is_ascii_whitespace) {
            return false;
        }
        if std::str::from_utf8(line).is_err() {
            // A text frame must be UTF-8; such a line cannot be sent verbatim.
            tracing::warn!("capture line is not UTF-8; skipped");
            return false;
        }
        match (self.exchange, field_str(line, b"exchange")) {
            (Some(want), Some(have)) => have == want.as_bytes(),
            _ => true,
        }
    }

    fn due(&mut self, line: &[u8]) -> Instant {
        let (Some(speed), Some(ts)) = (self.speed, field_i64(line, b"timestamp")) else {
            return self.origin;
        };
        let first = *self.first_ts.get_or_insert(ts);
        self.max_ts = self.max_ts.max(ts);
        let ms = (self.max_ts - first) as f64 / speed;
        self.origin + Duration::from_secs_f64(ms.max(0.0) / 1000.0)
    }
}

/// Waits up to 2 s for the client to answer a close frame, then gives up.
async fn wait_reader(mut reader: tokio::task::JoinHandle<()>) {
    if tokio::time::timeout(Duration::from_secs(2), &mut reader)
        .await
        .is_err()
    {
        reader.abort();
        let _ = reader.await;
    }
}

/// Keeps reading so pings are answered and a client close is noticed.
async fn read_loop(mut stream: SplitStream<WebSocketStream<TcpStream>>, gone: watch::Sender<bool>) {
    while let Some(msg) = stream.next().await {
        match msg {
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    let _ = gone.send(true);
}

/// Token-bucket pacing against a fixed origin, so the long-run rate is exact.
struct Pacer {
    rate: f64,
    burst: Option<Burst>,
    origin: Instant,
    base: u64,
}

impl Pacer {
    fn new(rate: u64, burst: Option<Burst>) -> Pacer {
        Pacer {
            rate: rate as f64,
            burst: burst.filter(|b| b.every_ms > 0 && b.factor > 0.0),
            origin: Instant::now(),
            base: 0,
        }
    }

    fn in_burst(&self, t_ms: f64) -> bool {
        self.burst
            .is_some_and(|b| t_ms % b.every_ms as f64 <= b.duration_ms as f64)
    }

    /// Frames allowed by `now` in total since the origin (the first one is due immediately).
    fn target(&self, now: Instant) -> u64 {
        let t = now.saturating_duration_since(self.origin).as_secs_f64() * 1000.0;
        let mut x = self.rate * t / 1000.0;
        if let Some(b) = self.burst {
            let every = b.every_ms as f64;
            let dur = (b.duration_ms as f64).min(every);
            let full = (t / every).floor();
            let bt = full * dur + (t - full * every).min(dur);
            x += (b.factor - 1.0) * self.rate * bt / 1000.0;
        }
        self.base + x.max(0.0) as u64 + 1
    }

    /// Frames due now, given `sent` so far; a backlog beyond a quarter second is forgiven.
    fn due(&mut self, sent: u64) -> u64 {
        if self.rate <= 0.0 {
            return u64::MAX;
        }
        let now = Instant::now();
        let due = self.target(now).saturating_sub(sent);
        let cap = ((self.rate / 4.0) as u64).max(BATCH_MAX);
        if due > cap {
            self.restart(sent);
            return self.target(now).saturating_sub(sent);
        }
        due
    }

    /// Restarts the clock at `now` with `sent` frames behind it (after a stall or a slow client).
    fn restart(&mut self, sent: u64) {
        self.origin = Instant::now();
        self.base = sent;
    }

    /// How long to wait for the next frame (polls at most every 100 ms so bursts are seen).
    fn wait(&self) -> Duration {
        let now = Instant::now();
        let t = now.saturating_duration_since(self.origin).as_secs_f64() * 1000.0;
        let factor = match self.burst {
            Some(b) if self.in_burst(t) => b.factor,
            _ => 1.0,
        };
        let secs = 1.0 / (self.rate * factor).max(1e-3);
        Duration::from_secs_f64(secs.clamp(0.001, 0.1))
    }
}

/// One connection's sending loop state.
struct Session<'a> {
    cfg: &'a SimConfig,
    tx: &'a mut Tx,
    shutdown: watch::Receiver<bool>,
    gone: watch::Receiver<bool>,
    stalled: bool,
}

/// What to do before the next batch.
enum Step {
    /// Stop with this ending.
    End(End),
    /// Send at most this many frames.
    Send(u64),
}

impl Session<'_> {
    /// Applies count, close and stall boundaries; returns the batch limit or the end.
    async fn boundaries(&mut self, pacer: Option<&mut Pacer>) -> Step {
        let f = &self.cfg.faults;
        let sent = self.tx.sent;
        if *self.shutdown.borrow() {
            return Step::End(End::Shutdown);
        }
        if *self.gone.borrow() {
            return Step::End(End::ClientGone);
        }
        if self.cfg.count == Some(sent) {
            return Step::End(End::Done);
        }
        if f.close_after == Some(sent) {
            return Step::End(End::Abrupt);
        }
        if !self.stalled && f.stall_after == Some(sent) {
            self.stalled = true;
            tracing::info!(ms = f.stall_ms, "fault: stalling");
            if let Some(end) = self.sleep(Duration::from_millis(f.stall_ms)).await {
                return Step::End(end);
            }
            if let Some(p) = pacer {
                p.restart(sent);
            }
        }
        let mut limit = BATCH_MAX;
        let stall = if self.stalled { None } else { f.stall_after };
        for b in [self.cfg.count, f.close_after, stall].into_iter().flatten() {
            if b > sent {
                limit = limit.min(b - sent);
            }
        }
        Step::Send(limit)
    }

    /// Sleeps, waking early on shutdown or client departure.
    async fn sleep(&mut self, d: Duration) -> Option<End> {
        tokio::select! {
            _ = tokio::time::sleep(d) => None,
            _ = flag(&mut self.shutdown) => Some(End::Shutdown),
            _ = flag(&mut self.gone) => Some(End::ClientGone),
        }
    }

    async fn trades(&mut self, exchange: Option<&str>) -> anyhow::Result<End> {
        let cfg = self.cfg;
        let mut market = match exchange {
            None => Market::new(cfg.market.clone()),
            Some(e) => Market::for_exchange(cfg.market.clone(), e)
                .with_context(|| format!("unknown exchange {e}"))?,
        };
        let logical = cfg.market.start_ms.map(|start_ms| LogicalClock {
            start_ms,
            rate: if cfg.rate > 0 {
                cfg.rate
            } else {
                cfg.market.event_rate
            },
        });
        let mut pacer = Pacer::new(cfg.rate, cfg.burst);
        let mut ends: Vec<usize> = Vec::with_capacity(BATCH_MAX as usize);
        loop {
            let limit = match self.boundaries(Some(&mut pacer)).await {
                Step::End(e) => return Ok(e),
                Step::Send(l) => l,
            };
            let sent = self.tx.sent;
            let n = pacer.due(sent).min(limit);
            if n == 0 {
                if let Some(end) = self.sleep(pacer.wait()).await {
                    return Ok(end);
                }
                continue;
            }
            let mut buf = Vec::with_capacity(n as usize * 192);
            ends.clear();
            let wall = tradewind_model::now_ms();
            for k in 0..n {
                let idx = sent + k;
                let now = logical.map_or(wall, |c| c.at(idx));
                match cfg.faults.malformed_every {
                    Some(m) if m > 0 && (idx + 1) % m == 0 => {
                        let kind = MALFORMED_ROTATION
                            [(((idx + 1) / m - 1) % MALFORMED_ROTATION.len() as u64) as usize];
                        malformed(&mut market, now, kind, &mut buf);
                    }
                    _ => market.next_into(now, &mut buf),
                }
                ends.push(buf.len());
            }
            self.tx.send_batch(buf, &ends).await?;
            if cfg.rate == 0 {
                tokio::task::yield_now().await;
            }
        }
    }

    async fn prices(&mut self, sub: &PriceSubscription) -> anyhow::Result<End> {
        let cfg = self.cfg;
        let mut market = Market::new(cfg.market.clone());
        let interval = Duration::from_millis(cfg.price_interval_ms.max(1));
        let mut next = Instant::now();
        let mut tick: i64 = 0;
        loop {
            match self.boundaries(None).await {
                Step::End(e) => return Ok(e),
                Step::Send(_) => {}
            }
            if cfg.rate > 0 {
                let wait = next.saturating_duration_since(Instant::now());
                if let Some(end) = self.sleep(wait).await {
                    return Ok(end);
                }
                next += interval;
            }
            // Prices follow event time: the wall clock, or the logical clock advancing one
            // interval per frame.
            let now = cfg
                .market
                .start_ms
                .map_or_else(tradewind_model::now_ms, |s| {
                    s.saturating_add(tick.saturating_mul(cfg.price_interval_ms.max(1) as i64))
                });
            tick += 1;
            market.tick_prices(now);
            let mut buf = Vec::with_capacity(4096);
            if market.write_prices(sub, &mut buf) > 0 {
                let len = buf.len();
                self.tx.send_batch(buf, &[len]).await?;
            } else if cfg.rate == 0 {
                tokio::task::yield_now().await;
            }
        }
    }

    async fn replay(&mut self, exchange: Option<&str>) -> anyhow::Result<End> {
        let cfg = self.cfg;
        let Some(path) = &cfg.replay else {
            anyhow::bail!("replay without a capture");
        };
        let mut capture = Capture::open(path, exchange, cfg.speed).await?;
        let mut ends: Vec<usize> = Vec::with_capacity(BATCH_MAX as usize);
        loop {
            let limit = match self.boundaries(None).await {
                Step::End(e) => return Ok(e),
                Step::Send(l) => l,
            };
            let mut buf = Vec::with_capacity(64 * 1024);
            ends.clear();
            let mut wait_until = None;
            while (ends.len() as u64) < limit {
                let Some((line, due)) = capture.next_line().await? else {
                    break;
                };
                if due > Instant::now() {
                    wait_until = Some(due);
                    capture.pending = Some((line, due));
                    break;
                }
                buf.extend_from_slice(&line);
                ends.push(buf.len());
            }
            if !ends.is_empty() {
                self.tx.send_batch(buf, &ends).await?;
                continue;
            }
            match wait_until {
                Some(due) => {
                    let d = due.saturating_duration_since(Instant::now());
                    if let Some(end) = self.sleep(d).await {
                        return Ok(end);
                    }
                }
                None if capture.eof && capture.pending.is_none() => return Ok(End::Done),
                None => {}
            }
        }
    }
}

/// Finds `"name":"value"` in a raw JSON line and returns the value bytes (no unescaping).
fn field_str<'a>(line: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let at = find_key(line, name)?;
    let rest = line.get(at..)?.strip_prefix(b"\"")?;
    let end = rest.iter().position(|&b| b == b'"')?;
    Some(&rest[..end])
}

/// Finds `"name":123` in a raw JSON line and parses the integer.
fn field_i64(line: &[u8], name: &[u8]) -> Option<i64> {
    let at = find_key(line, name)?;
    let rest = line.get(at..)?;
    let end = rest
        .iter()
        .position(|&b| !(b.is_ascii_digit() || b == b'-'))
        .unwrap_or(rest.len());
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

/// Index just after `"name":` (and any spaces) in `line`.
fn find_key(line: &[u8], name: &[u8]) -> Option<usize> {
    let mut pat = Vec::with_capacity(name.len() + 3);
    pat.push(b'"');
    pat.extend_from_slice(name);
    pat.extend_from_slice(b"\":");
    let pos = line.windows(pat.len()).position(|w| w == pat.as_slice())?;
    let mut i = pos + pat.len();
    while line.get(i).is_some_and(|b| b.is_ascii_whitespace()) {
        i += 1;
    }
    Some(i)
}

/// Appends a malformed frame of the given kind, derived from the market's next trade.
pub fn malformed(market: &mut Market, now_ms: i64, kind: RejectKind, out: &mut Vec<u8>) {
    let mut t = market.next_raw(now_ms);
    let start = out.len();
    match kind {
        RejectKind::Syntax => {
            write_json(&t, out);
            let cut = start + (out.len() - start) / 2;
            out.truncate(cut);
        }
        RejectKind::WrongType | RejectKind::NonFinite => {
            let mut tmp = Vec::with_capacity(200);
            write_json(&t, &mut tmp);
            let s = String::from_utf8_lossy(&tmp);
            let from = format!("\"price\":{},", t.price);
            let to = if kind == RejectKind::WrongType {
                format!("\"price\":\"{}\",", t.price)
            } else {
                "\"price\":1e999,".to_string()
            };
            out.extend_from_slice(s.replacen(&from, &to, 1).as_bytes());
        }
        RejectKind::NonPositive => {
            t.volume = -t.volume;
            write_json(&t, out);
        }
        RejectKind::MissingField => {
            write_json(&t, out);
            let key = b",\"priceUsd\":";
            if let Some(p) = out[start..].windows(key.len()).position(|w| w == key) {
                out.truncate(start + p);
                out.push(b'}');
            }
        }
        RejectKind::BadDirection => {
            let mut tmp = Vec::with_capacity(200);
            write_json(&t, &mut tmp);
            let s = String::from_utf8_lossy(&tmp);
            let from = format!("\"direction\":\"{}\"", t.direction.as_str());
            out.extend_from_slice(s.replacen(&from, "\"direction\":\"hold\"", 1).as_bytes());
        }
        RejectKind::FutureTimestamp => {
            t.timestamp = FAR_FUTURE_MS;
            write_json(&t, out);
        }
        RejectKind::NotObject => {
            out.push(b'[');
            write_json(&t, out);
            out.push(b']');
        }
        RejectKind::EmptyId => {
            t.base = "";
            write_json(&t, out);
        }
        RejectKind::InvalidId => {
            // An overlong id that looks like SQL: 80 characters, over VARCHAR(64).
            let long = format!("{}'; DROP TABLE asset_1m; --{}", t.base, "x".repeat(60));
            t.base = &long;
            write_json(&t, out);
        }
        RejectKind::OutOfRange => {
            t.volume = 1e16;
            write_json(&t, out);
        }
        RejectKind::SourceError | RejectKind::Storage | RejectKind::ViewError => {
            out.extend_from_slice(b"Unauthorized");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tradewind_model::{validate, Validator};

    #[test]
    fn every_malformed_kind_is_rejected_as_labelled() {
        let mut m = Market::new(MarketConfig::default());
        for kind in MALFORMED_ROTATION {
            for _ in 0..20 {
                let mut out = Vec::new();
                malformed(&mut m, tradewind_model::now_ms(), kind, &mut out);
                let r = validate(&out, tradewind_model::now_ms(), &Validator::default());
                assert_eq!(
                    r.expect_err("must be rejected").kind,
                    kind,
                    "{}",
                    String::from_utf8_lossy(&out)
                );
            }
        }
    }

    #[test]
    fn field_scanners() {
        let l = br#"{"exchange":"kraken","timestamp": 1666422331415,"x":1}"#;
        assert_eq!(field_str(l, b"exchange"), Some(&b"kraken"[..]));
        assert_eq!(field_i64(l, b"timestamp"), Some(1_666_422_331_415));
        assert_eq!(field_i64(l, b"nope"), None);
    }

    #[test]
    fn pacer_rate_and_bursts() {
        let mut p = Pacer::new(1000, None);
        p.origin = Instant::now() - Duration::from_millis(100);
        let d = p.due(0);
        assert!((100..=110).contains(&d), "{d}");
        let mut b = Pacer::new(
            1000,
            Some(Burst {
                factor: 5.0,
                every_ms: 1000,
                duration_ms: 100,
            }),
        );
        b.origin = Instant::now() - Duration::from_millis(1000);
        // 1 s at 1000/s plus 100 ms at 4 extra x 1000/s.
        let d = b.target(Instant::now());
        assert!((1400..=1420).contains(&d), "{d}");
    }
}
