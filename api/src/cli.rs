//! The command line: `serve`, `migrate`, `replay`, `events`, `notifications`. Every option also reads
//! an environment variable, so containers configure it without flags.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use notifier::{AlimTalkConfig, ChannelConfig, NotificationState, Notifier, NotifierConfig, WebhookConfig};
use projections::{replay, replay_all, AssignmentView, CallView, DriverView, StreamView, ViewChanges};
use saga::SagaConfig;
use store::{Backend, LogPosition, Store};
use tokio::net::TcpListener;
use tokio::sync::watch;
use uuid::Uuid;

use crate::http::EventRecord;
use crate::server::{Limits, Role, WorkerCrashed};
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
    /// Serve the HTTP API with the projections, the dispatch saga and the notifier in one process.
    Serve(Box<ServeArgs>),
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
    /// List customer notifications by delivery state, or retry a dead one.
    #[command(subcommand)]
    Notifications(NotificationsCommand),
}

#[derive(Debug, Subcommand)]
pub enum NotificationsCommand {
    /// Print notifications in one state as JSON lines, oldest first.
    List {
        /// PENDING, DELIVERED or DEAD.
        #[arg(long, default_value = "DEAD", value_parser = parse_state)]
        state: NotificationState,
        /// At most this many.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: u32,
    },
    /// Put a DEAD notification back in line, due now with its attempts reset.
    Retry { id: Uuid },
}

fn parse_state(raw: &str) -> Result<NotificationState, String> {
    NotificationState::parse(raw).ok_or_else(|| "expected PENDING, DELIVERED or DEAD".to_string())
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
    /// Seconds between the active worker's vacuums of the log and the tables updated in
    /// place (PostgreSQL); 0 leaves them to autovacuum.
    #[arg(long, env = "DRIVERCENTER_VACUUM_INTERVAL_SECS", default_value_t = 10)]
    pub vacuum_interval_secs: u64,
    #[command(flatten)]
    pub notify: NotifyArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NotifyChannel {
    Log,
    Webhook,
    Alimtalk,
}

/// Where customer notifications go, and how hard delivery tries.
#[derive(Debug, clap::Args)]
pub struct NotifyArgs {
    /// `log` (a JSON line per message), `webhook` (signed POST) or `alimtalk` (KakaoTalk).
    #[arg(long, env = "DRIVERCENTER_NOTIFY_CHANNEL", value_enum, default_value = "log")]
    pub notify_channel: NotifyChannel,
    /// Where the webhook channel POSTs each message.
    #[arg(long, env = "DRIVERCENTER_NOTIFY_WEBHOOK_URL")]
    pub notify_webhook_url: Option<String>,
    /// The key of the webhook's `X-Drivercenter-Signature` HMAC-SHA256.
    #[arg(long, env = "DRIVERCENTER_NOTIFY_WEBHOOK_SECRET", hide_env_values = true)]
    pub notify_webhook_secret: Option<String>,
    /// The AlimTalk provider's API root.
    #[arg(long, env = "DRIVERCENTER_ALIMTALK_BASE_URL")]
    pub alimtalk_base_url: Option<String>,
    /// The provider's app key, part of the messages URL.
    #[arg(long, env = "DRIVERCENTER_ALIMTALK_APP_KEY", hide_env_values = true)]
    pub alimtalk_app_key: Option<String>,
    /// Sent as `X-Secret-Key` with every message.
    #[arg(long, env = "DRIVERCENTER_ALIMTALK_SECRET_KEY", hide_env_values = true)]
    pub alimtalk_secret_key: Option<String>,
    /// The KakaoTalk channel's sender key.
    #[arg(long, env = "DRIVERCENTER_ALIMTALK_SENDER_KEY", hide_env_values = true)]
    pub alimtalk_sender_key: Option<String>,
    /// The registered number SMS fallbacks come from; without it there is no fallback.
    #[arg(long, env = "DRIVERCENTER_ALIMTALK_SMS_SENDER")]
    pub alimtalk_sms_sender: Option<String>,
    /// Seconds one delivery attempt may take.
    #[arg(long, env = "DRIVERCENTER_NOTIFY_TIMEOUT_SECS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub notify_timeout_secs: u64,
    /// Attempts before a message is dead.
    #[arg(long, env = "DRIVERCENTER_NOTIFY_MAX_ATTEMPTS", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub notify_max_attempts: u32,
    /// Consecutive failures that open the circuit breaker.
    #[arg(long, env = "DRIVERCENTER_NOTIFY_BREAKER_THRESHOLD", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub notify_breaker_threshold: u32,
    /// Seconds an open breaker holds messages back before it tries one.
    #[arg(long, env = "DRIVERCENTER_NOTIFY_BREAKER_COOLDOWN_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub notify_breaker_cooldown_secs: u64,
}

impl NotifyArgs {
    /// The notifier these flags describe; an error names what a channel lacks.
    pub fn notifier(&self) -> anyhow::Result<Notifier> {
        let channel_name = self.notify_channel.to_possible_value().map(|value| value.get_name().to_string());
        let required = |value: &Option<String>, flag: &str| {
            value.clone().filter(|value| !value.is_empty()).with_context(|| {
                format!("--notify-channel {} needs --{flag}", channel_name.as_deref().unwrap_or_default())
            })
        };
        let channel = match self.notify_channel {
            NotifyChannel::Log => ChannelConfig::Log,
            NotifyChannel::Webhook => ChannelConfig::Webhook(WebhookConfig {
                url: required(&self.notify_webhook_url, "notify-webhook-url")?,
                secret: required(&self.notify_webhook_secret, "notify-webhook-secret")?,
            }),
            NotifyChannel::Alimtalk => ChannelConfig::AlimTalk(AlimTalkConfig {
                base_url: required(&self.alimtalk_base_url, "alimtalk-base-url")?,
                app_key: required(&self.alimtalk_app_key, "alimtalk-app-key")?,
                secret_key: required(&self.alimtalk_secret_key, "alimtalk-secret-key")?,
                sender_key: required(&self.alimtalk_sender_key, "alimtalk-sender-key")?,
                sms_sender: self.alimtalk_sms_sender.clone().filter(|number| !number.is_empty()),
            }),
        };
        let config = NotifierConfig {
            channel,
            timeout: Duration::from_secs(self.notify_timeout_secs),
            max_attempts: self.notify_max_attempts,
            breaker_threshold: self.notify_breaker_threshold,
            breaker_cooldown: Duration::from_secs(self.notify_breaker_cooldown_secs),
            ..NotifierConfig::default()
        };
        Ok(Notifier::new(config)?)
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let store = Store::connect(&cli.database_url)
        .await
        .with_context(|| format!("cannot open {}", redact(&cli.database_url)))?;
    let outcome = match cli.command {
        Command::Serve(args) => serve(store.clone(), *args).await,
        Command::Migrate => {
            store.migrate().await.context("migration failed")?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Replay { name } => replay_views(&store, &name).await,
        Command::Events { call, follow } => print_events(&store, call, follow).await,
        Command::Notifications(command) => notifications(&store, command).await,
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
    let notifier = args.notify.notifier()?;
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
        vacuum_interval: (args.vacuum_interval_secs > 0).then(|| Duration::from_secs(args.vacuum_interval_secs)),
    };
    let state = AppState::new(store, config).with_notifier(notifier);
    if args.role == Role::Api {
        // The views change in the worker's process: hear of it to wake waiting requests.
        state.changes.follow(&state.store);
    }
    let listener = TcpListener::bind(args.bind).await.with_context(|| format!("cannot listen on {}", args.bind))?;
    tracing::info!(
        address = %listener.local_addr()?,
        backend = ?state.store.backend(),
        role = ?args.role,
        notify_channel = state.notifier.channel_name(),
        "drivercenter serving"
    );

    let grace = Duration::from_secs(args.shutdown_grace_secs);
    let (stop, shutdown) = watch::channel(false);
    let mut workers = args
        .role
        .runs_workers()
        .then(|| tokio::spawn(crate::server::run_workers_when_leader(state.clone(), grace, shutdown.clone())));
    let router = if args.role.serves_api() {
        crate::http::router(state.clone())
    } else {
        crate::http::operations_router(state.clone())
    };
    let server = tokio::spawn(crate::server::serve_router(listener, state.clone(), router, shutdown));
    // The workers end early only when one of them died: stop serving too, and fail.
    let crashed = match &mut workers {
        Some(running) => tokio::select! {
            () = shutdown_signal() => None,
            outcome = running => Some(outcome),
        },
        None => {
            shutdown_signal().await;
            None
        }
    };
    state.stop_accepting();
    if crashed.is_none() {
        tracing::info!(drain_secs = args.drain_secs, "shutdown signal received; readiness off, draining");
        tokio::time::sleep(Duration::from_secs(args.drain_secs)).await;
    }
    stop.send_replace(true);
    if tokio::time::timeout(grace, server).await.is_err() {
        tracing::warn!("requests still in flight after {grace:?}; closing anyway");
    }
    let outcome = match (crashed, workers) {
        (Some(outcome), _) => outcome,
        (None, Some(running)) => running.await,
        (None, None) => Ok(Ok(())),
    };
    outcome.unwrap_or(Err(WorkerCrashed))?;
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

/// Rebuilds one view, or all of them in one pass over the log, and prints the rate.
async fn replay_views(store: &Store, name: &str) -> anyhow::Result<()> {
    store.migrate().await.context("migration failed")?;
    let total = store.count_events().await?;
    let changes = ViewChanges::default();
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>12} [{bar:40}] {pos}/{len} events ({per_sec}, {eta})")
            .map(|style| style.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix(name.to_string());
    let progress = |read| bar.set_position(read);
    let started = Instant::now();
    let read = match name {
        "all" => replay_all(store, &changes, progress).await?,
        CallView::NAME => replay::<CallView>(store, &changes, progress).await?,
        DriverView::NAME => replay::<DriverView>(store, &changes, progress).await?,
        AssignmentView::NAME => replay::<AssignmentView>(store, &changes, progress).await?,
        other => bail!("no projection is called `{other}`"),
    };
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let rate = if seconds > 0.0 { read as f64 / seconds } else { 0.0 };
    println!("replayed {name}: {read} events in {seconds:.2} s ({rate:.0} events/s)");
    Ok(())
}

/// The operators' notification commands; their output is JSON lines.
async fn notifications(store: &Store, command: NotificationsCommand) -> anyhow::Result<()> {
    match command {
        NotificationsCommand::List { state, limit } => {
            for notification in notifier::queries::by_state(store, state, limit).await? {
                println!("{}", serde_json::to_string(&notification)?);
            }
        }
        NotificationsCommand::Retry { id } => {
            let notification = notifier::queries::retry(store, id).await?;
            println!("{}", serde_json::to_string(&notification)?);
        }
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
