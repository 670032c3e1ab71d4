//! Given/when/then tests of the DriverManage aggregate: the roster entry whose
//! reservation rule keeps two calls from getting the same driver.

use chrono::{DateTime, TimeDelta, Utc};
use cqrs_es::test::{AggregateTestExecutor, TestFramework};
use cqrs_es::Aggregate;
use drivercenter_domain::driver::DriverProfile;
use drivercenter_domain::{
    DriveType, Driver, DriverCommand, DriverError, DriverEvent, DriverStatus, Location, Rejection, ReleaseReason, Tel,
    Timestamp,
};
use uuid::Uuid;

use DriveType::{Auto, Manual};
use DriverStatus::{Assigned, Available, Offline};
use ReleaseReason::{CallCancelled, CallCompleted, NotNeeded};

const NAME: &str = "김기사";
/// The call the driver holds in the `Assigned` history, and another one.
const CALL: u128 = 100;
const OTHER_CALL: u128 = 101;

/// Minutes after a fixed noon; each kind of step happens at its own minute.
fn at(minute: i64) -> Timestamp {
    DateTime::parse_from_rfc3339("2026-11-24T12:00:00Z").unwrap().with_timezone(&Utc) + TimeDelta::minutes(minute)
}

fn driver_id() -> Uuid {
    Uuid::from_u128(1)
}

fn tel() -> Tel {
    Tel::parse("010-9876-5432").unwrap()
}

/// Where the driver goes online in every history.
fn home() -> Location {
    Location { address: "서대문구".to_string(), lat: 37.5791, lng: 126.9368 }
}

fn elsewhere() -> Location {
    Location { address: "송파구".to_string(), lat: 37.5145, lng: 127.1059 }
}

fn register(name: &str, can_drive_manual: bool) -> DriverCommand {
    DriverCommand::Register { driver_id: driver_id(), name: name.to_string(), tel: tel(), can_drive_manual, at: at(0) }
}

fn registered(name: &str, can_drive_manual: bool) -> DriverEvent {
    DriverEvent::DriverRegistered {
        driver_id: driver_id(),
        name: name.to_string(),
        tel: tel(),
        can_drive_manual,
        registered_at: at(0),
    }
}

fn go_online(location: Location) -> DriverCommand {
    DriverCommand::GoOnline { location, at: at(1) }
}

fn went_online() -> DriverEvent {
    DriverEvent::DriverWentOnline { location: home(), online_at: at(1) }
}

fn update_location(location: Location) -> DriverCommand {
    DriverCommand::UpdateLocation { location, at: at(2) }
}

fn location_updated(location: Location, updated_at: Timestamp) -> DriverEvent {
    DriverEvent::DriverLocationUpdated { location, updated_at }
}

fn reserve(call: u128, drive_type: DriveType) -> DriverCommand {
    DriverCommand::Reserve { call_id: Uuid::from_u128(call), drive_type, at: at(3) }
}

fn reserved(call: u128) -> DriverEvent {
    DriverEvent::DriverReserved { call_id: Uuid::from_u128(call), reserved_at: at(3) }
}

fn release(call: u128, reason: ReleaseReason) -> DriverCommand {
    DriverCommand::Release { call_id: Uuid::from_u128(call), reason, at: at(4) }
}

fn released(call: u128, reason: ReleaseReason) -> DriverEvent {
    DriverEvent::DriverReleased { call_id: Uuid::from_u128(call), reason, released_at: at(4) }
}

fn go_offline() -> DriverCommand {
    DriverCommand::GoOffline { at: at(5) }
}

fn went_offline() -> DriverEvent {
    DriverEvent::DriverWentOffline { offline_at: at(5) }
}

/// An auto-only driver in `status`: registered, then online at home, then reserved for `CALL`.
fn history(status: DriverStatus) -> Vec<DriverEvent> {
    let steps = [registered(NAME, false), went_online(), reserved(CALL)];
    let len = match status {
        Offline => 1,
        Available => 2,
        Assigned => 3,
    };
    steps.into_iter().take(len).collect()
}

/// `history(status)` followed by `more`.
fn given_then(status: DriverStatus, more: Vec<DriverEvent>) -> AggregateTestExecutor<Driver> {
    TestFramework::<Driver>::with(()).given(history(status)).and(more)
}

fn given(status: DriverStatus) -> AggregateTestExecutor<Driver> {
    given_then(status, vec![])
}

fn given_nothing() -> AggregateTestExecutor<Driver> {
    TestFramework::<Driver>::with(()).given_no_previous_events()
}

// Register

#[test]
fn registering_a_new_driver_records_the_profile() {
    given_nothing().when(register(NAME, false)).then_expect_events(vec![registered(NAME, false)]);
}

#[test]
fn registering_a_manual_capable_driver_records_the_skill() {
    given_nothing().when(register(NAME, true)).then_expect_events(vec![registered(NAME, true)]);
}

#[test]
fn registering_trims_the_name() {
    given_nothing().when(register("  김기사 \t", false)).then_expect_events(vec![registered(NAME, false)]);
}

#[test]
fn blank_driver_name_is_rejected() {
    given_nothing().when(register(" \t ", false)).then_expect_error(DriverError::InvalidName);
}

#[test]
fn driver_name_longer_than_fifty_characters_is_rejected() {
    given_nothing().when(register(&"김".repeat(51), false)).then_expect_error(DriverError::InvalidName);
}

#[test]
fn driver_name_of_fifty_characters_is_accepted() {
    let name = "김".repeat(Driver::MAX_NAME_CHARS);
    given_nothing().when(register(&name, false)).then_expect_events(vec![registered(&name, false)]);
}

#[test]
fn registering_twice_is_rejected() {
    given(Offline).when(register(NAME, false)).then_expect_error(DriverError::AlreadyRegistered);
}

#[test]
fn commands_on_unknown_driver_are_not_found() {
    let commands =
        [go_online(home()), update_location(home()), go_offline(), reserve(CALL, Auto), release(CALL, CallCompleted)];
    for command in commands {
        given_nothing().when(command).then_expect_error(DriverError::NotFound);
    }
}

// GoOnline

#[test]
fn offline_driver_goes_online_at_the_given_location() {
    given(Offline).when(go_online(home())).then_expect_events(vec![went_online()]);
}

#[test]
fn driver_who_went_offline_can_go_online_again() {
    given_then(Available, vec![went_offline()]).when(go_online(home())).then_expect_events(vec![went_online()]);
}

#[test]
fn going_online_twice_at_a_new_location_updates_the_location() {
    given(Available).when(go_online(elsewhere())).then_expect_events(vec![location_updated(elsewhere(), at(1))]);
}

#[test]
fn going_online_twice_at_the_same_location_is_a_no_op() {
    given(Available).when(go_online(home())).then_expect_events(vec![]);
}

// UpdateLocation

#[test]
fn online_driver_location_update_is_recorded() {
    given(Available).when(update_location(elsewhere())).then_expect_events(vec![location_updated(elsewhere(), at(2))]);
}

#[test]
fn assigned_driver_location_update_is_recorded() {
    given(Assigned).when(update_location(elsewhere())).then_expect_events(vec![location_updated(elsewhere(), at(2))]);
}

#[test]
fn updating_to_the_current_location_is_a_no_op() {
    given(Available).when(update_location(home())).then_expect_events(vec![]);
}

#[test]
fn updating_to_the_last_updated_location_is_a_no_op() {
    given_then(Available, vec![location_updated(elsewhere(), at(2))])
        .when(update_location(elsewhere()))
        .then_expect_events(vec![]);
}

#[test]
fn offline_driver_cannot_update_location() {
    given(Offline).when(update_location(home())).then_expect_error(DriverError::Offline);
}

#[test]
fn driver_who_went_offline_cannot_update_location() {
    given_then(Available, vec![went_offline()])
        .when(update_location(elsewhere()))
        .then_expect_error(DriverError::Offline);
}

// GoOffline

#[test]
fn available_driver_goes_offline() {
    given(Available).when(go_offline()).then_expect_events(vec![went_offline()]);
}

#[test]
fn driver_who_never_went_online_going_offline_is_a_no_op() {
    given(Offline).when(go_offline()).then_expect_events(vec![]);
}

#[test]
fn going_offline_twice_is_a_no_op() {
    given_then(Available, vec![went_offline()]).when(go_offline()).then_expect_events(vec![]);
}

#[test]
fn assigned_driver_cannot_go_offline() {
    given(Assigned).when(go_offline()).then_expect_error(DriverError::Assigned);
}

#[test]
fn released_driver_can_go_offline() {
    given_then(Assigned, vec![released(CALL, CallCompleted)])
        .when(go_offline())
        .then_expect_events(vec![went_offline()]);
}

// Reserve

#[test]
fn available_driver_is_reserved_for_a_call() {
    given(Available).when(reserve(CALL, Auto)).then_expect_events(vec![reserved(CALL)]);
}

#[test]
fn reserving_the_same_call_again_is_a_no_op() {
    given(Assigned).when(reserve(CALL, Auto)).then_expect_events(vec![]);
}

#[test]
fn reserving_a_reserved_driver_is_rejected() {
    given(Assigned).when(reserve(OTHER_CALL, Auto)).then_expect_error(DriverError::AlreadyReserved);
}

#[test]
fn offline_driver_cannot_be_reserved() {
    given(Offline).when(reserve(CALL, Auto)).then_expect_error(DriverError::Offline);
}

#[test]
fn driver_who_went_offline_cannot_be_reserved() {
    given_then(Available, vec![went_offline()]).when(reserve(CALL, Auto)).then_expect_error(DriverError::Offline);
}

#[test]
fn manual_call_cannot_reserve_auto_only_driver() {
    given(Available).when(reserve(CALL, Manual)).then_expect_error(DriverError::CannotDriveManual);
}

#[test]
fn manual_call_reserves_manual_capable_driver() {
    TestFramework::<Driver>::with(())
        .given(vec![registered(NAME, true), went_online()])
        .when(reserve(CALL, Manual))
        .then_expect_events(vec![reserved(CALL)]);
}

#[test]
fn released_driver_can_be_reserved_for_another_call() {
    given_then(Assigned, vec![released(CALL, NotNeeded)])
        .when(reserve(OTHER_CALL, Auto))
        .then_expect_events(vec![reserved(OTHER_CALL)]);
}

// Release

#[test]
fn releasing_a_driver_for_its_call_frees_it_for_every_reason() {
    for reason in [CallCancelled, CallCompleted, NotNeeded] {
        given(Assigned).when(release(CALL, reason)).then_expect_events(vec![released(CALL, reason)]);
    }
}

#[test]
fn releasing_a_driver_for_the_wrong_call_is_rejected() {
    given(Assigned).when(release(OTHER_CALL, CallCancelled)).then_expect_error(DriverError::NotReservedForCall);
}

#[test]
fn releasing_an_unreserved_driver_is_rejected() {
    given(Available).when(release(CALL, NotNeeded)).then_expect_error(DriverError::NotReservedForCall);
}

#[test]
fn releasing_a_released_driver_again_is_rejected() {
    given_then(Assigned, vec![released(CALL, CallCompleted)])
        .when(release(CALL, CallCompleted))
        .then_expect_error(DriverError::NotReservedForCall);
}

// State and rejection codes

#[test]
fn replaying_the_history_restores_status_reservation_and_profile() {
    for status in [Offline, Available, Assigned] {
        let mut driver = Driver::default();
        history(status).into_iter().for_each(|event| driver.apply(event));
        assert_eq!(driver.status(), status);
        assert_eq!(driver.reserved_for(), (status == Assigned).then(|| Uuid::from_u128(CALL)));
        let profile = DriverProfile { name: NAME.to_string(), tel: tel(), can_drive_manual: false };
        assert_eq!(driver.profile(), Some(&profile));
    }
}

#[test]
fn an_unregistered_driver_is_offline_without_a_profile() {
    let driver = Driver::default();
    assert_eq!((driver.status(), driver.profile(), driver.reserved_for()), (Offline, None, None));
}

#[test]
fn driver_rejections_have_stable_codes_and_only_not_found_is_a_404() {
    let cases = [
        (DriverError::NotFound, "DRIVER_NOT_FOUND"),
        (DriverError::AlreadyRegistered, "DRIVER_ALREADY_REGISTERED"),
        (DriverError::InvalidName, "INVALID_NAME"),
        (DriverError::Offline, "DRIVER_OFFLINE"),
        (DriverError::AlreadyReserved, "DRIVER_ALREADY_RESERVED"),
        (DriverError::Assigned, "DRIVER_ASSIGNED"),
        (DriverError::CannotDriveManual, "DRIVER_CANNOT_DRIVE_MANUAL"),
        (DriverError::NotReservedForCall, "DRIVER_NOT_RESERVED_FOR_CALL"),
    ];
    for (error, code) in cases {
        assert_eq!(error.code(), code);
        assert_eq!(error.is_not_found(), error == DriverError::NotFound, "{code}");
        assert_eq!(error.is_invalid_input(), error == DriverError::InvalidName, "{code}");
    }
}
