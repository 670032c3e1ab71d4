//! Assignments (대리기사할당): one per call, as the dispatch saga left it.

use axum::extract::State;
use projections::{queries, AssignmentView};

use super::extract::PathId;
use super::openapi::StoreFailure;
use super::{ApiError, Items};
use crate::AppState;

/// One call's dispatch.
#[utoipa::path(
    get,
    path = "/assignments/{call_id}",
    operation_id = "get_assignment",
    tag = "assignments",
    params(("call_id" = Uuid, Path, description = "the call whose dispatch to show")),
    responses(
        (status = 200, description = "the assignment view", body = AssignmentView),
        (status = 404, description = "`ASSIGNMENT_NOT_FOUND`: the call has no assignment (yet); \
                                      `NOT_FOUND`: the id is not a UUID"),
        StoreFailure,
    )
)]
pub async fn show(
    State(state): State<AppState>,
    PathId(call_id): PathId,
) -> Result<axum::Json<AssignmentView>, ApiError> {
    queries::get::<AssignmentView>(&state.store, call_id)
        .await?
        .map(axum::Json)
        .ok_or_else(|| ApiError::not_found("ASSIGNMENT_NOT_FOUND", format!("no assignment for call {call_id}")))
}

/// Every call's dispatch, newest first (at most 1000).
#[utoipa::path(
    get,
    path = "/assignments",
    operation_id = "list_assignments",
    tag = "assignments",
    responses((status = 200, description = "the assignments", body = Items<AssignmentView>), StoreFailure)
)]
pub async fn list(State(state): State<AppState>) -> Result<axum::Json<Items<AssignmentView>>, ApiError> {
    let items = queries::list::<AssignmentView>(&state.store, queries::MAX_LIST).await?;
    Ok(axum::Json(Items { items }))
}
