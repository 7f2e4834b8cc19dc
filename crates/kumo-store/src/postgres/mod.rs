//! The PostgreSQL backend (issue 24, in progress): the system of record when kumo runs as
//! several nodes. It implements the storage traits one by one, each passing the conformance
//! suite that SQLite passes (`tests/conformance.rs`, against a private server that
//! `scripts/postgres.sh` starts). So far: functions, versions, aliases, key-value, tokens, the
//! audit trail and secrets. Not yet: namespaces, schedules, object metadata, the event queue,
//! records, logs and usage, the records writer, `kumo serve --database`; the server does not
//! use it yet.
//!
//! What SQLite's single writer made safe, concurrent nodes must not break: every change to a
//! function's versions or aliases first locks the function's row (`SELECT ... FOR UPDATE`),
//! so two nodes publishing at once get two numbers, and an alias cannot be pointed at a
//! version another node is deleting.

mod access;
mod kv;
mod registry;

use anyhow::Context as _;
use sqlx::postgres::{PgPool, PgPoolOptions};

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
];

/// A PostgreSQL database holding kumo's state.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to `url` (`postgres://user@host:port/db`) and brings its schema up to date.
    /// Nodes starting together apply each migration once (an advisory lock orders them).
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect(url)
            .await
            .context("connecting to PostgreSQL")?;
        migrate(&pool).await?;
        Ok(Self { pool })
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
