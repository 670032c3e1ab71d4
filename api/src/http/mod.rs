//! The HTTP contract of `shared/API.md`: routes, inputs, problem responses.

mod assignments;
mod calls;
mod compat;
mod drivers;
mod error;
mod extract;
mod input;
mod notifications;
mod ops;
mod wait;

use axum::http::{HeaderName, Request};
use axum::routing::{get, post, put};
use axum::Router;
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use uuid::Uuid;

pub use calls::event_json;
pub use error::ApiError;

use crate::AppState;

/// A listing: `{"items": […]}`.
#[derive(Debug, serde::Serialize)]
pub struct Items<T> {
    pub items: Vec<T>,
}

/// One page of a longer listing, and the cursor of the next (null on the last).
#[derive(Debug, serde::Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<Uuid>,
}

pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Request ids are UUIDv7, so that they sort by time like every other id here.
#[derive(Debug, Clone, Copy)]
struct MakeRequestUuidV7;

impl MakeRequestId for MakeRequestUuidV7 {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        Uuid::now_v7().to_string().parse().ok().map(RequestId::new)
    }
}

pub fn router(state: AppState) -> Router {
    let trace = TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
        let request_id = request.headers().get(REQUEST_ID).and_then(|value| value.to_str().ok()).unwrap_or("");
        tracing::info_span!(
            "request",
            method = %request.method(),
            path = %request.uri().path(),
            request_id,
            correlation_id = tracing::field::Empty,
        )
    });
    Router::new()
        .route("/calls", post(calls::create).get(calls::history))
        .route("/calls/{call_id}", get(calls::show).delete(calls::cancel))
        .route("/calls/{call_id}/cancel", post(calls::cancel))
        .route("/calls/{call_id}/complete", post(calls::complete))
        .route("/calls/{call_id}/timeline", get(calls::timeline))
        .route("/calls/{call_id}/stream", get(calls::stream))
        .route("/calls/{call_id}/notifications", get(notifications::of_call))
        .route("/notifications", get(notifications::list))
        .route("/notifications/{notification_id}/retry", post(notifications::retry))
        .route("/drivers", post(drivers::register).get(drivers::list))
        .route("/drivers/{driver_id}", get(drivers::show))
        .route("/drivers/{driver_id}/online", post(drivers::go_online))
        .route("/drivers/{driver_id}/location", put(drivers::update_location))
        .route("/drivers/{driver_id}/offline", post(drivers::go_offline))
        .route("/assignments", get(assignments::list))
        .route("/assignments/{call_id}", get(assignments::show))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .merge(compat::routes())
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .with_state(state)
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(trace)
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuidV7))
}
