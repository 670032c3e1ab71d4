//! Extractors whose rejections are problem JSON like every other error.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::{ApiError, REQUEST_ID};

/// `axum::Json` with problem responses: 400 `INVALID_JSON` for syntax, 415 for a
/// missing content type, 422 `INVALID_BODY` for the wrong shape.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_problem(rejection)),
        }
    }
}

/// Like [`Json`], but an empty body stands for `T::default()`.
#[derive(Debug)]
pub struct OptionalJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = request.into_parts();
        let bytes = axum::body::to_bytes(body, super::MAX_BODY_BYTES).await.map_err(|_| too_large())?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        let request = Request::from_parts(parts, axum::body::Body::from(bytes));
        Json::<T>::from_request(request, state).await.map(|Json(value)| Self(value))
    }
}

fn json_problem(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonSyntaxError(error) => {
            ApiError::new(StatusCode::BAD_REQUEST, "INVALID_JSON", error.body_text())
        }
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "send the body as JSON with `Content-Type: application/json`",
        ),
        JsonRejection::JsonDataError(error) => ApiError::invalid("INVALID_BODY", error.body_text()),
        JsonRejection::BytesRejection(error) => body_problem(error),
        other => ApiError::new(StatusCode::BAD_REQUEST, "INVALID_BODY", other.body_text()),
    }
}

fn body_problem(rejection: BytesRejection) -> ApiError {
    match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => too_large(),
        status => ApiError::new(status, "INVALID_BODY", rejection.body_text()),
    }
}

pub(super) fn too_large() -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "BODY_TOO_LARGE", "the body is larger than this route accepts")
}

/// The raw body, for handlers that parse it themselves; a body over the limit is 413.
#[derive(Debug)]
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(request, state).await.map(Self).map_err(body_problem)
    }
}

/// `axum::extract::Query` with a 422 `INVALID_QUERY` problem.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Self(value))
            .map_err(|rejection: QueryRejection| ApiError::invalid("INVALID_QUERY", rejection.body_text()))
    }
}

/// A path id: anything that is not a UUID names nothing here, hence 404.
#[derive(Debug, Clone, Copy)]
pub struct PathId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(raw) = axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection: PathRejection| ApiError::not_found("NOT_FOUND", rejection.body_text()))?;
        Uuid::parse_str(&raw)
            .map(Self)
            .map_err(|_| ApiError::not_found("NOT_FOUND", format!("no resource has the id `{raw}`")))
    }
}

/// The request's id, set by the request-id layer; the causation id of its commands.
#[derive(Debug, Clone, Copy)]
pub struct RequestContext {
    pub request_id: Uuid,
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let request_id = parts
            .headers
            .get(REQUEST_ID)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| Uuid::parse_str(value).ok())
            .unwrap_or_else(Uuid::now_v7);
        Ok(Self { request_id })
    }
}

/// Names the call a request is about on its span, so that its log lines carry the same
/// correlation id as the events it causes.
pub fn correlate(call_id: Uuid) {
    tracing::Span::current().record("correlation_id", tracing::field::display(call_id));
}
