//! The loop every subscriber of the log runs in production; tests drive `run_once`.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;

use crate::{error_chain, Store, StoreError};

/// A subscriber that advances through the log in steps.
pub trait Worker: Send {
    /// The name in logs (and, for most workers, of the checkpoint).
    fn name(&self) -> &'static str;

    /// Handles the next batch; returns how many events it read (0: caught up).
    fn run_once(&mut self) -> impl Future<Output = Result<usize, StoreError>> + Send;

    /// Whether a step that read `read` events reached the end of the log, so that the
    /// next step can wait for an append. A worker that reads in batches knows that a
    /// short batch was the last one and saves the empty step that would confirm it.
    fn caught_up(&self, read: usize) -> bool {
        read == 0
    }
}

/// Steps `worker` until `shutdown` turns true. It sleeps while caught up, until an append
/// wakes it or `poll` passes; a failed step left nothing behind and is tried again.
pub async fn run_worker<W: Worker>(mut worker: W, store: Store, poll: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut appended = store.appended();
    while !*shutdown.borrow() {
        match worker.run_once().await {
            Ok(read) if worker.caught_up(read) => Store::wait_for_append(&mut appended, poll, &mut shutdown).await,
            Ok(_) => {}
            Err(error) => {
                tracing::error!(worker = worker.name(), error = %error_chain(&error), "step failed; retrying");
                Store::wait_for_append(&mut appended, poll, &mut shutdown).await;
            }
        }
    }
}
