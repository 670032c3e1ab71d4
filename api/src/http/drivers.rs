//! The driver roster (대리기사관리): register, online, location, offline, look up.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use domain::{Driver, DriverCommand, DriverStatus};
use projections::{queries, DriverView};
use serde::Deserialize;
use uuid::Uuid;

use super::calls::with_location;
use super::extract::{Json, PathId, Query, RequestContext};
use super::input::{command_meta, parse_tel, LocationInput};
use super::wait::view_at;
use super::{ApiError, Items};
use crate::AppState;

const ACTOR: &str = "driver";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterDriver {
    name: String,
    tel: String,
    #[serde(default)]
    can_drive_manual: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocationBody {
    location: LocationInput,
}

/// Runs a command on a driver and answers with the view that shows it.
async fn change_driver(
    state: &AppState,
    context: RequestContext,
    driver_id: Uuid,
    command: DriverCommand,
) -> Result<Option<DriverView>, ApiError> {
    let committed = state.store.execute::<Driver>(driver_id, command, &command_meta(context, driver_id, ACTOR)).await?;
    view_at::<DriverView>(state, driver_id, committed.version).await
}

fn accepted(view: Option<DriverView>) -> Response {
    (StatusCode::ACCEPTED, axum::Json(view)).into_response()
}

pub async fn register(
    State(state): State<AppState>,
    context: RequestContext,
    Json(input): Json<RegisterDriver>,
) -> Result<Response, ApiError> {
    let tel = parse_tel(&input.tel)?;
    let driver_id = Uuid::now_v7();
    let command = DriverCommand::Register {
        driver_id,
        name: input.name,
        tel,
        can_drive_manual: input.can_drive_manual,
        at: Utc::now(),
    };
    let view = change_driver(&state, context, driver_id, command).await?;
    Ok(with_location(StatusCode::CREATED, &format!("/drivers/{driver_id}"), &view))
}

pub async fn go_online(
    State(state): State<AppState>,
    context: RequestContext,
    PathId(driver_id): PathId,
    Json(input): Json<LocationBody>,
) -> Result<Response, ApiError> {
    let location = input.location.parse()?;
    let view = change_driver(&state, context, driver_id, DriverCommand::GoOnline { location, at: Utc::now() }).await?;
    Ok(accepted(view))
}

pub async fn update_location(
    State(state): State<AppState>,
    context: RequestContext,
    PathId(driver_id): PathId,
    Json(input): Json<LocationBody>,
) -> Result<Response, ApiError> {
    let location = input.location.parse()?;
    let view =
        change_driver(&state, context, driver_id, DriverCommand::UpdateLocation { location, at: Utc::now() }).await?;
    Ok(accepted(view))
}

pub async fn go_offline(
    State(state): State<AppState>,
    context: RequestContext,
    PathId(driver_id): PathId,
) -> Result<Response, ApiError> {
    let view = change_driver(&state, context, driver_id, DriverCommand::GoOffline { at: Utc::now() }).await?;
    Ok(accepted(view))
}

pub async fn show(
    State(state): State<AppState>,
    PathId(driver_id): PathId,
) -> Result<axum::Json<DriverView>, ApiError> {
    queries::get::<DriverView>(&state.store, driver_id)
        .await?
        .map(axum::Json)
        .ok_or_else(|| ApiError::not_found("DRIVER_NOT_FOUND", format!("no driver has the id {driver_id}")))
}

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    status: Option<String>,
}

pub fn parse_status(status: &str) -> Result<DriverStatus, ApiError> {
    match status {
        "OFFLINE" => Ok(DriverStatus::Offline),
        "AVAILABLE" => Ok(DriverStatus::Available),
        "ASSIGNED" => Ok(DriverStatus::Assigned),
        other => Err(ApiError::invalid(
            "INVALID_STATUS",
            format!("status must be OFFLINE, AVAILABLE or ASSIGNED, not `{other}`"),
        )),
    }
}

pub async fn list(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<axum::Json<Items<DriverView>>, ApiError> {
    let status = query.status.as_deref().map(parse_status).transpose()?;
    let items = queries::drivers(&state.store, status).await?;
    Ok(axum::Json(Items { items }))
}
