//! `tradewind produce --file F.jsonl`: backfill a JSON-lines capture into the trade topic with the same
//! validation, keying and dead-lettering as live ingestion, with a progress bar on stderr.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncBufReadExt;
use tokio::sync::watch;

use crate::metrics::IngestMetrics;
use crate::parse_duration;
use crate::pipeline::{Pipeline, PipelineConfig};

/// `tradewind produce`: backfill a JSON-lines capture (one CoinCap trade per line) into Kafka.
#[derive(Debug, Clone, clap::Args)]
pub struct ProduceArgs {
    /// JSON-lines file to backfill (one CoinCap trade object per line).
    #[arg(long, env = "TRADEWIND_FILE")]
    pub file: PathBuf,
    /// Kafka bootstrap servers (comma-separated host:port).
    #[arg(long, env = "TRADEWIND_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Topic that receives valid trades, keyed by `base`.
    #[arg(long, env = "TRADEWIND_TOPIC", default_value = "trades")]
    pub topic: String,
    /// Dead-letter topic for rejected lines (reason in the `tw-reason` header).
    #[arg(long, env = "TRADEWIND_DLQ_TOPIC", default_value = "trades.dlq")]
    pub dlq_topic: String,
    /// Partitions of the topics, created at start if missing (0 = do not create topics).
    #[arg(long, env = "TRADEWIND_PARTITIONS", default_value_t = 6)]
    pub partitions: i32,
    /// Reject trades dated further than this ahead of the wall clock (older trades always pass).
    #[arg(long, env = "TRADEWIND_FUTURE_TOLERANCE", default_value = "60s", value_parser = parse_duration)]
    pub future_tolerance: Duration,
    /// Maximum records handed to Kafka and not yet acknowledged.
    #[arg(long, env = "TRADEWIND_MAX_INFLIGHT", default_value_t = 100_000)]
    pub max_inflight: usize,
    /// How long the final flush waits for outstanding deliveries.
    #[arg(long, env = "TRADEWIND_FLUSH_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub flush_timeout: Duration,
}

/// Library form of [`ProduceArgs`].
#[derive(Debug, Clone)]
pub struct BackfillConfig {
    /// Input file.
    pub file: PathBuf,
    /// Producer-side settings (brokers, topics, window, tolerance, flush timeout).
    pub pipeline: PipelineConfig,
    /// Create missing topics with this many partitions.
    pub partitions: Option<i32>,
    /// Draw an indicatif progress bar (bytes of the file) on stderr.
    pub progress: bool,
}

/// What a backfill did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BackfillStats {
    /// Non-empty lines read.
    pub lines: u64,
    /// Trades acknowledged by Kafka.
    pub produced: u64,
    /// Dead-lettered lines by reason label.
    pub rejected: BTreeMap<&'static str, u64>,
    /// Failed deliveries.
    pub delivery_errors: u64,
    /// Wall time, seconds.
    pub seconds: f64,
    /// True when the final flush settled every record.
    pub flushed: bool,
    /// True when stopped by the shutdown signal before the end of the file.
    pub interrupted: bool,
}

/// Backfills `cfg.file` into Kafka; stops early (but still flushes) if `shutdown` flips.
pub async fn backfill(
    cfg: BackfillConfig,
    registry: &prometheus::Registry,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<BackfillStats> {
    let file = tokio::fs::File::open(&cfg.file)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", cfg.file.display()))?;
    let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    if let Some(p) = cfg.partitions {
        tradewind_kafka::ensure_topics(
            &cfg.pipeline.brokers,
            &[
                (cfg.pipeline.topic.as_str(), p),
                (cfg.pipeline.dlq_topic.as_str(), p),
            ],
        )
        .await?;
    }
    let metrics = IngestMetrics::register(registry)?;
    let pipeline = Arc::new(Pipeline::new(&cfg.pipeline, metrics.clone())?);
    let bar = if cfg.progress {
        let b = indicatif::ProgressBar::new(len);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ) {
            b.set_style(style.progress_chars("=> "));
        }
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let origin = cfg.file.display().to_string();
    let started = Instant::now();
    let mut reader = tokio::io::BufReader::with_capacity(1 << 20, file);
    let mut line: Vec<u8> = Vec::with_capacity(1024);
    let (mut lines, mut bytes, mut shown) = (0u64, 0u64, 0u64);
    let mut interrupted = false;
    loop {
        if lines % 4096 == 0 && *shutdown.borrow_and_update() {
            interrupted = true;
            break;
        }
        line.clear();
        let n = reader.read_until(b'\n', &mut line).await?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        let mut end = line.len();
        while end > 0 && matches!(line[end - 1], b'\n' | b'\r') {
            end -= 1;
        }
        let record = &line[..end];
        if record.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        lines += 1;
        pipeline.submit(record, Some(&origin)).await;
        if bytes - shown >= 1 << 20 {
            bar.set_position(bytes);
            shown = bytes;
        }
    }
    bar.set_position(bytes);
    bar.finish_and_clear();
    let flushed = pipeline.flush().await;
    Ok(BackfillStats {
        lines,
        produced: metrics.produced.get(),
        rejected: metrics.rejected_by_reason(),
        delivery_errors: metrics.delivery_errors.get(),
        seconds: started.elapsed().as_secs_f64(),
        flushed,
        interrupted,
    })
}

/// `tradewind produce` entry point: backfill, then print a summary on stdout.
pub async fn produce(args: ProduceArgs, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let registry = prometheus::Registry::new();
    let cfg = BackfillConfig {
        file: args.file,
        pipeline: PipelineConfig {
            brokers: args.brokers,
            topic: args.topic,
            dlq_topic: args.dlq_topic,
            max_inflight: args.max_inflight,
            future_tolerance: args.future_tolerance,
            flush_timeout: args.flush_timeout,
        },
        partitions: (args.partitions > 0).then_some(args.partitions),
        progress: true,
    };
    let s = backfill(cfg, &registry, shutdown).await?;
    let rejected: u64 = s.rejected.values().sum();
    let reasons: Vec<String> = s.rejected.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!(
        "produced {} rejected {}{} delivery_errors {} lines {} in {:.2}s ({:.0} lines/s){}",
        s.produced,
        rejected,
        if reasons.is_empty() {
            String::new()
        } else {
            format!(" ({})", reasons.join(", "))
        },
        s.delivery_errors,
        s.lines,
        s.seconds,
        s.lines as f64 / s.seconds.max(1e-9),
        if s.interrupted { " [interrupted]" } else { "" },
    );
    anyhow::ensure!(
        s.flushed,
        "final flush did not settle every record (see logs)"
    );
    anyhow::ensure!(
        s.delivery_errors == 0,
        "{} deliveries failed",
        s.delivery_errors
    );
    Ok(())
}
