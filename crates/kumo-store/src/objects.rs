//! Object storage: buckets of blobs. An object's metadata (size, etag, content type) is a row
//! in the store; its bytes are a file `{bucket}/{etag}` written through the `object_store`
//! crate, under the data dir's `objects/` or in an S3-compatible bucket (`--objects
//! s3://...`, for a cluster). A write streams the
//! body into a new file first and then commits the row (together with the storage events it
//! triggers) in one transaction, so readers never see a half-written object and a replaced
//! object's old file is deleted only after the commit.

use crate::ObjectInfoStore as _;
use crate::Store;
use crate::queue::{NewEvent, insert_event};
use crate::sqlite::SqliteStore;
use anyhow::Context as _;
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use kumo_core::{ObjectInfo, now_ms};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt as _, WriteMultipart};
use sqlx::Row;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS objects (
    bucket       TEXT NOT NULL,
    key          TEXT NOT NULL,
    size         INTEGER NOT NULL,
    etag         TEXT NOT NULL,    -- also the data file's name: new on every write (UUIDv7)
    content_type TEXT NOT NULL,
    updated_at   INTEGER NOT NULL, -- unix ms
    PRIMARY KEY (bucket, key)
) WITHOUT ROWID;
"#;

/// Writes are cut into parts of this size on their way to the file (the memory one upload
/// holds at most, whatever the object's size).
const PART_BYTES: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("the object is larger than the limit of {0} bytes")]
    TooLarge(u64),
    #[error("reading the upload: {0}")]
    Upload(String),
    /// The embedder refused the staged object (its namespace's quota): not committed.
    #[error("{0}")]
    QuotaExceeded(String),
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

/// An object written to its file but not yet visible: [`Objects::commit`] makes it so.
pub struct Staged {
    pub info: ObjectInfo,
}

/// A stored object's bytes, streamed from its file.
pub type ObjectBody = std::pin::Pin<Box<dyn Stream<Item = anyhow::Result<Bytes>> + Send>>;

#[derive(Clone)]
pub struct Objects {
    store: Store,
    files: Arc<dyn ObjectStore>,
    /// Where `files` keeps them, for the sweep of leftovers: a folder, or None for a bucket.
    dir: Option<PathBuf>,
}

/// The parts of an S3-compatible bucket, `s3://BUCKET[/PREFIX]`, kumo keeps: object bytes
/// (`PREFIX/objects/`) and deployed code (`PREFIX/code/`). The credentials, region and
/// endpoint come from the `AWS_*` environment, as for AWS's own tools (`AWS_ENDPOINT_URL` for
/// a store that is not AWS, `AWS_ALLOW_HTTP=true` for one on plain HTTP).
pub struct Bucket {
    pub objects: Arc<dyn ObjectStore>,
    pub code: Arc<dyn ObjectStore>,
}

pub fn open_bucket(url: &str) -> anyhow::Result<Bucket> {
    let (bucket, prefix) = parse_s3_url(url)?;
    let bucket: Arc<dyn ObjectStore> = Arc::new(
        object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .context("opening the S3 bucket")?,
    );
    let part = |name: &str| -> Arc<dyn ObjectStore> {
        let path = match prefix {
            Some(prefix) => format!("{prefix}/{name}"),
            None => name.to_string(),
        };
        Arc::new(object_store::prefix::PrefixStore::new(bucket.clone(), path))
    };
    Ok(Bucket {
        objects: part("objects"),
        code: part("code"),
    })
}

/// `s3://BUCKET[/PREFIX]` as the bucket and the prefix.
fn parse_s3_url(url: &str) -> anyhow::Result<(&str, Option<&str>)> {
    let rest = url
        .strip_prefix("s3://")
        .with_context(|| format!("{url:?} is not an s3://BUCKET[/PREFIX] URL"))?;
    let (bucket, prefix) = match rest.split_once('/') {
        Some((bucket, prefix)) => (bucket, Some(prefix.trim_matches('/'))),
        None => (rest, None),
    };
    anyhow::ensure!(!bucket.is_empty(), "{url:?} names no bucket");
    Ok((bucket, prefix.filter(|p| !p.is_empty())))
}

fn file(bucket: &str, etag: &str) -> ObjectPath {
    // Both parts are safe path segments: a bucket name ([a-z0-9-]) and a hex etag.
    ObjectPath::from(format!("{bucket}/{etag}"))
}

impl Objects {
    /// Objects whose bytes live under `dir` (created if missing).
    pub fn open(store: Store, dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let files = LocalFileSystem::new_with_prefix(dir)
            .with_context(|| format!("opening {}", dir.display()))?;
        Ok(Self {
            store,
            files: Arc::new(files),
            dir: Some(dir.to_path_buf()),
        })
    }

    /// Objects whose bytes live in a bucket (the `objects/` part of one [`open_bucket`]
    /// opened).
    pub fn in_bucket(store: Store, files: Arc<dyn ObjectStore>) -> Self {
        Self {
            store,
            files,
            dir: None,
        }
    }

    /// Streams `body` into a new file, at most `max_bytes`; nothing is visible yet.
    pub async fn stage<S, E>(
        &self,
        bucket: &str,
        key: &str,
        content_type: &str,
        body: S,
        max_bytes: u64,
    ) -> Result<Staged, ObjectError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let etag = uuid::Uuid::now_v7().simple().to_string();
        let path = file(bucket, &etag);
        let upload = self
            .files
            .put_multipart(&path)
            .await
            .context("starting an object's file")?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut size: u64 = 0;
        let mut body = std::pin::pin!(body);
        let failure = loop {
            match body.next().await {
                None => break None,
                Some(Err(e)) => break Some(ObjectError::Upload(e.to_string())),
                Some(Ok(chunk)) => {
                    size = size.saturating_add(chunk.len() as u64);
                    if size > max_bytes {
                        break Some(ObjectError::TooLarge(max_bytes));
                    }
                    // Back-pressure: at most a few parts in flight to the file.
                    if let Err(e) = writer.wait_for_capacity(2).await {
                        break Some(ObjectError::Store(anyhow::Error::from(e)));
                    }
                    writer.write(&chunk);
                }
            }
        };
        if let Some(failure) = failure {
            let _ = writer.abort().await;
            return Err(failure);
        }
        writer.finish().await.context("writing an object's file")?;
        Ok(Staged {
            info: ObjectInfo {
                bucket: bucket.to_string(),
                key: key.to_string(),
                size,
                etag,
                content_type: content_type.to_string(),
                updated_at: now_ms(),
            },
        })
    }

    /// Makes a staged object visible, replacing any object at its key, and stores `events`
    /// (storage events for it) in the same transaction. Returns whether the key was new.
    pub async fn commit(&self, staged: Staged, events: &[NewEvent<'_>]) -> anyhow::Result<bool> {
        let info = &staged.info;
        let old = match self.store.put_object_info(info, events).await {
            Ok(old) => old,
            Err(e) => {
                // Not committed (a full disk, say): its file would never be read.
                self.remove_file(&info.bucket, &info.etag).await;
                return Err(e);
            }
        };
        if let Some(old) = &old {
            self.remove_file(&info.bucket, old).await;
        }
        Ok(old.is_none())
    }

    /// Removes object files that no committed row names and that were not written to for
    /// `min_age` (uploads cut off by a crash, staging files of the file system layer);
    /// returns how many.
    pub async fn sweep_leftovers(&self, min_age: Duration) -> anyhow::Result<usize> {
        let named = self.store.object_files().await?;
        let Some(dir) = self.dir.clone() else {
            return self.sweep_bucket(&named, min_age).await;
        };
        let swept = tokio::task::spawn_blocking(move || -> std::io::Result<usize> {
            let mut removed = 0;
            // Buckets of `default` are folders here; another namespace's are folders in
            // the namespace's (`NS/BUCKET`, their keys), beside `default`'s files.
            let mut buckets = vec![(String::new(), dir.clone())];
            while let Some((prefix, folder)) = buckets.pop() {
                for bucket in std::fs::read_dir(&folder)? {
                    let bucket = bucket?;
                    let Some(name) = bucket.file_name().to_str().map(str::to_string) else {
                        continue;
                    };
                    if !bucket.file_type()?.is_dir() {
                        continue;
                    }
                    let name = format!("{prefix}{name}");
                    if prefix.is_empty() {
                        buckets.push((format!("{name}/"), bucket.path()));
                    }
                    let leftover = |file: &str| !named.contains(&(name.clone(), file.to_string()));
                    removed += crate::sweep::remove_stale_files(&bucket.path(), min_age, leftover)?;
                }
            }
            Ok(removed)
        })
        .await??;
        Ok(swept)
    }

    /// [`Self::sweep_leftovers`] in a bucket: every object file there no row names, old
    /// enough. (A multipart upload cut off is not listed; the bucket's lifecycle rules are
    /// what ends those.)
    async fn sweep_bucket(
        &self,
        named: &HashSet<(String, String)>,
        min_age: Duration,
    ) -> anyhow::Result<usize> {
        let cutoff = chrono::Utc::now() - min_age;
        let mut listing = self.files.list(None);
        let mut removed = 0;
        while let Some(meta) = listing.try_next().await.context("listing object files")? {
            let location = meta.location.as_ref();
            let Some((bucket, etag)) = location.rsplit_once('/') else {
                continue;
            };
            if meta.last_modified <= cutoff && !named.contains(&(bucket.into(), etag.into())) {
                self.remove_file(bucket, etag).await;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Copies every object file the store names into `target` (`kumo migrate --objects`),
    /// streaming each; how many.
    pub async fn copy_files_to(&self, target: &Objects) -> anyhow::Result<usize> {
        let named = self.store.object_files().await?;
        for (bucket, etag) in &named {
            let path = file(bucket, etag);
            let mut body = self
                .files
                .get(&path)
                .await
                .with_context(|| format!("reading object file {path}"))?
                .into_stream();
            let upload = target.files.put_multipart(&path).await?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
            while let Some(chunk) = body.try_next().await? {
                writer.wait_for_capacity(2).await?;
                writer.write(&chunk);
            }
            writer
                .finish()
                .await
                .with_context(|| format!("writing object file {path}"))?;
        }
        Ok(named.len())
    }

    /// Drops a staged object that will not be committed.
    pub async fn discard(&self, staged: Staged) {
        self.remove_file(&staged.info.bucket, &staged.info.etag)
            .await;
    }

    async fn remove_file(&self, bucket: &str, etag: &str) {
        if let Err(e) = self.files.delete(&file(bucket, etag)).await {
            // An orphaned file wastes space but is never read: its row is gone.
            tracing::warn!("removing object file {bucket}/{etag}: {e}");
        }
    }

    pub async fn head(&self, bucket: &str, key: &str) -> anyhow::Result<Option<ObjectInfo>> {
        self.store.object_info(bucket, key).await
    }

    /// The object's metadata and a stream of its bytes.
    pub async fn get(
        &self,
        bucket: &str,
        key: &str,
    ) -> anyhow::Result<Option<(ObjectInfo, ObjectBody)>> {
        let Some(info) = self.head(bucket, key).await? else {
            return Ok(None);
        };
        let found = self.files.get(&file(bucket, &info.etag)).await;
        let result = match found {
            Ok(result) => result,
            // Replaced between the row read and the file open: read the new one.
            Err(object_store::Error::NotFound { .. }) => {
                return Box::pin(self.get(bucket, key)).await;
            }
            Err(e) => return Err(anyhow::Error::from(e).context("opening an object's file")),
        };
        let body = result.into_stream().map_err(anyhow::Error::from).boxed();
        Ok(Some((info, body)))
    }

    /// The whole object in memory (for guests, whose memory bounds it anyway).
    pub async fn read(
        &self,
        bucket: &str,
        key: &str,
    ) -> anyhow::Result<Option<(ObjectInfo, Bytes)>> {
        let Some((info, body)) = self.get(bucket, key).await? else {
            return Ok(None);
        };
        let chunks: Vec<Bytes> = body.try_collect().await?;
        Ok(Some((info, chunks.concat().into())))
    }

    /// Deletes the object (and stores `events` in the same transaction); false if absent.
    pub async fn delete(
        &self,
        bucket: &str,
        key: &str,
        events: &[NewEvent<'_>],
    ) -> anyhow::Result<bool> {
        match self.store.delete_object_info(bucket, key, events).await? {
            Some(etag) => {
                self.remove_file(bucket, &etag).await;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Objects of `bucket` whose key starts with `prefix`, in key order, after `cursor`.
    pub async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> anyhow::Result<(Vec<ObjectInfo>, Option<String>)> {
        self.store
            .list_object_infos(bucket, prefix, cursor, limit)
            .await
    }
}

impl crate::ObjectInfoStore for SqliteStore {
    async fn object_info(&self, bucket: &str, key: &str) -> anyhow::Result<Option<ObjectInfo>> {
        let row = sqlx::query(
            "SELECT size, etag, content_type, updated_at FROM objects WHERE bucket = ? AND key = ?",
        )
        .bind(bucket)
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .context("reading an object's metadata")?;
        Ok(row.map(|row| info_of(bucket, key, &row, 0)))
    }

    async fn put_object_info(
        &self,
        info: &ObjectInfo,
        events: &[NewEvent<'_>],
    ) -> anyhow::Result<Option<String>> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let old: Option<String> =
            sqlx::query_scalar("SELECT etag FROM objects WHERE bucket = ? AND key = ?")
                .bind(&info.bucket)
                .bind(&info.key)
                .fetch_optional(&mut *tx)
                .await?;
        sqlx::query(
            "INSERT INTO objects (bucket, key, size, etag, content_type, updated_at)
             VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT DO UPDATE SET size = excluded.size, etag = excluded.etag,
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
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let old: Option<String> =
            sqlx::query_scalar("DELETE FROM objects WHERE bucket = ? AND key = ? RETURNING etag")
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
        let columns = "key, size, etag, content_type, updated_at";
        let (rows, cursor) = crate::kv::page(
            &self.pool, "objects", columns, bucket, prefix, cursor, limit,
        )
        .await?;
        let objects = rows
            .iter()
            .map(|row| info_of(bucket, &row.get::<String, _>(0), row, 1))
            .collect();
        Ok((objects, cursor))
    }
}

/// The metadata from a row whose columns from `first` are size, etag, content type, updated_at.
fn info_of(bucket: &str, key: &str, row: &sqlx::sqlite::SqliteRow, first: usize) -> ObjectInfo {
    ObjectInfo {
        bucket: bucket.to_string(),
        key: key.to_string(),
        size: u64::try_from(row.get::<i64, _>(first)).unwrap_or(0),
        etag: row.get(first + 1),
        content_type: row.get(first + 2),
        updated_at: row.get(first + 3),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_s3_url;

    #[test]
    fn s3_urls_name_a_bucket_and_maybe_a_prefix() {
        assert_eq!(parse_s3_url("s3://b").unwrap(), ("b", None));
        assert_eq!(parse_s3_url("s3://b/").unwrap(), ("b", None));
        assert_eq!(
            parse_s3_url("s3://b/kumo/x/").unwrap(),
            ("b", Some("kumo/x"))
        );
        assert!(parse_s3_url("s3:///p").is_err());
        assert!(parse_s3_url("https://b").is_err());
    }
}
