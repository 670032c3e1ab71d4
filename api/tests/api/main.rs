//! The black-box API suite: the real server on a local port, over HTTP, on both stores.
//!
//! Every scenario is a module named as a sentence with two tests, `sqlite` and
//! `postgres` (see [`harness::scenario`]).

mod harness;

mod bad_input;
mod calls;
mod compat;
mod dispatch;
mod drivers;
mod history;
mod metrics;
mod notifications;
mod openapi;
mod overload;
mod replay;
mod stream;
