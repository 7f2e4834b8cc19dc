//! Namespaces with their quotas, and objects' metadata, on PostgreSQL.

use super::PgStore;
use super::queue::insert_event;
use crate::NewEvent;
use anyhow::Context as _;
use kumo_core::{NamespaceRecord, NamespaceUse, ObjectInfo, Quotas};
use sqlx::Row as _;
use sqlx::postgres::PgRow;

/// An SQL condition: `column` holds a key of the namespace bound as `$1` (see
/// `kumo_core::scoped`: `NS/NAME` outside `default`, a bare name inside it).
macro_rules! of_namespace {
    ($column:literal) => {
        concat!(
            "(CASE WHEN $1 = 'default' THEN strpos(",
            $column,
            ", '/') = 0 ELSE starts_with(",
            $column,
            ", $1 || '/') END)"
        )
    };
}

impl crate::NamespaceStore for PgStore {
    async fn create_namespace(&self, namespace: &NamespaceRecord) -> anyhow::Result<bool> {
        let done = sqlx::query(
            "INSERT INTO namespaces (name, created_at, quotas) VALUES ($1, $2, $3)
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
        let done = sqlx::query("UPDATE namespaces SET quotas = $1 WHERE name = $2")
            .bind(serde_json::to_string(quotas)?)
            .bind(namespace)
            .execute(&self.pool)
            .await
            .context("saving a namespace's quotas")?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_namespace(&self, namespace: &str) -> anyhow::Result<bool> {
        let done = sqlx::query("DELETE FROM namespaces WHERE name = $1")
            .bind(namespace)
            .execute(&self.pool)
            .await
            .context("deleting a namespace")?;
        Ok(done.rows_affected() == 1)
    }

    async fn namespace_in_use(&self, namespace: &str) -> anyhow::Result<bool> {
        let used: bool = sqlx::query_scalar(concat!(
            "SELECT EXISTS (SELECT 1 FROM functions WHERE ",
            of_namespace!("name"),
            ") OR EXISTS (SELECT 1 FROM kv WHERE ",
            of_namespace!("bucket"),
            ") OR EXISTS (SELECT 1 FROM objects WHERE ",
            of_namespace!("bucket"),
            ") OR EXISTS (SELECT 1 FROM secrets WHERE ",
            of_namespace!("name"),
            ") OR EXISTS (SELECT 1 FROM tokens WHERE namespace = $1)"
        ))
        .bind(namespace)
        .fetch_one(&self.pool)
        .await
        .context("looking for what a namespace holds")?;
        Ok(used)
    }

    async fn namespace_use(&self, namespace: &str) -> anyhow::Result<NamespaceUse> {
        let row = sqlx::query(concat!(
            "SELECT (SELECT count(*) FROM functions WHERE ",
            of_namespace!("name"),
            "), (SELECT coalesce(sum(octet_length(key) + octet_length(value)), 0)::bigint
                 FROM kv WHERE ",
            of_namespace!("bucket"),
            "), (SELECT coalesce(sum(size), 0)::bigint FROM objects WHERE ",
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
}

/// The metadata from a row of `objects`.
fn info_of(row: &PgRow) -> anyhow::Result<ObjectInfo> {
    Ok(ObjectInfo {
        bucket: row.try_get("bucket")?,
        key: row.try_get("key")?,
        size: u64::try_from(row.try_get::<i64, _>("size")?).unwrap_or(0),
        etag: row.try_get("etag")?,
        content_type: row.try_get("content_type")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Serialises the writers of one object key across nodes, until the transaction ends (a
/// missing row cannot be locked with `FOR UPDATE`).
async fn lock_key(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    bucket: &str,
    key: &str,
) -> anyhow::Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2, 0))")
        .bind(bucket)
        .bind(key)
        .execute(&mut **tx)
        .await
        .context("locking an object's key")?;
    Ok(())
}

impl crate::ObjectInfoStore for PgStore {
    async fn object_info(&self, bucket: &str, key: &str) -> anyhow::Result<Option<ObjectInfo>> {
        let row = sqlx::query("SELECT * FROM objects WHERE bucket = $1 AND key = $2")
            .bind(bucket)
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .context("reading an object's metadata")?;
        row.as_ref().map(info_of).transpose()
    }

    async fn put_object_info(
        &self,
        info: &ObjectInfo,
        events: &[NewEvent<'_>],
    ) -> anyhow::Result<Option<String>> {
        let mut tx = self.pool.begin().await?;
        lock_key(&mut tx, &info.bucket, &info.key).await?;
        let old: Option<String> =
            sqlx::query_scalar("SELECT etag FROM objects WHERE bucket = $1 AND key = $2")
                .bind(&info.bucket)
                .bind(&info.key)
                .fetch_optional(&mut *tx)
                .await?;
        sqlx::query(
            "INSERT INTO objects (bucket, key, size, etag, content_type, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (bucket, key) DO UPDATE SET size = excluded.size, etag = excluded.etag,
                content_type = excluded.content_type, updated_at = excluded.updated_at",
        )
        .bind(&info.bucket)
        .bind(&info.key)
        .bind(i64::try_from(info.size).unwrap_or(i64::MAX))
        .bind(&info.etag)
        .bind(&info.content_type)
        .bind(info.updated_at)
        .execute(&mut *tx)
        .await?;
        for event in events {
            insert_event(&mut tx, event).await?;
        }
        tx.commit().await.context("committing an object")?;
        Ok(old)
    }

    async fn delete_object_info(
        &self,
        bucket: &str,
        key: &str,
        events: &[NewEvent<'_>],
    ) -> anyhow::Result<Option<String>> {
        let mut tx = self.pool.begin().await?;
        let old: Option<String> =
            sqlx::query_scalar("DELETE FROM objects WHERE bucket = $1 AND key = $2 RETURNING etag")
                .bind(bucket)
                .bind(key)
                .fetch_optional(&mut *tx)
                .await?;
        if old.is_some() {
            for event in events {
                insert_event(&mut tx, event).await?;
            }
        }
        tx.commit().await.context("deleting an object")?;
        Ok(old)
    }

    async fn list_object_infos(
        &self,
        bucket: &str,
        prefix: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> anyhow::Result<(Vec<ObjectInfo>, Option<String>)> {
        let columns = "key, bucket, size, etag, content_type, updated_at";
        let (rows, cursor) = super::kv::page(
            &self.pool, "objects", columns, bucket, prefix, cursor, limit,
        )
        .await?;
        let objects = rows
            .iter()
            .map(info_of)
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok((objects, cursor))
    }
}
