//! `drivercenter-bench`: a load generator for the drivercenter HTTP API.
//!
//! It speaks to a running server over HTTP only, as customers and drivers would: it
//! registers drivers across Seoul, brings them online, then sends calls at a fixed
//! arrival rate (open loop) or a fixed number of waiting customers (closed loop), and
//! reports throughput, latencies, overload answers, the subscribers' lag and the server's
//! memory. It depends on no server crate but `domain`, for the district gazetteer.

pub mod arrivals;
pub mod client;
pub mod config;
pub mod error;
pub mod monitor;
pub mod report;
pub mod run;
pub mod seoul;
pub mod stats;

pub use config::{BenchArgs, ConfirmVia, Mode};
pub use error::BenchError;
pub use report::Summary;
pub use run::run;
