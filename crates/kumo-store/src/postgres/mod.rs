//! The PostgreSQL backend (issue 24): the system of record when kumo runs as several nodes.
//! It implements every storage trait and passes the conformance suite that SQLite passes
//! (`tests/conformance.rs`, against a private server that `scripts/postgres.sh` starts).
//! Invocation records and log lines are the same chunks as on SQLite, written a batch at a
//! time by [`PgStore::write_records`].
//!
//! What SQLite's single writer made safe, concurrent nodes must not break:
//! - every change to a function's versions or aliases first locks the function's row
//!   (`SELECT ... FOR UPDATE`), so two nodes publishing at once get two numbers, and an alias
//!   cannot be pointed at a version another node is deleting;
//! - key-value writes and schedule ticks are single guarded statements;
//! - writers of one object key take an advisory lock on it;
//! - events are claimed with `FOR UPDATE SKIP LOCKED` under a lease that names the node.

mod access;
mod cluster;
mod import;
mod kv;
mod namespaces;
mod queue;
mod records;
mod registry;
mod workflows;

pub use cluster::{Change, ChangeFeed, ClusterLock};

use anyhow::Context as _;
use sqlx::postgres::{PgPool, PgPoolOptions};
use std::sync::Arc;

/// The schema, one migration per entry, applied in order (`kumo_migrations` says how far).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "functions, versions and aliases",
        r#"
CREATE TABLE functions (
    name        TEXT COLLATE "C" PRIMARY KEY,
    kind        TEXT NOT NULL,
    code_sha256 TEXT NOT NULL,
    code_size   BIGINT NOT NULL,
    config      TEXT NOT NULL,      -- FunctionConfig as JSON
    created_at  BIGINT NOT NULL,    -- unix ms
    updated_at  BIGINT NOT NULL
);
CREATE TABLE versions (
    function    TEXT COLLATE "C" NOT NULL,
    version     BIGINT NOT NULL,
    description TEXT NOT NULL,
    kind        TEXT NOT NULL,
    code_sha256 TEXT NOT NULL,
    code_size   BIGINT NOT NULL,
    config      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (function, version)
);
CREATE TABLE version_numbers (
    function TEXT COLLATE "C" PRIMARY KEY,
    last     BIGINT NOT NULL
);
CREATE TABLE aliases (
    function       TEXT COLLATE "C" NOT NULL,
    name           TEXT COLLATE "C" NOT NULL,
    version        BIGINT NOT NULL,
    canary_version BIGINT,
    canary_weight  SMALLINT,
    updated_at     BIGINT NOT NULL,
    PRIMARY KEY (function, name)
);
"#,
    ),
    (
        2,
        "key-value",
        r#"
CREATE TABLE kv (
    bucket     TEXT COLLATE "C" NOT NULL,
    key        TEXT COLLATE "C" NOT NULL,   -- "C": listed in byte order, as on SQLite
    value      BYTEA NOT NULL,
    etag       TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (bucket, key)
);
"#,
    ),
    (
        3,
        "tokens, the audit trail and secrets",
        r#"
CREATE TABLE tokens (
    name           TEXT COLLATE "C" PRIMARY KEY,
    role           TEXT NOT NULL,
    namespace      TEXT,
    secret_hash    TEXT NOT NULL UNIQUE,   -- hex sha256 of the secret
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT,
    last_used_at   BIGINT,
    access_key_id  TEXT UNIQUE,
    key_nonce      BYTEA,                  -- the secret, sealed, for a token with an access key
    key_ciphertext BYTEA
);
CREATE TABLE audit (
    id        BIGSERIAL PRIMARY KEY,
    at        BIGINT NOT NULL,
    token     TEXT,
    method    TEXT NOT NULL,
    target    TEXT NOT NULL,
    namespace TEXT,
    source    TEXT,
    status    INTEGER NOT NULL
);
CREATE INDEX audit_at ON audit (at);
CREATE TABLE secrets (
    name       TEXT COLLATE "C" PRIMARY KEY,
    nonce      BYTEA NOT NULL,
    ciphertext BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
"#,
    ),
    (
        4,
        "namespaces, objects, the event queue, schedules, records and logs",
        r#"
CREATE TABLE namespaces (
    name       TEXT COLLATE "C" PRIMARY KEY,
    created_at BIGINT NOT NULL,
    quotas     TEXT NOT NULL DEFAULT '{}'   -- Quotas as JSON
);
INSERT INTO namespaces (name, created_at)
    VALUES ('default', (extract(epoch FROM now()) * 1000)::bigint);
CREATE TABLE objects (
    bucket       TEXT COLLATE "C" NOT NULL,
    key          TEXT COLLATE "C" NOT NULL,
    size         BIGINT NOT NULL,
    etag         TEXT NOT NULL,    -- also the data file's name: new on every write
    content_type TEXT NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (bucket, key)
);
CREATE TABLE events (
    id               TEXT COLLATE "C" PRIMARY KEY,   -- UUIDv7: sorts by creation
    function         TEXT COLLATE "C" NOT NULL,
    trigger          TEXT NOT NULL,
    status           TEXT NOT NULL,
    payload          BYTEA NOT NULL,
    content_type     TEXT,
    traceparent      TEXT,
    attempts         BIGINT NOT NULL DEFAULT 0,
    created_at       BIGINT NOT NULL,
    enqueued_at      BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    due_at           BIGINT NOT NULL,   -- queued/failed: next attempt; running: lease end
    lease_owner      TEXT,              -- running: the node whose attempt it is
    request_id       TEXT,
    result_status    INTEGER,
    result_body      BYTEA,
    result_truncated BOOLEAN,
    error_code       TEXT,
    error_message    TEXT
);
CREATE INDEX events_pending ON events (due_at) WHERE status IN ('queued', 'failed', 'running');
CREATE INDEX events_dead ON events (function, updated_at) WHERE status = 'dead';
CREATE TABLE idempotency_keys (
    function   TEXT NOT NULL,
    key        TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (function, key)
);
CREATE TABLE schedule_ticks (
    function  TEXT PRIMARY KEY,
    last_tick BIGINT NOT NULL
);
CREATE TABLE invocation_chunks (
    id       BIGSERIAL PRIMARY KEY,
    function TEXT COLLATE "C" NOT NULL,
    first_id TEXT COLLATE "C" NOT NULL,
    last_id  TEXT COLLATE "C" NOT NULL,
    records  BIGINT NOT NULL,
    data     BYTEA NOT NULL
);
CREATE INDEX invocation_chunks_by_last_id ON invocation_chunks (last_id);
CREATE INDEX invocation_chunks_by_function ON invocation_chunks (function, last_id);
CREATE TABLE log_chunks (
    id       BIGSERIAL PRIMARY KEY,
    function TEXT COLLATE "C" NOT NULL,
    max_ts   BIGINT NOT NULL,
    lines    BIGINT NOT NULL,
    data     BYTEA NOT NULL
);
CREATE INDEX log_chunks_by_function ON log_chunks (function, id);
CREATE INDEX log_chunks_by_max_ts ON log_chunks (max_ts);
"#,
    ),
    (
        5,
        "nodes and change notifications",
        r#"
CREATE TABLE nodes (
    id           TEXT COLLATE "C" PRIMARY KEY,
    address      TEXT NOT NULL,
    version      TEXT NOT NULL,
    started_at   BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    running      BIGINT NOT NULL,
    loaded       TEXT NOT NULL      -- JSON array of function keys
);
-- Every change to what nodes cache notifies them all (the payload: the table's name).
CREATE FUNCTION kumo_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('kumo_changes', TG_TABLE_NAME);
    RETURN NULL;
END
$$;
CREATE TRIGGER functions_changed AFTER INSERT OR UPDATE OR DELETE ON functions
    FOR EACH STATEMENT EXECUTE FUNCTION kumo_notify_change();
CREATE TRIGGER versions_changed AFTER DELETE ON versions
    FOR EACH STATEMENT EXECUTE FUNCTION kumo_notify_change();
CREATE TRIGGER aliases_changed AFTER INSERT OR UPDATE OR DELETE ON aliases
    FOR EACH STATEMENT EXECUTE FUNCTION kumo_notify_change();
CREATE TRIGGER namespaces_changed AFTER INSERT OR UPDATE OR DELETE ON namespaces
    FOR EACH STATEMENT EXECUTE FUNCTION kumo_notify_change();
-- Not on UPDATE: that is a token's last use, on every request.
CREATE TRIGGER tokens_changed AFTER INSERT OR DELETE ON tokens
    FOR EACH STATEMENT EXECUTE FUNCTION kumo_notify_change();
CREATE TRIGGER secrets_changed AFTER INSERT OR UPDATE OR DELETE ON secrets
    FOR EACH STATEMENT EXECUTE FUNCTION kumo_notify_change();
"#,
    ),
    (
        6,
        "cluster-wide admission of asynchronous attempts",
        r#"
-- A running attempt counts against its function's cluster-wide async concurrency once
-- admitted (claimed is not enough: a claimed attempt may yet be deferred).
ALTER TABLE events ADD COLUMN admitted BOOLEAN NOT NULL DEFAULT false;
CREATE INDEX events_admitted ON events ((split_part(function, ':', 1)))
    WHERE status = 'running' AND admitted;
"#,
    ),
    (
        7,
        "workflows and their executions",
        r#"
CREATE TABLE workflows (
    name       TEXT COLLATE "C" PRIMARY KEY,
    definition TEXT NOT NULL,
    triggers   TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE executions (
    id          TEXT COLLATE "C" PRIMARY KEY,
    workflow    TEXT COLLATE "C" NOT NULL,
    name        TEXT COLLATE "C" NOT NULL,
    definition  TEXT NOT NULL,
    status      TEXT NOT NULL,
    input       TEXT NOT NULL,
    output      TEXT,
    error       TEXT,
    cause       TEXT,
    trace_id    TEXT NOT NULL,
    started_at  BIGINT NOT NULL,
    stopped_at  BIGINT,
    deadline    BIGINT,
    due_at      BIGINT,
    owner       TEXT,
    lease_until BIGINT,
    transitions BIGINT NOT NULL DEFAULT 0,
    history_len BIGINT NOT NULL DEFAULT 0,
    redrives    BIGINT NOT NULL DEFAULT 0,
    UNIQUE (workflow, name)
);
CREATE INDEX executions_due ON executions (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX executions_of ON executions (workflow, id);
CREATE TABLE execution_threads (
    execution TEXT COLLATE "C" NOT NULL,
    thread    TEXT COLLATE "C" NOT NULL,
    doc       TEXT NOT NULL,
    PRIMARY KEY (execution, thread)
);
CREATE TABLE execution_history (
    execution TEXT COLLATE "C" NOT NULL,
    seq       BIGINT NOT NULL,
    at        BIGINT NOT NULL,
    kind      TEXT NOT NULL,
    thread    TEXT NOT NULL,
    state     TEXT NOT NULL,
    detail    TEXT NOT NULL,
    PRIMARY KEY (execution, seq)
);
CREATE TABLE execution_signals (
    id        BIGSERIAL PRIMARY KEY,
    execution TEXT COLLATE "C" NOT NULL,
    thread    TEXT NOT NULL,
    kind      TEXT NOT NULL,
    body      TEXT NOT NULL
);
CREATE INDEX execution_signals_of ON execution_signals (execution, id);
CREATE TRIGGER workflows_changed AFTER INSERT OR UPDATE OR DELETE ON workflows
    FOR EACH STATEMENT EXECUTE FUNCTION kumo_notify_change();
"#,
    ),
];

/// A PostgreSQL database holding kumo's state.
#[derive(Clone)]
pub struct PgStore {
    pub(crate) pool: PgPool,
    /// The node this store works for: its event leases name it.
    node: Arc<str>,
}

impl PgStore {
    /// Connects to `url` (`postgres://user@host:port/db`) as node `node` (an id no other
    /// live node uses) and brings the schema up to date. Nodes starting together apply each
    /// migration once (an advisory lock orders them).
    pub async fn open(url: &str, node: &str) -> anyhow::Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect(url)
            .await
            .context("connecting to PostgreSQL")?;
        migrate(&pool).await?;
        Ok(Self {
            pool,
            node: node.into(),
        })
    }

    /// The code (sha256) of every function and version: what blobs and compiled artifacts
    /// must be kept.
    pub async fn code_in_use(&self) -> anyhow::Result<std::collections::HashSet<String>> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT code_sha256 FROM functions UNION SELECT code_sha256 FROM versions",
        )
        .fetch_all(&self.pool)
        .await
        .context("listing the code in use")?;
        Ok(rows.into_iter().collect())
    }

    /// The newest schema migration the database has had.
    pub async fn schema_version(&self) -> anyhow::Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT coalesce(max(version), 0) FROM kumo_migrations")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    // One migrating node at a time (a lock, "kumo" in ASCII, held until this transaction ends).
    sqlx::query("SELECT pg_advisory_xact_lock(1802858863)")
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS kumo_migrations (
             version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
    )
    .execute(&mut *tx)
    .await?;
    let applied: i64 = sqlx::query_scalar("SELECT coalesce(max(version), 0) FROM kumo_migrations")
        .fetch_one(&mut *tx)
        .await?;
    let newest = MIGRATIONS.last().map_or(0, |m| m.0);
    anyhow::ensure!(
        applied <= newest,
        "the database has schema version {applied}, written by a newer kumo; this one knows \
         versions up to {newest}"
    );
    for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > applied) {
        sqlx::raw_sql(*sql)
            .execute(&mut *tx)
            .await
            .with_context(|| format!("schema migration {version} ({name})"))?;
        sqlx::query("INSERT INTO kumo_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
            .bind(version)
            .bind(name)
            .bind(kumo_core::now_ms())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await.context("migrating the schema")?;
    Ok(())
}
