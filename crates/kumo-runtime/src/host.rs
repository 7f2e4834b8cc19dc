//! Per-invocation host state (the `T` of `Store<T>`): WASI contexts, the memory limiter, and the
//! wasi:http hooks that let outbound requests through only to granted hosts, and the
//! key-value buckets the guest may open.

use crate::kv::KvAccess;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

/// Plenty for any real guest's function tables; stops a guest growing a table without end.
const MAX_TABLE_ELEMENTS: usize = 1_000_000;

/// Store state for components (both wasi-http and command components).
pub struct ComponentHost {
    pub wasi: WasiCtx,
    pub http: WasiHttpCtx,
    pub table: ResourceTable,
    pub limits: MemoryLimit,
    pub hooks: OutboundGrants,
    pub kv: KvAccess,
}

impl ComponentHost {
    pub fn new(wasi: WasiCtx, limits: MemoryLimit, outbound: OutboundGrants, kv: KvAccess) -> Self {
        Self {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            limits,
            hooks: outbound,
            kv,
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

/// Outbound HTTP of a guest: denied unless the request's host (`host`, or `host:port` for
/// that port only) is granted in the function's `allow_outbound`.
#[derive(Clone, Default)]
pub struct OutboundGrants {
    allowed: Arc<[String]>,
}

/// Connect and first-byte timeouts of an outbound request whose guest set none (the
/// invocation's own timeout still bounds it).
const OUTBOUND_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const OUTBOUND_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(30);

impl OutboundGrants {
    pub fn new(allowed: Arc<[String]>) -> Self {
        Self { allowed }
    }

    pub fn allows(&self, uri: &http::Uri) -> bool {
        let Some(host) = uri.host() else {
            return false;
        };
        let default_port = if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        };
        let host_port = format!("{host}:{}", uri.port_u16().unwrap_or(default_port));
        self.allowed
            .iter()
            .any(|grant| grant.eq_ignore_ascii_case(host) || grant.eq_ignore_ascii_case(&host_port))
    }
}

type ResponseIo = Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>;

impl WasiHttpHooks for OutboundGrants {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<
        dyn Future<Output = wasmtime_wasi_http::Result<(http::Response<WasiBody>, ResponseIo)>>
            + Send,
    > {
        if !self.allows(request.uri()) {
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        let mut options = options.unwrap_or_default();
        options.connect_timeout = options.connect_timeout.or(Some(OUTBOUND_CONNECT_TIMEOUT));
        options.first_byte_timeout = options
            .first_byte_timeout
            .or(Some(OUTBOUND_FIRST_BYTE_TIMEOUT));
        Box::new(async move {
            use http_body_util::BodyExt;
            let (response, io) =
                wasmtime_wasi_http::default_send_request(request, Some(options)).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as ResponseIo,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_match_a_host_or_a_host_and_port() {
        let grants =
            OutboundGrants::new(vec!["api.example.com".into(), "127.0.0.1:9000".into()].into());
        let allows = |uri: &str| grants.allows(&uri.parse().unwrap());
        assert!(allows("https://api.example.com/x"));
        assert!(allows("http://API.example.com:8080/"));
        assert!(allows("http://127.0.0.1:9000/"));
        assert!(!allows("http://127.0.0.1:9001/"));
        assert!(!allows("http://127.0.0.1/"));
        assert!(!allows("http://example.com/"));
        assert!(!OutboundGrants::default().allows(&"http://a/".parse().unwrap()));
    }
}
