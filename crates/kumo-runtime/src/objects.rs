//! `kumo:objects@0.1.0` for guests (WIT in `wit/objects/`): get, head, put, delete and list
//! objects of the buckets their function's config grants (`objects = [..]`). The embedder
//! provides the storage ([`ObjectStorage`]), because a write must also fire storage events,
//! which the runtime knows nothing about.

use crate::host::ComponentHost;
use bytes::Bytes;
use kumo_core::{ObjectInfo, validate_bucket, validate_key};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use wasmtime::component::{HasSelf, Linker};

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit/objects",
        world: "kumo:objects/imports",
        imports: { default: async | trappable },
    });
}

use bindings::kumo::objects::objects::{self as wit, Error};

pub type StorageFuture<T> = Pin<Box<dyn Future<Output = Result<T, StorageError>> + Send>>;

/// Why the embedder's storage failed a call.
#[derive(Debug)]
pub enum StorageError {
    /// The object is over the server's size limit (bytes).
    TooLarge(u64),
    Failed(anyhow::Error),
}

/// Object storage as the embedder offers it to guests.
pub trait ObjectStorage: Send + Sync {
    fn head(&self, bucket: String, key: String) -> StorageFuture<Option<ObjectInfo>>;
    /// The whole object.
    fn read(&self, bucket: String, key: String) -> StorageFuture<Option<(ObjectInfo, Bytes)>>;
    /// Creates or replaces the object; its storage events carry `traceparent`.
    fn put(&self, put: GuestPut) -> StorageFuture<ObjectInfo>;
    fn delete(
        &self,
        bucket: String,
        key: String,
        traceparent: Option<String>,
    ) -> StorageFuture<bool>;
    /// One page of the objects whose key starts with `prefix`.
    fn list(
        &self,
        bucket: String,
        prefix: String,
        cursor: Option<String>,
    ) -> StorageFuture<(Vec<ObjectInfo>, Option<String>)>;
}

/// A guest's write.
pub struct GuestPut {
    pub bucket: String,
    pub key: String,
    pub content_type: String,
    pub data: Bytes,
    pub traceparent: Option<String>,
}

/// Where guests' object calls go (set once by the embedder).
pub(crate) type StorageSlot = Arc<OnceLock<Arc<dyn ObjectStorage>>>;

/// What one invocation may reach: the storage, its granted buckets, and the largest object
/// `get` may hand it (its memory limit: a larger one could never fit).
#[derive(Clone, Default)]
pub struct ObjectAccess {
    pub storage: StorageSlot,
    pub buckets: Arc<[String]>,
    pub max_read_bytes: u64,
}

pub(crate) fn add_to_linker(linker: &mut Linker<ComponentHost>) -> anyhow::Result<()> {
    wit::add_to_linker::<_, HasSelf<ComponentHost>>(linker, |h: &mut ComponentHost| h)?;
    Ok(())
}

type WitResult<T> = wasmtime::Result<Result<T, Error>>;

impl ComponentHost {
    /// The storage and the bucket's key in the function's namespace, if `bucket` is granted
    /// and `key` (when given) is a valid key.
    fn granted(
        &self,
        bucket: &str,
        key: Option<&str>,
    ) -> Result<(Arc<dyn ObjectStorage>, String), Error> {
        validate_bucket(bucket).map_err(Error::InvalidName)?;
        if let Some(key) = key {
            validate_key(key).map_err(Error::InvalidName)?;
        }
        if !self.objects.buckets.iter().any(|b| b == bucket) {
            return Err(Error::AccessDenied);
        }
        let storage = self.objects.storage.get().cloned();
        let storage =
            storage.ok_or_else(|| Error::Other("object storage is not available here".into()))?;
        Ok((storage, kumo_core::scoped(&self.namespace, bucket)))
    }

    fn traceparent(&self) -> Option<String> {
        let value = self.hooks.traceparent.as_ref()?;
        value.to_str().ok().map(str::to_string)
    }
}

/// A storage failure: logged here in full, reported to the guest without internals.
fn failed(e: StorageError) -> Error {
    match e {
        StorageError::TooLarge(limit) => {
            Error::TooLarge(format!("objects are limited to {limit} bytes"))
        }
        StorageError::Failed(e) => {
            tracing::warn!("object storage: {e:#}");
            Error::Other("object storage failed; try again".into())
        }
    }
}

fn info(info: ObjectInfo) -> wit::ObjectInfo {
    wit::ObjectInfo {
        key: info.key,
        size: info.size,
        etag: info.etag,
        content_type: info.content_type,
        updated_at: info.updated_at,
    }
}

impl wit::Host for ComponentHost {
    async fn get(&mut self, bucket: String, key: String) -> WitResult<Option<wit::Object>> {
        let (storage, bucket) = match self.granted(&bucket, Some(&key)) {
            Ok(granted) => granted,
            Err(e) => return Ok(Err(e)),
        };
        // Check the size first: reading an object that cannot fit would only waste memory.
        let max = self.objects.max_read_bytes;
        match storage.head(bucket.clone(), key.clone()).await {
            Ok(Some(found)) if found.size > max => {
                return Ok(Err(Error::TooLarge(format!(
                    "the object has {} bytes; this function may read up to {max} bytes at once \
                     (its memory limit)",
                    found.size
                ))));
            }
            Ok(Some(_)) => {}
            Ok(None) => return Ok(Ok(None)),
            Err(e) => return Ok(Err(failed(e))),
        }
        Ok(match storage.read(bucket, key).await {
            // Replaced by a larger one between the two reads: the guest would not fit it either.
            Ok(Some((found, _))) if found.size > max => Err(Error::TooLarge(format!(
                "the object has {} bytes; this function may read up to {max} bytes at once",
                found.size
            ))),
            Ok(found) => Ok(found.map(|(found, data)| wit::Object {
                info: info(found),
                data: data.into(),
            })),
            Err(e) => Err(failed(e)),
        })
    }

    async fn head(&mut self, bucket: String, key: String) -> WitResult<Option<wit::ObjectInfo>> {
        let (storage, bucket) = match self.granted(&bucket, Some(&key)) {
            Ok(granted) => granted,
            Err(e) => return Ok(Err(e)),
        };
        Ok(storage
            .head(bucket, key)
            .await
            .map(|found| found.map(info))
            .map_err(failed))
    }

    async fn put(
        &mut self,
        bucket: String,
        key: String,
        content_type: String,
        data: Vec<u8>,
    ) -> WitResult<wit::ObjectInfo> {
        let (storage, bucket) = match self.granted(&bucket, Some(&key)) {
            Ok(granted) => granted,
            Err(e) => return Ok(Err(e)),
        };
        let put = GuestPut {
            bucket,
            key,
            content_type,
            data: data.into(),
            traceparent: self.traceparent(),
        };
        Ok(storage.put(put).await.map(info).map_err(failed))
    }

    async fn delete(&mut self, bucket: String, key: String) -> WitResult<bool> {
        let (storage, bucket) = match self.granted(&bucket, Some(&key)) {
            Ok(granted) => granted,
            Err(e) => return Ok(Err(e)),
        };
        let traceparent = self.traceparent();
        Ok(storage
            .delete(bucket, key, traceparent)
            .await
            .map_err(failed))
    }

    async fn list_objects(
        &mut self,
        bucket: String,
        prefix: String,
        cursor: Option<String>,
    ) -> WitResult<wit::Page> {
        let (storage, bucket) = match self.granted(&bucket, None) {
            Ok(granted) => granted,
            Err(e) => return Ok(Err(e)),
        };
        Ok(storage
            .list(bucket, prefix, cursor)
            .await
            .map(|(objects, cursor)| wit::Page {
                objects: objects.into_iter().map(info).collect(),
                cursor,
            })
            .map_err(failed))
    }
}
