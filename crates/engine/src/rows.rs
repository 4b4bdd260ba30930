//! Rows: turns selected windows into the Arrow batches the sink ingests — `market_1m`, `asset_1m`
//! and the engine's own `tw_window_state` — with column names equal to the MySQL columns.

use std::sync::Arc;

use arrow_array::builder::{
    ArrayBuilder, BinaryBuilder, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder,
    StringBuilder, TimestampMillisecondBuilder, UInt32Builder, UInt64Builder, UInt8Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::ArrowError;

use crate::window::{trend, Acc, EmitKind, Interner, WinKey, Windows, GRAIN_MARKET};

/// Column builders for one window table.
struct TableBuilder {
    market: bool,
    exchange: StringBuilder,
    base: StringBuilder,
    quote: StringBuilder,
    window_start: TimestampMillisecondBuilder,
    window_end: TimestampMillisecondBuilder,
    counts: [UInt64Builder; 3],
    /// volume, buy_volume, sell_volume, notional_usd, vwap_usd, avg_price_usd, open_usd, high_usd,
    /// low_usd, close_usd, [open_price, high_price, low_price, close_price]
    doubles: Vec<Float64Builder>,
    first_trade_at: TimestampMillisecondBuilder,
    last_trade_at: TimestampMillisecondBuilder,
    change_pct: Float64Builder,
    price_trend: StringBuilder,
    is_final: BooleanBuilder,
    revision: UInt32Builder,
    updated_at: TimestampMillisecondBuilder,
}

const DOUBLE_NAMES: [&str; 14] = [
    "volume",
    "buy_volume",
    "sell_volume",
    "notional_usd",
    "vwap_usd",
    "avg_price_usd",
    "open_usd",
    "high_usd",
    "low_usd",
    "close_usd",
    "open_price",
    "high_price",
    "low_price",
    "close_price",
];

fn ts() -> TimestampMillisecondBuilder {
    TimestampMillisecondBuilder::new().with_timezone("+00:00")
}

impl TableBuilder {
    fn new(market: bool) -> Self {
        let n = if market { 14 } else { 10 };
        TableBuilder {
            market,
            exchange: StringBuilder::new(),
            base: StringBuilder::new(),
            quote: StringBuilder::new(),
            window_start: ts(),
            window_end: ts(),
            counts: [
                UInt64Builder::new(),
                UInt64Builder::new(),
                UInt64Builder::new(),
            ],
            doubles: (0..n).map(|_| Float64Builder::new()).collect(),
            first_trade_at: ts(),
            last_trade_at: ts(),
            change_pct: Float64Builder::new(),
            price_trend: StringBuilder::new(),
            is_final: BooleanBuilder::new(),
            revision: UInt32Builder::new(),
            updated_at: ts(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        k: &WinKey,
        a: &Acc,
        prev: Option<&Acc>,
        kind: EmitKind,
        size_ms: i64,
        now_ms: i64,
        names: &Interner,
    ) {
        if self.market {
            self.exchange.append_value(names.name(k.exchange));
            self.quote.append_value(names.name(k.quote));
        }
        self.base.append_value(names.name(k.base));
        self.window_start.append_value(k.start);
        self.window_end.append_value(k.start + size_ms);
        for (b, v) in self.counts.iter_mut().zip([a.trades, a.buys, a.sells]) {
            b.append_value(v);
        }
        let vwap = a.vwap_usd();
        let values = [
            a.volume,
            a.buy_volume,
            a.sell_volume,
            a.notional_usd,
            vwap,
            a.sum_price_usd / a.trades as f64,
            a.open_usd,
            a.high_usd,
            a.low_usd,
            a.close_usd,
            a.open_price,
            a.high_price,
            a.low_price,
            a.close_price,
        ];
        for (b, v) in self.doubles.iter_mut().zip(values) {
            b.append_value(v);
        }
        self.first_trade_at.append_value(a.open_ts);
        self.last_trade_at.append_value(a.close_ts);
        self.change_pct
            .append_value((a.close_usd - a.open_usd) / a.open_usd * 100.0);
        self.price_trend.append_option(trend(vwap, prev));
        self.is_final.append_value(kind != EmitKind::Provisional);
        self.revision.append_value(a.writes);
        self.updated_at.append_value(now_ms);
    }

    fn finish(mut self) -> Result<RecordBatch, ArrowError> {
        let mut cols: Vec<(&str, ArrayRef)> = Vec::with_capacity(30);
        if self.market {
            cols.push(("exchange", Arc::new(self.exchange.finish())));
        }
        cols.push(("base", Arc::new(self.base.finish())));
        if self.market {
            cols.push(("quote", Arc::new(self.quote.finish())));
        }
        cols.push(("window_start", Arc::new(self.window_start.finish())));
        cols.push(("window_end", Arc::new(self.window_end.finish())));
        for (name, b) in ["trades", "buys", "sells"]
            .iter()
            .zip(self.counts.iter_mut())
        {
            cols.push((name, Arc::new(b.finish())));
        }
        for (name, b) in DOUBLE_NAMES.iter().zip(self.doubles.iter_mut()) {
            cols.push((name, Arc::new(b.finish())));
        }
        cols.push(("first_trade_at", Arc::new(self.first_trade_at.finish())));
        cols.push(("last_trade_at", Arc::new(self.last_trade_at.finish())));
        cols.push(("price_change_pct", Arc::new(self.change_pct.finish())));
        cols.push(("price_trend", Arc::new(self.price_trend.finish())));
        cols.push(("is_final", Arc::new(self.is_final.finish())));
        cols.push(("revision", Arc::new(self.revision.finish())));
        cols.push(("updated_at", Arc::new(self.updated_at.finish())));
        RecordBatch::try_from_iter(cols)
    }
}

/// Output rows of one commit.
#[derive(Debug)]
pub struct WindowRows {
    /// Rows for `market_1m`.
    pub market: RecordBatch,
    /// Rows for `asset_1m`.
    pub asset: RecordBatch,
}

/// Builds the window rows for `emits` (all from one partition's `windows`) into `market`/`asset`.
pub struct RowsBuilder {
    market: TableBuilder,
    asset: TableBuilder,
    state: StateBuilder,
}

impl Default for RowsBuilder {
    fn default() -> Self {
        RowsBuilder {
            market: TableBuilder::new(true),
            asset: TableBuilder::new(false),
            state: StateBuilder::default(),
        }
    }
}

impl RowsBuilder {
    /// Appends the rows of `emits`, looked up in `windows`.
    pub fn push_emits(
        &mut self,
        windows: &Windows,
        emits: &[(WinKey, EmitKind)],
        size_ms: i64,
        now_ms: i64,
        names: &Interner,
    ) {
        for (k, kind) in emits {
            let Some(a) = windows.get(k) else { continue };
            if a.trades == 0 {
                continue;
            }
            let prev = windows.get(&k.previous(size_ms));
            let t = if k.grain == GRAIN_MARKET {
                &mut self.market
            } else {
                &mut self.asset
            };
            t.push(k, a, prev, *kind, size_ms, now_ms, names);
        }
    }

    /// Appends a state row for window `k` of `partition`.
    pub fn push_state(&mut self, partition: i32, k: &WinKey, a: &Acc, names: &Interner) {
        self.state.push(partition, k, a, names);
    }

    /// Finishes the three batches: market rows, asset rows, state rows (group and topic filled in).
    pub fn finish(self, group: &str, topic: &str) -> Result<(WindowRows, RecordBatch), ArrowError> {
        Ok((
            WindowRows {
                market: self.market.finish()?,
                asset: self.asset.finish()?,
            },
            self.state.finish(group, topic)?,
        ))
    }
}

/// Builder of `tw_window_state` rows.
#[derive(Default)]
struct StateBuilder {
    partition: Int32Builder,
    grain: UInt8Builder,
    wkey: StringBuilder,
    window_start: Int64Builder,
    acc: BinaryBuilder,
    scratch: Vec<u8>,
}

impl StateBuilder {
    fn push(&mut self, partition: i32, k: &WinKey, a: &Acc, names: &Interner) {
        self.partition.append_value(partition);
        self.grain.append_value(k.grain);
        self.wkey.append_value(k.state_key(names));
        self.window_start.append_value(k.start);
        self.scratch.clear();
        a.to_bytes(&mut self.scratch);
        self.acc.append_value(&self.scratch);
    }

    fn finish(mut self, group: &str, topic: &str) -> Result<RecordBatch, ArrowError> {
        let n = self.grain.len();
        let mut g = StringBuilder::new();
        let mut t = StringBuilder::new();
        for _ in 0..n {
            g.append_value(group);
            t.append_value(topic);
        }
        RecordBatch::try_from_iter([
            ("group_id", Arc::new(g.finish()) as ArrayRef),
            ("topic", Arc::new(t.finish())),
            ("kpartition", Arc::new(self.partition.finish())),
            ("grain", Arc::new(self.grain.finish())),
            ("wkey", Arc::new(self.wkey.finish())),
            ("window_start", Arc::new(self.window_start.finish())),
            ("acc", Arc::new(self.acc.finish())),
        ])
    }
}
