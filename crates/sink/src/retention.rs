//! Retention: deleting old final window rows in small batches, so the window tables stop growing.

use mysql_async::prelude::Queryable;

use crate::{encode, MySqlSink, SinkError};

impl MySqlSink {
    /// Deletes at most `batch_rows` FINAL rows of `table` whose window starts before `cutoff_ms`
    /// (epoch ms, UTC), oldest first, in one autocommit statement:
    /// `DELETE FROM t WHERE is_final = 1 AND window_start < cutoff ORDER BY window_start LIMIT n`.
    /// Provisional rows (`is_final = 0`) are never deleted. Returns the rows deleted: fewer than
    /// `batch_rows` means no such row was left when the statement ran. Small batches hold few row
    /// locks for a short time, so the engine's commits are not stalled; the caller repeats the call
    /// (with a pause) until it returns less than `batch_rows`. The statement ranges over the
    /// `(is_final, window_start)` index every window table has.
    pub async fn purge_final(
        &self,
        table: &str,
        cutoff_ms: i64,
        batch_rows: u64,
    ) -> Result<u64, SinkError> {
        if table.is_empty() || table.contains('\0') {
            return Err(SinkError::InvalidIdentifier(table.to_string()));
        }
        let mut sql = String::from("DELETE FROM ");
        encode::write_ident(table, &mut sql);
        sql.push_str(" WHERE is_final = 1 AND window_start < ");
        encode::write_datetime_ms(cutoff_ms, &mut sql)?;
        sql.push_str(" ORDER BY window_start LIMIT ");
        sql.push_str(&batch_rows.max(1).to_string());
        let mut conn = self
            .pool
            .get_conn()
            .await
            .map_err(SinkError::mysql(format!("connecting to purge `{table}`")))?;
        conn.query_drop(sql)
            .await
            .map_err(SinkError::mysql(format!(
                "purging old final rows of `{table}`"
            )))?;
        Ok(conn.affected_rows())
    }
}
