//! The key-value store in SQLite: one table of (bucket, key) → value with an etag that changes
//! on every write, so conditional writes (HTTP `If-Match`, guest compare-and-swap) are a single
//! guarded statement. Reads go to the same database the writes commit to: strongly consistent.

use crate::sqlite::SqliteStore;
use anyhow::Context as _;
use kumo_core::{CounterError, Expect, KeyPage, KvEntry, KvWrite, incremented, now_ms};
use sqlx::Row;

pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS kv (
    bucket     TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      BLOB NOT NULL,
    etag       TEXT NOT NULL,     -- new on every write, never reused (UUIDv7)
    updated_at INTEGER NOT NULL,  -- unix ms
    PRIMARY KEY (bucket, key)
) WITHOUT ROWID;
"#;

pub(crate) fn new_etag() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

impl crate::KvStore for SqliteStore {
    async fn kv_get(&self, bucket: &str, key: &str) -> anyhow::Result<Option<KvEntry>> {
        let row =
            sqlx::query("SELECT value, etag, updated_at FROM kv WHERE bucket = ? AND key = ?")
                .bind(bucket)
                .bind(key)
                .fetch_optional(&self.pool)
                .await
                .context("reading a key")?;
        Ok(row.map(|row| KvEntry {
            value: row.get(0),
            etag: row.get(1),
            updated_at: row.get(2),
        }))
    }

    async fn kv_exists(&self, bucket: &str, key: &str) -> anyhow::Result<bool> {
        let row = sqlx::query("SELECT 1 FROM kv WHERE bucket = ? AND key = ?")
            .bind(bucket)
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .context("reading a key")?;
        Ok(row.is_some())
    }

    /// Writes `value` at `key` if the key holds what `expect` says.
    async fn kv_put(
        &self,
        bucket: &str,
        key: &str,
        value: &[u8],
        expect: Expect<'_>,
    ) -> anyhow::Result<KvWrite> {
        let etag = new_etag();
        let now = now_ms();
        let row = KvRow {
            bucket,
            key,
            value,
            etag: &etag,
            now,
        };
        let written = match expect {
            Expect::Etag(expected) => row
                .replace(&self.pool, Some(expected))
                .await?
                .then_some(false),
            Expect::Present => row.replace(&self.pool, None).await?.then_some(false),
            Expect::Absent => row.insert(&self.pool).await?.then_some(true),
            // Replace, else create; if another writer created the key in between, replace that.
            Expect::Anything => loop {
                if row.replace(&self.pool, None).await? {
                    break Some(false);
                }
                if row.insert(&self.pool).await? {
                    break Some(true);
                }
            },
        };
        Ok(match written {
            Some(created) => KvWrite::Written { etag, created },
            None => KvWrite::Conflict,
        })
    }

    /// Deletes `key` if it holds what `expect` says; `Ok(false)` when it did not (for
    /// `Expect::Anything`: when there was no such key).
    async fn kv_delete(&self, bucket: &str, key: &str, expect: Expect<'_>) -> anyhow::Result<bool> {
        let query = match expect {
            Expect::Etag(etag) => {
                sqlx::query("DELETE FROM kv WHERE bucket = ? AND key = ? AND etag = ?")
                    .bind(bucket)
                    .bind(key)
                    .bind(etag)
            }
            // Deleting "only if absent" deletes nothing.
            Expect::Absent => return Ok(!self.kv_exists(bucket, key).await?),
            Expect::Anything | Expect::Present => {
                sqlx::query("DELETE FROM kv WHERE bucket = ? AND key = ?")
                    .bind(bucket)
                    .bind(key)
            }
        };
        let done = query.execute(&self.pool).await.context("deleting a key")?;
        Ok(done.rows_affected() == 1)
    }

    /// Keys of `bucket` starting with `prefix`, in byte order, after `cursor` (the last key of
    /// the previous page), at most `limit`.
    async fn kv_list(
        &self,
        bucket: &str,
        prefix: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> anyhow::Result<KeyPage> {
        let (rows, cursor) = page(&self.pool, "kv", "key", bucket, prefix, cursor, limit).await?;
        let keys = rows.iter().map(|row| row.get(0)).collect();
        Ok(KeyPage { keys, cursor })
    }

    /// Adds `delta` to the decimal integer at `key` (absent = 0) in one transaction; the
    /// inner error is a refusal (not a counter, overflow), with nothing written.
    async fn kv_increment(
        &self,
        bucket: &str,
        key: &str,
        delta: i64,
    ) -> anyhow::Result<Result<i64, CounterError>> {
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .context("starting an increment")?;
        let current: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT value FROM kv WHERE bucket = ? AND key = ?")
                .bind(bucket)
                .bind(key)
                .fetch_optional(&mut *tx)
                .await
                .context("reading a counter")?;
        let next = match incremented(current.as_deref(), delta) {
            Ok(next) => next,
            Err(refused) => return Ok(Err(refused)),
        };
        sqlx::query(
            "INSERT INTO kv (bucket, key, value, etag, updated_at) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT DO UPDATE SET value = excluded.value, etag = excluded.etag,
                updated_at = excluded.updated_at",
        )
        .bind(bucket)
        .bind(key)
        .bind(next.to_string().into_bytes())
        .bind(new_etag())
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .context("writing a counter")?;
        tx.commit().await.context("committing an increment")?;
        Ok(Ok(next))
    }
}

/// The values of one write, for its two guarded statements.
struct KvRow<'a> {
    bucket: &'a str,
    key: &'a str,
    value: &'a [u8],
    etag: &'a str,
    now: i64,
}

impl KvRow<'_> {
    /// Replaces an existing key (holding `expected`, when given); false if none matched.
    async fn replace(
        &self,
        pool: &sqlx::SqlitePool,
        expected: Option<&str>,
    ) -> anyhow::Result<bool> {
        let done = sqlx::query(
            "UPDATE kv SET value = ?, etag = ?, updated_at = ?
             WHERE bucket = ? AND key = ? AND (? IS NULL OR etag = ?)",
        )
        .bind(self.value)
        .bind(self.etag)
        .bind(self.now)
        .bind(self.bucket)
        .bind(self.key)
        .bind(expected)
        .bind(expected)
        .execute(pool)
        .await
        .context("writing a key")?;
        Ok(done.rows_affected() == 1)
    }

    /// Creates the key; false if it exists.
    async fn insert(&self, pool: &sqlx::SqlitePool) -> anyhow::Result<bool> {
        let done = sqlx::query(
            "INSERT INTO kv (bucket, key, value, etag, updated_at) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT DO NOTHING",
        )
        .bind(self.bucket)
        .bind(self.key)
        .bind(self.value)
        .bind(self.etag)
        .bind(self.now)
        .execute(pool)
        .await
        .context("writing a key")?;
        Ok(done.rows_affected() == 1)
    }
}

/// One page of `table`'s rows (`columns`, the key first) in `bucket` whose key starts with
/// `prefix`, after `cursor`, at most `limit`; and the next page's cursor (the last key) if
/// more follow. `table` and `columns` are constants of this crate, never input.
pub(crate) async fn page(
    pool: &sqlx::SqlitePool,
    table: &str,
    columns: &str,
    bucket: &str,
    prefix: &str,
    cursor: Option<&str>,
    limit: u32,
) -> anyhow::Result<(Vec<sqlx::sqlite::SqliteRow>, Option<String>)> {
    let limit = limit.max(1) as usize;
    // A range on the primary key: prefix <= key < successor(prefix), after the cursor.
    let start = cursor.filter(|c| *c >= prefix).unwrap_or(prefix);
    let end = prefix_successor(prefix);
    // Safe: `table` and `columns` are this crate's constants; the values are bound.
    let mut rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {columns} FROM {table}
         WHERE bucket = ? AND key >= ? AND (? IS NULL OR key < ?) AND (? IS NULL OR key > ?)
         ORDER BY key LIMIT ?"
    )))
    .bind(bucket)
    .bind(start)
    .bind(end.as_deref())
    .bind(end.as_deref())
    .bind(cursor)
    .bind(cursor)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1))
    .fetch_all(pool)
    .await
    .with_context(|| format!("listing {table}"))?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    let cursor = if more {
        rows.last().map(|row| row.get::<String, _>(0))
    } else {
        None
    };
    Ok((rows, cursor))
}

/// The smallest string greater than every string starting with `prefix` (`None`: no bound).
pub(crate) fn prefix_successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        // The next scalar value after `last` (skipping the surrogate gap), if there is one.
        let next = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32);
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    // The key-value contract is in tests/conformance.rs; this is SQLite's prefix range.
    #[test]
    fn a_prefix_ends_below_its_successor() {
        assert_eq!(prefix_successor("a/"), Some("a0".into()));
        assert_eq!(prefix_successor("a\u{10FFFF}"), Some("b".into()));
        assert_eq!(prefix_successor(""), None);
    }
}
