//! `/secrets`: set (the body is the value), list (names and times, never values), delete.
//! A change unloads the functions that use the secret, so their next invocation reads it.

use crate::AppState;
use crate::error::{ApiError, ApiResult};
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
pub(super) async fn set(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    value: Bytes,
) -> ApiResult<StatusCode> {
    validate_secret_name(&name).map_err(ApiError::bad_request)?;
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
    let sealed = state.invoker.sealer.seal(&name, &value)?;
    let created = state
        .store
        .put_secret(&name, &sealed, kumo_core::now_ms())
        .await?;
    state.invoker.forget_users_of_secret(&name);
    tracing::info!(secret = %name, created, "secret set");
    Ok(if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    })
}

/// `GET /secrets`.
pub(super) async fn list(State(state): State<Arc<AppState>>) -> ApiResult<Json<Vec<SecretInfo>>> {
    Ok(Json(state.store.list_secrets().await?))
}

/// `DELETE /secrets/{name}` → 204; functions that use it fail to load until it is set again.
pub(super) async fn delete(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    if !state.store.delete_secret(&name).await? {
        return Err(ApiError::new(
            ErrorKind::NotFound,
            format!("no secret named {name:?}"),
        ));
    }
    state.invoker.forget_users_of_secret(&name);
    tracing::info!(secret = %name, "secret deleted");
    Ok(StatusCode::NO_CONTENT)
}
