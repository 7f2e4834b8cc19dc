//! Per-invocation host state (the `T` of `Store<T>`): WASI contexts, the memory limiter, the
//! wasi:http hooks (outbound.rs), and the key-value buckets (kv.rs) and object buckets
//! (objects.rs) the guest may use.

use crate::kv::KvAccess;
use crate::objects::ObjectAccess;
use crate::outbound::Outbound;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Plenty for any real guest's function tables; stops a guest growing a table without end.
const MAX_TABLE_ELEMENTS: usize = 1_000_000;

/// Store state for components (both wasi-http and command components).
pub struct ComponentHost {
    pub wasi: WasiCtx,
    pub http: WasiHttpCtx,
    pub table: ResourceTable,
    pub limits: MemoryLimit,
    pub hooks: Outbound,
    pub kv: KvAccess,
    pub objects: ObjectAccess,
    /// The function's namespace, whose buckets the guest's bucket names are.
    pub namespace: Arc<str>,
}

impl ComponentHost {
    pub fn new(
        wasi: WasiCtx,
        limits: MemoryLimit,
        outbound: Outbound,
        kv: KvAccess,
        objects: ObjectAccess,
        namespace: Arc<str>,
    ) -> Self {
        Self {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            limits,
            hooks: outbound,
            kv,
            objects,
            namespace,
        }
    }
}

impl WasiView for ComponentHost {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for ComponentHost {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Store state for wasip1 core modules.
pub struct ModuleHost {
    pub wasi: WasiP1Ctx,
    pub limits: MemoryLimit,
}

/// Caps the total linear memory of all memories in one store. Growth past the cap fails the way
/// a real out-of-memory does (`memory.grow` returns -1); `hit` records that it happened, so a
/// guest that then aborts is reported as `out_of_memory` rather than as a generic trap.
pub struct MemoryLimit {
    max_bytes: usize,
    total_bytes: usize,
    hit: Arc<AtomicBool>,
}

impl MemoryLimit {
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            total_bytes: 0,
            hit: Arc::default(),
        }
    }

    /// A limit that reports hitting it on `hit`, a flag the caller already holds.
    pub fn with_flag(max_bytes: usize, hit: Arc<AtomicBool>) -> Self {
        Self {
            max_bytes,
            total_bytes: 0,
            hit,
        }
    }

    /// A handle that outlives the store, to ask afterwards whether the limit was hit.
    pub fn hit_flag(&self) -> Arc<AtomicBool> {
        self.hit.clone()
    }
}

impl ResourceLimiter for MemoryLimit {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let next = (self.total_bytes - current.min(self.total_bytes)).saturating_add(desired);
        if next > self.max_bytes {
            self.hit.store(true, Ordering::Relaxed);
            return Ok(false);
        }
        self.total_bytes = next;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}
