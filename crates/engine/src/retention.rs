//! Retention (`tradewind run --retention 1m=30d,1h=400d`, env `TRADEWIND_RETENTION`): old final
//! window rows are deleted so the tables stop growing forever.
//!
//! Each rule is `<window size>=<max age>` (durations as everywhere else: `1m`, `1h`, `1d`, `30d`).
//! Every window table whose window size equals a rule's keeps its final rows for that long: rows
//! with `window_start` older than now minus the age are deleted in batches of [`BATCH_ROWS`]
//! ([`MySqlSink::purge_final`]), with a [`BATCH_PAUSE`] between batches, at start-up and then every
//! [`PERIOD`]. Provisional rows are never deleted. The work runs in its own tokio task, off the
//! engine's loop; a failed purge is logged and retried at the next period. Deleted rows are counted
//! in `tradewind_retention_deleted_rows_total{table}`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::bail;
use prometheus::{IntCounterVec, Opts, Registry};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tradewind_model::now_ms;
use tradewind_sink::MySqlSink;
use tradewind_telemetry::parse_duration;

/// Rows deleted per statement: small enough to hold few locks for a short time.
pub const BATCH_ROWS: u64 = 5_000;
/// Pause between two batches of one table, so the engine's commits get the rows' locks in between.
pub const BATCH_PAUSE: Duration = Duration::from_millis(100);
/// Time between two retention passes over every table (the first runs at start-up).
pub const PERIOD: Duration = Duration::from_secs(300);

/// One retention rule: the final rows of every table with window size `window` are kept for
/// `max_age` (by `window_start`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionRule {
    /// The window size the rule applies to (`1m` in `1m=30d`).
    pub window: Duration,
    /// How long final rows are kept (`30d` in `1m=30d`).
    pub max_age: Duration,
}

impl std::str::FromStr for RetentionRule {
    type Err = String;

    /// Parses one `<window size>=<max age>` rule, e.g. `1m=30d`.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let Some((window, age)) = s.split_once('=') else {
            return Err(format!(
                "retention rule `{s}` is not `<window size>=<max age>` (e.g. 1m=30d)"
            ));
        };
        let window = parse_duration(window).map_err(|e| format!("retention rule `{s}`: {e}"))?;
        let max_age = parse_duration(age).map_err(|e| format!("retention rule `{s}`: {e}"))?;
        if window.is_zero() || max_age.is_zero() {
            return Err(format!(
                "retention rule `{s}`: the window size and the age must be positive"
            ));
        }
        if max_age < window {
            return Err(format!(
                "retention rule `{s}`: the age is shorter than one window"
            ));
        }
        Ok(RetentionRule { window, max_age })
    }
}

/// Parses a comma-separated list of rules (`1m=30d,1h=400d`; empty: no retention). Two rules for
/// the same window size are an error.
pub fn parse_rules(s: &str) -> Result<Vec<RetentionRule>, String> {
    let mut rules: Vec<RetentionRule> = Vec::new();
    for part in s.split(',').filter(|p| !p.trim().is_empty()) {
        let rule: RetentionRule = part.parse()?;
        if rules.iter().any(|r| r.window == rule.window) {
            return Err(format!(
                "retention: two rules for the window size {}",
                show(rule.window)
            ));
        }
        rules.push(rule);
    }
    Ok(rules)
}

/// The tables each rule applies to: `(table, max age in ms)`, in the order of `tables`. Errors
/// (clear at start-up) when two rules have the same window size, a rule matches no table, or one
/// keeps rows for no longer than the window
/// plus `allowed_lateness` (a late correction would then re-create a deleted row from its late
/// trades alone).
pub fn plan(
    tables: &[(String, i64)],
    rules: &[RetentionRule],
    allowed_lateness: Duration,
) -> anyhow::Result<Vec<(String, i64)>> {
    let mut out = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        if rules[..i].iter().any(|r| r.window == rule.window) {
            bail!(
                "--retention: two rules for the window size {}",
                show(rule.window)
            );
        }
        let window_ms = duration_ms(rule.window);
        let age_ms = duration_ms(rule.max_age);
        let matching: Vec<&String> = tables
            .iter()
            .filter(|(_, w)| *w == window_ms)
            .map(|(t, _)| t)
            .collect();
        let shown = show(rule.window);
        if matching.is_empty() {
            let sizes: BTreeMap<i64, Vec<&str>> =
                tables.iter().fold(BTreeMap::new(), |mut m, (t, w)| {
                    m.entry(*w).or_insert_with(Vec::new).push(t.as_str());
                    m
                });
            let known: Vec<String> = sizes
                .iter()
                .map(|(w, ts)| {
                    let size = Duration::from_millis(u64::try_from(*w).unwrap_or(0));
                    format!("{} ({})", show(size), ts.join(", "))
                })
                .collect();
            bail!(
                "--retention: no window table has the window size {shown}; the tables' sizes are {}",
                known.join("; ")
            );
        }
        if age_ms <= window_ms.saturating_add(duration_ms(allowed_lateness)) {
            bail!(
                "--retention: {shown}={} keeps rows no longer than the window plus the allowed \
                 lateness ({}): a late trade could re-create a deleted row",
                show(rule.max_age),
                show(allowed_lateness)
            );
        }
        out.extend(matching.into_iter().map(|t| (t.clone(), age_ms)));
    }
    Ok(out)
}

/// Registers `tradewind_retention_deleted_rows_total{table}` on `registry`.
pub fn register_metric(registry: &Registry) -> prometheus::Result<IntCounterVec> {
    let m = IntCounterVec::new(
        Opts::new(
            "tradewind_retention_deleted_rows_total",
            "Final window rows deleted by retention (--retention), by table.",
        ),
        &["table"],
    )?;
    registry.register(Box::new(m.clone()))?;
    Ok(m)
}

/// Validates `rules` against `tables` ([`plan`]), registers the metric and spawns
/// [`run_retention`]. `Ok(None)` without rules: nothing is deleted and no task runs.
pub fn spawn(
    sink: &MySqlSink,
    tables: Vec<(String, i64)>,
    rules: &[RetentionRule],
    allowed_lateness: Duration,
    registry: &Registry,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Option<JoinHandle<()>>> {
    if rules.is_empty() {
        return Ok(None);
    }
    let targets = plan(&tables, rules, allowed_lateness)?;
    let deleted = register_metric(registry)?;
    for (table, _) in &targets {
        deleted.with_label_values(&[table.as_str()]);
    }
    Ok(Some(tokio::spawn(run_retention(
        sink.clone(),
        targets,
        deleted,
        shutdown,
    ))))
}

/// The retention task: every [`PERIOD`] (first at start-up), for each `(table, max age ms)`, deletes
/// the final rows older than now minus the age, batch by batch, until `shutdown` flips.
pub async fn run_retention(
    sink: MySqlSink,
    targets: Vec<(String, i64)>,
    deleted: IntCounterVec,
    mut shutdown: watch::Receiver<bool>,
) {
    for (table, age_ms) in &targets {
        let age = show(Duration::from_millis(u64::try_from(*age_ms).unwrap_or(0)));
        tracing::info!(table, max_age = %age, "retention: final rows older than this are deleted");
    }
    loop {
        for (table, age_ms) in &targets {
            let cutoff = now_ms().saturating_sub(*age_ms);
            if !purge_table(&sink, table, cutoff, &deleted, &mut shutdown).await {
                return;
            }
        }
        if !pause(PERIOD, &mut shutdown).await {
            return;
        }
    }
}

/// Deletes `table`'s final rows older than `cutoff` in batches; `false` when shutting down.
async fn purge_table(
    sink: &MySqlSink,
    table: &str,
    cutoff: i64,
    deleted: &IntCounterVec,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let mut total = 0u64;
    loop {
        match sink.purge_final(table, cutoff, BATCH_ROWS).await {
            Ok(n) => {
                deleted.with_label_values(&[table]).inc_by(n);
                total += n;
                if n < BATCH_ROWS {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(table, error = %e, "retention: purge failed; retrying at the next pass");
                break;
            }
        }
        if !pause(BATCH_PAUSE, shutdown).await {
            return false;
        }
    }
    if total > 0 {
        tracing::info!(
            table,
            rows = total,
            cutoff_ms = cutoff,
            "retention: deleted old final rows"
        );
    }
    !*shutdown.borrow()
}

/// Sleeps for `d`; `false` when `shutdown` flips (or its sender is gone) first.
async fn pause(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    if *shutdown.borrow() {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => !*shutdown.borrow(),
        r = shutdown.changed() => r.is_ok() && !*shutdown.borrow(),
    }
}

/// A duration as rules are written: `30d`, `1h`, `1m` when whole, humantime's form otherwise.
fn show(d: Duration) -> String {
    let secs = d.as_secs();
    if d.subsec_nanos() == 0 && secs > 0 {
        for (unit, n) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
            if secs % n == 0 {
                return format!("{}{unit}", secs / n);
            }
        }
    }
    humantime::format_duration(d).to_string()
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);
    const HOUR: Duration = Duration::from_secs(3600);
    const DAY: Duration = Duration::from_secs(86_400);

    fn tables() -> Vec<(String, i64)> {
        [
            ("market_1m", 60_000),
            ("asset_1m", 60_000),
            ("asset_1h", 3_600_000),
            ("asset_1d", 86_400_000),
        ]
        .iter()
        .map(|(t, w)| (t.to_string(), *w))
        .collect()
    }

    #[test]
    fn parses_rules() {
        assert_eq!(
            parse_rules("1m=30d,1h=400d"),
            Ok(vec![
                RetentionRule {
                    window: MIN,
                    max_age: 30 * DAY
                },
                RetentionRule {
                    window: HOUR,
                    max_age: 400 * DAY
                },
            ])
        );
        assert_eq!(
            parse_rules(" 1d = 5y , "),
            Ok(vec![RetentionRule {
                window: DAY,
                // humantime's year is 365.25 days.
                max_age: Duration::from_secs(5 * 31_557_600),
            }])
        );
        assert_eq!(
            parse_rules("60=2h"),
            Ok(vec![RetentionRule {
                window: MIN,
                max_age: 2 * HOUR
            }])
        );
        assert_eq!(parse_rules(""), Ok(vec![]));
        // Messages and logs show durations as rules are written.
        assert_eq!(show(400 * DAY), "400d");
        assert_eq!(show(90 * MIN), "90m");
        assert_eq!(show(Duration::from_millis(1500)), "1s 500ms");
    }

    #[test]
    fn rejects_bad_rules_with_the_rule_in_the_message() {
        for (bad, says) in [
            ("1m", "is not `<window size>=<max age>`"),
            ("1m=", "`1m=`"),
            ("1x=30d", "`1x=30d`"),
            ("1m=30 parsecs", "`1m=30 parsecs`"),
            ("0s=30d", "must be positive"),
            ("1h=30m", "shorter than one window"),
            ("1m=30d,60s=10d", "two rules for the window size 1m"),
        ] {
            let e = parse_rules(bad).expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn plans_every_table_of_a_rule_and_rejects_rules_that_match_nothing() {
        let rules = parse_rules("1m=30d,1d=800d").unwrap();
        let planned = plan(&tables(), &rules, 10 * MIN).unwrap();
        let d = 86_400_000i64;
        assert_eq!(
            planned,
            vec![
                ("market_1m".to_string(), 30 * d),
                ("asset_1m".to_string(), 30 * d),
                ("asset_1d".to_string(), 800 * d),
            ]
        );
        let e = plan(&tables(), &parse_rules("5m=30d").unwrap(), 10 * MIN)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no window table has the window size 5m"), "{e}");
        assert!(
            e.contains("1h (asset_1h)") && e.contains("1m (market_1m, asset_1m)"),
            "{e}"
        );
        // Ten minutes of allowed lateness: a 1-minute table must keep rows longer than 11 minutes.
        let e = plan(&tables(), &parse_rules("1m=11m").unwrap(), 10 * MIN)
            .unwrap_err()
            .to_string();
        assert!(e.contains("re-create a deleted row"), "{e}");
        assert!(plan(&tables(), &parse_rules("1m=12m").unwrap(), 10 * MIN).is_ok());
        // Rules given as separate flags are checked for duplicates here.
        let twice = [rules[0], rules[0]];
        let e = plan(&tables(), &twice, 10 * MIN).unwrap_err().to_string();
        assert!(e.contains("two rules for the window size 1m"), "{e}");
    }
}
