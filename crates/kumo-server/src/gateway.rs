//! The data plane: `ANY /fn/{name}[.{namespace}][:{qualifier}][/{rest..}]` (reached from the
//! [`crate::frontend::Frontend`], ahead of the router) and the custom routes (the router's
//! fallback). The guest sees `/{rest}` (or, on a custom route, the whole path) with query,
//! headers and body intact.

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::invoker::{InvocationRequest, Invoked};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use kumo_core::ErrorKind;
use std::borrow::Cow;
use std::sync::Arc;

pub(crate) const REQUEST_ID_HEADER: &str = "x-kumo-request-id";
/// Set to `1` on the response of an invocation that had to load its function first.
pub(crate) const COLD_HEADER: &str = "x-kumo-cold";

pub(crate) fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/healthz", get(health))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .fallback(custom_route)
}

/// `ok` for probes; with `Accept: application/json`, also the version and the isolation
/// Lambda functions' environments get on this machine (each layer, and why one is missing).
async fn health(State(state): State<Arc<AppState>>, headers: http::HeaderMap) -> Response {
    let json = headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/json"));
    if !json {
        return "ok\n".into_response();
    }
    axum::Json(serde_json::json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "node": state.node.id,
        "store": state.store.kind(),
        "isolation": state.lambda.isolation(),
    }))
    .into_response()
}

/// Whether this node can serve: 200 `ready` when its database answers within a second,
/// else 503 (a load balancer or Kubernetes then sends it no traffic).
async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let answered =
        tokio::time::timeout(std::time::Duration::from_secs(1), state.store.ping()).await;
    match answered {
        Ok(Ok(())) => "ready\n".into_response(),
        Ok(Err(e)) => {
            tracing::warn!("not ready: {e:#}");
            (
                http::StatusCode::SERVICE_UNAVAILABLE,
                "the database does not answer\n",
            )
                .into_response()
        }
        Err(_) => (
            http::StatusCode::SERVICE_UNAVAILABLE,
            "the database does not answer within 1s\n",
        )
            .into_response(),
    }
}

/// `/fn/{target}` or `/fn/{target}/...` with a target that is not empty.
pub(crate) fn is_function_path(path: &str) -> bool {
    path.strip_prefix("/fn/")
        .is_some_and(|after| !after.is_empty() && !after.starts_with('/'))
}

/// `/fn/{target}[/{rest..}]`, split by hand rather than by the `Path` extractor: the target is
/// percent-decoded (`$LATEST` arrives as `%24LATEST`), the rest stays as the client sent it,
/// as a guest routing on its own path expects (and deserializing both cost ~2% of a request).
pub(crate) async fn function(state: &AppState, request: Request) -> Response {
    let (target, rest) = split_function_path(request.uri().path());
    // `NAME.NS` is NAME of namespace NS; a `/` (sent as `%2F`) names nothing.
    if target.contains('/') {
        return refusal(ApiError::not_found(&target));
    }
    let target = match target.split_once(':') {
        Some((name, qualifier)) => format!("{}:{qualifier}", kumo_core::key_of_url_name(name)),
        None => kumo_core::key_of_url_name(&target),
    };
    forward(state, &target, rest.to_string(), request).await
}

/// `("hello", "/a/b")` for `/fn/hello/a/b`; the rest is `/` when there is none.
fn split_function_path(path: &str) -> (Cow<'_, str>, &str) {
    let after = path.strip_prefix("/fn/").unwrap_or(path);
    let (target, rest) = match after.find('/') {
        Some(i) => after.split_at(i),
        None => (after, "/"),
    };
    let target = percent_encoding::percent_decode_str(target).decode_utf8_lossy();
    (target, rest)
}

async fn custom_route(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let path = request.uri().path().to_string();
    let authority = match request.uri().authority() {
        Some(authority) => Some(authority.as_str()),
        None => request
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok()),
    };
    let host = authority.map(kumo_core::request_host);
    match state.routes.lookup(host.as_deref(), &path) {
        Some(name) => forward(&state, &name, path, request).await,
        None => refusal(ApiError::new(
            ErrorKind::FunctionNotFound,
            format!("no function serves {path}"),
        )),
    }
}

/// A request refused before an invocation exists (unknown function, body too large, bad
/// input): the error, with a request id of its own like every data-plane response.
pub(crate) fn refusal(error: ApiError) -> Response {
    with_request_id(error.into_response())
}

/// Gives a response that has no request id one (of a request that never became an
/// invocation); an invocation's own id is kept.
pub(crate) fn with_request_id(mut response: Response) -> Response {
    if !response.headers().contains_key(REQUEST_ID_HEADER)
        && let Ok(id) = HeaderValue::from_str(&uuid::Uuid::now_v7().to_string())
    {
        response.headers_mut().insert(REQUEST_ID_HEADER, id);
    }
    response
}

async fn forward(state: &AppState, target: &str, path: String, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = match read_body(body, &parts.headers, state.max_body_bytes).await {
        Ok(body) => body,
        Err(e) => return refusal(e),
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
                env: Vec::new(),
                call_depth: 0,
                source: kumo_core::Source::Http,
                peer: parts
                    .extensions
                    .get::<crate::auth::Peer>()
                    .map(|p| p.0.ip()),
                tail_logs: false,
            },
        )
        .await;
    invoked_response(invoked)
}

/// The function's response as the client gets it, or its failure, with the request id.
pub(crate) fn invoked_response(invoked: Invoked) -> Response {
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
    if invoked.cold {
        response
            .headers_mut()
            .insert(COLD_HEADER, HeaderValue::from_static("1"));
    }
    response
}

/// Reads a request body up to `limit` bytes; more is `payload_too_large`. An over-limit body is
/// still read (and dropped) up to a few times the limit, so the client, still uploading, gets
/// the 413 instead of a reset connection; beyond that it is cut off.
pub(crate) async fn read_body(
    body: Body,
    headers: &http::HeaderMap,
    limit: usize,
) -> ApiResult<Bytes> {
    let drain_cap = limit.saturating_mul(4).max(16 * 1024 * 1024);
    let too_large = || {
        ApiError::new(
            ErrorKind::PayloadTooLarge,
            format!("the request body is larger than the limit of {limit} bytes"),
        )
    };
    let declared = crate::headers::content_length(headers)?;
    if declared.is_some_and(|n| n > drain_cap as u64) {
        return Err(too_large());
    }
    let mut body = body;
    let mut buf = BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| body_error(&e))?;
        if let Ok(data) = frame.into_data() {
            seen = seen.saturating_add(data.len());
            if seen <= limit {
                buf.extend_from_slice(&data);
            } else if seen > drain_cap {
                break;
            }
        }
    }
    if seen > limit {
        return Err(too_large());
    }
    Ok(buf.freeze())
}

/// Why reading a request body failed: it stalled (408) or broke off (400).
pub(crate) fn body_error(e: &(dyn std::error::Error + 'static)) -> ApiError {
    match crate::connections::stalled(e) {
        Some(stalled) => ApiError::new(ErrorKind::RequestTimeout, stalled.to_string()),
        None => ApiError::bad_request(format!("reading the request body: {e}")),
    }
}

/// The metrics alone, for `--metrics-listen`: an address meant for a scraper, answering
/// without a token.
pub(crate) fn metrics_router() -> Router<Arc<AppState>> {
    Router::new().route("/metrics", get(metrics))
}

/// The metrics in the OpenMetrics text format (which Prometheus scrapes).
/// `/metrics`: every series for an admin (or the scraper's listener); a token of one
/// namespace sees the server's totals and its own functions' series only.
async fn metrics(
    State(state): State<Arc<AppState>>,
    token: Option<axum::Extension<kumo_core::TokenRecord>>,
) -> ApiResult<impl IntoResponse> {
    let mut body = crate::metrics::render(&state).await?;
    if let Some(namespace) = token.and_then(|t| t.0.namespace) {
        body = crate::metrics::only_namespace(&body, &namespace);
    }
    Ok((
        StatusCode::OK,
        [(
            http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    ))
}

#[cfg(test)]
mod tests {
    use super::{is_function_path, split_function_path};

    #[test]
    fn function_paths_need_a_target() {
        for path in ["/fn/hello", "/fn/hello/", "/fn/hello/a", "/fn/h%3Ax"] {
            assert!(is_function_path(path), "{path}");
        }
        for path in [
            "/fn",
            "/fn/",
            "/fn//x",
            "/fnx/hello",
            "/api/v1/functions",
            "/",
        ] {
            assert!(!is_function_path(path), "{path}");
        }
    }

    #[test]
    fn function_paths_split_into_target_and_raw_rest() {
        let split = |p| {
            let (t, r) = split_function_path(p);
            (t.into_owned(), r.to_string())
        };
        assert_eq!(split("/fn/hello"), ("hello".into(), "/".into()));
        assert_eq!(split("/fn/hello/"), ("hello".into(), "/".into()));
        assert_eq!(split("/fn/hello/a/b"), ("hello".into(), "/a/b".into()));
        assert_eq!(
            split("/fn/hello:prod/x"),
            ("hello:prod".into(), "/x".into())
        );
        assert_eq!(
            split("/fn/hello:%24LATEST/a%2Fb"),
            ("hello:$LATEST".into(), "/a%2Fb".into())
        );
    }
}
