//! Dispatch under contention: more calls than drivers.

use std::collections::BTreeSet;

use futures::future::join_all;
use reqwest::StatusCode;

use crate::harness::{call_at, scenario, uuid_of, TestApp, MAPO};

scenario!(eight_concurrent_sync_calls_for_three_drivers_confirm_three_distinct_drivers_and_fail_five);
async fn eight_concurrent_sync_calls_for_three_drivers_confirm_three_distinct_drivers_and_fail_five(app: TestApp) {
    let (lat, lng) = MAPO;
    let mut drivers = BTreeSet::new();
    for n in 0..3_u32 {
        let offset = f64::from(n) * 0.001;
        let tel = format!("010-3000-000{n}");
        drivers.insert(app.driver_online_at(&format!("기사{n}"), &tel, false, lat + offset, lng).await);
    }

    let requests = (0..8_u32).map(|n| {
        let body = call_at(&format!("010-4000-000{n}"), lat, lng + f64::from(n) * 0.0005);
        app.post_call_reply_owned(body, Some(10))
    });
    let replies = join_all(requests).await;

    let mut confirmed_drivers = Vec::new();
    let mut failed_calls = Vec::new();
    for reply in &replies {
        match reply.status {
            StatusCode::CREATED => {
                assert_eq!(reply.body["status"], "CONFIRMED", "{}", reply.text);
                confirmed_drivers.push(uuid_of(&reply.body["driver"]["driver_id"]));
            }
            StatusCode::CONFLICT => {
                reply.assert_problem(StatusCode::CONFLICT, "NO_DRIVER_AVAILABLE");
                failed_calls.push(uuid_of(&reply.body["call_id"]));
            }
            other => panic!("unexpected answer {other}: {}", reply.text),
        }
    }
    assert_eq!(confirmed_drivers.len(), 3, "exactly three calls were confirmed");
    assert_eq!(failed_calls.len(), 5, "the other five failed");
    let distinct: BTreeSet<_> = confirmed_drivers.iter().copied().collect();
    assert_eq!(distinct, drivers, "each driver took exactly one call");

    for call_id in failed_calls {
        let view = app.get_call(call_id).await;
        assert_eq!(view["status"], "FAILED", "{view}");
        assert!(view["driver"].is_null(), "{view}");
    }
    for driver_id in drivers {
        let driver = app.wait_for_driver(driver_id, "ASSIGNED", |d| d["status"] == "ASSIGNED").await;
        assert!(driver["current_call_id"].is_string(), "{driver}");
    }
}
