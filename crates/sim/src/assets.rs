//! Static reference data of the simulated market: CoinCap asset ids with plausible starting USD
//! prices (roughly early-2025 levels), exchanges and quote currencies.

/// What kind of asset an entry is; drives its price dynamics and where it may appear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A volatile crypto asset (geometric random walk).
    Crypto,
    /// A USD stablecoin (mean-reverting around 1).
    Stable,
    /// A fiat currency, only ever a quote (`united-states-dollar` is exactly 1).
    Fiat,
}

/// One asset: CoinCap id, starting USD price, kind.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// CoinCap asset id (`bitcoin`).
    pub id: &'static str,
    /// Starting USD price.
    pub usd: f64,
    /// Kind of asset.
    pub kind: Kind,
}

const fn c(id: &'static str, usd: f64) -> Asset {
    Asset {
        id,
        usd,
        kind: Kind::Crypto,
    }
}
const fn s(id: &'static str, usd: f64) -> Asset {
    Asset {
        id,
        usd,
        kind: Kind::Stable,
    }
}
const fn f(id: &'static str, usd: f64) -> Asset {
    Asset {
        id,
        usd,
        kind: Kind::Fiat,
    }
}

/// Every asset, in activity rank order (index 0 is the most traded). Fiat entries are quotes only.
pub static ASSETS: &[Asset] = &[
    c("bitcoin", 97_250.0),
    c("ethereum", 3_350.0),
    s("tether", 1.0003),
    c("xrp", 2.31),
    c("solana", 195.4),
    c("binance-coin", 690.2),
    s("usd-coin", 0.9999),
    c("dogecoin", 0.331),
    c("cardano", 0.95),
    c("tron", 0.247),
    c("avalanche", 36.8),
    c("chainlink", 22.4),
    c("shiba-inu", 0.0000214),
    c("stellar", 0.43),
    c("sui", 4.12),
    c("polkadot", 6.9),
    c("hedera-hashgraph", 0.29),
    c("bitcoin-cash", 445.0),
    c("litecoin", 104.5),
    c("uniswap", 13.6),
    c("pepe", 0.0000179),
    c("near-protocol", 5.1),
    c("internet-computer", 10.4),
    c("aptos", 8.9),
    c("ethereum-classic", 26.9),
    c("polygon", 0.46),
    c("monero", 196.0),
    c("okb", 52.1),
    c("cosmos", 6.5),
    c("filecoin", 5.2),
    c("arbitrum", 0.74),
    c("vechain", 0.047),
    c("render-token", 7.1),
    c("algorand", 0.36),
    c("crypto-com-coin", 0.135),
    c("optimism", 1.83),
    c("injective-protocol", 22.7),
    c("fantom", 0.71),
    c("the-graph", 0.19),
    c("maker", 1_520.0),
    c("aave", 330.0),
    c("theta", 2.1),
    c("thorchain", 4.6),
    c("stacks", 1.62),
    c("bonk", 0.000031),
    c("lido-dao", 1.91),
    c("immutable-x", 1.34),
    c("quant", 118.0),
    c("elrond-egld", 33.5),
    c("the-sandbox", 0.55),
    c("decentraland", 0.49),
    c("axie-infinity", 6.3),
    c("tezos", 1.28),
    c("eos", 0.78),
    c("flow", 0.76),
    c("chiliz", 0.093),
    c("kucoin-token", 10.1),
    c("neo", 13.9),
    c("iota", 0.31),
    c("zcash", 51.0),
    c("dash", 36.4),
    c("pancakeswap", 2.4),
    c("curve-dao-token", 0.88),
    c("synthetix-network-token", 2.1),
    c("compound", 84.0),
    c("1inch", 0.41),
    c("enjin-coin", 0.27),
    c("basic-attention-token", 0.24),
    c("loopring", 0.21),
    c("gala", 0.038),
    c("zilliqa", 0.022),
    c("waves", 1.05),
    c("kusama", 31.0),
    c("qtum", 3.2),
    c("ravencoin", 0.021),
    c("decred", 17.2),
    c("holo", 0.0021),
    c("icon", 0.19),
    c("ontology", 0.22),
    c("horizen", 10.3),
    c("nem", 0.021),
    c("bitcoin-sv", 58.0),
    c("nexo", 1.31),
    c("helium", 5.4),
    c("celo", 0.68),
    c("harmony", 0.021),
    c("ankr", 0.034),
    c("mina", 0.58),
    c("arweave", 18.4),
    c("gnosis-gno", 260.0),
    c("amp", 0.0079),
    c("livepeer", 15.1),
    c("ocean-protocol", 0.69),
    c("band-protocol", 1.12),
    c("kava", 0.47),
    c("golem-network-tokens", 0.43),
    c("sushiswap", 1.35),
    c("yearn-finance", 8_350.0),
    c("uma", 2.7),
    c("balancer", 2.6),
    c("numeraire", 17.9),
    c("storj", 0.47),
    c("siacoin", 0.0061),
    c("digibyte", 0.0113),
    c("nano", 1.18),
    c("lisk", 0.93),
    c("steem", 0.23),
    c("status", 0.039),
    c("augur", 1.4),
    c("0x", 0.44),
    c("bancor", 0.58),
    c("kyber-network", 0.53),
    c("wax", 0.045),
    c("iotex", 0.041),
    c("celer-network", 0.0148),
    c("fetch", 1.36),
    c("singularitynet", 0.63),
    c("wrapped-bitcoin", 97_180.0),
    c("unus-sed-leo", 9.6),
    c("worldcoin-org", 2.15),
    s("multi-collateral-dai", 1.0001),
    s("binance-usd", 0.9997),
    s("trueusd", 0.9991),
    s("first-digital-usd", 0.9994),
    f("united-states-dollar", 1.0),
    f("euro", 1.04),
];

/// Exchange ids with their share of activity.
pub static EXCHANGES: &[(&str, f64)] = &[
    ("binance", 0.34),
    ("coinbase", 0.14),
    ("okx", 0.10),
    ("bybit", 0.09),
    ("kraken", 0.07),
    ("bitfinex", 0.05),
    ("kucoin", 0.05),
    ("gate", 0.04),
    ("huobi", 0.04),
    ("bitstamp", 0.03),
    ("gemini", 0.03),
    ("crypto-com", 0.02),
];

/// Quote assets with their base share of activity.
pub static QUOTES: &[(&str, f64)] = &[
    ("tether", 0.50),
    ("usd-coin", 0.14),
    ("united-states-dollar", 0.12),
    ("bitcoin", 0.08),
    ("ethereum", 0.05),
    ("euro", 0.04),
    ("first-digital-usd", 0.03),
    ("binance-usd", 0.02),
    ("multi-collateral-dai", 0.02),
];

/// Exchanges that mostly quote against fiat rather than tether (a realism tweak to quote weights).
pub fn fiat_first(exchange: &str) -> bool {
    matches!(exchange, "coinbase" | "kraken" | "bitstamp" | "gemini")
}

/// Annualised volatility of the asset at index `i` of [`ASSETS`] (standard deviation of yearly
/// log returns): bitcoin 55%, ethereum 70%, large caps 80%, rising to 120% down the ranks. A
/// stablecoin's is 0 (it is pegged, see [`crate::price::PEG_DEVIATION`]); the euro's 7%; the US
/// dollar's 0.
pub fn annual_volatility(i: usize) -> f64 {
    let Some(a) = ASSETS.get(i) else {
        return 0.0;
    };
    match (a.kind, a.id) {
        (Kind::Crypto, "bitcoin" | "wrapped-bitcoin") => 0.55,
        (Kind::Crypto, "ethereum") => 0.70,
        (Kind::Crypto, _) => 0.8 + 0.4 * (i as f64 / 100.0).min(1.0),
        (Kind::Stable, _) => 0.0,
        (Kind::Fiat, _) if a.usd == 1.0 => 0.0,
        (Kind::Fiat, _) => 0.07,
    }
}

/// Index of an asset id in [`ASSETS`].
pub fn asset_index(id: &str) -> Option<usize> {
    ASSETS.iter().position(|a| a.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_consistent() {
        let bases = ASSETS.iter().filter(|a| a.kind != Kind::Fiat).count();
        assert!(bases >= 100, "{bases} bases");
        let mut ids: Vec<_> = ASSETS.iter().map(|a| a.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), ASSETS.len(), "duplicate asset id");
        for (q, _) in QUOTES {
            assert!(asset_index(q).is_some(), "quote {q} has no price");
        }
        assert!(ASSETS.iter().all(|a| a.usd > 0.0));
    }
}
