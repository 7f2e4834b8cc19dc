//! kumo's WebAssembly runtime: one wasmtime `Engine`, validation and compilation of deployed
//! code into an on-disk cache, and execution of one invocation in a fresh, limited sandbox.
//!
//! Two kinds of function (see [`kumo_core::FunctionKind`]):
//! - `wasi-http`: a component exporting `wasi:http/incoming-handler@0.2.x`;
//! - `wasi-command`: a WASI 0.2 command component or a wasip1 core module with `_start`.

mod capture;
mod compile;
mod execute;
mod host;
mod kv;
mod objects;
mod outbound;
mod warm;

pub use compile::{InvalidCode, Loaded};
pub use execute::{Execution, Failure, Invocation, LogLine, Response};
pub use kumo_core::LogStream;
pub use kv::{KeyValue, KvAccess, KvFuture};
pub use objects::{GuestPut, ObjectStorage, StorageError, StorageFuture};
pub use outbound::{
    BreakerCall, BreakerConfig, BreakerState, Breakers, CallFuture, FunctionCall, FunctionCalls,
    INTERNAL_HOST_SUFFIX, OutboundGrants,
};
pub use warm::WarmPool;

use anyhow::Context as _;
use host::{ComponentHost, ModuleHost};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the engine's epoch advances. A running guest yields to the async executor at every
/// tick, which is what lets a timeout (a plain `tokio::time::timeout`) stop a guest that loops.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// How the engine allocates instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocator {
    /// Pre-reserved slots for memories, tables and stacks, with copy-on-write memory images: an
    /// instantiation maps the module's initial memory instead of copying it. Falls back to
    /// `OnDemand` when the machine cannot reserve the address space.
    Pooling,
    /// mmap per instance; slower to instantiate, no up-front reservation.
    OnDemand,
}

#[derive(Debug, Clone, Copy)]
pub struct RuntimeConfig {
    pub allocator: Allocator,
    /// Invocations that may run at once (the server's limit); sizes the instance pool.
    pub max_concurrency: u32,
    /// Warm instances kept for reuse across all functions; they hold pool slots too.
    pub max_warm_instances: u32,
    /// Circuit breakers of guests' outbound HTTP destinations.
    pub breaker: BreakerConfig,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            allocator: Allocator::Pooling,
            max_concurrency: 1000,
            max_warm_instances: 256,
            breaker: BreakerConfig::default(),
        }
    }
}

/// Core instances (and memories, tables) a slot allows for one component instance: a wasi-http
/// component built with an adapter carries several small core modules beside the main one.
const CORE_INSTANCES_PER_COMPONENT: u32 = 8;
const MEMORIES_PER_COMPONENT: u32 = 2;

pub struct Runtime {
    engine: Engine,
    allocator: Allocator,
    component_linker: wasmtime::component::Linker<ComponentHost>,
    module_linker: wasmtime::Linker<ModuleHost>,
    cache_dir: PathBuf,
    /// Identifies the engine's compiled-code format; part of every cache file name.
    fingerprint: String,
    compilations: AtomicU64,
    /// Warm instances waiting for reuse, across all functions, and their cap.
    warm_instances: Arc<AtomicUsize>,
    max_warm_instances: usize,
    breakers: outbound::Breakers,
    calls: outbound::CallsSlot,
    object_storage: objects::StorageSlot,
}

impl Runtime {
    /// Builds the engine and linkers. Compiled artifacts are cached in `cache_dir`.
    pub fn new(cache_dir: &Path, config: RuntimeConfig) -> anyhow::Result<Arc<Self>> {
        std::fs::create_dir_all(cache_dir)
            .with_context(|| format!("creating compile cache {}", cache_dir.display()))?;
        let slots = config
            .max_concurrency
            .saturating_add(config.max_warm_instances);
        let (engine, allocator) = match build_engine(config.allocator, slots) {
            Ok(engine) => (engine, config.allocator),
            Err(e) if config.allocator == Allocator::Pooling => {
                tracing::warn!("pooling allocator unavailable ({e:#}); allocating on demand");
                (build_engine(Allocator::OnDemand, 0)?, Allocator::OnDemand)
            }
            Err(e) => return Err(e),
        };

        let mut component_linker = wasmtime::component::Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut component_linker)
            .map_err(anyhow::Error::from)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut component_linker)
            .map_err(anyhow::Error::from)?;
        kv::add_to_linker(&mut component_linker)?;
        objects::add_to_linker(&mut component_linker)?;
        let mut module_linker = wasmtime::Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut module_linker, |host: &mut ModuleHost| {
            &mut host.wasi
        })
        .map_err(anyhow::Error::from)?;

        spawn_epoch_ticker(&engine);
        let fingerprint = compile::engine_fingerprint(&engine);
        Ok(Arc::new(Self {
            engine,
            allocator,
            component_linker,
            module_linker,
            cache_dir: cache_dir.to_path_buf(),
            fingerprint,
            compilations: AtomicU64::new(0),
            warm_instances: Arc::default(),
            max_warm_instances: config.max_warm_instances as usize,
            breakers: outbound::Breakers::new(config.breaker),
            calls: Arc::default(),
            object_storage: Arc::default(),
        }))
    }

    /// How many times this runtime compiled wasm to machine code (cache misses included).
    pub fn compilations(&self) -> u64 {
        self.compilations.load(Ordering::Relaxed)
    }

    /// An empty pool of warm instances for a function with `instances = "reuse"`.
    pub fn warm_pool(&self, max_requests: u32) -> WarmPool {
        WarmPool::new(
            max_requests,
            self.warm_instances.clone(),
            self.max_warm_instances,
        )
    }

    /// Warm instances waiting for reuse now, across all functions.
    pub fn warm_instances(&self) -> usize {
        self.warm_instances.load(Ordering::Relaxed)
    }

    /// Where guests' calls to `http://NAME.fn.internal/` go (set once; later calls are ignored).
    pub fn set_function_calls(&self, calls: Arc<dyn FunctionCalls>) {
        let _ = self.calls.set(calls);
    }

    /// Where guests' `kumo:objects` calls go (set once; later calls are ignored).
    pub fn set_object_storage(&self, storage: Arc<dyn ObjectStorage>) {
        let _ = self.object_storage.set(storage);
    }

    /// Every outbound destination guests have called, with its circuit breaker's state.
    /// The circuit breakers of outbound destinations, shared with Lambda functions' egress.
    pub fn breakers(&self) -> Breakers {
        self.breakers.clone()
    }

    pub fn breaker_states(&self) -> Vec<(String, BreakerState)> {
        self.breakers.states()
    }

    /// The allocator in use (pooling may have fallen back to on-demand).
    pub fn allocator(&self) -> Allocator {
        self.allocator
    }

    fn count_compilation(&self) {
        self.compilations.fetch_add(1, Ordering::Relaxed);
    }
}

fn build_engine(allocator: Allocator, max_instances: u32) -> anyhow::Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    // kumo runs wasi:http 0.2 and commands, which never need the component model's
    // concurrent (async) runtime; without it every guest→host call skips the task
    // bookkeeping that cost ~10% of a warm request.
    config.concurrency_support(false);
    if allocator == Allocator::Pooling {
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(max_instances)
            .total_core_instances(max_instances.saturating_mul(CORE_INSTANCES_PER_COMPONENT))
            .total_memories(max_instances.saturating_mul(MEMORIES_PER_COMPONENT))
            .total_tables(max_instances.saturating_mul(CORE_INSTANCES_PER_COMPONENT))
            .total_stacks(max_instances)
            .max_memory_size(kumo_core::MAX_MEMORY_MB as usize * 1024 * 1024);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        config.memory_init_cow(true);
    }
    Engine::new(&config).map_err(anyhow::Error::from)
}

/// Advances the engine's epoch forever on a plain thread. It holds only a weak handle, so it
/// ends once the engine is dropped.
fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("kumo-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .map(drop)
        .unwrap_or_else(|e| tracing::error!("cannot start the epoch thread: {e}"));
}
