//! The key-value store on PostgreSQL: each write one guarded statement, as on SQLite.

use super::PgStore;
use anyhow::Context as _;
use kumo_core::{CounterError, Expect, KeyPage, KvEntry, KvWrite};
use sqlx::Row as _;

/// One page of `table`'s rows of `bucket` whose key starts with `prefix`, after `cursor`, in
/// byte order (as SQLite's `kv::page`): `columns` must start with `key`. The cursor of the next
/// page comes with it.
pub(super) async fn page(
    pool: &sqlx::PgPool,
    table: &str,
    columns: &str,
    bucket: &str,
    prefix: &str,
    cursor: Option<&str>,
    limit: u32,
) -> anyhow::Result<(Vec<sqlx::postgres::PgRow>, Option<String>)> {
    let limit = limit.max(1) as usize;
    let start = cursor.filter(|c| *c >= prefix).unwrap_or(prefix);
    let end = crate::kv::prefix_successor(prefix);
    // Safe: `table` and `columns` are this crate's constants; the values are bound.
    let mut rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {columns} FROM {table}
         WHERE bucket = $1 AND key >= $2 AND ($3::text IS NULL OR key < $3)
             AND ($4::text IS NULL OR key > $4)
         ORDER BY key LIMIT $5"
    )))
    .bind(bucket)
    .bind(start)
    .bind(end.as_deref())
    .bind(cursor)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1))
    .fetch_all(pool)
    .await
    .with_context(|| format!("listing {table}"))?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    let cursor = match rows.last() {
        Some(row) if more => Some(row.try_get::<String, _>(0)?),
        _ => None,
    };
    Ok((rows, cursor))
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
        let (rows, cursor) = page(&self.pool, "kv", "key", bucket, prefix, cursor, limit).await?;
        let keys = rows
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<Vec<String>, _>>()?;
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
