//! What a customer is told: a confirmed call's and a cancelled call's notifications,
//! delivered through the default log channel, and the operators' listing and retry.

use reqwest::StatusCode;
use uuid::Uuid;

use crate::harness::{call_at, scenario, uuid_of, TestApp, MAPO};

scenario!(a_confirmed_then_cancelled_call_shows_both_notifications_delivered);
async fn a_confirmed_then_cancelled_call_shows_both_notifications_delivered(app: TestApp) {
    let (lat, lng) = MAPO;
    app.driver_online_at("안채우", "010-3345-7789", false, lat + 0.001, lng).await;
    let view = app.confirmed_call(&call_at("010-1234-5678", lat, lng)).await;
    let call_id = uuid_of(&view["call_id"]);
    app.cancel(call_id).await.assert_status(StatusCode::ACCEPTED);

    let path = format!("/calls/{call_id}/notifications");
    let body = app
        .wait_for(&path, "two delivered notifications", |body| {
            let items = body["items"].as_array().map(Vec::as_slice).unwrap_or_default();
            items.len() == 2 && items.iter().all(|item| item["state"] == "DELIVERED")
        })
        .await;
    let items = body["items"].as_array().expect("a list");
    let confirmed = &items[0];
    assert_eq!(confirmed["kind"], "CALL_CONFIRMED");
    assert_eq!(confirmed["call_id"], call_id.to_string());
    assert_eq!(confirmed["recipient"], "01012345678");
    assert_eq!(confirmed["template_code"], "DC_CALL_CONFIRMED");
    assert_eq!(confirmed["template_variables"]["driverName"], "안채우");
    assert_eq!(
        confirmed["text"],
        "[대리운전] 배정 완료: 안채우 기사님(010-3345-7789)이 배정되었습니다. 곧 출발지로 갑니다."
    );
    assert_eq!(confirmed["attempts"], 1);
    assert!(confirmed["delivered_at"].is_string() && confirmed["next_attempt_at"].is_null(), "{confirmed}");
    let cancelled = &items[1];
    assert_eq!(cancelled["kind"], "CALL_CANCELLED");
    assert_eq!(cancelled["text"], "[대리운전] 호출이 취소되었습니다.");

    let unknown = Uuid::now_v7();
    app.get(&format!("/calls/{unknown}/notifications")).await.assert_problem(StatusCode::NOT_FOUND, "CALL_NOT_FOUND");

    let dead = app.get("/notifications?state=DEAD&limit=5").await;
    assert_eq!(dead.assert_status(StatusCode::OK)["items"], serde_json::json!([]));
    let delivered = app.get("/notifications?state=delivered").await;
    assert_eq!(delivered.assert_status(StatusCode::OK)["items"].as_array().map(Vec::len), Some(2));
    app.get("/notifications?state=LOST").await.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_STATE");
    app.get("/notifications?limit=0").await.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_LIMIT");

    let id = confirmed["notification_id"].as_str().expect("an id");
    app.post_empty(&format!("/notifications/{id}/retry"))
        .await
        .assert_problem(StatusCode::CONFLICT, "NOTIFICATION_NOT_DEAD");
    app.post_empty(&format!("/notifications/{unknown}/retry"))
        .await
        .assert_problem(StatusCode::NOT_FOUND, "NOTIFICATION_NOT_FOUND");
}
