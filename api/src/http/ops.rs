//! Liveness, readiness and the answers for routes that do not exist.

use axum::extract::State;
use axum::http::{header, StatusCode, Uri};
use axum::response::IntoResponse;
use serde_json::json;

use super::ApiError;
use crate::AppState;

/// Alive as long as the process answers at all.
pub async fn healthz() -> impl IntoResponse {
    axum::Json(json!({ "status": "ok" }))
}

/// Ready while the store answers with every migration applied and no shutdown began.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let (status, reason) = if !state.is_accepting() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down")
    } else if !state.store.is_ready().await {
        (StatusCode::SERVICE_UNAVAILABLE, "store unavailable or not migrated")
    } else {
        (StatusCode::OK, "ready")
    };
    (status, axum::Json(json!({ "status": reason })))
}

/// Prometheus text format: HTTP, dispatch, subscriber, saga, notifier and overload metrics.
pub async fn metrics() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], crate::telemetry::metrics().render())
}

pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found("NOT_FOUND", format!("no route for {}", uri.path()))
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED", "this route does not take that method")
}
