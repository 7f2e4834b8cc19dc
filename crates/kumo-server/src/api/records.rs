//! Reading what happened: invocation records, logs and usage. Each read first flushes the recorder,
//! so a client sees its own invocations.

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use kumo_core::{InvocationRecord, LogRecord, UsageBy, UsageReport, parse_duration};
use kumo_store::LogQuery;
use serde::Deserialize;
use std::sync::Arc;

const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 10_000;

#[derive(Deserialize)]
pub struct InvocationsParams {
    function: Option<String>,
    limit: Option<u32>,
}

pub async fn list_invocations(
    State(state): State<Arc<AppState>>,
    params: Result<Query<InvocationsParams>, QueryRejection>,
) -> ApiResult<Json<Vec<InvocationRecord>>> {
    let Query(params) = params?;
    state.recorder.flush().await;
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    let records = state
        .store
        .list_invocations(params.function.as_deref(), limit)
        .await?;
    Ok(Json(records))
}

#[derive(Deserialize)]
pub struct LogsParams {
    request_id: Option<String>,
    /// Only lines with a larger id (a cursor from an earlier answer).
    after: Option<i64>,
    limit: Option<u32>,
}

/// `GET /functions/{name}/logs`: the newest `limit` lines, oldest first. Logs stay readable
/// after the function is deleted.
pub async fn logs(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    params: Result<Query<LogsParams>, QueryRejection>,
) -> ApiResult<Json<Vec<LogRecord>>> {
    let Query(params) = params?;
    state.recorder.flush().await;
    let query = LogQuery {
        function: name,
        request_id: params.request_id,
        after_id: params.after,
        limit: params.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT),
    };
    Ok(Json(state.store.list_logs(&query).await?))
}

#[derive(Deserialize)]
pub struct UsageParams {
    /// How far back, e.g. `24h` (the default) or `7d`.
    since: Option<String>,
    /// `function` (default), `version` or `day`.
    by: Option<String>,
}

/// `GET /usage?since=24h&by=function`: requests, errors, throttles, GB-seconds, duration
/// percentiles and cost per group, and in total.
pub async fn usage(
    State(state): State<Arc<AppState>>,
    params: Result<Query<UsageParams>, QueryRejection>,
) -> ApiResult<Json<UsageReport>> {
    let Query(params) = params?;
    let back = parse_duration(params.since.as_deref().unwrap_or("24h"))
        .map_err(|e| ApiError::bad_request(format!("since: {e}")))?;
    let by = UsageBy::parse(params.by.as_deref().unwrap_or("function"))
        .map_err(|e| ApiError::bad_request(format!("by: {e}")))?;
    state.recorder.flush().await;
    let since = kumo_core::now_ms().saturating_sub(i64::try_from(back.as_millis()).unwrap_or(0));
    let (mut rows, mut total) = state.store.usage(since, by).await?;
    let prices = state.prices;
    for row in rows.iter_mut().chain(std::iter::once(&mut total)) {
        row.cost = prices.cost(row.requests - row.throttles, row.gb_seconds);
    }
    Ok(Json(UsageReport {
        since,
        by,
        prices,
        rows,
        total,
    }))
}
