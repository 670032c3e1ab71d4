//! The global log: every aggregate's events in one order that all readers agree on.
//!
//! SQLite writes one transaction at a time, so its `position` (assigned by a trigger in
//! the writing transaction) is already commit order. PostgreSQL hands out positions at
//! insert while transactions commit in any order: a reader that trusted positions alone
//! could pass an event whose transaction commits late and never see it. So each row also
//! records its writing transaction, readers order by (transaction, position), and they
//! never read at or past the oldest transaction still in flight
//! (`pg_snapshot_xmin(pg_current_snapshot())`).

use cqrs_es::Aggregate;
use domain::{Assignment, AssignmentEvent, Call, CallEvent, Driver, DriverEvent};
use serde::{Deserialize, Serialize};
use std::sync::LazyLock;

use serde_json::Value;
use sqlx::Row;
use uuid::Uuid;

use crate::{metadata, CommandMeta, Db, Store, StoreError, Tx};

/// A place in the log. `commit` orders transactions (PostgreSQL's transaction id; the
/// same field holds EventStoreDB's commit position), `prepare` orders events within and
/// across them. Comparing (commit, prepare) gives the global order on every backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LogPosition {
    pub commit: i64,
    pub prepare: i64,
}

impl LogPosition {
    pub const START: Self = Self { commit: 0, prepare: 0 };
}

/// One event as it stands in the log.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedEvent {
    pub position: LogPosition,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
    pub metadata: CommandMeta,
}

/// A decoded event of any aggregate.
#[derive(Debug, Clone, PartialEq)]
pub enum AnyEvent {
    Call(CallEvent),
    Driver(DriverEvent),
    Assignment(AssignmentEvent),
    /// An aggregate this build does not know; readers skip it.
    Unknown,
}

impl LoggedEvent {
    pub fn event_id(&self) -> Uuid {
        metadata::event_id(&self.aggregate_type, &self.aggregate_id, self.sequence)
    }

    /// The aggregate id as a UUID; every aggregate of this system is keyed by one.
    pub fn aggregate_uuid(&self) -> Option<Uuid> {
        Uuid::parse_str(&self.aggregate_id).ok()
    }

    pub fn decode(&self) -> Result<AnyEvent, StoreError> {
        let corrupt = |source| StoreError::CorruptEvent {
            aggregate_type: self.aggregate_type.clone(),
            aggregate_id: self.aggregate_id.clone(),
            sequence: self.sequence,
            source,
        };
        let payload = self.payload.clone();
        Ok(match self.aggregate_type.as_str() {
            Call::TYPE => AnyEvent::Call(serde_json::from_value(payload).map_err(corrupt)?),
            Driver::TYPE => AnyEvent::Driver(serde_json::from_value(payload).map_err(corrupt)?),
            Assignment::TYPE => AnyEvent::Assignment(serde_json::from_value(payload).map_err(corrupt)?),
            _ => AnyEvent::Unknown,
        })
    }

    /// The payload without the enum tag that wraps it in storage.
    pub fn payload_body(&self) -> &Value {
        match &self.payload {
            Value::Object(map) if map.len() == 1 => map.values().next().unwrap_or(&self.payload),
            other => other,
        }
    }
}

const SQLITE_COLUMNS: &str = "0 AS commit_position, position AS prepare_position, \
    aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata";
const POSTGRES_COLUMNS: &str = "transaction_id::text::bigint AS commit_position, position AS prepare_position, \
    aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata";

/// `$1` is the commit position (text, unused on SQLite), `$2` the prepare position,
/// `$3` the limit.
static SQLITE_AFTER: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {SQLITE_COLUMNS} FROM events WHERE position > $2 ORDER BY position LIMIT $3"));
static POSTGRES_AFTER: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {POSTGRES_COLUMNS} FROM events \
         WHERE (transaction_id, position) > ($1::text::xid8, $2) \
           AND transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
         ORDER BY transaction_id, position LIMIT $3"
    )
});
static SQLITE_CORRELATED: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {SQLITE_COLUMNS} FROM events WHERE json_extract(metadata, '$.correlation_id') = $1 ORDER BY position"
    )
});
static POSTGRES_CORRELATED: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {POSTGRES_COLUMNS} FROM events WHERE metadata ->> 'correlation_id' = $1 ORDER BY transaction_id, position"
    )
});
/// Decodes rows of either backend; the column types are the same on both.
macro_rules! decode_rows {
    ($rows:expr) => {
        $rows
            .iter()
            .map(|row| {
                let aggregate_type: String = row.try_get("aggregate_type")?;
                let aggregate_id: String = row.try_get("aggregate_id")?;
                let sequence: i64 = row.try_get("sequence")?;
                let metadata: Value = row.try_get("metadata")?;
                let metadata = serde_json::from_value(metadata).map_err(|source| StoreError::CorruptEvent {
                    aggregate_type: aggregate_type.clone(),
                    aggregate_id: aggregate_id.clone(),
                    sequence,
                    source,
                })?;
                Ok(LoggedEvent {
                    position: LogPosition {
                        commit: row.try_get("commit_position")?,
                        prepare: row.try_get("prepare_position")?,
                    },
                    aggregate_type,
                    aggregate_id,
                    sequence,
                    event_type: row.try_get("event_type")?,
                    event_version: row.try_get("event_version")?,
                    payload: row.try_get("payload")?,
                    metadata,
                })
            })
            .collect::<Result<Vec<LoggedEvent>, StoreError>>()
    };
}

/// Reads up to `limit` events after `after`, in global order, on any executor.
macro_rules! read_after {
    ($conn:expr, $sql:expr, $after:expr, $limit:expr) => {{
        let rows = sqlx::query($sql)
            .bind($after.commit.to_string())
            .bind($after.prepare)
            .bind(i64::try_from($limit).unwrap_or(i64::MAX))
            .fetch_all($conn)
            .await?;
        decode_rows!(rows)
    }};
}

impl Store {
    /// Up to `limit` events after `after`, in global order.
    pub async fn read_after(&self, after: LogPosition, limit: usize) -> Result<Vec<LoggedEvent>, StoreError> {
        match self.db() {
            Db::Sqlite(pool) => read_after!(pool, SQLITE_AFTER.as_str(), after, limit),
            Db::Postgres(pool) => read_after!(pool, POSTGRES_AFTER.as_str(), after, limit),
        }
    }

    /// Every event whose correlation id is `correlation_id`, from every aggregate, in
    /// global order.
    pub async fn read_correlated(&self, correlation_id: Uuid) -> Result<Vec<LoggedEvent>, StoreError> {
        let id = correlation_id.to_string();
        match self.db() {
            Db::Sqlite(pool) => decode_rows!(sqlx::query(&SQLITE_CORRELATED).bind(id).fetch_all(pool).await?),
            Db::Postgres(pool) => decode_rows!(sqlx::query(&POSTGRES_CORRELATED).bind(id).fetch_all(pool).await?),
        }
    }
}

impl Tx {
    /// Like [`Store::read_after`], inside this transaction.
    pub async fn read_after(&mut self, after: LogPosition, limit: usize) -> Result<Vec<LoggedEvent>, StoreError> {
        match self {
            Tx::Sqlite(tx) => read_after!(&mut **tx, SQLITE_AFTER.as_str(), after, limit),
            Tx::Postgres(tx) => read_after!(&mut **tx, POSTGRES_AFTER.as_str(), after, limit),
        }
    }
}

const SQLITE_HEAD: &str = "SELECT 0, position FROM events ORDER BY position DESC LIMIT 1";
/// Qualified: a bare `transaction_id` in the ORDER BY would name the cast output column,
/// and sorting by that expression scans the whole log instead of reading its index.
const POSTGRES_HEAD: &str = "SELECT transaction_id::text::bigint, position FROM events \
    ORDER BY events.transaction_id DESC, events.position DESC LIMIT 1";

impl Store {
    /// The position of the last committed event, ignoring the visibility horizon: where a
    /// reader stands once everything committed so far is visible to it.
    pub async fn head(&self) -> Result<Option<LogPosition>, StoreError> {
        let sql = match self.backend() {
            crate::Backend::Sqlite => SQLITE_HEAD,
            crate::Backend::Postgres => POSTGRES_HEAD,
        };
        let head: Option<(i64, i64)> = crate::on_db!(self.db(), pool => {
            sqlx::query_as(sql).fetch_optional(pool).await?
        });
        Ok(head.map(|(commit, prepare)| LogPosition { commit, prepare }))
    }

    /// How many events the log holds.
    pub async fn count_events(&self) -> Result<u64, StoreError> {
        let count: i64 = crate::on_db!(self.db(), pool => {
            sqlx::query_scalar("SELECT COUNT(*) FROM events").fetch_one(pool).await?
        });
        Ok(u64::try_from(count).unwrap_or(0))
    }
}

#[cfg(feature = "testing")]
impl Store {
    /// PostgreSQL's plan for [`Store::head`] with sequential scans ruled out, so that the
    /// plan shows whether the index serves the order.
    pub async fn head_plan(&self) -> Result<String, StoreError> {
        let Db::Postgres(pool) = self.db() else {
            return Err(StoreError::EventStore("query plans are PostgreSQL's".into()));
        };
        let mut tx = pool.begin().await?;
        sqlx::query("SET LOCAL enable_seqscan = off").execute(&mut *tx).await?;
        let lines: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN {POSTGRES_HEAD}")).fetch_all(&mut *tx).await?;
        Ok(lines.join("\n"))
    }
}
