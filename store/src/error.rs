//! The store's one error type: failures of the infrastructure, never of a rule.

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
