//! Warm instances for `instances = "reuse"`: a wasi-http instance that served a request
//! successfully waits here for the next one instead of being dropped, like a Lambda execution
//! environment. It is replaced after a failure (never put back), after `max_requests`, or when
//! idle too long; the runtime caps how many wait across all functions, as each holds a slot of
//! the instance pool and its memory.

use crate::capture::Capture;
use crate::host::ComponentHost;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::Proxy;

/// A wasi-http instance's store and the handles kumo keeps on it. `proxy` is `None` until the
/// instance is instantiated (a fresh one is, as part of the guest's call).
pub(crate) struct HttpInstance {
    pub store: Store<ComponentHost>,
    pub proxy: Option<Proxy>,
    pub stdout: Capture,
    pub stderr: Capture,
    pub memory_hit: Arc<AtomicBool>,
    /// Requests this instance has served.
    pub served: u32,
    idle_since: Instant,
}

impl HttpInstance {
    pub(crate) fn new(
        store: Store<ComponentHost>,
        stdout: Capture,
        stderr: Capture,
        memory_hit: Arc<AtomicBool>,
    ) -> Self {
        Self {
            store,
            proxy: None,
            stdout,
            stderr,
            memory_hit,
            served: 0,
            idle_since: Instant::now(),
        }
    }
}

/// Whether a function's instances have shown they can serve more than one request.
const ON_TRIAL: u8 = 0;
/// An instance served a second request: reuse works for this code.
const PROVEN: u8 = 1;
/// An instance failed its second request without answering: fresh instances from now on.
const FELL_BACK: u8 = 2;

/// The warm instances of one loaded function.
pub struct WarmPool {
    idle: Mutex<Vec<HttpInstance>>,
    /// [`ON_TRIAL`], [`PROVEN`] or [`FELL_BACK`].
    reuse: AtomicU8,
    max_requests: u32,
    /// Instances waiting across the runtime, shared by every pool.
    idle_total: Arc<AtomicUsize>,
    max_idle_total: usize,
}

impl WarmPool {
    pub(crate) fn new(
        max_requests: u32,
        idle_total: Arc<AtomicUsize>,
        max_idle_total: usize,
    ) -> Self {
        Self {
            idle: Mutex::default(),
            reuse: AtomicU8::new(ON_TRIAL),
            max_requests,
            idle_total,
            max_idle_total,
        }
    }

    fn idle(&self) -> MutexGuard<'_, Vec<HttpInstance>> {
        // The Vec is consistent between statements, so a poisoned lock is still usable.
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// No instance of this function has served a second request yet, nor failed one.
    pub(crate) fn on_trial(&self) -> bool {
        self.reuse.load(Ordering::Relaxed) == ON_TRIAL
    }

    /// An instance served a request after its first: this code can be reused.
    pub(crate) fn prove(&self) {
        // A load first: every warm request ends here, and a compare-exchange would write the
        // shared cache line each time.
        if !self.on_trial() {
            return;
        }
        let _ = self
            .reuse
            .compare_exchange(ON_TRIAL, PROVEN, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// An instance failed its second request without answering (a component that can serve
    /// only once, such as one built with componentize-js): no instance is kept from now on.
    pub(crate) fn fall_back(&self) {
        self.reuse.store(FELL_BACK, Ordering::Relaxed);
        self.trim(Duration::ZERO);
    }

    /// Serving with fresh instances although the function asked for reuse.
    pub fn fell_back(&self) -> bool {
        self.reuse.load(Ordering::Relaxed) == FELL_BACK
    }

    /// The most recently used warm instance (its memory is likeliest to be in cache).
    pub(crate) fn take(&self) -> Option<HttpInstance> {
        if self.fell_back() {
            return None;
        }
        let instance = self.idle().pop()?;
        self.idle_total.fetch_sub(1, Ordering::Relaxed);
        Some(instance)
    }

    /// Keeps an instance that just served a request successfully, unless it has served its
    /// share or the runtime already keeps as many as it allows.
    pub(crate) fn put(&self, mut instance: HttpInstance) {
        if instance.served >= self.max_requests || self.fell_back() {
            return;
        }
        if self.idle_total.fetch_add(1, Ordering::Relaxed) >= self.max_idle_total {
            self.idle_total.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        instance.idle_since = Instant::now();
        self.idle().push(instance);
    }

    /// Drops instances idle for longer than `max_idle`; returns how many.
    pub fn trim(&self, max_idle: Duration) -> usize {
        let dropped: Vec<HttpInstance> = {
            let mut idle = self.idle();
            let (keep, drop) = std::mem::take(&mut *idle)
                .into_iter()
                .partition(|i| i.idle_since.elapsed() < max_idle);
            *idle = keep;
            drop
        };
        self.idle_total.fetch_sub(dropped.len(), Ordering::Relaxed);
        dropped.len()
    }

    /// Warm instances waiting now.
    pub fn len(&self) -> usize {
        self.idle().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for WarmPool {
    fn drop(&mut self) {
        let n = self.idle().len();
        self.idle_total.fetch_sub(n, Ordering::Relaxed);
    }
}
