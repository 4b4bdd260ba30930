//! The CoinCap trade: the one data contract every tradewind crate shares.
//!
//! * [`Trade`] is the wire message exactly (8 fields, types as CoinCap's v2 socket sent them).
//! * [`arrow_schema`] is its columnar form, the schema every micro-batch is decoded into.
//! * [`validate`] checks one raw frame against the model and says precisely why a bad one is bad
//!   ([`Reject`]), so the ingestor and the engine route bad records to the dead-letter topic with the
//!   same reasons.
//!
//! The JSON Schema of the wire message lives in `schemas/coincap-trade.schema.json`; its corpus
//! `schemas/corpus/trades.jsonl` is checked against both (tests/wire_schema.rs, scripts/check_wire_schema.py).

#![warn(missing_docs)]

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::Deserialize;
use serde_json::value::RawValue;

mod fast;

/// Wire field names, in the order CoinCap sent them.
pub const FIELDS: [&str; 8] = [
    "exchange",
    "base",
    "quote",
    "direction",
    "price",
    "volume",
    "timestamp",
    "priceUsd",
];

/// Kafka header that carries the machine-readable reject reason of a dead-letter record.
pub const HEADER_REASON: &str = "tw-reason";
/// Kafka header that carries the human-readable detail of a dead-letter record.
pub const HEADER_DETAIL: &str = "tw-detail";
/// Kafka header naming the component that rejected the record (`ingest` or `engine`).
pub const HEADER_STAGE: &str = "tw-stage";
/// Kafka header with the source topic/partition/offset of a record routed by the engine.
pub const HEADER_ORIGIN: &str = "tw-origin";

/// Taker side of a trade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The taker bought.
    Buy,
    /// The taker sold.
    Sell,
}

impl Direction {
    /// The wire spelling (`buy` / `sell`).
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Buy => "buy",
            Direction::Sell => "sell",
        }
    }
}

/// One CoinCap trade, borrowed from the frame it was parsed from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trade<'a> {
    /// Exchange id as in the socket URL (`binance`).
    pub exchange: &'a str,
    /// CoinCap asset id of the traded asset (`bitcoin`).
    pub base: &'a str,
    /// CoinCap asset id of the quote asset (`tether`).
    pub quote: &'a str,
    /// Taker side.
    pub direction: Direction,
    /// Price in quote units.
    pub price: f64,
    /// Quantity in base units.
    pub volume: f64,
    /// Trade time, Unix epoch milliseconds.
    pub timestamp: i64,
    /// USD price of one base unit at this trade.
    pub price_usd: f64,
}

/// An owned trade, for generators and oracles that build trades rather than parse them.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnedTrade {
    /// Exchange id.
    pub exchange: String,
    /// Base asset id.
    pub base: String,
    /// Quote asset id.
    pub quote: String,
    /// Taker side.
    pub direction: Direction,
    /// Price in quote units.
    pub price: f64,
    /// Quantity in base units.
    pub volume: f64,
    /// Trade time, epoch ms.
    pub timestamp: i64,
    /// USD price of one base unit.
    pub price_usd: f64,
}

impl Trade<'_> {
    /// Copies the borrowed strings into an [`OwnedTrade`].
    pub fn to_owned_trade(&self) -> OwnedTrade {
        OwnedTrade {
            exchange: self.exchange.to_string(),
            base: self.base.to_string(),
            quote: self.quote.to_string(),
            direction: self.direction,
            price: self.price,
            volume: self.volume,
            timestamp: self.timestamp,
            price_usd: self.price_usd,
        }
    }
}

impl OwnedTrade {
    /// Borrows this trade as a [`Trade`].
    pub fn as_trade(&self) -> Trade<'_> {
        Trade {
            exchange: &self.exchange,
            base: &self.base,
            quote: &self.quote,
            direction: self.direction,
            price: self.price,
            volume: self.volume,
            timestamp: self.timestamp,
            price_usd: self.price_usd,
        }
    }
}

/// Appends the compact CoinCap JSON of `t` to `out` (fields in wire order, shortest round-trip floats).
///
/// Asset and exchange ids are CoinCap ids (lower-case ASCII, digits and `-`), written without escaping;
/// ids with characters that need escaping are escaped.
pub fn write_json(t: &Trade<'_>, out: &mut Vec<u8>) {
    fn s(out: &mut Vec<u8>, v: &str) {
        if v.bytes()
            .all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b < 0x7f)
        {
            out.push(b'"');
            out.extend_from_slice(v.as_bytes());
            out.push(b'"');
        } else {
            // serde_json escapes correctly; this branch is never taken for CoinCap ids.
            out.extend_from_slice(serde_json::to_string(v).unwrap_or_default().as_bytes());
        }
    }
    fn f(out: &mut Vec<u8>, v: f64) {
        let mut b = ryu_like(v);
        out.append(&mut b);
    }
    out.extend_from_slice(b"{\"exchange\":");
    s(out, t.exchange);
    out.extend_from_slice(b",\"base\":");
    s(out, t.base);
    out.extend_from_slice(b",\"quote\":");
    s(out, t.quote);
    out.extend_from_slice(b",\"direction\":\"");
    out.extend_from_slice(t.direction.as_str().as_bytes());
    out.extend_from_slice(b"\",\"price\":");
    f(out, t.price);
    out.extend_from_slice(b",\"volume\":");
    f(out, t.volume);
    out.extend_from_slice(b",\"timestamp\":");
    out.extend_from_slice(t.timestamp.to_string().as_bytes());
    out.extend_from_slice(b",\"priceUsd\":");
    f(out, t.price_usd);
    out.push(b'}');
}

/// Shortest representation of a finite f64 that parses back to the same value (Rust's `Display`).
fn ryu_like(v: f64) -> Vec<u8> {
    use std::io::Write;
    let mut b = Vec::with_capacity(24);
    // Display of f64 is the shortest round-trip form and never uses an exponent.
    let _ = write!(b, "{v}");
    b
}

/// Column names of the Arrow trade schema (wire names).
pub mod col {
    /// `exchange` column.
    pub const EXCHANGE: usize = 0;
    /// `base` column.
    pub const BASE: usize = 1;
    /// `quote` column.
    pub const QUOTE: usize = 2;
    /// `direction` column.
    pub const DIRECTION: usize = 3;
    /// `price` column.
    pub const PRICE: usize = 4;
    /// `volume` column.
    pub const VOLUME: usize = 5;
    /// `timestamp` column (Timestamp(ms, UTC)).
    pub const TIMESTAMP: usize = 6;
    /// `priceUsd` column.
    pub const PRICE_USD: usize = 7;
}

/// The Arrow schema of a decoded micro-batch: the 8 wire fields, event time as
/// `Timestamp(Millisecond, "+00:00")` (UTC, spelled as an offset so arrow needs no time-zone database).
///
/// Every field is nullable on purpose: a record with a missing field still decodes, and the engine's
/// vectorized validation routes it to the dead-letter topic with reason `missing_field` instead of
/// failing the whole batch.
pub fn arrow_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("exchange", DataType::Utf8, true),
        Field::new("base", DataType::Utf8, true),
        Field::new("quote", DataType::Utf8, true),
        Field::new("direction", DataType::Utf8, true),
        Field::new("price", DataType::Float64, true),
        Field::new("volume", DataType::Float64, true),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Millisecond, Some("+00:00".into())),
            true,
        ),
        Field::new("priceUsd", DataType::Float64, true),
    ]))
}

/// Why a record was rejected. The label ([`RejectKind::label`]) is a bounded set, safe as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectKind {
    /// Not valid JSON (or not exactly one JSON value).
    Syntax,
    /// Valid JSON, but not an object.
    NotObject,
    /// A required field is absent or null.
    MissingField,
    /// A field has the wrong JSON type (e.g. a string price).
    WrongType,
    /// A number is not finite (overflowed to infinity).
    NonFinite,
    /// Price, volume, priceUsd or timestamp is zero or negative.
    NonPositive,
    /// `direction` is neither `buy` nor `sell`.
    BadDirection,
    /// An id field is empty.
    EmptyId,
    /// The trade is dated further in the future than the tolerance allows.
    FutureTimestamp,
    /// A control frame of the source, e.g. CoinCap's `Unauthorized` text frame.
    SourceError,
    /// An id is longer than [`MAX_ID_CHARS`], holds control characters, or has leading or
    /// trailing spaces.
    InvalidId,
    /// A number is outside the model's range (see [`MAX_AMOUNT`], [`MIN_TIMESTAMP_MS`]).
    OutOfRange,
    /// Valid by the model, but the database refused the row it belongs to (the detail names the
    /// MySQL error): set aside so the rest of the batch commits.
    Storage,
    /// Valid by the model, but a pipeline view's SQL fails on it at run time (the detail names the
    /// view and the error, e.g. a division by zero in its filter): left out of that view only.
    ViewError,
}

impl RejectKind {
    /// Every kind, for pre-registering metric label values.
    pub const ALL: [RejectKind; 14] = [
        RejectKind::Syntax,
        RejectKind::NotObject,
        RejectKind::MissingField,
        RejectKind::WrongType,
        RejectKind::NonFinite,
        RejectKind::NonPositive,
        RejectKind::BadDirection,
        RejectKind::EmptyId,
        RejectKind::FutureTimestamp,
        RejectKind::SourceError,
        RejectKind::InvalidId,
        RejectKind::OutOfRange,
        RejectKind::Storage,
        RejectKind::ViewError,
    ];

    /// Stable snake_case label used in the `tw-reason` header and the `reason` metric label.
    pub fn label(self) -> &'static str {
        match self {
            RejectKind::Syntax => "syntax",
            RejectKind::NotObject => "not_object",
            RejectKind::MissingField => "missing_field",
            RejectKind::WrongType => "wrong_type",
            RejectKind::NonFinite => "non_finite",
            RejectKind::NonPositive => "non_positive",
            RejectKind::BadDirection => "bad_direction",
            RejectKind::EmptyId => "empty_id",
            RejectKind::FutureTimestamp => "future_timestamp",
            RejectKind::SourceError => "source_error",
            RejectKind::InvalidId => "invalid_id",
            RejectKind::OutOfRange => "out_of_range",
            RejectKind::Storage => "storage",
            RejectKind::ViewError => "view_error",
        }
    }
}

/// A rejected record: the reason kind and a one-line human detail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {detail}", kind.label())]
pub struct Reject {
    /// Machine-readable reason.
    pub kind: RejectKind,
    /// Human-readable detail (which field, which value).
    pub detail: String,
}

impl Reject {
    /// Builds a reject.
    pub fn new(kind: RejectKind, detail: impl Into<String>) -> Self {
        Reject {
            kind,
            detail: detail.into(),
        }
    }
}

/// Longest id (exchange, base, quote) in characters: the DDL's `VARCHAR(64)`.
pub const MAX_ID_CHARS: usize = 64;
/// Largest price, volume or priceUsd accepted: sums over any realistic window stay finite and exact
/// enough, and far beyond any real trade (1e15).
pub const MAX_AMOUNT: f64 = 1e15;
/// Earliest trade time accepted (2000-01-01T00:00:00Z, epoch ms): older values are unit mistakes
/// (seconds for milliseconds).
pub const MIN_TIMESTAMP_MS: i64 = 946_684_800_000;

/// Validation policy shared by the ingestor and the engine.
#[derive(Debug, Clone, Copy)]
pub struct Validator {
    /// How far ahead of processing time a trade may be dated, in ms. Older trades are always fine
    /// (captures replay), only the future is bounded: a far-future trade must not move a watermark.
    pub future_tolerance_ms: i64,
}

impl Default for Validator {
    fn default() -> Self {
        Validator {
            future_tolerance_ms: 60_000,
        }
    }
}

#[derive(Deserialize)]
struct RawTrade<'a> {
    #[serde(borrow)]
    exchange: Option<&'a RawValue>,
    #[serde(borrow)]
    base: Option<&'a RawValue>,
    #[serde(borrow)]
    quote: Option<&'a RawValue>,
    #[serde(borrow)]
    direction: Option<&'a RawValue>,
    #[serde(borrow)]
    price: Option<&'a RawValue>,
    #[serde(borrow)]
    volume: Option<&'a RawValue>,
    #[serde(borrow)]
    timestamp: Option<&'a RawValue>,
    #[serde(borrow, rename = "priceUsd")]
    price_usd: Option<&'a RawValue>,
}

/// The raw JSON text of each wire field's value (as serde_json's `RawValue` holds it: no surrounding
/// whitespace, strings with their quotes), `None` when the field is absent (or null).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RawFields<'a> {
    pub(crate) exchange: Option<&'a str>,
    pub(crate) base: Option<&'a str>,
    pub(crate) quote: Option<&'a str>,
    pub(crate) direction: Option<&'a str>,
    pub(crate) price: Option<&'a str>,
    pub(crate) volume: Option<&'a str>,
    pub(crate) timestamp: Option<&'a str>,
    pub(crate) price_usd: Option<&'a str>,
    /// price, volume and priceUsd already parsed from their text (bit for bit what `f64::from_str`
    /// gives), where the fast path could do so on the way; `None`: parse the text.
    pub(crate) parsed: [Option<f64>; 3],
    /// `timestamp` already read from its text as an integer (what `i64::from_str` gives), where the
    /// fast path could do so on the way; `None`: parse the text.
    pub(crate) timestamp_ms: Option<i64>,
    /// The string fields are known to be printable ASCII without escapes (the fast path checked
    /// every byte): the ids need only their length checked.
    pub(crate) plain_ids: bool,
}

impl<'a> From<RawTrade<'a>> for RawFields<'a> {
    fn from(r: RawTrade<'a>) -> Self {
        RawFields {
            exchange: r.exchange.map(RawValue::get),
            base: r.base.map(RawValue::get),
            quote: r.quote.map(RawValue::get),
            direction: r.direction.map(RawValue::get),
            price: r.price.map(RawValue::get),
            volume: r.volume.map(RawValue::get),
            timestamp: r.timestamp.map(RawValue::get),
            price_usd: r.price_usd.map(RawValue::get),
            parsed: [None; 3],
            timestamp_ms: None,
            plain_ids: false,
        }
    }
}

fn present<'a>(v: Option<&'a str>, name: &str) -> Result<&'a str, Reject> {
    match v {
        None | Some("null") => Err(Reject::new(
            RejectKind::MissingField,
            format!("field `{name}` is missing"),
        )),
        Some(s) => Ok(s),
    }
}

/// The id field `name` from its raw text (a JSON string with its quotes). `plain`: the text is
/// known to be printable ASCII without escapes, so only its length is left to check.
fn id<'a>(v: Option<&'a str>, name: &str, plain: bool) -> Result<&'a str, Reject> {
    let raw = present(v, name)?;
    if !raw.starts_with('"') {
        return Err(Reject::new(
            RejectKind::WrongType,
            format!("field `{name}` must be a string, got {}", clip(raw)),
        ));
    }
    let inner = &raw[1..raw.len() - 1];
    if plain {
        return id_length(inner, inner.len(), name);
    }
    // One pass over the bytes finds what the checks below need (the ids are short, but there are
    // three per trade).
    let (mut backslash, mut ascii, mut control) = (false, true, None);
    for &b in inner.as_bytes() {
        backslash |= b == b'\\';
        ascii &= b.is_ascii();
        if control.is_none() && (b < 0x20 || b == 0x7f) {
            control = Some(b);
        }
    }
    if backslash {
        // Escaped ids are not CoinCap ids; refuse rather than allocate.
        return Err(Reject::new(
            RejectKind::WrongType,
            format!("field `{name}` has escapes, not a CoinCap id"),
        ));
    }
    let chars = if ascii {
        // ASCII (every CoinCap id): one char per byte, and the control characters are C0 and DEL.
        match control {
            Some(b) => return Err(control_char(name, char::from(b))),
            None => inner.len(),
        }
    } else {
        let mut chars = 0usize;
        for c in inner.chars() {
            chars += 1;
            if c.is_control() {
                return Err(control_char(name, c));
            }
        }
        chars
    };
    id_length(inner, chars, name)
}

/// `inner`, an id of `chars` characters, unless it is empty or too long.
fn id_length<'a>(inner: &'a str, chars: usize, name: &str) -> Result<&'a str, Reject> {
    if chars == 0 {
        return Err(Reject::new(
            RejectKind::EmptyId,
            format!("field `{name}` is empty"),
        ));
    }
    if chars > MAX_ID_CHARS {
        return Err(Reject::new(
            RejectKind::InvalidId,
            format!("field `{name}` is {chars} characters long (at most {MAX_ID_CHARS})"),
        ));
    }
    // MySQL compares `utf8mb4_bin` with PAD SPACE: "bitcoin " and "bitcoin" would be two groups in
    // the engine and one row in the table. No CoinCap id has surrounding spaces.
    if inner.starts_with(' ') || inner.ends_with(' ') {
        return Err(Reject::new(
            RejectKind::InvalidId,
            format!(
                "field `{name}` has leading or trailing spaces ({:?})",
                clip(inner)
            ),
        ));
    }
    Ok(inner)
}

fn control_char(name: &str, c: char) -> Reject {
    Reject::new(
        RejectKind::InvalidId,
        format!("field `{name}` holds a control character ({:?})", c),
    )
}

/// The amount field `name` from its raw text, or its value `parsed` from that text already.
fn number(v: Option<&str>, parsed: Option<f64>, name: &str) -> Result<f64, Reject> {
    let raw = present(v, name)?;
    let x = match parsed {
        Some(x) => x,
        None => parse_number(raw, name)?,
    };
    if !x.is_finite() {
        return Err(Reject::new(
            RejectKind::NonFinite,
            format!("field `{name}` is not finite: {}", clip(raw)),
        ));
    }
    if x <= 0.0 {
        return Err(Reject::new(
            RejectKind::NonPositive,
            format!("field `{name}` must be > 0, got {}", clip(raw)),
        ));
    }
    if x > MAX_AMOUNT {
        return Err(Reject::new(
            RejectKind::OutOfRange,
            format!("field `{name}` is above {MAX_AMOUNT:e}: {}", clip(raw)),
        ));
    }
    Ok(x)
}

fn parse_number(raw: &str, name: &str) -> Result<f64, Reject> {
    let first = raw.as_bytes()[0];
    if !(first == b'-' || first.is_ascii_digit()) {
        return Err(Reject::new(
            RejectKind::WrongType,
            format!("field `{name}` must be a number, got {}", clip(raw)),
        ));
    }
    raw.parse().map_err(|_| {
        Reject::new(
            RejectKind::WrongType,
            format!("field `{name}` is not a number: {}", clip(raw)),
        )
    })
}

fn clip(s: &str) -> &str {
    match s.char_indices().nth(40) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Parses and validates one raw frame against the model.
///
/// `now_ms` is processing time (epoch ms); trades dated more than `future_tolerance_ms` after it are
/// rejected. Unknown extra fields are ignored (forward compatibility).
///
/// The compact frame [`write_json`] writes (and CoinCap sent: the 8 fields in wire order, no
/// whitespace, ids of printable ASCII without escapes, JSON numbers) is split by a single scan of
/// its bytes, which also computes short amounts (digits up to 2^53, decimal exponent within 22)
/// exactly on the way (bit for bit what `f64::from_str` gives) and reads the integer timestamp;
/// any other frame goes through serde_json ([`validate_slow`]). Both feed the same checks, so the
/// verdict, the reject and every field of the trade are the same either way.
pub fn validate<'a>(frame: &'a [u8], now_ms: i64, policy: &Validator) -> Result<Trade<'a>, Reject> {
    let raw = match fast::scan(frame) {
        Some(raw) => raw,
        None => parse_slow(utf8(frame)?)?,
    };
    check(raw, now_ms, policy)
}

/// [`validate`] without its fast path: every frame parsed by serde_json. The reference the fast path
/// is tested against (and benchmarked against); not for production use.
#[doc(hidden)]
pub fn validate_slow<'a>(
    frame: &'a [u8],
    now_ms: i64,
    policy: &Validator,
) -> Result<Trade<'a>, Reject> {
    let text = utf8(frame)?;
    check(parse_slow(text)?, now_ms, policy)
}

/// Whether [`validate`] splits `frame` with its single-scan fast path (for tests and benches).
#[doc(hidden)]
pub fn takes_fast_path(frame: &[u8]) -> bool {
    fast::scan(frame).is_some()
}

fn utf8(frame: &[u8]) -> Result<&str, Reject> {
    std::str::from_utf8(frame).map_err(|_| Reject::new(RejectKind::Syntax, "frame is not UTF-8"))
}

/// Splits `text` into its fields' raw values with serde_json (any JSON layout).
fn parse_slow(text: &str) -> Result<RawFields<'_>, Reject> {
    let trimmed = text.trim_start();
    if !trimmed.starts_with('{') {
        // Distinguish "valid JSON but not an object" from garbage.
        return Err(match serde_json::from_str::<&RawValue>(text) {
            Ok(_) => Reject::new(
                RejectKind::NotObject,
                format!("expected a JSON object, got {}", clip(trimmed)),
            ),
            Err(e) => Reject::new(RejectKind::Syntax, format!("invalid JSON: {e}")),
        });
    }
    let raw: RawTrade<'_> = serde_json::from_str(text)
        .map_err(|e| Reject::new(RejectKind::Syntax, format!("invalid JSON: {e}")))?;
    Ok(raw.into())
}

/// The model's checks on the fields' raw values, in a fixed order (the first failing one is the
/// reject).
fn check<'a>(raw: RawFields<'a>, now_ms: i64, policy: &Validator) -> Result<Trade<'a>, Reject> {
    let exchange = id(raw.exchange, "exchange", raw.plain_ids)?;
    let base = id(raw.base, "base", raw.plain_ids)?;
    let quote = id(raw.quote, "quote", raw.plain_ids)?;
    let direction = match present(raw.direction, "direction")? {
        "\"buy\"" => Direction::Buy,
        "\"sell\"" => Direction::Sell,
        other if other.starts_with('"') => {
            return Err(Reject::new(
                RejectKind::BadDirection,
                format!("direction must be buy or sell, got {}", clip(other)),
            ))
        }
        other => {
            return Err(Reject::new(
                RejectKind::WrongType,
                format!("field `direction` must be a string, got {}", clip(other)),
            ))
        }
    };
    let [price_x, volume_x, price_usd_x] = raw.parsed;
    let price = number(raw.price, price_x, "price")?;
    let volume = number(raw.volume, volume_x, "volume")?;
    let price_usd = number(raw.price_usd, price_usd_x, "priceUsd")?;
    let timestamp = epoch_ms(raw.timestamp, raw.timestamp_ms)?;
    check_event_time(timestamp, now_ms, policy)?;
    Ok(Trade {
        exchange,
        base,
        quote,
        direction,
        price,
        volume,
        timestamp,
        price_usd,
    })
}

/// The `timestamp` field: integer epoch ms, after [`MIN_TIMESTAMP_MS`]; `parsed` is its value read
/// from the text already, if it was.
fn epoch_ms(v: Option<&str>, parsed: Option<i64>) -> Result<i64, Reject> {
    let ts_raw = present(v, "timestamp")?;
    let timestamp: i64 = match parsed {
        Some(t) => Ok(t),
        None => ts_raw.parse(),
    }
    .map_err(|_| {
        Reject::new(
            RejectKind::WrongType,
            format!(
                "field `timestamp` must be integer epoch ms, got {}",
                clip(ts_raw)
            ),
        )
    })?;
    if timestamp <= 0 {
        return Err(Reject::new(
            RejectKind::NonPositive,
            format!("field `timestamp` must be > 0, got {timestamp}"),
        ));
    }
    if timestamp < MIN_TIMESTAMP_MS {
        return Err(Reject::new(
            RejectKind::OutOfRange,
            format!("field `timestamp` {timestamp} is before 2000-01-01 (epoch ms expected)"),
        ));
    }
    Ok(timestamp)
}

/// Rejects a trade dated beyond `now_ms + future_tolerance_ms`.
pub fn check_event_time(timestamp: i64, now_ms: i64, policy: &Validator) -> Result<(), Reject> {
    if timestamp > now_ms.saturating_add(policy.future_tolerance_ms) {
        return Err(Reject::new(
            RejectKind::FutureTimestamp,
            format!(
                "timestamp {timestamp} is {} ms ahead of processing time (tolerance {} ms)",
                timestamp - now_ms,
                policy.future_tolerance_ms
            ),
        ));
    }
    Ok(())
}

/// Current wall-clock time in epoch milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &[u8] = br#"{"exchange":"binance","base":"bitcoin","quote":"tether","direction":"buy","price":19365.59,"volume":0.07,"timestamp":1666616454283,"priceUsd":19371.064153143514}"#;

    fn kind(frame: &str) -> RejectKind {
        validate(frame.as_bytes(), 1_700_000_000_000, &Validator::default())
            .expect_err("should reject")
            .kind
    }

    #[test]
    fn parses_real_capture_and_round_trips() {
        let t = validate(GOOD, 1_700_000_000_000, &Validator::default()).expect("valid");
        assert_eq!(t.base, "bitcoin");
        assert_eq!(t.direction, Direction::Buy);
        assert_eq!(t.price_usd, 19371.064153143514);
        let mut out = Vec::new();
        write_json(&t, &mut out);
        assert_eq!(out, GOOD);
    }

    #[test]
    fn ascii_ids_are_checked_like_any_other_chars() {
        let g = std::str::from_utf8(GOOD).unwrap();
        let now = 1_700_000_000_000;
        // Every printable-or-not ASCII char JSON lets through unescaped (C0 is a syntax error).
        for b in (0x20u8..=0x7f).filter(|&b| b != b'"' && b != b'\\') {
            let c = char::from(b);
            let frame = g.replace("bitcoin", &format!("bit{c}coin"));
            let got = validate(frame.as_bytes(), now, &Validator::default()).map(|t| t.base);
            if c.is_control() {
                assert_eq!(
                    got.map_err(|r| r.kind),
                    Err(RejectKind::InvalidId),
                    "{b:#x}"
                );
            } else {
                assert_eq!(got, Ok(format!("bit{c}coin").as_str()), "{b:#x}");
            }
        }
        for (n, ok) in [(1, true), (64, true), (65, false)] {
            let frame = g.replace("bitcoin", &"b".repeat(n));
            let got = validate(frame.as_bytes(), now, &Validator::default());
            assert_eq!(got.is_ok(), ok, "{n} chars");
        }
    }

    #[test]
    fn classifies_every_reject() {
        assert_eq!(kind("{not json"), RejectKind::Syntax);
        assert_eq!(kind("[1,2]"), RejectKind::NotObject);
        assert_eq!(kind(r#"{"exchange":"binance"}"#), RejectKind::MissingField);
        let g = std::str::from_utf8(GOOD).unwrap();
        assert_eq!(
            kind(&g.replace("19365.59", "\"19365.59\"")),
            RejectKind::WrongType
        );
        assert_eq!(kind(&g.replace("0.07", "-0.07")), RejectKind::NonPositive);
        assert_eq!(kind(&g.replace("0.07", "1e999")), RejectKind::NonFinite);
        assert_eq!(
            kind(&g.replace("\"buy\"", "\"hold\"")),
            RejectKind::BadDirection
        );
        assert_eq!(kind(&g.replace("\"binance\"", "\"\"")), RejectKind::EmptyId);
        assert_eq!(
            kind(&g.replace("1666616454283", "1666616454283.5")),
            RejectKind::WrongType
        );
        assert_eq!(
            kind(&g.replace("1666616454283", "1900000000000")),
            RejectKind::FutureTimestamp
        );
        assert_eq!(
            kind(&g.replace("\"bitcoin\"", &format!("\"{}\"", "b".repeat(65)))),
            RejectKind::InvalidId
        );
        assert!(
            validate(
                g.replace("\"bitcoin\"", &format!("\"{}\"", "é".repeat(64)))
                    .as_bytes(),
                1_700_000_000_000,
                &Validator::default()
            )
            .is_ok(),
            "64 characters fit VARCHAR(64), however many bytes"
        );
        assert_eq!(
            kind(&g.replace("bitcoin", "bit\u{7f}coin")),
            RejectKind::InvalidId
        );
        assert_eq!(
            kind(&g.replace("bitcoin", "bit\u{85}coin")),
            RejectKind::InvalidId
        );
        assert_eq!(kind(&g.replace("0.07", "1e16")), RejectKind::OutOfRange);
        assert_eq!(kind(&g.replace("0.07", "1e400")), RejectKind::NonFinite);
        assert_eq!(kind(&g.replace("0.07", "NaN")), RejectKind::Syntax);
        assert_eq!(
            kind(&g.replace("1666616454283", "1666616454")),
            RejectKind::OutOfRange
        );
        assert_eq!(kind(&g.replace("0.07", "null")), RejectKind::MissingField);
        assert_eq!(kind(&g.replace("\"tether\"", "[]")), RejectKind::WrongType);
        assert_eq!(
            kind(&g.replace("\"tether\"", "\"te\\\"ther\"")),
            RejectKind::WrongType
        );
        assert_eq!(kind(&g[..40]), RejectKind::Syntax);
    }
}
