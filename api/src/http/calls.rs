//! Customers' calls: request, look up, history, cancel, complete, timeline, stream.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::{SubsecRound, Utc};
use domain::{Call, CallCommand, CallRequest, CallStatus, DriveType, Location, Tel};
use futures::Stream;
use projections::{queries, CallView};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use store::idempotency::{self, Claim};
use store::LoggedEvent;
use uuid::Uuid;

use super::extract::{correlate, OptionalJson, PathId, Query, RawBody, RequestContext};
use super::input::{command_meta, parse_drive_type, parse_fare, parse_limit, parse_reason, parse_tel, LocationInput};
use super::openapi::{BodyRejection, CancelAnswers, StoreFailure};
use super::wait::{view_at, view_until};
use super::{ApiError, Page};
use crate::AppState;

const ACTOR: &str = "customer";

/// The longest synchronous wait a client may ask for with `Prefer: wait=N`.
const MAX_PREFER_WAIT: Duration = Duration::from_secs(30);

/// How long `?min_version=` may hold a request.
const MAX_MIN_VERSION_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCall {
    /// The customer's Korean mobile number, digits with optional dashes; stored as digits.
    #[schema(example = "010-1234-5678")]
    tel: String,
    pickup: LocationInput,
    destination: Option<LocationInput>,
    /// The car's transmission; default `AUTO`.
    #[schema(value_type = Option<projections::openapi::DriveType>)]
    drive_type: Option<String>,
    /// The expected fare (예상요금), whole KRW.
    #[serde(default)]
    #[schema(minimum = 0, example = 25000)]
    fare: i64,
}

/// A call request that passed every rule.
#[derive(Debug, Clone)]
pub struct NewCall {
    pub tel: Tel,
    pub pickup: Location,
    pub destination: Option<Location>,
    pub drive_type: DriveType,
    pub fare: domain::Fare,
}

impl CreateCall {
    fn parse(self) -> Result<NewCall, ApiError> {
        Ok(NewCall {
            tel: parse_tel(&self.tel)?,
            pickup: self.pickup.parse()?,
            destination: self.destination.as_ref().map(LocationInput::parse).transpose()?,
            drive_type: parse_drive_type(self.drive_type.as_deref())?,
            fare: parse_fare(self.fare)?,
        })
    }
}

/// Parses a JSON body by hand so that its canonical form can key idempotency.
fn parse_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<(T, Value), ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|error| {
        ApiError::new(StatusCode::BAD_REQUEST, "INVALID_JSON", format!("the body is not JSON: {error}"))
    })?;
    let parsed =
        serde_json::from_value(value.clone()).map_err(|error| ApiError::invalid("INVALID_BODY", error.to_string()))?;
    Ok((parsed, value))
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.to_str().ok().map(str::trim).filter(|key| (1..=255).contains(&key.len()));
    key.map(|key| Some(key.to_string())).ok_or_else(|| {
        ApiError::invalid("INVALID_IDEMPOTENCY_KEY", "Idempotency-Key must be 1 to 255 visible ASCII characters")
    })
}

/// `Prefer: wait=N` (RFC 7240); other preferences are ignored, N is capped at 30.
fn preferred_wait(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get_all(header::HeaderName::from_static("prefer"))
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split([',', ';']))
        .filter_map(|preference| preference.trim().strip_prefix("wait="))
        .filter_map(|seconds| seconds.trim().parse::<u64>().ok())
        .map(|seconds| Duration::from_secs(seconds).min(MAX_PREFER_WAIT))
        .next()
}

/// Requests a call and returns its view; with `key`, a retry of the same request finds
/// the same call.
pub async fn request_call(
    state: &AppState,
    context: RequestContext,
    call: NewCall,
    key: Option<(String, String)>,
) -> Result<(Uuid, CallView), ApiError> {
    let mut call_id = Uuid::now_v7();
    let mut retried = false;
    // Microseconds, as the idempotency record stores it: a retry rebuilds the identical
    // request from that record, which the Call aggregate then accepts as a no-op.
    let mut requested_at = Utc::now().trunc_subsecs(6);
    if let Some((key, request_hash)) = key {
        match idempotency::claim(&state.store, &key, &request_hash, call_id, requested_at).await? {
            Claim::New => {}
            Claim::Existing { same_request: false, .. } => {
                return Err(ApiError::invalid(
                    "IDEMPOTENCY_KEY_REUSED",
                    "this Idempotency-Key was used with a different request within 24 hours",
                ))
            }
            Claim::Existing { call_id: existing, created_at, .. } => {
                call_id = existing;
                requested_at = created_at;
                retried = true;
            }
        }
    }
    correlate(call_id);
    let request = CallRequest {
        call_id,
        tel: call.tel,
        pickup: call.pickup,
        destination: call.destination,
        drive_type: call.drive_type,
        fare: call.fare,
        requested_at,
    };
    let meta = command_meta(context, call_id, ACTOR);
    let command = CallCommand::Request(request.clone());
    let committed = if retried {
        state.store.execute::<Call>(call_id, command, &meta).await?
    } else {
        state.store.create::<Call>(call_id, command, &meta).await?
    };
    tracing::info!(%call_id, tel = %request.tel.masked(), drive_type = request.drive_type.as_str(), "call requested");
    // A call requested just now is, at version 1, exactly what its first event says: the
    // answer does not wait for the projector, so acceptance never runs at the pace of the
    // views. A read of it that arrives before its view waits for the view (`show`).
    if committed.appended > 0 && committed.version == 1 {
        return Ok((call_id, CallView::requested(&request)));
    }
    let view = view_at::<CallView>(state, call_id, committed.version).await?;
    Ok((call_id, view.unwrap_or_else(|| CallView::requested(&request))))
}

/// Calls a driver: the nearest available driver who can drive the car is reserved and
/// confirmed in the background. With `Prefer: wait=N` the answer waits up to N seconds
/// for the outcome.
#[utoipa::path(
    post,
    path = "/calls",
    operation_id = "request_call",
    tag = "calls",
    params(
        ("Idempotency-Key" = Option<String>, Header,
         description = "the same key and body within 24 h answer the same call instead of a new one"),
        ("Prefer" = Option<String>, Header,
         description = "`wait=N` (N ≤ 30 seconds): answer once the call is confirmed or failed, or N seconds passed"),
    ),
    request_body = CreateCall,
    responses(
        (status = 201, description = "confirmed while the request waited (`Prefer: wait`); the driver is filled",
         body = CallView, headers(("Location" = String, description = "`/calls/{call_id}`"))),
        (status = 202, description = "accepted; dispatch goes on in the background",
         body = CallView, headers(("Location" = String, description = "`/calls/{call_id}`"))),
        (status = 409, description = "`NO_DRIVER_AVAILABLE`: no driver could be assigned while the request \
                                      waited; the problem carries `call_id` and the `call` view"),
        (status = 422, description = "`INVALID_TEL`, `UNKNOWN_LOCATION`, `INVALID_LOCATION`, `INVALID_FARE`, \
                                      `INVALID_DRIVE_TYPE`, `INVALID_BODY`, `INVALID_IDEMPOTENCY_KEY`, \
                                      `IDEMPOTENCY_KEY_REUSED`"),
        (status = 400, description = "`INVALID_JSON`: the body is not JSON"),
        (status = 413, description = "`BODY_TOO_LARGE`: the body is larger than the route accepts"),
        StoreFailure,
    )
)]
pub async fn create(
    State(state): State<AppState>,
    context: RequestContext,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let (input, canonical): (CreateCall, Value) = parse_body(&body)?;
    let call = input.parse()?;
    let key = idempotency_key(&headers)?.map(|key| (key, hex(&Sha256::digest(canonical.to_string().as_bytes()))));
    let (call_id, mut view) = request_call(&state, context, call, key).await?;
    if let Some(wait) = preferred_wait(&headers) {
        let settled = |view: &CallView| view.status == CallStatus::Confirmed || view.status.is_terminal();
        view = view_until::<CallView>(&state, call_id, wait, settled).await?.unwrap_or(view);
        if view.status == CallStatus::Failed {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "NO_DRIVER_AVAILABLE",
                view.failure_reason.clone().unwrap_or_else(|| "no driver could be assigned".into()),
            )
            .with("call_id", json!(call_id))
            .with("call", json!(view)));
        }
    }
    let status = if view.status == CallStatus::Confirmed { StatusCode::CREATED } else { StatusCode::ACCEPTED };
    Ok(with_location(status, &format!("/calls/{call_id}"), &view))
}

pub fn with_location(status: StatusCode, location: &str, body: impl serde::Serialize) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ShowQuery {
    /// Wait (at most 5 s) until the view has reached this version.
    #[param(value_type = Option<i64>, minimum = 0)]
    min_version: Option<String>,
}

/// One call as the customer sees it.
#[utoipa::path(
    get,
    path = "/calls/{call_id}",
    operation_id = "get_call",
    tag = "calls",
    params(("call_id" = Uuid, Path, description = "the call's id"), ShowQuery),
    responses(
        (status = 200, description = "the call view", body = CallView),
        (status = 404, description = "`CALL_NOT_FOUND`: no call has this id; `NOT_FOUND`: the id is not a UUID"),
        (status = 422, description = "`INVALID_MIN_VERSION`, `INVALID_QUERY`"),
        StoreFailure,
    )
)]
pub async fn show(
    State(state): State<AppState>,
    PathId(call_id): PathId,
    Query(query): Query<ShowQuery>,
) -> Result<axum::Json<CallView>, ApiError> {
    correlate(call_id);
    let view = match query.min_version {
        Some(raw) => {
            let version: i64 =
                raw.parse().ok().filter(|version| *version >= 0).ok_or_else(|| {
                    ApiError::invalid("INVALID_MIN_VERSION", "min_version must be a whole number ≥ 0")
                })?;
            view_until::<CallView>(&state, call_id, MAX_MIN_VERSION_WAIT, |view| view.version >= version).await?
        }
        None => call_view(&state, call_id).await?,
    };
    view.map(axum::Json).ok_or_else(|| call_not_found(call_id))
}

/// The call's view; for a call accepted before the projector reached it, the view once
/// projected. None only when the log holds no such call.
pub async fn call_view(state: &AppState, call_id: Uuid) -> Result<Option<CallView>, ApiError> {
    if let Some(view) = queries::get::<CallView>(&state.store, call_id).await? {
        return Ok(Some(view));
    }
    let (_, version) = state.store.load::<Call>(call_id).await?;
    if version == 0 {
        return Ok(None);
    }
    view_at::<CallView>(state, call_id, version).await
}

pub fn call_not_found(call_id: Uuid) -> ApiError {
    ApiError::not_found("CALL_NOT_FOUND", format!("no call has the id {call_id}"))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// The customer's number (required).
    #[param(value_type = String, example = "01012345678")]
    tel: Option<String>,
    /// Calls per page, 1 to 100; default 20.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page.
    #[param(value_type = Option<Uuid>)]
    cursor: Option<String>,
}

/// One customer's calls, newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/calls",
    operation_id = "call_history",
    tag = "calls",
    params(HistoryQuery),
    responses(
        (status = 200, description = "one page of calls", body = Page<CallView>),
        (status = 422, description = "`TEL_REQUIRED`, `INVALID_TEL`, `INVALID_LIMIT`, `INVALID_CURSOR`, `INVALID_QUERY`"),
        StoreFailure,
    )
)]
pub async fn history(
    State(state): State<AppState>,
    Query(query): Query<HistoryQuery>,
) -> Result<axum::Json<Page<CallView>>, ApiError> {
    let tel = query.tel.ok_or_else(|| ApiError::invalid("TEL_REQUIRED", "give the customer's number as ?tel="))?;
    let tel = parse_tel(&tel)?;
    let limit = i64::from(parse_limit(query.limit.as_deref())?);
    let cursor = query
        .cursor
        .map(|cursor| {
            Uuid::parse_str(&cursor)
                .map_err(|_| ApiError::invalid("INVALID_CURSOR", "cursor is not one this server gave out"))
        })
        .transpose()?;
    let (items, next) = queries::call_history(&state.store, tel.as_str(), limit, cursor).await?;
    Ok(axum::Json(Page { items, next_cursor: next }))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelCall {
    /// Why, at most 200 characters.
    #[schema(example = "plans changed")]
    reason: Option<String>,
}

/// Runs a customer's command on a call and answers 202 with the view that shows it.
async fn change_call(
    state: &AppState,
    context: RequestContext,
    call_id: Uuid,
    command: CallCommand,
) -> Result<Response, ApiError> {
    correlate(call_id);
    let meta = command_meta(context, call_id, ACTOR);
    let committed = state.store.execute::<Call>(call_id, command, &meta).await?;
    let view = view_at::<CallView>(state, call_id, committed.version).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(view)).into_response())
}

/// Cancels a call at any time before it is completed.
#[utoipa::path(
    post,
    path = "/calls/{call_id}/cancel",
    operation_id = "cancel_call",
    tag = "calls",
    params(("call_id" = Uuid, Path, description = "the call's id")),
    request_body(content = Option<CancelCall>, description = "optional"),
    responses(CancelAnswers, BodyRejection, StoreFailure)
)]
pub async fn cancel(
    State(state): State<AppState>,
    context: RequestContext,
    PathId(call_id): PathId,
    OptionalJson(input): OptionalJson<CancelCall>,
) -> Result<Response, ApiError> {
    let reason = parse_reason(input.reason)?;
    change_call(&state, context, call_id, CallCommand::Cancel { reason, at: Utc::now() }).await
}

/// Cancels a call, as `POST /calls/{call_id}/cancel` does.
#[utoipa::path(
    delete,
    path = "/calls/{call_id}",
    operation_id = "cancel_call_by_delete",
    tag = "calls",
    params(("call_id" = Uuid, Path, description = "the call's id")),
    request_body(content = Option<CancelCall>, description = "optional"),
    responses(CancelAnswers, BodyRejection, StoreFailure)
)]
pub async fn cancel_by_delete(
    state: State<AppState>,
    context: RequestContext,
    call_id: PathId,
    input: OptionalJson<CancelCall>,
) -> Result<Response, ApiError> {
    cancel(state, context, call_id, input).await
}

/// The trip is over: the call is `COMPLETED` and the driver `AVAILABLE` again.
#[utoipa::path(
    post,
    path = "/calls/{call_id}/complete",
    operation_id = "complete_call",
    tag = "calls",
    params(("call_id" = Uuid, Path, description = "the call's id")),
    responses(
        (status = 202, description = "completed", body = Option<CallView>),
        (status = 404, description = "`CALL_NOT_FOUND`: no call has this id; `NOT_FOUND`: the id is not a UUID"),
        (status = 409, description = "`CALL_NOT_CONFIRMED`, `CALL_ALREADY_CANCELLED`, `CALL_ALREADY_COMPLETED`, \
                                      `CALL_ALREADY_FAILED`, `CONCURRENT_MODIFICATION`"),
        StoreFailure,
    )
)]
pub async fn complete(
    State(state): State<AppState>,
    context: RequestContext,
    PathId(call_id): PathId,
) -> Result<Response, ApiError> {
    change_call(&state, context, call_id, CallCommand::Complete { at: Utc::now() }).await
}

/// Every event caused by the call, from all three aggregates, in the log's order.
#[utoipa::path(
    get,
    path = "/calls/{call_id}/timeline",
    operation_id = "call_timeline",
    tag = "calls",
    params(("call_id" = Uuid, Path, description = "the call's id")),
    responses(
        (status = 200, description = "the call's events", body = Vec<EventRecord>),
        (status = 404, description = "`CALL_NOT_FOUND`: no event carries this call id; `NOT_FOUND`: the id is not a UUID"),
        StoreFailure,
    )
)]
pub async fn timeline(State(state): State<AppState>, PathId(call_id): PathId) -> Result<Response, ApiError> {
    let events = state.store.read_correlated(call_id).await?;
    if events.is_empty() {
        return Err(call_not_found(call_id));
    }
    let records: Vec<EventRecord> = events.iter().map(EventRecord::from).collect();
    Ok(axum::Json(records).into_response())
}

/// An event as the timeline and `drivercenter events` show it: its place, its payload
/// without the storage tag, and its metadata.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventRecord<'a> {
    /// The event's place in the log's global order.
    pub position: i64,
    pub event_id: Uuid,
    /// `call`, `assignment` or `driver`.
    pub aggregate_type: &'a str,
    pub aggregate_id: &'a str,
    /// The event's number within its aggregate's stream, from 1.
    pub sequence: i64,
    #[schema(example = "CallRequested")]
    pub event_type: &'a str,
    pub event_version: &'a str,
    /// The event's fields.
    pub payload: &'a Value,
    /// The call the event belongs to.
    pub correlation_id: Uuid,
    /// The request or event that caused it.
    pub causation_id: Uuid,
    pub command_id: Uuid,
    pub actor: &'a str,
    pub recorded_at: chrono::DateTime<Utc>,
}

impl<'a> From<&'a LoggedEvent> for EventRecord<'a> {
    fn from(event: &'a LoggedEvent) -> Self {
        Self {
            position: event.position.prepare,
            event_id: event.event_id(),
            aggregate_type: &event.aggregate_type,
            aggregate_id: &event.aggregate_id,
            sequence: event.sequence,
            event_type: &event.event_type,
            event_version: &event.event_version,
            payload: event.payload_body(),
            correlation_id: event.metadata.correlation_id,
            causation_id: event.metadata.causation_id,
            command_id: event.metadata.command_id,
            actor: &event.metadata.actor,
            recorded_at: event.metadata.recorded_at,
        }
    }
}

/// How long an SSE stream may go without a change before it rechecks the view.
const STREAM_RECHECK: Duration = Duration::from_secs(15);

struct StreamState {
    state: AppState,
    call_id: Uuid,
    sent_version: i64,
}

/// Server-sent events of the call's status: one `status` event carrying the call view
/// at connect and at each change; the stream ends after a terminal status.
#[utoipa::path(
    get,
    path = "/calls/{call_id}/stream",
    operation_id = "call_status_stream",
    tag = "calls",
    params(("call_id" = Uuid, Path, description = "the call's id")),
    responses(
        (status = 200, description = "`event: status` lines whose `data` is the call view (JSON)",
         body = String, content_type = "text/event-stream"),
        (status = 404, description = "`CALL_NOT_FOUND`: no call has this id; `NOT_FOUND`: the id is not a UUID"),
        StoreFailure,
    )
)]
pub async fn stream(
    State(state): State<AppState>,
    PathId(call_id): PathId,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    if call_view(&state, call_id).await?.is_none() {
        return Err(call_not_found(call_id));
    }
    let start = StreamState { state, call_id, sent_version: 0 };
    let events = futures::stream::unfold(Some(start), |stream| async move {
        let mut stream = stream?;
        loop {
            let sent = stream.sent_version;
            let view =
                view_until::<CallView>(&stream.state, stream.call_id, STREAM_RECHECK, |view| view.version > sent)
                    .await
                    .ok()
                    .flatten();
            let Some(view) = view.filter(|view| view.version > sent) else {
                continue;
            };
            stream.sent_version = view.version;
            let event = Event::default().event("status").json_data(&view).unwrap_or_else(|_| Event::default());
            let next = (!view.status.is_terminal()).then_some(stream);
            return Some((Ok(event), next));
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
