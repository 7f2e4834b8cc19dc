//! `wasi:keyvalue@0.2.0-draft2` for guests (store, atomics, batch), on the key-value store the
//! embedder provides ([`KeyValue`]; the runtime knows no database). A guest opens a bucket by
//! name and only if its function's config grants it (`kv = [..]`); anything else is
//! `access-denied`. Every call is one read or one guarded write on the store, so reads see
//! every committed write (strong consistency), and compare-and-swap compares etags.

use crate::host::ComponentHost;
use kumo_core::{
    CounterError, Expect, KeyPage, KvEntry, KvWrite, MAX_KV_VALUE_BYTES, validate_key,
};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use wasmtime::component::{HasSelf, Linker, Resource};

pub type KvFuture<'a, T> = Pin<Box<dyn Future<Output = anyhow::Result<T>> + Send + 'a>>;

/// A key-value store as the embedder offers it to guests: strongly consistent, with an etag
/// per write that conditional writes compare.
pub trait KeyValue: Send + Sync {
    fn get<'a>(&'a self, bucket: &'a str, key: &'a str) -> KvFuture<'a, Option<KvEntry>>;
    fn exists<'a>(&'a self, bucket: &'a str, key: &'a str) -> KvFuture<'a, bool>;
    fn put<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        value: &'a [u8],
        expect: Expect<'a>,
    ) -> KvFuture<'a, KvWrite>;
    /// False when nothing was deleted (no such key, or it did not hold what was expected).
    fn delete<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        expect: Expect<'a>,
    ) -> KvFuture<'a, bool>;
    /// One page of the keys starting with `prefix`, in byte order.
    fn list<'a>(
        &'a self,
        bucket: &'a str,
        prefix: &'a str,
        cursor: Option<&'a str>,
        limit: u32,
    ) -> KvFuture<'a, KeyPage>;
    /// Adds `delta` to the decimal counter at `key` (absent = 0), atomically.
    fn increment<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        delta: i64,
    ) -> KvFuture<'a, Result<i64, CounterError>>;
}

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit/keyvalue",
        world: "wasi:keyvalue/imports",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store.bucket": super::Bucket,
            "wasi:keyvalue/atomics.cas": super::Cas,
        },
    });
}

use bindings::wasi::keyvalue::{atomics, batch, store};
use store::Error;

/// The buckets an invocation may open and the store they live in. Without a store (the
/// runtime's own tests) every open is `no-such-store`.
#[derive(Clone, Default)]
pub struct KvAccess {
    pub store: Option<Arc<dyn KeyValue>>,
    pub buckets: Arc<[String]>,
}

/// An open bucket (a guest resource).
// `bindgen!` re-exports the types its resources map to, so they must be `pub`.
#[allow(unreachable_pub)]
pub struct Bucket {
    name: String,
}

/// A compare-and-swap in progress: the key and what it held when the cas was made.
#[allow(unreachable_pub)] // re-exported by `bindgen!`, like `Bucket`
pub struct Cas {
    bucket: String,
    key: String,
    seen: Option<KvEntry>,
}

pub(crate) fn add_to_linker(linker: &mut Linker<ComponentHost>) -> anyhow::Result<()> {
    fn host(h: &mut ComponentHost) -> &mut ComponentHost {
        h
    }
    store::add_to_linker::<_, HasSelf<ComponentHost>>(linker, host)?;
    atomics::add_to_linker::<_, HasSelf<ComponentHost>>(linker, host)?;
    batch::add_to_linker::<_, HasSelf<ComponentHost>>(linker, host)?;
    Ok(())
}

type KvResult<T> = wasmtime::Result<Result<T, Error>>;

/// A store failure: logged here in full, reported to the guest without internals.
fn store_failed(e: impl std::fmt::Display) -> Error {
    tracing::warn!("key-value store: {e:#}");
    Error::Other("the key-value store failed; try again".into())
}

fn checked_key(key: &str) -> Result<(), Error> {
    validate_key(key).map_err(Error::Other)
}

fn checked_value(value: &[u8]) -> Result<(), Error> {
    if value.len() > MAX_KV_VALUE_BYTES {
        return Err(Error::Other(format!(
            "a value of {} bytes is over the limit of {MAX_KV_VALUE_BYTES} bytes",
            value.len()
        )));
    }
    Ok(())
}

impl ComponentHost {
    /// The store and bucket name behind a guest's bucket handle.
    fn bucket(&self, bucket: &Resource<Bucket>) -> wasmtime::Result<(Arc<dyn KeyValue>, String)> {
        let name = self.table.get(bucket)?.name.clone();
        // A bucket handle exists only if `open` found the store.
        let store = self
            .kv
            .store
            .clone()
            .ok_or_else(|| wasmtime::format_err!("no store"))?;
        Ok((store, name))
    }
}

impl store::Host for ComponentHost {
    async fn open(&mut self, identifier: String) -> KvResult<Resource<Bucket>> {
        if self.kv.store.is_none() {
            return Ok(Err(Error::NoSuchStore));
        }
        if !self.kv.buckets.contains(&identifier) {
            return Ok(Err(Error::AccessDenied));
        }
        // The store knows the bucket by its key in the function's namespace.
        let name = kumo_core::scoped(&self.namespace, &identifier);
        Ok(Ok(self.table.push(Bucket { name })?))
    }
}

impl store::HostBucket for ComponentHost {
    async fn get(&mut self, bucket: Resource<Bucket>, key: String) -> KvResult<Option<Vec<u8>>> {
        let (kv, bucket) = self.bucket(&bucket)?;
        if let Err(e) = checked_key(&key) {
            return Ok(Err(e));
        }
        Ok(kv
            .get(&bucket, &key)
            .await
            .map(|entry| entry.map(|e| e.value))
            .map_err(store_failed))
    }

    async fn set(&mut self, bucket: Resource<Bucket>, key: String, value: Vec<u8>) -> KvResult<()> {
        let (kv, bucket) = self.bucket(&bucket)?;
        if let Err(e) = checked_key(&key).and_then(|()| checked_value(&value)) {
            return Ok(Err(e));
        }
        Ok(kv
            .put(&bucket, &key, &value, Expect::Anything)
            .await
            .map(drop)
            .map_err(store_failed))
    }

    async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> KvResult<()> {
        let (kv, bucket) = self.bucket(&bucket)?;
        if let Err(e) = checked_key(&key) {
            return Ok(Err(e));
        }
        Ok(kv
            .delete(&bucket, &key, Expect::Anything)
            .await
            .map(drop)
            .map_err(store_failed))
    }

    async fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> KvResult<bool> {
        let (kv, bucket) = self.bucket(&bucket)?;
        if let Err(e) = checked_key(&key) {
            return Ok(Err(e));
        }
        Ok(kv.exists(&bucket, &key).await.map_err(store_failed))
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<String>,
    ) -> KvResult<store::KeyResponse> {
        let (kv, bucket) = self.bucket(&bucket)?;
        Ok(kv
            .list(&bucket, "", cursor.as_deref(), kumo_core::KV_LIST_PAGE)
            .await
            .map(|page| store::KeyResponse {
                keys: page.keys,
                cursor: page.cursor,
            })
            .map_err(store_failed))
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for ComponentHost {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: i64,
    ) -> KvResult<i64> {
        let (kv, bucket) = self.bucket(&bucket)?;
        if let Err(e) = checked_key(&key) {
            return Ok(Err(e));
        }
        Ok(kv
            .increment(&bucket, &key, delta)
            .await
            .map_err(store_failed)
            .and_then(|counted| counted.map_err(|refused| Error::Other(refused.to_string()))))
    }

    async fn swap(
        &mut self,
        cas: Resource<Cas>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), atomics::CasError>> {
        let Cas { bucket, key, seen } = self.table.delete(cas)?;
        if let Err(e) = checked_value(&value) {
            return Ok(Err(atomics::CasError::StoreError(e)));
        }
        let kv = self
            .kv
            .store
            .clone()
            .ok_or_else(|| wasmtime::format_err!("no store"))?;
        let expect = match &seen {
            Some(entry) => Expect::Etag(&entry.etag),
            None => Expect::Absent,
        };
        match kv.put(&bucket, &key, &value, expect).await {
            Ok(KvWrite::Written { .. }) => Ok(Ok(())),
            // Someone wrote in between: hand back a cas on the value there now, to retry with.
            Ok(KvWrite::Conflict) => match kv.get(&bucket, &key).await {
                Ok(seen) => {
                    let retry = self.table.push(Cas { bucket, key, seen })?;
                    Ok(Err(atomics::CasError::CasFailed(retry)))
                }
                Err(e) => Ok(Err(atomics::CasError::StoreError(store_failed(e)))),
            },
            Err(e) => Ok(Err(atomics::CasError::StoreError(store_failed(e)))),
        }
    }
}

impl atomics::HostCas for ComponentHost {
    async fn new(&mut self, bucket: Resource<Bucket>, key: String) -> KvResult<Resource<Cas>> {
        let (kv, bucket) = self.bucket(&bucket)?;
        if let Err(e) = checked_key(&key) {
            return Ok(Err(e));
        }
        match kv.get(&bucket, &key).await {
            Ok(seen) => Ok(Ok(self.table.push(Cas { bucket, key, seen })?)),
            Err(e) => Ok(Err(store_failed(e))),
        }
    }

    async fn current(&mut self, cas: Resource<Cas>) -> KvResult<Option<Vec<u8>>> {
        let cas = self.table.get(&cas)?;
        Ok(Ok(cas.seen.as_ref().map(|entry| entry.value.clone())))
    }

    async fn drop(&mut self, cas: Resource<Cas>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}

impl batch::Host for ComponentHost {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> KvResult<Vec<(String, Option<Vec<u8>>)>> {
        let (kv, bucket) = self.bucket(&bucket)?;
        let mut found = Vec::with_capacity(keys.len());
        for key in keys {
            if let Err(e) = checked_key(&key) {
                return Ok(Err(e));
            }
            match kv.get(&bucket, &key).await {
                Ok(entry) => found.push((key, entry.map(|e| e.value))),
                Err(e) => return Ok(Err(store_failed(e))),
            }
        }
        Ok(Ok(found))
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> KvResult<()> {
        let (kv, bucket) = self.bucket(&bucket)?;
        if let Some(Err(e)) = key_values
            .iter()
            .map(|(key, value)| checked_key(key).and_then(|()| checked_value(value)))
            .find(Result::is_err)
        {
            return Ok(Err(e));
        }
        for (key, value) in key_values {
            if let Err(e) = kv.put(&bucket, &key, &value, Expect::Anything).await {
                return Ok(Err(store_failed(e)));
            }
        }
        Ok(Ok(()))
    }

    async fn delete_many(&mut self, bucket: Resource<Bucket>, keys: Vec<String>) -> KvResult<()> {
        let (kv, bucket) = self.bucket(&bucket)?;
        if let Some(Err(e)) = keys.iter().map(|key| checked_key(key)).find(Result::is_err) {
            return Ok(Err(e));
        }
        for key in keys {
            if let Err(e) = kv.delete(&bucket, &key, Expect::Anything).await {
                return Ok(Err(store_failed(e)));
            }
        }
        Ok(Ok(()))
    }
}
