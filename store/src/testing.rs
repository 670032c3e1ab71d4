//! Fresh databases for tests: a new SQLite file or a new PostgreSQL database per test.
//!
//! PostgreSQL tests read `DRIVERCENTER_TEST_PG` (default
//! `postgres://postgres@127.0.0.1:5432`). When the server cannot be reached they are
//! skipped with a message, except under `CI=true`, where that is a failure.

use sqlx::Connection;
use uuid::Uuid;

use crate::Store;

pub const DEFAULT_TEST_PG: &str = "postgres://postgres@127.0.0.1:5432";

/// Which store a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestBackend {
    Sqlite,
    Postgres,
}

/// The URL of a database no other test uses, or `None` when PostgreSQL is not
/// reachable outside CI (the caller then skips).
pub async fn fresh_database_url(backend: TestBackend) -> Option<String> {
    match backend {
        TestBackend::Sqlite => {
            let dir = std::env::temp_dir().join("drivercenter-tests");
            std::fs::create_dir_all(&dir).expect("create the test directory");
            Some(format!("sqlite://{}", dir.join(format!("{}.db", Uuid::now_v7())).display()))
        }
        TestBackend::Postgres => {
            let server = std::env::var("DRIVERCENTER_TEST_PG").unwrap_or_else(|_| DEFAULT_TEST_PG.to_string());
            let admin_url = format!("{server}/postgres");
            let mut admin = match sqlx::PgConnection::connect(&admin_url).await {
                Ok(admin) => admin,
                Err(error) if std::env::var("CI").as_deref() != Ok("true") => {
                    eprintln!("SKIPPED: PostgreSQL at {server} is not reachable ({error}); set DRIVERCENTER_TEST_PG");
                    return None;
                }
                Err(error) => panic!("CI=true requires PostgreSQL at {server}: {error}"),
            };
            let name = format!("drivercenter_test_{}", Uuid::now_v7().simple());
            sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.expect("create a test database");
            Some(format!("{server}/{name}"))
        }
    }
}

/// A migrated store on a fresh database, or `None` when the test must skip.
pub async fn fresh_store(backend: TestBackend) -> Option<Store> {
    let url = fresh_database_url(backend).await?;
    let store = Store::connect(&url).await.expect("connect to the test database");
    store.migrate().await.expect("migrate the test database");
    Some(store)
}
