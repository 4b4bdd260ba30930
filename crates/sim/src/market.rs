//! The deterministic, seeded market generator.
//!
//! A [`Market`] holds a fixed set of markets (exchange, base, quote) chosen from the static tables in
//! [`crate::assets`] and an activity distribution over them (heavy-tailed: bitcoin and ethereum
//! dominate). Prices follow event time, not the trade count: each asset's USD reference price is a
//! path of its annualised volatility over event time ([`crate::price`]), so a minute looks the same
//! at 2,000 or 100,000 trades per second. Stablecoins stay within a few basis points of their peg,
//! `united-states-dollar` is fixed at 1. Each market quotes the reference price with a small fixed
//! basis (within +-2 basis points), takers pay half a basis-point spread, and each trade adds a
//! fraction of a basis point of noise, so exchanges agree within a few basis points. Trade sizes
//! are heavy-tailed (Pareto notional). Each trade's `priceUsd` is `price * quote_usd`, so
//! crypto-quoted pairs (`ethereum`/`bitcoin`) agree with the quote's USD price exactly.
//!
//! Everything is a function of the seed and the sequence of calls: the same seed and the same
//! `now_ms` arguments give the same trades, byte for byte, forever (own PRNG, see [`crate::rng`]).
//! The reference prices depend on the seed and the trade's event time only, so every market built
//! from one seed (every `/trades/{exchange}` stream) sees the same prices at the same time.

use std::io::Write;
use std::path::Path;

use tradewind_model::{write_json, Direction, OwnedTrade, Trade};

use crate::assets::{fiat_first, Kind, ASSETS, EXCHANGES, QUOTES};
use crate::price::PricePaths;
use crate::rng::{fnv1a, Rng};

/// Knobs of the generated market.
#[derive(Debug, Clone, PartialEq)]
pub struct MarketConfig {
    /// PRNG seed: the same seed gives the same stream.
    pub seed: u64,
    /// Number of (exchange, base, quote) markets to simulate (at least 1; capped at the number of
    /// combinations the tables allow, about 11,000). Every base asset gets a market once this
    /// reaches the number of assets; the rest go to the most active combinations.
    pub markets: usize,
    /// Event-time jitter: each trade is dated up to this many ms before its send time, so the
    /// stream is out of order by up to this much.
    pub jitter_ms: u32,
    /// Fraction (0..=1) of trades dated seconds to minutes in the past (late data).
    pub late_fraction: f64,
    /// Maximum lateness of a late trade in ms (late trades are 1 s to this far behind).
    pub late_max_ms: u32,
    /// Event time of the first trade for the logical clock (epoch ms). `None` means wall-clock
    /// time: "now" for the server, "now minus the run's duration" for offline generation (so the
    /// last trade is dated about now and nothing is in the future).
    pub start_ms: Option<i64>,
    /// Pace of the logical clock in trades per second of event time (offline generation, and the
    /// server's logical clock when it runs unthrottled).
    pub event_rate: u64,
}

impl Default for MarketConfig {
    fn default() -> Self {
        MarketConfig {
            seed: 42,
            markets: 1000,
            jitter_ms: 250,
            late_fraction: 0.0,
            late_max_ms: 120_000,
            start_ms: None,
            event_rate: 1000,
        }
    }
}

/// A logical event-time clock: trade `i` is dated `start_ms + i * 1000 / rate` (before jitter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogicalClock {
    /// Event time of trade 0, epoch ms.
    pub start_ms: i64,
    /// Trades per second of event time (0 is treated as 1).
    pub rate: u64,
}

impl LogicalClock {
    /// Event time (before jitter) of the `i`-th trade.
    pub fn at(&self, i: u64) -> i64 {
        let rate = u128::from(self.rate.max(1));
        self.start_ms
            .saturating_add((u128::from(i) * 1000 / rate).min(i64::MAX as u128) as i64)
    }
}

#[derive(Debug, Clone, Copy)]
struct Def {
    exchange: u16,
    base: u16,
    quote: u16,
    /// Per-market price bias against the asset's reference price (exchanges disagree slightly).
    bias: f64,
    /// Significant digits of `price` on this market.
    digits: i32,
}

/// Walker/Vose alias table: O(1) sampling from a discrete distribution.
#[derive(Debug, Clone)]
struct Alias {
    prob: Vec<f64>,
    alias: Vec<u32>,
}

impl Alias {
    fn new(weights: &[f64]) -> Alias {
        let n = weights.len().max(1);
        let total: f64 = weights.iter().sum();
        let mut prob = vec![1.0; n];
        let mut alias: Vec<u32> = (0..n as u32).collect();
        if total <= 0.0 || weights.is_empty() {
            return Alias { prob, alias };
        }
        let mut scaled: Vec<f64> = weights.iter().map(|w| w * n as f64 / total).collect();
        let mut small: Vec<usize> = Vec::new();
        let mut large: Vec<usize> = Vec::new();
        for (i, &p) in scaled.iter().enumerate() {
            if p < 1.0 {
                small.push(i);
            } else {
                large.push(i);
            }
        }
        while let (Some(&s), Some(&l)) = (small.last(), large.last()) {
            small.pop();
            prob[s] = scaled[s];
            alias[s] = l as u32;
            scaled[l] = (scaled[l] + scaled[s]) - 1.0;
            if scaled[l] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        for i in large.into_iter().chain(small) {
            prob[i] = 1.0;
        }
        Alias { prob, alias }
    }

    #[inline]
    fn sample(&self, rng: &mut Rng) -> usize {
        let i = rng.below(self.prob.len() as u64) as usize;
        if rng.f64() < self.prob[i] {
            i
        } else {
            self.alias[i] as usize
        }
    }
}

/// Rounds a positive finite `x` to `digits` significant decimal digits (the result prints short).
pub fn round_sig(x: f64, digits: i32) -> f64 {
    if !(x.is_finite() && x > 0.0) {
        return x;
    }
    let mag = x.log10().floor() as i32;
    let k = digits - 1 - mag;
    if k >= 0 {
        let p = 10f64.powi(k.min(22));
        (x * p).round() / p
    } else {
        let p = 10f64.powi((-k).min(22));
        (x / p).round() * p
    }
}

/// Activity weight of the asset at rank `r` (Zipf-like, with bitcoin and ethereum on top).
fn asset_weight(r: usize) -> f64 {
    match r {
        0 => 1.0,
        1 => 0.6,
        _ => 0.3 / (r as f64).powf(1.1),
    }
}

fn quote_weight(exchange: &str, quote: &str, base_w: f64) -> f64 {
    let mut w = base_w;
    if fiat_first(exchange) {
        match quote {
            "united-states-dollar" => w *= 5.0,
            "euro" => w *= 3.0,
            "tether" => w *= 0.3,
            _ => {}
        }
    } else if quote == "united-states-dollar" || quote == "euro" {
        w *= 0.2;
    }
    if quote == "binance-usd" && exchange != "binance" {
        w *= 0.1;
    }
    w
}

/// All markets the tables allow, with their activity weights, in a fixed order; then the selection
/// of `n` of them (every base first by its best market, then the most active remaining ones).
fn select_markets(n: usize) -> Vec<(Def, f64)> {
    let quote_idx: Vec<usize> = QUOTES
        .iter()
        .map(|(q, _)| crate::assets::asset_index(q).unwrap_or(0))
        .collect();
    let mut all: Vec<(Def, f64)> = Vec::new();
    let mut best_of_base: Vec<Option<usize>> = vec![None; ASSETS.len()];
    for (e, (ex, ew)) in EXCHANGES.iter().enumerate() {
        for (b, asset) in ASSETS.iter().enumerate() {
            if asset.kind == Kind::Fiat {
                continue;
            }
            for (qi, (qid, qw)) in QUOTES.iter().enumerate() {
                let q = quote_idx[qi];
                if q == b {
                    continue;
                }
                let qkind = ASSETS[q].kind;
                // Stablecoins trade against fiat and other stablecoins only; bitcoin is not
                // quoted in ethereum.
                if asset.kind == Kind::Stable && qkind == Kind::Crypto {
                    continue;
                }
                if asset.id == "bitcoin" && *qid == "ethereum" {
                    continue;
                }
                let w = asset_weight(b) * ew * quote_weight(ex, qid, *qw);
                // Deterministic per-market basis in [-2e-4, 2e-4] (exchanges disagree slightly).
                let h = fnv1a(ex) ^ fnv1a(asset.id).rotate_left(17) ^ fnv1a(qid).rotate_left(34);
                let bias = ((h % 10_001) as f64 / 10_000.0 - 0.5) * 4e-4;
                let digits = if qkind == Kind::Crypto { 6 } else { 7 };
                let def = Def {
                    exchange: e as u16,
                    base: b as u16,
                    quote: q as u16,
                    bias,
                    digits,
                };
                let idx = all.len();
                all.push((def, w));
                match best_of_base[b] {
                    Some(j) if all[j].1 >= w => {}
                    _ => best_of_base[b] = Some(idx),
                }
            }
        }
    }
    let by_weight = |a: &usize, b: &usize| all[*b].1.total_cmp(&all[*a].1).then(a.cmp(b));
    let mut first: Vec<usize> = best_of_base.iter().flatten().copied().collect();
    first.sort_by(by_weight);
    let mut taken = vec![false; all.len()];
    for &i in &first {
        taken[i] = true;
    }
    let mut rest: Vec<usize> = (0..all.len()).filter(|i| !taken[*i]).collect();
    rest.sort_by(by_weight);
    first
        .into_iter()
        .chain(rest)
        .take(n.max(1))
        .map(|i| all[i])
        .collect()
}

/// Which assets a `/prices` subscriber wants.
#[derive(Debug, Clone)]
pub struct PriceSubscription {
    mask: Vec<bool>,
}

impl PriceSubscription {
    /// Every asset (`assets=ALL`).
    pub fn all() -> Self {
        PriceSubscription {
            mask: vec![true; ASSETS.len()],
        }
    }

    /// The listed asset ids; unknown ids are ignored (CoinCap simply never sends them).
    pub fn of<'a>(ids: impl IntoIterator<Item = &'a str>) -> Self {
        let mut mask = vec![false; ASSETS.len()];
        for id in ids {
            if let Some(i) = crate::assets::asset_index(id.trim()) {
                mask[i] = true;
            }
        }
        PriceSubscription { mask }
    }
}

/// The seeded market: call [`Market::next_into`] (or [`Market::next_raw`]) once per trade.
#[derive(Debug, Clone)]
pub struct Market {
    cfg: MarketConfig,
    rng: Rng,
    defs: Vec<Def>,
    alias: Alias,
    /// USD price of each asset at its last use (what `/prices` frames report).
    usd: Vec<f64>,
    paths: PricePaths,
    dirty: Vec<bool>,
    dirty_list: Vec<u16>,
    count: u64,
}

impl Market {
    /// A market over every exchange.
    pub fn new(cfg: MarketConfig) -> Market {
        let sel = select_markets(cfg.markets);
        let seed = cfg.seed;
        Self::build(cfg, sel, seed)
    }

    /// A market restricted to one exchange (what `/trades/{exchange}` serves): the same markets
    /// the full market has on that exchange (at least its most active one), with its own
    /// deterministic stream derived from the seed and the exchange id. `None` for unknown exchanges.
    pub fn for_exchange(cfg: MarketConfig, exchange: &str) -> Option<Market> {
        let e = EXCHANGES.iter().position(|(x, _)| *x == exchange)?;
        let mut sel: Vec<(Def, f64)> = select_markets(cfg.markets)
            .into_iter()
            .filter(|(d, _)| usize::from(d.exchange) == e)
            .collect();
        if sel.is_empty() {
            sel = select_markets(usize::MAX)
                .into_iter()
                .filter(|(d, _)| usize::from(d.exchange) == e)
                .take(1)
                .collect();
        }
        let seed = cfg.seed ^ fnv1a(exchange);
        Some(Self::build(cfg, sel, seed))
    }

    fn build(cfg: MarketConfig, sel: Vec<(Def, f64)>, seed: u64) -> Market {
        let weights: Vec<f64> = sel.iter().map(|(_, w)| *w).collect();
        let defs: Vec<Def> = sel.into_iter().map(|(d, _)| d).collect();
        let usd: Vec<f64> = ASSETS.iter().map(|a| a.usd).collect();
        Market {
            // Prices come from the configured seed, not the per-exchange one: every exchange's
            // stream sees the same reference prices.
            paths: PricePaths::new(cfg.seed),
            rng: Rng::new(seed),
            alias: Alias::new(&weights),
            defs,
            usd,
            dirty: vec![false; ASSETS.len()],
            dirty_list: Vec::with_capacity(ASSETS.len()),
            count: 0,
            cfg,
        }
    }

    /// The configuration this market was built from.
    pub fn config(&self) -> &MarketConfig {
        &self.cfg
    }

    /// Trades generated so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The simulated markets as (exchange, base, quote) ids.
    pub fn markets(&self) -> impl Iterator<Item = (&'static str, &'static str, &'static str)> + '_ {
        self.defs.iter().map(|d| {
            (
                EXCHANGES[usize::from(d.exchange)].0,
                ASSETS[usize::from(d.base)].id,
                ASSETS[usize::from(d.quote)].id,
            )
        })
    }

    /// USD price of an asset id at its last use by this market (`None` if the id is unknown).
    pub fn usd_price(&self, id: &str) -> Option<f64> {
        crate::assets::asset_index(id).map(|i| self.usd[i])
    }

    /// Reference USD price of an asset id at event time `t_ms` (`None` if the id is unknown): the
    /// price every market built from this seed trades around at that instant.
    pub fn reference_usd(&mut self, id: &str, t_ms: i64) -> Option<f64> {
        crate::assets::asset_index(id).map(|i| self.paths.usd(i, t_ms))
    }

    /// Sets asset `i`'s current USD price to its reference price at `t_ms` and returns it.
    fn price_at(&mut self, i: usize, t_ms: i64) -> f64 {
        let p = self.paths.usd(i, t_ms);
        if p != self.usd[i] {
            self.usd[i] = p;
            if !self.dirty[i] {
                self.dirty[i] = true;
                self.dirty_list.push(i as u16);
            }
        }
        p
    }

    /// Moves every asset's current price to event time `now_ms` without generating a trade (what
    /// the `/prices` socket does between frames).
    pub fn tick_prices(&mut self, now_ms: i64) {
        for i in 0..ASSETS.len() {
            self.price_at(i, now_ms);
        }
    }

    /// Generates the next trade, dated from `now_ms` (minus jitter, and for late trades minus
    /// 1 s to `late_max_ms`) and priced at the reference price of its own event time. Ids are
    /// `'static`: no allocation.
    pub fn next_raw(&mut self, now_ms: i64) -> Trade<'static> {
        let m = self.alias.sample(&mut self.rng);
        let d = self.defs[m];
        let buy = self.rng.next_u64() >> 63 == 0;
        let sign = if buy { 1.0 } else { -1.0 };
        let noise = self.rng.normal();
        let jitter = self.rng.below(u64::from(self.cfg.jitter_ms) + 1) as i64;
        let mut ts = now_ms - jitter;
        if self.rng.f64() < self.cfg.late_fraction {
            let span = u64::from(self.cfg.late_max_ms.max(1000) - 1000) + 1;
            ts -= 1000 + self.rng.below(span) as i64;
        }
        let ts = ts.max(1);
        let (b, q) = (usize::from(d.base), usize::from(d.quote));
        let b_usd = self.price_at(b, ts);
        let q_usd = self.price_at(q, ts);
        // Takers cross half a basis-point spread; a quarter basis point of noise per trade.
        let touch = 1.0 + sign * 0.5e-4 + noise * 0.25e-4;
        let raw_usd = b_usd * (1.0 + d.bias) * touch;
        let price = round_sig(raw_usd / q_usd, d.digits);
        let price_usd = price * q_usd;
        // Heavy-tailed notional (Pareto, alpha 1.16: the 80/20 rule), capped at $5M.
        let notional = (15.0 * self.rng.f64_open0().powf(-1.0 / 1.16)).min(5e6);
        let volume = round_sig(notional / price_usd, 6);
        self.count += 1;
        Trade {
            exchange: EXCHANGES[usize::from(d.exchange)].0,
            base: ASSETS[b].id,
            quote: ASSETS[q].id,
            direction: if buy { Direction::Buy } else { Direction::Sell },
            price,
            volume,
            timestamp: ts,
            price_usd,
        }
    }

    /// Generates the next trade as an [`OwnedTrade`].
    pub fn next_trade(&mut self, now_ms: i64) -> OwnedTrade {
        self.next_raw(now_ms).to_owned_trade()
    }

    /// Generates the next trade and appends its compact CoinCap JSON to `out`.
    pub fn next_into(&mut self, now_ms: i64, out: &mut Vec<u8>) {
        let t = self.next_raw(now_ms);
        write_json(&t, out);
    }

    /// Appends a `/prices` frame (`{"bitcoin":"97250.12",...}`, USD prices as strings) with the
    /// subscribed assets whose price changed since the last call, and forgets all changes.
    /// Returns how many assets were written (0 means nothing to send; `out` is left untouched).
    pub fn write_prices(&mut self, sub: &PriceSubscription, out: &mut Vec<u8>) -> usize {
        let mut n = 0;
        let start = out.len();
        for &i in &self.dirty_list {
            let i = usize::from(i);
            self.dirty[i] = false;
            if !sub.mask.get(i).copied().unwrap_or(false) {
                continue;
            }
            out.push(if n == 0 { b'{' } else { b',' });
            out.push(b'"');
            out.extend_from_slice(ASSETS[i].id.as_bytes());
            out.extend_from_slice(b"\":\"");
            let _ = write!(out, "{}", round_sig(self.usd[i], 10));
            out.push(b'"');
            n += 1;
        }
        self.dirty_list.clear();
        if n > 0 {
            out.push(b'}');
        } else {
            out.truncate(start);
        }
        n
    }
}

/// Iterator of `n` trades on the logical clock (see [`generate`]).
#[derive(Debug, Clone)]
pub struct Generate {
    market: Market,
    clock: LogicalClock,
    i: u64,
    n: u64,
}

impl Iterator for Generate {
    type Item = OwnedTrade;

    fn next(&mut self) -> Option<OwnedTrade> {
        if self.i >= self.n {
            return None;
        }
        let t = self.market.next_trade(self.clock.at(self.i));
        self.i += 1;
        Some(t)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.n - self.i) as usize;
        (left, Some(left))
    }
}

/// The logical clock offline generation of `n` trades uses: `cfg.start_ms`, or by default a start
/// such that the last trade is dated about now.
pub fn offline_clock(cfg: &MarketConfig, n: u64) -> LogicalClock {
    let rate = cfg.event_rate.max(1);
    let span = i64::try_from(u128::from(n) * 1000 / u128::from(rate)).unwrap_or(i64::MAX);
    LogicalClock {
        start_ms: cfg
            .start_ms
            .unwrap_or_else(|| tradewind_model::now_ms().saturating_sub(span)),
        rate,
    }
}

/// Generates `n` trades offline (tests, benchmarks): a fresh [`Market`] over all exchanges on the
/// logical clock of [`offline_clock`].
pub fn generate(cfg: MarketConfig, n: u64) -> Generate {
    let clock = offline_clock(&cfg, n);
    Generate {
        market: Market::new(cfg),
        clock,
        i: 0,
        n,
    }
}

/// Writes `n` generated trades to `path` as JSON lines (one compact CoinCap frame per line, the
/// same bytes [`generate`] would produce); returns the number of bytes written.
pub fn write_jsonl(path: &Path, n: u64, cfg: &MarketConfig) -> std::io::Result<u64> {
    let clock = offline_clock(cfg, n);
    let mut market = Market::new(cfg.clone());
    let file = std::fs::File::create(path)?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut bytes = 0u64;
    for i in 0..n {
        market.next_into(clock.at(i), &mut buf);
        buf.push(b'\n');
        if buf.len() >= 60 * 1024 {
            w.write_all(&buf)?;
            bytes += buf.len() as u64;
            buf.clear();
        }
    }
    w.write_all(&buf)?;
    bytes += buf.len() as u64;
    w.flush()?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use tradewind_model::{validate, Validator};

    fn cfg() -> MarketConfig {
        MarketConfig {
            start_ms: Some(1_700_000_000_000),
            ..MarketConfig::default()
        }
    }

    #[test]
    fn deterministic_and_valid() {
        let a: Vec<_> = generate(cfg(), 20_000).collect();
        let b: Vec<_> = generate(cfg(), 20_000).collect();
        assert_eq!(a, b);
        let c: Vec<_> = generate(MarketConfig { seed: 43, ..cfg() }, 100).collect();
        assert_ne!(a[..100], c[..]);
        let mut buf = Vec::new();
        for t in &a {
            buf.clear();
            write_json(&t.as_trade(), &mut buf);
            let back = validate(&buf, 1_800_000_000_000, &Validator::default()).expect("valid");
            assert_eq!(back.to_owned_trade(), *t);
        }
    }

    #[test]
    fn crypto_quotes_agree_through_quote_usd() {
        let mut m = Market::new(cfg());
        let mut crypto = 0;
        for i in 0..200_000 {
            let t = m.next_raw(1_700_000_000_000 + i);
            let q = m.usd_price(t.quote).expect("known quote");
            let rel = (t.price * q - t.price_usd).abs() / t.price_usd;
            assert!(rel < 1e-12, "{t:?}");
            if matches!(t.quote, "bitcoin" | "ethereum") {
                crypto += 1;
            }
        }
        assert!(crypto > 1000, "{crypto} crypto-quoted trades");
    }

    #[test]
    fn heavy_tailed_mix_and_market_count() {
        for n in [10, 1000, 10_000] {
            let m = Market::new(MarketConfig {
                markets: n,
                ..cfg()
            });
            assert_eq!(m.markets().count(), n);
        }
        let mut by_base: HashMap<String, usize> = HashMap::new();
        let mut ex: HashMap<String, usize> = HashMap::new();
        for t in generate(cfg(), 100_000) {
            *by_base.entry(t.base).or_default() += 1;
            *ex.entry(t.exchange).or_default() += 1;
        }
        let mut v: Vec<_> = by_base.into_iter().collect();
        v.sort_by_key(|x| std::cmp::Reverse(x.1));
        assert_eq!(v[0].0, "bitcoin");
        assert_eq!(v[1].0, "ethereum");
        assert!(v.len() >= 100, "{} bases traded", v.len());
        assert!(ex.len() >= 5);
    }

    #[test]
    fn jitter_and_late() {
        let mut m = Market::new(MarketConfig {
            jitter_ms: 500,
            late_fraction: 0.1,
            late_max_ms: 60_000,
            ..cfg()
        });
        let now = 1_700_000_000_000;
        let (mut late, mut jittered) = (0, 0);
        for _ in 0..10_000 {
            let t = m.next_raw(now);
            let behind = now - t.timestamp;
            assert!((0..=60_500).contains(&behind));
            if behind > 500 {
                late += 1;
                assert!(behind >= 1000);
            } else if behind > 0 {
                jittered += 1;
            }
        }
        assert!((800..1200).contains(&late), "{late}");
        assert!(jittered > 8000);
    }

    #[test]
    fn exchange_market_and_prices() {
        let mut m = Market::for_exchange(cfg(), "kraken").expect("known");
        assert!(m.markets().all(|(e, _, _)| e == "kraken"));
        for _ in 0..100 {
            assert_eq!(m.next_raw(1).exchange, "kraken");
        }
        assert!(Market::for_exchange(cfg(), "nope").is_none());
        let small = Market::for_exchange(
            MarketConfig {
                markets: 1,
                ..cfg()
            },
            "gemini",
        )
        .expect("known");
        assert_eq!(small.markets().count(), 1);
        let mut out = Vec::new();
        let n = m.write_prices(&PriceSubscription::all(), &mut out);
        assert!(n > 0);
        let map: HashMap<String, String> = serde_json::from_slice(&out).expect("json map");
        assert_eq!(map.len(), n);
        for v in map.values() {
            assert!(v.parse::<f64>().expect("number string") > 0.0);
        }
        out.clear();
        assert_eq!(m.write_prices(&PriceSubscription::all(), &mut out), 0);
        assert!(out.is_empty());
    }

    #[test]
    fn round_sig_prints_short() {
        assert_eq!(round_sig(97_250.123_456, 7).to_string(), "97250.12");
        assert_eq!(round_sig(0.000_021_456_789, 3).to_string(), "0.0000215");
        assert_eq!(round_sig(123_456_789.0, 3).to_string(), "123000000");
    }
}
