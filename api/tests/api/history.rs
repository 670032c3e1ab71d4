//! A customer's call history and a call's timeline of events.

use std::collections::{BTreeSet, HashMap};

use reqwest::StatusCode;
use serde_json::Value;
use uuid::Uuid;

use crate::harness::{call_at, scenario, uuid_of, TestApp, MAPO};

scenario!(history_lists_one_customers_calls_newest_first_and_pages_through_each_exactly_once);
async fn history_lists_one_customers_calls_newest_first_and_pages_through_each_exactly_once(app: TestApp) {
    // Nobody is online: the calls just wait (and fail later), which history ignores.
    let (lat, lng) = MAPO;
    let mut mine = Vec::new();
    for n in 0..7 {
        let tel = if n % 2 == 0 { "010-7777-8888" } else { "01077778888" };
        mine.push(app.request_call(&call_at(tel, lat, lng)).await);
        if n == 3 {
            // Another customer's call in between.
            app.request_call(&call_at("010-9999-0000", lat, lng)).await;
        }
    }
    let theirs = app.request_call(&call_at("010-9999-0000", lat, lng)).await;
    let newest_first: Vec<Uuid> = mine.iter().rev().copied().collect();
    // The history is a view: a call is listed once projected, which reading it waits for.
    for call_id in mine.iter().chain([&theirs]) {
        app.get_call(*call_id).await;
    }

    // One page with everything.
    let all = app.history("tel=01077778888").await;
    let body = all.assert_status(StatusCode::OK);
    let listed: Vec<Uuid> = body["items"].as_array().unwrap().iter().map(|c| uuid_of(&c["call_id"])).collect();
    assert_eq!(listed, newest_first, "newest first, only this customer's");
    assert!(body["next_cursor"].is_null(), "{}", all.text);
    for item in body["items"].as_array().unwrap() {
        assert_eq!(item["tel"], "01077778888");
    }

    // Pages of 3 (dashed number in the query): 3 + 3 + 1.
    let mut walked = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let query = match &cursor {
            None => "tel=010-7777-8888&limit=3".to_string(),
            Some(cursor) => format!("tel=010-7777-8888&limit=3&cursor={cursor}"),
        };
        let page = app.history(&query).await;
        let body = page.assert_status(StatusCode::OK);
        let items = body["items"].as_array().unwrap();
        assert!(items.len() <= 3, "{}", page.text);
        walked.extend(items.iter().map(|c| uuid_of(&c["call_id"])));
        pages += 1;
        assert!(pages <= 10, "the cursor never ends");
        match &body["next_cursor"] {
            Value::Null => break,
            Value::String(next) => cursor = Some(next.clone()),
            other => panic!("next_cursor is {other}"),
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(walked, newest_first, "every call exactly once, in order");
    assert!(!walked.contains(&theirs));

    // The other customer sees only theirs.
    let other = app.history("tel=01099990000&limit=100").await;
    let listed: BTreeSet<Uuid> = other.assert_status(StatusCode::OK)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| uuid_of(&c["call_id"]))
        .collect();
    assert_eq!(listed.len(), 2);
    assert!(listed.contains(&theirs));
    assert!(listed.iter().all(|id| !mine.contains(id)));

    // A customer without calls has an empty history.
    let none = app.history("tel=01012121212").await;
    assert_eq!(none.assert_status(StatusCode::OK)["items"], serde_json::json!([]));
    assert!(none.body["next_cursor"].is_null());

    // Rules of the query.
    let missing = app.get("/calls").await;
    assert_eq!(missing.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", missing.text);
    assert_eq!(missing.header("content-type"), Some("application/problem+json"));
    for limit in ["0", "101", "-1", "ten"] {
        app.history(&format!("tel=01077778888&limit={limit}"))
            .await
            .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_LIMIT");
    }
    app.history("tel=01077778888&limit=100").await.assert_status(StatusCode::OK);
    app.history("tel=01077778888&limit=1").await.assert_status(StatusCode::OK);
    app.history("tel=12345").await.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_TEL");
    let bad_cursor = app.history("tel=01077778888&cursor=nope").await;
    assert_eq!(bad_cursor.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad_cursor.text);
}

scenario!(the_timeline_shows_every_aggregates_events_for_the_call_with_their_causation_chain);
async fn the_timeline_shows_every_aggregates_events_for_the_call_with_their_causation_chain(app: TestApp) {
    let (lat, lng) = MAPO;
    let driver_id = app.driver_online_at("안채우", "010-3345-7789", false, lat, lng).await;
    let reply = app.post_call_reply(&call_at("010-1234-5678", lat, lng), Some(10)).await;
    let call_id = uuid_of(&reply.assert_status(StatusCode::CREATED)["call_id"]);
    let request_id = reply.header("x-request-id").expect("the response carries x-request-id").to_string();
    Uuid::parse_str(&request_id).expect("request ids are UUIDs");

    let events = app.timeline(call_id).await;
    assert!(events.len() >= 6, "{events:#?}");

    // Every event belongs to the call, in strictly increasing global order.
    let positions: Vec<i64> = events.iter().map(|e| e["position"].as_i64().expect("a position")).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "positions increase: {positions:?}");
    for event in &events {
        assert_eq!(event["correlation_id"], call_id.to_string(), "{event}");
        assert!(event["recorded_at"].is_string(), "{event}");
        assert!(event["payload"].is_object(), "{event}");
    }
    let types: BTreeSet<&str> = events.iter().filter_map(|e| e["aggregate_type"].as_str()).collect();
    assert_eq!(types, BTreeSet::from(["assignment", "call", "driver"]));

    let find = |event_type: &str| -> &Value {
        let mut found = events.iter().filter(|e| e["event_type"] == event_type);
        let event = found.next().unwrap_or_else(|| panic!("no {event_type} in {events:#?}"));
        assert!(found.next().is_none(), "{event_type} appears once");
        event
    };
    let requested = find("CallRequested");
    let assignment_requested = find("AssignmentRequested");
    let dispatch_started = find("CallDispatchStarted");
    let reserved = find("DriverReserved");
    let assignment_confirmed = find("AssignmentConfirmed");
    let confirmed = find("CallConfirmed");

    assert_eq!(requested["aggregate_type"], "call");
    assert_eq!(requested["aggregate_id"], call_id.to_string());
    assert_eq!(requested["sequence"], 1);
    assert_eq!(assignment_requested["aggregate_type"], "assignment");
    assert_eq!(assignment_requested["aggregate_id"], call_id.to_string());
    assert_eq!(reserved["aggregate_type"], "driver");
    assert_eq!(reserved["aggregate_id"], driver_id.to_string());
    assert_eq!(confirmed["payload"]["driver"]["driver_id"], driver_id.to_string());

    // The causation chain: request → CallRequested → AssignmentRequested and
    // CallDispatchStarted; AssignmentRequested → DriverReserved → AssignmentConfirmed
    // → CallConfirmed.
    let cause = |event: &Value| event["causation_id"].as_str().unwrap().to_string();
    let id = |event: &Value| event["event_id"].as_str().unwrap().to_string();
    assert_eq!(cause(requested), request_id, "the HTTP request caused the call");
    assert_eq!(cause(assignment_requested), id(requested));
    assert_eq!(cause(dispatch_started), id(requested));
    assert_eq!(cause(reserved), id(assignment_requested));
    assert_eq!(cause(assignment_confirmed), id(reserved));
    assert_eq!(cause(confirmed), id(assignment_confirmed));
    assert_eq!(requested["actor"], "customer");
    assert_eq!(confirmed["actor"], "dispatch-saga");

    // Event ids are unique and every cause but the request's is an earlier event.
    let mut earlier: HashMap<String, usize> = HashMap::new();
    for (index, event) in events.iter().enumerate() {
        assert!(earlier.insert(id(event), index).is_none(), "duplicate event id in {event}");
        if index > 0 {
            let caused_by = cause(event);
            assert!(earlier.contains_key(&caused_by), "{event} is caused by an earlier event of the call");
        }
    }

    // The assignment's view tells the same story.
    let assignment =
        app.wait_for(&format!("/assignments/{call_id}"), "CONFIRMED", |a| a["status"] == "CONFIRMED").await;
    assert_eq!(assignment["driver_id"], driver_id.to_string());

    app.get(&format!("/calls/{}/timeline", Uuid::now_v7()))
        .await
        .assert_problem(StatusCode::NOT_FOUND, "CALL_NOT_FOUND");
}
