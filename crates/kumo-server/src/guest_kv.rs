//! The key-value store guests reach through `wasi:keyvalue`: the runtime's [`KeyValue`] on
//! the same store the HTTP API uses, so both see the same keys and etags.

use crate::disk::DiskSpace;
use kumo_core::{CounterError, Expect, KeyPage, KvEntry, KvWrite};
use kumo_runtime::{KeyValue, KvFuture};
use kumo_store::Store;
use kumo_store::prelude::*;

pub(crate) struct GuestKv {
    pub(crate) store: Store,
    /// Writes are refused while the disk is nearly full; reads and deletes go on.
    pub(crate) disk: DiskSpace,
    /// Writes are refused past the namespace's `max_kv_bytes`.
    pub(crate) quota: crate::quotas::QuotaCheck,
}

impl GuestKv {
    /// `Ok` if `bytes` more may be written to `bucket` (a key in its namespace).
    async fn ensure_room(&self, bucket: &str, bytes: usize) -> anyhow::Result<()> {
        self.disk
            .ensure_room()
            .map_err(|refused| anyhow::anyhow!(refused.message))?;
        let adding = kumo_core::Adding::KvBytes(bytes as u64);
        self.quota
            .ensure(kumo_core::namespace_of(bucket), adding)
            .await
            .map_err(|refused| anyhow::anyhow!(refused.message))
    }
}

impl KeyValue for GuestKv {
    fn get<'a>(&'a self, bucket: &'a str, key: &'a str) -> KvFuture<'a, Option<KvEntry>> {
        Box::pin(self.store.kv_get(bucket, key))
    }

    fn exists<'a>(&'a self, bucket: &'a str, key: &'a str) -> KvFuture<'a, bool> {
        Box::pin(self.store.kv_exists(bucket, key))
    }

    fn put<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        value: &'a [u8],
        expect: Expect<'a>,
    ) -> KvFuture<'a, KvWrite> {
        Box::pin(async move {
            self.ensure_room(bucket, key.len() + value.len()).await?;
            self.store.kv_put(bucket, key, value, expect).await
        })
    }

    fn delete<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        expect: Expect<'a>,
    ) -> KvFuture<'a, bool> {
        Box::pin(self.store.kv_delete(bucket, key, expect))
    }

    fn list<'a>(
        &'a self,
        bucket: &'a str,
        prefix: &'a str,
        cursor: Option<&'a str>,
        limit: u32,
    ) -> KvFuture<'a, KeyPage> {
        Box::pin(self.store.kv_list(bucket, prefix, cursor, limit))
    }

    fn increment<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        delta: i64,
    ) -> KvFuture<'a, Result<i64, CounterError>> {
        Box::pin(async move {
            // A counter's text is at most 20 bytes.
            self.ensure_room(bucket, key.len() + 20).await?;
            self.store.kv_increment(bucket, key, delta).await
        })
    }
}
