//! Deploy, list, get, delete and invoke functions.

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::gateway::{invoked_response, read_body};
use crate::invoker::InvocationRequest;
use crate::namespaces::Ns;
use crate::routes::conflicting_route;
use axum::Json;
use axum::extract::multipart::MultipartRejection;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Multipart, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use kumo_core::{ErrorKind, FunctionConfig, FunctionRecord, validate_name};
use kumo_runtime::InvalidCode;
use kumo_store::Blobs;
use kumo_store::prelude::*;
use serde::Deserialize;
use std::sync::Arc;

/// `PUT /functions/{name}`, multipart: `code` (the .wasm) and optional `config` (JSON).
/// The code is validated and compiled before anything is stored; 201 created, 200 updated.
#[utoipa::path(operation_id = "functions_deploy", put, path = "/api/v1/functions/{name}", params(("name" = String, Path, pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", example = "hello")), request_body(content = DeployForm, content_type = "multipart/form-data"), responses((status = 200, description = "Updated", body = FunctionRecord), (status = 201, description = "Created", body = FunctionRecord), (status = "default", description = "An error (see the error table)", body = crate::error::ErrorEnvelope)))]
pub(super) async fn deploy(
    State(state): State<Arc<AppState>>,
    ns: Ns,
    Path(name): Path<String>,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult<Response> {
    // The upload is read before the name is checked: answering while the client still sends
    // would close the connection under it, and it would see a reset instead of the 400.
    let (code, config) = read_deploy_parts(multipart?).await?;
    let (record, created) = deploy_code(&state, &ns, &name, code, config).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(record)).into_response())
}

/// Deploys `code` with `config` as function `name` of namespace `ns` (its `$LATEST`): checks
/// both, prepares the code, stores it and tells every cache. The stored record, and whether
/// the function is new. The control API's deploy and the Lambda API both come here.
pub(crate) async fn deploy_code(
    state: &AppState,
    ns: &Ns,
    name: &str,
    code: Bytes,
    config: FunctionConfig,
) -> ApiResult<(FunctionRecord, bool)> {
    state.disk.ensure_room()?;
    validate_name(name).map_err(|e| ApiError::invalid(e.to_string()))?;
    let key = ns.key(name)?;
    config
        .validate()
        .map_err(|e| ApiError::invalid(format!("invalid config: {e}")))?;
    for secret in &config.secrets {
        if state.store.get_secret(&ns.key(secret)?).await?.is_none() {
            return Err(ApiError::invalid(format!(
                "invalid config: secret {secret:?} is not set (kumo secret set {secret})"
            )));
        }
    }
    let budget_mb = state.invoker.admission.memory().limit();
    if config.memory_mb as usize > budget_mb {
        return Err(ApiError::invalid(format!(
            "invalid config: memory_mb {} is more than the server's whole memory budget of {budget_mb} MiB (--max-memory)",
            config.memory_mb
        )));
    }

    let sha = Blobs::sha256(&code);
    let (kind, loaded) = prepare(state, &sha, &code, &config).await?;

    let _deploying = state.lock_registry().await?;
    let mut functions = state.store.list_functions().await?;
    let now = kumo_core::now_ms();
    let record = FunctionRecord {
        name: key.clone(),
        kind,
        code_sha256: sha,
        code_size: code.len() as u64,
        config,
        created_at: now,
        updated_at: now,
        reuse_fell_back: false,
    };
    if let Some((route, owner)) = conflicting_route(&record, &functions) {
        // Routes are the server's, shared by every namespace; another namespace's function
        // is not named.
        let by = match ns.holds(&owner) {
            true => format!(" by function {:?}", kumo_core::split_key(&owner).1),
            false => String::new(),
        };
        return Err(ApiError::new(
            ErrorKind::Conflict,
            format!("route {route} is already served{by}"),
        ));
    }
    if !functions.iter().any(|f| f.name == key) {
        state
            .quota
            .ensure(&ns.0, kumo_core::Adding::Function)
            .await?;
    }
    if let Some(wanted) = record.config.provisioned_concurrency {
        let free = state.invoker.admission.reservable(&key, &functions);
        if wanted as usize > free {
            return Err(ApiError::new(
                ErrorKind::Conflict,
                format!(
                    "provisioned_concurrency {wanted} does not fit: {free} of the server's slots are not reserved by other functions"
                ),
            ));
        }
    }
    state.blobs.put(&code).await?;
    let created = state.store.upsert_function(&record).await?;
    let record = state
        .store
        .get_function(&key)
        .await?
        .ok_or_else(|| anyhow::anyhow!("function {key} vanished after saving"))?;
    functions.retain(|f| f.name != key);
    functions.push(record.clone());
    state.functions_changed(&functions);
    if record.config.schedule.is_none() {
        state.store.forget_schedule(&key).await?;
    }
    state.invoker.deployed(record.clone(), loaded);
    // Loaded here: a function with secrets (read now) or a Lambda function (whose
    // environments start now).
    if record.config.provisioned_concurrency.is_some()
        && (!record.config.secrets.is_empty() || record.kind == kumo_core::FunctionKind::Lambda)
        && let Err(e) = state.invoker.preload(record.clone()).await
    {
        tracing::warn!(function = %key, "loading the provisioned function: {e:#}");
    }
    tracing::info!(function = %key, kind = record.kind.as_str(), created, "deployed");
    Ok((record, created))
}

/// Checks and prepares deployed code: a wasm binary is compiled (into the cache); a Lambda
/// package (config `runtime`) is unpacked and checked.
async fn prepare(
    state: &AppState,
    sha: &str,
    code: &Bytes,
    config: &FunctionConfig,
) -> ApiResult<(kumo_core::FunctionKind, Option<kumo_runtime::Loaded>)> {
    let (sha, code) = (sha.to_string(), code.clone());
    if let Some(runtime) = config.runtime {
        let lambda = state.lambda.clone();
        tokio::task::spawn_blocking(move || lambda.prepare(&sha, &code, runtime))
            .await
            .map_err(anyhow::Error::from)?
            .map_err(|e| match e {
                kumo_lambda::package::PackageError::Invalid(why) => {
                    ApiError::invalid(format!("unusable package: {why}"))
                }
                kumo_lambda::package::PackageError::Internal(e) => e.into(),
            })?;
        return Ok((kumo_core::FunctionKind::Lambda, None));
    }
    let runtime = state.runtime.clone();
    let loaded = tokio::task::spawn_blocking(move || runtime.prepare(&sha, &code))
        .await
        .map_err(anyhow::Error::from)?
        .map_err(|e| match e {
            InvalidCode::Invalid(why) => ApiError::invalid(format!("unusable code: {why}")),
            InvalidCode::Internal(e) => e.into(),
        })?;
    Ok((loaded.kind(), Some(loaded)))
}

/// A deploy's multipart form (for the API document; [`read_deploy_parts`] reads it).
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "only describes the form for the OpenAPI document")]
struct DeployForm {
    /// The .wasm (a component or a core module).
    #[schema(value_type = String, format = Binary)]
    code: Vec<u8>,
    /// The function's config as JSON (a `FunctionConfig`); defaults when absent.
    config: Option<String>,
}

async fn read_deploy_parts(mut multipart: Multipart) -> ApiResult<(Bytes, FunctionConfig)> {
    let mut code = None;
    let mut config = None;
    // The whole upload is read before a bad part is refused: answering while the client
    // still sends would close the connection under it.
    let mut refusal = None;
    while let Some(field) = multipart.next_field().await? {
        let name = field.name().unwrap_or("").to_string();
        let bytes = field.bytes().await?;
        let slot = match name.as_str() {
            "code" => &mut code,
            "config" => &mut config,
            other => {
                refusal.get_or_insert_with(|| {
                    ApiError::bad_request(format!(
                        "unexpected multipart part {other:?} (expected `code` and `config`)"
                    ))
                });
                continue;
            }
        };
        if slot.replace(bytes).is_some() {
            refusal.get_or_insert_with(|| {
                ApiError::bad_request(format!("the multipart part `{name}` is given twice"))
            });
        }
    }
    if let Some(refusal) = refusal {
        return Err(refusal);
    }
    let config = match config {
        Some(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::invalid(format!("invalid config: {e}")))?,
        None => FunctionConfig::default(),
    };
    let code = code.ok_or_else(|| ApiError::invalid("the multipart part `code` is missing"))?;
    Ok((code, config))
}

#[utoipa::path(operation_id = "functions_list", get, path = "/api/v1/functions", responses((status = 200, body = Vec<FunctionRecord>), (status = "default", description = "An error (see the error table)", body = crate::error::ErrorEnvelope)))]
pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    ns: Ns,
) -> ApiResult<Json<Vec<FunctionRecord>>> {
    let mut functions = state.store.list_functions().await?;
    functions.retain(|f| ns.holds(&f.name));
    state.invoker.mark_reuse_fallbacks(&mut functions);
    Ok(Json(functions))
}

#[utoipa::path(operation_id = "functions_get", get, path = "/api/v1/functions/{name}", params(("name" = String, Path, pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", example = "hello")), responses((status = 200, body = FunctionRecord), (status = "default", description = "An error (see the error table)", body = crate::error::ErrorEnvelope)))]
pub(super) async fn get(
    State(state): State<Arc<AppState>>,
    ns: Ns,
    Path(name): Path<String>,
) -> ApiResult<Json<FunctionRecord>> {
    let key = ns.key(&name)?;
    let mut record = state
        .store
        .get_function(&key)
        .await?
        .ok_or_else(|| ApiError::not_found(&name))?;
    state.invoker.mark_reuse_fallbacks([&mut record]);
    Ok(Json(record))
}

#[utoipa::path(operation_id = "functions_delete", delete, path = "/api/v1/functions/{name}", params(("name" = String, Path, pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", example = "hello")), responses((status = 204, description = "Deleted"), (status = "default", description = "An error (see the error table)", body = crate::error::ErrorEnvelope)))]
pub(super) async fn delete(
    State(state): State<Arc<AppState>>,
    ns: Ns,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    delete_function(&state, &ns, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes function `name` of `ns` (with its versions and aliases) and tells every cache.
pub(crate) async fn delete_function(state: &AppState, ns: &Ns, name: &str) -> ApiResult<()> {
    let key = ns.key(name)?;
    let _deploying = state.lock_registry().await?;
    if !state.store.delete_function(&key).await? {
        return Err(ApiError::not_found(name));
    }
    state.invoker.forget(&key);
    state.store.forget_schedule(&key).await?;
    super::aliases_changed(state).await?;
    let functions = state.store.list_functions().await?;
    state.functions_changed(&functions);
    tracing::info!(function = %key, "deleted");
    Ok(())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct InvokeParams {
    /// `sync` (the default) or `async`.
    #[serde(default)]
    #[param(inline)]
    mode: InvokeMode,
}

#[derive(Deserialize, Default, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
enum InvokeMode {
    /// Run now; the response is the function's.
    #[default]
    Sync,
    /// Store the event, answer 202; it runs in the background.
    Async,
}

/// `POST /functions/{name}/invoke[?mode=async]`: the body is the payload. A wasi-http
/// function gets it as `POST /`; a command gets it on stdin. Sync: the response is the
/// function's own. Async: 202 with the event's id once it is stored.
#[utoipa::path(operation_id = "functions_invoke", post, path = "/api/v1/functions/{name}/invoke", params(("name" = String, Path, pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", example = "hello"), InvokeParams), request_body(content = Vec<u8>, content_type = "application/octet-stream"), responses((status = 200, description = "The function's own response", content_type = "*/*"), (status = 202, description = "Queued (mode=async)", body = super::events::Submitted), (status = "default", description = "An error (see the error table)", body = crate::error::ErrorEnvelope)))]
pub(super) async fn invoke(
    State(state): State<Arc<AppState>>,
    ns: Ns,
    Path(name): Path<String>,
    params: Result<Query<InvokeParams>, QueryRejection>,
    request: Request,
) -> Response {
    let key = match ns.key(&name) {
        Ok(key) => key,
        Err(e) => return e.into_response(),
    };
    match params.map(|Query(p)| p.mode) {
        Ok(InvokeMode::Sync) => {}
        Ok(InvokeMode::Async) => return super::events::invoke_async(state, key, request).await,
        Err(e) => return ApiError::from(e).into_response(),
    }
    let (parts, body) = request.into_parts();
    let body = match read_body(body, &parts.headers, state.max_body_bytes).await {
        Ok(body) => body,
        Err(e) => return e.into_response(),
    };
    let mut headers = http::HeaderMap::new();
    if let Some(ct) = parts.headers.get(http::header::CONTENT_TYPE) {
        headers.insert(http::header::CONTENT_TYPE, ct.clone());
    }
    let invoked = state
        .invoker
        .invoke(
            &key,
            InvocationRequest {
                method: http::Method::POST,
                path_and_query: "/".to_string(),
                headers,
                body,
                env: Vec::new(),
                call_depth: 0,
                source: kumo_core::Source::Invoke,
                peer: None,
                tail_logs: false,
            },
        )
        .await;
    invoked_response(invoked)
}
