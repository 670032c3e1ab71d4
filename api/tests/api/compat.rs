//! The original service's demo commands (its README used httpie, which sends every
//! field as a string) keep working against the gateway.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::{scenario, uuid_of, TestApp};

fn items(reply: &crate::harness::Reply) -> Vec<Value> {
    reply.assert_status(StatusCode::OK)["items"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("no items in {}", reply.text))
}

scenario!(
    the_original_demo_commands_on_drivercalls_drivermanages_and_driverassigns_work,
    dispatch_timeout = Duration::from_secs(20)
);
async fn the_original_demo_commands_on_drivercalls_drivermanages_and_driverassigns_work(app: TestApp) {
    let driver_id = app.register_driver("안채우", "01033457789", false).await;
    app.go_online(driver_id, json!({"address": "마포"})).await;

    // http POST :8088/drivercalls tel=01012345678 status=호출 location=마포 cost=25000
    let first = app
        .post("/drivercalls", &json!({"tel": "01012345678", "status": "호출", "location": "마포", "cost": "25000"}))
        .await;
    let body = first.assert_status(StatusCode::CREATED).clone();
    let first_id = uuid_of(&body["id"]);
    assert_eq!(first.header("location"), Some(format!("/drivercalls/{first_id}").as_str()));
    assert_eq!(body["tel"], "01012345678");
    assert_eq!(body["location"], "마포");
    assert_eq!(body["cost"], 25000);
    assert!(["호출", "호출중", "호출확정"].contains(&body["status"].as_str().unwrap_or("")), "{body}");
    let keys: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys.len(), 5, "exactly id, tel, location, status, cost: {body}");

    // The driver in 마포 takes it.
    let shown = app.wait_for(&format!("/drivercalls/{first_id}"), "호출확정", |c| c["status"] == "호출확정").await;
    assert_eq!(shown["id"], first_id.to_string());
    assert_eq!(shown["cost"], 25000);

    // The second demo call, with a numeric cost; the only driver is busy, so it waits.
    let second = app
        .post("/drivercalls", &json!({"tel": "01056789012", "status": "호출", "location": "서대문구", "cost": 30000}))
        .await;
    let body = second.assert_status(StatusCode::CREATED).clone();
    let second_id = uuid_of(&body["id"]);
    assert_eq!(second.header("location"), Some(format!("/drivercalls/{second_id}").as_str()));
    assert_eq!(body["location"], "서대문구");
    assert_eq!(body["cost"], 30000);
    assert_eq!(body["tel"], "01056789012");
    assert!(["호출", "호출중"].contains(&body["status"].as_str().unwrap_or("")), "{body}");

    // Both are listed, in the same shape, once projected (reading one waits for that).
    app.get(&format!("/drivercalls/{second_id}")).await.assert_status(StatusCode::OK);
    let listed = items(&app.get("/drivercalls").await);
    let listed_ids: Vec<_> = listed.iter().map(|c| uuid_of(&c["id"])).collect();
    assert!(listed_ids.contains(&first_id) && listed_ids.contains(&second_id), "{listed:?}");
    assert_eq!(listed.len(), 2);
    for item in &listed {
        assert_eq!(item.as_object().map(|o| o.len()), Some(5), "{item}");
    }
    // The trailing-slash form the original served answers too.
    assert_eq!(items(&app.get("/drivercalls/").await).len(), 2);

    // DELETE cancels and keeps the call.
    let deleted = app.send(app.request(Method::DELETE, &format!("/drivercalls/{second_id}"))).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
    assert!(deleted.text.is_empty());
    let kept = app.get(&format!("/drivercalls/{second_id}")).await;
    assert_eq!(kept.assert_status(StatusCode::OK)["status"], "호출취소");
    assert_eq!(app.get_call(second_id).await["status"], "CANCELLED");
    assert_eq!(items(&app.get("/drivercalls").await).len(), 2, "cancelled, never erased");
    let again = app.send(app.request(Method::DELETE, &format!("/drivercalls/{second_id}"))).await;
    again.assert_problem(StatusCode::CONFLICT, "CALL_ALREADY_CANCELLED");

    // The roster and the assignments; the driver view follows the log on its own
    // checkpoint, so it may trail the call view that confirmed the first call.
    let roster =
        app.wait_for("/drivermanages", "the driver assigned", |list| list["items"][0]["status"] == "ASSIGNED").await;
    let drivers = roster["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(drivers.len(), 1);
    assert_eq!(drivers[0]["driver_id"], driver_id.to_string());
    assert_eq!(drivers[0]["status"], "ASSIGNED");
    assert_eq!(items(&app.get("/drivermanages/").await).len(), 1);
    let assignments = app
        .wait_for("/driverassigns", "both assignments", |list| {
            list["items"].as_array().is_some_and(|items| items.len() == 2)
        })
        .await;
    let confirmed: Vec<&Value> =
        assignments["items"].as_array().unwrap().iter().filter(|a| a["call_id"] == first_id.to_string()).collect();
    assert_eq!(confirmed.len(), 1);
    assert_eq!(confirmed[0]["status_label"], "할당확정");
    assert_eq!(confirmed[0]["driver_id"], driver_id.to_string());

    // Unknown and malformed ids.
    app.get(&format!("/drivercalls/{}", uuid::Uuid::now_v7()))
        .await
        .assert_problem(StatusCode::NOT_FOUND, "CALL_NOT_FOUND");
    app.get("/drivercalls/42").await.assert_problem(StatusCode::NOT_FOUND, "NOT_FOUND");
    app.post("/drivercalls", &json!({"tel": "01012345678", "location": "부산", "cost": "1"}))
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "UNKNOWN_LOCATION");
    app.post("/drivercalls", &json!({"tel": "01012345678", "location": "마포", "cost": "만원"}))
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_FARE");
}
