//! Object storage over HTTP: `/objects/{bucket}/{key..}` PUT (streamed to disk, up to
//! `--max-object-bytes`), GET (streamed back, `ETag`, `Content-Type`, `If-None-Match`), HEAD,
//! DELETE, and `/objects/{bucket}?prefix=&cursor=&limit=` to list. Buckets exist once an
//! object is written.

use super::{ListParams, checked};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::namespaces::Ns;
use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kumo_core::{ErrorKind, KV_LIST_PAGE, ObjectInfo};
use kumo_store::ObjectError;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

fn not_found(bucket: &str, key: &str) -> ApiError {
    ApiError::new(
        ErrorKind::ObjectNotFound,
        format!("no object {key:?} in bucket {bucket:?}"),
    )
}

/// The metadata headers of an object: `ETag`, `Content-Type`, `Content-Length`, `Last-Modified`
/// is left out (the JSON listing has `updated_at`).
fn object_headers(info: &ObjectInfo) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", info.etag)) {
        headers.insert(header::ETAG, etag);
    }
    let content_type = HeaderValue::from_str(&info.content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(info.size));
    headers
}

/// The trace the change's storage events continue (a new one if the request has none).
fn traceparent(headers: &HeaderMap) -> String {
    crate::trace::traceparent_for_event(headers.get("traceparent").and_then(|v| v.to_str().ok()))
}

/// `PUT /objects/{bucket}/{key..}`: 201 created or 200 replaced, with the object's metadata.
#[utoipa::path(operation_id = "objects_put_object", put, path = "/api/v1/objects/{bucket}/{key}", params(("bucket" = String, Path, pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", example = "bucket"), ("key" = String, Path)), request_body(content = Vec<u8>, content_type = "application/octet-stream"), responses((status = 200, description = "Replaced", body = ObjectInfo), (status = 201, description = "Created", body = ObjectInfo), (status = "default", description = "An error (see the error table)", body = crate::error::ErrorEnvelope)))]
pub(super) async fn put_object(
    State(state): State<Arc<AppState>>,
    ns: Ns,
    Path((bucket, key)): Path<(String, String)>,
    request: Request,
) -> ApiResult<Response> {
    let scoped = checked(&ns, &bucket, Some(&key))?;
    let (parts, body) = request.into_parts();
    let service = &state.objects;
    let declared = crate::headers::content_length(&parts.headers)?;
    if let Err(refused) = state.disk.ensure_room() {
        drain(&mut body.into_data_stream()).await;
        return Err(refused);
    }
    // A stalled upload is a 408, told apart from one that broke off.
    let stalled = std::sync::atomic::AtomicBool::new(false);
    let mut body = futures::TryStreamExt::inspect_err(body.into_data_stream(), |e| {
        if crate::connections::stalled(e).is_some() {
            stalled.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    });
    if declared.is_some_and(|n| n > service.max_bytes) {
        drain(&mut body).await;
        return Err(too_large(service.max_bytes));
    }
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream");
    let written = service
        .put(
            &state.events,
            &scoped,
            &key,
            content_type,
            &mut body,
            Some(&traceparent(&parts.headers)),
        )
        .await;
    let written = match written {
        Ok(written) => written,
        Err(ObjectError::TooLarge(max)) => {
            drain(&mut body).await;
            return Err(too_large(max));
        }
        Err(ObjectError::Upload(why)) => {
            let kind = if stalled.load(std::sync::atomic::Ordering::Relaxed) {
                ErrorKind::RequestTimeout
            } else {
                ErrorKind::InvalidRequest
            };
            return Err(ApiError::new(kind, format!("reading the upload: {why}")));
        }
        Err(ObjectError::QuotaExceeded(why)) => {
            return Err(ApiError::new(ErrorKind::QuotaExceeded, why));
        }
        Err(ObjectError::Store(e)) => return Err(e.into()),
    };
    let status = if written.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut headers = object_headers(&written.info);
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::CONTENT_TYPE);
    Ok((status, headers, Json(written.info)).into_response())
}

/// Reads (and drops) what is left of a refused upload, up to 16 MiB, so the client, still
/// sending, gets the 413 instead of a reset connection; beyond that it is cut off.
async fn drain<E>(body: &mut (impl futures::Stream<Item = Result<bytes::Bytes, E>> + Unpin)) {
    use futures::StreamExt as _;
    let mut left: usize = 16 * 1024 * 1024;
    while let Some(Ok(chunk)) = body.next().await {
        left = left.saturating_sub(chunk.len());
        if left == 0 {
            break;
        }
    }
}

fn too_large(max: u64) -> ApiError {
    ApiError::new(
        ErrorKind::PayloadTooLarge,
        format!("the object is larger than the limit of {max} bytes"),
    )
}

/// `GET /objects/{bucket}/{key..}`: the bytes, streamed; 304 for a matching `If-None-Match`.
#[utoipa::path(operation_id = "objects_get_object", get, path = "/api/v1/objects/{bucket}/{key}", params(("bucket" = String, Path, pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", example = "bucket"), ("key" = String, Path)), responses((status = 200, description = "The bytes, with the content type they were stored with", content_type = "*/*"), (status = 304, description = "Not modified"), (status = "default", description = "An error (see the error table)", body = crate::error::ErrorEnvelope)))]
pub(super) async fn get_object(
    State(state): State<Arc<AppState>>,
    ns: Ns,
    Path((bucket, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let scoped = checked(&ns, &bucket, Some(&key))?;
    let (info, body) = state
        .objects
        .storage
        .get(&scoped, &key)
        .await?
        .ok_or_else(|| not_found(&bucket, &key))?;
    let wanted = crate::headers::condition(&headers, &header::IF_NONE_MATCH)?;
    if wanted.is_some_and(|c| c.matches(&info.etag)) {
        let mut headers = object_headers(&info);
        headers.remove(header::CONTENT_LENGTH);
        return Ok((StatusCode::NOT_MODIFIED, headers).into_response());
    }
    Ok((object_headers(&info), Body::from_stream(body)).into_response())
}

/// `HEAD /objects/{bucket}/{key..}`: the metadata headers only.
#[utoipa::path(operation_id = "objects_head_object", head, path = "/api/v1/objects/{bucket}/{key}", params(("bucket" = String, Path, pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", example = "bucket"), ("key" = String, Path)), responses((status = 200, description = "The metadata, in headers"), (status = 304, description = "Not modified"), (status = "default", description = "An error (see the error table)", body = crate::error::ErrorEnvelope)))]
pub(super) async fn head_object(
    State(state): State<Arc<AppState>>,
    ns: Ns,
    Path((bucket, key)): Path<(String, String)>,
) -> ApiResult<Response> {
    let scoped = checked(&ns, &bucket, Some(&key))?;
    let info = state
        .objects
        .storage
        .head(&scoped, &key)
        .await?
        .ok_or_else(|| not_found(&bucket, &key))?;
    Ok((object_headers(&info), Body::empty()).into_response())
}

/// `DELETE /objects/{bucket}/{key..}`: 204, also when there was no such object.
#[utoipa::path(operation_id = "objects_delete_object", delete, path = "/api/v1/objects/{bucket}/{key}", params(("bucket" = String, Path, pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", example = "bucket"), ("key" = String, Path)), responses((status = 204, description = "Deleted (or absent)"), (status = "default", description = "An error (see the error table)", body = crate::error::ErrorEnvelope)))]
pub(super) async fn delete_object(
    State(state): State<Arc<AppState>>,
    ns: Ns,
    Path((bucket, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let scoped = checked(&ns, &bucket, Some(&key))?;
    state
        .objects
        .delete(&state.events, &scoped, &key, Some(&traceparent(&headers)))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub(super) struct ObjectPage {
    pub objects: Vec<ObjectInfo>,
    pub cursor: Option<String>,
}

/// `GET /objects/{bucket}?prefix=&cursor=&limit=`: one page of objects (at most 1000).
#[utoipa::path(operation_id = "objects_list_objects", get, path = "/api/v1/objects/{bucket}", params(("bucket" = String, Path, pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", example = "bucket"), super::ListParams), responses((status = 200, body = ObjectPage), (status = "default", description = "An error (see the error table)", body = crate::error::ErrorEnvelope)))]
pub(super) async fn list_objects(
    State(state): State<Arc<AppState>>,
    ns: Ns,
    Path(bucket): Path<String>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> ApiResult<Json<ObjectPage>> {
    let Query(params) = params?;
    let scoped = checked(&ns, &bucket, None)?;
    let limit = params.limit.unwrap_or(KV_LIST_PAGE).clamp(1, KV_LIST_PAGE);
    let (objects, cursor) = state
        .objects
        .storage
        .list(&scoped, &params.prefix, params.cursor.as_deref(), limit)
        .await?;
    Ok(Json(ObjectPage { objects, cursor }))
}
