//! `tradewind produce --file F.jsonl`: backfill a JSON-lines capture into the trade topic with the same
//! validation, keying and dead-lettering as live ingestion, with a progress bar on stderr.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use tokio::io::AsyncBufReadExt;
use tokio::sync::watch;

use crate::metrics::IngestMetrics;
use crate::pipeline::{Pipeline, PipelineConfig};

/// Settings of a backfill: the `tradewind produce` flags (mapped in the binary's `src/cli`).
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
        .with_context(|| format!("cannot open {}", cfg.file.display()))?;
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
    let bar = progress_bar(cfg.progress, len);
    let origin = cfg.file.display().to_string();
    let started = Instant::now();
    let read = submit_lines(file, &pipeline, &origin, &bar, &mut shutdown).await;
    bar.finish_and_clear();
    // Flush what was handed over even when reading failed part-way.
    let flushed = pipeline.flush().await;
    let (lines, interrupted) = read?;
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

/// An indicatif bar over the file's bytes on stderr, or a hidden one.
fn progress_bar(visible: bool, len: u64) -> indicatif::ProgressBar {
    if !visible {
        return indicatif::ProgressBar::hidden();
    }
    let b = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{elapsed_precise} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        b.set_style(style.progress_chars("=> "));
    }
    b
}

/// Submits every non-blank line of `file` (line ending stripped) to `pipeline`, until the end of the
/// file or `shutdown`. Returns the lines submitted and whether shutdown cut the file short.
async fn submit_lines(
    file: tokio::fs::File,
    pipeline: &Pipeline,
    origin: &str,
    bar: &indicatif::ProgressBar,
    shutdown: &mut watch::Receiver<bool>,
) -> std::io::Result<(u64, bool)> {
    let mut reader = tokio::io::BufReader::with_capacity(1 << 20, file);
    let mut line: Vec<u8> = Vec::with_capacity(1024);
    let (mut lines, mut bytes, mut shown) = (0u64, 0u64, 0u64);
    loop {
        if lines % 4096 == 0 && *shutdown.borrow_and_update() {
            bar.set_position(bytes);
            return Ok((lines, true));
        }
        line.clear();
        let n = reader.read_until(b'\n', &mut line).await?;
        if n == 0 {
            bar.set_position(bytes);
            return Ok((lines, false));
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
        pipeline.submit(record, Some(origin)).await;
        if bytes - shown >= 1 << 20 {
            bar.set_position(bytes);
            shown = bytes;
        }
    }
}
/// `tradewind produce` entry point: backfill, then print a summary on stdout; an error if the flush
/// left records unsettled or deliveries failed.
pub async fn produce(cfg: BackfillConfig, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let registry = prometheus::Registry::new();
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
