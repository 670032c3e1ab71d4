//! The read models over real databases: what events make of each view, exactly-once
//! application under racing projectors, byte-identical replays, and the queries.

#[macro_use]
#[path = "../../store/tests/support/mod.rs"]
mod support;

use chrono::Duration as Span;
use domain::{
    AssignedDriver, Assignment, AssignmentCommand, AssignmentStatus, Call, CallCommand, CallStatus, DriveType, Driver,
    DriverCommand, DriverStatus, ReleaseReason,
};
use drivercenter_projections as projections;
use projections::{
    queries, replay, replay_all, AssignmentView, CallView, DriverView, Projector, StreamView, ViewChange, ViewChanges,
};
use store::{checkpoint, on_db, on_tx, LogPosition, Store};
use support::{call_request, caught_up, exec, north_of_mapo, now, online_driver, register_driver, request_call, tel};
use uuid::Uuid;

/// Runs `projector` until it reads nothing and has read the whole log; returns how many
/// events it read.
async fn drain<V: StreamView>(store: &Store, projector: &Projector<V>) -> usize {
    let mut read = 0;
    loop {
        match projector.run_once().await.expect("a projection batch") {
            0 if caught_up(store, V::NAME).await => return read,
            0 => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            batch => read += batch,
        }
    }
}

/// A projector of its own, drained; for running beside others.
async fn drain_in_task<V: StreamView>(store: Store) -> usize {
    drain(&store, &Projector::<V>::new(store.clone(), ViewChanges::default())).await
}

/// A live projector that asks for the next batch without pause until `stop` turns true.
async fn keep_projecting<V: StreamView>(store: Store, stop: tokio::sync::watch::Receiver<bool>) {
    let projector = Projector::<V>::new(store, ViewChanges::default());
    while !*stop.borrow() {
        projector.run_once().await.expect("a live projection batch");
        tokio::task::yield_now().await;
    }
}

async fn project_all(store: &Store) {
    drain_in_task::<CallView>(store.clone()).await;
    drain_in_task::<DriverView>(store.clone()).await;
    drain_in_task::<AssignmentView>(store.clone()).await;
}

/// Each view replayed on its own.
async fn replay_each(store: &Store) {
    let changes = ViewChanges::default();
    replay::<CallView>(store, &changes, |_| {}).await.expect("replay calls");
    replay::<DriverView>(store, &changes, |_| {}).await.expect("replay drivers");
    replay::<AssignmentView>(store, &changes, |_| {}).await.expect("replay assignments");
}

async fn dump(store: &Store) -> Vec<(String, String, String)> {
    queries::dump(store).await.expect("dump the views")
}

async fn view<V: StreamView>(store: &Store, id: Uuid) -> V {
    queries::get::<V>(store, id).await.expect("read a view").unwrap_or_else(|| panic!("no {} view for {id}", V::NAME))
}

/// Drivers and calls in every state each aggregate can reach.
struct History {
    /// Online, moved, reserved for `completed`, released when it completed.
    first: Uuid,
    /// Reserved for `cancelled`, released when it was cancelled.
    second: Uuid,
    went_offline: Uuid,
    never_online: Uuid,
    /// Holds `confirmed`.
    assigned: Uuid,
    completed: Uuid,
    cancelled: Uuid,
    failed: Uuid,
    confirmed: Uuid,
    dispatching: Uuid,
    requested: Uuid,
}

fn driver_for(driver_id: Uuid, name: &str) -> AssignedDriver {
    AssignedDriver { driver_id, name: name.to_string(), tel: tel(driver_id.as_u128() as u32 % 100_000_000) }
}

async fn write_history(store: &Store) -> History {
    let first = online_driver(store, "첫째", true, 100.0).await;
    let second = online_driver(store, "둘째", false, 200.0).await;
    let went_offline = online_driver(store, "퇴근함", false, 300.0).await;
    let never_online = register_driver(store, "대기안함", false).await;
    let assigned = online_driver(store, "배정됨", false, 400.0).await;
    let mut calls = [Uuid::nil(); 6];
    for (n, call) in calls.iter_mut().enumerate() {
        *call = request_call(store, 100 + n as u32, DriveType::Auto).await;
    }
    let [completed, cancelled, failed, confirmed, dispatching, requested] = calls;
    for call in [completed, cancelled, failed, confirmed, dispatching] {
        exec::<Call>(store, call, CallCommand::StartDispatch { at: now() }).await;
    }
    let assign = |call_id, candidates| AssignmentCommand::Request {
        call_id,
        drive_type: DriveType::Auto,
        pickup: north_of_mapo(0.0),
        candidates,
        at: now(),
    };
    let reserve = |call_id| DriverCommand::Reserve { call_id, drive_type: DriveType::Auto, at: now() };
    let release = |call_id, reason| DriverCommand::Release { call_id, reason, at: now() };

    exec::<Assignment>(store, completed, assign(completed, vec![second, first])).await;
    let refusal = AssignmentCommand::RecordRefusal { driver_id: second, reason: "busy".into(), at: now() };
    exec::<Assignment>(store, completed, refusal).await;
    let moved = DriverCommand::UpdateLocation { location: north_of_mapo(150.0), at: now() };
    exec::<Driver>(store, first, moved).await;
    exec::<Driver>(store, first, reserve(completed)).await;
    exec::<Assignment>(store, completed, AssignmentCommand::Confirm { driver_id: first, at: now() }).await;
    let confirm = |driver_id, name| CallCommand::Confirm { driver: driver_for(driver_id, name), at: now() };
    exec::<Call>(store, completed, confirm(first, "첫째")).await;
    exec::<Call>(store, completed, CallCommand::Complete { at: now() }).await;
    exec::<Assignment>(store, completed, AssignmentCommand::Complete { at: now() }).await;
    exec::<Driver>(store, first, release(completed, ReleaseReason::CallCompleted)).await;

    exec::<Assignment>(store, cancelled, assign(cancelled, vec![second])).await;
    exec::<Driver>(store, second, reserve(cancelled)).await;
    exec::<Assignment>(store, cancelled, AssignmentCommand::Confirm { driver_id: second, at: now() }).await;
    exec::<Call>(store, cancelled, confirm(second, "둘째")).await;
    let cancel = CallCommand::Cancel { reason: Some("plans changed".into()), at: now() };
    exec::<Call>(store, cancelled, cancel).await;
    let cancel = AssignmentCommand::Cancel { reason: Some("call cancelled".into()), at: now() };
    exec::<Assignment>(store, cancelled, cancel).await;
    exec::<Driver>(store, second, release(cancelled, ReleaseReason::CallCancelled)).await;

    exec::<Assignment>(store, failed, assign(failed, vec![])).await;
    let reason = "no driver before the deadline".to_string();
    let fail = AssignmentCommand::Fail { reason: reason.clone(), at: now() };
    exec::<Assignment>(store, failed, fail).await;
    exec::<Call>(store, failed, CallCommand::Fail { reason, at: now() }).await;

    exec::<Assignment>(store, confirmed, assign(confirmed, vec![assigned])).await;
    exec::<Driver>(store, assigned, reserve(confirmed)).await;
    let confirm_assignment = AssignmentCommand::Confirm { driver_id: assigned, at: now() };
    exec::<Assignment>(store, confirmed, confirm_assignment).await;
    exec::<Call>(store, confirmed, confirm(assigned, "배정됨")).await;

    exec::<Assignment>(store, dispatching, assign(dispatching, vec![])).await;
    exec::<Driver>(store, went_offline, DriverCommand::GoOffline { at: now() }).await;
    History {
        first,
        second,
        went_offline,
        never_online,
        assigned,
        completed,
        cancelled,
        failed,
        confirmed,
        dispatching,
        requested,
    }
}

/// Checks every view of [`write_history`] against what its events mean.
async fn assert_history_views(store: &Store, history: &History) {
    let call = |id| view::<CallView>(store, id);
    let summary = |call: &CallView| (call.status, call.status_label.clone(), call.version);
    let completed = call(history.completed).await;
    assert_eq!(summary(&completed), (CallStatus::Completed, "운행완료".into(), 4));
    assert_eq!(
        completed.driver.as_ref().map(|driver| (driver.driver_id, driver.name.as_str())),
        Some((history.first, "첫째"))
    );
    assert!(completed.confirmed_at.is_some() && completed.completed_at.is_some());
    let cancelled = call(history.cancelled).await;
    assert_eq!(summary(&cancelled), (CallStatus::Cancelled, "호출취소".into(), 4));
    assert_eq!(cancelled.cancel_reason.as_deref(), Some("plans changed"));
    let failed = call(history.failed).await;
    assert_eq!(summary(&failed), (CallStatus::Failed, "배정실패".into(), 3));
    assert_eq!(failed.failure_reason.as_deref(), Some("no driver before the deadline"));
    let confirmed = call(history.confirmed).await;
    assert_eq!(summary(&confirmed), (CallStatus::Confirmed, "호출확정".into(), 3));
    assert_eq!(confirmed.driver.map(|driver| driver.driver_id), Some(history.assigned));
    assert_eq!(summary(&call(history.dispatching).await), (CallStatus::Dispatching, "호출중".into(), 2));
    let requested = call(history.requested).await;
    assert_eq!(summary(&requested), (CallStatus::Requested, "호출".into(), 1));
    assert_eq!((requested.tel.as_str(), requested.fare), (tel(105).as_str(), 25_000));

    let driver = |id| view::<DriverView>(store, id);
    let summary =
        |driver: &DriverView| (driver.status, driver.status_label.clone(), driver.version, driver.current_call_id);
    let first = driver(history.first).await;
    assert_eq!(summary(&first), (DriverStatus::Available, "대기".into(), 5, None));
    assert_eq!(first.location, Some(north_of_mapo(150.0)));
    assert!(first.can_drive_manual);
    assert_eq!(summary(&driver(history.second).await), (DriverStatus::Available, "대기".into(), 4, None));
    assert_eq!(summary(&driver(history.went_offline).await), (DriverStatus::Offline, "퇴근".into(), 3, None));
    let never_online = driver(history.never_online).await;
    assert_eq!(summary(&never_online), (DriverStatus::Offline, "퇴근".into(), 1, None));
    assert_eq!((never_online.name.as_str(), never_online.location.as_ref()), ("대기안함", None));
    let assigned = (DriverStatus::Assigned, "배정됨".into(), 3, Some(history.confirmed));
    assert_eq!(summary(&driver(history.assigned).await), assigned);

    let assignment = |id| view::<AssignmentView>(store, id);
    let summary = |view: &AssignmentView| (view.status, view.status_label.clone(), view.version, view.driver_id);
    let completed = assignment(history.completed).await;
    let expected = (AssignmentStatus::Completed, "운행완료".into(), 4, Some(history.first));
    assert_eq!(summary(&completed), expected);
    assert_eq!(completed.candidates, vec![history.second, history.first]);
    assert_eq!(completed.candidates_tried, vec![history.second, history.first], "each event applied once");
    let cancelled = (AssignmentStatus::Cancelled, "할당취소".into(), 3, Some(history.second));
    assert_eq!(summary(&assignment(history.cancelled).await), cancelled);
    let failed = assignment(history.failed).await;
    assert_eq!(summary(&failed), (AssignmentStatus::Failed, "할당실패".into(), 2, None));
    assert_eq!(failed.failure_reason.as_deref(), Some("no driver before the deadline"));
    let confirmed = (AssignmentStatus::Confirmed, "할당확정".into(), 2, Some(history.assigned));
    assert_eq!(summary(&assignment(history.confirmed).await), confirmed);
    let dispatching = (AssignmentStatus::Requested, "할당요청".into(), 1, None);
    assert_eq!(summary(&assignment(history.dispatching).await), dispatching);
    assert!(queries::get::<AssignmentView>(store, history.requested).await.expect("read").is_none());
}

/// Calls that each offer a dispatch refused by two candidates: a double-applied event
/// would show as a third entry in `candidates_tried`.
async fn write_bulk(store: &Store, calls: usize) -> Vec<Uuid> {
    let (one, two) = (Uuid::now_v7(), Uuid::now_v7());
    let mut ids = Vec::with_capacity(calls);
    for _ in 0..calls {
        let call_id = Uuid::now_v7();
        let request = AssignmentCommand::Request {
            call_id,
            drive_type: DriveType::Manual,
            pickup: north_of_mapo(0.0),
            candidates: vec![one, two],
            at: now(),
        };
        exec::<Assignment>(store, call_id, request).await;
        for driver_id in [one, two] {
            let refusal = AssignmentCommand::RecordRefusal { driver_id, reason: "taken".into(), at: now() };
            exec::<Assignment>(store, call_id, refusal).await;
        }
        ids.push(call_id);
    }
    ids
}

/// The views and their checkpoints as they stood, kept in tables of their own so that a
/// test can put them back and project the same events again.
struct SavedViews {
    checkpoints: Vec<(&'static str, LogPosition)>,
}

const VIEWS: [(&str, &str); 3] = [
    (CallView::NAME, CallView::TABLE),
    (DriverView::NAME, DriverView::TABLE),
    (AssignmentView::NAME, AssignmentView::TABLE),
];

async fn save_views(store: &Store) -> SavedViews {
    let mut checkpoints = Vec::new();
    for (name, table) in VIEWS {
        let copy = format!("CREATE TABLE saved_{table} AS SELECT * FROM {table}");
        on_db!(store.db(), pool => {
            sqlx::query(&copy).execute(pool).await.expect("copy a view");
        });
        checkpoints.push((name, checkpoint::read(store, name).await.expect("read a checkpoint")));
    }
    SavedViews { checkpoints }
}

async fn restore_views(store: &Store, saved: &SavedViews) {
    let mut tx = store.begin().await.expect("begin");
    for ((name, table), (_, position)) in VIEWS.into_iter().zip(&saved.checkpoints) {
        checkpoint::lock(&mut tx, name).await.expect("lock a checkpoint");
        let restore = [format!("DELETE FROM {table}"), format!("INSERT INTO {table} SELECT * FROM saved_{table}")];
        for sql in restore {
            on_tx!(&mut tx, conn => {
                sqlx::query(&sql).execute(&mut *conn).await.expect("restore a view");
            });
        }
        checkpoint::save(&mut tx, name, *position).await.expect("save a checkpoint");
    }
    tx.commit().await.expect("commit");
}

/// Every change announced so far, in order.
fn announced(changes: &mut tokio::sync::broadcast::Receiver<ViewChange>) -> Vec<ViewChange> {
    std::iter::from_fn(|| changes.try_recv().ok()).collect()
}

on_both_stores! {
    /// Batches that touch hundreds of rows (a projector catching up, which loads them in
    /// one query) or thousands (a replay from empty tables, holding them in memory) leave
    /// the same views as projecting one event at a time.
    async fn batches_touching_many_rows_project_what_single_events_do(store: Store) {
        let changes = ViewChanges::default();
        let calls = Projector::<CallView>::new(store.clone(), changes.clone());
        let drivers = Projector::<DriverView>::new(store.clone(), changes.clone());
        let assignments = Projector::<AssignmentView>::new(store.clone(), changes.clone());

        // One event at a time: each command is followed by the projector of its view.
        let mut driver_ids = Vec::new();
        for n in 0..20 {
            let driver_id = register_driver(&store, "기사", n % 2 == 0).await;
            drain(&store, &drivers).await;
            let online = DriverCommand::GoOnline { location: north_of_mapo(f64::from(n) * 10.0), at: now() };
            exec::<Driver>(&store, driver_id, online).await;
            drain(&store, &drivers).await;
            driver_ids.push(driver_id);
        }
        let mut call_ids = Vec::new();
        for n in 0..1000 {
            let call_id = request_call(&store, n % 300, DriveType::Auto).await;
            drain(&store, &calls).await;
            let request = AssignmentCommand::Request {
                call_id,
                drive_type: DriveType::Auto,
                pickup: north_of_mapo(0.0),
                candidates: vec![driver_ids[n as usize % driver_ids.len()]],
                at: now(),
            };
            exec::<Assignment>(&store, call_id, request).await;
            drain(&store, &assignments).await;
            call_ids.push(call_id);
        }
        let requested = save_views(&store).await;
        for &call_id in &call_ids {
            exec::<Call>(&store, call_id, CallCommand::Cancel { reason: Some("plans changed".into()), at: now() }).await;
            drain(&store, &calls).await;
            let cancel = AssignmentCommand::Cancel { reason: Some("call cancelled".into()), at: now() };
            exec::<Assignment>(&store, call_id, cancel).await;
            drain(&store, &assignments).await;
        }
        for &driver_id in &driver_ids {
            let moved = DriverCommand::UpdateLocation { location: north_of_mapo(500.0), at: now() };
            exec::<Driver>(&store, driver_id, moved).await;
            drain(&store, &drivers).await;
        }
        let one_at_a_time = dump(&store).await;
        assert_eq!(one_at_a_time.len(), 1000 + 20 + 1000);

        // The cancellations again, a full batch at a time, on rows that exist already.
        restore_views(&store, &requested).await;
        let mut heard = changes.subscribe();
        let from = checkpoint::read(&store, CallView::NAME).await.expect("checkpoint");
        let batch = store.read_after(from, projections::BATCH_SIZE).await.expect("read the next batch");
        let touched: std::collections::HashSet<String> =
            batch.iter().filter(|logged| logged.aggregate_type == CallView::AGGREGATE).map(|logged| logged.aggregate_id.clone()).collect();
        assert!(touched.len() > 200, "the batch touches many calls: {}", touched.len());
        assert_eq!(calls.run_once().await.expect("a batch"), projections::BATCH_SIZE);
        let first_batch = announced(&mut heard);
        assert_eq!(first_batch.len(), touched.len(), "each row touched is saved and announced once");
        assert!(first_batch.iter().all(|change| touched.contains(&change.id.to_string())));
        drain(&store, &calls).await;
        drain(&store, &drivers).await;
        drain(&store, &assignments).await;
        assert_eq!(dump(&store).await, one_at_a_time);

        // The whole log in one replay batch, from empty tables.
        let total = store.count_events().await.expect("count");
        assert!(total < projections::REPLAY_BATCH_SIZE as u64);
        announced(&mut heard);
        assert_eq!(replay_all(&store, &changes, |_| {}).await.expect("replay"), total);
        let rebuilt = announced(&mut heard);
        assert_eq!(rebuilt.len(), one_at_a_time.len(), "one batch saves each row once");
        assert_eq!(dump(&store).await, one_at_a_time);
    }


    /// One batch applies the whole log to each view, with the right statuses, labels and
    /// versions, announces the changed rows, and moves the checkpoint to the last event;
    /// the next batch finds nothing.
    async fn run_once_applies_the_log_to_every_view_and_advances_the_checkpoint(store: Store) {
        let history = write_history(&store).await;
        let total = store.count_events().await.expect("count") as usize;
        let changes = ViewChanges::default();
        let mut announced = changes.subscribe();
        let calls = Projector::<CallView>::new(store.clone(), changes.clone());
        let drivers = Projector::<DriverView>::new(store.clone(), changes.clone());
        let assignments = Projector::<AssignmentView>::new(store.clone(), changes.clone());
        assert_eq!(drain(&store, &calls).await, total);
        assert_eq!(drain(&store, &drivers).await, total);
        assert_eq!(drain(&store, &assignments).await, total);
        assert_history_views(&store, &history).await;

        let chain = store.read_correlated(history.went_offline).await.expect("read the last event's stream");
        let last = chain.last().expect("events").position;
        for name in projections::PROJECTIONS {
            assert_eq!(checkpoint::read(&store, name).await.expect("checkpoint"), last, "{name}");
        }
        assert_eq!(calls.run_once().await.expect("run"), 0);
        assert_eq!(drivers.run_once().await.expect("run"), 0);
        assert_eq!(assignments.run_once().await.expect("run"), 0);

        // A row touched by several batches is announced once per batch, in version order.
        let mut latest = std::collections::HashMap::new();
        while let Ok(change) = announced.try_recv() {
            let previous = latest.insert((change.view, change.id), change.version);
            assert!(previous < Some(change.version), "{change:?} announced after version {previous:?}");
        }
        assert_eq!(latest.len(), 6 + 5 + 5, "every row touched is announced");
        assert_eq!(latest[&("calls", history.completed)], 4);
        assert_eq!(latest[&("drivers", history.assigned)], 3);
        assert_eq!(latest[&("assignments", history.failed)], 2);
    }

    /// Two instances of each projector race over a log longer than one batch: every
    /// event is applied exactly once, so the views equal a single projector's build.
    async fn racing_projectors_of_one_view_apply_each_event_exactly_once(store: Store) {
        let history = write_history(&store).await;
        let bulk = write_bulk(&store, 180).await;
        assert!(store.count_events().await.expect("count") as usize > projections::BATCH_SIZE);
        let mut racers = tokio::task::JoinSet::new();
        for _ in 0..2 {
            racers.spawn(drain_in_task::<CallView>(store.clone()));
            racers.spawn(drain_in_task::<DriverView>(store.clone()));
            racers.spawn(drain_in_task::<AssignmentView>(store.clone()));
        }
        let total = store.count_events().await.expect("count") as usize;
        let mut read = 0;
        while let Some(racer) = racers.join_next().await {
            read += racer.expect("a projector task");
        }
        assert_eq!(read, 3 * total, "each view's racers read the log once between them");
        assert_history_views(&store, &history).await;
        for call_id in bulk {
            let view = view::<AssignmentView>(&store, call_id).await;
            assert_eq!((view.candidates_tried.len(), view.version), (2, 3), "{call_id}");
        }
        let raced = dump(&store).await;
        replay_each(&store).await;
        assert_eq!(dump(&store).await, raced, "a single projector builds the same views");
    }

    /// A replay rebuilds each view byte for byte, and after more events it matches what
    /// the live projectors built, even with a live projector running beside it.
    async fn replay_rebuilds_the_same_bytes_as_the_live_projectors(store: Store) {
        let history = write_history(&store).await;
        project_all(&store).await;
        let live = dump(&store).await;
        let total = store.count_events().await.expect("count");
        let mut progress = Vec::new();
        let changes = ViewChanges::default();
        let applied = replay::<CallView>(&store, &changes, |applied| progress.push(applied)).await.expect("replay");
        assert_eq!((applied, progress), (total, vec![total]));
        replay::<DriverView>(&store, &changes, |_| {}).await.expect("replay");
        replay::<AssignmentView>(&store, &changes, |_| {}).await.expect("replay");
        assert_eq!(dump(&store).await, live);

        let driver = online_driver(&store, "새로옴", true, 50.0).await;
        let reserve = DriverCommand::Reserve { call_id: history.dispatching, drive_type: DriveType::Auto, at: now() };
        exec::<Driver>(&store, driver, reserve).await;
        let confirm = AssignmentCommand::Confirm { driver_id: driver, at: now() };
        exec::<Assignment>(&store, history.dispatching, confirm).await;
        let confirm = CallCommand::Confirm { driver: driver_for(driver, "새로옴"), at: now() };
        exec::<Call>(&store, history.dispatching, confirm).await;
        exec::<Call>(&store, history.requested, CallCommand::Cancel { reason: None, at: now() }).await;
        write_bulk(&store, 170).await;
        project_all(&store).await;
        let live = dump(&store).await;
        assert_eq!(view::<DriverView>(&store, driver).await.current_call_id, Some(history.dispatching));

        // Live projectors keep reading, as in a serving process, while the views are rebuilt.
        let (shutdown, stop) = tokio::sync::watch::channel(false);
        let live_projectors = [
            tokio::spawn(keep_projecting::<CallView>(store.clone(), stop.clone())),
            tokio::spawn(keep_projecting::<DriverView>(store.clone(), stop.clone())),
            tokio::spawn(keep_projecting::<AssignmentView>(store.clone(), stop)),
        ];
        replay_all(&store, &ViewChanges::default(), |_| {}).await.expect("replay every view");
        shutdown.send(true).expect("stop the live projectors");
        for projector in live_projectors {
            projector.await.expect("a live projector");
        }
        project_all(&store).await;
        assert_eq!(dump(&store).await, live);
    }

    /// A customer's history pages newest first (ties by call id), each page's cursor
    /// leading to the next, and holds no one else's calls.
    async fn call_history_pages_newest_first_and_drivers_filter_by_status(store: Store) {
        let history = write_history(&store).await;
        let start = now() - Span::hours(1);
        let mut mine = Vec::new();
        for minutes in [0, 10, 20, 20, 30, 40] {
            let request = call_request(7, DriveType::Auto, start + Span::minutes(minutes));
            mine.push((request.requested_at, request.call_id));
            exec::<Call>(&store, request.call_id, CallCommand::Request(request)).await;
        }
        for minutes in [5, 25] {
            let request = call_request(8, DriveType::Manual, start + Span::minutes(minutes));
            exec::<Call>(&store, request.call_id, CallCommand::Request(request)).await;
        }
        project_all(&store).await;
        mine.sort_by(|a, b| b.cmp(a));
        let newest_first: Vec<Uuid> = mine.iter().map(|(_, call_id)| *call_id).collect();

        let customer = tel(7);
        let mut pages = Vec::new();
        let mut cursor = None;
        loop {
            let (page, next) = queries::call_history(&store, customer.as_str(), 2, cursor).await.expect("a page");
            assert!(page.iter().all(|call| call.tel == customer.as_str()));
            let ids: Vec<Uuid> = page.iter().map(|call| call.call_id).collect();
            pages.push(ids.clone());
            match next {
                Some(next) => {
                    assert_eq!(Some(&next), ids.last(), "the cursor is the page's last call");
                    cursor = Some(next);
                }
                None => break,
            }
        }
        assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 2, 2]);
        assert_eq!(pages.concat(), newest_first);
        let (all, next) = queries::call_history(&store, customer.as_str(), 10, None).await.expect("a page");
        assert_eq!((all.iter().map(|call| call.call_id).collect::<Vec<_>>(), next), (newest_first, None));
        let (none, next) = queries::call_history(&store, tel(9).as_str(), 10, None).await.expect("a page");
        assert!(none.is_empty() && next.is_none());

        let ids = |drivers: Vec<DriverView>| drivers.into_iter().map(|driver| driver.driver_id).collect::<Vec<_>>();
        let with = |status| queries::drivers(&store, status);
        let registered = [history.first, history.second, history.went_offline, history.never_online, history.assigned];
        assert_eq!(ids(with(None).await.expect("drivers")), registered);
        assert_eq!(ids(with(Some(DriverStatus::Available)).await.expect("drivers")), [history.first, history.second]);
        let offline = [history.went_offline, history.never_online];
        assert_eq!(ids(with(Some(DriverStatus::Offline)).await.expect("drivers")), offline);
        assert_eq!(ids(with(Some(DriverStatus::Assigned)).await.expect("drivers")), [history.assigned]);
    }
}
