//! Admission: whether an invocation may start now, in one place for every trigger. Nothing
//! waits: a slot is taken now or the invocation is throttled (429 for a caller; an event goes
//! back to the queue). In order:
//! 1. an asynchronous attempt (any event: async invoke, schedule, topic, object event) takes
//!    one of its function's asynchronous share, so async work always leaves
//!    `--sync-reserve-percent` of it to synchronous callers (the server's share is kept by the
//!    dispatcher, whose workers are at most [`Admission::async_limit`]);
//! 2. the function version's `max_concurrency`;
//! 3. a server slot: the function's reserve (provisioned concurrency) first, else a shared one.

use crate::error::ApiError;
use crate::loaded::Entry;
use crate::slots::{Slot, Slots};
use kumo_core::{ErrorKind, FunctionRecord, Source, async_share};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::OwnedSemaphorePermit;

pub(crate) struct Admission {
    max_concurrency: usize,
    /// The server's slots not reserved by provisioned concurrency.
    shared: Arc<Slots>,
    /// Slots reserved for functions with provisioned concurrency, by function name.
    reserved: Mutex<HashMap<String, Arc<Slots>>>,
    /// Percent of each function's concurrency, and of the server's, kept from async work.
    sync_reserve_percent: u8,
    /// Asynchronous attempts running now, by function name (all its versions).
    async_by_function: Arc<Mutex<HashMap<String, usize>>>,
}

/// What an admitted invocation holds while it runs; dropping it gives everything back.
pub(crate) struct Admitted {
    _async_share: Option<AsyncShare>,
    _function: Option<OwnedSemaphorePermit>,
    _server: Slot,
}

impl Admission {
    pub(crate) fn new(max_concurrency: usize, sync_reserve_percent: u8) -> Self {
        Self {
            max_concurrency,
            shared: Slots::new(max_concurrency),
            reserved: Mutex::default(),
            sync_reserve_percent,
            async_by_function: Arc::default(),
        }
    }

    /// Takes what an invocation of `entry` coming from `source` needs, or says why not
    /// (always `throttled`).
    pub(crate) fn admit(&self, entry: &Entry, source: Source) -> Result<Admitted, ApiError> {
        let record = &entry.record;
        let async_share = match source {
            Source::Event(_) => Some(self.take_async_share(record)?),
            Source::Http | Source::Invoke | Source::Call => None,
        };
        let function = match &entry.slots {
            Some(slots) => Some(slots.clone().try_acquire_owned().map_err(|_| {
                throttled(format!(
                    "function {:?} is at its max_concurrency of {}",
                    record.name,
                    record.config.max_concurrency.unwrap_or_default()
                ))
            })?),
            None => None,
        };
        let reserved = match record.config.provisioned_concurrency {
            Some(_) => self.reserved().get(&record.name).cloned(),
            None => None,
        };
        let server = reserved
            .and_then(|r| r.try_take())
            .or_else(|| self.shared.try_take())
            .ok_or_else(|| {
                throttled(format!(
                    "the server is at its max_concurrency of {}",
                    self.max_concurrency
                ))
            })?;
        Ok(Admitted {
            _async_share: async_share,
            _function: function,
            _server: server,
        })
    }

    fn take_async_share(&self, record: &FunctionRecord) -> Result<AsyncShare, ApiError> {
        let limit = record.config.max_concurrency.map_or(usize::MAX, |n| {
            async_share(n as usize, self.sync_reserve_percent)
        });
        let mut running = lock(&self.async_by_function);
        let n = running.entry(record.name.clone()).or_default();
        if *n >= limit {
            return Err(throttled(format!(
                "asynchronous attempts of function {:?} are at their share ({limit}) of its max_concurrency",
                record.name
            )));
        }
        *n += 1;
        Ok(AsyncShare {
            running: self.async_by_function.clone(),
            function: record.name.clone(),
        })
    }

    /// Asynchronous attempts the server runs at once at most (the dispatcher's workers).
    pub(crate) fn async_limit(&self) -> usize {
        async_share(self.max_concurrency, self.sync_reserve_percent)
    }

    /// Invocations the server runs at once at most.
    pub(crate) fn max_concurrency(&self) -> usize {
        self.max_concurrency
    }

    /// Invocations running now, across all functions.
    pub(crate) fn in_flight(&self) -> usize {
        let reserved: usize = self.reserved().values().map(|s| s.in_use()).sum();
        self.shared.in_use() + reserved
    }

    fn reserved(&self) -> MutexGuard<'_, HashMap<String, Arc<Slots>>> {
        lock(&self.reserved)
    }

    /// Slots of the server a function named `name` could reserve: those not reserved by the
    /// other functions.
    pub(crate) fn reservable(&self, name: &str, functions: &[FunctionRecord]) -> usize {
        let others: usize = functions
            .iter()
            .filter(|f| f.name != name)
            .filter_map(|f| f.config.provisioned_concurrency)
            .map(|n| n as usize)
            .sum();
        self.max_concurrency.saturating_sub(others)
    }

    /// Sets aside the provisioned concurrency of `functions` (all deployed functions) and
    /// leaves the rest of the server's slots shared. What does not fit (a server restarted
    /// with a lower limit) is reserved only as far as it goes.
    pub(crate) fn reserve(&self, functions: &[FunctionRecord]) {
        let mut reserved = self.reserved();
        let mut left = self.max_concurrency;
        let mut next = HashMap::new();
        for f in functions {
            let Some(wanted) = f.config.provisioned_concurrency else {
                continue;
            };
            let n = (wanted as usize).min(left);
            if n < wanted as usize {
                tracing::warn!(
                    function = %f.name,
                    "provisioned_concurrency {wanted} does not fit the server's max_concurrency; {n} reserved"
                );
            }
            left -= n;
            let slots = reserved.remove(&f.name).unwrap_or_else(|| Slots::new(n));
            slots.set_limit(n);
            next.insert(f.name.clone(), slots);
        }
        *reserved = next;
        self.shared.set_limit(left);
    }
}

fn throttled(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::Throttled, message)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The maps are consistent between statements, so a poisoned lock is still usable.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Held while an asynchronous attempt runs.
struct AsyncShare {
    running: Arc<Mutex<HashMap<String, usize>>>,
    function: String,
}

impl Drop for AsyncShare {
    fn drop(&mut self) {
        let mut running = lock(&self.running);
        if let Some(n) = running.get_mut(&self.function) {
            *n -= 1;
            if *n == 0 {
                running.remove(&self.function);
            }
        }
    }
}
