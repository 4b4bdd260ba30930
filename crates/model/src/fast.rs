//! The validator's fast path: the compact CoinCap frame, split into its fields' raw values by one
//! scan of its bytes instead of serde_json.
//!
//! Accepted exactly: `{"exchange":S,"base":S,"quote":S,"direction":S,"price":N,"volume":N,
//! "timestamp":N,"priceUsd":N}` with no whitespace inside, then only JSON whitespace, where `S` is a
//! string without backslash or C0 control byte and `N` a number of the JSON grammar
//! (`-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`). That is the layout [`crate::write_json`]
//! writes and CoinCap's socket sent. serde_json parses every such frame, and the raw values it
//! borrows are the very slices returned here, so the checks that follow give the same verdict.
//! Anything else (escapes, whitespace inside, other key order, extra or missing keys, `null`,
//! other types, numbers outside the grammar, trailing bytes) returns `None`: the caller falls back
//! to serde_json, which gives the reject (or accepts the frame) as it always did.
//!
//! On the way, amounts whose digits fit 2^53 and whose decimal exponent is within 22 are computed
//! with one exact multiplication or division (see [`exact`]), which saves parsing their text again.

use crate::RawFields;

/// Splits a compact CoinCap frame; `None` if `text` is not exactly that layout.
pub(crate) fn scan(text: &str) -> Option<RawFields<'_>> {
    let b = text.as_bytes();
    let at = literal(b, 0, b"{\"exchange\":")?;
    let (exchange, at) = string(b, at)?;
    let at = literal(b, at, b",\"base\":")?;
    let (base, at) = string(b, at)?;
    let at = literal(b, at, b",\"quote\":")?;
    let (quote, at) = string(b, at)?;
    let at = literal(b, at, b",\"direction\":")?;
    let (direction, at) = string(b, at)?;
    let at = literal(b, at, b",\"price\":")?;
    let (price, at, price_x) = number(b, at)?;
    let at = literal(b, at, b",\"volume\":")?;
    let (volume, at, volume_x) = number(b, at)?;
    let at = literal(b, at, b",\"timestamp\":")?;
    let (timestamp, at, _) = number(b, at)?;
    let at = literal(b, at, b",\"priceUsd\":")?;
    let (price_usd, at, price_usd_x) = number(b, at)?;
    let at = literal(b, at, b"}")?;
    only_whitespace_left(b, at)?;
    // Every boundary is at an ASCII byte, so each range is a `&str` of `text`.
    let field = |(from, to): (usize, usize)| text.get(from..to);
    Some(RawFields {
        exchange: Some(field(exchange)?),
        base: Some(field(base)?),
        quote: Some(field(quote)?),
        direction: Some(field(direction)?),
        price: Some(field(price)?),
        volume: Some(field(volume)?),
        timestamp: Some(field(timestamp)?),
        price_usd: Some(field(price_usd)?),
        parsed: [price_x, volume_x, price_usd_x],
    })
}

/// A byte range of the frame.
type Span = (usize, usize);

/// Consumes exactly `lit` at `at`; returns the position after it. The literal's length is a
/// constant, so the comparison is inlined (a slice comparison of unknown length calls `memcmp`:
/// 3% of the engine's CPU, eight calls per frame).
#[inline(always)]
fn literal<const N: usize>(b: &[u8], at: usize, lit: &[u8; N]) -> Option<usize> {
    let end = at.checked_add(N)?;
    let got: &[u8; N] = b.get(at..end)?.try_into().ok()?;
    (got == lit).then_some(end)
}

/// A string without escapes or C0 controls at `at`, spanned with its quotes (as a `RawValue`
/// holds it); returns the span and the position after it.
#[inline(always)]
fn string(b: &[u8], at: usize) -> Option<(Span, usize)> {
    if *b.get(at)? != b'"' {
        return None;
    }
    let body = b.get(at + 1..)?;
    let len = body
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
    if body[len] != b'"' {
        return None;
    }
    let end = at + 1 + len + 1;
    Some(((at, end), end))
}

/// A number of the JSON grammar at `at`; returns its span, the position after it, and its value
/// when it is exactly computable on the way (see [`exact`]).
#[inline(always)]
fn number(b: &[u8], at: usize) -> Option<(Span, usize, Option<f64>)> {
    let mut i = at;
    let negative = b.get(i) == Some(&b'-');
    if negative {
        i += 1;
    }
    let mut m = Mantissa::default();
    match *b.get(i)? {
        b'0' => i += 1,
        b'1'..=b'9' => i = m.digits(b, i),
        _ => return None,
    }
    let mut exp10: i64 = 0;
    if b.get(i) == Some(&b'.') {
        let from = i + 1;
        i = m.digits(b, from);
        if i == from {
            return None;
        }
        exp10 = -((i - from) as i64);
    }
    if let Some(b'e' | b'E') = b.get(i) {
        i += 1;
        let sign = match b.get(i) {
            Some(b'-') => -1,
            Some(b'+') => 1,
            _ => 0,
        };
        if sign != 0 {
            i += 1;
        }
        let from = i;
        i = digits(b, from);
        if i == from {
            return None;
        }
        // Exponents past 4 digits never take the exact path: cap before they could overflow.
        let e = b[from..i]
            .iter()
            .take(5)
            .fold(0i64, |e, d| e * 10 + i64::from(d - b'0'));
        exp10 += if sign < 0 { -e } else { e };
    }
    let value = exact(m, exp10).map(|x| if negative { -x } else { x });
    Some(((at, i), i, value))
}

/// The digits of a number as an integer, while it fits exactly in an f64.
#[derive(Default, Clone, Copy)]
struct Mantissa {
    value: u64,
    /// Digits appended so far.
    count: usize,
    /// `value` is not known to be the number's digits, or is above 2^53: no exact value.
    overflow: bool,
}

impl Mantissa {
    /// Appends the ASCII digits at `at`; returns the position after them.
    #[inline(always)]
    fn digits(&mut self, b: &[u8], at: usize) -> usize {
        let end = digits(b, at);
        let run = &b[at..end];
        self.count += run.len();
        if self.count > 19 {
            // Not necessarily inexact (leading zeros count too), but u64 holds any 19 digits.
            self.overflow = true;
        } else {
            // At most 19 digits in all: below 10^19, no wrap-around.
            self.value = run.iter().fold(self.value, |v, &d| {
                v.wrapping_mul(10).wrapping_add(u64::from(d - b'0'))
            });
            self.overflow |= self.value > MAX_EXACT;
        }
        end
    }
}

/// 2^53: every integer up to it is an exact f64.
const MAX_EXACT: u64 = 1 << 53;

/// Powers of ten that are exact f64s.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// `m * 10^exp10` when one IEEE multiplication or division of exact operands gives it (Clinger's
/// fast path, the one `f64::from_str` takes first): that single operation is correctly rounded,
/// so the result has the bits `f64::from_str` returns. `None` otherwise (the caller parses the
/// text).
#[inline(always)]
fn exact(m: Mantissa, exp10: i64) -> Option<f64> {
    if m.overflow || m.value > MAX_EXACT {
        return None;
    }
    let x = m.value as f64;
    if m.value == 0 {
        return Some(0.0);
    }
    match exp10 {
        0..=22 => Some(x * POW10[exp10 as usize]),
        -22..=-1 => Some(x / POW10[(-exp10) as usize]),
        _ => None,
    }
}

/// The position after the ASCII digits at `at` (zero or more).
#[inline(always)]
fn digits(b: &[u8], at: usize) -> usize {
    let rest = b.get(at..).unwrap_or_default();
    at + rest
        .iter()
        .position(|c| !c.is_ascii_digit())
        .unwrap_or(rest.len())
}

/// Nothing but JSON whitespace (what serde_json allows after the value) from `at` on.
fn only_whitespace_left(b: &[u8], at: usize) -> Option<()> {
    b.get(at..)?
        .iter()
        .all(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
        .then_some(())
}

#[cfg(test)]
mod tests {
    use super::scan;

    #[test]
    fn splits_the_compact_frame_into_raw_values() {
        let f = r#"{"exchange":"binance","base":"bitcoin","quote":"tether","direction":"buy","price":19365.59,"volume":7e-2,"timestamp":1666616454283,"priceUsd":-0.5E+3}"#;
        let r = scan(f).expect("compact frame");
        assert_eq!(r.exchange, Some("\"binance\""));
        assert_eq!(r.direction, Some("\"buy\""));
        assert_eq!(r.price, Some("19365.59"));
        assert_eq!(r.volume, Some("7e-2"));
        assert_eq!(r.timestamp, Some("1666616454283"));
        assert_eq!(r.price_usd, Some("-0.5E+3"));
        assert!(scan(&format!("{f} \n\t\r")).is_some());
    }

    #[test]
    fn leaves_every_other_layout_to_serde() {
        let f = r#"{"exchange":"binance","base":"bitcoin","quote":"tether","direction":"buy","price":19365.59,"volume":0.07,"timestamp":1666616454283,"priceUsd":19371.06}"#;
        for (from, to) in [
            ("19365.59", "019365.59"),
            ("19365.59", "+19365.59"),
            ("19365.59", ".5"),
            ("19365.59", "5."),
            ("19365.59", "1e"),
            ("19365.59", "-"),
            ("19365.59", "NaN"),
            ("19365.59", "inf"),
            ("19365.59", "null"),
            ("19365.59", "\"1\""),
            ("\"bitcoin\"", "\"bit\\u0063oin\""),
            ("\"bitcoin\"", "\"bit\u{1}coin\""),
            ("\"bitcoin\"", "null"),
            ("\"bitcoin\"", "7"),
            ("\"base\":", "\"base\" :"),
            ("\"base\":", "\"base\": "),
            (",\"base\"", ", \"base\""),
            ("{", " {"),
            ("}", ",\"x\":1}"),
            ("}", "} x"),
            ("}", "}\u{a0}"),
            ("\"priceUsd\"", "\"priceusd\""),
        ] {
            let g = f.replacen(from, to, 1);
            assert!(scan(&g).is_none(), "{g}");
        }
        assert!(scan(&f[..f.len() - 1]).is_none());
        assert!(scan("").is_none());
    }
}
