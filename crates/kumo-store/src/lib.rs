//! kumo's durable state in a data directory:
//!
//! ```text
//! DATA/kumo.db        SQLite (WAL): functions, versions, aliases, invocation and log chunks,
//!                     the event queue, key-value, workflows and their executions
//! DATA/blobs/<sha256> deployed code, content-addressed and immutable
//! DATA/objects/       object storage: one file per object version (`{bucket}/{etag}`)
//! DATA/cache/         compiled artifacts (owned by kumo-runtime)
//! ```
//!
//! Nothing in memory is authoritative: the server's caches are rebuilt from here on start.
//! With `--database`, the same state lives in PostgreSQL instead of `kumo.db` ([`PgStore`]),
//! and the files in a folder the nodes share or an S3-compatible bucket ([`open_bucket`]);
//! [`Store`] is whichever backend the server runs on, behind the traits of [`prelude`].

mod audit;
mod backend;
mod blobs;
mod codec;
mod disk_full;
mod invocations;
mod kv;
mod logs;
mod migrations;
mod namespaces;
mod objects;
mod postgres;
mod queue;
mod record_writer;
mod secrets;
mod sqlite;
mod sweep;
mod tokens;
mod traits;
mod usage;
mod uuid_time;
mod versions;
mod workflows;

pub use backend::Store;
pub use blobs::Blobs;
pub use disk_full::is_disk_full;
pub use migrations::SCHEMA_VERSION;
pub use objects::{Bucket, ObjectBody, ObjectError, Objects, Staged, open_bucket};
pub use postgres::{Change, ChangeFeed, ClusterLock, PgStore};
pub use queue::{ClaimedEvent, Completion, IDEMPOTENCY_WINDOW_MS, NewEvent, QueueDepth};
pub use record_writer::RecordWriter;
pub use secrets::SealedSecret;
pub use sqlite::{LogQuery, SqliteStore};
pub use sweep::remove_stale_files;
pub use tokens::StoredToken;
/// The storage traits, to bring their methods into scope: `use kumo_store::prelude::*`.
pub mod prelude {
    pub use crate::traits::{
        AuditStore, EventQueue, FunctionStore, KvStore, LogStore, NamespaceStore, ObjectInfoStore,
        RecordStore, ScheduleStore, SecretStore, TokenStore, UsageStore, VersionStore,
        WorkflowStore,
    };
}
pub use traits::{
    AuditStore, EventQueue, FunctionStore, KvStore, LogStore, NamespaceStore, ObjectInfoStore,
    RecordStore, ScheduleStore, SecretStore, TokenStore, UsageStore, VersionStore, WorkflowStore,
};
pub use usage::Swept;
pub use versions::{AliasSet, Published, VersionDeleted};
pub use workflows::{
    ExecutionEnd, ExecutionRecord, ExecutionSave, ExecutionWrite, HistoryEntry, Signal,
    WorkflowRecord,
};
