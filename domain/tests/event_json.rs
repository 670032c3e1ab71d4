//! The versioned wire contract: the stored JSON, event type and event version of every
//! event variant. A failure here means a shipped event shape changed; add a new version
//! and an upcaster instead of editing these literals.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use drivercenter_domain::{
    AssignedDriver, AssignmentEvent, CallEvent, CallRequest, DriveType, DriverEvent, Fare, Location, ReleaseReason,
    Tel, Timestamp,
};
use serde_json::{json, Value};
use uuid::Uuid;

const NOON: &str = "2026-11-24T12:00:00Z";
const CALL_ID: &str = "00000000-0000-0000-0000-000000000064";
const DRIVER_ID: &str = "00000000-0000-0000-0000-000000000001";
const OTHER_DRIVER_ID: &str = "00000000-0000-0000-0000-000000000002";
const TEL: &str = "01012345678";

fn noon() -> Timestamp {
    DateTime::parse_from_rfc3339(NOON).unwrap().with_timezone(&Utc)
}

fn call_id() -> Uuid {
    Uuid::from_u128(100)
}

fn driver_id() -> Uuid {
    Uuid::from_u128(1)
}

fn tel() -> Tel {
    Tel::parse("010-1234-5678").unwrap()
}

fn location() -> Location {
    Location { address: "마포구".to_string(), lat: 37.5663, lng: 126.9019 }
}

fn location_json() -> Value {
    json!({ "address": "마포구", "lat": 37.5663, "lng": 126.9019 })
}

/// Pins the event's type, version and JSON, and that the JSON reads back to the same event.
fn assert_wire<E: DomainEvent>(event: E, event_type: &str, expected: Value) {
    assert_eq!(event.event_type(), event_type);
    assert_eq!(event.event_version(), "1", "{event_type}");
    assert_eq!(serde_json::to_value(&event).unwrap(), expected, "{event_type}");
    let read_back: E = serde_json::from_value(expected).unwrap();
    assert_eq!(read_back, event, "{event_type}");
}

// CallEvent

fn call_request() -> CallRequest {
    CallRequest {
        call_id: call_id(),
        tel: tel(),
        pickup: location(),
        destination: Some(Location { address: "강남구".to_string(), lat: 37.5172, lng: 127.0473 }),
        drive_type: DriveType::Manual,
        fare: Fare::new(25_000).unwrap(),
        requested_at: noon(),
    }
}

fn call_requested_json() -> Value {
    json!({ "CallRequested": {
        "call_id": CALL_ID,
        "tel": TEL,
        "pickup": location_json(),
        "destination": { "address": "강남구", "lat": 37.5172, "lng": 127.0473 },
        "drive_type": "MANUAL",
        "fare": 25000,
        "requested_at": NOON,
    }})
}

#[test]
fn call_requested_wire_format() {
    assert_wire(CallEvent::CallRequested(call_request()), "CallRequested", call_requested_json());
}

#[test]
fn call_requested_without_destination_writes_null() {
    let event = CallEvent::CallRequested(CallRequest { destination: None, ..call_request() });
    let mut expected = call_requested_json();
    expected["CallRequested"]["destination"] = Value::Null;
    assert_wire(event, "CallRequested", expected);
}

#[test]
fn call_dispatch_started_wire_format() {
    let event = CallEvent::CallDispatchStarted { started_at: noon() };
    assert_wire(event, "CallDispatchStarted", json!({ "CallDispatchStarted": { "started_at": NOON } }));
}

#[test]
fn call_confirmed_wire_format() {
    let driver = AssignedDriver { driver_id: driver_id(), name: "김기사".to_string(), tel: tel() };
    let event = CallEvent::CallConfirmed { driver, confirmed_at: noon() };
    let expected = json!({ "CallConfirmed": {
        "driver": { "driver_id": DRIVER_ID, "name": "김기사", "tel": TEL },
        "confirmed_at": NOON,
    }});
    assert_wire(event, "CallConfirmed", expected);
}

#[test]
fn call_cancelled_wire_format() {
    let event = CallEvent::CallCancelled { reason: Some("changed plans".to_string()), cancelled_at: noon() };
    let expected = json!({ "CallCancelled": { "reason": "changed plans", "cancelled_at": NOON } });
    assert_wire(event, "CallCancelled", expected);
}

#[test]
fn call_cancelled_without_reason_wire_format() {
    let event = CallEvent::CallCancelled { reason: None, cancelled_at: noon() };
    assert_wire(event, "CallCancelled", json!({ "CallCancelled": { "reason": null, "cancelled_at": NOON } }));
}

#[test]
fn call_completed_wire_format() {
    let event = CallEvent::CallCompleted { completed_at: noon() };
    assert_wire(event, "CallCompleted", json!({ "CallCompleted": { "completed_at": NOON } }));
}

#[test]
fn call_failed_wire_format() {
    let event = CallEvent::CallFailed { reason: "no driver".to_string(), failed_at: noon() };
    assert_wire(event, "CallFailed", json!({ "CallFailed": { "reason": "no driver", "failed_at": NOON } }));
}

// DriverEvent

#[test]
fn driver_registered_wire_format() {
    let event = DriverEvent::DriverRegistered {
        driver_id: driver_id(),
        name: "김기사".to_string(),
        tel: tel(),
        can_drive_manual: true,
        registered_at: noon(),
    };
    let expected = json!({ "DriverRegistered": {
        "driver_id": DRIVER_ID,
        "name": "김기사",
        "tel": TEL,
        "can_drive_manual": true,
        "registered_at": NOON,
    }});
    assert_wire(event, "DriverRegistered", expected);
}

#[test]
fn driver_went_online_wire_format() {
    let event = DriverEvent::DriverWentOnline { location: location(), online_at: noon() };
    let expected = json!({ "DriverWentOnline": { "location": location_json(), "online_at": NOON } });
    assert_wire(event, "DriverWentOnline", expected);
}

#[test]
fn driver_location_updated_wire_format() {
    let event = DriverEvent::DriverLocationUpdated { location: location(), updated_at: noon() };
    let expected = json!({ "DriverLocationUpdated": { "location": location_json(), "updated_at": NOON } });
    assert_wire(event, "DriverLocationUpdated", expected);
}

#[test]
fn driver_went_offline_wire_format() {
    let event = DriverEvent::DriverWentOffline { offline_at: noon() };
    assert_wire(event, "DriverWentOffline", json!({ "DriverWentOffline": { "offline_at": NOON } }));
}

#[test]
fn driver_reserved_wire_format() {
    let event = DriverEvent::DriverReserved { call_id: call_id(), reserved_at: noon() };
    let expected = json!({ "DriverReserved": { "call_id": CALL_ID, "reserved_at": NOON } });
    assert_wire(event, "DriverReserved", expected);
}

#[test]
fn driver_released_wire_format() {
    let event =
        DriverEvent::DriverReleased { call_id: call_id(), reason: ReleaseReason::NotNeeded, released_at: noon() };
    let expected = json!({ "DriverReleased": { "call_id": CALL_ID, "reason": "NOT_NEEDED", "released_at": NOON } });
    assert_wire(event, "DriverReleased", expected);
}

#[test]
fn release_reasons_and_drive_types_have_screaming_snake_case_names() {
    let reasons = [
        (ReleaseReason::CallCancelled, "CALL_CANCELLED"),
        (ReleaseReason::CallCompleted, "CALL_COMPLETED"),
        (ReleaseReason::NotNeeded, "NOT_NEEDED"),
    ];
    for (reason, name) in reasons {
        assert_eq!(serde_json::to_value(reason).unwrap(), json!(name));
        assert_eq!(serde_json::from_value::<ReleaseReason>(json!(name)).unwrap(), reason);
    }
    for drive_type in [DriveType::Auto, DriveType::Manual] {
        assert_eq!(serde_json::to_value(drive_type).unwrap(), json!(drive_type.as_str()));
        assert_eq!(serde_json::from_value::<DriveType>(json!(drive_type.as_str())).unwrap(), drive_type);
    }
}

// AssignmentEvent

#[test]
fn assignment_requested_wire_format() {
    let event = AssignmentEvent::AssignmentRequested {
        call_id: call_id(),
        drive_type: DriveType::Auto,
        pickup: location(),
        candidates: vec![driver_id(), Uuid::from_u128(2)],
        requested_at: noon(),
    };
    let expected = json!({ "AssignmentRequested": {
        "call_id": CALL_ID,
        "drive_type": "AUTO",
        "pickup": location_json(),
        "candidates": [DRIVER_ID, OTHER_DRIVER_ID],
        "requested_at": NOON,
    }});
    assert_wire(event, "AssignmentRequested", expected);
}

#[test]
fn assignment_candidate_refused_wire_format() {
    let event = AssignmentEvent::AssignmentCandidateRefused {
        driver_id: driver_id(),
        reason: "driver offline".to_string(),
        refused_at: noon(),
    };
    let expected = json!({ "AssignmentCandidateRefused": {
        "driver_id": DRIVER_ID,
        "reason": "driver offline",
        "refused_at": NOON,
    }});
    assert_wire(event, "AssignmentCandidateRefused", expected);
}

#[test]
fn assignment_confirmed_wire_format() {
    let event = AssignmentEvent::AssignmentConfirmed { driver_id: driver_id(), confirmed_at: noon() };
    let expected = json!({ "AssignmentConfirmed": { "driver_id": DRIVER_ID, "confirmed_at": NOON } });
    assert_wire(event, "AssignmentConfirmed", expected);
}

#[test]
fn assignment_cancelled_wire_format() {
    let event = AssignmentEvent::AssignmentCancelled {
        driver_id: Some(driver_id()),
        reason: Some("customer cancelled".to_string()),
        cancelled_at: noon(),
    };
    let expected = json!({ "AssignmentCancelled": {
        "driver_id": DRIVER_ID,
        "reason": "customer cancelled",
        "cancelled_at": NOON,
    }});
    assert_wire(event, "AssignmentCancelled", expected);
}

#[test]
fn assignment_cancelled_without_driver_or_reason_wire_format() {
    let event = AssignmentEvent::AssignmentCancelled { driver_id: None, reason: None, cancelled_at: noon() };
    let expected = json!({ "AssignmentCancelled": { "driver_id": null, "reason": null, "cancelled_at": NOON } });
    assert_wire(event, "AssignmentCancelled", expected);
}

#[test]
fn assignment_failed_wire_format() {
    let event = AssignmentEvent::AssignmentFailed { reason: "no candidates".to_string(), failed_at: noon() };
    let expected = json!({ "AssignmentFailed": { "reason": "no candidates", "failed_at": NOON } });
    assert_wire(event, "AssignmentFailed", expected);
}

#[test]
fn assignment_completed_wire_format() {
    let event = AssignmentEvent::AssignmentCompleted { driver_id: driver_id(), completed_at: noon() };
    let expected = json!({ "AssignmentCompleted": { "driver_id": DRIVER_ID, "completed_at": NOON } });
    assert_wire(event, "AssignmentCompleted", expected);
}
