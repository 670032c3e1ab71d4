//! Runs a [`StreamView`] as a subscriber of the log: a batch of events, the rows they
//! change and the checkpoint, all in one transaction.

use std::marker::PhantomData;
use std::time::Duration;

use store::{checkpoint, Store, StoreError, Tx, Worker};
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

use crate::rows::Rows;
use crate::{AssignmentView, CallView, DriverView, StreamView};

/// Events applied per transaction.
pub const BATCH_SIZE: usize = 500;

/// How long a projector sleeps without a wake-up before it looks at the log anyway.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// The PostgreSQL channel on which projectors announce committed view changes to the
/// other processes (API replicas wait on them); payload `view:id:version`.
const VIEW_CHANNEL: &str = "drivercenter_views";

/// A view row that changed, announced after its transaction committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViewChange {
    pub view: &'static str,
    pub id: Uuid,
    pub version: i64,
}

/// Announces committed view changes to whoever waits for one (`Prefer: wait`,
/// `min_version`, SSE streams).
#[derive(Debug, Clone)]
pub struct ViewChanges(broadcast::Sender<ViewChange>);

impl Default for ViewChanges {
    fn default() -> Self {
        Self(broadcast::channel(4096).0)
    }
}

impl ViewChanges {
    pub fn subscribe(&self) -> broadcast::Receiver<ViewChange> {
        self.0.subscribe()
    }

    fn announce(&self, change: ViewChange) {
        // Nobody listening is normal.
        let _ = self.0.send(change);
    }

    /// Announces what a transaction changed, after it committed.
    pub(crate) fn announce_all(&self, changes: Vec<ViewChange>) {
        for change in changes {
            self.announce(change);
        }
    }

    /// Also announces the changes that projectors in other processes commit, for a
    /// process that serves the API without running the projectors itself.
    pub fn follow(&self, store: &Store) {
        let changes = self.clone();
        store.listen(VIEW_CHANNEL, move |payload| {
            if let Some(change) = payload.and_then(ViewChange::parse) {
                changes.announce(change);
            }
            true
        });
    }
}

impl ViewChange {
    fn payload(&self) -> String {
        format!("{}:{}:{}", self.view, self.id, self.version)
    }

    fn parse(payload: &str) -> Option<Self> {
        let mut parts = payload.splitn(3, ':');
        let view = match parts.next()? {
            name if name == CallView::NAME => CallView::NAME,
            name if name == DriverView::NAME => DriverView::NAME,
            name if name == AssignmentView::NAME => AssignmentView::NAME,
            _ => return None,
        };
        Some(Self { view, id: parts.next()?.parse().ok()?, version: parts.next()?.parse().ok()? })
    }
}

/// Queues a notification of each change, delivered by PostgreSQL when `tx` commits.
pub(crate) async fn notify_other_processes(tx: &mut Tx, changes: &[ViewChange]) -> Result<(), StoreError> {
    if let (Tx::Postgres(tx), false) = (tx, changes.is_empty()) {
        let payloads: Vec<String> = changes.iter().map(ViewChange::payload).collect();
        sqlx::query("SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload")
            .bind(VIEW_CHANNEL)
            .bind(payloads)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

#[derive(Debug)]
pub struct Projector<V> {
    store: Store,
    changes: ViewChanges,
    view: PhantomData<fn() -> V>,
}

impl<V: StreamView> Projector<V> {
    pub fn new(store: Store, changes: ViewChanges) -> Self {
        Self { store, changes, view: PhantomData }
    }

    /// Applies the next batch of events; returns how many events it read (0: caught up).
    pub async fn run_once(&self) -> Result<usize, StoreError> {
        let mut tx = self.store.begin().await?;
        let from = checkpoint::lock(&mut tx, V::NAME).await?;
        let events = tx.read_after(from, BATCH_SIZE).await?;
        let Some(last) = events.last() else { return Ok(0) };
        let last_position = last.position;

        let changes = Rows::<V>::loaded_on_demand().apply(&mut tx, &events, from).await?;
        notify_other_processes(&mut tx, &changes).await?;
        checkpoint::save(&mut tx, V::NAME, last_position).await?;
        tx.commit().await?;
        self.changes.announce_all(changes);
        Ok(events.len())
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let store = self.store.clone();
        store::run_worker(self, store, POLL_INTERVAL, shutdown).await;
    }
}

impl<V: StreamView> Worker for Projector<V> {
    fn name(&self) -> &'static str {
        V::NAME
    }

    async fn run_once(&mut self) -> Result<usize, StoreError> {
        Projector::run_once(self).await
    }

    fn caught_up(&self, read: usize) -> bool {
        read < BATCH_SIZE
    }
}
