//! Bad input never yields a 500 and never stores anything: every rejection is a
//! problem JSON with a stable code, and the log is untouched.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::harness::{scenario, TestApp};

/// One bad request and the problem it must get.
struct Case {
    what: &'static str,
    method: Method,
    path: String,
    body: Body,
    status: StatusCode,
    code: &'static str,
}

enum Body {
    None,
    Json(Value),
    Raw(Vec<u8>),
    /// Bytes without any Content-Type.
    Untyped(&'static str),
}

fn case(
    what: &'static str,
    method: Method,
    path: impl Into<String>,
    body: Body,
    status: StatusCode,
    code: &'static str,
) -> Case {
    Case { what, method, path: path.into(), body, status, code }
}

fn valid_call() -> Value {
    json!({"tel": "010-1234-5678", "pickup": {"address": "마포", "lat": 37.5663, "lng": 126.9019}, "fare": 25000})
}

/// A valid call with `key` set to `value` (`Value::Null` removes it).
fn call_with(key: &str, value: Value) -> Body {
    let mut body = valid_call();
    if value.is_null() {
        body.as_object_mut().unwrap().remove(key);
    } else {
        body[key] = value;
    }
    Body::Json(body)
}

fn pickup(pickup: Value) -> Body {
    call_with("pickup", pickup)
}

fn json_body(body: Value) -> Body {
    Body::Json(body)
}

fn reason(reason: String) -> Body {
    Body::Json(json!({ "reason": reason }))
}

/// Numbers no `i64` or `f64` holds, written out since `json!` cannot.
const FARE_BEYOND_I64: &str =
    r#"{"tel": "01012345678", "pickup": {"address": "마포"}, "fare": 99999999999999999999999}"#;
const LAT_BEYOND_F64: &str = r#"{"tel": "01012345678", "pickup": {"address": "x", "lat": 1e400, "lng": 1}}"#;

const UNPROCESSABLE: StatusCode = StatusCode::UNPROCESSABLE_ENTITY;

/// The server's body limit.
const LIMIT: usize = 64 * 1024;
/// A body larger than the server's limit.
const OVERSIZED: usize = 4 * LIMIT;
const BAD_REQUEST: StatusCode = StatusCode::BAD_REQUEST;
const NOT_FOUND: StatusCode = StatusCode::NOT_FOUND;

scenario!(bad_input_never_yields_a_500_and_never_stores_anything);
async fn bad_input_never_yields_a_500_and_never_stores_anything(app: TestApp) {
    let driver_id = app.register_driver("안채우", "010-3345-7789", false).await;
    app.wait_until_quiet().await;
    let events_before = app.count_events().await;

    // Long values that still fit the 64 KiB body limit reach the rules that refuse them.
    let long_text = "가".repeat(48 * 1024 / 3);
    // Past the limit: the client must get its 413, not a connection reset mid-write.
    let oversized_text = "가".repeat(OVERSIZED / 3);
    let unknown = Uuid::now_v7();
    let raw = |text: &str| Body::Raw(text.as_bytes().to_vec());
    let mut cases = Vec::new();

    // POST /calls: each rule, each kind of malformed body.
    for (what, body, status, code) in [
        ("invalid tel", call_with("tel", json!("02-123-4567")), UNPROCESSABLE, "INVALID_TEL"),
        ("tel with letters", call_with("tel", json!("010-abcd-5678")), UNPROCESSABLE, "INVALID_TEL"),
        ("empty tel", call_with("tel", json!("")), UNPROCESSABLE, "INVALID_TEL"),
        ("48 KB tel", call_with("tel", json!(long_text)), UNPROCESSABLE, "INVALID_TEL"),
        ("256 KB tel", call_with("tel", json!(oversized_text)), StatusCode::PAYLOAD_TOO_LARGE, "BODY_TOO_LARGE"),
        (
            "unknown place, no coordinates",
            pickup(json!({"address": "부산 해운대구"})),
            UNPROCESSABLE,
            "UNKNOWN_LOCATION",
        ),
        ("no address and no coordinates", pickup(json!({})), UNPROCESSABLE, "UNKNOWN_LOCATION"),
        ("bare 중 is no district", pickup(json!({"address": "중"})), UNPROCESSABLE, "UNKNOWN_LOCATION"),
        ("lat 91", pickup(json!({"address": "x", "lat": 91.0, "lng": 126.9})), UNPROCESSABLE, "INVALID_LOCATION"),
        ("lng -181", pickup(json!({"address": "x", "lat": 37.5, "lng": -181.0})), UNPROCESSABLE, "INVALID_LOCATION"),
        ("only lat", pickup(json!({"address": "마포", "lat": 37.5})), UNPROCESSABLE, "INVALID_LOCATION"),
        ("huge lat", pickup(json!({"address": "x", "lat": 1e308, "lng": 1e308})), UNPROCESSABLE, "INVALID_LOCATION"),
        (
            "48 KB address",
            pickup(json!({"address": long_text, "lat": 37.5, "lng": 126.9})),
            UNPROCESSABLE,
            "INVALID_LOCATION",
        ),
        ("bad destination", call_with("destination", json!({"address": "평양"})), UNPROCESSABLE, "UNKNOWN_LOCATION"),
        ("negative fare", call_with("fare", json!(-1)), UNPROCESSABLE, "INVALID_FARE"),
        ("fare above the maximum", call_with("fare", json!(10_000_001)), UNPROCESSABLE, "INVALID_FARE"),
        ("i64::MAX fare", call_with("fare", json!(i64::MAX)), UNPROCESSABLE, "INVALID_FARE"),
        ("i64::MIN fare", call_with("fare", json!(i64::MIN)), UNPROCESSABLE, "INVALID_FARE"),
        ("fare beyond i64", raw(FARE_BEYOND_I64), UNPROCESSABLE, "INVALID_BODY"),
        ("fare 1e30", call_with("fare", json!(1e30)), UNPROCESSABLE, "INVALID_BODY"),
        ("fractional fare", call_with("fare", json!(25000.5)), UNPROCESSABLE, "INVALID_BODY"),
        ("drive_type BUS", call_with("drive_type", json!("BUS")), UNPROCESSABLE, "INVALID_DRIVE_TYPE"),
        ("drive_type in lower case", call_with("drive_type", json!("manual")), UNPROCESSABLE, "INVALID_DRIVE_TYPE"),
        ("malformed JSON", raw(r#"{"tel": "01012345678", "#), BAD_REQUEST, "INVALID_JSON"),
        ("not UTF-8", Body::Raw(vec![0xff, 0xfe, 0x7b]), BAD_REQUEST, "INVALID_JSON"),
        ("a 256 KB body", Body::Raw(vec![b' '; OVERSIZED]), StatusCode::PAYLOAD_TOO_LARGE, "BODY_TOO_LARGE"),
        ("empty body", raw(""), BAD_REQUEST, "INVALID_JSON"),
        ("lat beyond f64", raw(LAT_BEYOND_F64), BAD_REQUEST, "INVALID_JSON"),
        ("tel as a number", call_with("tel", json!(1012345678)), UNPROCESSABLE, "INVALID_BODY"),
        ("fare as a string", call_with("fare", json!("25000")), UNPROCESSABLE, "INVALID_BODY"),
        ("pickup as a string", call_with("pickup", json!("마포")), UNPROCESSABLE, "INVALID_BODY"),
        ("missing pickup", call_with("pickup", Value::Null), UNPROCESSABLE, "INVALID_BODY"),
        ("missing tel", call_with("tel", Value::Null), UNPROCESSABLE, "INVALID_BODY"),
        ("unknown field", call_with("color", json!("red")), UNPROCESSABLE, "INVALID_BODY"),
        ("unknown field in the pickup", pickup(json!({"address": "마포", "floor": 3})), UNPROCESSABLE, "INVALID_BODY"),
        ("JSON null", raw("null"), UNPROCESSABLE, "INVALID_BODY"),
        ("JSON array", raw("[]"), UNPROCESSABLE, "INVALID_BODY"),
    ] {
        cases.push(case(what, Method::POST, "/calls", body, status, code));
    }

    // Calls that do not exist, ids that are not ids, bad bodies for existing routes.
    let call = format!("/calls/{unknown}");
    for (what, method, path, body, status, code) in [
        ("unknown call", Method::GET, call.clone(), Body::None, NOT_FOUND, "CALL_NOT_FOUND"),
        ("non-UUID call id", Method::GET, "/calls/12345".into(), Body::None, NOT_FOUND, "NOT_FOUND"),
        ("non-UUID id, cancel", Method::POST, "/calls/abc/cancel".into(), Body::None, NOT_FOUND, "NOT_FOUND"),
        ("cancel an unknown call", Method::POST, format!("{call}/cancel"), Body::None, NOT_FOUND, "CALL_NOT_FOUND"),
        ("delete an unknown call", Method::DELETE, call.clone(), Body::None, NOT_FOUND, "CALL_NOT_FOUND"),
        ("complete an unknown call", Method::POST, format!("{call}/complete"), Body::None, NOT_FOUND, "CALL_NOT_FOUND"),
        (
            "timeline of an unknown call",
            Method::GET,
            format!("{call}/timeline"),
            Body::None,
            NOT_FOUND,
            "CALL_NOT_FOUND",
        ),
        ("stream of an unknown call", Method::GET, format!("{call}/stream"), Body::None, NOT_FOUND, "CALL_NOT_FOUND"),
        (
            "unknown assignment",
            Method::GET,
            format!("/assignments/{unknown}"),
            Body::None,
            NOT_FOUND,
            "ASSIGNMENT_NOT_FOUND",
        ),
        (
            "cancel reason too long",
            Method::POST,
            format!("{call}/cancel"),
            reason("왜".repeat(201)),
            UNPROCESSABLE,
            "INVALID_REASON",
        ),
        ("cancel, malformed JSON", Method::POST, format!("{call}/cancel"), raw("{"), BAD_REQUEST, "INVALID_JSON"),
        (
            "cancel, unknown field",
            Method::POST,
            format!("{call}/cancel"),
            json_body(json!({"why": "x"})),
            UNPROCESSABLE,
            "INVALID_BODY",
        ),
        ("no such route", Method::GET, "/nowhere".into(), Body::None, NOT_FOUND, "NOT_FOUND"),
        (
            "wrong method",
            Method::PATCH,
            "/calls".into(),
            Body::None,
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
        ),
    ] {
        cases.push(case(what, method, path, body, status, code));
    }

    // Drivers: unknown ones, and bad input for a known one.
    let ghost = format!("/drivers/{unknown}");
    let online = format!("/drivers/{driver_id}/online");
    let mapo = || json_body(json!({"location": {"address": "마포"}}));
    let at = |location: Value| json_body(json!({ "location": location }));
    for (what, method, path, body, status, code) in [
        ("unknown driver", Method::GET, ghost.clone(), Body::None, NOT_FOUND, "DRIVER_NOT_FOUND"),
        ("unknown driver goes online", Method::POST, format!("{ghost}/online"), mapo(), NOT_FOUND, "DRIVER_NOT_FOUND"),
        ("unknown driver moves", Method::PUT, format!("{ghost}/location"), mapo(), NOT_FOUND, "DRIVER_NOT_FOUND"),
        (
            "unknown driver goes offline",
            Method::POST,
            format!("{ghost}/offline"),
            Body::None,
            NOT_FOUND,
            "DRIVER_NOT_FOUND",
        ),
        ("non-UUID driver id", Method::GET, "/drivers/kim".into(), Body::None, NOT_FOUND, "NOT_FOUND"),
        (
            "online at lat 91",
            Method::POST,
            online.clone(),
            at(json!({"lat": 91.0, "lng": 127.0})),
            UNPROCESSABLE,
            "INVALID_LOCATION",
        ),
        (
            "online somewhere unknown",
            Method::POST,
            online.clone(),
            at(json!({"address": "제주"})),
            UNPROCESSABLE,
            "UNKNOWN_LOCATION",
        ),
        (
            "online without a location",
            Method::POST,
            online.clone(),
            json_body(json!({})),
            UNPROCESSABLE,
            "INVALID_BODY",
        ),
        ("online with an empty body", Method::POST, online.clone(), raw(""), BAD_REQUEST, "INVALID_JSON"),
        (
            "online, no content type",
            Method::POST,
            online.clone(),
            Body::Untyped(r#"{"location":{"address":"마포"}}"#),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
    ] {
        cases.push(case(what, method, path, body, status, code));
    }
    for (what, body, code) in [
        ("register with a bad tel", json!({"name": "김", "tel": "1234"}), "INVALID_TEL"),
        ("register without a name", json!({"tel": "01012345678"}), "INVALID_BODY"),
        ("register with an empty name", json!({"name": "  ", "tel": "01012345678"}), "INVALID_NAME"),
        ("register with a 48 KB name", json!({"name": long_text, "tel": "01012345678"}), "INVALID_NAME"),
        (
            "register, manual as a string",
            json!({"name": "김", "tel": "01012345678", "can_drive_manual": "yes"}),
            "INVALID_BODY",
        ),
    ] {
        cases.push(case(what, Method::POST, "/drivers", json_body(body), UNPROCESSABLE, code));
    }
    cases.push(case(
        "register with a 256 KB body",
        Method::POST,
        "/drivers",
        Body::Raw(vec![b' '; OVERSIZED]),
        StatusCode::PAYLOAD_TOO_LARGE,
        "BODY_TOO_LARGE",
    ));

    // The original routes.
    for (what, body, status, code) in [
        (
            "drivercall, bad tel",
            json_body(json!({"tel": "123", "location": "마포", "cost": "1"})),
            UNPROCESSABLE,
            "INVALID_TEL",
        ),
        (
            "drivercall, negative cost",
            json_body(json!({"tel": "01012345678", "location": "마포", "cost": "-5"})),
            UNPROCESSABLE,
            "INVALID_FARE",
        ),
        ("drivercall, no location", json_body(json!({"tel": "01012345678"})), UNPROCESSABLE, "INVALID_BODY"),
        ("drivercall, form body", raw("tel=010"), BAD_REQUEST, "INVALID_JSON"),
    ] {
        cases.push(case(what, Method::POST, "/drivercalls", body, status, code));
    }
    cases.push(case(
        "delete an unknown drivercall",
        Method::DELETE,
        format!("/drivercalls/{unknown}"),
        Body::None,
        NOT_FOUND,
        "CALL_NOT_FOUND",
    ));

    for case in cases {
        let mut request = app.request(case.method.clone(), &case.path).header("prefer", "wait=1");
        request = match case.body {
            Body::None => request,
            Body::Json(body) => request.json(&body),
            Body::Raw(bytes) => request.header("content-type", "application/json").body(bytes),
            Body::Untyped(text) => request.body(text),
        };
        let reply = app.send(request).await;
        assert_ne!(reply.status, StatusCode::INTERNAL_SERVER_ERROR, "{}: {}", case.what, reply.text);
        assert_eq!(reply.status, case.status, "{} {}: {}: {}", case.method, case.path, case.what, reply.text);
        assert_eq!(reply.body["code"], case.code, "{}: {}", case.what, reply.text);
        assert_eq!(reply.body["status"], case.status.as_u16(), "{}: {}", case.what, reply.text);
        assert!(reply.body["type"].is_string() && reply.body["title"].is_string(), "{}: {}", case.what, reply.text);
        assert_eq!(reply.header("content-type"), Some("application/problem+json"), "{}", case.what);
    }

    // A valid body with an unusable Idempotency-Key is refused before anything is stored.
    let reply = app
        .send(app.request(Method::POST, "/calls").header("idempotency-key", "k".repeat(300)).json(&valid_call()))
        .await;
    reply.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_IDEMPOTENCY_KEY");

    // Queries.
    app.history("limit=5").await.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "TEL_REQUIRED");
    app.history("tel=01012345678&limit=0").await.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_LIMIT");

    app.wait_until_quiet().await;
    assert_eq!(app.count_events().await, events_before, "bad input stored nothing");
    let calls = app.get("/drivercalls").await;
    assert_eq!(calls.assert_status(StatusCode::OK)["items"], json!([]), "no call exists");
    let drivers = app.get("/drivers").await;
    assert_eq!(drivers.body["items"].as_array().map(Vec::len), Some(1), "only the one driver: {}", drivers.text);
    assert_eq!(app.get_driver(driver_id).await["status"], "OFFLINE");
}

scenario!(a_chunked_body_over_the_limit_is_refused_and_the_connection_stays_usable);
async fn a_chunked_body_over_the_limit_is_refused_and_the_connection_stays_usable(app: TestApp) {
    // No Content-Length: the limit is found while reading. Just over it, so that the
    // client has sent the whole body by the time the answer comes, and a server that
    // closes the connection then cannot make the client's write fail instead.
    let chunks = (0..LIMIT / 1024 + 1).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1024]));
    let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let request = app.request(Method::POST, "/calls").header("content-type", "application/json").body(body);
    app.send(request).await.assert_problem(StatusCode::PAYLOAD_TOO_LARGE, "BODY_TOO_LARGE");

    // A refusal that never looks at the body still reads it, so the kept-alive connection
    // serves the next request.
    for _ in 0..20 {
        let body = r#"{"name": "안채우", "tel": "01033457789"}"#;
        let refused = app.send(app.request(Method::POST, "/drivers").body(body)).await;
        refused.assert_problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED_MEDIA_TYPE");
        let health = app.get("/healthz").await;
        assert_eq!(health.status, StatusCode::OK);
    }
    assert_eq!(app.count_events().await, 0, "nothing was stored");
}
