//! The operator endpoint over a real TCP socket, spoken to byte for byte as a probe or a scraper
//! would: status lines, bodies, the method check, `HEAD`, keep-alive and the request-head timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tradewind_telemetry::{new_registry, serve_http, Health, HEADER_READ_TIMEOUT};

async fn start() -> (SocketAddr, Arc<Health>, prometheus::IntCounter) {
    let registry = new_registry();
    let c = prometheus::IntCounter::new("tradewind_test_total", "test").expect("counter");
    registry.register(Box::new(c.clone())).expect("register");
    let health = Health::new();
    let addr = serve_http(
        "127.0.0.1:0".parse().expect("addr"),
        registry,
        Arc::clone(&health),
    )
    .await
    .expect("serve");
    (addr, health, c)
}

/// Sends one request with `Connection: close` and returns the whole raw response.
async fn request(addr: SocketAddr, method: &str, path: &str) -> String {
    let req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    read_all(send(addr, req.as_bytes()).await).await
}

/// Connects and writes `bytes`; returns the open connection.
async fn send(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    s
}

/// Everything the server sends until it closes the connection (at most 10 s).
async fn read_all(mut s: TcpStream) -> String {
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
        .await
        .expect("the server answers and closes within 10 s")
        .expect("read");
    out
}

fn body(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

#[tokio::test]
async fn metrics_health_and_readiness() {
    let (addr, health, counter) = start().await;
    counter.inc_by(7);
    let m = request(addr, "GET", "/metrics").await;
    assert!(m.starts_with("HTTP/1.1 200 OK\r\n"), "{m}");
    assert!(
        m.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{m}"
    );
    assert!(body(&m).contains("\ntradewind_test_total 7\n"), "{m}");
    assert!(body(&m).contains("tradewind_build_info{version="), "{m}");
    // A query string does not change the path.
    let q = request(addr, "GET", "/metrics?x=1").await;
    assert!(q.starts_with("HTTP/1.1 200"), "{q}");

    let h = request(addr, "GET", "/healthz").await;
    assert!(h.starts_with("HTTP/1.1 200") && body(&h) == "ok\n", "{h}");
    let r = request(addr, "GET", "/readyz").await;
    assert!(
        r.starts_with("HTTP/1.1 503") && body(&r) == "not ready: starting\n",
        "{r}"
    );
    health.set_ready(true, "ok");
    let r = request(addr, "GET", "/readyz").await;
    assert!(
        r.starts_with("HTTP/1.1 200") && body(&r) == "ready\n",
        "{r}"
    );

    // Liveness: 503 with the reason while not live, 200 again once live.
    health.set_liveness(false, "no progress for 300s with 12 records pending");
    let h = request(addr, "GET", "/healthz").await;
    assert!(h.starts_with("HTTP/1.1 503"), "{h}");
    assert_eq!(
        body(&h),
        "not live: no progress for 300s with 12 records pending\n"
    );
    health.set_liveness(true, "progress");
    assert!(request(addr, "GET", "/healthz")
        .await
        .starts_with("HTTP/1.1 200"));

    let n = request(addr, "GET", "/nope").await;
    assert!(n.starts_with("HTTP/1.1 404"), "{n}");
}

#[tokio::test]
async fn only_get_and_head_are_allowed() {
    let (addr, _health, _c) = start().await;
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let r = request(addr, method, "/metrics").await;
        assert!(r.starts_with("HTTP/1.1 405"), "{method}: {r}");
        assert!(
            r.to_ascii_lowercase().contains("\r\nallow: get, head\r\n"),
            "{method}: {r}"
        );
    }
    // HEAD: the GET status and headers, no body.
    let r = request(addr, "HEAD", "/healthz").await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(
        r.to_ascii_lowercase().contains("content-length: 3\r\n"),
        "{r}"
    );
    assert_eq!(body(&r), "");
}

#[tokio::test]
async fn keep_alive_serves_several_requests_on_one_connection() {
    let (addr, _health, _c) = start().await;
    let two = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let out = read_all(send(addr, two).await).await;
    assert_eq!(out.matches("HTTP/1.1 ").count(), 2, "{out}");
    assert!(
        out.contains("ok\n") && out.contains("not ready: starting\n"),
        "{out}"
    );
}

#[tokio::test]
async fn a_client_that_never_finishes_its_request_is_dropped() {
    let (addr, _health, _c) = start().await;
    // Half a request head, then silence.
    let mut s = send(addr, b"GET /metrics HTTP/1.1\r\nHost:").await;
    let started = Instant::now();
    let mut out = Vec::new();
    let read = tokio::time::timeout(
        HEADER_READ_TIMEOUT + Duration::from_secs(5),
        s.read_to_end(&mut out),
    )
    .await
    .expect("the server closes the connection after its header read timeout");
    // Closed (possibly after a 408) rather than answered with metrics; never before the timeout.
    let text = String::from_utf8_lossy(&out);
    assert!(read.is_err() || !text.contains("200 OK"), "{text}");
    assert!(
        started.elapsed() >= HEADER_READ_TIMEOUT - Duration::from_millis(500),
        "closed after {:?}",
        started.elapsed()
    );
}
