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
pub mod openapi;
mod ops;
mod wait;

use std::sync::Arc;

use axum::http::{HeaderName, Request};
use axum::{Extension, Router};
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub use calls::EventRecord;
pub use error::ApiError;

use crate::AppState;

/// A listing: `{"items": […]}`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Items<T> {
    pub items: Vec<T>,
}

/// One page of a longer listing, and the cursor of the next (null on the last).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
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

/// Every route the API serves, each with its OpenAPI operation: a handler is routed only
/// through `routes!`, which takes its path and method from the handler's
/// `#[utoipa::path]`, so nothing is served that the document does not describe.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(calls::create, calls::history))
        .routes(routes!(calls::show, calls::cancel_by_delete))
        .routes(routes!(calls::cancel))
        .routes(routes!(calls::complete))
        .routes(routes!(calls::timeline))
        .routes(routes!(calls::stream))
        .routes(routes!(notifications::of_call))
        .routes(routes!(notifications::list))
        .routes(routes!(notifications::retry))
        .routes(routes!(drivers::register, drivers::list))
        .routes(routes!(drivers::show))
        .routes(routes!(drivers::go_online))
        .routes(routes!(drivers::update_location))
        .routes(routes!(drivers::go_offline))
        .routes(routes!(assignments::list))
        .routes(routes!(assignments::show))
        .routes(routes!(openapi::document))
        .routes(routes!(openapi::docs_page))
        .routes(routes!(openapi::docs_asset))
        .merge(compat::routes())
        .merge(operations())
}

/// The probes and the metrics scrape: all a worker process serves.
fn operations() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
}

/// The OpenAPI document of [`routes`], as `GET /openapi.json` serves it.
pub fn openapi() -> utoipa::openapi::OpenApi {
    openapi::finish(routes().into_openapi())
}

/// The whole API, with its layers.
pub fn router(state: AppState) -> Router {
    with_layers(routes(), state)
}

/// Only the operational routes, for a worker process.
pub fn operations_router(state: AppState) -> Router {
    with_layers(operations(), state)
}

fn with_layers(routes: OpenApiRouter<AppState>, state: AppState) -> Router {
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
    // The document served is the one of the very routes served.
    let (routes, document) = routes.split_for_parts();
    routes
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard::shed))
        .with_state(state)
        .layer(axum::middleware::from_fn(guard::buffer_body))
        .layer(Extension(Arc::new(openapi::finish(document))))
        .layer(axum::middleware::from_fn(guard::observe))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(trace)
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuidV7))
}
