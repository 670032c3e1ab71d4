//! Liveness, readiness and the answers for routes that do not exist.

use axum::extract::State;
use axum::http::{header, StatusCode, Uri};
use axum::response::IntoResponse;
use serde::Serialize;

use super::ApiError;
use crate::AppState;

/// The body of the health answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`, `ready`, or why the process is not ready.
    #[schema(example = "ready")]
    status: &'static str,
}

/// Alive as long as the process answers at all.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "liveness",
    tag = "operations",
    responses((status = 200, description = "the process is alive (`ok`)", body = Health))
)]
pub async fn healthz() -> axum::Json<Health> {
    axum::Json(Health { status: "ok" })
}

/// Ready while the store answers with every migration applied and no shutdown began.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readiness",
    tag = "operations",
    responses(
        (status = 200, description = "ready to serve (`ready`)", body = Health),
        (status = 503, description = "the store is unavailable or not migrated, or shutdown began", body = Health),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, axum::Json<Health>) {
    let (status, reason) = if !state.is_accepting() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down")
    } else if !state.store.is_ready().await {
        (StatusCode::SERVICE_UNAVAILABLE, "store unavailable or not migrated")
    } else {
        (StatusCode::OK, "ready")
    };
    (status, axum::Json(Health { status: reason }))
}

/// Prometheus text format: HTTP, dispatch, subscriber, saga, notifier and overload metrics.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain; version=0.0.4"))
)]
pub async fn metrics() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], crate::telemetry::metrics().render())
}

pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found("NOT_FOUND", format!("no route for {}", uri.path()))
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED", "this route does not take that method")
}
