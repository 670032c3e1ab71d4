//! Read models: the call view (which also serves each customer's history), the driver
//! view and the assignment view. Each is a checkpointed subscriber of the log that
//! writes its rows and its checkpoint in one transaction, so every event is applied
//! exactly once, across crashes and restarts, and a replay rebuilds the same bytes.
//!
//! Depends on the domain and the store; knows nothing of HTTP or the saga.

mod labels;
#[cfg(feature = "openapi")]
pub mod openapi;
mod projector;
pub mod queries;
mod replay;
mod rows;
mod views;

pub use projector::{Projector, ViewChange, ViewChanges, BATCH_SIZE};
pub use replay::{replay, replay_all, REPLAY_BATCH_SIZE};
pub use views::{AssignmentView, CallView, DriverSummary, DriverView, StreamView};

/// Every projection's name, as `replay` accepts it.
pub const PROJECTIONS: [&str; 3] = [CallView::NAME, DriverView::NAME, AssignmentView::NAME];
