//! The app under test, started on a fresh database, and typed helpers for its HTTP API.
//!
//! Every scenario is written once with [`scenario!`] and runs on both stores: SQLite
//! always, PostgreSQL when it is reachable (outside CI an unreachable server skips).

use std::future::Future;
use std::time::Duration;

use drivercenter::{AppState, ServeConfig};
use reqwest::header::HeaderMap;
use reqwest::{Client, Method, RequestBuilder, StatusCode};
use serde_json::{json, Value};
use store::testing::{fresh_store, TestBackend};
use store::{LogPosition, Store};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use uuid::Uuid;

/// The dispatch deadline of most scenarios: short, so that failures come quickly.
pub const DISPATCH_TIMEOUT: Duration = Duration::from_secs(3);

/// The longest any single scenario may run.
pub const SCENARIO_TIMEOUT: Duration = Duration::from_secs(90);

/// How long a helper waits for the views to show something before the test fails.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Coordinates around 마포구's centre (37.5663, 126.9019), where the scenarios happen.
pub const MAPO: (f64, f64) = (37.5663, 126.9019);

/// Runs a scenario, written once as `async fn name(app: TestApp)`, on SQLite and on
/// PostgreSQL:
///
/// ```ignore
/// scenario!(something_holds);                                              // DISPATCH_TIMEOUT
/// scenario!(something_else_holds, dispatch_timeout = Duration::from_secs(10));
/// async fn something_holds(app: TestApp) { ... }
/// ```
///
/// expands to `mod something_holds { async fn sqlite(); async fn postgres(); }`: two
/// tokio tests, each on an app of its own over a fresh database. The scenario stays a
/// plain function beside the module (functions and modules live in different
/// namespaces), so that rustfmt and clippy see it like any other code.
macro_rules! scenario {
    ($name:ident) => {
        scenario!($name, dispatch_timeout = $crate::harness::DISPATCH_TIMEOUT);
    };
    ($name:ident, dispatch_timeout = $timeout:expr) => {
        mod $name {
            // For the timeout expression, written in the scenario's module.
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                $crate::harness::run_scenario(store::testing::TestBackend::Sqlite, $timeout, super::$name).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                $crate::harness::run_scenario(store::testing::TestBackend::Postgres, $timeout, super::$name).await;
            }
        }
    };
}
pub(crate) use scenario;

/// Starts the app on `backend` and runs `scenario` against it, bounded by
/// [`SCENARIO_TIMEOUT`]. Returns early (skipped) when PostgreSQL is unreachable outside CI.
pub async fn run_scenario<F, Fut>(backend: TestBackend, dispatch_timeout: Duration, scenario: F)
where
    F: FnOnce(TestApp) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(app) = spawn_app(backend, dispatch_timeout).await else {
        return;
    };
    tokio::time::timeout(SCENARIO_TIMEOUT, scenario(app))
        .await
        .unwrap_or_else(|_| panic!("the scenario on {backend:?} ran longer than {SCENARIO_TIMEOUT:?}"));
}

/// A running app: its address, a client, the store and state behind it.
pub struct TestApp {
    pub address: String,
    pub client: Client,
    pub store: Store,
    pub state: AppState,
    shutdown: watch::Sender<bool>,
    workers: JoinSet<()>,
}

impl TestApp {
    /// Starts the projections and the saga, as a worker process would.
    pub fn start_workers(&mut self) {
        self.workers = drivercenter::spawn_workers(&self.state, self.shutdown.subscribe());
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// The app on a fresh database of `backend`, or `None` when that backend is unavailable.
pub async fn spawn_app(backend: TestBackend, dispatch_timeout: Duration) -> Option<TestApp> {
    let config = ServeConfig { saga: saga::SagaConfig { dispatch_timeout, radius_km: 5.0 }, ..ServeConfig::default() };
    let mut app = spawn_api(backend, config).await?;
    app.start_workers();
    Some(app)
}

/// The API alone, as `--role api` runs it: nothing dispatches calls or updates the
/// views until [`TestApp::start_workers`].
pub async fn spawn_api(backend: TestBackend, config: ServeConfig) -> Option<TestApp> {
    let store = fresh_store(backend).await?;
    let state = AppState::new(store.clone(), config);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a local port");
    let address = format!("http://{}", listener.local_addr().expect("the bound address"));
    tokio::spawn(drivercenter::run(listener, state.clone(), shutdown_rx));
    let client = Client::builder().timeout(Duration::from_secs(40)).build().expect("build the HTTP client");
    Some(TestApp { address, client, store, state, shutdown, workers: JoinSet::new() })
}

/// An answer: status, headers, the body as JSON (`Null` when it is not JSON) and as text.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// Asserts an RFC 9457 problem with this status and code.
    #[track_caller]
    pub fn assert_problem(&self, status: StatusCode, code: &str) {
        assert_eq!(self.status, status, "status of {}", self.text);
        assert_eq!(self.body["code"], code, "code of {}", self.text);
        assert_eq!(self.body["status"], status.as_u16(), "problem status of {}", self.text);
        assert_eq!(self.header("content-type"), Some("application/problem+json"), "content type of {}", self.text);
    }

    #[track_caller]
    pub fn assert_status(&self, status: StatusCode) -> &Value {
        assert_eq!(self.status, status, "status of {}", self.text);
        &self.body
    }
}

/// A call body at (`lat`, `lng`) in 마포.
pub fn call_at(tel: &str, lat: f64, lng: f64) -> Value {
    json!({
        "tel": tel,
        "pickup": {"address": "서울 마포구 월드컵로", "lat": lat, "lng": lng},
        "fare": 25000,
    })
}

/// A call in 마포 with this drive type.
pub fn call_with_drive_type(tel: &str, drive_type: &str) -> Value {
    let mut body = call_at(tel, MAPO.0, MAPO.1);
    body["drive_type"] = json!(drive_type);
    body
}

pub fn uuid_of(value: &Value) -> Uuid {
    value.as_str().and_then(|text| Uuid::parse_str(text).ok()).unwrap_or_else(|| panic!("`{value}` is not a UUID"))
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }

    pub async fn send(&self, request: RequestBuilder) -> Reply {
        let response = request.send().await.expect("the server answers");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("read the body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply { status, headers, body, text }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(self.request(Method::GET, path)).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.send(self.request(Method::POST, path).json(body)).await
    }

    pub async fn post_empty(&self, path: &str) -> Reply {
        self.send(self.request(Method::POST, path)).await
    }

    // Drivers

    /// Registers a driver (201, OFFLINE) and returns their id.
    pub async fn register_driver(&self, name: &str, tel: &str, can_drive_manual: bool) -> Uuid {
        let reply =
            self.post("/drivers", &json!({"name": name, "tel": tel, "can_drive_manual": can_drive_manual})).await;
        let body = reply.assert_status(StatusCode::CREATED);
        assert_eq!(body["status"], "OFFLINE", "{}", reply.text);
        assert_eq!(body["status_label"], "퇴근", "{}", reply.text);
        let driver_id = uuid_of(&body["driver_id"]);
        assert_eq!(reply.header("location"), Some(format!("/drivers/{driver_id}").as_str()));
        driver_id
    }

    /// Brings a driver online at `location` (202, AVAILABLE). The answer shows the view at
    /// or after the change: when a call was waiting, the saga may already have reserved
    /// the driver for it (ASSIGNED, with the call).
    pub async fn go_online(&self, driver_id: Uuid, location: Value) -> Value {
        let reply = self.post(&format!("/drivers/{driver_id}/online"), &json!({ "location": location })).await;
        let body = reply.assert_status(StatusCode::ACCEPTED).clone();
        let available = body["status"] == "AVAILABLE" && body["current_call_id"].is_null();
        let reserved = body["status"] == "ASSIGNED" && body["current_call_id"].is_string();
        assert!(available || reserved, "{}", reply.text);
        assert!(body["location"].is_object(), "{}", reply.text);
        body
    }

    pub async fn go_online_at(&self, driver_id: Uuid, lat: f64, lng: f64) -> Value {
        self.go_online(driver_id, json!({"address": "서울", "lat": lat, "lng": lng})).await
    }

    /// Registers a driver and brings them online at (`lat`, `lng`).
    pub async fn driver_online_at(&self, name: &str, tel: &str, manual: bool, lat: f64, lng: f64) -> Uuid {
        let driver_id = self.register_driver(name, tel, manual).await;
        self.go_online_at(driver_id, lat, lng).await;
        driver_id
    }

    pub async fn get_driver(&self, driver_id: Uuid) -> Value {
        let reply = self.get(&format!("/drivers/{driver_id}")).await;
        reply.assert_status(StatusCode::OK).clone()
    }

    /// The driver's view once `ready` holds for it; fails the test after [`SETTLE_TIMEOUT`].
    pub async fn wait_for_driver(&self, driver_id: Uuid, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
        let path = format!("/drivers/{driver_id}");
        self.wait_for(&path, what, ready).await
    }

    // Calls

    /// Requests a call, optionally with `Prefer: wait=N`.
    pub async fn post_call_reply(&self, body: &Value, prefer_wait: Option<u64>) -> Reply {
        let mut request = self.request(Method::POST, "/calls").json(body);
        if let Some(seconds) = prefer_wait {
            request = request.header("prefer", format!("wait={seconds}"));
        }
        self.send(request).await
    }

    pub async fn post_call_reply_owned(&self, body: Value, prefer_wait: Option<u64>) -> Reply {
        self.post_call_reply(&body, prefer_wait).await
    }

    pub async fn post_call(&self, body: &Value, prefer_wait: Option<u64>) -> (StatusCode, Value) {
        let reply = self.post_call_reply(body, prefer_wait).await;
        (reply.status, reply.body)
    }

    /// Requests a call without waiting (202) and returns its id.
    pub async fn request_call(&self, body: &Value) -> Uuid {
        let reply = self.post_call_reply(body, None).await;
        let view = reply.assert_status(StatusCode::ACCEPTED);
        let call_id = uuid_of(&view["call_id"]);
        assert_eq!(reply.header("location"), Some(format!("/calls/{call_id}").as_str()));
        call_id
    }

    /// Requests a call with `Prefer: wait=10` and expects it confirmed (201).
    pub async fn confirmed_call(&self, body: &Value) -> Value {
        let reply = self.post_call_reply(body, Some(10)).await;
        let view = reply.assert_status(StatusCode::CREATED).clone();
        assert_eq!(view["status"], "CONFIRMED", "{}", reply.text);
        view
    }

    pub async fn get_call(&self, call_id: Uuid) -> Value {
        let reply = self.get(&format!("/calls/{call_id}")).await;
        reply.assert_status(StatusCode::OK).clone()
    }

    /// The call's view once `ready` holds for it; fails the test after [`SETTLE_TIMEOUT`].
    pub async fn wait_for_call(&self, call_id: Uuid, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
        self.wait_for(&format!("/calls/{call_id}"), what, ready).await
    }

    pub async fn cancel(&self, call_id: Uuid) -> Reply {
        self.post_empty(&format!("/calls/{call_id}/cancel")).await
    }

    pub async fn complete(&self, call_id: Uuid) -> Reply {
        self.post_empty(&format!("/calls/{call_id}/complete")).await
    }

    pub async fn history(&self, query: &str) -> Reply {
        self.get(&format!("/calls?{query}")).await
    }

    pub async fn timeline(&self, call_id: Uuid) -> Vec<Value> {
        let reply = self.get(&format!("/calls/{call_id}/timeline")).await;
        let body = reply.assert_status(StatusCode::OK);
        body.as_array().cloned().unwrap_or_else(|| panic!("not a list: {}", reply.text))
    }

    /// Polls `path` until its 200 body satisfies `ready`.
    pub async fn wait_for(&self, path: &str, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            let reply = self.get(path).await;
            if reply.status == StatusCode::OK && ready(&reply.body) {
                return reply.body;
            }
            assert!(
                Instant::now() < deadline,
                "{path} did not become {what} within {SETTLE_TIMEOUT:?}; last answer {} {}",
                reply.status,
                reply.text
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // The store

    pub async fn count_events(&self) -> u64 {
        self.store.count_events().await.expect("count the events")
    }

    /// The position of the last event in the log (what every subscriber must reach).
    pub async fn log_end(&self) -> LogPosition {
        let mut end = LogPosition::START;
        loop {
            let events = self.store.read_after(end, 1000).await.expect("read the log");
            match events.last() {
                Some(last) => end = last.position,
                None => return end,
            }
        }
    }

    /// Waits until the three projections and the saga have read the whole log, twice in
    /// a row: nothing is left for anyone to do.
    pub async fn wait_until_quiet(&self) {
        let names = projections::PROJECTIONS.iter().copied().chain([saga::SAGA_NAME]);
        let names: Vec<&str> = names.collect();
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        let mut quiet_rounds = 0;
        while quiet_rounds < 2 {
            let end = self.log_end().await;
            let mut behind = Vec::new();
            for name in &names {
                let at = store::checkpoint::read(&self.store, name).await.expect("read a checkpoint");
                if at != end {
                    behind.push((*name, at));
                }
            }
            if behind.is_empty() {
                quiet_rounds += 1;
            } else {
                quiet_rounds = 0;
                assert!(Instant::now() < deadline, "subscribers still behind the log end {end:?}: {behind:?}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}
