//! Decode: one micro-batch of raw Kafka payloads straight into an Arrow [`RecordBatch`] with the
//! trade schema, validated by the one validator every component uses ([`tradewind_model::validate`]).
//!
//! Each payload is checked by the model's validator (the same verdict `ingest` and `produce` give),
//! which borrows the fields from the payload, and its values are appended to column builders: no
//! per-record allocation, no owned struct in between. arrow-json is not used here on purpose: it
//! coerces numbers written as strings and ISO-8601 timestamps, which the wire contract rejects, so its
//! verdict would differ from the ingestor's. Large batches are split at message boundaries and
//! decoded on every core.

use std::sync::Arc;

use arrow_array::builder::{Float64Builder, StringBuilder, TimestampMillisecondBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, TimestampMillisecondType};
use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_schema::{ArrowError, SchemaRef};
use tradewind_model::{col, validate, Reject, Trade, Validator};

use crate::raw::RawBatch;

/// The outcome of decoding one micro-batch.
#[derive(Debug)]
pub struct Decoded {
    /// Valid trades, one row each, in input order.
    pub batch: RecordBatch,
    /// For each row of `batch`, the index of its message in the [`RawBatch`].
    pub source: Vec<u32>,
    /// Invalid messages: index in the [`RawBatch`] and why, in input order.
    pub rejects: Vec<(u32, Reject)>,
}

/// Reusable micro-batch decoder.
pub struct BatchDecoder {
    schema: SchemaRef,
    policy: Validator,
    threads: usize,
}

/// Batches smaller than this are decoded on the calling thread.
const PARALLEL_MIN_ROWS: usize = 8_192;

impl BatchDecoder {
    /// A decoder validating with `policy`, on every available core (at most 4).
    pub fn new(policy: Validator) -> Self {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
        Self::with_threads(policy, threads)
    }

    /// Like [`BatchDecoder::new`] with an explicit number of decode threads (1 = no parallelism).
    pub fn with_threads(policy: Validator, threads: usize) -> Self {
        BatchDecoder {
            schema: tradewind_model::arrow_schema(),
            policy,
            threads: threads.max(1),
        }
    }

    /// Decodes and validates `raw` against each record's Kafka timestamp (processing time `now_ms`
    /// for a record without one, or with a later one). `skip(i)` marks messages to
    /// leave out entirely (neither decoded nor rejected).
    pub fn decode(
        &self,
        raw: &RawBatch,
        now_ms: i64,
        skip: &(dyn Fn(usize) -> bool + Sync),
    ) -> Result<Decoded, ArrowError> {
        let n = raw.len();
        let parts = if n >= PARALLEL_MIN_ROWS {
            self.threads
        } else {
            1
        };
        let bounds: Vec<(usize, usize)> = (0..parts)
            .map(|k| (k * n / parts, (k + 1) * n / parts))
            .collect();
        let run = |(from, to): (usize, usize)| {
            decode_range(raw, from..to, now_ms, &self.policy, &self.schema, skip)
        };
        let results: Vec<Result<Decoded, ArrowError>> = match bounds.split_first() {
            Some((&first, rest)) if !rest.is_empty() => {
                // The first part is decoded on this thread, the others on threads of their own.
                std::thread::scope(|scope| {
                    let handles: Vec<_> =
                        rest.iter().map(|&b| scope.spawn(move || run(b))).collect();
                    let panicked = |_| Err(ArrowError::ComputeError("decode panicked".into()));
                    let here =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(first)));
                    std::iter::once(here.unwrap_or_else(panicked))
                        .chain(
                            handles
                                .into_iter()
                                .map(|h| h.join().unwrap_or_else(panicked)),
                        )
                        .collect()
                })
            }
            _ => bounds.into_iter().map(run).collect(),
        };
        let mut parts = results.into_iter().collect::<Result<Vec<_>, _>>()?;
        if parts.len() == 1 {
            return parts
                .pop()
                .ok_or_else(|| ArrowError::ComputeError("no part".into()));
        }
        let batches: Vec<&RecordBatch> = parts.iter().map(|p| &p.batch).collect();
        let batch = arrow_select::concat::concat_batches(&self.schema, batches)?;
        let mut source = Vec::with_capacity(batch.num_rows());
        let mut rejects = Vec::new();
        for p in parts {
            source.extend(p.source);
            rejects.extend(p.rejects);
        }
        Ok(Decoded {
            batch,
            source,
            rejects,
        })
    }
}

/// Column builders of the trade schema.
struct TradeBuilders {
    ids: [StringBuilder; 4],
    numbers: [Float64Builder; 3],
    ts: TimestampMillisecondBuilder,
}

impl TradeBuilders {
    fn with_capacity(rows: usize) -> Self {
        let s = || StringBuilder::with_capacity(rows, rows * 12);
        TradeBuilders {
            ids: [s(), s(), s(), StringBuilder::with_capacity(rows, rows * 4)],
            numbers: std::array::from_fn(|_| Float64Builder::with_capacity(rows)),
            ts: TimestampMillisecondBuilder::with_capacity(rows).with_timezone("+00:00"),
        }
    }

    fn append(&mut self, t: &Trade<'_>) {
        for (b, v) in self
            .ids
            .iter_mut()
            .zip([t.exchange, t.base, t.quote, t.direction.as_str()])
        {
            b.append_value(v);
        }
        for (b, v) in self
            .numbers
            .iter_mut()
            .zip([t.price, t.volume, t.price_usd])
        {
            b.append_value(v);
        }
        self.ts.append_value(t.timestamp);
    }

    fn finish(mut self, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
        let [e, b, q, d] = &mut self.ids;
        let [price, volume, price_usd] = &mut self.numbers;
        // Schema order: exchange, base, quote, direction, price, volume, timestamp, priceUsd.
        let columns: Vec<ArrayRef> = vec![
            Arc::new(e.finish()),
            Arc::new(b.finish()),
            Arc::new(q.finish()),
            Arc::new(d.finish()),
            Arc::new(price.finish()),
            Arc::new(volume.finish()),
            Arc::new(self.ts.finish()),
            Arc::new(price_usd.finish()),
        ];
        RecordBatch::try_new(Arc::clone(schema), columns)
    }
}

fn decode_range(
    raw: &RawBatch,
    range: std::ops::Range<usize>,
    now_ms: i64,
    policy: &Validator,
    schema: &SchemaRef,
    skip: &(dyn Fn(usize) -> bool + Sync),
) -> Result<Decoded, ArrowError> {
    let mut b = TradeBuilders::with_capacity(range.len());
    let mut source = Vec::with_capacity(range.len());
    let mut rejects = Vec::new();
    for i in range {
        if skip(i) {
            continue;
        }
        // "Too far in the future" is judged against the record's Kafka timestamp (never later than
        // now): the same verdict however often, and however late, the record is read.
        let reference = raw.timestamp(i).map_or(now_ms, |t| t.min(now_ms));
        match validate(raw.payload(i), reference, policy) {
            Ok(t) => {
                b.append(&t);
                source.push(i as u32);
            }
            Err(r) => rejects.push((i as u32, r)),
        }
    }
    Ok(Decoded {
        batch: b.finish(schema)?,
        source,
        rejects,
    })
}

/// Typed views of the eight columns of a decoded trade batch: the kernels read these slices directly.
pub struct TradeColumns<'a> {
    /// `exchange`.
    pub exchange: &'a StringArray,
    /// `base`.
    pub base: &'a StringArray,
    /// `quote`.
    pub quote: &'a StringArray,
    /// `direction`.
    pub direction: &'a StringArray,
    /// `price` values.
    pub price: &'a [f64],
    /// `volume` values.
    pub volume: &'a [f64],
    /// `priceUsd` values.
    pub price_usd: &'a [f64],
    /// `timestamp` values, epoch ms.
    pub ts: &'a [i64],
}

impl<'a> TradeColumns<'a> {
    /// Views the columns of `batch`, which must have [`tradewind_model::arrow_schema`].
    pub fn of(batch: &'a RecordBatch) -> Self {
        let f64s =
            |i: usize| -> &'a [f64] { batch.column(i).as_primitive::<Float64Type>().values() };
        TradeColumns {
            exchange: batch.column(col::EXCHANGE).as_string::<i32>(),
            base: batch.column(col::BASE).as_string::<i32>(),
            quote: batch.column(col::QUOTE).as_string::<i32>(),
            direction: batch.column(col::DIRECTION).as_string::<i32>(),
            price: f64s(col::PRICE),
            volume: f64s(col::VOLUME),
            price_usd: f64s(col::PRICE_USD),
            ts: batch
                .column(col::TIMESTAMP)
                .as_primitive::<TimestampMillisecondType>()
                .values(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tradewind_model::RejectKind;

    const GOOD: &str = r#"{"exchange":"binance","base":"bitcoin","quote":"tether","direction":"buy","price":19365.59,"volume":0.07,"timestamp":1666616454283,"priceUsd":19371.064153143514}"#;

    fn raw(records: &[&str]) -> RawBatch {
        let mut r = RawBatch::default();
        for (i, p) in records.iter().enumerate() {
            r.push(0, i as i64, Some(b"bitcoin"), p.as_bytes());
        }
        r
    }

    #[test]
    fn parallel_decode_keeps_order_and_diverts_bad_records() {
        let mut records: Vec<String> = (0..20_000)
            .map(|i| GOOD.replace("1666616454283", &(1_666_616_454_283i64 + i).to_string()))
            .collect();
        records[12_345] = "{broken".into();
        let refs: Vec<&str> = records.iter().map(String::as_str).collect();
        let r = raw(&refs);
        for threads in [1, 2, 3] {
            let d = BatchDecoder::with_threads(Validator::default(), threads);
            let out = d.decode(&r, 1_700_000_000_000, &|_| false).unwrap();
            assert_eq!(out.batch.num_rows(), 19_999);
            assert_eq!(out.rejects.len(), 1);
            assert_eq!(out.rejects[0].0, 12_345);
            let ts = TradeColumns::of(&out.batch).ts;
            assert!(ts.windows(2).all(|w| w[0] < w[1]), "rows keep input order");
        }
    }

    #[test]
    fn gives_the_validators_verdict_for_every_record() {
        let g = GOOD;
        let cases = [
            (g.to_string(), None),
            ("{\"exchange\":".to_string(), Some(RejectKind::Syntax)),
            (
                g.replace("19365.59", "\"19365.59\""),
                Some(RejectKind::WrongType),
            ),
            (
                g.replace("1666616454283", "\"2022-10-24T13:00:54Z\""),
                Some(RejectKind::WrongType),
            ),
            (g.replace("0.07", "-0.07"), Some(RejectKind::NonPositive)),
            (
                g.replace(",\"priceUsd\":19371.064153143514", ""),
                Some(RejectKind::MissingField),
            ),
            (
                g.replace("\"buy\"", "\"hold\""),
                Some(RejectKind::BadDirection),
            ),
            (
                g.replace("1666616454283", "1900000000000"),
                Some(RejectKind::FutureTimestamp),
            ),
            ("[1,2]".to_string(), Some(RejectKind::NotObject)),
            (format!("{g}{g}"), Some(RejectKind::Syntax)),
        ];
        let refs: Vec<&str> = cases.iter().map(|(p, _)| p.as_str()).collect();
        let d = BatchDecoder::new(Validator::default());
        let out = d
            .decode(&raw(&refs), 1_700_000_000_000, &|_| false)
            .unwrap();
        assert_eq!(out.source, vec![0]);
        let got: Vec<(u32, RejectKind)> = out.rejects.iter().map(|(i, r)| (*i, r.kind)).collect();
        let want: Vec<(u32, RejectKind)> = cases
            .iter()
            .enumerate()
            .filter_map(|(i, (_, k))| k.map(|k| (i as u32, k)))
            .collect();
        assert_eq!(got, want);
        for (i, r) in &out.rejects {
            let direct = validate(
                refs[*i as usize].as_bytes(),
                1_700_000_000_000,
                &Validator::default(),
            );
            assert_eq!(
                direct.err().as_ref(),
                Some(r),
                "same verdict as the model's validator"
            );
        }
    }
}
