//! The Lambda API (`/2015-03-31/functions/...`) on kumo's listener, so boto3, the AWS CLI
//! and other AWS SDKs manage and invoke kumo's functions (Lambda and WebAssembly alike).
//! kumo_lambda::api holds its rules and shapes; this module reads the request, checks who
//! sends it (SigV4 with a kumo access key, or nothing under `--auth none`) and does the work
//! through the same helpers as the control API, so both stay one behaviour.

use super::functions::{delete_function, deploy_code};
use super::versions::{
    delete_published, json_body, no_alias, no_version, point_alias, publish_latest, remove_alias,
};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::gateway::{REQUEST_ID_HEADER, read_body};
use crate::invoker::InvocationRequest;
use crate::namespaces::Ns;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use kumo_core::{Action, ErrorKind, FunctionRecord, Qualifier};
use kumo_lambda::api::{self, FunctionName, Operation, Shown};
use kumo_store::prelude::*;
use serde_json::{Value, json};
use std::sync::Arc;

/// Most of a request that is not code or a payload (settings, aliases).
const MAX_SETTINGS_BYTES: usize = 1024 * 1024;
/// Functions in one page of ListFunctions and ListVersionsByFunction, when not asked.
const DEFAULT_PAGE: usize = 50;

/// Every request under `/2015-03-31/functions`: answers in AWS's shapes, errors included.
pub(crate) async fn serve(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let mut response = match handle(&state, request).await {
        Ok(response) => response,
        Err(error) => aws_error(error),
    };
    let headers = response.headers_mut();
    if !headers.contains_key("x-amzn-requestid") {
        let id = uuid::Uuid::now_v7().to_string();
        if let Ok(id) = HeaderValue::from_str(&id) {
            headers.insert("x-amzn-requestid", id);
        }
    }
    response
}

/// kumo's error as AWS's: the status and `x-amzn-ErrorType` of its kind, `{"Type",
/// "message"}`. `x-kumo-error` stays, so the error-shaping layer leaves it as it is.
fn aws_error(error: ApiError) -> Response {
    let (status, name) = api::aws_error(error.kind);
    let side = if status >= 500 { "Service" } else { "User" };
    let body = json!({"Type": side, "message": error.message});
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert("x-amzn-errortype", HeaderValue::from_static(name));
    headers.insert(
        crate::error::ERROR_HEADER,
        HeaderValue::from_static(error.kind.code()),
    );
    if error.kind == ErrorKind::Throttled {
        headers.insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

async fn handle(state: &AppState, request: Request) -> ApiResult<Response> {
    let (parts, body) = request.into_parts();
    let operation = api::operation(parts.method.as_str(), parts.uri.path()).ok_or_else(|| {
        ApiError::new(
            ErrorKind::NotFound,
            format!(
                "no Lambda API operation is {} {}",
                parts.method,
                parts.uri.path()
            ),
        )
    })?;
    let limit = match operation {
        Operation::CreateFunction | Operation::UpdateFunctionCode(_) => {
            // Base64 of the largest package kumo takes, and the JSON around it.
            crate::MAX_CODE_BYTES / 3 * 4 + MAX_SETTINGS_BYTES
        }
        Operation::Invoke(_) => state.max_body_bytes,
        _ => MAX_SETTINGS_BYTES,
    };
    let action = operation.action();
    let peer = parts
        .extensions
        .get::<crate::auth::Peer>()
        .map(|p| p.0.ip());
    // A request whose key is unknown is refused before its body is read (the signature,
    // checked later, covers the body): an anonymous client cannot make kumo hold a
    // 130 MB upload. What it is still sending is read up to a bound, so it gets the answer.
    let (checked, body) = match known_key(state, &parts) {
        Ok(()) => {
            let body = read_body(body, &parts.headers, limit).await?;
            (caller(state, &parts, &body, action), body)
        }
        Err(refused) => {
            crate::auth::drain(body).await;
            (Err((None, refused)), Bytes::new())
        }
    };
    let (token, namespace, response) = match checked {
        Ok((token, ns)) => {
            let response = match axum::extract::Query::<Query>::try_from_uri(&parts.uri) {
                Ok(axum::extract::Query(query)) => {
                    run(state, &ns, operation, &query, &parts.headers, body).await
                }
                Err(e) => Err(ApiError::from(e)),
            }
            .unwrap_or_else(aws_error);
            (token, Some(ns.0), response)
        }
        Err((token, refused)) => {
            state.invoker.metrics.auth_refusal(refused.kind.code());
            if let Some(delay) = state.invoker.auth.hold_back(&refused, peer) {
                tokio::time::sleep(delay).await;
            }
            (token, None, aws_error(refused))
        }
    };
    if action == Action::Write {
        let entry = kumo_core::AuditEntry {
            at: kumo_core::now_ms(),
            token,
            method: parts.method.to_string(),
            target: parts.uri.path().to_string(),
            namespace,
            source: peer.map(|ip| ip.to_string()),
            status: response.status().as_u16(),
        };
        crate::auth::audit(&state.store, &entry).await;
    }
    Ok(response)
}

/// With authentication, the request's access key must be one kumo knows (its signature is
/// checked once the body is read).
fn known_key(state: &AppState, parts: &http::request::Parts) -> ApiResult<()> {
    let auth = &state.invoker.auth;
    let from_function = parts
        .extensions
        .get::<crate::function_endpoint::FromFunction>()
        .is_some();
    if auth.mode() == crate::auth::AuthMode::None || from_function {
        return Ok(());
    }
    auth.access_key_known(&parts.headers)
}

/// Who sends the request: the token (none under `--auth none`) and the namespace it acts
/// in, the token's (`default` for an admin, or with `--auth none`). With authentication,
/// the request must be signed (SigV4) by a kumo access key whose token may take `action`.
/// A refusal names the token when there was a valid one.
#[allow(
    clippy::type_complexity,
    reason = "a pair and a refusal that may name a token"
)]
fn caller(
    state: &AppState,
    parts: &http::request::Parts,
    body: &Bytes,
    action: Action,
) -> Result<(Option<String>, Ns), (Option<String>, ApiError)> {
    let default = || Ns(kumo_core::DEFAULT_NAMESPACE.to_string());
    // From a function's own endpoint: it may invoke functions of its namespace, nothing else.
    if let Some(from) = parts
        .extensions
        .get::<crate::function_endpoint::FromFunction>()
    {
        let name = Some(format!("function:{}", from.0));
        if action != Action::Invoke {
            let why = "a function's own endpoint may invoke functions, not change or read them";
            return Err((name, ApiError::new(ErrorKind::Forbidden, why)));
        }
        return Ok((name, Ns(kumo_core::namespace_of(&from.0).to_string())));
    }
    if state.invoker.auth.mode() == crate::auth::AuthMode::None {
        return Ok((None, default()));
    }
    let signed = kumo_lambda::sigv4::SignedRequest {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        headers: &parts.headers,
        body,
    };
    let token =
        state
            .invoker
            .auth
            .check_signed(&signed, action, &state.invoker.sealer, &state.store)?;
    let ns = token.namespace.clone().map_or_else(default, Ns);
    Ok((Some(token.name), ns))
}

/// The query parameters the Lambda API uses.
#[derive(Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Query {
    qualifier: Option<String>,
    marker: Option<String>,
    max_items: Option<usize>,
}

fn json_response(status: StatusCode, document: Value) -> Response {
    (status, axum::Json(document)).into_response()
}

/// The function a path's `FunctionName` and `?Qualifier=` name (they must agree).
fn named(text: &str, query: &Query) -> ApiResult<FunctionName> {
    let mut name = api::parse_function_name(text).map_err(ApiError::bad_request)?;
    match (&name.qualifier, &query.qualifier) {
        (Some(a), Some(b)) if a != b => {
            return Err(ApiError::bad_request(format!(
                "the function name's qualifier {a:?} and Qualifier {b:?} differ"
            )));
        }
        (None, Some(q)) => {
            Qualifier::parse(q).map_err(ApiError::bad_request)?;
            name.qualifier = Some(q.clone());
        }
        _ => {}
    }
    Ok(name)
}

/// A name that must not carry a qualifier (the operation acts on the function).
fn unqualified(text: &str, query: &Query) -> ApiResult<String> {
    let name = named(text, query)?;
    match name.qualifier {
        None => Ok(name.name),
        Some(q) => Err(ApiError::bad_request(format!(
            "this operation takes no qualifier ({q:?})"
        ))),
    }
}

async fn run(
    state: &AppState,
    ns: &Ns,
    operation: Operation,
    query: &Query,
    headers: &HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    match operation {
        Operation::CreateFunction => create(state, ns, &body).await,
        Operation::ListFunctions => list_functions(state, ns, query).await,
        Operation::GetFunction(text) => {
            let document = configuration(state, ns, &named(&text, query)?).await?;
            let body = json!({"Configuration": document, "Code": {"RepositoryType": "kumo"}});
            Ok(json_response(StatusCode::OK, body))
        }
        Operation::GetFunctionConfiguration(text) => {
            let document = configuration(state, ns, &named(&text, query)?).await?;
            Ok(json_response(StatusCode::OK, document))
        }
        Operation::UpdateFunctionCode(text) => {
            let name = unqualified(&text, query)?;
            let request: api::UpdateCode = json_body(&body)?;
            let record = latest(state, ns, &name).await?;
            let code = request.code.bytes().map_err(ApiError::bad_request)?;
            let (record, _) = deploy_code(state, ns, &name, code.into(), record.config).await?;
            shown_after_deploy(state, ns, &name, &record, request.publish, "").await
        }
        Operation::UpdateFunctionConfiguration(text) => {
            let name = unqualified(&text, query)?;
            let settings: api::Settings = json_body(&body)?;
            let record = latest(state, ns, &name).await?;
            let mut config = record.config.clone();
            settings.apply(&mut config).map_err(ApiError::invalid)?;
            let path = state.blobs.local_path(&record.code_sha256).await?;
            let code = tokio::fs::read(path)
                .await
                .map_err(|e| anyhow::anyhow!("reading the code of {name}: {e}"))?;
            let (record, _) = deploy_code(state, ns, &name, code.into(), config).await?;
            shown_after_deploy(state, ns, &name, &record, false, "").await
        }
        Operation::DeleteFunction(text) => {
            let name = named(&text, query)?;
            match name.qualifier.as_deref().map(Qualifier::parse) {
                None | Some(Ok(Qualifier::Latest)) => {
                    delete_function(state, ns, &name.name).await?
                }
                Some(Ok(Qualifier::Version(n))) => {
                    delete_published(state, ns, &name.name, n).await?
                }
                _ => {
                    return Err(ApiError::bad_request(
                        "DeleteFunction takes a version number as Qualifier, not an alias",
                    ));
                }
            }
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Operation::PublishVersion(text) => {
            let name = unqualified(&text, query)?;
            let request: api::PublishVersion = json_body(&body)?;
            let (version, _) = publish_latest(state, ns, &name, &request.description).await?;
            let document = Shown::version(&name, &version).configuration();
            Ok(json_response(StatusCode::CREATED, document))
        }
        Operation::ListVersionsByFunction(text) => {
            let name = unqualified(&text, query)?;
            let record = latest(state, ns, &name).await?;
            let mut documents = vec![Shown::latest(&name, &record).configuration()];
            for version in state.store.list_versions(&ns.key(&name)?).await? {
                documents.push(Shown::version(&name, &version).configuration());
            }
            Ok(json_response(
                StatusCode::OK,
                page(documents, query, "Versions", |d| d["Version"].to_string()),
            ))
        }
        Operation::CreateAlias(text) => {
            let name = unqualified(&text, query)?;
            let input: api::AliasInput = json_body(&body)?;
            let alias = input
                .name
                .clone()
                .ok_or_else(|| ApiError::bad_request("Name is missing"))?;
            kumo_core::validate_alias(&alias).map_err(ApiError::bad_request)?;
            latest(state, ns, &name).await?;
            if find_alias(state, ns, &name, &alias).await?.is_some() {
                return Err(ApiError::new(
                    ErrorKind::Conflict,
                    format!("alias {alias:?} of {name:?} already exists"),
                ));
            }
            let (version, canary) = input.target(None).map_err(ApiError::bad_request)?;
            let (record, _) = point_alias(state, ns, &name, &alias, version, canary).await?;
            let document = api::alias_configuration(&name, &record);
            Ok(json_response(StatusCode::CREATED, document))
        }
        Operation::UpdateAlias(text, alias) => {
            let name = unqualified(&text, query)?;
            let input: api::AliasInput = json_body(&body)?;
            let current = find_alias(state, ns, &name, &alias)
                .await?
                .ok_or_else(|| no_alias(&name, &alias))?;
            let (version, mut canary) = input
                .target(Some(current.version))
                .map_err(ApiError::bad_request)?;
            // No RoutingConfig: the canary stays (an empty one removes it).
            if input.routing_config.is_none()
                && current.canary.is_some_and(|c| c.version != version)
            {
                canary = current.canary;
            }
            let (record, _) = point_alias(state, ns, &name, &alias, version, canary).await?;
            let document = api::alias_configuration(&name, &record);
            Ok(json_response(StatusCode::OK, document))
        }
        Operation::GetAlias(text, alias) => {
            let name = unqualified(&text, query)?;
            let record = find_alias(state, ns, &name, &alias)
                .await?
                .ok_or_else(|| no_alias(&name, &alias))?;
            let document = api::alias_configuration(&name, &record);
            Ok(json_response(StatusCode::OK, document))
        }
        Operation::ListAliases(text) => {
            let name = unqualified(&text, query)?;
            latest(state, ns, &name).await?;
            let aliases = state.store.list_aliases(Some(&ns.key(&name)?)).await?;
            let documents = aliases
                .iter()
                .map(|a| api::alias_configuration(&name, a))
                .collect();
            Ok(json_response(
                StatusCode::OK,
                page(documents, query, "Aliases", |d| d["Name"].to_string()),
            ))
        }
        Operation::DeleteAlias(text, alias) => {
            let name = unqualified(&text, query)?;
            remove_alias(state, ns, &name, &alias).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Operation::Invoke(text) => invoke(state, ns, &named(&text, query)?, headers, body).await,
    }
}

async fn create(state: &AppState, ns: &Ns, body: &Bytes) -> ApiResult<Response> {
    let request: api::CreateFunction = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid CreateFunction request: {e}")))?;
    let name = api::parse_function_name(&request.function_name).map_err(ApiError::bad_request)?;
    if name.qualifier.is_some() {
        return Err(ApiError::bad_request("FunctionName takes no qualifier"));
    }
    let config = api::new_config(&request.settings).map_err(ApiError::invalid)?;
    let code = request.code.bytes().map_err(ApiError::bad_request)?;
    if state
        .store
        .get_function(&ns.key(&name.name)?)
        .await?
        .is_some()
    {
        return Err(ApiError::new(
            ErrorKind::Conflict,
            format!("function already exists: {}", name.name),
        ));
    }
    let (record, _) = deploy_code(state, ns, &name.name, code.into(), config).await?;
    let response = shown_after_deploy(
        state,
        ns,
        &name.name,
        &record,
        request.publish,
        &request.description,
    )
    .await?;
    let (mut parts, body) = response.into_parts();
    parts.status = StatusCode::CREATED;
    Ok(Response::from_parts(parts, body))
}

/// The configuration after a deploy: of `$LATEST`, or of the version published now.
async fn shown_after_deploy(
    state: &AppState,
    ns: &Ns,
    name: &str,
    record: &FunctionRecord,
    publish: bool,
    description: &str,
) -> ApiResult<Response> {
    let document = match publish {
        true => {
            let (version, _) = publish_latest(state, ns, name, description).await?;
            Shown::version(name, &version).configuration()
        }
        false => Shown::latest(name, record).configuration(),
    };
    Ok(json_response(StatusCode::OK, document))
}

async fn latest(state: &AppState, ns: &Ns, name: &str) -> ApiResult<FunctionRecord> {
    state
        .store
        .get_function(&ns.key(name)?)
        .await?
        .ok_or_else(|| ApiError::not_found(name))
}

async fn find_alias(
    state: &AppState,
    ns: &Ns,
    name: &str,
    alias: &str,
) -> ApiResult<Option<kumo_core::AliasRecord>> {
    let aliases = state.store.list_aliases(Some(&ns.key(name)?)).await?;
    Ok(aliases.into_iter().find(|a| a.name == alias))
}

/// The configuration of what `name` names: `$LATEST`, a version, or an alias's version.
async fn configuration(state: &AppState, ns: &Ns, name: &FunctionName) -> ApiResult<Value> {
    let key = ns.key(&name.name)?;
    let version = match name.qualifier.as_deref().map(Qualifier::parse) {
        None | Some(Ok(Qualifier::Latest)) => None,
        Some(Ok(Qualifier::Version(n))) => Some(n),
        Some(Ok(Qualifier::Alias(alias))) => Some(
            find_alias(state, ns, &name.name, &alias)
                .await?
                .ok_or_else(|| no_alias(&name.name, &alias))?
                .version,
        ),
        Some(Err(why)) => return Err(ApiError::bad_request(why)),
    };
    match version {
        None => {
            let record = latest(state, ns, &name.name).await?;
            Ok(Shown::latest(&name.name, &record).configuration())
        }
        Some(n) => {
            let version = state
                .store
                .get_version(&key, n)
                .await?
                .ok_or_else(|| no_version(&name.name, n))?;
            Ok(Shown::version(&name.name, &version).configuration())
        }
    }
}

async fn list_functions(state: &AppState, ns: &Ns, query: &Query) -> ApiResult<Response> {
    let mut functions = state.store.list_functions().await?;
    functions.retain(|f| ns.holds(&f.name));
    functions.sort_by(|a, b| a.name.cmp(&b.name));
    let documents = functions
        .iter()
        .map(|f| Shown::latest(kumo_core::split_key(&f.name).1, f).configuration())
        .collect();
    let body = page(documents, query, "Functions", |d| {
        d["FunctionName"].as_str().unwrap_or_default().to_string()
    });
    Ok(json_response(StatusCode::OK, body))
}

/// One page of `documents` under `field`: those after `?Marker=` (the key of the last one
/// of the page before), at most `?MaxItems=`, with `NextMarker` when more follow.
fn page(
    documents: Vec<Value>,
    query: &Query,
    field: &str,
    key: impl Fn(&Value) -> String,
) -> Value {
    let start = match &query.marker {
        Some(marker) => documents
            .iter()
            .position(|d| &key(d) == marker)
            .map_or(documents.len(), |i| i + 1),
        None => 0,
    };
    let size = query.max_items.unwrap_or(DEFAULT_PAGE).clamp(1, 10_000);
    let end = documents.len().min(start + size);
    let mut body = json!({ field: documents[start..end] });
    if end < documents.len() {
        body["NextMarker"] = json!(key(&documents[end - 1]));
    }
    body
}

/// Invoke: `RequestResponse` (200, the function's answer; a function error is
/// `X-Amz-Function-Error: Unhandled` with its error document), `Event` (202, kumo's durable
/// queue) or `DryRun` (204, the function exists and may be invoked).
async fn invoke(
    state: &AppState,
    ns: &Ns,
    name: &FunctionName,
    headers: &HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let header = |h: &str| headers.get(h).and_then(|v| v.to_str().ok());
    let key = ns.key(&name.name)?;
    let target = match &name.qualifier {
        Some(q) => format!("{key}:{q}"),
        None => key,
    };
    match header("x-amz-invocation-type").unwrap_or("RequestResponse") {
        "RequestResponse" => {}
        "Event" => {
            // Refused now rather than dead later: the function must exist.
            state.invoker.function(&target).await?;
            let (id, _) = super::events::submit_event(state, &target, body, headers).await?;
            let mut response = StatusCode::ACCEPTED.into_response();
            if let Ok(id) = HeaderValue::from_str(&id) {
                response.headers_mut().insert("x-amzn-requestid", id);
            }
            return Ok(response);
        }
        "DryRun" => {
            state.invoker.function(&target).await?;
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "X-Amz-Invocation-Type {other:?} is not RequestResponse, Event or DryRun"
            )));
        }
    }
    let tail_logs = match header("x-amz-log-type") {
        None | Some("None") => false,
        Some("Tail") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "X-Amz-Log-Type {other:?} is not None or Tail"
            )));
        }
    };
    // The alias's weighted pick is made here, once, so the version it ran can be told.
    let picked = state.invoker.pick(&target)?;
    let executed = match picked.rsplit_once(':') {
        Some((_, version)) => version.to_string(),
        None => kumo_core::LATEST.to_string(),
    };
    let mut forwarded = HeaderMap::new();
    for name in [
        http::header::CONTENT_TYPE,
        "traceparent".parse().expect("a valid name"),
    ] {
        if let Some(value) = headers.get(&name) {
            forwarded.insert(name, value.clone());
        }
    }
    if let Some(context) = header("x-amz-client-context") {
        let context = api::client_context(context).map_err(ApiError::bad_request)?;
        let value = HeaderValue::from_bytes(context.as_bytes())
            .map_err(|_| ApiError::bad_request("X-Amz-Client-Context is not header-safe JSON"))?;
        forwarded.insert(api::CLIENT_CONTEXT_HEADER, value);
    }
    let invoked = state
        .invoker
        .invoke(
            &picked,
            InvocationRequest {
                method: http::Method::POST,
                path_and_query: "/".to_string(),
                headers: forwarded,
                body,
                env: Vec::new(),
                call_depth: 0,
                source: kumo_core::Source::Invoke,
                peer: None,
                tail_logs,
            },
        )
        .await;
    let mut response = match invoked.result {
        Ok(answer) => {
            let mut response = Response::new(Body::from(answer.body));
            let content_type = answer.headers.get(http::header::CONTENT_TYPE).cloned();
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                content_type.unwrap_or(HeaderValue::from_static("application/json")),
            );
            response
        }
        Err(error) if api::is_function_error(error.kind) => {
            let document = invoked
                .error_document
                .unwrap_or_else(|| api::error_document(error.kind, &error.message).to_string());
            let mut response = Response::new(Body::from(document));
            let headers = response.headers_mut();
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            headers.insert(
                "x-amz-function-error",
                HeaderValue::from_static("Unhandled"),
            );
            response
        }
        Err(error) => aws_error(error),
    };
    let headers = response.headers_mut();
    if let Ok(id) = HeaderValue::from_str(&invoked.request_id) {
        headers.insert("x-amzn-requestid", id.clone());
        headers.insert(REQUEST_ID_HEADER, id);
    }
    if let Ok(version) = HeaderValue::from_str(&executed) {
        headers.insert("x-amz-executed-version", version);
    }
    if let Some(lines) = &invoked.logs {
        use base64::Engine as _;
        let tail = base64::engine::general_purpose::STANDARD.encode(api::log_tail(lines));
        if let Ok(tail) = HeaderValue::from_str(&tail) {
            headers.insert("x-amz-log-result", tail);
        }
    }
    Ok(response)
}
