//! The simulated market looks like a market whatever the trade rate: ten minutes of event time at
//! 2,000 and at 100,000 trades/s (in-process generator, logical clock), bitcoin's minute-to-minute
//! VWAP change has the same, realistic distribution, and its minute VWAP agrees across exchanges
//! within a few basis points.
//!
//! Run with `--nocapture` to see the statistics.

use std::collections::BTreeMap;

use tradewind_sim::{LogicalClock, Market, MarketConfig};

/// Start of the run: a whole minute (2023-11-14T22:14:00Z).
const START: i64 = 1_700_000_040_000;
const MINUTES: i64 = 10;

#[derive(Debug)]
struct Stats {
    /// Bitcoin trades generated.
    btc_trades: u64,
    /// |VWAP(m) / VWAP(m-1) - 1| over consecutive whole minutes, sorted.
    changes: Vec<f64>,
    /// Per minute: (max - min) / mean of the exchanges' bitcoin VWAPs, sorted.
    spreads: Vec<f64>,
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Generates `MINUTES` of event time at `rate` trades/s and measures bitcoin's minute VWAPs.
fn measure(rate: u64, seed: u64) -> Stats {
    let cfg = MarketConfig {
        seed,
        markets: 1000,
        start_ms: Some(START),
        event_rate: rate,
        ..MarketConfig::default()
    };
    let clock = LogicalClock {
        start_ms: START,
        rate,
    };
    let mut market = Market::new(cfg);
    // (minute, exchange) -> (sum of priceUsd * volume, sum of volume)
    let mut by_ex: BTreeMap<(i64, &'static str), (f64, f64)> = BTreeMap::new();
    let mut btc_trades = 0;
    let n = rate * MINUTES as u64 * 60;
    for i in 0..n {
        let t = market.next_raw(clock.at(i));
        if t.base != "bitcoin" {
            continue;
        }
        btc_trades += 1;
        let minute = t.timestamp.div_euclid(60_000);
        let e = by_ex.entry((minute, t.exchange)).or_default();
        e.0 += t.price_usd * t.volume;
        e.1 += t.volume;
    }
    let mut minutes: BTreeMap<i64, (f64, f64)> = BTreeMap::new();
    let mut per_minute_ex: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for ((m, _), (pv, v)) in &by_ex {
        let e = minutes.entry(*m).or_default();
        e.0 += pv;
        e.1 += v;
        per_minute_ex.entry(*m).or_default().push(pv / v);
    }
    // Whole minutes only: the first minute before START holds jittered trades only.
    let first = START / 60_000;
    let vwaps: Vec<f64> = (first..first + MINUTES)
        .filter_map(|m| minutes.get(&m).map(|(pv, v)| pv / v))
        .collect();
    assert_eq!(vwaps.len(), MINUTES as usize, "a VWAP for every minute");
    let mut changes: Vec<f64> = vwaps
        .windows(2)
        .map(|w| (w[1] / w[0] - 1.0).abs())
        .collect();
    changes.sort_by(f64::total_cmp);
    let mut spreads: Vec<f64> = (first..first + MINUTES)
        .filter_map(|m| per_minute_ex.get(&m))
        .filter(|v| v.len() >= 5)
        .map(|v| {
            let max = v.iter().copied().fold(f64::MIN, f64::max);
            let min = v.iter().copied().fold(f64::MAX, f64::min);
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            (max - min) / mean
        })
        .collect();
    spreads.sort_by(f64::total_cmp);
    Stats {
        btc_trades,
        changes,
        spreads,
    }
}

fn report(rate: u64, s: &Stats) {
    println!(
        "{rate:>7} trades/s: {} bitcoin trades; minute VWAP change median {:.4}% p90 {:.4}% max {:.4}%; \
         cross-exchange spread median {:.4}% p90 {:.4}%",
        s.btc_trades,
        100.0 * quantile(&s.changes, 0.5),
        100.0 * quantile(&s.changes, 0.9),
        100.0 * quantile(&s.changes, 1.0),
        100.0 * quantile(&s.spreads, 0.5),
        100.0 * quantile(&s.spreads, 0.9),
    );
}

#[test]
fn minute_statistics_do_not_depend_on_the_rate_and_look_real() {
    let seed = 42;
    let slow = measure(2_000, seed);
    let fast = measure(100_000, seed);
    report(2_000, &slow);
    report(100_000, &fast);
    for s in [&slow, &fast] {
        let median = quantile(&s.changes, 0.5);
        let p90 = quantile(&s.changes, 0.9);
        // A real bitcoin minute moves a few hundredths of a percent; never tens of percent.
        assert!(median > 1e-5 && median < 5e-3, "median |change| {median}");
        assert!(p90 < 1e-2, "p90 |change| {p90}");
        assert_eq!(
            s.spreads.len(),
            MINUTES as usize,
            "every minute has 5+ exchanges"
        );
        let spread = quantile(&s.spreads, 0.5);
        assert!(spread < 1e-3, "median cross-exchange spread {spread}");
    }
    // Fifty times the trades, the same distribution: medians and p90s within a factor of 1.5.
    for q in [0.5, 0.9] {
        let (a, b) = (quantile(&slow.changes, q), quantile(&fast.changes, q));
        assert!(
            a / b < 1.5 && b / a < 1.5,
            "q{q}: {a} at 2k/s vs {b} at 100k/s"
        );
    }
    // Fifty times the trades per second is fifty times the bitcoin trades.
    let ratio = fast.btc_trades as f64 / slow.btc_trades as f64;
    assert!((40.0..60.0).contains(&ratio), "bitcoin trade ratio {ratio}");
}

#[test]
fn every_exchange_stream_of_a_seed_sees_the_same_prices() {
    let cfg = MarketConfig {
        start_ms: Some(START),
        ..MarketConfig::default()
    };
    let mut full = Market::new(cfg.clone());
    let mut kraken = Market::for_exchange(cfg.clone(), "kraken").expect("known exchange");
    let mut binance = Market::for_exchange(cfg, "binance").expect("known exchange");
    // Each stream draws a different trade sequence, yet at any instant prices agree.
    for s in 0..600 {
        let t = START + s * 1_000;
        for m in [&mut full, &mut kraken, &mut binance] {
            m.next_raw(t);
        }
        let a = full.reference_usd("bitcoin", t).expect("known asset");
        let b = kraken.reference_usd("bitcoin", t).expect("known asset");
        let c = binance.reference_usd("bitcoin", t).expect("known asset");
        assert_eq!(a, b);
        assert_eq!(a, c);
    }
    // And a kraken bitcoin trade is priced within a few basis points of the reference.
    let mut seen = 0;
    for i in 0..50_000 {
        let now = START + i;
        let t = kraken.next_raw(now);
        if t.base == "bitcoin" {
            let r = kraken
                .reference_usd("bitcoin", t.timestamp)
                .expect("known asset");
            assert!((t.price_usd / r - 1.0).abs() < 5e-4, "{t:?} vs {r}");
            seen += 1;
        }
    }
    assert!(seen > 100, "{seen} kraken bitcoin trades");
}
