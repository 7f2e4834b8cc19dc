//! `/namespaces`: create (or change the quotas of), list with use against quota, show and
//! delete namespaces. Admin only (the authorisation layer says so). Every change replaces the
//! cache the authorisation layer and the quota checks read.

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use bytes::Bytes;
use kumo_core::{
    DEFAULT_NAMESPACE, ErrorKind, NamespaceInfo, NamespaceRecord, Quotas, validate_namespace,
};
use kumo_store::prelude::*;
use std::sync::Arc;

async fn info(state: &AppState, namespace: NamespaceRecord) -> ApiResult<NamespaceInfo> {
    let used = crate::quotas::in_use(state, &namespace.name).await?;
    Ok(NamespaceInfo { namespace, used })
}

/// `PUT /namespaces/{ns}` with its quotas as JSON (`{"max_functions": 10, ...}`; an empty
/// body: none): 201 created, 200 when it existed and its quotas were replaced.
#[utoipa::path(operation_id = "namespaces_put", put, path = "/api/v1/namespaces/{namespace}", params(("namespace" = String, Path, pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", example = "default")), request_body(content = Option<Quotas>), responses((status = 200, description = "Quotas replaced", body = NamespaceInfo), (status = 201, description = "Created", body = NamespaceInfo), (status = "default", description = "An error (see the error table)", body = crate::error::ErrorEnvelope)))]
pub(super) async fn put(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<NamespaceInfo>)> {
    validate_namespace(&name).map_err(ApiError::bad_request)?;
    let quotas: Quotas = match body.iter().all(u8::is_ascii_whitespace) {
        true => Quotas::default(),
        false => serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid quotas JSON: {e}")))?,
    };
    state.disk.ensure_room()?;
    // Changes one at a time, so the caches are reloaded in the order the store changed.
    let _changing = state.lock_registry().await?;
    let record = NamespaceRecord {
        name: name.clone(),
        created_at: kumo_core::now_ms(),
        quotas,
    };
    let created = state.store.create_namespace(&record).await?;
    if !created {
        state.store.set_quotas(&name, &record.quotas).await?;
    }
    reload(&state).await?;
    tracing::info!(namespace = %name, created, "namespace saved");
    let record = find(&state, &name)?;
    let status = match created {
        true => StatusCode::CREATED,
        false => StatusCode::OK,
    };
    Ok((status, Json(info(&state, record).await?)))
}

/// `GET /namespaces`: every namespace, its quotas and its use.
#[utoipa::path(operation_id = "namespaces_list", get, path = "/api/v1/namespaces", responses((status = 200, body = Vec<NamespaceInfo>), (status = "default", description = "An error (see the error table)", body = crate::error::ErrorEnvelope)))]
pub(super) async fn list(
    State(state): State<Arc<AppState>>,
) -> ApiResult<Json<Vec<NamespaceInfo>>> {
    let mut infos = Vec::new();
    for namespace in state.store.list_namespaces().await? {
        infos.push(info(&state, namespace).await?);
    }
    Ok(Json(infos))
}

/// `GET /namespaces/{ns}`.
#[utoipa::path(operation_id = "namespaces_get", get, path = "/api/v1/namespaces/{namespace}", params(("namespace" = String, Path, pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", example = "default")), responses((status = 200, body = NamespaceInfo), (status = "default", description = "An error (see the error table)", body = crate::error::ErrorEnvelope)))]
pub(super) async fn get(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> ApiResult<Json<NamespaceInfo>> {
    let record = find(&state, &name)?;
    Ok(Json(info(&state, record).await?))
}

/// `DELETE /namespaces/{ns}` → 204; 409 while it holds functions, keys, objects, secrets or
/// tokens (its records and logs age out with the retention period).
#[utoipa::path(operation_id = "namespaces_delete", delete, path = "/api/v1/namespaces/{namespace}", params(("namespace" = String, Path, pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", example = "default")), responses((status = 204, description = "Deleted"), (status = "default", description = "An error (see the error table)", body = crate::error::ErrorEnvelope)))]
pub(super) async fn delete(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    if name == DEFAULT_NAMESPACE {
        return Err(ApiError::bad_request("the default namespace always exists"));
    }
    let _changing = state.lock_registry().await?;
    find(&state, &name)?;
    if state.store.namespace_in_use(&name).await? {
        return Err(ApiError::new(
            ErrorKind::Conflict,
            format!(
                "namespace {name:?} is not empty: delete its functions, keys, objects, secrets and tokens first"
            ),
        ));
    }
    state.store.delete_namespace(&name).await?;
    reload(&state).await?;
    tracing::info!(namespace = %name, "namespace deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// The namespace from the cache (the store's, reloaded after every change).
fn find(state: &AppState, name: &str) -> ApiResult<NamespaceRecord> {
    state
        .invoker
        .namespaces
        .get(name)
        .ok_or_else(|| crate::auth::no_namespace(name))
}

async fn reload(state: &AppState) -> ApiResult<()> {
    state.namespaces_changed(state.store.list_namespaces().await?);
    Ok(())
}
