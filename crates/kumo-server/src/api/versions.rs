//! Versions and aliases: publish `$LATEST` as an immutable version, list and delete versions
//! (not while an alias points at one), and set, list and delete aliases.

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::namespaces::Ns;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use bytes::Bytes;
use kumo_core::{AliasRecord, Canary, ErrorKind, VersionRecord, validate_alias, validate_canary};
use kumo_store::prelude::*;
use kumo_store::{AliasSet, Published, VersionDeleted};
use serde::Deserialize;
use std::sync::Arc;

/// An optional JSON body (empty = all defaults); a malformed one is a 400 in kumo's format.
pub(super) fn json_body<T: for<'de> Deserialize<'de> + Default>(body: &Bytes) -> ApiResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))
}

fn version_number(text: &str) -> ApiResult<u32> {
    match text.parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(ApiError::bad_request(format!(
            "{text:?} is not a version number (1 or more)"
        ))),
    }
}

pub(crate) fn no_version(name: &str, version: u32) -> ApiError {
    ApiError::new(
        ErrorKind::FunctionNotFound,
        format!("function {name:?} has no version {version}"),
    )
}

pub(crate) fn no_alias(name: &str, alias: &str) -> ApiError {
    ApiError::new(
        ErrorKind::FunctionNotFound,
        format!("function {name:?} has no alias {alias:?}"),
    )
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PublishRequest {
    #[serde(default)]
    description: String,
}

/// `POST /functions/{name}/versions` (body optional: `{"description": ".."}`): 201 with the
/// new version, or 200 with the newest one when `$LATEST` has not changed since.
#[utoipa::path(operation_id = "versions_publish", post, path = "/api/v1/functions/{name}/versions", params(("name" = String, Path, pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", example = "hello")), request_body(content = Option<PublishRequest>), responses((status = 200, description = "Unchanged since the newest version", body = VersionRecord), (status = 201, body = VersionRecord), (status = "default", description = "An error (see the error table)", body = crate::error::ErrorEnvelope)))]
pub(super) async fn publish(
    State(state): State<Arc<AppState>>,
    ns: Ns,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<VersionRecord>)> {
    let request: PublishRequest = json_body(&body)?;
    let (version, created) = publish_latest(&state, &ns, &name, &request.description).await?;
    let status = match created {
        true => StatusCode::CREATED,
        false => StatusCode::OK,
    };
    Ok((status, Json(version)))
}

/// Publishes `$LATEST` of `name`: the new version and `true`, or the newest one and `false`
/// when `$LATEST` has not changed since.
pub(crate) async fn publish_latest(
    state: &AppState,
    ns: &Ns,
    name: &str,
    description: &str,
) -> ApiResult<(VersionRecord, bool)> {
    let key = ns.key(name)?;
    state.disk.ensure_room()?;
    let published = state
        .store
        .publish_version(&key, description, kumo_core::now_ms())
        .await?;
    match published {
        Published::Created(version) => {
            tracing::info!(function = %key, version = version.version, "published");
            Ok((version, true))
        }
        Published::Unchanged(version) => Ok((version, false)),
        Published::NoFunction => Err(ApiError::not_found(name)),
    }
}

#[utoipa::path(operation_id = "versions_list_versions", get, path = "/api/v1/functions/{name}/versions", params(("name" = String, Path, pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", example = "hello")), responses((status = 200, body = Vec<VersionRecord>), (status = "default", description = "An error (see the error table)", body = crate::error::ErrorEnvelope)))]
pub(super) async fn list_versions(
    State(state): State<Arc<AppState>>,
    ns: Ns,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<VersionRecord>>> {
    let key = ns.key(&name)?;
    if state.store.get_function(&key).await?.is_none() {
        return Err(ApiError::not_found(&name));
    }
    Ok(Json(state.store.list_versions(&key).await?))
}

#[utoipa::path(operation_id = "versions_get_version", get, path = "/api/v1/functions/{name}/versions/{version}", params(("name" = String, Path, pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", example = "hello"), ("version" = String, Path, pattern = "^[1-9][0-9]{0,8}$", example = "1")), responses((status = 200, body = VersionRecord), (status = "default", description = "An error (see the error table)", body = crate::error::ErrorEnvelope)))]
pub(super) async fn get_version(
    State(state): State<Arc<AppState>>,
    ns: Ns,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<Json<VersionRecord>> {
    let key = ns.key(&name)?;
    let version = version_number(&version)?;
    let found = state.store.get_version(&key, version).await?;
    found.map(Json).ok_or_else(|| no_version(&name, version))
}

/// `DELETE /functions/{name}/versions/{n}`: 204, or 409 while an alias points at it.
#[utoipa::path(operation_id = "versions_delete_version", delete, path = "/api/v1/functions/{name}/versions/{version}", params(("name" = String, Path, pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", example = "hello"), ("version" = String, Path, pattern = "^[1-9][0-9]{0,8}$", example = "1")), responses((status = 204, description = "Deleted"), (status = "default", description = "An error (see the error table)", body = crate::error::ErrorEnvelope)))]
pub(super) async fn delete_version(
    State(state): State<Arc<AppState>>,
    ns: Ns,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let version = version_number(&version)?;
    delete_published(&state, &ns, &name, version).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes version `version` of `name`; 409 while an alias points at it.
pub(crate) async fn delete_published(
    state: &AppState,
    ns: &Ns,
    name: &str,
    version: u32,
) -> ApiResult<()> {
    let key = ns.key(name)?;
    let _changing = state.lock_registry().await?;
    match state.store.delete_version(&key, version).await? {
        VersionDeleted::Deleted => {
            state.invoker.forget_version(&key, version);
            Ok(())
        }
        VersionDeleted::NotFound => Err(no_version(name, version)),
        VersionDeleted::InUse(aliases) => Err(ApiError::new(
            ErrorKind::Conflict,
            format!(
                "version {version} of {name:?} is in use by alias {}; point it elsewhere first",
                aliases.join(", ")
            ),
        )),
    }
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct AliasRequest {
    version: u32,
    canary: Option<Canary>,
}

/// `PUT /functions/{name}/aliases/{alias}` with `{"version": 3, "canary": {"version": 4,
/// "weight": 10}}` (canary optional): 201 created, 200 moved.
#[utoipa::path(operation_id = "versions_set_alias", put, path = "/api/v1/functions/{name}/aliases/{alias}", params(("name" = String, Path, pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", example = "hello"), ("alias" = String, Path, pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", example = "live")), request_body(content = AliasRequest), responses((status = 200, description = "Moved", body = AliasRecord), (status = 201, description = "Created", body = AliasRecord), (status = "default", description = "An error (see the error table)", body = crate::error::ErrorEnvelope)))]
pub(super) async fn set_alias(
    State(state): State<Arc<AppState>>,
    ns: Ns,
    Path((name, alias)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<AliasRecord>)> {
    validate_alias(&alias).map_err(ApiError::bad_request)?;
    let request: AliasRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid alias JSON: {e}")))?;
    let (record, created) =
        point_alias(&state, &ns, &name, &alias, request.version, request.canary).await?;
    let status = match created {
        true => StatusCode::CREATED,
        false => StatusCode::OK,
    };
    Ok((status, Json(record)))
}

/// Points alias `alias` (a valid name) of `name` at `version`, with `canary`: the alias,
/// and whether it is new.
pub(crate) async fn point_alias(
    state: &AppState,
    ns: &Ns,
    name: &str,
    alias: &str,
    version: u32,
    canary: Option<Canary>,
) -> ApiResult<(AliasRecord, bool)> {
    let key = ns.key(name)?;
    state.disk.ensure_room()?;
    if let Some(canary) = &canary {
        validate_canary(version, canary).map_err(ApiError::bad_request)?;
    }
    let _changing = state.lock_registry().await?;
    let set = state
        .store
        .set_alias(&key, alias, version, canary, kumo_core::now_ms())
        .await?;
    let (record, created) = match set {
        AliasSet::Created(record) => (record, true),
        AliasSet::Updated(record) => (record, false),
        AliasSet::NoVersion(version) => return Err(no_version(name, version)),
    };
    aliases_changed(state).await?;
    tracing::info!(function = %key, alias = %alias, version = record.version, "alias set");
    Ok((record, created))
}

#[utoipa::path(operation_id = "versions_list_aliases", get, path = "/api/v1/functions/{name}/aliases", params(("name" = String, Path, pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", example = "hello")), responses((status = 200, body = Vec<AliasRecord>), (status = "default", description = "An error (see the error table)", body = crate::error::ErrorEnvelope)))]
pub(super) async fn list_aliases(
    State(state): State<Arc<AppState>>,
    ns: Ns,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<AliasRecord>>> {
    let key = ns.key(&name)?;
    if state.store.get_function(&key).await?.is_none() {
        return Err(ApiError::not_found(&name));
    }
    Ok(Json(state.store.list_aliases(Some(&key)).await?))
}

#[utoipa::path(operation_id = "versions_get_alias", get, path = "/api/v1/functions/{name}/aliases/{alias}", params(("name" = String, Path, pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", example = "hello"), ("alias" = String, Path, pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", example = "live")), responses((status = 200, body = AliasRecord), (status = "default", description = "An error (see the error table)", body = crate::error::ErrorEnvelope)))]
pub(super) async fn get_alias(
    State(state): State<Arc<AppState>>,
    ns: Ns,
    Path((name, alias)): Path<(String, String)>,
) -> ApiResult<Json<AliasRecord>> {
    let key = ns.key(&name)?;
    let aliases = state.store.list_aliases(Some(&key)).await?;
    let found = aliases.into_iter().find(|a| a.name == alias);
    found.map(Json).ok_or_else(|| no_alias(&name, &alias))
}

#[utoipa::path(operation_id = "versions_delete_alias", delete, path = "/api/v1/functions/{name}/aliases/{alias}", params(("name" = String, Path, pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", example = "hello"), ("alias" = String, Path, pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", example = "live")), responses((status = 204, description = "Deleted"), (status = "default", description = "An error (see the error table)", body = crate::error::ErrorEnvelope)))]
pub(super) async fn delete_alias(
    State(state): State<Arc<AppState>>,
    ns: Ns,
    Path((name, alias)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    remove_alias(&state, &ns, &name, &alias).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn remove_alias(
    state: &AppState,
    ns: &Ns,
    name: &str,
    alias: &str,
) -> ApiResult<()> {
    let key = ns.key(name)?;
    let _changing = state.lock_registry().await?;
    if !state.store.delete_alias(&key, alias).await? {
        return Err(no_alias(name, alias));
    }
    aliases_changed(state).await
}

/// Rebuilds the invoker's alias table from the store (under the deploy lock, so two changes
/// cannot rebuild out of order).
pub(crate) async fn aliases_changed(state: &AppState) -> ApiResult<()> {
    let aliases = state.store.list_aliases(None).await?;
    state.invoker.aliases.rebuild(aliases);
    Ok(())
}
