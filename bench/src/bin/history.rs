//! `drivercenter-history-bench`: what a long history costs a command. Gives one driver a
//! history of `--events` real events (reservations and releases, written straight into
//! the log as the store would write them), then times Reserve and Release on that driver
//! and on a new one, taking turns, with the aggregate cache off (every command loads its
//! state from the latest snapshot and the events after it) and on. Prints one JSON object.
//!
//!   drivercenter-history-bench --database-url postgres://…/scratch --events 50000
//!
//! Migrates the database it is given and adds two drivers to it: use a scratch database.

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use clap::Parser;
use cqrs_es::DomainEvent;
use domain::{DriveType, Driver, DriverCommand, DriverEvent, Location, ReleaseReason, Tel};
use serde_json::json;
use store::{on_db, CommandMeta, Db, Store, StoreOptions};
use uuid::Uuid;

#[derive(Debug, Parser)]
#[command(name = "drivercenter-history-bench", version, about = "What a driver's long history costs a command")]
struct Args {
    /// The database to use (sqlite://PATH or postgres://…); it is migrated.
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    /// Past events of the driver with a history.
    #[arg(long, default_value_t = 50_000, value_parser = clap::value_parser!(u32).range(2..=5_000_000))]
    events: u32,
    /// Reserve/Release pairs timed per driver and cache setting.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    samples: u32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cold = Store::connect_with(&args.database_url, StoreOptions { aggregate_cache: 0 }).await?;
    cold.migrate().await?;
    let warm = Store::connect(&args.database_url).await?;

    let new_driver = online_driver(&cold, "신입기사").await?;
    let old_driver = online_driver(&cold, "고참기사").await?;
    let started = Instant::now();
    write_history(&cold, old_driver, args.events).await?;
    eprintln!("wrote {} past events in {:.1?}", args.events, started.elapsed());

    let mut results = serde_json::Map::new();
    for (name, store) in [("cache_off", &cold), ("cache_on", &warm)] {
        let mut timings = [Timings::default(), Timings::default()];
        for _ in 0..args.samples {
            for (timing, driver_id) in timings.iter_mut().zip([new_driver, old_driver]) {
                timing.cycle(store, driver_id).await?;
            }
        }
        let [new, old] = timings.map(|timing| timing.summary());
        let ratio = |key: &str| old[key].as_f64().unwrap_or(0.0) / new[key].as_f64().unwrap_or(f64::NAN);
        let ratios = json!({"reserve_p50": ratio("reserve_p50_us"), "release_p50": ratio("release_p50_us")});
        results.insert(name.to_string(), json!({"new_driver": new, "old_driver": old, "old_over_new": ratios}));
        eprintln!("{name}: {}", results[name]);
    }
    let (_, version) = cold.load::<Driver>(old_driver).await?;
    let summary = json!({
        "backend": format!("{:?}", cold.backend()).to_lowercase(),
        "history_events": version,
        "samples": args.samples,
        "results": results,
    });
    println!("{summary}");
    Ok(())
}

fn meta(subject: Uuid) -> CommandMeta {
    CommandMeta {
        correlation_id: subject,
        causation_id: Uuid::now_v7(),
        command_id: Uuid::now_v7(),
        actor: "history-bench".to_string(),
        recorded_at: Utc::now(),
    }
}

fn location() -> Location {
    Location { address: "서울 마포구".to_string(), lat: 37.5663, lng: 126.9019 }
}

async fn online_driver(store: &Store, name: &str) -> anyhow::Result<Uuid> {
    let driver_id = Uuid::now_v7();
    let tel = Tel::parse(&format!("010{:08}", driver_id.as_u128() % 100_000_000)).context("a mobile number")?;
    let register =
        DriverCommand::Register { driver_id, name: name.to_string(), tel, can_drive_manual: false, at: Utc::now() };
    store.execute::<Driver>(driver_id, register, &meta(driver_id)).await?;
    let online = DriverCommand::GoOnline { location: location(), at: Utc::now() };
    store.execute::<Driver>(driver_id, online, &meta(driver_id)).await?;
    Ok(driver_id)
}

/// Appends reservations and releases until the driver has `events` events, in the rows
/// the store writes, a chunk per transaction.
async fn write_history(store: &Store, driver_id: Uuid, events: u32) -> anyhow::Result<()> {
    const CHUNK: i64 = 1_000;
    let id = driver_id.to_string();
    let metadata = serde_json::to_string(&std::collections::HashMap::from([
        ("correlation_id", id.clone()),
        ("causation_id", id.clone()),
        ("command_id", id.clone()),
        ("actor", "history-bench".to_string()),
        ("recorded_at", Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
    ]))?;
    // Registered and online already: sequences 1 and 2.
    let mut sequence = 3;
    let mut call_id = Uuid::now_v7();
    while sequence <= i64::from(events) {
        let mut tx = store.begin().await?;
        let end = (sequence + CHUNK).min(i64::from(events) + 1);
        for sequence in sequence..end {
            let event = if sequence % 2 == 1 {
                call_id = Uuid::now_v7();
                DriverEvent::DriverReserved { call_id, reserved_at: Utc::now() }
            } else {
                DriverEvent::DriverReleased { call_id, reason: ReleaseReason::CallCompleted, released_at: Utc::now() }
            };
            let payload = serde_json::to_string(&event)?;
            let sql = match store.db() {
                Db::Sqlite(_) => {
                    "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)"
                }
                Db::Postgres(_) => {
                    "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
                     VALUES ($1, $2, $3, $4, $5, $6::json, $7::json)"
                }
            };
            store::on_tx!(&mut tx, conn => {
                sqlx::query(sql)
                    .bind("driver")
                    .bind(&id)
                    .bind(sequence)
                    .bind(event.event_type())
                    .bind(event.event_version())
                    .bind(&payload)
                    .bind(&metadata)
                    .execute(conn)
                    .await?;
            });
        }
        tx.commit().await?;
        sequence = end;
    }
    // An odd count leaves the driver reserved: release them, through the store.
    if events % 2 == 1 {
        let release = DriverCommand::Release { call_id, reason: ReleaseReason::CallCompleted, at: Utc::now() };
        store.execute::<Driver>(driver_id, release, &meta(driver_id)).await?;
    }
    on_db!(store.db(), pool => {
        sqlx::query("ANALYZE events").execute(pool).await?;
    });
    Ok(())
}

#[derive(Debug, Default)]
struct Timings {
    reserve: Vec<Duration>,
    release: Vec<Duration>,
}

impl Timings {
    async fn cycle(&mut self, store: &Store, driver_id: Uuid) -> anyhow::Result<()> {
        let call_id = Uuid::now_v7();
        let reserve = DriverCommand::Reserve { call_id, drive_type: DriveType::Auto, at: Utc::now() };
        let started = Instant::now();
        store.execute::<Driver>(driver_id, reserve, &meta(call_id)).await?;
        self.reserve.push(started.elapsed());
        let release = DriverCommand::Release { call_id, reason: ReleaseReason::CallCompleted, at: Utc::now() };
        let started = Instant::now();
        store.execute::<Driver>(driver_id, release, &meta(call_id)).await?;
        self.release.push(started.elapsed());
        Ok(())
    }

    fn summary(self) -> serde_json::Value {
        let micros = |mut samples: Vec<Duration>, quantile: f64| {
            samples.sort();
            let index = ((samples.len() as f64 - 1.0) * quantile).round() as usize;
            samples.get(index).map_or(0.0, |sample| sample.as_secs_f64() * 1e6)
        };
        json!({
            "reserve_p50_us": micros(self.reserve.clone(), 0.5),
            "reserve_p99_us": micros(self.reserve, 0.99),
            "release_p50_us": micros(self.release.clone(), 0.5),
            "release_p99_us": micros(self.release, 0.99),
        })
    }
}
