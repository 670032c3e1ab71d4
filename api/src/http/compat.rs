//! The original service's routes, so that its README's demo commands work against the
//! gateway: `/drivercalls`, `/drivermanages`, `/driverassigns`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::Utc;
use domain::{Call, CallCommand, DriveType};
use projections::{queries, CallView, DriverView};
use serde::Deserialize;
use serde_json::{json, Value};

use super::calls::{call_not_found, request_call, with_location, NewCall};
use super::extract::{Json, PathId, RequestContext};
use super::input::{command_meta, parse_fare, parse_tel, LocationInput};
use super::wait::view_at;
use super::{assignments, drivers, ApiError, Items};
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/drivercalls", get(list).post(create))
        .route("/drivercalls/", get(list).post(create))
        // The original README's gateway section spells it this way.
        .route("/driverscalls", get(list).post(create))
        .route("/driverscalls/", get(list).post(create))
        .route("/drivercalls/{call_id}", get(show).delete(cancel))
        .route("/drivermanages", get(drivermanages))
        .route("/drivermanages/", get(drivermanages))
        .route("/driverassigns", get(assignments::list))
        .route("/driverassigns/", get(assignments::list))
}

/// The original's body; `status` is ignored and `cost` may be a number or, as httpie
/// sends `cost=25000`, a string of digits.
#[derive(Debug, Deserialize)]
pub struct DriverCallBody {
    tel: String,
    location: String,
    #[serde(default, rename = "status")]
    _status: Option<Value>,
    #[serde(default)]
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

fn compat_view(view: &CallView) -> Value {
    json!({
        "id": view.call_id,
        "tel": view.tel,
        "location": view.pickup.address,
        "status": view.status_label,
        "cost": view.fare,
    })
}

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
    let (call_id, request) = request_call(&state, context, call, None).await?;
    let view = view_at::<CallView>(&state, call_id, 1).await?.unwrap_or_else(|| CallView::requested(&request));
    Ok(with_location(StatusCode::CREATED, &format!("/drivercalls/{call_id}"), compat_view(&view)))
}

pub async fn list(State(state): State<AppState>) -> Result<axum::Json<Items<Value>>, ApiError> {
    let calls = queries::list::<CallView>(&state.store, queries::MAX_LIST).await?;
    Ok(axum::Json(Items { items: calls.iter().map(compat_view).collect() }))
}

pub async fn show(State(state): State<AppState>, PathId(call_id): PathId) -> Result<axum::Json<Value>, ApiError> {
    let view = queries::get::<CallView>(&state.store, call_id).await?.ok_or_else(|| call_not_found(call_id))?;
    Ok(axum::Json(compat_view(&view)))
}

/// Cancels the call; it stays on record with status 호출취소.
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

pub async fn drivermanages(state: State<AppState>) -> Result<axum::Json<Items<DriverView>>, ApiError> {
    drivers::list(state, super::extract::Query(drivers::ListQuery::default())).await
}
