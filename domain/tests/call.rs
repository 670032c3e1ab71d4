//! Given/when/then tests of the Call aggregate: every command in every state that matters.

use chrono::{DateTime, TimeDelta, Utc};
use cqrs_es::test::{AggregateTestExecutor, TestFramework};
use cqrs_es::Aggregate;
use drivercenter_domain::{
    AssignedDriver, Call, CallCommand, CallError, CallEvent, CallRequest, CallStatus, DriveType, Fare, Location,
    Rejection, Tel, Timestamp,
};
use uuid::Uuid;

use CallStatus::{Cancelled, Completed, Confirmed, Dispatching, Failed, Requested};

const ALL_STATUSES: [CallStatus; 6] = [Requested, Dispatching, Confirmed, Completed, Cancelled, Failed];

/// Minutes after a fixed noon; each kind of step happens at its own minute.
fn at(minute: i64) -> Timestamp {
    let noon = DateTime::parse_from_rfc3339("2026-11-24T12:00:00Z").unwrap();
    noon.with_timezone(&Utc) + TimeDelta::minutes(minute)
}

fn place(address: &str, lat: f64, lng: f64) -> Location {
    Location { address: address.to_string(), lat, lng }
}

fn request() -> CallRequest {
    CallRequest {
        call_id: Uuid::from_u128(100),
        tel: Tel::parse("010-1234-5678").unwrap(),
        pickup: place("마포구 합정동", 37.5495, 126.9139),
        destination: Some(place("강남구 역삼동", 37.5006, 127.0366)),
        drive_type: DriveType::Auto,
        fare: Fare::new(30_000).unwrap(),
        requested_at: at(0),
    }
}

fn driver(n: u128) -> AssignedDriver {
    AssignedDriver {
        driver_id: Uuid::from_u128(n),
        name: format!("기사{n}"),
        tel: Tel::parse(&format!("010-0000-{n:04}")).unwrap(),
    }
}

fn start_dispatch() -> CallCommand {
    CallCommand::StartDispatch { at: at(1) }
}

fn dispatch_started() -> CallEvent {
    CallEvent::CallDispatchStarted { started_at: at(1) }
}

fn confirm(n: u128) -> CallCommand {
    CallCommand::Confirm { driver: driver(n), at: at(2) }
}

fn confirmed(n: u128) -> CallEvent {
    CallEvent::CallConfirmed { driver: driver(n), confirmed_at: at(2) }
}

fn cancel(reason: Option<&str>) -> CallCommand {
    CallCommand::Cancel { reason: reason.map(String::from), at: at(3) }
}

fn cancelled(reason: Option<&str>) -> CallEvent {
    CallEvent::CallCancelled { reason: reason.map(String::from), cancelled_at: at(3) }
}

fn complete() -> CallCommand {
    CallCommand::Complete { at: at(4) }
}

fn completed() -> CallEvent {
    CallEvent::CallCompleted { completed_at: at(4) }
}

const NO_DRIVER: &str = "no driver accepted";

fn fail() -> CallCommand {
    CallCommand::Fail { reason: NO_DRIVER.to_string(), at: at(5) }
}

fn failed() -> CallEvent {
    CallEvent::CallFailed { reason: NO_DRIVER.to_string(), failed_at: at(5) }
}

/// The events that bring a call into `status` (a confirmed call holds driver 1).
fn history(status: CallStatus) -> Vec<CallEvent> {
    let mut events = vec![CallEvent::CallRequested(request())];
    match status {
        Requested => {}
        Dispatching => events.push(dispatch_started()),
        Confirmed => events.extend([dispatch_started(), confirmed(1)]),
        Completed => events.extend([dispatch_started(), confirmed(1), completed()]),
        Cancelled => events.extend([dispatch_started(), cancelled(Some("changed plans"))]),
        Failed => events.extend([dispatch_started(), failed()]),
    }
    events
}

fn given(status: CallStatus) -> AggregateTestExecutor<Call> {
    TestFramework::<Call>::with(()).given(history(status))
}

fn given_nothing() -> AggregateTestExecutor<Call> {
    TestFramework::<Call>::with(()).given_no_previous_events()
}

// Request

#[test]
fn requesting_a_new_call_records_the_request() {
    given_nothing().when(CallCommand::Request(request())).then_expect_events(vec![CallEvent::CallRequested(request())]);
}

#[test]
fn repeating_the_same_request_is_a_no_op() {
    given(Requested).when(CallCommand::Request(request())).then_expect_events(vec![]);
}

#[test]
fn repeating_the_same_request_after_completion_is_a_no_op() {
    given(Completed).when(CallCommand::Request(request())).then_expect_events(vec![]);
}

#[test]
fn a_different_request_under_an_existing_id_is_rejected() {
    let different = CallRequest { fare: Fare::new(35_000).unwrap(), ..request() };
    given(Requested).when(CallCommand::Request(different)).then_expect_error(CallError::AlreadyExists);
}

#[test]
fn commands_on_unknown_call_are_not_found() {
    for command in [start_dispatch(), confirm(1), cancel(None), complete(), fail()] {
        given_nothing().when(command).then_expect_error(CallError::NotFound);
    }
}

// StartDispatch

#[test]
fn starting_dispatch_of_a_requested_call_records_it() {
    given(Requested).when(start_dispatch()).then_expect_events(vec![dispatch_started()]);
}

#[test]
fn starting_dispatch_twice_is_a_no_op() {
    given(Dispatching).when(start_dispatch()).then_expect_events(vec![]);
}

#[test]
fn starting_dispatch_of_a_confirmed_call_is_a_no_op() {
    given(Confirmed).when(start_dispatch()).then_expect_events(vec![]);
}

#[test]
fn completed_call_rejects_start_dispatch() {
    given(Completed).when(start_dispatch()).then_expect_error(CallError::AlreadyCompleted);
}

#[test]
fn cancelled_call_rejects_start_dispatch() {
    given(Cancelled).when(start_dispatch()).then_expect_error(CallError::AlreadyCancelled);
}

#[test]
fn failed_call_rejects_start_dispatch() {
    given(Failed).when(start_dispatch()).then_expect_error(CallError::AlreadyFailed);
}

// Confirm

#[test]
fn confirming_a_dispatching_call_records_the_driver() {
    given(Dispatching).when(confirm(1)).then_expect_events(vec![confirmed(1)]);
}

#[test]
fn confirming_a_call_before_dispatch_started_records_the_driver() {
    given(Requested).when(confirm(1)).then_expect_events(vec![confirmed(1)]);
}

#[test]
fn confirming_the_same_driver_again_is_a_no_op() {
    given(Confirmed).when(confirm(1)).then_expect_events(vec![]);
}

#[test]
fn confirming_another_driver_is_rejected() {
    given(Confirmed).when(confirm(2)).then_expect_error(CallError::AlreadyConfirmed);
}

#[test]
fn completed_call_rejects_confirmation() {
    given(Completed).when(confirm(1)).then_expect_error(CallError::AlreadyCompleted);
}

#[test]
fn cancelled_call_rejects_late_confirmation() {
    given(Cancelled).when(confirm(1)).then_expect_error(CallError::AlreadyCancelled);
}

#[test]
fn failed_call_rejects_confirmation() {
    given(Failed).when(confirm(1)).then_expect_error(CallError::AlreadyFailed);
}

// Cancel

#[test]
fn cancelling_a_requested_call_records_the_reason() {
    given(Requested).when(cancel(Some("changed plans"))).then_expect_events(vec![cancelled(Some("changed plans"))]);
}

#[test]
fn cancelling_a_dispatching_call_without_a_reason_records_it() {
    given(Dispatching).when(cancel(None)).then_expect_events(vec![cancelled(None)]);
}

#[test]
fn cancelling_a_confirmed_call_records_it() {
    given(Confirmed).when(cancel(None)).then_expect_events(vec![cancelled(None)]);
}

#[test]
fn completed_call_rejects_cancel() {
    given(Completed).when(cancel(None)).then_expect_error(CallError::AlreadyCompleted);
}

#[test]
fn cancelled_call_rejects_a_second_cancel() {
    given(Cancelled).when(cancel(None)).then_expect_error(CallError::AlreadyCancelled);
}

#[test]
fn failed_call_rejects_cancel() {
    given(Failed).when(cancel(None)).then_expect_error(CallError::AlreadyFailed);
}

// Complete

#[test]
fn completing_a_confirmed_call_records_it() {
    given(Confirmed).when(complete()).then_expect_events(vec![completed()]);
}

#[test]
fn requested_call_cannot_be_completed() {
    given(Requested).when(complete()).then_expect_error(CallError::NotConfirmed);
}

#[test]
fn dispatching_call_cannot_be_completed() {
    given(Dispatching).when(complete()).then_expect_error(CallError::NotConfirmed);
}

#[test]
fn completed_call_rejects_a_second_completion() {
    given(Completed).when(complete()).then_expect_error(CallError::AlreadyCompleted);
}

#[test]
fn cancelled_call_rejects_completion() {
    given(Cancelled).when(complete()).then_expect_error(CallError::AlreadyCancelled);
}

#[test]
fn failed_call_rejects_completion() {
    given(Failed).when(complete()).then_expect_error(CallError::AlreadyFailed);
}

// Fail

#[test]
fn failing_a_requested_call_records_the_reason() {
    given(Requested).when(fail()).then_expect_events(vec![failed()]);
}

#[test]
fn failing_a_dispatching_call_records_the_reason() {
    given(Dispatching).when(fail()).then_expect_events(vec![failed()]);
}

#[test]
fn confirmed_call_cannot_fail() {
    given(Confirmed).when(fail()).then_expect_error(CallError::AlreadyConfirmed);
}

#[test]
fn failing_a_failed_call_again_is_a_no_op() {
    given(Failed).when(fail()).then_expect_events(vec![]);
}

#[test]
fn completed_call_rejects_failure() {
    given(Completed).when(fail()).then_expect_error(CallError::AlreadyCompleted);
}

#[test]
fn cancelled_call_rejects_failure() {
    given(Cancelled).when(fail()).then_expect_error(CallError::AlreadyCancelled);
}

// State and rejection codes

#[test]
fn replaying_the_history_restores_status_request_and_driver() {
    for status in ALL_STATUSES {
        let mut call = Call::default();
        history(status).into_iter().for_each(|event| call.apply(event));
        assert_eq!(call.status(), status);
        assert_eq!(call.request(), Some(&request()));
        let has_driver = matches!(status, Confirmed | Completed);
        assert_eq!(call.driver(), has_driver.then(|| driver(1)).as_ref(), "{status:?}");
        assert_eq!(status.is_terminal(), matches!(status, Completed | Cancelled | Failed));
    }
}

#[test]
fn a_call_that_was_never_requested_has_no_request() {
    let call = Call::default();
    assert_eq!((call.status(), call.request(), call.driver()), (Requested, None, None));
}

#[test]
fn call_rejections_have_stable_codes_and_only_not_found_is_a_404() {
    let cases = [
        (CallError::NotFound, "CALL_NOT_FOUND"),
        (CallError::AlreadyExists, "CALL_ALREADY_EXISTS"),
        (CallError::AlreadyConfirmed, "CALL_ALREADY_CONFIRMED"),
        (CallError::AlreadyCancelled, "CALL_ALREADY_CANCELLED"),
        (CallError::AlreadyCompleted, "CALL_ALREADY_COMPLETED"),
        (CallError::AlreadyFailed, "CALL_ALREADY_FAILED"),
        (CallError::NotConfirmed, "CALL_NOT_CONFIRMED"),
    ];
    for (error, code) in cases {
        assert_eq!(error.code(), code);
        assert_eq!(error.is_not_found(), error == CallError::NotFound, "{code}");
    }
}
