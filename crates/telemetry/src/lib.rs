//! Operator plumbing shared by every tradewind command: structured logs, the Prometheus registry,
//! the `/metrics`, `/healthz`, `/readyz` HTTP endpoint ([`serve_http`]), liveness and readiness
//! ([`Health`]), the shutdown signal, the retry delay policy ([`Backoff`]) and command-line duration
//! parsing.

#![warn(missing_docs)]

mod backoff;
mod http;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use prometheus::{IntGaugeVec, Opts, Registry};
use tokio::sync::watch;

pub use backoff::Backoff;
pub use http::{serve_http, HEADER_READ_TIMEOUT};

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
/// Live means the process is making progress: a component that detects it is stuck (for example,
/// work pending but nothing done for too long) calls [`Health::set_liveness`]`(false, reason)`, and
/// `/healthz` answers 503 with that reason, so the orchestrator restarts it. Ready means it can do
/// useful work now (e.g. connected to MySQL and the broker); not-ready also carries a reason.
#[derive(Debug)]
pub struct Health {
    live: Flag,
    ready: Flag,
}

/// A boolean with the operator-facing reason it was last set for.
#[derive(Debug)]
struct Flag {
    on: AtomicBool,
    reason: Mutex<String>,
}

impl Flag {
    fn new(on: bool, reason: &str) -> Self {
        Flag {
            on: AtomicBool::new(on),
            reason: Mutex::new(reason.to_string()),
        }
    }

    fn set(&self, on: bool, reason: &str) {
        // Reason first: a reader that sees the new flag also sees (at least) the new reason.
        if let Ok(mut r) = self.reason.lock() {
            if r.as_str() != reason {
                r.clear();
                r.push_str(reason);
            }
        }
        self.on.store(on, Ordering::Release);
    }

    fn get(&self) -> bool {
        self.on.load(Ordering::Acquire)
    }

    /// `Ok` when on, else the reason.
    fn state(&self) -> Result<(), String> {
        if self.get() {
            Ok(())
        } else {
            Err(self.reason.lock().map(|r| r.clone()).unwrap_or_default())
        }
    }
}

impl Default for Health {
    fn default() -> Self {
        Health {
            live: Flag::new(true, "running"),
            ready: Flag::new(false, "starting"),
        }
    }
}

impl Health {
    /// A new health state: live, not yet ready.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Sets readiness with a reason shown on `/readyz` when not ready (e.g. "mysql unreachable").
    pub fn set_ready(&self, ready: bool, reason: &str) {
        self.ready.set(ready, reason);
    }

    /// Sets liveness with a reason shown on `/healthz` when not live (e.g. "no commit for 5m while
    /// 1200 records are pending"). `/healthz` answers 503 while not live, which makes a Kubernetes
    /// liveness probe restart the process.
    pub fn set_liveness(&self, live: bool, reason: &str) {
        self.live.set(live, reason);
    }

    /// Sets liveness without a specific reason (`/healthz` then says "no progress"); prefer
    /// [`Health::set_liveness`], which tells the operator what stalled.
    pub fn set_live(&self, live: bool) {
        self.set_liveness(live, if live { "running" } else { "no progress" });
    }

    /// Whether the process is ready.
    pub fn is_ready(&self) -> bool {
        self.ready.get()
    }

    /// Whether the process is live.
    pub fn is_live(&self) -> bool {
        self.live.get()
    }

    /// `Ok` when live, else why not.
    pub(crate) fn live_state(&self) -> Result<(), String> {
        self.live.state()
    }

    /// `Ok` when ready, else why not.
    pub(crate) fn ready_state(&self) -> Result<(), String> {
        self.ready.state()
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

/// Parses a command-line duration with [`humantime`]: `30s`, `500ms`, `2m`, `1h`, `1h 30m`. A bare
/// number means seconds (`7` is 7 s), as the flags have always accepted. The error text is meant
/// for clap to show next to the flag.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let parsed = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse()
            .map(std::time::Duration::from_secs)
            .map_err(|e| e.to_string())
    } else {
        humantime::parse_duration(s).map_err(|e| e.to_string())
    };
    parsed.map_err(|e| format!("`{s}` is not a duration (e.g. 30s, 500ms, 2m): {e}"))
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

    use super::parse_duration;

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration(" 10m "), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        for bad in ["5 parsecs", "", "x", "-1s", "1.5.2s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn health_flags_carry_their_reasons() {
        let h = super::Health::new();
        assert!(h.is_live() && !h.is_ready());
        assert_eq!(h.ready_state(), Err("starting".to_string()));
        h.set_ready(true, "ok");
        assert!(h.is_ready());
        h.set_liveness(false, "stuck");
        assert_eq!(h.live_state(), Err("stuck".to_string()));
        h.set_liveness(true, "progress again");
        assert_eq!(h.live_state(), Ok(()));
        h.set_live(false);
        assert_eq!(h.live_state(), Err("no progress".to_string()));
        h.set_live(true);
        assert!(h.is_live());
    }
}
