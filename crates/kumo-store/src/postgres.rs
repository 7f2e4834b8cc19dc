//! The PostgreSQL backend (issue 24, in progress): the system of record when kumo runs as
//! several nodes. It implements the storage traits one by one, each passing the conformance
//! suite that SQLite passes (`tests/conformance.rs`, against a private server that
//! `scripts/postgres.sh` starts). So far: functions, versions, aliases and key-value. Not yet:
//! the other traits, the records writer, `kumo serve --database`; the server does not use it.
//!
//! What SQLite's single writer made safe, concurrent nodes must not break: every change to a
//! function's versions or aliases first locks the function's row (`SELECT ... FOR UPDATE`),
//! so two nodes publishing at once get two numbers, and an alias cannot be pointed at a
//! version another node is deleting.

use crate::{AliasSet, Published, VersionDeleted};
use anyhow::Context as _;
use futures::TryStreamExt as _;
use kumo_core::{
    AliasRecord, Canary, CounterError, Expect, FunctionKind, FunctionRecord, KeyPage, KvEntry,
    KvWrite, VersionRecord,
};
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row as _, Transaction};

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

/// Locks function `name`'s row for this transaction: its versions and aliases change one
/// writer at a time, across nodes. False when there is no such function.
async fn lock_function(tx: &mut Transaction<'_, Postgres>, name: &str) -> anyhow::Result<bool> {
    let found: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM functions WHERE name = $1 FOR UPDATE")
            .bind(name)
            .fetch_optional(&mut **tx)
            .await?;
    Ok(found.is_some())
}

impl crate::FunctionStore for PgStore {
    async fn upsert_function(&self, f: &FunctionRecord) -> anyhow::Result<bool> {
        let config = serde_json::to_string(&f.config)?;
        // `xmax = 0` only for a row this statement inserted.
        let created: bool = sqlx::query_scalar(
            "INSERT INTO functions (name, kind, code_sha256, code_size, config, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $6)
             ON CONFLICT (name) DO UPDATE SET kind = $2, code_sha256 = $3, code_size = $4,
                 config = $5, updated_at = $6
             RETURNING (xmax = 0)",
        )
        .bind(&f.name)
        .bind(f.kind.as_str())
        .bind(&f.code_sha256)
        .bind(i64::try_from(f.code_size).unwrap_or(i64::MAX))
        .bind(config)
        .bind(f.updated_at)
        .fetch_one(&self.pool)
        .await
        .context("saving function")?;
        Ok(created)
    }

    async fn get_function(&self, name: &str) -> anyhow::Result<Option<FunctionRecord>> {
        let row = sqlx::query("SELECT * FROM functions WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .context("reading function")?;
        row.as_ref().map(function_from_row).transpose()
    }

    async fn list_functions(&self) -> anyhow::Result<Vec<FunctionRecord>> {
        let mut rows = sqlx::query("SELECT * FROM functions ORDER BY name").fetch(&self.pool);
        let mut functions = Vec::new();
        while let Some(row) = rows.try_next().await.context("listing functions")? {
            functions.push(function_from_row(&row)?);
        }
        Ok(functions)
    }

    async fn delete_function(&self, name: &str) -> anyhow::Result<bool> {
        let mut tx = self.pool.begin().await?;
        if !lock_function(&mut tx, name).await? {
            return Ok(false);
        }
        for table in ["versions", "version_numbers", "aliases"] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE function = $1"
            )))
            .bind(name)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("DELETE FROM functions WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await.context("deleting function")?;
        Ok(true)
    }
}

impl crate::VersionStore for PgStore {
    async fn publish_version(
        &self,
        function: &str,
        description: &str,
        now: i64,
    ) -> anyhow::Result<Published> {
        let mut tx = self.pool.begin().await?;
        if !lock_function(&mut tx, function).await? {
            return Ok(Published::NoFunction);
        }
        let head = sqlx::query("SELECT code_sha256, config FROM functions WHERE name = $1")
            .bind(function)
            .fetch_one(&mut *tx)
            .await?;
        let (code, config): (String, String) =
            (head.try_get("code_sha256")?, head.try_get("config")?);
        let newest =
            sqlx::query("SELECT * FROM versions WHERE function = $1 ORDER BY version DESC LIMIT 1")
                .bind(function)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(newest) = newest
            && newest.try_get::<String, _>("code_sha256")? == code
            && newest.try_get::<String, _>("config")? == config
        {
            return Ok(Published::Unchanged(version_from_row(&newest)?));
        }
        let number: i64 = sqlx::query_scalar(
            "INSERT INTO version_numbers (function, last) VALUES ($1, 1)
             ON CONFLICT (function) DO UPDATE SET last = version_numbers.last + 1
             RETURNING last",
        )
        .bind(function)
        .fetch_one(&mut *tx)
        .await?;
        let row = sqlx::query(
            "INSERT INTO versions (function, version, description, kind, code_sha256, code_size,
                 config, created_at)
             SELECT name, $1, $2, kind, code_sha256, code_size, config, $3 FROM functions
             WHERE name = $4 RETURNING *",
        )
        .bind(number)
        .bind(description)
        .bind(now)
        .bind(function)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await.context("publishing a version")?;
        Ok(Published::Created(version_from_row(&row)?))
    }

    async fn get_version(
        &self,
        function: &str,
        version: u32,
    ) -> anyhow::Result<Option<VersionRecord>> {
        let row = sqlx::query("SELECT * FROM versions WHERE function = $1 AND version = $2")
            .bind(function)
            .bind(i64::from(version))
            .fetch_optional(&self.pool)
            .await
            .context("reading a version")?;
        row.as_ref().map(version_from_row).transpose()
    }

    async fn list_versions(&self, function: &str) -> anyhow::Result<Vec<VersionRecord>> {
        let rows = sqlx::query("SELECT * FROM versions WHERE function = $1 ORDER BY version")
            .bind(function)
            .fetch_all(&self.pool)
            .await
            .context("listing versions")?;
        rows.iter().map(version_from_row).collect()
    }

    async fn delete_version(&self, function: &str, version: u32) -> anyhow::Result<VersionDeleted> {
        let mut tx = self.pool.begin().await?;
        if !lock_function(&mut tx, function).await? {
            return Ok(VersionDeleted::NotFound);
        }
        let users: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM aliases WHERE function = $1 AND (version = $2 OR canary_version = $2)
             ORDER BY name",
        )
        .bind(function)
        .bind(i64::from(version))
        .fetch_all(&mut *tx)
        .await?;
        if !users.is_empty() {
            return Ok(VersionDeleted::InUse(users));
        }
        let done = sqlx::query("DELETE FROM versions WHERE function = $1 AND version = $2")
            .bind(function)
            .bind(i64::from(version))
            .execute(&mut *tx)
            .await?;
        tx.commit().await.context("deleting a version")?;
        Ok(match done.rows_affected() {
            0 => VersionDeleted::NotFound,
            _ => VersionDeleted::Deleted,
        })
    }

    async fn set_alias(
        &self,
        function: &str,
        name: &str,
        version: u32,
        canary: Option<Canary>,
        now: i64,
    ) -> anyhow::Result<AliasSet> {
        let mut tx = self.pool.begin().await?;
        if !lock_function(&mut tx, function).await? {
            return Ok(AliasSet::NoVersion(version));
        }
        for wanted in std::iter::once(version).chain(canary.map(|c| c.version)) {
            let exists: Option<i32> =
                sqlx::query_scalar("SELECT 1 FROM versions WHERE function = $1 AND version = $2")
                    .bind(function)
                    .bind(i64::from(wanted))
                    .fetch_optional(&mut *tx)
                    .await?;
            if exists.is_none() {
                return Ok(AliasSet::NoVersion(wanted));
            }
        }
        let row = sqlx::query(
            "INSERT INTO aliases (function, name, version, canary_version, canary_weight, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (function, name) DO UPDATE SET version = $3, canary_version = $4,
                 canary_weight = $5, updated_at = $6
             RETURNING *, (xmax = 0) AS created",
        )
        .bind(function)
        .bind(name)
        .bind(i64::from(version))
        .bind(canary.map(|c| i64::from(c.version)))
        .bind(canary.map(|c| i16::from(c.weight)))
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await.context("setting an alias")?;
        let alias = alias_from_row(&row)?;
        Ok(match row.try_get::<bool, _>("created")? {
            true => AliasSet::Created(alias),
            false => AliasSet::Updated(alias),
        })
    }

    async fn delete_alias(&self, function: &str, name: &str) -> anyhow::Result<bool> {
        let done = sqlx::query("DELETE FROM aliases WHERE function = $1 AND name = $2")
            .bind(function)
            .bind(name)
            .execute(&self.pool)
            .await
            .context("deleting an alias")?;
        Ok(done.rows_affected() > 0)
    }

    async fn list_aliases(&self, function: Option<&str>) -> anyhow::Result<Vec<AliasRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM aliases WHERE $1::text IS NULL OR function = $1
             ORDER BY function, name",
        )
        .bind(function)
        .fetch_all(&self.pool)
        .await
        .context("listing aliases")?;
        rows.iter().map(alias_from_row).collect()
    }
}

impl crate::KvStore for PgStore {
    async fn kv_get(&self, bucket: &str, key: &str) -> anyhow::Result<Option<KvEntry>> {
        let row =
            sqlx::query("SELECT value, etag, updated_at FROM kv WHERE bucket = $1 AND key = $2")
                .bind(bucket)
                .bind(key)
                .fetch_optional(&self.pool)
                .await
                .context("reading a key")?;
        row.map(|row| {
            Ok(KvEntry {
                value: row.try_get(0)?,
                etag: row.try_get(1)?,
                updated_at: row.try_get(2)?,
            })
        })
        .transpose()
    }

    async fn kv_exists(&self, bucket: &str, key: &str) -> anyhow::Result<bool> {
        let found: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM kv WHERE bucket = $1 AND key = $2")
                .bind(bucket)
                .bind(key)
                .fetch_optional(&self.pool)
                .await
                .context("reading a key")?;
        Ok(found.is_some())
    }

    /// Each case is one guarded statement, so concurrent writers on any node see it whole.
    async fn kv_put(
        &self,
        bucket: &str,
        key: &str,
        value: &[u8],
        expect: Expect<'_>,
    ) -> anyhow::Result<KvWrite> {
        let etag = crate::kv::new_etag();
        let now = kumo_core::now_ms();
        let written: Option<bool> = match expect {
            Expect::Etag(_) | Expect::Present => {
                let expected = match expect {
                    Expect::Etag(etag) => Some(etag),
                    _ => None,
                };
                let done = sqlx::query(
                    "UPDATE kv SET value = $1, etag = $2, updated_at = $3
                     WHERE bucket = $4 AND key = $5 AND ($6::text IS NULL OR etag = $6)",
                )
                .bind(value)
                .bind(&etag)
                .bind(now)
                .bind(bucket)
                .bind(key)
                .bind(expected)
                .execute(&self.pool)
                .await
                .context("writing a key")?;
                (done.rows_affected() == 1).then_some(false)
            }
            Expect::Absent => {
                let done = sqlx::query(
                    "INSERT INTO kv (bucket, key, value, etag, updated_at)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                )
                .bind(bucket)
                .bind(key)
                .bind(value)
                .bind(&etag)
                .bind(now)
                .execute(&self.pool)
                .await
                .context("writing a key")?;
                (done.rows_affected() == 1).then_some(true)
            }
            Expect::Anything => Some(
                sqlx::query_scalar(
                    "INSERT INTO kv (bucket, key, value, etag, updated_at)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (bucket, key) DO UPDATE SET value = $3, etag = $4,
                         updated_at = $5
                     RETURNING (xmax = 0)",
                )
                .bind(bucket)
                .bind(key)
                .bind(value)
                .bind(&etag)
                .bind(now)
                .fetch_one(&self.pool)
                .await
                .context("writing a key")?,
            ),
        };
        Ok(match written {
            Some(created) => KvWrite::Written { etag, created },
            None => KvWrite::Conflict,
        })
    }

    async fn kv_delete(&self, bucket: &str, key: &str, expect: Expect<'_>) -> anyhow::Result<bool> {
        let expected = match expect {
            Expect::Etag(etag) => Some(etag),
            // Deleting "only if absent" deletes nothing.
            Expect::Absent => return Ok(!self.kv_exists(bucket, key).await?),
            Expect::Anything | Expect::Present => None,
        };
        let done = sqlx::query(
            "DELETE FROM kv WHERE bucket = $1 AND key = $2 AND ($3::text IS NULL OR etag = $3)",
        )
        .bind(bucket)
        .bind(key)
        .bind(expected)
        .execute(&self.pool)
        .await
        .context("deleting a key")?;
        Ok(done.rows_affected() == 1)
    }

    async fn kv_list(
        &self,
        bucket: &str,
        prefix: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> anyhow::Result<KeyPage> {
        let limit = limit.max(1) as usize;
        let start = cursor.filter(|c| *c >= prefix).unwrap_or(prefix);
        let end = crate::kv::prefix_successor(prefix);
        let mut keys: Vec<String> = sqlx::query_scalar(
            "SELECT key FROM kv
             WHERE bucket = $1 AND key >= $2 AND ($3::text IS NULL OR key < $3)
                 AND ($4::text IS NULL OR key > $4)
             ORDER BY key LIMIT $5",
        )
        .bind(bucket)
        .bind(start)
        .bind(end.as_deref())
        .bind(cursor)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1))
        .fetch_all(&self.pool)
        .await
        .context("listing keys")?;
        let more = keys.len() > limit;
        keys.truncate(limit);
        let cursor = more.then(|| keys.last().cloned()).flatten();
        Ok(KeyPage { keys, cursor })
    }

    /// The key's row is created (as `0`) if missing and then locked, so concurrent
    /// increments from any node queue on it and none is lost; a refusal rolls both back.
    async fn kv_increment(
        &self,
        bucket: &str,
        key: &str,
        delta: i64,
    ) -> anyhow::Result<Result<i64, CounterError>> {
        let mut tx = self.pool.begin().await.context("starting an increment")?;
        let now = kumo_core::now_ms();
        let created = sqlx::query(
            "INSERT INTO kv (bucket, key, value, etag, updated_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT DO NOTHING",
        )
        .bind(bucket)
        .bind(key)
        .bind(b"0".as_slice())
        .bind(crate::kv::new_etag())
        .bind(now)
        .execute(&mut *tx)
        .await
        .context("starting a counter")?
        .rows_affected()
            == 1;
        let current: Vec<u8> =
            sqlx::query_scalar("SELECT value FROM kv WHERE bucket = $1 AND key = $2 FOR UPDATE")
                .bind(bucket)
                .bind(key)
                .fetch_one(&mut *tx)
                .await
                .context("reading a counter")?;
        let next = match kumo_core::incremented((!created).then_some(current.as_slice()), delta) {
            Ok(next) => next,
            Err(refused) => return Ok(Err(refused)),
        };
        sqlx::query(
            "UPDATE kv SET value = $1, etag = $2, updated_at = $3 WHERE bucket = $4 AND key = $5",
        )
        .bind(next.to_string().into_bytes())
        .bind(crate::kv::new_etag())
        .bind(now)
        .bind(bucket)
        .bind(key)
        .execute(&mut *tx)
        .await
        .context("writing a counter")?;
        tx.commit().await.context("committing an increment")?;
        Ok(Ok(next))
    }
}

fn kind_of(row: &PgRow) -> anyhow::Result<FunctionKind> {
    let kind: String = row.try_get("kind")?;
    FunctionKind::parse(&kind).with_context(|| format!("unknown kind {kind:?}"))
}

fn function_from_row(row: &PgRow) -> anyhow::Result<FunctionRecord> {
    let config: String = row.try_get("config")?;
    Ok(FunctionRecord {
        name: row.try_get("name")?,
        kind: kind_of(row)?,
        code_sha256: row.try_get("code_sha256")?,
        code_size: u64::try_from(row.try_get::<i64, _>("code_size")?)?,
        config: serde_json::from_str(&config).context("stored config")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        reuse_fell_back: false,
    })
}

fn version_from_row(row: &PgRow) -> anyhow::Result<VersionRecord> {
    let config: String = row.try_get("config")?;
    Ok(VersionRecord {
        function: row.try_get("function")?,
        version: u32::try_from(row.try_get::<i64, _>("version")?)?,
        description: row.try_get("description")?,
        kind: kind_of(row)?,
        code_sha256: row.try_get("code_sha256")?,
        code_size: u64::try_from(row.try_get::<i64, _>("code_size")?)?,
        config: serde_json::from_str(&config).context("stored config")?,
        created_at: row.try_get("created_at")?,
    })
}

fn alias_from_row(row: &PgRow) -> anyhow::Result<AliasRecord> {
    let canary_version: Option<i64> = row.try_get("canary_version")?;
    let canary_weight: Option<i16> = row.try_get("canary_weight")?;
    let canary = match (canary_version, canary_weight) {
        (Some(version), Some(weight)) => Some(Canary {
            version: u32::try_from(version)?,
            weight: u8::try_from(weight)?,
        }),
        _ => None,
    };
    Ok(AliasRecord {
        function: row.try_get("function")?,
        name: row.try_get("name")?,
        version: u32::try_from(row.try_get::<i64, _>("version")?)?,
        canary,
        updated_at: row.try_get("updated_at")?,
    })
}
