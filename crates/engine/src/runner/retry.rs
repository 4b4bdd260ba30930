//! Retrying sink operations through MySQL outages: backoff, liveness heartbeat, readiness and the
//! sink error metric, interrupted by shutdown.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::watch;
use tradewind_model::now_ms;
use tradewind_sink::SinkError;
use tradewind_telemetry::{Backoff, Health};

use super::Io;
use crate::metrics::EngineMetrics;

/// What the retries of a sink operation report to: liveness, metrics, readiness.
#[derive(Clone)]
pub(super) struct RetryIo {
    heartbeat: Arc<AtomicI64>,
    metrics: EngineMetrics,
    health: Arc<Health>,
}

impl Io {
    pub(super) fn retry_io(&self) -> RetryIo {
        RetryIo {
            heartbeat: self.heartbeat.clone(),
            metrics: self.metrics.clone(),
            health: self.health.clone(),
        }
    }
}

/// Runs a sink operation, retrying transient failures with backoff (not ready meanwhile).
/// `None` when shutdown interrupted the retries. A permanent error comes back as a [`SinkError`]
/// inside the `anyhow::Error`.
pub(super) fn retry<T, F, Fut>(
    rt: &Handle,
    shutdown: &watch::Receiver<bool>,
    io: &Io,
    what: &str,
    op: F,
) -> anyhow::Result<Option<T>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, SinkError>>,
{
    rt.block_on(retry_async(shutdown.clone(), io.retry_io(), what, op))
}

/// [`retry`], as a future (the pipelined commit runs it on the runtime).
pub(super) async fn retry_async<T, F, Fut>(
    shutdown: watch::Receiver<bool>,
    io: RetryIo,
    what: &str,
    mut op: F,
) -> anyhow::Result<Option<T>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, SinkError>>,
{
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        io.heartbeat.store(now_ms(), Ordering::Relaxed);
        let delay = match op().await {
            Ok(v) => return Ok(Some(v)),
            Err(e) if e.is_transient() => {
                let delay = backoff.next_delay();
                io.metrics.sink_errors.inc();
                io.metrics.ready.set(0);
                io.health.set_ready(false, "mysql unavailable");
                tracing::warn!(error = %e, retry_in = ?delay, "{what} failed; retrying");
                delay
            }
            Err(e) => return Err(anyhow::Error::new(e)),
        };
        if *shutdown.borrow() {
            return Ok(None);
        }
        tokio::time::sleep(delay).await;
    }
}
