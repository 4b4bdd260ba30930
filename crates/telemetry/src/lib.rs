//! Operator plumbing shared by every tradewind command: structured logs, the Prometheus registry,
//! the `/metrics`, `/healthz`, `/readyz` HTTP endpoint, and the shutdown signal.
//!
//! The HTTP server is deliberately tiny (httparse over a tokio `TcpListener`): three read-only
//! endpoints do not justify a web framework in the dependency graph.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use prometheus::{Encoder, IntGaugeVec, Opts, Registry, TextEncoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Initialises the global `tracing` subscriber: JSON lines when `TRADEWIND_LOG_FORMAT=json`, compact
/// human-readable text otherwise; the level filter comes from `RUST_LOG` (default `info`).
/// Calling it twice is harmless.
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("TRADEWIND_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.compact().try_init()
    };
}

/// Liveness and readiness of a process, as reported on `/healthz` and `/readyz`.
///
/// Live means the process is running its loop; ready means it can do useful work now (e.g. the engine
/// is connected to MySQL and the broker). Not-ready carries a reason for the operator.
#[derive(Debug)]
pub struct Health {
    live: AtomicBool,
    ready: AtomicBool,
    reason: Mutex<String>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            live: AtomicBool::new(true),
            ready: AtomicBool::new(false),
            reason: Mutex::new("starting".to_string()),
        }
    }
}

impl Health {
    /// A new health state: live, not yet ready.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Sets readiness with a reason shown on `/readyz` (e.g. "mysql unreachable").
    pub fn set_ready(&self, ready: bool, reason: &str) {
        self.ready.store(ready, Ordering::Relaxed);
        if let Ok(mut r) = self.reason.lock() {
            if r.as_str() != reason {
                r.clear();
                r.push_str(reason);
            }
        }
    }

    /// Marks the process as not live (its main loop has died).
    pub fn set_live(&self, live: bool) {
        self.live.store(live, Ordering::Relaxed);
    }

    /// Whether the process is ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Whether the process is live.
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Relaxed)
    }

    fn reason(&self) -> String {
        self.reason.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

/// A registry with the process collector (CPU seconds, resident memory) and `tradewind_build_info`.
pub fn new_registry() -> Registry {
    let registry = Registry::new();
    #[cfg(target_os = "linux")]
    {
        let _ = registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
    }
    if let Ok(info) = IntGaugeVec::new(
        Opts::new("tradewind_build_info", "Build information; always 1."),
        &["version"],
    ) {
        info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let _ = registry.register(Box::new(info));
    }
    registry
}

/// Serves `GET /metrics` (Prometheus text format 0.0.4), `/healthz` and `/readyz` on `addr`
/// (port 0 picks a free port) from a background task; returns the bound address.
pub async fn serve_http(
    addr: SocketAddr,
    registry: Registry,
    health: Arc<Health>,
) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for /metrics on {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let registry = registry.clone();
            let health = health.clone();
            tokio::spawn(async move {
                if let Err(e) = handle(stream, &registry, &health).await {
                    tracing::debug!(error = %e, "metrics connection ended");
                }
            });
        }
    });
    tracing::info!(%bound, "serving /metrics, /healthz, /readyz");
    Ok(bound)
}

async fn handle(mut stream: TcpStream, registry: &Registry, health: &Health) -> anyhow::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    // Read until the end of the request head (bounded: 16 KiB).
    let path = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf)? {
            httparse::Status::Complete(_) => break req.path.unwrap_or("/").to_string(),
            httparse::Status::Partial if buf.len() < 16 * 1024 => continue,
            httparse::Status::Partial => anyhow::bail!("request head too large"),
        }
    };
    let path = path.split('?').next().unwrap_or("/");
    let (status, ctype, body) = match path {
        "/metrics" => {
            let mut out = Vec::with_capacity(16 * 1024);
            TextEncoder::new().encode(&registry.gather(), &mut out)?;
            ("200 OK", "text/plain; version=0.0.4; charset=utf-8", out)
        }
        "/healthz" if health.is_live() => ("200 OK", "text/plain", b"ok\n".to_vec()),
        "/healthz" => (
            "503 Service Unavailable",
            "text/plain",
            b"not live\n".to_vec(),
        ),
        "/readyz" if health.is_ready() => ("200 OK", "text/plain", b"ready\n".to_vec()),
        "/readyz" => (
            "503 Service Unavailable",
            "text/plain",
            format!("not ready: {}\n", health.reason()).into_bytes(),
        ),
        _ => ("404 Not Found", "text/plain", b"not found\n".to_vec()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&body).await?;
    stream.shutdown().await?;
    Ok(())
}

/// A shutdown flag that flips to `true` on SIGTERM or SIGINT (Ctrl-C). Clone the receiver freely;
/// every long-running loop selects on `changed()` and drains before exiting.
pub fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = ctrl_c => tracing::info!("SIGINT received: shutting down"),
                        _ = term.recv() => tracing::info!("SIGTERM received: shutting down"),
                    }
                }
                Err(_) => {
                    let _ = ctrl_c.await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = ctrl_c.await;
        }
        let _ = tx.send(true);
    });
    rx
}

/// Parses a command-line duration such as `30s`, `500ms`, `2m`, `1h` (a bare number means seconds).
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (e.g. 30s, 500ms, 2m)"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => return Err(format!("unknown duration unit `{other}` (use ms, s, m, h)")),
    };
    std::time::Duration::try_from_secs_f64(secs).map_err(|e| format!("bad duration `{s}`: {e}"))
}

/// Sum of the current values of every series of metric `name` in `registry` (counters and gauges);
/// 0 when absent. For live views and tests that read the engine's own counters.
pub fn metric_value(registry: &Registry, name: &str) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().iter())
        .map(|m| m.get_counter().get_value() + m.get_gauge().get_value())
        .sum()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn parses_durations() {
        assert_eq!(
            super::parse_duration("250ms"),
            Ok(Duration::from_millis(250))
        );
        assert_eq!(super::parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(super::parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(super::parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(super::parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(
            super::parse_duration("1.5s"),
            Ok(Duration::from_millis(1500))
        );
        assert!(super::parse_duration("5 parsecs").is_err());
    }

    use super::*;

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        out
    }

    #[tokio::test]
    async fn serves_metrics_health_and_readiness() {
        let registry = new_registry();
        let c = prometheus::IntCounter::new("tradewind_test_total", "test").expect("counter");
        registry.register(Box::new(c.clone())).expect("register");
        c.inc_by(7);
        let health = Health::new();
        let addr = serve_http(
            "127.0.0.1:0".parse().expect("addr"),
            registry,
            health.clone(),
        )
        .await
        .expect("serve");
        let m = get(addr, "/metrics").await;
        assert!(m.starts_with("HTTP/1.1 200"), "{m}");
        assert!(m.contains("tradewind_test_total 7"), "{m}");
        assert!(m.contains("tradewind_build_info{version="), "{m}");
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        let r = get(addr, "/readyz").await;
        assert!(
            r.starts_with("HTTP/1.1 503") && r.contains("starting"),
            "{r}"
        );
        health.set_ready(true, "ok");
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));
    }
}
