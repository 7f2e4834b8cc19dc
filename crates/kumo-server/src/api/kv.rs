//! The key-value store over HTTP: `/kv/{bucket}/{key..}` GET (with `ETag`), PUT (conditional
//! with `If-Match` / `If-None-Match: *`), DELETE (conditional with `If-Match`), and
//! `/kv/{bucket}?prefix=&cursor=&limit=` to list keys. Buckets exist once a key is written.

use super::{ListParams, checked};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::gateway::read_body;
use crate::headers::{Condition, condition};
use crate::namespaces::Ns;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kumo_core::{ErrorKind, Expect, KV_LIST_PAGE, KeyPage, KvWrite, MAX_KV_VALUE_BYTES};
use kumo_store::prelude::*;
use std::sync::Arc;

/// `"etag"` as a header value (etags are hex, always valid).
fn etag_header(etag: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{etag}\"")).unwrap_or(HeaderValue::from_static("\"\""))
}

/// What a write expects from its `If-Match` / `If-None-Match` headers.
fn expectation(headers: &HeaderMap) -> ApiResult<ExpectOwned> {
    match (
        condition(headers, &header::IF_MATCH)?,
        condition(headers, &header::IF_NONE_MATCH)?,
    ) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "give If-Match or If-None-Match, not both",
        )),
        (Some(Condition::Any), None) => Ok(ExpectOwned::Present),
        (Some(Condition::Tags(mut tags)), None) if tags.len() == 1 => {
            Ok(ExpectOwned::Etag(tags.remove(0)))
        }
        (Some(Condition::Tags(_)), None) => Err(ApiError::bad_request(
            "a write takes one entity tag in If-Match",
        )),
        (None, Some(Condition::Any)) => Ok(ExpectOwned::Absent),
        (None, Some(Condition::Tags(_))) => Err(ApiError::bad_request(
            "a write takes If-None-Match: * only (create if absent)",
        )),
        (None, None) => Ok(ExpectOwned::Anything),
    }
}

enum ExpectOwned {
    Anything,
    Absent,
    Present,
    Etag(String),
}

impl ExpectOwned {
    fn as_expect(&self) -> Expect<'_> {
        match self {
            Self::Anything => Expect::Anything,
            Self::Absent => Expect::Absent,
            Self::Present => Expect::Present,
            Self::Etag(tag) => Expect::Etag(tag),
        }
    }

    fn is_conditional(&self) -> bool {
        !matches!(self, Self::Anything)
    }
}

fn precondition_failed(bucket: &str, key: &str) -> ApiError {
    ApiError::new(
        ErrorKind::PreconditionFailed,
        format!("{bucket}/{key} does not match the If-Match / If-None-Match condition"),
    )
}

/// `GET /kv/{bucket}/{key..}`: the value, its `ETag`; 304 for a matching `If-None-Match`.
#[utoipa::path(operation_id = "kv_get_key", get, path = "/api/v1/kv/{bucket}/{key}", params(("bucket" = String, Path, pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", example = "bucket"), ("key" = String, Path)), responses((status = 200, description = "The value, with its ETag", content_type = "application/octet-stream"), (status = 304, description = "Not modified"), (status = "default", description = "An error (see the error table)", body = crate::error::ErrorEnvelope)))]
pub(super) async fn get_key(
    State(state): State<Arc<AppState>>,
    ns: Ns,
    Path((bucket, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let scoped = checked(&ns, &bucket, Some(&key))?;
    let entry = state.store.kv_get(&scoped, &key).await?.ok_or_else(|| {
        ApiError::new(
            ErrorKind::KeyNotFound,
            format!("no key {key:?} in bucket {bucket:?}"),
        )
    })?;
    let etag = etag_header(&entry.etag);
    let not_modified =
        condition(&headers, &header::IF_NONE_MATCH)?.is_some_and(|c| c.matches(&entry.etag));
    if not_modified {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    Ok((
        [
            (header::ETAG, etag),
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
        ],
        entry.value,
    )
        .into_response())
}

/// `PUT /kv/{bucket}/{key..}`: 201 created or 204 replaced, with the new `ETag`; 412 when the
/// condition does not hold (nothing is written).
#[utoipa::path(operation_id = "kv_put_key", put, path = "/api/v1/kv/{bucket}/{key}", params(("bucket" = String, Path, pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", example = "bucket"), ("key" = String, Path)), request_body(content = Vec<u8>, content_type = "application/octet-stream"), responses((status = 201, description = "Created"), (status = 204, description = "Replaced"), (status = "default", description = "An error (see the error table)", body = crate::error::ErrorEnvelope)))]
pub(super) async fn put_key(
    State(state): State<Arc<AppState>>,
    ns: Ns,
    Path((bucket, key)): Path<(String, String)>,
    request: Request,
) -> ApiResult<Response> {
    let scoped = checked(&ns, &bucket, Some(&key))?;
    let (parts, body) = request.into_parts();
    let expect = expectation(&parts.headers)?;
    state.disk.ensure_room()?;
    let value = read_body(body, &parts.headers, MAX_KV_VALUE_BYTES).await?;
    let adding = kumo_core::Adding::KvBytes((key.len() + value.len()) as u64);
    state.quota.ensure(&ns.0, adding).await?;
    match state
        .store
        .kv_put(&scoped, &key, &value, expect.as_expect())
        .await?
    {
        KvWrite::Written { etag, created } => {
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::NO_CONTENT
            };
            Ok((status, [(header::ETAG, etag_header(&etag))]).into_response())
        }
        KvWrite::Conflict => Err(precondition_failed(&bucket, &key)),
    }
}

/// `DELETE /kv/{bucket}/{key..}`: 204, also when there was no such key (a retried delete
/// succeeds); with `If-Match`, 412 unless the key holds that etag.
#[utoipa::path(operation_id = "kv_delete_key", delete, path = "/api/v1/kv/{bucket}/{key}", params(("bucket" = String, Path, pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", example = "bucket"), ("key" = String, Path)), responses((status = 204, description = "Deleted (or absent)"), (status = "default", description = "An error (see the error table)", body = crate::error::ErrorEnvelope)))]
pub(super) async fn delete_key(
    State(state): State<Arc<AppState>>,
    ns: Ns,
    Path((bucket, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let scoped = checked(&ns, &bucket, Some(&key))?;
    let expect = expectation(&headers)?;
    let deleted = state
        .store
        .kv_delete(&scoped, &key, expect.as_expect())
        .await?;
    if !deleted && expect.is_conditional() {
        return Err(precondition_failed(&bucket, &key));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /kv/{bucket}?prefix=&cursor=&limit=`: one page of keys (at most 1000).
#[utoipa::path(operation_id = "kv_list_keys", get, path = "/api/v1/kv/{bucket}", params(("bucket" = String, Path, pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", example = "bucket"), super::ListParams), responses((status = 200, body = KeyPage), (status = "default", description = "An error (see the error table)", body = crate::error::ErrorEnvelope)))]
pub(super) async fn list_keys(
    State(state): State<Arc<AppState>>,
    ns: Ns,
    Path(bucket): Path<String>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> ApiResult<Json<KeyPage>> {
    let Query(params) = params?;
    let scoped = checked(&ns, &bucket, None)?;
    let limit = params.limit.unwrap_or(KV_LIST_PAGE).clamp(1, KV_LIST_PAGE);
    let page = state
        .store
        .kv_list(&scoped, &params.prefix, params.cursor.as_deref(), limit)
        .await?;
    Ok(Json(page))
}
