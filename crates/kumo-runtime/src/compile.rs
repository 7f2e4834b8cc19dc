//! Deploy-time validation and compilation, and the on-disk cache of compiled artifacts.
//!
//! At deploy, [`Runtime::prepare`] checks the binary, detects its kind from its exports, checks
//! that kumo can satisfy its imports, compiles it and writes `cache/<sha256>-<engine>.cwasm`.
//! [`Runtime::load`] later maps that file (`deserialize_file`) instead of compiling again; only
//! a missing or incompatible artifact (e.g. after a wasmtime upgrade) is recompiled.

use crate::Runtime;
use crate::host::{ComponentHost, ModuleHost};
use anyhow::Context as _;
use kumo_core::FunctionKind;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::component::Component;
use wasmtime::{Engine, InstancePre, Module, Precompiled};
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

const WASM_MAGIC: &[u8; 4] = b"\0asm";
const CORE_MODULE_VERSION: [u8; 4] = [1, 0, 0, 0];
const COMPONENT_VERSION: [u8; 4] = [0x0d, 0, 1, 0];
/// Export-name prefixes of the two supported worlds; any 0.2.x patch version matches.
const HTTP_HANDLER_EXPORT: &str = "wasi:http/incoming-handler@0.2.";
const CLI_RUN_EXPORT: &str = "wasi:cli/run@0.2.";

/// Why deployed code cannot be used; the message is for the user who deployed it.
#[derive(Debug, thiserror::Error)]
pub enum InvalidCode {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

fn invalid(msg: impl Into<String>) -> InvalidCode {
    InvalidCode::Invalid(msg.into())
}

/// A function ready to instantiate: exports looked up and imports linked once, so that each
/// invocation only creates a store and instantiates.
#[derive(Clone)]
pub enum Loaded {
    Http(ProxyPre<ComponentHost>),
    Command(CommandPre<ComponentHost>),
    Module(InstancePre<ModuleHost>),
}

impl Loaded {
    pub fn kind(&self) -> FunctionKind {
        match self {
            Self::Http(_) => FunctionKind::WasiHttp,
            Self::Command(_) | Self::Module(_) => FunctionKind::WasiCommand,
        }
    }
}

enum Compiled {
    Component(Component),
    Module(Module),
}

impl Runtime {
    /// Validates `code`, compiles it, caches the artifact under `sha256`, and returns it loaded.
    /// CPU-heavy: call it from a blocking thread.
    pub fn prepare(&self, sha256: &str, code: &[u8]) -> Result<Loaded, InvalidCode> {
        // Code compiled before (same bytes, same engine) is not compiled again, which keeps a
        // deploy of known code (another name, a config change) cheap.
        if let Some(compiled) = self.read_cache(&self.cache_path(sha256)) {
            return self.link(&compiled);
        }
        let compiled = self.compile(code)?;
        let loaded = self.link(&compiled)?;
        self.write_cache(sha256, &compiled)?;
        Ok(loaded)
    }

    /// Loads a prepared function from the cache; recompiles from `code_path` only when the
    /// cached artifact is missing or was made by an incompatible engine.
    pub fn load(&self, sha256: &str, code_path: &Path) -> anyhow::Result<Loaded> {
        let cached = self.cache_path(sha256);
        let compiled = match self.read_cache(&cached) {
            Some(compiled) => compiled,
            None => {
                let code = std::fs::read(code_path)
                    .with_context(|| format!("reading code {}", code_path.display()))?;
                let compiled = self.compile(&code).map_err(anyhow::Error::from)?;
                self.write_cache(sha256, &compiled)?;
                compiled
            }
        };
        self.link(&compiled).map_err(anyhow::Error::from)
    }

    fn cache_path(&self, sha256: &str) -> PathBuf {
        self.cache_dir
            .join(format!("{sha256}-{}.cwasm", self.fingerprint))
    }

    fn read_cache(&self, path: &Path) -> Option<Compiled> {
        let kind = Engine::detect_precompiled_file(path).ok()??;
        // SAFETY: the file is one kumo wrote itself (write_cache) into its own data directory;
        // wasmtime still checks that it was made by a compatible engine.
        #[allow(unsafe_code)]
        let compiled = match kind {
            Precompiled::Component => {
                unsafe { Component::deserialize_file(&self.engine, path) }.map(Compiled::Component)
            }
            Precompiled::Module => {
                unsafe { Module::deserialize_file(&self.engine, path) }.map(Compiled::Module)
            }
        };
        compiled
            .inspect_err(|e| tracing::warn!(path = %path.display(), "cached artifact unusable, recompiling: {e}"))
            .ok()
    }

    fn write_cache(&self, sha256: &str, compiled: &Compiled) -> anyhow::Result<()> {
        let bytes = match compiled {
            Compiled::Component(c) => c.serialize(),
            Compiled::Module(m) => m.serialize(),
        }
        .map_err(anyhow::Error::from)?;
        // Write then rename, so a crash never leaves a half-written artifact under the real name.
        let path = self.cache_path(sha256);
        // Unique per write: concurrent deploys of the same new code each write their own file.
        let tmp = path.with_extension(format!("tmp-{}", unique_suffix()));
        std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("renaming to {}", path.display()))
    }

    fn compile(&self, code: &[u8]) -> Result<Compiled, InvalidCode> {
        if code.len() < 8 || &code[..4] != WASM_MAGIC {
            return Err(invalid(
                "not a WebAssembly binary (the file does not start with \\0asm)",
            ));
        }
        let version: [u8; 4] = [code[4], code[5], code[6], code[7]];
        self.count_compilation();
        match version {
            COMPONENT_VERSION => Component::new(&self.engine, code)
                .map(Compiled::Component)
                .map_err(|e| invalid(format!("not a valid component: {e:#}"))),
            CORE_MODULE_VERSION => Module::new(&self.engine, code)
                .map(Compiled::Module)
                .map_err(|e| invalid(format!("not a valid core module: {e:#}"))),
            _ => Err(invalid(format!(
                "unsupported WebAssembly binary version {version:02x?}"
            ))),
        }
    }

    fn link(&self, compiled: &Compiled) -> Result<Loaded, InvalidCode> {
        match compiled {
            Compiled::Component(component) => self.link_component(component),
            Compiled::Module(module) => self.link_module(module),
        }
    }

    fn link_component(&self, component: &Component) -> Result<Loaded, InvalidCode> {
        let exports: Vec<String> = component
            .component_type()
            .exports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let exports_one = |prefix: &str| exports.iter().any(|e| e.starts_with(prefix));
        let unresolved =
            |e: wasmtime::Error| invalid(format!("imports something kumo does not provide: {e:#}"));
        if exports_one(HTTP_HANDLER_EXPORT) {
            let pre = self
                .component_linker
                .instantiate_pre(component)
                .map_err(unresolved)?;
            let pre = ProxyPre::new(pre).map_err(|e| {
                invalid(format!("unusable wasi:http/incoming-handler export: {e:#}"))
            })?;
            return Ok(Loaded::Http(pre));
        }
        if exports_one(CLI_RUN_EXPORT) {
            let pre = self
                .component_linker
                .instantiate_pre(component)
                .map_err(unresolved)?;
            let pre = CommandPre::new(pre)
                .map_err(|e| invalid(format!("unusable wasi:cli/run export: {e:#}")))?;
            return Ok(Loaded::Command(pre));
        }
        Err(invalid(format!(
            "the component exports neither {HTTP_HANDLER_EXPORT}x (an HTTP handler) nor \
             {CLI_RUN_EXPORT}x (a command); it exports: [{}]",
            exports.join(", ")
        )))
    }

    fn link_module(&self, module: &Module) -> Result<Loaded, InvalidCode> {
        if !matches!(
            module.get_export("_start"),
            Some(wasmtime::ExternType::Func(_))
        ) {
            return Err(invalid(
                "the core module has no `_start` function: kumo runs core modules only as wasip1 \
                 commands (build with a WASI target, or as a component)",
            ));
        }
        let pre = self
            .module_linker
            .instantiate_pre(module)
            .map_err(|e| invalid(format!("imports something kumo does not provide: {e:#}")))?;
        Ok(Loaded::Module(pre))
    }
}

/// A short id of the engine's compiled-code compatibility (wasmtime version, target, settings).
pub(crate) fn engine_fingerprint(engine: &Engine) -> String {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// A suffix no other write in this process (or another process) uses at the same time.
fn unique_suffix() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}-{n}", std::process::id())
}
