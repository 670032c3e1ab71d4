//! A customer's call from request to its end: dispatch, cancel, complete, idempotency.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::time::Instant;

use crate::harness::{call_at, call_with_drive_type, scenario, uuid_of, TestApp, MAPO};

scenario!(a_sync_call_is_confirmed_with_the_nearest_fitting_driver);
async fn a_sync_call_is_confirmed_with_the_nearest_fitting_driver(app: TestApp) {
    let (lat, lng) = MAPO;
    // ~1.1 km and ~110 m from the pickup; the farther one registered first.
    let far = app.driver_online_at("김멀리", "010-2000-0001", false, lat + 0.01, lng).await;
    let near = app.driver_online_at("안채우", "010-3345-7789", false, lat + 0.001, lng).await;

    let reply = app.post_call_reply(&call_at("010-1234-5678", lat, lng), Some(10)).await;
    let view = reply.assert_status(StatusCode::CREATED).clone();
    let call_id = uuid_of(&view["call_id"]);
    assert_eq!(reply.header("location"), Some(format!("/calls/{call_id}").as_str()));
    assert_eq!(view["status"], "CONFIRMED");
    assert_eq!(view["status_label"], "호출확정");
    assert_eq!(view["tel"], "01012345678", "the number is stored as digits");
    assert_eq!(view["drive_type"], "AUTO", "AUTO is the default");
    assert_eq!(view["fare"], 25000);
    assert_eq!(view["driver"]["driver_id"], near.to_string(), "the nearer driver gets the call");
    assert_eq!(view["driver"]["name"], "안채우");
    assert_eq!(view["driver"]["tel"], "01033457789");
    assert!(view["confirmed_at"].is_string(), "{view}");
    assert!(view["cancelled_at"].is_null() && view["failed_at"].is_null(), "{view}");

    let driver = app.wait_for_driver(near, "ASSIGNED", |driver| driver["status"] == "ASSIGNED").await;
    assert_eq!(driver["status_label"], "배정됨");
    assert_eq!(driver["current_call_id"], call_id.to_string());
    let other = app.get_driver(far).await;
    assert_eq!(other["status"], "AVAILABLE", "the farther driver stays free");
    assert!(other["current_call_id"].is_null());

    let assignment =
        app.wait_for(&format!("/assignments/{call_id}"), "CONFIRMED", |a| a["status"] == "CONFIRMED").await;
    assert_eq!(assignment["status_label"], "할당확정");
    assert_eq!(assignment["driver_id"], near.to_string());
    assert_eq!(assignment["candidates_tried"], json!([near.to_string()]));
}

scenario!(a_manual_call_skips_drivers_who_drive_only_automatic_cars);
async fn a_manual_call_skips_drivers_who_drive_only_automatic_cars(app: TestApp) {
    let (lat, lng) = MAPO;
    let auto_only = app.driver_online_at("오토만", "010-2000-0002", false, lat + 0.0005, lng).await;
    let manual = app.driver_online_at("수동가", "010-2000-0003", true, lat + 0.02, lng).await;

    let view = app.confirmed_call(&call_with_drive_type("010-1234-5678", "MANUAL")).await;
    assert_eq!(view["drive_type"], "MANUAL");
    assert_eq!(view["driver"]["driver_id"], manual.to_string(), "only the manual-capable driver fits");
    let ignored = app.get_driver(auto_only).await;
    assert_eq!(ignored["status"], "AVAILABLE");

    // The automatic-only driver still takes an AUTO call.
    let (status, view) = app.post_call(&call_with_drive_type("010-1234-5679", "AUTO"), Some(10)).await;
    assert_eq!(status, StatusCode::CREATED, "{view}");
    assert_eq!(view["driver"]["driver_id"], auto_only.to_string());
}

scenario!(with_no_driver_within_the_radius_a_sync_call_fails_with_no_driver_available);
async fn with_no_driver_within_the_radius_a_sync_call_fails_with_no_driver_available(app: TestApp) {
    let (lat, lng) = MAPO;
    // ~26 km north: online, but far outside the 5 km radius.
    app.driver_online_at("원거리", "010-2000-0004", false, lat + 0.235, lng).await;

    let started = Instant::now();
    let reply = app.post_call_reply(&call_at("010-1234-5678", lat, lng), Some(10)).await;
    reply.assert_problem(StatusCode::CONFLICT, "NO_DRIVER_AVAILABLE");
    assert!(
        started.elapsed() >= Duration::from_millis(2500),
        "the answer waited for the dispatch deadline, not {:?}",
        started.elapsed()
    );
    let call_id = uuid_of(&reply.body["call_id"]);

    let view = app.get_call(call_id).await;
    assert_eq!(view["status"], "FAILED");
    assert_eq!(view["status_label"], "배정실패");
    assert!(view["driver"].is_null());
    assert!(view["failed_at"].is_string() && view["failure_reason"].is_string(), "{view}");

    let assignment = app.wait_for(&format!("/assignments/{call_id}"), "FAILED", |a| a["status"] == "FAILED").await;
    assert_eq!(assignment["status_label"], "할당실패");
    assert!(assignment["driver_id"].is_null());

    // A failed call is terminal.
    app.cancel(call_id).await.assert_problem(StatusCode::CONFLICT, "CALL_ALREADY_FAILED");
}

scenario!(a_waiting_call_is_served_by_a_driver_who_comes_online_later, dispatch_timeout = Duration::from_secs(20));
async fn a_waiting_call_is_served_by_a_driver_who_comes_online_later(app: TestApp) {
    let (lat, lng) = MAPO;
    let driver_id = app.register_driver("늦게옴", "010-2000-0005", false).await;

    let body = call_at("010-1234-5678", lat, lng);
    let request = app.post_call_reply(&body, Some(15));
    let arrive = async {
        tokio::time::sleep(Duration::from_millis(800)).await;
        app.go_online_at(driver_id, lat + 0.002, lng).await;
    };
    let (reply, ()) = tokio::join!(request, arrive);

    let view = reply.assert_status(StatusCode::CREATED);
    assert_eq!(view["status"], "CONFIRMED");
    assert_eq!(view["driver"]["driver_id"], driver_id.to_string());
}

scenario!(a_call_without_prefer_wait_is_answered_at_once_with_202, dispatch_timeout = Duration::from_secs(20));
async fn a_call_without_prefer_wait_is_answered_at_once_with_202(app: TestApp) {
    let started = Instant::now();
    let reply = app.post_call_reply(&call_at("010-1234-5678", MAPO.0, MAPO.1), None).await;
    let view = reply.assert_status(StatusCode::ACCEPTED);
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    assert!(view["status"] == "REQUESTED" || view["status"] == "DISPATCHING", "{}", reply.text);
    assert!(view["driver"].is_null());
    assert_eq!(view["version"].as_i64().map(|v| v >= 1), Some(true));

    // Prefer: wait=1 with nobody to dispatch to: 202 with the current view after ~1 s.
    let started = Instant::now();
    let reply = app.post_call_reply(&call_at("010-1234-5679", MAPO.0, MAPO.1), Some(1)).await;
    let view = reply.assert_status(StatusCode::ACCEPTED);
    assert!(started.elapsed() >= Duration::from_millis(900), "took {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert!(view["status"] == "REQUESTED" || view["status"] == "DISPATCHING", "{}", reply.text);
    assert!(view["driver"].is_null());
    let call_id = uuid_of(&view["call_id"]);
    assert_eq!(reply.header("location"), Some(format!("/calls/{call_id}").as_str()));
    app.wait_for_call(call_id, "DISPATCHING", |v| v["status"] == "DISPATCHING").await;
}

scenario!(cancel_releases_the_driver_and_complete_frees_them_again);
async fn cancel_releases_the_driver_and_complete_frees_them_again(app: TestApp) {
    let (lat, lng) = MAPO;
    let driver_id = app.driver_online_at("안채우", "010-3345-7789", false, lat, lng).await;

    // Cancel a confirmed call.
    let view = app.confirmed_call(&call_at("010-1234-5678", lat, lng)).await;
    let call_id = uuid_of(&view["call_id"]);
    app.wait_for_driver(driver_id, "ASSIGNED", |d| d["status"] == "ASSIGNED").await;
    let reply = app
        .send(app.request(Method::POST, &format!("/calls/{call_id}/cancel")).json(&json!({"reason": "plans changed"})))
        .await;
    let cancelled = reply.assert_status(StatusCode::ACCEPTED);
    assert_eq!(cancelled["status"], "CANCELLED");
    assert_eq!(cancelled["status_label"], "호출취소");
    assert_eq!(cancelled["driver"]["driver_id"], driver_id.to_string(), "the driver stays on record");
    assert!(cancelled["cancelled_at"].is_string());
    let driver = app.wait_for_driver(driver_id, "released", |d| d["status"] == "AVAILABLE").await;
    assert_eq!(driver["status_label"], "대기");
    assert!(driver["current_call_id"].is_null(), "{driver}");
    app.wait_for(&format!("/assignments/{call_id}"), "CANCELLED", |a| a["status"] == "CANCELLED").await;

    // A second cancel, by either route, is refused.
    app.cancel(call_id).await.assert_problem(StatusCode::CONFLICT, "CALL_ALREADY_CANCELLED");
    app.send(app.request(Method::DELETE, &format!("/calls/{call_id}")))
        .await
        .assert_problem(StatusCode::CONFLICT, "CALL_ALREADY_CANCELLED");
    // Completing a cancelled call is refused too.
    let refused = app.complete(call_id).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.text);

    // DELETE /calls/{id} is the same cancel.
    let view = app.confirmed_call(&call_at("010-1234-5678", lat, lng)).await;
    let second = uuid_of(&view["call_id"]);
    assert_eq!(view["driver"]["driver_id"], driver_id.to_string(), "the released driver is dispatched again");
    let reply = app.send(app.request(Method::DELETE, &format!("/calls/{second}"))).await;
    assert_eq!(reply.assert_status(StatusCode::ACCEPTED)["status"], "CANCELLED");
    app.wait_for_driver(driver_id, "released", |d| d["status"] == "AVAILABLE" && d["current_call_id"].is_null()).await;

    // Complete a confirmed call: 202 COMPLETED, and the driver is free again.
    let view = app.confirmed_call(&call_at("010-1234-5678", lat, lng)).await;
    let third = uuid_of(&view["call_id"]);
    let reply = app.complete(third).await;
    let completed = reply.assert_status(StatusCode::ACCEPTED);
    assert_eq!(completed["status"], "COMPLETED");
    assert_eq!(completed["status_label"], "운행완료");
    assert!(completed["completed_at"].is_string());
    assert_eq!(completed["driver"]["driver_id"], driver_id.to_string());
    let driver =
        app.wait_for_driver(driver_id, "free", |d| d["status"] == "AVAILABLE" && d["current_call_id"].is_null()).await;
    assert_eq!(driver["status_label"], "대기");
    app.wait_for(&format!("/assignments/{third}"), "COMPLETED", |a| a["status"] == "COMPLETED").await;
    // A completed call is terminal.
    app.complete(third).await.assert_problem(StatusCode::CONFLICT, "CALL_ALREADY_COMPLETED");
    app.cancel(third).await.assert_problem(StatusCode::CONFLICT, "CALL_ALREADY_COMPLETED");

    // Completing a call that was never confirmed is refused: nobody is near this one.
    let waiting = app.request_call(&call_at("010-1234-5678", lat + 0.3, lng)).await;
    app.complete(waiting).await.assert_problem(StatusCode::CONFLICT, "CALL_NOT_CONFIRMED");
    let still = app.get_call(waiting).await;
    assert!(still["status"] == "REQUESTED" || still["status"] == "DISPATCHING", "{still}");
}

scenario!(the_same_idempotency_key_and_body_return_the_same_call);
async fn the_same_idempotency_key_and_body_return_the_same_call(app: TestApp) {
    let body = call_at("010-5555-6666", MAPO.0 + 0.3, MAPO.1);
    let post = |key: &'static str, body: serde_json::Value| {
        app.send(app.request(Method::POST, "/calls").header("idempotency-key", key).json(&body))
    };
    let first = post("order-42", body.clone()).await;
    let first_id = uuid_of(&first.assert_status(StatusCode::ACCEPTED)["call_id"]);
    let again = post("order-42", body.clone()).await;
    let again_id = uuid_of(&again.assert_status(StatusCode::ACCEPTED)["call_id"]);
    assert_eq!(first_id, again_id, "a retry finds the same call");
    assert_eq!(again.header("location"), Some(format!("/calls/{first_id}").as_str()));

    let history = app.history("tel=01055556666").await;
    let items = history.assert_status(StatusCode::OK)["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 1, "only one call was stored: {}", history.text);
    let call_events =
        app.timeline(first_id).await.into_iter().filter(|event| event["event_type"] == "CallRequested").count();
    assert_eq!(call_events, 1, "the retry appended no second CallRequested");

    // The same key with another body is refused and stores nothing new.
    let mut other = body.clone();
    other["fare"] = json!(30000);
    post("order-42", other).await.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "IDEMPOTENCY_KEY_REUSED");
    let history = app.history("tel=01055556666").await;
    assert_eq!(history.body["items"].as_array().map(Vec::len), Some(1), "{}", history.text);

    // Another key is another call.
    let third = post("order-43", body).await;
    assert_ne!(uuid_of(&third.assert_status(StatusCode::ACCEPTED)["call_id"]), first_id);
}

scenario!(get_call_with_min_version_waits_until_the_view_reaches_it, dispatch_timeout = Duration::from_secs(20));
async fn get_call_with_min_version_waits_until_the_view_reaches_it(app: TestApp) {
    let call_id = app.request_call(&call_at("010-1234-5678", MAPO.0, MAPO.1)).await;
    // Dispatch starts at once (version 2); nobody is online, so it then waits.
    let view = app.wait_for_call(call_id, "DISPATCHING", |v| v["status"] == "DISPATCHING").await;
    assert_eq!(view["version"], 2);

    let already = app.get(&format!("/calls/{call_id}?min_version=2")).await;
    assert_eq!(already.assert_status(StatusCode::OK)["version"], 2);

    let started = Instant::now();
    let path = format!("/calls/{call_id}?min_version=3");
    let wait = app.get(&path);
    let cancel = async {
        tokio::time::sleep(Duration::from_millis(600)).await;
        app.cancel(call_id).await
    };
    let (waited, cancelled) = tokio::join!(wait, cancel);
    cancelled.assert_status(StatusCode::ACCEPTED);
    let view = waited.assert_status(StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(500), "it waited: {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(5), "it answered once the view caught up");
    assert_eq!(view["version"], 3);
    assert_eq!(view["status"], "CANCELLED");

    app.get(&format!("/calls/{call_id}?min_version=x"))
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_MIN_VERSION");
}

/// The answer to a new call does not wait for the views; a read of the call that comes
/// before its view waits for it instead of answering 404, and an unknown id is still 404.
async fn a_call_accepted_ahead_of_the_views_is_read_once_projected(backend: store::testing::TestBackend) {
    let Some(mut app) = crate::harness::spawn_api(backend, drivercenter::ServeConfig::default()).await else {
        return;
    };
    let (lat, lng) = MAPO;
    let reply = app.post_call_reply(&call_at("010-1234-5678", lat, lng), None).await;
    let accepted = reply.assert_status(StatusCode::ACCEPTED).clone();
    assert_eq!((accepted["status"].as_str(), accepted["version"].as_i64()), (Some("REQUESTED"), Some(1)));
    let call_id = uuid_of(&accepted["call_id"]);

    let read = tokio::spawn(reqwest::get(format!("{}/calls/{call_id}", app.address)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.start_workers();
    let read = read.await.expect("the read ran").expect("an answer");
    assert_eq!(read.status(), StatusCode::OK);
    let shown: serde_json::Value = read.json().await.expect("a call view");
    assert_eq!(shown["call_id"], accepted["call_id"]);
    app.get(&format!("/calls/{}", uuid::Uuid::now_v7())).await.assert_problem(StatusCode::NOT_FOUND, "CALL_NOT_FOUND");
}

mod a_call_accepted_ahead_of_the_views_is_read_once_projected {
    use store::testing::TestBackend;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::a_call_accepted_ahead_of_the_views_is_read_once_projected(TestBackend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::a_call_accepted_ahead_of_the_views_is_read_once_projected(TestBackend::Postgres).await;
    }
}
