//! The data plane: `ANY /fn/{name}[:{qualifier}][/{rest..}]` and the custom routes. The guest
//! sees `/{rest}` (or, on a custom route, the whole path) with query, headers and body intact.

use crate::error::{ApiError, ApiResult};
use crate::invoker::{InvocationRequest, Invoked};
use crate::AppState;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use kumo_core::ErrorKind;
use std::sync::Arc;

pub const REQUEST_ID_HEADER: &str = "x-kumo-request-id";

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/fn/{target}", any(function_root))
        .route("/fn/{target}/", any(function_root))
        .route("/fn/{target}/{*rest}", any(function_path))
        .fallback(custom_route)
}

async fn function_root(
    State(state): State<Arc<AppState>>,
    Path(target): Path<String>,
    request: Request,
) -> Response {
    forward(&state, &target, "/".to_string(), request).await
}

async fn function_path(
    State(state): State<Arc<AppState>>,
    Path((target, rest)): Path<(String, String)>,
    request: Request,
) -> Response {
    forward(&state, &target, format!("/{rest}"), request).await
}

async fn custom_route(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let path = request.uri().path().to_string();
    match state.routes.lookup(&path) {
        Some(name) => forward(&state, &name, path, request).await,
        None => ApiError::new(
            ErrorKind::FunctionNotFound,
            format!("no function serves {path}"),
        )
        .into_response(),
    }
}

async fn forward(state: &AppState, target: &str, path: String, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = match read_body(body, &parts.headers, state.max_body_bytes).await {
        Ok(body) => body,
        Err(e) => return e.into_response(),
    };
    let path_and_query = match parts.uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let invoked = state
        .invoker
        .invoke(
            target,
            InvocationRequest {
                method: parts.method,
                path_and_query,
                headers: parts.headers,
                body,
            },
        )
        .await;
    invoked_response(invoked)
}

/// The function's response as the client gets it, or its failure, with the request id.
pub fn invoked_response(invoked: Invoked) -> Response {
    let mut response = match invoked.result {
        Ok(r) => {
            let mut response = Response::new(Body::from(r.body));
            *response.status_mut() = r.status;
            *response.headers_mut() = r.headers;
            // The body was collected: framing is the server's to choose again.
            for h in [
                http::header::CONTENT_LENGTH,
                http::header::TRANSFER_ENCODING,
                http::header::CONNECTION,
            ] {
                response.headers_mut().remove(h);
            }
            response
        }
        Err(e) => e.into_response(),
    };
    if let Ok(id) = HeaderValue::from_str(&invoked.request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, id);
    }
    response
}

/// Reads a request body up to `limit` bytes; more is `payload_too_large`, refused early when
/// `Content-Length` already says so.
pub async fn read_body(body: Body, headers: &http::HeaderMap, limit: usize) -> ApiResult<Bytes> {
    let too_large = || {
        ApiError::new(
            ErrorKind::PayloadTooLarge,
            format!("the request body is larger than the limit of {limit} bytes"),
        )
    };
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(e) => Err(ApiError::bad_request(format!("reading the request body: {e}"))),
    }
}

/// Prometheus text format. A few gauges for now; the full set comes with the metrics work.
async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let body = format!(
        "# HELP kumo_compilations_total Wasm compilations to machine code since start.\n\
         # TYPE kumo_compilations_total counter\n\
         kumo_compilations_total {}\n\
         # HELP kumo_functions_loaded Functions loaded in memory.\n\
         # TYPE kumo_functions_loaded gauge\n\
         kumo_functions_loaded {}\n",
        state.runtime.compilations(),
        state.invoker.loaded_count()
    );
    (
        StatusCode::OK,
        [(
            http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}
