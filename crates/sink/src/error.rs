//! The sink's error type, with a transient/permanent split for the engine's retry loop.

use mysql_async::{DriverError, Error as MyError};

/// Errors from the MySQL sink.
///
/// [`SinkError::is_transient`] tells the engine whether retrying the same work later (with backoff)
/// can succeed: lost connections, I/O errors, deadlocks and lock-wait timeouts are transient; bad input,
/// unsupported types and SQL errors are permanent.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The connection URL could not be parsed.
    #[error("invalid MySQL URL: {0}")]
    Url(String),
    /// A MySQL/MariaDB operation failed; `context` says what the sink was doing.
    #[error("MySQL error while {context}: {source}")]
    Mysql {
        /// What the sink was doing (e.g. "connecting to 127.0.0.1:3306", "upserting into asset_1m").
        context: String,
        /// The driver's or server's error.
        #[source]
        source: MyError,
    },
    /// A column's Arrow type has no SQL mapping in this sink.
    #[error("unsupported Arrow type {data_type} for column `{column}` of table `{table}`")]
    UnsupportedType {
        /// Target table.
        table: String,
        /// Column (field) name.
        column: String,
        /// The Arrow data type, displayed.
        data_type: String,
    },
    /// A table or column name cannot be used as an identifier (empty or containing NUL).
    #[error("invalid SQL identifier {0:?}")]
    InvalidIdentifier(String),
    /// A value cannot be represented in the target SQL type (e.g. a timestamp outside year 0..9999).
    #[error("value out of range: {0}")]
    ValueOutOfRange(String),
    /// One row's literal alone exceeds the statement size limit (`max_allowed_packet` minus a margin).
    #[error("a row of table `{table}` needs {bytes} bytes, more than the statement limit of {limit} bytes (max_allowed_packet)")]
    RowTooLarge {
        /// Target table.
        table: String,
        /// Size of the statement holding just this row.
        bytes: usize,
        /// The statement size limit.
        limit: usize,
    },
    /// A view's definition changed in a way its existing table cannot follow (keys, window).
    #[error(
        "view `{table}`: {change}; its table cannot be altered in place (the rows would merge into \
         the old definition's). Give the changed view a new name, or drain into a new database"
    )]
    ViewChanged {
        /// The view's table.
        table: String,
        /// What changed, from what to what.
        change: String,
    },
    /// The database's window tables belong to another consumer group or topic (`tw_owner`).
    #[error(
        "this database's window tables belong to consumer group `{owner_group}` on topic `{owner_topic}`; \
         running group `{group}` on topic `{topic}` into them would count every trade again. \
         To reprocess the topic, point --mysql-url at a new database; to go on, run with \
         --group {owner_group} --topic {owner_topic}"
    )]
    OwnedByAnother {
        /// The group that owns the tables.
        owner_group: String,
        /// The topic that owns the tables.
        owner_topic: String,
        /// The group asked for.
        group: String,
        /// The topic asked for.
        topic: String,
    },
}

/// Server error codes caused by the values of a row (see [`SinkError::is_data_error`]).
const DATA_SERVER_CODES: &[u16] = &[
    1048, // ER_BAD_NULL_ERROR: NULL into a NOT NULL column
    1264, // ER_WARN_DATA_OUT_OF_RANGE
    1265, // WARN_DATA_TRUNCATED
    1292, // ER_TRUNCATED_WRONG_VALUE (e.g. an invalid datetime)
    1366, // ER_TRUNCATED_WRONG_VALUE_FOR_FIELD (e.g. a bad string for the column's charset)
    1367, // ER_ILLEGAL_VALUE_FOR_TYPE
    1406, // ER_DATA_TOO_LONG
    1416, // ER_CANT_CREATE_GEOMETRY_OBJECT
    1690, // ER_DATA_OUT_OF_RANGE (arithmetic in a merge)
    3819, // ER_CHECK_CONSTRAINT_VIOLATED (MySQL)
    4025, // ER_CONSTRAINT_FAILED (MariaDB)
];

/// Server error codes after which a retry can succeed.
const TRANSIENT_SERVER_CODES: &[u16] = &[
    1040, // ER_CON_COUNT_ERROR: too many connections
    1053, // ER_SERVER_SHUTDOWN
    1158, // ER_NET_READ_ERROR
    1159, // ER_NET_READ_INTERRUPTED
    1160, // ER_NET_ERROR_ON_WRITE
    1161, // ER_NET_WRITE_INTERRUPTED
    1205, // ER_LOCK_WAIT_TIMEOUT
    1213, // ER_LOCK_DEADLOCK
    1317, // ER_QUERY_INTERRUPTED
    1927, // ER_CONNECTION_KILLED (MariaDB)
    2006, // CR_SERVER_GONE_ERROR
    2013, // CR_SERVER_LOST
    4031, // ER_CLIENT_INTERACTION_TIMEOUT
];

impl SinkError {
    /// True when the same operation may succeed if retried later: connection and I/O failures,
    /// deadlocks, lock-wait timeouts, server shutdown. False for input and schema errors.
    pub fn is_transient(&self) -> bool {
        match self {
            SinkError::Mysql { source, .. } => is_transient_mysql(source),
            _ => false,
        }
    }

    /// True for a permanent error caused by the values written (too long, out of range, wrong
    /// value, NULL into NOT NULL, constraint): the rows behind it must be set aside, not retried.
    pub fn is_data_error(&self) -> bool {
        self.server_code()
            .is_some_and(|c| DATA_SERVER_CODES.contains(&c))
    }

    /// The MySQL server's error message, if this is a server error.
    pub fn server_message(&self) -> Option<String> {
        match self {
            SinkError::Mysql {
                source: MyError::Server(e),
                ..
            } => Some(e.message.clone()),
            _ => None,
        }
    }

    /// The MySQL server error code, if this is a server error.
    pub fn server_code(&self) -> Option<u16> {
        match self {
            SinkError::Mysql {
                source: MyError::Server(e),
                ..
            } => Some(e.code),
            _ => None,
        }
    }

    pub(crate) fn mysql(context: impl Into<String>) -> impl FnOnce(MyError) -> SinkError {
        let context = context.into();
        move |source| SinkError::Mysql { context, source }
    }
}

fn is_transient_mysql(e: &MyError) -> bool {
    match e {
        MyError::Io(_) => true,
        MyError::Driver(d) => matches!(
            d,
            DriverError::ConnectionClosed | DriverError::PacketOutOfOrder
        ),
        MyError::Server(s) => TRANSIENT_SERVER_CODES.contains(&s.code),
        MyError::Other(_) | MyError::Url(_) => false,
    }
}
