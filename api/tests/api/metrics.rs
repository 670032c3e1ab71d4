//! `GET /metrics`: Prometheus text with the HTTP, dispatch, lag and saga series.

use reqwest::StatusCode;

use crate::harness::{call_at, scenario, TestApp, MAPO};

scenario!(a_confirmed_call_shows_in_the_http_dispatch_and_lag_metrics);
async fn a_confirmed_call_shows_in_the_http_dispatch_and_lag_metrics(app: TestApp) {
    let (lat, lng) = MAPO;
    app.driver_online_at("안채우", "010-3345-7789", false, lat, lng).await;
    app.confirmed_call(&call_at("010-1234-5678", lat, lng)).await;
    app.wait_until_quiet().await;

    let reply = app.get("/metrics").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.header("content-type").is_some_and(|value| value.starts_with("text/plain")), "{:?}", reply.headers);
    for series in [
        r#"drivercenter_http_requests_total{method="POST",route="/calls",status="201"}"#,
        r#"drivercenter_http_request_duration_seconds_bucket{method="POST",route="/drivers/{driver_id}/online""#,
        "drivercenter_dispatch_latency_seconds_bucket",
        r#"drivercenter_subscriber_lag_events{subscriber="dispatch-saga"}"#,
        r#"drivercenter_subscriber_lag_events{subscriber="notifier"}"#,
        "drivercenter_dispatch_backlog_events",
    ] {
        assert!(reply.text.contains(series), "{series} missing from:\n{}", reply.text);
    }
}
