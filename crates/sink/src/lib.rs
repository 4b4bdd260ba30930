//! tradewind-sink: the MySQL side of tradewind.
//!
//! * ADBC-style bulk ingest: [`MySqlSink::ingest`] writes an Arrow [`RecordBatch`] into a table whose
//!   column names equal the batch's field names, as multi-row `INSERT` (or upsert) statements built in one
//!   reusable buffer and chunked under the server's `max_allowed_packet`.
//! * Exactly-once store: [`MySqlSink::commit`] writes window rows, window state and consumed Kafka offsets
//!   in ONE transaction, fenced on the offsets the caller expects (a zombie or a replica that lost a
//!   partition writes nothing); [`MySqlSink::load_partition`] reads them back on start or assignment.
//! * Schema: [`MySqlSink::migrate`] applies `schemas/mysql/*.sql` in order and records each version.
//!
//! Errors are [`SinkError`]; [`SinkError::is_transient`] says whether a retry with backoff can help.

#![warn(missing_docs)]

mod chunk;
mod encode;
mod error;
mod migrate;

use arrow_array::RecordBatch;
use mysql_async::prelude::Queryable;
use mysql_async::{Opts, OptsBuilder, Pool, Row, TxOpts};

pub use error::SinkError;
pub use migrate::{run, MigrateArgs, MIGRATIONS};

/// Default cap on rows per multi-row statement (larger statements stop paying off and hold locks longer).
pub const DEFAULT_MAX_ROWS_PER_STATEMENT: usize = 5_000;
/// Bytes kept free under `max_allowed_packet` for the packet header and the statement suffix.
const PACKET_MARGIN: usize = 4_096;

/// How [`MySqlSink::ingest`] writes rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestMode {
    /// Plain `INSERT`: a duplicate key is an error.
    Append,
    /// `INSERT ... ON DUPLICATE KEY UPDATE c=VALUES(c)` for every column: the batch's values win, so
    /// replaying the same rows is harmless.
    Upsert,
}

/// A MySQL/MariaDB sink: a connection pool plus the statement size limits read at connect.
///
/// Cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct MySqlSink {
    pool: Pool,
    max_allowed_packet: usize,
    max_stmt_bytes: usize,
    max_stmt_rows: usize,
}

impl std::fmt::Debug for MySqlSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MySqlSink")
            .field("max_allowed_packet", &self.max_allowed_packet)
            .field("max_stmt_bytes", &self.max_stmt_bytes)
            .field("max_stmt_rows", &self.max_stmt_rows)
            .finish_non_exhaustive()
    }
}

/// What the store holds for one (group, topic, partition): where to resume and the open-window state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionSnapshot {
    /// Next Kafka offset to consume; `None` when nothing was ever committed for the partition.
    pub next_offset: Option<i64>,
    /// Largest event time (epoch ms) seen on the partition when last committed.
    pub max_event_ms: Option<i64>,
    /// Window accumulators to restore, ordered by (grain, key, window_start).
    pub state: Vec<StateEntry>,
}

/// One open window's serialized accumulator, as stored in `tw_window_state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateEntry {
    /// Window grain (engine-defined, e.g. 0 = market, 1 = asset).
    pub grain: u8,
    /// Window key within the grain.
    pub key: String,
    /// Window start, epoch milliseconds.
    pub window_start_ms: i64,
    /// Serialized accumulator (engine-defined encoding).
    pub acc: Vec<u8>,
}

/// Progress of one partition to record in a [`Commit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionProgress {
    /// Kafka partition.
    pub partition: i32,
    /// The `next_offset` the caller believes is stored (what it loaded or last committed);
    /// `None` means no row may exist yet. A mismatch fences the commit.
    pub expected_offset: Option<i64>,
    /// New next offset to store.
    pub next_offset: i64,
    /// Largest event time seen (epoch ms); `None` keeps the stored value.
    pub max_event_ms: Option<i64>,
    /// Delete this partition's state rows with `window_start` below this (epoch ms), after the upserts.
    pub evict_before_ms: Option<i64>,
}

/// Everything one exactly-once commit writes, in one transaction.
#[derive(Debug, Clone, Copy)]
pub struct Commit<'a> {
    /// Consumer group id.
    pub group: &'a str,
    /// Kafka topic.
    pub topic: &'a str,
    /// Per-partition offsets to check and advance.
    pub partitions: &'a [PartitionProgress],
    /// (table, rows) written with [`IngestMode::Upsert`], in order (window rows and `tw_window_state` rows).
    pub upserts: &'a [(&'a str, &'a RecordBatch)],
}

/// Result of [`MySqlSink::commit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    /// The transaction committed; `rows` is the number of batch rows upserted.
    Committed {
        /// Rows sent across all upsert batches.
        rows: u64,
    },
    /// Nothing was written: the stored offsets of these partitions differ from `expected_offset`
    /// (another consumer owns them now). The caller must drop its state for them and reload.
    Fenced {
        /// Partitions whose stored offset did not match.
        partitions: Vec<i32>,
    },
}

impl MySqlSink {
    /// Connects to `url` (`mysql://user:pass@host:port/db`), creating database `db` if missing,
    /// and reads `max_allowed_packet`. Every pooled session uses `time_zone = '+00:00'` and utf8mb4.
    pub async fn connect(url: &str) -> Result<Self, SinkError> {
        let opts = Opts::from_url(url).map_err(|e| SinkError::Url(e.to_string()))?;
        let endpoint = format!("{}:{}", opts.ip_or_hostname(), opts.tcp_port());
        if let Some(db) = opts.db_name().filter(|d| !d.is_empty()) {
            let no_db = OptsBuilder::from_opts(opts.clone()).db_name(None::<String>);
            let mut conn = mysql_async::Conn::new(no_db)
                .await
                .map_err(SinkError::mysql(format!("connecting to {endpoint}")))?;
            // Look first, so a user with rights on an existing database only does not need CREATE.
            let exists: Option<Row> = conn
                .exec_first(
                    "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
                    (db,),
                )
                .await
                .map_err(SinkError::mysql(format!("looking up database `{db}`")))?;
            if exists.is_none() {
                let mut sql = String::from("CREATE DATABASE IF NOT EXISTS ");
                encode::write_ident(db, &mut sql);
                sql.push_str(" CHARACTER SET utf8mb4 COLLATE utf8mb4_bin");
                conn.query_drop(sql)
                    .await
                    .map_err(SinkError::mysql(format!("creating database `{db}`")))?;
                tracing::info!(database = db, "created database");
            }
            // Best effort: the database exists either way.
            let _ = conn.disconnect().await;
        }
        let opts = OptsBuilder::from_opts(opts).setup(vec![
            "SET NAMES utf8mb4",
            "SET time_zone = '+00:00'",
            // The string escaping relies on backslash escapes being enabled.
            "SET sql_mode = REPLACE(@@sql_mode, 'NO_BACKSLASH_ESCAPES', '')",
        ]);
        let pool = Pool::new(opts);
        let max_allowed_packet = {
            let mut conn = pool
                .get_conn()
                .await
                .map_err(SinkError::mysql(format!("connecting to {endpoint}")))?;
            let v: Option<Row> = conn
                .query_first("SELECT @@max_allowed_packet")
                .await
                .map_err(SinkError::mysql("reading max_allowed_packet"))?;
            v.and_then(|r| r.get_opt::<u64, _>(0).and_then(Result::ok))
                .map_or(4 << 20, |v| usize::try_from(v).unwrap_or(usize::MAX))
        };
        tracing::info!(%endpoint, max_allowed_packet, "connected to MySQL");
        Ok(MySqlSink {
            pool,
            max_allowed_packet,
            max_stmt_bytes: max_allowed_packet
                .saturating_sub(PACKET_MARGIN)
                .max(PACKET_MARGIN),
            max_stmt_rows: DEFAULT_MAX_ROWS_PER_STATEMENT,
        })
    }

    /// Overrides the statement chunking limits (rows and bytes per statement); bytes are still capped
    /// by `max_allowed_packet`. For tests and tuning.
    #[doc(hidden)]
    pub fn with_chunk_limits(mut self, max_rows: usize, max_bytes: usize) -> Self {
        self.max_stmt_rows = max_rows.max(1);
        self.max_stmt_bytes = max_bytes.min(self.max_allowed_packet.saturating_sub(PACKET_MARGIN));
        self
    }

    /// The server's `max_allowed_packet`, read at connect.
    pub fn max_allowed_packet(&self) -> usize {
        self.max_allowed_packet
    }

    /// Applies the embedded `schemas/mysql` migrations not yet recorded in `tw_schema_migrations`.
    /// Idempotent and safe to run concurrently (serialized with a named lock).
    pub async fn migrate(&self) -> Result<(), SinkError> {
        migrate::run_migrations(&self.pool).await
    }

    /// Checks that the database answers (for readiness probes and outage recovery).
    pub async fn ping(&self) -> Result<(), SinkError> {
        let mut conn = self
            .pool
            .get_conn()
            .await
            .map_err(SinkError::mysql("connecting for ping"))?;
        conn.ping().await.map_err(SinkError::mysql("pinging"))
    }

    /// Writes `batch` into `table` (columns named as the batch's fields) in its own transaction.
    /// Returns the number of rows sent.
    pub async fn ingest(
        &self,
        table: &str,
        batch: &RecordBatch,
        mode: IngestMode,
    ) -> Result<u64, SinkError> {
        if batch.num_rows() == 0 {
            return Ok(0);
        }
        let mut tx = self
            .pool
            .start_transaction(TxOpts::default())
            .await
            .map_err(SinkError::mysql("starting an ingest transaction"))?;
        let mut buf = String::new();
        let rows = self
            .write_batch(&mut tx, table, batch, mode, &mut buf)
            .await?;
        tx.commit().await.map_err(SinkError::mysql(format!(
            "committing ingest into `{table}`"
        )))?;
        Ok(rows)
    }

    /// Reads the stored offset, max event time and window state of one partition (one consistent snapshot).
    pub async fn load_partition(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Result<PartitionSnapshot, SinkError> {
        let ctx = || format!("loading {group}/{topic}/{partition}");
        let mut tx = self
            .pool
            .start_transaction(TxOpts::default().with_readonly(Some(true)).to_owned())
            .await
            .map_err(SinkError::mysql(ctx()))?;
        let offsets: Option<Row> = tx
            .exec_first(
                "SELECT next_offset, max_event_ms FROM tw_offsets \
                 WHERE group_id = ? AND topic = ? AND kpartition = ?",
                (group, topic, partition),
            )
            .await
            .map_err(SinkError::mysql(ctx()))?;
        let (next_offset, max_event_ms) = match offsets {
            Some(row) => {
                let (n, m): (i64, Option<i64>) = from_row(row, "tw_offsets")?;
                (Some(n), m)
            }
            None => (None, None),
        };
        let rows: Vec<Row> = tx
            .exec(
                "SELECT grain, wkey, window_start, acc FROM tw_window_state \
                 WHERE group_id = ? AND topic = ? AND kpartition = ? \
                 ORDER BY grain, wkey, window_start",
                (group, topic, partition),
            )
            .await
            .map_err(SinkError::mysql(ctx()))?;
        let state = rows
            .into_iter()
            .map(|row| {
                let (grain, key, window_start_ms, acc): (u8, String, i64, Vec<u8>) =
                    from_row(row, "tw_window_state")?;
                Ok(StateEntry {
                    grain,
                    key,
                    window_start_ms,
                    acc,
                })
            })
            .collect::<Result<Vec<_>, SinkError>>()?;
        tx.commit().await.map_err(SinkError::mysql(ctx()))?;
        Ok(PartitionSnapshot {
            next_offset,
            max_event_ms,
            state,
        })
    }

    /// The exactly-once commit, in ONE transaction: (a) lock and check every partition's stored offset
    /// against `expected_offset` (any mismatch: roll back, return [`CommitOutcome::Fenced`]); (b) upsert
    /// every `(table, batch)`; (c) evict state rows below `evict_before_ms`; (d) store the new offsets.
    pub async fn commit(&self, c: &Commit<'_>) -> Result<CommitOutcome, SinkError> {
        let mut tx = self
            .pool
            .start_transaction(TxOpts::default())
            .await
            .map_err(SinkError::mysql("starting the commit transaction"))?;
        let mut buf = String::with_capacity(4096);

        // (a) Fence: lock the offset rows and compare. Under REPEATABLE READ (the default) a locking
        // read of an absent row takes a gap lock, so two consumers that both expect "no row" cannot
        // both insert: one commits, the other deadlocks (transient; on retry it sees the row: Fenced).
        if !c.partitions.is_empty() {
            buf.push_str("SELECT kpartition, next_offset FROM tw_offsets WHERE group_id = ");
            encode::write_str_literal(c.group, &mut buf);
            buf.push_str(" AND topic = ");
            encode::write_str_literal(c.topic, &mut buf);
            buf.push_str(" AND kpartition IN (");
            for (i, p) in c.partitions.iter().enumerate() {
                if i > 0 {
                    buf.push(',');
                }
                push_display(&mut buf, p.partition);
            }
            buf.push_str(") FOR UPDATE");
            let rows: Vec<Row> = tx
                .query(buf.as_str())
                .await
                .map_err(SinkError::mysql("locking tw_offsets"))?;
            let mut stored = Vec::with_capacity(rows.len());
            for row in rows {
                stored.push(from_row::<(i32, i64)>(row, "tw_offsets")?);
            }
            let fenced: Vec<i32> = c
                .partitions
                .iter()
                .filter(|p| {
                    let have = stored.iter().find(|s| s.0 == p.partition).map(|s| s.1);
                    have != p.expected_offset
                })
                .map(|p| p.partition)
                .collect();
            if !fenced.is_empty() {
                tracing::warn!(
                    group = c.group,
                    topic = c.topic,
                    ?fenced,
                    "commit fenced: stored offsets differ from expected; writing nothing"
                );
                tx.rollback()
                    .await
                    .map_err(SinkError::mysql("rolling back a fenced commit"))?;
                return Ok(CommitOutcome::Fenced { partitions: fenced });
            }
        }

        // (b) Rows and state.
        let mut rows = 0u64;
        for (table, batch) in c.upserts {
            rows += self
                .write_batch(&mut tx, table, batch, IngestMode::Upsert, &mut buf)
                .await?;
        }

        // (c) Evict state rows of windows that are closed for good (after the state upsert).
        for p in c.partitions {
            let Some(before) = p.evict_before_ms else {
                continue;
            };
            buf.clear();
            buf.push_str("DELETE FROM tw_window_state WHERE group_id = ");
            encode::write_str_literal(c.group, &mut buf);
            buf.push_str(" AND topic = ");
            encode::write_str_literal(c.topic, &mut buf);
            buf.push_str(" AND kpartition = ");
            push_display(&mut buf, p.partition);
            buf.push_str(" AND window_start < ");
            push_display(&mut buf, before);
            tx.query_drop(buf.as_str())
                .await
                .map_err(SinkError::mysql("evicting tw_window_state"))?;
        }

        // (d) Offsets.
        if !c.partitions.is_empty() {
            buf.clear();
            buf.push_str(
                "INSERT INTO tw_offsets (group_id, topic, kpartition, next_offset, max_event_ms, updated_at) VALUES ",
            );
            for (i, p) in c.partitions.iter().enumerate() {
                if i > 0 {
                    buf.push(',');
                }
                buf.push('(');
                encode::write_str_literal(c.group, &mut buf);
                buf.push(',');
                encode::write_str_literal(c.topic, &mut buf);
                buf.push(',');
                push_display(&mut buf, p.partition);
                buf.push(',');
                push_display(&mut buf, p.next_offset);
                buf.push(',');
                match p.max_event_ms {
                    Some(m) => push_display(&mut buf, m),
                    None => buf.push_str("NULL"),
                }
                buf.push_str(",UTC_TIMESTAMP(3))");
            }
            buf.push_str(
                " ON DUPLICATE KEY UPDATE next_offset = VALUES(next_offset), \
                 max_event_ms = COALESCE(VALUES(max_event_ms), max_event_ms), \
                 updated_at = VALUES(updated_at)",
            );
            tx.query_drop(buf.as_str())
                .await
                .map_err(SinkError::mysql("storing tw_offsets"))?;
        }

        tx.commit()
            .await
            .map_err(SinkError::mysql("committing the exactly-once transaction"))?;
        tracing::debug!(
            group = c.group,
            topic = c.topic,
            rows,
            partitions = c.partitions.len(),
            "committed"
        );
        Ok(CommitOutcome::Committed { rows })
    }

    /// Closes every pooled connection (call at shutdown).
    pub async fn disconnect(self) -> Result<(), SinkError> {
        self.pool
            .disconnect()
            .await
            .map_err(SinkError::mysql("disconnecting the pool"))
    }

    /// The underlying connection pool (for ad-hoc queries, e.g. in tests and tools).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Writes `batch` as chunked multi-row statements on `q`, reusing `buf`. Returns rows sent.
    async fn write_batch<Q: Queryable>(
        &self,
        q: &mut Q,
        table: &str,
        batch: &RecordBatch,
        mode: IngestMode,
        buf: &mut String,
    ) -> Result<u64, SinkError> {
        if batch.num_rows() == 0 {
            return Ok(0);
        }
        let mut chunker =
            chunk::Chunker::new(table, batch, mode, self.max_stmt_rows, self.max_stmt_bytes)?;
        let mut statements = 0usize;
        while chunker.next_statement(buf)? > 0 {
            q.query_drop(buf.as_str())
                .await
                .map_err(|source| SinkError::Mysql {
                    context: match mode {
                        IngestMode::Append => format!("inserting into `{table}`"),
                        IngestMode::Upsert => format!("upserting into `{table}`"),
                    },
                    source,
                })?;
            statements += 1;
        }
        tracing::trace!(table, rows = batch.num_rows(), statements, "batch written");
        Ok(batch.num_rows() as u64)
    }
}

fn push_display(buf: &mut String, v: impl std::fmt::Display) {
    use std::fmt::Write as _;
    let _ = write!(buf, "{v}");
}

fn from_row<T: mysql_async::prelude::FromRow>(row: Row, what: &str) -> Result<T, SinkError> {
    mysql_async::from_row_opt(row).map_err(|e| {
        SinkError::ValueOutOfRange(format!("unexpected row shape read from {what}: {e}"))
    })
}
