//! The validator's fast path: the compact CoinCap frame, split into its fields' raw values by one
//! scan of its bytes instead of serde_json.
//!
//! Accepted exactly: `{"exchange":S,"base":S,"quote":S,"direction":S,"price":N,"volume":N,
//! "timestamp":N,"priceUsd":N}` with no whitespace inside, then only JSON whitespace, where `S` is a
//! string of printable ASCII without backslash (every CoinCap id) and `N` a number of the JSON grammar
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

/// Splits a compact CoinCap frame; `None` if `frame` is not exactly that layout.
///
/// A frame it accepts is printable ASCII throughout (its strings stop at any other byte), so it
/// needs no UTF-8 validation, its ids none of the checks for escapes and control characters, and
/// its timestamp, an integer, is read on the way.
pub(crate) fn scan(b: &[u8]) -> Option<RawFields<'_>> {
    let at = literal(b, 0, b"{\"exchange\":")?;
    let (exchange, at) = string(b, at)?;
    let at = literal(b, at, b",\"base\":")?;
    let (base, at) = string(b, at)?;
    let at = literal(b, at, b",\"quote\":")?;
    let (quote, at) = string(b, at)?;
    let at = literal(b, at, b",\"direction\":")?;
    let (direction, at) = string(b, at)?;
    let at = literal(b, at, b",\"price\":")?;
    let price = number(b, at)?;
    let at = literal(b, price.end, b",\"volume\":")?;
    let volume = number(b, at)?;
    let at = literal(b, volume.end, b",\"timestamp\":")?;
    let timestamp = number(b, at)?;
    let at = literal(b, timestamp.end, b",\"priceUsd\":")?;
    let price_usd = number(b, at)?;
    let at = literal(b, price_usd.end, b"}")?;
    only_whitespace_left(b, at)?;
    let text = ascii(b);
    // Every boundary is at an ASCII byte, so each range is a `&str` of `text`.
    let field = |(from, to): (usize, usize)| text.get(from..to);
    Some(RawFields {
        exchange: Some(field(exchange)?),
        base: Some(field(base)?),
        quote: Some(field(quote)?),
        direction: Some(field(direction)?),
        price: Some(field(price.span)?),
        volume: Some(field(volume.span)?),
        timestamp: Some(field(timestamp.span)?),
        price_usd: Some(field(price_usd.span)?),
        parsed: [price.value, volume.value, price_usd.value],
        timestamp_ms: timestamp.int,
        plain_ids: true,
    })
}

/// `b` as text, for a frame the scan accepted: every byte of it is printable ASCII or JSON
/// whitespace (literals, strings of [`PLAIN`] bytes, number characters, whitespace), so it is
/// valid UTF-8 without a second pass over it.
fn ascii(b: &[u8]) -> &str {
    debug_assert!(b.is_ascii());
    // SAFETY: the caller has scanned every byte of `b` and found only ASCII (see above); ASCII is
    // valid UTF-8.
    unsafe { std::str::from_utf8_unchecked(b) }
}

/// A byte range of the frame.
type Span = (usize, usize);

/// Consumes exactly `lit` at `at`; returns the position after it. Literals of 8 to 16 bytes (seven
/// of the eight keys) are compared as two overlapping 8-byte words: a slice or array comparison of
/// that length calls `memcmp` (4% of decoding, eight calls per frame).
#[inline(always)]
fn literal<const N: usize>(b: &[u8], at: usize, lit: &[u8; N]) -> Option<usize> {
    let end = at.checked_add(N)?;
    let got = b.get(at..end)?;
    let same = if (8..=16).contains(&N) {
        word(got, 0)? == word(lit, 0)? && word(got, N - 8)? == word(lit, N - 8)?
    } else {
        got == lit
    };
    same.then_some(end)
}

/// The 8 bytes of `s` at `at` as one word.
#[inline(always)]
fn word(s: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(s.get(at..at + 8)?.try_into().ok()?))
}

/// The bytes a string of the fast path may hold: printable ASCII but the quote and the backslash.
/// Anything else (escapes, control characters, DEL, non-ASCII) leaves the frame to serde_json and
/// the full checks.
const PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0x20;
    while c < 0x7f {
        t[c] = c != b'"' as usize && c != b'\\' as usize;
        c += 1;
    }
    t
};

/// Eight copies of byte 1 (SWAR: eight bytes of a frame handled as one `u64`).
const ONES: u64 = 0x0101_0101_0101_0101;
/// The high bit of each of the eight bytes.
const HIGHS: u64 = ONES * 0x80;

// The SWAR tests below flag a byte by setting its high bit. Each is exact for the lowest byte it
// flags: a borrow or carry that could make a byte look flagged only ever comes from a lower byte
// that is flagged itself. So `trailing_zeros() / 8` of a flagged word is the first such byte.

/// Bytes below `n` (at most 0x80) flagged.
#[inline(always)]
const fn below(w: u64, n: u8) -> u64 {
    w.wrapping_sub(ONES * n as u64) & !w & HIGHS
}

/// Bytes above `n` (at most 0x7f) flagged.
#[inline(always)]
const fn above(w: u64, n: u8) -> u64 {
    (w.wrapping_add(ONES * (0x7f - n) as u64) | w) & HIGHS
}

/// Bytes equal to `c` flagged.
#[inline(always)]
const fn equal(w: u64, c: u8) -> u64 {
    let v = w ^ (ONES * c as u64);
    v.wrapping_sub(ONES) & !v & HIGHS
}

/// The index of the first byte of `s` that is not [`PLAIN`] (`None` if every byte is), eight bytes
/// at a time: an id is 3 to 20 bytes, a byte-at-a-time table walk was a third of the scan.
#[inline(always)]
fn plain_run(s: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(w) = word(s, i) {
        let flagged = below(w, 0x20) | above(w, 0x7e) | equal(w, b'"') | equal(w, b'\\');
        if flagged != 0 {
            return Some(i + (flagged.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    let rest = s.get(i..)?;
    rest.iter()
        .position(|&c| !PLAIN[usize::from(c)])
        .map(|p| i + p)
}

/// A string of [`PLAIN`] bytes at `at`, spanned with its quotes (as a `RawValue` holds it);
/// returns the span and the position after it.
#[inline(always)]
fn string(b: &[u8], at: usize) -> Option<(Span, usize)> {
    if *b.get(at)? != b'"' {
        return None;
    }
    let body = b.get(at + 1..)?;
    let len = plain_run(body)?;
    if body[len] != b'"' {
        return None;
    }
    let end = at + 1 + len + 1;
    Some(((at, end), end))
}

/// A number of the fast path's grammar, as [`number`] found it.
struct Number {
    /// Its text.
    span: Span,
    /// The position after it.
    end: usize,
    /// Its value, when exactly computable on the way (see [`exact`]).
    value: Option<f64>,
    /// Its value as an integer, when it is written as one (no fraction, no exponent) of at most
    /// 2^53: bit for bit what `i64::from_str` gives for that text.
    int: Option<i64>,
}

/// A number of the JSON grammar at `at`.
#[inline(always)]
fn number(b: &[u8], at: usize) -> Option<Number> {
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
    let (integral, integral_end) = (m, i);
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
    // Written as an integer: no fraction or exponent consumed a digit or a sign.
    // (`overflow` also covers digits above 2^53.)
    let int = (i == integral_end && !integral.overflow).then(|| {
        let v = integral.value as i64;
        if negative {
            -v
        } else {
            v
        }
    });
    Some(Number {
        span: (at, i),
        end: i,
        value,
        int,
    })
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
            let mut chunks = run.chunks_exact(8);
            for c in &mut chunks {
                let eight = word(c, 0).map_or(0, eight_digits);
                self.value = self.value.wrapping_mul(100_000_000).wrapping_add(eight);
            }
            self.value = chunks.remainder().iter().fold(self.value, |v, &d| {
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

/// The position after the ASCII digits at `at` (zero or more), eight bytes at a time.
#[inline(always)]
fn digits(b: &[u8], at: usize) -> usize {
    let mut i = at;
    while let Some(w) = word(b, i) {
        let flagged = below(w, b'0') | above(w, b'9');
        if flagged != 0 {
            return i + (flagged.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    let rest = b.get(i..).unwrap_or_default();
    i + rest
        .iter()
        .position(|c| !c.is_ascii_digit())
        .unwrap_or(rest.len())
}

/// The value of eight ASCII digits read as one little-endian word (the first digit in the lowest
/// byte): three multiplications instead of eight dependent multiply-adds (the SWAR parse of
/// simdjson and fast_float).
#[inline(always)]
fn eight_digits(w: u64) -> u64 {
    let w = w.wrapping_sub(ONES * u64::from(b'0'));
    // Each byte pair: ten times the first digit plus the second, in the pair's low byte.
    let w = w.wrapping_mul(10).wrapping_add(w >> 8);
    const MASK: u64 = 0x0000_00ff_0000_00ff;
    const MUL1: u64 = 100 + (1_000_000 << 32);
    const MUL2: u64 = 1 + (10_000 << 32);
    (w & MASK)
        .wrapping_mul(MUL1)
        .wrapping_add(((w >> 16) & MASK).wrapping_mul(MUL2))
        >> 32
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
        let r = scan(f.as_bytes()).expect("compact frame");
        assert_eq!(r.exchange, Some("\"binance\""));
        assert_eq!(r.direction, Some("\"buy\""));
        assert_eq!(r.price, Some("19365.59"));
        assert_eq!(r.volume, Some("7e-2"));
        assert_eq!(r.timestamp, Some("1666616454283"));
        assert_eq!(r.price_usd, Some("-0.5E+3"));
        assert_eq!(r.timestamp_ms, Some(1666616454283));
        assert!(scan(format!("{f} \n\t\r").as_bytes()).is_some());
    }

    #[test]
    fn swar_helpers_agree_with_byte_at_a_time() {
        let mut seed: u64 = 7;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..200_000 {
            // Bytes drawn mostly from digits and plain ASCII, the rest from anything.
            let mut s = [0u8; 24];
            for c in s.iter_mut() {
                let r = next();
                *c = match r % 4 {
                    0 => b'0' + (r >> 8) as u8 % 10,
                    1 => 0x20 + (r >> 8) as u8 % 0x60,
                    _ => (r >> 8) as u8,
                };
            }
            let len = (next() % 25) as usize;
            let s = &s[..len];
            let plain = s.iter().position(|&c| !super::PLAIN[usize::from(c)]);
            assert_eq!(super::plain_run(s), plain, "{s:?}");
            for at in 0..=len {
                let d = at + s[at..].iter().take_while(|c| c.is_ascii_digit()).count();
                assert_eq!(super::digits(s, at), d, "{s:?} at {at}");
            }
        }
        for _ in 0..200_000 {
            let n = next() % 100_000_000;
            let text = format!("{n:08}");
            let w = u64::from_le_bytes(text.as_bytes().try_into().expect("8 bytes"));
            assert_eq!(super::eight_digits(w), n, "{text}");
        }
        for n in [0, 1, 10, 99_999_999, 12_345_678, 87_654_321] {
            let text = format!("{n:08}");
            let w = u64::from_le_bytes(text.as_bytes().try_into().expect("8 bytes"));
            assert_eq!(super::eight_digits(w), n, "{text}");
        }
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
            ("\"bitcoin\"", "\"bit\u{7f}coin\""),
            ("\"bitcoin\"", "\"bitcoiné\""),
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
            assert!(scan(g.as_bytes()).is_none(), "{g}");
        }
        assert!(scan(&f.as_bytes()[..f.len() - 1]).is_none());
        assert!(scan(b"").is_none());
    }
}
