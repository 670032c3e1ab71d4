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
use super::{ApiError, Items};
use crate::AppState;

/// Each message of the call with its delivery state, oldest first.
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

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    state: Option<String>,
    limit: Option<String>,
}

/// Messages in one delivery state (DEAD unless `state=` says otherwise), oldest first.
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
