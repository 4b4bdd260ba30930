//! Reference USD price paths driven by event time, not by trade count.
//!
//! Every asset's log price is a Gaussian process of event time with the variance of a Brownian
//! motion at its annualised volatility, so a minute's statistics do not depend on how many trades
//! are generated in it. The path is a pure function of (seed, asset, time): any number of
//! [`crate::Market`]s built from one seed (the full market and every `/trades/{exchange}` stream)
//! see the same reference price at the same instant, whatever order they ask in, so exchanges
//! agree within the few basis points of their own basis.
//!
//! Construction (Lévy's midpoint construction of a Brownian bridge, evaluated on a 1-second grid):
//! time is cut into blocks of `2^levels` seconds; block boundaries take independent normal values
//! of variance `sigma² · 2^levels / 2`, and inside a block each dyadic midpoint is the mean of its
//! interval's ends plus a normal of variance `sigma² · length / 4`. Every normal is derived by
//! hashing (seed, component, grid index), so no state has to be carried from a start time. The
//! result has Brownian increments at every scale below the block length and stays within a band
//! of about `sigma · sqrt(2^levels / 2)` around the anchor price (mean reversion over ~12 days for
//! crypto, minutes for a stablecoin peg). Between two grid seconds the log price is interpolated
//! linearly.
//!
//! Crypto assets load on one market factor (bitcoin's path) with correlation [`MARKET_RHO`], so
//! a minute's top movers move together as real ones do.

use crate::assets::{Kind, ASSETS};
use crate::rng::{fnv1a, splitmix64};

/// Seconds in a Julian year, to turn annualised volatilities into per-second ones.
const SECONDS_PER_YEAR: f64 = 31_557_600.0;
/// Crypto block length exponent: 2^20 s, about 12 days.
const CRYPTO_LEVELS: u32 = 20;
/// Peg block length exponent: 2^8 s, about 4 minutes (stablecoins revert to the peg quickly).
const PEG_LEVELS: u32 = 8;
/// Correlation of an altcoin's returns with the market factor (bitcoin).
pub const MARKET_RHO: f64 = 0.7;
/// Standard deviation of a stablecoin around its peg (relative, ~2 basis points).
pub const PEG_DEVIATION: f64 = 2e-4;

/// One Gaussian component of a log-price path.
#[derive(Debug, Clone, Copy)]
struct Component {
    /// Hash key of the component (seed, asset).
    key: u64,
    /// Standard deviation of the increment over one second.
    sigma: f64,
    /// Block length exponent (seconds).
    levels: u32,
}

impl Component {
    /// Value at grid second `k`.
    fn at(&self, k: i64) -> f64 {
        if self.sigma == 0.0 {
            return 0.0;
        }
        let len = 1i64 << self.levels;
        let block = k.div_euclid(len);
        let off = k.rem_euclid(len);
        let top_sd = self.sigma * (len as f64 / 2.0).sqrt();
        let (mut lo, mut hi) = (0i64, len);
        let mut vlo = top_sd * gauss(self.key, 1, block);
        let mut vhi = top_sd * gauss(self.key, 1, block + 1);
        while hi - lo > 1 && off != lo {
            let mid = (lo + hi) / 2;
            let sd = self.sigma * ((hi - lo) as f64).sqrt() / 2.0;
            let vmid = (vlo + vhi) / 2.0 + sd * gauss(self.key, 2, block * len + mid);
            if off < mid {
                hi = mid;
                vhi = vmid;
            } else {
                lo = mid;
                vlo = vmid;
            }
        }
        if off == lo {
            vlo
        } else {
            vhi
        }
    }
}

/// A standard normal that is a pure function of (key, tag, index): Box-Muller over two
/// splitmix64 outputs. Frozen forever, like [`crate::rng`].
fn gauss(key: u64, tag: u64, index: i64) -> f64 {
    let mut st = key ^ tag.wrapping_mul(0xD6E8_FEB8_6659_FD93) ^ (index as u64).rotate_left(29);
    let a = splitmix64(&mut st);
    let b = splitmix64(&mut st);
    let u1 = ((a >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64);
    let u2 = (b >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// How one asset's price is built.
#[derive(Debug, Clone, Copy)]
struct AssetPath {
    /// Price the path moves around (the table's starting USD price, or the peg).
    anchor: f64,
    /// Loading on the market factor (log units per unit of the factor).
    beta: f64,
    /// The asset's own component.
    own: Component,
}

/// Grid values of one asset around the last second asked for.
#[derive(Debug, Clone, Copy)]
struct Cached {
    k: i64,
    x0: f64,
    x1: f64,
}

/// Reference USD prices of every asset in [`ASSETS`] as functions of event time.
#[derive(Debug, Clone)]
pub struct PricePaths {
    market: Component,
    assets: Vec<AssetPath>,
    cache: Vec<Option<Cached>>,
}

/// Per-second volatility from an annualised one.
fn per_second(annual: f64) -> f64 {
    annual / SECONDS_PER_YEAR.sqrt()
}

impl PricePaths {
    /// The paths of every asset for a seed.
    pub fn new(seed: u64) -> PricePaths {
        let btc = crate::assets::annual_volatility(0);
        let market = Component {
            key: seed ^ fnv1a("tradewind.market-factor"),
            sigma: per_second(btc),
            levels: CRYPTO_LEVELS,
        };
        let assets = ASSETS
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let key = seed ^ fnv1a(a.id).rotate_left(13);
                let vol = per_second(crate::assets::annual_volatility(i));
                match a.kind {
                    Kind::Crypto if a.id == "bitcoin" => AssetPath {
                        anchor: a.usd,
                        beta: 1.0,
                        own: Component {
                            key,
                            sigma: 0.0,
                            levels: CRYPTO_LEVELS,
                        },
                    },
                    // Wrapped bitcoin is bitcoin plus a small basis that reverts in minutes.
                    Kind::Crypto if a.id == "wrapped-bitcoin" => AssetPath {
                        anchor: a.usd,
                        beta: 1.0,
                        own: peg(key, 3e-4),
                    },
                    Kind::Crypto => {
                        let beta = MARKET_RHO * vol / market.sigma;
                        AssetPath {
                            anchor: a.usd,
                            beta,
                            own: Component {
                                key,
                                sigma: vol * (1.0 - MARKET_RHO * MARKET_RHO).sqrt(),
                                levels: CRYPTO_LEVELS,
                            },
                        }
                    }
                    Kind::Stable => AssetPath {
                        anchor: a.usd,
                        beta: 0.0,
                        own: peg(key, PEG_DEVIATION),
                    },
                    Kind::Fiat => AssetPath {
                        anchor: a.usd,
                        beta: 0.0,
                        own: Component {
                            key,
                            sigma: vol,
                            levels: CRYPTO_LEVELS,
                        },
                    },
                }
            })
            .collect();
        PricePaths {
            market,
            cache: vec![None; ASSETS.len()],
            assets,
        }
    }

    fn log_at_second(&self, i: usize, k: i64) -> f64 {
        let p = &self.assets[i];
        let m = if p.beta == 0.0 {
            0.0
        } else {
            p.beta * self.market.at(k)
        };
        m + p.own.at(k)
    }

    /// USD price of asset `i` (index into [`ASSETS`]) at event time `t_ms` (epoch ms).
    pub fn usd(&mut self, i: usize, t_ms: i64) -> f64 {
        let k = t_ms.div_euclid(1000);
        let frac = t_ms.rem_euclid(1000) as f64 / 1000.0;
        let c = match self.cache[i] {
            Some(c) if c.k == k => c,
            prev => {
                let x0 = match prev {
                    Some(c) if c.k + 1 == k => c.x1,
                    _ => self.log_at_second(i, k),
                };
                let c = Cached {
                    k,
                    x0,
                    x1: self.log_at_second(i, k + 1),
                };
                // Late trades look back; keep the cache on the present.
                if prev.is_none_or(|p| k >= p.k) {
                    self.cache[i] = Some(c);
                }
                c
            }
        };
        self.assets[i].anchor * (c.x0 + (c.x1 - c.x0) * frac).exp()
    }
}

/// A component that keeps a price within `deviation` (one standard deviation) of its anchor,
/// reverting over a few minutes.
fn peg(key: u64, deviation: f64) -> Component {
    let len = (1u64 << PEG_LEVELS) as f64;
    Component {
        key,
        sigma: deviation / (len / 2.0).sqrt(),
        levels: PEG_LEVELS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assets::asset_index;

    #[test]
    fn pure_function_of_seed_and_time() {
        let mut a = PricePaths::new(42);
        let mut b = PricePaths::new(42);
        let btc = asset_index("bitcoin").unwrap_or(0);
        let t0 = 1_700_000_000_000;
        // Asked in different orders (b goes backwards), the answers are identical.
        let fwd: Vec<f64> = (0..500).map(|s| a.usd(btc, t0 + s * 777)).collect();
        let back: Vec<f64> = (0..500).rev().map(|s| b.usd(btc, t0 + s * 777)).collect();
        let back: Vec<f64> = back.into_iter().rev().collect();
        assert_eq!(fwd, back);
        let mut c = PricePaths::new(43);
        assert_ne!(fwd[10], c.usd(btc, t0 + 10 * 777));
    }

    #[test]
    fn increments_have_the_annual_volatility() {
        let mut p = PricePaths::new(7);
        let btc = asset_index("bitcoin").unwrap_or(0);
        let t0: i64 = 1_700_000_000_000;
        let n = 20_000;
        let mut sq = 0.0;
        let mut prev = p.usd(btc, t0).ln();
        for m in 1..=n {
            let x = p.usd(btc, t0 + m * 60_000).ln();
            sq += (x - prev) * (x - prev);
            prev = x;
        }
        let annual = (sq / n as f64 * 525_960.0).sqrt();
        let want = crate::assets::annual_volatility(btc);
        assert!((annual / want - 1.0).abs() < 0.1, "{annual} vs {want}");
    }

    #[test]
    fn stablecoins_stay_pegged() {
        let mut p = PricePaths::new(9);
        let usdt = asset_index("tether").unwrap_or(0);
        let anchor = ASSETS[usdt].usd;
        for s in 0..100_000 {
            let x = p.usd(usdt, 1_700_000_000_000 + s * 1000);
            assert!((x / anchor - 1.0).abs() < 6.0 * PEG_DEVIATION, "{x}");
        }
    }
}
