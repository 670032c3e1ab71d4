//! The dispatch saga: a process manager that reads the log from its own checkpoint and
//! turns facts into commands. A requested call gets an assignment and the nearest free
//! driver who can drive the car; a refused reservation moves on to the next candidate; a
//! call nobody can take waits until a driver turns up or its deadline passes; a cancel or
//! a completion releases the driver.
//!
//! It acts at least once: after a crash it reads again from its last checkpoint, so every
//! reaction is idempotent (aggregates accept a repeat as a no-op, command ids are derived
//! from the event that caused them). Its state (drivers it knows, calls waiting, their
//! deadlines) is saved with its checkpoint, never kept only in memory. One call's commands
//! run in order, different calls' concurrently (ADR 5).
//!
//! Depends on the domain and the store; knows nothing of HTTP or the views.

mod candidates;
mod dispatcher;
mod state;

pub use dispatcher::{DispatchSaga, SagaConfig, SAGA_NAME};
