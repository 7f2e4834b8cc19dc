//! Destinations: the outcome of an asynchronous invocation, sent on when it is final —
//! `on_success` after a success, `on_failure` once it is dead. A function destination gets
//! a new event, stored in the same transaction as the outcome (so it is as durable as the
//! event itself); a URL gets a POST, tried a few times, not kept across a restart.

use super::OwnedEvent;
use kumo_core::{CLOUDEVENTS_JSON, CloudEvent, Destination, FunctionRecord, Trigger};
use kumo_store::{ClaimedEvent, Completion};
use std::sync::LazyLock;
use std::time::Duration;

const URL_ATTEMPTS: u32 = 3;
const URL_TIMEOUT: Duration = Duration::from_secs(10);

static CLIENT: LazyLock<reqwest::Client> = LazyLock::new(|| {
    reqwest::Client::builder()
        .timeout(URL_TIMEOUT)
        .build()
        .unwrap_or_default()
});

/// A final outcome on its way to a destination, as a CloudEvent.
pub(super) struct DestinationEvent {
    destination: Destination,
    /// The CloudEvent's id: also the id of the destination function's event.
    id: String,
    traceparent: Option<String>,
    cloud_event: Vec<u8>,
}

impl DestinationEvent {
    /// The outcome to send, when the completion is final and the function has a destination
    /// for it.
    pub(super) fn of(
        function: &FunctionRecord,
        event: &ClaimedEvent,
        completion: &Completion,
    ) -> Option<Self> {
        let (target, kind, data) = match completion {
            Completion::Succeeded { request_id, result } => (
                function.config.on_success.as_ref()?,
                "dev.kumo.invocation.succeeded",
                serde_json::json!({
                    "condition": "success",
                    "request_id": request_id,
                    "result": result,
                }),
            ),
            Completion::Dead { request_id, error } => (
                function.config.on_failure.as_ref()?,
                "dev.kumo.invocation.failed",
                serde_json::json!({
                    "condition": error.code,
                    "request_id": request_id,
                    "error": error,
                }),
            ),
            Completion::Retry { .. } | Completion::Deferred { .. } => return None,
        };
        // A function destination is a function of the same namespace.
        let destination = match target.value() {
            Destination::Function(name) => Destination::Function(kumo_core::scoped(
                kumo_core::namespace_of(&function.name),
                name,
            )),
            other => other.clone(),
        };
        let mut data = data;
        if let Some(fields) = data.as_object_mut() {
            fields.insert("event_id".into(), event.id.clone().into());
            fields.insert("function".into(), function.name.clone().into());
            fields.insert("trigger".into(), event.trigger.as_str().into());
            fields.insert("attempts".into(), event.attempt.into());
            fields.insert("request_payload".into(), payload_value(&event.payload));
        }
        let id = uuid::Uuid::now_v7().to_string();
        let data = serde_json::to_vec(&data).unwrap_or_default();
        let cloud_event = CloudEvent {
            id: &id,
            source: format!("kumo/functions/{}", function.name),
            kind,
            time_ms: kumo_core::now_ms(),
            subject: Some(&event.id),
            traceparent: event.traceparent.as_deref(),
            data: &data,
        }
        .to_json();
        Some(Self {
            destination,
            id,
            traceparent: event.traceparent.clone(),
            cloud_event,
        })
    }

    /// The event to store for a function destination.
    pub(super) fn function_event(&self, now: i64) -> Option<OwnedEvent> {
        match &self.destination {
            Destination::Function(name) => Some(OwnedEvent {
                id: self.id.clone(),
                function: name.clone(),
                trigger: Trigger::Destination,
                payload: self.cloud_event.clone().into(),
                content_type: Some(CLOUDEVENTS_JSON.to_string()),
                traceparent: self.traceparent.clone(),
                now,
            }),
            Destination::Url(_) => None,
        }
    }
}

/// POSTs the outcome to a URL destination in the background, retrying with backoff.
pub(super) fn deliver_to_url(outcome: DestinationEvent) {
    let Destination::Url(url) = outcome.destination else {
        return;
    };
    tokio::spawn(async move {
        for attempt in 1..=URL_ATTEMPTS {
            let sent = CLIENT
                .post(&url)
                .header("content-type", CLOUDEVENTS_JSON)
                .body(outcome.cloud_event.clone())
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => return,
                Ok(r) => {
                    tracing::warn!(%url, status = %r.status(), attempt, "destination refused an outcome")
                }
                Err(e) => tracing::warn!(%url, attempt, "destination unreachable: {e}"),
            }
            tokio::time::sleep(Duration::from_secs(1 << (attempt - 1))).await;
        }
        tracing::error!(%url, id = %outcome.id, "an outcome could not be delivered to its destination");
    });
}

/// A payload inside a JSON document: itself when it is JSON, else as text (lossy).
fn payload_value(payload: &[u8]) -> serde_json::Value {
    serde_json::from_slice(payload)
        .unwrap_or_else(|_| String::from_utf8_lossy(payload).into_owned().into())
}
