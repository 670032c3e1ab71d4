//! Every error the API answers, as RFC 9457 problem JSON, made in this one place.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use domain::Rejection;
use serde::Serialize;
use serde_json::{Map, Value};
use store::{CommandError, StoreError};

#[derive(Debug)]
pub enum ApiError {
    /// A client error with a stable code: bad input (400/422), unknown ids (404), or a
    /// command the current state forbids (409).
    Problem {
        status: StatusCode,
        code: &'static str,
        detail: String,
        extra: Map<String, Value>,
        retry_after: Option<u32>,
    },
    /// The database cannot be reached just now: 503 with `Retry-After`.
    Unavailable(StoreError),
    /// Something on our side failed; logged with its causes, answered opaquely.
    Internal(Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self::Problem { status, code, detail: detail.into(), extra: Map::new(), retry_after: None }
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

    /// Tells the client when to try again (`Retry-After`, in seconds).
    pub fn with_retry_after(mut self, seconds: u32) -> Self {
        if let Self::Problem { retry_after, .. } = &mut self {
            *retry_after = Some(seconds);
        }
        self
    }

    /// A domain rejection: 404 when the aggregate does not exist, 422 for a bad value in
    /// the command, 409 when the current state forbids it.
    pub fn rejected(rejection: &impl Rejection) -> Self {
        let status = if rejection.is_not_found() {
            StatusCode::NOT_FOUND
        } else if rejection.is_invalid_input() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::CONFLICT
        };
        Self::new(status, rejection.code(), rejection.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        if error.is_unavailable() {
            Self::Unavailable(error)
        } else {
            Self::Internal(Box::new(error))
        }
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

/// The body of every error answer (RFC 9457 problem details). Some problems add
/// members, e.g. the `call_id` of a call that no driver could take.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// `urn:drivercenter:problem:` and the code in kebab case.
    #[serde(rename = "type")]
    #[schema(example = "urn:drivercenter:problem:invalid-tel")]
    kind: String,
    /// The HTTP status's reason phrase.
    #[schema(example = "Unprocessable Entity")]
    title: &'static str,
    #[schema(example = 422)]
    status: u16,
    /// What went wrong, for people.
    detail: String,
    /// What went wrong, for programs: a stable UPPER_SNAKE identifier.
    #[schema(example = "INVALID_TEL")]
    code: &'static str,
    #[serde(flatten)]
    #[schema(ignore)]
    extra: Map<String, Value>,
}

fn title(status: StatusCode) -> &'static str {
    status.canonical_reason().unwrap_or("Error")
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, detail, extra, retry_after) = match self {
            Self::Problem { status, code, detail, extra, retry_after } => (status, code, detail, extra, retry_after),
            Self::Unavailable(error) => {
                tracing::warn!(error = %store::error_chain(&error), "database unavailable");
                let detail = "the database cannot be reached just now; try again shortly".into();
                (StatusCode::SERVICE_UNAVAILABLE, "STORE_UNAVAILABLE", detail, Map::new(), Some(1))
            }
            Self::Internal(error) => {
                tracing::error!(error = %store::error_chain(error.as_ref()), "request failed");
                let detail = "the server could not answer; try again".into();
                (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", detail, Map::new(), None)
            }
        };
        let problem = Problem {
            kind: format!("urn:drivercenter:problem:{}", code.to_lowercase().replace('_', "-")),
            title: title(status),
            status: status.as_u16(),
            detail,
            code,
            extra,
        };
        let mut response = (status, axum::Json(problem)).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(seconds) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_database_answers_503_with_retry_after() {
        let response = ApiError::from(StoreError::Database(sqlx::Error::PoolTimedOut)).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers().get(header::RETRY_AFTER).and_then(|value| value.to_str().ok()), Some("1"));
        assert_eq!(
            response.headers().get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()),
            Some("application/problem+json")
        );
    }

    #[test]
    fn a_corrupt_event_answers_an_opaque_500() {
        let error = StoreError::EventStore("cannot decode".into());
        assert_eq!(ApiError::from(error).into_response().status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
