//! Arrow -> MySQL text-protocol literals, written straight into one reusable `String`.
//!
//! Column types are resolved once per batch into [`Col`] (a typed view of each array), so the per-value
//! path is a `match` plus a write into the statement buffer: no per-value allocation.

use std::fmt::Write as _;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use arrow_array::{
    Array, ArrayRef, BinaryArray, BooleanArray, DictionaryArray, GenericStringArray,
    LargeBinaryArray, PrimitiveArray, RecordBatch, StringViewArray,
};
use arrow_schema::{DataType, TimeUnit};

use crate::SinkError;

/// A typed, borrowed view of one column, resolved once per batch.
pub(crate) enum Col<'a> {
    Null,
    Utf8(&'a GenericStringArray<i32>),
    LargeUtf8(&'a GenericStringArray<i64>),
    Utf8View(&'a StringViewArray),
    DictUtf8(&'a DictionaryArray<Int32Type>, &'a GenericStringArray<i32>),
    F64(&'a PrimitiveArray<Float64Type>),
    F32(&'a PrimitiveArray<Float32Type>),
    I8(&'a PrimitiveArray<Int8Type>),
    I16(&'a PrimitiveArray<Int16Type>),
    I32(&'a PrimitiveArray<Int32Type>),
    I64(&'a PrimitiveArray<Int64Type>),
    U8(&'a PrimitiveArray<UInt8Type>),
    U16(&'a PrimitiveArray<UInt16Type>),
    U32(&'a PrimitiveArray<UInt32Type>),
    U64(&'a PrimitiveArray<UInt64Type>),
    Bool(&'a BooleanArray),
    TsSecond(&'a PrimitiveArray<TimestampSecondType>),
    TsMilli(&'a PrimitiveArray<TimestampMillisecondType>),
    TsMicro(&'a PrimitiveArray<TimestampMicrosecondType>),
    TsNano(&'a PrimitiveArray<TimestampNanosecondType>),
    Dec128(&'a PrimitiveArray<Decimal128Type>, i8),
    Binary(&'a BinaryArray),
    LargeBinary(&'a LargeBinaryArray),
}

fn unsupported(table: &str, column: &str, dt: &DataType) -> SinkError {
    SinkError::UnsupportedType {
        table: table.to_string(),
        column: column.to_string(),
        data_type: dt.to_string(),
    }
}

impl<'a> Col<'a> {
    /// Resolves a column's typed view, or a clear error for a type the sink cannot write.
    pub(crate) fn new(table: &str, column: &str, array: &'a ArrayRef) -> Result<Self, SinkError> {
        let dt = array.data_type();
        let bad = || unsupported(table, column, dt);
        let col = match dt {
            DataType::Null => Col::Null,
            DataType::Utf8 => Col::Utf8(array.as_string_opt::<i32>().ok_or_else(bad)?),
            DataType::LargeUtf8 => Col::LargeUtf8(array.as_string_opt::<i64>().ok_or_else(bad)?),
            DataType::Utf8View => Col::Utf8View(array.as_string_view_opt().ok_or_else(bad)?),
            DataType::Dictionary(k, v) if **k == DataType::Int32 && **v == DataType::Utf8 => {
                let dict = array.as_dictionary_opt::<Int32Type>().ok_or_else(bad)?;
                let values = dict.values().as_string_opt::<i32>().ok_or_else(bad)?;
                Col::DictUtf8(dict, values)
            }
            DataType::Float64 => Col::F64(array.as_primitive_opt().ok_or_else(bad)?),
            DataType::Float32 => Col::F32(array.as_primitive_opt().ok_or_else(bad)?),
            DataType::Int8 => Col::I8(array.as_primitive_opt().ok_or_else(bad)?),
            DataType::Int16 => Col::I16(array.as_primitive_opt().ok_or_else(bad)?),
            DataType::Int32 => Col::I32(array.as_primitive_opt().ok_or_else(bad)?),
            DataType::Int64 => Col::I64(array.as_primitive_opt().ok_or_else(bad)?),
            DataType::UInt8 => Col::U8(array.as_primitive_opt().ok_or_else(bad)?),
            DataType::UInt16 => Col::U16(array.as_primitive_opt().ok_or_else(bad)?),
            DataType::UInt32 => Col::U32(array.as_primitive_opt().ok_or_else(bad)?),
            DataType::UInt64 => Col::U64(array.as_primitive_opt().ok_or_else(bad)?),
            DataType::Boolean => Col::Bool(array.as_boolean_opt().ok_or_else(bad)?),
            DataType::Timestamp(TimeUnit::Second, _) => {
                Col::TsSecond(array.as_primitive_opt().ok_or_else(bad)?)
            }
            DataType::Timestamp(TimeUnit::Millisecond, _) => {
                Col::TsMilli(array.as_primitive_opt().ok_or_else(bad)?)
            }
            DataType::Timestamp(TimeUnit::Microsecond, _) => {
                Col::TsMicro(array.as_primitive_opt().ok_or_else(bad)?)
            }
            DataType::Timestamp(TimeUnit::Nanosecond, _) => {
                Col::TsNano(array.as_primitive_opt().ok_or_else(bad)?)
            }
            DataType::Decimal128(_, scale) => {
                Col::Dec128(array.as_primitive_opt().ok_or_else(bad)?, *scale)
            }
            DataType::Binary => Col::Binary(array.as_binary_opt::<i32>().ok_or_else(bad)?),
            DataType::LargeBinary => {
                Col::LargeBinary(array.as_binary_opt::<i64>().ok_or_else(bad)?)
            }
            _ => return Err(bad()),
        };
        Ok(col)
    }

    /// Appends the SQL literal of row `i` (or `NULL`) to `out`.
    pub(crate) fn write(&self, i: usize, out: &mut String) -> Result<(), SinkError> {
        macro_rules! prim {
            ($a:expr) => {{
                if $a.is_null(i) {
                    out.push_str("NULL");
                } else {
                    out.push_str(itoa::Buffer::new().format($a.value(i)));
                }
            }};
        }
        macro_rules! nullable {
            ($a:expr, $f:expr) => {{
                if $a.is_null(i) {
                    out.push_str("NULL");
                } else {
                    $f
                }
            }};
        }
        match self {
            Col::Null => out.push_str("NULL"),
            Col::Utf8(a) => nullable!(a, write_str_literal(a.value(i), out)),
            Col::LargeUtf8(a) => nullable!(a, write_str_literal(a.value(i), out)),
            Col::Utf8View(a) => nullable!(a, write_str_literal(a.value(i), out)),
            Col::DictUtf8(d, values) => {
                let key = if d.keys().is_null(i) {
                    None
                } else {
                    usize::try_from(d.keys().value(i)).ok()
                };
                match key {
                    Some(k) if k < values.len() && !values.is_null(k) => {
                        write_str_literal(values.value(k), out)
                    }
                    _ => out.push_str("NULL"),
                }
            }
            Col::F64(a) => nullable!(a, write_f64(a.value(i), out)),
            Col::F32(a) => nullable!(a, write_f32(a.value(i), out)),
            Col::I8(a) => prim!(a),
            Col::I16(a) => prim!(a),
            Col::I32(a) => prim!(a),
            Col::I64(a) => prim!(a),
            Col::U8(a) => prim!(a),
            Col::U16(a) => prim!(a),
            Col::U32(a) => prim!(a),
            Col::U64(a) => prim!(a),
            Col::Bool(a) => nullable!(a, out.push(if a.value(i) { '1' } else { '0' })),
            Col::TsSecond(a) => {
                nullable!(a, write_datetime_ms(a.value(i).saturating_mul(1000), out)?)
            }
            Col::TsMilli(a) => nullable!(a, write_datetime_ms(a.value(i), out)?),
            Col::TsMicro(a) => nullable!(a, write_datetime_ms(a.value(i).div_euclid(1000), out)?),
            Col::TsNano(a) => {
                nullable!(a, write_datetime_ms(a.value(i).div_euclid(1_000_000), out)?)
            }
            Col::Dec128(a, scale) => nullable!(a, write_decimal(a.value(i), *scale, out)),
            Col::Binary(a) => nullable!(a, write_hex_literal(a.value(i), out)),
            Col::LargeBinary(a) => nullable!(a, write_hex_literal(a.value(i), out)),
        }
        Ok(())
    }
}

/// Resolves every column of `batch` (in field order).
pub(crate) fn columns<'a>(table: &str, batch: &'a RecordBatch) -> Result<Vec<Col<'a>>, SinkError> {
    let schema = batch.schema_ref();
    batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(array, field)| Col::new(table, field.name(), array))
        .collect()
}

/// Appends `s` as a quoted MySQL string literal, escaping `\`, `'`, NUL, `\n`, `\r` and Ctrl-Z.
pub(crate) fn write_str_literal(s: &str, out: &mut String) {
    out.reserve(s.len() + 2);
    out.push('\'');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc = match b {
            b'\\' => "\\\\",
            b'\'' => "\\'",
            0 => "\\0",
            b'\n' => "\\n",
            b'\r' => "\\r",
            0x1a => "\\Z",
            _ => continue,
        };
        // All escaped bytes are ASCII, so `start..i` always falls on char boundaries.
        out.push_str(&s[start..i]);
        out.push_str(esc);
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('\'');
}

/// Appends a quoted identifier (`` `name` ``), doubling any backtick.
pub(crate) fn write_ident(name: &str, out: &mut String) {
    out.push('`');
    for part in name.split('`').enumerate() {
        if part.0 > 0 {
            out.push_str("``");
        }
        out.push_str(part.1);
    }
    out.push('`');
}

/// Appends an `f64` as the shortest literal that round-trips exactly; non-finite values become `NULL`.
///
/// Exponent form (`1.5e-7`) is used so that MySQL parses it as a DOUBLE literal (correctly rounded
/// `strtod`) rather than as a DECIMAL, and so huge/tiny magnitudes stay short.
/// A DECIMAL literal of `v` scaled by `10^-scale` (exact: no float in between).
pub(crate) fn write_decimal(v: i128, scale: i8, out: &mut String) {
    if scale <= 0 {
        let _ = write!(out, "{v}");
        for _ in 0..(-scale) {
            out.push('0');
        }
        return;
    }
    let digits = v.unsigned_abs().to_string();
    let scale = scale as usize;
    if v < 0 {
        out.push('-');
    }
    if digits.len() <= scale {
        out.push_str("0.");
        for _ in digits.len()..scale {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let (int, frac) = digits.split_at(digits.len() - scale);
        out.push_str(int);
        out.push('.');
        out.push_str(frac);
    }
}

pub(crate) fn write_f64(v: f64, out: &mut String) {
    if v.is_finite() {
        // Ryū: the same shortest round-trip digits as `{:e}`, several times faster (the sink
        // formats every double of every row).
        out.push_str(ryu::Buffer::new().format_finite(v));
    } else {
        out.push_str("NULL");
    }
}

/// Appends an `f32` as its shortest round-trip `f32` digits; non-finite values become `NULL`.
pub(crate) fn write_f32(v: f32, out: &mut String) {
    if v.is_finite() {
        out.push_str(ryu::Buffer::new().format_finite(v));
    } else {
        out.push_str("NULL");
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Appends bytes as a hex literal `X'0A1B'`.
pub(crate) fn write_hex_literal(b: &[u8], out: &mut String) {
    out.reserve(b.len() * 2 + 3);
    out.push_str("X'");
    for &x in b {
        out.push(HEX[(x >> 4) as usize] as char);
        out.push(HEX[(x & 0xf) as usize] as char);
    }
    out.push('\'');
}

/// Appends epoch milliseconds as `'YYYY-MM-DD HH:MM:SS.mmm'` in UTC.
///
/// Years outside 0000..=9999 cannot be written as a DATETIME and are rejected.
pub(crate) fn write_datetime_ms(ms: i64, out: &mut String) -> Result<(), SinkError> {
    use chrono::{Datelike, Timelike};
    let out_of_range =
        || SinkError::ValueOutOfRange(format!("timestamp {ms} ms is outside the DATETIME range"));
    let t = chrono::DateTime::from_timestamp_millis(ms).ok_or_else(out_of_range)?;
    if !(0..=9999).contains(&t.year()) {
        return Err(out_of_range());
    }
    // Fixed-width digits, no formatter: three DATETIMEs per row of every commit.
    let mut b = *b"'0000-00-00 00:00:00.000'";
    let mut put = |at: usize, width: usize, mut v: u32| {
        for k in (at..at + width).rev() {
            b[k] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(1, 4, t.year() as u32);
    put(6, 2, t.month());
    put(9, 2, t.day());
    put(12, 2, t.hour());
    put(15, 2, t.minute());
    put(18, 2, t.second());
    put(21, 3, ms.rem_euclid(1000) as u32);
    out.push_str(std::str::from_utf8(&b).unwrap_or("NULL"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_string_literals() {
        let mut s = String::new();
        write_str_literal("a'b\\c\0d\ne\rf\x1ag é", &mut s);
        assert_eq!(s, "'a\\'b\\\\c\\0d\\ne\\rf\\Zg é'");
    }

    #[test]
    fn quotes_identifiers() {
        let mut s = String::new();
        write_ident("we`ird", &mut s);
        assert_eq!(s, "`we``ird`");
    }

    #[test]
    fn formats_datetimes() {
        let mut s = String::new();
        write_datetime_ms(0, &mut s).unwrap();
        assert_eq!(s, "'1970-01-01 00:00:00.000'");
        s.clear();
        write_datetime_ms(1_700_000_000_123, &mut s).unwrap();
        assert_eq!(s, "'2023-11-14 22:13:20.123'");
        s.clear();
        write_datetime_ms(-1, &mut s).unwrap();
        assert_eq!(s, "'1969-12-31 23:59:59.999'");
        s.clear();
        // 2000-02-29 (leap day), 2100-03-01 (2100 is not a leap year).
        write_datetime_ms(951_782_400_000, &mut s).unwrap();
        assert_eq!(s, "'2000-02-29 00:00:00.000'");
        s.clear();
        write_datetime_ms(4_107_542_400_000, &mut s).unwrap();
        assert_eq!(s, "'2100-03-01 00:00:00.000'");
        assert!(write_datetime_ms(i64::MAX, &mut s).is_err());
    }

    #[test]
    fn formats_decimals_exactly() {
        let f = |v: i128, s: i8| {
            let mut o = String::new();
            write_decimal(v, s, &mut o);
            o
        };
        assert_eq!(
            f(17_000_000_000_000_000_000_000_000_123, 0),
            "17000000000000000000000000123"
        );
        assert_eq!(f(-5, 2), "-0.05");
        assert_eq!(f(12345, 2), "123.45");
        assert_eq!(f(7, -2), "700");
    }

    #[test]
    fn formats_floats() {
        let mut s = String::new();
        write_f64(0.1, &mut s);
        s.push(',');
        write_f64(f64::NAN, &mut s);
        s.push(',');
        write_f64(1e300, &mut s);
        s.push(',');
        write_f64(-2.5e-7, &mut s);
        s.push(',');
        write_f64(67_543.21, &mut s);
        assert_eq!(s, "0.1,NULL,1e300,-2.5e-7,67543.21");
        // Shortest digits that read back as the same double.
        for v in [
            0.1 + 0.2,
            1.0 / 3.0,
            f64::MAX,
            f64::MIN_POSITIVE,
            123_456_789.123_456_79,
        ] {
            let mut s = String::new();
            write_f64(v, &mut s);
            assert_eq!(s.parse::<f64>().ok(), Some(v), "{s}");
        }
        let mut s = String::new();
        write_hex_literal(&[0, 0xab, 0xff], &mut s);
        assert_eq!(s, "X'00ABFF'");
    }
}
