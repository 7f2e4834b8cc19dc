//! `GET /metrics`: the platform's metrics in the Prometheus/OpenMetrics text format, through
//! `prometheus-client`. Invocation metrics are fed by the invocation record itself (one value
//! feeds the record, the log and the metrics, so they never disagree); gauges of state that
//! lives elsewhere (loaded functions, queue, breakers) are read when scraped.

use crate::AppState;
use kumo_core::{InvocationRecord, Outcome, Source};
use kumo_store::prelude::*;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::OnceLock;
use std::sync::atomic::Ordering;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InvocationLabels {
    function: String,
    outcome: String,
    trigger: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FunctionLabels {
    function: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CircuitLabels {
    destination: String,
    state: String,
}

/// Invocation durations: 100 µs to ~14 min (past the longest timeout) in ×2 steps.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 24))
}

pub struct Metrics {
    registry: Registry,
    invocations: Family<InvocationLabels, Counter>,
    durations: Family<FunctionLabels, Histogram>,
    cold_starts: Family<FunctionLabels, Counter>,
    cold_start_durations: Family<FunctionLabels, Histogram>,
    throttles: Family<FunctionLabels, Counter>,
    retries: Family<FunctionLabels, Counter>,
    reuse_fallbacks: Family<FunctionLabels, Counter>,
    in_flight_by_function: Family<FunctionLabels, Gauge>,
    // Read at scrape time.
    compilations: Counter,
    loaded: Gauge,
    in_flight: Gauge,
    concurrency_limit: Gauge,
    warm_instances: Gauge,
    pooling: Gauge,
    events_pending: Gauge,
    queue_depth: Family<FunctionLabels, Gauge>,
    queue_age: Family<FunctionLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    circuits: Family<CircuitLabels, Gauge>,
    connections_refused: Counter,
    connections_open: Gauge,
    connection_limit: Gauge,
    /// The accept loop's open connections, read at scrape time.
    open_connections: OnceLock<std::sync::Arc<crate::slots::Slots>>,
    memory_reserved: Gauge,
    memory_budget: Gauge,
    unrecorded_refusals: Counter,
    records_pending: Gauge,
    disk_low: Gauge,
    auth_refusals: Family<RefusalLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    /// `unauthorized` or `forbidden`.
    code: String,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut m = Self {
            registry: Registry::default(),
            invocations: Family::default(),
            durations: Family::new_with_constructor(duration_histogram),
            cold_starts: Family::default(),
            cold_start_durations: Family::new_with_constructor(duration_histogram),
            throttles: Family::default(),
            retries: Family::default(),
            reuse_fallbacks: Family::default(),
            in_flight_by_function: Family::default(),
            compilations: Counter::default(),
            loaded: Gauge::default(),
            in_flight: Gauge::default(),
            concurrency_limit: Gauge::default(),
            warm_instances: Gauge::default(),
            pooling: Gauge::default(),
            events_pending: Gauge::default(),
            queue_depth: Family::default(),
            queue_age: Family::default(),
            circuits: Family::default(),
            connections_refused: Counter::default(),
            connections_open: Gauge::default(),
            connection_limit: Gauge::default(),
            open_connections: OnceLock::new(),
            memory_reserved: Gauge::default(),
            memory_budget: Gauge::default(),
            unrecorded_refusals: Counter::default(),
            records_pending: Gauge::default(),
            disk_low: Gauge::default(),
            auth_refusals: Family::default(),
        };
        // Clones share their values with the fields; counters get `_total` appended, and every
        // help text a final period.
        let r = &mut m.registry;
        r.register(
            "kumo_invocations",
            "Invocations by function, outcome and trigger",
            m.invocations.clone(),
        );
        r.register(
            "kumo_invocation_duration_seconds",
            "How long invocations ran",
            m.durations.clone(),
        );
        r.register(
            "kumo_cold_starts",
            "Invocations that had to load their function first",
            m.cold_starts.clone(),
        );
        r.register(
            "kumo_cold_start_duration_seconds",
            "Load time of cold starts (not part of the invocation's duration)",
            m.cold_start_durations.clone(),
        );
        r.register(
            "kumo_throttles",
            "Invocations refused for concurrency (429)",
            m.throttles.clone(),
        );
        r.register(
            "kumo_retries",
            "Failed asynchronous attempts scheduled to be tried again",
            m.retries.clone(),
        );
        r.register(
            "kumo_reuse_fallbacks",
            "Functions asking for instance reuse served with fresh instances instead, as an instance failed its second request",
            m.reuse_fallbacks.clone(),
        );
        r.register(
            "kumo_function_invocations_in_flight",
            "Invocations running now, by function",
            m.in_flight_by_function.clone(),
        );
        r.register(
            "kumo_compilations",
            "Wasm compilations to machine code since start",
            m.compilations.clone(),
        );
        r.register(
            "kumo_functions_loaded",
            "Function versions loaded in memory",
            m.loaded.clone(),
        );
        r.register(
            "kumo_invocations_in_flight",
            "Invocations running now (concurrency in use)",
            m.in_flight.clone(),
        );
        r.register(
            "kumo_concurrency_limit",
            "Invocations the server runs at once at most",
            m.concurrency_limit.clone(),
        );
        r.register(
            "kumo_warm_instances",
            "Instances kept warm for reuse, across all functions",
            m.warm_instances.clone(),
        );
        r.register(
            "kumo_pooling_allocator",
            "1 when instances come from the pooling allocator",
            m.pooling.clone(),
        );
        r.register(
            "kumo_events_pending",
            "Asynchronous events not yet finished (queued, waiting for a retry, running)",
            m.events_pending.clone(),
        );
        r.register(
            "kumo_queue_depth",
            "Asynchronous events not yet finished, by function",
            m.queue_depth.clone(),
        );
        r.register(
            "kumo_queue_oldest_age_seconds",
            "Age of the oldest unfinished asynchronous event, by function",
            m.queue_age.clone(),
        );
        r.register(
            "kumo_outbound_circuit_open",
            "1 while the circuit breaker of an outbound destination is open or half-open \
             (requests fail fast)",
            m.circuits.clone(),
        );
        r.register(
            "kumo_connections_refused",
            "Connections past the cap of open connections, answered 503 (or their /healthz) and closed",
            m.connections_refused.clone(),
        );
        r.register(
            "kumo_connections_open",
            "Connections open now (under the cap)",
            m.connections_open.clone(),
        );
        r.register(
            "kumo_connection_limit",
            "Connections the server keeps open at most",
            m.connection_limit.clone(),
        );
        r.register(
            "kumo_memory_reserved_bytes",
            "Memory limits of the invocations running now and of idle Lambda environments, counted against the budget",
            m.memory_reserved.clone(),
        );
        r.register(
            "kumo_memory_budget_bytes",
            "Memory the invocations running at once may ask for in total (--max-memory)",
            m.memory_budget.clone(),
        );
        r.register(
            "kumo_unrecorded_refusals",
            "Invocations refused (503) because their records could not be stored (a full disk)",
            m.unrecorded_refusals.clone(),
        );
        r.register(
            "kumo_records_pending",
            "Invocation records waiting to be written (kept while the store refuses them)",
            m.records_pending.clone(),
        );
        r.register(
            "kumo_disk_low",
            "1 while free disk space is below --min-free-disk (new data is refused)",
            m.disk_low.clone(),
        );
        r.register(
            "kumo_auth_refusals",
            "Requests refused for their token: unauthorized (none or not valid) or forbidden (the role)",
            m.auth_refusals.clone(),
        );
        m
    }
}

impl Metrics {
    /// The accept loop's connections, to report at each scrape.
    pub(crate) fn watch_connections(&self, open: std::sync::Arc<crate::slots::Slots>) {
        let _ = self.open_connections.set(open);
    }

    /// A request refused for its token (`code`: unauthorized or forbidden).
    pub(crate) fn auth_refusal(&self, code: &str) {
        self.auth_refusals
            .get_or_create(&RefusalLabels {
                code: code.to_string(),
            })
            .inc();
    }

    pub(crate) fn unrecorded_refusal(&self) {
        self.unrecorded_refusals.inc();
    }

    pub(crate) fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    /// One invocation's end, from its record.
    pub fn observe(&self, record: &InvocationRecord, per_function: &FunctionMetrics) {
        let function = || FunctionLabels {
            function: record.function.clone(),
        };
        let labels = || InvocationLabels {
            function: record.function.clone(),
            outcome: record.outcome.as_str().to_string(),
            trigger: record.trigger.as_str().to_string(),
        };
        if record.outcome == Outcome::Ok && record.trigger == Source::Http {
            per_function
                .ok_http
                .get_or_init(|| self.invocations.get_or_create_owned(&labels()))
                .inc();
        } else {
            self.invocations.get_or_create(&labels()).inc();
        }
        if record.outcome == Outcome::Throttled {
            self.throttles.get_or_create(&function()).inc();
            return;
        }
        per_function.durations.observe(record.duration_ms / 1000.0);
        if let Some(init_ms) = record.init_ms {
            self.cold_starts.get_or_create(&function()).inc();
            self.cold_start_durations
                .get_or_create(&function())
                .observe(init_ms / 1000.0);
        }
    }

    /// `function`'s own metrics, for [`Self::observe`] and [`FunctionMetrics::running`].
    pub fn for_function(&self, function: &str) -> FunctionMetrics {
        let labels = FunctionLabels {
            function: function.to_string(),
        };
        FunctionMetrics {
            in_flight: self.in_flight_by_function.get_or_create_owned(&labels),
            durations: self.durations.get_or_create_owned(&labels),
            ok_http: OnceLock::new(),
        }
    }

    /// A failed asynchronous attempt that will be tried again.
    pub fn reuse_fell_back(&self, function: &str) {
        self.reuse_fallbacks
            .get_or_create(&FunctionLabels {
                function: function.to_string(),
            })
            .inc();
    }

    /// An invocation refused for concurrency that leaves no record (a deferred event).
    pub fn throttled(&self, function: &str) {
        self.throttles
            .get_or_create(&FunctionLabels {
                function: function.to_string(),
            })
            .inc();
    }

    pub fn retried(&self, function: &str) {
        self.retries
            .get_or_create(&FunctionLabels {
                function: function.to_string(),
            })
            .inc();
    }
}

/// One function's metrics that every invocation updates, looked up by label once per loaded
/// version (kept in its entry) rather than on every invocation.
pub struct FunctionMetrics {
    in_flight: Gauge,
    durations: Histogram,
    /// Its counter of successful HTTP invocations (the most common label set), found once on
    /// first use rather than by label lookup (three strings built and hashed) per request.
    ok_http: OnceLock<Counter>,
}

impl FunctionMetrics {
    /// Counts an invocation as running until the guard is dropped (also when the request is
    /// abandoned mid-way).
    pub fn running(&self) -> RunningGuard {
        self.in_flight.inc();
        RunningGuard(self.in_flight.clone())
    }
}

/// See [`FunctionMetrics::running`].
pub struct RunningGuard(Gauge);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn gauge_value(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The text exposition, with the scrape-time gauges read now.
/// The lines of rendered metrics a token of `namespace` may see: none that names another
/// namespace's function, and none about outbound destinations (a host names no namespace).
pub(crate) fn only_namespace(text: &str, namespace: &str) -> String {
    let visible = |line: &&str| {
        if line.contains("destination=\"") {
            return false;
        }
        match line.split_once("function=\"") {
            Some((_, rest)) => {
                let function = rest.split('"').next().unwrap_or_default();
                kumo_core::in_namespace(function, namespace)
            }
            None => true,
        }
    };
    let mut kept: String = text.lines().filter(visible).collect::<Vec<_>>().join("\n");
    kept.push('\n');
    kept
}

pub(crate) async fn render(state: &AppState) -> anyhow::Result<String> {
    let m = &state.invoker.metrics;
    m.compilations
        .inner()
        .store(state.runtime.compilations(), Ordering::Relaxed);
    m.loaded.set(gauge_value(state.invoker.loaded_count()));
    m.in_flight
        .set(gauge_value(state.invoker.admission.in_flight()));
    m.concurrency_limit
        .set(gauge_value(state.invoker.admission.max_concurrency()));
    if let Some(open) = m.open_connections.get() {
        m.connections_open.set(gauge_value(open.in_use()));
        m.connection_limit.set(gauge_value(open.limit()));
    }
    m.records_pending.set(gauge_value(state.recorder.backlog()));
    m.disk_low.set(i64::from(state.disk.is_low()));
    let memory = state.invoker.admission.memory();
    m.memory_reserved.set(gauge_value(memory.in_use() << 20));
    m.memory_budget.set(gauge_value(memory.limit() << 20));
    m.warm_instances
        .set(gauge_value(state.runtime.warm_instances()));
    m.pooling.set(i64::from(
        state.runtime.allocator() == kumo_runtime::Allocator::Pooling,
    ));
    let now = kumo_core::now_ms();
    let queues = state.store.queue_depths().await?;
    m.events_pending
        .set(queues.iter().map(|q| q.depth).sum::<i64>());
    m.queue_depth.clear();
    m.queue_age.clear();
    for queue in queues {
        let labels = FunctionLabels {
            function: queue.function,
        };
        m.queue_depth.get_or_create(&labels).set(queue.depth);
        m.queue_age
            .get_or_create(&labels)
            .set((now - queue.oldest_enqueued_at).max(0) as f64 / 1000.0);
    }
    m.circuits.clear();
    for (destination, breaker) in state.runtime.breaker_states() {
        m.circuits
            .get_or_create(&CircuitLabels {
                destination,
                state: breaker.as_str().to_string(),
            })
            .set(i64::from(breaker != kumo_runtime::BreakerState::Closed));
    }
    let mut body = String::new();
    prometheus_client::encoding::text::encode(&mut body, &m.registry)?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_namespace_sees_its_own_functions_and_the_totals() {
        let text = "# TYPE kumo_invocations counter\n\
            kumo_invocations_total{function=\"hello\",outcome=\"ok\"} 1\n\
            kumo_invocations_total{function=\"shop/hello\",outcome=\"ok\"} 2\n\
            kumo_breaker_open{destination=\"api.example.com\"} 0\n\
            kumo_in_flight 3\n# EOF";
        let shop = super::only_namespace(text, "shop");
        assert!(shop.contains("shop/hello"));
        assert!(!shop.contains("function=\"hello\""));
        assert!(!shop.contains("destination"));
        assert!(shop.contains("kumo_in_flight 3"));
        assert!(shop.ends_with("# EOF\n"));
        let default = super::only_namespace(text, "default");
        assert!(default.contains("function=\"hello\""));
        assert!(!default.contains("shop/hello"));
    }
}
