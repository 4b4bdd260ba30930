//! The validator's fast path changes no verdict: for frames built from random field values (ids
//! with any characters, raw or escaped; numbers of random f64s and integers written many ways,
//! within and outside the JSON grammar; random key orders, extra and duplicate keys; whitespace
//! anywhere; single-byte corruption, non-UTF-8 included), [`validate`] returns exactly what
//! [`validate_slow`] (serde_json alone) returns: the same reject (kind and detail), or the same
//! trade down to the bits of every float and the very slices of the frame. Frames of the compact
//! CoinCap layout do take the fast path, and the frames [`write_json`] writes round-trip.

use proptest::prelude::*;
use proptest::sample::select;
use tradewind_model::{
    takes_fast_path, validate, validate_slow, write_json, Direction, OwnedTrade, Reject, Trade,
    Validator, FIELDS, MAX_AMOUNT, MIN_TIMESTAMP_MS,
};

/// Processing time of the checks (2023-11-14).
const NOW_MS: i64 = 1_700_000_000_000;

// ---- field values -------------------------------------------------------------------------------

/// Characters of ids: mostly CoinCap-like, plus quotes, backslashes, C0/DEL/C1 controls, non-ASCII
/// and whitespace, plus any char at all.
fn id_char() -> impl Strategy<Value = char> {
    prop_oneof![
        8 => prop::char::range('a', 'z'),
        2 => prop::char::range('0', '9'),
        1 => Just('-'),
        2 => select(vec![
            '"', '\\', '/', ' ', '\t', '\n', '\u{0}', '\u{1f}', '\u{7f}', '\u{80}', '\u{85}',
            '\u{9f}', '\u{a0}', 'é', 'ß', '中', '😀', '\u{2028}', '\u{feff}', '\u{fffd}',
        ]),
        1 => any::<char>(),
    ]
}

/// An id's text: lengths around the 64-character limit included.
fn id_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::collection::vec(id_char(), 0..12),
        1 => prop::collection::vec(id_char(), 60..70),
        1 => (prop::char::range('a', 'z'), 62usize..67).prop_map(|(c, n)| vec![c; n]),
    ]
    .prop_map(String::from_iter)
}

/// `s` as a JSON string value: verbatim between quotes (invalid JSON if it holds `"`, `\` or a C0
/// control), escaped as serde_json escapes, or with every non-alphanumeric char as `\uXXXX`.
fn string_value(s: String, how: u8) -> String {
    match how % 4 {
        0 | 1 => format!("\"{s}\""),
        2 => serde_json::to_string(&s).unwrap_or_default(),
        _ => {
            let mut out = String::from("\"");
            for c in s.chars() {
                if c.is_ascii_alphanumeric() {
                    out.push(c);
                } else {
                    let mut units = [0u16; 2];
                    for u in c.encode_utf16(&mut units) {
                        out.push_str(&format!("\\u{u:04x}"));
                    }
                }
            }
            out.push('"');
            out
        }
    }
}

/// Random floats: any bit pattern, and the ranges and values the model's limits are about.
fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        2 => any::<f64>(),
        4 => 0.0..1e6f64,
        1 => 1e-12..1e-3f64,
        1 => 1e14..2e15f64,
        1 => -1e6..0.0f64,
        1 => select(vec![
            0.0, -0.0, 1.0, MAX_AMOUNT, 1e15 + 0.125, f64::MIN_POSITIVE, 5e-324, 1e308, f64::MAX,
            0.1, 19371.064153143514,
        ]),
    ]
}

/// Numbers of few digits, with and without exponent: the ones parsed exactly on the way.
fn short_number() -> impl Strategy<Value = String> + Clone {
    let mantissa = prop_oneof![1u64..1000, 1u64..10_000_000, Just(9_007_199_254_740_992u64)];
    let e = select(vec!["e", "E", "e+", "E-", "e-", "e0", "e-0"]);
    prop_oneof![
        (0.0..1e6f64, 0usize..10).prop_map(|(x, p)| format!("{x:.p$}")),
        (mantissa.clone(), e, -30i32..30).prop_map(|(m, e, x)| format!("{m}{e}{}", x.abs())),
        // m / 10^p written out: "12.345", "0.0012345".
        (mantissa, 0usize..25).prop_map(|(m, p)| {
            let digits = m.to_string();
            match p {
                0 => digits,
                p if p < digits.len() => {
                    let (int, frac) = digits.split_at(digits.len() - p);
                    format!("{int}.{frac}")
                }
                p => format!("0.{}{digits}", "0".repeat(p - digits.len())),
            }
        }),
    ]
}

/// A number written the ways producers write numbers (Display, exponent, Debug, fixed precision,
/// integers, huge digit runs), sometimes decorated outside the JSON grammar.
fn number_text() -> impl Strategy<Value = String> {
    let plain = prop_oneof![
        4 => float().prop_map(|x| format!("{x}")),
        2 => float().prop_map(|x| format!("{x:e}")),
        1 => float().prop_map(|x| format!("{x:E}")),
        2 => float().prop_map(|x| format!("{x:?}")),
        1 => (float(), 0usize..20).prop_map(|(x, p)| format!("{x:.p$}")),
        2 => any::<i64>().prop_map(|i| i.to_string()),
        1 => (1usize..400).prop_map(|n| "9".repeat(n)),
        1 => (1usize..30).prop_map(|n| format!("0.{}1", "0".repeat(n))),
        3 => short_number(),
    ];
    let odd = select(vec![
        "-0",
        "0",
        "1e5",
        "1E+05",
        "1e-400",
        "1e999",
        "-1e999",
        "1e400",
        ".5",
        "5.",
        "00",
        "01",
        "-01",
        "+1",
        "-",
        "--1",
        "1e",
        "1e+",
        "0x10",
        "1_000",
        "Infinity",
        "inf",
        "NaN",
        "nan",
        "1.0",
        "1.5e2",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775808",
        "\u{661}",
        "1\u{0}",
        "0.0",
        "0e0",
        "1.",
        "1.e3",
        "1e3.5",
    ])
    .prop_map(str::to_string);
    let decorated = (
        plain.clone(),
        select(vec!["0", "+", "-", "00", ".", " "]),
        any::<bool>(),
    )
        .prop_map(|(s, d, front)| {
            if front {
                format!("{d}{s}")
            } else {
                format!("{s}{d}")
            }
        });
    prop_oneof![8 => plain, 1 => odd, 1 => decorated]
}

/// Epoch-ms timestamps around the model's bounds, written as integers or otherwise.
fn timestamp_text() -> impl Strategy<Value = String> {
    let ts = prop_oneof![
        4 => MIN_TIMESTAMP_MS - 5..NOW_MS + 120_000,
        1 => MIN_TIMESTAMP_MS - 5..MIN_TIMESTAMP_MS + 5,
        1 => NOW_MS + 59_990..NOW_MS + 60_010,
        1 => any::<i64>(),
        1 => select(vec![0, -1, 1, i64::MAX, i64::MIN]),
    ];
    prop_oneof![
        6 => ts.clone().prop_map(|t| t.to_string()),
        1 => ts.clone().prop_map(|t| format!("{t}.0")),
        1 => ts.prop_map(|t| format!("{:e}", t as f64)),
        1 => number_text(),
    ]
}

/// A value of another JSON type than the field's (or not JSON at all).
fn other_value() -> impl Strategy<Value = String> {
    select(vec![
        "null",
        "true",
        "false",
        "[]",
        "{}",
        "\"1.5\"",
        "\"\"",
        "[1]",
        "{\"a\":1}",
        "nul",
        "x",
    ])
    .prop_map(str::to_string)
}

fn id_value() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => (id_text(), any::<u8>()).prop_map(|(s, how)| string_value(s, how)),
        1 => number_text(),
        1 => other_value(),
    ]
}

fn direction_value() -> impl Strategy<Value = String> {
    let word = prop_oneof![
        6 => select(vec!["buy", "sell"]).prop_map(str::to_string),
        1 => select(vec!["hold", "Buy", "SELL", "buy ", ""]).prop_map(str::to_string),
        1 => id_text(),
    ];
    prop_oneof![
        8 => (word, any::<u8>()).prop_map(|(s, how)| string_value(s, how)),
        1 => number_text(),
        1 => other_value(),
    ]
}

fn number_value() -> impl Strategy<Value = String> {
    prop_oneof![8 => number_text(), 1 => other_value()]
}

// ---- frames -------------------------------------------------------------------------------------

/// One frame's ingredients.
#[derive(Debug, Clone)]
struct Spec {
    /// The 8 fields' values in wire order (`None`: absent).
    values: Vec<Option<String>>,
    /// A permutation of the entries (`None`: wire order).
    order: Option<Vec<usize>>,
    /// Extra entries (unknown, duplicate or escaped keys) and where they go.
    extra: Vec<(String, String, usize)>,
    /// Whitespace at each token boundary (`None`: compact).
    spaces: Option<Vec<String>>,
    /// What follows the closing brace.
    tail: String,
}

fn whitespace() -> impl Strategy<Value = String> {
    let c = select(vec![
        ' ', '\t', '\n', '\r', '\u{a0}', '\u{85}', '\u{feff}', '\u{b}', '\u{c}',
    ]);
    prop_oneof![
        6 => Just(String::new()),
        1 => prop::collection::vec(c, 1..3).prop_map(String::from_iter),
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    let field = |v: BoxedStrategy<String>| prop::option::weighted(0.97, v);
    let values = (
        [id_value().boxed(), id_value().boxed(), id_value().boxed()].map(field),
        field(direction_value().boxed()),
        [number_value().boxed(), number_value().boxed()].map(field),
        field(timestamp_text().boxed()),
        field(number_value().boxed()),
    )
        .prop_map(|(ids, d, pv, t, pu)| {
            let [e, b, q] = ids;
            let [p, v] = pv;
            vec![e, b, q, d, p, v, t, pu]
        });
    let key = select(vec![
        "x",
        "price",
        "Base",
        "exchange",
        " base",
        "pric\\u0065",
        "priceUsd",
        "",
        "timestamp",
    ]);
    let extra = prop::collection::vec(
        (key.prop_map(str::to_string), number_value(), 0usize..10),
        0..2,
    );
    let extra = prop_oneof![4 => Just(Vec::new()), 1 => extra];
    let order = prop::option::weighted(0.2, Just((0..8).collect::<Vec<_>>()).prop_shuffle());
    let spaces = prop::option::weighted(0.2, prop::collection::vec(whitespace(), 48));
    let tail = prop_oneof![
        8 => Just(String::new()),
        2 => whitespace(),
        1 => select(vec!["x", "}", ",", "{}", "\u{0}", " 1"]).prop_map(str::to_string),
    ];
    (values, order, extra, spaces, tail).prop_map(|(values, order, extra, spaces, tail)| Spec {
        values,
        order,
        extra,
        spaces,
        tail,
    })
}

impl Spec {
    /// The frame's text.
    fn render(&self) -> String {
        let mut entries: Vec<(String, String)> = Vec::new();
        let order = self.order.clone().unwrap_or_else(|| (0..8).collect());
        for i in order {
            if let Some(v) = &self.values[i] {
                entries.push((format!("\"{}\"", FIELDS[i]), v.clone()));
            }
        }
        for (k, v, at) in &self.extra {
            entries.insert(at % (entries.len() + 1), (format!("\"{k}\""), v.clone()));
        }
        let mut ws = self.spaces.iter().flatten().cycle();
        let mut sp = || match self.spaces {
            Some(_) => ws.next().cloned().unwrap_or_default(),
            None => String::new(),
        };
        let mut out = format!("{}{{", sp());
        for (n, (k, v)) in entries.iter().enumerate() {
            if n > 0 {
                out.push_str(&format!("{},", sp()));
            }
            out.push_str(&format!("{}{k}{}:{}{v}", sp(), sp(), sp()));
        }
        out.push_str(&format!("{}}}{}", sp(), self.tail));
        out
    }
}

/// One byte replaced, inserted or deleted (any byte, so also invalid UTF-8).
#[derive(Debug, Clone)]
enum Corrupt {
    Replace(usize, u8),
    Insert(usize, u8),
    Delete(usize),
}

fn corrupt() -> impl Strategy<Value = Option<Corrupt>> {
    let byte = prop_oneof![
        2 => any::<u8>(),
        1 => select(b"\"\\{},:.-+0e \x00\x7f\x80\xc3\xff".to_vec()),
    ];
    let c = prop_oneof![
        (any::<usize>(), byte.clone()).prop_map(|(i, b)| Corrupt::Replace(i, b)),
        (any::<usize>(), byte).prop_map(|(i, b)| Corrupt::Insert(i, b)),
        any::<usize>().prop_map(Corrupt::Delete),
    ];
    prop::option::weighted(0.15, c)
}

fn apply(frame: &mut Vec<u8>, c: &Option<Corrupt>) {
    let n = frame.len();
    match *c {
        None => {}
        Some(_) if n == 0 => {}
        Some(Corrupt::Replace(i, b)) => frame[i % n] = b,
        Some(Corrupt::Insert(i, b)) => frame.insert(i % (n + 1), b),
        Some(Corrupt::Delete(i)) => {
            frame.remove(i % n);
        }
    }
}

// ---- the oracle ---------------------------------------------------------------------------------

/// Same slice of the frame (address and length), not just equal text.
fn same_slice(a: &str, b: &str) -> bool {
    std::ptr::eq(a.as_ptr(), b.as_ptr()) && a.len() == b.len()
}

fn same_trade(a: &Trade<'_>, b: &Trade<'_>) -> bool {
    same_slice(a.exchange, b.exchange)
        && same_slice(a.base, b.base)
        && same_slice(a.quote, b.quote)
        && a.direction == b.direction
        && a.price.to_bits() == b.price.to_bits()
        && a.volume.to_bits() == b.volume.to_bits()
        && a.timestamp == b.timestamp
        && a.price_usd.to_bits() == b.price_usd.to_bits()
}

/// Fails unless the fast and the slow validator agree on `frame` entirely.
fn agree(frame: &[u8], now_ms: i64, policy: &Validator) -> Result<(), TestCaseError> {
    let fast: Result<Trade<'_>, Reject> = validate(frame, now_ms, policy);
    let slow = validate_slow(frame, now_ms, policy);
    let text = String::from_utf8_lossy(frame);
    match (&fast, &slow) {
        (Ok(a), Ok(b)) => prop_assert!(same_trade(a, b), "{text}\nfast {a:?}\nslow {b:?}"),
        (Err(a), Err(b)) => prop_assert_eq!(a, b, "{}", text),
        _ => prop_assert!(false, "{text}\nfast {fast:?}\nslow {slow:?}"),
    }
    Ok(())
}

fn policy() -> impl Strategy<Value = Validator> {
    prop_oneof![
        3 => Just(60_000i64),
        1 => select(vec![0i64, 1, i64::MAX, i64::MIN]),
        1 => any::<i64>(),
    ]
    .prop_map(|future_tolerance_ms| Validator {
        future_tolerance_ms,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    #[test]
    fn fast_and_slow_paths_agree_on_random_frames(
        spec in spec(),
        c in corrupt(),
        policy in policy(),
        now in prop_oneof![4 => Just(NOW_MS), 1 => any::<i64>()],
    ) {
        let mut frame = spec.render().into_bytes();
        apply(&mut frame, &c);
        agree(&frame, now, &policy)?;
    }
}

// ---- the fast path is taken where it should be -------------------------------------------------

/// Ids the fast path takes: printable ASCII without `"` or `\` (control characters, DEL and
/// non-ASCII leave the frame to serde_json: `fast_and_slow_paths_agree_on_random_frames`).
fn plain_id() -> impl Strategy<Value = String> {
    prop::collection::vec(
        id_char().prop_filter("printable ASCII, no quote or backslash", |&c| {
            (' '..='~').contains(&c) && c != '"' && c != '\\'
        }),
        0..70,
    )
    .prop_map(String::from_iter)
}

/// Numbers of the JSON grammar: Rust's Display and `{:e}` of finite floats, integers.
fn grammar_number() -> impl Strategy<Value = String> {
    let x = || float().prop_filter("finite", |x| x.is_finite());
    prop_oneof![
        1 => x().prop_map(|x| format!("{x}")),
        1 => x().prop_map(|x| format!("{x:e}")),
        1 => any::<i64>().prop_map(|i| i.to_string()),
        3 => short_number(),
    ]
}

/// Ids the fast path takes, mostly valid ones (1 to 64 chars without controls).
fn likely_valid_id() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::collection::vec(prop::char::range('a', 'z'), 1..12).prop_map(String::from_iter),
        1 => plain_id(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5_000))]

    #[test]
    fn compact_frames_take_the_fast_path_and_agree(
        ids in [likely_valid_id(), likely_valid_id(), likely_valid_id()],
        d in prop_oneof![4 => select(vec!["buy".to_string(), "sell".to_string()]), 1 => plain_id()],
        nums in [grammar_number(), grammar_number(), grammar_number()],
        t in prop_oneof![
            3 => (MIN_TIMESTAMP_MS..NOW_MS).prop_map(|t| t.to_string()),
            1 => grammar_number(),
        ],
        tail in select(vec!["", " ", "\n", "\r\n", " \t "]),
        policy in policy(),
    ) {
        let [e, b, q] = ids;
        let [p, v, u] = nums;
        let frame = format!(
            "{{\"exchange\":\"{e}\",\"base\":\"{b}\",\"quote\":\"{q}\",\"direction\":\"{d}\",\
             \"price\":{p},\"volume\":{v},\"timestamp\":{t},\"priceUsd\":{u}}}{tail}"
        );
        prop_assert!(takes_fast_path(frame.as_bytes()), "{}", frame);
        agree(frame.as_bytes(), NOW_MS, &policy)?;
    }

    #[test]
    fn written_trades_round_trip_through_the_fast_path(
        ids in [1usize..=64, 1usize..=64, 1usize..=64],
        seed in any::<u64>(),
        buy in any::<bool>(),
        amounts in [1e-12..=MAX_AMOUNT, 1e-12..=MAX_AMOUNT, 1e-12..=MAX_AMOUNT],
        timestamp in MIN_TIMESTAMP_MS..=NOW_MS + 60_000,
    ) {
        let id = |n: usize, k: u64| -> String {
            (0..n)
                .map(|i| {
                    let x = (seed ^ k).rotate_left(i as u32 % 64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                    char::from(b"abcdefghijklmnopqrstuvwxyz0123456789-"[(x >> 58) as usize % 37])
                })
                .collect()
        };
        let t = OwnedTrade {
            exchange: id(ids[0], 1),
            base: id(ids[1], 2),
            quote: id(ids[2], 3),
            direction: if buy { Direction::Buy } else { Direction::Sell },
            price: amounts[0],
            volume: amounts[1],
            timestamp,
            price_usd: amounts[2],
        };
        let mut frame = Vec::new();
        write_json(&t.as_trade(), &mut frame);
        prop_assert!(takes_fast_path(&frame));
        let got = validate(&frame, NOW_MS, &Validator::default());
        prop_assert_eq!(got.map(|g| g.to_owned_trade()), Ok(t));
        agree(&frame, NOW_MS, &Validator::default())?;
    }
}
