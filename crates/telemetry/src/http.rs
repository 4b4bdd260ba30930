//! The operator HTTP endpoint: `GET /metrics` (Prometheus text format), `/healthz` (liveness) and
//! `/readyz` (readiness), served by hyper's HTTP/1 server.
//!
//! hyper rather than a framework: three fixed paths need no router, and hyper brings what a
//! hand-written server lacked (request parsing limits, keep-alive, `HEAD` without a body, a timeout
//! for slow clients that never finish their request head).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::net::TcpListener;

use crate::Health;

/// A client must send its whole request head within this time, or the connection is closed.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest request head accepted (hyper's minimum buffer is 8 KiB; nothing legitimate comes near).
const MAX_HEAD_BYTES: usize = 16 * 1024;

const TEXT: &str = "text/plain; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serves `GET`/`HEAD` `/metrics` (Prometheus text format 0.0.4), `/healthz` and `/readyz` on
/// `addr` (port 0 picks a free port) from a background task; returns the bound address.
///
/// `/healthz` is 200 while [`Health::is_live`], else 503 with the reason; `/readyz` likewise for
/// [`Health::is_ready`]. Other methods get 405 (with `Allow: GET, HEAD`), other paths 404.
pub async fn serve_http(
    addr: SocketAddr,
    registry: Registry,
    health: Arc<Health>,
) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for /metrics on {addr}"))?;
    let bound = listener.local_addr()?;
    tokio::spawn(accept_loop(listener, registry, health));
    tracing::info!(%bound, "serving /metrics, /healthz, /readyz");
    Ok(bound)
}

async fn accept_loop(listener: TcpListener, registry: Registry, health: Arc<Health>) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "metrics accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (registry, health) = (registry.clone(), Arc::clone(&health));
        let service = service_fn(move |req: Request<Incoming>| {
            let response = respond(req.method(), req.uri().path(), &registry, &health);
            async move { Ok::<_, Infallible>(response) }
        });
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "metrics connection ended");
            }
        });
    }
}

/// The response to one request (hyper drops the body of `HEAD` responses itself).
fn respond(
    method: &Method,
    path: &str,
    registry: &Registry,
    health: &Health,
) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        let mut r = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed\n".into(),
        );
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match path {
        "/metrics" => metrics(registry),
        "/healthz" => match health.live_state() {
            Ok(()) => text(StatusCode::OK, "ok\n".into()),
            Err(reason) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not live: {reason}\n"),
            ),
        },
        "/readyz" => match health.ready_state() {
            Ok(()) => text(StatusCode::OK, "ready\n".into()),
            Err(reason) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {reason}\n"),
            ),
        },
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}

fn metrics(registry: &Registry) -> Response<Full<Bytes>> {
    let mut out = Vec::with_capacity(16 * 1024);
    match TextEncoder::new().encode(&registry.gather(), &mut out) {
        Ok(()) => with_type(StatusCode::OK, PROMETHEUS_TEXT, out),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode metrics: {e}\n"),
        ),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    with_type(status, TEXT, body.into_bytes())
}

fn with_type(status: StatusCode, ctype: &'static str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    r
}
