//! Property-based fuzzing of the engine's input path (decode + validate + window fold): whatever the
//! bytes, nothing panics, and every record is either windowed or dead-lettered with a reason — the
//! same verdict the model's validator gives the ingestor. Bounded: `PROPTEST_CASES` (default 4,096
//! per property) keeps it to seconds in CI; raise it for a longer campaign.

use proptest::prelude::*;
use tradewind_engine::decode::{BatchDecoder, TradeColumns};
use tradewind_engine::raw::RawBatch;
use tradewind_engine::window::{
    fold, Contributions, Interner, PartitionClock, WindowPolicy, GRAIN_MARKET,
};
use tradewind_model::{validate, Validator, MAX_AMOUNT, MAX_ID_CHARS, MIN_TIMESTAMP_MS};

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
    // Every valid row is windowed (or too late), and the fold never panics.
    let mut out = Contributions::default();
    let mut clock = PartitionClock::default();
    let o = fold(
        &d.batch,
        0..d.batch.num_rows(),
        0,
        |r| r as i64,
        WindowPolicy {
            size_ms: 60_000,
            out_of_orderness_ms: 5_000,
            allowed_ms: 600_000,
        },
        &mut clock,
        &mut Interner::default(),
        &mut out,
    );
    let windowed: u64 = out
        .iter()
        .filter(|(k, _)| k.grain == GRAIN_MARKET)
        .map(|(_, a)| a.trades)
        .sum();
    assert_eq!(windowed as usize + o.too_late.len(), d.batch.num_rows());
    for a in out.values() {
        assert!(a.volume.is_finite() && a.notional_usd.is_finite() && a.vwap_usd().is_finite());
    }
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
