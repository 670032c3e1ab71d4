//! Keeps the tables free of dead row versions, and the log's pages marked all-visible
//! (PostgreSQL).
//!
//! A view row, a checkpoint, the saga's record of a driver or an outbox row is rewritten
//! many times a minute, and on PostgreSQL each rewrite leaves a dead version behind until a
//! vacuum. Autovacuum's defaults (a pass a minute, once a fifth of a table changed), or a
//! server that runs with autovacuum off, let them pile up: every lookup then walks past
//! them, and the latency of dispatch grows with the age of the process. The append-only
//! log needs a pass too, as autovacuum gives it after inserts: until its new pages are
//! marked all-visible, its readers slow down as it grows. The active worker vacuums these
//! tables itself, skipping any another session holds.

use std::time::Duration;

use tokio::sync::watch;

use crate::{error_chain, Db, Store, StoreError};

/// The tables the worker vacuums: the log and its snapshots, and every table updated in place.
pub const VACUUMED: &[&str] = &[
    "events",
    "snapshots",
    "checkpoints",
    "saga_drivers",
    "saga_dispatches",
    "driver_views",
    "call_views",
    "assignment_views",
    "notifications",
];

/// Vacuums [`VACUUMED`]; whether there was anything to do on this backend (SQLite
/// rewrites its rows in place and leaves no dead versions).
pub async fn vacuum_tables(store: &Store) -> Result<bool, StoreError> {
    let Db::Postgres(pool) = store.db() else {
        return Ok(false);
    };
    // The simple protocol: VACUUM refuses to run inside a transaction block.
    let statement = format!("VACUUM (SKIP_LOCKED) {}", VACUUMED.join(", "));
    sqlx::raw_sql(&statement).execute(pool).await?;
    Ok(true)
}

/// Vacuums every `interval` until `shutdown` turns true; a failed pass is logged and the
/// next one comes at its time.
pub async fn run_vacuum(store: Store, interval: Duration, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        match vacuum_tables(&store).await {
            Ok(_) => metrics::counter!("drivercenter_vacuum_passes_total").increment(1),
            Err(error) => tracing::warn!(error = %error_chain(&error), "vacuum of the tables failed"),
        }
    }
}
