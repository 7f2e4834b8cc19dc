//! kumo's server: one axum listener for the data plane (`/fn/...` and custom routes) and the
//! control API (`/api/v1/...`), both calling the one [`Invoker`].

mod api;
mod error;
mod gateway;
mod invoker;
mod recorder;
mod routes;

pub use invoker::{InvocationRequest, Invoked, Invoker};

use anyhow::Context as _;
use axum::Router;
use kumo_runtime::Runtime;
use kumo_store::{Blobs, Store};
use recorder::Recorder;
use routes::RouteTable;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::Mutex;

/// Default limit of request and response bodies (Lambda's synchronous payload limit).
pub const DEFAULT_MAX_BODY_BYTES: usize = 6 * 1024 * 1024;
/// Largest code upload accepted by a deploy.
pub const MAX_CODE_BYTES: usize = 100 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: String,
    pub data_dir: PathBuf,
    /// Limit of invocation request and response bodies.
    pub max_body_bytes: usize,
}

/// Everything the handlers share.
pub struct AppState {
    store: Store,
    blobs: Blobs,
    runtime: Arc<Runtime>,
    invoker: Invoker,
    routes: RouteTable,
    recorder: Recorder,
    max_body_bytes: usize,
    /// Deploys and deletes one at a time, so route-conflict checks see a stable table.
    deploy_lock: Mutex<()>,
}

/// The whole HTTP surface, built in one place.
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .nest("/api/v1", api::router())
        .merge(gateway::router())
        .with_state(state)
}

/// A bound, not yet serving, server. Binding first lets callers learn the port (`:0`).
pub struct Server {
    listener: TcpListener,
    state: Arc<AppState>,
}

impl Server {
    /// Opens the data directory (creating it), restores state from it and binds the listener.
    pub async fn bind(config: ServerConfig) -> anyhow::Result<Self> {
        let data = &config.data_dir;
        std::fs::create_dir_all(data)
            .with_context(|| format!("creating data dir {}", data.display()))?;
        let store = Store::open(&data.join("kumo.db")).await?;
        let blobs = Blobs::open(&data.join("blobs"))?;
        let runtime = Runtime::new(&data.join("cache"))?;
        let recorder = Recorder::start(store.clone());
        let routes = RouteTable::default();
        routes.rebuild(&store.list_functions().await?);
        let invoker = Invoker::new(
            store.clone(),
            blobs.clone(),
            runtime.clone(),
            recorder.clone(),
            config.max_body_bytes,
        );
        let listener = TcpListener::bind(&config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let state = Arc::new(AppState {
            store,
            blobs,
            runtime,
            invoker,
            routes,
            recorder,
            max_body_bytes: config.max_body_bytes,
            deploy_lock: Mutex::new(()),
        });
        Ok(Self { listener, state })
    }

    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves until `shutdown` resolves, then finishes in-flight requests and writes every
    /// pending invocation record before returning.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let state = self.state.clone();
        axum::serve(self.listener, app(self.state))
            .with_graceful_shutdown(shutdown)
            .await
            .context("serving")?;
        state.recorder.flush().await;
        state.store.close().await;
        Ok(())
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
