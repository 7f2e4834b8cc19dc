//! Asynchronous invocations over HTTP: submit (`invoke?mode=async`), status with long-poll,
//! status as Server-Sent Events, dead letters and redrive, topics, and the list of triggers.

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::events::OwnedEvent;
use crate::events::topics::{self, Delivery};
use crate::gateway::read_body;
use crate::namespaces::Ns;
use crate::trace::traceparent_for_event;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use kumo_core::{
    ErrorKind, EventRecord, FunctionRecord, InvocationRecord, Trigger, parse_duration,
    validate_topic,
};
use kumo_store::prelude::*;
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

/// How often a long poll or an event stream reads the event again in a cluster, where
/// another node may be running it.
const CLUSTER_POLL: Duration = Duration::from_millis(250);
/// Longest `?wait=` of a long poll.
const MAX_WAIT: Duration = Duration::from_secs(5 * 60);
/// Header of a replayed submit: the idempotency key matched an earlier event.
const REPLAYED_HEADER: &str = "idempotent-replayed";

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub(super) struct Submitted {
    pub id: String,
}

/// `POST /functions/{name}/invoke?mode=async` (`name`: the function's key): stores the
/// event, then 202 `{"id"}`.
pub(super) async fn invoke_async(state: Arc<AppState>, name: String, request: Request) -> Response {
    match submit(&state, &name, request).await {
        Ok((id, replayed)) => {
            let mut response =
                (StatusCode::ACCEPTED, Json(Submitted { id: id.clone() })).into_response();
            let headers = response.headers_mut();
            let location = match kumo_core::split_key(&name) {
                (kumo_core::DEFAULT_NAMESPACE, _) => format!("/api/v1/invocations/{id}"),
                (ns, _) => format!("/api/v1/namespaces/{ns}/invocations/{id}"),
            };
            if let Ok(location) = location.parse() {
                headers.insert(http::header::LOCATION, location);
            }
            if replayed {
                headers.insert(REPLAYED_HEADER, http::HeaderValue::from_static("true"));
            }
            response
        }
        Err(e) => e.into_response(),
    }
}

async fn submit(state: &AppState, name: &str, request: Request) -> ApiResult<(String, bool)> {
    // Refused now rather than dead later: the function must exist when the event is sent.
    state.invoker.function(name).await?;
    let (parts, body) = request.into_parts();
    let body = read_body(body, &parts.headers, state.events.config.max_payload_bytes).await?;
    submit_event(state, name, body, &parts.headers).await
}

/// Stores an asynchronous invocation of `name` (which exists) with `payload` and the
/// request's `Idempotency-Key`, `Content-Type` and `traceparent`: its id, and whether it
/// replays an earlier submission of the same key.
pub(crate) async fn submit_event(
    state: &AppState,
    name: &str,
    payload: bytes::Bytes,
    headers: &http::HeaderMap,
) -> ApiResult<(String, bool)> {
    let limit = state.events.config.max_payload_bytes;
    if payload.len() > limit {
        return Err(ApiError::new(
            ErrorKind::PayloadTooLarge,
            format!("the request body is larger than the limit of {limit} bytes"),
        ));
    }
    state.disk.ensure_room()?;
    let namespace = kumo_core::namespace_of(name);
    let adding = kumo_core::Adding::QueuedEvents(1);
    state.quota.ensure(namespace, adding).await?;
    let header = |h: &str| {
        headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let key = header("idempotency-key");
    if key.as_ref().is_some_and(|k| k.is_empty() || k.len() > 255) {
        return Err(ApiError::bad_request(
            "Idempotency-Key must be 1 to 255 characters",
        ));
    }
    let event = OwnedEvent {
        id: uuid::Uuid::now_v7().to_string(),
        function: name.to_string(),
        trigger: Trigger::Async,
        payload,
        content_type: header("content-type"),
        // Every attempt and retry of the event continues one trace.
        traceparent: Some(traceparent_for_event(header("traceparent").as_deref())),
        now: kumo_core::now_ms(),
    };
    Ok(state.events.submit(event, key).await?)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct WaitParams {
    /// Long poll: answer when the event is final or after this long (`30s`).
    wait: Option<String>,
}

/// An async event's status, or a synchronous invocation's record (ids never collide: both
/// are UUIDv7s made here).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub(super) enum Invocation {
    Event(EventRecord),
    Record(InvocationRecord),
}

/// `GET /invocations/{id}[?wait=30s]`.
#[utoipa::path(operation_id = "events_get_invocation", get, path = "/api/v1/invocations/{id}", params(("id" = String, Path), WaitParams), responses((status = 200, description = "An asynchronous invocation's event, or a synchronous invocation's record", body = Invocation), (status = "default", description = "An error (see the error table)", body = crate::error::ErrorEnvelope)))]
pub(super) async fn get_invocation(
    State(state): State<Arc<AppState>>,
    ns: Ns,
    Path(id): Path<String>,
    params: Result<Query<WaitParams>, QueryRejection>,
) -> ApiResult<Json<Invocation>> {
    let Query(params) = params?;
    let wait = match params.wait.as_deref() {
        Some(w) => parse_duration(w)
            .map_err(|e| ApiError::bad_request(format!("wait: {e}")))?
            .min(MAX_WAIT),
        None => Duration::ZERO,
    };
    let mut changes = state.events.subscribe();
    let not_found = || {
        ApiError::new(
            ErrorKind::InvocationNotFound,
            format!("no invocation with id {id:?}"),
        )
    };
    if let Some(mut event) = state.store.get_event(&id).await? {
        // Another namespace's invocation is as absent as one that never was.
        if !ns.holds(&event.function) {
            return Err(not_found());
        }
        let deadline = tokio::time::Instant::now() + wait;
        while !event.status.is_final() {
            match tokio::time::timeout_at(deadline, next_change(&state, &id, &mut changes)).await {
                Ok(Some(e)) => event = e,
                Ok(None) | Err(_) => break,
            }
        }
        return Ok(Json(Invocation::Event(event)));
    }
    state.recorder.flush().await;
    let record = state.store.get_invocation(&id).await?;
    record
        .filter(|r| ns.holds(&r.function))
        .map(|r| Json(Invocation::Record(r)))
        .ok_or_else(not_found)
}

/// `GET /invocations/{id}/events`: the event's status now and at every change, as
/// Server-Sent Events (`event: status`, data = the event JSON); the stream ends once the
/// status is final.
#[utoipa::path(operation_id = "events_invocation_events", get, path = "/api/v1/invocations/{id}/events", params(("id" = String, Path)), responses((status = 200, description = "Server-sent events: the status at every change", body = super::records::SseEvent, content_type = "text/event-stream"), (status = "default", description = "An error (see the error table)", body = crate::error::ErrorEnvelope)))]
pub(super) async fn invocation_events(
    State(state): State<Arc<AppState>>,
    ns: Ns,
    Path(id): Path<String>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let changes = state.events.subscribe();
    let first = state
        .store
        .get_event(&id)
        .await?
        .filter(|e| ns.holds(&e.function))
        .ok_or_else(|| {
            ApiError::new(
                ErrorKind::InvocationNotFound,
                format!("no async invocation with id {id:?}"),
            )
        })?;
    let stream = futures::stream::unfold(
        Some((state, id, changes, Some(first), None)),
        |progress| async move {
            let (state, id, mut changes, mut pending, mut last) = progress?;
            loop {
                let event = match pending.take() {
                    Some(e) => e,
                    None => next_change(&state, &id, &mut changes).await?,
                };
                let seen = (event.status, event.attempts);
                if last == Some(seen) {
                    continue;
                }
                last = Some(seen);
                let sse = Event::default()
                    .event("status")
                    .json_data(&event)
                    .unwrap_or_else(|_| Event::default().event("status"));
                let next = (!event.status.is_final()).then_some((state, id, changes, None, last));
                return Some((Ok(sse), next));
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// Waits for the next change of event `id` and reads it; None when the server is stopping
/// or the event is gone.
async fn next_change(
    state: &AppState,
    id: &str,
    changes: &mut broadcast::Receiver<Arc<str>>,
) -> Option<EventRecord> {
    let mut stopping = state.stopping.clone();
    loop {
        // Changes made by other nodes of a cluster are not broadcast here: look now and then.
        let other_nodes = async {
            match state.store {
                kumo_store::Store::Postgres(_) => tokio::time::sleep(CLUSTER_POLL).await,
                kumo_store::Store::Sqlite(_) => std::future::pending().await,
            }
        };
        let change = tokio::select! {
            c = changes.recv() => c,
            () = other_nodes => Err(broadcast::error::RecvError::Lagged(0)),
            _ = stopping.wait_for(|s| *s) => return None,
        };
        match change {
            Ok(changed) if &*changed != id => continue,
            // Matching, or some changes were missed: read the event either way.
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return None,
        }
        match state.store.get_event(id).await {
            Ok(Some(event)) => return Some(event),
            Ok(None) => return None,
            Err(e) => {
                tracing::error!("reading event {id}: {e:#}");
                return None;
            }
        }
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ListParams {
    limit: Option<u32>,
}

/// `GET /functions/{name}/dlq`: the function's dead events, oldest first, with their errors.
#[utoipa::path(operation_id = "events_dead_letters", get, path = "/api/v1/functions/{name}/dlq", params(("name" = String, Path, pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", example = "hello"), ListParams), responses((status = 200, body = Vec<EventRecord>), (status = "default", description = "An error (see the error table)", body = crate::error::ErrorEnvelope)))]
pub(super) async fn dead_letters(
    State(state): State<Arc<AppState>>,
    ns: Ns,
    Path(name): Path<String>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> ApiResult<Json<Vec<EventRecord>>> {
    let key = ns.key(&name)?;
    let Query(params) = params?;
    let limit = params.limit.unwrap_or(100).min(10_000);
    let dead = state.store.list_dead_events(&key, limit).await?;
    if dead.is_empty() {
        super::known_function(&state, &ns, &name).await?;
    }
    Ok(Json(dead))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct RedriveParams {
    /// Only this event.
    id: Option<String>,
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub(super) struct Redriven {
    pub redriven: Vec<String>,
}

/// `POST /functions/{name}/dlq/redrive[?id=]`: dead events go back to the queue, with their
/// attempts and age starting over.
#[utoipa::path(operation_id = "events_redrive", post, path = "/api/v1/functions/{name}/dlq/redrive", params(("name" = String, Path, pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", example = "hello"), RedriveParams), responses((status = 200, body = Redriven), (status = "default", description = "An error (see the error table)", body = crate::error::ErrorEnvelope)))]
pub(super) async fn redrive(
    State(state): State<Arc<AppState>>,
    ns: Ns,
    Path(name): Path<String>,
    params: Result<Query<RedriveParams>, QueryRejection>,
) -> ApiResult<Json<Redriven>> {
    let key = ns.key(&name)?;
    let Query(params) = params?;
    state.invoker.function(&key).await?;
    let redriven = state
        .store
        .redrive(&key, params.id.as_deref(), kumo_core::now_ms())
        .await?;
    for id in &redriven {
        state.events.changed(id);
    }
    state.events.wake();
    Ok(Json(Redriven { redriven }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Published {
    /// The message's id: the `id` of the CloudEvent every subscriber gets.
    id: String,
    /// One event per subscribed function.
    events: Vec<Delivery>,
    /// One execution per subscribed workflow.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    executions: Vec<crate::workflows::Started>,
}

/// `POST /topics/{topic}`: the body is the message; 202 once every subscriber's event is
/// stored.
#[utoipa::path(operation_id = "events_publish", post, path = "/api/v1/topics/{topic}", params(("topic" = String, Path, pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", example = "news")), request_body(content = Vec<u8>, content_type = "application/octet-stream"), responses((status = 202, body = Published), (status = "default", description = "An error (see the error table)", body = crate::error::ErrorEnvelope)))]
pub(super) async fn publish(
    State(state): State<Arc<AppState>>,
    ns: Ns,
    Path(topic): Path<String>,
    request: Request,
) -> ApiResult<(StatusCode, Json<Published>)> {
    validate_topic(&topic).map_err(ApiError::bad_request)?;
    let topic = ns.key(&topic)?;
    state.disk.ensure_room()?;
    let (parts, body) = request.into_parts();
    let body = read_body(body, &parts.headers, state.events.config.max_payload_bytes).await?;
    let subscribers = state.subscriptions.subscribers(&topic).len() as u64;
    let adding = kumo_core::Adding::QueuedEvents(subscribers);
    state.quota.ensure(&ns.0, adding).await?;
    let traceparent = traceparent_for_event(
        parts
            .headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok()),
    );
    let (id, events) = topics::publish(
        &state.events,
        &state.subscriptions,
        &topic,
        &body,
        Some(&traceparent),
    )
    .await?;
    let executions = crate::workflows::publish(&state, &topic, &id, &body).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Published {
            id,
            events,
            executions,
        }),
    ))
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub(super) struct TriggerInfo {
    pub function: String,
    /// `route`, `schedule` or `topic`.
    pub kind: String,
    /// The route, the schedule expression or the topic.
    pub source: String,
}

/// `GET /triggers`: every route, schedule, topic subscription and object trigger of the
/// deployed functions.
#[utoipa::path(operation_id = "events_triggers", get, path = "/api/v1/triggers", responses((status = 200, body = Vec<TriggerInfo>), (status = "default", description = "An error (see the error table)", body = crate::error::ErrorEnvelope)))]
pub(super) async fn triggers(
    State(state): State<Arc<AppState>>,
    ns: Ns,
) -> ApiResult<Json<Vec<TriggerInfo>>> {
    let mut functions = state.store.list_functions().await?;
    functions.retain(|f| ns.holds(&f.name));
    Ok(Json(functions.iter().flat_map(triggers_of).collect()))
}

fn triggers_of(f: &FunctionRecord) -> Vec<TriggerInfo> {
    // The target says which version or alias the trigger runs (with `triggers_use`).
    let info = |kind: &str, source: &str| TriggerInfo {
        function: f.trigger_target(),
        kind: kind.to_string(),
        source: source.to_string(),
    };
    let config = &f.config;
    let routes = config.routes.iter().map(|r| info("route", r.as_str()));
    let schedule = config.schedule.iter().map(|s| info("schedule", s.as_str()));
    let topics = config.topics.iter().map(|t| info("topic", t));
    let objects = config.on_object.iter().map(|t| {
        let events: Vec<&str> = t
            .events
            .iter()
            .map(|e| match e {
                kumo_core::ObjectEvent::Put => "put",
                kumo_core::ObjectEvent::Delete => "delete",
            })
            .collect();
        info("object", &format!("{} ({})", t.bucket, events.join(", ")))
    });
    routes
        .chain(schedule)
        .chain(topics)
        .chain(objects)
        .collect()
}
