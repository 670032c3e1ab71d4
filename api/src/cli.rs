//! The command line: `serve`, `migrate`, `replay`, `events`. Every option also reads
//! an environment variable, so containers configure it without flags.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use projections::{replay, AssignmentView, CallView, DriverView, StreamView, ViewChanges, PROJECTIONS};
use saga::SagaConfig;
use store::{Backend, LogPosition, Store};
use tokio::net::TcpListener;
use tokio::sync::watch;
use uuid::Uuid;

use crate::http::event_json;
use crate::server::{Limits, Role};
use crate::telemetry::LogFormat;
use crate::{AppState, ServeConfig};

#[derive(Debug, Parser)]
#[command(name = "drivercenter", version, about = "Designated-driver dispatch backend")]
pub struct Cli {
    /// Event store: `sqlite://PATH` (embedded, created when missing) or `postgres://…`.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://drivercenter.db", global = true)]
    pub database_url: String,
    /// Log lines as human-readable text or as JSON objects.
    #[arg(long, env = "DRIVERCENTER_LOG_FORMAT", value_enum, default_value = "pretty", global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API with the projections and the dispatch saga in one process.
    Serve(ServeArgs),
    /// Apply the database migrations and exit.
    Migrate,
    /// Rebuild read models from the start of the log: `calls`, `drivers`, `assignments` or `all`.
    Replay {
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(["calls", "drivers", "assignments", "all"]))]
        name: String,
    },
    /// Print events as JSON lines: all of them, one call's, or (with --follow) as they come.
    Events {
        /// Only the events correlated with this call.
        #[arg(long)]
        call: Option<Uuid>,
        /// Keep printing new events as they are appended.
        #[arg(long)]
        follow: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address the HTTP gateway listens on.
    #[arg(long, env = "DRIVERCENTER_BIND", default_value = "0.0.0.0:8088")]
    pub bind: SocketAddr,
    /// Seconds a call may wait for a driver before it fails.
    #[arg(long, env = "DRIVERCENTER_DISPATCH_TIMEOUT_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub dispatch_timeout_secs: u64,
    /// How far from the pickup a driver may be, in kilometres.
    #[arg(long, env = "DRIVERCENTER_DISPATCH_RADIUS_KM", default_value_t = 5.0)]
    pub dispatch_radius_km: f64,
    /// Seconds in-flight requests get to finish after a shutdown signal.
    #[arg(long, env = "DRIVERCENTER_SHUTDOWN_GRACE_SECS", default_value_t = 20)]
    pub shutdown_grace_secs: u64,
    /// Seconds between a shutdown signal and closing the listener, while `/readyz`
    /// already answers 503, so that load balancers stop sending first.
    #[arg(long, env = "DRIVERCENTER_DRAIN_SECS", default_value_t = 0)]
    pub drain_secs: u64,
    /// What this process runs: the API and the workers (`all`), the API alone (`api`,
    /// any number of replicas) or the workers alone (`worker`, one active per database,
    /// the others standing by). Split roles need PostgreSQL.
    #[arg(long, env = "DRIVERCENTER_ROLE", value_enum, default_value = "all")]
    pub role: Role,
    /// Requests served at once; more are answered 503 OVERLOADED.
    #[arg(long, env = "DRIVERCENTER_MAX_IN_FLIGHT", default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_in_flight: u64,
    /// Events the dispatcher may lag behind the log before new calls get 503 OVERLOADED.
    #[arg(long, env = "DRIVERCENTER_MAX_DISPATCH_BACKLOG", default_value_t = 5000)]
    pub max_dispatch_backlog: u64,
    /// Seconds a request may take before it is answered 503 REQUEST_TIMEOUT; more than
    /// the longest `Prefer: wait` (30 s).
    #[arg(long, env = "DRIVERCENTER_REQUEST_TIMEOUT_SECS", default_value_t = 40, value_parser = clap::value_parser!(u64).range(31..=3600))]
    pub request_timeout_secs: u64,
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let store = Store::connect(&cli.database_url)
        .await
        .with_context(|| format!("cannot open {}", redact(&cli.database_url)))?;
    let outcome = match cli.command {
        Command::Serve(args) => serve(store.clone(), args).await,
        Command::Migrate => {
            store.migrate().await.context("migration failed")?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Replay { name } => replay_views(&store, &name).await,
        Command::Events { call, follow } => print_events(&store, call, follow).await,
    };
    store.close().await;
    outcome
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://…@{}", &url[..scheme], &url[at + 1..]),
        _ => url.to_string(),
    }
}

async fn serve(store: Store, args: ServeArgs) -> anyhow::Result<()> {
    if !(args.dispatch_radius_km.is_finite() && args.dispatch_radius_km > 0.0) {
        bail!("--dispatch-radius-km must be a positive number of kilometres");
    }
    if args.role != Role::All && store.backend() == Backend::Sqlite {
        bail!(
            "--role {} needs PostgreSQL: the embedded SQLite store belongs to one process, so run `--role all`",
            args.role.to_possible_value().map_or_else(String::new, |value| value.get_name().to_string())
        );
    }
    match store.backend() {
        // The embedded store belongs to this process alone: bring it up to date.
        Backend::Sqlite => store.migrate().await.context("migration failed")?,
        // Many replicas may start at once: migrating is an explicit, separate step.
        Backend::Postgres => {
            let pending = store.db().pending_migrations().await?;
            if pending > 0 {
                bail!("the database lacks {pending} migration(s): run `drivercenter migrate` first");
            }
        }
    }
    let config = ServeConfig {
        saga: SagaConfig {
            dispatch_timeout: Duration::from_secs(args.dispatch_timeout_secs),
            radius_km: args.dispatch_radius_km,
        },
        read_your_write_timeout: Duration::from_secs(5),
        limits: Limits {
            max_in_flight: usize::try_from(args.max_in_flight).unwrap_or(usize::MAX),
            max_dispatch_backlog: args.max_dispatch_backlog,
            request_timeout: Duration::from_secs(args.request_timeout_secs),
            ..Limits::default()
        },
    };
    crate::telemetry::metrics();
    let state = AppState::new(store, config);
    if args.role == Role::Api {
        // The views change in the worker's process: hear of it to wake waiting requests.
        state.changes.follow(&state.store);
    }
    let listener = TcpListener::bind(args.bind).await.with_context(|| format!("cannot listen on {}", args.bind))?;
    tracing::info!(address = %listener.local_addr()?, backend = ?state.store.backend(), role = ?args.role, "drivercenter serving");

    let grace = Duration::from_secs(args.shutdown_grace_secs);
    let (stop, shutdown) = watch::channel(false);
    let workers = args
        .role
        .runs_workers()
        .then(|| tokio::spawn(crate::server::run_workers_when_leader(state.clone(), grace, shutdown.clone())));
    let router = if args.role.serves_api() {
        crate::http::router(state.clone())
    } else {
        crate::http::operations_router(state.clone())
    };
    let server = tokio::spawn(crate::server::serve_router(listener, state.clone(), router, shutdown));
    shutdown_signal().await;
    state.stop_accepting();
    tracing::info!(drain_secs = args.drain_secs, "shutdown signal received; readiness off, draining");
    tokio::time::sleep(Duration::from_secs(args.drain_secs)).await;
    stop.send_replace(true);
    if tokio::time::timeout(grace, server).await.is_err() {
        tracing::warn!("requests still in flight after {grace:?}; closing anyway");
    }
    if let Some(workers) = workers {
        let _ = workers.await;
    }
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}

async fn replay_views(store: &Store, name: &str) -> anyhow::Result<()> {
    store.migrate().await.context("migration failed")?;
    let names: Vec<&str> = if name == "all" { PROJECTIONS.to_vec() } else { vec![name] };
    let total = store.count_events().await?;
    let changes = ViewChanges::default();
    for name in names {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template("{prefix:>12} [{bar:40}] {pos}/{len} events ({per_sec}, {eta})")
                .map(|style| style.progress_chars("=> "))
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_prefix(name.to_string());
        let progress = |applied| bar.set_position(applied);
        let applied = match name {
            CallView::NAME => replay::<CallView>(store, &changes, progress).await?,
            DriverView::NAME => replay::<DriverView>(store, &changes, progress).await?,
            AssignmentView::NAME => replay::<AssignmentView>(store, &changes, progress).await?,
            other => bail!("no projection is called `{other}`"),
        };
        bar.finish();
        tracing::info!(projection = name, events = applied, "replayed");
    }
    Ok(())
}

/// Prints events as JSON lines; a reader that hangs up (`| head`) ends it quietly.
async fn print_events(store: &Store, call: Option<Uuid>, follow: bool) -> anyhow::Result<()> {
    match write_events(store, call, follow).await {
        Err(error)
            if error
                .downcast_ref::<std::io::Error>()
                .is_some_and(|error| error.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(())
        }
        outcome => outcome,
    }
}

async fn write_events(store: &Store, call: Option<Uuid>, follow: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let (Some(call_id), false) = (call, follow) {
        for event in store.read_correlated(call_id).await? {
            writeln!(out, "{}", event_json(&event))?;
        }
        return Ok(());
    }
    let (_stop, mut shutdown) = watch::channel(false);
    let mut appended = store.appended();
    let mut position = LogPosition::START;
    loop {
        let events = store.read_after(position, 1000).await?;
        for event in &events {
            if call.is_none_or(|call_id| event.metadata.correlation_id == call_id) {
                writeln!(out, "{}", event_json(event))?;
            }
        }
        out.flush()?;
        match events.last() {
            Some(last) => position = last.position,
            None if follow => Store::wait_for_append(&mut appended, Duration::from_millis(500), &mut shutdown).await,
            None => return Ok(()),
        }
    }
}
