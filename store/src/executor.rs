//! Runs a command against an aggregate: load its events, let it decide, append what it
//! decided with the command's metadata. Optimistic-concurrency conflicts are retried on
//! fresh state: every command is re-validated from scratch, so a retry can never apply
//! a decision made on stale facts.

use std::time::Duration;

use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::{EventStoreAggregateContext, PersistedEventStore};
use cqrs_es::{Aggregate, AggregateError, EventStore};
use postgres_es::PostgresEventRepository;
use sqlite_es::SqliteEventRepository;
use thiserror::Error;
use uuid::Uuid;

use crate::{CommandMeta, Db, Store, StoreError};

/// How often a command is tried when other writers keep winning the race.
const MAX_ATTEMPTS: u32 = 8;

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

impl Store {
    /// Runs `command` on aggregate `id`, retrying conflicts a bounded number of times.
    pub async fn execute<A>(
        &self,
        id: Uuid,
        command: A::Command,
        meta: &CommandMeta,
    ) -> Result<Committed, CommandError<A::Error>>
    where
        A: Aggregate<Services = ()>,
        A::Command: Clone + Send + Sync,
    {
        let id = id.to_string();
        for attempt in 1..=MAX_ATTEMPTS {
            let outcome = match self.db() {
                Db::Sqlite(pool) => {
                    let store = PersistedEventStore::<_, A>::new_event_store(SqliteEventRepository::new(pool.clone()));
                    execute_once(&store, &id, command.clone(), meta).await
                }
                Db::Postgres(pool) => {
                    let store =
                        PersistedEventStore::<_, A>::new_event_store(PostgresEventRepository::new(pool.clone()));
                    execute_once(&store, &id, command.clone(), meta).await
                }
            };
            match outcome {
                Ok(committed) => {
                    if committed.appended > 0 {
                        self.notify_appended();
                    }
                    return Ok(committed);
                }
                Err(AggregateError::AggregateConflict) => {
                    tracing::debug!(aggregate = A::TYPE, %id, attempt, "version conflict; retrying");
                    metrics::counter!("drivercenter_command_conflicts_total", "aggregate" => A::TYPE).increment(1);
                    tokio::time::sleep(Duration::from_millis(u64::from(attempt * attempt))).await;
                }
                Err(AggregateError::UserError(rejection)) => return Err(CommandError::Rejected(rejection)),
                Err(other) => return Err(CommandError::Store(StoreError::from_aggregate(other))),
            }
        }
        Err(CommandError::Conflict)
    }

    /// The aggregate's current state and version, from all of its events.
    pub async fn load<A>(&self, id: Uuid) -> Result<(A, i64), StoreError>
    where
        A: Aggregate<Services = ()>,
    {
        let id = id.to_string();
        let context = match self.db() {
            Db::Sqlite(pool) => {
                PersistedEventStore::<_, A>::new_event_store(SqliteEventRepository::new(pool.clone()))
                    .load_aggregate(&id)
                    .await
            }
            Db::Postgres(pool) => {
                PersistedEventStore::<_, A>::new_event_store(PostgresEventRepository::new(pool.clone()))
                    .load_aggregate(&id)
                    .await
            }
        }
        .map_err(StoreError::from_aggregate)?;
        Ok((context.aggregate, sequence_as_version(context.current_sequence)))
    }
}

fn sequence_as_version(sequence: usize) -> i64 {
    i64::try_from(sequence).unwrap_or(i64::MAX)
}

async fn execute_once<A, ES>(
    store: &ES,
    id: &str,
    command: A::Command,
    meta: &CommandMeta,
) -> Result<Committed, AggregateError<A::Error>>
where
    A: Aggregate<Services = ()>,
    ES: EventStore<A, AC = EventStoreAggregateContext<A>>,
{
    let mut context = store.load_aggregate(id).await?;
    let sink = EventSink::default();
    context.aggregate.handle(command, &(), &sink).await.map_err(AggregateError::UserError)?;
    let events = sink.collect().await;
    let before = context.current_sequence;
    if events.is_empty() {
        return Ok(Committed { version: sequence_as_version(before), appended: 0 });
    }
    let committed = store.commit(events, context, meta.to_map()).await?;
    Ok(Committed { version: sequence_as_version(before + committed.len()), appended: committed.len() })
}
