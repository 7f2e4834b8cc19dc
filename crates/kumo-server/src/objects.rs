//! Object storage as the server offers it (to the HTTP API and to guests): writes and deletes
//! go through here so that each one stores its storage events in its own transaction and wakes
//! the dispatcher.

use crate::events::Events;
use crate::events::storage::ObjectSubscriptions;
use bytes::Bytes;
use futures::Stream;
use kumo_core::{ObjectEvent, ObjectInfo};
use kumo_store::{ObjectError, Objects};

pub struct ObjectService {
    pub objects: Objects,
    pub subscriptions: ObjectSubscriptions,
    /// The largest object accepted.
    pub max_bytes: u64,
}

/// A write's outcome: the stored object and whether its key was new.
pub struct Written {
    pub info: ObjectInfo,
    pub created: bool,
}

impl ObjectService {
    /// Streams `body` into `bucket/key`, then commits it with its storage events.
    pub async fn put<S, E>(
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
            .objects
            .stage(bucket, key, content_type, body, self.max_bytes)
            .await?;
        let info = staged.info.clone();
        let owned = self
            .subscriptions
            .events_for(ObjectEvent::Put, &info, traceparent);
        let new: Vec<_> = owned.iter().map(|e| e.as_new()).collect();
        let created = match self.objects.commit(staged, &new).await {
            Ok(created) => created,
            Err(e) => return Err(ObjectError::Store(e)),
        };
        notify(events, &new);
        Ok(Written { info, created })
    }

    /// Deletes `bucket/key` with its storage events; false if there was no such object.
    pub async fn delete(
        &self,
        events: &Events,
        bucket: &str,
        key: &str,
        traceparent: Option<&str>,
    ) -> anyhow::Result<bool> {
        let owned = match self.objects.head(bucket, key).await? {
            Some(info) => self
                .subscriptions
                .events_for(ObjectEvent::Delete, &info, traceparent),
            None => return Ok(false),
        };
        let new: Vec<_> = owned.iter().map(|e| e.as_new()).collect();
        let deleted = self.objects.delete(bucket, key, &new).await?;
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
