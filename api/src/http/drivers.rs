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
use super::openapi::{BodyRejection, StoreFailure};
use super::wait::view_at;
use super::{ApiError, Items};
use crate::AppState;

const ACTOR: &str = "driver";

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterDriver {
    /// 1 to 50 characters.
    #[schema(example = "안채우")]
    name: String,
    /// A Korean mobile number, digits with optional dashes; stored as digits.
    #[schema(example = "010-3345-7789")]
    tel: String,
    /// Whether the driver can drive a manual transmission (default false).
    #[serde(default)]
    can_drive_manual: bool,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
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

/// Registers a driver, `OFFLINE` until they go online.
#[utoipa::path(
    post,
    path = "/drivers",
    operation_id = "register_driver",
    tag = "drivers",
    request_body = RegisterDriver,
    responses(
        (status = 201, description = "registered", body = DriverView,
         headers(("Location" = String, description = "`/drivers/{driver_id}`"))),
        (status = 422, description = "`INVALID_NAME`, `INVALID_TEL`, `INVALID_BODY`"),
        BodyRejection,
        StoreFailure,
    )
)]
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

/// The driver goes online at a location and becomes `AVAILABLE` (already online: the
/// location moves).
#[utoipa::path(
    post,
    path = "/drivers/{driver_id}/online",
    operation_id = "driver_goes_online",
    tag = "drivers",
    params(("driver_id" = Uuid, Path, description = "the driver's id")),
    request_body = LocationBody,
    responses(
        (status = 202, description = "online; the view at or after the change", body = Option<DriverView>),
        (status = 404, description = "`DRIVER_NOT_FOUND`: no driver has this id; `NOT_FOUND`: the id is not a UUID"),
        (status = 422, description = "`UNKNOWN_LOCATION`, `INVALID_LOCATION`, `INVALID_BODY`"),
        (status = 409, description = "`CONCURRENT_MODIFICATION`: the driver kept changing; try again"),
        BodyRejection,
        StoreFailure,
    )
)]
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

/// An online driver's new location.
#[utoipa::path(
    put,
    path = "/drivers/{driver_id}/location",
    operation_id = "update_driver_location",
    tag = "drivers",
    params(("driver_id" = Uuid, Path, description = "the driver's id")),
    request_body = LocationBody,
    responses(
        (status = 202, description = "moved; the view at or after the change", body = Option<DriverView>),
        (status = 404, description = "`DRIVER_NOT_FOUND`: no driver has this id; `NOT_FOUND`: the id is not a UUID"),
        (status = 409, description = "`DRIVER_OFFLINE`: only an online driver has a location; \
                                      `CONCURRENT_MODIFICATION`"),
        (status = 422, description = "`UNKNOWN_LOCATION`, `INVALID_LOCATION`, `INVALID_BODY`"),
        BodyRejection,
        StoreFailure,
    )
)]
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

/// The driver goes off duty (`OFFLINE`); not while `ASSIGNED`.
#[utoipa::path(
    post,
    path = "/drivers/{driver_id}/offline",
    operation_id = "driver_goes_offline",
    tag = "drivers",
    params(("driver_id" = Uuid, Path, description = "the driver's id")),
    responses(
        (status = 202, description = "offline; the view at or after the change", body = Option<DriverView>),
        (status = 404, description = "`DRIVER_NOT_FOUND`: no driver has this id; `NOT_FOUND`: the id is not a UUID"),
        (status = 409, description = "`DRIVER_ASSIGNED`: the driver is reserved for a call; `CONCURRENT_MODIFICATION`"),
        StoreFailure,
    )
)]
pub async fn go_offline(
    State(state): State<AppState>,
    context: RequestContext,
    PathId(driver_id): PathId,
) -> Result<Response, ApiError> {
    let view = change_driver(&state, context, driver_id, DriverCommand::GoOffline { at: Utc::now() }).await?;
    Ok(accepted(view))
}

/// One driver.
#[utoipa::path(
    get,
    path = "/drivers/{driver_id}",
    operation_id = "get_driver",
    tag = "drivers",
    params(("driver_id" = Uuid, Path, description = "the driver's id")),
    responses(
        (status = 200, description = "the driver view", body = DriverView),
        (status = 404, description = "`DRIVER_NOT_FOUND`: no driver has this id; `NOT_FOUND`: the id is not a UUID"),
        StoreFailure,
    )
)]
pub async fn show(
    State(state): State<AppState>,
    PathId(driver_id): PathId,
) -> Result<axum::Json<DriverView>, ApiError> {
    queries::get::<DriverView>(&state.store, driver_id)
        .await?
        .map(axum::Json)
        .ok_or_else(|| ApiError::not_found("DRIVER_NOT_FOUND", format!("no driver has the id {driver_id}")))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only drivers with this status.
    #[param(value_type = Option<projections::openapi::DriverStatus>)]
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

/// The drivers, in order of registration (at most 1000).
#[utoipa::path(
    get,
    path = "/drivers",
    operation_id = "list_drivers",
    tag = "drivers",
    params(ListQuery),
    responses(
        (status = 200, description = "the drivers", body = Items<DriverView>),
        (status = 422, description = "`INVALID_STATUS`, `INVALID_QUERY`"),
        StoreFailure,
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<axum::Json<Items<DriverView>>, ApiError> {
    let status = query.status.as_deref().map(parse_status).transpose()?;
    let items = queries::drivers(&state.store, status).await?;
    Ok(axum::Json(Items { items }))
}
