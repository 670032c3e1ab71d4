//! One run: the drivers set up, then the load in open or closed loop while the monitor
//! watches the server, then the in-flight calls drained and the figures summed up.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use uuid::Uuid;

use crate::arrivals::Arrivals;
use crate::client::{Api, CallSpec, DriverSpec, CONFIRMED};
use crate::config::{BenchArgs, ConfirmVia, Mode};
use crate::error::BenchError;
use crate::report::{self, Summary};
use crate::seoul;
use crate::stats::{Outcome, Recorder};

/// Share of drivers who can drive a manual car.
const MANUAL_DRIVER_RATIO: f64 = 0.3;

/// Drivers registered at once during the set-up: quick, without flooding the server.
const SETUP_CONCURRENCY: usize = 16;

/// How long the drivers view may take to show every driver online.
const SETUP_TIMEOUT: Duration = Duration::from_secs(120);

/// How long in-flight calls and holds get to finish after the load stops.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(90);

/// Keeps the random streams of drivers, calls and arrivals apart under one seed.
const DRIVER_STREAM: u64 = 0x5EED_D81F;
const ARRIVAL_STREAM: u64 = 0x5EED_A441;

/// Registers the drivers, runs the load and returns its summary, after writing the
/// report when `--report-dir` is given.
pub async fn run(args: BenchArgs) -> Result<Summary, BenchError> {
    let seed = args.seed.unwrap_or_else(rand::random);
    let api = Api::new(&args.target)?;
    eprintln!("registering {} drivers at {}", args.drivers, args.target);
    set_up_drivers(&api, args.drivers, seed).await?;

    eprintln!("{:?} loop for {} s", args.mode, args.duration_secs);
    let start = Instant::now();
    let recorder = Arc::new(Recorder::new(start));
    let (stop_monitor, monitor_stop) = watch::channel(false);
    let monitor = tokio::spawn(crate::monitor::run(api.clone(), args.server_pid, recorder.clone(), monitor_stop));

    let (tracker, mut drained) = mpsc::channel::<()>(1);
    let load = Arc::new(Load {
        deadline: start + Duration::from_secs(args.duration_secs),
        api,
        recorder: recorder.clone(),
        args: args.clone(),
        seed,
        issued: AtomicU64::new(0),
        _drained: tracker,
    });
    match args.mode {
        Mode::Closed => closed_loop(&load).await,
        Mode::Open => open_loop(&load).await,
    }
    let deadline = load.deadline;
    let count_reached = args.max_calls.is_some_and(|max| load.issued.load(Ordering::Relaxed) >= max);
    // Calls still in flight and holds keep their own handles on the load.
    drop(load);
    if !count_reached {
        recorder.stop_window_at(deadline);
    }
    eprintln!("draining in-flight calls");
    if tokio::time::timeout(DRAIN_TIMEOUT, drained.recv()).await.is_err() {
        eprintln!("some calls were still in flight after {DRAIN_TIMEOUT:?}");
    }
    if count_reached {
        // Stopped by --max-calls: the load ran until its last call was answered.
        recorder.stop_window_at(Instant::now().min(deadline));
    }
    let _ = stop_monitor.send(true);
    let _ = monitor.await;

    let tally = recorder.snapshot();
    let summary = Summary::new(&args, seed, &tally);
    if let Some(dir) = &args.report_dir {
        report::write(dir, &summary, &tally)?;
    }
    Ok(summary)
}

/// Registers `count` drivers spread over the districts, brings them online and waits
/// until the drivers view shows them available.
async fn set_up_drivers(api: &Api, count: u32, seed: u64) -> Result<(), BenchError> {
    let mut rng = StdRng::seed_from_u64(seed ^ DRIVER_STREAM);
    let drivers: Vec<DriverSpec> = (0..count as usize)
        .map(|index| DriverSpec {
            name: format!("기사{index}"),
            tel: random_tel(&mut rng),
            can_drive_manual: rng.random_bool(MANUAL_DRIVER_RATIO),
            place: seoul::driver_place(&mut rng, index),
        })
        .collect();
    let mut registrations = futures::stream::iter(drivers)
        .map(|driver| async move {
            let id = api.register_driver(&driver).await?;
            api.go_online(id, &driver.place).await
        })
        .buffer_unordered(SETUP_CONCURRENCY);
    while let Some(registered) = registrations.next().await {
        registered?;
    }
    let started = Instant::now();
    loop {
        let available = api.available_drivers().await?;
        if available >= count as usize {
            return Ok(());
        }
        if started.elapsed() > SETUP_TIMEOUT {
            return Err(BenchError::DriversNotReady { available, wanted: count as usize, waited: SETUP_TIMEOUT });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A mobile number: `010` and eight random digits.
fn random_tel(rng: &mut impl Rng) -> String {
    format!("010{:08}", rng.random_range(0..100_000_000u32))
}

/// What every call task shares.
struct Load {
    api: Api,
    recorder: Arc<Recorder>,
    args: BenchArgs,
    seed: u64,
    deadline: Instant,
    issued: AtomicU64,
    /// Held, never used, by every call and hold through their `Arc<Load>`: the channel
    /// closes once the last of them is done, which the run waits for.
    _drained: mpsc::Sender<()>,
}

impl Load {
    /// The index of the next call to send, or `None` once the time or count is used up.
    fn next_index(&self) -> Option<u64> {
        if Instant::now() >= self.deadline {
            return None;
        }
        let index = self.issued.fetch_add(1, Ordering::Relaxed);
        self.args.max_calls.is_none_or(|max| index < max).then_some(index)
    }

    /// The random stream of call `index`: the same seed repeats the same calls.
    fn rng_for(&self, index: u64) -> StdRng {
        StdRng::seed_from_u64(self.seed.wrapping_add(index.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
    }
}

/// `--concurrency` customers, each sending a call and waiting for its answer in turn.
async fn closed_loop(load: &Arc<Load>) {
    let mut customers = JoinSet::new();
    for _ in 0..load.args.concurrency {
        let load = load.clone();
        customers.spawn(async move {
            while let Some(index) = load.next_index() {
                one_call(&load, index).await;
            }
        });
    }
    while customers.join_next().await.is_some() {}
}

/// Poisson arrivals at `--rate`, each call in a task of its own, at most
/// `--concurrency` outstanding.
async fn open_loop(load: &Arc<Load>) {
    let start = load.recorder.start();
    let slots = Arc::new(Semaphore::new(load.args.concurrency as usize));
    let arrivals = Arrivals::new(load.args.rate, StdRng::seed_from_u64(load.seed ^ ARRIVAL_STREAM));
    for offset in arrivals {
        let at = start + offset;
        if at >= load.deadline {
            break;
        }
        tokio::time::sleep_until(at).await;
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            load.recorder.record_at(at, Outcome::Shed);
            continue;
        };
        let Some(index) = load.next_index() else { break };
        let load = load.clone();
        tokio::spawn(async move {
            one_call(&load, index).await;
            drop(slot);
        });
    }
}

/// Sends call `index`, waits for its driver and, once confirmed, leaves a task that
/// completes or cancels it after its hold.
async fn one_call(load: &Arc<Load>, index: u64) {
    let mut rng = load.rng_for(index);
    let call = CallSpec {
        tel: random_tel(&mut rng),
        pickup: seoul::pickup(&mut rng),
        manual: rng.random_bool(load.args.manual_ratio),
        fare: rng.random_range(10..=60) * 1000,
    };
    let hold = Duration::from_millis(rng.random_range(0..=load.args.hold_ms));
    let cancel = rng.random_bool(load.args.cancel_ratio);

    let sent = Instant::now();
    load.recorder.record_at(sent, Outcome::Sent);
    let confirmed = match load.args.confirm {
        ConfirmVia::Sse => confirm_by_stream(load, &call, sent).await,
        ConfirmVia::Wait => confirm_by_waiting(load, &call, sent).await,
        // The call is left to the dispatcher: nothing to hold or release.
        ConfirmVia::None => {
            accept(load, &call, sent).await;
            None
        }
    };
    if let Some(call_id) = confirmed {
        let load = load.clone();
        tokio::spawn(async move {
            tokio::time::sleep(hold).await;
            let released = if cancel { load.api.cancel(call_id).await } else { load.api.complete(call_id).await };
            let outcome = match released {
                Ok(()) if cancel => Outcome::Cancelled,
                Ok(()) => Outcome::Completed,
                Err(_) => Outcome::Error,
            };
            load.recorder.record(outcome);
        });
    }
}

/// POST without waiting: records the answer and returns the new call's id when accepted.
async fn accept(load: &Load, call: &CallSpec, sent: Instant) -> Option<Uuid> {
    let recorder = &load.recorder;
    let posted = load.api.post_call(call, None).await;
    let answered = Instant::now();
    let call_id = match posted {
        Ok(posted) if posted.status.is_success() => posted.call_id,
        Ok(posted) if posted.status == StatusCode::SERVICE_UNAVAILABLE => {
            recorder.record_at(answered, Outcome::Overloaded);
            return None;
        }
        _ => None,
    };
    let outcome = if call_id.is_some() { Outcome::Accepted(answered - sent) } else { Outcome::Error };
    recorder.record_at(answered, outcome);
    call_id
}

/// POST without waiting, then the call's event stream until a driver is assigned.
async fn confirm_by_stream(load: &Load, call: &CallSpec, sent: Instant) -> Option<Uuid> {
    let call_id = accept(load, call, sent).await?;
    let timeout = Duration::from_secs(load.args.confirm_timeout_secs);
    let decided = tokio::time::timeout_at(sent + timeout, load.api.await_decision(call_id)).await;
    let now = Instant::now();
    let recorder = &load.recorder;
    match decided {
        Ok(Ok(Some(status))) if status == CONFIRMED => {
            recorder.record_at(now, Outcome::Confirmed(now - sent));
            return Some(call_id);
        }
        Ok(Ok(Some(status))) if status == "FAILED" => recorder.record_at(now, Outcome::DispatchFailed),
        Err(_) => recorder.record_at(now, Outcome::Unconfirmed),
        // Cancelled or completed by someone else, a stream cut short, or no stream at all.
        Ok(_) => recorder.record_at(now, Outcome::Error),
    }
    None
}

/// POST with `Prefer: wait=N`: 201 is the confirmation, 202 means no answer in time,
/// 409 `NO_DRIVER_AVAILABLE` a failed dispatch.
async fn confirm_by_waiting(load: &Load, call: &CallSpec, sent: Instant) -> Option<Uuid> {
    let recorder = &load.recorder;
    let wait = Duration::from_secs(load.args.confirm_timeout_secs);
    let posted = load.api.post_call(call, Some(wait)).await;
    let answered = Instant::now();
    let latency = answered - sent;
    let Ok(posted) = posted else {
        recorder.record_at(answered, Outcome::Error);
        return None;
    };
    let accepted = |outcome| {
        recorder.record_at(answered, Outcome::Accepted(latency));
        recorder.record_at(answered, outcome);
    };
    match (posted.status, posted.call_id) {
        (StatusCode::CREATED, Some(call_id)) if posted.call_status.as_deref() == Some(CONFIRMED) => {
            accepted(Outcome::Confirmed(latency));
            Some(call_id)
        }
        (StatusCode::ACCEPTED, Some(_)) => {
            accepted(Outcome::Unconfirmed);
            None
        }
        (StatusCode::CONFLICT, Some(_)) if posted.code.as_deref() == Some("NO_DRIVER_AVAILABLE") => {
            accepted(Outcome::DispatchFailed);
            None
        }
        (StatusCode::SERVICE_UNAVAILABLE, _) => {
            recorder.record_at(answered, Outcome::Overloaded);
            None
        }
        _ => {
            recorder.record_at(answered, Outcome::Error);
            None
        }
    }
}
