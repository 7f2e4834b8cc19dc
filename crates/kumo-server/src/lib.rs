//! kumo's server: one axum listener for the data plane (`/fn/...` and custom routes) and the
//! control API (`/api/v1/...`), both calling the one [`Invoker`].

mod admission;
mod aliases;
mod api;
mod auth;
mod calls;
mod cluster;
mod connections;
mod disk;
mod error;
mod events;
mod frontend;
mod function_endpoint;
mod gateway;
mod guest_kv;
mod headers;
mod invoker;
mod loaded;
mod machine;
mod metrics;
mod namespaces;
mod objects;
mod quotas;
mod recorder;
mod routes;
mod secrets;
mod slots;
mod tls;
mod trace;
mod workflows;

pub use auth::AuthMode;
pub use connections::ConnectionLimits;
pub use events::AsyncConfig;
pub use invoker::{InvocationRequest, Invoked, Invoker};
pub use secrets::{SECRET_KEY_ENV, SECRET_KEY_FILE};
pub use tls::TlsFiles;

use anyhow::Context as _;
use axum::Router;
use events::Events;
use events::scheduler::Schedules;
use events::topics::Subscriptions;
use frontend::{Frontend, FunctionHandler};
pub use kumo_runtime::{Allocator, BreakerConfig};
use kumo_runtime::{Runtime, RuntimeConfig};
use kumo_store::prelude::*;
use kumo_store::{Blobs, RecordWriter, Store};
use recorder::Recorder;
use routes::RouteTable;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Mutex, watch};

/// Default limit of request and response bodies (Lambda's synchronous payload limit).
pub const DEFAULT_MAX_BODY_BYTES: usize = 6 * 1024 * 1024;
/// Invocations running at once across all functions, by default.
pub const DEFAULT_MAX_CONCURRENCY: usize = 1000;
/// How long an idle function stays loaded by default.
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(10 * 60);
/// Percent of the server's slots one function may hold by default.
pub const DEFAULT_FUNCTION_SHARE_PERCENT: u8 = 50;
/// Invocation records held in memory at most while the database cannot take them.
pub const DEFAULT_MAX_PENDING_RECORDS: usize = 10_000;
/// The file in the data directory that holds the first admin token's secret (mode 0600).
/// Every control-API path below `/api/v1` (the router is built from this table).
pub use api::PATHS as API_PATHS;
pub const ADMIN_TOKEN_FILE: &str = "admin-token";
/// Largest code upload accepted by a deploy.
pub const MAX_CODE_BYTES: usize = 100 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: String,
    pub data_dir: PathBuf,
    /// Limit of invocation request and response bodies.
    pub max_body_bytes: usize,
    /// Invocations running at once across all functions.
    pub max_concurrency: usize,
    /// A function not invoked for this long is unloaded from memory (scale to zero).
    pub keep_alive: Duration,
    /// How wasm instances get their memory (pooling unless the machine cannot).
    pub allocator: Allocator,
    /// Asynchronous invocations: workers, retries, the share kept for sync requests.
    pub async_config: AsyncConfig,
    /// Circuit breakers of guests' outbound HTTP destinations.
    pub breaker: BreakerConfig,
    /// The largest object the object storage accepts.
    pub max_object_bytes: u64,
    /// What usage costs (`/api/v1/usage`).
    pub prices: kumo_core::Prices,
    /// Invocation records, logs and finished events older than this are deleted.
    pub retention: Duration,
    /// Memory the invocations running at once may ask for in total, in bytes; `None`: the
    /// machine's (or its cgroup's) less headroom.
    pub max_memory: Option<u64>,
    /// Percent of the server's shared slots one function without a `max_concurrency` may hold.
    pub function_share_percent: u8,
    /// Below this many free bytes in the data directory new data is refused (507).
    pub min_free_disk: u64,
    /// Invocation records held in memory while the database refuses them; past it new
    /// invocations are refused (503).
    pub max_pending_records: usize,
    pub connections: ConnectionLimits,
    /// Whether requests need tokens (`None` only on loopback listeners).
    pub auth: AuthMode,
    /// A second address serving only `/metrics`, without a token (for a scraper).
    pub metrics_listen: Option<String>,
    /// Serve HTTPS with this certificate and key (PEM), reloaded when they change.
    pub tls: Option<TlsFiles>,
    /// What Lambda functions' execution environments are isolated by: all layers (`Strict`,
    /// else the server does not start) or those the machine has.
    pub isolation: kumo_lambda::IsolationMode,
    /// The binary that builds execution environments (`kumo __sandbox`): kumo itself.
    pub sandbox_helper: PathBuf,
    /// Where `scripts/lambda-runtimes.sh` installed the runtimes kumo provides (None:
    /// `DATA/lambda/runtimes`).
    pub lambda_runtimes: Option<PathBuf>,
    /// The PostgreSQL database of a cluster (`postgres://...`); None: SQLite in `data_dir`.
    /// With one, `data_dir` is the folder every node shares (code, compiled artifacts,
    /// objects, the secrets key, the first admin token), unless `objects` names a bucket.
    pub database: Option<String>,
    /// This node's id among the cluster's live nodes; None: the host name and a random suffix.
    pub node_id: Option<String>,
    /// An S3-compatible bucket (`s3://BUCKET[/PREFIX]`, credentials from the `AWS_*`
    /// environment) for object bytes and deployed code; None: `data_dir/objects` and
    /// `data_dir/blobs` only.
    pub objects: Option<String>,
}

/// Everything the handlers share.
pub struct AppState {
    store: Store,
    blobs: Blobs,
    runtime: Arc<Runtime>,
    /// Lambda functions' packages and execution environments.
    lambda: Arc<kumo_lambda::LambdaRuntime>,
    invoker: Invoker,
    routes: RouteTable,
    recorder: Recorder,
    events: Events,
    schedules: Schedules,
    subscriptions: Subscriptions,
    objects: objects::ObjectService,
    max_body_bytes: usize,
    prices: kumo_core::Prices,
    /// Refuses new data while the disk is nearly full.
    disk: disk::DiskSpace,
    /// Checks writes against their namespace's quotas.
    quota: quotas::QuotaCheck,
    /// Deploys and deletes one at a time, so route-conflict checks see a stable table (see
    /// [`AppState::lock_registry`]).
    deploy_lock: Mutex<()>,
    /// Turns true when the server begins to stop: long polls and event streams end.
    stopping: watch::Receiver<bool>,
    /// This node, among the cluster's (the only one on SQLite).
    node: cluster::Node,
    /// The executions of workflows this node drives.
    workflows: workflows::Engine,
}

impl AppState {
    /// Everything derived from the set of deployed functions, rebuilt after it changed.
    fn functions_changed(&self, functions: &[kumo_core::FunctionRecord]) {
        self.routes.rebuild(functions);
        self.invoker.admission.reserve(functions);
        self.schedules.rebuild(functions);
        self.subscriptions.rebuild(functions);
        self.objects.subscriptions.rebuild(functions);
    }
}

/// Held while the registry changes after a check (see [`AppState::lock_registry`]).
pub(crate) struct RegistryGuard<'a> {
    _node: tokio::sync::MutexGuard<'a, ()>,
    _cluster: Option<kumo_store::ClusterLock>,
}

impl AppState {
    /// Deploys, deletes, alias and namespace changes one at a time, so the checks before
    /// them (route conflicts, quotas, what an alias points at) see a stable registry: on this
    /// node, and in a cluster across all nodes.
    pub(crate) async fn lock_registry(&self) -> anyhow::Result<RegistryGuard<'_>> {
        let node = self.deploy_lock.lock().await;
        let cluster = match &self.store {
            Store::Postgres(pg) => Some(pg.lock_registry().await?),
            Store::Sqlite(_) => None,
        };
        Ok(RegistryGuard {
            _node: node,
            _cluster: cluster,
        })
    }

    /// Everything derived from the set of namespaces (all of them, from the store).
    fn namespaces_changed(&self, namespaces: Vec<kumo_core::NamespaceRecord>) {
        self.invoker.admission.set_namespace_limits(&namespaces);
        self.invoker.namespaces.load(namespaces);
    }
}

/// The whole HTTP surface, built in one place.
pub fn app(state: Arc<AppState>) -> Frontend<impl FunctionHandler> {
    let router = Router::new()
        .nest("/api/v1", api::router())
        // The Lambda API checks its callers itself: a SigV4 signature covers the body.
        .route("/2015-03-31/functions", axum::routing::any(api::lambda_api))
        .route(
            "/2015-03-31/functions/{*rest}",
            axum::routing::any(api::lambda_api),
        )
        .merge(gateway::router())
        .layer(axum::middleware::map_response(error::in_error_shape))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authorize,
        ))
        .with_state(state.clone());
    let functions = move |request| {
        let state = state.clone();
        async move { Ok(gateway::function(&state, request).await) }
    };
    Frontend::new(functions, router)
}

/// A bound, not yet serving, server. Binding first lets callers learn the port (`:0`).
pub struct Server {
    listener: TcpListener,
    tls: Option<Arc<tls::Tls>>,
    metrics_listener: Option<TcpListener>,
    state: Arc<AppState>,
    keep_alive: Duration,
    retention: Duration,
    data_dir: PathBuf,
    connections: ConnectionLimits,
    max_connections: usize,
    stop: watch::Sender<bool>,
}

impl Server {
    /// Opens the data directory (creating it), restores state from it and binds the listener.
    pub async fn bind(config: ServerConfig) -> anyhow::Result<Self> {
        anyhow::ensure!(
            config.max_concurrency > 0,
            "max_concurrency must be at least 1"
        );
        let open_files = machine::raise_open_files_limit();
        let max_connections = config
            .connections
            .max_connections
            .unwrap_or_else(|| kumo_core::default_max_connections(open_files));
        anyhow::ensure!(max_connections > 0, "max_connections must be at least 1");
        let memory_budget = config
            .max_memory
            .or_else(|| machine::memory_bytes().map(kumo_core::default_memory_budget))
            .context("cannot tell the machine's memory: give --max-memory")?;
        tracing::info!(
            max_memory_mib = memory_budget >> 20,
            "memory budget of invocations"
        );
        let data = &config.data_dir;
        std::fs::create_dir_all(data)
            .with_context(|| format!("creating data dir {}", data.display()))?;
        ensure_writable(data)?;
        let db_path = data.join("kumo.db");
        let node = cluster::Node::new(config.node_id.clone());
        let store = match &config.database {
            // The URL may hold a password: errors and logs never show it.
            Some(url) => Store::open_postgres(url, &node.id)
                .await
                .context("opening the --database")?,
            None => Store::open(&db_path).await?,
        };
        // With `--objects s3://...`, object bytes and deployed code live in the bucket (each
        // node keeps the code it runs in its own folder too).
        let bucket = config
            .objects
            .as_deref()
            .map(kumo_store::open_bucket)
            .transpose()?;
        let blobs = match &bucket {
            Some(bucket) => Blobs::open_with_remote(&data.join("blobs"), bucket.code.clone())?,
            None => Blobs::open(&data.join("blobs"))?,
        };
        let runtime = Runtime::new(
            &data.join("cache"),
            RuntimeConfig {
                allocator: config.allocator,
                max_concurrency: u32::try_from(config.max_concurrency).unwrap_or(u32::MAX),
                breaker: config.breaker,
                ..RuntimeConfig::default()
            },
        )?;
        let lambda = kumo_lambda::LambdaRuntime::new(
            data,
            config.sandbox_helper.clone(),
            config.isolation,
            config.lambda_runtimes.clone(),
        )?;
        let recorder = Recorder::start(
            RecordWriter::for_store(&store, &db_path)?,
            config.max_pending_records,
        );
        let disk = disk::DiskSpace::new(data.clone(), config.min_free_disk);
        let functions = store.list_functions().await?;
        let quota = quotas::QuotaCheck {
            store: store.clone(),
            namespaces: Arc::default(),
        };
        let invoker = Invoker::new(
            store.clone(),
            Arc::new(guest_kv::GuestKv {
                store: store.clone(),
                disk: disk.clone(),
                quota: quota.clone(),
            }),
            blobs.clone(),
            runtime.clone(),
            lambda.clone(),
            recorder.clone(),
            config.max_body_bytes,
            admission::Admission::new(admission::Limits {
                max_concurrency: config.max_concurrency,
                sync_reserve_percent: config.async_config.sync_reserve_percent,
                function_share_percent: config.function_share_percent,
                memory_budget_mb: usize::try_from(memory_budget >> 20).unwrap_or(usize::MAX),
            }),
            trace::Tracing::from_env().context("setting up span export")?,
            auth::Auth::new(config.auth),
            secrets::Sealer::load_or_create(data).context("the key of function secrets")?,
            quota.namespaces.clone(),
        );
        let events = Events::new(
            store.clone(),
            config.async_config.clone(),
            invoker.admission.async_limit(),
        );
        let objects = match &bucket {
            Some(bucket) => kumo_store::Objects::in_bucket(store.clone(), bucket.objects.clone()),
            None => kumo_store::Objects::open(store.clone(), &data.join("objects"))?,
        };
        let (stop, stopping) = watch::channel(false);
        let state = Arc::new(AppState {
            store,
            blobs,
            runtime,
            lambda,
            invoker,
            routes: RouteTable::default(),
            recorder,
            events,
            schedules: Schedules::default(),
            workflows: workflows::Engine::default(),
            subscriptions: Subscriptions::default(),
            objects: objects::ObjectService {
                storage: objects,
                subscriptions: Default::default(),
                max_bytes: config.max_object_bytes,
                quota: quota.clone(),
            },
            quota,
            max_body_bytes: config.max_body_bytes,
            prices: config.prices,
            disk,
            deploy_lock: Mutex::new(()),
            stopping,
            node,
        });
        // Lambda functions reach kumo's API from their environments, as themselves.
        state
            .lambda
            .set_endpoint(Arc::new(function_endpoint::FunctionEndpoint {
                state: Arc::downgrade(&state),
            }));
        auth::first_admin_token(&state, &data.join(ADMIN_TOKEN_FILE)).await?;
        state.invoker.auth.load(state.store.list_tokens().await?);
        state.namespaces_changed(state.store.list_namespaces().await?);
        // Alone on its data folder, nothing is being written yet: every leftover of a crash
        // goes, whatever its age. Other nodes sharing the folder may be writing: only old ones.
        let min_age = match state.store {
            Store::Sqlite(_) => Duration::ZERO,
            Store::Postgres(_) => LEFTOVER_AGE,
        };
        sweep_leftovers(&state, data, min_age).await;
        let calls = calls::InternalCalls(Arc::downgrade(&state));
        state.runtime.set_function_calls(Arc::new(calls));
        let guest_objects = objects::GuestObjects(Arc::downgrade(&state));
        state.runtime.set_object_storage(Arc::new(guest_objects));
        state.functions_changed(&functions);
        api::aliases_changed(&state)
            .await
            .map_err(|e| anyhow::anyhow!("loading aliases: {}", e.message))?;
        for f in functions.into_iter() {
            if f.config.provisioned_concurrency.is_some() {
                let name = f.name.clone();
                state
                    .invoker
                    .preload(f)
                    .await
                    .with_context(|| format!("loading provisioned function {name}"))?;
            }
        }
        let listener = TcpListener::bind(&config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let tls = match config.tls.clone() {
            Some(files) => Some(Arc::new(tls::Tls::new(files).context("setting up TLS")?)),
            None => None,
        };
        let metrics_listener = match &config.metrics_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding {addr} (--metrics-listen)"))?,
            ),
            None => None,
        };
        let bound = listener.local_addr()?;
        let _ = state.node.address.set(bound.to_string());
        anyhow::ensure!(
            config.auth == AuthMode::Token || bound.ip().is_loopback(),
            "--auth none is only for a loopback address (127.0.0.1, ::1); {bound} is reachable \
             from other machines, so kumo needs tokens there"
        );
        Ok(Self {
            listener,
            tls,
            metrics_listener,
            state,
            keep_alive: config.keep_alive,
            retention: config.retention,
            data_dir: config.data_dir.clone(),
            connections: config.connections,
            max_connections,
            stop,
        })
    }

    /// Whether the listener speaks HTTPS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// The address of `--metrics-listen`, when there is one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref()?.local_addr().ok()
    }

    /// Serves until `shutdown` resolves, then finishes in-flight requests and writes every
    /// pending invocation record before returning.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let state = self.state.clone();
        let sweeper = tokio::spawn(unload_idle_functions(state.clone(), self.keep_alive));
        let retention = tokio::spawn(enforce_retention(state.clone(), self.retention));
        let scraper = self.metrics_listener.map(|listener| {
            let router = gateway::metrics_router().with_state(state.clone());
            tokio::spawn(async move { axum::serve(listener, router).await })
        });
        let certificates = self.tls.clone().map(|tls| tokio::spawn(tls.watch()));
        let leftovers = tokio::spawn(sweep_leftovers_periodically(
            state.clone(),
            self.data_dir.clone(),
        ));
        let dispatcher = tokio::spawn(events::dispatch(state.clone(), self.stop.subscribe()));
        let scheduler = tokio::spawn(events::scheduler::run(state.clone(), self.stop.subscribe()));
        let workflows = tokio::spawn(workflows::run(state.clone(), self.stop.subscribe()));
        let node = match &state.store {
            Store::Postgres(pg) => Some(tokio::spawn(cluster::run(
                state.clone(),
                pg.clone(),
                self.stop.subscribe(),
            ))),
            Store::Sqlite(_) => None,
        };
        let stop = self.stop;
        connections::serve(
            self.listener,
            self.state,
            self.connections,
            self.max_connections,
            self.tls,
            async move {
                shutdown.await;
                let _ = stop.send(true);
            },
        )
        .await;
        sweeper.abort();
        retention.abort();
        leftovers.abort();
        if let Some(certificates) = certificates {
            certificates.abort();
        }
        if let Some(scraper) = scraper {
            scraper.abort();
        }
        // Both watch the stop signal; the dispatcher lets running attempts finish first.
        let _ = tokio::join!(dispatcher, scheduler, workflows);
        if let Some(node) = node {
            let _ = node.await;
        }
        state.recorder.flush().await;
        let unwritten = state.recorder.backlog();
        if unwritten > 0 {
            tracing::error!(
                lost = unwritten,
                "stopping with invocation records the store would not take (is the disk full?)"
            );
        }
        let exporter = state.clone();
        let _ = tokio::task::spawn_blocking(move || exporter.invoker.tracing.shutdown()).await;
        state.store.close().await;
        Ok(())
    }
}

/// `kumo migrate`: copies the database of the single node whose data folder is `from` (it
/// must be stopped) into the empty PostgreSQL database at `to`, and with `objects` (an
/// `s3://` URL) its object and code files into that bucket; the rows copied per table (and
/// the files).
pub async fn migrate_to_postgres(
    from: &std::path::Path,
    to: &str,
    objects: Option<&str>,
) -> anyhow::Result<Vec<(String, u64)>> {
    let db = from.join("kumo.db");
    anyhow::ensure!(db.exists(), "no kumo database in {}", from.display());
    let source = Store::Sqlite(kumo_store::SqliteStore::open(&db).await?);
    let target = kumo_store::PgStore::open(to, "kumo-migrate")
        .await
        .context("opening the target database")?;
    // The files first: a failed copy leaves the database untouched, so it can be run again.
    let mut files = None;
    if let Some(url) = objects {
        let bucket = kumo_store::open_bucket(url)?;
        let here = kumo_store::Objects::open(source.clone(), &from.join("objects"))?;
        let there = kumo_store::Objects::in_bucket(source.clone(), bucket.objects);
        let objects = here.copy_files_to(&there).await?;
        let blobs = Blobs::open_with_remote(&from.join("blobs"), bucket.code)?;
        let code = source.code_in_use().await?;
        for sha in &code {
            let bytes = tokio::fs::read(blobs.path(sha))
                .await
                .with_context(|| format!("reading code {sha}"))?;
            blobs.put(&bytes).await?;
        }
        files = Some((objects, code.len()));
    }
    let Store::Sqlite(sqlite) = &source else {
        unreachable!("opened as SQLite")
    };
    let copied = target.import_sqlite(sqlite).await;
    source.close().await;
    target.close().await;
    let mut copied = copied?;
    if let Some((objects, code)) = files {
        copied.push(("object files".into(), objects as u64));
        copied.push(("code files".into(), code as u64));
    }
    Ok(copied)
}

/// Fails with a message that names the directory when kumo cannot write in it (SQLite would
/// only say "unable to open database file").
fn ensure_writable(data: &std::path::Path) -> anyhow::Result<()> {
    let probe = data.join(".kumo-write-check");
    std::fs::write(&probe, b"")
        .and_then(|()| std::fs::remove_file(&probe))
        .with_context(|| format!("the data directory {} is not writable", data.display()))
}

/// How long a file nothing names must have been left alone before a periodic sweep takes it:
/// far longer than a stalled upload may live (the body idle timeout cuts it off).
const LEFTOVER_AGE: Duration = Duration::from_secs(10 * 60);

/// Removes what crashes, failed writes and deletes left in the data directory: object files
/// no row names, code blobs and compiled artifacts of code no function or version has, and
/// temporary files of both. Deploys wait meanwhile (the deploy lock), so code being deployed
/// is never taken for unused.
async fn sweep_leftovers(state: &AppState, data: &std::path::Path, min_age: Duration) {
    let objects = state.objects.storage.sweep_leftovers(min_age).await;
    let _deploying = state.deploy_lock.lock().await;
    let code = match state.store.code_in_use().await {
        Ok(code) => code,
        Err(e) => {
            tracing::warn!("sweeping leftover code: {e:#}");
            return;
        }
    };
    // Code in the bucket (`--objects`) that nothing uses any more.
    match state.blobs.sweep_remote(&code, min_age).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(code_files = n, "removed unused code from the bucket"),
        Err(e) => tracing::warn!("sweeping unused code from the bucket: {e:#}"),
    }
    let (blobs_dir, cache_dir) = (data.join("blobs"), data.join("cache"));
    let files = tokio::task::spawn_blocking(move || -> std::io::Result<usize> {
        let unused = |sha: &str| sha.len() == 64 && !code.contains(sha);
        let blobs = kumo_store::remove_stale_files(&blobs_dir, min_age, |name| {
            (name.starts_with('.') && name.ends_with(".tmp")) || unused(name)
        })?;
        // `{sha256}-{engine}.cwasm`, or its temporary file.
        let cache = kumo_store::remove_stale_files(&cache_dir, min_age, |name| {
            name.contains(".tmp-")
                || (name.ends_with(".cwasm") && name.get(..64).is_some_and(unused))
        })?;
        Ok(blobs + cache)
    })
    .await
    .map_err(std::io::Error::other)
    .and_then(|r| r);
    match (objects, files) {
        (Ok(0), Ok(0)) => {}
        (Ok(objects), Ok(files)) => {
            tracing::info!(objects, code_files = files, "removed leftover files")
        }
        (Err(e), _) => tracing::warn!("sweeping leftover object files: {e:#}"),
        (_, Err(e)) => tracing::warn!("sweeping leftover code files: {e}"),
    }
}

async fn sweep_leftovers_periodically(state: Arc<AppState>, data: PathBuf) {
    let mut ticks = tokio::time::interval(LEFTOVER_AGE);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        sweep_leftovers(&state, &data, LEFTOVER_AGE).await;
    }
}

/// Scale to zero: every so often, unload the functions idle for `keep_alive`.
async fn unload_idle_functions(state: Arc<AppState>, keep_alive: Duration) {
    let period = (keep_alive / 4).clamp(Duration::from_millis(10), Duration::from_secs(10));
    let mut ticks = tokio::time::interval(period);
    loop {
        ticks.tick().await;
        let unloaded = state.invoker.unload_idle(keep_alive);
        if unloaded > 0 {
            tracing::debug!(unloaded, "unloaded idle functions");
        }
    }
}

/// Retention: at start and then every so often (a quarter of the retention, at most hourly),
/// delete the records, logs and finished events older than `retention`.
async fn enforce_retention(state: Arc<AppState>, retention: Duration) {
    let period = (retention / 4).clamp(Duration::from_millis(100), Duration::from_secs(3600));
    let keep_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let mut ticks = tokio::time::interval(period);
    loop {
        ticks.tick().await;
        let cutoff = kumo_core::now_ms().saturating_sub(keep_ms);
        match state.store.sweep(cutoff).await {
            Ok(swept) if swept != kumo_store::Swept::default() => {
                tracing::info!(
                    invocations = swept.invocations,
                    logs = swept.logs,
                    events = swept.events,
                    audit = swept.audit,
                    "retention: deleted old records"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("retention: {e:#}"),
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
