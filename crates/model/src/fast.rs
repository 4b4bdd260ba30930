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

use crate::RawFields;

/// Splits a compact CoinCap frame; `None` if `text` is not exactly that layout.
pub(crate) fn scan(text: &str) -> Option<RawFields<'_>> {
    let mut c = Cursor { text, at: 0 };
    c.literal(b"{\"exchange\":")?;
    let exchange = c.string()?;
    c.literal(b",\"base\":")?;
    let base = c.string()?;
    c.literal(b",\"quote\":")?;
    let quote = c.string()?;
    c.literal(b",\"direction\":")?;
    let direction = c.string()?;
    c.literal(b",\"price\":")?;
    let price = c.number()?;
    c.literal(b",\"volume\":")?;
    let volume = c.number()?;
    c.literal(b",\"timestamp\":")?;
    let timestamp = c.number()?;
    c.literal(b",\"priceUsd\":")?;
    let price_usd = c.number()?;
    c.literal(b"}")?;
    c.only_whitespace_left()?;
    Some(RawFields {
        exchange: Some(exchange),
        base: Some(base),
        quote: Some(quote),
        direction: Some(direction),
        price: Some(price),
        volume: Some(volume),
        timestamp: Some(timestamp),
        price_usd: Some(price_usd),
    })
}

/// A position in the frame. Every slice it returns starts and ends at an ASCII byte, so it is a
/// valid `&str` of `text`.
struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.at).copied()
    }

    /// Consumes exactly `lit`.
    fn literal(&mut self, lit: &[u8]) -> Option<()> {
        let rest = self.bytes().get(self.at..)?;
        if !rest.starts_with(lit) {
            return None;
        }
        self.at += lit.len();
        Some(())
    }

    /// A string without escapes or C0 controls, returned with its quotes (as a `RawValue` holds it).
    fn string(&mut self) -> Option<&'a str> {
        let start = self.at;
        if self.peek()? != b'"' {
            return None;
        }
        let body = self.bytes().get(start + 1..)?;
        let len = body
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        if body[len] != b'"' {
            return None;
        }
        self.at = start + 1 + len + 1;
        self.text.get(start..self.at)
    }

    /// A number of the JSON grammar.
    fn number(&mut self) -> Option<&'a str> {
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek()? {
            b'0' => self.at += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            self.some_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            self.some_digits()?;
        }
        self.text.get(start..self.at)
    }

    /// Zero or more ASCII digits.
    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
    }

    /// One or more ASCII digits.
    fn some_digits(&mut self) -> Option<()> {
        let from = self.at;
        self.digits();
        (self.at > from).then_some(())
    }

    /// Nothing but JSON whitespace (what serde_json allows after the value) remains.
    fn only_whitespace_left(&self) -> Option<()> {
        let rest = self.bytes().get(self.at..)?;
        rest.iter()
            .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
            .then_some(())
    }
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
