//! Assignments (대리기사할당): one per call, as the dispatch saga left it.

use axum::extract::State;
use projections::{queries, AssignmentView};

use super::extract::PathId;
use super::{ApiError, Items};
use crate::AppState;

pub async fn show(
    State(state): State<AppState>,
    PathId(call_id): PathId,
) -> Result<axum::Json<AssignmentView>, ApiError> {
    queries::get::<AssignmentView>(&state.store, call_id)
        .await?
        .map(axum::Json)
        .ok_or_else(|| ApiError::not_found("ASSIGNMENT_NOT_FOUND", format!("no assignment for call {call_id}")))
}

pub async fn list(State(state): State<AppState>) -> Result<axum::Json<Items<AssignmentView>>, ApiError> {
    let items = queries::list::<AssignmentView>(&state.store, queries::MAX_LIST).await?;
    Ok(axum::Json(Items { items }))
}
