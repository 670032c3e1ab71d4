//! Customer notifications: what a call's customer was sent, and the operators' view of
//! messages by delivery state, with a retry for dead ones.

use axum::extract::State;
use axum::http::StatusCode;
use domain::Call;
use notifier::{queries, Notification, NotificationState, NotifierError};
use serde::Deserialize;
use uuid::Uuid;

use super::calls::call_not_found;
use super::extract::{PathId, Query};
use super::input::parse_limit;
use super::openapi::StoreFailure;
use super::{ApiError, Items};
use crate::AppState;

/// Each message of the call with its delivery state, oldest first.
#[utoipa::path(
    get,
    path = "/calls/{call_id}/notifications",
    operation_id = "list_call_notifications",
    tag = "notifications",
    params(("call_id" = Uuid, Path, description = "the call whose messages to show")),
    responses(
        (status = 200, description = "the call's messages and their delivery state", body = Items<Notification>),
        (status = 404, description = "`CALL_NOT_FOUND`: no such call; `NOT_FOUND`: the id is not a UUID"),
        StoreFailure,
    )
)]
pub async fn of_call(
    State(state): State<AppState>,
    PathId(call_id): PathId,
) -> Result<axum::Json<Items<Notification>>, ApiError> {
    let (_, version) = state.store.load::<Call>(call_id).await?;
    if version == 0 {
        return Err(call_not_found(call_id));
    }
    let items = queries::for_call(&state.store, call_id).await.map_err(problem)?;
    Ok(axum::Json(Items { items }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `PENDING`, `DELIVERED` or `DEAD` (the default).
    state: Option<String>,
    /// 1 to 100, default 20.
    limit: Option<String>,
}

/// Messages in one delivery state (DEAD unless `state=` says otherwise), oldest first.
#[utoipa::path(
    get,
    path = "/notifications",
    operation_id = "list_notifications",
    tag = "notifications",
    params(ListQuery),
    responses(
        (status = 200, description = "messages in that state", body = Items<Notification>),
        (status = 422, description = "`INVALID_STATE`, `INVALID_LIMIT`, `INVALID_QUERY`"),
        StoreFailure,
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<axum::Json<Items<Notification>>, ApiError> {
    let wanted = match query.state.as_deref() {
        None => NotificationState::Dead,
        Some(raw) => NotificationState::parse(raw)
            .ok_or_else(|| ApiError::invalid("INVALID_STATE", "state must be PENDING, DELIVERED or DEAD"))?,
    };
    let limit = parse_limit(query.limit.as_deref())?;
    let items = queries::by_state(&state.store, wanted, limit).await.map_err(problem)?;
    Ok(axum::Json(Items { items }))
}

/// Puts a dead message back in line, due now with its attempts reset.
#[utoipa::path(
    post,
    path = "/notifications/{notification_id}/retry",
    operation_id = "retry_notification",
    tag = "notifications",
    params(("notification_id" = Uuid, Path, description = "the dead message to send again")),
    responses(
        (status = 202, description = "the message, PENDING again", body = Notification),
        (status = 404, description = "`NOTIFICATION_NOT_FOUND`: no such message; `NOT_FOUND`: the id is not a UUID"),
        (status = 409, description = "`NOTIFICATION_NOT_DEAD`: only a DEAD message can be retried"),
        StoreFailure,
    )
)]
pub async fn retry(
    State(state): State<AppState>,
    PathId(id): PathId,
) -> Result<(StatusCode, axum::Json<Notification>), ApiError> {
    let notification = queries::retry(&state.store, id).await.map_err(problem)?;
    tracing::info!(notification_id = %id, correlation_id = %notification.call_id, "notification retry requested");
    Ok((StatusCode::ACCEPTED, axum::Json(notification)))
}

fn problem(error: NotifierError) -> ApiError {
    match error {
        NotifierError::NotFound(id) => not_found(id),
        NotifierError::NotDead { id, state } => ApiError::new(
            StatusCode::CONFLICT,
            "NOTIFICATION_NOT_DEAD",
            format!("notification {id} is {state}; only a DEAD one can be retried"),
        ),
        NotifierError::Store(error) => error.into(),
        other => ApiError::Internal(Box::new(other)),
    }
}

fn not_found(id: Uuid) -> ApiError {
    ApiError::not_found("NOTIFICATION_NOT_FOUND", format!("no notification has the id {id}"))
}
