//! The store's one error type: failures of the infrastructure, never of a rule.

use cqrs_es::AggregateError;
use thiserror::Error;

/// An infrastructure failure: the database is unreachable, a row is corrupt, a
/// migration failed. Never a reason the caller can act on.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("migration failed")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database url `{0}`: use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    #[error("stored event {aggregate_type}/{aggregate_id}#{sequence} cannot be read")]
    CorruptEvent {
        aggregate_type: String,
        aggregate_id: String,
        sequence: i64,
        #[source]
        source: serde_json::Error,
    },
    #[error("stored document cannot be read")]
    CorruptDocument(#[from] serde_json::Error),
    #[error("event store failure: {0}")]
    EventStore(String),
}

impl StoreError {
    /// Unwraps what the event-store libraries boxed, so that a database failure stays
    /// a [`StoreError::Database`] and can be told apart from a corrupt stream.
    pub(crate) fn from_aggregate<E: std::error::Error>(error: AggregateError<E>) -> Self {
        match error {
            AggregateError::DatabaseConnectionError(inner) | AggregateError::UnexpectedError(inner) => {
                match inner.downcast::<sqlx::Error>() {
                    Ok(database) => Self::Database(*database),
                    Err(other) => Self::EventStore(other.to_string()),
                }
            }
            other => Self::EventStore(other.to_string()),
        }
    }

    /// Whether the database could not be reached (rather than refused or corrupt): worth
    /// a retry a little later.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Database(
                sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_)
            )
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Error)]
    #[error("never")]
    struct Never;

    #[test]
    fn a_pool_timeout_inside_the_event_store_is_an_unavailable_database() {
        let error =
            StoreError::from_aggregate(AggregateError::<Never>::UnexpectedError(Box::new(sqlx::Error::PoolTimedOut)));
        assert!(error.is_unavailable(), "{error:?}");
    }

    #[test]
    fn a_corrupt_stream_is_not_an_unavailable_database() {
        let error = StoreError::from_aggregate(AggregateError::<Never>::DeserializationError(Box::new(Never)));
        assert!(!error.is_unavailable(), "{error:?}");
    }
}
