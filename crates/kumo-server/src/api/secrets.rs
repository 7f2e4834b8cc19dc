//! `/secrets`: set (the body is the value), list (names and times, never values), delete.
//! A change unloads the functions that use the secret, so their next invocation reads it.

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::namespaces::Ns;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use bytes::Bytes;
use kumo_core::{ErrorKind, SecretInfo, validate_secret_name};
use kumo_store::prelude::*;
use std::sync::Arc;

/// The largest secret value.
const MAX_SECRET_BYTES: usize = 64 * 1024;

/// `PUT /secrets/{name}`: 201 created, 200 replaced.
#[utoipa::path(operation_id = "secrets_set", put, path = "/api/v1/secrets/{name}", params(("name" = String, Path, pattern = "^[A-Z_][A-Z0-9_]{0,127}$", example = "DB_URL")), request_body(content = String, content_type = "text/plain"), responses((status = 200, description = "Replaced"), (status = 201, description = "Created"), (status = "default", description = "An error (see the error table)", body = crate::error::ErrorEnvelope)))]
pub(super) async fn set(
    State(state): State<Arc<AppState>>,
    ns: Ns,
    Path(name): Path<String>,
    value: Bytes,
) -> ApiResult<StatusCode> {
    validate_secret_name(&name).map_err(ApiError::bad_request)?;
    let key = ns.key(&name)?;
    if value.len() > MAX_SECRET_BYTES {
        return Err(ApiError::new(
            ErrorKind::PayloadTooLarge,
            format!("a secret holds at most {MAX_SECRET_BYTES} bytes"),
        ));
    }
    let text = std::str::from_utf8(&value).map_err(|_| {
        ApiError::bad_request(
            "a secret's value must be UTF-8 text (it becomes an environment variable)",
        )
    })?;
    if text.contains('\0') {
        return Err(ApiError::bad_request("a secret's value cannot contain NUL"));
    }
    state.disk.ensure_room()?;
    let sealed = state.invoker.sealer.seal(&key, &value)?;
    let created = state
        .store
        .put_secret(&key, &sealed, kumo_core::now_ms())
        .await?;
    state.invoker.forget_users_of_secret(&key);
    tracing::info!(secret = %key, created, "secret set");
    Ok(if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    })
}

/// `GET /secrets`: the namespace's, by their names in it.
#[utoipa::path(operation_id = "secrets_list", get, path = "/api/v1/secrets", responses((status = 200, body = Vec<SecretInfo>), (status = "default", description = "An error (see the error table)", body = crate::error::ErrorEnvelope)))]
pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    ns: Ns,
) -> ApiResult<Json<Vec<SecretInfo>>> {
    let mut secrets = state.store.list_secrets().await?;
    secrets.retain(|s| ns.holds(&s.name));
    for secret in &mut secrets {
        secret.name = kumo_core::split_key(&secret.name).1.to_string();
    }
    Ok(Json(secrets))
}

/// `DELETE /secrets/{name}` → 204; functions that use it fail to load until it is set again.
#[utoipa::path(operation_id = "secrets_delete", delete, path = "/api/v1/secrets/{name}", params(("name" = String, Path, pattern = "^[A-Z_][A-Z0-9_]{0,127}$", example = "DB_URL")), responses((status = 204, description = "Deleted"), (status = "default", description = "An error (see the error table)", body = crate::error::ErrorEnvelope)))]
pub(super) async fn delete(
    State(state): State<Arc<AppState>>,
    ns: Ns,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let key = ns.key(&name)?;
    if !state.store.delete_secret(&key).await? {
        return Err(ApiError::new(
            ErrorKind::NotFound,
            format!("no secret named {name:?}"),
        ));
    }
    state.invoker.forget_users_of_secret(&key);
    tracing::info!(secret = %key, "secret deleted");
    Ok(StatusCode::NO_CONTENT)
}
