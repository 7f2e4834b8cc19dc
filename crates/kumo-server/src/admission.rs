//! Admission: whether an invocation may start now, in one place for every trigger. Nothing
//! waits: a slot is taken now or the invocation is throttled (429 for a caller; an event goes
//! back to the queue). In order:
//! 1. an asynchronous attempt (any event: async invoke, schedule, topic, object event) takes
//!    one of its function's asynchronous share, so async work always leaves
//!    `--sync-reserve-percent` of it to synchronous callers (the server's share is kept by the
//!    dispatcher, whose workers are at most [`Admission::async_limit`]);
//! 2. the function version's `max_concurrency`;
//! 3. a server slot: the function's reserve (provisioned concurrency) first, else a shared one,
//!    of which a function without a `max_concurrency` of its own holds at most its fair share
//!    (`--function-share-percent`), so one slow function cannot take every slot;
//! 4. the function's `memory_mb` from the server's memory budget (`--max-memory`), so the
//!    invocations running at once never promise more memory than the machine has.

use crate::error::ApiError;
use crate::loaded::Entry;
use crate::slots::{Slot, Slots};
use kumo_core::{ErrorKind, FunctionRecord, Source, async_share, function_share};
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
    /// Percent of the shared slots one function without a `max_concurrency` may hold.
    function_share_percent: u8,
    /// Each function's counts (all its versions), handed to its loaded entries.
    by_function: Mutex<HashMap<String, FunctionCounts>>,
    /// Invocations running in each namespace, bounded by its `max_concurrency` quota.
    by_namespace: Mutex<HashMap<String, Arc<Slots>>>,
    /// The memory budget, in MiB.
    memory: Arc<Slots>,
}

/// The limits admission enforces across the server.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_concurrency: usize,
    pub(crate) sync_reserve_percent: u8,
    pub(crate) function_share_percent: u8,
    pub(crate) memory_budget_mb: usize,
}

/// What one function (all its versions) holds now; each loaded entry keeps these, so an
/// admission counts without a lock or a lookup.
#[derive(Clone)]
pub(crate) struct FunctionCounts {
    /// Asynchronous attempts running.
    async_running: Arc<Slots>,
    /// Shared server slots held.
    shared_held: Arc<Slots>,
    /// Its namespace's running invocations.
    namespace: Arc<Slots>,
}

/// What an admitted invocation holds while it runs; dropping it gives everything back.
pub(crate) struct Admitted {
    _async_share: Option<Slot>,
    _namespace: Slot,
    _function: Option<OwnedSemaphorePermit>,
    _fair_share: Option<Slot>,
    _server: Slot,
    memory: Option<Slot>,
}

impl Admitted {
    /// The invocation's share of the memory budget, to outlive it: a Lambda function's
    /// environment keeps it while it waits idle (frozen, its memory still in use).
    pub(crate) fn keep_memory(&mut self) -> Option<Slot> {
        self.memory.take()
    }
}

impl Admission {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            max_concurrency: limits.max_concurrency,
            shared: Slots::new(limits.max_concurrency),
            reserved: Mutex::default(),
            sync_reserve_percent: limits.sync_reserve_percent,
            function_share_percent: limits.function_share_percent,
            by_function: Mutex::default(),
            by_namespace: Mutex::default(),
            memory: Slots::new(limits.memory_budget_mb),
        }
    }

    /// The counts of function `name`, for its loaded entries (made on first use; kept, like
    /// its metrics, for as long as the server runs).
    pub(crate) fn for_function(&self, name: &str) -> FunctionCounts {
        lock(&self.by_function)
            .entry(name.to_string())
            .or_insert_with(|| FunctionCounts {
                async_running: Slots::new(usize::MAX),
                shared_held: Slots::new(usize::MAX),
                namespace: self.namespace(kumo_core::namespace_of(name)),
            })
            .clone()
    }

    /// The running invocations of `namespace` (made on first use, unbounded until a quota
    /// says otherwise).
    fn namespace(&self, namespace: &str) -> Arc<Slots> {
        lock(&self.by_namespace)
            .entry(namespace.to_string())
            .or_insert_with(|| Slots::new(usize::MAX))
            .clone()
    }

    /// Applies the namespaces' `max_concurrency` quotas (none: unbounded).
    pub(crate) fn set_namespace_limits(&self, namespaces: &[kumo_core::NamespaceRecord]) {
        for namespace in namespaces {
            let limit = namespace
                .quotas
                .max_concurrency
                .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
            self.namespace(&namespace.name).set_limit(limit);
        }
    }

    /// Invocations running in `namespace` now.
    pub(crate) fn running_in(&self, namespace: &str) -> usize {
        self.namespace(namespace).in_use()
    }

    /// The memory budget, in MiB: in use now, and the limit (no function may ask for more;
    /// refused at deploy).
    pub(crate) fn memory(&self) -> &Slots {
        &self.memory
    }

    /// Takes what an invocation of `entry` coming from `source` needs, or says why not
    /// (always `throttled`).
    /// `memory_held`: the invocation runs in a Lambda environment that already holds its
    /// share of the memory budget, so it takes none.
    pub(crate) fn admit(
        &self,
        entry: &Entry,
        source: Source,
        memory_held: bool,
    ) -> Result<Admitted, ApiError> {
        let record = &entry.record;
        let async_share = match source {
            Source::Event(_) => Some(self.take_async_share(entry)?),
            // A workflow's task waits for its answer, as a synchronous call does.
            Source::Http | Source::Invoke | Source::Call | Source::Workflow => None,
        };
        let namespace = entry.counts.namespace.try_take().ok_or_else(|| {
            throttled(format!(
                "namespace {:?} is at its max_concurrency quota of {}",
                kumo_core::namespace_of(&record.name),
                entry.counts.namespace.limit()
            ))
        })?;
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
        let (server, fair_share) = match reserved.and_then(|r| r.try_take()) {
            Some(slot) => (slot, None),
            None => {
                let fair_share = self.take_fair_share(entry)?;
                let slot = self.shared.try_take().ok_or_else(|| {
                    throttled(format!(
                        "the server is at its max_concurrency of {}",
                        self.max_concurrency
                    ))
                })?;
                (slot, fair_share)
            }
        };
        let memory_mb = record.config.memory_mb as usize;
        let memory = match memory_held {
            true => None,
            false => Some(self.memory.try_take_many(memory_mb).ok_or_else(|| {
                throttled(format!(
                    "the server's memory budget of {} MiB is spent (this function needs {memory_mb} MiB; --max-memory)",
                    self.memory.limit()
                ))
            })?),
        };
        Ok(Admitted {
            _async_share: async_share,
            _namespace: namespace,
            _function: function,
            _fair_share: fair_share,
            _server: server,
            memory,
        })
    }

    fn take_async_share(&self, entry: &Entry) -> Result<Slot, ApiError> {
        let record = &entry.record;
        let limit = record.config.max_concurrency.map_or(usize::MAX, |n| {
            async_share(n as usize, self.sync_reserve_percent)
        });
        entry
            .counts
            .async_running
            .try_take_under(limit)
            .ok_or_else(|| {
                throttled(format!(
                    "asynchronous attempts of function {:?} are at their share ({limit}) of its max_concurrency",
                    record.name
                ))
            })
    }

    /// A function with its own `max_concurrency` is bounded by it; any other holds at most
    /// its fair share of the shared slots.
    fn take_fair_share(&self, entry: &Entry) -> Result<Option<Slot>, ApiError> {
        let record = &entry.record;
        if record.config.max_concurrency.is_some() {
            return Ok(None);
        }
        let limit = function_share(self.shared.limit(), self.function_share_percent);
        let taken = entry
            .counts
            .shared_held
            .try_take_under(limit)
            .ok_or_else(|| {
                throttled(format!(
                    "function {:?} holds its fair share of the server: {limit} of {} shared slots (--function-share-percent {}, or set its max_concurrency)",
                    record.name,
                    self.shared.limit(),
                    self.function_share_percent
                ))
            })?;
        Ok(Some(taken))
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
