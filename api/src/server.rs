//! Wiring: the shared state, the background workers and the HTTP server's lifetime.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use projections::{AssignmentView, CallView, DriverView, Projector, ViewChanges};
use saga::{DispatchSaga, SagaConfig};
use store::Store;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::http;

/// Settings the HTTP layer needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServeConfig {
    pub saga: SagaConfig,
    /// How long a command's answer waits for its own change to reach the views.
    pub read_your_write_timeout: Duration,
}

/// What every handler shares; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Store,
    pub changes: ViewChanges,
    pub config: ServeConfig,
    /// Turned false when shutdown begins, so that readiness fails before the listener closes.
    pub accepting: Arc<AtomicBool>,
    /// The customer notifier's channel and timings; the `log` channel unless configured.
    pub notifier: notifier::Notifier,
}

impl AppState {
    pub fn new(store: Store, config: ServeConfig) -> Self {
        Self {
            store,
            changes: ViewChanges::default(),
            config,
            accepting: Arc::new(AtomicBool::new(true)),
            notifier: notifier::Notifier::default(),
        }
    }

    pub fn with_notifier(self, notifier: notifier::Notifier) -> Self {
        Self { notifier, ..self }
    }

    pub fn is_accepting(&self) -> bool {
        self.accepting.load(Ordering::SeqCst)
    }
}

/// Starts the projections, the dispatch saga and the notifier; they stop at a checkpoint once
/// `shutdown` turns true.
pub fn spawn_workers(state: &AppState, shutdown: watch::Receiver<bool>) -> JoinSet<()> {
    let mut workers = JoinSet::new();
    let store = &state.store;
    workers.spawn(Projector::<CallView>::new(store.clone(), state.changes.clone()).run(shutdown.clone()));
    workers.spawn(Projector::<DriverView>::new(store.clone(), state.changes.clone()).run(shutdown.clone()));
    workers.spawn(Projector::<AssignmentView>::new(store.clone(), state.changes.clone()).run(shutdown.clone()));
    workers.spawn(state.notifier.outbox_writer(store.clone()).run(shutdown.clone()));
    workers.spawn(state.notifier.deliverer(store.clone()).run(shutdown.clone()));
    workers.spawn(DispatchSaga::new(store.clone(), state.config.saga).run(shutdown));
    workers
}

/// Serves the API on `listener` until `shutdown` turns true, then stops accepting and
/// lets requests in flight finish.
pub async fn run(listener: TcpListener, state: AppState, mut shutdown: watch::Receiver<bool>) -> std::io::Result<()> {
    let accepting = state.accepting.clone();
    let app = http::router(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
            accepting.store(false, Ordering::SeqCst);
        })
        .await
}
