//! The outbox writer: a checkpointed subscriber of the log that writes one PENDING row
//! per customer-facing call event, in the same transaction as its checkpoint, so every
//! event yields its message exactly once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use cqrs_es::Aggregate;
use domain::{Call, CallEvent, CallRequest};
use store::{checkpoint, AnyEvent, Store, StoreError, Tx, Worker};
use tokio::sync::{watch, Notify};
use uuid::Uuid;

use crate::{message, queries};

/// The outbox writer's name, in logs and as its checkpoint.
pub const NOTIFIER_NAME: &str = "notifier";

/// Events read per transaction.
const BATCH_SIZE: usize = 500;

/// How long the writer sleeps without a wake-up before it looks at the log anyway.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct OutboxWriter {
    store: Store,
    written: Arc<Notify>,
}

impl OutboxWriter {
    pub(crate) fn new(store: Store, written: Arc<Notify>) -> Self {
        Self { store, written }
    }

    /// Writes the messages of the next batch of events; returns how many events it read
    /// (0: caught up).
    pub async fn run_once(&self) -> Result<usize, StoreError> {
        let mut tx = self.store.begin().await?;
        let from = checkpoint::lock(&mut tx, NOTIFIER_NAME).await?;
        let events = tx.read_after(from, BATCH_SIZE).await?;
        let Some(last) = events.last() else { return Ok(0) };
        let last_position = last.position;

        let now = Utc::now();
        let mut calls = Vec::new();
        for logged in events.iter().filter(|logged| logged.aggregate_type == Call::TYPE) {
            let Some(call_id) = logged.aggregate_uuid() else { continue };
            let AnyEvent::Call(event) = logged.decode()? else { continue };
            calls.push((call_id, logged, event));
        }
        let mut requests: HashMap<Uuid, CallRequest> = HashMap::new();
        for (call_id, _, event) in &calls {
            if let CallEvent::CallRequested(request) = event {
                requests.insert(*call_id, request.clone());
            }
        }
        let earlier: Vec<Uuid> = calls
            .iter()
            .filter(|(call_id, _, event)| !requests.contains_key(call_id) && message::tells_the_customer(event))
            .map(|(call_id, _, _)| *call_id)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        requests.extend(call_requests(&mut tx, &earlier).await?);

        let mut outgoing = Vec::new();
        for (call_id, logged, event) in &calls {
            if !message::tells_the_customer(event) {
                continue;
            }
            let Some(request) = requests.get(call_id) else {
                tracing::warn!(%call_id, event = %logged.event_type, "call has no request; nobody to notify");
                continue;
            };
            let Some(message) = message::compose(event, request) else { continue };
            let (id, call_sequence) = (logged.event_id(), logged.sequence);
            outgoing.push(queries::Outgoing { id, call_id: *call_id, call_sequence, message });
        }
        let written = queries::insert_all(&mut tx, &outgoing, now).await?;
        checkpoint::save(&mut tx, NOTIFIER_NAME, last_position).await?;
        tx.commit().await?;
        if written > 0 {
            tracing::debug!(written, "notifications queued");
            self.written.notify_one();
        }
        Ok(events.len())
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let store = self.store.clone();
        store::run_worker(self, store, POLL_INTERVAL, shutdown).await;
    }
}

impl Worker for OutboxWriter {
    fn name(&self) -> &'static str {
        NOTIFIER_NAME
    }

    async fn run_once(&mut self) -> Result<usize, StoreError> {
        OutboxWriter::run_once(self).await
    }

    fn caught_up(&self, read: usize) -> bool {
        read < BATCH_SIZE
    }
}

/// The requests that opened the calls `call_ids` (the first event of each stream), in
/// one query.
async fn call_requests(tx: &mut Tx, call_ids: &[Uuid]) -> Result<HashMap<Uuid, CallRequest>, StoreError> {
    if call_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let ids: Vec<String> = call_ids.iter().map(Uuid::to_string).collect();
    let rows: Vec<(String, serde_json::Value)> = match tx {
        Tx::Postgres(tx) => {
            sqlx::query_as(
                "SELECT DISTINCT ON (aggregate_id) aggregate_id, payload FROM events \
                 WHERE aggregate_type = $1 AND aggregate_id = ANY($2) ORDER BY aggregate_id, sequence",
            )
            .bind(Call::TYPE)
            .bind(ids)
            .fetch_all(&mut **tx)
            .await?
        }
        // With one MIN() in a grouped query, SQLite takes the other columns from the row
        // that holds the minimum: each stream's first event.
        Tx::Sqlite(tx) => {
            sqlx::query_as(
                "SELECT aggregate_id, payload, MIN(sequence) FROM events \
                 WHERE aggregate_type = $1 AND aggregate_id IN (SELECT value FROM json_each($2)) \
                 GROUP BY aggregate_id",
            )
            .bind(Call::TYPE)
            .bind(serde_json::to_string(&ids)?)
            .fetch_all(&mut **tx)
            .await?
        }
    };
    let mut requests = HashMap::with_capacity(rows.len());
    for (id, payload) in rows {
        if let (Ok(call_id), CallEvent::CallRequested(request)) =
            (Uuid::parse_str(&id), serde_json::from_value(payload)?)
        {
            requests.insert(call_id, request);
        }
    }
    Ok(requests)
}
