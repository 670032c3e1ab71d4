//! Group commit. Appends that arrive while another write is in flight share the next
//! one: a single statement (one round trip, one commit) on PostgreSQL, one transaction
//! on SQLite. Each append keeps its own all-or-nothing outcome: a shared write that
//! fails is written again one append at a time, so only the stale append is refused and
//! every other one commits.

use std::sync::Arc;
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::postgres::PgConnection;
use sqlx::sqlite::SqliteConnection;
use sqlx::{Connection, Postgres, Sqlite};
use tokio::sync::{mpsc, oneshot, Mutex};

use crate::{Db, StoreError};

/// The most appends one write carries.
const MAX_BATCH: usize = 256;

/// Appends waiting for the writer; a full queue makes callers wait.
const QUEUE: usize = 4096;

/// How long the writer keeps its connection without an append to write.
const RELEASE_AFTER: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub(crate) struct NewEvent {
    pub aggregate_type: &'static str,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: String,
    pub metadata: String,
}

/// An aggregate's state after `version` events, stored with the append that reached it.
#[derive(Debug)]
pub(crate) struct NewSnapshot {
    pub aggregate_type: &'static str,
    pub aggregate_id: String,
    pub version: i64,
    pub format: i32,
    pub state: String,
}

/// One command's events: all of them are stored, or none.
#[derive(Debug)]
pub(crate) struct Append {
    pub events: Vec<NewEvent>,
    pub snapshot: Option<NewSnapshot>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Appended {
    Stored,
    /// Another writer stored an event at one of these sequences first.
    Conflict,
}

type Pending = (Append, oneshot::Sender<Result<Appended, StoreError>>);

/// The handle on the store's writer task; the task ends when the last handle is dropped.
#[derive(Debug)]
pub(crate) struct Appender {
    queue: mpsc::Sender<Pending>,
}

impl Appender {
    pub(crate) fn start(db: Db, sqlite_turn: Arc<Mutex<()>>) -> Self {
        let (queue, pending) = mpsc::channel(QUEUE);
        tokio::spawn(write_all(Writer { db, held: None, sqlite_turn }, pending));
        Self { queue }
    }

    pub(crate) async fn append(&self, append: Append) -> Result<Appended, StoreError> {
        let (done, outcome) = oneshot::channel();
        let closed = || StoreError::EventStore("the event writer has stopped".into());
        self.queue.send((append, done)).await.map_err(|_| closed())?;
        outcome.await.map_err(|_| closed())?
    }
}

async fn write_all(mut writer: Writer, mut pending: mpsc::Receiver<Pending>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let received = if writer.held.is_some() {
            match tokio::time::timeout(RELEASE_AFTER, pending.recv_many(&mut batch, MAX_BATCH)).await {
                Ok(received) => received,
                Err(_) => {
                    // Idle: the connection goes back, so that the pool can also close.
                    writer.held = None;
                    continue;
                }
            }
        } else {
            pending.recv_many(&mut batch, MAX_BATCH).await
        };
        if received == 0 {
            return;
        }
        metrics::histogram!("drivercenter_append_batch_size").record(batch.len() as f64);
        let appends: Vec<&Append> = batch.iter().map(|(append, _)| append).collect();
        match writer.write(&appends).await {
            Ok(()) => {
                for (_, done) in batch.drain(..) {
                    let _ = done.send(Ok(Appended::Stored));
                }
            }
            Err(error) if batch.len() == 1 => {
                let (_, done) = batch.remove(0);
                let _ = done.send(outcome_of(error));
            }
            Err(_) => {
                for (append, done) in batch.drain(..) {
                    let outcome = writer.write(&[&append]).await.map(|()| Appended::Stored).or_else(outcome_of);
                    let _ = done.send(outcome);
                }
            }
        }
    }
}

fn outcome_of(error: StoreError) -> Result<Appended, StoreError> {
    match &error {
        StoreError::Database(sqlx::Error::Database(database)) if database.is_unique_violation() => {
            Ok(Appended::Conflict)
        }
        _ => Err(error),
    }
}

/// The writer's own connection, kept between writes while appends keep coming: the pool
/// tests every connection it takes back with a round trip of its own, which would double
/// the cost of a write.
struct Writer {
    db: Db,
    held: Option<AnyConnection>,
    sqlite_turn: Arc<Mutex<()>>,
}

enum AnyConnection {
    Sqlite(PoolConnection<Sqlite>),
    Postgres(PoolConnection<Postgres>),
}

impl Writer {
    async fn write(&mut self, appends: &[&Append]) -> Result<(), StoreError> {
        let connection = match self.held.take() {
            Some(connection) => connection,
            None => match &self.db {
                Db::Sqlite(pool) => AnyConnection::Sqlite(pool.acquire().await?),
                Db::Postgres(pool) => AnyConnection::Postgres(pool.acquire().await?),
            },
        };
        // A connection that failed goes back to the pool, which tests it; the next write
        // takes another.
        let (connection, written) = write(connection, appends, &self.sqlite_turn).await;
        if written.is_ok() {
            self.held = Some(connection);
        }
        written
    }
}

async fn write(
    mut connection: AnyConnection,
    appends: &[&Append],
    sqlite_turn: &Mutex<()>,
) -> (AnyConnection, Result<(), StoreError>) {
    let written = match &mut connection {
        AnyConnection::Postgres(connection) => write_postgres(connection, appends).await,
        AnyConnection::Sqlite(connection) => {
            let _turn = sqlite_turn.lock().await;
            write_sqlite(connection, appends).await
        }
    };
    (connection, written)
}

async fn write_postgres(connection: &mut PgConnection, appends: &[&Append]) -> Result<(), StoreError> {
    let events = || appends.iter().flat_map(|append| &append.events);
    let snapshots = || appends.iter().filter_map(|append| append.snapshot.as_ref());
    sqlx::query(POSTGRES_APPEND)
        .bind(events().map(|event| event.aggregate_type).collect::<Vec<_>>())
        .bind(events().map(|event| event.aggregate_id.as_str()).collect::<Vec<_>>())
        .bind(events().map(|event| event.sequence).collect::<Vec<_>>())
        .bind(events().map(|event| event.event_type.as_str()).collect::<Vec<_>>())
        .bind(events().map(|event| event.event_version.as_str()).collect::<Vec<_>>())
        .bind(events().map(|event| event.payload.as_str()).collect::<Vec<_>>())
        .bind(events().map(|event| event.metadata.as_str()).collect::<Vec<_>>())
        .bind(snapshots().map(|snapshot| snapshot.aggregate_type).collect::<Vec<_>>())
        .bind(snapshots().map(|snapshot| snapshot.aggregate_id.as_str()).collect::<Vec<_>>())
        .bind(snapshots().map(|snapshot| snapshot.version).collect::<Vec<_>>())
        .bind(snapshots().map(|snapshot| snapshot.format).collect::<Vec<_>>())
        .bind(snapshots().map(|snapshot| snapshot.state.as_str()).collect::<Vec<_>>())
        .execute(connection)
        .await?;
    Ok(())
}

async fn write_sqlite(connection: &mut SqliteConnection, appends: &[&Append]) -> Result<(), StoreError> {
    let mut tx = connection.begin().await?;
    for event in appends.iter().flat_map(|append| &append.events) {
        sqlx::query(SQLITE_APPEND_EVENT)
            .bind(event.aggregate_type)
            .bind(&event.aggregate_id)
            .bind(event.sequence)
            .bind(&event.event_type)
            .bind(&event.event_version)
            .bind(&event.payload)
            .bind(&event.metadata)
            .execute(&mut *tx)
            .await?;
    }
    for snapshot in appends.iter().filter_map(|append| append.snapshot.as_ref()) {
        sqlx::query(SQLITE_SAVE_SNAPSHOT)
            .bind(snapshot.aggregate_type)
            .bind(&snapshot.aggregate_id)
            .bind(snapshot.version)
            .bind(snapshot.format)
            .bind(&snapshot.state)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Events and snapshots in one statement, so in one implicit transaction: the snapshots
/// commit only with the events they follow.
const POSTGRES_APPEND: &str = "\
WITH appended AS (
    INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
    SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, payload::json, metadata::json
    FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[])
        AS e(aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
    RETURNING 1
)
INSERT INTO snapshots (aggregate_type, aggregate_id, version, format, state)
SELECT aggregate_type, aggregate_id, version, format, state::json
FROM unnest($8::text[], $9::text[], $10::bigint[], $11::integer[], $12::text[])
    AS s(aggregate_type, aggregate_id, version, format, state)
ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE
    SET version = excluded.version, format = excluded.format, state = excluded.state
    WHERE snapshots.version < excluded.version";

const SQLITE_APPEND_EVENT: &str = "INSERT INTO events \
    (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
    VALUES ($1, $2, $3, $4, $5, $6, $7)";

const SQLITE_SAVE_SNAPSHOT: &str = "INSERT INTO snapshots (aggregate_type, aggregate_id, version, format, state) \
    VALUES ($1, $2, $3, $4, $5) \
    ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE \
    SET version = excluded.version, format = excluded.format, state = excluded.state \
    WHERE snapshots.version < excluded.version";
