//! What `tradewind demo` shows while it runs: a snapshot of the pipeline (the forming and the last
//! closed minute from MySQL, throughput, lag, watermark, late/corrected/rejected counts from the
//! metrics registry), drawn either as a full-screen view that redraws in place (ratatui on
//! crossterm, when stdout is a terminal) or as plain lines (when it is not: logs, pipes, CI).

use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use prometheus::Registry;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Row, Sparkline, Table, Wrap};
use ratatui::Frame;
use tokio::sync::watch;

/// How many assets each minute panel fetches (by notional); it lists as many as fit.
const TOP_ASSETS: usize = 40;
/// Throughput samples kept for the sparkline.
const HISTORY: usize = 120;

/// Whether the demo should draw the full-screen view: asked for, or `auto` and stdout is a terminal.
pub fn wanted(mode: ViewMode) -> bool {
    match mode {
        ViewMode::Live => true,
        ViewMode::Plain => false,
        ViewMode::Auto => std::io::stdout().is_terminal(),
    }
}

/// How the demo shows progress (`--view`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ViewMode {
    /// The full-screen view when stdout is a terminal, plain lines otherwise.
    Auto,
    /// Always the full-screen view (logs go to the log file).
    Live,
    /// Always plain lines (logs go to stderr).
    Plain,
}

/// Sends logs (tracing) to `path` instead of stderr, so they do not tear the full-screen view.
/// Same filter and formats as [`tradewind_telemetry::init_tracing`].
pub fn init_file_logging(path: &Path) -> std::io::Result<()> {
    use tracing_subscriber::EnvFilter;
    let file = std::fs::File::create(path)?;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("TRADEWIND_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::sync::Mutex::new(file))
        .with_ansi(false)
        .with_target(true);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.compact().try_init()
    };
    Ok(())
}

/// One asset's row of a minute panel.
#[derive(Debug, Clone, Default)]
pub struct AssetRow {
    /// Asset id.
    pub base: String,
    /// Trades in the minute.
    pub trades: u64,
    /// Notional in USD.
    pub notional: f64,
    /// VWAP in USD.
    pub vwap: Option<f64>,
    /// VWAP change against the previous minute, percent.
    pub change_pct: Option<f64>,
    /// Share of the volume bought by takers (0..1).
    pub buy_share: Option<f64>,
}

/// A minute as the panels show it.
#[derive(Debug, Clone, Default)]
pub struct MinuteView {
    /// `HH:MM` (UTC).
    pub minute: String,
    /// Trades over all assets.
    pub trades: u64,
    /// Notional over all assets, USD.
    pub notional: f64,
    /// Number of assets traded.
    pub assets_traded: u64,
    /// The most traded assets, by notional.
    pub top: Vec<AssetRow>,
    /// The largest moves (asset, percent) among assets with at least 5 trades.
    pub movers: Vec<(String, f64)>,
}

/// Everything one redraw shows.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The newest provisional minute.
    pub forming: Option<MinuteView>,
    /// The newest final minute.
    pub closed: Option<MinuteView>,
    /// Why MySQL could not be read, if it could not.
    pub db_error: Option<String>,
    /// Trades the ingestor produced to Kafka.
    pub ingested: f64,
    /// Ingest rate, trades/s, since the previous snapshot.
    pub ingest_rate: f64,
    /// Engine rate, trades/s, since the previous snapshot.
    pub engine_rate: f64,
    /// Kafka consumer lag, messages.
    pub lag: f64,
    /// The engine's watermark, epoch seconds (0 before the first).
    pub watermark: f64,
    /// Seconds between now and the watermark.
    pub behind: f64,
    /// Late trades folded into an already-final row.
    pub corrected: f64,
    /// Late trades past the allowed lateness, sent to the late topic.
    pub routed: f64,
    /// Frames the ingestor rejected (to the dead-letter topic).
    pub rejected_ingest: f64,
    /// Records the engine rejected.
    pub rejected_engine: f64,
    /// Window rows written to MySQL.
    pub rows_written: f64,
}

/// Value of `name` summed over the series whose labels include `label=value` (all when `None`).
fn metric(registry: &Registry, name: &str, label: Option<(&str, &str)>) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().iter())
        .filter(|m| {
            label.is_none_or(|(k, v)| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == k && l.value() == v)
            })
        })
        .map(|m| m.get_counter().get_value() + m.get_gauge().get_value())
        .sum()
}

/// Takes snapshots, turning counters into rates between two of them.
pub struct Sampler {
    last: Option<(Instant, f64, f64)>,
    /// Engine throughput history (trades/s), newest last.
    pub history: Vec<u64>,
}

impl Sampler {
    /// A sampler with no history.
    pub fn new() -> Sampler {
        Sampler {
            last: None,
            history: Vec::with_capacity(HISTORY),
        }
    }

    /// Reads the metrics and MySQL into a [`Snapshot`].
    pub async fn sample(
        &mut self,
        sink: &tradewind_sink::MySqlSink,
        registry: &Registry,
    ) -> Snapshot {
        let engine_in = metric(registry, "tradewind_engine_records_in_total", None);
        let ingested = metric(registry, "tradewind_ingest_produced_total", None);
        let now = Instant::now();
        let (engine_rate, ingest_rate) = match self.last {
            Some((t, e, i)) => {
                let dt = now.duration_since(t).as_secs_f64().max(1e-3);
                ((engine_in - e) / dt, (ingested - i) / dt)
            }
            None => (0.0, 0.0),
        };
        self.last = Some((now, engine_in, ingested));
        if self.history.len() == HISTORY {
            self.history.remove(0);
        }
        self.history.push(engine_rate.max(0.0) as u64);
        let (forming, closed, db_error) = match minutes(sink).await {
            Ok((f, c)) => (f, c, None),
            Err(e) => (None, None, Some(format!("{e:#}"))),
        };
        Snapshot {
            forming,
            closed,
            db_error,
            ingested,
            ingest_rate,
            engine_rate,
            lag: metric(registry, "tradewind_engine_consumer_lag", None).max(0.0),
            watermark: metric(registry, "tradewind_engine_watermark_seconds", None),
            behind: metric(registry, "tradewind_engine_event_time_lag_seconds", None),
            corrected: late(registry, "corrected"),
            routed: late(registry, "routed"),
            rejected_ingest: metric(registry, "tradewind_ingest_rejected_total", None),
            rejected_engine: metric(registry, "tradewind_engine_records_rejected_total", None),
            rows_written: metric(registry, "tradewind_engine_rows_written_total", None),
        }
    }
}

fn late(registry: &Registry, outcome: &str) -> f64 {
    metric(
        registry,
        "tradewind_engine_late_records_total",
        Some(("outcome", outcome)),
    )
}

/// The forming (newest provisional) and last closed (newest final) minute.
async fn minutes(
    sink: &tradewind_sink::MySqlSink,
) -> anyhow::Result<(Option<MinuteView>, Option<MinuteView>)> {
    let mut conn = sink.pool().get_conn().await?;
    let forming = minute(&mut conn, 0).await?;
    let closed = minute(&mut conn, 1).await?;
    Ok((forming, closed))
}

async fn minute(conn: &mut mysql_async::Conn, is_final: u8) -> anyhow::Result<Option<MinuteView>> {
    let head: Option<(String, String, u64, f64, u64)> = conn
        .exec_first(
            "SELECT DATE_FORMAT(window_start, '%Y-%m-%d %H:%i:%s'), DATE_FORMAT(window_start, '%H:%i'), \
             SUM(trades), SUM(notional_usd), COUNT(*) FROM asset_1m \
             WHERE window_start = (SELECT MAX(window_start) FROM asset_1m WHERE is_final = ?) \
               AND is_final = ? GROUP BY window_start",
            (is_final, is_final),
        )
        .await?;
    let Some((start, minute, trades, notional, assets_traded)) = head else {
        return Ok(None);
    };
    type Top = (
        String,
        u64,
        Option<f64>,
        Option<f64>,
        Option<f64>,
        Option<f64>,
    );
    let rows: Vec<Top> = conn
        .exec(
            "SELECT base, trades, notional_usd, vwap_usd, price_change_pct, \
             buy_volume / NULLIF(volume, 0) FROM asset_1m \
             WHERE window_start = ? AND is_final = ? ORDER BY notional_usd DESC LIMIT ?",
            (&start, is_final, TOP_ASSETS as u64),
        )
        .await?;
    let movers: Vec<(String, f64)> = conn
        .exec(
            "SELECT base, price_change_pct FROM asset_1m \
             WHERE window_start = ? AND is_final = ? AND trades >= 5 \
               AND price_change_pct IS NOT NULL \
             ORDER BY ABS(price_change_pct) DESC LIMIT 3",
            (&start, is_final),
        )
        .await?;
    let top = rows
        .into_iter()
        .map(
            |(base, trades, notional, vwap, change_pct, buy_share)| AssetRow {
                base,
                trades,
                notional: notional.unwrap_or(0.0),
                vwap,
                change_pct,
                buy_share,
            },
        )
        .collect();
    Ok(Some(MinuteView {
        minute,
        trades,
        notional,
        assets_traded,
        top,
        movers,
    }))
}

/// `HH:MM:SS` of an epoch-seconds value (UTC), `-` before the first watermark.
pub fn hhmmss(epoch_s: f64) -> String {
    if epoch_s <= 0.0 {
        return "-".into();
    }
    let s = epoch_s as i64 % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// Thousands separators: 1234567 -> `1,234,567`.
pub fn thousands(x: f64) -> String {
    let n = x.max(0.0).round() as u64;
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// USD amounts as a person reads them: `$1.23M`, `$45.6k`, `$12`.
pub fn usd(x: f64) -> String {
    match x.abs() {
        a if a >= 1e9 => format!("${:.2}B", x / 1e9),
        a if a >= 1e6 => format!("${:.2}M", x / 1e6),
        a if a >= 1e4 => format!("${:.1}k", x / 1e3),
        _ => format!("${x:.0}"),
    }
}

/// A price with as many decimals as it needs (4 significant digits below 1).
pub fn price(x: f64) -> String {
    match x.abs() {
        a if a >= 1000.0 => thousands(x),
        a if a >= 1.0 => format!("{x:.2}"),
        a if a > 0.0 => {
            let digits = (3 - a.log10().floor() as i32).clamp(2, 12) as usize;
            format!("{x:.digits$}")
        }
        _ => "0".into(),
    }
}

/// The plain-line form of a snapshot (when stdout is not a terminal).
pub fn plain_lines(s: &Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    for (label, m) in [("closed ", &s.closed), ("forming", &s.forming)] {
        let Some(m) = m else { continue };
        let movers: Vec<String> = m
            .movers
            .iter()
            .map(|(b, p)| format!("{b} {p:+.3}%"))
            .collect();
        out.push(format!(
            "{} UTC {label} | {:>7} trades | {:>10} notional | top movers: {}",
            m.minute,
            m.trades,
            usd(m.notional),
            movers.join(", ")
        ));
    }
    if let Some(e) = &s.db_error {
        out.push(format!("  (MySQL query failed: {e})"));
    }
    out.push(format!(
        "  engine {:>8.0} trades/s | lag {:.0} | watermark {} ({:.1}s behind) | late: {:.0} corrected, {:.0} routed | rejected {:.0}",
        s.engine_rate,
        s.lag,
        hhmmss(s.watermark),
        s.behind,
        s.corrected,
        s.routed,
        s.rejected_engine + s.rejected_ingest
    ));
    out
}

/// What the header of the full-screen view says about the run.
#[derive(Debug, Clone)]
pub struct Banner {
    /// The data flow, e.g. `simulator ws://... 2,000 trades/s -> Kafka ... -> engine -> mysql://...`.
    pub flow: String,
    /// Where /metrics is served.
    pub metrics: String,
    /// Where the logs go.
    pub log_file: String,
}

/// Runs the full-screen view until `stop` fires or the user presses `q`, Esc or Ctrl-C (which
/// stop the demo through `stop_tx`). Redraws every `every`. The terminal is restored on return,
/// on error and on panic.
pub async fn run_live(
    sink: &tradewind_sink::MySqlSink,
    registry: &Registry,
    banner: &Banner,
    every: Duration,
    stop_tx: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut terminal = ratatui::try_init()?;
    let _restore = RestoreGuard;
    let done = Arc::new(AtomicBool::new(false));
    let keys = spawn_key_reader(stop_tx, done.clone());
    let started = Instant::now();
    let mut sampler = Sampler::new();
    loop {
        let snap = sampler.sample(sink, registry).await;
        let elapsed = started.elapsed();
        terminal.draw(|f| draw(f, banner, &snap, &sampler.history, elapsed))?;
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => break,
        }
        if *stop.borrow() {
            break;
        }
    }
    done.store(true, Ordering::Relaxed);
    let _ = tokio::task::spawn_blocking(move || keys.join()).await;
    Ok(())
}

/// Restores the terminal (raw mode off, main screen back) when dropped.
struct RestoreGuard;

impl Drop for RestoreGuard {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// Reads key presses on a thread (crossterm's reader blocks): `q`, Esc or Ctrl-C stop the demo.
fn spawn_key_reader(
    stop_tx: watch::Sender<bool>,
    done: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !done.load(Ordering::Relaxed) {
            match event::poll(Duration::from_millis(200)) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(_) => return,
            }
            let Ok(Event::Key(k)) = event::read() else {
                continue;
            };
            let ctrl_c =
                k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
            if k.kind == KeyEventKind::Press
                && (ctrl_c || matches!(k.code, KeyCode::Char('q') | KeyCode::Esc))
            {
                let _ = stop_tx.send(true);
                return;
            }
        }
    })
}

fn draw(f: &mut Frame, banner: &Banner, s: &Snapshot, history: &[u64], elapsed: Duration) {
    let [head, stats, minutes, spark] = Layout::vertical([
        Constraint::Length(5),
        Constraint::Length(4),
        Constraint::Min(8),
        Constraint::Length(5),
    ])
    .areas(f.area());
    let secs = elapsed.as_secs();
    let title = Line::from(vec![
        Span::styled(
            " tradewind demo ",
            Style::new().add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!(
            "running {:02}:{:02} · q quits ",
            secs / 60,
            secs % 60
        )),
    ]);
    let header = Paragraph::new(vec![
        Line::raw(banner.flow.clone()),
        Line::raw(format!(
            "metrics {}   logs {}",
            banner.metrics, banner.log_file
        )),
    ])
    .wrap(Wrap { trim: false })
    .block(Block::bordered().title(title));
    f.render_widget(header, head);
    draw_stats(f, stats, s);
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(minutes);
    draw_minute(f, left, "forming minute", s.forming.as_ref(), s);
    draw_minute(f, right, "last closed minute", s.closed.as_ref(), s);
    let width = usize::from(spark.width.saturating_sub(2));
    let tail = &history[history.len().saturating_sub(width)..];
    let sparkline = Sparkline::default()
        .block(Block::bordered().title(format!(
            " engine throughput, trades/s (last {} s of samples) ",
            tail.len()
        )))
        .data(tail)
        .style(Style::new().fg(Color::Cyan));
    f.render_widget(sparkline, spark);
}

fn draw_stats(f: &mut Frame, area: Rect, s: &Snapshot) {
    let warn = |x: f64| {
        if x > 0.0 {
            Style::new().fg(Color::Yellow)
        } else {
            Style::new()
        }
    };
    let lines = vec![
        Line::from(vec![Span::raw(format!(
            "ingested {} ({}/s)   engine {} trades/s   lag {}   watermark {} UTC ({:.1} s behind)",
            thousands(s.ingested),
            thousands(s.ingest_rate),
            thousands(s.engine_rate),
            thousands(s.lag),
            hhmmss(s.watermark),
            s.behind
        ))]),
        Line::from(vec![
            Span::raw("late trades: "),
            Span::styled(
                format!("{} corrected", thousands(s.corrected)),
                warn(s.corrected),
            ),
            Span::raw(", "),
            Span::styled(
                format!("{} routed to trades.late", thousands(s.routed)),
                warn(s.routed),
            ),
            Span::raw("   rejected: "),
            Span::styled(
                format!(
                    "{} at ingest, {} in the engine",
                    thousands(s.rejected_ingest),
                    thousands(s.rejected_engine)
                ),
                warn(s.rejected_ingest + s.rejected_engine),
            ),
            Span::raw(format!("   rows written {}", thousands(s.rows_written))),
        ]),
    ];
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" pipeline ")),
        area,
    );
}

fn draw_minute(f: &mut Frame, area: Rect, label: &str, m: Option<&MinuteView>, s: &Snapshot) {
    let Some(m) = m else {
        let msg = s
            .db_error
            .as_deref()
            .map_or("waiting for the first rows…".to_string(), |e| {
                format!("MySQL query failed: {e}")
            });
        f.render_widget(
            Paragraph::new(msg).block(Block::bordered().title(format!(" {label} "))),
            area,
        );
        return;
    };
    let header = Row::new(["asset", "trades", "notional", "VWAP $", "chg %", "buys"])
        .style(Style::new().add_modifier(Modifier::BOLD));
    let rows = m.top.iter().map(|a| {
        let chg = a.change_pct.map_or("-".into(), |p| format!("{p:+.3}"));
        let colour = match a.change_pct {
            Some(p) if p > 0.0 => Color::Green,
            Some(p) if p < 0.0 => Color::Red,
            _ => Color::Reset,
        };
        Row::new(vec![
            ratatui::widgets::Cell::from(a.base.clone()),
            thousands(a.trades as f64).into(),
            usd(a.notional).into(),
            a.vwap.map_or("-".into(), price).into(),
            ratatui::widgets::Cell::from(chg).style(Style::new().fg(colour)),
            a.buy_share
                .map_or("-".into(), |b| format!("{:.0}%", b * 100.0))
                .into(),
        ])
    });
    let widths = [
        Constraint::Length(18),
        Constraint::Length(7),
        Constraint::Length(9),
        Constraint::Length(12),
        Constraint::Length(8),
        Constraint::Length(5),
    ];
    let movers: Vec<String> = m
        .movers
        .iter()
        .map(|(b, p)| format!("{b} {p:+.3}%"))
        .collect();
    let title = format!(
        " {label}: {} UTC · {} trades · {} · {} assets ",
        m.minute,
        thousands(m.trades as f64),
        usd(m.notional),
        m.assets_traded
    );
    let table = Table::new(rows, widths)
        .flex(Flex::Start)
        .header(header)
        .block(
            Block::bordered()
                .title(title)
                .title_bottom(format!(" top movers: {} ", movers.join(", "))),
        );
    f.render_widget(table, area);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_like_a_person_writes_them() {
        assert_eq!(thousands(1_234_567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(usd(3_456_789.0), "$3.46M");
        assert_eq!(usd(45_600.0), "$45.6k");
        assert_eq!(price(97_250.4), "97,250");
        assert_eq!(price(2.3456), "2.35");
        assert_eq!(price(0.000_021_4), "0.00002140");
        assert_eq!(hhmmss(3_723.0), "01:02:03");
    }

    #[test]
    fn plain_lines_name_both_minutes_and_the_counters() {
        let m = MinuteView {
            minute: "12:03".into(),
            trades: 1200,
            notional: 2.5e6,
            assets_traded: 40,
            top: vec![],
            movers: vec![("solana".into(), 0.125)],
        };
        let s = Snapshot {
            forming: Some(m.clone()),
            closed: Some(m),
            corrected: 3.0,
            ..Snapshot::default()
        };
        let lines = plain_lines(&s);
        assert_eq!(lines.len(), 3);
        assert!(lines[0].contains("closed") && lines[0].contains("solana +0.125%"));
        assert!(lines[1].contains("forming") && lines[1].contains("$2.50M"));
        assert!(lines[2].contains("3 corrected"));
    }

    #[test]
    fn the_view_draws_into_a_small_buffer() {
        let backend = ratatui::backend::TestBackend::new(100, 30);
        let mut term = ratatui::Terminal::new(backend).expect("test terminal");
        let m = MinuteView {
            minute: "12:03".into(),
            trades: 1200,
            notional: 2.5e6,
            assets_traded: 2,
            top: vec![AssetRow {
                base: "bitcoin".into(),
                trades: 700,
                notional: 2e6,
                vwap: Some(97_250.0),
                change_pct: Some(0.031),
                buy_share: Some(0.52),
            }],
            movers: vec![],
        };
        let s = Snapshot {
            forming: Some(m),
            ..Snapshot::default()
        };
        let banner = Banner {
            flow: "simulator -> kafka".into(),
            metrics: "http://x/metrics".into(),
            log_file: "/tmp/demo.log".into(),
        };
        term.draw(|f| draw(f, &banner, &s, &[1, 2, 3], Duration::from_secs(65)))
            .expect("draw");
        let text: String = term
            .backend()
            .buffer()
            .content()
            .iter()
            .map(|c| c.symbol())
            .collect();
        for want in [
            "forming minute",
            "bitcoin",
            "97,250",
            "+0.031",
            "/tmp/demo.log",
            "running 01:05",
            "waiting for the first rows",
        ] {
            assert!(text.contains(want), "{want} missing");
        }
    }
}
