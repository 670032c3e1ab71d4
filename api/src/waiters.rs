//! Routes the projectors' announcements to the requests waiting on one view row, so that
//! a change wakes only its own waiters rather than every open request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use projections::{ViewChange, ViewChanges};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::Notify;
use tokio::time::Instant;
use uuid::Uuid;

type Key = (&'static str, Uuid);

#[derive(Debug)]
struct Row {
    changed: Arc<Notify>,
    /// The highest version announced since the first watcher came.
    version: Arc<AtomicI64>,
    watchers: usize,
}

#[derive(Debug, Clone, Default)]
pub struct ViewWaiters {
    rows: Arc<Mutex<HashMap<Key, Row>>>,
}

/// Interest in one view row, from before a change until the watch is dropped.
#[derive(Debug)]
pub struct Watch {
    key: Key,
    changed: Arc<Notify>,
    version: Arc<AtomicI64>,
    rows: Arc<Mutex<HashMap<Key, Row>>>,
}

impl ViewWaiters {
    /// Follows `changes` for as long as they are announced.
    pub fn start(changes: &ViewChanges) -> Self {
        let waiters = Self::default();
        let mut announced = changes.subscribe();
        let rows = waiters.rows.clone();
        tokio::spawn(async move {
            loop {
                match announced.recv().await {
                    Ok(change) => wake(&lock(&rows), &change),
                    // Missed announcements: whoever waits looks again.
                    Err(RecvError::Lagged(_)) => lock(&rows).values().for_each(|row| row.changed.notify_waiters()),
                    Err(RecvError::Closed) => return,
                }
            }
        });
        waiters
    }

    /// Watches the row `id` of view `view`; changes announced from now on are seen.
    pub fn watch(&self, view: &'static str, id: Uuid) -> Watch {
        let key = (view, id);
        let mut rows = lock(&self.rows);
        let row = rows.entry(key).or_insert_with(|| Row {
            changed: Arc::new(Notify::new()),
            version: Arc::new(AtomicI64::new(0)),
            watchers: 0,
        });
        row.watchers += 1;
        Watch { key, changed: row.changed.clone(), version: row.version.clone(), rows: self.rows.clone() }
    }
}

fn lock(rows: &Mutex<HashMap<Key, Row>>) -> MutexGuard<'_, HashMap<Key, Row>> {
    rows.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn wake(rows: &HashMap<Key, Row>, change: &ViewChange) {
    if let Some(row) = rows.get(&(change.view, change.id)) {
        row.version.fetch_max(change.version, Ordering::SeqCst);
        row.changed.notify_waiters();
    }
}

impl Watch {
    /// Waits until a change of the row is announced or `until` passes; what was announced
    /// before this call, but after the watch began, counts too when `since` is below it.
    pub async fn changed(&self, since: i64, until: Instant) {
        let notified = self.changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.announced() > since {
            return;
        }
        let _ = tokio::time::timeout_at(until, notified).await;
    }

    /// The highest version announced since the watch began; 0 when none was.
    pub fn announced(&self) -> i64 {
        self.version.load(Ordering::SeqCst)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut rows = lock(&self.rows);
        if let Some(row) = rows.get_mut(&self.key) {
            row.watchers -= 1;
            if row.watchers == 0 {
                rows.remove(&self.key);
            }
        }
    }
}
