//! One active worker per database: a PostgreSQL session advisory lock, held on a
//! connection of its own for as long as the worker runs.
//!
//! The lock lives and dies with that connection's session, so a worker that crashes or
//! is killed loses it the moment the server sees the socket close, and a standby polling
//! for it takes over. A live holder checks its connection often: if the session is gone
//! it must stop acting at once, since another worker may already hold the lock.

use std::time::Duration;

use sqlx::postgres::PgConnection;
use sqlx::Connection;
use tokio::sync::watch;

use crate::{Db, Store, StoreError};

/// The advisory lock key of the worker role (advisory locks are per database).
const WORKER_LOCK_KEY: i64 = 0x6472_6976_6572_6331; // "driverc1"

/// How often a standby asks for the lock.
pub const STANDBY_POLL: Duration = Duration::from_millis(250);

/// How often the holder checks that its session, and so the lock, still exists.
const HOLDER_CHECK: Duration = Duration::from_millis(500);

/// The right to run the workers. On PostgreSQL the held lock (dropping it closes the
/// session, which releases the lock); the embedded store belongs to one process anyway.
#[derive(Debug)]
pub enum Leadership {
    Embedded,
    Postgres(PgConnection),
}

impl Store {
    /// Waits until this process holds the worker lock, or returns `None` once `shutdown`
    /// turns true. Errors (the database is down) are retried: a standby waits them out.
    pub async fn acquire_leadership(&self, shutdown: &mut watch::Receiver<bool>) -> Option<Leadership> {
        let Db::Postgres(pool) = self.db() else {
            return Some(Leadership::Embedded);
        };
        let mut standby_logged = false;
        while !*shutdown.borrow() {
            let attempt = async {
                let mut connection = pool.acquire().await?.detach();
                let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                    .bind(WORKER_LOCK_KEY)
                    .fetch_one(&mut connection)
                    .await?;
                Ok::<_, sqlx::Error>(held.then_some(connection))
            };
            match attempt.await {
                Ok(Some(connection)) => return Some(Leadership::Postgres(connection)),
                Ok(None) if !standby_logged => {
                    tracing::info!("another worker is active; standing by");
                    standby_logged = true;
                }
                Ok(None) => {}
                Err(error) => tracing::warn!(error = %crate::error_chain(&error), "cannot ask for the worker lock"),
            }
            tokio::select! {
                _ = tokio::time::sleep(STANDBY_POLL) => {}
                _ = shutdown.changed() => {}
            }
        }
        None
    }
}

impl Leadership {
    /// Resolves when the lock's session is gone (the connection failed or the server
    /// ended it): from then on another worker may be active.
    pub async fn lost(&mut self) -> StoreError {
        let Self::Postgres(connection) = self else {
            return std::future::pending().await;
        };
        loop {
            tokio::time::sleep(HOLDER_CHECK).await;
            let check = tokio::time::timeout(HOLDER_CHECK * 4, connection.ping()).await;
            match check {
                Ok(Ok(())) => {}
                Ok(Err(error)) => return StoreError::Database(error),
                Err(_) => return StoreError::Database(sqlx::Error::PoolTimedOut),
            }
        }
    }

    /// Gives the lock up for the next worker.
    pub async fn release(self) {
        if let Self::Postgres(connection) = self {
            let _ = connection.close().await;
        }
    }
}
