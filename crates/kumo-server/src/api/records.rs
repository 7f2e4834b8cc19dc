//! Reading what happened: invocation records, logs and usage. Each read first flushes the recorder,
//! so a client sees its own invocations.

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::namespaces::Ns;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use kumo_core::{InvocationRecord, UsageBy, UsageReport, parse_duration};
use kumo_store::LogQuery;
use kumo_store::prelude::*;
use serde::Deserialize;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 10_000;

/// One server-sent event as the document describes it: `data` is the JSON of a record
/// (a log line here, an invocation's status on `/invocations/{id}/events`).
#[derive(utoipa::ToSchema)]
#[allow(
    dead_code,
    reason = "only describes the event stream for the OpenAPI document"
)]
pub(super) struct SseEvent {
    id: Option<String>,
    event: Option<String>,
    data: String,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct InvocationsParams {
    function: Option<String>,
    limit: Option<u32>,
}

#[utoipa::path(operation_id = "records_list_invocations", get, path = "/api/v1/invocations", params(InvocationsParams), responses((status = 200, body = Vec<InvocationRecord>), (status = "default", description = "An error (see the error table)", body = crate::error::ErrorEnvelope)))]
pub(super) async fn list_invocations(
    State(state): State<Arc<AppState>>,
    ns: Ns,
    params: Result<Query<InvocationsParams>, QueryRejection>,
) -> ApiResult<Json<Vec<InvocationRecord>>> {
    let Query(params) = params?;
    let function = params.function.as_deref().map(|f| ns.key(f)).transpose()?;
    state.recorder.flush().await;
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    let records = state
        .store
        .list_invocations(function.as_deref(), Some(&ns.0), limit)
        .await?;
    if let Some(function) = &params.function
        && records.is_empty()
    {
        super::known_function(&state, &ns, function).await?;
    }
    Ok(Json(records))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct LogsParams {
    request_id: Option<String>,
    /// Only lines with a larger id (a cursor from an earlier answer).
    after: Option<i64>,
    /// Only lines written this long ago or later (`10m`, `2h`).
    since: Option<String>,
    /// Only lines containing this text.
    grep: Option<String>,
    limit: Option<u32>,
    /// Keep the answer open as server-sent events, one per new line.
    #[serde(default)]
    follow: bool,
}

/// How often a follower looks for new lines (records reach the store every 20 ms at most).
const FOLLOW_POLL: Duration = Duration::from_millis(250);

/// `GET /functions/{name}/logs`: the newest `limit` matching lines, oldest first, as JSON; or,
/// with `follow=true`, those and then every new matching line as server-sent events (`data`
/// = the line's JSON, `id` = its id) until the client leaves or the server stops. Logs stay
/// readable after the function is deleted.
#[utoipa::path(operation_id = "records_logs", get, path = "/api/v1/functions/{name}/logs", params(("name" = String, Path, pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", example = "hello"), LogsParams), responses((status = 200, description = "Lines, oldest first (JSON), or server-sent events with follow=true", content((Vec<kumo_core::LogRecord> = "application/json"), (SseEvent = "text/event-stream"))), (status = "default", description = "An error (see the error table)", body = crate::error::ErrorEnvelope)))]
pub(super) async fn logs(
    State(state): State<Arc<AppState>>,
    ns: Ns,
    Path(name): Path<String>,
    params: Result<Query<LogsParams>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(params) = params?;
    let function = ns.key(&name)?;
    let since_ms = match &params.since {
        Some(since) => {
            let back =
                parse_duration(since).map_err(|e| ApiError::bad_request(format!("since: {e}")))?;
            let back = i64::try_from(back.as_millis()).unwrap_or(i64::MAX);
            Some(kumo_core::now_ms().saturating_sub(back).max(0))
        }
        None => None,
    };
    state.recorder.flush().await;
    let mut query = LogQuery {
        function,
        request_id: params.request_id,
        after_id: params.after,
        since_ms,
        grep: params.grep.filter(|g| !g.is_empty()),
        limit: params.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT),
    };
    let first = state.store.list_logs(&query).await?;
    if first.is_empty() {
        super::known_function(&state, &ns, &name).await?;
    }
    if !params.follow {
        return Ok(Json(first).into_response());
    }
    query.limit = MAX_LIMIT;
    let backlog = std::collections::VecDeque::from(first);
    let stream = futures::stream::unfold(
        (state, query, backlog),
        |(state, mut query, mut pending)| async move {
            let mut stopping = state.stopping.clone();
            while pending.is_empty() {
                tokio::select! {
                    () = tokio::time::sleep(FOLLOW_POLL) => {}
                    _ = stopping.wait_for(|s| *s) => return None,
                }
                pending = match state.store.list_logs(&query).await {
                    Ok(lines) => lines.into(),
                    Err(e) => {
                        tracing::warn!("following logs: {e:#}");
                        return None;
                    }
                };
            }
            let line = pending.pop_front()?;
            query.after_id = Some(line.id);
            let event = Event::default()
                .id(line.id.to_string())
                .json_data(&line)
                .unwrap_or_default();
            Some((Ok::<_, Infallible>(event), (state, query, pending)))
        },
    );
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct UsageParams {
    /// How far back, e.g. `24h` (the default) or `7d`.
    since: Option<String>,
    /// `function` (default), `version`, `day` or `namespace`.
    #[serde(default)]
    by: UsageBy,
}

/// `GET /usage?since=24h&by=function`: requests, errors, throttles, GB-seconds, duration
/// percentiles and cost per group, and in total, of the request's namespace; `by=namespace`
/// reports every namespace the token may act in (all of them for an admin).
#[utoipa::path(operation_id = "records_usage", get, path = "/api/v1/usage", params(UsageParams), responses((status = 200, body = UsageReport), (status = "default", description = "An error (see the error table)", body = crate::error::ErrorEnvelope)))]
pub(super) async fn usage(
    State(state): State<Arc<AppState>>,
    ns: Ns,
    token: Option<axum::Extension<kumo_core::TokenRecord>>,
    params: Result<Query<UsageParams>, QueryRejection>,
) -> ApiResult<Json<UsageReport>> {
    let Query(params) = params?;
    let back = parse_duration(params.since.as_deref().unwrap_or("24h"))
        .map_err(|e| ApiError::bad_request(format!("since: {e}")))?;
    let by = params.by;
    state.recorder.flush().await;
    // Back past the epoch is from the start of records, not a negative time.
    let back_ms = i64::try_from(back.as_millis()).unwrap_or(i64::MAX);
    let since = kumo_core::now_ms().saturating_sub(back_ms).max(0);
    // By namespace (chargeback) is every namespace the token may see; else the request's.
    let namespace = match by {
        UsageBy::Namespace => token.and_then(|t| t.0.namespace),
        _ => Some(ns.0),
    };
    let (mut rows, mut total) = state.store.usage(since, namespace.as_deref(), by).await?;
    let prices = state.prices;
    for row in rows.iter_mut().chain(std::iter::once(&mut total)) {
        row.cost = prices.cost(row.requests - row.throttles, row.gb_seconds);
    }
    let (executions, transitions) = state
        .store
        .workflow_usage(since, namespace.as_deref())
        .await?;
    let workflows = kumo_core::WorkflowUsage {
        executions,
        transitions,
        cost: prices.transitions_cost(transitions),
    };
    Ok(Json(UsageReport {
        since,
        by,
        prices,
        rows,
        total,
        workflows,
    }))
}
