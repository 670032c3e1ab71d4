//! The two SQL backends behind one type. SQL that both understand is written once and
//! run on either pool through [`on_db!`](crate::on_db) and [`on_tx!`](crate::on_tx).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Postgres, Sqlite, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::StoreError;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// The channel the events table's trigger notifies on every commit.
pub(crate) const APPEND_CHANNEL: &str = "drivercenter_events";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// An open transaction on either backend.
#[derive(Debug)]
pub enum Tx {
    Sqlite(SqliteTx),
    Postgres(Transaction<'static, Postgres>),
}

/// A SQLite transaction and the process's turn to write (see [`Store::begin`](crate::Store::begin)).
#[derive(Debug)]
pub struct SqliteTx {
    tx: Transaction<'static, Sqlite>,
    _turn: OwnedMutexGuard<()>,
}

impl std::ops::Deref for SqliteTx {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for SqliteTx {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.tx
    }
}

/// Runs `$body` with `$pool` bound to whichever pool `$db` holds; the body is compiled
/// once per backend, so its SQL must suit both.
#[macro_export]
macro_rules! on_db {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::Db::Sqlite($pool) => $body,
            $crate::Db::Postgres($pool) => $body,
        }
    };
}

/// Like [`on_db!`], with `$conn` bound to the connection of an open [`Tx`].
#[macro_export]
macro_rules! on_tx {
    ($tx:expr, $conn:ident => $body:expr) => {
        match $tx {
            $crate::Tx::Sqlite(tx) => {
                let $conn = &mut **tx;
                $body
            }
            $crate::Tx::Postgres(tx) => {
                let $conn = &mut **tx;
                $body
            }
        }
    };
}

impl Db {
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // An accepted call must survive a power cut, not only a process crash.
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true);
            // No ping before each use (see below); a file has no connection to lose.
            let pool =
                SqlitePoolOptions::new().max_connections(8).test_before_acquire(false).connect_with(options).await?;
            Ok(Self::Sqlite(pool))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            // A ping before each use would double the round trips of most queries. A
            // connection lost meanwhile fails its next query instead, which every caller
            // already treats as a passing failure, and the pool then replaces it.
            // Generic plans for every prepared statement: each query here finds rows by
            // key, and a plan made for one key's value can be far worse for the others
            // (the stream of a driver with a long history made the planner scan the whole
            // table for its few events after a snapshot). It also saves planning time.
            let options = PgConnectOptions::from_str(url)?.options([("plan_cache_mode", "force_generic_plan")]);
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(5))
                .test_before_acquire(false)
                .connect_with(options)
                .await?;
            Ok(Self::Postgres(pool))
        } else {
            Err(StoreError::UnsupportedUrl(url.to_string()))
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Self::Sqlite(_) => Backend::Sqlite,
            Self::Postgres(_) => Backend::Postgres,
        }
    }

    fn migrator(&self) -> &'static Migrator {
        match self {
            Self::Sqlite(_) => &SQLITE_MIGRATIONS,
            Self::Postgres(_) => &POSTGRES_MIGRATIONS,
        }
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = self.migrator();
        on_db!(self, pool => migrator.run(pool).await?);
        Ok(())
    }

    /// How many of this build's migrations the database lacks; an error when it does
    /// not answer.
    pub async fn pending_migrations(&self) -> Result<usize, StoreError> {
        let applied: Vec<i64> = on_db!(self, pool => {
            let table: Option<String> = sqlx::query_scalar(match self.backend() {
                Backend::Sqlite => "SELECT name FROM sqlite_master WHERE name = '_sqlx_migrations'",
                Backend::Postgres => "SELECT to_regclass('_sqlx_migrations')::text",
            })
            .fetch_optional(pool)
            .await?
            .flatten();
            match table {
                Some(_) => sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success").fetch_all(pool).await?,
                None => Vec::new(),
            }
        });
        Ok(self.migrator().iter().filter(|migration| !applied.contains(&migration.version)).count())
    }

    /// Begins a transaction; on SQLite once `turn` is this caller's.
    pub(crate) async fn begin(&self, turn: &Arc<Mutex<()>>) -> Result<Tx, StoreError> {
        Ok(match self {
            Self::Sqlite(pool) => {
                let turn = turn.clone().lock_owned().await;
                Tx::Sqlite(SqliteTx { tx: pool.begin().await?, _turn: turn })
            }
            Self::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        })
    }

    pub async fn close(&self) {
        on_db!(self, pool => pool.close().await);
    }
}

impl Tx {
    pub fn backend(&self) -> Backend {
        match self {
            Self::Sqlite(_) => Backend::Sqlite,
            Self::Postgres(_) => Backend::Postgres,
        }
    }

    pub async fn commit(self) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(tx) => tx.tx.commit().await?,
            Self::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }
}

/// Hands every notification on `channel` (from any process) to `deliver`, and `None`
/// after a reconnect, since notifications sent meanwhile are lost. Reconnects after a lost
/// connection; ends when the pool closes or `deliver` returns false.
pub(crate) async fn listen(pool: PgPool, channel: &'static str, mut deliver: impl FnMut(Option<&str>) -> bool) {
    loop {
        let listener = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(channel).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = match listener.await {
            Ok(listener) => listener,
            Err(error) if pool.is_closed() => {
                tracing::debug!(%error, channel, "pool closed; no longer listening");
                return;
            }
            Err(error) => {
                tracing::warn!(%error, channel, "cannot listen; polling until reconnected");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        loop {
            let delivered = match listener.try_recv().await {
                Ok(notification) => deliver(notification.as_ref().map(|notification| notification.payload())),
                Err(_) if pool.is_closed() => return,
                Err(error) => {
                    tracing::warn!(%error, channel, "lost the notification channel");
                    break;
                }
            };
            if !delivered || pool.is_closed() {
                return;
            }
        }
    }
}
