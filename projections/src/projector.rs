//! Runs a [`StreamView`] as a subscriber of the log: a batch of events, the rows they
//! change and the checkpoint, all in one transaction.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::time::Duration;

use sqlx::Row;
use store::{checkpoint, on_tx, LogPosition, Store, StoreError, Tx, Worker};
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

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
async fn notify_other_processes(tx: &mut Tx, changes: &[ViewChange]) -> Result<(), StoreError> {
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

        let mut touched: HashMap<Uuid, Option<V>> = HashMap::new();
        for logged in events.iter().filter(|logged| logged.aggregate_type == V::AGGREGATE) {
            let Some(id) = logged.aggregate_uuid() else { continue };
            let current = match touched.remove(&id) {
                Some(view) => view,
                None => load::<V>(&mut tx, id).await?,
            };
            touched.insert(id, V::apply(current, &logged.decode()?, logged));
        }
        let mut changes = Vec::new();
        for (id, view) in touched {
            if let Some(view) = view {
                save(&mut tx, id, &view).await?;
                changes.push(ViewChange { view: V::NAME, id, version: view.version() });
            }
        }
        notify_other_processes(&mut tx, &changes).await?;
        checkpoint::save(&mut tx, V::NAME, last_position).await?;
        tx.commit().await?;
        for change in changes {
            self.changes.announce(change);
        }
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
}

async fn load<V: StreamView>(tx: &mut Tx, id: Uuid) -> Result<Option<V>, StoreError> {
    let sql = format!("SELECT doc FROM {} WHERE {} = $1", V::TABLE, V::KEY);
    let doc: Option<String> = on_tx!(tx, conn => {
        sqlx::query(&sql).bind(id.to_string()).fetch_optional(conn).await?.map(|row| row.try_get(0)).transpose()?
    });
    Ok(doc.map(|doc| serde_json::from_str(&doc)).transpose()?)
}

async fn save<V: StreamView>(tx: &mut Tx, id: Uuid, view: &V) -> Result<(), StoreError> {
    let columns: Vec<&str> = [V::KEY, "version", "doc"].into_iter().chain(V::INDEX_COLUMNS.iter().copied()).collect();
    let placeholders: Vec<String> = (1..=columns.len()).map(|n| format!("${n}")).collect();
    let updates: Vec<String> = columns[1..].iter().map(|column| format!("{column} = excluded.{column}")).collect();
    let sql = format!(
        "INSERT INTO {table} ({columns}) VALUES ({placeholders}) ON CONFLICT ({key}) DO UPDATE SET {updates}",
        table = V::TABLE,
        columns = columns.join(", "),
        placeholders = placeholders.join(", "),
        key = V::KEY,
        updates = updates.join(", "),
    );
    let doc = serde_json::to_string(view)?;
    on_tx!(tx, conn => {
        let mut query = sqlx::query(&sql).bind(id.to_string()).bind(view.version()).bind(doc);
        for value in view.index_columns() {
            query = query.bind(value);
        }
        query.execute(conn).await?;
    });
    Ok(())
}

/// Rebuilds view `V` from the start of the log, reporting `(applied, total)` after each
/// batch. Safe beside a running projector: both take the same checkpoint lock.
pub async fn replay<V: StreamView>(
    store: &Store,
    changes: &ViewChanges,
    mut progress: impl FnMut(u64),
) -> Result<u64, StoreError> {
    let mut tx = store.begin().await?;
    checkpoint::lock(&mut tx, V::NAME).await?;
    let clear = format!("DELETE FROM {}", V::TABLE);
    on_tx!(&mut tx, conn => {
        sqlx::query(&clear).execute(conn).await?;
    });
    checkpoint::save(&mut tx, V::NAME, LogPosition::START).await?;
    tx.commit().await?;

    let projector = Projector::<V>::new(store.clone(), changes.clone());
    // An empty batch may only mean that a transaction elsewhere hides what follows it:
    // the replay is done when it reached the head the log had when it began.
    let head = store.head().await?.unwrap_or(LogPosition::START);
    let mut applied = 0;
    loop {
        let read = projector.run_once().await?;
        if read > 0 {
            applied += read as u64;
            progress(applied);
        } else if checkpoint::read(store, V::NAME).await? >= head {
            return Ok(applied);
        } else {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
