//! Runs a command against an aggregate: take its state, let it decide, append what it
//! decided with the command's metadata and the version it decided on.
//!
//! The state comes from the in-process cache when it holds the aggregate, otherwise from
//! its latest snapshot and the events after it. A cached state may trail the stream when
//! another process wrote to it, so nothing is concluded from it without proof: an append
//! proves it (a stale version fails on the stream's primary key and the command runs
//! again on the events it missed); a rejection or a no-op is checked against the events
//! after the cached version before it is answered. Every retry re-validates the command
//! from scratch, so no decision is ever applied on stale facts.

use std::time::Duration;

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use sqlx::Row;
use thiserror::Error;
use uuid::Uuid;

use crate::append::{Append, Appended, NewEvent, NewSnapshot};
use crate::{on_db, Backend, CommandMeta, Store, StoreError};

/// How often a command is tried when other writers keep winning the race.
const MAX_ATTEMPTS: u32 = 8;

/// A snapshot is stored each time a stream passes a multiple of this many events, so a
/// load reads at most this many events after it.
const SNAPSHOT_EVERY: i64 = 100;

/// The shape of stored snapshots. Raise it when an aggregate's state or `apply` changes:
/// snapshots of another format are ignored and the stream is read from its start.
const SNAPSHOT_FORMAT: i32 = 1;

/// What a successful command left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// The aggregate's version (its last sequence) after the command.
    pub version: i64,
    /// How many events the command appended; 0 when it changed nothing.
    pub appended: usize,
}

#[derive(Debug, Error)]
pub enum CommandError<E: std::error::Error> {
    /// The aggregate refused the command.
    #[error(transparent)]
    Rejected(E),
    /// Other writers changed the aggregate on every attempt.
    #[error("the aggregate kept changing underneath the command")]
    Conflict,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An aggregate the store can run commands on.
pub trait Stored: Aggregate<Services = ()> + Clone + 'static {}

impl<A: Aggregate<Services = ()> + Clone + 'static> Stored for A {}

/// A state, its version, and whether it is known to be the stream's latest.
struct Known<A> {
    state: A,
    version: i64,
    latest: bool,
    /// More than [`SNAPSHOT_EVERY`] events were read to build it: the stream lacks a
    /// usable snapshot (written before snapshots, or of another format).
    long_tail: bool,
}

impl Store {
    /// Runs `command` on aggregate `id`, retrying conflicts a bounded number of times.
    pub async fn execute<A>(
        &self,
        id: Uuid,
        command: A::Command,
        meta: &CommandMeta,
    ) -> Result<Committed, CommandError<A::Error>>
    where
        A: Stored,
        A::Command: Clone,
    {
        self.run::<A>(&id.to_string(), command, meta, None).await
    }

    /// Like [`Store::execute`], for a command that starts the stream of a fresh id: the
    /// first attempt decides on an empty stream without reading it. Should the stream
    /// exist after all (a retried request), the append conflicts and the command runs
    /// again on what the stream holds.
    pub async fn create<A>(
        &self,
        id: Uuid,
        command: A::Command,
        meta: &CommandMeta,
    ) -> Result<Committed, CommandError<A::Error>>
    where
        A: Stored,
        A::Command: Clone,
    {
        self.execute_from::<A>(id, A::default(), 0, command, meta).await
    }

    /// Like [`Store::execute`], deciding first on `state` at `version` (say, folded from
    /// the log by a subscriber) instead of reading the stream. The state needs no trust:
    /// an append made from it proves it, and any other outcome is checked against the
    /// events after `version` before it is answered.
    pub async fn execute_from<A>(
        &self,
        id: Uuid,
        state: A,
        version: i64,
        command: A::Command,
        meta: &CommandMeta,
    ) -> Result<Committed, CommandError<A::Error>>
    where
        A: Stored,
        A::Command: Clone,
    {
        let known = Known { state, version, latest: false, long_tail: false };
        self.run::<A>(&id.to_string(), command, meta, Some(known)).await
    }

    /// The aggregate's current state and version, as stored.
    pub async fn load<A: Stored>(&self, id: Uuid) -> Result<(A, i64), StoreError> {
        let id = id.to_string();
        let known = match self.cache.get::<A>(A::TYPE, &id) {
            Some((state, version)) => self.catch_up(&id, state, version).await?,
            None => self.load_stored::<A>(&id).await?,
        };
        self.cache.put(A::TYPE, &id, known.state.clone(), known.version);
        Ok((known.state, known.version))
    }

    async fn run<A>(
        &self,
        id: &str,
        command: A::Command,
        meta: &CommandMeta,
        mut known: Option<Known<A>>,
    ) -> Result<Committed, CommandError<A::Error>>
    where
        A: Stored,
        A::Command: Clone,
    {
        for attempt in 1..=MAX_ATTEMPTS {
            let Known { state, version, latest, long_tail } = match known.take() {
                Some(known) => known,
                None => self.current::<A>(id).await?,
            };
            let mut next = state.clone();
            let sink = EventSink::default();
            let decided = next.handle(command.clone(), &(), &sink).await;
            let events = sink.collect().await;
            if !latest && (decided.is_err() || events.is_empty()) {
                // Only an append proves that the state was the latest.
                known = Some(self.catch_up(id, state, version).await?);
                continue;
            }
            decided.map_err(CommandError::Rejected)?;
            if events.is_empty() {
                return Ok(Committed { version, appended: 0 });
            }
            let appended = events.len();
            let reached = version + i64::try_from(appended).unwrap_or(i64::MAX);
            let snapshot = long_tail || reached / SNAPSHOT_EVERY > version / SNAPSHOT_EVERY;
            let append = new_append::<A>(id, version, events, meta, snapshot.then_some(&next))?;
            match self.appender.append(append).await {
                Ok(Appended::Stored) => {
                    self.cache.put(A::TYPE, id, next, reached);
                    self.notify_appended();
                    return Ok(Committed { version: reached, appended });
                }
                Ok(Appended::Conflict) => {
                    tracing::debug!(aggregate = A::TYPE, %id, attempt, "version conflict; retrying");
                    metrics::counter!("drivercenter_command_conflicts_total", "aggregate" => A::TYPE).increment(1);
                    self.cache.forget(A::TYPE, id);
                    if attempt > 1 {
                        // Writers racing on one aggregate: let the others finish.
                        tokio::time::sleep(Duration::from_millis(u64::from(attempt * attempt))).await;
                    }
                    known = Some(self.catch_up(id, state, version).await?);
                }
                Err(error) => {
                    // The write may or may not have committed.
                    self.cache.forget(A::TYPE, id);
                    return Err(CommandError::Store(error));
                }
            }
        }
        Err(CommandError::Conflict)
    }

    /// The cached state if there is one, otherwise the stored one.
    async fn current<A: Stored>(&self, id: &str) -> Result<Known<A>, StoreError> {
        if let Some((state, version)) = self.cache.get::<A>(A::TYPE, id) {
            return Ok(Known { state, version, latest: false, long_tail: false });
        }
        let known = self.load_stored::<A>(id).await?;
        self.cache.put(A::TYPE, id, known.state.clone(), known.version);
        Ok(known)
    }

    /// `state` at `version` with the events stored after it applied.
    async fn catch_up<A: Stored>(&self, id: &str, mut state: A, version: i64) -> Result<Known<A>, StoreError> {
        let rows = self.read_stream(STREAM_AFTER, A::TYPE, id, version).await?;
        let long_tail = rows.len() > SNAPSHOT_EVERY as usize;
        let mut version = version;
        for (sequence, payload) in rows {
            state.apply(decode_event::<A>(id, sequence, &payload)?);
            version = sequence;
        }
        Ok(Known { state, version, latest: true, long_tail })
    }

    /// The state from the latest snapshot and the events after it, in one read.
    async fn load_stored<A: Stored>(&self, id: &str) -> Result<Known<A>, StoreError> {
        let sql = match self.backend() {
            Backend::Sqlite => SQLITE_SNAPSHOT_AND_TAIL,
            Backend::Postgres => POSTGRES_SNAPSHOT_AND_TAIL,
        };
        let rows: Vec<(i32, i64, String)> = on_db!(self.db(), pool => {
            sqlx::query(sql)
                .bind(A::TYPE)
                .bind(id)
                .bind(SNAPSHOT_FORMAT)
                .fetch_all(pool)
                .await?
                .iter()
                .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
                .collect::<Result<_, sqlx::Error>>()?
        });
        let mut rows = rows.into_iter().peekable();
        let mut known = Known { state: A::default(), version: 0, latest: true, long_tail: false };
        if let Some((_, version, state)) = rows.next_if(|(snapshot, _, _)| *snapshot == 1) {
            match serde_json::from_str(&state) {
                Ok(state) => known = Known { state, version, latest: true, long_tail: false },
                Err(error) => {
                    tracing::warn!(aggregate = A::TYPE, %id, %error, "unreadable snapshot; reading the whole stream");
                    return self.catch_up(id, A::default(), 0).await;
                }
            }
        }
        known.long_tail = rows.len() > SNAPSHOT_EVERY as usize;
        for (_, sequence, payload) in rows {
            known.state.apply(decode_event::<A>(id, sequence, &payload)?);
            known.version = sequence;
        }
        Ok(known)
    }

    async fn read_stream(
        &self,
        sql: (&str, &str),
        aggregate_type: &str,
        id: &str,
        after: i64,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        let sql = match self.backend() {
            Backend::Sqlite => sql.0,
            Backend::Postgres => sql.1,
        };
        Ok(on_db!(self.db(), pool => {
            sqlx::query_as(sql).bind(aggregate_type).bind(id).bind(after).fetch_all(pool).await?
        }))
    }
}

#[cfg(feature = "testing")]
impl Store {
    /// The state from every event of the stream, ignoring snapshots and the cache.
    pub async fn load_from_events<A: Stored>(&self, id: Uuid) -> Result<(A, i64), StoreError> {
        let known = self.catch_up(&id.to_string(), A::default(), 0).await?;
        Ok((known.state, known.version))
    }

    /// The state from the latest snapshot and the events after it, ignoring the cache.
    pub async fn load_from_snapshot<A: Stored>(&self, id: Uuid) -> Result<(A, i64), StoreError> {
        let known = self.load_stored::<A>(&id.to_string()).await?;
        Ok((known.state, known.version))
    }

    /// The version of the aggregate's stored snapshot, if it has one.
    pub async fn snapshot_version<A: Stored>(&self, id: Uuid) -> Result<Option<i64>, StoreError> {
        Ok(on_db!(self.db(), pool => {
            sqlx::query_scalar("SELECT version FROM snapshots WHERE aggregate_type = $1 AND aggregate_id = $2")
                .bind(A::TYPE)
                .bind(id.to_string())
                .fetch_optional(pool)
                .await?
        }))
    }
}

/// The rows of a command's events after `version`, with a snapshot of `snapshot` (the
/// state they reach) when one is due.
fn new_append<A: Stored>(
    id: &str,
    version: i64,
    events: Vec<A::Event>,
    meta: &CommandMeta,
    snapshot: Option<&A>,
) -> Result<Append, StoreError> {
    let metadata = serde_json::to_string(&meta.to_map())?;
    let events = (version + 1..)
        .zip(events)
        .map(|(sequence, event)| {
            Ok(NewEvent {
                aggregate_type: A::TYPE,
                aggregate_id: id.to_string(),
                sequence,
                event_type: event.event_type(),
                event_version: event.event_version(),
                payload: serde_json::to_string(&event)?,
                metadata: metadata.clone(),
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let reached = version + i64::try_from(events.len()).unwrap_or(i64::MAX);
    let snapshot = snapshot
        .map(|state| {
            Ok::<_, StoreError>(NewSnapshot {
                aggregate_type: A::TYPE,
                aggregate_id: id.to_string(),
                version: reached,
                format: SNAPSHOT_FORMAT,
                state: serde_json::to_string(state)?,
            })
        })
        .transpose()?;
    Ok(Append { events, snapshot })
}

fn decode_event<A: Aggregate>(id: &str, sequence: i64, payload: &str) -> Result<A::Event, StoreError> {
    serde_json::from_str(payload).map_err(|source| StoreError::CorruptEvent {
        aggregate_type: A::TYPE.to_string(),
        aggregate_id: id.to_string(),
        sequence,
        source,
    })
}

/// `$1` aggregate type, `$2` id, `$3` snapshot format. The snapshot row (flag 1), if any,
/// comes first; then the events after it.
const SQLITE_SNAPSHOT_AND_TAIL: &str = "\
SELECT 1, version, state FROM snapshots WHERE aggregate_type = $1 AND aggregate_id = $2 AND format = $3
UNION ALL
SELECT 0, sequence, payload FROM events
WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > COALESCE(
    (SELECT version FROM snapshots WHERE aggregate_type = $1 AND aggregate_id = $2 AND format = $3), 0)
ORDER BY 2";

const POSTGRES_SNAPSHOT_AND_TAIL: &str = "\
SELECT 1, version, state::text FROM snapshots WHERE aggregate_type = $1 AND aggregate_id = $2 AND format = $3
UNION ALL
SELECT 0, sequence, payload::text FROM events
WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > COALESCE(
    (SELECT version FROM snapshots WHERE aggregate_type = $1 AND aggregate_id = $2 AND format = $3), 0)
ORDER BY 2";

/// `$1` aggregate type, `$2` id, `$3` the last sequence already applied.
const STREAM_AFTER: (&str, &str) = (
    "SELECT sequence, payload FROM events \
     WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3 ORDER BY sequence",
    "SELECT sequence, payload::text FROM events \
     WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3 ORDER BY sequence",
);
