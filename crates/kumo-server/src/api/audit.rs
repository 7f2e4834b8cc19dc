//! `GET /audit?since=24h&namespace=NS&limit=100`: the audit trail (admin only), oldest first.

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use kumo_core::{AuditEntry, parse_duration};
use kumo_store::prelude::*;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct AuditParams {
    since: Option<String>,
    /// Only the changes made in this namespace.
    namespace: Option<String>,
    limit: Option<u32>,
}

#[utoipa::path(operation_id = "audit_list", get, path = "/api/v1/audit", params(AuditParams), responses((status = 200, body = Vec<AuditEntry>), (status = "default", description = "An error (see the error table)", body = crate::error::ErrorEnvelope)))]
pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    params: Result<Query<AuditParams>, QueryRejection>,
) -> ApiResult<Json<Vec<AuditEntry>>> {
    let Query(params) = params?;
    let back = parse_duration(params.since.as_deref().unwrap_or("24h"))
        .map_err(|e| ApiError::bad_request(format!("since: {e}")))?;
    let back_ms = i64::try_from(back.as_millis()).unwrap_or(i64::MAX);
    let since = kumo_core::now_ms().saturating_sub(back_ms).max(0);
    let limit = params.limit.unwrap_or(100).min(10_000);
    let namespace = params.namespace.as_deref();
    Ok(Json(state.store.list_audit(since, namespace, limit).await?))
}
