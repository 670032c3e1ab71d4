//! The OpenAPI 3.1 document of the routes served, `GET /openapi.json`, and the docs page
//! over it, `GET /docs`, with the Swagger UI assets compiled into the binary (nothing is
//! fetched at build time or from another host at run time).
//!
//! Handlers describe themselves with `#[utoipa::path]`; what every error answer shares
//! (the problem JSON body, the store failures) is described once here.

use std::sync::Arc;

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Extension;
use projections::CallView;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::{Content, OpenApi, Ref, RefOr};
use utoipa::{IntoResponses, OpenApi as _, ToSchema};
use utoipa_axum::router::UtoipaMethodRouter;

use super::error::Problem;
use super::ApiError;

/// The media type of every error answer.
const PROBLEM_JSON: &str = "application/problem+json";

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "drivercenter",
        description = "Dispatch of designated drivers (대리운전): calls, drivers, assignments. \
                       Every 4xx/5xx answer is RFC 9457 problem JSON with a stable `code`."
    ),
    components(schemas(Problem))
)]
struct Base;

/// The document's header and shared components, before any route is added.
pub fn base() -> OpenApi {
    Base::openapi()
}

/// The operations of one path, whatever their methods.
fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .flatten()
}

/// `routes` served and documented at each of `aliases` too; an alias's operations get
/// ids of their own, as operation ids are unique within a document.
pub fn also_at<S>(routes: UtoipaMethodRouter<S>, aliases: &[&str]) -> UtoipaMethodRouter<S> {
    let (schemas, mut paths, method_router) = routes;
    let documented: Vec<PathItem> = paths.paths.values().cloned().collect();
    for alias in aliases {
        let name = alias.trim_matches('/').replace('/', "_");
        let suffix = if alias.ends_with('/') { format!("at_{name}_slash") } else { format!("at_{name}") };
        for mut item in documented.iter().cloned() {
            for operation in operations_mut(&mut item) {
                operation.operation_id = operation.operation_id.take().map(|id| format!("{id}_{suffix}"));
            }
            paths.paths.insert(alias.to_string(), item);
        }
    }
    (schemas, paths, method_router)
}

/// Completes the document of the routes: every error answer without a body of its own
/// carries the problem body.
pub fn finish(mut document: OpenApi) -> OpenApi {
    let problem = Content::new(Some(RefOr::Ref(Ref::from_schema_name(Problem::name()))));
    for item in document.paths.paths.values_mut() {
        for operation in operations_mut(item) {
            for (status, response) in operation.responses.responses.iter_mut() {
                let is_error = status.parse::<u16>().is_ok_and(|status| status >= 400);
                // A response that states its own body (readiness's 503) keeps it.
                if let (true, RefOr::T(response)) = (is_error, response) {
                    if response.content.is_empty() {
                        response.content.insert(PROBLEM_JSON.to_string(), problem.clone());
                    }
                }
            }
        }
    }
    document
}

/// How a route answers when the store fails: any route that reads or writes it.
#[derive(IntoResponses)]
pub enum StoreFailure {
    /// `STORE_UNAVAILABLE`: the database cannot be reached just now; `OVERLOADED`: too
    /// many requests are in flight or, for a new call, dispatch is too far behind (nothing
    /// was stored); `REQUEST_TIMEOUT`: the request took too long. `Retry-After` says when
    /// to try again.
    #[response(status = 503, headers(("Retry-After" = u32, description = "seconds to wait")))]
    Unavailable,
    /// `INTERNAL`: the server could not answer; the cause is logged, never sent.
    #[response(status = 500)]
    Internal,
}

/// How a route that takes a JSON body refuses one it cannot read; 422 `INVALID_BODY`
/// (the wrong shape) is listed with each route's other 422 codes.
#[derive(IntoResponses)]
pub enum BodyRejection {
    /// `INVALID_JSON`: the body is not JSON.
    #[response(status = 400)]
    InvalidJson,
    /// `BODY_TOO_LARGE`: the body is larger than the route accepts.
    #[response(status = 413)]
    TooLarge,
    /// `UNSUPPORTED_MEDIA_TYPE`: the body was not sent as `application/json`.
    #[response(status = 415)]
    NotJson,
}

/// What cancelling a call answers, by either of its routes.
#[derive(IntoResponses)]
pub enum CancelAnswers {
    /// Cancelled; the reservation of any assigned driver is released. The call view at or
    /// after the change.
    #[response(status = 202)]
    Cancelled(Box<Option<CallView>>),
    /// `CALL_NOT_FOUND`: no call has this id; `NOT_FOUND`: the id is not a UUID.
    #[response(status = 404)]
    NotFound,
    /// `CALL_ALREADY_CANCELLED`, `CALL_ALREADY_COMPLETED`, `CALL_ALREADY_FAILED`: the call
    /// is over; `CONCURRENT_MODIFICATION`: it kept changing, try again.
    #[response(status = 409)]
    Forbidden,
    /// `INVALID_REASON`, `INVALID_BODY`.
    #[response(status = 422)]
    Invalid,
}

/// The OpenAPI document of this API.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi_document",
    tag = "operations",
    responses((status = 200, description = "the OpenAPI 3.1 document of every route served", body = Object))
)]
pub async fn document(Extension(document): Extension<Arc<OpenApi>>) -> axum::Json<Arc<OpenApi>> {
    axum::Json(document)
}

/// The docs page: Swagger UI's assets, served under `/docs/`, render `/openapi.json`.
/// Its links are relative, so it works behind a path prefix too.
const DOCS_PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>drivercenter API</title>
<link rel="stylesheet" href="docs/swagger-ui.css">
<link rel="stylesheet" href="docs/index.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/swagger-ui-bundle.js"></script>
<script src="docs/swagger-ui-standalone-preset.js"></script>
<script src="docs/swagger-initializer.js"></script>
</body>
</html>
"#;

/// Interactive docs of this API (Swagger UI), from `/openapi.json`.
#[utoipa::path(
    get,
    path = "/docs",
    operation_id = "docs_page",
    tag = "operations",
    responses((status = 200, description = "the docs page", body = String, content_type = "text/html"))
)]
pub async fn docs_page() -> Html<&'static str> {
    Html(DOCS_PAGE)
}

/// A script, style sheet or image of the docs page.
#[utoipa::path(
    get,
    path = "/docs/{file}",
    operation_id = "docs_asset",
    tag = "operations",
    params(("file" = String, Path, description = "the asset's file name, e.g. `swagger-ui.css`")),
    responses(
        (status = 200, description = "the asset", body = String, content_type = "application/octet-stream"),
        (status = 404, description = "`NOT_FOUND`: the docs page has no such asset"),
        (status = 500, description = "`INTERNAL`: the asset could not be prepared"),
    )
)]
pub async fn docs_asset(Path(file): Path<String>) -> Result<Response, ApiError> {
    // The initializer loads the document relative to the page, `/docs`.
    let config = Arc::new(utoipa_swagger_ui::Config::new(["openapi.json"]));
    let asset = utoipa_swagger_ui::serve(&file, config)
        .map_err(|error| ApiError::Internal(error.to_string().into()))?
        .ok_or_else(|| ApiError::not_found("NOT_FOUND", format!("the docs page has no asset `{file}`")))?;
    let content_type = HeaderValue::from_str(&asset.content_type)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, content_type)], asset.bytes.into_owned()).into_response())
}
