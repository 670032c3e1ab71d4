//! Split roles on PostgreSQL: one API process and two workers, of which one is active and
//! one stands by. Killing the active worker (SIGKILL) under load hands the work to the
//! standby within seconds, and nothing is lost or done twice. An API with no worker at all
//! keeps taking calls, and they are dispatched once a worker starts. The embedded SQLite
//! store refuses split roles.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use store::testing::{fresh_database_url, TestBackend};
use store::{LogPosition, Store};
use support::{free_port, migrate, post, scratch_dir, spawn, start, Process};
use uuid::Uuid;

const DRIVERS: usize = 8;
const CLIENTS: usize = 6;
const CUSTOMER: &str = "01055556666";

/// The longest a standby may take to become active after the active worker dies.
const TAKEOVER_LIMIT: Duration = Duration::from_secs(5);

fn client() -> Client {
    Client::builder().timeout(Duration::from_secs(30)).build().expect("http client")
}

async fn register_drivers(client: &Client, api: &Process) {
    for n in 0..DRIVERS {
        let driver = post(
            client,
            format!("{}/drivers", api.base),
            json!({"name": format!("기사{n}"), "tel": format!("0103100{n:04}")}),
        )
        .await;
        let id = driver["driver_id"].as_str().expect("driver id");
        post(client, format!("{}/drivers/{id}/online", api.base), json!({"location": {"address": "마포"}})).await;
    }
}

/// Whether the worker says it is the active one (`drivercenter_worker_active 1`).
async fn is_active(client: &Client, worker: &Process) -> bool {
    worker.metric(client, "drivercenter_worker_active").await == Some(1.0)
}

/// The index of the one active worker, once exactly one of them is.
async fn active_worker(client: &Client, workers: &[&Process]) -> usize {
    let started = Instant::now();
    loop {
        let mut active = Vec::new();
        for (index, worker) in workers.iter().enumerate() {
            if is_active(client, worker).await {
                active.push(index);
            }
        }
        if let [only] = active[..] {
            return only;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no single active worker: {active:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One customer's loop until `stop`: call with `Prefer: wait`, expect a driver, complete
/// the trip. Returns the calls it completed; panics on any failed answer.
async fn customer(client: Client, base: String, stop: Arc<AtomicBool>) -> Vec<Uuid> {
    let mut completed = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let response = client
            .post(format!("{base}/calls"))
            .header("prefer", "wait=20")
            .header("idempotency-key", Uuid::now_v7().to_string())
            .json(&json!({"tel": CUSTOMER, "pickup": {"address": "서울 마포구"}, "fare": 20000}))
            .send()
            .await
            .expect("the API answers");
        let status = response.status();
        let view: Value = response.json().await.expect("json body");
        assert_eq!(status, StatusCode::CREATED, "every call gets a driver: {view}");
        let call_id: Uuid = view["call_id"].as_str().and_then(|id| id.parse().ok()).expect("call id");
        let done = client.post(format!("{base}/calls/{call_id}/complete")).send().await.expect("complete");
        assert_eq!(done.status(), StatusCode::ACCEPTED, "{}", done.text().await.unwrap_or_default());
        completed.push(call_id);
    }
    completed
}

/// Event types per stream, from the whole log.
async fn streams(store: &Store) -> HashMap<(String, String), Vec<String>> {
    let mut streams: HashMap<(String, String), Vec<String>> = HashMap::new();
    let mut position = LogPosition::START;
    loop {
        let events = store.read_after(position, 5000).await.expect("read the log");
        let Some(last) = events.last() else { return streams };
        position = last.position;
        for event in events {
            streams
                .entry((event.aggregate_type.clone(), event.aggregate_id.clone()))
                .or_default()
                .push(event.event_type);
        }
    }
}

/// Waits until `ready` holds for the notifications of every call, or fails.
async fn wait_for_notifications(store: &Store, calls: &[Uuid]) -> HashMap<Uuid, Vec<notifier::Notification>> {
    let started = Instant::now();
    loop {
        let mut by_call = HashMap::new();
        for call_id in calls {
            by_call.insert(*call_id, notifier::queries::for_call(store, *call_id).await.expect("notifications"));
        }
        let all_there = by_call.values().all(|messages| messages.len() >= 2);
        if all_there || started.elapsed() > Duration::from_secs(20) {
            return by_call;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_takes_over_from_a_killed_worker_and_nothing_is_lost_or_done_twice() {
    let Some(database_url) = fresh_database_url(TestBackend::Postgres).await else { return };
    let dir = scratch_dir("failover");
    migrate(&database_url, &dir.join("migrate.log"));
    let env = [("DRIVERCENTER_DISPATCH_TIMEOUT_SECS", "30")];
    let api = start(&database_url, free_port(), dir.join("api.log"), &["--role", "api"], &env).await;
    let mut first = start(&database_url, free_port(), dir.join("worker-1.log"), &["--role", "worker"], &env).await;
    let mut second = start(&database_url, free_port(), dir.join("worker-2.log"), &["--role", "worker"], &env).await;
    let client = client();
    register_drivers(&client, &api).await;

    let stop = Arc::new(AtomicBool::new(false));
    let customers: Vec<_> =
        (0..CLIENTS).map(|_| tokio::spawn(customer(client.clone(), api.base.clone(), stop.clone()))).collect();
    tokio::time::sleep(Duration::from_secs(3)).await;

    let active = active_worker(&client, &[&first, &second]).await;
    let (killed, standby) = if active == 0 { (&mut first, &second) } else { (&mut second, &first) };
    killed.kill();
    let killed_at = Instant::now();
    while !is_active(&client, standby).await {
        assert!(killed_at.elapsed() < TAKEOVER_LIMIT * 2, "the standby never took over; see {}", standby.log.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let takeover = killed_at.elapsed();
    println!("failover: the standby was active {} ms after the active worker was killed", takeover.as_millis());
    assert!(takeover < TAKEOVER_LIMIT, "takeover took {takeover:?}");

    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    let mut calls = Vec::new();
    for customer in customers {
        calls.extend(customer.await.expect("customer task"));
    }
    println!("failover: {} calls confirmed and completed across the takeover", calls.len());
    assert!(calls.len() >= CLIENTS * 2, "too little load: {} calls", calls.len());

    let store = Store::connect(&database_url).await.expect("connect");
    let notifications = wait_for_notifications(&store, &calls).await;
    let streams = streams(&store).await;
    for call_id in &calls {
        let id = call_id.to_string();
        let call = &streams[&("call".to_string(), id.clone())];
        assert_eq!(
            call,
            &["CallRequested", "CallDispatchStarted", "CallConfirmed", "CallCompleted"],
            "call {id} happened exactly once, in order"
        );
        let assignment = &streams[&("assignment".to_string(), id.clone())];
        for once in ["AssignmentRequested", "AssignmentConfirmed", "AssignmentCompleted"] {
            assert_eq!(assignment.iter().filter(|event| *event == once).count(), 1, "{once} of {id}: {assignment:?}");
        }
        let kinds: Vec<Value> = notifications[call_id].iter().map(|message| json!(message.kind)).collect();
        assert_eq!(kinds, ["CALL_CONFIRMED", "CALL_COMPLETED"], "one message per event of {id}");
    }
    for ((aggregate, id), events) in &streams {
        if aggregate != "driver" {
            continue;
        }
        // A driver alternates between reserved and released: never two calls at once.
        let holds: Vec<&String> =
            events.iter().filter(|event| *event == "DriverReserved" || *event == "DriverReleased").collect();
        for pair in holds.windows(2) {
            assert_ne!(pair[0], pair[1], "driver {id} was {} twice in a row: {events:?}", pair[0]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_without_workers_takes_calls_that_are_dispatched_once_a_worker_starts() {
    let Some(database_url) = fresh_database_url(TestBackend::Postgres).await else { return };
    let dir = scratch_dir("api-alone");
    migrate(&database_url, &dir.join("migrate.log"));
    let api = start(&database_url, free_port(), dir.join("api.log"), &["--role", "api"], &[]).await;
    let client = client();
    // No projector runs, so the answer has no view to show: the new driver is named by
    // its `Location`.
    let registered = client
        .post(format!("{}/drivers", api.base))
        .json(&json!({"name": "안채우", "tel": "01033457789"}))
        .send()
        .await
        .expect("register");
    assert_eq!(registered.status(), StatusCode::CREATED);
    let location = registered.headers()["location"].to_str().expect("location").to_string();
    let driver_id = location.trim_start_matches("/drivers/").to_string();
    post(&client, format!("{}/drivers/{driver_id}/online", api.base), json!({"location": {"address": "마포"}})).await;

    let mut calls = Vec::new();
    for n in 0..3 {
        let response = client
            .post(format!("{}/calls", api.base))
            .json(&json!({"tel": format!("0105000000{n}"), "pickup": {"address": "마포"}, "fare": 1000}))
            .send()
            .await
            .expect("the API answers");
        assert_eq!(response.status(), StatusCode::ACCEPTED, "accepted with no worker running");
        let view: Value = response.json().await.expect("json body");
        calls.push(view["call_id"].as_str().expect("call id").to_string());
    }
    let confirmed = |call: &Value| call["status"] == "CONFIRMED";
    let first = client.get(format!("{}/calls/{}", api.base, calls[0])).send().await.expect("get");
    assert_eq!(first.status(), StatusCode::NOT_FOUND, "no projector ran yet, so no view either");

    let _worker = start(&database_url, free_port(), dir.join("worker.log"), &["--role", "worker"], &[]).await;
    let started = Instant::now();
    loop {
        let view: Value = client
            .get(format!("{}/calls/{}?min_version=3", api.base, calls[0]))
            .send()
            .await
            .expect("get")
            .json()
            .await
            .unwrap_or(Value::Null);
        if confirmed(&view) {
            assert_eq!(view["driver"]["driver_id"], driver_id.as_str(), "{view}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "the first call was never dispatched: {view}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for call_id in &calls[1..] {
        let view: Value =
            client.get(format!("{}/calls/{call_id}", api.base)).send().await.expect("get").json().await.expect("json");
        assert_eq!(view["status"], "DISPATCHING", "waits for the one busy driver: {view}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_store_refuses_split_roles() {
    let dir = scratch_dir("sqlite-roles");
    let database_url = format!("sqlite://{}", dir.join("drivercenter.db").display());
    for role in ["api", "worker"] {
        let log = dir.join(format!("{role}.log"));
        let mut process = spawn(&database_url, free_port(), log.clone(), &["--role", role], &[]);
        let status = process.wait_exit(Duration::from_secs(20)).await;
        assert!(!status.success(), "--role {role} on SQLite must not start");
        let said = std::fs::read_to_string(&log).expect("read the log");
        assert!(said.contains("needs PostgreSQL"), "--role {role} says why: {said}");
    }
}
