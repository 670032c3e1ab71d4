//! `drivercenter-seed-log`: writes an event log as the running system would have written
//! it, as CSV rows of the `events` table's own columns, for `scripts/replay-baseline` to
//! load with `COPY` (PostgreSQL) or `.import` (SQLite).
//!
//! The events are the domain's types, serialised as the store serialises them: drivers
//! register and go online, then calls run their lifecycles side by side (requested,
//! assignment requested, dispatch started, refusals, reservation, confirmations, then
//! completion, cancellation or failure, and the driver's release), interleaved in the
//! log as concurrent calls interleave. The same seed writes the same log.

use std::collections::VecDeque;
use std::io::Write;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use clap::Parser;
use cqrs_es::{Aggregate, DomainEvent};
use domain::{
    AssignedDriver, Assignment, AssignmentEvent, Call, CallEvent, CallRequest, DriveType, Driver, DriverEvent, Fare,
    Location, ReleaseReason, Tel, Timestamp,
};
use drivercenter_bench::seoul;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use uuid::Uuid;

#[derive(Debug, Parser)]
#[command(name = "drivercenter-seed-log", about = "Write a realistic drivercenter event log as CSV on stdout")]
struct Args {
    /// Events to write (at least this many: the last call in flight ends its step).
    #[arg(long, default_value_t = 200_000)]
    events: usize,
    /// Drivers registered (and brought online) before the calls begin.
    #[arg(long, default_value_t = 2_000)]
    drivers: usize,
    /// Calls in flight at once, whose events interleave in the log.
    #[arg(long, default_value_t = 300)]
    in_flight: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// The columns each row holds, in order; the CSV header names them.
const COLUMNS: [&str; 7] =
    ["aggregate_type", "aggregate_id", "sequence", "event_type", "event_version", "payload", "metadata"];

const DRIVER_NAMES: [&str; 8] = ["안채우", "김민준", "이서연", "박지호", "최수아", "정도윤", "강하은", "조예준"];

struct SimDriver {
    id: Uuid,
    name: String,
    tel: Tel,
    can_drive_manual: bool,
    sequence: i64,
    reserved: bool,
}

#[derive(Clone, Copy)]
enum Ending {
    Completed,
    Cancelled,
}

/// What a call does next; each step writes one event.
#[derive(Clone, Copy)]
enum Step {
    RequestAssignment,
    StartDispatch,
    /// Tries the next candidate: refused, or reserved.
    TryCandidate,
    ConfirmAssignment,
    ConfirmCall,
    EndCall(Ending),
    EndAssignment(Ending),
    ReleaseDriver(Ending),
    FailAssignment,
    FailCall,
}

struct SimCall {
    request: CallRequest,
    call_sequence: i64,
    assignment_sequence: i64,
    candidates: Vec<usize>,
    tried: usize,
    driver: Option<usize>,
    steps: VecDeque<Step>,
}

struct Log<W: Write> {
    out: W,
    rng: StdRng,
    clock: Timestamp,
    written: usize,
}

impl<W: Write> Log<W> {
    /// Moves the clock on by up to 2 ms, the pace of ~1,000 events/s.
    fn tick(&mut self) -> Timestamp {
        self.clock += Duration::microseconds(self.rng.random_range(1..2_000));
        self.clock
    }

    /// A v7 id at the current time.
    fn id(&mut self) -> Uuid {
        let millis = u64::try_from(self.clock.timestamp_millis()).unwrap_or(0);
        uuid::Builder::from_unix_timestamp_millis(millis, &self.rng.random()).into_uuid()
    }

    fn write<A>(&mut self, id: Uuid, sequence: i64, event: &A::Event, correlation_id: Uuid, actor: &str)
    where
        A: Aggregate,
        A::Event: Serialize,
    {
        let (causation_id, command_id) = (self.id(), self.id());
        // The metadata as the store writes it: every value a string.
        let metadata = serde_json::json!({
            "correlation_id": correlation_id.to_string(),
            "causation_id": causation_id.to_string(),
            "command_id": command_id.to_string(),
            "actor": actor,
            "recorded_at": self.clock.to_rfc3339_opts(SecondsFormat::Micros, true),
        });
        let payload = serde_json::to_string(event).expect("an event serialises");
        let fields = [
            A::TYPE.to_string(),
            id.to_string(),
            sequence.to_string(),
            event.event_type(),
            event.event_version(),
            payload,
            metadata.to_string(),
        ];
        write_row(&mut self.out, &fields).expect("write to stdout");
        self.written += 1;
    }
}

/// One CSV record; every field quoted, quotes doubled.
fn write_row(out: &mut impl Write, fields: &[String]) -> std::io::Result<()> {
    let quoted: Vec<String> = fields.iter().map(|field| format!("\"{}\"", field.replace('"', "\"\""))).collect();
    writeln!(out, "{}", quoted.join(","))
}

fn location(place: seoul::Place) -> Location {
    Location { address: place.address(), lat: place.lat, lng: place.lng }
}

fn tel(n: usize) -> Tel {
    Tel::parse(&format!("010{:08}", n % 100_000_000)).expect("a valid mobile number")
}

fn register_drivers<W: Write>(log: &mut Log<W>, count: usize) -> Vec<SimDriver> {
    let mut drivers = Vec::with_capacity(count);
    for index in 0..count {
        let at = log.tick();
        let driver = SimDriver {
            id: log.id(),
            name: DRIVER_NAMES[index % DRIVER_NAMES.len()].to_string(),
            tel: tel(50_000_000 + index),
            can_drive_manual: log.rng.random_bool(0.3),
            sequence: 1,
            reserved: false,
        };
        let registered = DriverEvent::DriverRegistered {
            driver_id: driver.id,
            name: driver.name.clone(),
            tel: driver.tel.clone(),
            can_drive_manual: driver.can_drive_manual,
            registered_at: at,
        };
        log.write::<Driver>(driver.id, 1, &registered, driver.id, "driver");
        drivers.push(driver);
    }
    for (index, driver) in drivers.iter_mut().enumerate() {
        let online_at = log.tick();
        let location = location(seoul::driver_place(&mut log.rng, index));
        driver.sequence += 1;
        log.write::<Driver>(
            driver.id,
            driver.sequence,
            &DriverEvent::DriverWentOnline { location, online_at },
            driver.id,
            "driver",
        );
    }
    drivers
}

fn new_call<W: Write>(log: &mut Log<W>, customers: usize) -> SimCall {
    let requested_at = log.tick();
    let call_id = log.id();
    let pickup = location(seoul::pickup(&mut log.rng));
    let destination = log.rng.random_bool(0.7).then(|| location(seoul::pickup(&mut log.rng)));
    let drive_type = if log.rng.random_bool(0.05) { DriveType::Manual } else { DriveType::Auto };
    let fare = Fare::new(log.rng.random_range(10..=80) * 1_000).expect("a valid fare");
    let customer = log.rng.random_range(0..customers);
    let request = CallRequest { call_id, tel: tel(customer), pickup, destination, drive_type, fare, requested_at };
    log.write::<Call>(call_id, 1, &CallEvent::CallRequested(request.clone()), call_id, "customer");
    SimCall {
        request,
        call_sequence: 1,
        assignment_sequence: 0,
        candidates: Vec::new(),
        tried: 0,
        driver: None,
        steps: VecDeque::from([Step::RequestAssignment, Step::StartDispatch, Step::TryCandidate]),
    }
}

/// Writes the event of `call`'s next step and plans what follows it.
fn advance<W: Write>(log: &mut Log<W>, drivers: &mut [SimDriver], call: &mut SimCall) {
    let Some(step) = call.steps.pop_front() else { return };
    let at = log.tick();
    let call_id = call.request.call_id;
    let saga = "dispatch-saga";
    match step {
        Step::RequestAssignment => {
            let free: Vec<usize> = (0..drivers.len())
                .filter(|&index| !drivers[index].reserved)
                .filter(|&index| call.request.drive_type.drivable_by(drivers[index].can_drive_manual))
                .collect();
            // Now and then nobody is near enough: the call fails at its deadline.
            let wanted = if log.rng.random_bool(0.03) { 0 } else { log.rng.random_range(1..=3) };
            call.candidates = free.choose_multiple(&mut log.rng, wanted).copied().collect();
            let event = AssignmentEvent::AssignmentRequested {
                call_id,
                drive_type: call.request.drive_type,
                pickup: call.request.pickup.clone(),
                candidates: call.candidates.iter().map(|&index| drivers[index].id).collect(),
                requested_at: at,
            };
            call.assignment_sequence += 1;
            log.write::<Assignment>(call_id, call.assignment_sequence, &event, call_id, saga);
        }
        Step::StartDispatch => {
            call.call_sequence += 1;
            log.write::<Call>(
                call_id,
                call.call_sequence,
                &CallEvent::CallDispatchStarted { started_at: at },
                call_id,
                saga,
            );
        }
        Step::TryCandidate => {
            let Some(&index) = call.candidates.get(call.tried) else {
                call.steps.extend([Step::FailAssignment, Step::FailCall]);
                return advance(log, drivers, call);
            };
            call.tried += 1;
            let driver = &mut drivers[index];
            if driver.reserved || log.rng.random_bool(0.1) {
                let event = AssignmentEvent::AssignmentCandidateRefused {
                    driver_id: driver.id,
                    reason: "driver already reserved".to_string(),
                    refused_at: at,
                };
                call.assignment_sequence += 1;
                log.write::<Assignment>(call_id, call.assignment_sequence, &event, call_id, saga);
                call.steps.push_back(Step::TryCandidate);
            } else {
                driver.reserved = true;
                driver.sequence += 1;
                let (id, sequence) = (driver.id, driver.sequence);
                log.write::<Driver>(
                    id,
                    sequence,
                    &DriverEvent::DriverReserved { call_id, reserved_at: at },
                    call_id,
                    saga,
                );
                call.driver = Some(index);
                let ending = if log.rng.random_bool(0.85) { Ending::Completed } else { Ending::Cancelled };
                call.steps.extend([
                    Step::ConfirmAssignment,
                    Step::ConfirmCall,
                    Step::EndCall(ending),
                    Step::EndAssignment(ending),
                    Step::ReleaseDriver(ending),
                ]);
            }
        }
        Step::ConfirmAssignment => {
            let driver_id = drivers[call.driver.expect("a reserved driver")].id;
            call.assignment_sequence += 1;
            let event = AssignmentEvent::AssignmentConfirmed { driver_id, confirmed_at: at };
            log.write::<Assignment>(call_id, call.assignment_sequence, &event, call_id, saga);
        }
        Step::ConfirmCall => {
            let driver = &drivers[call.driver.expect("a reserved driver")];
            let driver = AssignedDriver { driver_id: driver.id, name: driver.name.clone(), tel: driver.tel.clone() };
            call.call_sequence += 1;
            log.write::<Call>(
                call_id,
                call.call_sequence,
                &CallEvent::CallConfirmed { driver, confirmed_at: at },
                call_id,
                saga,
            );
        }
        Step::EndCall(ending) => {
            let event = match ending {
                Ending::Completed => CallEvent::CallCompleted { completed_at: at },
                Ending::Cancelled => {
                    CallEvent::CallCancelled { reason: Some("일정 변경".to_string()), cancelled_at: at }
                }
            };
            call.call_sequence += 1;
            log.write::<Call>(call_id, call.call_sequence, &event, call_id, "customer");
        }
        Step::EndAssignment(ending) => {
            let driver_id = drivers[call.driver.expect("a reserved driver")].id;
            let event = match ending {
                Ending::Completed => AssignmentEvent::AssignmentCompleted { driver_id, completed_at: at },
                Ending::Cancelled => AssignmentEvent::AssignmentCancelled {
                    driver_id: Some(driver_id),
                    reason: Some("call cancelled".to_string()),
                    cancelled_at: at,
                },
            };
            call.assignment_sequence += 1;
            log.write::<Assignment>(call_id, call.assignment_sequence, &event, call_id, saga);
        }
        Step::ReleaseDriver(ending) => {
            let driver = &mut drivers[call.driver.expect("a reserved driver")];
            driver.reserved = false;
            driver.sequence += 1;
            let reason = match ending {
                Ending::Completed => ReleaseReason::CallCompleted,
                Ending::Cancelled => ReleaseReason::CallCancelled,
            };
            let (id, sequence) = (driver.id, driver.sequence);
            let event = DriverEvent::DriverReleased { call_id, reason, released_at: at };
            log.write::<Driver>(id, sequence, &event, call_id, saga);
        }
        Step::FailAssignment => {
            call.assignment_sequence += 1;
            let event = AssignmentEvent::AssignmentFailed {
                reason: "no driver before the deadline".to_string(),
                failed_at: at,
            };
            log.write::<Assignment>(call_id, call.assignment_sequence, &event, call_id, saga);
        }
        Step::FailCall => {
            call.call_sequence += 1;
            let event = CallEvent::CallFailed { reason: "no driver before the deadline".to_string(), failed_at: at };
            log.write::<Call>(call_id, call.call_sequence, &event, call_id, saga);
        }
    }
}

/// A free driver moves now and then, as drivers waiting for a call do.
fn move_a_driver<W: Write>(log: &mut Log<W>, drivers: &mut [SimDriver]) {
    let index = log.rng.random_range(0..drivers.len());
    if drivers[index].reserved {
        return;
    }
    let updated_at = log.tick();
    let location = location(seoul::driver_place(&mut log.rng, index));
    let driver = &mut drivers[index];
    driver.sequence += 1;
    let event = DriverEvent::DriverLocationUpdated { location, updated_at };
    log.write::<Driver>(driver.id, driver.sequence, &event, driver.id, "driver");
}

fn main() {
    let args = Args::parse();
    let start: DateTime<Utc> = "2026-12-01T09:00:00Z".parse().expect("a valid instant");
    let stdout = std::io::stdout().lock();
    let mut log =
        Log { out: std::io::BufWriter::new(stdout), rng: StdRng::seed_from_u64(args.seed), clock: start, written: 0 };
    write_row(&mut log.out, &COLUMNS.map(String::from)).expect("write to stdout");

    let mut drivers = register_drivers(&mut log, args.drivers.max(1));
    let customers = (args.events / 20).max(1);
    let mut in_flight: Vec<SimCall> = Vec::with_capacity(args.in_flight);
    while log.written < args.events {
        if in_flight.len() < args.in_flight.max(1) {
            let call = new_call(&mut log, customers);
            in_flight.push(call);
        } else if log.rng.random_bool(0.02) {
            move_a_driver(&mut log, &mut drivers);
        } else {
            let index = log.rng.random_range(0..in_flight.len());
            advance(&mut log, &mut drivers, &mut in_flight[index]);
            if in_flight[index].steps.is_empty() {
                in_flight.swap_remove(index);
            }
        }
    }
    log.out.flush().expect("write to stdout");
    eprintln!("drivercenter-seed-log: {} events, {} drivers", log.written, drivers.len());
}
