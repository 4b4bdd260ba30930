//! Retention: deleting old final window rows in small batches, so the window tables stop growing.

use mysql_async::prelude::Queryable;
use mysql_async::{IsolationLevel, TxOpts};

use crate::{encode, MySqlSink, SinkError};

impl MySqlSink {
    /// Deletes at most `batch_rows` FINAL rows of `table` whose window starts before `cutoff_ms`
    /// (epoch ms, UTC), oldest first, in one short `READ COMMITTED` transaction:
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
        // READ COMMITTED: the statement locks the rows it deletes and no gaps, so the engine's
        // commits (which finalize and merge newer rows) never wait on it for a range.
        let mut opts = TxOpts::default();
        opts.with_isolation_level(IsolationLevel::ReadCommitted);
        let mut tx = self
            .pool
            .start_transaction(opts)
            .await
            .map_err(SinkError::mysql(format!("starting to purge `{table}`")))?;
        tx.query_drop(sql).await.map_err(SinkError::mysql(format!(
            "purging old final rows of `{table}`"
        )))?;
        let deleted = tx.affected_rows();
        tx.commit()
            .await
            .map_err(SinkError::mysql(format!("committing a purge of `{table}`")))?;
        Ok(deleted)
    }
}
