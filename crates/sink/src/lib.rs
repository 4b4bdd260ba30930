//! tradewind-sink: the MySQL side of tradewind.
//!
//! * ADBC-style bulk ingest: [`MySqlSink::ingest`] writes an Arrow [`RecordBatch`] into a table whose
//!   column names equal the batch's field names, as multi-row `INSERT` (or upsert) statements built in one
//!   reusable buffer and chunked under the server's `max_allowed_packet`.
//! * Exactly-once store: [`MySqlSink::commit`] writes window rows, window state and consumed Kafka offsets
//!   in ONE transaction, fenced on the offsets the caller expects (a zombie or a replica that lost a
//!   partition writes nothing); [`MySqlSink::load_partition`] reads them back on start or assignment.
//! * Schema: [`MySqlSink::migrate`] applies `schemas/mysql/*.sql` in order and records each version.
//! * Retention: [`MySqlSink::purge_final`] deletes old final window rows in small batches.
//!
//! Errors are [`SinkError`]; [`SinkError::is_transient`] says whether a retry with backoff can help.

#![warn(missing_docs)]

mod chunk;
mod encode;
mod error;
mod merge;
mod migrate;
mod retention;
pub mod tls;

use arrow_array::RecordBatch;
use mysql_async::prelude::Queryable;
use mysql_async::{IsolationLevel, OptsBuilder, Pool, Row, Transaction, TxOpts};

pub use error::SinkError;
pub use merge::{Merge, MergeTable, Trend};
pub use migrate::{ensure_readonly_user, run, MigrateConfig, Secret, TableDdl, MIGRATIONS};

/// Default cap on rows per multi-row statement (larger statements stop paying off and hold locks longer).
pub const DEFAULT_MAX_ROWS_PER_STATEMENT: usize = 5_000;
/// Default cap on the bytes of one statement, below `max_allowed_packet` (16 MiB by default): the
/// statement text exists three times while it is sent (the sink's buffer, mysql_async's copy and
/// its packet framing), so 1 MiB statements keep that near 3 MiB (full packets were 19.7 MB of one
/// profiled drain's peak heap), and ~1,800 window rows per statement already amortize a round trip.
pub const DEFAULT_MAX_STATEMENT_BYTES: usize = 1 << 20;
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

/// What the store holds for one (group, topic, partition): where to resume and the partition's
/// event-time progress.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartitionSnapshot {
    /// Next Kafka offset to consume; `None` when nothing was ever committed for the partition.
    pub next_offset: Option<i64>,
    /// Largest event time (epoch ms) seen on the partition when last committed.
    pub max_event_ms: Option<i64>,
}

/// How a partition takes part in the topic-wide low watermark that makes windows final.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionStatus {
    /// Consuming: its watermark holds the low watermark back.
    Active = 0,
    /// Caught up and quiet for the idleness timeout: it does not hold the low watermark back.
    Idle = 1,
    /// Drained to its end by `--drain`: when every partition is drained, every window is final.
    Drained = 2,
}

/// Progress of one partition to record in a [`Commit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionProgress {
    /// Kafka partition.
    pub partition: i32,
    /// The `next_offset` the caller believes is stored (what it loaded or last committed);
    /// `None` means no row may exist yet. A mismatch fences the commit (compare-and-set).
    pub expected_offset: Option<i64>,
    /// New next offset to store.
    pub next_offset: i64,
    /// Largest event time seen (epoch ms); `None` keeps the stored value.
    pub max_event_ms: Option<i64>,
    /// The partition's watermark (epoch ms); `None` keeps the stored value.
    pub watermark_ms: Option<i64>,
    /// Whether the partition holds the low watermark back.
    pub status: PartitionStatus,
}

/// Everything one exactly-once commit writes, in one transaction.
#[derive(Debug, Clone, Copy)]
pub struct Commit<'a> {
    /// Consumer group id.
    pub group: &'a str,
    /// Kafka topic.
    pub topic: &'a str,
    /// Partitions of the topic (those without a stored row hold the low watermark back).
    pub partition_count: i32,
    /// Per-partition offsets to check and advance.
    pub partitions: &'a [PartitionProgress],
    /// Every window table with the contribution to merge into it (possibly empty): each table's
    /// trend is refreshed for the merged rows and its rows are finalized up to the low watermark.
    pub merges: &'a [(&'a MergeTable, &'a RecordBatch)],
    /// Per merge (same order), the largest final horizon (see [`MySqlSink::final_horizons`]) under
    /// which the engine's lateness verdicts for that contribution hold: a table whose final rows
    /// reach further refuses the commit with [`CommitOutcome::Stale`]. Missing entries (or
    /// `i64::MAX`) check nothing.
    pub guards: &'a [i64],
}

/// Result of [`MySqlSink::commit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    /// The transaction committed.
    Committed {
        /// Contribution rows merged, across tables.
        rows: u64,
        /// Rows that became final in this commit, across tables.
        finalized: u64,
        /// The topic-wide low watermark the commit finalized up to (`i64::MAX`: everything).
        low_watermark: Option<i64>,
    },
    /// Nothing was written: the stored offsets of these partitions differ from `expected_offset`
    /// (another consumer owns them now). The caller must drop its state for them and reload.
    Fenced {
        /// Partitions whose stored offset did not match.
        partitions: Vec<i32>,
    },
    /// Nothing was written: rows some contribution merges into were made final (by another
    /// replica, or by a commit the engine had not taken in) after the engine judged its trades, so
    /// trades it took as on time belong to final rows. The caller judges them again against these
    /// horizons (one per merge, see [`MySqlSink::final_horizons`]) and commits again.
    Stale {
        /// Per merge, the end of the latest final window (`None`: no final row).
        horizons: Vec<Option<i64>>,
    },
}

/// A contribution row MySQL refused with a data error (found by [`MySqlSink::find_bad_rows`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRow {
    /// Row index in the batch.
    pub row: usize,
    /// The server error code (e.g. 1406 data too long).
    pub code: u16,
    /// The server's message.
    pub message: String,
}

impl MySqlSink {
    /// Connects to `url` (`mysql://user:pass@host:port/db`), creating database `db` if missing,
    /// and reads `max_allowed_packet`. Every pooled session uses `time_zone = '+00:00'` and utf8mb4.
    pub async fn connect(url: &str) -> Result<Self, SinkError> {
        let opts = tls::opts_from_url(url)?;
        let endpoint = format!(
            "{}@{}:{} ({})",
            opts.user().unwrap_or(""),
            opts.ip_or_hostname(),
            opts.tcp_port(),
            tls::describe(&opts)
        );
        let connecting = |e| connect_error(&endpoint, e);
        if let Some(db) = opts.db_name().filter(|d| !d.is_empty()) {
            let no_db = OptsBuilder::from_opts(opts.clone()).db_name(None::<String>);
            let mut conn = mysql_async::Conn::new(no_db).await.map_err(connecting)?;
            create_database(&mut conn, db).await?;
            // Best effort: the database exists either way.
            let _ = conn.disconnect().await;
        }
        let opts = OptsBuilder::from_opts(opts).setup(vec![
            "SET NAMES utf8mb4",
            "SET time_zone = '+00:00'",
            // The string escaping relies on backslash escapes being enabled, and merge-on-write on
            // MySQL's left-to-right `ON DUPLICATE KEY UPDATE` (MariaDB's SIMULTANEOUS_ASSIGNMENT off).
            // Strict whatever the server's global mode: a value that does not fit is an error
            // (isolated to its trades), never a silent truncation.
            "SET sql_mode = CONCAT(REPLACE(REPLACE(@@sql_mode, 'NO_BACKSLASH_ESCAPES', ''), \
             'SIMULTANEOUS_ASSIGNMENT', ''), ',STRICT_ALL_TABLES')",
        ]);
        let pool = Pool::new(opts);
        let mut conn = pool.get_conn().await.map_err(connecting)?;
        let max_allowed_packet = max_allowed_packet(&mut conn).await?;
        drop(conn);
        tracing::info!(%endpoint, max_allowed_packet, "connected to MySQL");
        Ok(MySqlSink {
            pool,
            max_allowed_packet,
            max_stmt_bytes: max_allowed_packet
                .saturating_sub(PACKET_MARGIN)
                .clamp(PACKET_MARGIN, DEFAULT_MAX_STATEMENT_BYTES),
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

    /// Reads the stored offset and max event time of one partition.
    pub async fn load_partition(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Result<PartitionSnapshot, SinkError> {
        let ctx = || format!("loading {group}/{topic}/{partition}");
        let mut conn = self
            .pool
            .get_conn()
            .await
            .map_err(SinkError::mysql(ctx()))?;
        let row: Option<Row> = conn
            .exec_first(
                "SELECT next_offset, max_event_ms FROM tw_offsets \
                 WHERE group_id = ? AND topic = ? AND kpartition = ?",
                (group, topic, partition),
            )
            .await
            .map_err(SinkError::mysql(ctx()))?;
        Ok(match row {
            Some(row) => {
                let (n, m): (i64, Option<i64>) = from_row(row, "tw_offsets")?;
                PartitionSnapshot {
                    next_offset: Some(n),
                    max_event_ms: m,
                }
            }
            None => PartitionSnapshot::default(),
        })
    }

    /// Claims this database's window tables for `group` on `topic` (the `tw_owner` row, written
    /// once), or refuses with [`SinkError::OwnedByAnother`] when another group or topic owns them:
    /// their offsets in `tw_offsets` are another group's, so this one would count every trade again.
    /// A database from before `tw_owner` is claimed only if `tw_offsets` holds no other group's rows.
    pub async fn claim_owner(&self, group: &str, topic: &str) -> Result<(), SinkError> {
        let ctx = || format!("claiming the window tables for {group}/{topic} (tw_owner)");
        let mut conn = self
            .pool
            .get_conn()
            .await
            .map_err(SinkError::mysql(ctx()))?;
        conn.exec_drop(
            "INSERT IGNORE INTO tw_owner (id, group_id, topic, claimed_at) \
             SELECT 1, ?, ?, UTC_TIMESTAMP(3) FROM DUAL WHERE NOT EXISTS \
             (SELECT 1 FROM tw_offsets WHERE group_id <> ? OR topic <> ?)",
            (group, topic, group, topic),
        )
        .await
        .map_err(SinkError::mysql(ctx()))?;
        let owner: Option<(String, String)> = conn
            .exec_first("SELECT group_id, topic FROM tw_owner WHERE id = 1", ())
            .await
            .map_err(SinkError::mysql(ctx()))?;
        let owner = match owner {
            Some(o) => Some(o),
            None => conn
                .exec_first(
                    "SELECT group_id, topic FROM tw_offsets WHERE group_id <> ? OR topic <> ? LIMIT 1",
                    (group, topic),
                )
                .await
                .map_err(SinkError::mysql(ctx()))?,
        };
        match owner {
            Some((g, t)) if g != group || t != topic => Err(SinkError::OwnedByAnother {
                owner_group: g,
                owner_topic: t,
                group: group.to_string(),
                topic: topic.to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// Hands the window tables to a new run of a source whose log starts empty every time (the
    /// demo's embedded cluster): forgets the ownership and stored offsets of earlier groups named
    /// `<prefix>...`, whose log no longer exists. Their window rows stay (they counted other trades).
    pub async fn release_ephemeral_groups(&self, prefix: &str) -> Result<(), SinkError> {
        let ctx = || format!("releasing the groups {prefix}*");
        let mut conn = self
            .pool
            .get_conn()
            .await
            .map_err(SinkError::mysql(ctx()))?;
        for table in ["tw_owner", "tw_offsets"] {
            conn.exec_drop(
                format!("DELETE FROM {table} WHERE group_id LIKE CONCAT(?, '%')"),
                (prefix,),
            )
            .await
            .map_err(SinkError::mysql(ctx()))?;
        }
        Ok(())
    }

    /// The exactly-once commit, in ONE `READ COMMITTED` transaction:
    /// 1. advance every partition's stored offset by compare-and-set (`UPDATE ... WHERE next_offset =
    ///    expected`, or insert-if-absent); any mismatch rolls back and returns [`CommitOutcome::Fenced`];
    /// 2. merge each table's contribution into its rows ([`MergeTable`]);
    /// 3. read the topic-wide low watermark from `tw_offsets` and mark the rows it closes final,
    ///    each with its trend against the previous window (provisional rows carry no trend: it
    ///    compares closed windows);
    /// 4. repair the trend of final rows a correction changed, of rows late trades created, and of
    ///    their final successors (flagged rows only: usually none).
    pub async fn commit(&self, c: &Commit<'_>) -> Result<CommitOutcome, SinkError> {
        let mut opts = TxOpts::default();
        opts.with_isolation_level(IsolationLevel::ReadCommitted);
        let mut tx = self
            .pool
            .start_transaction(opts)
            .await
            .map_err(SinkError::mysql("starting the commit transaction"))?;
        let fenced = advance_offsets(&mut tx, c).await?;
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
        let mut buf = String::with_capacity(4096);
        let mut rows = 0u64;
        let started = std::time::Instant::now();
        for (table, batch) in c.merges {
            rows += self.merge_batch(&mut tx, table, batch, &mut buf).await?;
        }
        let merged = started.elapsed();
        if let Some(horizons) = stale_horizons(&mut tx, c).await? {
            tracing::info!(
                group = c.group,
                topic = c.topic,
                ?horizons,
                "commit refused: rows it merges into became final since its trades were judged"
            );
            tx.rollback()
                .await
                .map_err(SinkError::mysql("rolling back a stale commit"))?;
            return Ok(CommitOutcome::Stale { horizons });
        }
        let low_watermark = low_watermark(&mut tx, c).await?;
        let mut finalized = 0;
        if let Some(low) = low_watermark {
            for (table, _) in c.merges {
                finalized += finalize(&mut tx, table, low, &mut buf).await?;
            }
        }
        let finalized_at = started.elapsed();
        for (table, _) in c.merges {
            refresh_trend(&mut tx, table, &mut buf).await?;
        }
        let trended = started.elapsed();
        tx.commit()
            .await
            .map_err(SinkError::mysql("committing the exactly-once transaction"))?;
        tracing::debug!(
            group = c.group,
            topic = c.topic,
            rows,
            finalized,
            ?low_watermark,
            offsets = ?c
                .partitions
                .iter()
                .map(|p| (p.partition, p.expected_offset, p.next_offset))
                .collect::<Vec<_>>(),
            merge_ms = merged.as_millis() as u64,
            finalize_ms = (finalized_at - merged).as_millis() as u64,
            trend_ms = (trended - finalized_at).as_millis() as u64,
            commit_ms = (started.elapsed() - trended).as_millis() as u64,
            "committed"
        );
        Ok(CommitOutcome::Committed {
            rows,
            finalized,
            low_watermark,
        })
    }

    /// Per table, the end of its latest final window (`None`: no final row yet): every trade of a
    /// window ending at or before it is a correction to a final row (or too late), whatever its own
    /// partition's watermark says. The engine judges lateness against it from start-up on.
    pub async fn final_horizons(
        &self,
        tables: &[MergeTable],
    ) -> Result<Vec<Option<i64>>, SinkError> {
        let mut conn = self
            .pool
            .get_conn()
            .await
            .map_err(SinkError::mysql("reading the final horizons"))?;
        let refs: Vec<&MergeTable> = tables.iter().collect();
        read_horizons(&mut conn, &refs).await
    }

    /// Finds the rows of `batch` that MySQL refuses with a data error when merged into `table`
    /// (e.g. 1406 data too long after a column was narrowed): bisects the batch under savepoints in a
    /// transaction that is always rolled back. Other errors are returned as they are.
    pub async fn find_bad_rows(
        &self,
        table: &MergeTable,
        batch: &RecordBatch,
    ) -> Result<Vec<BadRow>, SinkError> {
        let mut tx = self
            .pool
            .start_transaction(TxOpts::default())
            .await
            .map_err(SinkError::mysql("starting a probe transaction"))?;
        let mut bad = Vec::new();
        let mut stack = vec![(0usize, batch.num_rows())];
        let mut buf = String::new();
        while let Some((start, len)) = stack.pop() {
            if len == 0 {
                continue;
            }
            let part = batch.slice(start, len);
            tx.query_drop("SAVEPOINT tw_probe")
                .await
                .map_err(SinkError::mysql("probing rows"))?;
            match self.merge_batch(&mut tx, table, &part, &mut buf).await {
                Ok(_) => {}
                Err(e) if e.is_data_error() => {
                    tx.query_drop("ROLLBACK TO SAVEPOINT tw_probe")
                        .await
                        .map_err(SinkError::mysql("probing rows"))?;
                    if len == 1 {
                        bad.push(BadRow {
                            row: start,
                            code: e.server_code().unwrap_or(0),
                            message: e.server_message().unwrap_or_default(),
                        });
                    } else {
                        stack.push((start + len / 2, len - len / 2));
                        stack.push((start, len / 2));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        tx.rollback()
            .await
            .map_err(SinkError::mysql("rolling back the probe"))?;
        bad.sort_by_key(|b| b.row);
        Ok(bad)
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

impl MySqlSink {
    /// Merges `batch` into `table` as chunked `INSERT ... ON DUPLICATE KEY UPDATE` statements.
    async fn merge_batch<Q: Queryable>(
        &self,
        q: &mut Q,
        table: &MergeTable,
        batch: &RecordBatch,
        buf: &mut String,
    ) -> Result<u64, SinkError> {
        if batch.num_rows() == 0 {
            return Ok(0);
        }
        let suffix = table.upsert_suffix()?;
        let mut chunker = chunk::Chunker::with_suffix(
            &table.name,
            batch,
            &suffix,
            self.max_stmt_rows,
            self.max_stmt_bytes,
        )?;
        while chunker.next_statement(buf)? > 0 {
            q.query_drop(buf.as_str())
                .await
                .map_err(SinkError::mysql(format!("merging into `{}`", table.name)))?;
        }
        Ok(batch.num_rows() as u64)
    }
}

/// The error of a failed connection to `endpoint`; when the server refuses the login, it says what to
/// check (the password is never shown).
fn connect_error(endpoint: &str, e: mysql_async::Error) -> SinkError {
    let denied = matches!(&e, mysql_async::Error::Server(s) if s.code == 1045);
    let context = if denied {
        format!(
            "connecting to {endpoint} (check the user and password in --mysql-url / \
             TRADEWIND_MYSQL_URL)"
        )
    } else {
        format!("connecting to {endpoint}")
    };
    SinkError::Mysql { context, source: e }
}

/// Creates database `db` (utf8mb4, binary collation) unless it exists. It looks first, so a user with
/// rights on an existing database only does not need CREATE.
async fn create_database(conn: &mut mysql_async::Conn, db: &str) -> Result<(), SinkError> {
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
    Ok(())
}

/// The server's `max_allowed_packet` (4 MiB, MySQL's default, if it cannot be read as a number).
async fn max_allowed_packet(conn: &mut mysql_async::Conn) -> Result<usize, SinkError> {
    let v: Option<Row> = conn
        .query_first("SELECT @@max_allowed_packet")
        .await
        .map_err(SinkError::mysql("reading max_allowed_packet"))?;
    Ok(v.and_then(|r| r.get_opt::<u64, _>(0).and_then(Result::ok))
        .map_or(4 << 20, |v| usize::try_from(v).unwrap_or(usize::MAX)))
}

/// Step 1 of [`MySqlSink::commit`]: compare-and-set of every partition's offset. Returns the fenced
/// partitions (empty when every partition was advanced).
async fn advance_offsets(tx: &mut Transaction<'_>, c: &Commit<'_>) -> Result<Vec<i32>, SinkError> {
    let mut fenced = Vec::new();
    for p in c.partitions {
        let status = p.status as u8;
        match p.expected_offset {
            Some(expected) => {
                tx.exec_drop(
                    "UPDATE tw_offsets SET next_offset = ?, \
                     max_event_ms = COALESCE(?, max_event_ms), \
                     watermark_ms = COALESCE(?, watermark_ms), status = ?, \
                     commits = commits + 1, updated_at = UTC_TIMESTAMP(3) \
                     WHERE group_id = ? AND topic = ? AND kpartition = ? AND next_offset = ?",
                    (
                        p.next_offset,
                        p.max_event_ms,
                        p.watermark_ms,
                        status,
                        c.group,
                        c.topic,
                        p.partition,
                        expected,
                    ),
                )
                .await
                .map_err(SinkError::mysql("advancing tw_offsets"))?;
                if tx.affected_rows() != 1 {
                    fenced.push(p.partition);
                }
            }
            None => {
                let r = tx
                    .exec_drop(
                        "INSERT INTO tw_offsets (group_id, topic, kpartition, next_offset, \
                         max_event_ms, watermark_ms, status, commits, updated_at) \
                         VALUES (?, ?, ?, ?, ?, ?, ?, 1, UTC_TIMESTAMP(3))",
                        (
                            c.group,
                            c.topic,
                            p.partition,
                            p.next_offset,
                            p.max_event_ms,
                            p.watermark_ms,
                            status,
                        ),
                    )
                    .await
                    .map_err(SinkError::mysql("inserting tw_offsets"));
                match r {
                    Ok(()) => {}
                    Err(e) if e.server_code() == Some(1062) => fenced.push(p.partition),
                    Err(e) => return Err(e),
                }
            }
        }
        if !fenced.is_empty() {
            break; // the transaction rolls back anyway
        }
    }
    Ok(fenced)
}

/// Step 4 of [`MySqlSink::commit`]: the topic-wide low watermark, from every partition's stored
/// row. `None` while the partition count is unknown (0), some partition has no row or an active
/// partition has no watermark yet;
/// `i64::MAX` when every partition is drained.
async fn low_watermark(tx: &mut Transaction<'_>, c: &Commit<'_>) -> Result<Option<i64>, SinkError> {
    let row: Option<Row> = tx
        .exec_first(
            "SELECT COUNT(*), COALESCE(SUM(status = 0), 0), \
             MIN(CASE WHEN status = 0 THEN watermark_ms END), \
             COALESCE(SUM(status = 0 AND watermark_ms IS NULL), 0), MAX(watermark_ms), \
             COALESCE(SUM(status = 2), 0) \
             FROM tw_offsets WHERE group_id = ? AND topic = ? AND kpartition < ?",
            (c.group, c.topic, c.partition_count),
        )
        .await
        .map_err(SinkError::mysql("reading the low watermark"))?;
    let Some(row) = row else { return Ok(None) };
    let (count, active, active_min, active_unknown, max, drained): (
        i64,
        i64,
        Option<i64>,
        i64,
        Option<i64>,
        i64,
    ) = from_row(row, "tw_offsets")?;
    Ok(
        // An unknown partition count (0) makes nothing final: the partitions seen are not all.
        if c.partition_count <= 0 || count < i64::from(c.partition_count) || active_unknown > 0 {
            None
        } else if active > 0 {
            active_min
        } else if drained == count {
            Some(i64::MAX)
        } else {
            max
        },
    )
}

/// The end of each table's latest final window, in one statement. Read inside a commit after its
/// merges, no lock is needed: a replica finalizing a row this commit merged into waits for the
/// row's lock, so it finalizes the row with this contribution in it; one that finalized it before
/// has committed, and this read sees it.
async fn read_horizons<Q: Queryable>(
    q: &mut Q,
    tables: &[&MergeTable],
) -> Result<Vec<Option<i64>>, SinkError> {
    if tables.is_empty() {
        return Ok(Vec::new());
    }
    let parts: Vec<String> = tables
        .iter()
        .map(|t| {
            format!(
                "(SELECT TIMESTAMPDIFF(MICROSECOND, '1970-01-01', MAX(`window_start`)) DIV 1000 FROM {} WHERE `is_final` = 1)",
                merge::quoted(&t.name)
            )
        })
        .collect();
    let sql = format!("SELECT {}", parts.join(", "));
    let row: Option<Row> = q
        .query_first(sql)
        .await
        .map_err(SinkError::mysql("reading the final horizons"))?;
    let Some(row) = row else {
        return Ok(vec![None; tables.len()]);
    };
    let mut out = Vec::with_capacity(tables.len());
    for (i, t) in tables.iter().enumerate() {
        let start: Option<i64> = row.get_opt(i).and_then(|v| v.ok()).flatten();
        out.push(start.map(|s| s.saturating_add(t.window_ms)));
    }
    Ok(out)
}

/// The final horizons of the merged tables when one of them is past the commit's guard for it
/// (the commit must not go on); `None` when every guard holds (or there are none).
async fn stale_horizons(
    tx: &mut Transaction<'_>,
    c: &Commit<'_>,
) -> Result<Option<Vec<Option<i64>>>, SinkError> {
    let guarded = c
        .merges
        .iter()
        .zip(c.guards)
        .any(|((_, b), g)| *g != i64::MAX && b.num_rows() > 0);
    if !guarded {
        return Ok(None);
    }
    let tables: Vec<&MergeTable> = c.merges.iter().map(|(t, _)| *t).collect();
    let horizons = read_horizons(tx, &tables).await?;
    let stale = horizons
        .iter()
        .zip(c.guards)
        .zip(c.merges)
        .any(|((h, g), (_, b))| b.num_rows() > 0 && h.is_some_and(|h| h > *g));
    Ok(stale.then_some(horizons))
}

/// Relative difference under which two windows' trend values count as equal (`flat`).
pub const TREND_TOLERANCE: f64 = 1e-9;

/// The SQL pieces of a table's trend: the previous-window join and the up/down/flat expression.
struct TrendSql<'a> {
    table: &'a MergeTable,
    /// The quoted table name.
    t: String,
    /// The quoted flag column.
    flag: String,
    /// The quoted trend column.
    column: String,
    /// The quoted compared value column.
    value: String,
}

impl<'a> TrendSql<'a> {
    fn new(table: &'a MergeTable, trend: &Trend) -> Self {
        TrendSql {
            table,
            t: merge::quoted(&table.name),
            flag: merge::quoted(&trend.stale),
            column: merge::quoted(&trend.column),
            value: merge::quoted(&trend.value),
        }
    }

    /// Join condition: `b` is the window right after `a` (same keys).
    fn next_of(&self, a: &str, b: &str) -> String {
        let keys = self
            .table
            .key_columns()
            .map(|k| {
                let k = merge::quoted(k);
                format!("{a}.{k} = {b}.{k}")
            })
            .collect::<Vec<_>>()
            .join(" AND ");
        format!(
            "{keys} AND {a}.`window_start` = {b}.`window_start` - INTERVAL {} MICROSECOND",
            self.table.window_ms.saturating_mul(1000)
        )
    }

    /// The trend of row `c` against its previous window `p` (NULL without one). Values within a
    /// relative [`TREND_TOLERANCE`] of each other are `flat`: a flat market's VWAP differs in its
    /// last bits with summation order, which differs between replica layouts.
    fn case(&self, c: &str, p: &str) -> String {
        let v = &self.value;
        format!(
            "CASE WHEN {p}.{v} IS NULL THEN NULL \
             WHEN ABS({c}.{v} - {p}.{v}) <= {TREND_TOLERANCE:e} * GREATEST(ABS({c}.{v}), ABS({p}.{v})) \
             THEN 'flat' WHEN {c}.{v} > {p}.{v} THEN 'up' ELSE 'down' END"
        )
    }
}

/// Marks the rows of `table` whose window ends at or before `low` final, computing the trend of
/// each against its previous window in the same statement (the previous window closes first, or in
/// the same statement; the join's shared lock on it orders this against a replica correcting it).
/// Returns how many rows became final.
async fn finalize(
    tx: &mut Transaction<'_>,
    table: &MergeTable,
    low: i64,
    buf: &mut String,
) -> Result<u64, SinkError> {
    buf.clear();
    buf.push_str("UPDATE ");
    buf.push_str(&merge::quoted(&table.name));
    buf.push_str(" c");
    if let Some(trend) = &table.trend {
        let sql = TrendSql::new(table, trend);
        buf.push_str(&format!(
            " LEFT JOIN {} p ON {} SET c.{} = {},",
            sql.t,
            sql.next_of("p", "c"),
            sql.column,
            sql.case("c", "p")
        ));
    } else {
        buf.push_str(" SET");
    }
    buf.push_str(" c.`is_final` = 1");
    if table.columns.iter().any(|(n, _)| n == "updated_at") {
        buf.push_str(", c.`updated_at` = UTC_TIMESTAMP(3)");
    }
    buf.push_str(" WHERE c.`is_final` = 0");
    if low != i64::MAX {
        buf.push_str(" AND c.`window_start` <= ");
        encode::write_datetime_ms(low.saturating_sub(table.window_ms), buf)?;
    }
    tx.query_drop(buf.as_str())
        .await
        .map_err(SinkError::mysql(format!("finalizing `{}`", table.name)))?;
    Ok(tx.affected_rows())
}

/// Step 5 of [`MySqlSink::commit`]: the rare trend repairs. Rows flagged `trend_stale = 1` (a final
/// row merged into by a correction, or a row created by late trades, possibly behind a final
/// successor) get the trend of the final ones recomputed, and so do their final successors; then
/// the flags are cleared. The rows read are locked first (`FOR UPDATE`), so a concurrent replica
/// merging into a previous window either commits first (and this read sees it) or waits for this
/// transaction (and then refreshes the successor itself). Range-driven statements on the flag's
/// index: no key lists.
async fn refresh_trend(
    tx: &mut Transaction<'_>,
    table: &MergeTable,
    buf: &mut String,
) -> Result<(), SinkError> {
    let Some(trend) = &table.trend else {
        return Ok(());
    };
    let sql = TrendSql::new(table, trend);
    let (t, flag, column) = (&sql.t, &sql.flag, &sql.column);
    // Most commits flag nothing: one indexed probe.
    let flagged: Option<i64> = tx
        .query_first(format!("SELECT 1 FROM {t} WHERE {flag} = 1 LIMIT 1"))
        .await
        .map_err(SinkError::mysql(format!(
            "probing stale trends of `{}`",
            table.name
        )))?;
    if flagged.is_none() {
        return Ok(());
    }
    let statements = [
        // Lock the flagged rows, their previous and their next windows.
        format!(
            "SELECT 1 FROM {t} c LEFT JOIN {t} p ON {} WHERE c.{flag} = 1 FOR UPDATE",
            sql.next_of("p", "c")
        ),
        format!(
            "SELECT 1 FROM {t} c JOIN {t} n ON {} WHERE c.{flag} = 1 AND n.`is_final` = 1 FOR UPDATE",
            sql.next_of("c", "n")
        ),
        format!(
            "UPDATE {t} c LEFT JOIN {t} p ON {} SET c.{column} = {} WHERE c.{flag} = 1 AND c.`is_final` = 1",
            sql.next_of("p", "c"),
            sql.case("c", "p")
        ),
        format!(
            "UPDATE {t} n JOIN {t} c ON {} SET n.{column} = {} WHERE c.{flag} = 1 AND n.`is_final` = 1",
            sql.next_of("c", "n"),
            sql.case("n", "c")
        ),
        format!("UPDATE {t} SET {flag} = 0 WHERE {flag} = 1"),
    ];
    for statement in statements {
        buf.clear();
        buf.push_str(&statement);
        tx.query_drop(buf.as_str())
            .await
            .map_err(SinkError::mysql(format!(
                "refreshing trends of `{}`",
                table.name
            )))?;
    }
    Ok(())
}

fn from_row<T: mysql_async::prelude::FromRow>(row: Row, what: &str) -> Result<T, SinkError> {
    mysql_async::from_row_opt(row).map_err(|e| {
        SinkError::ValueOutOfRange(format!("unexpected row shape read from {what}: {e}"))
    })
}
