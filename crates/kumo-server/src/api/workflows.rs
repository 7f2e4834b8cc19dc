//! `/workflows`, `/executions` and `/tasks`: deploy ASL state machines, start, list, read,
//! stop and redrive their executions, read their history, and answer callback tasks.

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::namespaces::Ns;
use crate::workflows::{self as engine, Callback};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use bytes::Bytes;
use kumo_core::ErrorKind;
use kumo_store::prelude::*;
use kumo_store::{ExecutionRecord, WorkflowRecord};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// The largest definition (Step Functions' own limit is 1 MB).
const MAX_DEFINITION_BYTES: usize = 1 << 20;
/// The longest `?wait=` of a start.
const MAX_WAIT_SECONDS: u64 = 300;

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct WorkflowInfo {
    name: String,
    created_at: i64,
    updated_at: i64,
    /// The ASL document (on a single workflow's read).
    #[serde(skip_serializing_if = "Option::is_none")]
    definition: Option<Value>,
    /// Its states and edges, to draw it (on a single workflow's read).
    #[serde(skip_serializing_if = "Option::is_none")]
    graph: Option<Value>,
    /// What starts its executions besides the API.
    triggers: kumo_core::WorkflowTriggers,
}

fn info(record: &WorkflowRecord, full: bool) -> WorkflowInfo {
    let definition: Option<Value> = full
        .then(|| serde_json::from_str(&record.definition).ok())
        .flatten();
    let graph = definition
        .as_ref()
        .and_then(|d| kumo_asl::definition::StateMachine::parse(d).ok())
        .map(|m| kumo_asl::graph::graph(&m));
    WorkflowInfo {
        triggers: serde_json::from_str(&record.triggers).unwrap_or_default(),
        name: kumo_core::split_key(&record.name).1.to_string(),
        created_at: record.created_at,
        updated_at: record.updated_at,
        definition,
        graph,
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ExecutionInfo {
    id: String,
    workflow: String,
    name: String,
    /// `running`, `succeeded`, `failed`, `timed_out` or `aborted`.
    status: String,
    input: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cause: Option<String>,
    trace_id: String,
    started_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    stopped_at: Option<i64>,
    /// States entered so far (what usage counts).
    transitions: i64,
    redrives: i64,
    /// Each state's status (on a single execution's read).
    #[serde(skip_serializing_if = "Option::is_none")]
    states: Option<Value>,
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

fn execution_info(record: ExecutionRecord) -> ExecutionInfo {
    ExecutionInfo {
        workflow: kumo_core::split_key(&record.workflow).1.to_string(),
        input: json_of(&record.input),
        output: record.output.as_deref().map(json_of),
        id: record.id,
        name: record.name,
        status: record.status,
        error: record.error,
        cause: record.cause,
        trace_id: record.trace_id,
        started_at: record.started_at,
        stopped_at: record.stopped_at,
        transitions: record.transitions,
        redrives: record.redrives,
        states: None,
    }
}

fn no_workflow(name: &str) -> ApiError {
    ApiError::new(ErrorKind::NotFound, format!("no workflow named {name:?}"))
}

fn no_execution(id: &str) -> ApiError {
    ApiError::new(ErrorKind::NotFound, format!("no execution {id:?}"))
}

async fn workflow(state: &AppState, ns: &Ns, name: &str) -> ApiResult<WorkflowRecord> {
    let key = ns.key(name)?;
    state
        .store
        .get_workflow(&key)
        .await?
        .ok_or_else(|| no_workflow(name))
}

/// An execution of the request's namespace (another namespace's is as absent as none).
async fn execution(state: &AppState, ns: &Ns, id: &str) -> ApiResult<ExecutionRecord> {
    match state.store.get_execution(id).await? {
        Some(record) if ns.holds(&record.workflow) => Ok(record),
        _ => Err(no_execution(id)),
    }
}

/// `GET /workflows`: the namespace's workflows, by name.
#[utoipa::path(operation_id = "workflows_list", get, path = "/api/v1/workflows", responses((status = 200, body = Vec<WorkflowInfo>), (status = "default", description = "An error (see the error table)", body = crate::error::ErrorEnvelope)))]
pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    ns: Ns,
) -> ApiResult<Json<Vec<WorkflowInfo>>> {
    let all = state.store.list_workflows().await?;
    Ok(Json(
        all.iter()
            .filter(|w| ns.holds(&w.name))
            .map(|w| info(w, false))
            .collect(),
    ))
}

/// `PUT /workflows/{name}`: the body is the ASL definition, checked whole (every problem is
/// named with its state and field), or `{"definition": ASL, "schedule": "...", "topics":
/// [...]}` with triggers. 201 created, 200 replaced; running executions keep the definition
/// they started with.
#[utoipa::path(operation_id = "workflows_deploy", put, path = "/api/v1/workflows/{name}", params(("name" = String, Path, pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", example = "checkout")), request_body(content = Value, content_type = "application/json"), responses((status = 200, description = "Replaced", body = WorkflowInfo), (status = 201, description = "Created", body = WorkflowInfo), (status = "default", description = "An error (see the error table)", body = crate::error::ErrorEnvelope)))]
pub(super) async fn deploy(
    State(state): State<Arc<AppState>>,
    ns: Ns,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<WorkflowInfo>)> {
    kumo_core::validate_name(&name).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let key = ns.key(&name)?;
    if body.len() > MAX_DEFINITION_BYTES {
        return Err(ApiError::new(
            ErrorKind::PayloadTooLarge,
            format!("a definition is at most {MAX_DEFINITION_BYTES} bytes"),
        ));
    }
    let (definition, triggers) = definition_and_triggers(&body)?;
    engine::parse(&definition)?;
    let triggers_json = serde_json::to_string(&triggers).map_err(anyhow::Error::from)?;
    state.disk.ensure_room()?;
    let created = state
        .store
        .put_workflow(&key, &definition, &triggers_json, kumo_core::now_ms())
        .await?;
    engine::reload_triggers(&state).await?;
    tracing::info!(workflow = %key, created, "workflow deployed");
    let record = state
        .store
        .get_workflow(&key)
        .await?
        .ok_or_else(|| no_workflow(&name))?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(info(&record, true))))
}

/// A deploy's body: a bare ASL definition, or one under `definition` beside the triggers.
fn definition_and_triggers(body: &[u8]) -> ApiResult<(String, kumo_core::WorkflowTriggers)> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the definition is not JSON: {e}")))?;
    let Value::Object(mut fields) = value else {
        return Err(ApiError::bad_request(
            "the definition must be a JSON object",
        ));
    };
    let Some(definition) = fields.remove("definition") else {
        return Ok((Value::Object(fields).to_string(), Default::default()));
    };
    let triggers: kumo_core::WorkflowTriggers = serde_json::from_value(Value::Object(fields))
        .map_err(|e| ApiError::bad_request(format!("the triggers are not valid: {e}")))?;
    triggers.validate().map_err(ApiError::bad_request)?;
    Ok((definition.to_string(), triggers))
}

/// `GET /workflows/{name}`: its definition and graph.
#[utoipa::path(operation_id = "workflows_get", get, path = "/api/v1/workflows/{name}", params(("name" = String, Path)), responses((status = 200, body = WorkflowInfo), (status = "default", description = "An error (see the error table)", body = crate::error::ErrorEnvelope)))]
pub(super) async fn get(
    State(state): State<Arc<AppState>>,
    ns: Ns,
    Path(name): Path<String>,
) -> ApiResult<Json<WorkflowInfo>> {
    Ok(Json(info(&workflow(&state, &ns, &name).await?, true)))
}

/// `DELETE /workflows/{name}`: its executions stay readable; running ones run on.
#[utoipa::path(operation_id = "workflows_delete", delete, path = "/api/v1/workflows/{name}", params(("name" = String, Path)), responses((status = 204, description = "Deleted"), (status = "default", description = "An error (see the error table)", body = crate::error::ErrorEnvelope)))]
pub(super) async fn delete(
    State(state): State<Arc<AppState>>,
    ns: Ns,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let key = ns.key(&name)?;
    if !state.store.delete_workflow(&key).await? {
        return Err(no_workflow(&name));
    }
    engine::reload_triggers(&state).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
pub(crate) struct StartRequest {
    /// The execution's input (default `{}`).
    #[serde(default)]
    input: Option<Value>,
    /// A name unique among the workflow's executions: a start repeated with the same name
    /// and input gives the first execution.
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct StartParams {
    /// Answer once the execution ended, waiting at most this many seconds (at most 300).
    wait: Option<u64>,
}

/// `POST /workflows/{name}/executions[?wait=S]`: starts an execution (201; 200 for a repeated
/// start by name). With `wait`, answers once it ended (or as it is when the wait is over).
#[utoipa::path(operation_id = "executions_start", post, path = "/api/v1/workflows/{name}/executions", params(("name" = String, Path), StartParams), request_body(content = StartRequest, content_type = "application/json"), responses((status = 201, body = ExecutionInfo), (status = 200, description = "The execution this name started before", body = ExecutionInfo), (status = "default", description = "An error (see the error table)", body = crate::error::ErrorEnvelope)))]
pub(super) async fn start(
    State(state): State<Arc<AppState>>,
    ns: Ns,
    Path(name): Path<String>,
    params: Result<Query<StartParams>, QueryRejection>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<ExecutionInfo>)> {
    let Query(params) = params?;
    if body.len() > state.max_body_bytes {
        return Err(ApiError::new(
            ErrorKind::PayloadTooLarge,
            format!("an input is at most {} bytes", state.max_body_bytes),
        ));
    }
    let request: StartRequest = if body.iter().all(u8::is_ascii_whitespace) {
        StartRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!(
                "the body must be {{\"input\": JSON, \"name\": \"...\"}}: {e}"
            ))
        })?
    };
    if let Some(execution_name) = &request.name
        && (execution_name.is_empty()
            || execution_name.len() > 80
            || execution_name
                .chars()
                .any(|c| c.is_control() || c.is_whitespace()))
    {
        return Err(ApiError::bad_request(
            "an execution's name is 1 to 80 characters, without spaces or control characters",
        ));
    }
    let workflow = workflow(&state, &ns, &name).await?;
    state.disk.ensure_room()?;
    let input = request.input.unwrap_or_else(|| json!({}));
    let (record, created) = engine::start(
        &state,
        &workflow.name,
        &workflow.definition,
        request.name,
        input,
    )
    .await?;
    let record = match params.wait {
        Some(seconds) => {
            let wait = Duration::from_secs(seconds.min(MAX_WAIT_SECONDS));
            engine::wait_for_end(&state, &record.id, wait)
                .await?
                .unwrap_or(record)
        }
        None => record,
    };
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(execution_info(record))))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListParams {
    /// Only executions of this status.
    status: Option<String>,
    /// At most this many, newest first (default 50, at most 1000).
    limit: Option<u32>,
}

const STATUSES: [&str; 5] = ["running", "succeeded", "failed", "timed_out", "aborted"];

/// `GET /workflows/{name}/executions[?status=&limit=]`: newest first.
#[utoipa::path(operation_id = "executions_list", get, path = "/api/v1/workflows/{name}/executions", params(("name" = String, Path), ListParams), responses((status = 200, body = Vec<ExecutionInfo>), (status = "default", description = "An error (see the error table)", body = crate::error::ErrorEnvelope)))]
pub(super) async fn list_executions(
    State(state): State<Arc<AppState>>,
    ns: Ns,
    Path(name): Path<String>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> ApiResult<Json<Vec<ExecutionInfo>>> {
    let Query(params) = params?;
    if let Some(status) = &params.status
        && !STATUSES.contains(&status.as_str())
    {
        return Err(ApiError::bad_request(format!(
            "status must be one of {}",
            STATUSES.join(", ")
        )));
    }
    let key = ns.key(&name)?;
    let limit = params.limit.unwrap_or(50).clamp(1, 1000);
    let executions = state
        .store
        .list_executions(&key, params.status.as_deref(), limit)
        .await?;
    if executions.is_empty() && state.store.get_workflow(&key).await?.is_none() {
        return Err(no_workflow(&name));
    }
    Ok(Json(executions.into_iter().map(execution_info).collect()))
}

/// `GET /executions/{id}`: its status, input, output or error, and each state's status.
#[utoipa::path(operation_id = "executions_get", get, path = "/api/v1/executions/{id}", params(("id" = String, Path)), responses((status = 200, body = ExecutionInfo), (status = "default", description = "An error (see the error table)", body = crate::error::ErrorEnvelope)))]
pub(super) async fn describe(
    State(state): State<Arc<AppState>>,
    ns: Ns,
    Path(id): Path<String>,
) -> ApiResult<Json<ExecutionInfo>> {
    let record = execution(&state, &ns, &id).await?;
    let mut entries = Vec::new();
    let mut after = 0;
    loop {
        let page = state.store.execution_history(&id, after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        entries.extend(page.into_iter().map(|e| (e.kind, e.state)));
    }
    let states =
        kumo_asl::graph::state_status(entries.iter().map(|(k, s)| (k.as_str(), s.as_str())));
    let mut info = execution_info(record);
    info.states = Some(json!(states));
    Ok(Json(info))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct HistoryParams {
    /// Entries after this sequence number (a cursor; default 0).
    after: Option<i64>,
    /// At most this many (default 1000).
    limit: Option<u32>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct HistoryEvent {
    seq: i64,
    at: i64,
    kind: String,
    /// The branch or item (`""`: the top level; `/0`: the first branch or item; ...).
    thread: String,
    state: String,
    detail: Value,
}

/// `GET /executions/{id}/history[?after=&limit=]`: oldest first.
#[utoipa::path(operation_id = "executions_history", get, path = "/api/v1/executions/{id}/history", params(("id" = String, Path), HistoryParams), responses((status = 200, body = Vec<HistoryEvent>), (status = "default", description = "An error (see the error table)", body = crate::error::ErrorEnvelope)))]
pub(super) async fn history(
    State(state): State<Arc<AppState>>,
    ns: Ns,
    Path(id): Path<String>,
    params: Result<Query<HistoryParams>, QueryRejection>,
) -> ApiResult<Json<Vec<HistoryEvent>>> {
    let Query(params) = params?;
    execution(&state, &ns, &id).await?;
    let limit = params.limit.unwrap_or(1000).clamp(1, 1000);
    let entries = state
        .store
        .execution_history(&id, params.after.unwrap_or(0), limit)
        .await?;
    Ok(Json(
        entries
            .into_iter()
            .map(|e| HistoryEvent {
                seq: e.seq,
                at: e.at,
                detail: json_of(&e.detail),
                kind: e.kind,
                thread: e.thread,
                state: e.state,
            })
            .collect(),
    ))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
pub(crate) struct StopRequest {
    error: Option<String>,
    cause: Option<String>,
}

/// `POST /executions/{id}/stop`: 202; the execution ends as `aborted` (with `error` and
/// `cause`, default `States.Aborted`) once its driver sees the request. 409 if it is not
/// running.
#[utoipa::path(operation_id = "executions_stop", post, path = "/api/v1/executions/{id}/stop", params(("id" = String, Path)), request_body(content = StopRequest, content_type = "application/json"), responses((status = 202, description = "Stopping"), (status = "default", description = "An error (see the error table)", body = crate::error::ErrorEnvelope)))]
pub(super) async fn stop(
    State(state): State<Arc<AppState>>,
    ns: Ns,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let request: StopRequest = optional_json(&body)?;
    let record = execution(&state, &ns, &id).await?;
    let stopped = engine::stop(
        &state,
        &record.id,
        request.error.as_deref(),
        request.cause.as_deref(),
    )
    .await?;
    if !stopped {
        return Err(ApiError::new(
            ErrorKind::Conflict,
            format!("execution {id} is not running"),
        ));
    }
    Ok(StatusCode::ACCEPTED)
}

/// `POST /executions/{id}/redrive`: a failed, aborted or timed-out execution runs again from
/// the state it ended in (completed states are not run again).
#[utoipa::path(operation_id = "executions_redrive", post, path = "/api/v1/executions/{id}/redrive", params(("id" = String, Path)), responses((status = 200, body = ExecutionInfo), (status = "default", description = "An error (see the error table)", body = crate::error::ErrorEnvelope)))]
pub(super) async fn redrive(
    State(state): State<Arc<AppState>>,
    ns: Ns,
    Path(id): Path<String>,
) -> ApiResult<Json<ExecutionInfo>> {
    let record = execution(&state, &ns, &id).await?;
    Ok(Json(execution_info(engine::redrive(&state, record).await?)))
}

fn optional_json<T: for<'de> Deserialize<'de> + Default>(body: &[u8]) -> ApiResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid: {e}")))
}

/// A callback task's answer, as Step Functions' `SendTask*` take it.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TaskAnswer {
    task_token: String,
    /// `success`: the task's output (JSON).
    #[serde(default)]
    output: Option<Value>,
    /// `failure`: the error name and its cause.
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    cause: Option<String>,
}

/// `POST /tasks/{outcome}` (`success`, `failure`, `heartbeat`): answers the callback task
/// waiting for `taskToken` (`SendTaskSuccess`, `SendTaskFailure`, `SendTaskHeartbeat`). 404
/// when no task waits for it.
#[utoipa::path(operation_id = "tasks_answer", post, path = "/api/v1/tasks/{outcome}", params(("outcome" = String, Path, pattern = "^(success|failure|heartbeat)$")), request_body(content = TaskAnswer, content_type = "application/json"), responses((status = 202, description = "Passed to the execution"), (status = "default", description = "An error (see the error table)", body = crate::error::ErrorEnvelope)))]
pub(super) async fn answer_task(
    State(state): State<Arc<AppState>>,
    ns: Ns,
    Path(outcome): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let answer: TaskAnswer = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!("the body must be {{\"taskToken\": ...}}: {e}"))
    })?;
    let callback = match outcome.as_str() {
        "success" => Callback::Success(answer.output.unwrap_or(Value::Null)),
        "failure" => Callback::Failure {
            error: answer.error.unwrap_or_else(|| "States.TaskFailed".into()),
            cause: answer.cause.unwrap_or_default(),
        },
        "heartbeat" => Callback::Heartbeat,
        other => {
            return Err(ApiError::new(
                ErrorKind::NotFound,
                format!("no API endpoint at /tasks/{other}: success, failure or heartbeat"),
            ));
        }
    };
    engine::callback(&state, &ns.0, &answer.task_token, callback).await?;
    Ok(StatusCode::ACCEPTED)
}
