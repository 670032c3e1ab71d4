//! The event store: one log of every aggregate's events over SQLite (the embedded
//! default) or PostgreSQL, with a global, gap-safe order that subscribers read forward
//! from their own checkpoints. Commands run on cached or snapshotted state and their
//! appends share commits (see `executor` and `append`).
//!
//! Knows the domain's aggregates and events but nothing of HTTP, the saga or views.

mod append;
mod cache;
mod db;
mod error;
mod executor;
mod leader;
mod log;
mod metadata;
mod vacuum;
mod worker;

pub mod checkpoint;
pub mod idempotency;
#[cfg(feature = "testing")]
pub mod testing;

pub use db::{Backend, Db, Tx};
pub use error::StoreError;
pub use executor::{CommandError, Committed, Stored};
pub use leader::Leadership;
pub use log::{AnyEvent, LogPosition, LoggedEvent};
pub use metadata::{event_id, CommandMeta};
pub use vacuum::{run_vacuum, vacuum_tables, VACUUMED};
pub use worker::{run_worker, Worker};

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::append::Appender;
use crate::cache::AggregateCache;

/// An error with all of its causes, for logs: `outer: inner: root`.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// How a store is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// Aggregates whose latest state is kept in memory; 0 reads every state from the
    /// database.
    pub aggregate_cache: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self { aggregate_cache: 10_000 }
    }
}

/// The store, its writer and its wake-up signal; cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Db,
    appended: Arc<watch::Sender<u64>>,
    appender: Arc<Appender>,
    cache: Arc<AggregateCache>,
    /// SQLite has one writer at a time. Its own busy wait sleeps up to 100 ms between
    /// tries, so the process's writers (transactions and the appender) take turns here,
    /// in order, instead.
    sqlite_turn: Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("backend", &self.db.backend()).finish()
    }
}

impl Store {
    /// Opens `sqlite://path` (created when missing) or `postgres://…`. On PostgreSQL a
    /// background task LISTENs for appends made by any process.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, StoreOptions::default()).await
    }

    pub async fn connect_with(url: &str, options: StoreOptions) -> Result<Self, StoreError> {
        let db = Db::connect(url).await?;
        let (appended, _) = watch::channel(0);
        let sqlite_turn = Arc::new(tokio::sync::Mutex::new(()));
        let store = Self {
            appender: Arc::new(Appender::start(db.clone(), sqlite_turn.clone())),
            sqlite_turn,
            cache: Arc::new(AggregateCache::new(options.aggregate_cache)),
            db,
            appended: Arc::new(appended),
        };
        let appended = Arc::downgrade(&store.appended);
        store.listen(db::APPEND_CHANNEL, move |_| match appended.upgrade() {
            Some(sender) => {
                sender.send_modify(|count| *count = count.wrapping_add(1));
                true
            }
            None => false,
        });
        Ok(store)
    }

    /// On PostgreSQL, hands each notification on `channel`, from any process, to
    /// `deliver` (`None` after a reconnect, when some may have been missed) until it
    /// returns false or the store closes. The embedded store has no other process to hear.
    pub fn listen(&self, channel: &'static str, deliver: impl FnMut(Option<&str>) -> bool + Send + 'static) {
        if let Db::Postgres(pool) = &self.db {
            tokio::spawn(db::listen(pool.clone(), channel, deliver));
        }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn backend(&self) -> Backend {
        self.db.backend()
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.db.migrate().await
    }

    /// Whether the database answers and every migration this build knows is applied.
    pub async fn is_ready(&self) -> bool {
        matches!(self.db.pending_migrations().await, Ok(0))
    }

    /// On SQLite, this process's turn to write, for a statement outside a transaction
    /// (a transaction from [`Store::begin`] takes it itself); `None` on PostgreSQL.
    pub async fn write_turn(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        match self.db {
            Db::Sqlite(_) => Some(self.sqlite_turn.clone().lock_owned().await),
            Db::Postgres(_) => None,
        }
    }

    pub async fn begin(&self) -> Result<Tx, StoreError> {
        self.db.begin(&self.sqlite_turn).await
    }

    /// A receiver that changes after every append this process makes or, on PostgreSQL,
    /// hears of. Subscribers wait on it and poll as a fallback.
    pub fn appended(&self) -> watch::Receiver<u64> {
        self.appended.subscribe()
    }

    pub(crate) fn notify_appended(&self) {
        self.appended.send_modify(|count| *count = count.wrapping_add(1));
    }

    /// Waits until something is appended, `poll` passes, or `shutdown` fires.
    pub async fn wait_for_append(
        appended: &mut watch::Receiver<u64>,
        poll: Duration,
        shutdown: &mut watch::Receiver<bool>,
    ) {
        tokio::select! {
            _ = appended.changed() => {}
            _ = tokio::time::sleep(poll) => {}
            _ = shutdown.changed() => {}
        }
    }

    pub async fn close(&self) {
        self.db.close().await;
    }
}
