//! What a storage backend provides, one trait per concern. SQLite's
//! [`SqliteStore`](crate::SqliteStore) and PostgreSQL's [`PgStore`](crate::PgStore) implement
//! them all and pass the same conformance suite (`tests/conformance.rs`). The contract each
//! method documents (atomicity, ordering, what "once" means) is what callers rely on,
//! whatever the engine.
//!
//! Methods return `impl Future + Send` (static dispatch: the hot path pays no virtual call;
//! [`Store`](crate::Store) is one enum over the backends). Writes of the hot path, invocation
//! records and log lines, do not go through these traits but through the batching
//! [`RecordWriter`](crate::RecordWriter), which writes to either backend.

use crate::{
    AliasSet, ClaimedEvent, Completion, ExecutionRecord, ExecutionSave, HistoryEntry, LogQuery,
    NewEvent, Published, QueueDepth, Signal, Swept, VersionDeleted, WorkflowRecord,
};
use kumo_core::{
    AliasRecord, Canary, CounterError, EventRecord, Expect, FunctionRecord, InvocationRecord,
    KeyPage, KvEntry, KvWrite, LogRecord, ObjectInfo, UsageBy, UsageRow, VersionRecord,
};
use std::future::Future;

type Result<T> = anyhow::Result<T>;

/// Deployed functions (`$LATEST`).
pub trait FunctionStore {
    /// Inserts or replaces a function; true when it was created.
    fn upsert_function(&self, f: &FunctionRecord) -> impl Future<Output = Result<bool>> + Send;
    fn get_function(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<FunctionRecord>>> + Send;
    /// Every function, by name.
    fn list_functions(&self) -> impl Future<Output = Result<Vec<FunctionRecord>>> + Send;
    /// Deletes a function with its versions and aliases (one transaction); false if there was
    /// none. Its records and logs stay until retention.
    fn delete_function(&self, name: &str) -> impl Future<Output = Result<bool>> + Send;
}

/// Published versions (immutable) and aliases of functions.
pub trait VersionStore {
    /// Freezes `$LATEST` into the next version number (numbers are never reused, even after a
    /// deletion), unless it equals the newest version (returned instead). Atomic.
    fn publish_version(
        &self,
        function: &str,
        description: &str,
        now: i64,
    ) -> impl Future<Output = Result<Published>> + Send;
    fn get_version(
        &self,
        function: &str,
        version: u32,
    ) -> impl Future<Output = Result<Option<VersionRecord>>> + Send;
    /// A function's versions, oldest first.
    fn list_versions(
        &self,
        function: &str,
    ) -> impl Future<Output = Result<Vec<VersionRecord>>> + Send;
    /// Refused while an alias points at the version.
    fn delete_version(
        &self,
        function: &str,
        version: u32,
    ) -> impl Future<Output = Result<VersionDeleted>> + Send;
    /// Creates or moves an alias; refused when a version it names does not exist.
    fn set_alias(
        &self,
        function: &str,
        name: &str,
        version: u32,
        canary: Option<Canary>,
        now: i64,
    ) -> impl Future<Output = Result<AliasSet>> + Send;
    fn delete_alias(&self, function: &str, name: &str)
    -> impl Future<Output = Result<bool>> + Send;
    /// The aliases of one function, or of all (by function, then name).
    fn list_aliases(
        &self,
        function: Option<&str>,
    ) -> impl Future<Output = Result<Vec<AliasRecord>>> + Send;
}

/// Invocation records, as the records writer stored them.
pub trait RecordStore {
    /// One invocation by request id (kumo's UUIDv7s; any other id names none).
    fn get_invocation(
        &self,
        request_id: &str,
    ) -> impl Future<Output = Result<Option<InvocationRecord>>> + Send;
    /// The newest `limit` invocations of one function, or of all (of one namespace's
    /// functions when it is given), newest first.
    fn list_invocations(
        &self,
        function: Option<&str>,
        namespace: Option<&str>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<InvocationRecord>>> + Send;
}

/// Usage reports over the invocation records, and retention.
pub trait UsageStore {
    /// Usage since `since` (unix ms) of one namespace's functions or of all, grouped as
    /// asked, rows sorted by key, and the total.
    fn usage(
        &self,
        since: i64,
        namespace: Option<&str>,
        by: UsageBy,
    ) -> impl Future<Output = Result<(Vec<UsageRow>, UsageRow)>> + Send;
    /// Deletes records, log lines and finished events older than `cutoff`, in batches that
    /// never hold the store's write lock for long.
    fn sweep(&self, cutoff: i64) -> impl Future<Output = Result<Swept>> + Send;
}

/// Guests' output lines, as the records writer stored them.
pub trait LogStore {
    /// The newest `q.limit` matching lines, oldest first; line ids grow, so `after_id` pages.
    fn list_logs(&self, q: &LogQuery) -> impl Future<Output = Result<Vec<LogRecord>>> + Send;
}

/// The durable queue of asynchronous events (at-least-once delivery with leases).
pub trait EventQueue {
    /// Stores events, each with an optional idempotency key: a key used for the same
    /// function within the window returns the first event's id and `true`, storing nothing.
    /// All in one transaction.
    fn submit_events_once(
        &self,
        events: &[(NewEvent<'_>, Option<&str>)],
    ) -> impl Future<Output = Result<Vec<(String, bool)>>> + Send;
    /// One event, as [`Self::submit_events_once`].
    fn submit_event(
        &self,
        event: &NewEvent<'_>,
        idempotency_key: Option<&str>,
    ) -> impl Future<Output = Result<(String, bool)>> + Send;
    /// Stores events without keys, all or none.
    fn submit_events(&self, events: &[NewEvent<'_>]) -> impl Future<Output = Result<()>> + Send;
    /// Leases up to `limit` due events until `lease_end`, counting an attempt on each. An
    /// event is claimed by one caller only, however many claim at once.
    fn claim_events(
        &self,
        now: i64,
        lease_end: i64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<ClaimedEvent>>> + Send;
    /// Moves the leases of running attempts (event id, attempt) that this node still holds
    /// to at least `lease_end`; how many it moved. A node renews its leases while the
    /// attempts run, so a lease can be short and a dead node's events soon retried.
    fn extend_leases(
        &self,
        leases: &[(String, u32)],
        lease_end: i64,
    ) -> impl Future<Output = Result<u64>> + Send;
    /// Whether claimed attempt `attempt` of event `id`, of function `function` (events
    /// naming `function` or `function:QUALIFIER`), may run now with at most `cap` attempts of
    /// the function running at once across every node sharing the store; true admits it.
    /// On SQLite (one node) the server's own admission is the bound, and this says yes.
    fn admit_attempt(
        &self,
        id: &str,
        attempt: u32,
        function: &str,
        cap: usize,
        now: i64,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// When the next queued or failed event is due, if any.
    fn next_due(&self) -> impl Future<Output = Result<Option<i64>>> + Send;
    /// Records an attempt's end (with a follow-up event in the same transaction), only if
    /// that attempt still holds the event's lease; false otherwise.
    fn complete_event(
        &self,
        id: &str,
        attempt: u32,
        completion: &Completion,
        now: i64,
        follow_up: Option<&NewEvent<'_>>,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Turns events left running (by a stopped server) into failed attempts due `now`.
    fn release_interrupted_events(&self, now: i64) -> impl Future<Output = Result<u64>> + Send;
    fn get_event(&self, id: &str) -> impl Future<Output = Result<Option<EventRecord>>> + Send;
    /// Dead events of a function (`NAME` and `NAME:*` targets), newest first.
    fn list_dead_events(
        &self,
        function: &str,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<EventRecord>>> + Send;
    /// Queues dead events again (one, or all of the function's) with attempts and age reset.
    fn redrive(
        &self,
        function: &str,
        id: Option<&str>,
        now: i64,
    ) -> impl Future<Output = Result<Vec<String>>> + Send;
    /// Events waiting per function, with the oldest one's age.
    fn queue_depths(&self) -> impl Future<Output = Result<Vec<QueueDepth>>> + Send;
}

/// Schedule ticks: each fires once.
pub trait ScheduleStore {
    fn last_tick(&self, function: &str) -> impl Future<Output = Result<Option<i64>>> + Send;
    /// Records `tick` as fired with its event, in one transaction; false (nothing stored) if
    /// it, or a later tick, had fired already.
    fn fire_tick(
        &self,
        function: &str,
        tick: i64,
        event: Option<&NewEvent<'_>>,
    ) -> impl Future<Output = Result<bool>> + Send;
    fn forget_schedule(&self, function: &str) -> impl Future<Output = Result<()>> + Send;
}

/// Key-value buckets: strongly consistent, an etag per write, conditional writes as single
/// guarded statements, keys ordered byte-wise.
pub trait KvStore {
    fn kv_get(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<KvEntry>>> + Send;
    fn kv_exists(&self, bucket: &str, key: &str) -> impl Future<Output = Result<bool>> + Send;
    fn kv_put(
        &self,
        bucket: &str,
        key: &str,
        value: &[u8],
        expect: Expect<'_>,
    ) -> impl Future<Output = Result<KvWrite>> + Send;
    /// False when nothing was deleted (no such key, or it did not hold what was expected).
    fn kv_delete(
        &self,
        bucket: &str,
        key: &str,
        expect: Expect<'_>,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// One page of keys starting with `prefix`, after `cursor`, in byte order.
    fn kv_list(
        &self,
        bucket: &str,
        prefix: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> impl Future<Output = Result<KeyPage>> + Send;
    /// Adds `delta` to the decimal counter at `key` (absent = 0) atomically; the inner error
    /// is a refusal, with nothing written.
    fn kv_increment(
        &self,
        bucket: &str,
        key: &str,
        delta: i64,
    ) -> impl Future<Output = Result<std::result::Result<i64, CounterError>>> + Send;
}

/// Objects' metadata (their bytes live in files the [`Objects`](crate::Objects) service
/// writes): one row per key, replaced or deleted together with the storage events it causes.
pub trait ObjectInfoStore {
    fn object_info(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<ObjectInfo>>> + Send;
    /// Creates or replaces the key's metadata and stores `events`, in one transaction;
    /// returns the etag it replaced (None: the key was new).
    fn put_object_info(
        &self,
        info: &ObjectInfo,
        events: &[NewEvent<'_>],
    ) -> impl Future<Output = Result<Option<String>>> + Send;
    /// Deletes the key's metadata and stores `events` (only if it existed), in one
    /// transaction; returns the etag deleted.
    fn delete_object_info(
        &self,
        bucket: &str,
        key: &str,
        events: &[NewEvent<'_>],
    ) -> impl Future<Output = Result<Option<String>>> + Send;
    /// One page of a bucket's objects whose key starts with `prefix`, in byte order, after
    /// `cursor`; and the cursor of the next page.
    fn list_object_infos(
        &self,
        bucket: &str,
        prefix: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> impl Future<Output = Result<(Vec<ObjectInfo>, Option<String>)>> + Send;
}

/// API tokens (only their secrets' hashes).
pub trait TokenStore {
    /// Stores a new token; false if one has the name already (nothing changes).
    fn create_token(&self, token: &crate::StoredToken)
    -> impl Future<Output = Result<bool>> + Send;
    /// Every token, by name.
    fn list_tokens(&self) -> impl Future<Output = Result<Vec<crate::StoredToken>>> + Send;
    /// Deletes a token; false if there was none.
    fn revoke_token(&self, name: &str) -> impl Future<Output = Result<bool>> + Send;
    /// Notes a use at `at` (unix ms); never moves the last use back.
    fn token_used(&self, name: &str, at: i64) -> impl Future<Output = Result<()>> + Send;
}

/// The audit trail of control-plane changes.
pub trait AuditStore {
    fn append_audit(
        &self,
        entry: &kumo_core::AuditEntry,
    ) -> impl Future<Output = Result<()>> + Send;
    /// The newest `limit` entries at or after `since` (unix ms), of one namespace or of all,
    /// oldest first.
    fn list_audit(
        &self,
        since: i64,
        namespace: Option<&str>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<kumo_core::AuditEntry>>> + Send;
}

/// Namespaces and their quotas (`default` always exists).
pub trait NamespaceStore {
    /// Stores a new namespace; false if it exists (nothing changes).
    fn create_namespace(
        &self,
        namespace: &kumo_core::NamespaceRecord,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Every namespace, by name.
    fn list_namespaces(
        &self,
    ) -> impl Future<Output = Result<Vec<kumo_core::NamespaceRecord>>> + Send;
    /// Replaces a namespace's quotas; false if there is no such namespace.
    fn set_quotas(
        &self,
        namespace: &str,
        quotas: &kumo_core::Quotas,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Deletes a namespace; false if there was none. The caller checks it is empty.
    fn delete_namespace(&self, namespace: &str) -> impl Future<Output = Result<bool>> + Send;
    /// Whether anything but records, logs and the audit trail still belongs to `namespace`:
    /// a function, a key, an object, a secret or a token.
    fn namespace_in_use(&self, namespace: &str) -> impl Future<Output = Result<bool>> + Send;
    /// What the namespace holds in the store: functions, key-value and object bytes, events
    /// waiting (its running invocations are the server's to count).
    fn namespace_use(
        &self,
        namespace: &str,
    ) -> impl Future<Output = Result<kumo_core::NamespaceUse>> + Send;
}

/// Function secrets, only ever sealed (the store never sees a value).
pub trait SecretStore {
    /// Stores or replaces a secret; true when it was created.
    fn put_secret(
        &self,
        name: &str,
        sealed: &crate::SealedSecret,
        at: i64,
    ) -> impl Future<Output = Result<bool>> + Send;
    fn get_secret(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<crate::SealedSecret>>> + Send;
    /// Every secret's name and times, by name.
    fn list_secrets(&self) -> impl Future<Output = Result<Vec<kumo_core::SecretInfo>>> + Send;
    /// Deletes a secret; false if there was none.
    fn delete_secret(&self, name: &str) -> impl Future<Output = Result<bool>> + Send;
}

/// Workflows and their executions. An execution is changed only by the node holding its
/// lease, one transaction per transition ([`Self::save_execution`]); anyone may signal it.
pub trait WorkflowStore {
    /// Creates or replaces a workflow's definition and triggers (JSON); true when it was
    /// created.
    fn put_workflow(
        &self,
        name: &str,
        definition: &str,
        triggers: &str,
        now: i64,
    ) -> impl Future<Output = Result<bool>> + Send;
    fn get_workflow(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<WorkflowRecord>>> + Send;
    /// Every workflow, by name.
    fn list_workflows(&self) -> impl Future<Output = Result<Vec<WorkflowRecord>>> + Send;
    /// False if there was none. Its executions stay (running ones run on: each has its own
    /// copy of the definition).
    fn delete_workflow(&self, name: &str) -> impl Future<Output = Result<bool>> + Send;
    /// Stores a new running execution with its first transition, leased to `owner`; false
    /// (nothing stored) when the workflow has an execution of that name already.
    fn create_execution(
        &self,
        execution: &ExecutionRecord,
        save: &ExecutionSave,
        owner: &str,
        lease_until: i64,
    ) -> impl Future<Output = Result<bool>> + Send;
    fn get_execution(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<ExecutionRecord>>> + Send;
    /// The workflow's execution named `name`.
    fn find_execution(
        &self,
        workflow: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<ExecutionRecord>>> + Send;
    /// The newest `limit` executions of a workflow (of one status if given), newest first.
    fn list_executions(
        &self,
        workflow: &str,
        status: Option<&str>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<ExecutionRecord>>> + Send;
    /// The (thread id, JSON) of every thread the execution has.
    fn execution_threads(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Vec<(String, String)>>> + Send;
    /// Up to `limit` history entries after `after` (a sequence number; 0: from the start).
    fn execution_history(
        &self,
        id: &str,
        after: i64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<HistoryEntry>>> + Send;
    /// Writes one transition, all or nothing, only while `owner` holds the lease; false
    /// (nothing written) otherwise.
    fn save_execution(
        &self,
        id: &str,
        owner: &str,
        save: &ExecutionSave,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// New executions and transitions of several executions in one transaction (group
    /// commit): for each, whether it was written (as [`Self::create_execution`] and
    /// [`Self::save_execution`] say; one that was not changed nothing).
    fn write_executions(
        &self,
        batch: &[crate::ExecutionWrite<'_>],
    ) -> impl Future<Output = Result<Vec<bool>>> + Send;
    /// Makes an ended, unsuccessful execution run again, leased to `owner`, with `save`
    /// (the failed thread re-entering its state); false if it is not such an execution.
    fn redrive_execution(
        &self,
        id: &str,
        owner: &str,
        lease_until: i64,
        deadline: Option<i64>,
        save: &ExecutionSave,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Leases up to `limit` running executions due by `now` whose lease is free or expired;
    /// each is claimed by one caller only.
    fn claim_executions(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<ExecutionRecord>>> + Send;
    /// Moves the leases `owner` still holds on `ids` to at least `lease_until`.
    fn extend_execution_leases(
        &self,
        owner: &str,
        ids: &[String],
        lease_until: i64,
    ) -> impl Future<Output = Result<u64>> + Send;
    /// Gives up every lease `owner` holds, its running executions due at once (a node's
    /// start after a crash, its shutdown).
    fn release_executions(&self, owner: &str) -> impl Future<Output = Result<u64>> + Send;
    /// Queues a signal for a running execution and makes it due at `now`; false (nothing
    /// stored) if it is not running.
    fn signal_execution(
        &self,
        id: &str,
        thread: &str,
        kind: &str,
        body: &str,
        now: i64,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// The signals waiting for an execution, oldest first.
    fn execution_signals(&self, id: &str) -> impl Future<Output = Result<Vec<Signal>>> + Send;
    /// When the next running execution is due and free of leases, if any.
    fn next_execution_due(&self) -> impl Future<Output = Result<Option<i64>>> + Send;
    /// (executions, transitions) of the executions started at or after `since`, of one
    /// namespace's workflows or of all.
    fn workflow_usage(
        &self,
        since: i64,
        namespace: Option<&str>,
    ) -> impl Future<Output = Result<(u64, u64)>> + Send;
}
