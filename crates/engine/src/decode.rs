//! Decode: one micro-batch of raw Kafka payloads straight into an Arrow [`RecordBatch`] with the
//! trade schema (arrow-json's tape decoder, no per-record struct in between), then vectorized
//! validation that splits off invalid rows with a precise reason.
//!
//! Fast path: the payloads are already joined by `\n` in one buffer ([`RawBatch::buf`]), decoded in one
//! call. Only when that fails (a syntax error poisons arrow-json's decoder, or a record holds zero or
//! several JSON values) does the slow path probe records one by one to find and divert the bad ones.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, TimestampMillisecondType};
use arrow_array::{Array, BooleanArray, RecordBatch, StringArray};
use arrow_json::reader::{Decoder, ReaderBuilder};
use arrow_schema::{ArrowError, SchemaRef};
use tradewind_model::{col, validate, Reject, RejectKind, Validator};

use crate::raw::RawBatch;

/// The outcome of decoding one micro-batch.
#[derive(Debug)]
pub struct Decoded {
    /// Valid trades, one row each, in input order.
    pub batch: RecordBatch,
    /// For each row of `batch`, the index of its message in the [`RawBatch`].
    pub source: Vec<u32>,
    /// Invalid messages: index in the [`RawBatch`] and why.
    pub rejects: Vec<(u32, Reject)>,
}

/// Reusable micro-batch decoder (holds arrow-json decoders and scratch buffers between batches).
pub struct BatchDecoder {
    schema: SchemaRef,
    /// One arrow-json decoder per decode thread: a large batch is split at message boundaries and
    /// its parts are parsed in parallel (parsing is the engine's most expensive step).
    decoders: Vec<Decoder>,
    probe: Decoder,
    policy: Validator,
    capacity: usize,
}

impl BatchDecoder {
    /// A decoder for batches of up to `max_rows` messages, validating with `policy`.
    pub fn new(max_rows: usize, policy: Validator) -> Result<Self, ArrowError> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
        Self::with_threads(max_rows, policy, threads)
    }

    /// Like [`BatchDecoder::new`] with an explicit number of decode threads (1 = no parallelism).
    pub fn with_threads(
        max_rows: usize,
        policy: Validator,
        threads: usize,
    ) -> Result<Self, ArrowError> {
        let schema = tradewind_model::arrow_schema();
        let capacity = max_rows.max(1) + 1;
        Ok(BatchDecoder {
            decoders: (0..threads.max(1))
                .map(|_| build(&schema, capacity))
                .collect::<Result<_, _>>()?,
            probe: build(&schema, 2)?,
            schema,
            policy,
            capacity,
        })
    }

    /// Decodes and validates `raw` against processing time `now_ms`.
    pub fn decode(&mut self, raw: &RawBatch, now_ms: i64) -> Result<Decoded, ArrowError> {
        let n = raw.len();
        let (batch, source, mut rejects) = match self.fast(raw)? {
            Some(batch) => (batch, (0..n as u32).collect::<Vec<_>>(), Vec::new()),
            None => self.slow(raw)?,
        };
        // Vectorized validation over the columns.
        let bad = find_invalid(&batch, raw, &source, now_ms, &self.policy);
        if bad.is_empty() {
            return Ok(Decoded {
                batch,
                source,
                rejects,
            });
        }
        let mut keep = vec![true; batch.num_rows()];
        for &row in &bad {
            keep[row] = false;
            let idx = source[row];
            rejects.push((idx, explain(raw, idx, now_ms, &self.policy)));
        }
        let mask = BooleanArray::from(keep);
        let batch = arrow_select::filter::filter_record_batch(&batch, &mask)?;
        let source = source
            .iter()
            .enumerate()
            .filter(|(row, _)| mask.value(*row))
            .map(|(_, s)| *s)
            .collect();
        rejects.sort_by_key(|(i, _)| *i);
        Ok(Decoded {
            batch,
            source,
            rejects,
        })
    }

    /// Whole-batch decode; `None` when the batch needs the record-by-record path.
    fn fast(&mut self, raw: &RawBatch) -> Result<Option<RecordBatch>, ArrowError> {
        if raw.len() >= self.capacity {
            self.capacity = raw.len() + 1;
            for d in self.decoders.iter_mut() {
                *d = build(&self.schema, self.capacity)?;
            }
        }
        if raw.is_empty() {
            return Ok(Some(RecordBatch::new_empty(self.schema.clone())));
        }
        // Split at message boundaries into one part per decoder (small batches stay whole).
        let parts = if raw.len() >= PARALLEL_MIN_ROWS {
            self.decoders.len()
        } else {
            1
        };
        let mut bounds = Vec::with_capacity(parts + 1);
        for k in 0..parts {
            bounds.push(k * raw.len() / parts);
        }
        bounds.push(raw.len());
        let byte_at = |msg: usize| {
            if msg == raw.len() {
                raw.buf.len()
            } else {
                raw.spans[msg].0 as usize
            }
        };
        let jobs: Vec<(&mut Decoder, &[u8], usize)> = self
            .decoders
            .iter_mut()
            .zip(bounds.windows(2))
            .map(|(d, w)| (d, &raw.buf[byte_at(w[0])..byte_at(w[1])], w[1] - w[0]))
            .collect();
        let results: Vec<Option<RecordBatch>> = if jobs.len() == 1 {
            jobs.into_iter()
                .map(|(d, b, n)| decode_part(d, b, n))
                .collect()
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = jobs
                    .into_iter()
                    .map(|(d, b, n)| scope.spawn(move || decode_part(d, b, n)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().ok().flatten())
                    .collect()
            })
        };
        if results.iter().any(Option::is_none) {
            // A failed decode leaves a decoder unusable: rebuild them all.
            for d in self.decoders.iter_mut() {
                *d = build(&self.schema, self.capacity)?;
            }
            return Ok(None);
        }
        let batches: Vec<RecordBatch> = results.into_iter().flatten().collect();
        if batches.len() == 1 {
            return Ok(batches.into_iter().next());
        }
        arrow_select::concat::concat_batches(&self.schema, &batches).map(Some)
    }

    /// Record-by-record: probe each message alone, reject the ones that do not decode to exactly one
    /// row, and decode the rest together.
    #[allow(clippy::type_complexity)]
    fn slow(
        &mut self,
        raw: &RawBatch,
    ) -> Result<(RecordBatch, Vec<u32>, Vec<(u32, Reject)>), ArrowError> {
        let mut good = Vec::with_capacity(raw.len());
        let mut rejects = Vec::new();
        let mut joined = Vec::with_capacity(raw.buf.len());
        for i in 0..raw.len() {
            let payload = raw.payload(i);
            let rows = match self.probe.decode(payload) {
                Ok(c) if c == payload.len() => {
                    self.probe.flush().map(|b| b.map_or(0, |b| b.num_rows()))
                }
                Ok(_) => Ok(usize::MAX),
                Err(e) => Err(e),
            };
            match rows {
                Ok(1) => {
                    good.push(i as u32);
                    joined.extend_from_slice(payload);
                    joined.push(b'\n');
                }
                other => {
                    self.probe = build(&self.schema, 2)?;
                    let reject = match validate(payload, i64::MAX / 2, &self.policy) {
                        Err(r) => r,
                        Ok(_) => match other {
                            Err(e) => Reject::new(RejectKind::Syntax, format!("arrow-json: {e}")),
                            Ok(0) => Reject::new(RejectKind::Syntax, "record holds no JSON value"),
                            Ok(_) => Reject::new(
                                RejectKind::Syntax,
                                "record holds more than one JSON value",
                            ),
                        },
                    };
                    rejects.push((i as u32, reject));
                }
            }
        }
        let batch = if good.is_empty() {
            RecordBatch::new_empty(self.schema.clone())
        } else {
            let mut d = build(&self.schema, good.len() + 1)?;
            d.decode(&joined)?;
            d.flush()?
                .unwrap_or_else(|| RecordBatch::new_empty(self.schema.clone()))
        };
        if batch.num_rows() != good.len() {
            return Err(ArrowError::JsonError(format!(
                "re-decode produced {} rows for {} records",
                batch.num_rows(),
                good.len()
            )));
        }
        Ok((batch, good, rejects))
    }
}

/// Batches smaller than this are decoded on the calling thread.
const PARALLEL_MIN_ROWS: usize = 8_192;

/// Decodes one part holding exactly `rows` messages; `None` if it does not.
fn decode_part(d: &mut Decoder, bytes: &[u8], rows: usize) -> Option<RecordBatch> {
    match d.decode(bytes) {
        Ok(consumed) if consumed == bytes.len() => match d.flush() {
            Ok(Some(b)) if b.num_rows() == rows => Some(b),
            _ => None,
        },
        _ => None,
    }
}

fn build(schema: &SchemaRef, batch_size: usize) -> Result<Decoder, ArrowError> {
    ReaderBuilder::new(Arc::clone(schema))
        .with_batch_size(batch_size)
        .build_decoder()
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

/// Rows of `batch` that break the model: nulls, non-finite or non-positive numbers, a bad direction,
/// empty ids, far-future timestamps, or a message key that is not the trade's `base`.
fn find_invalid(
    batch: &RecordBatch,
    raw: &RawBatch,
    source: &[u32],
    now_ms: i64,
    policy: &Validator,
) -> Vec<usize> {
    let n = batch.num_rows();
    let mut bad = Vec::new();
    if n == 0 {
        return bad;
    }
    let any_null = batch.columns().iter().any(|c| c.null_count() > 0);
    let TradeColumns {
        exchange,
        base,
        quote,
        direction,
        price,
        volume,
        price_usd,
        ts,
    } = TradeColumns::of(batch);
    let horizon = now_ms.saturating_add(policy.future_tolerance_ms);
    let ok_num = |x: f64| x.is_finite() && x > 0.0;
    for row in 0..n {
        let numbers_ok = ok_num(price[row])
            && ok_num(volume[row])
            && ok_num(price_usd[row])
            && ts[row] > 0
            && ts[row] <= horizon;
        let nulls_ok = !any_null || batch.columns().iter().all(|c| c.is_valid(row));
        let strings_ok = nulls_ok
            && !exchange.value(row).is_empty()
            && !base.value(row).is_empty()
            && !quote.value(row).is_empty()
            && matches!(direction.value(row), "buy" | "sell");
        let key_ok =
            strings_ok && raw.key(source[row] as usize) == Some(base.value(row).as_bytes());
        if !(numbers_ok && strings_ok && key_ok) {
            bad.push(row);
        }
    }
    bad
}

/// The precise reason a message failed validation (the model's validator is the single source of truth).
fn explain(raw: &RawBatch, idx: u32, now_ms: i64, policy: &Validator) -> Reject {
    let i = idx as usize;
    match validate(raw.payload(i), now_ms, policy) {
        Err(r) => r,
        Ok(t) => match raw.key(i) {
            Some(k) if k == t.base.as_bytes() => Reject::new(
                RejectKind::WrongType,
                "record decoded to values outside the model",
            ),
            Some(k) => Reject::new(
                RejectKind::KeyMismatch,
                format!(
                    "message key {:?} is not the trade's base {:?}: the topic must be keyed by base",
                    String::from_utf8_lossy(k),
                    t.base
                ),
            ),
            None => Reject::new(
                RejectKind::KeyMismatch,
                format!("message has no key; expected the trade's base {:?}", t.base),
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"exchange":"binance","base":"bitcoin","quote":"tether","direction":"buy","price":19365.59,"volume":0.07,"timestamp":1666616454283,"priceUsd":19371.064153143514}"#;

    fn raw(records: &[(&str, Option<&str>)]) -> RawBatch {
        let mut r = RawBatch::default();
        for (i, (p, k)) in records.iter().enumerate() {
            r.push(0, i as i64, k.map(str::as_bytes), p.as_bytes());
        }
        r
    }

    #[test]
    fn parallel_decode_keeps_order_and_diverts_bad_records() {
        let mut records: Vec<(String, Option<&str>)> = Vec::new();
        for i in 0..20_000 {
            let ts = 1_666_616_454_283i64 + i;
            records.push((
                GOOD.replace("1666616454283", &ts.to_string()),
                Some("bitcoin"),
            ));
        }
        records[12_345].0 = "{broken".into();
        let refs: Vec<(&str, Option<&str>)> =
            records.iter().map(|(p, k)| (p.as_str(), *k)).collect();
        let r = raw(&refs);
        for threads in [1, 2, 3] {
            let mut d = BatchDecoder::with_threads(20_000, Validator::default(), threads).unwrap();
            let out = d.decode(&r, 1_700_000_000_000).unwrap();
            assert_eq!(out.batch.num_rows(), 19_999);
            assert_eq!(out.rejects.len(), 1);
            assert_eq!(out.rejects[0].0, 12_345);
            let ts = TradeColumns::of(&out.batch).ts;
            assert!(ts.windows(2).all(|w| w[0] < w[1]), "rows keep input order");
            // And a clean batch goes through the parallel path.
            let clean = d.decode(&raw(&refs[..10_000]), 1_700_000_000_000).unwrap();
            assert_eq!(clean.batch.num_rows(), 10_000);
            assert_eq!(clean.source, (0..10_000).collect::<Vec<u32>>());
        }
    }

    #[test]
    fn decodes_good_batch_in_one_pass() {
        let r = raw(&[(GOOD, Some("bitcoin")), (GOOD, Some("bitcoin"))]);
        let mut d = BatchDecoder::new(10, Validator::default()).unwrap();
        let out = d.decode(&r, 1_700_000_000_000).unwrap();
        assert_eq!(out.batch.num_rows(), 2);
        assert!(out.rejects.is_empty());
        assert_eq!(out.source, vec![0, 1]);
    }

    #[test]
    fn diverts_every_kind_of_bad_record_and_keeps_the_rest() {
        let g = GOOD;
        let wrong_type = g.replace("19365.59", "\"abc\"");
        let negative = g.replace("0.07", "-0.07");
        let missing = g.replace(",\"priceUsd\":19371.064153143514", "");
        let direction = g.replace("\"buy\"", "\"hold\"");
        let future = g.replace("1666616454283", "1900000000000");
        let r = raw(&[
            (g, Some("bitcoin")),
            ("{\"exchange\":", Some("bitcoin")),
            (&wrong_type, Some("bitcoin")),
            (&negative, Some("bitcoin")),
            (&missing, Some("bitcoin")),
            (&direction, Some("bitcoin")),
            (&future, Some("bitcoin")),
            (g, Some("ethereum")),
            ("[1,2]", Some("bitcoin")),
            (&format!("{g}{g}"), Some("bitcoin")),
            (g, Some("bitcoin")),
        ]);
        let mut d = BatchDecoder::new(16, Validator::default()).unwrap();
        let out = d.decode(&r, 1_700_000_000_000).unwrap();
        assert_eq!(out.source, vec![0, 10]);
        let kinds: Vec<(u32, RejectKind)> = out.rejects.iter().map(|(i, r)| (*i, r.kind)).collect();
        assert_eq!(
            kinds,
            vec![
                (1, RejectKind::Syntax),
                (2, RejectKind::WrongType),
                (3, RejectKind::NonPositive),
                (4, RejectKind::MissingField),
                (5, RejectKind::BadDirection),
                (6, RejectKind::FutureTimestamp),
                (7, RejectKind::KeyMismatch),
                (8, RejectKind::NotObject),
                (9, RejectKind::Syntax),
            ]
        );
        // The decoder is usable again after a poisoned batch.
        let again = d
            .decode(&raw(&[(GOOD, Some("bitcoin"))]), 1_700_000_000_000)
            .unwrap();
        assert_eq!(again.batch.num_rows(), 1);
    }
}
