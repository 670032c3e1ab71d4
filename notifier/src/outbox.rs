//! The outbox writer: a checkpointed subscriber of the log that writes one PENDING row
//! per customer-facing call event, in the same transaction as its checkpoint, so every
//! event yields its message exactly once.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use cqrs_es::Aggregate;
use domain::{Call, CallEvent, CallRequest};
use sqlx::Row;
use store::{checkpoint, on_tx, AnyEvent, Store, StoreError, Tx, Worker};
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
        let mut requests: HashMap<Uuid, CallRequest> = HashMap::new();
        let mut written = 0;
        for logged in events.iter().filter(|logged| logged.aggregate_type == Call::TYPE) {
            let Some(call_id) = logged.aggregate_uuid() else { continue };
            let AnyEvent::Call(event) = logged.decode()? else { continue };
            if let CallEvent::CallRequested(request) = event {
                requests.insert(call_id, request);
                continue;
            }
            let request = match requests.entry(call_id) {
                Entry::Occupied(known) => known.into_mut(),
                Entry::Vacant(slot) => match call_request(&mut tx, call_id).await? {
                    Some(request) => slot.insert(request),
                    None => {
                        tracing::warn!(%call_id, event = %logged.event_type, "call has no request; nobody to notify");
                        continue;
                    }
                },
            };
            let Some(message) = message::compose(&event, request) else { continue };
            if queries::insert(&mut tx, logged.event_id(), call_id, logged.sequence, &message, now).await? {
                written += 1;
            }
        }
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
}

/// The request that opened call `call_id`: the first event of its stream.
async fn call_request(tx: &mut Tx, call_id: Uuid) -> Result<Option<CallRequest>, StoreError> {
    let payload: Option<serde_json::Value> = on_tx!(tx, conn => {
        sqlx::query(
            "SELECT payload FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence LIMIT 1",
        )
        .bind(Call::TYPE)
        .bind(call_id.to_string())
        .fetch_optional(conn)
        .await?
        .map(|row| row.try_get(0))
        .transpose()?
    });
    match payload.map(serde_json::from_value::<CallEvent>).transpose()? {
        Some(CallEvent::CallRequested(request)) => Ok(Some(request)),
        _ => Ok(None),
    }
}
