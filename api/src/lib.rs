//! The HTTP gateway and the `drivercenter` command line: serve, migrate, replay, events.
//!
//! The only crate that knows of axum and the process: everything it serves comes from
//! the domain, the store, the projections and the saga.

pub mod cli;
pub mod http;
mod listener;
mod monitor;
pub mod server;
pub mod telemetry;
mod waiters;

pub use server::{run, spawn_workers, AppState, Limits, Role, ServeConfig};
