//! Every error the API answers, as RFC 9457 problem JSON, made in this one place.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use domain::Rejection;
use serde_json::{json, Map, Value};
use store::{CommandError, StoreError};

#[derive(Debug)]
pub enum ApiError {
    /// A client error with a stable code: bad input (400/422), unknown ids (404), or a
    /// command the current state forbids (409).
    Problem { status: StatusCode, code: &'static str, detail: String, extra: Map<String, Value> },
    /// Something on our side failed; logged with its causes, answered opaquely.
    Internal(Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self::Problem { status, code, detail: detail.into(), extra: Map::new() }
    }

    pub fn invalid(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail)
    }

    pub fn not_found(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, detail)
    }

    /// Adds a member to the problem body (e.g. the `call_id` of a failed call).
    pub fn with(mut self, key: &str, value: Value) -> Self {
        if let Self::Problem { extra, .. } = &mut self {
            extra.insert(key.to_string(), value);
        }
        self
    }

    /// A domain rejection: 404 when the aggregate does not exist, 409 otherwise.
    pub fn rejected(rejection: &impl Rejection) -> Self {
        let status = if rejection.is_not_found() { StatusCode::NOT_FOUND } else { StatusCode::CONFLICT };
        Self::new(status, rejection.code(), rejection.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        Self::Internal(Box::new(error))
    }
}

impl<E: Rejection + Send + Sync + 'static> From<CommandError<E>> for ApiError {
    fn from(error: CommandError<E>) -> Self {
        match error {
            CommandError::Rejected(rejection) => Self::rejected(&rejection),
            CommandError::Conflict => Self::new(
                StatusCode::CONFLICT,
                "CONCURRENT_MODIFICATION",
                "the resource kept changing while this request ran; try again",
            ),
            CommandError::Store(error) => error.into(),
        }
    }
}

fn title(status: StatusCode) -> &'static str {
    status.canonical_reason().unwrap_or("Error")
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, detail, extra) = match self {
            Self::Problem { status, code, detail, extra } => (status, code, detail, extra),
            Self::Internal(error) => {
                tracing::error!(error = %store::error_chain(error.as_ref()), "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "INTERNAL",
                    "the server could not answer; try again".into(),
                    Map::new(),
                )
            }
        };
        let mut body = json!({
            "type": format!("urn:drivercenter:problem:{}", code.to_lowercase().replace('_', "-")),
            "title": title(status),
            "status": status.as_u16(),
            "detail": detail,
            "code": code,
        });
        if let Value::Object(map) = &mut body {
            map.extend(extra);
        }
        let mut response = (status, body.to_string()).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        response
    }
}
