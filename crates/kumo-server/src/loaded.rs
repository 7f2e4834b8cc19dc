//! The functions in memory: each one's record, pre-instantiated code and concurrency gate.
//! A function is loaded by its first invocation (a cold start) and unloaded after `keep_alive`
//! without invocations (scale to zero); the store stays the source of truth.

use crate::admission::{Admission, FunctionCounts};
use crate::metrics::{FunctionMetrics, Metrics};
use kumo_core::{FunctionRecord, Instances};
use kumo_runtime::{Loaded, Runtime, WarmPool};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Semaphore;

/// What runs an entry's invocations.
pub(crate) enum Code {
    /// Pre-instantiated WebAssembly.
    Wasm(Loaded),
    /// A Lambda function's execution environments.
    Lambda(Box<kumo_lambda::Pool>),
}

pub(crate) struct Entry {
    /// Its key in [`LoadedFunctions`] (see [`entry_key`]).
    pub key: String,
    /// None: `$LATEST`; else the published version it runs.
    pub version: Option<u32>,
    pub record: FunctionRecord,
    pub code: Code,
    pub slots: Option<Arc<Semaphore>>,
    /// Warm instances, for a wasi-http function with `instances = "reuse"`.
    pub warm: Option<WarmPool>,
    /// The config's `allow_outbound`, shared by its invocations.
    pub allow_outbound: Arc<[String]>,
    /// The function's namespace, shared by its invocations.
    pub namespace: Arc<str>,
    /// The config's `kv` buckets, shared by its invocations.
    pub kv_buckets: Arc<[String]>,
    /// The config's `objects` buckets, shared by its invocations.
    pub object_buckets: Arc<[String]>,
    /// The config's environment variables, shared by its invocations.
    pub env: Arc<[(String, String)]>,
    pub metrics: FunctionMetrics,
    /// What the function holds, counted by admission.
    pub counts: FunctionCounts,
    last_used_ms: AtomicI64,
}

/// Where an entry is kept: `name` for `$LATEST`, `name:N` for version N.
pub(crate) fn entry_key(name: &str, version: Option<u32>) -> String {
    match version {
        Some(n) => format!("{name}:{n}"),
        None => name.to_string(),
    }
}

impl Entry {
    /// `version`: None for `$LATEST`, else the published version `record` was made from.
    /// `record.reuse_fell_back`: its code cannot serve twice, so it gets no warm instances.
    pub(crate) fn new(
        record: FunctionRecord,
        version: Option<u32>,
        code: Code,
        secrets: Vec<(String, String)>,
        runtime: &Runtime,
        metrics: &Metrics,
        admission: &Admission,
    ) -> Self {
        let slots = record
            .config
            .max_concurrency
            .map(|n| Arc::new(Semaphore::new(n as usize)));
        let warm = (record.config.instances == Instances::Reuse
            && !record.reuse_fell_back
            && matches!(code, Code::Wasm(Loaded::Http(_))))
        .then(|| runtime.warm_pool(record.config.max_instance_requests));
        let allow_outbound = record.config.allow_outbound.clone().into();
        let namespace = kumo_core::namespace_of(&record.name).into();
        let kv_buckets = record.config.kv.clone().into();
        let object_buckets = record.config.objects.clone().into();
        let env = record
            .config
            .env
            .clone()
            .into_iter()
            .chain(secrets)
            .collect();
        let metrics = metrics.for_function(&record.name);
        let counts = admission.for_function(&record.name);
        Self {
            key: entry_key(&record.name, version),
            record,
            version,
            code,
            slots,
            warm,
            allow_outbound,
            namespace,
            kv_buckets,
            object_buckets,
            env,
            metrics,
            counts,
            last_used_ms: AtomicI64::new(kumo_core::now_ms()),
        }
    }
}

#[derive(Default)]
pub(crate) struct LoadedFunctions {
    map: Mutex<HashMap<String, Arc<Entry>>>,
    /// Bumped by every `forget`, so a load that began before a deploy is not cached after it.
    generation: AtomicU64,
}

impl LoadedFunctions {
    fn map(&self) -> MutexGuard<'_, HashMap<String, Arc<Entry>>> {
        // The map is consistent between statements, so a poisoned lock is still usable.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The loaded function, marked as used now.
    pub(crate) fn get(&self, name: &str) -> Option<Arc<Entry>> {
        let entry = self.map().get(name).cloned()?;
        entry
            .last_used_ms
            .store(kumo_core::now_ms(), Ordering::Relaxed);
        Some(entry)
    }

    /// Read before loading; pass to [`Self::insert`].
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Caches a freshly loaded entry unless the function was forgotten (redeployed, deleted)
    /// since `generation` was read; a concurrent load that won keeps its entry.
    pub(crate) fn insert(&self, entry: Entry, generation: u64) -> Arc<Entry> {
        let entry = Arc::new(entry);
        let mut map = self.map();
        if self.generation.load(Ordering::Acquire) != generation {
            return entry;
        }
        map.entry(entry.key.clone()).or_insert(entry).clone()
    }

    /// Drops one entry (`name` for `$LATEST`, `name:N` for a version).
    pub(crate) fn forget(&self, key: &str) {
        let mut map = self.map();
        self.generation.fetch_add(1, Ordering::AcqRel);
        map.remove(key);
    }

    /// Drops `$LATEST` and every version of a function.
    pub(crate) fn forget_function(&self, name: &str) {
        self.forget_where(|e| e.record.name == name);
    }

    /// Drops every entry for which `stale` holds.
    pub(crate) fn forget_where(&self, stale: impl Fn(&Entry) -> bool) {
        let mut map = self.map();
        self.generation.fetch_add(1, Ordering::AcqRel);
        map.retain(|_, e| !stale(e));
    }

    /// Every loaded function and version, by key.
    pub(crate) fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.map().keys().cloned().collect();
        keys.sort_unstable();
        keys
    }

    /// The published versions loaded: (function, version).
    pub(crate) fn versions(&self) -> Vec<(String, u32)> {
        self.map()
            .values()
            .filter_map(|e| Some((e.record.name.clone(), e.version?)))
            .collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.map().len()
    }

    /// Stops every idle Lambda execution environment (but provisioned ones), giving their
    /// memory back to the budget; returns how many.
    pub(crate) fn stop_idle_environments(&self) -> usize {
        let entries: Vec<_> = self.map().values().cloned().collect();
        entries
            .iter()
            .filter(|e| e.record.config.provisioned_concurrency.is_none())
            .map(|e| match &e.code {
                Code::Lambda(pool) => pool.reap(Duration::ZERO),
                Code::Wasm(_) => 0,
            })
            .sum()
    }

    /// Drops functions unused for `keep_alive`, not running now and without provisioned
    /// concurrency, and warm instances idle as long; returns how many functions it unloaded.
    pub(crate) fn unload_idle(&self, keep_alive: Duration) -> usize {
        // Trimmed outside the lock: dropping instances releases memory, which takes a while.
        let entries: Vec<_> = self.map().values().cloned().collect();
        for entry in entries {
            if let Some(warm) = &entry.warm {
                warm.trim(keep_alive);
            }
            // Idle execution environments go after the keep-alive too (a provisioned
            // function keeps its warm ones).
            if let Code::Lambda(pool) = &entry.code
                && entry.record.config.provisioned_concurrency.is_none()
            {
                pool.reap(keep_alive);
            }
        }
        let cutoff =
            kumo_core::now_ms() - i64::try_from(keep_alive.as_millis()).unwrap_or(i64::MAX);
        let mut map = self.map();
        let before = map.len();
        // An invocation in flight holds a clone of the Arc.
        map.retain(|_, e| {
            Arc::strong_count(e) > 1
                || e.record.config.provisioned_concurrency.is_some()
                || e.last_used_ms.load(Ordering::Relaxed) > cutoff
        });
        before - map.len()
    }
}
