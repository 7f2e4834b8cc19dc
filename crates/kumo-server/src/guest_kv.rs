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
}

impl GuestKv {
    fn ensure_room(&self) -> anyhow::Result<()> {
        self.disk
            .ensure_room()
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
            self.ensure_room()?;
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
            self.ensure_room()?;
            self.store.kv_increment(bucket, key, delta).await
        })
    }
}
