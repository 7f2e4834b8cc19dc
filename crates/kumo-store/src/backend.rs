//! [`Store`]: the backend a server runs on, SQLite in its data folder (the default) or a
//! PostgreSQL shared by several nodes. Each storage trait's method is passed to the backend
//! in use: one `match`, no virtual call.

use crate::postgres::PgStore;
use crate::sqlite::SqliteStore;
use crate::{
    AliasSet, ClaimedEvent, Completion, ExecutionRecord, ExecutionSave, HistoryEntry, LogQuery,
    NewEvent, Published, QueueDepth, SealedSecret, Signal, StoredToken, Swept, VersionDeleted,
    WorkflowRecord,
};
use anyhow::Context as _;
use kumo_core::{
    AliasRecord, AuditEntry, Canary, CounterError, EventRecord, Expect, FunctionRecord,
    InvocationRecord, KeyPage, KvEntry, KvWrite, LogRecord, NamespaceRecord, NamespaceUse,
    ObjectInfo, Quotas, SecretInfo, UsageBy, UsageRow, VersionRecord,
};
use std::collections::HashSet;
use std::path::Path;

type Result<T> = anyhow::Result<T>;

#[derive(Clone)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl Store {
    /// The embedded backend: the SQLite database at `path`, created if missing.
    pub async fn open(path: &Path) -> Result<Self> {
        Ok(Self::Sqlite(SqliteStore::open(path).await?))
    }

    /// The shared backend: the PostgreSQL database at `url`, for node `node`.
    pub async fn open_postgres(url: &str, node: &str) -> Result<Self> {
        Ok(Self::Postgres(PgStore::open(url, node).await?))
    }

    /// The code (sha256) of every function and version: what blobs and compiled artifacts
    /// must be kept.
    pub async fn code_in_use(&self) -> Result<HashSet<String>> {
        match self {
            Self::Sqlite(s) => s.code_in_use().await,
            Self::Postgres(p) => p.code_in_use().await,
        }
    }

    /// The newest schema migration the database has had.
    pub async fn schema_version(&self) -> Result<i64> {
        match self {
            Self::Sqlite(s) => s.schema_version().await,
            Self::Postgres(p) => p.schema_version().await,
        }
    }

    /// The (bucket, etag) of every object: the files that must be kept.
    pub async fn object_files(&self) -> Result<HashSet<(String, String)>> {
        let sql = "SELECT bucket, etag FROM objects";
        let rows: Vec<(String, String)> = match self {
            Self::Sqlite(s) => sqlx::query_as(sql).fetch_all(&s.pool).await,
            Self::Postgres(p) => sqlx::query_as(sql).fetch_all(&p.pool).await,
        }
        .context("listing object files")?;
        Ok(rows.into_iter().collect())
    }

    /// Whether the database answers a query (readiness).
    pub async fn ping(&self) -> Result<()> {
        match self {
            Self::Sqlite(s) => sqlx::query("SELECT 1").execute(&s.pool).await.map(|_| ()),
            Self::Postgres(p) => sqlx::query("SELECT 1").execute(&p.pool).await.map(|_| ()),
        }
        .context("the database does not answer")
    }

    /// "sqlite" or "postgres".
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }

    pub async fn close(&self) {
        match self {
            Self::Sqlite(s) => s.close().await,
            Self::Postgres(p) => p.close().await,
        }
    }
}

/// Implements a storage trait for [`Store`] by passing each method to the backend.
macro_rules! pass_to_backend {
    ($trait:ident { $(fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)* }) => {
        impl crate::$trait for Store {
            $(
                async fn $name(&self $(, $arg: $ty)*) -> $ret {
                    match self {
                        Self::Sqlite(s) => s.$name($($arg),*).await,
                        Self::Postgres(p) => p.$name($($arg),*).await,
                    }
                }
            )*
        }
    };
}

pass_to_backend!(FunctionStore {
    fn upsert_function(&self, f: &FunctionRecord) -> Result<bool>;
    fn get_function(&self, name: &str) -> Result<Option<FunctionRecord>>;
    fn list_functions(&self) -> Result<Vec<FunctionRecord>>;
    fn delete_function(&self, name: &str) -> Result<bool>;
});

pass_to_backend!(VersionStore {
    fn publish_version(&self, function: &str, description: &str, now: i64) -> Result<Published>;
    fn get_version(&self, function: &str, version: u32) -> Result<Option<VersionRecord>>;
    fn list_versions(&self, function: &str) -> Result<Vec<VersionRecord>>;
    fn delete_version(&self, function: &str, version: u32) -> Result<VersionDeleted>;
    fn set_alias(
        &self,
        function: &str,
        name: &str,
        version: u32,
        canary: Option<Canary>,
        now: i64
    ) -> Result<AliasSet>;
    fn delete_alias(&self, function: &str, name: &str) -> Result<bool>;
    fn list_aliases(&self, function: Option<&str>) -> Result<Vec<AliasRecord>>;
});

pass_to_backend!(RecordStore {
    fn get_invocation(&self, request_id: &str) -> Result<Option<InvocationRecord>>;
    fn list_invocations(
        &self,
        function: Option<&str>,
        namespace: Option<&str>,
        limit: u32
    ) -> Result<Vec<InvocationRecord>>;
});

pass_to_backend!(UsageStore {
    fn usage(
        &self,
        since: i64,
        namespace: Option<&str>,
        by: UsageBy
    ) -> Result<(Vec<UsageRow>, UsageRow)>;
    fn sweep(&self, cutoff: i64) -> Result<Swept>;
});

pass_to_backend!(LogStore {
    fn list_logs(&self, q: &LogQuery) -> Result<Vec<LogRecord>>;
});

pass_to_backend!(EventQueue {
    fn submit_events_once(
        &self,
        events: &[(NewEvent<'_>, Option<&str>)]
    ) -> Result<Vec<(String, bool)>>;
    fn submit_event(
        &self,
        event: &NewEvent<'_>,
        idempotency_key: Option<&str>
    ) -> Result<(String, bool)>;
    fn submit_events(&self, events: &[NewEvent<'_>]) -> Result<()>;
    fn claim_events(&self, now: i64, lease_end: i64, limit: u32) -> Result<Vec<ClaimedEvent>>;
    fn extend_leases(&self, leases: &[(String, u32)], lease_end: i64) -> Result<u64>;
    fn admit_attempt(
        &self,
        id: &str,
        attempt: u32,
        function: &str,
        cap: usize,
        now: i64
    ) -> Result<bool>;
    fn next_due(&self) -> Result<Option<i64>>;
    fn complete_event(
        &self,
        id: &str,
        attempt: u32,
        completion: &Completion,
        now: i64,
        follow_up: Option<&NewEvent<'_>>
    ) -> Result<bool>;
    fn release_interrupted_events(&self, now: i64) -> Result<u64>;
    fn get_event(&self, id: &str) -> Result<Option<EventRecord>>;
    fn list_dead_events(&self, function: &str, limit: u32) -> Result<Vec<EventRecord>>;
    fn redrive(&self, function: &str, id: Option<&str>, now: i64) -> Result<Vec<String>>;
    fn queue_depths(&self) -> Result<Vec<QueueDepth>>;
});

pass_to_backend!(ScheduleStore {
    fn last_tick(&self, function: &str) -> Result<Option<i64>>;
    fn fire_tick(&self, function: &str, tick: i64, event: Option<&NewEvent<'_>>) -> Result<bool>;
    fn forget_schedule(&self, function: &str) -> Result<()>;
});

pass_to_backend!(KvStore {
    fn kv_get(&self, bucket: &str, key: &str) -> Result<Option<KvEntry>>;
    fn kv_exists(&self, bucket: &str, key: &str) -> Result<bool>;
    fn kv_put(&self, bucket: &str, key: &str, value: &[u8], expect: Expect<'_>) -> Result<KvWrite>;
    fn kv_delete(&self, bucket: &str, key: &str, expect: Expect<'_>) -> Result<bool>;
    fn kv_list(
        &self,
        bucket: &str,
        prefix: &str,
        cursor: Option<&str>,
        limit: u32
    ) -> Result<KeyPage>;
    fn kv_increment(
        &self,
        bucket: &str,
        key: &str,
        delta: i64
    ) -> Result<std::result::Result<i64, CounterError>>;
});

pass_to_backend!(ObjectInfoStore {
    fn object_info(&self, bucket: &str, key: &str) -> Result<Option<ObjectInfo>>;
    fn put_object_info(&self, info: &ObjectInfo, events: &[NewEvent<'_>]) -> Result<Option<String>>;
    fn delete_object_info(
        &self,
        bucket: &str,
        key: &str,
        events: &[NewEvent<'_>]
    ) -> Result<Option<String>>;
    fn list_object_infos(
        &self,
        bucket: &str,
        prefix: &str,
        cursor: Option<&str>,
        limit: u32
    ) -> Result<(Vec<ObjectInfo>, Option<String>)>;
});

pass_to_backend!(TokenStore {
    fn create_token(&self, token: &StoredToken) -> Result<bool>;
    fn list_tokens(&self) -> Result<Vec<StoredToken>>;
    fn revoke_token(&self, name: &str) -> Result<bool>;
    fn token_used(&self, name: &str, at: i64) -> Result<()>;
});

pass_to_backend!(AuditStore {
    fn append_audit(&self, entry: &AuditEntry) -> Result<()>;
    fn list_audit(&self, since: i64, namespace: Option<&str>, limit: u32) -> Result<Vec<AuditEntry>>;
});

pass_to_backend!(NamespaceStore {
    fn create_namespace(&self, namespace: &NamespaceRecord) -> Result<bool>;
    fn list_namespaces(&self) -> Result<Vec<NamespaceRecord>>;
    fn set_quotas(&self, namespace: &str, quotas: &Quotas) -> Result<bool>;
    fn delete_namespace(&self, namespace: &str) -> Result<bool>;
    fn namespace_in_use(&self, namespace: &str) -> Result<bool>;
    fn namespace_use(&self, namespace: &str) -> Result<NamespaceUse>;
});

pass_to_backend!(SecretStore {
    fn put_secret(&self, name: &str, sealed: &SealedSecret, at: i64) -> Result<bool>;
    fn get_secret(&self, name: &str) -> Result<Option<SealedSecret>>;
    fn list_secrets(&self) -> Result<Vec<SecretInfo>>;
    fn delete_secret(&self, name: &str) -> Result<bool>;
});

pass_to_backend!(WorkflowStore {
    fn put_workflow(&self, name: &str, definition: &str, triggers: &str, now: i64)
    -> Result<bool>;
    fn get_workflow(&self, name: &str) -> Result<Option<WorkflowRecord>>;
    fn list_workflows(&self) -> Result<Vec<WorkflowRecord>>;
    fn delete_workflow(&self, name: &str) -> Result<bool>;
    fn create_execution(
        &self,
        execution: &ExecutionRecord,
        save: &ExecutionSave,
        owner: &str,
        lease_until: i64
    ) -> Result<bool>;
    fn get_execution(&self, id: &str) -> Result<Option<ExecutionRecord>>;
    fn find_execution(&self, workflow: &str, name: &str) -> Result<Option<ExecutionRecord>>;
    fn list_executions(
        &self,
        workflow: &str,
        status: Option<&str>,
        limit: u32
    ) -> Result<Vec<ExecutionRecord>>;
    fn execution_threads(&self, id: &str) -> Result<Vec<(String, String)>>;
    fn execution_history(&self, id: &str, after: i64, limit: u32) -> Result<Vec<HistoryEntry>>;
    fn save_execution(&self, id: &str, owner: &str, save: &ExecutionSave) -> Result<bool>;
    fn write_executions(&self, batch: &[crate::ExecutionWrite<'_>]) -> Result<Vec<bool>>;
    fn redrive_execution(
        &self,
        id: &str,
        owner: &str,
        lease_until: i64,
        deadline: Option<i64>,
        save: &ExecutionSave
    ) -> Result<bool>;
    fn claim_executions(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: u32
    ) -> Result<Vec<ExecutionRecord>>;
    fn extend_execution_leases(&self, owner: &str, ids: &[String], lease_until: i64) -> Result<u64>;
    fn release_executions(&self, owner: &str) -> Result<u64>;
    fn signal_execution(
        &self,
        id: &str,
        thread: &str,
        kind: &str,
        body: &str,
        now: i64
    ) -> Result<bool>;
    fn execution_signals(&self, id: &str) -> Result<Vec<Signal>>;
    fn next_execution_due(&self) -> Result<Option<i64>>;
    fn workflow_usage(&self, since: i64, namespace: Option<&str>) -> Result<(u64, u64)>;
});
