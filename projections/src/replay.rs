//! Rebuilding views from the start of the log: one pass over the log feeds every view
//! being rebuilt, in large batches, with the rows held in memory while the tables are
//! known to hold nothing else, and written in bulk with the checkpoints of each batch.
//!
//! Safe beside running projectors: every batch takes the same checkpoint locks as they
//! do, and every writer commits a view's rows with its checkpoint, so a table always
//! holds the log folded up to its checkpoint. Rows held for the position the checkpoint
//! still shows are therefore the table's rows; a checkpoint that moved since this
//! replay's last batch means a projector wrote meanwhile, and the replay forgets what it
//! held and reads rows from the table again from then on.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use store::{checkpoint, on_tx, LogPosition, LoggedEvent, Store, StoreError, Tx};
use tokio::task::JoinHandle;

use crate::projector::notify_other_processes;
use crate::rows::Rows;
use crate::{AssignmentView, CallView, DriverView, StreamView, ViewChange, ViewChanges};

/// Events per replay transaction: large, since one pass rebuilds from an empty table.
pub const REPLAY_BATCH_SIZE: usize = 20_000;

/// One view being rebuilt: its rows, and the checkpoint its last committed batch saved.
#[derive(Debug)]
struct Rebuild<V> {
    rows: Rows<V>,
    position: LogPosition,
}

type Applied<'a> = Pin<Box<dyn Future<Output = Result<Vec<ViewChange>, StoreError>> + Send + 'a>>;

/// A [`Rebuild`] of any view, so that one pass can feed several.
trait Rebuilding: Send {
    fn name(&self) -> &'static str;
    fn table(&self) -> &'static str;
    /// Where this view's events resume: its checkpoint as the current batch found it.
    fn resume_at(&mut self, checkpoint: LogPosition);
    fn position(&self) -> LogPosition;
    /// Applies the events after [`Self::position`] and saves the rows they change.
    fn apply<'a>(&'a mut self, tx: &'a mut Tx, events: &'a [LoggedEvent]) -> Applied<'a>;
    fn committed(&mut self, last: LogPosition);
}

impl<V: StreamView> Rebuild<V> {
    fn boxed() -> Box<dyn Rebuilding> {
        Box::new(Self { rows: Rows::of_empty_table(), position: LogPosition::START })
    }
}

impl<V: StreamView> Rebuilding for Rebuild<V> {
    fn name(&self) -> &'static str {
        V::NAME
    }

    fn table(&self) -> &'static str {
        V::TABLE
    }

    fn resume_at(&mut self, checkpoint: LogPosition) {
        if checkpoint != self.position {
            self.rows.forget();
            self.position = checkpoint;
        }
    }

    fn position(&self) -> LogPosition {
        self.position
    }

    fn apply<'a>(&'a mut self, tx: &'a mut Tx, events: &'a [LoggedEvent]) -> Applied<'a> {
        Box::pin(self.rows.apply(tx, events, self.position))
    }

    fn committed(&mut self, last: LogPosition) {
        self.position = self.position.max(last);
    }
}

/// Rebuilds view `V` from the start of the log, reporting the events read so far after
/// each batch; returns how many it read.
pub async fn replay<V: StreamView>(
    store: &Store,
    changes: &ViewChanges,
    progress: impl FnMut(u64),
) -> Result<u64, StoreError> {
    rebuild(store, changes, vec![Rebuild::<V>::boxed()], progress).await
}

/// Rebuilds every view in one pass over the log, reporting the events read so far after
/// each batch; returns how many it read.
pub async fn replay_all(store: &Store, changes: &ViewChanges, progress: impl FnMut(u64)) -> Result<u64, StoreError> {
    let views = vec![Rebuild::<CallView>::boxed(), Rebuild::<DriverView>::boxed(), Rebuild::<AssignmentView>::boxed()];
    rebuild(store, changes, views, progress).await
}

async fn rebuild(
    store: &Store,
    changes: &ViewChanges,
    mut views: Vec<Box<dyn Rebuilding>>,
    mut progress: impl FnMut(u64),
) -> Result<u64, StoreError> {
    // The first batch is read while the tables are emptied.
    let mut ahead = Some(ReadAhead::start(store, LogPosition::START));
    let mut tx = store.begin().await?;
    for view in &views {
        checkpoint::lock(&mut tx, view.name()).await?;
        let clear = format!("DELETE FROM {}", view.table());
        on_tx!(&mut tx, conn => {
            sqlx::query(&clear).execute(conn).await?;
        });
        checkpoint::save(&mut tx, view.name(), LogPosition::START).await?;
    }
    tx.commit().await?;

    // The replay is done when every view reached the head the log had when it began;
    // the live projectors carry on from there.
    let head = store.head().await?.unwrap_or(LogPosition::START);
    let mut read = 0;
    loop {
        let mut tx = store.begin().await?;
        let mut from = head;
        for view in &mut views {
            let checkpoint = checkpoint::lock(&mut tx, view.name()).await?;
            view.resume_at(checkpoint);
            from = from.min(checkpoint);
        }
        if from >= head {
            return Ok(read);
        }
        let events = match ahead.take() {
            Some(ahead) => ahead.events_after(from).await?,
            None => None,
        };
        let events = match events {
            Some(events) if !events.is_empty() => events,
            _ => tx.read_after(from, REPLAY_BATCH_SIZE).await?,
        };
        let Some(last) = events.last().map(|logged| logged.position) else {
            // A transaction still in flight elsewhere hides what follows it: wait for it.
            drop(tx);
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        ahead = Some(ReadAhead::start(store, last));
        let mut changed = Vec::new();
        for view in &mut views {
            changed.extend(view.apply(&mut tx, &events).await?);
            checkpoint::save(&mut tx, view.name(), view.position().max(last)).await?;
        }
        notify_other_processes(&mut tx, &changed).await?;
        tx.commit().await?;
        for view in &mut views {
            view.committed(last);
        }
        changes.announce_all(changed);
        read += events.len() as u64;
        progress(read);
    }
}

/// The next batch, read on a connection of its own while the current batch is applied.
/// A read of the log returns a prefix of the final order whenever it runs, so the events
/// stay right to apply as long as the checkpoints still stand where the read began.
struct ReadAhead {
    after: LogPosition,
    read: JoinHandle<Result<Vec<LoggedEvent>, StoreError>>,
}

impl ReadAhead {
    fn start(store: &Store, after: LogPosition) -> Self {
        let store = store.clone();
        Self { after, read: tokio::spawn(async move { store.read_after(after, REPLAY_BATCH_SIZE).await }) }
    }

    /// The events read, if they follow `from`; `None` when a projector moved a
    /// checkpoint meanwhile.
    async fn events_after(mut self, from: LogPosition) -> Result<Option<Vec<LoggedEvent>>, StoreError> {
        if from != self.after {
            return Ok(None);
        }
        match (&mut self.read).await {
            Ok(events) => events.map(Some),
            // The read panicked: read in the batch's transaction instead.
            Err(_) => Ok(None),
        }
    }
}

impl Drop for ReadAhead {
    /// A read nobody will use stops; aborting one that finished does nothing.
    fn drop(&mut self) {
        self.read.abort();
    }
}
