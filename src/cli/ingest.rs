//! `tradewind ingest` and `tradewind produce` flags, mapped onto [`IngestConfig`] and
//! [`BackfillConfig`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tradewind_ingest::pipeline::{PipelineConfig, DEFAULT_MAX_FRAME_BYTES};
use tradewind_ingest::source::{DEFAULT_SOURCE, DEFAULT_WS_MAX_MESSAGE_BYTES};
use tradewind_ingest::{BackfillConfig, IngestConfig};

use super::parse_duration;

/// The broker and topic flags `ingest` and `produce` share.
#[derive(Debug, Clone, clap::Args)]
pub struct TradesTopicArgs {
    /// Kafka bootstrap servers (comma-separated host:port).
    #[arg(long, env = "TRADEWIND_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Topic that receives valid trades, keyed by `base`.
    #[arg(long, env = "TRADEWIND_TOPIC", default_value = "trades")]
    pub topic: String,
    /// Extra librdkafka setting `key=value` for every Kafka client (repeatable; env: comma-separated),
    /// e.g. `security.protocol=SASL_SSL` or `ssl.ca.location=/ca.crt`. Secret values are never logged;
    /// pass the SASL password with --kafka-password-file.
    #[arg(
        long = "kafka-option",
        env = "TRADEWIND_KAFKA_OPTIONS",
        value_delimiter = ','
    )]
    pub kafka_options: Vec<String>,
}

/// `tradewind ingest`: stream trades from websocket sources into Kafka.
#[derive(Debug, Clone, clap::Args)]
pub struct IngestArgs {
    /// Websocket source; repeat the flag (or space-separate in the env var) for several. A ws:// or
    /// wss:// URL: CoinCap trades socket (frames forwarded unchanged), a `/prices` path is CoinCap
    /// prices, a Binance host is Binance `@trade`. Shorthands: `binance:BTCUSDT,ETHUSDT[@URL]`,
    /// `coinbase:BTC-USD,ETH-USD[@URL]`, `coincap-prices:bitcoin,ethereum[@URL]` (v3, needs
    /// --api-key). CoinCap's v2 socket wss://ws.coincap.io/trades/binance was retired 2025-03-31;
    /// the default is the local simulator. wss:// needs a build with the `tls` feature.
    #[arg(long = "source", env = "TRADEWIND_SOURCE", value_delimiter = ' ',
          default_value = DEFAULT_SOURCE)]
    pub sources: Vec<String>,
    /// Where trades go.
    #[command(flatten)]
    pub kafka: TradesTopicArgs,
    /// Dead-letter topic for rejected frames (reason in the `tw-reason` header).
    #[arg(long, env = "TRADEWIND_DLQ_TOPIC", default_value = "trades.dlq")]
    pub dlq_topic: String,
    /// Address of the Prometheus /metrics, /healthz and /readyz endpoint.
    #[arg(long, env = "TRADEWIND_METRICS_ADDR", default_value = "127.0.0.1:9101")]
    pub metrics_addr: SocketAddr,
    /// Reconnect when a source sends no frame for this long (e.g. 30s, 500ms).
    #[arg(long, env = "TRADEWIND_IDLE_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Maximum records handed to Kafka and not yet acknowledged; when full, reading the socket
    /// pauses (backpressure) instead of buffering without bound.
    #[arg(long, env = "TRADEWIND_MAX_INFLIGHT", default_value_t = 100_000)]
    pub max_inflight: usize,
    /// Reject trades dated further than this ahead of the wall clock (older trades always pass).
    #[arg(long, env = "TRADEWIND_FUTURE_TOLERANCE", default_value = "60s", value_parser = parse_duration)]
    pub future_tolerance: Duration,
    /// CoinCap API key for the v3 prices socket (appended as `apiKey=`).
    #[arg(long, env = "TRADEWIND_COINCAP_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Partitions of the topics, created at start if missing (0 = do not create topics).
    #[arg(long, env = "TRADEWIND_PARTITIONS", default_value_t = 6)]
    pub partitions: i32,
    /// How long shutdown waits for outstanding deliveries.
    #[arg(long, env = "TRADEWIND_FLUSH_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub flush_timeout: Duration,
    /// Trade frames longer than this (bytes) are dead-lettered unparsed with reason `too_large` (a
    /// CoinCap trade is about 170 bytes). Dead letters over 64 KiB keep their first 64 KiB, with
    /// `tw-original-length` and `tw-sha256` headers.
    #[arg(long, env = "TRADEWIND_MAX_FRAME_BYTES", default_value_t = DEFAULT_MAX_FRAME_BYTES)]
    pub max_frame_bytes: usize,
    /// Largest websocket message read (bytes). A longer one is not read: the connection is dropped
    /// and re-opened, and tradewind_ingest_frames_too_large_total counts it.
    #[arg(long, env = "TRADEWIND_WS_MAX_MESSAGE_BYTES", default_value_t = DEFAULT_WS_MAX_MESSAGE_BYTES)]
    pub ws_max_message_bytes: usize,
}

impl From<IngestArgs> for IngestConfig {
    fn from(a: IngestArgs) -> Self {
        IngestConfig {
            idle_timeout: a.idle_timeout,
            max_inflight: a.max_inflight,
            future_tolerance: a.future_tolerance,
            api_key: a.api_key,
            partitions: (a.partitions > 0).then_some(a.partitions),
            flush_timeout: a.flush_timeout,
            topic: a.kafka.topic,
            dlq_topic: a.dlq_topic,
            max_frame_bytes: a.max_frame_bytes,
            ws_max_message_bytes: a.ws_max_message_bytes,
            ..IngestConfig::new(a.sources, a.kafka.brokers)
        }
    }
}

/// `tradewind produce`: backfill a JSON-lines capture (one CoinCap trade per line) into Kafka.
#[derive(Debug, Clone, clap::Args)]
pub struct ProduceArgs {
    /// JSON-lines file to backfill (one CoinCap trade object per line).
    #[arg(long, env = "TRADEWIND_FILE")]
    pub file: PathBuf,
    /// Where trades go.
    #[command(flatten)]
    pub kafka: TradesTopicArgs,
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
    /// Lines longer than this (bytes) are dead-lettered unparsed with reason `too_large`.
    #[arg(long, env = "TRADEWIND_MAX_FRAME_BYTES", default_value_t = DEFAULT_MAX_FRAME_BYTES)]
    pub max_frame_bytes: usize,
}

impl From<ProduceArgs> for BackfillConfig {
    fn from(a: ProduceArgs) -> Self {
        BackfillConfig {
            file: a.file,
            pipeline: PipelineConfig {
                brokers: a.kafka.brokers,
                topic: a.kafka.topic,
                dlq_topic: a.dlq_topic,
                max_inflight: a.max_inflight,
                future_tolerance: a.future_tolerance,
                flush_timeout: a.flush_timeout,
                max_frame_bytes: a.max_frame_bytes,
            },
            partitions: (a.partitions > 0).then_some(a.partitions),
            progress: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    enum Cli {
        Ingest(IngestArgs),
        Produce(ProduceArgs),
    }

    #[test]
    fn ingest_flags_map_onto_the_config() {
        let Ok(Cli::Ingest(a)) = Cli::try_parse_from([
            "tw",
            "ingest",
            "--source",
            "ws://127.0.0.1:1/trades/ALL",
            "--source",
            "binance:BTCUSDT",
            "--brokers",
            "k:9092",
            "--idle-timeout",
            "500ms",
            "--partitions",
            "0",
            "--flush-timeout",
            "2m",
            "--ws-max-message-bytes",
            "1048576",
        ]) else {
            panic!("ingest flags parse");
        };
        assert_eq!(a.metrics_addr, "127.0.0.1:9101".parse().expect("addr"));
        let c = IngestConfig::from(a);
        assert_eq!(
            c.sources,
            ["ws://127.0.0.1:1/trades/ALL", "binance:BTCUSDT"]
        );
        assert_eq!(c.brokers, "k:9092");
        assert_eq!(
            (c.topic.as_str(), c.dlq_topic.as_str()),
            ("trades", "trades.dlq")
        );
        assert_eq!(c.idle_timeout, Duration::from_millis(500));
        assert_eq!(c.flush_timeout, Duration::from_secs(120));
        assert_eq!(c.future_tolerance, Duration::from_secs(60));
        assert_eq!(c.max_inflight, 100_000);
        assert_eq!(c.partitions, None, "0 partitions: leave topics alone");
        assert_eq!(c.max_frame_bytes, 16 * 1024);
        assert_eq!(c.ws_max_message_bytes, 1 << 20);
        // What the flags do not set keeps the library's defaults.
        let lib = IngestConfig::new(vec![], "");
        assert_eq!(
            (c.backoff_initial, c.backoff_max),
            (lib.backoff_initial, lib.backoff_max)
        );
    }

    #[test]
    fn produce_flags_map_onto_the_config() {
        let Ok(Cli::Produce(a)) = Cli::try_parse_from([
            "tw",
            "produce",
            "--file",
            "t.jsonl",
            "--topic",
            "t",
            "--max-inflight",
            "10",
        ]) else {
            panic!("produce flags parse");
        };
        let c = BackfillConfig::from(a);
        assert_eq!(c.file, PathBuf::from("t.jsonl"));
        assert_eq!(c.partitions, Some(6));
        assert_eq!(c.pipeline.topic, "t");
        assert_eq!(c.pipeline.max_inflight, 10);
        assert_eq!(c.pipeline.flush_timeout, Duration::from_secs(60));
        assert_eq!(c.pipeline.max_frame_bytes, 16 * 1024);
        assert!(
            Cli::try_parse_from(["tw", "produce"]).is_err(),
            "--file is required"
        );
    }
}
