//! Bench-only Kafka broker: librdkafka's mock cluster (`tradewind_kafka::EmbeddedCluster`, a real
//! Kafka wire protocol over loopback TCP, log in memory) in a process of its own, so the benchmark has
//! a broker that is not the bottleneck next to the tansu reference. Not part of the shipped binary.
//!
//! Usage (the executable of `cargo bench --no-run --bench mock_broker`):
//!
//! ```text
//! mock_broker [--brokers N] [--topic NAME:PARTITIONS]...
//! ```
//!
//! Creates the topics (the mock cluster does not implement CreateTopics; unknown topics are
//! auto-created with its default partition count), prints `bootstrap=HOST:PORT[,...]` on stdout and
//! lives until killed (SIGTERM/SIGINT). Used by `benches/e2e.sh --broker mock|both`. Run without
//! arguments by `cargo bench`, it prints a note and exits 0.

use std::io::Write;

fn main() -> anyhow::Result<()> {
    let mut brokers = 1;
    let mut topics: Vec<(String, i32)> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--brokers" => {
                let v = args
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("--brokers needs N"))?;
                brokers = v.parse()?;
            }
            "--topic" => {
                let v = args
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("--topic needs NAME:N"))?;
                let (name, parts) = v
                    .rsplit_once(':')
                    .ok_or_else(|| anyhow::anyhow!("--topic {v}: expected NAME:PARTITIONS"))?;
                topics.push((name.to_string(), parts.parse()?));
            }
            // `cargo bench` passes `--bench`; nothing to serve then.
            "--bench" => {}
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    if topics.is_empty() {
        eprintln!(
            "mock_broker: pass --topic NAME:PARTITIONS (see benches/mock_broker.rs); skipping"
        );
        return Ok(());
    }
    let refs: Vec<(&str, i32)> = topics.iter().map(|(t, p)| (t.as_str(), *p)).collect();
    let cluster = tradewind_kafka::EmbeddedCluster::start(brokers, &refs)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "bootstrap={}", cluster.bootstrap_servers())?;
    out.flush()?;
    drop(out);
    loop {
        std::thread::park();
    }
}
