//! Rows: turns one commit's contributions into the Arrow batches the sink merges into `market_1m`
//! and `asset_1m`, and describes how each column merges ([`window_tables`]).

use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Decimal128Builder, Float64Builder, StringBuilder, TimestampMillisecondBuilder,
    UInt32Builder, UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::ArrowError;
use tradewind_sink::{Merge, MergeTable, Trend};

use crate::window::{Acc, Contributions, Interner, WinKey, GRAIN_MARKET};

/// The merge rules of the columns both tables share, in batch order after the key columns.
fn shared_columns(market: bool) -> Vec<(&'static str, Merge)> {
    let first = || Merge::FirstBy("open_key".into());
    let last = || Merge::LastBy("close_key".into());
    let mut cols = vec![
        ("window_start", Merge::Key),
        ("window_end", Merge::Replace),
        ("trades", Merge::Add),
        ("buys", Merge::Add),
        ("sells", Merge::Add),
        ("volume", Merge::Add),
        ("buy_volume", Merge::Add),
        ("sell_volume", Merge::Add),
        ("notional_usd", Merge::Add),
        ("sum_price_usd", Merge::Add),
        ("open_usd", first()),
        ("high_usd", Merge::Max),
        ("low_usd", Merge::Min),
        ("close_usd", last()),
        ("first_trade_at", first()),
        ("last_trade_at", last()),
    ];
    if market {
        cols.extend([
            ("open_price", first()),
            ("high_price", Merge::Max),
            ("low_price", Merge::Min),
            ("close_price", last()),
        ]);
    }
    cols.extend([
        ("open_key", Merge::Min),
        ("close_key", Merge::Max),
        (
            "vwap_usd",
            Merge::Derived("`notional_usd` / `volume`".into()),
        ),
        (
            "avg_price_usd",
            Merge::Derived("`sum_price_usd` / `trades`".into()),
        ),
        (
            "price_change_pct",
            Merge::Derived("(`close_usd` - `open_usd`) / `open_usd` * 100".into()),
        ),
        ("price_trend", Merge::Keep),
        ("is_final", Merge::Keep),
        ("trend_stale", Trend::stale_on_final_merge()),
        ("revision", Merge::Add),
        ("updated_at", Merge::Replace),
    ]);
    cols
}

/// The two window tables and how each column merges: `market_1m` then `asset_1m`.
pub fn window_tables(window_ms: i64) -> [MergeTable; 2] {
    let table = |name: &str, keys: &[&str], market: bool| MergeTable {
        name: name.to_string(),
        columns: keys
            .iter()
            .map(|k| (k.to_string(), Merge::Key))
            .chain(
                shared_columns(market)
                    .into_iter()
                    .map(|(n, m)| (n.to_string(), m)),
            )
            .collect(),
        window_ms,
        trend: Some(Trend {
            column: "price_trend".into(),
            value: "vwap_usd".into(),
            stale: "trend_stale".into(),
        }),
    };
    [
        table("market_1m", &["exchange", "base", "quote"], true),
        table("asset_1m", &["base"], false),
    ]
}

fn ts() -> TimestampMillisecondBuilder {
    TimestampMillisecondBuilder::new().with_timezone("+00:00")
}

/// Column builders for one table's contribution rows, in [`window_tables`]' column order.
struct TableBuilder {
    market: bool,
    keys: Vec<StringBuilder>,
    window_start: TimestampMillisecondBuilder,
    window_end: TimestampMillisecondBuilder,
    counts: [UInt64Builder; 3],
    /// volume .. low_usd/close_usd/[quote OHLC] as listed in `shared_columns`, floats only.
    sums: [Float64Builder; 5],
    ohlc_usd: [Float64Builder; 4],
    first_trade_at: TimestampMillisecondBuilder,
    last_trade_at: TimestampMillisecondBuilder,
    ohlc_price: [Float64Builder; 4],
    open_key: Decimal128Builder,
    close_key: Decimal128Builder,
    derived: [Float64Builder; 3],
    price_trend: StringBuilder,
    is_final: BooleanBuilder,
    trend_stale: BooleanBuilder,
    revision: UInt32Builder,
    updated_at: TimestampMillisecondBuilder,
}

fn decimal() -> Decimal128Builder {
    // DECIMAL(38,0): the order keys are exact integers.
    Decimal128Builder::new().with_data_type(arrow_schema::DataType::Decimal128(38, 0))
}

impl TableBuilder {
    fn new(market: bool) -> Self {
        TableBuilder {
            market,
            keys: (0..if market { 3 } else { 1 })
                .map(|_| StringBuilder::new())
                .collect(),
            window_start: ts(),
            window_end: ts(),
            counts: Default::default(),
            sums: Default::default(),
            ohlc_usd: Default::default(),
            first_trade_at: ts(),
            last_trade_at: ts(),
            ohlc_price: Default::default(),
            open_key: decimal(),
            close_key: decimal(),
            derived: Default::default(),
            price_trend: StringBuilder::new(),
            is_final: BooleanBuilder::new(),
            trend_stale: BooleanBuilder::new(),
            revision: UInt32Builder::new(),
            updated_at: ts(),
        }
    }

    fn push(&mut self, k: &WinKey, a: &Acc, size_ms: i64, now_ms: i64, names: &Interner) {
        if self.market {
            for (b, id) in self.keys.iter_mut().zip([k.exchange, k.base, k.quote]) {
                b.append_value(names.name(id));
            }
        } else {
            self.keys[0].append_value(names.name(k.base));
        }
        self.window_start.append_value(k.start);
        self.window_end
            .append_value(k.start.saturating_add(size_ms));
        for (b, v) in self.counts.iter_mut().zip([a.trades, a.buys, a.sells]) {
            b.append_value(v);
        }
        let sums = [
            a.volume,
            a.buy_volume,
            a.sell_volume,
            a.notional_usd,
            a.sum_price_usd,
        ];
        for (b, v) in self.sums.iter_mut().zip(sums) {
            b.append_value(v);
        }
        let ohlc = [a.open_usd, a.high_usd, a.low_usd, a.close_usd];
        for (b, v) in self.ohlc_usd.iter_mut().zip(ohlc) {
            b.append_value(v);
        }
        self.first_trade_at.append_value(a.open_ts);
        self.last_trade_at.append_value(a.close_ts);
        let ohlc = [a.open_price, a.high_price, a.low_price, a.close_price];
        for (b, v) in self.ohlc_price.iter_mut().zip(ohlc) {
            b.append_value(v);
        }
        self.open_key.append_value(a.open_key);
        self.close_key.append_value(a.close_key);
        let derived = [
            a.vwap_usd(),
            a.sum_price_usd / a.trades as f64,
            (a.close_usd - a.open_usd) / a.open_usd * 100.0,
        ];
        for (b, v) in self.derived.iter_mut().zip(derived) {
            b.append_value(v);
        }
        self.price_trend.append_null();
        self.is_final.append_value(false);
        self.trend_stale.append_value(false);
        self.revision.append_value(a.late);
        self.updated_at.append_value(now_ms);
    }

    fn finish(mut self, table: &MergeTable) -> Result<RecordBatch, ArrowError> {
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(table.columns.len());
        for b in self.keys.iter_mut() {
            arrays.push(Arc::new(b.finish()));
        }
        arrays.push(Arc::new(self.window_start.finish()));
        arrays.push(Arc::new(self.window_end.finish()));
        for b in self.counts.iter_mut() {
            arrays.push(Arc::new(b.finish()));
        }
        for b in self.sums.iter_mut() {
            arrays.push(Arc::new(b.finish()));
        }
        let [open, high, low, close] = &mut self.ohlc_usd;
        arrays.push(Arc::new(open.finish()));
        arrays.push(Arc::new(high.finish()));
        arrays.push(Arc::new(low.finish()));
        arrays.push(Arc::new(close.finish()));
        arrays.push(Arc::new(self.first_trade_at.finish()));
        arrays.push(Arc::new(self.last_trade_at.finish()));
        if self.market {
            for b in self.ohlc_price.iter_mut() {
                arrays.push(Arc::new(b.finish()));
            }
        }
        arrays.push(Arc::new(self.open_key.finish()));
        arrays.push(Arc::new(self.close_key.finish()));
        for b in self.derived.iter_mut() {
            arrays.push(Arc::new(b.finish()));
        }
        arrays.push(Arc::new(self.price_trend.finish()));
        arrays.push(Arc::new(self.is_final.finish()));
        arrays.push(Arc::new(self.trend_stale.finish()));
        arrays.push(Arc::new(self.revision.finish()));
        arrays.push(Arc::new(self.updated_at.finish()));
        let names = table.columns.iter().map(|(n, _)| n.as_str());
        RecordBatch::try_from_iter(names.zip(arrays))
    }
}

/// The contribution batches of one commit: `[market_1m, asset_1m]`, rows sorted by key (so that
/// concurrent replicas lock rows in the same order and rarely deadlock).
pub fn contribution_batches(
    contributions: &Contributions,
    tables: &[MergeTable; 2],
    size_ms: i64,
    now_ms: i64,
    names: &Interner,
) -> Result<[RecordBatch; 2], ArrowError> {
    let mut keys: Vec<&WinKey> = contributions.keys().collect();
    keys.sort_unstable_by(|a, b| {
        (
            a.grain,
            names.name(a.exchange),
            names.name(a.base),
            names.name(a.quote),
            a.start,
        )
            .cmp(&(
                b.grain,
                names.name(b.exchange),
                names.name(b.base),
                names.name(b.quote),
                b.start,
            ))
    });
    let mut market = TableBuilder::new(true);
    let mut asset = TableBuilder::new(false);
    for k in keys {
        let Some(a) = contributions.get(k) else {
            continue;
        };
        let t = if k.grain == GRAIN_MARKET {
            &mut market
        } else {
            &mut asset
        };
        t.push(k, a, size_ms, now_ms, names);
    }
    Ok([market.finish(&tables[0])?, asset.finish(&tables[1])?])
}

/// The key of row `row` of a contribution batch: its key column values and window start (ms).
pub fn row_key(batch: &RecordBatch, market: bool, row: usize) -> (Vec<String>, i64) {
    use arrow_array::cast::AsArray;
    use arrow_array::types::TimestampMillisecondType;
    let names: &[&str] = if market {
        &["exchange", "base", "quote"]
    } else {
        &["base"]
    };
    let keys = names
        .iter()
        .map(|n| {
            batch
                .column_by_name(n)
                .and_then(|c| c.as_string_opt::<i32>())
                .map_or_else(String::new, |a| a.value(row).to_string())
        })
        .collect();
    let start = batch
        .column_by_name("window_start")
        .and_then(|c| c.as_primitive_opt::<TimestampMillisecondType>())
        .map_or(i64::MIN, |a| a.value(row));
    (keys, start)
}
