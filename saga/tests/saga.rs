//! The dispatch saga over real databases, stepped by hand: who gets a call, refusals,
//! waiting, deadlines across restarts, cancellation and completion, redelivery, crashes
//! between commands and checkpoint, and one driver per call, also under many calls at once.

#[macro_use]
#[path = "../../store/tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use domain::{
    AssignedDriver, Assignment, AssignmentCommand, AssignmentEvent, AssignmentStatus, Call, CallCommand, CallEvent,
    CallStatus, DriveType, Driver, DriverCommand, DriverEvent, ReleaseReason,
};
use drivercenter_saga::{DispatchSaga, SagaConfig, SAGA_NAME};
use sqlx::Row;
use store::{checkpoint, on_db, on_tx, AnyEvent, Db, LogPosition, LoggedEvent, Store};
use support::{caught_up, exec, insert_event, meta, north_of_mapo, now, online_driver, register_driver, request_call};
use uuid::Uuid;

const CONFIG: SagaConfig = SagaConfig { dispatch_timeout: Duration::from_secs(60), radius_km: 5.0 };

/// Steps `saga` until a step reads nothing and it has read the whole log; returns how
/// many events it read.
async fn settle(store: &Store, saga: &mut DispatchSaga) -> usize {
    let mut read = 0;
    loop {
        match saga.run_once().await.expect("a saga step") {
            0 if caught_up(store, SAGA_NAME).await => return read,
            0 => tokio::time::sleep(Duration::from_millis(20)).await,
            batch => read += batch,
        }
    }
}

/// A saga started afresh from what the database remembers, run until it settles.
async fn dispatch(store: &Store) {
    settle(store, &mut DispatchSaga::new(store.clone(), CONFIG)).await;
}

async fn state<A: store::Stored>(store: &Store, id: Uuid) -> A {
    store.load::<A>(id).await.expect("load an aggregate").0
}

/// A call's status, its assignment's status and driver, and the driver the call names.
type Outcome = (CallStatus, AssignmentStatus, Option<Uuid>, Option<Uuid>);

/// The outcome of a call that ended `status` with `driver` on both the call and its assignment.
fn with_driver(status: CallStatus, assignment: AssignmentStatus, driver: Uuid) -> Outcome {
    (status, assignment, Some(driver), Some(driver))
}

/// The events of a call confirmed with its driver, in order.
const DISPATCHED: [&str; 6] = [
    "CallRequested",
    "AssignmentRequested",
    "CallDispatchStarted",
    "DriverReserved",
    "AssignmentConfirmed",
    "CallConfirmed",
];

/// A call still looking for a driver.
const WAITING: Outcome = (CallStatus::Dispatching, AssignmentStatus::Requested, None, None);

fn confirmed(driver: Uuid) -> Outcome {
    with_driver(CallStatus::Confirmed, AssignmentStatus::Confirmed, driver)
}

async fn outcome(store: &Store, call_id: Uuid) -> Outcome {
    let call = state::<Call>(store, call_id).await;
    let assignment = state::<Assignment>(store, call_id).await;
    let named = call.driver().map(|driver| driver.driver_id);
    (call.status(), assignment.status(), assignment.driver_id(), named)
}

async fn reserved_for(store: &Store, driver_id: Uuid) -> Option<Uuid> {
    state::<Driver>(store, driver_id).await.reserved_for()
}

/// Everything the call caused, in commit order.
async fn chain(store: &Store, call_id: Uuid) -> Vec<LoggedEvent> {
    store.read_correlated(call_id).await.expect("read the call's chain")
}

async fn event_types(store: &Store, call_id: Uuid) -> Vec<String> {
    chain(store, call_id).await.into_iter().map(|event| event.event_type).collect()
}

/// The decoded events of the call's chain that `pick` selects.
async fn picked<T>(store: &Store, call_id: Uuid, pick: impl Fn(AnyEvent) -> Option<T>) -> Vec<T> {
    chain(store, call_id).await.iter().filter_map(|event| pick(event.decode().expect("decode an event"))).collect()
}

async fn release_reasons(store: &Store, call_id: Uuid) -> Vec<ReleaseReason> {
    picked(store, call_id, |event| match event {
        AnyEvent::Driver(DriverEvent::DriverReleased { reason, .. }) => Some(reason),
        _ => None,
    })
    .await
}

async fn candidates(store: &Store, call_id: Uuid) -> Vec<Uuid> {
    let requested = picked(store, call_id, |event| match event {
        AnyEvent::Assignment(AssignmentEvent::AssignmentRequested { candidates, .. }) => Some(candidates),
        _ => None,
    });
    requested.await.concat()
}

async fn cancel(store: &Store, call_id: Uuid) {
    let cancel = CallCommand::Cancel { reason: Some("changed my mind".into()), at: now() };
    exec::<Call>(store, call_id, cancel).await;
}

/// Whether the saga's step is stuck behind a lock another transaction holds.
/// PostgreSQL says so itself; SQLite cannot be asked who waits for its write lock, so a
/// pool connection that stays busy beside the holder's is taken as the sign.
async fn waits_for_a_lock(store: &Store) -> bool {
    match store.db() {
        Db::Postgres(pool) => {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_one(pool)
            .await
            .expect("ask who waits for a lock");
            waiting > 0
        }
        Db::Sqlite(pool) => (pool.size() as usize).saturating_sub(pool.num_idle()) >= 2,
    }
}

on_both_stores! {
    /// The nearest online driver within the radius gets the call: the assignment and the
    /// call are confirmed with them, and they are reserved for it.
    async fn a_requested_call_gets_the_nearest_available_driver_who_fits(store: Store) {
        let gone = online_driver(&store, "퇴근함", false, 20.0).await;
        exec::<Driver>(&store, gone, DriverCommand::GoOffline { at: now() }).await;
        let near = online_driver(&store, "가까움", false, 200.0).await;
        let far = online_driver(&store, "멀리", true, 1_000.0).await;
        let outside = online_driver(&store, "반경밖", true, 10_000.0).await;
        let call = request_call(&store, 1, DriveType::Auto).await;
        dispatch(&store).await;

        assert_eq!(outcome(&store, call).await, confirmed(near));
        let profile = state::<Driver>(&store, near).await.profile().cloned().expect("a registered driver");
        let told = state::<Call>(&store, call).await.driver().cloned();
        assert_eq!(told, Some(AssignedDriver { driver_id: near, name: "가까움".into(), tel: profile.tel }));
        assert_eq!(reserved_for(&store, near).await, Some(call));
        for other in [gone, far, outside] {
            assert_eq!(reserved_for(&store, other).await, None);
        }
        assert_eq!(candidates(&store, call).await, vec![near, far], "online drivers in the radius, nearest first");
        assert_eq!(event_types(&store, call).await, DISPATCHED, "each step once, though the saga saw its own events");
        assert!(chain(&store, call).await[1..].iter().all(|event| event.metadata.actor == "dispatch-saga"));
    }

    /// A manual car goes to the nearest driver who can drive manual, past a nearer one
    /// who cannot; an automatic car takes the nearer one.
    async fn a_manual_call_skips_drivers_who_only_drive_automatic(store: Store) {
        let auto_only = online_driver(&store, "오토만", false, 100.0).await;
        let manual = online_driver(&store, "수동가능", true, 1_500.0).await;
        let stick = request_call(&store, 1, DriveType::Manual).await;
        dispatch(&store).await;
        assert_eq!(outcome(&store, stick).await, confirmed(manual));
        assert_eq!(candidates(&store, stick).await, vec![manual]);

        let automatic = request_call(&store, 2, DriveType::Auto).await;
        dispatch(&store).await;
        assert_eq!(outcome(&store, automatic).await.2, Some(auto_only));
    }

    /// When the nearest driver is taken between the saga reading the log and reserving
    /// them, the refusal is recorded and the next candidate gets the call.
    async fn a_refused_reservation_moves_on_to_the_next_candidate(store: Store) {
        let nearest = online_driver(&store, "가까움", false, 100.0).await;
        let next = online_driver(&store, "다음", false, 800.0).await;
        let mut saga = DispatchSaga::new(store.clone(), CONFIG);
        settle(&store, &mut saga).await;
        let call = request_call(&store, 1, DriveType::Auto).await;

        // Another call takes the nearest driver in a transaction that stays open until the
        // saga, having read the call with the driver still free, waits on it.
        let elsewhere = Uuid::now_v7();
        let taken = DriverEvent::DriverReserved { call_id: elsewhere, reserved_at: now() };
        let (_, version) = store.load::<Driver>(nearest).await.expect("load");
        let mut other_writer = store.begin().await.expect("begin");
        insert_event::<Driver>(&mut other_writer, nearest, version + 1, &taken, &meta(elsewhere)).await;
        let mut step = tokio::spawn(async move { (saga.run_once().await.expect("a saga step"), saga) });
        let mut waiting = 0;
        while waiting < 25 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if step.is_finished() {
                // Only a step that read nothing (PostgreSQL held back by a transaction
                // elsewhere on the server) ends without meeting the open transaction.
                let (read, saga) = (&mut step).await.expect("the saga step");
                assert_eq!(read, 0, "the saga acted on the call without meeting the other writer");
                step = tokio::spawn(async move {
                    let mut saga = saga;
                    (saga.run_once().await.expect("a saga step"), saga)
                });
                waiting = 0;
            } else if waits_for_a_lock(&store).await {
                waiting += 1;
            } else {
                waiting = 0;
            }
        }
        other_writer.commit().await.expect("commit the other reservation");
        let (_, mut saga) = step.await.expect("the saga step");
        settle(&store, &mut saga).await;

        assert_eq!(outcome(&store, call).await, confirmed(next));
        assert_eq!(reserved_for(&store, nearest).await, Some(elsewhere), "the other call keeps its driver");
        assert_eq!(candidates(&store, call).await, vec![nearest, next], "the saga believed the nearest was free");
        let refusals = picked(&store, call, |event| match event {
            AnyEvent::Assignment(AssignmentEvent::AssignmentCandidateRefused { driver_id, reason, .. }) => {
                Some((driver_id, reason))
            }
            _ => None,
        });
        assert_eq!(refusals.await, vec![(nearest, "the driver is already reserved for another call".to_string())]);

        // The refusal kept the driver out of that round only: once free, they are offered again.
        let release = DriverCommand::Release { call_id: elsewhere, reason: ReleaseReason::CallCompleted, at: now() };
        exec::<Driver>(&store, nearest, release).await;
        settle(&store, &mut saga).await;
        let after = request_call(&store, 2, DriveType::Auto).await;
        settle(&store, &mut saga).await;
        assert_eq!(outcome(&store, after).await.2, Some(nearest), "the refused driver, free again, gets the next call");
    }

    /// With no driver to offer, the call waits in dispatch; a driver who comes online later
    /// gets it.
    async fn a_call_nobody_can_take_waits_until_a_driver_comes_online(store: Store) {
        let sleeper = register_driver(&store, "늦잠", false).await;
        online_driver(&store, "부산", false, 300_000.0).await;
        let call = request_call(&store, 1, DriveType::Auto).await;
        dispatch(&store).await;
        assert_eq!(outcome(&store, call).await, WAITING);
        assert!(candidates(&store, call).await.is_empty());

        exec::<Driver>(&store, sleeper, DriverCommand::GoOnline { location: north_of_mapo(400.0), at: now() }).await;
        dispatch(&store).await;
        assert_eq!(outcome(&store, call).await, confirmed(sleeper));
    }

    /// A call still waiting at its deadline fails; the deadline is stored, so a saga
    /// restarted with fresh memory (and another timeout) still fails it on time.
    async fn the_dispatch_deadline_fails_a_waiting_call_even_across_a_restart(store: Store) {
        let timeout = Duration::from_secs(3);
        let call = request_call(&store, 1, DriveType::Auto).await;
        let requested_at = state::<Call>(&store, call).await.request().expect("a request").requested_at;
        let deadline = requested_at + chrono::Duration::from_std(timeout).expect("a duration");
        settle(&store, &mut DispatchSaga::new(store.clone(), SagaConfig { dispatch_timeout: timeout, ..CONFIG })).await;
        assert!(chrono::Utc::now() < deadline, "the first saga must register the call before its deadline");
        assert_eq!(outcome(&store, call).await.0, CallStatus::Dispatching);

        let wait = (deadline - chrono::Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(300);
        tokio::time::sleep(wait).await;
        let mut restarted = DispatchSaga::new(store.clone(), CONFIG);
        settle(&store, &mut restarted).await;
        assert_eq!(outcome(&store, call).await, (CallStatus::Failed, AssignmentStatus::Failed, None, None));
        let reasons = picked(&store, call, |event| match event {
            AnyEvent::Call(CallEvent::CallFailed { reason, .. }) => Some(reason),
            _ => None,
        });
        assert_eq!(reasons.await, vec!["no driver available before the dispatch deadline".to_string()]);

        let late = online_driver(&store, "지각", false, 100.0).await;
        settle(&store, &mut restarted).await;
        assert_eq!(reserved_for(&store, late).await, None, "a failed call takes no driver");
    }

    /// Cancelling a confirmed call cancels its assignment and frees the driver for the
    /// next call.
    async fn cancelling_a_confirmed_call_releases_its_driver(store: Store) {
        let driver = online_driver(&store, "취소됨", false, 100.0).await;
        let call = request_call(&store, 1, DriveType::Auto).await;
        dispatch(&store).await;
        assert_eq!(reserved_for(&store, driver).await, Some(call));

        cancel(&store, call).await;
        dispatch(&store).await;
        let cancelled = with_driver(CallStatus::Cancelled, AssignmentStatus::Cancelled, driver);
        assert_eq!(outcome(&store, call).await, cancelled);
        assert_eq!(reserved_for(&store, driver).await, None);
        assert_eq!(release_reasons(&store, call).await, vec![ReleaseReason::CallCancelled]);

        let next = request_call(&store, 2, DriveType::Auto).await;
        dispatch(&store).await;
        assert_eq!(outcome(&store, next).await.2, Some(driver), "the released driver takes the next call");
    }

    /// Cancelling a call that still waits for a driver cancels its assignment, and a
    /// driver who turns up later is not given it.
    async fn cancelling_a_waiting_call_cancels_its_assignment(store: Store) {
        let call = request_call(&store, 1, DriveType::Auto).await;
        dispatch(&store).await;
        cancel(&store, call).await;
        dispatch(&store).await;
        assert_eq!(outcome(&store, call).await, (CallStatus::Cancelled, AssignmentStatus::Cancelled, None, None));

        let late = online_driver(&store, "한발늦음", false, 100.0).await;
        dispatch(&store).await;
        assert_eq!(reserved_for(&store, late).await, None);
        assert!(release_reasons(&store, call).await.is_empty());
    }

    /// A reservation that lands after its call was cancelled (the saga's reserve racing
    /// the customer's cancel) is released again, and the call stays cancelled.
    async fn a_reservation_that_lands_after_the_cancel_is_released(store: Store) {
        let driver = online_driver(&store, "늦은배정", false, 100.0).await;
        dispatch(&store).await;
        let call = request_call(&store, 1, DriveType::Auto).await;
        cancel(&store, call).await;
        let reserve = DriverCommand::Reserve { call_id: call, drive_type: DriveType::Auto, at: now() };
        exec::<Driver>(&store, driver, reserve).await;
        dispatch(&store).await;

        assert_eq!(outcome(&store, call).await, (CallStatus::Cancelled, AssignmentStatus::Cancelled, None, None));
        assert_eq!(reserved_for(&store, driver).await, None);
        assert_eq!(release_reasons(&store, call).await, vec![ReleaseReason::NotNeeded]);
        assert!(!event_types(&store, call).await.iter().any(|event| event.ends_with("Confirmed")));
    }

    /// Completing a call completes its assignment and frees the driver.
    async fn completing_a_call_completes_its_assignment_and_releases_the_driver(store: Store) {
        let driver = online_driver(&store, "운행", false, 100.0).await;
        let call = request_call(&store, 1, DriveType::Auto).await;
        dispatch(&store).await;
        exec::<Call>(&store, call, CallCommand::Complete { at: now() }).await;
        dispatch(&store).await;

        let completed = with_driver(CallStatus::Completed, AssignmentStatus::Completed, driver);
        assert_eq!(outcome(&store, call).await, completed);
        assert_eq!(reserved_for(&store, driver).await, None);
        assert_eq!(release_reasons(&store, call).await, vec![ReleaseReason::CallCompleted]);
    }

    /// Five calls and two drivers: two calls are confirmed, with different drivers, and
    /// the others wait; a freed driver goes to the oldest waiting call.
    async fn two_calls_never_get_one_driver(store: Store) {
        let drivers = [
            online_driver(&store, "하나", false, 100.0).await,
            online_driver(&store, "둘", false, 200.0).await,
        ];
        let mut calls = Vec::new();
        for customer in 1..=5 {
            calls.push(request_call(&store, customer, DriveType::Auto).await);
        }
        dispatch(&store).await;

        let mut confirmed = Vec::new();
        for &call in &calls {
            match outcome(&store, call).await {
                (CallStatus::Confirmed, AssignmentStatus::Confirmed, Some(driver), Some(named)) => {
                    assert_eq!(driver, named);
                    assert_eq!(reserved_for(&store, driver).await, Some(call));
                    confirmed.push(driver);
                }
                waiting => assert_eq!(waiting, WAITING),
            }
        }
        confirmed.sort();
        let mut both = drivers.to_vec();
        both.sort();
        assert_eq!(confirmed, both, "exactly two calls, one per driver");
        assert_eq!(outcome(&store, calls[0]).await.0, CallStatus::Confirmed, "the oldest calls are served first");
        assert_eq!(outcome(&store, calls[1]).await.0, CallStatus::Confirmed);

        let freed = outcome(&store, calls[0]).await.2.expect("a driver");
        exec::<Call>(&store, calls[0], CallCommand::Complete { at: now() }).await;
        dispatch(&store).await;
        assert_eq!(outcome(&store, calls[2]).await.2, Some(freed), "the oldest waiting call gets the freed driver");
        assert_eq!(outcome(&store, calls[3]).await.0, CallStatus::Dispatching);
    }

    /// Redelivery changes nothing: with its state and checkpoint reset to an earlier
    /// snapshot, a new saga reads everything since again and appends no event, and every
    /// aggregate stays as it was.
    async fn redelivering_the_log_to_the_saga_changes_nothing(store: Store) {
        let near = online_driver(&store, "가까움", false, 100.0).await;
        let manual = online_driver(&store, "수동", true, 300.0).await;
        let spare = online_driver(&store, "여분", false, 600.0).await;
        dispatch(&store).await;
        let mut calls = vec![
            request_call(&store, 1, DriveType::Auto).await,
            request_call(&store, 2, DriveType::Auto).await,
            request_call(&store, 3, DriveType::Manual).await,
        ];
        dispatch(&store).await;
        let early = SagaSnapshot::take(&store).await;
        assert!(!early.dispatches.is_empty(), "the snapshot holds a waiting call");

        exec::<Call>(&store, calls[0], CallCommand::Complete { at: now() }).await;
        cancel(&store, calls[1]).await;
        dispatch(&store).await;
        calls.push(request_call(&store, 4, DriveType::Auto).await);
        let late = request_call(&store, 5, DriveType::Auto).await;
        cancel(&store, late).await;
        let reserve = DriverCommand::Reserve { call_id: late, drive_type: DriveType::Auto, at: now() };
        exec::<Driver>(&store, spare, reserve).await;
        calls.push(late);
        calls.push(request_call(&store, 6, DriveType::Manual).await);
        dispatch(&store).await;
        assert_eq!(outcome(&store, calls[3]).await.2, Some(near));

        let everything: Vec<Uuid> = calls.iter().copied().chain([near, manual, spare]).collect();
        let before = (store.count_events().await.expect("count"), snapshot_aggregates(&store, &everything).await);
        let from_the_start = SagaSnapshot { checkpoint: LogPosition::START, drivers: vec![], dispatches: vec![] };
        for snapshot in [early, from_the_start] {
            snapshot.restore(&store).await;
            let mut saga = DispatchSaga::new(store.clone(), CONFIG);
            assert!(settle(&store, &mut saga).await > 0, "the saga reads the log again");
            let after = (store.count_events().await.expect("count"), snapshot_aggregates(&store, &everything).await);
            assert_eq!(after, before, "redelivery from {:?}", snapshot.checkpoint);
        }
    }

    /// Two hundred calls share forty drivers, each driver taken again as soon as their
    /// call is completed or cancelled: every call is confirmed exactly once, no driver
    /// holds two calls at a time, and every reservation is released.
    async fn two_hundred_calls_share_forty_drivers_one_call_at_a_time(store: Store) {
        let mut drivers = Vec::new();
        for n in 0..40 {
            drivers.push(online_driver(&store, &format!("기사{n}"), false, 50.0 * f64::from(n)).await);
        }
        let patient = SagaConfig { dispatch_timeout: Duration::from_secs(600), ..CONFIG };
        let mut saga = DispatchSaga::new(store.clone(), patient);
        settle(&store, &mut saga).await;
        let mut calls = Vec::new();
        for customer in 0..200 {
            calls.push(request_call(&store, customer, DriveType::Auto).await);
        }
        // Every fifth call is cancelled once it has its driver, the others completed.
        let cancelled: HashSet<Uuid> = calls.iter().copied().step_by(5).collect();

        let mut open = calls.clone();
        while !open.is_empty() {
            settle(&store, &mut saga).await;
            let mut waiting = Vec::new();
            for &call in &open {
                match state::<Call>(&store, call).await.status() {
                    CallStatus::Confirmed if cancelled.contains(&call) => cancel(&store, call).await,
                    CallStatus::Confirmed => {
                        exec::<Call>(&store, call, CallCommand::Complete { at: now() }).await;
                    }
                    CallStatus::Dispatching => waiting.push(call),
                    other => panic!("call {call} is {other:?}"),
                }
            }
            assert!(waiting.len() < open.len(), "a round with free drivers confirmed no call");
            open = waiting;
        }
        settle(&store, &mut saga).await;

        let mut held: BTreeMap<Uuid, Vec<(i64, Uuid, bool)>> = BTreeMap::new();
        for &call in &calls {
            let (status, reason) = match cancelled.contains(&call) {
                true => (CallStatus::Cancelled, ReleaseReason::CallCancelled),
                false => (CallStatus::Completed, ReleaseReason::CallCompleted),
            };
            let (ended, _, driver, named) = outcome(&store, call).await;
            assert_eq!(ended, status);
            assert!(driver.is_some() && driver == named, "call {call}: assignment {driver:?}, call {named:?}");
            let mut confirmations = (0, 0);
            for event in chain(&store, call).await {
                match event.decode().expect("decode an event") {
                    AnyEvent::Call(CallEvent::CallConfirmed { .. }) => confirmations.0 += 1,
                    AnyEvent::Assignment(AssignmentEvent::AssignmentConfirmed { .. }) => confirmations.1 += 1,
                    AnyEvent::Driver(DriverEvent::DriverReserved { call_id, .. }) => {
                        held.entry(event.aggregate_uuid().expect("a driver id")).or_default().push((
                            event.sequence,
                            call_id,
                            true,
                        ));
                    }
                    AnyEvent::Driver(DriverEvent::DriverReleased { call_id, .. }) => {
                        held.entry(event.aggregate_uuid().expect("a driver id")).or_default().push((
                            event.sequence,
                            call_id,
                            false,
                        ));
                    }
                    _ => {}
                }
            }
            assert_eq!(confirmations, (1, 1), "call {call} confirmed once, on the call and on its assignment");
            assert_eq!(release_reasons(&store, call).await, vec![reason], "call {call}");
        }
        for driver in drivers {
            assert_eq!(reserved_for(&store, driver).await, None, "driver {driver} is free at the end");
            let mut history = held.remove(&driver).unwrap_or_default();
            history.sort();
            for turn in history.chunks(2) {
                let [(_, reserved, true), (_, released, false)] = turn else {
                    panic!("driver {driver}: a reservation not followed by its release: {history:?}");
                };
                assert_eq!(reserved, released, "driver {driver} released the call it held");
            }
        }
    }

    /// A crash after a step's commands were committed but before its checkpoint was saved
    /// makes the next saga read the same events again: it re-issues the same commands,
    /// which add nothing, and the calls then go on as if nothing had happened.
    async fn a_batch_read_again_after_a_crash_before_its_checkpoint_changes_nothing(store: Store) {
        let mut drivers = Vec::new();
        for n in 0..30 {
            drivers.push(online_driver(&store, &format!("기사{n}"), false, 40.0 * f64::from(n)).await);
        }
        dispatch(&store).await;
        let before_the_crash = SagaSnapshot::take(&store).await;
        let mut calls = Vec::new();
        for customer in 0..40 {
            calls.push(request_call(&store, customer, DriveType::Auto).await);
        }
        dispatch(&store).await;
        let everything: Vec<Uuid> = calls.iter().copied().chain(drivers.iter().copied()).collect();
        let committed = (store.count_events().await.expect("count"), snapshot_aggregates(&store, &everything).await);

        before_the_crash.restore(&store).await;
        let mut restarted = DispatchSaga::new(store.clone(), CONFIG);
        assert!(settle(&store, &mut restarted).await > 0, "the saga reads the batch again");
        let again = (store.count_events().await.expect("count"), snapshot_aggregates(&store, &everything).await);
        assert_eq!(again, committed, "the repeated commands changed nothing");

        let mut waiting = Vec::new();
        for &call in &calls {
            match outcome(&store, call).await {
                (CallStatus::Confirmed, ..) => {
                    exec::<Call>(&store, call, CallCommand::Complete { at: now() }).await;
                }
                still => {
                    assert_eq!(still, WAITING);
                    waiting.push(call);
                }
            }
        }
        assert_eq!(waiting.len(), 10, "thirty drivers served thirty calls");
        settle(&store, &mut restarted).await;
        let mut served = HashSet::new();
        for call in waiting {
            let (status, _, driver, _) = outcome(&store, call).await;
            assert_eq!(status, CallStatus::Confirmed, "a freed driver took call {call}");
            assert!(served.insert(driver.expect("a driver")), "one driver per call");
        }
        for call in &calls[..30] {
            assert_eq!(release_reasons(&store, *call).await, vec![ReleaseReason::CallCompleted]);
        }
    }

    /// A step that crashed after reserving a driver and confirming the assignment, but
    /// before confirming the call: the next step meets a reservation it has no record of,
    /// confirms the call with that driver, and reserves nobody else.
    async fn a_reservation_left_by_a_crashed_step_is_confirmed(store: Store) {
        let nearest = online_driver(&store, "가까움", false, 100.0).await;
        let other = online_driver(&store, "다음", false, 300.0).await;
        let mut saga = DispatchSaga::new(store.clone(), CONFIG);
        settle(&store, &mut saga).await;
        let call = request_call(&store, 1, DriveType::Auto).await;
        // What the crashed step committed, correlated with the call as the saga's commands are.
        let request = state::<Call>(&store, call).await.request().cloned().expect("a request");
        let open = AssignmentCommand::Request {
            call_id: call,
            drive_type: request.drive_type,
            pickup: request.pickup,
            candidates: vec![nearest, other],
            at: now(),
        };
        exec::<Assignment>(&store, call, open).await;
        exec::<Call>(&store, call, CallCommand::StartDispatch { at: now() }).await;
        let reserve = DriverCommand::Reserve { call_id: call, drive_type: DriveType::Auto, at: now() };
        store.execute::<Driver>(nearest, reserve, &meta(call)).await.expect("reserve the nearest driver");
        exec::<Assignment>(&store, call, AssignmentCommand::Confirm { driver_id: nearest, at: now() }).await;
        settle(&store, &mut saga).await;

        assert_eq!(outcome(&store, call).await, confirmed(nearest));
        assert_eq!(reserved_for(&store, other).await, None);
        assert_eq!(event_types(&store, call).await, DISPATCHED, "the reservation confirmed, nobody else reserved");
    }
}

/// Every aggregate with one of these ids, as JSON with its version.
async fn snapshot_aggregates(store: &Store, ids: &[Uuid]) -> Vec<String> {
    let mut states = Vec::new();
    for &id in ids {
        let (call, call_version) = store.load::<Call>(id).await.expect("load");
        let (driver, driver_version) = store.load::<Driver>(id).await.expect("load");
        let (assignment, assignment_version) = store.load::<Assignment>(id).await.expect("load");
        states.push(
            serde_json::json!([call, call_version, driver, driver_version, assignment, assignment_version]).to_string(),
        );
    }
    states
}

/// The saga's stored memory: its checkpoint and its tables, copied row for row.
#[derive(Debug)]
struct SagaSnapshot {
    checkpoint: LogPosition,
    drivers: Vec<(String, String)>,
    dispatches: Vec<(String, String)>,
}

impl SagaSnapshot {
    async fn take(store: &Store) -> Self {
        let rows = |table: &'static str, key: &'static str| async move {
            let sql = format!("SELECT {key}, doc FROM {table}");
            on_db!(store.db(), pool => {
                sqlx::query(&sql).fetch_all(pool).await.expect("copy a saga table").iter()
                    .map(|row| (row.get::<String, _>(0), row.get::<String, _>(1)))
                    .collect::<Vec<_>>()
            })
        };
        Self {
            checkpoint: checkpoint::read(store, SAGA_NAME).await.expect("read the checkpoint"),
            drivers: rows("saga_drivers", "driver_id").await,
            dispatches: rows("saga_dispatches", "call_id").await,
        }
    }

    async fn restore(&self, store: &Store) {
        let mut tx = store.begin().await.expect("begin");
        checkpoint::lock(&mut tx, SAGA_NAME).await.expect("lock the checkpoint");
        for (table, key, rows) in
            [("saga_drivers", "driver_id", &self.drivers), ("saga_dispatches", "call_id", &self.dispatches)]
        {
            let delete = format!("DELETE FROM {table}");
            let insert = format!("INSERT INTO {table} ({key}, doc) VALUES ($1, $2)");
            on_tx!(&mut tx, conn => {
                sqlx::query(&delete).execute(&mut *conn).await.expect("clear a saga table");
                for (id, doc) in rows {
                    sqlx::query(&insert).bind(id).bind(doc).execute(&mut *conn).await.expect("restore a row");
                }
            });
        }
        checkpoint::save(&mut tx, SAGA_NAME, self.checkpoint).await.expect("restore the checkpoint");
        tx.commit().await.expect("commit the restore");
    }
}
