//! The command line: `serve`, `migrate`, `replay`, `events`. Every option also reads
//! an environment variable, so containers configure it without flags.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use projections::{replay, AssignmentView, CallView, DriverView, StreamView, ViewChanges, PROJECTIONS};
use saga::SagaConfig;
use store::{Backend, LogPosition, Store};
use tokio::net::TcpListener;
use tokio::sync::watch;
use uuid::Uuid;

use crate::http::EventRecord;
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
    };
    let state = AppState::new(store, config);
    let listener = TcpListener::bind(args.bind).await.with_context(|| format!("cannot listen on {}", args.bind))?;
    tracing::info!(address = %listener.local_addr()?, backend = ?state.store.backend(), "drivercenter serving");

    let (stop, shutdown) = watch::channel(false);
    let mut workers = crate::spawn_workers(&state, shutdown.clone());
    let server = tokio::spawn(crate::run(listener, state, shutdown));
    shutdown_signal().await;
    tracing::info!("shutdown signal received; draining");
    stop.send_replace(true);
    let grace = Duration::from_secs(args.shutdown_grace_secs);
    if tokio::time::timeout(grace, server).await.is_err() {
        tracing::warn!("requests still in flight after {grace:?}; closing anyway");
    }
    while tokio::time::timeout(grace, workers.join_next()).await.ok().flatten().is_some() {}
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
            writeln!(out, "{}", serde_json::to_string(&EventRecord::from(&event))?)?;
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
                writeln!(out, "{}", serde_json::to_string(&EventRecord::from(event))?)?;
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
