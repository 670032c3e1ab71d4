//! The real `drivercenter` binary as a child process, for the tests that kill, restart
//! and fail over whole processes. Loopback only; every wait is bounded.

// Each test binary compiles this module and uses a part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a process may take to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `drivercenter serve`, killed (SIGKILL) when dropped.
pub struct Process {
    child: Child,
    pub port: u16,
    pub base: String,
    pub log: PathBuf,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The binary with `DATABASE_URL` set and its log lines going to `log`.
pub fn drivercenter(database_url: &str, log: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_drivercenter"));
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("open the process log");
    command
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "info,sqlx=warn")
        .env("DRIVERCENTER_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(log);
    command
}

/// POSTs `body` as JSON and returns the JSON answer, which must be a success.
pub async fn post(client: &reqwest::Client, url: String, body: serde_json::Value) -> serde_json::Value {
    let response = client.post(url).json(&body).send().await.expect("request");
    assert!(response.status().is_success(), "{}", response.status());
    response.json().await.expect("json body")
}

/// GETs `url` and returns its JSON answer.
pub async fn get(client: &reqwest::Client, url: String) -> serde_json::Value {
    client.get(url).send().await.expect("request").json().await.expect("json body")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind a probe port").local_addr().expect("probe address").port()
}

/// A directory for one test's logs and files.
pub fn scratch_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join("drivercenter-tests").join(format!("{test}-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).expect("create the scratch directory");
    dir
}

/// Runs `drivercenter migrate` on `database_url`.
pub fn migrate(database_url: &str, log: &Path) {
    let status = drivercenter(database_url, log).arg("migrate").status().expect("run migrate");
    assert!(status.success(), "migrate failed; see {}", log.display());
}

/// Starts `drivercenter serve` with `args` and `env` on `port`, without waiting.
pub fn spawn(database_url: &str, port: u16, log: PathBuf, args: &[&str], env: &[(&str, &str)]) -> Process {
    let mut command = drivercenter(database_url, &log);
    command.arg("serve").args(args).env("DRIVERCENTER_BIND", format!("127.0.0.1:{port}"));
    for (name, value) in env {
        command.env(name, value);
    }
    let child = command.spawn().expect("start drivercenter serve");
    Process { child, port, base: format!("http://127.0.0.1:{port}"), log }
}

/// Starts `drivercenter serve` and waits until its `/readyz` answers 200.
pub async fn start(database_url: &str, port: u16, log: PathBuf, args: &[&str], env: &[(&str, &str)]) -> Process {
    let mut process = spawn(database_url, port, log, args, env);
    process.wait_ready().await;
    process
}

impl Process {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub async fn wait_ready(&mut self) {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().expect("http client");
        let started = Instant::now();
        loop {
            let ready = client.get(format!("{}/readyz", self.base)).send().await;
            if ready.is_ok_and(|response| response.status().is_success()) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("drivercenter exited with {status} before it was ready; see {}", self.log.display());
            }
            assert!(started.elapsed() < START_TIMEOUT, "not ready in time; see {}", self.log.display());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends SIGTERM: the graceful shutdown.
    pub fn terminate(&self) {
        let status = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status().expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// SIGKILL: no shutdown at all, no last checkpoint.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit by itself, at most `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the child") {
                return status;
            }
            assert!(started.elapsed() < timeout, "drivercenter did not exit in time; see {}", self.log.display());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// One line of `/metrics` read as a number: `name` exactly, without labels.
    pub async fn metric(&self, client: &reqwest::Client, name: &str) -> Option<f64> {
        let text = client.get(format!("{}/metrics", self.base)).send().await.ok()?.text().await.ok()?;
        text.lines()
            .filter_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .find_map(|value| value.trim().parse().ok())
    }
}
