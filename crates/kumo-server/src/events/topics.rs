//! Topics: a message published to a topic becomes one asynchronous invocation of every
//! function subscribed to it (fan-out), each with the same CloudEvents envelope and id.

use super::Events;
use kumo_core::{CLOUDEVENTS_JSON, CloudEvent, FunctionRecord, Trigger};
use kumo_store::NewEvent;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::RwLock;

/// Which functions each topic reaches, rebuilt on every deploy and delete.
#[derive(Default)]
pub(crate) struct Subscriptions {
    by_topic: RwLock<BTreeMap<String, Vec<String>>>,
}

/// One subscriber's event of a published message.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Delivery {
    pub function: String,
    pub id: String,
}

impl Subscriptions {
    pub(crate) fn rebuild(&self, functions: &[FunctionRecord]) {
        let mut by_topic: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for f in functions {
            for topic in &f.config.topics {
                // The topic of the function's own namespace.
                by_topic
                    .entry(kumo_core::scoped(kumo_core::namespace_of(&f.name), topic))
                    .or_default()
                    .push(f.trigger_target());
            }
        }
        *self.by_topic.write().unwrap_or_else(|p| p.into_inner()) = by_topic;
    }

    pub(crate) fn subscribers(&self, topic: &str) -> Vec<String> {
        let by_topic = self.by_topic.read().unwrap_or_else(|p| p.into_inner());
        by_topic.get(topic).cloned().unwrap_or_default()
    }
}

/// Publishes `data` on `topic`: one stored event per subscriber, the message's id in every
/// envelope (the CloudEvent id), each event with an id of its own.
pub(crate) async fn publish(
    events: &Events,
    subscriptions: &Subscriptions,
    topic: &str,
    data: &[u8],
    traceparent: Option<&str>,
) -> anyhow::Result<(String, Vec<Delivery>)> {
    let message_id = uuid::Uuid::now_v7().to_string();
    let now = kumo_core::now_ms();
    let payload = CloudEvent {
        id: &message_id,
        source: format!("kumo/topics/{topic}"),
        kind: "dev.kumo.topic.message",
        time_ms: now,
        subject: None,
        traceparent,
        data,
    }
    .to_json();
    let deliveries: Vec<Delivery> = subscriptions
        .subscribers(topic)
        .into_iter()
        .map(|function| Delivery {
            function,
            id: uuid::Uuid::now_v7().to_string(),
        })
        .collect();
    let new_events: Vec<NewEvent> = deliveries
        .iter()
        .map(|d| NewEvent {
            id: &d.id,
            function: &d.function,
            trigger: Trigger::Topic,
            payload: &payload,
            content_type: Some(CLOUDEVENTS_JSON),
            traceparent,
            now,
        })
        .collect();
    events.submit_all(&new_events).await?;
    Ok((message_id, deliveries))
}
