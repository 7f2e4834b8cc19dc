//! Authentication and authorisation: one layer in front of the router checks every request
//! (the control API, `/metrics`) before any handler runs, so a new endpoint cannot forget it;
//! the invoker checks the data plane's token-only functions. Tokens are kept in memory as the
//! sha256 of their secrets (a cache of the store, replaced whole after each change), so a check
//! is a hash and a map lookup, and a revoked token is refused on its next request.

use crate::AppState;
use crate::error::ApiError;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use kumo_core::{Action, ErrorKind, Role, TOKEN_PREFIX, TokenRecord};
use kumo_store::StoredToken;
use kumo_store::prelude::*;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Whether requests must carry tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Every control-API request needs a token with the right role.
    Token,
    /// Nothing is checked: local development only (loopback listeners).
    None,
}

/// The address a request came from (put in its extensions by the accept loop).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer(pub(crate) SocketAddr);

/// Failed authentications from one address within this window are counted...
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// ...and past this many, each further one is answered only after [`FAILURE_DELAY`].
const FAILURES_BEFORE_DELAY: u32 = 10;
const FAILURE_DELAY: Duration = Duration::from_secs(1);
/// Most of a refused request's body read before answering.
const DRAIN_BYTES: usize = 16 * 1024 * 1024;
/// A token's last use is written to the store at most this often.
const LAST_USED_EVERY_MS: i64 = 60_000;

pub(crate) struct Auth {
    mode: AuthMode,
    /// By secret hash.
    tokens: RwLock<HashMap<String, TokenRecord>>,
    /// Tokens with access keys, by access key id: the secret's hash and the secret sealed.
    access_keys: RwLock<HashMap<String, (String, kumo_store::SealedSecret)>>,
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

/// A new secret: the prefix and 32 random bytes from the operating system, as hex.
pub(crate) fn new_secret() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness for a token: {e}"))?;
    Ok(format!("{TOKEN_PREFIX}{}", hex::encode(bytes)))
}

const NEEDS_SIGNATURE: &str = "this request needs a SigV4 signature by a kumo access key \
                               (kumo token create NAME --role ROLE --access-key)";
const INVALID_ACCESS_KEY: &str = "the access key is not valid (unknown, revoked or expired)";

/// A new access key id: `AKKUMO` and 14 random characters of `A-Z2-7`, 20 in all as AWS's.
pub(crate) fn new_access_key_id() -> anyhow::Result<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut bytes = [0u8; 14];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness for a key id: {e}"))?;
    let tail: String = bytes
        .iter()
        .map(|b| ALPHABET[usize::from(b % 32)] as char)
        .collect();
    Ok(format!("AKKUMO{tail}"))
}

/// What a token's secret is sealed under when it has an access key (the sealed value is
/// bound to the key id).
pub(crate) fn access_key_seal_name(access_key_id: &str) -> String {
    format!("access-key:{access_key_id}")
}

/// What is stored of a secret. Secrets are 256 random bits, so a fast hash is enough.
pub(crate) fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

impl Auth {
    pub(crate) fn new(mode: AuthMode) -> Self {
        Self {
            mode,
            tokens: RwLock::default(),
            access_keys: RwLock::default(),
            failures: Mutex::default(),
        }
    }

    pub(crate) fn mode(&self) -> AuthMode {
        self.mode
    }

    /// Replaces the cache with `tokens` (all of them, from the store).
    pub(crate) fn load(&self, tokens: Vec<StoredToken>) {
        let access_keys = tokens
            .iter()
            .filter_map(|t| {
                let id = t.record.access_key_id.clone()?;
                Some((id, (t.secret_hash.clone(), t.sealed_secret.clone()?)))
            })
            .collect();
        *self.access_keys.write().unwrap_or_else(|p| p.into_inner()) = access_keys;
        let by_hash = tokens
            .into_iter()
            .map(|t| (t.secret_hash, t.record))
            .collect();
        *self.tokens.write().unwrap_or_else(|p| p.into_inner()) = by_hash;
    }

    /// The token whose secret `headers` carry, if it is valid now, and the time of this use
    /// when it should be written to the store; else the 401.
    fn authenticate(&self, headers: &HeaderMap) -> Result<(TokenRecord, Option<i64>), ApiError> {
        let secret = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(kumo_core::bearer)
            .ok_or_else(|| {
                unauthorized("this request needs a token: Authorization: Bearer <token>")
            })?;
        let hash = secret_hash(secret);
        self.valid(&hash)
            .ok_or_else(|| unauthorized("the token is not valid (unknown, revoked or expired)"))
    }

    /// The token whose secret has `hash`, if it is valid now, and the time of this use when
    /// it should be written to the store.
    fn valid(&self, hash: &str) -> Option<(TokenRecord, Option<i64>)> {
        let now = kumo_core::now_ms();
        let mut token = self
            .tokens
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(hash)
            .filter(|t| !t.expired(now))
            .cloned()?;
        // Concurrent checks share the read lock; the write lock is taken once a minute per
        // token, to move its last use.
        let to_write = token
            .last_used_at
            .is_none_or(|at| now - at >= LAST_USED_EVERY_MS)
            .then_some(now);
        if to_write.is_some() {
            token.last_used_at = to_write;
            let mut tokens = self.tokens.write().unwrap_or_else(|p| p.into_inner());
            if let Some(cached) = tokens.get_mut(hash) {
                cached.last_used_at = to_write;
            }
        }
        Some((token, to_write))
    }

    /// The secret hash and sealed secret of the token with access key `id`.
    fn access_key(&self, id: &str) -> Option<(String, kumo_store::SealedSecret)> {
        self.access_keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// `Ok` when `headers` carry a SigV4 `Authorization` whose access key is a valid token's
    /// (not yet whether the signature is right); else the 401 that says what is wrong.
    pub(crate) fn access_key_known(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let header = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| unauthorized(NEEDS_SIGNATURE))?;
        let signed =
            kumo_lambda::sigv4::parse_authorization(header).map_err(|e| unauthorized(&e))?;
        let hash = self.access_key(&signed.access_key_id).map(|(hash, _)| hash);
        let now = kumo_core::now_ms();
        let valid = hash.is_some_and(|hash| {
            self.tokens
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(&hash)
                .is_some_and(|t| !t.expired(now))
        });
        match valid {
            true => Ok(()),
            false => Err(unauthorized(INVALID_ACCESS_KEY)),
        }
    }

    /// Checks a request signed with SigV4 (the AWS APIs): the access key must be a valid
    /// token's, the signature its secret's, and its role must allow `action`. `sealer`
    /// opens the secret the signature is checked with. A refusal names the token when the
    /// key was valid, for the audit trail.
    pub(crate) fn check_signed(
        &self,
        request: &kumo_lambda::sigv4::SignedRequest<'_>,
        action: Action,
        sealer: &crate::secrets::Sealer,
        store: &kumo_store::Store,
    ) -> Result<TokenRecord, (Option<String>, ApiError)> {
        use kumo_lambda::sigv4;
        let header = request
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| (None, unauthorized(NEEDS_SIGNATURE)))?;
        let signed = sigv4::parse_authorization(header).map_err(|e| (None, unauthorized(&e)))?;
        let invalid = || (None, unauthorized(INVALID_ACCESS_KEY));
        let (hash, sealed) = self.access_key(&signed.access_key_id).ok_or_else(invalid)?;
        let (token, used) = self.valid(&hash).ok_or_else(invalid)?;
        let name = || Some(token.name.clone());
        let secret = sealer
            .open(&access_key_seal_name(&signed.access_key_id), &sealed)
            .and_then(|secret| String::from_utf8(secret).ok())
            .ok_or_else(|| {
                tracing::error!(token = %token.name, "an access key's secret does not open: was the secret key changed?");
                (name(), unauthorized("the access key cannot be checked on this server"))
            })?;
        sigv4::verify(&secret, &signed, request, kumo_core::now_ms()).map_err(|refused| {
            let why = match refused {
                sigv4::Refused::Expired => "the signature has expired: the request was signed \
                    more than 15 minutes from the server's time"
                    .to_string(),
                sigv4::Refused::Signature(why) => why,
            };
            (name(), unauthorized(&why))
        })?;
        if let Some(at) = used {
            note_use(store, &token.name, at);
        }
        allowed(&token, action).map_err(|refused| (name(), refused))?;
        Ok(token)
    }

    /// Checks that `headers` carry a token that may act in `namespace` (none: the request is
    /// the whole server's) and whose role allows `action`, and writes its use to `store` when
    /// due. A token of another namespace gets `outside`, the answer it would get if nothing
    /// were there, so it learns nothing of what is. A refusal names the token when there was
    /// a valid one, for the audit trail.
    pub(crate) fn check(
        &self,
        headers: &HeaderMap,
        action: Action,
        namespace: Option<&str>,
        outside: impl FnOnce() -> ApiError,
        store: &kumo_store::Store,
    ) -> Result<TokenRecord, (Option<String>, ApiError)> {
        let (token, used) = self.authenticate(headers).map_err(|e| (None, e))?;
        if let Some(at) = used {
            note_use(store, &token.name, at);
        }
        if let Some(namespace) = namespace
            && !kumo_core::may_enter(token.namespace.as_deref(), namespace)
        {
            return Err((Some(token.name), outside()));
        }
        match allowed(&token, action) {
            Ok(()) => Ok(token),
            Err(refused) => Err((Some(token.name), refused)),
        }
    }

    /// How long to hold back the answer `refused` to a client at `peer`: a failed token
    /// counts against its address, and past the allowance each further one waits.
    pub(crate) fn hold_back(&self, refused: &ApiError, peer: Option<IpAddr>) -> Option<Duration> {
        if refused.kind != ErrorKind::Unauthorized {
            return None;
        }
        self.failed(peer?)
    }

    /// Counts a failure from `ip`; past the allowance, how long to hold the answer back.
    fn failed(&self, ip: IpAddr) -> Option<Duration> {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        // Forget addresses whose window has passed, so the map stays small.
        failures.retain(|_, (since, _)| now.duration_since(*since) < FAILURE_WINDOW);
        let (_, count) = failures.entry(ip).or_insert((now, 0));
        *count += 1;
        if *count == FAILURES_BEFORE_DELAY {
            tracing::warn!(%ip, "repeated failed authentication: answers to this address are slowed down");
        }
        (*count >= FAILURES_BEFORE_DELAY).then_some(FAILURE_DELAY)
    }
}

/// `Ok` if the token's role allows `action`, else the 403 that names the role.
fn allowed(token: &TokenRecord, action: Action) -> Result<(), ApiError> {
    if token.role.allows(action) {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorKind::Forbidden,
        format!(
            "the token's role ({}) may not {}",
            token.role.as_str(),
            describe(action)
        ),
    ))
}

fn describe(action: Action) -> &'static str {
    match action {
        Action::Read => "read",
        Action::InvocationStatus => "read invocations",
        Action::Invoke => "invoke functions",
        Action::Write => "change anything",
        Action::Manage => "manage tokens or read the audit trail",
        Action::Metrics => "read metrics",
    }
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(ErrorKind::Unauthorized, message)
}

/// What a request to the router needs: none for `/healthz`, the API document and the data
/// plane's custom routes (the invoker checks token-only functions).
fn needs(method: &http::Method, path: &str) -> Option<Action> {
    if path == "/metrics" {
        return Some(Action::Metrics);
    }
    let rest = path.strip_prefix("/api/v1")?;
    if rest == "/openapi.json" {
        return None;
    }
    (rest.is_empty() || rest.starts_with('/')).then(|| kumo_core::required(method.as_str(), rest))
}

/// The namespace a control-API request acts in (none: the whole server's, or not the API),
/// and its path as the client sent it, below `/api/v1`.
fn scope_of(request: &Request) -> (Option<String>, Option<String>) {
    if let Some(entered) = request.extensions().get::<crate::namespaces::Entered>() {
        return (Some(entered.namespace.clone()), Some(entered.path.clone()));
    }
    let Some(below) = request.uri().path().strip_prefix("/api/v1") else {
        return (None, None);
    };
    match kumo_core::api_scope(below) {
        kumo_core::ApiScope::Namespace { namespace, .. } => {
            (Some(namespace.to_string()), Some(below.to_string()))
        }
        _ => (None, Some(below.to_string())),
    }
}

/// What a request for a namespace that does not exist gets, or one the token may not enter.
pub(crate) fn no_namespace(namespace: &str) -> ApiError {
    ApiError::new(
        ErrorKind::NotFound,
        format!("namespace {namespace:?} not found"),
    )
}

/// The layer in front of the router: authenticates and authorises, and writes every change
/// to the control plane (and every refused attempt at one) to the audit trail.
pub(crate) async fn authorize(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(action) = needs(request.method(), request.uri().path()) else {
        return next.run(request).await;
    };
    if let Some(from) = request
        .extensions()
        .get::<crate::function_endpoint::FromFunction>()
        .cloned()
    {
        return from_function(&state, &from.0, request, next).await;
    }
    let peer = request.extensions().get::<Peer>().map(|p| p.0.ip());
    let (namespace, sent_path) = scope_of(&request);
    let change = sent_path
        .filter(|target| kumo_core::audited(request.method().as_str(), target))
        .map(|target| (request.method().to_string(), target));
    let auth = &state.invoker.auth;
    let missing = namespace
        .as_deref()
        .filter(|ns| !state.invoker.namespaces.exists(ns));
    let (token, response) = if auth.mode == AuthMode::None {
        match missing {
            Some(ns) => (None, no_namespace(ns).into_response()),
            None => (None, next.run(request).await),
        }
    } else {
        let outside = || no_namespace(namespace.as_deref().unwrap_or_default());
        // A namespace that does not exist is refused like one the token may not enter, and
        // only once the token is known to be valid.
        let checked = auth
            .check(
                request.headers(),
                action,
                namespace.as_deref(),
                outside,
                &state.store,
            )
            .and_then(|token| match missing {
                Some(ns) => Err((Some(token.name), no_namespace(ns))),
                None => Ok(token),
            });
        match checked {
            Ok(token) => {
                let name = token.name.clone();
                request.extensions_mut().insert(token);
                (Some(name), next.run(request).await)
            }
            Err((name, refused)) => {
                state.invoker.metrics.auth_refusal(refused.kind.code());
                if let Some(delay) = auth.hold_back(&refused, peer) {
                    tokio::time::sleep(delay).await;
                }
                // Read what the client is still sending (up to a bound), so it gets the
                // refusal instead of a connection closed under its upload.
                drain(request.into_body()).await;
                (name, refused.into_response())
            }
        }
    };
    if let Some((method, target)) = change {
        let entry = kumo_core::AuditEntry {
            at: kumo_core::now_ms(),
            token,
            method,
            target,
            namespace,
            source: peer.map(|ip| ip.to_string()),
            status: response.status().as_u16(),
        };
        audit(&state.store, &entry).await;
    }
    response
}

/// Writes `entry` to the audit trail; a failure is logged (the answer has been decided).
pub(crate) async fn audit(store: &kumo_store::Store, entry: &kumo_core::AuditEntry) {
    if let Err(e) = store.append_audit(entry).await {
        tracing::error!(
            "the audit trail missed {} {}: {e:#}",
            entry.method,
            entry.target
        );
    }
}

/// A request from a Lambda function's own endpoint: it may do what the function may
/// (invoke functions of its namespace, use the buckets its config grants), in its namespace,
/// with or without credentials and whatever the auth mode. Changes go to the audit trail as
/// the function's.
async fn from_function(state: &AppState, function: &str, request: Request, next: Next) -> Response {
    let (namespace, sent_path) = scope_of(&request);
    let own = kumo_core::namespace_of(function);
    let method = request.method().to_string();
    let rest = request
        .uri()
        .path()
        .strip_prefix("/api/v1")
        .map(str::to_string);
    let allowed = match (&namespace, &rest) {
        (Some(ns), _) if ns != own => Err(no_namespace(ns)),
        (_, None) => Err(ApiError::new(
            ErrorKind::Forbidden,
            "a function's endpoint serves kumo's API (/api/v1) and the Lambda API only",
        )),
        (_, Some(rest)) => match state.store.get_function(function).await {
            Ok(Some(record))
                if kumo_core::function_may(
                    &record.config.kv,
                    &record.config.objects,
                    &method,
                    rest,
                ) =>
            {
                Ok(())
            }
            Ok(_) => Err(ApiError::new(
                ErrorKind::Forbidden,
                format!(
                    "function {:?} may invoke functions and use the key-value and object buckets its config grants (kv, objects), not {method} {rest}",
                    kumo_core::split_key(function).1
                ),
            )),
            Err(e) => Err(e.into()),
        },
    };
    let change = sent_path.filter(|target| kumo_core::audited(&method, target));
    let response = match allowed {
        Ok(()) => next.run(request).await,
        Err(refused) => refused.into_response(),
    };
    if let Some(target) = change {
        let entry = kumo_core::AuditEntry {
            at: kumo_core::now_ms(),
            token: Some(format!("function:{function}")),
            method,
            target,
            namespace,
            source: None,
            status: response.status().as_u16(),
        };
        audit(&state.store, &entry).await;
    }
    response
}

/// Reads and drops what a refused client is still sending, up to [`DRAIN_BYTES`], so it gets
/// the refusal rather than a connection closed under its upload; nothing is kept.
pub(crate) async fn drain(body: axum::body::Body) {
    use http_body_util::BodyExt as _;
    let mut body = body;
    let mut seen = 0usize;
    while seen < DRAIN_BYTES
        && let Some(Ok(frame)) = body.frame().await
    {
        seen += frame.data_ref().map_or(0, |d| d.len());
    }
}

/// Writes a token's last use to the store (at most once a minute per token: the cache says
/// when), off the request's path.
fn note_use(store: &kumo_store::Store, name: &str, at: i64) {
    let (store, name) = (store.clone(), name.to_string());
    tokio::spawn(async move {
        if let Err(e) = store.token_used(&name, at).await {
            tracing::debug!("noting a token's use: {e:#}");
        }
    });
}

/// The first admin token's secret, given rather than made: for nodes of a cluster that share
/// no folder (a Kubernetes Secret, say). Used only while no token exists.
pub(crate) const ADMIN_TOKEN_ENV: &str = "KUMO_ADMIN_TOKEN";

/// Creates the first admin token when there is none, writes its secret to `path` (readable by
/// the owner only) and says where; the secret itself is never logged. With
/// `KUMO_ADMIN_TOKEN`, that is the secret, and no file is written.
pub(crate) async fn first_admin_token(
    state: &AppState,
    path: &std::path::Path,
) -> anyhow::Result<()> {
    let given = std::env::var(ADMIN_TOKEN_ENV)
        .ok()
        .filter(|s| !s.is_empty());
    if given
        .as_deref()
        .is_some_and(|s| !kumo_core::is_token_secret(s))
    {
        anyhow::bail!(
            "{ADMIN_TOKEN_ENV} is not a kumo token secret: `kumo_` and 64 lower-case hex digits \
             (e.g. `echo kumo_$(openssl rand -hex 32)`)"
        );
    }
    if state.invoker.auth.mode != AuthMode::Token || !state.store.list_tokens().await?.is_empty() {
        return Ok(());
    }
    let secret = match &given {
        Some(secret) => secret.clone(),
        None => new_secret()?,
    };
    let token = StoredToken {
        record: TokenRecord {
            name: "admin".to_string(),
            role: Role::Admin,
            namespace: None,
            created_at: kumo_core::now_ms(),
            expires_at: None,
            last_used_at: None,
            access_key_id: None,
        },
        secret_hash: secret_hash(&secret),
        sealed_secret: None,
    };
    if given.is_some() {
        if state.store.create_token(&token).await? {
            tracing::info!("created the first admin token from {ADMIN_TOKEN_ENV}");
        }
        return Ok(());
    }
    // The file is put in place only once the token is stored, and only by the node that
    // stored it (several may start at once on one database).
    let temp = write_private_temp(path, &format!("{secret}\n"))?;
    let created = state.store.create_token(&token).await;
    if !matches!(created, Ok(true)) {
        let _ = std::fs::remove_file(&temp);
        return created.map(|_| ());
    }
    std::fs::rename(&temp, path)
        .map_err(|e| anyhow::anyhow!("writing the first admin token to {}: {e}", path.display()))?;
    tracing::info!(
        file = %path.display(),
        "created the first admin token; its secret is in the file (readable by this user only)"
    );
    Ok(())
}

/// Writes `text` to a new temporary file beside `path` that only its owner may read; the
/// caller puts it in place ([`std::fs::rename`], or [`publish_private`]).
fn write_private_temp(path: &std::path::Path, text: &str) -> anyhow::Result<std::path::PathBuf> {
    use anyhow::Context as _;
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut temp = path.as_os_str().to_owned();
    temp.push(format!(".tmp-{}", uuid::Uuid::now_v7().simple()));
    let temp = std::path::PathBuf::from(temp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .with_context(|| format!("creating {}", temp.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", temp.display()))?;
    Ok(temp)
}

/// Creates `path` holding `text`, readable by its owner only, unless it exists: false then,
/// and the file is left as it is. Whole or not at all, even when several nodes sharing the
/// data folder race to create it.
pub(crate) fn publish_private(path: &std::path::Path, text: &str) -> anyhow::Result<bool> {
    use anyhow::Context as _;
    let temp = write_private_temp(path, text)?;
    let linked = std::fs::hard_link(&temp, path);
    let _ = std::fs::remove_file(&temp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}
