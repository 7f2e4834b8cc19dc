//! Storage events: a function declared with `on_object = { bucket, events }` is invoked
//! asynchronously for each matching change of an object in the bucket, with a CloudEvent
//! (`dev.kumo.object.created` / `dev.kumo.object.deleted`). The events are stored in the same
//! transaction as the change itself (kumo-store's `Objects::commit` / `delete`), so a stored
//! object always has its events and a refused write has none.

use super::OwnedEvent;
use kumo_core::{CLOUDEVENTS_JSON, CloudEvent, FunctionRecord, ObjectEvent, ObjectInfo, Trigger};
use std::collections::BTreeMap;
use std::sync::RwLock;

/// The functions subscribed to one bucket, each with the changes it wants.
type Subscribers = Vec<(String, Vec<ObjectEvent>)>;

/// Which functions each bucket's changes reach, rebuilt on every deploy and delete.
#[derive(Default)]
pub(crate) struct ObjectSubscriptions {
    by_bucket: RwLock<BTreeMap<String, Subscribers>>,
}

impl ObjectSubscriptions {
    pub(crate) fn rebuild(&self, functions: &[FunctionRecord]) {
        let mut by_bucket: BTreeMap<String, Subscribers> = BTreeMap::new();
        for f in functions {
            if let Some(trigger) = &f.config.on_object {
                // The bucket of the function's own namespace.
                let bucket = kumo_core::scoped(kumo_core::namespace_of(&f.name), &trigger.bucket);
                by_bucket
                    .entry(bucket)
                    .or_default()
                    .push((f.trigger_target(), trigger.events.clone()));
            }
        }
        *self.by_bucket.write().unwrap_or_else(|p| p.into_inner()) = by_bucket;
    }

    /// One event per function subscribed to `what` in the object's bucket.
    pub(crate) fn events_for(
        &self,
        what: ObjectEvent,
        object: &ObjectInfo,
        traceparent: Option<&str>,
    ) -> Vec<OwnedEvent> {
        let subscribers: Vec<String> = {
            let by_bucket = self.by_bucket.read().unwrap_or_else(|p| p.into_inner());
            by_bucket
                .get(&object.bucket)
                .into_iter()
                .flatten()
                .filter(|(_, events)| events.contains(&what))
                .map(|(function, _)| function.clone())
                .collect()
        };
        if subscribers.is_empty() {
            return Vec::new();
        }
        let now = kumo_core::now_ms();
        let change_id = uuid::Uuid::now_v7().to_string();
        let data = serde_json::to_vec(object).unwrap_or_default();
        let payload = bytes::Bytes::from(
            CloudEvent {
                id: &change_id,
                source: format!("kumo/objects/{}", object.bucket),
                kind: what.cloud_event_type(),
                time_ms: now,
                subject: Some(&object.key),
                traceparent,
                data: &data,
            }
            .to_json(),
        );
        subscribers
            .into_iter()
            .map(|function| OwnedEvent {
                id: uuid::Uuid::now_v7().to_string(),
                function,
                trigger: Trigger::Storage,
                payload: payload.clone(),
                content_type: Some(CLOUDEVENTS_JSON.to_string()),
                traceparent: traceparent.map(str::to_string),
                now,
            })
            .collect()
    }
}
