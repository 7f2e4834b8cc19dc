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

pub use compile::{InvalidCode, Loaded};
pub use execute::{Execution, Failure, Invocation, LogLine, LogStream, Response};

use anyhow::Context as _;
use host::{ComponentHost, ModuleHost};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use wasmtime::{Config, Engine};

/// How often the engine's epoch advances. A running guest yields to the async executor at every
/// tick, which is what lets a timeout (a plain `tokio::time::timeout`) stop a guest that loops.
const EPOCH_TICK: Duration = Duration::from_millis(5);

pub struct Runtime {
    engine: Engine,
    component_linker: wasmtime::component::Linker<ComponentHost>,
    module_linker: wasmtime::Linker<ModuleHost>,
    cache_dir: PathBuf,
    /// Identifies the engine's compiled-code format; part of every cache file name.
    fingerprint: String,
    compilations: AtomicU64,
}

impl Runtime {
    /// Builds the engine and linkers. Compiled artifacts are cached in `cache_dir`.
    pub fn new(cache_dir: &Path) -> anyhow::Result<Arc<Self>> {
        std::fs::create_dir_all(cache_dir)
            .with_context(|| format!("creating compile cache {}", cache_dir.display()))?;
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(anyhow::Error::from)?;

        let mut component_linker = wasmtime::component::Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut component_linker)
            .map_err(anyhow::Error::from)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut component_linker)
            .map_err(anyhow::Error::from)?;
        let mut module_linker = wasmtime::Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut module_linker, |host: &mut ModuleHost| {
            &mut host.wasi
        })
        .map_err(anyhow::Error::from)?;

        spawn_epoch_ticker(&engine);
        let fingerprint = compile::engine_fingerprint(&engine);
        Ok(Arc::new(Self {
            engine,
            component_linker,
            module_linker,
            cache_dir: cache_dir.to_path_buf(),
            fingerprint,
            compilations: AtomicU64::new(0),
        }))
    }

    /// How many times this runtime compiled wasm to machine code (cache misses included).
    pub fn compilations(&self) -> u64 {
        self.compilations.load(Ordering::Relaxed)
    }

    fn count_compilation(&self) {
        self.compilations.fetch_add(1, Ordering::Relaxed);
    }
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
