//! Process-wide librdkafka client options: TLS, SASL and tuning settings that every Kafka client of
//! this process (producers, consumers, the admin client) gets on top of tradewind's own defaults.
//!
//! Set once at start-up from `--kafka-option` / `TRADEWIND_KAFKA_OPTIONS` (`key=value`, e.g.
//! `security.protocol=SASL_SSL,sasl.mechanism=SCRAM-SHA-512,sasl.username=engine,ssl.ca.location=/ca.crt`)
//! and `--kafka-password-file` / `TRADEWIND_KAFKA_PASSWORD_FILE` (the SASL password, read from a file
//! such as a mounted Kubernetes Secret, so it never sits in an environment variable or a command line).
//! Values of secret settings are never logged: [`ClientOptions`]'s `Debug` redacts them.

use std::fmt;
use std::path::Path;
use std::sync::OnceLock;

use rdkafka::config::ClientConfig;

static OPTIONS: OnceLock<ClientOptions> = OnceLock::new();

/// A parsed set of librdkafka settings, in the order given (a later key overrides an earlier one).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ClientOptions {
    pairs: Vec<(String, String)>,
}

/// Whether a librdkafka setting holds a secret (its value must never be printed).
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password")
        || k.contains("secret")
        || k.ends_with(".key.pem")
        || k == "sasl.jaas.config"
}

impl ClientOptions {
    /// Parses `key=value` items, then adds `sasl.password` from `password_file` (trailing newline
    /// trimmed) when given. An item without `=`, an empty key or an unreadable/empty file is an error,
    /// and the message never contains a value.
    pub fn parse(items: &[String], password_file: Option<&Path>) -> anyhow::Result<Self> {
        let mut pairs = Vec::new();
        for item in items.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
            let Some((k, v)) = item.split_once('=') else {
                anyhow::bail!("Kafka option without `=` (expected key=value)");
            };
            let k = k.trim();
            if k.is_empty() {
                anyhow::bail!("Kafka option with an empty key");
            }
            pairs.push((k.to_string(), v.trim().to_string()));
        }
        if let Some(path) = password_file {
            let raw = std::fs::read_to_string(path).map_err(|e| {
                anyhow::anyhow!(
                    "cannot read the Kafka password file {}: {e}",
                    path.display()
                )
            })?;
            let pw = raw.trim_end_matches(['\r', '\n']);
            if pw.is_empty() {
                anyhow::bail!("the Kafka password file {} is empty", path.display());
            }
            pairs.push(("sasl.password".to_string(), pw.to_string()));
        }
        Ok(ClientOptions { pairs })
    }

    /// The settings, in order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// Applies every setting to `config`.
    pub fn apply(&self, config: &mut ClientConfig) {
        for (k, v) in &self.pairs {
            config.set(k, v);
        }
    }
}

impl fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (k, v) in &self.pairs {
            if is_secret_key(k) {
                m.entry(k, &"<redacted>");
            } else {
                m.entry(k, v);
            }
        }
        m.finish()
    }
}

/// Sets the process-wide options (once; the first call wins, later calls are ignored with a
/// warning) and logs their keys and non-secret values.
pub fn set_client_options(options: ClientOptions) {
    if options.pairs.is_empty() {
        return;
    }
    tracing::info!(options = ?options, "Kafka client options");
    if OPTIONS.set(options).is_err() {
        tracing::warn!("Kafka client options were already set; keeping the first set");
    }
}

/// Applies the process-wide options (if any) to `config`. Called by every config builder of this
/// crate, so callers get them without passing them around.
pub fn apply_client_options(config: &mut ClientConfig) {
    if let Some(o) = OPTIONS.get() {
        o.apply(config);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pairs_and_reads_the_password_file_without_its_newline() {
        let dir = std::env::temp_dir().join(format!("tw-kafka-opts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let pw = dir.join("password");
        std::fs::write(&pw, "s3cr=t,pw\n").expect("write");
        let o = ClientOptions::parse(
            &[
                "security.protocol=SASL_SSL".into(),
                " sasl.mechanism = SCRAM-SHA-512 ".into(),
                String::new(),
            ],
            Some(&pw),
        )
        .expect("valid");
        assert_eq!(
            o.pairs(),
            &[
                ("security.protocol".into(), "SASL_SSL".into()),
                ("sasl.mechanism".into(), "SCRAM-SHA-512".into()),
                ("sasl.password".into(), "s3cr=t,pw".into()),
            ]
        );
        let shown = format!("{o:?}");
        assert!(!shown.contains("s3cr"), "{shown}");
        assert!(
            shown.contains("<redacted>") && shown.contains("SCRAM-SHA-512"),
            "{shown}"
        );
        let mut c = ClientConfig::new();
        o.apply(&mut c);
        assert_eq!(c.get("sasl.password"), Some("s3cr=t,pw"));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn bad_input_is_an_error_that_shows_no_value() {
        let e = ClientOptions::parse(&["sasl.password".into()], None).expect_err("no =");
        assert!(e.to_string().contains("key=value"));
        assert!(ClientOptions::parse(&["=x".into()], None).is_err());
        let missing = Path::new("/nonexistent/tradewind/password");
        assert!(ClientOptions::parse(&[], Some(missing)).is_err());
        let inline = ClientOptions::parse(&["sasl.password=hunter2".into()], None).expect("ok");
        assert!(!format!("{inline:?}").contains("hunter2"));
        assert!(is_secret_key("ssl.key.password") && is_secret_key("sasl.jaas.config"));
        assert!(!is_secret_key("sasl.username"));
    }
}
