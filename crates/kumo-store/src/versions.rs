//! Published versions and aliases. A version copies the `functions` row it was published
//! from and never changes; its number is never reused (a counter per function, like
//! Lambda's). An alias names one version, or two with a canary weight.

use crate::sqlite::SqliteStore;
use anyhow::Context as _;
use kumo_core::{AliasRecord, Canary, FunctionKind, VersionRecord};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS versions (
    function    TEXT NOT NULL,
    version     INTEGER NOT NULL,
    description TEXT NOT NULL,
    kind        TEXT NOT NULL,
    code_sha256 TEXT NOT NULL,
    code_size   INTEGER NOT NULL,
    config      TEXT NOT NULL,      -- FunctionConfig as JSON
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (function, version)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS version_numbers (
    function TEXT PRIMARY KEY,
    last     INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS aliases (
    function       TEXT NOT NULL,
    name           TEXT NOT NULL,
    version        INTEGER NOT NULL,
    canary_version INTEGER,
    canary_weight  INTEGER,
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (function, name)
) WITHOUT ROWID;
"#;

/// The outcome of a publish.
pub enum Published {
    /// A new version.
    Created(VersionRecord),
    /// `$LATEST` has not changed since this version (publishing again makes no new one).
    Unchanged(VersionRecord),
    NoFunction,
}

/// The outcome of deleting a version.
pub enum VersionDeleted {
    Deleted,
    NotFound,
    /// These aliases point at it.
    InUse(Vec<String>),
}

/// The outcome of setting an alias.
pub enum AliasSet {
    Created(AliasRecord),
    Updated(AliasRecord),
    /// The version (or the canary's) does not exist.
    NoVersion(u32),
}

impl crate::VersionStore for SqliteStore {
    /// Freezes the function's current code and config into a new version, in one transaction.
    async fn publish_version(
        &self,
        function: &str,
        description: &str,
        now: i64,
    ) -> anyhow::Result<Published> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let Some(head) = sqlx::query("SELECT * FROM functions WHERE name = ?")
            .bind(function)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(Published::NoFunction);
        };
        let (code, config): (String, String) =
            (head.try_get("code_sha256")?, head.try_get("config")?);
        let newest =
            sqlx::query("SELECT * FROM versions WHERE function = ? ORDER BY version DESC LIMIT 1")
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
            "INSERT INTO version_numbers (function, last) VALUES (?, 1)
             ON CONFLICT (function) DO UPDATE SET last = last + 1 RETURNING last",
        )
        .bind(function)
        .fetch_one(&mut *tx)
        .await?;
        let row = sqlx::query(
            "INSERT INTO versions (function, version, description, kind, code_sha256, code_size,
                 config, created_at)
             SELECT name, ?, ?, kind, code_sha256, code_size, config, ? FROM functions
             WHERE name = ? RETURNING *",
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
        let row = sqlx::query("SELECT * FROM versions WHERE function = ? AND version = ?")
            .bind(function)
            .bind(version)
            .fetch_optional(&self.pool)
            .await
            .context("reading a version")?;
        row.as_ref().map(version_from_row).transpose()
    }

    /// The function's versions, oldest first.
    async fn list_versions(&self, function: &str) -> anyhow::Result<Vec<VersionRecord>> {
        let rows = sqlx::query("SELECT * FROM versions WHERE function = ? ORDER BY version")
            .bind(function)
            .fetch_all(&self.pool)
            .await
            .context("listing versions")?;
        rows.iter().map(version_from_row).collect()
    }

    /// Deletes a version unless an alias points at it.
    async fn delete_version(&self, function: &str, version: u32) -> anyhow::Result<VersionDeleted> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let users: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM aliases WHERE function = ?1 AND (version = ?2 OR canary_version = ?2)
             ORDER BY name",
        )
        .bind(function)
        .bind(version)
        .fetch_all(&mut *tx)
        .await?;
        if !users.is_empty() {
            return Ok(VersionDeleted::InUse(users));
        }
        let done = sqlx::query("DELETE FROM versions WHERE function = ? AND version = ?")
            .bind(function)
            .bind(version)
            .execute(&mut *tx)
            .await?;
        tx.commit().await.context("deleting a version")?;
        Ok(if done.rows_affected() > 0 {
            VersionDeleted::Deleted
        } else {
            VersionDeleted::NotFound
        })
    }

    /// Creates or moves an alias; its versions must exist.
    async fn set_alias(
        &self,
        function: &str,
        name: &str,
        version: u32,
        canary: Option<Canary>,
        now: i64,
    ) -> anyhow::Result<AliasSet> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        for wanted in std::iter::once(version).chain(canary.map(|c| c.version)) {
            let exists: Option<i64> =
                sqlx::query_scalar("SELECT 1 FROM versions WHERE function = ? AND version = ?")
                    .bind(function)
                    .bind(wanted)
                    .fetch_optional(&mut *tx)
                    .await?;
            if exists.is_none() {
                return Ok(AliasSet::NoVersion(wanted));
            }
        }
        let existed: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM aliases WHERE function = ? AND name = ?")
                .bind(function)
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
        let row = sqlx::query(
            "INSERT INTO aliases (function, name, version, canary_version, canary_weight, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (function, name) DO UPDATE SET version = ?3, canary_version = ?4,
                 canary_weight = ?5, updated_at = ?6
             RETURNING *",
        )
        .bind(function)
        .bind(name)
        .bind(version)
        .bind(canary.map(|c| c.version))
        .bind(canary.map(|c| c.weight))
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await.context("setting an alias")?;
        let alias = alias_from_row(&row)?;
        Ok(match existed {
            Some(_) => AliasSet::Updated(alias),
            None => AliasSet::Created(alias),
        })
    }

    async fn delete_alias(&self, function: &str, name: &str) -> anyhow::Result<bool> {
        let done = sqlx::query("DELETE FROM aliases WHERE function = ? AND name = ?")
            .bind(function)
            .bind(name)
            .execute(&self.pool)
            .await
            .context("deleting an alias")?;
        Ok(done.rows_affected() > 0)
    }

    /// Every alias (of one function, or of all), by function and name.
    async fn list_aliases(&self, function: Option<&str>) -> anyhow::Result<Vec<AliasRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM aliases WHERE ?1 IS NULL OR function = ?1 ORDER BY function, name",
        )
        .bind(function)
        .fetch_all(&self.pool)
        .await
        .context("listing aliases")?;
        rows.iter().map(alias_from_row).collect()
    }
}

fn version_from_row(row: &SqliteRow) -> anyhow::Result<VersionRecord> {
    let kind: String = row.try_get("kind")?;
    let config: String = row.try_get("config")?;
    Ok(VersionRecord {
        function: row.try_get("function")?,
        version: row.try_get("version")?,
        description: row.try_get("description")?,
        kind: FunctionKind::parse(&kind).with_context(|| format!("unknown kind {kind:?}"))?,
        code_sha256: row.try_get("code_sha256")?,
        code_size: u64::try_from(row.try_get::<i64, _>("code_size")?)?,
        config: serde_json::from_str(&config).context("stored config")?,
        created_at: row.try_get("created_at")?,
    })
}

fn alias_from_row(row: &SqliteRow) -> anyhow::Result<AliasRecord> {
    let canary_version: Option<u32> = row.try_get("canary_version")?;
    let canary_weight: Option<u8> = row.try_get("canary_weight")?;
    Ok(AliasRecord {
        function: row.try_get("function")?,
        name: row.try_get("name")?,
        version: row.try_get("version")?,
        canary: canary_version
            .zip(canary_weight)
            .map(|(version, weight)| Canary { version, weight }),
        updated_at: row.try_get("updated_at")?,
    })
}
