//! Crash safety of the real binary: SIGKILL the server during a burst of calls, start it
//! again on the same database, and check that nothing was lost or double-booked.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use store::testing::{fresh_database_url, TestBackend};
use store::{checkpoint, Store};
use support::{drivercenter, free_port, get, migrate, post, scratch_dir, start, Process};

mod support;

const DRIVERS: usize = 6;
const CALLS: usize = 40;
const CUSTOMER: &str = "01077778888";

/// The server on `database_url` and `port`, ready, with a short dispatch deadline.
async fn start_server(database_url: &str, port: u16, dir: &std::path::Path) -> Process {
    let env = [("DRIVERCENTER_DISPATCH_TIMEOUT_SECS", "3")];
    start(database_url, port, dir.join("serve.log"), &[], &env).await
}

/// Every call of the test's customer, through the paginated history.
async fn all_calls(client: &reqwest::Client, base: &str) -> Vec<Value> {
    let mut calls = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = get(client, format!("{base}/calls?tel={CUSTOMER}&limit=100{cursor}")).await;
        calls.extend(page["items"].as_array().expect("items").iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return calls,
        }
    }
}

/// Waits until every projection has applied the whole log.
async fn wait_for_projections(store: &Store) {
    let head = store.head().await.expect("read the head of the log");
    let started = Instant::now();
    for name in projections::PROJECTIONS {
        while Some(checkpoint::read(store, name).await.expect("read checkpoint")) != head {
            assert!(started.elapsed() < Duration::from_secs(10), "projection {name} did not catch up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn crash_during_a_burst_loses_nothing_and_double_books_nobody(backend: TestBackend) {
    let Some(database_url) = fresh_database_url(backend).await else {
        return;
    };
    let dir = scratch_dir("crash");
    if backend == TestBackend::Postgres {
        migrate(&database_url, &dir.join("migrate.log"));
    }
    let port = free_port();
    let server = start_server(&database_url, port, &dir).await;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("http client");
    for n in 0..DRIVERS {
        let driver = post(
            &client,
            format!("{}/drivers", server.base),
            json!({"name": format!("기사{n}"), "tel": format!("0103000{n:04}"), "can_drive_manual": n % 2 == 0}),
        )
        .await;
        let id = driver["driver_id"].as_str().expect("driver id");
        post(&client, format!("{}/drivers/{id}/online", server.base), json!({"location": {"address": "마포"}})).await;
    }

    let answered = Arc::new(AtomicUsize::new(0));
    let burst: Vec<_> = (0..CALLS)
        .map(|n| {
            let client = client.clone();
            let url = format!("{}/calls", server.base);
            let answered = answered.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(5 * n as u64)).await;
                let body = json!({"tel": CUSTOMER, "pickup": {"address": "서울 마포구"}, "fare": 20000 + n});
                let response = client.post(url).json(&body).send().await.ok()?;
                if !response.status().is_success() {
                    return None;
                }
                let view: Value = response.json().await.ok()?;
                answered.fetch_add(1, Ordering::SeqCst);
                view["call_id"].as_str().map(str::to_string)
            })
        })
        .collect();
    // Kill the server while the burst is in full flow: some calls answered, most not yet.
    let started = Instant::now();
    while answered.load(Ordering::SeqCst) < CALLS / 8 {
        assert!(started.elapsed() < Duration::from_secs(20), "the burst made no progress");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(server);
    let mut accepted = HashSet::new();
    for task in burst {
        if let Some(call_id) = task.await.expect("burst task") {
            accepted.insert(call_id);
        }
    }
    assert!(!accepted.is_empty(), "no call was accepted before the crash");
    assert!(accepted.len() < CALLS, "the crash came only after the whole burst");

    let server = start_server(&database_url, port, &dir).await;
    let settled = |call: &Value| matches!(call["status"].as_str(), Some("CONFIRMED" | "FAILED"));
    let started = Instant::now();
    let calls = loop {
        let calls = all_calls(&client, &server.base).await;
        let known: HashSet<String> =
            calls.iter().filter_map(|call| call["call_id"].as_str().map(str::to_string)).collect();
        if accepted.is_subset(&known) && calls.iter().all(settled) {
            break calls;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "calls did not settle after the restart: {calls:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    let mut holder_of: HashMap<String, String> = HashMap::new();
    for call in calls.iter().filter(|call| call["status"] == "CONFIRMED") {
        let driver = call["driver"]["driver_id"].as_str().expect("a confirmed call names its driver").to_string();
        let call_id = call["call_id"].as_str().expect("call id").to_string();
        assert!(holder_of.insert(driver.clone(), call_id).is_none(), "driver {driver} holds two calls");
    }
    assert_eq!(holder_of.len(), DRIVERS.min(calls.len()), "every driver should be busy with one call");
    let drivers = get(&client, format!("{}/drivers", server.base)).await;
    for driver in drivers["items"].as_array().expect("items") {
        let id = driver["driver_id"].as_str().expect("driver id");
        match holder_of.get(id) {
            Some(call_id) => {
                assert_eq!(driver["status"], "ASSIGNED", "{driver}");
                assert_eq!(driver["current_call_id"].as_str(), Some(call_id.as_str()), "{driver}");
            }
            None => assert_eq!(driver["status"], "AVAILABLE", "{driver}"),
        }
    }
    let store = Store::connect(&database_url).await.expect("connect");
    wait_for_projections(&store).await;
    drop(server);

    let live = projections::queries::dump(&store).await.expect("dump live views");
    let status =
        drivercenter(&database_url, &dir.join("replay.log")).args(["replay", "all"]).status().expect("run replay");
    assert!(status.success(), "replay failed");
    let replayed = projections::queries::dump(&store).await.expect("dump replayed views");
    let differing: Vec<_> = live.iter().zip(&replayed).filter(|(live, replayed)| live != replayed).collect();
    assert!(
        live.len() == replayed.len() && differing.is_empty(),
        "views differ from a fresh replay: {} live rows, {} replayed, first difference {:?}",
        live.len(),
        replayed.len(),
        differing.first()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_crash_during_a_burst_loses_nothing_and_double_books_nobody() {
    crash_during_a_burst_loses_nothing_and_double_books_nobody(TestBackend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_crash_during_a_burst_loses_nothing_and_double_books_nobody() {
    crash_during_a_burst_loses_nothing_and_double_books_nobody(TestBackend::Postgres).await;
}
