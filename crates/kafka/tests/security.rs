//! Kafka over TLS with SASL: what can be proven without a broker that speaks SASL/TLS.
//!
//! Neither local broker does: librdkafka's mock cluster has plaintext listeners and no SASL handlers,
//! and the prebuilt tansu of `scripts/stack.sh` has no TLS listener. So these tests prove the parts
//! tradewind owns: librdkafka is built with TLS and SASL PLAIN/SCRAM; the settings of
//! `TRADEWIND_KAFKA_OPTIONS` plus the password file reach every client config and librdkafka accepts
//! them; and against a real TLS endpoint (`openssl s_server` with a CA made here) librdkafka completes the
//! handshake when it trusts the CA and refuses the server when it does not.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, Producer, ProducerContext};
use tradewind_kafka::ClientOptions;

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tw-kafka-sec-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("tmp dir");
    d
}

fn openssl(args: &[&str], dir: &Path) {
    let st = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl CLI");
    assert!(st.success(), "openssl {args:?}");
}

/// A CA, a server certificate for 127.0.0.1 signed by it, and an unrelated CA.
fn make_certs(dir: &Path) {
    for (name, cn) in [("ca", "tw test CA"), ("wrong-ca", "other CA")] {
        openssl(
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN={cn}"),
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.pem"),
            ],
            dir,
        );
    }
    openssl(
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
        dir,
    );
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").expect("write");
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ],
        dir,
    );
}

/// Collects librdkafka's error callbacks and log lines.
#[derive(Clone, Default)]
struct Errors(Arc<Mutex<Vec<String>>>);

impl ClientContext for Errors {
    fn error(&self, error: KafkaError, reason: &str) {
        if let Ok(mut v) = self.0.lock() {
            v.push(format!("{error}: {reason}"));
        }
    }

    fn log(&self, _level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        if let Ok(mut v) = self.0.lock() {
            v.push(format!("log {fac}: {log_message}"));
        }
    }
}

impl ProducerContext for Errors {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

struct Server {
    child: Child,
    handshakes: Arc<Mutex<Vec<String>>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `openssl s_server` on a free port: a TLS endpoint standing in for a broker's TLS listener.
fn tls_server(dir: &Path) -> (Server, u16) {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut child = Command::new("openssl")
        .args([
            "s_server",
            "-quiet",
            "-accept",
            &port.to_string(),
            "-cert",
            "server.pem",
            "-key",
            "server.key",
            "-msg",
        ])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_server");
    let out = child.stdout.take().expect("stdout");
    let handshakes = Arc::new(Mutex::new(Vec::new()));
    let seen = handshakes.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            // -msg traces every TLS record; a Finished from the client ends a completed handshake.
            if line.contains("Finished") {
                if let Ok(mut v) = seen.lock() {
                    v.push(line);
                }
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "s_server did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    (Server { child, handshakes }, port)
}

fn secure_config(port: u16, ca: &Path, password_file: &Path) -> ClientConfig {
    let options = ClientOptions::parse(
        &[
            "security.protocol=SASL_SSL".into(),
            "sasl.mechanism=SCRAM-SHA-512".into(),
            "sasl.username=tradewind-engine".into(),
            format!("ssl.ca.location={}", ca.display()),
        ],
        Some(password_file),
    )
    .expect("options");
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", format!("127.0.0.1:{port}"))
        .set("socket.timeout.ms", "3000")
        .set("reconnect.backoff.ms", "200");
    options.apply(&mut c);
    c
}

#[test]
fn librdkafka_is_built_with_tls_and_sasl_plain_and_scram() {
    let features = ClientConfig::new()
        .create_native_config()
        .expect("native config")
        .get("builtin.features")
        .expect("builtin.features");
    for f in ["ssl", "sasl_plain", "sasl_scram"] {
        assert!(
            features.split(',').any(|x| x == f),
            "librdkafka lacks {f}: {features}"
        );
    }
}

#[test]
fn tls_is_verified_against_the_configured_ca() {
    let dir = tmpdir("tls");
    make_certs(&dir);
    let pw = dir.join("password");
    std::fs::write(&pw, "not-logged-secret\n").expect("write");

    for (ca, trusted) in [("ca.pem", true), ("wrong-ca.pem", false)] {
        let (server, port) = tls_server(&dir);
        let errors = Errors::default();
        let producer: BaseProducer<Errors> = secure_config(port, &dir.join(ca), &pw)
            .create_with_context(errors.clone())
            .expect("librdkafka accepts SASL_SSL + SCRAM-SHA-512 with a CA file");
        // Connecting happens on the first metadata request; its failure is expected either way
        // (s_server is not a broker). What matters is how far the TLS handshake got.
        let _ = producer
            .client()
            .fetch_metadata(None, Duration::from_secs(4));
        // Error callbacks are served by polling.
        for _ in 0..20 {
            producer.poll(Duration::from_millis(100));
        }
        let errs = errors.0.lock().map(|v| v.clone()).unwrap_or_default();
        let handshakes = server.handshakes.lock().map(|v| v.len()).unwrap_or(0);
        let cert_refused = errs
            .iter()
            .any(|e| e.contains("certificate verify failed") || e.contains("unable to get"));
        if trusted {
            assert!(
                handshakes > 0,
                "no TLS handshake completed with the right CA: {errs:?}"
            );
            assert!(!cert_refused, "right CA refused: {errs:?}");
        } else {
            assert!(cert_refused, "wrong CA was not refused: {errs:?}");
        }
        assert!(
            !errs.iter().any(|e| e.contains("not-logged-secret")),
            "the password appears in librdkafka's errors"
        );
        drop(producer);
        drop(server);
    }
    std::fs::remove_dir_all(&dir).ok();
}
