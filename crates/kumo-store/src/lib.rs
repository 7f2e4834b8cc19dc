//! kumo's durable state in a data directory:
//!
//! ```text
//! DATA/kumo.db        SQLite (WAL): functions, invocations, logs
//! DATA/blobs/<sha256> deployed code, content-addressed and immutable
//! DATA/cache/         compiled artifacts (owned by kumo-runtime)
//! ```
//!
//! Nothing in memory is authoritative: the server's caches are rebuilt from here on start.
//! One concrete SQLite store for now; a trait will come with the PostgreSQL backend.

mod blobs;
mod sqlite;

pub use blobs::Blobs;
pub use sqlite::{LogQuery, Store};
