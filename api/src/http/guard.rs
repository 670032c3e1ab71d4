//! The layers every request passes: metrics by route, and load shedding. A request that
//! would overload the process, or a new call while the dispatcher is far behind, is
//! answered 503 `OVERLOADED` before any handler runs, so it stores nothing; the guard
//! lets requests through again as soon as the pressure falls.

use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

use super::ApiError;
use crate::AppState;

/// Routes that must answer however loaded the process is: probes and the metrics scrape.
const OPERATIONS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// Routes that create dispatch work: refused while the saga's backlog is over its limit.
const NEW_CALLS: [&str; 5] = ["/calls", "/drivercalls", "/drivercalls/", "/driverscalls", "/driverscalls/"];

fn route_of(request: &Request) -> Option<String> {
    request.extensions().get::<MatchedPath>().map(|path| path.as_str().to_string())
}

/// Counts every answer and times it, labelled by route template (never by raw path, so
/// ids cannot multiply the series).
pub async fn observe(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = route_of(&request).unwrap_or_else(|| "unmatched".to_string());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("drivercenter_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("drivercenter_http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// The most of a declared-oversized body that is read (and dropped) before answering 413.
const LINGER_BYTES: u64 = 4 * 1024 * 1024;

/// How long reading an oversized body may take before the connection is dropped instead.
const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads every request body to its end before the handler runs (bodies here are small),
/// refusing one over the limit with 413. A handler that answers without reading the body
/// (a refused content type, an unknown id) would otherwise leave its rest unread, and
/// hyper then closes the connection: the client, keeping it alive, would find it dead on
/// its next request. A body declared too long is still read (within bounds) before the
/// 413, since closing a connection with unread data resets it.
pub async fn buffer_body(request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if let Some(length) = declared.filter(|length| *length > super::MAX_BODY_BYTES as u64) {
        if length <= LINGER_BYTES {
            let mut body = request.into_body().into_data_stream();
            let _ = tokio::time::timeout(LINGER_TIME, async { while let Some(Ok(_)) = body.next().await {} }).await;
        }
        return super::extract::too_large().into_response();
    }
    let (parts, body) = request.into_parts();
    match axum::body::to_bytes(body, super::MAX_BODY_BYTES).await {
        Ok(bytes) => next.run(Request::from_parts(parts, axum::body::Body::from(bytes))).await,
        Err(error) if is_length_limit(&error) => super::extract::too_large().into_response(),
        Err(error) => {
            ApiError::new(StatusCode::BAD_REQUEST, "INVALID_BODY", format!("the body could not be read: {error}"))
                .into_response()
        }
    }
}

fn is_length_limit(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        if cause.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// Decrements the in-flight count however the request ends, also when it is dropped.
struct InFlight<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Sheds load and bounds each request's time.
pub async fn shed(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = route_of(&request);
    if route.as_deref().is_some_and(|route| OPERATIONS.contains(&route)) {
        return next.run(request).await;
    }
    let limits = state.config.limits;
    let in_flight = &state.load.in_flight;
    let _guard = InFlight(in_flight);
    if in_flight.fetch_add(1, Ordering::SeqCst) >= limits.max_in_flight {
        return overloaded("in_flight", "too many requests are in flight; try again shortly");
    }
    let new_call = request.method() == Method::POST && route.as_deref().is_some_and(|route| NEW_CALLS.contains(&route));
    if new_call && state.load.dispatch_backlog.load(Ordering::Relaxed) > limits.max_dispatch_backlog {
        return overloaded("dispatch_backlog", "dispatch is behind; new calls are accepted again shortly");
    }
    metrics::gauge!("drivercenter_http_in_flight").set(in_flight.load(Ordering::Relaxed) as f64);
    match tokio::time::timeout(limits.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            metrics::counter!("drivercenter_request_timeouts_total").increment(1);
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "REQUEST_TIMEOUT", "the request took too long; try again")
                .with_retry_after(1)
                .into_response()
        }
    }
}

fn overloaded(reason: &'static str, detail: &'static str) -> Response {
    metrics::counter!("drivercenter_overload_rejections_total", "reason" => reason).increment(1);
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "OVERLOADED", detail).with_retry_after(1).into_response()
}
