//! Windowing: event-time tumbling windows at two grains, as a columnar kernel over a decoded batch.
//!
//! The kernel reads the batch's column slices directly (no row structs) and folds each trade into two
//! accumulators: one per (exchange, base, quote, window_start) — `market_1m` — and one per
//! (base, window_start) — `asset_1m`. Keys are interned ids, so the hot loop hashes a few integers and
//! allocates nothing once a market has been seen.
//!
//! Accumulators keep exactly what the output columns need and nothing derived, so they can be
//! persisted ([`Acc::to_bytes`]) in the sink transaction and restored bit-for-bit after a restart.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use arrow_array::RecordBatch;

/// `market_1m` grain: one window per (exchange, base, quote).
pub const GRAIN_MARKET: u8 = 0;
/// `asset_1m` grain: one window per base, across markets, in USD.
pub const GRAIN_ASSET: u8 = 1;
/// Marker id for the key parts an asset window does not have.
const NONE: u32 = u32::MAX;

/// A small, fast, non-cryptographic hasher (FxHash) for integer keys that are not attacker-chosen
/// (interned ids and window starts).
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

impl Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.write_u64(i as u64)
    }
    fn write_u32(&mut self, i: u32) {
        self.write_u64(i as u64)
    }
    fn write_i64(&mut self, i: i64) {
        self.write_u64(i as u64)
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// `HashMap` with [`FxHasher`].
pub type FxHashMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// Interns exchange and asset ids to dense `u32`s (lookups by `&str` allocate nothing).
#[derive(Default, Debug)]
pub struct Interner {
    ids: HashMap<Box<str>, u32>,
    names: Vec<Box<str>>,
}

impl Interner {
    /// The id of `s`, assigning the next one on first sight.
    pub fn id(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(s.into());
        self.ids.insert(s.into(), id);
        id
    }

    /// The string of `id`.
    pub fn name(&self, id: u32) -> &str {
        self.names.get(id as usize).map_or("", |s| s)
    }
}

/// Identity of one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WinKey {
    /// [`GRAIN_MARKET`] or [`GRAIN_ASSET`].
    pub grain: u8,
    /// Interned exchange id (`NONE` for asset windows).
    pub exchange: u32,
    /// Interned base id.
    pub base: u32,
    /// Interned quote id (`NONE` for asset windows).
    pub quote: u32,
    /// Window start, epoch ms.
    pub start: i64,
}

impl WinKey {
    /// The same key one window earlier (for `price_trend`).
    pub fn previous(&self, size_ms: i64) -> WinKey {
        WinKey {
            start: self.start - size_ms,
            ..*self
        }
    }

    /// The same key one window later.
    pub fn next(&self, size_ms: i64) -> WinKey {
        WinKey {
            start: self.start + size_ms,
            ..*self
        }
    }

    /// The key as stored in `tw_window_state.wkey`: `exchange\tbase\tquote` or `base`. A tab cannot
    /// occur in an id (JSON forbids raw control characters and the model refuses escapes).
    pub fn state_key(&self, names: &Interner) -> String {
        if self.grain == GRAIN_MARKET {
            format!(
                "{}\t{}\t{}",
                names.name(self.exchange),
                names.name(self.base),
                names.name(self.quote)
            )
        } else {
            names.name(self.base).to_string()
        }
    }

    /// Parses [`WinKey::state_key`] back.
    pub fn from_state_key(
        grain: u8,
        key: &str,
        start: i64,
        names: &mut Interner,
    ) -> Option<WinKey> {
        if grain == GRAIN_MARKET {
            let mut parts = key.split('\t');
            let (e, b, q) = (parts.next()?, parts.next()?, parts.next()?);
            Some(WinKey {
                grain,
                exchange: names.id(e),
                base: names.id(b),
                quote: names.id(q),
                start,
            })
        } else if grain == GRAIN_ASSET {
            Some(WinKey {
                grain,
                exchange: NONE,
                base: names.id(key),
                quote: NONE,
                start,
            })
        } else {
            None
        }
    }
}

/// The running aggregate of one window. Open and close are chosen by event time; ties go to the
/// earlier Kafka offset for open and the later one for close (offsets order one asset's trades
/// deterministically, because one asset lives in one partition).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Acc {
    /// Trade count.
    pub trades: u64,
    /// Taker-buy count.
    pub buys: u64,
    /// Taker-sell count.
    pub sells: u64,
    /// Sum of volume (base units).
    pub volume: f64,
    /// Sum of taker-buy volume.
    pub buy_volume: f64,
    /// Sum of taker-sell volume.
    pub sell_volume: f64,
    /// Sum of priceUsd * volume.
    pub notional_usd: f64,
    /// Sum of priceUsd (for the mean).
    pub sum_price_usd: f64,
    /// Event time of the open trade.
    pub open_ts: i64,
    /// Offset of the open trade.
    pub open_seq: i64,
    /// Event time of the close trade.
    pub close_ts: i64,
    /// Offset of the close trade.
    pub close_seq: i64,
    /// Open, USD.
    pub open_usd: f64,
    /// Close, USD.
    pub close_usd: f64,
    /// High, USD.
    pub high_usd: f64,
    /// Low, USD.
    pub low_usd: f64,
    /// Open, quote units.
    pub open_price: f64,
    /// Close, quote units.
    pub close_price: f64,
    /// High, quote units.
    pub high_price: f64,
    /// Low, quote units.
    pub low_price: f64,
    /// How many times the row has been written (the next write's `revision`).
    pub writes: u32,
    /// Whether the row has been written as final.
    pub final_written: bool,
    /// Changed since the last commit (not persisted).
    pub dirty: bool,
    /// Changed since the row was last written (not persisted): what `--live-interval` rewrites.
    pub unwritten: bool,
}

const ACC_VERSION: u8 = 1;
/// Serialized size of an [`Acc`].
pub const ACC_BYTES: usize = 1 + 3 * 8 + 5 * 8 + 4 * 8 + 8 * 8 + 4 + 1;

impl Acc {
    /// Folds one trade in.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub fn add(&mut self, ts: i64, seq: i64, buy: bool, price: f64, volume: f64, price_usd: f64) {
        if self.trades == 0 {
            self.open_ts = ts;
            self.open_seq = seq;
            self.close_ts = ts;
            self.close_seq = seq;
            self.open_usd = price_usd;
            self.close_usd = price_usd;
            self.high_usd = price_usd;
            self.low_usd = price_usd;
            self.open_price = price;
            self.close_price = price;
            self.high_price = price;
            self.low_price = price;
        } else {
            if (ts, seq) < (self.open_ts, self.open_seq) {
                self.open_ts = ts;
                self.open_seq = seq;
                self.open_usd = price_usd;
                self.open_price = price;
            }
            if (ts, seq) > (self.close_ts, self.close_seq) {
                self.close_ts = ts;
                self.close_seq = seq;
                self.close_usd = price_usd;
                self.close_price = price;
            }
            self.high_usd = self.high_usd.max(price_usd);
            self.low_usd = self.low_usd.min(price_usd);
            self.high_price = self.high_price.max(price);
            self.low_price = self.low_price.min(price);
        }
        self.trades += 1;
        if buy {
            self.buys += 1;
            self.buy_volume += volume;
        } else {
            self.sells += 1;
            self.sell_volume += volume;
        }
        self.volume += volume;
        self.notional_usd += price_usd * volume;
        self.sum_price_usd += price_usd;
        self.dirty = true;
        self.unwritten = true;
    }

    /// Volume-weighted average USD price.
    pub fn vwap_usd(&self) -> f64 {
        self.notional_usd / self.volume
    }

    /// Fixed-layout little-endian bytes, for `tw_window_state.acc`.
    pub fn to_bytes(&self, out: &mut Vec<u8>) {
        out.push(ACC_VERSION);
        for v in [self.trades, self.buys, self.sells] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for v in [
            self.volume,
            self.buy_volume,
            self.sell_volume,
            self.notional_usd,
            self.sum_price_usd,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for v in [self.open_ts, self.open_seq, self.close_ts, self.close_seq] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for v in [
            self.open_usd,
            self.close_usd,
            self.high_usd,
            self.low_usd,
            self.open_price,
            self.close_price,
            self.high_price,
            self.low_price,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&self.writes.to_le_bytes());
        out.push(self.final_written as u8);
    }

    /// Parses [`Acc::to_bytes`]; `None` for a foreign or truncated blob.
    pub fn from_bytes(b: &[u8]) -> Option<Acc> {
        if b.len() != ACC_BYTES || b[0] != ACC_VERSION {
            return None;
        }
        let mut pos = 1;
        let mut u64_ = || {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[pos..pos + 8]);
            pos += 8;
            u64::from_le_bytes(a)
        };
        let trades = u64_();
        let buys = u64_();
        let sells = u64_();
        let f: Vec<f64> = (0..5).map(|_| f64::from_bits(u64_())).collect();
        let t: Vec<i64> = (0..4).map(|_| u64_() as i64).collect();
        let p: Vec<f64> = (0..8).map(|_| f64::from_bits(u64_())).collect();
        let mut w = [0u8; 4];
        w.copy_from_slice(&b[pos..pos + 4]);
        Some(Acc {
            trades,
            buys,
            sells,
            volume: f[0],
            buy_volume: f[1],
            sell_volume: f[2],
            notional_usd: f[3],
            sum_price_usd: f[4],
            open_ts: t[0],
            open_seq: t[1],
            close_ts: t[2],
            close_seq: t[3],
            open_usd: p[0],
            close_usd: p[1],
            high_usd: p[2],
            low_usd: p[3],
            open_price: p[4],
            close_price: p[5],
            high_price: p[6],
            low_price: p[7],
            writes: u32::from_le_bytes(w),
            final_written: b[pos + 4] != 0,
            dirty: false,
            unwritten: false,
        })
    }
}

/// The windows of one Kafka partition.
pub type Windows = FxHashMap<WinKey, Acc>;

/// Lateness policy applied by the kernel, evaluated against the watermark as of the batch start.
#[derive(Debug, Clone, Copy)]
pub struct Lateness {
    /// Engine watermark before this batch (`i64::MIN` when none yet).
    pub watermark: i64,
    /// Allowed lateness, ms.
    pub allowed_ms: i64,
}

/// What the kernel did with one run of rows, besides updating windows.
#[derive(Debug, Default)]
pub struct FoldOutcome {
    /// Rows (of the batch) too late even for allowed lateness, to route to the late-trades topic.
    pub too_late: Vec<usize>,
    /// Rows that corrected a window already final.
    pub corrected: u64,
    /// Maximum event time among the rows folded.
    pub max_event_ms: Option<i64>,
}

/// Window start of event time `ts` for tumbling windows of `size_ms`.
#[inline]
pub fn window_start(ts: i64, size_ms: i64) -> i64 {
    ts - ts.rem_euclid(size_ms)
}

/// Folds rows `rows` of a validated trade batch into `windows`. `seq(row)` gives the row's Kafka
/// offset (tie-break for open/close).
pub fn fold(
    batch: &RecordBatch,
    rows: std::ops::Range<usize>,
    seq: impl Fn(usize) -> i64,
    size_ms: i64,
    lateness: Lateness,
    names: &mut Interner,
    windows: &mut Windows,
) -> FoldOutcome {
    let crate::decode::TradeColumns {
        exchange,
        base,
        quote,
        direction,
        price,
        volume,
        price_usd,
        ts,
    } = crate::decode::TradeColumns::of(batch);
    let mut out = FoldOutcome::default();
    let mut max_ts = i64::MIN;
    // Consecutive rows mostly repeat the same market: remember the last one's ids.
    let mut last: Option<(&str, &str, &str, u32, u32, u32)> = None;
    for row in rows {
        let t = ts[row];
        let start = window_start(t, size_ms);
        let end = start + size_ms;
        if lateness.watermark != i64::MIN {
            if end.saturating_add(lateness.allowed_ms) <= lateness.watermark {
                out.too_late.push(row);
                continue;
            }
            if end <= lateness.watermark {
                out.corrected += 1;
            }
        }
        max_ts = max_ts.max(t);
        let (e, b, q) = (exchange.value(row), base.value(row), quote.value(row));
        let (ei, bi, qi) = match last {
            Some((le, lb, lq, ei, bi, qi)) if le == e && lb == b && lq == q => (ei, bi, qi),
            _ => {
                let ids = (names.id(e), names.id(b), names.id(q));
                last = Some((e, b, q, ids.0, ids.1, ids.2));
                ids
            }
        };
        let buy = direction.value(row).as_bytes() == b"buy";
        let s = seq(row);
        let (p, v, u) = (price[row], volume[row], price_usd[row]);
        let market = WinKey {
            grain: GRAIN_MARKET,
            exchange: ei,
            base: bi,
            quote: qi,
            start,
        };
        windows.entry(market).or_default().add(t, s, buy, p, v, u);
        let asset = WinKey {
            grain: GRAIN_ASSET,
            exchange: NONE,
            base: bi,
            quote: NONE,
            start,
        };
        windows.entry(asset).or_default().add(t, s, buy, p, v, u);
    }
    if max_ts != i64::MIN {
        out.max_event_ms = Some(max_ts);
    }
    out
}

/// How a window row is being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmitKind {
    /// First write as final (the watermark passed its end).
    Final,
    /// Re-write of a final row (a late trade within allowed lateness, or its neighbour's trend).
    Correction,
    /// An open window's current value (`--live-interval`).
    Provisional,
}

impl EmitKind {
    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            EmitKind::Final => "final",
            EmitKind::Correction => "correction",
            EmitKind::Provisional => "provisional",
        }
    }
}

/// Chooses the windows to write now: windows the watermark has closed (or every window, when
/// `finalize_all`), changed final windows (corrections), and with `live` the changed open windows. A rewritten
/// window's successor is rewritten too, since its `price_trend` compares against it.
pub fn select_emissions(
    windows: &Windows,
    watermark: i64,
    size_ms: i64,
    live: bool,
    finalize_all: bool,
    out: &mut Vec<(WinKey, EmitKind)>,
) {
    let first = out.len();
    for (k, a) in windows {
        if a.final_written {
            // Once final, every change is a correction, whatever the watermark is now (after a
            // restart it can be behind the one that closed the window).
            if a.dirty {
                out.push((*k, EmitKind::Correction));
            }
        } else if finalize_all || k.start + size_ms <= watermark {
            out.push((*k, EmitKind::Final));
        } else if live && a.unwritten {
            out.push((*k, EmitKind::Provisional));
        }
    }
    // Successors of rewritten rows whose trend may have changed.
    let mut extra = Vec::new();
    for (k, _) in &out[first..] {
        let n = k.next(size_ms);
        if let Some(na) = windows.get(&n) {
            if na.writes > 0 && !out[first..].iter().any(|(x, _)| *x == n) {
                let kind = if na.final_written {
                    EmitKind::Correction
                } else {
                    EmitKind::Provisional
                };
                extra.push((n, kind));
            }
        }
    }
    extra.sort_unstable_by_key(|(k, _)| *k);
    extra.dedup_by_key(|(k, _)| *k);
    out.extend(extra);
}

/// `up`, `down` or `flat` for `vwap` against the previous window's vwap; `None` without one.
pub fn trend(vwap: f64, previous: Option<&Acc>) -> Option<&'static str> {
    let p = previous.filter(|a| a.trades > 0)?.vwap_usd();
    Some(if vwap > p {
        "up"
    } else if vwap < p {
        "down"
    } else {
        "flat"
    })
}

/// Removes windows no late trade can change any more (end + allowed lateness passed, plus one window
/// kept for its successor's trend); returns the `window_start` bound below which state was evicted.
pub fn evict(windows: &mut Windows, watermark: i64, size_ms: i64, allowed_ms: i64) -> Option<i64> {
    if watermark == i64::MIN {
        return None;
    }
    let before = watermark
        .saturating_sub(allowed_ms)
        .saturating_sub(2 * size_ms)
        .saturating_add(1);
    windows.retain(|k, a| k.start >= before || !a.final_written);
    Some(before)
}

/// Number of windows in `windows` not yet final.
pub fn open_count(windows: &Windows) -> usize {
    windows.values().filter(|a| !a.final_written).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acc_round_trips_through_bytes() {
        let mut a = Acc::default();
        a.add(1_000, 5, true, 10.5, 2.0, 10.6);
        a.add(900, 6, false, 9.5, 1.0, 9.6);
        a.writes = 3;
        a.final_written = true;
        let mut b = Vec::new();
        a.to_bytes(&mut b);
        assert_eq!(b.len(), ACC_BYTES);
        let mut back = Acc::from_bytes(&b).expect("parse");
        back.dirty = a.dirty;
        back.unwritten = a.unwritten;
        assert_eq!(back, a);
        assert_eq!(back.open_usd, 9.6);
        assert_eq!(back.close_usd, 10.6);
    }

    #[test]
    fn ties_pick_earliest_offset_for_open_latest_for_close() {
        let mut a = Acc::default();
        a.add(1_000, 7, true, 2.0, 1.0, 2.0);
        a.add(1_000, 3, true, 1.0, 1.0, 1.0);
        a.add(1_000, 9, true, 3.0, 1.0, 3.0);
        assert_eq!((a.open_usd, a.close_usd), (1.0, 3.0));
    }

    #[test]
    fn a_changed_final_window_is_corrected_even_behind_the_watermark() {
        let mut w = Windows::default();
        let k = WinKey {
            grain: GRAIN_ASSET,
            exchange: NONE,
            base: 0,
            quote: NONE,
            start: 0,
        };
        let mut a = Acc::default();
        a.add(10, 1, true, 1.0, 1.0, 1.0);
        a.final_written = true;
        a.writes = 1;
        w.insert(k, a);
        let mut out = Vec::new();
        // Watermark far behind the window's end (as after a restart): still re-emitted.
        select_emissions(&w, -1_000_000, 60_000, false, false, &mut out);
        assert_eq!(out, vec![(k, EmitKind::Correction)]);
        w.get_mut(&k).unwrap().dirty = false;
        out.clear();
        select_emissions(&w, 1_000_000, 60_000, false, false, &mut out);
        assert!(out.is_empty(), "unchanged final windows are not rewritten");
    }

    #[test]
    fn window_start_handles_negative_time() {
        assert_eq!(window_start(59_999, 60_000), 0);
        assert_eq!(window_start(60_000, 60_000), 60_000);
        assert_eq!(window_start(-1, 60_000), -60_000);
    }
}
