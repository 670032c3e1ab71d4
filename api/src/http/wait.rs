//! Waiting for the views to catch up: with a command's own change (read your writes),
//! with `?min_version=`, with `Prefer: wait=N` and for SSE streams. Woken by the
//! projectors' announcements, polling as a fallback for changes made by other processes.

use std::time::Duration;

use projections::{queries, StreamView};
use tokio::time::Instant;
use uuid::Uuid;

use super::ApiError;
use crate::AppState;

/// How often a waiter rereads its view without an announcement: changes made by another
/// process are not announced here.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// The view of `id` once `ready` holds for it, or its latest state (maybe none) when
/// `timeout` passes first.
pub async fn view_until<V: StreamView>(
    state: &AppState,
    id: Uuid,
    timeout: Duration,
    ready: impl Fn(&V) -> bool,
) -> Result<Option<V>, ApiError> {
    let deadline = Instant::now() + timeout;
    let watch = state.waiters.watch(V::NAME, id);
    loop {
        let seen = watch.announced();
        let view = queries::get::<V>(&state.store, id).await?;
        if view.as_ref().is_some_and(&ready) || Instant::now() >= deadline {
            return Ok(view);
        }
        watch.changed(seen, deadline.min(Instant::now() + POLL_INTERVAL)).await;
    }
}

/// The view of `id` at `version` or later, waiting up to the read-your-writes timeout.
pub async fn view_at<V: StreamView>(state: &AppState, id: Uuid, version: i64) -> Result<Option<V>, ApiError> {
    view_until::<V>(state, id, state.config.read_your_write_timeout, |view| view.version() >= version).await
}
