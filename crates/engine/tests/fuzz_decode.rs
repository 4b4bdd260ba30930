//! Property-based fuzzing of the engine's input path (decode + validate + the views' aggregation): whatever the
//! bytes, nothing panics, and every record is either windowed or dead-lettered with a reason — the
//! same verdict the model's validator gives the ingestor. Bounded: `PROPTEST_CASES` (default 4,096
//! per property) keeps it to seconds in CI; raise it for a longer campaign.

use proptest::prelude::*;
use std::collections::HashSet;
use std::sync::OnceLock;
use tradewind_engine::decode::{BatchDecoder, TradeColumns};
use tradewind_engine::raw::RawBatch;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use tradewind_engine::views::{Lateness, Origins, Views};
use tradewind_engine::window::PartitionClock;
use tradewind_model::{validate, Validator, MAX_AMOUNT, MAX_ID_CHARS, MIN_TIMESTAMP_MS};
use tradewind_pipeline::RowOrder;

const NOW: i64 = 1_700_000_100_000;
const GOOD: &str = r#"{"exchange":"binance","base":"bitcoin","quote":"tether","direction":"buy","price":19365.59,"volume":0.07,"timestamp":1700000000000,"priceUsd":19371.06}"#;

/// Fragments an adversary splices into a valid record.
const HOSTILE: &[&str] = &[
    "\"",
    "\\",
    "\\u0000",
    "\u{85}",
    "\u{7f}",
    "null",
    "[]",
    "{}",
    "NaN",
    "1e400",
    "-0",
    "1e16",
    "\"1.5\"",
    "\"2022-10-24T13:00:54Z\"",
    "'; DROP TABLE asset_1m; --",
    "\u{feff}",
    "\u{10ffff}",
    ",",
    ":",
    "}",
    "{",
    "99999999999999999999999",
    "0x10",
    "true",
];

fn mutated() -> impl Strategy<Value = Vec<u8>> {
    (0..GOOD.len(), 0..GOOD.len(), 0..HOSTILE.len(), 0u8..4).prop_map(|(a, b, h, mode)| {
        let (a, b) = (a.min(b), a.max(b));
        let mut s = GOOD.as_bytes().to_vec();
        match mode {
            0 => s.truncate(a),
            1 => s.splice(a..a, HOSTILE[h].bytes()).for_each(drop),
            2 => s.splice(a..b, HOSTILE[h].bytes()).for_each(drop),
            _ => {
                // A long id: past the DDL's VARCHAR(64), or right at it.
                let len = if h % 2 == 0 {
                    MAX_ID_CHARS
                } else {
                    MAX_ID_CHARS + 1 + a
                };
                let id = "é".repeat(len);
                s = GOOD.replace("bitcoin", &id).into_bytes();
            }
        }
        s
    })
}

fn record() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => mutated(),
        1 => proptest::collection::vec(any::<u8>(), 0..200),
        1 => Just(GOOD.as_bytes().to_vec()),
    ]
}

fn check(records: &[Vec<u8>], threads: usize) {
    let mut raw = RawBatch::default();
    for (i, r) in records.iter().enumerate() {
        raw.push((i % 3) as i32, i as i64, Some(b"k"), r);
    }
    let policy = Validator::default();
    let d = BatchDecoder::with_threads(policy, threads)
        .decode(&raw, NOW, &|_| false)
        .expect("decode never fails on input");
    // Every record exactly once: a row or a reject, in input order.
    let mut seen: Vec<u32> = d.source.clone();
    seen.extend(d.rejects.iter().map(|(i, _)| *i));
    seen.sort_unstable();
    assert_eq!(seen, (0..records.len() as u32).collect::<Vec<_>>());
    // The same verdict as the validator every other component uses.
    for (i, r) in &d.rejects {
        assert!(!r.kind.label().is_empty() && !r.detail.is_empty());
        let direct = validate(&records[*i as usize], NOW, &policy);
        assert_eq!(direct.err().as_ref(), Some(r));
    }
    let cols = TradeColumns::of(&d.batch);
    for row in 0..d.batch.num_rows() {
        assert!(validate(&records[d.source[row] as usize], NOW, &policy).is_ok());
        for id in [
            cols.exchange.value(row),
            cols.base.value(row),
            cols.quote.value(row),
        ] {
            assert!(!id.is_empty() && id.chars().count() <= MAX_ID_CHARS);
            assert!(!id.chars().any(char::is_control));
        }
        for x in [cols.price[row], cols.volume[row], cols.price_usd[row]] {
            assert!(x.is_finite() && x > 0.0 && x <= MAX_AMOUNT);
        }
        assert!(cols.ts[row] >= MIN_TIMESTAMP_MS && cols.ts[row] <= NOW + 60_000);
    }
    // Every valid row is windowed (or too late) by the built-in views, and nothing panics.
    let partitions = vec![0; records.len()];
    let offsets: Vec<i64> = (0..records.len() as i64).collect();
    let origins = Origins {
        source: &d.source,
        partitions: &partitions,
        offsets: &offsets,
        timestamps: &[],
    };
    let clock = |_| Some(PartitionClock::default());
    let plan = match views().plan(&d, &origins, clock, &HashSet::new(), NOW, RowOrder::Keys) {
        Ok(p) => p,
        Err(e) => panic!("views failed on valid trades: {e}"),
    };
    let refused_by_market = plan
        .too_late
        .iter()
        .filter(|(_, _, v)| v.contains(&0))
        .count();
    let market = &plan.batches[0];
    let windowed: i64 = market
        .column_by_name("trades")
        .map_or(0, |c| c.as_primitive::<Int64Type>().values().iter().sum());
    assert_eq!(windowed as usize + refused_by_market, d.batch.num_rows());
    for name in ["volume", "notional_usd", "vwap_usd"] {
        let Some(c) = market.column_by_name(name) else {
            panic!("market_1m has no {name}")
        };
        let c = c.as_primitive::<Float64Type>();
        assert!(c.iter().flatten().all(f64::is_finite), "{name} not finite");
    }
}

/// The built-in views, planned once for every case.
fn views() -> &'static Views {
    static VIEWS: OnceLock<Views> = OnceLock::new();
    VIEWS.get_or_init(|| {
        let pipeline = match tradewind_pipeline::Pipeline::builtin() {
            Ok(p) => p,
            Err(e) => panic!("built-in pipeline: {e}"),
        };
        let lateness = Lateness {
            out_of_orderness_ms: 5_000,
            allowed_ms: 600_000,
        };
        match Views::new(&pipeline, lateness) {
            Ok(v) => v,
            Err(e) => panic!("planning views: {e}"),
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(4_096),
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_records_are_windowed_or_dead_lettered(records in proptest::collection::vec(record(), 0..64)) {
        check(&records, 1);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2_000)) {
        // Any byte string as one record, and split at newlines into several.
        check(std::slice::from_ref(&bytes), 1);
        let parts: Vec<Vec<u8>> = bytes.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
        check(&parts, 2);
    }
}

#[test]
fn a_large_hostile_batch_decodes_in_parallel_with_the_same_verdicts() {
    let records: Vec<Vec<u8>> = (0..20_000)
        .map(|i| {
            let h = HOSTILE[i % HOSTILE.len()];
            if i % 7 == 0 {
                GOOD.replace("binance", h).into_bytes()
            } else {
                GOOD.as_bytes().to_vec()
            }
        })
        .collect();
    check(&records, 2);
}
