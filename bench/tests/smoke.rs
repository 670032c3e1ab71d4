//! The load generator end to end against a server started in this process on a fresh
//! SQLite database: a short closed-loop run must dispatch calls without errors and write
//! its report; an open-loop run bounded by a call count must stop at that count.

use std::time::Duration;

use clap::Parser;
use drivercenter::{AppState, ServeConfig};
use drivercenter_bench::{BenchArgs, Mode};
use store::testing::{fresh_store, TestBackend};
use tokio::sync::watch;

/// The whole run, set-up and drain included, stays well under this.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_runs_dispatch_calls_and_report_them() {
    let store = fresh_store(TestBackend::Sqlite).await.expect("SQLite is always available");
    // The second run spreads its 10 drivers over 10 of Seoul's 25 districts, so a radius
    // covering the whole city gives every one of its calls a candidate.
    let config = ServeConfig {
        saga: saga::SagaConfig { dispatch_timeout: Duration::from_secs(5), radius_km: 50.0 },
        ..ServeConfig::default()
    };
    let state = AppState::new(store, config);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let _workers = drivercenter::spawn_workers(&state, shutdown_rx.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a local port");
    let target = format!("http://{}", listener.local_addr().expect("the bound address"));
    tokio::spawn(drivercenter::run(listener, state, shutdown_rx));

    let report_dir = std::env::temp_dir().join(format!("drivercenter-bench-{}", uuid::Uuid::new_v4()));
    let pid = std::process::id().to_string();
    let args = BenchArgs::try_parse_from([
        "drivercenter-bench",
        "--target",
        &target,
        "--drivers",
        "25",
        "--mode",
        "closed",
        "--concurrency",
        "4",
        "--duration-secs",
        "3",
        "--hold-ms",
        "100",
        "--server-pid",
        &pid,
        "--seed",
        "42",
        "--report-dir",
        report_dir.to_str().expect("a UTF-8 temp dir"),
    ])
    .expect("valid arguments");

    let summary = bench(args).await;

    assert_eq!(summary.mode, Mode::Closed);
    assert!(summary.counts.confirmed > 0, "nothing was dispatched: {summary:?}");
    assert_eq!((summary.errors, summary.overloaded), (0, 0), "{summary:?}");
    assert_eq!(summary.counts.accepted, summary.counts.sent);
    assert!(summary.accepted_per_s > 0.0 && summary.dispatched_per_s > 0.0);
    assert!(summary.confirm_p50_ms.is_some() && summary.post_p99_ms.is_some());
    assert!(summary.counts.completed + summary.counts.cancelled > 0, "no driver was released");
    assert!(summary.max_lag_events.is_some(), "the lag gauges were not scraped");
    assert!(summary.server_rss_mb.is_some_and(|mb| mb > 1.0));

    let json = serde_json::to_value(&summary).unwrap();
    for key in [
        "accepted_per_s",
        "dispatched_per_s",
        "post_p50_ms",
        "post_p99_ms",
        "confirm_p50_ms",
        "confirm_p99_ms",
        "errors",
        "max_lag_events",
        "server_rss_mb",
    ] {
        assert!(json.get(key).is_some(), "the summary lacks `{key}`");
    }
    let markdown = std::fs::read_to_string(report_dir.join("report.md")).expect("the Markdown report");
    assert!(markdown.contains("| dispatched calls/s |"));
    let png = std::fs::read(report_dir.join("report.png")).expect("the plot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000, "not a drawn PNG");
    std::fs::remove_dir_all(&report_dir).expect("remove the report");

    let args = BenchArgs::try_parse_from([
        "drivercenter-bench",
        "--target",
        &target,
        "--drivers",
        "10",
        "--mode",
        "open",
        "--rate",
        "20",
        "--confirm",
        "wait",
        "--max-calls",
        "8",
        "--hold-ms",
        "0",
        "--duration-secs",
        "30",
    ])
    .expect("valid arguments");
    let summary = bench(args).await;
    let _ = shutdown.send(true);
    assert_eq!(summary.rate, Some(20.0));
    assert_eq!((summary.counts.sent, summary.counts.confirmed, summary.errors), (8, 8, 0), "{summary:?}");
    assert!(summary.duration_s < 10.0, "the run went on after its last call: {summary:?}");
    // With `Prefer: wait` the answer is the confirmation: both latencies are the same.
    assert_eq!(summary.post_p50_ms, summary.confirm_p50_ms);
}

async fn bench(args: BenchArgs) -> drivercenter_bench::Summary {
    tokio::time::timeout(RUN_TIMEOUT, drivercenter_bench::run(args))
        .await
        .expect("the run ends in time")
        .expect("the run completes")
}
