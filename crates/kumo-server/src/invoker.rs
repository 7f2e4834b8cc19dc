//! The Invoker: the one way into a function. Every trigger (gateway route, invoke API) builds an
//! [`InvocationRequest`] and calls [`Invoker::invoke`], which resolves, admits, executes and
//! records. Concurrency limits are decided by its [`Admission`], memory and time limits by the
//! runtime; records, metering and logs are made here and nowhere else.

use crate::admission::Admission;
use crate::aliases::AliasTable;
use crate::error::ApiError;
use crate::loaded::{Code, Entry, LoadedFunctions, entry_key};
use crate::metrics::Metrics;
use crate::recorder::Recorder;
use crate::trace::{TraceContext, Tracing};
use bytes::Bytes;
use kumo_core::{
    ErrorKind, FunctionRecord, InvocationRecord, Outcome, OutputLine, Qualifier, RanVersion,
    Source, Target, Trigger, billed_ms, gb_seconds,
};
use kumo_runtime::{Invocation, KeyValue, KvAccess, Loaded, Response, Runtime};
use kumo_store::prelude::*;
use kumo_store::{Blobs, Store};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct InvocationRequest {
    pub method: http::Method,
    /// Path and query the guest sees.
    pub path_and_query: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    /// Environment variables for this invocation only, besides the function's (a command
    /// has no headers: an event's id reaches it this way).
    pub env: Vec<(String, String)>,
    /// Function calls between the outside request and this one (0: not called by a function).
    pub call_depth: u32,
    /// How it came in (the record's `trigger`).
    pub source: Source,
    /// The client's address, when it came over HTTP with credentials (failed token checks
    /// from one address are slowed down).
    pub peer: Option<std::net::IpAddr>,
    /// Give the invocation's log lines back in [`Invoked::logs`] (the Lambda API's
    /// `X-Amz-Log-Type: Tail`); they go to the records either way.
    pub tail_logs: bool,
}

/// The deepest chain of function-to-function calls (A calls B calls C ... is depth 2 at C);
/// deeper calls fail with `call_depth_exceeded`, which stops call loops.
pub(crate) const MAX_CALL_DEPTH: u32 = 8;

pub struct Invoked {
    pub request_id: String,
    /// The function had to be loaded for this invocation (or, for a Lambda function, an
    /// execution environment started).
    pub cold: bool,
    pub result: Result<Response, ApiError>,
    /// The log lines, when the request asked for them (`tail_logs`).
    pub logs: Option<Vec<String>>,
    /// A Lambda function's own error document (what its runtime posted to `/error`), when
    /// the result is that error.
    pub error_document: Option<String>,
}

pub struct Invoker {
    store: Store,
    blobs: Blobs,
    runtime: Arc<Runtime>,
    lambda: Arc<kumo_lambda::LambdaRuntime>,
    recorder: Recorder,
    max_response_bytes: usize,
    /// The key-value store guests reach (the same as `store`'s).
    kv: Arc<dyn KeyValue>,
    /// Whether an invocation may start now (concurrency limits, reserves, async shares).
    pub(crate) admission: Admission,
    /// Cache of the store: the functions in memory.
    loaded: LoadedFunctions,
    /// Cache of the store: every alias.
    pub aliases: AliasTable,
    pub metrics: Metrics,
    /// Span export (OTLP), if configured.
    pub tracing: Tracing,
    /// Tokens, and who may do what.
    pub(crate) auth: crate::auth::Auth,
    /// Cache of the store: the namespaces and their quotas.
    pub(crate) namespaces: Arc<crate::namespaces::Namespaces>,
    /// Seals and opens function secrets.
    pub(crate) sealer: crate::secrets::Sealer,
    /// Code (function name, sha256) asking for instance reuse that failed a second request
    /// without answering: served with fresh instances until a restart (redeploying the same
    /// code keeps it so; new code gets a new trial).
    reuse_fallbacks: Mutex<HashSet<(String, String)>>,
}

impl Invoker {
    // Each part is built once, in `Server::bind`; a struct of them would only rename this.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        store: Store,
        kv: Arc<dyn KeyValue>,
        blobs: Blobs,
        runtime: Arc<Runtime>,
        lambda: Arc<kumo_lambda::LambdaRuntime>,
        recorder: Recorder,
        max_response_bytes: usize,
        admission: Admission,
        tracing: Tracing,
        auth: crate::auth::Auth,
        sealer: crate::secrets::Sealer,
        namespaces: Arc<crate::namespaces::Namespaces>,
    ) -> Self {
        Self {
            kv,
            tracing,
            auth,
            namespaces,
            sealer,
            store,
            blobs,
            runtime,
            lambda,
            recorder,
            max_response_bytes,
            admission,
            loaded: LoadedFunctions::default(),
            aliases: AliasTable::default(),
            metrics: Metrics::default(),
            reuse_fallbacks: Mutex::default(),
        }
    }

    pub async fn invoke(&self, target: &str, mut request: InvocationRequest) -> Invoked {
        let request_id = uuid::Uuid::now_v7().to_string();
        let trace = TraceContext::continue_or_start(
            request
                .headers
                .get("traceparent")
                .and_then(|v| v.to_str().ok()),
        );
        // This invocation's own span is the parent of whatever the guest causes: the host
        // carries it into calls, object writes and events. The guest is shown it only when
        // someone outside kumo takes part in the trace (the request carried one, or spans are
        // exported): a header costs a wasi:http guest ~2 µs to receive and parse, 9% of a
        // hello request, and a trace kumo started is on the records and logs anyway.
        let traceparent = http::HeaderValue::from_str(&trace.traceparent()).ok();
        match &traceparent {
            Some(value) if trace.parent_span_id.is_some() || self.tracing.exports() => {
                request.headers.insert("traceparent", value.clone());
            }
            _ => {
                request.headers.remove("traceparent");
            }
        }
        if request.call_depth > MAX_CALL_DEPTH {
            let error = ApiError::new(
                ErrorKind::CallDepthExceeded,
                format!(
                    "calling {target} would nest function calls {} deep (the limit is {MAX_CALL_DEPTH}); is there a call loop?",
                    request.call_depth
                ),
            );
            return Invoked {
                request_id,
                cold: false,
                result: Err(error),
                logs: None,
                error_document: None,
            };
        }
        let resolved = self
            .resolve(target, |record| {
                self.caller_may_invoke(record, &mut request)
            })
            .await;
        match resolved {
            Ok((entry, init)) => {
                self.run(&entry, request_id, &trace, traceparent, init, request)
                    .await
            }
            Err(e) => {
                // Repeated failed tokens from one address are answered late, as on the API.
                if let Some(delay) = self.auth.hold_back(&e, request.peer) {
                    tokio::time::sleep(delay).await;
                }
                Invoked {
                    request_id,
                    cold: false,
                    result: Err(e),
                    logs: None,
                    error_document: None,
                }
            }
        }
    }

    /// A function with `auth = "token"` called over HTTP needs a token that may invoke; the
    /// token is taken off the request, so the guest never sees it. Other triggers were
    /// checked where they came in (the invoke API) or come from kumo itself.
    fn caller_may_invoke(
        &self,
        record: &FunctionRecord,
        request: &mut InvocationRequest,
    ) -> Result<(), ApiError> {
        if request.source != Source::Http
            || record.config.auth != kumo_core::FunctionAuth::Token
            || self.auth.mode() == crate::auth::AuthMode::None
        {
            return Ok(());
        }
        let namespace = kumo_core::namespace_of(&record.name);
        let outside = || ApiError::not_found(&kumo_core::url_name(&record.name));
        self.auth
            .check(
                &request.headers,
                kumo_core::Action::Invoke,
                Some(namespace),
                outside,
                &self.store,
            )
            .map_err(|(_, refused)| {
                self.metrics.auth_refusal(refused.kind.code());
                refused
            })?;
        request.headers.remove(http::header::AUTHORIZATION);
        Ok(())
    }

    /// The record a target runs (`$LATEST`'s, or a version's), from memory when it is loaded
    /// (no code is loaded).
    pub async fn function(&self, target: &str) -> Result<FunctionRecord, ApiError> {
        let (name, version) = self.version_of(target)?;
        if let Some(entry) = self.loaded.get(&entry_key(&name, version)) {
            return Ok(entry.record.clone());
        }
        self.stored(&name, version).await
    }

    /// What `target` runs now: `NAME` or `NAME:N`, an alias's weighted pick made here, once.
    /// A caller that reads the settings of what it invokes (retries, destinations) passes
    /// this to [`Self::function`] and [`Self::invoke`], so both see the same version.
    pub fn pick(&self, target: &str) -> Result<String, ApiError> {
        let (name, version) = self.version_of(target)?;
        Ok(entry_key(&name, version))
    }

    /// The function and version a target names (None: `$LATEST`); an alias picks one of its
    /// versions by weight.
    fn version_of(&self, target: &str) -> Result<(String, Option<u32>), ApiError> {
        let parsed = Target::parse(target).map_err(|_| ApiError::not_found(target))?;
        let version = match parsed.qualifier.as_deref().map(Qualifier::parse) {
            None | Some(Ok(Qualifier::Latest)) => None,
            Some(Ok(Qualifier::Version(n))) => Some(n),
            Some(Ok(Qualifier::Alias(alias))) => match self.aliases.pick(&parsed.name, &alias) {
                Some(n) => Some(n),
                None => {
                    return Err(ApiError::new(
                        ErrorKind::FunctionNotFound,
                        format!("function {:?} has no alias {alias:?}", parsed.name),
                    ));
                }
            },
            Some(Err(why)) => return Err(ApiError::new(ErrorKind::FunctionNotFound, why)),
        };
        Ok((parsed.name, version))
    }

    /// Marks records whose code the server serves with fresh instances although they ask for
    /// reuse (it could not serve twice).
    pub fn mark_reuse_fallbacks<'a>(
        &self,
        records: impl IntoIterator<Item = &'a mut FunctionRecord>,
    ) {
        let fallbacks = self.reuse_fallbacks();
        if fallbacks.is_empty() {
            return;
        }
        for record in records {
            record.reuse_fell_back =
                fallbacks.contains(&(record.name.clone(), record.code_sha256.clone()));
        }
    }

    fn reuse_fallbacks(&self) -> std::sync::MutexGuard<'_, HashSet<(String, String)>> {
        // The set is consistent between statements, so a poisoned lock is still usable.
        self.reuse_fallbacks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// An instance of `entry` failed its second request without answering; the runtime has
    /// turned its pool to fresh instances, and later loads of this code get none.
    fn reuse_fell_back(&self, entry: &Entry) {
        let record = &entry.record;
        let new = self
            .reuse_fallbacks()
            .insert((record.name.clone(), record.code_sha256.clone()));
        if new {
            tracing::warn!(
                function = %entry.key,
                "an instance failed its second request without answering; this code cannot \
                 serve twice, so it is served with fresh instances from now on (instances = \"reuse\" ignored)"
            );
            self.metrics.reuse_fell_back(&record.name);
        }
    }

    /// `$LATEST`'s record or a version's, from the store.
    async fn stored(&self, name: &str, version: Option<u32>) -> Result<FunctionRecord, ApiError> {
        match version {
            None => self
                .store
                .get_function(name)
                .await?
                .ok_or_else(|| ApiError::not_found(name)),
            Some(n) => match self.store.get_version(name, n).await? {
                Some(published) => Ok(published.as_function()),
                None => Err(ApiError::new(
                    ErrorKind::FunctionNotFound,
                    format!("function {name:?} has no version {n}"),
                )),
            },
        }
    }

    /// The values of the secrets `record` lists, opened, as environment variables. A secret
    /// that is gone (or sealed under another key) fails the invocation and names it.
    async fn secret_env(&self, record: &FunctionRecord) -> Result<Vec<(String, String)>, ApiError> {
        let mut env = Vec::with_capacity(record.config.secrets.len());
        let namespace = kumo_core::namespace_of(&record.name);
        for name in &record.config.secrets {
            // The function's own namespace's secret of that name.
            let key = kumo_core::scoped(namespace, name);
            let sealed = self.store.get_secret(&key).await?;
            let value = sealed
                .and_then(|sealed| self.sealer.open(&key, &sealed))
                .and_then(|value| String::from_utf8(value).ok())
                .ok_or_else(|| {
                    ApiError::new(
                        ErrorKind::FunctionError,
                        format!(
                            "function {:?} needs secret {name:?}, which is not set (or was sealed under another key)",
                            record.name
                        ),
                    )
                })?;
            env.push((name.clone(), value));
        }
        Ok(env)
    }

    /// Loads `record`'s code (from the compile cache) and caches it, with its secrets.
    async fn load(
        &self,
        mut record: FunctionRecord,
        version: Option<u32>,
        generation: u64,
        secrets: Vec<(String, String)>,
    ) -> anyhow::Result<Arc<Entry>> {
        let code_path = self.blobs.local_path(&record.code_sha256).await?;
        let sha = record.code_sha256.clone();
        let code = match record.config.runtime {
            Some(runtime) => {
                let lambda = self.lambda.clone();
                let package = tokio::task::spawn_blocking(move || {
                    lambda
                        .load(&sha, &code_path, runtime)
                        .map_err(|e| anyhow::anyhow!("loading the package: {e}"))
                })
                .await??;
                Code::Lambda(Box::new(
                    self.lambda_pool(&record, runtime, version, package, &secrets),
                ))
            }
            None => {
                let runtime = self.runtime.clone();
                // Code that could not serve twice gets no warm instances (Entry::new reads the
                // mark).
                self.mark_reuse_fallbacks([&mut record]);
                Code::Wasm(
                    tokio::task::spawn_blocking(move || runtime.load(&sha, &code_path)).await??,
                )
            }
        };
        Ok(self.loaded.insert(
            Entry::new(
                record,
                version,
                code,
                secrets,
                &self.runtime,
                &self.metrics,
                &self.admission,
            ),
            generation,
        ))
    }

    /// A Lambda function's environments, made from its unpacked `package`.
    fn lambda_pool(
        &self,
        record: &FunctionRecord,
        runtime: kumo_core::LambdaRuntimeName,
        version: Option<u32>,
        package: std::path::PathBuf,
        secrets: &[(String, String)],
    ) -> kumo_lambda::Pool {
        let env = record
            .config
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .chain(secrets.iter().cloned())
            .collect();
        kumo_lambda::Pool::new(
            self.lambda.clone(),
            kumo_lambda::Function {
                name: kumo_core::url_name(&record.name),
                identity: record.name.clone(),
                version: version.map_or_else(|| "$LATEST".to_string(), |n| n.to_string()),
                memory_mb: record.config.memory_mb,
                runtime,
                handler: record.config.handler.clone(),
                package,
                env,
                region: kumo_lambda::api::REGION.to_string(),
                tmp_bytes: record.config.ephemeral_storage_bytes(),
                egress: (!record.config.allow_outbound.is_empty()).then(|| kumo_lambda::Egress {
                    grants: kumo_runtime::OutboundGrants::new(
                        record.config.allow_outbound.clone().into(),
                    ),
                    breakers: self.runtime.breakers(),
                }),
            },
        )
    }

    /// Loads a function with provisioned concurrency now, so no invocation of it is cold (a
    /// Lambda function's environments are started and initialised too).
    pub async fn preload(&self, record: FunctionRecord) -> anyhow::Result<()> {
        let generation = self.loaded.generation();
        let secrets = self
            .secret_env(&record)
            .await
            .map_err(|e| anyhow::anyhow!(e.message))?;
        let provisioned = record.config.provisioned_concurrency.unwrap_or(0);
        let entry = self.load(record, None, generation, secrets).await?;
        if let Code::Lambda(pool) = &entry.code {
            for _ in pool.idle_count()..provisioned as usize {
                // A function whose init fails stays deployed (its invocations report the
                // error), and never keeps the server from starting.
                if let Err(e) = pool.prewarm().await {
                    tracing::warn!(function = %entry.key, "starting a provisioned execution environment: {e}");
                    break;
                }
            }
        }
        Ok(())
    }

    /// Replaces what is in memory after a deploy: nothing (lazy loading), or, for a function
    /// with provisioned concurrency, the code the deploy just prepared (a Lambda function's
    /// is loaded by [`Self::preload`]).
    pub fn deployed(&self, mut record: FunctionRecord, prepared: Option<Loaded>) {
        self.mark_reuse_fallbacks([&mut record]);
        self.loaded.forget(&record.name);
        // A function with secrets is loaded when first invoked (its secrets are read then).
        if let Some(prepared) = prepared
            && record.config.provisioned_concurrency.is_some()
            && record.config.secrets.is_empty()
        {
            let generation = self.loaded.generation();
            self.loaded.insert(
                Entry::new(
                    record,
                    None,
                    Code::Wasm(prepared),
                    Vec::new(),
                    &self.runtime,
                    &self.metrics,
                    &self.admission,
                ),
                generation,
            );
        }
    }

    /// Drops the function (`$LATEST` and its versions) from memory: deleted.
    pub fn forget(&self, name: &str) {
        self.loaded.forget_function(name);
    }

    /// Drops from memory every loaded function (any version) that gets the secret stored
    /// under `key`: its next invocation reads the secret's value anew.
    pub(crate) fn forget_users_of_secret(&self, key: &str) {
        let (namespace, name) = kumo_core::split_key(key);
        self.loaded.forget_where(|e| {
            kumo_core::in_namespace(&e.record.name, namespace)
                && e.record.config.secrets.iter().any(|s| s == name)
        });
    }

    /// Drops from memory what another node changed: a `$LATEST` that is no longer the
    /// stored one (redeployed, reconfigured or deleted) and a version no longer published.
    pub(crate) async fn forget_changed(
        &self,
        functions: &[FunctionRecord],
        store: &Store,
    ) -> anyhow::Result<()> {
        let latest: HashMap<&str, i64> = functions
            .iter()
            .map(|f| (f.name.as_str(), f.updated_at))
            .collect();
        let mut unpublished = HashSet::new();
        for (name, version) in self.loaded.versions() {
            if store.get_version(&name, version).await?.is_none() {
                unpublished.insert(entry_key(&name, Some(version)));
            }
        }
        self.loaded.forget_where(|e| match e.version {
            None => latest.get(e.record.name.as_str()) != Some(&e.record.updated_at),
            Some(_) => unpublished.contains(&e.key),
        });
        Ok(())
    }

    /// Drops from memory every loaded function that reads secrets (one changed elsewhere).
    pub(crate) fn forget_secret_users(&self) {
        self.loaded
            .forget_where(|e| !e.record.config.secrets.is_empty());
    }

    /// The keys of the functions and versions in memory.
    pub(crate) fn loaded_keys(&self) -> Vec<String> {
        self.loaded.keys()
    }

    /// Drops one version from memory: deleted.
    pub fn forget_version(&self, name: &str, version: u32) {
        self.loaded.forget(&entry_key(name, Some(version)));
    }

    pub fn loaded_count(&self) -> usize {
        self.loaded.len()
    }

    /// Scale to zero: unloads functions idle for `keep_alive`.
    pub fn unload_idle(&self, keep_alive: Duration) -> usize {
        self.loaded.unload_idle(keep_alive)
    }

    /// The function to run, loading it when it is not in memory (a cold start, whose load
    /// time is returned).
    /// What `target` runs, loaded now if it is not in memory (the load time is returned).
    /// `admit` sees its record first: a caller it refuses causes no load.
    async fn resolve(
        &self,
        target: &str,
        admit: impl FnOnce(&FunctionRecord) -> Result<(), ApiError>,
    ) -> Result<(Arc<Entry>, Option<Duration>), ApiError> {
        let (name, version) = self.version_of(target)?;
        if let Some(entry) = self.loaded.get(&entry_key(&name, version)) {
            admit(&entry.record)?;
            return Ok((entry, None));
        }
        let load_start = Instant::now();
        let generation = self.loaded.generation();
        let record = self.stored(&name, version).await?;
        admit(&record)?;
        let secrets = self.secret_env(&record).await?;
        let entry = self.load(record, version, generation, secrets).await?;
        Ok((entry, Some(load_start.elapsed())))
    }

    async fn run(
        &self,
        entry: &Entry,
        request_id: String,
        trace: &TraceContext,
        traceparent: Option<http::HeaderValue>,
        init: Option<Duration>,
        request: InvocationRequest,
    ) -> Invoked {
        let refused = |request_id: String, error: ApiError, cold: bool| Invoked {
            request_id,
            cold,
            result: Err(error),
            logs: None,
            error_document: None,
        };
        let mut start = InvocationStart {
            entry,
            request_id: &request_id,
            trace,
            source: request.source,
            init,
            started_at: kumo_core::now_ms(),
            clock: Instant::now(),
        };
        if self.recorder.is_full() {
            // Its record could not be kept: refused rather than run unmetered.
            self.metrics.unrecorded_refusal();
            let unrecorded = ApiError::new(
                ErrorKind::Unavailable,
                "invocation records cannot be stored now (is the disk full?); new invocations are refused until they can",
            );
            return refused(request_id.clone(), unrecorded, false);
        }
        // A Lambda invocation that finds an idle environment takes it now: the environment
        // holds the memory it needs.
        let warm = match &entry.code {
            Code::Lambda(pool) => pool.check_out(),
            Code::Wasm(_) => None,
        };
        let mut admitted = match self.admit(entry, request.source, warm.is_some()) {
            Ok(admitted) => admitted,
            Err(error) => {
                if let (Some(warm), Code::Lambda(pool)) = (warm, &entry.code) {
                    pool.check_in(warm);
                }
                match request.source {
                    // A deferred event is no invocation: it goes back to the queue and runs
                    // later, so only the throttle is counted.
                    kumo_core::Source::Event(_) => self.metrics.throttled(&entry.record.name),
                    _ => self.record(&start, Err(&error), Vec::new()).await,
                }
                let cold = start.init.is_some();
                return refused(request_id.clone(), error, cold);
            }
        };
        let running = entry.metrics.running();
        let tail_logs = request.tail_logs;
        let (result, output, error_document) = match &entry.code {
            Code::Wasm(loaded) => {
                let (result, output) = self.run_wasm(entry, loaded, traceparent, request).await;
                (result, output, None)
            }
            Code::Lambda(pool) => {
                let placement = match warm {
                    Some(warm) => Placement::Warm(warm),
                    // The new environment keeps the invocation's memory while it waits idle.
                    None => Placement::New(
                        admitted
                            .keep_memory()
                            .map(|slot| Box::new(slot) as Box<dyn Send + Sync>),
                    ),
                };
                let ran = self
                    .run_lambda(entry, pool, &request_id, trace, request, placement)
                    .await;
                // A new execution environment is a cold start, whether or not the function
                // was in memory.
                start.init = ran.init.or(start.init);
                (ran.result, ran.output, ran.error_document)
            }
        };
        drop((admitted, running));
        let logs = tail_logs.then(|| output.iter().map(|l| l.line.clone()).collect());
        self.record(&start, result.as_ref(), output).await;
        let cold = start.init.is_some();
        Invoked {
            request_id,
            cold,
            result,
            logs,
            error_document,
        }
    }

    /// Admits an invocation of `entry`. When the memory budget is what is short, idle
    /// Lambda environments (which hold their functions' memory while they wait) are stopped
    /// to make room, and admission is tried once more.
    fn admit(
        &self,
        entry: &Entry,
        source: Source,
        memory_held: bool,
    ) -> Result<crate::admission::Admitted, ApiError> {
        let refused = match self.admission.admit(entry, source, memory_held) {
            Ok(admitted) => return Ok(admitted),
            Err(refused) => refused,
        };
        let memory = self.admission.memory();
        let wanted = entry.record.config.memory_mb as usize;
        if !memory_held
            && memory.in_use() + wanted > memory.limit()
            && self.loaded.stop_idle_environments() > 0
        {
            return self.admission.admit(entry, source, memory_held);
        }
        Err(refused)
    }

    async fn run_wasm(
        &self,
        entry: &Entry,
        loaded: &Loaded,
        traceparent: Option<http::HeaderValue>,
        request: InvocationRequest,
    ) -> (Result<Response, ApiError>, Vec<OutputLine>) {
        let config = &entry.record.config;
        let invocation = Invocation {
            method: request.method,
            path_and_query: request.path_and_query,
            headers: request.headers,
            body: request.body,
            traceparent,
            env: entry.env.clone(),
            invocation_env: request.env,
            memory_bytes: config.memory_bytes(),
            timeout: config.timeout,
            max_response_bytes: self.max_response_bytes,
            allow_outbound: entry.allow_outbound.clone(),
            namespace: entry.namespace.clone(),
            kv: KvAccess {
                store: Some(self.kv.clone()),
                buckets: entry.kv_buckets.clone(),
            },
            objects: entry.object_buckets.clone(),
            call_depth: request.call_depth,
        };
        let execution = self
            .runtime
            .execute(loaded, entry.warm.as_ref(), invocation)
            .await;
        if execution.fell_back {
            self.reuse_fell_back(entry);
        }
        let result = execution
            .result
            .map_err(|f| ApiError::new(f.kind, f.message));
        let output = execution
            .logs
            .into_iter()
            .map(|l| OutputLine {
                stream: l.stream,
                line: l.line,
            })
            .collect();
        (result, output)
    }

    /// Runs an invocation in one of a Lambda function's execution environments. An HTTP
    /// request (or a function's call) reaches it as an API Gateway 2.0 event and its answer
    /// is mapped back to a response; other triggers pass the payload as it is, and the answer
    /// is the JSON response body. Returns the init time of an environment it started.
    async fn run_lambda(
        &self,
        entry: &Entry,
        pool: &kumo_lambda::Pool,
        request_id: &str,
        trace: &TraceContext,
        request: InvocationRequest,
        placement: Placement,
    ) -> LambdaRun {
        let (warm, memory) = match placement {
            Placement::Warm(warm) => (Some(warm), None),
            Placement::New(memory) => (None, memory),
        };
        use kumo_lambda::events;
        let http = matches!(request.source, Source::Http | Source::Call);
        let payload = if http {
            let event = events::http_event(&events::HttpRequest {
                method: &request.method,
                path_and_query: &request.path_and_query,
                headers: &request.headers,
                body: &request.body,
                source_ip: request.peer,
                request_id,
                time_ms: kumo_core::now_ms(),
            });
            bytes::Bytes::from(event.to_string())
        } else if let Source::Event(Trigger::Schedule | Trigger::Topic | Trigger::Storage) =
            request.source
        {
            // What kumo queued as a CloudEvent arrives as AWS's service would send it.
            match events::aws_event(&request.body) {
                Some(event) => bytes::Bytes::from(event.to_string()),
                None => request.body,
            }
        } else if request.body.is_empty() {
            // An invocation without a payload is the empty object, as Lambda sends it.
            bytes::Bytes::from_static(b"{}")
        } else {
            request.body
        };
        let outcome = pool
            .invoke(
                kumo_lambda::Invocation {
                    request_id: request_id.to_string(),
                    payload,
                    timeout: entry.record.config.timeout,
                    trace_id: Some(trace.xray()),
                    // Only the Lambda API sets it (the invoke API passes no other header).
                    client_context: (request.source == Source::Invoke)
                        .then(|| request.headers.get(kumo_lambda::api::CLIENT_CONTEXT_HEADER))
                        .flatten()
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string),
                    memory,
                },
                warm,
            )
            .await;
        let mut error_document = None;
        let result = match outcome.result {
            Ok(body) if body.len() > self.max_response_bytes => Err(ApiError::new(
                ErrorKind::FunctionError,
                format!(
                    "the function's response is more than the server's limit of {} bytes",
                    self.max_response_bytes
                ),
            )),
            Ok(body) if http => events::http_response(&body)
                .map(|r| Response {
                    status: r.status,
                    headers: r.headers,
                    body: r.body,
                })
                .map_err(|e| {
                    ApiError::new(
                        ErrorKind::FunctionError,
                        format!("the function's answer is not a valid HTTP response: {e}"),
                    )
                }),
            Ok(body) => {
                let mut headers = http::HeaderMap::new();
                headers.insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                Ok(Response {
                    status: http::StatusCode::OK,
                    headers,
                    body,
                })
            }
            Err(failure) => {
                error_document = failure.detail;
                Err(ApiError::new(failure.kind, failure.message))
            }
        };
        let output = outcome
            .logs
            .into_iter()
            .map(|line| OutputLine {
                stream: kumo_core::LogStream::Stdout,
                line,
            })
            .collect();
        LambdaRun {
            result,
            output,
            init: outcome.init,
            error_document,
        }
    }

    /// The invocation's end, as one record (with its log lines) for the recorder.
    async fn record(
        &self,
        start: &InvocationStart<'_>,
        result: Result<&Response, &ApiError>,
        output: Vec<OutputLine>,
    ) {
        let elapsed = start.clock.elapsed();
        let (outcome, status, error_code, error_message) = match result {
            Ok(response) => (kumo_core::Outcome::Ok, response.status.as_u16(), None, None),
            Err(e) => (
                e.kind.outcome(),
                e.kind.status(),
                Some(e.kind),
                Some(e.message.clone()),
            ),
        };
        let memory_mb = start.entry.record.config.memory_mb;
        // A throttled invocation never ran: nothing to bill.
        let billed = match outcome {
            Outcome::Throttled => 0,
            _ => billed_ms(elapsed),
        };
        let record = InvocationRecord {
            request_id: start.request_id.to_string(),
            function: start.entry.record.name.clone(),
            started_at: start.started_at,
            duration_ms: elapsed.as_secs_f64() * 1000.0,
            billed_ms: billed,
            memory_mb,
            outcome,
            error_code,
            error_message,
            status,
            cold: start.init.is_some(),
            init_ms: start.init.map(|d| d.as_secs_f64() * 1000.0),
            version: RanVersion::of(start.entry.version),
            trigger: start.source,
            gb_seconds: gb_seconds(memory_mb, billed),
            trace_id: start.trace.trace_id.clone(),
        };
        self.metrics.observe(&record, &start.entry.metrics);
        self.tracing.export(start.trace, &record);
        self.recorder.record(record, output).await;
    }
}

/// Where a Lambda invocation runs: an idle environment checked out for it (which already
/// holds the function's memory), or a new one, which keeps the invocation's share of the
/// memory budget for as long as it lives.
enum Placement {
    Warm(kumo_lambda::Warm),
    New(Option<Box<dyn Send + Sync>>),
}

/// How an invocation in a Lambda execution environment went.
struct LambdaRun {
    result: Result<Response, ApiError>,
    output: Vec<OutputLine>,
    /// The init time of an environment it started.
    init: Option<Duration>,
    /// The runtime's error document, when the function failed.
    error_document: Option<String>,
}

/// What is known about one invocation from its admission on.
struct InvocationStart<'a> {
    entry: &'a Entry,
    request_id: &'a str,
    trace: &'a TraceContext,
    source: Source,
    /// The load time, when this invocation was a cold start.
    init: Option<Duration>,
    /// Wall clock, for the record; `clock` measures the duration.
    started_at: i64,
    clock: Instant,
}
