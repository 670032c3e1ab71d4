//! The event log over real databases: its global order and metadata, optimistic
//! concurrency, idempotency keys, checkpoints, and PostgreSQL's gap safety.

// The crate under test, under the name the helpers shared with other crates use.
extern crate drivercenter_store as store;

#[macro_use]
mod support;

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Duration as Span;
use cqrs_es::Aggregate;
use domain::{
    AssignedDriver, Assignment, AssignmentCommand, Call, CallCommand, DriveType, Driver, DriverCommand, DriverError,
    DriverEvent,
};
use futures::{stream, StreamExt};
use store::idempotency::{self, Claim};
use store::{checkpoint, CommandError, CommandMeta, Db, LogPosition, LoggedEvent, Store};
use support::{call_request, exec, meta, north_of_mapo, now, online_driver, register_driver, tel};
use uuid::Uuid;

/// One batch of a subscriber that follows the log the way every subscriber does: lock
/// its checkpoint, read after it, save the last position, commit.
async fn follow(store: &Store, name: &str, limit: usize) -> Vec<LoggedEvent> {
    let mut tx = store.begin().await.expect("begin");
    let from = checkpoint::lock(&mut tx, name).await.expect("lock the checkpoint");
    let events = tx.read_after(from, limit).await.expect("read the log");
    if let Some(last) = events.last() {
        checkpoint::save(&mut tx, name, last.position).await.expect("save the checkpoint");
    }
    tx.commit().await.expect("commit");
    events
}

/// The whole log, paged `page` events at a time with `read_after(last.position, page)`,
/// waiting while committed events are still hidden from readers.
async fn read_log(store: &Store, page: usize) -> Vec<LoggedEvent> {
    let total = store.count_events().await.expect("count events");
    let mut events: Vec<LoggedEvent> = Vec::new();
    while (events.len() as u64) < total {
        let after = events.last().map_or(LogPosition::START, |last| last.position);
        let batch = store.read_after(after, page).await.expect("read a page");
        assert!(batch.len() <= page, "a page holds at most {page} events");
        if batch.is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        events.extend(batch);
    }
    events
}

fn assert_strictly_increasing(events: &[LoggedEvent]) {
    for pair in events.windows(2) {
        assert!(
            pair[0].position < pair[1].position,
            "positions must increase: {:?} then {:?}",
            pair[0].position,
            pair[1].position
        );
    }
}

/// What identifies an event in the log and what it carries besides its payload:
/// aggregate type and id, sequence, event type, metadata.
type Fingerprint = (String, String, i64, String, CommandMeta);

fn fingerprint(event: &LoggedEvent) -> Fingerprint {
    let LoggedEvent { aggregate_type, aggregate_id, sequence, event_type, metadata, .. } = event.clone();
    (aggregate_type, aggregate_id, sequence, event_type, metadata)
}

/// Runs commands on the aggregates of two calls and two drivers, interleaved, each with
/// its own metadata, and returns the events they must have appended, in commit order.
async fn write_interleaved_history(store: &Store) -> (Uuid, Uuid, Vec<Fingerprint>) {
    let first = call_request(1, DriveType::Auto, now());
    let second = call_request(2, DriveType::Auto, now());
    let (call, other_call) = (first.call_id, second.call_id);
    let (driver, other_driver) = (Uuid::now_v7(), Uuid::now_v7());
    let register = |driver_id| DriverCommand::Register {
        driver_id,
        name: "김기사".into(),
        tel: tel(42),
        can_drive_manual: false,
        at: now(),
    };
    let mut expected = Vec::new();
    let mut sequences = std::collections::HashMap::<(&str, Uuid), i64>::new();
    macro_rules! step {
        ($aggregate:ty, $id:expr, $correlation:expr, $command:expr, $event:literal) => {{
            let meta = meta($correlation);
            let committed = store
                .execute::<$aggregate>($id, $command, &meta)
                .await
                .unwrap_or_else(|error| panic!("{}: {error}", $event));
            assert_eq!(committed.appended, 1, "{}", $event);
            let sequence = sequences.entry((<$aggregate>::TYPE, $id)).or_default();
            *sequence += 1;
            assert_eq!(committed.version, *sequence);
            expected.push((<$aggregate>::TYPE.to_string(), $id.to_string(), *sequence, $event.to_string(), meta));
        }};
    }
    let online = DriverCommand::GoOnline { location: north_of_mapo(100.0), at: now() };
    let request_assignment = AssignmentCommand::Request {
        call_id: call,
        drive_type: DriveType::Auto,
        pickup: first.pickup.clone(),
        candidates: vec![driver],
        at: now(),
    };
    let reserve = DriverCommand::Reserve { call_id: call, drive_type: DriveType::Auto, at: now() };
    let confirm_call = CallCommand::Confirm {
        driver: AssignedDriver { driver_id: driver, name: "김기사".into(), tel: tel(42) },
        at: now(),
    };
    step!(Driver, driver, driver, register(driver), "DriverRegistered");
    step!(Call, call, call, CallCommand::Request(first), "CallRequested");
    step!(Driver, driver, driver, online, "DriverWentOnline");
    step!(Assignment, call, call, request_assignment, "AssignmentRequested");
    step!(Call, other_call, other_call, CallCommand::Request(second), "CallRequested");
    step!(Call, call, call, CallCommand::StartDispatch { at: now() }, "CallDispatchStarted");
    step!(Driver, other_driver, other_driver, register(other_driver), "DriverRegistered");
    step!(Driver, driver, call, reserve, "DriverReserved");
    step!(Assignment, call, call, AssignmentCommand::Confirm { driver_id: driver, at: now() }, "AssignmentConfirmed");
    step!(Call, call, call, confirm_call, "CallConfirmed");
    step!(Call, other_call, other_call, CallCommand::Cancel { reason: None, at: now() }, "CallCancelled");
    (call, other_call, expected)
}

on_both_stores! {
    /// Every aggregate's events come back once each, in the order they were committed,
    /// with the metadata their commands carried, however the log is paged.
    async fn the_log_returns_every_event_once_in_commit_order_with_its_metadata(store: Store) {
        let (_, _, expected) = write_interleaved_history(&store).await;
        let whole = read_log(&store, 1000).await;
        assert_eq!(whole.iter().map(fingerprint).collect::<Vec<_>>(), expected);
        assert_strictly_increasing(&whole);
        for event in &whole {
            assert_eq!(event.event_version, domain::EVENT_VERSION);
            assert_eq!(event.event_id(), store::event_id(&event.aggregate_type, &event.aggregate_id, event.sequence));
            assert!(!matches!(event.decode().expect("decode"), store::AnyEvent::Unknown));
        }
        for page in [1, 3, 4] {
            assert_eq!(read_log(&store, page).await, whole, "paged by {page}");
        }
        let past_the_end = store.read_after(whole.last().expect("events").position, 10).await.expect("read");
        assert!(past_the_end.is_empty(), "nothing lies after the last event");
    }

    /// `read_correlated` follows one call across its call, assignment and driver streams,
    /// in commit order, and nothing else.
    async fn read_correlated_returns_one_call_across_all_aggregates_in_commit_order(store: Store) {
        let (call, other_call, expected) = write_interleaved_history(&store).await;
        for correlation_id in [call, other_call] {
            let chain = store.read_correlated(correlation_id).await.expect("read correlated");
            let wanted: Vec<Fingerprint> =
                expected.iter().filter(|event| event.4.correlation_id == correlation_id).cloned().collect();
            assert_eq!(chain.iter().map(fingerprint).collect::<Vec<_>>(), wanted);
            assert_strictly_increasing(&chain);
        }
        let chain = store.read_correlated(call).await.expect("read correlated");
        let types: BTreeSet<&str> = chain.iter().map(|event| event.aggregate_type.as_str()).collect();
        assert_eq!(types, BTreeSet::from(["assignment", "call", "driver"]));
        assert!(store.read_correlated(Uuid::now_v7()).await.expect("read correlated").is_empty());
    }

    /// Twenty writers move one driver at once: each either lands (after retries on fresh
    /// state) or gives up with `Conflict`; the stream stays contiguous with no lost or
    /// doubled event.
    async fn concurrent_commands_on_one_driver_lose_and_duplicate_nothing(store: Store) {
        let driver = online_driver(&store, "이동중", false, 5.0).await;
        let writers: Vec<_> = (1..=20)
            .map(|n| {
                let store = store.clone();
                let location = north_of_mapo(f64::from(n) * 10.0);
                tokio::spawn(async move {
                    let update = DriverCommand::UpdateLocation { location: location.clone(), at: now() };
                    (location, store.execute::<Driver>(driver, update, &meta(driver)).await)
                })
            })
            .collect();
        let mut landed = Vec::new();
        let mut versions = BTreeSet::new();
        for writer in writers {
            match writer.await.expect("writer task") {
                (location, Ok(committed)) => {
                    assert_eq!(committed.appended, 1, "every location differs from the last");
                    assert!(versions.insert(committed.version), "two commands got version {}", committed.version);
                    landed.push(location.address);
                }
                (_, Err(CommandError::Conflict)) => {}
                (_, Err(error)) => panic!("a concurrent update failed: {error}"),
            }
        }
        assert!(!landed.is_empty(), "at least one writer must win every race");
        let last = 2 + landed.len() as i64;
        assert_eq!(versions, (3..=last).collect::<BTreeSet<_>>());

        let stream: Vec<LoggedEvent> = read_log(&store, 1000)
            .await
            .into_iter()
            .filter(|event| event.aggregate_id == driver.to_string())
            .collect();
        assert_eq!(stream.iter().map(|event| event.sequence).collect::<Vec<_>>(), (1..=last).collect::<Vec<_>>());
        let mut moved: Vec<String> = stream[2..]
            .iter()
            .map(|event| match event.decode().expect("decode") {
                store::AnyEvent::Driver(DriverEvent::DriverLocationUpdated { location, .. }) => location.address,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        moved.sort_unstable();
        landed.sort_unstable();
        assert_eq!(moved, landed, "exactly the winning writers' locations are in the stream");
        assert_eq!(store.load::<Driver>(driver).await.expect("load").1, last);
    }

    /// Ten calls reserve the same driver at once: one wins, nine are told the driver is
    /// already reserved.
    async fn concurrent_reservations_of_one_driver_let_exactly_one_call_win(store: Store) {
        let driver = online_driver(&store, "인기많음", true, 50.0).await;
        let attempts: Vec<_> = (0..10)
            .map(|_| {
                let store = store.clone();
                let call_id = Uuid::now_v7();
                tokio::spawn(async move {
                    let reserve = DriverCommand::Reserve { call_id, drive_type: DriveType::Auto, at: now() };
                    (call_id, store.execute::<Driver>(driver, reserve, &meta(call_id)).await)
                })
            })
            .collect();
        let mut winners = Vec::new();
        let mut refused = 0;
        for attempt in attempts {
            match attempt.await.expect("reservation task") {
                (call_id, Ok(committed)) => {
                    assert_eq!(committed.appended, 1);
                    assert_eq!(committed.version, 3);
                    winners.push(call_id);
                }
                (_, Err(CommandError::Rejected(DriverError::AlreadyReserved))) => refused += 1,
                (_, Err(error)) => panic!("a reservation failed otherwise: {error}"),
            }
        }
        assert_eq!(winners.len(), 1, "exactly one reservation wins");
        assert_eq!(refused, 9);
        let (state, version) = store.load::<Driver>(driver).await.expect("load");
        assert_eq!((state.reserved_for(), version), (Some(winners[0]), 3));
    }

    /// A command decided on a state the caller brings is decided again on the stored
    /// stream when that state is stale, whichever way the stale state would have gone.
    async fn a_command_from_a_stale_state_is_decided_on_the_stored_stream(store: Store) {
        let driver = register_driver(&store, "옛모습", false).await;
        let offline = store.load::<Driver>(driver).await.expect("load");
        exec::<Driver>(&store, driver, DriverCommand::GoOnline { location: north_of_mapo(50.0), at: now() }).await;
        let online = store.load::<Driver>(driver).await.expect("load");

        let first = Uuid::now_v7();
        let reserve = |call_id| DriverCommand::Reserve { call_id, drive_type: DriveType::Auto, at: now() };
        let committed = store.execute_from::<Driver>(driver, offline.0, offline.1, reserve(first), &meta(first)).await;
        assert_eq!(committed.expect("reserved, though the offline state would refuse").version, 3);

        let second = Uuid::now_v7();
        let refused = store.execute_from::<Driver>(driver, online.0, online.1, reserve(second), &meta(second)).await;
        assert!(
            matches!(refused, Err(CommandError::Rejected(DriverError::AlreadyReserved))),
            "refused, though the online state would reserve: {refused:?}"
        );
        let (state, version) = store.load::<Driver>(driver).await.expect("load");
        assert_eq!((state.reserved_for(), version), (Some(first), 3));
    }

    /// An idempotency key names its first call for 24 hours, tells a repeat from a
    /// different request, and may be claimed afresh once expired.
    async fn an_idempotency_key_names_its_first_call_until_it_expires(store: Store) {
        let at = now();
        let (first, second, third) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let claim = |key: &'static str, hash: &'static str, call_id, at| {
            let store = store.clone();
            async move { idempotency::claim(&store, key, hash, call_id, at).await.expect("claim") }
        };
        assert_eq!(claim("key-1", "hash-a", first, at).await, Claim::New);
        let repeat = claim("key-1", "hash-a", second, at + Span::seconds(5)).await;
        assert_eq!(repeat, Claim::Existing { call_id: first, same_request: true, created_at: at });
        let different = claim("key-1", "hash-b", third, at + Span::hours(23)).await;
        assert_eq!(different, Claim::Existing { call_id: first, same_request: false, created_at: at });

        let long_ago = at - Span::hours(25);
        assert_eq!(claim("key-2", "hash-a", first, long_ago).await, Claim::New);
        assert_eq!(claim("key-2", "hash-b", second, at).await, Claim::New, "an expired key is claimed afresh");
        let renewed = claim("key-2", "hash-b", third, at).await;
        assert_eq!(renewed, Claim::Existing { call_id: second, same_request: true, created_at: at });

        assert_eq!(claim("key-4", "hash-a", first, long_ago).await, Claim::New);
        for key in ["key-3", "key-4"] {
            let racers: Vec<_> = (0..8).map(|_| tokio::spawn(claim(key, "hash-a", Uuid::now_v7(), at))).collect();
            let mut new = 0;
            for racer in racers {
                new += usize::from(racer.await.expect("claim task") == Claim::New);
            }
            assert_eq!(new, 1, "of concurrent claims of {key} (fresh or expired) exactly one is new");
        }
    }

    /// A checkpoint saved in a committed transaction is what the next lock returns; a
    /// rolled-back save is not; and a second locker waits for the first to finish.
    async fn a_checkpoint_saved_inside_a_transaction_is_what_the_next_lock_returns(store: Store) {
        let name = "round-trip";
        let mut tx = store.begin().await.expect("begin");
        assert_eq!(checkpoint::lock(&mut tx, name).await.expect("lock"), LogPosition::START);
        let saved = LogPosition { commit: 7, prepare: 42 };
        checkpoint::save(&mut tx, name, saved).await.expect("save");
        tx.commit().await.expect("commit");
        assert_eq!(checkpoint::read(&store, name).await.expect("read"), saved);

        let mut abandoned = store.begin().await.expect("begin");
        assert_eq!(checkpoint::lock(&mut abandoned, name).await.expect("lock"), saved);
        checkpoint::save(&mut abandoned, name, LogPosition { commit: 9, prepare: 99 }).await.expect("save");
        drop(abandoned);
        assert_eq!(checkpoint::read(&store, name).await.expect("read"), saved, "a rollback keeps the old value");

        let mut holder = store.begin().await.expect("begin");
        checkpoint::lock(&mut holder, name).await.expect("lock");
        let waiter = tokio::spawn({
            let store = store.clone();
            async move {
                let mut tx = store.begin().await.expect("begin");
                let position = checkpoint::lock(&mut tx, name).await.expect("lock");
                tx.commit().await.expect("commit");
                position
            }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!waiter.is_finished(), "the second locker must wait for the first");
        let advanced = LogPosition { commit: 8, prepare: 50 };
        checkpoint::save(&mut holder, name, advanced).await.expect("save");
        holder.commit().await.expect("commit");
        assert_eq!(waiter.await.expect("waiter task"), advanced, "the waiter sees the committed save");
        assert_eq!(checkpoint::read(&store, "never-saved").await.expect("read"), LogPosition::START);
    }

    /// On PostgreSQL the log and every table updated in place are vacuumed, their rows kept;
    /// SQLite leaves no dead versions and has nothing to do.
    async fn the_tables_are_vacuumed_on_postgresql(store: Store) {
        let name = "vacuumed";
        for prepare in 1..=200 {
            let mut tx = store.begin().await.expect("begin");
            checkpoint::lock(&mut tx, name).await.expect("lock");
            checkpoint::save(&mut tx, name, LogPosition { commit: 1, prepare }).await.expect("save");
            tx.commit().await.expect("commit");
        }
        let vacuumed = store::vacuum_tables(&store).await.expect("vacuum");
        assert_eq!(checkpoint::read(&store, name).await.expect("read"), LogPosition { commit: 1, prepare: 200 });
        let Db::Postgres(pool) = store.db() else {
            assert!(!vacuumed, "nothing to vacuum on SQLite");
            return;
        };
        assert!(vacuumed);
        for table in store::VACUUMED {
            let last: Option<chrono::DateTime<chrono::Utc>> =
                sqlx::query_scalar("SELECT pg_stat_get_last_vacuum_time($1::regclass)")
                    .bind(table)
                    .fetch_one(pool)
                    .await
                    .expect("the table's vacuum statistics");
            assert!(last.is_some(), "{table} was vacuumed");
        }
    }
}

on_postgres! {
    /// The head of the log comes from the end of its commit-order index, at the same cost
    /// however long the log is: the plan holds no sort over the table.
    async fn the_head_of_the_log_is_read_from_its_index(store: Store) {
        register_driver(&store, "머리", false).await;
        let head = store.head().await.expect("head").expect("one event");
        assert_eq!(read_log(&store, 10).await.last().map(|event| event.position), Some(head));
        let plan = store.head_plan().await.expect("the plan of the head query");
        assert!(plan.contains("Index") && !plan.contains("Sort"), "the head is read off the index:\n{plan}");
    }
}

/// Later events registering this many drivers commit while one early transaction is open.
const LATER_EVENTS: usize = 1_000;

/// Follows the log from its checkpoint until it has read `total` events. Each batch comes
/// with whether `committing` was still false when the batch had been read.
async fn follow_until(store: Store, total: usize, committing: Arc<AtomicBool>) -> Vec<(bool, Vec<LoggedEvent>)> {
    let mut batches = Vec::new();
    let mut read = 0;
    while read < total {
        let batch = follow(&store, "gap-reader", 100).await;
        let before_commit = !committing.load(Ordering::SeqCst);
        if batch.is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        read += batch.len();
        batches.push((before_commit, batch));
    }
    batches
}

on_postgres! {
    /// PostgreSQL hands out positions at insert but commits in any order. A reader that
    /// follows its checkpoint while others write must stop before a transaction still in
    /// flight, however many later transactions commit meanwhile, and must then read the held
    /// event and every later one exactly once.
    async fn a_reader_never_passes_a_transaction_that_is_still_open(store: Store) {
        let Db::Postgres(pool) = store.db().clone() else {
            panic!("this test is about PostgreSQL");
        };
        let mut early = Vec::new();
        for n in 0..5 {
            early.push(register_driver(&store, &format!("early-{n}"), false).await);
        }
        let committing = Arc::new(AtomicBool::new(false));
        let reader = tokio::spawn(follow_until(store.clone(), early.len() + 1 + LATER_EVENTS, committing.clone()));

        let held_driver = Uuid::now_v7();
        let registered = DriverEvent::DriverRegistered {
            driver_id: held_driver,
            name: "늦은커밋".into(),
            tel: tel(7),
            can_drive_manual: false,
            registered_at: now(),
        };
        let mut held = store::Tx::Postgres(pool.begin().await.expect("begin the held transaction"));
        support::insert_event::<Driver>(&mut held, held_driver, 1, &registered, &meta(held_driver)).await;
        let later: Vec<Uuid> = (0..LATER_EVENTS).map(|_| Uuid::now_v7()).collect();
        stream::iter(later.iter().copied())
            .for_each_concurrent(8, |driver_id| {
                let store = store.clone();
                async move {
                    let register = DriverCommand::Register {
                        driver_id,
                        name: "나중기사".into(),
                        tel: tel(8),
                        can_drive_manual: false,
                        at: now(),
                    };
                    exec::<Driver>(&store, driver_id, register).await;
                }
            })
            .await;
        assert_eq!(store.count_events().await.expect("count"), (early.len() + LATER_EVENTS) as u64);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!reader.is_finished(), "the reader must still be waiting for the open transaction");
        committing.store(true, Ordering::SeqCst);
        held.commit().await.expect("commit the held transaction");
        let batches = tokio::time::timeout(Duration::from_secs(15), reader)
            .await
            .expect("the reader never read every event: it skipped the held one")
            .expect("the reader task");

        let while_open: Vec<Uuid> = batches
            .iter()
            .filter(|(before_commit, _)| *before_commit)
            .flat_map(|(_, batch)| batch.iter().map(|event| event.aggregate_uuid().expect("a uuid")))
            .collect();
        assert!(early.starts_with(&while_open), "while the transaction was open the reader read only what preceded it");
        let seen: Vec<LoggedEvent> = batches.into_iter().flat_map(|(_, batch)| batch).collect();
        assert!(follow(&store, "gap-reader", 500).await.is_empty(), "nothing is left to read");
        assert_strictly_increasing(&seen);
        let ids: Vec<Uuid> = seen.iter().map(|event| event.aggregate_uuid().expect("a uuid")).collect();
        assert_eq!(ids[..early.len()], early[..]);
        assert_eq!(ids[early.len()], held_driver, "the held event comes first once committed");
        let unique: HashSet<Uuid> = ids.iter().copied().collect();
        assert_eq!(unique.len(), ids.len(), "every event is read exactly once");
        assert!(later.iter().all(|driver_id| unique.contains(driver_id)), "every later event is read");
        assert_eq!(seen[early.len()].metadata.correlation_id, held_driver);
        let (driver, version) = store.load::<Driver>(held_driver).await.expect("load");
        assert_eq!((driver.profile().map(|profile| profile.name.as_str()), version), (Some("늦은커밋"), 1));
    }
}
