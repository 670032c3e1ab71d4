//! Given/when/then tests of the Assignment aggregate: one dispatch attempt for one call,
//! with confirm, cancel, fail and complete tried in each state.

use chrono::{DateTime, TimeDelta, Utc};
use cqrs_es::test::{AggregateTestExecutor, TestFramework};
use cqrs_es::Aggregate;
use drivercenter_domain::{
    Assignment, AssignmentCommand, AssignmentError, AssignmentEvent, AssignmentStatus, DriveType, Location, Rejection,
    Timestamp,
};
use uuid::Uuid;

use AssignmentStatus::{Cancelled, Completed, Confirmed, Failed, Requested};

const CANDIDATES: [u128; 3] = [1, 2, 3];
const TAKEN: &str = "reserved by another call";
const NOBODY: &str = "every candidate refused";

/// Minutes after a fixed noon; each kind of step happens at its own minute.
fn at(minute: i64) -> Timestamp {
    let noon = DateTime::parse_from_rfc3339("2026-11-24T12:00:00Z").unwrap();
    noon.with_timezone(&Utc) + TimeDelta::minutes(minute)
}

fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

fn pickup() -> Location {
    Location { address: "용산구 이태원동".to_string(), lat: 37.5345, lng: 126.9946 }
}

fn request(candidates: &[u128]) -> AssignmentCommand {
    AssignmentCommand::Request {
        call_id: id(100),
        drive_type: DriveType::Manual,
        pickup: pickup(),
        candidates: candidates.iter().copied().map(id).collect(),
        at: at(0),
    }
}

fn requested() -> AssignmentEvent {
    AssignmentEvent::AssignmentRequested {
        call_id: id(100),
        drive_type: DriveType::Manual,
        pickup: pickup(),
        candidates: CANDIDATES.map(id).to_vec(),
        requested_at: at(0),
    }
}

fn refuse(driver: u128) -> AssignmentCommand {
    AssignmentCommand::RecordRefusal { driver_id: id(driver), reason: TAKEN.to_string(), at: at(1) }
}

fn refused(driver: u128) -> AssignmentEvent {
    AssignmentEvent::AssignmentCandidateRefused { driver_id: id(driver), reason: TAKEN.to_string(), refused_at: at(1) }
}

fn confirm(driver: u128) -> AssignmentCommand {
    AssignmentCommand::Confirm { driver_id: id(driver), at: at(2) }
}

fn confirmed(driver: u128) -> AssignmentEvent {
    AssignmentEvent::AssignmentConfirmed { driver_id: id(driver), confirmed_at: at(2) }
}

fn cancel(reason: Option<&str>) -> AssignmentCommand {
    AssignmentCommand::Cancel { reason: reason.map(String::from), at: at(3) }
}

fn cancelled(driver: Option<u128>, reason: Option<&str>) -> AssignmentEvent {
    AssignmentEvent::AssignmentCancelled {
        driver_id: driver.map(id),
        reason: reason.map(String::from),
        cancelled_at: at(3),
    }
}

fn fail() -> AssignmentCommand {
    AssignmentCommand::Fail { reason: NOBODY.to_string(), at: at(4) }
}

fn failed() -> AssignmentEvent {
    AssignmentEvent::AssignmentFailed { reason: NOBODY.to_string(), failed_at: at(4) }
}

fn complete() -> AssignmentCommand {
    AssignmentCommand::Complete { at: at(5) }
}

fn completed(driver: u128) -> AssignmentEvent {
    AssignmentEvent::AssignmentCompleted { driver_id: id(driver), completed_at: at(5) }
}

/// The events that bring an assignment into `status` (a confirmed one holds driver 1).
fn history(status: AssignmentStatus) -> Vec<AssignmentEvent> {
    let mut events = vec![requested()];
    match status {
        Requested => {}
        Confirmed => events.push(confirmed(1)),
        Completed => events.extend([confirmed(1), completed(1)]),
        Cancelled => events.push(cancelled(None, Some("customer cancelled"))),
        Failed => events.push(failed()),
    }
    events
}

fn given(status: AssignmentStatus) -> AggregateTestExecutor<Assignment> {
    TestFramework::<Assignment>::with(()).given(history(status))
}

// Request

#[test]
fn requesting_an_assignment_records_the_candidates() {
    TestFramework::<Assignment>::with(())
        .given_no_previous_events()
        .when(request(&CANDIDATES))
        .then_expect_events(vec![requested()]);
}

#[test]
fn requesting_again_with_other_candidates_is_a_no_op() {
    given(Requested).when(request(&[7, 8])).then_expect_events(vec![]);
}

#[test]
fn requesting_a_finished_assignment_again_is_a_no_op() {
    given(Cancelled).when(request(&CANDIDATES)).then_expect_events(vec![]);
}

#[test]
fn commands_on_unknown_assignment_are_not_found() {
    for command in [refuse(1), confirm(1), cancel(None), fail(), complete()] {
        TestFramework::<Assignment>::with(())
            .given_no_previous_events()
            .when(command)
            .then_expect_error(AssignmentError::NotFound);
    }
}

// RecordRefusal

#[test]
fn refusal_during_dispatch_is_recorded() {
    given(Requested).when(refuse(2)).then_expect_events(vec![refused(2)]);
}

#[test]
fn refusal_after_confirmation_is_a_no_op() {
    given(Confirmed).when(refuse(2)).then_expect_events(vec![]);
}

#[test]
fn refusal_after_cancellation_is_a_no_op() {
    given(Cancelled).when(refuse(2)).then_expect_events(vec![]);
}

#[test]
fn refusal_after_failure_is_a_no_op() {
    given(Failed).when(refuse(2)).then_expect_events(vec![]);
}

#[test]
fn refusal_after_completion_is_a_no_op() {
    given(Completed).when(refuse(2)).then_expect_events(vec![]);
}

// Confirm

#[test]
fn confirming_a_requested_assignment_records_the_driver() {
    given(Requested).when(confirm(1)).then_expect_events(vec![confirmed(1)]);
}

#[test]
fn a_refused_candidate_does_not_block_confirming_another() {
    TestFramework::<Assignment>::with(())
        .given(vec![requested(), refused(1)])
        .when(confirm(2))
        .then_expect_events(vec![confirmed(2)]);
}

#[test]
fn confirming_the_same_driver_again_is_a_no_op() {
    given(Confirmed).when(confirm(1)).then_expect_events(vec![]);
}

#[test]
fn confirming_another_driver_is_rejected() {
    given(Confirmed).when(confirm(2)).then_expect_error(AssignmentError::AlreadyConfirmed);
}

#[test]
fn completed_assignment_ignores_a_repeated_confirmation() {
    given(Completed).when(confirm(1)).then_expect_events(vec![]);
}

#[test]
fn completed_assignment_rejects_confirming_another_driver() {
    given(Completed).when(confirm(2)).then_expect_error(AssignmentError::Completed);
}

#[test]
fn cancelled_assignment_rejects_late_confirmation() {
    given(Cancelled).when(confirm(1)).then_expect_error(AssignmentError::Cancelled);
}

#[test]
fn failed_assignment_rejects_confirmation() {
    given(Failed).when(confirm(1)).then_expect_error(AssignmentError::Failed);
}

// Cancel

#[test]
fn cancelling_a_requested_assignment_names_no_driver() {
    given(Requested)
        .when(cancel(Some("customer cancelled")))
        .then_expect_events(vec![cancelled(None, Some("customer cancelled"))]);
}

#[test]
fn cancelling_a_confirmed_assignment_names_the_driver_to_release() {
    given(Confirmed).when(cancel(None)).then_expect_events(vec![cancelled(Some(1), None)]);
}

#[test]
fn cancelling_a_cancelled_assignment_is_a_no_op() {
    given(Cancelled).when(cancel(None)).then_expect_events(vec![]);
}

#[test]
fn cancelling_a_failed_assignment_is_a_no_op() {
    given(Failed).when(cancel(None)).then_expect_events(vec![]);
}

#[test]
fn completed_assignment_rejects_cancel() {
    given(Completed).when(cancel(None)).then_expect_error(AssignmentError::Completed);
}

// Fail

#[test]
fn failing_a_requested_assignment_records_the_reason() {
    given(Requested).when(fail()).then_expect_events(vec![failed()]);
}

#[test]
fn failing_a_failed_assignment_again_is_a_no_op() {
    given(Failed).when(fail()).then_expect_events(vec![]);
}

#[test]
fn confirmed_assignment_cannot_fail() {
    given(Confirmed).when(fail()).then_expect_error(AssignmentError::AlreadyConfirmed);
}

#[test]
fn cancelled_assignment_rejects_failure() {
    given(Cancelled).when(fail()).then_expect_error(AssignmentError::Cancelled);
}

#[test]
fn completed_assignment_rejects_failure() {
    given(Completed).when(fail()).then_expect_error(AssignmentError::Completed);
}

// Complete

#[test]
fn completing_a_confirmed_assignment_names_the_driver() {
    given(Confirmed).when(complete()).then_expect_events(vec![completed(1)]);
}

#[test]
fn completing_a_completed_assignment_again_is_a_no_op() {
    given(Completed).when(complete()).then_expect_events(vec![]);
}

#[test]
fn requested_assignment_cannot_be_completed() {
    given(Requested).when(complete()).then_expect_error(AssignmentError::NotConfirmed);
}

#[test]
fn cancelled_assignment_rejects_completion() {
    given(Cancelled).when(complete()).then_expect_error(AssignmentError::Cancelled);
}

#[test]
fn failed_assignment_rejects_completion() {
    given(Failed).when(complete()).then_expect_error(AssignmentError::Failed);
}

// State and rejection codes

#[test]
fn replaying_the_history_restores_status_and_driver() {
    for status in [Requested, Confirmed, Completed, Cancelled, Failed] {
        let mut assignment = Assignment::default();
        history(status).into_iter().for_each(|event| assignment.apply(event));
        assert_eq!(assignment.status(), status);
        let has_driver = matches!(status, Confirmed | Completed);
        assert_eq!(assignment.driver_id(), has_driver.then(|| id(1)), "{status:?}");
    }
}

#[test]
fn assignment_rejections_have_stable_codes_and_only_not_found_is_a_404() {
    let cases = [
        (AssignmentError::NotFound, "ASSIGNMENT_NOT_FOUND"),
        (AssignmentError::AlreadyConfirmed, "ASSIGNMENT_ALREADY_CONFIRMED"),
        (AssignmentError::Cancelled, "ASSIGNMENT_CANCELLED"),
        (AssignmentError::Failed, "ASSIGNMENT_FAILED"),
        (AssignmentError::Completed, "ASSIGNMENT_COMPLETED"),
        (AssignmentError::NotConfirmed, "ASSIGNMENT_NOT_CONFIRMED"),
    ];
    for (error, code) in cases {
        assert_eq!(error.code(), code);
        assert_eq!(error.is_not_found(), error == AssignmentError::NotFound, "{code}");
    }
}
