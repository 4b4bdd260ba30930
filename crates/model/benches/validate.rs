//! Cost of validating one CoinCap frame: [`validate`] (the compact frame's fast path) against
//! [`validate_slow`] (serde_json alone, the validator before the fast path), on 4,096 frames as
//! the simulator and the ingestor write them ([`write_json`]).
//!
//! Run: `cargo bench -p tradewind-model --bench validate` (reports frames/s as criterion "elem/s").
//! Direct mode (no criterion; steady loop for `perf stat`, which counts instructions whatever the
//! machine's load): `TW_VALIDATE_DIRECT=fast|slow TW_VALIDATE_ROUNDS=500` runs one of the two over
//! the frames that many times and prints one JSON line with the wall ns per frame.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use tradewind_model::{
    takes_fast_path, validate, validate_slow, write_json, Direction, Trade, Validator,
};

const NOW_MS: i64 = 1_735_689_600_000;

/// `n` frames with realistic ids and amounts (prices from 1e-4 to 1e5 with 2 to 8 decimals,
/// priceUsd at full precision), from a fixed-seed generator.
fn frames(n: usize) -> Vec<Vec<u8>> {
    const EXCHANGES: [&str; 4] = ["binance", "coinbase", "kraken", "bitfinex"];
    const ASSETS: [&str; 6] = [
        "bitcoin", "ethereum", "solana", "enzyme", "dogecoin", "tether",
    ];
    let mut s: u64 = 42;
    let mut next = move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        s >> 11
    };
    (0..n)
        .map(|i| {
            let unit = |x: u64| x as f64 / (1u64 << 53) as f64;
            let decimals = 10f64.powi(2 + (next() % 7) as i32);
            let price = (10f64.powf(unit(next()) * 9.0 - 4.0) * decimals)
                .round()
                .max(1.0)
                / decimals;
            let volume = (unit(next()) * 50.0 * 1e6).round() / 1e6 + 1e-6;
            let t = Trade {
                exchange: EXCHANGES[i % 4],
                base: ASSETS[(next() % 6) as usize],
                quote: "tether",
                direction: if next() % 2 == 0 {
                    Direction::Buy
                } else {
                    Direction::Sell
                },
                price,
                volume,
                timestamp: NOW_MS - (next() % 3_600_000) as i64,
                price_usd: price * (1.0 + (unit(next()) - 0.5) * 1e-3),
            };
            let mut out = Vec::new();
            write_json(&t, &mut out);
            out
        })
        .collect()
}

/// Runs `validate` (`fast`) or `validate_slow` (`slow`) over `frames`, `TW_VALIDATE_ROUNDS` times.
fn direct(which: &str, frames: &[Vec<u8>], policy: &Validator) {
    let rounds: usize = std::env::var("TW_VALIDATE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let f = match which {
        "fast" => validate,
        "slow" => validate_slow,
        other => panic!("TW_VALIDATE_DIRECT must be fast or slow, not {other}"),
    };
    let t0 = Instant::now();
    let mut ok = 0usize;
    for _ in 0..rounds {
        for frame in frames {
            ok += usize::from(black_box(f(black_box(frame), NOW_MS, policy)).is_ok());
        }
    }
    let n = rounds * frames.len();
    assert_eq!(ok, n);
    let ns = t0.elapsed().as_secs_f64() * 1e9 / n as f64;
    println!("{{\"validator\":\"{which}\",\"frames\":{n},\"wall_ns_per_frame\":{ns:.1}}}");
}

fn main() {
    let frames = frames(4096);
    let policy = Validator::default();
    for f in &frames {
        assert!(takes_fast_path(f), "{}", String::from_utf8_lossy(f));
        assert!(
            validate(f, NOW_MS, &policy).is_ok(),
            "{}",
            String::from_utf8_lossy(f)
        );
    }
    if let Ok(which) = std::env::var("TW_VALIDATE_DIRECT") {
        direct(&which, &frames, &policy);
        return;
    }
    let quick = std::env::args().all(|a| a != "--bench");
    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(if quick { 50 } else { 1000 }))
        .measurement_time(Duration::from_secs(if quick { 1 } else { 5 }))
        .configure_from_args();
    let mut g = c.benchmark_group("validate");
    g.throughput(Throughput::Elements(frames.len() as u64));
    g.bench_function("fast_path", |b| {
        b.iter(|| {
            for f in &frames {
                let _ = black_box(validate(black_box(f), NOW_MS, &policy));
            }
        })
    });
    g.bench_function("serde_only", |b| {
        b.iter(|| {
            for f in &frames {
                let _ = black_box(validate_slow(black_box(f), NOW_MS, &policy));
            }
        })
    });
    g.finish();
    c.final_summary();
}
