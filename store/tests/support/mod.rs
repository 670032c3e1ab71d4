//! What the integration tests of `store`, `projections` and `saga` share: a fresh
//! database per test on both stores, a time limit, and fixtures that speak the domain.
//!
//! Each of those test crates includes this file as a module
//! (`#[macro_use] #[path = "…/store/tests/support/mod.rs"] mod support;`), so no helper
//! is written twice.

#![allow(dead_code, unused_macros)]

use std::future::Future;
use std::time::Duration;

use chrono::{SubsecRound, Utc};
use cqrs_es::{Aggregate, DomainEvent};
use domain::{CallCommand, CallRequest, DriveType, Driver, DriverCommand, Fare, Location, Tel, Timestamp};
use store::testing::{fresh_database_url, TestBackend, DEFAULT_TEST_PG};
use store::{checkpoint, on_tx, CommandMeta, Committed, Db, LogPosition, Store, Tx};
use uuid::Uuid;

/// The longest any single test may run.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(120);

/// 마포구's centre, where every call of the tests is picked up.
pub const MAPO: (f64, f64) = (37.5663, 126.9019);

/// Writes each test once and runs it on both stores:
///
/// ```ignore
/// on_both_stores! {
///     /// What the test shows.
///     async fn something_holds(store: Store) { … }
/// }
/// ```
///
/// keeps `something_holds` as a function and adds `mod something_holds { sqlite, postgres }`,
/// two tokio tests. The PostgreSQL one returns early when no server is reachable (outside CI).
macro_rules! on_both_stores {
    ($($(#[$attr:meta])* async fn $name:ident($store:ident: Store) $body:block)+) => {$(
        $(#[$attr])*
        async fn $name($store: store::Store) $body

        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                crate::support::run_on(store::testing::TestBackend::Sqlite, super::$name).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                crate::support::run_on(store::testing::TestBackend::Postgres, super::$name).await;
            }
        }
    )+};
}

/// Like [`on_both_stores!`], for a test of what only PostgreSQL has (its query plans, its
/// snapshot visibility): keeps the function and adds `mod something_holds { postgres }`.
macro_rules! on_postgres {
    ($($(#[$attr:meta])* async fn $name:ident($store:ident: Store) $body:block)+) => {$(
        $(#[$attr])*
        async fn $name($store: store::Store) $body

        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                crate::support::run_on(store::testing::TestBackend::Postgres, super::$name).await;
            }
        }
    )+};
}

/// Runs `test` on a fresh, migrated database of `backend` within [`TEST_TIMEOUT`], then
/// removes the database (a failed test leaves it behind for inspection).
pub async fn run_on<F, Fut>(backend: TestBackend, test: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(url) = fresh_database_url(backend).await else {
        return;
    };
    let store = Store::connect(&url).await.expect("connect to the test database");
    store.migrate().await.expect("migrate the test database");
    tokio::time::timeout(TEST_TIMEOUT, test(store.clone()))
        .await
        .unwrap_or_else(|_| panic!("the test on {backend:?} ran longer than {TEST_TIMEOUT:?}"));
    store.close().await;
    drop_database(&url).await;
}

async fn drop_database(url: &str) {
    if let Some(path) = url.strip_prefix("sqlite://") {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{path}{suffix}"));
        }
    } else if let Some((_, name)) = url.rsplit_once('/') {
        use sqlx::Connection;
        let server = std::env::var("DRIVERCENTER_TEST_PG").unwrap_or_else(|_| DEFAULT_TEST_PG.to_string());
        if let Ok(mut admin) = sqlx::PgConnection::connect(&format!("{server}/postgres")).await {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut admin).await;
        }
    }
}

/// Now, to the microsecond: the precision the log keeps for `recorded_at`.
pub fn now() -> Timestamp {
    Utc::now().trunc_subsecs(6)
}

/// Metadata of a command a test issues on behalf of `correlation_id`.
pub fn meta(correlation_id: Uuid) -> CommandMeta {
    CommandMeta {
        correlation_id,
        causation_id: Uuid::now_v7(),
        command_id: Uuid::now_v7(),
        actor: "integration-test".to_string(),
        recorded_at: now(),
    }
}

/// Runs a command that must succeed, correlated with the aggregate it addresses.
pub async fn exec<A>(store: &Store, id: Uuid, command: A::Command) -> Committed
where
    A: store::Stored,
    A::Command: Clone + Send + Sync + std::fmt::Debug,
{
    let description = format!("{command:?}");
    store
        .execute::<A>(id, command, &meta(id))
        .await
        .unwrap_or_else(|error| panic!("{} {id} refused {description}: {error}", A::TYPE))
}

/// A place `metres` north of 마포구's centre.
pub fn north_of_mapo(metres: f64) -> Location {
    Location { address: format!("마포구 +{metres}m"), lat: MAPO.0 + metres / 111_320.0, lng: MAPO.1 }
}

/// A mobile number unique to `n`.
pub fn tel(n: u32) -> Tel {
    Tel::parse(&format!("010{n:08}")).expect("a valid mobile number")
}

pub async fn register_driver(store: &Store, name: &str, can_drive_manual: bool) -> Uuid {
    let driver_id = Uuid::now_v7();
    let register = DriverCommand::Register {
        driver_id,
        name: name.to_string(),
        tel: tel(driver_id.as_u128() as u32 % 100_000_000),
        can_drive_manual,
        at: now(),
    };
    exec::<Driver>(store, driver_id, register).await;
    driver_id
}

/// A registered driver who is online `metres` north of 마포구's centre.
pub async fn online_driver(store: &Store, name: &str, can_drive_manual: bool, metres: f64) -> Uuid {
    let driver_id = register_driver(store, name, can_drive_manual).await;
    let online = DriverCommand::GoOnline { location: north_of_mapo(metres), at: now() };
    exec::<Driver>(store, driver_id, online).await;
    driver_id
}

/// A call from customer `customer` at 마포구's centre.
pub fn call_request(customer: u32, drive_type: DriveType, requested_at: Timestamp) -> CallRequest {
    CallRequest {
        call_id: Uuid::now_v7(),
        tel: tel(customer),
        pickup: north_of_mapo(0.0),
        destination: Some(north_of_mapo(3_000.0)),
        drive_type,
        fare: Fare::new(25_000).expect("a valid fare"),
        requested_at,
    }
}

/// Requests a call now and returns its id.
pub async fn request_call(store: &Store, customer: u32, drive_type: DriveType) -> Uuid {
    let request = call_request(customer, drive_type, now());
    let call_id = request.call_id;
    exec::<domain::Call>(store, call_id, CallCommand::Request(request)).await;
    call_id
}

/// Writes one event row by hand inside `tx`, as the store would, so that a test can
/// hold it uncommitted.
pub async fn insert_event<A: Aggregate>(tx: &mut Tx, id: Uuid, sequence: i64, event: &A::Event, meta: &CommandMeta) {
    let payload = serde_json::to_value(event).expect("serialise the event");
    let metadata = serde_json::to_value(meta).expect("serialise the metadata");
    on_tx!(tx, conn => {
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(A::TYPE)
        .bind(id.to_string())
        .bind(sequence)
        .bind(event.event_type())
        .bind(event.event_version())
        .bind(payload)
        .bind(metadata)
        .execute(conn)
        .await
        .expect("insert an event by hand");
    });
}

/// How many committed events lie after `after`, whether or not a reader may see them yet
/// (on PostgreSQL a transaction in flight anywhere on the server holds readers back).
pub async fn unread_events(store: &Store, after: LogPosition) -> i64 {
    let counted = match store.db() {
        Db::Sqlite(pool) => {
            sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE position > $1")
                .bind(after.prepare)
                .fetch_one(pool)
                .await
        }
        Db::Postgres(pool) => {
            sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE (transaction_id, position) > ($1::text::xid8, $2)")
                .bind(after.commit.to_string())
                .bind(after.prepare)
                .fetch_one(pool)
                .await
        }
    };
    counted.expect("count unread events")
}

/// Whether subscriber `name` has read every committed event.
pub async fn caught_up(store: &Store, name: &str) -> bool {
    let position = checkpoint::read(store, name).await.expect("read a checkpoint");
    unread_events(store, position).await == 0
}
