//! Namespaces and their quotas. What belongs to a namespace is found by its keys (see
//! `kumo_core::scoped`): `NS/NAME` outside `default`, a bare name inside it.

use crate::sqlite::SqliteStore;
use anyhow::Context as _;
use kumo_core::{NamespaceRecord, NamespaceUse, Quotas};
use sqlx::Row as _;

pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS namespaces (
    name       TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,            -- unix ms
    quotas     TEXT NOT NULL DEFAULT '{}'   -- Quotas as JSON
);
INSERT OR IGNORE INTO namespaces (name, created_at)
    VALUES ('default', CAST(unixepoch('subsec') * 1000 AS INTEGER));
ALTER TABLE tokens ADD COLUMN namespace TEXT;
UPDATE tokens SET namespace = 'default' WHERE role != 'admin';
ALTER TABLE audit ADD COLUMN namespace TEXT;
"#;

/// An SQL condition: `column` holds a key of the namespace bound as `?1`.
macro_rules! of_namespace {
    ($column:literal) => {
        concat!(
            "(CASE WHEN ?1 = 'default' THEN instr(",
            $column,
            ", '/') = 0 ",
            "ELSE substr(",
            $column,
            ", 1, length(?1) + 1) = ?1 || '/' END)"
        )
    };
}

impl crate::NamespaceStore for SqliteStore {
    async fn create_namespace(&self, namespace: &NamespaceRecord) -> anyhow::Result<bool> {
        let done = sqlx::query(
            "INSERT INTO namespaces (name, created_at, quotas) VALUES (?, ?, ?)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(&namespace.name)
        .bind(namespace.created_at)
        .bind(serde_json::to_string(&namespace.quotas)?)
        .execute(&self.pool)
        .await
        .context("saving a namespace")?;
        Ok(done.rows_affected() == 1)
    }

    async fn list_namespaces(&self) -> anyhow::Result<Vec<NamespaceRecord>> {
        let rows = sqlx::query("SELECT * FROM namespaces ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .context("listing namespaces")?;
        rows.iter()
            .map(|row| {
                let quotas: String = row.try_get("quotas")?;
                Ok(NamespaceRecord {
                    name: row.try_get("name")?,
                    created_at: row.try_get("created_at")?,
                    quotas: serde_json::from_str(&quotas).context("a namespace's quotas")?,
                })
            })
            .collect()
    }

    async fn set_quotas(&self, namespace: &str, quotas: &Quotas) -> anyhow::Result<bool> {
        let done = sqlx::query("UPDATE namespaces SET quotas = ? WHERE name = ?")
            .bind(serde_json::to_string(quotas)?)
            .bind(namespace)
            .execute(&self.pool)
            .await
            .context("saving a namespace's quotas")?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_namespace(&self, namespace: &str) -> anyhow::Result<bool> {
        let done = sqlx::query("DELETE FROM namespaces WHERE name = ?")
            .bind(namespace)
            .execute(&self.pool)
            .await
            .context("deleting a namespace")?;
        Ok(done.rows_affected() == 1)
    }

    async fn namespace_use(&self, namespace: &str) -> anyhow::Result<NamespaceUse> {
        let row = sqlx::query(concat!(
            "SELECT (SELECT count(*) FROM functions WHERE ",
            of_namespace!("name"),
            "), (SELECT coalesce(sum(length(CAST(key AS BLOB)) + length(value)), 0) FROM kv WHERE ",
            of_namespace!("bucket"),
            "), (SELECT coalesce(sum(size), 0) FROM objects WHERE ",
            of_namespace!("bucket"),
            "), (SELECT count(*) FROM events WHERE status IN ('queued', 'failed', 'running') AND ",
            of_namespace!("function"),
            ")"
        ))
        .bind(namespace)
        .fetch_one(&self.pool)
        .await
        .context("measuring a namespace's use")?;
        let at = |i: usize| -> anyhow::Result<u64> {
            Ok(u64::try_from(row.try_get::<i64, _>(i)?).unwrap_or(0))
        };
        Ok(NamespaceUse {
            functions: at(0)?,
            concurrency: 0,
            kv_bytes: at(1)?,
            object_bytes: at(2)?,
            queued_events: at(3)?,
        })
    }

    /// Whether anything but records, logs and the audit trail still belongs to `namespace`:
    /// a function, a key, an object, a secret or a token.
    async fn namespace_in_use(&self, namespace: &str) -> anyhow::Result<bool> {
        let used: bool = sqlx::query(concat!(
            "SELECT EXISTS (SELECT 1 FROM functions WHERE ",
            of_namespace!("name"),
            ") OR EXISTS (SELECT 1 FROM kv WHERE ",
            of_namespace!("bucket"),
            ") OR EXISTS (SELECT 1 FROM objects WHERE ",
            of_namespace!("bucket"),
            ") OR EXISTS (SELECT 1 FROM secrets WHERE ",
            of_namespace!("name"),
            ") OR EXISTS (SELECT 1 FROM tokens WHERE namespace = ?1)"
        ))
        .bind(namespace)
        .fetch_one(&self.pool)
        .await
        .context("looking for what a namespace holds")?
        .try_get(0)?;
        Ok(used)
    }
}
