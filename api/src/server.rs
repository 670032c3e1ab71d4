//! Wiring: the shared state, the background workers and the HTTP server's lifetime.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::service::Service as _;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use projections::{AssignmentView, CallView, DriverView, Projector, ViewChanges};
use saga::{DispatchSaga, SagaConfig};
use store::Store;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::listener::DrainingListener;
use crate::waiters::ViewWaiters;
use crate::{http, monitor};

/// Which parts of the system a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// The API and the workers in one process.
    All,
    /// The HTTP API alone: stateless, any number of replicas.
    Api,
    /// The saga, the projections and the notifier, one active per database; only the
    /// operational routes are served.
    Worker,
}

impl Role {
    pub fn serves_api(self) -> bool {
        matches!(self, Self::All | Self::Api)
    }

    pub fn runs_workers(self) -> bool {
        matches!(self, Self::All | Self::Worker)
    }
}

/// When the API stops taking new work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Requests served at once; one more is answered 503 `OVERLOADED`.
    pub max_in_flight: usize,
    /// Events the saga may lag behind the head of the log before new calls are refused.
    pub max_dispatch_backlog: u64,
    /// The longest a request may take before it is answered 503 `REQUEST_TIMEOUT`.
    pub request_timeout: Duration,
    /// How often the backlog and the subscribers' lag are measured.
    pub monitor_interval: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_in_flight: 512,
            max_dispatch_backlog: 5000,
            request_timeout: Duration::from_secs(40),
            monitor_interval: Duration::from_millis(250),
        }
    }
}

/// Settings the HTTP layer and the workers need.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServeConfig {
    pub saga: SagaConfig,
    /// How long a command's answer waits for its own change to reach the views.
    pub read_your_write_timeout: Duration,
    pub limits: Limits,
    /// How often the active worker vacuums the log and the tables updated in place
    /// (PostgreSQL); `None`: never, autovacuum is left to it.
    pub vacuum_interval: Option<Duration>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            saga: SagaConfig { dispatch_timeout: Duration::from_secs(60), radius_km: 5.0 },
            read_your_write_timeout: Duration::from_secs(5),
            limits: Limits::default(),
            vacuum_interval: Some(Duration::from_secs(10)),
        }
    }
}

/// The load the process is under, as the overload guard reads it.
#[derive(Debug, Default)]
pub struct Load {
    pub in_flight: AtomicUsize,
    /// Head of the log minus the saga's checkpoint, as last measured.
    pub dispatch_backlog: AtomicU64,
}

/// What every handler shares; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Store,
    pub changes: ViewChanges,
    /// The projectors' announcements, routed to the requests waiting on each row.
    pub waiters: ViewWaiters,
    pub config: ServeConfig,
    pub load: Arc<Load>,
    /// Turned false when shutdown begins, so that readiness fails before the listener closes.
    pub accepting: Arc<AtomicBool>,
    /// The customer notifier's channel and timings; the `log` channel unless configured.
    pub notifier: notifier::Notifier,
}

impl AppState {
    pub fn new(store: Store, config: ServeConfig) -> Self {
        // Installed before any worker or request counts something, so nothing is lost.
        crate::telemetry::metrics();
        let changes = ViewChanges::default();
        Self {
            store,
            waiters: ViewWaiters::start(&changes),
            changes,
            config,
            load: Arc::default(),
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

    /// Marks the process as going away: readiness fails from now on.
    pub fn stop_accepting(&self) {
        self.accepting.store(false, Ordering::SeqCst);
    }
}

/// Starts the projections, the dispatch saga, the notifier and (PostgreSQL) the vacuum of
/// the tables; they stop at a checkpoint once `shutdown` turns true.
pub fn spawn_workers(state: &AppState, shutdown: watch::Receiver<bool>) -> JoinSet<()> {
    let mut workers = JoinSet::new();
    let store = &state.store;
    workers.spawn(Projector::<CallView>::new(store.clone(), state.changes.clone()).run(shutdown.clone()));
    workers.spawn(Projector::<DriverView>::new(store.clone(), state.changes.clone()).run(shutdown.clone()));
    workers.spawn(Projector::<AssignmentView>::new(store.clone(), state.changes.clone()).run(shutdown.clone()));
    workers.spawn(state.notifier.outbox_writer(store.clone()).run(shutdown.clone()));
    workers.spawn(state.notifier.deliverer(store.clone()).run(shutdown.clone()));
    if let Some(interval) = state.config.vacuum_interval.filter(|_| store.backend() == store::Backend::Postgres) {
        workers.spawn(store::run_vacuum(store.clone(), interval, shutdown.clone()));
    }
    workers.spawn(DispatchSaga::new(store.clone(), state.config.saga).run(shutdown));
    workers
}

/// A worker task ended while it should have been running (it panicked): the process
/// cannot do its job any more and must be restarted.
#[derive(Debug)]
pub struct WorkerCrashed;

impl std::fmt::Display for WorkerCrashed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a worker stopped unexpectedly; the worker lock was released for a standby")
    }
}

impl std::error::Error for WorkerCrashed {}

/// Why an active worker stopped being one.
enum Stepped {
    Shutdown,
    LockLost,
    Crashed,
}

/// Runs the workers whenever this process holds the worker lock, until `shutdown`: a
/// standby waits for the lock, and an active worker that loses it stops its workers at
/// once and stands by again. A worker that dies (a panic) ends it with an error after
/// giving the lock up, so that the process is restarted rather than left half-working.
/// `grace` bounds how long stopping workers may take.
pub async fn run_workers_when_leader(
    state: AppState,
    grace: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), WorkerCrashed> {
    let active = metrics::gauge!("drivercenter_worker_active");
    active.set(0.0);
    while let Some(mut leadership) = state.store.acquire_leadership(&mut shutdown).await {
        tracing::info!("worker lock held; this worker is active");
        active.set(1.0);
        let (stop, stopped) = watch::channel(false);
        let mut workers = spawn_workers(&state, stopped);
        let stepped = tokio::select! {
            error = leadership.lost() => {
                tracing::error!(error = %store::error_chain(&error), "worker lock lost; stopping the workers");
                Stepped::LockLost
            }
            Some(ended) = workers.join_next() => {
                let cause = ended.err().map(|error| error.to_string()).unwrap_or_else(|| "returned".into());
                tracing::error!(%cause, "a worker stopped unexpectedly; stopping the others");
                Stepped::Crashed
            }
            _ = shutdown.wait_for(|stop| *stop) => Stepped::Shutdown,
        };
        stop.send_replace(true);
        let drained = tokio::time::timeout(grace, async { while workers.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!("workers still busy after {grace:?}; abandoning their step");
            workers.abort_all();
        }
        active.set(0.0);
        leadership.release().await;
        match stepped {
            Stepped::LockLost => continue,
            Stepped::Shutdown => return Ok(()),
            Stepped::Crashed => return Err(WorkerCrashed),
        }
    }
    Ok(())
}

/// Serves `router` on `listener` until `shutdown` turns true, then takes the connections
/// already queued, closes the listener and lets requests in flight finish. Measures the
/// load for the overload guard meanwhile.
///
/// HTTP/1.1 only, which the gateway and the probes speak: detecting HTTP/2 first would
/// leave a connection accepted just before shutdown in a state where closing it
/// gracefully drops its request unread.
pub async fn serve_router(
    listener: TcpListener,
    state: AppState,
    router: axum::Router,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    tokio::spawn(monitor::run(state.clone(), shutdown.clone()));
    let mut readiness = shutdown.clone();
    tokio::spawn(async move {
        let _ = readiness.wait_for(|stop| *stop).await;
        state.stop_accepting();
    });
    let mut listener = DrainingListener::new(listener, shutdown);
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Some(stream) => {
                    connections.spawn(serve_connection(stream, router.clone(), stopping.clone()));
                }
                None => break,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    stop.send_replace(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// How long a connection accepted before shutdown may take to bring its first request.
const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(1);

/// Serves one connection until it closes; once `stopping` turns true it finishes the
/// request it is reading or answering and then closes. A connection accepted but not read
/// yet first gets its request read and answered: the client sent it to an open listener,
/// and hyper's graceful shutdown would close such a connection unread.
async fn serve_connection(stream: TcpStream, router: axum::Router, mut stopping: watch::Receiver<bool>) {
    let (first_request, mut first_request_read) = watch::channel(false);
    let router = TowerToHyperService::new(router);
    let service = hyper::service::service_fn(move |request| {
        first_request.send_replace(true);
        router.call(request)
    });
    // No timer, as with `axum::serve`: hyper's 30 s header timeout would also close idle
    // keep-alive connections, racing a client's next request on them.
    let connection = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        ended = connection.as_mut() => return report(ended),
        _ = stopping.wait_for(|stop| *stop) => {}
    }
    tokio::select! {
        ended = connection.as_mut() => return report(ended),
        _ = tokio::time::timeout(FIRST_REQUEST_GRACE, first_request_read.wait_for(|read| *read)) => {}
    }
    connection.as_mut().graceful_shutdown();
    report(connection.await);
}

fn report(ended: Result<(), hyper::Error>) {
    if let Err(error) = ended {
        tracing::debug!(%error, "connection ended with an error");
    }
}

/// Serves the whole API on `listener` until `shutdown` turns true.
pub async fn run(listener: TcpListener, state: AppState, shutdown: watch::Receiver<bool>) -> std::io::Result<()> {
    let router = http::router(state.clone());
    serve_router(listener, state, router, shutdown).await
}
