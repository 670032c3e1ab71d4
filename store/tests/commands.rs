//! Commands over real databases: state from snapshots and the cache equals the state from
//! every event, a stale cache never decides, and concurrent appends share commits without
//! mixing their outcomes.

// The crate under test, under the name the helpers shared with other crates use.
extern crate drivercenter_store as store;

#[macro_use]
mod support;

use cqrs_es::Aggregate;
use domain::{Call, CallCommand, DriveType, Driver, DriverCommand, DriverError, ReleaseReason};
use futures::{stream, StreamExt};
use store::testing::{fresh_database_url, TestBackend};
use store::{on_db, CommandError, Store, StoreOptions};
use support::{call_request, exec, meta, north_of_mapo, now, online_driver};
use uuid::Uuid;

fn json<A: Aggregate>(state: &A) -> serde_json::Value {
    serde_json::to_value(state).expect("serialise the state")
}

/// Reserves and releases `driver_id` `cycles` times: two events per cycle.
async fn work_shifts(store: &Store, driver_id: Uuid, cycles: usize) {
    for _ in 0..cycles {
        let call_id = Uuid::now_v7();
        exec::<Driver>(store, driver_id, DriverCommand::Reserve { call_id, drive_type: DriveType::Auto, at: now() })
            .await;
        let release = DriverCommand::Release { call_id, reason: ReleaseReason::CallCompleted, at: now() };
        exec::<Driver>(store, driver_id, release).await;
    }
}

/// Two stores on one fresh database, as two processes would hold them.
async fn two_stores(backend: TestBackend) -> Option<(Store, Store)> {
    let url = fresh_database_url(backend).await?;
    let first = Store::connect(&url).await.expect("connect");
    first.migrate().await.expect("migrate");
    let second = Store::connect(&url).await.expect("connect again");
    Some((first, second))
}

on_both_stores! {
    /// A long stream is loaded from its latest snapshot and the events after it, and that
    /// state is the one every event gives.
    async fn the_state_from_snapshot_and_tail_equals_the_state_from_every_event(store: Store) {
        let driver_id = online_driver(&store, "김기사", true, 100.0).await;
        work_shifts(&store, driver_id, 130).await;
        let moved = DriverCommand::UpdateLocation { location: north_of_mapo(250.0), at: now() };
        exec::<Driver>(&store, driver_id, moved).await;

        let (from_events, version) = store.load_from_events::<Driver>(driver_id).await.expect("replay every event");
        assert_eq!(version, 263);
        assert_eq!(store.snapshot_version::<Driver>(driver_id).await.expect("read the snapshot"), Some(200));
        let (from_snapshot, snapshot_version) =
            store.load_from_snapshot::<Driver>(driver_id).await.expect("load from the snapshot");
        assert_eq!(snapshot_version, version);
        assert_eq!(json(&from_snapshot), json(&from_events));
        let (cached, cached_version) = store.load::<Driver>(driver_id).await.expect("load");
        assert_eq!((json(&cached), cached_version), (json(&from_events), version));
    }

    /// A snapshot of another format, or one that cannot be read, is passed over for the
    /// whole stream.
    async fn a_snapshot_of_another_format_or_unreadable_is_ignored(store: Store) {
        let driver_id = online_driver(&store, "박기사", false, 100.0).await;
        work_shifts(&store, driver_id, 60).await;
        let (expected, version) = store.load_from_events::<Driver>(driver_id).await.expect("replay every event");
        assert_eq!(store.snapshot_version::<Driver>(driver_id).await.expect("read the snapshot"), Some(100));
        for corruption in ["UPDATE snapshots SET format = format + 1", "UPDATE snapshots SET format = 1, state = '[1]'"] {
            on_db!(store.db(), pool => {
                sqlx::query(corruption).execute(pool).await.expect("alter the snapshot");
            });
            let (loaded, loaded_version) =
                store.load_from_snapshot::<Driver>(driver_id).await.expect("load past the snapshot");
            assert_eq!((json(&loaded), loaded_version), (json(&expected), version), "after `{corruption}`");
        }
    }

    /// Calls created at once under fresh ids share commits, and each keeps exactly its own
    /// event; creating one that exists runs on its stored state instead.
    async fn concurrent_creations_each_store_exactly_their_own_event(store: Store) {
        let requests: Vec<_> = (0..200).map(|customer| call_request(customer, DriveType::Auto, now())).collect();
        let created: Vec<_> = stream::iter(requests.clone())
            .map(|request| {
                let store = store.clone();
                async move {
                    let call_id = request.call_id;
                    store.create::<Call>(call_id, CallCommand::Request(request), &meta(call_id)).await
                }
            })
            .buffer_unordered(200)
            .collect()
            .await;
        for outcome in created {
            let committed = outcome.expect("create a call");
            assert_eq!((committed.version, committed.appended), (1, 1));
        }
        assert_eq!(store.count_events().await.expect("count"), 200);

        let again = requests[0].clone();
        let call_id = again.call_id;
        let committed =
            store.create::<Call>(call_id, CallCommand::Request(again), &meta(call_id)).await.expect("request again");
        assert_eq!((committed.version, committed.appended), (1, 0), "the same request is a no-op");
        assert_eq!(store.count_events().await.expect("count"), 200);
    }
}

/// Commands through a store whose cache is behind what another process wrote.
async fn a_stale_cache_never_decides(backend: TestBackend) {
    let Some((mine, theirs)) = two_stores(backend).await else { return };
    let driver_id = online_driver(&mine, "이기사", false, 100.0).await;

    // They reserve the driver; our cache still sees an available driver, so our own
    // reservation conflicts, catches up and is refused for the right reason.
    let (their_call, our_call) = (Uuid::now_v7(), Uuid::now_v7());
    let reserve = |call_id| DriverCommand::Reserve { call_id, drive_type: DriveType::Auto, at: now() };
    exec::<Driver>(&theirs, driver_id, reserve(their_call)).await;
    let refused = mine.execute::<Driver>(driver_id, reserve(our_call), &meta(our_call)).await;
    assert!(matches!(refused, Err(CommandError::Rejected(DriverError::AlreadyReserved))), "{refused:?}");

    // They release the driver; our cache sees them reserved for their call, where
    // reserving again would be a no-op, yet the reservation is made.
    let release = DriverCommand::Release { call_id: their_call, reason: ReleaseReason::CallCancelled, at: now() };
    exec::<Driver>(&theirs, driver_id, release).await;
    let reserved = exec::<Driver>(&mine, driver_id, reserve(their_call)).await;
    assert_eq!(reserved.appended, 1);

    // Our cache sees the driver offline; they bring the driver online again. The refusal
    // our cache would give is checked, and the reservation is made.
    let release = DriverCommand::Release { call_id: their_call, reason: ReleaseReason::CallCancelled, at: now() };
    exec::<Driver>(&mine, driver_id, release).await;
    exec::<Driver>(&mine, driver_id, DriverCommand::GoOffline { at: now() }).await;
    exec::<Driver>(&theirs, driver_id, DriverCommand::GoOnline { location: north_of_mapo(50.0), at: now() }).await;
    let reserved = exec::<Driver>(&mine, driver_id, reserve(our_call)).await;
    assert_eq!(reserved.appended, 1);

    let (final_state, version) = theirs.load_from_events::<Driver>(driver_id).await.expect("replay every event");
    let (mine_state, mine_version) = mine.load::<Driver>(driver_id).await.expect("load");
    assert_eq!((json(&mine_state), mine_version), (json(&final_state), version));
    mine.close().await;
    theirs.close().await;
}

/// With the cache off every command reads the stored state, and a long stream without a
/// snapshot gets one with its next append.
async fn without_a_cache_commands_read_the_stored_state(backend: TestBackend) {
    let Some(url) = fresh_database_url(backend).await else { return };
    let store = Store::connect_with(&url, StoreOptions { aggregate_cache: 0 }).await.expect("connect");
    store.migrate().await.expect("migrate");
    let driver_id = online_driver(&store, "최기사", false, 100.0).await;
    work_shifts(&store, driver_id, 55).await;
    let (loaded, version) = store.load::<Driver>(driver_id).await.expect("load");
    let (expected, expected_version) = store.load_from_events::<Driver>(driver_id).await.expect("replay");
    assert_eq!((json(&loaded), version), (json(&expected), expected_version));

    on_db!(store.db(), pool => {
        sqlx::query("DELETE FROM snapshots").execute(pool).await.expect("drop the snapshots");
    });
    let call_id = Uuid::now_v7();
    exec::<Driver>(&store, driver_id, DriverCommand::Reserve { call_id, drive_type: DriveType::Auto, at: now() }).await;
    assert_eq!(store.snapshot_version::<Driver>(driver_id).await.expect("read the snapshot"), Some(version + 1));
    store.close().await;
}

mod a_stale_cache_never_decides {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::a_stale_cache_never_decides(super::TestBackend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::a_stale_cache_never_decides(super::TestBackend::Postgres).await;
    }
}

mod without_a_cache_commands_read_the_stored_state {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::without_a_cache_commands_read_the_stored_state(super::TestBackend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::without_a_cache_commands_read_the_stored_state(super::TestBackend::Postgres).await;
    }
}
