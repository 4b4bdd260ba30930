//! Normalisers for live exchange feeds that do not speak CoinCap: Binance spot `@trade` and Coinbase
//! `matches`, mapped into the exact CoinCap trade shape ([`tradewind_model::write_json`]), plus the
//! CoinCap prices frame (`{"bitcoin":"6929.82"}`) that feeds the quote-USD [`RateTable`].
//!
//! CoinCap's trade carries asset **ids** (`bitcoin`, `tether`) and a `priceUsd`; exchanges carry ticker
//! symbols and quote-currency prices. [`asset_id`] maps tickers to ids and [`RateTable`] gives the USD
//! value of one quote unit: 1.0 for USD stablecoins, otherwise the last USD price seen for that asset
//! (from stablecoin-quoted trades of the same stream or from a CoinCap prices source).

use std::collections::HashMap;
use std::sync::RwLock;

use serde::Deserialize;
use serde_json::value::RawValue;
use tradewind_model::{write_json, Direction, Reject, RejectKind, Trade};

/// Ticker symbol (upper case) to CoinCap asset id, for the assets exchanges list most.
const SYMBOLS: &[(&str, &str)] = &[
    ("BTC", "bitcoin"),
    ("XBT", "bitcoin"),
    ("ETH", "ethereum"),
    ("USDT", "tether"),
    ("USDC", "usd-coin"),
    ("USD", "united-states-dollar"),
    ("BUSD", "binance-usd"),
    ("TUSD", "trueusd"),
    ("FDUSD", "first-digital-usd"),
    ("USDP", "paxos-standard"),
    ("DAI", "multi-collateral-dai"),
    ("EUR", "euro"),
    ("GBP", "british-pound-sterling"),
    ("BNB", "binance-coin"),
    ("SOL", "solana"),
    ("XRP", "xrp"),
    ("ADA", "cardano"),
    ("DOGE", "dogecoin"),
    ("TRX", "tron"),
    ("TON", "toncoin"),
    ("DOT", "polkadot"),
    ("MATIC", "polygon"),
    ("POL", "polygon-ecosystem-token"),
    ("LTC", "litecoin"),
    ("SHIB", "shiba-inu"),
    ("AVAX", "avalanche"),
    ("LINK", "chainlink"),
    ("BCH", "bitcoin-cash"),
    ("XLM", "stellar"),
    ("UNI", "uniswap"),
    ("ATOM", "cosmos"),
    ("ETC", "ethereum-classic"),
    ("XMR", "monero"),
    ("FIL", "filecoin"),
    ("APT", "aptos"),
    ("ARB", "arbitrum"),
    ("OP", "optimism"),
    ("NEAR", "near-protocol"),
    ("ALGO", "algorand"),
    ("VET", "vechain"),
    ("ICP", "internet-computer"),
    ("AAVE", "aave"),
    ("MKR", "maker"),
    ("GRT", "the-graph"),
    ("SAND", "the-sandbox"),
    ("MANA", "decentraland"),
    ("AXS", "axie-infinity"),
    ("EOS", "eos"),
    ("XTZ", "tezos"),
    ("THETA", "theta"),
    ("FTM", "fantom"),
    ("EGLD", "multiversx"),
    ("CRV", "curve-dao-token"),
    ("COMP", "compound"),
    ("SNX", "synthetix-network-token"),
    ("ZEC", "zcash"),
    ("DASH", "dash"),
    ("ENJ", "enjin-coin"),
    ("CHZ", "chiliz"),
    ("1INCH", "1inch"),
    ("SUSHI", "sushiswap"),
    ("YFI", "yearn-finance"),
    ("BAT", "basic-attention-token"),
    ("ZRX", "0x"),
    ("KSM", "kusama"),
    ("NEO", "neo"),
    ("QTUM", "qtum"),
    ("IOTA", "iota"),
    ("HBAR", "hedera-hashgraph"),
    ("QNT", "quant"),
    ("LDO", "lido-dao"),
    ("STX", "stacks"),
    ("INJ", "injective-protocol"),
    ("SUI", "sui"),
    ("PEPE", "pepe"),
    ("WBTC", "wrapped-bitcoin"),
    ("ENS", "ethereum-name-service"),
    ("GALA", "gala"),
    ("FLOW", "flow"),
    ("MLN", "enzyme"),
    ("PAXG", "pax-gold"),
];

/// Quote tickers Binance appends to its symbols, longest first so `FDUSD` wins over `USD`.
const BINANCE_QUOTES: &[&str] = &[
    "FDUSD", "USDT", "USDC", "BUSD", "TUSD", "USDP", "DAI", "BTC", "ETH", "BNB", "EUR", "GBP",
    "TRY", "BRL", "USD",
];

/// CoinCap ids whose USD value is pinned at 1.0.
const USD_PEGGED: &[&str] = &[
    "united-states-dollar",
    "tether",
    "usd-coin",
    "binance-usd",
    "trueusd",
    "first-digital-usd",
    "paxos-standard",
    "multi-collateral-dai",
];

/// Maps an exchange ticker (any case) to its CoinCap asset id; unknown tickers map to their
/// lower-case form, which is what CoinCap used for most small assets.
pub fn asset_id(ticker: &str) -> std::borrow::Cow<'static, str> {
    SYMBOLS
        .iter()
        .find(|(t, _)| t.eq_ignore_ascii_case(ticker))
        .map(|(_, id)| std::borrow::Cow::Borrowed(*id))
        .unwrap_or_else(|| std::borrow::Cow::Owned(ticker.to_ascii_lowercase()))
}

/// Splits a Binance symbol (`BTCUSDT`, `ethbtc`) into (base ticker, quote ticker), upper case.
pub fn split_binance_symbol(symbol: &str) -> Option<(String, String)> {
    let up = symbol.to_ascii_uppercase();
    BINANCE_QUOTES.iter().find_map(|q| {
        up.strip_suffix(q)
            .filter(|b| !b.is_empty())
            .map(|b| (b.to_string(), (*q).to_string()))
    })
}

/// USD value of one unit of each CoinCap asset id, shared by every source of one ingest run.
///
/// Stablecoins are fixed at 1.0; other assets take the last USD price observed, from a CoinCap prices
/// frame or a stablecoin-quoted trade.
#[derive(Debug, Default)]
pub struct RateTable {
    rates: RwLock<HashMap<String, f64>>,
}

impl RateTable {
    /// An empty table (stablecoins are implicit).
    pub fn new() -> Self {
        Self::default()
    }

    /// The USD value of one unit of `id`, if known.
    pub fn usd(&self, id: &str) -> Option<f64> {
        if USD_PEGGED.contains(&id) {
            return Some(1.0);
        }
        self.rates.read().ok().and_then(|m| m.get(id).copied())
    }

    /// Records the USD price of `id` (ignored unless finite and positive).
    pub fn set(&self, id: &str, usd: f64) {
        if !(usd.is_finite() && usd > 0.0) || USD_PEGGED.contains(&id) {
            return;
        }
        if let Ok(mut m) = self.rates.write() {
            match m.get_mut(id) {
                Some(v) => *v = usd,
                None => {
                    m.insert(id.to_string(), usd);
                }
            }
        }
    }

    /// Number of assets with a learned (non-pegged) rate.
    pub fn len(&self) -> usize {
        self.rates.read().map(|m| m.len()).unwrap_or(0)
    }

    /// True when no rate has been learned yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a normaliser made of one frame.
#[derive(Debug, PartialEq)]
pub enum Normalized {
    /// A CoinCap trade was appended to the output buffer.
    Trade,
    /// A control frame (subscription ack, heartbeat, non-trade event): nothing to produce.
    Ignore,
    /// The frame cannot become a trade; it goes to the dead-letter topic with this reason.
    Reject(Reject),
}

fn parse_pos(s: &str, field: &str) -> Result<f64, Reject> {
    let v: f64 = s.parse().map_err(|_| {
        Reject::new(
            RejectKind::WrongType,
            format!("field `{field}` is not a decimal string"),
        )
    })?;
    if !v.is_finite() {
        return Err(Reject::new(
            RejectKind::NonFinite,
            format!("field `{field}` is not finite"),
        ));
    }
    if v <= 0.0 {
        return Err(Reject::new(
            RejectKind::NonPositive,
            format!("field `{field}` must be > 0"),
        ));
    }
    Ok(v)
}

fn missing(field: &str) -> Reject {
    Reject::new(
        RejectKind::MissingField,
        format!("field `{field}` is missing"),
    )
}

/// Writes the trade and, for stablecoin-quoted trades, learns the base's USD rate.
#[allow(clippy::too_many_arguments)]
fn emit(
    rates: &RateTable,
    exchange: &str,
    base: &str,
    quote: &str,
    direction: Direction,
    price: f64,
    volume: f64,
    timestamp: i64,
    out: &mut Vec<u8>,
) -> Normalized {
    let Some(quote_usd) = rates.usd(quote) else {
        return Normalized::Reject(Reject::new(
            RejectKind::SourceError,
            format!("no USD rate known yet for quote `{quote}`"),
        ));
    };
    let price_usd = price * quote_usd;
    if quote_usd == 1.0 {
        rates.set(base, price_usd);
    }
    let t = Trade {
        exchange,
        base,
        quote,
        direction,
        price,
        volume,
        timestamp,
        price_usd,
    };
    write_json(&t, out);
    Normalized::Trade
}

#[derive(Deserialize)]
struct BinanceFrame<'a> {
    #[serde(borrow, default, rename = "e")]
    event: Option<&'a str>,
    #[serde(borrow, default, rename = "s")]
    symbol: Option<&'a str>,
    #[serde(borrow, default)]
    p: Option<&'a str>,
    #[serde(borrow, default)]
    q: Option<&'a str>,
    #[serde(default, rename = "T")]
    trade_time: Option<i64>,
    #[serde(default)]
    m: Option<bool>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

/// Normalises one Binance spot `@trade` frame (raw or combined-stream wrapped) into CoinCap JSON
/// appended to `out`. `m == true` means the buyer was the maker, so the taker sold.
pub fn binance(frame: &[u8], rates: &RateTable, out: &mut Vec<u8>) -> Normalized {
    let f: BinanceFrame<'_> = match serde_json::from_slice(frame) {
        Ok(f) => f,
        Err(e) => {
            return Normalized::Reject(Reject::new(
                RejectKind::Syntax,
                format!("invalid Binance JSON: {e}"),
            ))
        }
    };
    if let Some(inner) = f.data {
        // Combined stream: {"stream":"btcusdt@trade","data":{...}}.
        return binance(inner.get().as_bytes(), rates, out);
    }
    match f.event {
        Some("trade") => {}
        // Subscription results, other event types: not trades.
        _ => return Normalized::Ignore,
    }
    let fields = (|| {
        let symbol = f.symbol.ok_or_else(|| missing("s"))?;
        let price = parse_pos(f.p.ok_or_else(|| missing("p"))?, "p")?;
        let volume = parse_pos(f.q.ok_or_else(|| missing("q"))?, "q")?;
        let ts = f.trade_time.ok_or_else(|| missing("T"))?;
        let maker = f.m.ok_or_else(|| missing("m"))?;
        let (b, q) = split_binance_symbol(symbol).ok_or_else(|| {
            Reject::new(
                RejectKind::SourceError,
                format!("unknown quote in Binance symbol `{symbol}`"),
            )
        })?;
        Ok::<_, Reject>((b, q, price, volume, ts, maker))
    })();
    match fields {
        Ok((b, q, price, volume, ts, maker)) => {
            let dir = if maker {
                Direction::Sell
            } else {
                Direction::Buy
            };
            emit(
                rates,
                "binance",
                &asset_id(&b),
                &asset_id(&q),
                dir,
                price,
                volume,
                ts,
                out,
            )
        }
        Err(r) => Normalized::Reject(r),
    }
}

#[derive(Deserialize)]
struct CoinbaseFrame<'a> {
    #[serde(borrow, default, rename = "type")]
    kind: Option<&'a str>,
    #[serde(borrow, default)]
    product_id: Option<&'a str>,
    #[serde(borrow, default)]
    price: Option<&'a str>,
    #[serde(borrow, default)]
    size: Option<&'a str>,
    #[serde(borrow, default)]
    side: Option<&'a str>,
    #[serde(borrow, default)]
    time: Option<&'a str>,
    #[serde(borrow, default)]
    message: Option<&'a str>,
    #[serde(borrow, default)]
    reason: Option<&'a str>,
}

/// The Coinbase subscribe message for `products` on the `matches` and `heartbeat` channels.
pub fn coinbase_subscribe(products: &[String]) -> String {
    serde_json::json!({
        "type": "subscribe",
        "product_ids": products,
        "channels": ["matches", "heartbeat"],
    })
    .to_string()
}

/// Normalises one Coinbase `matches` frame into CoinCap JSON appended to `out`. Coinbase's `side` is
/// the **maker** side, so the taker direction is the opposite.
pub fn coinbase(frame: &[u8], rates: &RateTable, out: &mut Vec<u8>) -> Normalized {
    let f: CoinbaseFrame<'_> = match serde_json::from_slice(frame) {
        Ok(f) => f,
        Err(e) => {
            return Normalized::Reject(Reject::new(
                RejectKind::Syntax,
                format!("invalid Coinbase JSON: {e}"),
            ))
        }
    };
    match f.kind {
        Some("match") => {}
        Some("error") => {
            return Normalized::Reject(Reject::new(
                RejectKind::SourceError,
                format!(
                    "Coinbase error: {} {}",
                    f.message.unwrap_or(""),
                    f.reason.unwrap_or("")
                ),
            ))
        }
        // subscriptions, heartbeat, last_match (a replay of an older trade): not new trades.
        _ => return Normalized::Ignore,
    }
    match coinbase_fields(&f) {
        Ok(CoinbaseMatch {
            base,
            quote,
            price,
            volume,
            direction,
            timestamp,
        }) => emit(
            rates,
            "coinbase",
            &asset_id(base),
            &asset_id(quote),
            direction,
            price,
            volume,
            timestamp,
            out,
        ),
        Err(r) => Normalized::Reject(r),
    }
}

/// The trade fields of a Coinbase `match` frame, checked.
struct CoinbaseMatch<'a> {
    base: &'a str,
    quote: &'a str,
    price: f64,
    volume: f64,
    direction: Direction,
    timestamp: i64,
}

fn coinbase_fields<'a>(f: &CoinbaseFrame<'a>) -> Result<CoinbaseMatch<'a>, Reject> {
    let product = f.product_id.ok_or_else(|| missing("product_id"))?;
    let price = parse_pos(f.price.ok_or_else(|| missing("price"))?, "price")?;
    let volume = parse_pos(f.size.ok_or_else(|| missing("size"))?, "size")?;
    // Coinbase's `side` is the maker's; the taker went the other way.
    let direction = match f.side.ok_or_else(|| missing("side"))? {
        "sell" => Direction::Buy,
        "buy" => Direction::Sell,
        other => {
            return Err(Reject::new(
                RejectKind::BadDirection,
                format!("side must be buy or sell, got `{other}`"),
            ))
        }
    };
    let time = f.time.ok_or_else(|| missing("time"))?;
    let timestamp = rfc3339_ms(time).ok_or_else(|| {
        Reject::new(
            RejectKind::WrongType,
            format!("field `time` is not RFC 3339: `{time}`"),
        )
    })?;
    let (base, quote) = product.split_once('-').ok_or_else(|| {
        Reject::new(
            RejectKind::SourceError,
            format!("product_id `{product}` is not BASE-QUOTE"),
        )
    })?;
    Ok(CoinbaseMatch {
        base,
        quote,
        price,
        volume,
        direction,
        timestamp,
    })
}

/// Outcome of a CoinCap prices frame.
#[derive(Debug, PartialEq)]
pub enum PricesOutcome {
    /// This many asset prices were updated in the rate table.
    Updated(usize),
    /// The frame is not a price map (e.g. `Unauthorized`): a source error.
    Reject(Reject),
}

/// Applies a CoinCap prices frame (`{"bitcoin":"6929.82176"}`, prices as strings) to `rates`.
pub fn coincap_prices(frame: &[u8], rates: &RateTable) -> PricesOutcome {
    if let Some(r) = source_error(frame) {
        return PricesOutcome::Reject(r);
    }
    let map: HashMap<&str, &RawValue> = match serde_json::from_slice(frame) {
        Ok(m) => m,
        Err(e) => {
            return PricesOutcome::Reject(Reject::new(
                RejectKind::Syntax,
                format!("invalid prices JSON: {e}"),
            ))
        }
    };
    let mut n = 0;
    for (id, raw) in map {
        let s = raw.get().trim_matches('"');
        if let Ok(v) = s.parse::<f64>() {
            if v.is_finite() && v > 0.0 {
                rates.set(id, v);
                n += 1;
            }
        }
    }
    PricesOutcome::Updated(n)
}

/// Recognises a source's control error text frame (CoinCap sends `Unauthorized ...` on a bad key).
pub fn source_error(frame: &[u8]) -> Option<Reject> {
    let head = frame.trim_ascii_start();
    if head.len() >= 12 && head[..12].eq_ignore_ascii_case(b"unauthorized") {
        let text = String::from_utf8_lossy(&head[..head.len().min(120)]).into_owned();
        return Some(Reject::new(
            RejectKind::SourceError,
            format!("source refused: {text}"),
        ));
    }
    None
}

/// Parses an RFC 3339 timestamp with `Z` or an offset (`2014-11-07T08:19:27.028459Z`) to epoch
/// milliseconds (sub-millisecond digits truncated), with chrono.
pub fn rfc3339_ms(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tradewind_model::{validate, Validator};

    const NOW: i64 = 1_800_000_000_000;

    fn check(out: &[u8]) -> tradewind_model::OwnedTrade {
        validate(out, NOW, &Validator::default())
            .expect("normalised frame validates")
            .to_owned_trade()
    }

    #[test]
    fn binance_reference_sample() {
        // Exact sample from REFERENCE.md: BNBBTC, buyer is maker => taker sold.
        let frame = br#"{"e":"trade","E":1672515782136,"s":"BNBBTC","t":12345,"p":"0.001","q":"100","T":1672515782136,"m":true,"M":true}"#;
        let rates = RateTable::new();
        let mut out = Vec::new();
        // No USD rate for bitcoin yet: cannot fill priceUsd.
        match binance(frame, &rates, &mut out) {
            Normalized::Reject(r) => assert_eq!(r.kind, RejectKind::SourceError),
            other => panic!("expected reject, got {other:?}"),
        }
        assert!(out.is_empty());
        // A BTCUSDT trade teaches the bitcoin rate.
        let btc = br#"{"e":"trade","E":1672515782136,"s":"BTCUSDT","t":1,"p":"20000.5","q":"0.25","T":1672515782100,"m":false,"M":true}"#;
        assert_eq!(binance(btc, &rates, &mut out), Normalized::Trade);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"exchange":"binance","base":"bitcoin","quote":"tether","direction":"buy","price":20000.5,"volume":0.25,"timestamp":1672515782100,"priceUsd":20000.5}"#
        );
        out.clear();
        assert_eq!(binance(frame, &rates, &mut out), Normalized::Trade);
        let t = check(&out);
        assert_eq!(t.exchange, "binance");
        assert_eq!(t.base, "binance-coin");
        assert_eq!(t.quote, "bitcoin");
        assert_eq!(t.direction, Direction::Sell);
        assert_eq!(t.price, 0.001);
        assert_eq!(t.volume, 100.0);
        assert_eq!(t.timestamp, 1672515782136);
        assert_eq!(t.price_usd, 0.001 * 20000.5);
    }

    #[test]
    fn binance_combined_stream_and_control() {
        let rates = RateTable::new();
        let mut out = Vec::new();
        let wrapped = br#"{"stream":"ethusdc@trade","data":{"e":"trade","E":1,"s":"ETHUSDC","t":2,"p":"1500","q":"2","T":1672515782136,"m":true,"M":true}}"#;
        assert_eq!(binance(wrapped, &rates, &mut out), Normalized::Trade);
        let t = check(&out);
        assert_eq!(
            (t.base.as_str(), t.quote.as_str()),
            ("ethereum", "usd-coin")
        );
        assert_eq!(t.price_usd, 1500.0);
        assert_eq!(rates.usd("ethereum"), Some(1500.0));
        out.clear();
        assert_eq!(
            binance(br#"{"result":null,"id":1}"#, &rates, &mut out),
            Normalized::Ignore
        );
        let bad = br#"{"e":"trade","s":"BTCUSDT","p":"-1","q":"1","T":1,"m":true}"#;
        match binance(bad, &rates, &mut out) {
            Normalized::Reject(r) => assert_eq!(r.kind, RejectKind::NonPositive),
            other => panic!("{other:?}"),
        }
        match binance(b"{oops", &rates, &mut out) {
            Normalized::Reject(r) => assert_eq!(r.kind, RejectKind::Syntax),
            other => panic!("{other:?}"),
        }
        assert!(out.is_empty());
    }

    #[test]
    fn coinbase_reference_sample() {
        // Exact sample from REFERENCE.md (the trailing `...` fields omitted): maker sold => taker bought.
        let frame = br#"{"type":"match","trade_id":10,"sequence":50,"time":"2014-11-07T08:19:27.028459Z","product_id":"BTC-USD","size":"5.23512","price":"400.23","side":"sell"}"#;
        let rates = RateTable::new();
        let mut out = Vec::new();
        assert_eq!(coinbase(frame, &rates, &mut out), Normalized::Trade);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"exchange":"coinbase","base":"bitcoin","quote":"united-states-dollar","direction":"buy","price":400.23,"volume":5.23512,"timestamp":1415348367028,"priceUsd":400.23}"#
        );
        check(&out);
        out.clear();
        let sub = coinbase_subscribe(&["BTC-USD".into()]);
        assert_eq!(
            sub,
            r#"{"channels":["matches","heartbeat"],"product_ids":["BTC-USD"],"type":"subscribe"}"#
        );
        for ignored in [
            &br#"{"type":"subscriptions","channels":[]}"#[..],
            br#"{"type":"heartbeat","sequence":1}"#,
            br#"{"type":"last_match","product_id":"BTC-USD"}"#,
        ] {
            assert_eq!(coinbase(ignored, &rates, &mut out), Normalized::Ignore);
        }
        match coinbase(
            br#"{"type":"error","message":"Failed to subscribe","reason":"bad product"}"#,
            &rates,
            &mut out,
        ) {
            Normalized::Reject(r) => assert_eq!(r.kind, RejectKind::SourceError),
            other => panic!("{other:?}"),
        }
        // ETH-BTC is quoted in bitcoin, whose rate the BTC-USD trade taught.
        let eth = br#"{"type":"match","time":"2014-11-07T08:19:27Z","product_id":"ETH-BTC","size":"1","price":"0.05","side":"buy"}"#;
        assert_eq!(coinbase(eth, &rates, &mut out), Normalized::Trade);
        let t = check(&out);
        assert_eq!(t.direction, Direction::Sell);
        assert_eq!(t.timestamp, 1415348367000);
        assert!((t.price_usd - 0.05 * 400.23).abs() < 1e-9);
    }

    #[test]
    fn prices_frames_and_unauthorized() {
        let rates = RateTable::new();
        assert_eq!(
            coincap_prices(
                br#"{"bitcoin":"6929.82176","ethereum":"404.97745"}"#,
                &rates
            ),
            PricesOutcome::Updated(2)
        );
        assert_eq!(rates.usd("bitcoin"), Some(6929.82176));
        assert_eq!(rates.usd("tether"), Some(1.0));
        match coincap_prices(b"Unauthorized: invalid api key", &rates) {
            PricesOutcome::Reject(r) => assert_eq!(r.kind, RejectKind::SourceError),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rfc3339() {
        assert_eq!(rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            rfc3339_ms("2014-11-07T08:19:27.028459Z"),
            Some(1_415_348_367_028)
        );
        assert_eq!(
            rfc3339_ms("2014-11-07T09:19:27.5+01:00"),
            Some(1_415_348_367_500)
        );
        assert_eq!(
            rfc3339_ms("2024-02-29T23:59:59.999Z"),
            Some(1_709_251_199_999)
        );
        assert_eq!(
            rfc3339_ms("2014-11-07t08:19:27-00:30"),
            Some(1_415_350_167_000)
        );
        assert_eq!(rfc3339_ms("2014-11-07 08:19"), None);
        assert_eq!(rfc3339_ms("2014-11-07T08:19:27"), None);
        assert_eq!(rfc3339_ms("2023-02-29T00:00:00Z"), None);
        assert_eq!(rfc3339_ms("2014-13-07T08:19:27Z"), None);
    }

    #[test]
    fn symbols() {
        assert_eq!(
            split_binance_symbol("btcfdusd"),
            Some(("BTC".into(), "FDUSD".into()))
        );
        assert_eq!(
            split_binance_symbol("ETHBTC"),
            Some(("ETH".into(), "BTC".into()))
        );
        assert_eq!(split_binance_symbol("USDT"), None);
        assert_eq!(asset_id("usdc"), "usd-coin");
        assert_eq!(asset_id("FOO"), "foo");
    }
}
