//! Rebuilding the views from the log leaves every row as it was.

use std::time::Duration;

use projections::{AssignmentView, CallView, DriverView, StreamView, ViewChanges};
use reqwest::StatusCode;

use crate::harness::{call_at, scenario, uuid_of, TestApp, MAPO};

scenario!(replaying_the_projections_leaves_every_view_unchanged, dispatch_timeout = Duration::from_secs(2));
async fn replaying_the_projections_leaves_every_view_unchanged(app: TestApp) {
    let (lat, lng) = MAPO;
    let driver_id = app.driver_online_at("안채우", "010-3345-7789", true, lat, lng).await;
    let idle = app.register_driver("쉬는중", "010-3345-7790", false).await;
    app.go_online_at(idle, lat + 0.3, lng).await;

    // Completed.
    let completed = uuid_of(&app.confirmed_call(&call_at("010-1111-0001", lat, lng)).await["call_id"]);
    app.complete(completed).await.assert_status(StatusCode::ACCEPTED);
    app.wait_for_driver(driver_id, "free", |d| d["status"] == "AVAILABLE").await;
    // Cancelled after confirmation.
    let cancelled = uuid_of(&app.confirmed_call(&call_at("010-1111-0002", lat, lng)).await["call_id"]);
    app.cancel(cancelled).await.assert_status(StatusCode::ACCEPTED);
    app.wait_for_driver(driver_id, "free", |d| d["status"] == "AVAILABLE").await;
    // Failed: nobody within the radius.
    let far = call_at("010-1111-0003", lat - 0.3, lng);
    let failed = app.post_call_reply(&far, Some(10)).await;
    failed.assert_problem(StatusCode::CONFLICT, "NO_DRIVER_AVAILABLE");
    // Cancelled while still waiting.
    let waiting = app.request_call(&call_at("010-1111-0004", lat - 0.3, lng)).await;
    app.cancel(waiting).await.assert_status(StatusCode::ACCEPTED);
    // Confirmed and left so.
    let open = uuid_of(&app.confirmed_call(&call_at("010-1111-0005", lat, lng)).await["call_id"]);
    app.wait_for_driver(driver_id, "ASSIGNED", |d| d["current_call_id"] == open.to_string()).await;
    app.wait_for(&format!("/assignments/{waiting}"), "CANCELLED", |a| a["status"] == "CANCELLED").await;

    app.wait_until_quiet().await;
    let before = projections::queries::dump(&app.store).await.expect("dump the views");
    let tables: std::collections::BTreeSet<&str> = before.iter().map(|(table, _, _)| table.as_str()).collect();
    assert_eq!(tables.len(), 3, "every view has rows: {tables:?}");
    assert_eq!(before.iter().filter(|(table, _, _)| table == CallView::TABLE).count(), 5);
    assert_eq!(before.iter().filter(|(table, _, _)| table == DriverView::TABLE).count(), 2);
    assert_eq!(before.iter().filter(|(table, _, _)| table == AssignmentView::TABLE).count(), 5);
    let statuses: std::collections::BTreeSet<String> = before
        .iter()
        .filter(|(table, _, _)| table == CallView::TABLE)
        .map(|(_, _, doc)| {
            let json: serde_json::Value = serde_json::from_str(doc.split_once('|').unwrap().1).unwrap();
            json["status"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(statuses, ["CANCELLED", "COMPLETED", "CONFIRMED", "FAILED"].map(String::from).into(),);

    let total = app.count_events().await;
    let applied = projections::replay::<CallView>(&app.store, &ViewChanges::default(), |_| {}).await.unwrap();
    assert_eq!(applied, total, "the replay read the whole log");
    projections::replay::<DriverView>(&app.store, &ViewChanges::default(), |_| {}).await.unwrap();
    projections::replay::<AssignmentView>(&app.store, &ViewChanges::default(), |_| {}).await.unwrap();

    let after = projections::queries::dump(&app.store).await.expect("dump the views");
    assert_eq!(before.len(), after.len());
    for (old, new) in before.iter().zip(&after) {
        assert_eq!(old, new, "a row changed in the replay");
    }
    assert_eq!(before, after);

    // The API still serves the same answers.
    assert_eq!(app.get_call(open).await["status"], "CONFIRMED");
    assert_eq!(app.get_driver(driver_id).await["current_call_id"], open.to_string());
}
