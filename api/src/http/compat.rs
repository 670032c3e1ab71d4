//! The original service's routes, so that its README's demo commands work against the
//! gateway: `/drivercalls`, `/drivermanages`, `/driverassigns`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use domain::{Call, CallCommand, DriveType};
use projections::{queries, AssignmentView, CallView, DriverView};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::calls::{call_not_found, call_view, request_call, with_location, NewCall};
use super::extract::{Json, PathId, RequestContext};
use super::input::{command_meta, parse_fare, parse_tel, LocationInput};
use super::openapi::{also_at, BodyRejection, StoreFailure};
use super::wait::view_at;
use super::{assignments, drivers, ApiError, Items};
use crate::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        // The original README's gateway section spells it `driverscalls`.
        .routes(also_at(routes!(list, create), &["/drivercalls/", "/driverscalls", "/driverscalls/"]))
        .routes(routes!(show, cancel))
        .routes(also_at(routes!(drivermanages), &["/drivermanages/"]))
        .routes(also_at(routes!(driverassigns), &["/driverassigns/"]))
}

/// The original's body; `status` is ignored and `cost` may be a number or, as httpie
/// sends `cost=25000`, a string of digits.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct DriverCallBody {
    #[schema(example = "01012345678")]
    tel: String,
    /// The pickup address; it must name a Seoul district.
    #[schema(example = "마포")]
    location: String,
    /// Ignored.
    #[serde(default, rename = "status")]
    #[schema(value_type = Option<Object>)]
    _status: Option<Value>,
    /// The fare, whole KRW, as a number or a string of digits; default 0.
    #[serde(default)]
    #[schema(value_type = Option<i64>, minimum = 0, example = 25000)]
    cost: Option<Value>,
}

fn parse_cost(cost: Option<&Value>) -> Result<i64, ApiError> {
    let invalid = || ApiError::invalid("INVALID_FARE", "cost must be a whole number of KRW");
    match cost {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Number(number)) => number.as_i64().ok_or_else(invalid),
        Some(Value::String(text)) => text.trim().parse().map_err(|_| invalid()),
        Some(_) => Err(invalid()),
    }
}

/// A call in the original's shape.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DriverCall {
    id: Uuid,
    tel: String,
    /// The pickup address.
    location: String,
    /// The Korean status label, e.g. `호출확정`.
    #[schema(example = "호출")]
    status: String,
    /// The fare, whole KRW.
    cost: i64,
}

impl From<&CallView> for DriverCall {
    fn from(view: &CallView) -> Self {
        Self {
            id: view.call_id,
            tel: view.tel.clone(),
            location: view.pickup.address.clone(),
            status: view.status_label.clone(),
            cost: view.fare,
        }
    }
}

/// Calls a driver, in the original's shape (drive type `AUTO`).
#[utoipa::path(
    post,
    path = "/drivercalls",
    operation_id = "request_drivercall",
    tag = "compatibility",
    request_body = DriverCallBody,
    responses(
        (status = 201, description = "accepted; dispatch goes on in the background", body = DriverCall,
         headers(("Location" = String, description = "`/drivercalls/{id}`"))),
        (status = 422, description = "`INVALID_TEL`, `UNKNOWN_LOCATION`, `INVALID_LOCATION`, `INVALID_FARE`, \
                                      `INVALID_BODY`"),
        BodyRejection,
        StoreFailure,
    )
)]
pub async fn create(
    State(state): State<AppState>,
    context: RequestContext,
    Json(body): Json<DriverCallBody>,
) -> Result<Response, ApiError> {
    let pickup = LocationInput { address: Some(body.location), lat: None, lng: None }.parse()?;
    let call = NewCall {
        tel: parse_tel(&body.tel)?,
        pickup,
        destination: None,
        drive_type: DriveType::Auto,
        fare: parse_fare(parse_cost(body.cost.as_ref())?)?,
    };
    let (call_id, view) = request_call(&state, context, call, None).await?;
    Ok(with_location(StatusCode::CREATED, &format!("/drivercalls/{call_id}"), DriverCall::from(&view)))
}

/// Every call, newest first (at most 1000), in the original's shape.
#[utoipa::path(
    get,
    path = "/drivercalls",
    operation_id = "list_drivercalls",
    tag = "compatibility",
    responses((status = 200, description = "the calls", body = Items<DriverCall>), StoreFailure)
)]
pub async fn list(State(state): State<AppState>) -> Result<axum::Json<Items<DriverCall>>, ApiError> {
    let calls = queries::list::<CallView>(&state.store, queries::MAX_LIST).await?;
    Ok(axum::Json(Items { items: calls.iter().map(DriverCall::from).collect() }))
}

/// One call in the original's shape.
#[utoipa::path(
    get,
    path = "/drivercalls/{call_id}",
    operation_id = "get_drivercall",
    tag = "compatibility",
    params(("call_id" = Uuid, Path, description = "the call's id")),
    responses(
        (status = 200, description = "the call", body = DriverCall),
        (status = 404, description = "`CALL_NOT_FOUND`: no call has this id; `NOT_FOUND`: the id is not a UUID"),
        StoreFailure,
    )
)]
pub async fn show(State(state): State<AppState>, PathId(call_id): PathId) -> Result<axum::Json<DriverCall>, ApiError> {
    let view = call_view(&state, call_id).await?.ok_or_else(|| call_not_found(call_id))?;
    Ok(axum::Json(DriverCall::from(&view)))
}

/// Cancels the call; it stays on record with status 호출취소.
#[utoipa::path(
    delete,
    path = "/drivercalls/{call_id}",
    operation_id = "cancel_drivercall",
    tag = "compatibility",
    params(("call_id" = Uuid, Path, description = "the call's id")),
    responses(
        (status = 204, description = "cancelled"),
        (status = 404, description = "`CALL_NOT_FOUND`: no call has this id; `NOT_FOUND`: the id is not a UUID"),
        (status = 409, description = "`CALL_ALREADY_CANCELLED`, `CALL_ALREADY_COMPLETED`, `CALL_ALREADY_FAILED`, \
                                      `CONCURRENT_MODIFICATION`"),
        StoreFailure,
    )
)]
pub async fn cancel(
    State(state): State<AppState>,
    context: RequestContext,
    PathId(call_id): PathId,
) -> Result<Response, ApiError> {
    let command = CallCommand::Cancel { reason: None, at: Utc::now() };
    let committed = state.store.execute::<Call>(call_id, command, &command_meta(context, call_id, "customer")).await?;
    view_at::<CallView>(&state, call_id, committed.version).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The drivers, as `GET /drivers` lists them.
#[utoipa::path(
    get,
    path = "/drivermanages",
    operation_id = "list_drivermanages",
    tag = "compatibility",
    responses((status = 200, description = "the drivers", body = Items<DriverView>), StoreFailure)
)]
pub async fn drivermanages(state: State<AppState>) -> Result<axum::Json<Items<DriverView>>, ApiError> {
    drivers::list(state, super::extract::Query(drivers::ListQuery::default())).await
}

/// The assignments, as `GET /assignments` lists them.
#[utoipa::path(
    get,
    path = "/driverassigns",
    operation_id = "list_driverassigns",
    tag = "compatibility",
    responses((status = 200, description = "the assignments", body = Items<AssignmentView>), StoreFailure)
)]
pub async fn driverassigns(state: State<AppState>) -> Result<axum::Json<Items<AssignmentView>>, ApiError> {
    assignments::list(state).await
}
