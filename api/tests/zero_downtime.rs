//! Zero-downtime restarts: two `--role api` processes and one `--role worker` behind nginx
//! on one port, a steady load of calls through it, and every process restarted in turn
//! with SIGTERM. The clients must see every request succeed. PostgreSQL and nginx only;
//! loopback only; bounded in time.

mod support;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use store::testing::{fresh_database_url, TestBackend};
use support::Process;

const CLIENTS: usize = 16;
const DRIVERS: usize = 20;
const CUSTOMER: &str = "01066667777";
/// How long the load runs at least; the restarts happen inside it.
const LOAD: Duration = Duration::from_secs(24);
/// Below this many requests the run proves too little.
const MIN_REQUESTS: usize = 500;
/// The API processes keep serving this long after SIGTERM, with readiness already off.
const DRAIN_SECS: &str = "1";
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);
/// Polls of a call's view before it is cancelled instead of completed.
const POLLS: usize = 10;

/// An nginx in the foreground under a prefix of its own; stopped when dropped.
struct Gateway {
    child: Child,
    base: String,
    dir: PathBuf,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        // SIGTERM makes the master stop its workers too; SIGKILL would orphan them.
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `/usr/sbin/nginx`, else the first `nginx` on `PATH`.
fn nginx_binary() -> Option<PathBuf> {
    let sbin = PathBuf::from("/usr/sbin/nginx");
    if sbin.is_file() {
        return Some(sbin);
    }
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join("nginx")).find(|path| path.is_file())
}

/// The gateway of `deploy/nginx/nginx.conf` over fixed upstreams: the same timeouts and
/// retry rules, and `max_fails=0` so that a replica that was refusing connections while
/// it restarted is tried again at once. Temporary files stay under `dir`; the modules a
/// build leaves out get no temp path, as their directives would be unknown.
fn gateway_config(dir: &Path, port: u16, upstreams: &[u16], nginx_build: &str) -> String {
    let dir = dir.display();
    let servers: String =
        upstreams.iter().map(|port| format!("        server 127.0.0.1:{port} max_fails=0;\n")).collect();
    let other_temp_paths: String = ["fastcgi", "uwsgi", "scgi"]
        .iter()
        .filter(|module| !nginx_build.contains(&format!("--without-http_{module}_module")))
        .map(|module| format!("    {module}_temp_path {dir}/temp/{module};\n"))
        .collect();
    format!(
        r#"daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;

events {{
    worker_connections 512;
}}

http {{
    log_format gateway '"$request" $status upstream=$upstream_addr upstream_status=$upstream_status rt=$request_time';
    access_log {dir}/access.log gateway;
    client_body_temp_path {dir}/temp/client_body;
    proxy_temp_path {dir}/temp/proxy;
{other_temp_paths}
    upstream api {{
{servers}    }}

    server {{
        listen 127.0.0.1:{port};

        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_connect_timeout 2s;
        proxy_read_timeout 45s;
        proxy_send_timeout 45s;
        proxy_next_upstream error timeout http_502 http_503;
        proxy_next_upstream_tries 3;

        location = /calls {{
            proxy_next_upstream error timeout http_502 http_503 non_idempotent;
            proxy_pass http://api;
        }}

        location / {{
            proxy_pass http://api;
        }}
    }}
}}
"#
    )
}

/// Starts nginx in front of `upstreams` and waits until it passes requests on.
async fn start_gateway(nginx: &Path, dir: &Path, upstreams: &[u16]) -> Gateway {
    let build = Command::new(nginx).arg("-V").output().expect("run nginx -V");
    let build = String::from_utf8_lossy(&build.stderr).into_owned();
    std::fs::create_dir_all(dir.join("temp")).expect("create the nginx temp directory");
    let port = support::free_port();
    let config = dir.join("nginx.conf");
    std::fs::write(&config, gateway_config(dir, port, upstreams, &build)).expect("write nginx.conf");
    let stderr = std::fs::File::create(dir.join("stderr.log")).expect("create the nginx stderr log");
    let child = Command::new(nginx)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&config)
        .arg("-e")
        .arg(dir.join("error.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("start nginx");
    let mut gateway = Gateway { child, base: format!("http://127.0.0.1:{port}"), dir: dir.to_path_buf() };
    let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().expect("http client");
    let started = Instant::now();
    loop {
        let health = client.get(format!("{}/healthz", gateway.base)).send().await;
        if health.is_ok_and(|response| response.status().is_success()) {
            return gateway;
        }
        if let Ok(Some(status)) = gateway.child.try_wait() {
            panic!("nginx exited with {status}; see {}", gateway.dir.display());
        }
        assert!(started.elapsed() < Duration::from_secs(10), "nginx did not start; see {}", gateway.dir.display());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every request the clients sent, and the ones that did not succeed.
#[derive(Default)]
struct Tally {
    requests: AtomicUsize,
    failures: Mutex<Vec<String>>,
}

impl Tally {
    /// Sends `request`, counts it and returns its JSON body when `expected` holds for its
    /// status; anything else, a transport error included, is recorded as a failure.
    async fn send(
        &self,
        label: &str,
        request: reqwest::RequestBuilder,
        expected: impl Fn(StatusCode) -> bool,
    ) -> Option<Value> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let failure = match request.send().await {
            Ok(response) if expected(response.status()) => match response.json().await {
                Ok(body) => return Some(body),
                Err(error) => format!("{label}: unreadable body: {error}"),
            },
            Ok(response) => {
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                format!("{label}: {status} {}", body.chars().take(300).collect::<String>())
            }
            Err(error) => format!("{label}: {error:?}"),
        };
        self.failures.lock().expect("failures lock").push(failure);
        None
    }

    fn failed(&self) -> usize {
        self.failures.lock().expect("failures lock").len()
    }
}

/// What one client accepted: the Idempotency-Key it sent and the call it got back.
type Accepted = Vec<(String, String)>;

/// Requests calls one after another until `stop`: each is looked at until it is
/// confirmed, then completed, or cancelled if no driver took it in time, so the drivers
/// keep coming back.
async fn client_loop(client: reqwest::Client, base: String, tally: Arc<Tally>, stop: Arc<AtomicBool>) -> Accepted {
    let mut accepted = Vec::new();
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let key = uuid::Uuid::now_v7().to_string();
        let body = json!({"tel": CUSTOMER, "pickup": {"address": "서울 마포구"}, "fare": 20000 + n});
        let request = client.post(format!("{base}/calls")).header("Idempotency-Key", &key).json(&body);
        let created = tally
            .send("POST /calls", request, |status| matches!(status, StatusCode::ACCEPTED | StatusCode::CREATED))
            .await;
        let Some(call_id) = created.and_then(|view| view["call_id"].as_str().map(str::to_string)) else {
            continue;
        };
        accepted.push((key, call_id.clone()));
        let mut confirmed = false;
        for _ in 0..POLLS {
            let request = client.get(format!("{base}/calls/{call_id}?min_version=1"));
            let view = tally.send("GET /calls/{id}", request, |status| status.is_success()).await;
            if view.is_some_and(|view| view["status"] == "CONFIRMED") {
                confirmed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (label, action) = if confirmed { ("complete", "complete") } else { ("cancel", "cancel") };
        let request = client.post(format!("{base}/calls/{call_id}/{action}"));
        tally.send(&format!("POST /calls/{{id}}/{label}"), request, |status| status.is_success()).await;
    }
    accepted
}

/// SIGTERM, readiness off at once while the process still serves, a clean exit, and the
/// same process started again on the same port.
async fn restart(process: &mut Process, database_url: &str, args: &[&str], env: &[(&str, &str)], drains: bool) {
    let probe = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().expect("http client");
    let readyz = format!("{}/readyz", process.base);
    process.terminate();
    if drains {
        let started = Instant::now();
        let mut not_ready = false;
        while started.elapsed() < Duration::from_secs(1) {
            match probe.get(&readyz).send().await {
                Ok(response) if response.status() == StatusCode::SERVICE_UNAVAILABLE => {
                    not_ready = true;
                    break;
                }
                Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                Err(error) => panic!("/readyz stopped answering before the drain window ended: {error}"),
            }
        }
        assert!(not_ready, "/readyz did not turn 503 during the drain window");
    }
    let status = process.wait_exit(EXIT_TIMEOUT).await;
    assert!(status.success(), "{} exited with {status}; see {}", process.base, process.log.display());
    *process = support::start(database_url, process.port, process.log.clone(), args, env).await;
}

/// Every call of the test's customer, through the paginated history.
async fn history(client: &reqwest::Client, base: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor = String::new();
    loop {
        let response = client.get(format!("{base}/calls?tel={CUSTOMER}&limit=100{cursor}")).send().await;
        let page: Value = response.expect("history request").json().await.expect("history page");
        let items = page["items"].as_array().expect("items");
        ids.extend(items.iter().filter_map(|call| call["call_id"].as_str().map(str::to_string)));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return ids,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_each_process_behind_the_gateway_fails_no_request() {
    let Some(database_url) = fresh_database_url(TestBackend::Postgres).await else {
        return;
    };
    let Some(nginx) = nginx_binary() else {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true requires nginx (apt-get install nginx-light)");
        eprintln!("SKIPPED: nginx not installed (apt-get install nginx-light)");
        return;
    };
    let dir = support::scratch_dir("zero-downtime");
    support::migrate(&database_url, &dir.join("migrate.log"));

    let timeout: &[(&str, &str)] = &[("DRIVERCENTER_DISPATCH_TIMEOUT_SECS", "120")];
    let api_env: &[(&str, &str)] = &[
        ("DRIVERCENTER_DISPATCH_TIMEOUT_SECS", "120"),
        ("DRIVERCENTER_DRAIN_SECS", DRAIN_SECS),
        ("DRIVERCENTER_SHUTDOWN_GRACE_SECS", "10"),
    ];
    let worker_args: &[&str] = &["--role", "worker"];
    let api_args: &[&str] = &["--role", "api"];
    let worker_log = dir.join("worker.log");
    let mut worker = support::start(&database_url, support::free_port(), worker_log, worker_args, timeout).await;
    let mut apis = Vec::new();
    for name in ["api-a", "api-b"] {
        let log = dir.join(format!("{name}.log"));
        apis.push(support::start(&database_url, support::free_port(), log, api_args, api_env).await);
    }
    let ports: Vec<u16> = apis.iter().map(|api| api.port).collect();
    let gateway = start_gateway(&nginx, &dir.join("nginx"), &ports).await;

    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("http client");
    for n in 0..DRIVERS {
        let body = json!({"name": format!("기사{n}"), "tel": format!("0104000{n:04}"), "can_drive_manual": true});
        let response = client.post(format!("{}/drivers", gateway.base)).json(&body).send().await.expect("register");
        assert_eq!(response.status(), StatusCode::CREATED, "register a driver");
        let driver: Value = response.json().await.expect("driver body");
        let id = driver["driver_id"].as_str().expect("driver id");
        let online = json!({"location": {"address": "마포"}});
        let response =
            client.post(format!("{}/drivers/{id}/online", gateway.base)).json(&online).send().await.expect("online");
        assert_eq!(response.status(), StatusCode::ACCEPTED, "bring a driver online");
    }

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| tokio::spawn(client_loop(client.clone(), gateway.base.clone(), tally.clone(), stop.clone())))
        .collect();

    tokio::time::sleep(Duration::from_secs(3)).await;
    for api in &mut apis {
        restart(api, &database_url, api_args, api_env, true).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    // Calls wait while no worker runs; the API keeps answering.
    restart(&mut worker, &database_url, worker_args, timeout, false).await;
    tokio::time::sleep(LOAD.saturating_sub(started.elapsed()).max(Duration::from_secs(3))).await;
    stop.store(true, Ordering::SeqCst);
    let mut accepted = Vec::new();
    for client in clients {
        accepted.extend(client.await.expect("client task"));
    }

    let requests = tally.requests.load(Ordering::SeqCst);
    let failed = tally.failed();
    let success = 100.0 * (requests - failed) as f64 / requests.max(1) as f64;
    eprintln!("zero-downtime: {requests} requests, {failed} failed, success {success:.3} %");
    let failures = tally.failures.lock().expect("failures lock").clone();
    assert!(failures.is_empty(), "failed requests (logs in {}): {failures:#?}", dir.display());
    assert!(requests >= MIN_REQUESTS, "only {requests} requests in {:?}", started.elapsed());
    // Retries could hide a replica that drops requests: the only upstream errors allowed
    // are refused connections, which nothing had been sent on.
    let gateway_errors = std::fs::read_to_string(gateway.dir.join("error.log")).expect("read the nginx error log");
    let dropped: Vec<&str> = gateway_errors
        .lines()
        .filter(|line| line.contains("upstream") && !line.contains("(111: Connection refused)"))
        .collect();
    assert!(dropped.is_empty(), "a replica dropped requests while it restarted: {dropped:#?}");
    for log in ["worker.log", "api-a.log", "api-b.log"] {
        let text = std::fs::read_to_string(dir.join(log)).expect("read a process log");
        assert!(!text.contains("panicked at"), "a process panicked; see {}", dir.join(log).display());
    }

    for (_, call_id) in &accepted {
        let response = client.get(format!("{}/calls/{call_id}?min_version=1", gateway.base)).send().await;
        assert_eq!(response.expect("read a call").status(), StatusCode::OK, "accepted call {call_id} is missing");
    }
    let keys: HashSet<&str> = accepted.iter().map(|(key, _)| key.as_str()).collect();
    let calls: HashSet<String> = accepted.iter().map(|(_, call_id)| call_id.clone()).collect();
    assert_eq!(calls.len(), keys.len(), "two keys answered with one call");
    // The history is a view: it may trail the last requests by a moment.
    let settled = Instant::now();
    let stored = loop {
        let stored = history(&client, &gateway.base).await;
        if stored.len() >= calls.len() || settled.elapsed() > Duration::from_secs(10) {
            break stored;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(stored.len(), keys.len(), "calls stored vs Idempotency-Keys sent");
    assert_eq!(stored.into_iter().collect::<HashSet<_>>(), calls, "the stored calls are the accepted ones");

    // Every call ended completed or cancelled, so the dispatcher, across its own restart,
    // has released every driver, and still dispatches.
    let settled = Instant::now();
    loop {
        let drivers: Value = client
            .get(format!("{}/drivers", gateway.base))
            .send()
            .await
            .expect("drivers")
            .json()
            .await
            .expect("drivers body");
        let items = drivers["items"].as_array().expect("items");
        if items.len() == DRIVERS && items.iter().all(|driver| driver["status"] == "AVAILABLE") {
            break;
        }
        assert!(settled.elapsed() < Duration::from_secs(15), "drivers not released after the load: {drivers:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let body = json!({"tel": CUSTOMER, "pickup": {"address": "서울 마포구"}, "fare": 30000});
    let response = client
        .post(format!("{}/calls", gateway.base))
        .header("Prefer", "wait=10")
        .json(&body)
        .send()
        .await
        .expect("a last call");
    assert_eq!(response.status(), StatusCode::CREATED, "a call after the restarts is confirmed; see {}", dir.display());
}
