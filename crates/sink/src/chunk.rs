//! Splits a batch into multi-row `INSERT` statements under a byte and a row limit.

use arrow_array::RecordBatch;

use crate::encode::{self, Col};
use crate::{IngestMode, SinkError};

/// Produces the statements for one batch, one at a time, into a caller-owned buffer.
pub(crate) struct Chunker<'a> {
    table: &'a str,
    cols: Vec<Col<'a>>,
    prefix: String,
    suffix: String,
    next_row: usize,
    rows: usize,
    max_rows: usize,
    max_bytes: usize,
}

impl<'a> Chunker<'a> {
    /// Resolves column types and builds the statement frame; fails on unsupported types or bad names.
    pub(crate) fn new(
        table: &'a str,
        batch: &'a RecordBatch,
        mode: IngestMode,
        max_rows: usize,
        max_bytes: usize,
    ) -> Result<Self, SinkError> {
        let (prefix, suffix) = statement_frame(table, batch, mode)?;
        Self::framed(table, batch, prefix, suffix, max_rows, max_bytes)
    }

    /// Like [`Chunker::new`] with an explicit ` ON DUPLICATE KEY UPDATE ...` clause (merge-on-write).
    pub(crate) fn with_suffix(
        table: &'a str,
        batch: &'a RecordBatch,
        suffix: &str,
        max_rows: usize,
        max_bytes: usize,
    ) -> Result<Self, SinkError> {
        let (prefix, _) = statement_frame(table, batch, IngestMode::Append)?;
        Self::framed(
            table,
            batch,
            prefix,
            suffix.to_string(),
            max_rows,
            max_bytes,
        )
    }

    fn framed(
        table: &'a str,
        batch: &'a RecordBatch,
        prefix: String,
        suffix: String,
        max_rows: usize,
        max_bytes: usize,
    ) -> Result<Self, SinkError> {
        let cols = encode::columns(table, batch)?;
        Ok(Chunker {
            table,
            cols,
            prefix,
            suffix,
            next_row: 0,
            rows: batch.num_rows(),
            max_rows: max_rows.max(1),
            max_bytes,
        })
    }

    /// Writes the next statement into `buf` (cleared first) and returns its row count; 0 when done.
    /// Each statement holds at most `max_rows` rows and `max_bytes` bytes; a single row that does not
    /// fit alone is a [`SinkError::RowTooLarge`].
    pub(crate) fn next_statement(&mut self, buf: &mut String) -> Result<usize, SinkError> {
        if self.next_row >= self.rows {
            return Ok(0);
        }
        buf.clear();
        buf.push_str(&self.prefix);
        let mut k = 0usize;
        while self.next_row < self.rows && k < self.max_rows {
            let mark = buf.len();
            if k > 0 {
                buf.push(',');
            }
            write_row(&self.cols, self.next_row, buf)?;
            if buf.len() + self.suffix.len() > self.max_bytes {
                if k == 0 {
                    return Err(SinkError::RowTooLarge {
                        table: self.table.to_string(),
                        bytes: buf.len() + self.suffix.len(),
                        limit: self.max_bytes,
                    });
                }
                // This row starts the next statement.
                buf.truncate(mark);
                break;
            }
            k += 1;
            self.next_row += 1;
        }
        buf.push_str(&self.suffix);
        Ok(k)
    }
}

/// Builds `INSERT INTO `t` (`a`,`b`) VALUES ` and, for upserts,
/// ` ON DUPLICATE KEY UPDATE `a`=VALUES(`a`),...`.
fn statement_frame(
    table: &str,
    batch: &RecordBatch,
    mode: IngestMode,
) -> Result<(String, String), SinkError> {
    check_ident(table)?;
    let schema = batch.schema_ref();
    if schema.fields().is_empty() {
        return Err(SinkError::InvalidIdentifier(format!(
            "(batch for `{table}` has no columns)"
        )));
    }
    let upsert = mode == IngestMode::Upsert;
    let mut prefix = String::from("INSERT INTO ");
    encode::write_ident(table, &mut prefix);
    prefix.push_str(" (");
    let mut suffix = String::new();
    if upsert {
        suffix.push_str(" ON DUPLICATE KEY UPDATE ");
    }
    for (i, f) in schema.fields().iter().enumerate() {
        check_ident(f.name())?;
        if i > 0 {
            prefix.push(',');
            if upsert {
                suffix.push(',');
            }
        }
        encode::write_ident(f.name(), &mut prefix);
        if upsert {
            encode::write_ident(f.name(), &mut suffix);
            suffix.push_str("=VALUES(");
            encode::write_ident(f.name(), &mut suffix);
            suffix.push(')');
        }
    }
    prefix.push_str(") VALUES ");
    Ok((prefix, suffix))
}

/// MySQL identifiers: 1..=64 characters, no NUL (backticks are escaped when quoted).
fn check_ident(name: &str) -> Result<(), SinkError> {
    if name.is_empty() || name.contains('\0') || name.chars().count() > 64 {
        return Err(SinkError::InvalidIdentifier(name.to_string()));
    }
    Ok(())
}

fn write_row(cols: &[Col<'_>], i: usize, buf: &mut String) -> Result<(), SinkError> {
    buf.push('(');
    for (j, c) in cols.iter().enumerate() {
        if j > 0 {
            buf.push(',');
        }
        c.write(i, buf)?;
    }
    buf.push(')');
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int64Array, StringArray};
    use arrow_schema::{Field, Schema};

    use super::*;

    fn batch(n: i64) -> RecordBatch {
        let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(0..n));
        let s: ArrayRef = Arc::new(StringArray::from_iter_values(
            (0..n).map(|i| "x".repeat((i % 13) as usize)),
        ));
        let schema = Schema::new(vec![
            Field::new("id", ids.data_type().clone(), false),
            Field::new("s", s.data_type().clone(), false),
        ]);
        RecordBatch::try_new(Arc::new(schema), vec![ids, s]).unwrap()
    }

    fn all_statements(b: &RecordBatch, rows: usize, bytes: usize) -> Vec<(usize, String)> {
        let mut c = Chunker::new("t", b, IngestMode::Upsert, rows, bytes).unwrap();
        let mut buf = String::new();
        let mut out = Vec::new();
        loop {
            let k = c.next_statement(&mut buf).unwrap();
            if k == 0 {
                return out;
            }
            out.push((k, buf.clone()));
        }
    }

    #[test]
    fn frames_upsert_statements() {
        let b = batch(2);
        let s = all_statements(&b, 10, 1 << 20);
        assert_eq!(
            s,
            vec![(
                2,
                "INSERT INTO `t` (`id`,`s`) VALUES (0,''),(1,'x') \
                 ON DUPLICATE KEY UPDATE `id`=VALUES(`id`),`s`=VALUES(`s`)"
                    .to_string()
            )]
        );
    }

    #[test]
    fn respects_row_and_byte_limits_and_keeps_every_row_once() {
        let b = batch(1_000);
        for (rows, bytes) in [(7, 1 << 20), (5_000, 400), (3, 200), (1_000, 1 << 20)] {
            let s = all_statements(&b, rows, bytes);
            assert!(s.len() > 1 || rows >= 1_000, "{rows} {bytes}");
            assert_eq!(s.iter().map(|x| x.0).sum::<usize>(), 1_000);
            for (k, sql) in &s {
                assert!(
                    *k <= rows && sql.len() <= bytes,
                    "{k} rows, {} bytes",
                    sql.len()
                );
            }
            // Rows appear in order, each exactly once.
            let ids: Vec<i64> = s
                .iter()
                .flat_map(|(_, sql)| {
                    let values = &sql[sql.find("VALUES ").unwrap() + 7..sql.find(" ON ").unwrap()];
                    values[1..values.len() - 1]
                        .split("),(")
                        .map(|r| r.split(',').next().unwrap().parse::<i64>().unwrap())
                        .collect::<Vec<_>>()
                })
                .collect();
            assert_eq!(ids, (0..1_000).collect::<Vec<_>>());
        }
    }

    #[test]
    fn rejects_a_row_that_cannot_fit_and_bad_names() {
        let b = batch(20);
        let mut c = Chunker::new("t", &b, IngestMode::Append, 100, 30).unwrap();
        let mut buf = String::new();
        assert!(matches!(
            c.next_statement(&mut buf),
            Err(SinkError::RowTooLarge { .. })
        ));
        assert!(matches!(
            Chunker::new("", &b, IngestMode::Append, 1, 1 << 20),
            Err(SinkError::InvalidIdentifier(_))
        ));
    }
}
