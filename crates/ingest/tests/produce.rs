//! `tradewind produce` backfill: every good line of a JSON-lines capture reaches the topic unchanged
//! and keyed by base; bad lines go to the dead-letter topic with their reason; blank lines and CRLF
//! endings are tolerated.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use common::{consume_all, mock_cluster, trade};
use tradewind_ingest::pipeline::PipelineConfig;
use tradewind_ingest::{backfill, BackfillConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_delivers_good_lines_and_dead_letters_bad_ones() {
    let mock = mock_cluster(&[("bf.trades", 3), ("bf.dlq", 1)]);
    // An old capture (2022): replays fine, only the future is bounded.
    let ts = 1_666_422_331_415;
    let path =
        std::env::temp_dir().join(format!("tw-ingest-backfill-{}.jsonl", std::process::id()));
    let mut good = Vec::new();
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        for i in 0..20_000u64 {
            let line = trade(
                ["bitcoin", "ethereum", "enzyme"][(i % 3) as usize],
                i,
                ts + i as i64,
            );
            let eol = if i % 1000 == 0 { "\r\n" } else { "\n" };
            write!(f, "{line}{eol}").unwrap();
            good.push(line);
            if i % 5000 == 0 {
                writeln!(f).unwrap();
                writeln!(f, "{{\"exchange\":\"binance\"").unwrap();
                writeln!(
                    f,
                    "{}",
                    trade("bitcoin", i, ts).replace("\"buy\"", "\"long\"")
                )
                .unwrap();
            }
        }
        // Last line without a trailing newline.
        write!(f, "{}", trade("bitcoin", 99_999, 4_102_444_800_000)).unwrap();
    }
    let registry = prometheus::Registry::new();
    let (_stop, rx) = tokio::sync::watch::channel(false);
    let stats = backfill(
        BackfillConfig {
            file: path.clone(),
            pipeline: PipelineConfig {
                brokers: mock.bootstrap_servers(),
                topic: "bf.trades".into(),
                dlq_topic: "bf.dlq".into(),
                max_inflight: 5_000,
                future_tolerance: Duration::from_secs(60),
                flush_timeout: Duration::from_secs(60),
                max_frame_bytes: tradewind_ingest::pipeline::DEFAULT_MAX_FRAME_BYTES,
            },
            partitions: None,
            progress: false,
        },
        &registry,
        rx,
    )
    .await
    .unwrap();
    std::fs::remove_file(&path).ok();
    assert!(stats.flushed && !stats.interrupted);
    assert_eq!(stats.lines, 20_000 + 4 * 2 + 1);
    assert_eq!(stats.produced, 20_000);
    assert_eq!(stats.delivery_errors, 0);
    let want: std::collections::BTreeMap<&str, u64> =
        [("syntax", 4), ("bad_direction", 4), ("future_timestamp", 1)].into();
    assert_eq!(stats.rejected, want);

    let recs = consume_all(&mock.bootstrap_servers(), "bf.trades", 3, good.len());
    assert_eq!(recs.len(), good.len());
    let mut by_base: HashMap<Vec<u8>, Vec<Vec<u8>>> = HashMap::new();
    for r in &recs {
        by_base
            .entry(r.key.clone().unwrap())
            .or_default()
            .push(r.payload.clone());
    }
    for (base, got) in by_base {
        let b = String::from_utf8(base).unwrap();
        let sent: Vec<Vec<u8>> = good
            .iter()
            .filter(|l| l.contains(&format!("\"base\":\"{b}\"")))
            .map(|l| l.clone().into_bytes())
            .collect();
        assert_eq!(got, sent, "{b}: every line once, unchanged, in file order");
    }
    let dlq = consume_all(&mock.bootstrap_servers(), "bf.dlq", 1, 9);
    assert_eq!(dlq.len(), 9);
    let mut reasons: HashMap<String, u64> = HashMap::new();
    for r in &dlq {
        *reasons
            .entry(r.header("tw-reason").unwrap().to_string())
            .or_default() += 1;
        assert_eq!(r.header("tw-stage"), Some("ingest"));
        assert!(r.header("tw-origin").unwrap().ends_with(".jsonl"));
    }
    assert_eq!(reasons["syntax"], 4);
    assert_eq!(reasons["bad_direction"], 4);
    assert_eq!(reasons["future_timestamp"], 1);
}
