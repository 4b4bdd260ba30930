//! Windowing: event-time tumbling windows at two grains, as a columnar kernel over a decoded batch.
//!
//! The kernel reads the batch's column slices directly (no row structs) and folds each trade into two
//! contributions: one per (exchange, base, quote, window_start) — `market_1m` — and one per
//! (base, window_start) — `asset_1m`. Keys are interned ids, so the hot loop hashes a few integers and
//! allocates nothing once a market has been seen.
//!
//! A contribution ([`Acc`]) is the partial aggregate of the trades one commit consumed. The sink
//! merges it into the stored row (merge-on-write, see `tradewind_sink::MergeTable`), so a window may
//! receive trades from any number of partitions and replicas and the row is still exact.
//!
//! Lateness is decided per partition, record by record in offset order: a trade is judged against
//! the watermark of its own partition as of the records before it ([`PartitionClock`]). The verdict
//! therefore depends only on the partition's log, never on replicas, batch sizes or restarts.

use arrow_array::RecordBatch;
use rustc_hash::FxHashMap;

/// `market_1m` grain: one window per (exchange, base, quote).
pub const GRAIN_MARKET: u8 = 0;
/// `asset_1m` grain: one window per base, across markets, in USD.
pub const GRAIN_ASSET: u8 = 1;
/// Marker id for the key parts an asset window does not have.
const NONE: u32 = u32::MAX;

/// Interns exchange and asset ids to dense `u32`s (lookups by `&str` allocate nothing).
#[derive(Default, Debug)]
pub struct Interner {
    ids: FxHashMap<Box<str>, u32>,
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

/// The total order of trades within a window: event time, then partition, then offset. It decides
/// open and close deterministically, whichever replica consumed which partition.
pub fn order_key(ts: i64, partition: i32, offset: i64) -> i128 {
    const SEQ: i128 = 10_000_000_000_000_000_000; // 10^19 > (partition << 44 | offset)
    i128::from(ts) * SEQ + i128::from(sequence(partition, offset))
}

/// `partition << 44 | offset`: offsets below 2^44 (17.6 trillion) and partitions below 2^19.
pub fn sequence(partition: i32, offset: i64) -> i64 {
    (i64::from(partition.max(0)) << 44) | (offset & ((1 << 44) - 1))
}

/// The contribution of one commit to one window: exactly what the merge needs.
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
    /// [`order_key`] of the open trade.
    pub open_key: i128,
    /// Event time of the open trade.
    pub open_ts: i64,
    /// [`order_key`] of the close trade.
    pub close_key: i128,
    /// Event time of the close trade.
    pub close_ts: i64,
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
    /// Late trades (within allowed lateness) among them: added to the row's `revision`.
    pub late: u32,
}

/// One trade as the kernel folds it.
#[derive(Debug, Clone, Copy)]
pub struct TradePoint {
    /// Event time, epoch ms.
    pub ts: i64,
    /// [`order_key`].
    pub key: i128,
    /// Taker bought.
    pub buy: bool,
    /// Price, quote units.
    pub price: f64,
    /// Volume, base units.
    pub volume: f64,
    /// Price, USD.
    pub price_usd: f64,
    /// Arrived after its window closed on its partition (within allowed lateness).
    pub late: bool,
}

impl Acc {
    /// Folds one trade in.
    #[inline]
    pub fn add(&mut self, t: &TradePoint) {
        if self.trades == 0 {
            self.open_key = t.key;
            self.open_ts = t.ts;
            self.close_key = t.key;
            self.close_ts = t.ts;
            self.open_usd = t.price_usd;
            self.close_usd = t.price_usd;
            self.high_usd = t.price_usd;
            self.low_usd = t.price_usd;
            self.open_price = t.price;
            self.close_price = t.price;
            self.high_price = t.price;
            self.low_price = t.price;
        } else {
            if t.key < self.open_key {
                self.open_key = t.key;
                self.open_ts = t.ts;
                self.open_usd = t.price_usd;
                self.open_price = t.price;
            }
            if t.key > self.close_key {
                self.close_key = t.key;
                self.close_ts = t.ts;
                self.close_usd = t.price_usd;
                self.close_price = t.price;
            }
            self.high_usd = self.high_usd.max(t.price_usd);
            self.low_usd = self.low_usd.min(t.price_usd);
            self.high_price = self.high_price.max(t.price);
            self.low_price = self.low_price.min(t.price);
        }
        self.trades += 1;
        if t.buy {
            self.buys += 1;
            self.buy_volume += t.volume;
        } else {
            self.sells += 1;
            self.sell_volume += t.volume;
        }
        self.volume += t.volume;
        self.notional_usd += t.price_usd * t.volume;
        self.sum_price_usd += t.price_usd;
        self.late += u32::from(t.late);
    }

    /// Volume-weighted average USD price.
    pub fn vwap_usd(&self) -> f64 {
        self.notional_usd / self.volume
    }
}

/// The contributions of one commit, over every partition in it.
pub type Contributions = FxHashMap<WinKey, Acc>;

/// Event-time progress of one partition: the largest valid event time seen, in offset order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartitionClock {
    /// Largest event time seen (epoch ms).
    pub max_event_ms: Option<i64>,
}

impl PartitionClock {
    /// The partition's watermark: the largest event time minus the out-of-orderness bound.
    pub fn watermark(&self, out_of_orderness_ms: i64) -> Option<i64> {
        self.max_event_ms
            .map(|m| m.saturating_sub(out_of_orderness_ms))
    }
}

/// Window and lateness settings of the kernel.
#[derive(Debug, Clone, Copy)]
pub struct WindowPolicy {
    /// Window size, ms.
    pub size_ms: i64,
    /// Out-of-orderness bound, ms.
    pub out_of_orderness_ms: i64,
    /// Allowed lateness, ms.
    pub allowed_ms: i64,
}

/// What the kernel did with one run of rows, besides adding contributions.
#[derive(Debug, Default)]
pub struct FoldOutcome {
    /// Rows (of the batch) too late even for allowed lateness, to route to the late-trades topic,
    /// with the watermark they were judged against.
    pub too_late: Vec<(usize, i64)>,
    /// Late rows folded in as corrections.
    pub corrected: u64,
}

/// Window start of event time `ts` for tumbling windows of `size_ms`.
#[inline]
pub fn window_start(ts: i64, size_ms: i64) -> i64 {
    ts - ts.rem_euclid(size_ms)
}

/// Folds `rows` of a validated trade batch, all from partition `partition` and in offset order,
/// into `out`, advancing `clock` record by record. `offset(row)` gives the row's Kafka offset.
#[allow(clippy::too_many_arguments)]
pub fn fold(
    batch: &RecordBatch,
    rows: std::ops::Range<usize>,
    partition: i32,
    offset: impl Fn(usize) -> i64,
    policy: WindowPolicy,
    clock: &mut PartitionClock,
    names: &mut Interner,
    out: &mut Contributions,
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
    let mut outcome = FoldOutcome::default();
    // Consecutive rows mostly repeat the same market: remember the last one's ids.
    let mut last: Option<(&str, &str, &str, u32, u32, u32)> = None;
    for row in rows {
        let t = ts[row];
        let start = window_start(t, policy.size_ms);
        let end = start.saturating_add(policy.size_ms);
        let mut late = false;
        if let Some(w) = clock.watermark(policy.out_of_orderness_ms) {
            if end.saturating_add(policy.allowed_ms) <= w {
                outcome.too_late.push((row, w));
                continue;
            }
            late = end <= w;
        }
        outcome.corrected += u64::from(late);
        clock.max_event_ms = Some(clock.max_event_ms.map_or(t, |m| m.max(t)));
        let (e, b, q) = (exchange.value(row), base.value(row), quote.value(row));
        let (ei, bi, qi) = match last {
            Some((le, lb, lq, ei, bi, qi)) if le == e && lb == b && lq == q => (ei, bi, qi),
            _ => {
                let ids = (names.id(e), names.id(b), names.id(q));
                last = Some((e, b, q, ids.0, ids.1, ids.2));
                ids
            }
        };
        let point = TradePoint {
            ts: t,
            key: order_key(t, partition, offset(row)),
            buy: direction.value(row).as_bytes() == b"buy",
            price: price[row],
            volume: volume[row],
            price_usd: price_usd[row],
            late,
        };
        let market = WinKey {
            grain: GRAIN_MARKET,
            exchange: ei,
            base: bi,
            quote: qi,
            start,
        };
        out.entry(market).or_default().add(&point);
        let asset = WinKey {
            grain: GRAIN_ASSET,
            exchange: NONE,
            base: bi,
            quote: NONE,
            start,
        };
        out.entry(asset).or_default().add(&point);
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(ts: i64, partition: i32, offset: i64, price: f64) -> TradePoint {
        TradePoint {
            ts,
            key: order_key(ts, partition, offset),
            buy: true,
            price,
            volume: 1.0,
            price_usd: price,
            late: false,
        }
    }

    #[test]
    fn ties_go_by_partition_then_offset() {
        let mut a = Acc::default();
        a.add(&point(1_000, 1, 7, 2.0));
        a.add(&point(1_000, 0, 9, 1.0));
        a.add(&point(1_000, 1, 8, 3.0));
        assert_eq!((a.open_usd, a.close_usd), (1.0, 3.0));
        // Merging two partial contributions gives the same open/close as one.
        let (mut x, mut y) = (Acc::default(), Acc::default());
        x.add(&point(1_000, 1, 7, 2.0));
        x.add(&point(1_000, 1, 8, 3.0));
        y.add(&point(1_000, 0, 9, 1.0));
        assert!(y.open_key < x.open_key && x.close_key > y.close_key);
    }

    #[test]
    fn order_key_sorts_by_time_first() {
        assert!(order_key(1, 500, 1 << 43) < order_key(2, 0, 0));
        assert!(order_key(-5, 3, 3) < order_key(0, 0, 0));
        assert!(sequence(1, 0) > sequence(0, (1 << 44) - 1));
    }

    #[test]
    fn window_start_handles_negative_time() {
        assert_eq!(window_start(59_999, 60_000), 0);
        assert_eq!(window_start(60_000, 60_000), 60_000);
        assert_eq!(window_start(-1, 60_000), -60_000);
    }
}
