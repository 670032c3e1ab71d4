//! Load shedding: past the in-flight limit, or while the dispatcher is too far behind, the
//! API answers 503 `OVERLOADED` with `Retry-After` and stores nothing; it takes work again
//! by itself once the pressure is gone.

use std::time::Duration;

use drivercenter::{Limits, ServeConfig};
use futures::future::join_all;
use reqwest::StatusCode;
use store::testing::TestBackend;
use store::LogPosition;
use tokio::time::Instant;

use crate::harness::{call_at, spawn_api, TestApp, MAPO, SCENARIO_TIMEOUT};

/// Runs `scenario` on both stores with the app built from `config`; `workers` says
/// whether the projections and the saga run from the start.
macro_rules! overload_scenario {
    ($name:ident, $config:expr, workers = $workers:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                run(TestBackend::Sqlite, $config, $workers, super::$name).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                run(TestBackend::Postgres, $config, $workers, super::$name).await;
            }
        }
    };
}

async fn run<F, Fut>(backend: TestBackend, config: ServeConfig, workers: bool, scenario: F)
where
    F: FnOnce(TestApp) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let Some(mut app) = spawn_api(backend, config).await else { return };
    if workers {
        app.start_workers();
    }
    tokio::time::timeout(SCENARIO_TIMEOUT, scenario(app)).await.expect("the scenario finished in time");
}

fn limits(max_in_flight: usize, max_dispatch_backlog: u64, request_timeout: Duration) -> ServeConfig {
    ServeConfig {
        saga: saga::SagaConfig { dispatch_timeout: Duration::from_secs(3), radius_km: 5.0 },
        read_your_write_timeout: Duration::from_millis(200),
        limits: Limits {
            max_in_flight,
            max_dispatch_backlog,
            request_timeout,
            monitor_interval: Duration::from_millis(50),
        },
        ..ServeConfig::default()
    }
}

/// How many calls the log holds, once it shows at least `expected`: an accepted call's
/// answer does not wait for its event to reach the readers of the log.
async fn calls_requested(app: &TestApp, expected: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let events = app.store.read_after(LogPosition::START, 100_000).await.expect("read the log");
        let calls = events.iter().filter(|event| event.event_type == "CallRequested").count();
        if calls >= expected || Instant::now() >= deadline {
            return calls;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[track_caller]
fn assert_overloaded(reply: &crate::harness::Reply) {
    reply.assert_problem(StatusCode::SERVICE_UNAVAILABLE, "OVERLOADED");
    assert_eq!(reply.header("retry-after"), Some("1"), "{}", reply.text);
}

overload_scenario!(
    requests_past_the_in_flight_limit_are_shed_and_store_nothing,
    limits(3, 1_000_000, Duration::from_secs(40)),
    workers = true
);
async fn requests_past_the_in_flight_limit_are_shed_and_store_nothing(app: TestApp) {
    let (lat, lng) = MAPO;
    // No driver is online: each of these holds its slot for the whole two seconds.
    let held =
        join_all((0..3).map(|n| app.post_call_reply_owned(call_at(&format!("010-5000-000{n}"), lat, lng), Some(2))));
    let shed = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let replies =
            join_all((0..5).map(|n| app.post_call_reply_owned(call_at(&format!("010-5100-000{n}"), lat, lng), None)))
                .await;
        let health = app.get("/healthz").await;
        let metrics = app.get("/metrics").await;
        (replies, health, metrics)
    };
    let (held, (shed, health, metrics)) = tokio::join!(held, shed);
    for reply in &held {
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text);
    }
    for reply in &shed {
        assert_overloaded(reply);
    }
    assert_eq!(health.status, StatusCode::OK, "probes are never shed");
    assert!(metrics.text.contains("drivercenter_overload_rejections_total"), "{}", metrics.text);
    assert_eq!(calls_requested(&app, 3).await, 3, "a shed request stored nothing");

    let after = app.post_call_reply_owned(call_at("010-5200-0000", lat, lng), None).await;
    assert_eq!(after.status, StatusCode::ACCEPTED, "the pressure is gone: {}", after.text);
    assert_eq!(calls_requested(&app, 4).await, 4);
}

overload_scenario!(
    new_calls_wait_out_a_dispatch_backlog_and_are_taken_again_once_it_drains,
    limits(512, 4, Duration::from_secs(40)),
    workers = false
);
async fn new_calls_wait_out_a_dispatch_backlog_and_are_taken_again_once_it_drains(mut app: TestApp) {
    let (lat, lng) = MAPO;
    // Nothing dispatches yet: every accepted call adds to the backlog until one is shed.
    let mut accepted = 0;
    let shed = loop {
        let reply = app.post_call_reply_owned(call_at(&format!("010-6000-{accepted:04}"), lat, lng), None).await;
        if reply.status != StatusCode::ACCEPTED {
            break reply;
        }
        accepted += 1;
        assert!(accepted < 50, "the backlog never shed a call");
        tokio::time::sleep(Duration::from_millis(60)).await;
    };
    assert_overloaded(&shed);
    assert!(accepted > 4, "calls are shed only past the limit, after {accepted}");
    assert_eq!(calls_requested(&app, accepted).await, accepted, "the shed call stored nothing");
    let driver = app.post("/drivers", &serde_json::json!({"name": "안채우", "tel": "010-3345-7789"})).await;
    assert_eq!(driver.status, StatusCode::CREATED, "only new calls wait for the backlog: {}", driver.text);

    app.start_workers();
    let started = Instant::now();
    loop {
        let reply = app.post_call_reply_owned(call_at("010-6100-0000", lat, lng), None).await;
        if reply.status == StatusCode::ACCEPTED {
            break;
        }
        assert_overloaded(&reply);
        assert!(started.elapsed() < Duration::from_secs(20), "the backlog never drained");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(calls_requested(&app, accepted + 1).await, accepted + 1);
}

overload_scenario!(
    a_request_past_its_time_limit_is_answered_503,
    limits(512, 1_000_000, Duration::from_secs(1)),
    workers = true
);
async fn a_request_past_its_time_limit_is_answered_503(app: TestApp) {
    let (lat, lng) = MAPO;
    let reply = app.post_call_reply_owned(call_at("010-7000-0000", lat, lng), Some(5)).await;
    reply.assert_problem(StatusCode::SERVICE_UNAVAILABLE, "REQUEST_TIMEOUT");
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
}
