//! Object storage as the server offers it (to the HTTP API and to guests): writes and deletes
//! go through here so that each one stores its storage events in its own transaction and wakes
//! the dispatcher.

use crate::AppState;
use crate::events::Events;
use crate::events::storage::ObjectSubscriptions;
use bytes::Bytes;
use futures::Stream;
use kumo_core::{KV_LIST_PAGE, ObjectEvent, ObjectInfo};
use kumo_runtime::{GuestPut, ObjectStorage, StorageError, StorageFuture};
use kumo_store::{ObjectError, Objects};
use std::sync::{Arc, Weak};

pub(crate) struct ObjectService {
    /// Object bytes and metadata.
    pub storage: Objects,
    pub subscriptions: ObjectSubscriptions,
    /// The largest object accepted.
    pub max_bytes: u64,
    /// The bucket's namespace's `max_object_bytes`.
    pub quota: crate::quotas::QuotaCheck,
}

/// A write's outcome: the stored object and whether its key was new.
pub(crate) struct Written {
    pub info: ObjectInfo,
    pub created: bool,
}

impl ObjectService {
    /// Streams `body` into `bucket/key`, then commits it with its storage events.
    pub(crate) async fn put<S, E>(
        &self,
        events: &Events,
        bucket: &str,
        key: &str,
        content_type: &str,
        body: S,
        traceparent: Option<&str>,
    ) -> Result<Written, ObjectError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let staged = self
            .storage
            .stage(bucket, key, content_type, body, self.max_bytes)
            .await?;
        let info = staged.info.clone();
        let namespace = kumo_core::namespace_of(bucket);
        let adding = kumo_core::Adding::ObjectBytes(info.size);
        if let Err(refused) = self.quota.ensure(namespace, adding).await {
            self.storage.discard(staged).await;
            return Err(ObjectError::QuotaExceeded(refused.message));
        }
        let owned = self
            .subscriptions
            .events_for(ObjectEvent::Put, &info, traceparent);
        let new: Vec<_> = owned.iter().map(|e| e.as_new()).collect();
        let created = match self.storage.commit(staged, &new).await {
            Ok(created) => created,
            Err(e) => return Err(ObjectError::Store(e)),
        };
        notify(events, &new);
        Ok(Written { info, created })
    }

    /// Deletes `bucket/key` with its storage events; false if there was no such object.
    pub(crate) async fn delete(
        &self,
        events: &Events,
        bucket: &str,
        key: &str,
        traceparent: Option<&str>,
    ) -> anyhow::Result<bool> {
        let owned = match self.storage.head(bucket, key).await? {
            Some(info) => self
                .subscriptions
                .events_for(ObjectEvent::Delete, &info, traceparent),
            None => return Ok(false),
        };
        let new: Vec<_> = owned.iter().map(|e| e.as_new()).collect();
        let deleted = self.storage.delete(bucket, key, &new).await?;
        if deleted {
            notify(events, &new);
        }
        Ok(deleted)
    }
}

fn notify(events: &Events, stored: &[kumo_store::NewEvent<'_>]) {
    if stored.is_empty() {
        return;
    }
    events.wake();
    for e in stored {
        events.changed(e.id);
    }
}

/// Guests' `kumo:objects` calls (the runtime's [`ObjectStorage`]): the same service as the
/// HTTP API, so a guest's write fires the same storage events. Holds the state weakly: the
/// runtime that keeps this lives inside the state.
pub(crate) struct GuestObjects(pub Weak<AppState>);

impl GuestObjects {
    fn state(&self) -> Result<Arc<AppState>, StorageError> {
        self.0
            .upgrade()
            .ok_or_else(|| StorageError::Failed(anyhow::anyhow!("kumo is stopping")))
    }
}

impl ObjectStorage for GuestObjects {
    fn head(&self, bucket: String, key: String) -> StorageFuture<Option<ObjectInfo>> {
        let state = self.state();
        Box::pin(async move {
            let state = state?;
            let found = state.objects.storage.head(&bucket, &key).await;
            found.map_err(StorageError::Failed)
        })
    }

    fn read(&self, bucket: String, key: String) -> StorageFuture<Option<(ObjectInfo, Bytes)>> {
        let state = self.state();
        Box::pin(async move {
            let state = state?;
            let found = state.objects.storage.read(&bucket, &key).await;
            found.map_err(StorageError::Failed)
        })
    }

    fn put(&self, put: GuestPut) -> StorageFuture<ObjectInfo> {
        let state = self.state();
        Box::pin(async move {
            let state = state?;
            if let Err(refused) = state.disk.ensure_room() {
                return Err(StorageError::Failed(anyhow::anyhow!(refused.message)));
            }
            let content_type = match put.content_type.as_str() {
                "" => "application/octet-stream",
                given => given,
            };
            let body = futures::stream::iter([Ok::<_, std::convert::Infallible>(put.data)]);
            let written = state
                .objects
                .put(
                    &state.events,
                    &put.bucket,
                    &put.key,
                    content_type,
                    body,
                    put.traceparent.as_deref(),
                )
                .await;
            match written {
                Ok(written) => Ok(written.info),
                Err(ObjectError::TooLarge(max)) => Err(StorageError::TooLarge(max)),
                Err(ObjectError::Upload(why) | ObjectError::QuotaExceeded(why)) => {
                    Err(StorageError::Failed(anyhow::anyhow!(why)))
                }
                Err(ObjectError::Store(e)) => Err(StorageError::Failed(e)),
            }
        })
    }

    fn delete(
        &self,
        bucket: String,
        key: String,
        traceparent: Option<String>,
    ) -> StorageFuture<bool> {
        let state = self.state();
        Box::pin(async move {
            let state = state?;
            let deleted = state
                .objects
                .delete(&state.events, &bucket, &key, traceparent.as_deref())
                .await;
            deleted.map_err(StorageError::Failed)
        })
    }

    fn list(
        &self,
        bucket: String,
        prefix: String,
        cursor: Option<String>,
    ) -> StorageFuture<(Vec<ObjectInfo>, Option<String>)> {
        let state = self.state();
        Box::pin(async move {
            let state = state?;
            let page = state
                .objects
                .storage
                .list(&bucket, &prefix, cursor.as_deref(), KV_LIST_PAGE)
                .await;
            page.map_err(StorageError::Failed)
        })
    }
}
