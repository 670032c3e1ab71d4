//! The HTTP contract of `shared/API.md`: routes, inputs, problem responses.

mod assignments;
mod calls;
mod compat;
mod drivers;
mod error;
mod extract;
mod guard;
mod input;
mod notifications;
mod ops;
mod wait;

use axum::extract::DefaultBodyLimit;
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

/// The largest request body any route takes: a call or a driver is a few hundred bytes.
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024;

pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Request ids are UUIDv7, so that they sort by time like every other id here.
#[derive(Debug, Clone, Copy)]
struct MakeRequestUuidV7;

impl MakeRequestId for MakeRequestUuidV7 {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        Uuid::now_v7().to_string().parse().ok().map(RequestId::new)
    }
}

/// The whole API, with its layers.
pub fn router(state: AppState) -> Router {
    let routes = Router::new()
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
        .merge(compat::routes());
    with_layers(routes.merge(operations()), state)
}

/// Only the operational routes, for a worker process: probes and metrics.
pub fn operations_router(state: AppState) -> Router {
    with_layers(operations(), state)
}

fn operations() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
}

fn with_layers(routes: Router<AppState>, state: AppState) -> Router {
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
    routes
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard::shed))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
        .layer(axum::middleware::from_fn(guard::observe))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(trace)
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuidV7))
}
