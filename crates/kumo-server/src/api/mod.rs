//! The control API under `/api/v1`: JSON in, JSON out, errors in the one error format.

mod audit;
mod cluster;
mod events;
mod functions;
mod kv;
mod lambda;
mod namespaces;
mod objects;
mod openapi;
mod records;
mod secrets;
mod tokens;
mod versions;
mod workflows;

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::namespaces::Ns;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{MethodRouter, delete, get, post, put};
use kumo_core::ErrorKind;
pub(crate) use lambda::serve as lambda_api;
use std::sync::Arc;
pub(crate) use versions::aliases_changed;

/// A bucket name and (for a key's endpoint) key of the key-value and object APIs, or 400;
/// the bucket's key in the request's namespace.
fn checked(ns: &Ns, bucket: &str, key: Option<&str>) -> ApiResult<String> {
    kumo_core::validate_bucket(bucket).map_err(ApiError::bad_request)?;
    if let Some(key) = key {
        kumo_core::validate_key(key).map_err(ApiError::bad_request)?;
    }
    ns.key(bucket)
}

/// `Ok` when `name` is a deployed function, or was one and left records behind (its logs
/// stay readable after a delete); else 404 `function_not_found`. Asked only when a listing
/// came back empty, so a busy function costs nothing.
async fn known_function(state: &AppState, ns: &Ns, name: &str) -> ApiResult<()> {
    let key = ns.key(name)?;
    use kumo_store::prelude::*;
    if state.store.get_function(&key).await?.is_some() {
        return Ok(());
    }
    if !state
        .store
        .list_invocations(Some(&key), None, 1)
        .await?
        .is_empty()
    {
        return Ok(());
    }
    Err(ApiError::not_found(name))
}

/// `?prefix=&cursor=&limit=` of a bucket listing (keys or objects).
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListParams {
    #[serde(default)]
    prefix: String,
    cursor: Option<String>,
    limit: Option<u32>,
}

/// Every control-API path below `/api/v1`, in every namespace (`/namespaces/{ns}` before
/// one of them is the same endpoint there). The router is built from this table alone, so
/// no endpoint is served that is not in it, and the isolation test walks it.
pub const PATHS: &[&str] = &[
    "/functions",
    "/functions/{name}",
    "/functions/{name}/invoke",
    "/functions/{name}/versions",
    "/functions/{name}/versions/{version}",
    "/functions/{name}/aliases",
    "/functions/{name}/aliases/{alias}",
    "/functions/{name}/logs",
    "/functions/{name}/dlq",
    "/functions/{name}/dlq/redrive",
    "/invocations",
    "/invocations/{id}",
    "/invocations/{id}/events",
    "/usage",
    "/topics/{topic}",
    "/triggers",
    "/secrets",
    "/secrets/{name}",
    "/kv/{bucket}",
    "/kv/{bucket}/{*key}",
    "/objects/{bucket}",
    "/objects/{bucket}/{*key}",
    "/tokens",
    "/tokens/{name}",
    "/audit",
    "/cluster",
    "/namespaces",
    "/namespaces/{namespace}",
    "/workflows",
    "/workflows/{name}",
    "/workflows/{name}/executions",
    "/executions/{id}",
    "/executions/{id}/history",
    "/executions/{id}/stop",
    "/executions/{id}/redrive",
    "/tasks/{outcome}",
    "/openapi.json",
];

/// What serves `path` (one of [`PATHS`]).
fn endpoint(path: &str) -> MethodRouter<Arc<AppState>> {
    match path {
        "/functions" => get(functions::list),
        "/functions/{name}" => put(functions::deploy)
            .layer(DefaultBodyLimit::max(crate::MAX_CODE_BYTES))
            .get(functions::get)
            .delete(functions::delete),
        // Every answer of the invoke API has a request id, refusals included.
        "/functions/{name}/invoke" => post(functions::invoke).fallback(method_not_allowed).layer(
            axum::middleware::map_response(|response: axum::response::Response| async move {
                crate::gateway::with_request_id(response)
            }),
        ),
        "/functions/{name}/versions" => get(versions::list_versions).post(versions::publish),
        "/functions/{name}/versions/{version}" => {
            get(versions::get_version).delete(versions::delete_version)
        }
        "/functions/{name}/aliases" => get(versions::list_aliases),
        "/functions/{name}/aliases/{alias}" => get(versions::get_alias)
            .put(versions::set_alias)
            .delete(versions::delete_alias),
        "/functions/{name}/logs" => get(records::logs),
        "/functions/{name}/dlq" => get(events::dead_letters),
        "/functions/{name}/dlq/redrive" => post(events::redrive),
        "/invocations" => get(records::list_invocations),
        "/invocations/{id}" => get(events::get_invocation),
        "/invocations/{id}/events" => get(events::invocation_events),
        "/usage" => get(records::usage),
        "/topics/{topic}" => post(events::publish),
        "/triggers" => get(events::triggers),
        "/secrets" => get(secrets::list),
        "/secrets/{name}" => put(secrets::set).delete(secrets::delete),
        "/kv/{bucket}" => get(kv::list_keys),
        "/kv/{bucket}/{*key}" => get(kv::get_key).put(kv::put_key).delete(kv::delete_key),
        "/objects/{bucket}" => get(objects::list_objects),
        "/objects/{bucket}/{*key}" => get(objects::get_object)
            .head(objects::head_object)
            .put(objects::put_object)
            .layer(DefaultBodyLimit::disable())
            .delete(objects::delete_object),
        "/tokens" => get(tokens::list).post(tokens::create),
        "/tokens/{name}" => delete(tokens::revoke),
        "/audit" => get(audit::list),
        "/cluster" => get(cluster::status),
        "/namespaces" => get(namespaces::list),
        "/namespaces/{namespace}" => put(namespaces::put)
            .get(namespaces::get)
            .delete(namespaces::delete),
        "/workflows" => get(workflows::list),
        "/workflows/{name}" => put(workflows::deploy)
            .get(workflows::get)
            .delete(workflows::delete),
        "/workflows/{name}/executions" => post(workflows::start).get(workflows::list_executions),
        "/executions/{id}" => get(workflows::describe),
        "/executions/{id}/history" => get(workflows::history),
        "/executions/{id}/stop" => post(workflows::stop),
        "/executions/{id}/redrive" => post(workflows::redrive),
        "/tasks/{outcome}" => post(workflows::answer_task),
        "/openapi.json" => get(openapi::serve),
        // Invariant: every entry of PATHS has an arm (any server start proves it).
        other => panic!("no endpoint for {other}: add it to `endpoint`"),
    }
}

pub(crate) fn router() -> Router<Arc<AppState>> {
    PATHS
        .iter()
        .fold(Router::new(), |router, path| {
            router.route(path, endpoint(path))
        })
        .fallback(|uri: axum::http::Uri| async move {
            ApiError::new(
                ErrorKind::NotFound,
                format!("no API endpoint at /api/v1{}", uri.path()),
            )
        })
        .method_not_allowed_fallback(method_not_allowed)
}

async fn method_not_allowed(method: axum::http::Method) -> ApiError {
    ApiError::new(
        ErrorKind::MethodNotAllowed,
        format!("{method} is not allowed on this endpoint"),
    )
}
