//! `/tokens`: create (the secret is in this one answer and nowhere else, ever), list, revoke.
//! Admin only (the authorisation layer says so). Every change replaces the cache the
//! authorisation layer reads, so a revoked token is refused on its next request.

use crate::AppState;
use crate::auth::{new_secret, secret_hash};
use crate::error::{ApiError, ApiResult};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use bytes::Bytes;
use kumo_core::{ErrorKind, Role, TokenRecord, parse_duration, validate_token_name};
use kumo_store::StoredToken;
use kumo_store::prelude::*;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateToken {
    name: String,
    role: Role,
    /// The namespace it acts in: `default` when not given; an admin acts in every one.
    namespace: Option<String>,
    /// How long it is valid, e.g. `30d`; none: until revoked.
    expires: Option<String>,
    /// Give it an access key too, so it signs AWS API requests (SigV4: boto3, the AWS CLI);
    /// the secret access key is the token's secret.
    #[serde(default)]
    access_key: bool,
}

/// A new token: its record and, this once, its secret.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Created {
    #[serde(flatten)]
    token: TokenRecord,
    secret: String,
}

/// `POST /tokens` `{"name", "role", "namespace"?, "expires"?, "access_key"?}` → 201 with the secret; 409 if the name is
/// taken.
#[utoipa::path(operation_id = "tokens_create", post, path = "/api/v1/tokens", request_body(content = CreateToken), responses((status = 201, description = "Created; the secret is shown this once", body = Created), (status = "default", description = "An error (see the error table)", body = crate::error::ErrorEnvelope)))]
pub(super) async fn create(
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Created>)> {
    let request: CreateToken = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid token JSON: {e}")))?;
    validate_token_name(&request.name).map_err(ApiError::bad_request)?;
    let namespace = match (request.role, request.namespace) {
        (Role::Admin, None) => None,
        (Role::Admin, Some(_)) => {
            return Err(ApiError::bad_request(
                "an admin token acts in every namespace: give a namespace to other roles only",
            ));
        }
        (_, namespace) => {
            let namespace = namespace.unwrap_or_else(|| kumo_core::DEFAULT_NAMESPACE.to_string());
            if !state.invoker.namespaces.exists(&namespace) {
                return Err(crate::auth::no_namespace(&namespace));
            }
            Some(namespace)
        }
    };
    let now = kumo_core::now_ms();
    let expires_at = match &request.expires {
        Some(text) => {
            let valid =
                parse_duration(text).map_err(|e| ApiError::bad_request(format!("expires: {e}")))?;
            let ms = i64::try_from(valid.as_millis()).unwrap_or(i64::MAX);
            Some(now.saturating_add(ms))
        }
        None => None,
    };
    state.disk.ensure_room()?;
    let secret = new_secret()?;
    let access_key_id = match request.access_key {
        true => Some(crate::auth::new_access_key_id()?),
        false => None,
    };
    let sealed_secret = match &access_key_id {
        Some(id) => Some(
            state
                .invoker
                .sealer
                .seal(&crate::auth::access_key_seal_name(id), secret.as_bytes())?,
        ),
        None => None,
    };
    let token = TokenRecord {
        name: request.name,
        role: request.role,
        namespace,
        created_at: now,
        expires_at,
        last_used_at: None,
        access_key_id,
    };
    let stored = StoredToken {
        record: token.clone(),
        secret_hash: secret_hash(&secret),
        sealed_secret,
    };
    if !state.store.create_token(&stored).await? {
        return Err(ApiError::new(
            ErrorKind::Conflict,
            format!("a token named {:?} exists already", token.name),
        ));
    }
    reload(&state).await?;
    tracing::info!(token = %token.name, role = token.role.as_str(), "token created");
    Ok((StatusCode::CREATED, Json(Created { token, secret })))
}

/// `GET /tokens`: every token, without secrets.
#[utoipa::path(operation_id = "tokens_list", get, path = "/api/v1/tokens", responses((status = 200, body = Vec<TokenRecord>), (status = "default", description = "An error (see the error table)", body = crate::error::ErrorEnvelope)))]
pub(super) async fn list(State(state): State<Arc<AppState>>) -> ApiResult<Json<Vec<TokenRecord>>> {
    let tokens = state.store.list_tokens().await?;
    Ok(Json(tokens.into_iter().map(|t| t.record).collect()))
}

/// `DELETE /tokens/{name}` → 204; refused from the next request on.
#[utoipa::path(operation_id = "tokens_revoke", delete, path = "/api/v1/tokens/{name}", params(("name" = String, Path, pattern = "^[a-z0-9][a-z0-9._-]{0,63}$", example = "ci")), responses((status = 204, description = "Revoked"), (status = "default", description = "An error (see the error table)", body = crate::error::ErrorEnvelope)))]
pub(super) async fn revoke(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    if !state.store.revoke_token(&name).await? {
        return Err(ApiError::new(
            ErrorKind::NotFound,
            format!("no token named {name:?}"),
        ));
    }
    reload(&state).await?;
    tracing::info!(token = %name, "token revoked");
    Ok(StatusCode::NO_CONTENT)
}

async fn reload(state: &AppState) -> ApiResult<()> {
    state.invoker.auth.load(state.store.list_tokens().await?);
    Ok(())
}
