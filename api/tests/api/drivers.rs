//! The driver roster's rules, and the operational endpoints.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::harness::{call_at, scenario, uuid_of, TestApp, MAPO};

fn ids(list: &Value) -> BTreeSet<Uuid> {
    list["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items in {list}"))
        .iter()
        .map(|driver| uuid_of(&driver["driver_id"]))
        .collect()
}

scenario!(an_assigned_driver_cannot_go_offline_and_drivers_filter_by_status);
async fn an_assigned_driver_cannot_go_offline_and_drivers_filter_by_status(app: TestApp) {
    let (lat, lng) = MAPO;
    let offline = app.register_driver("퇴근중", "010-5000-0001", false).await;
    let assigned = app.driver_online_at("배정중", "010-5000-0002", true, lat, lng).await;
    let view = app.confirmed_call(&call_at("010-1234-5678", lat, lng)).await;
    assert_eq!(view["driver"]["driver_id"], assigned.to_string());
    let available = app.driver_online_at("대기중", "010-5000-0003", false, lat, lng).await;
    app.wait_for_driver(assigned, "ASSIGNED", |d| d["status"] == "ASSIGNED").await;

    // The driver view has the documented shape.
    let driver = app.get_driver(available).await;
    for field in [
        "driver_id",
        "name",
        "tel",
        "can_drive_manual",
        "status",
        "status_label",
        "location",
        "current_call_id",
        "version",
    ] {
        assert!(driver.get(field).is_some(), "driver view lacks `{field}`: {driver}");
    }
    assert_eq!(driver["tel"], "01050000003");
    assert_eq!(driver["location"]["lat"], lat);

    // An assigned driver cannot leave.
    app.post_empty(&format!("/drivers/{assigned}/offline"))
        .await
        .assert_problem(StatusCode::CONFLICT, "DRIVER_ASSIGNED");
    assert_eq!(app.get_driver(assigned).await["status"], "ASSIGNED");

    // Filters.
    let all = app.get("/drivers").await;
    assert_eq!(ids(all.assert_status(StatusCode::OK)), BTreeSet::from([offline, assigned, available]));
    for (status, expected) in [("AVAILABLE", available), ("ASSIGNED", assigned), ("OFFLINE", offline)] {
        let listed = app.get(&format!("/drivers?status={status}")).await;
        assert_eq!(ids(listed.assert_status(StatusCode::OK)), BTreeSet::from([expected]), "status {status}");
        for item in listed.body["items"].as_array().into_iter().flatten() {
            assert_eq!(item["status"], status);
        }
    }
    app.get("/drivers?status=SLEEPING").await.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_STATUS");
    app.get("/drivers?status=available").await.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_STATUS");

    // An available driver may move and leave; going offline twice is harmless.
    let moved = app
        .send(
            app.request(reqwest::Method::PUT, &format!("/drivers/{available}/location"))
                .json(&json!({"location": {"address": "서대문구"}})),
        )
        .await;
    let moved = moved.assert_status(StatusCode::ACCEPTED);
    assert_eq!(moved["location"]["address"], "서대문구");
    assert_eq!(moved["location"]["lat"], 37.5791, "the gazetteer filled the coordinates");
    for _ in 0..2 {
        let left = app.post_empty(&format!("/drivers/{available}/offline")).await;
        let left = left.assert_status(StatusCode::ACCEPTED);
        assert_eq!(left["status"], "OFFLINE");
        assert_eq!(left["status_label"], "퇴근");
    }
    let listed = app.get("/drivers?status=AVAILABLE").await;
    assert!(ids(listed.assert_status(StatusCode::OK)).is_empty());

    // Once the trip is over the driver may leave.
    let call_id = uuid_of(&view["call_id"]);
    app.complete(call_id).await.assert_status(StatusCode::ACCEPTED);
    app.wait_for_driver(assigned, "AVAILABLE", |d| d["status"] == "AVAILABLE").await;
    let left = app.post_empty(&format!("/drivers/{assigned}/offline")).await;
    assert_eq!(left.assert_status(StatusCode::ACCEPTED)["status"], "OFFLINE");
}

scenario!(healthz_and_readyz_answer_200);
async fn healthz_and_readyz_answer_200(app: TestApp) {
    let health = app.get("/healthz").await;
    health.assert_status(StatusCode::OK);
    let ready = app.get("/readyz").await;
    ready.assert_status(StatusCode::OK);
    assert!(app.state.is_accepting());
    app.get("/no/such/route").await.assert_problem(StatusCode::NOT_FOUND, "NOT_FOUND");
}
