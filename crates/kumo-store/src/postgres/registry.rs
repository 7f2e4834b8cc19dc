//! Functions (`$LATEST`), published versions and aliases on PostgreSQL.

use super::PgStore;
use crate::{AliasSet, Published, VersionDeleted};
use anyhow::Context as _;
use futures::TryStreamExt as _;
use kumo_core::{AliasRecord, Canary, FunctionKind, FunctionRecord, VersionRecord};
use sqlx::postgres::PgRow;
use sqlx::{Postgres, Row as _, Transaction};

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
