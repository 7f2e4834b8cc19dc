//! Asynchronous invocations: events are stored durably (the queue in kumo-store), a dispatcher
//! hands due events to workers, each attempt goes through the one Invoker, and its end is
//! recorded in the queue (success, retry with backoff, dead letter) and announced to readers
//! waiting on the event (long-poll, Server-Sent Events).

mod destination;
mod dispatcher;
pub(crate) mod scheduler;
pub(crate) mod storage;
pub(crate) mod topics;

pub(crate) use dispatcher::dispatch;

use bytes::Bytes;
use kumo_core::Trigger;
use kumo_store::prelude::*;
use kumo_store::{NewEvent, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, broadcast, mpsc, oneshot};

/// Submits waiting for the writer before senders wait.
const SUBMIT_QUEUE: usize = 4096;
/// Most submits committed in one transaction.
const MAX_SUBMIT_BATCH: usize = 256;

/// Header with the event's stable id, on every attempt (at-least-once: a function that sees
/// an id twice can tell).
pub(crate) const EVENT_ID_HEADER: &str = "x-kumo-event-id";
/// Header with the attempt's number, from 1.
pub(crate) const ATTEMPT_HEADER: &str = "x-kumo-attempt";

#[derive(Debug, Clone)]
pub struct AsyncConfig {
    /// Attempts running at once, across all functions.
    pub workers: usize,
    /// Wait before the first retry; it doubles for each further one (with jitter).
    pub retry_base_delay: Duration,
    /// Share (percent) of each function's concurrency, and of the server's, that asynchronous
    /// attempts leave to synchronous requests.
    pub sync_reserve_percent: u8,
    /// Largest payload an asynchronous invocation accepts.
    pub max_payload_bytes: usize,
}

impl Default for AsyncConfig {
    fn default() -> Self {
        Self {
            workers: 64,
            retry_base_delay: Duration::from_secs(1),
            sync_reserve_percent: 20,
            max_payload_bytes: 1024 * 1024,
        }
    }
}

/// An event to store, owning its parts (it crosses a channel to the writer).
#[derive(Clone)]
pub(crate) struct OwnedEvent {
    pub id: String,
    pub function: String,
    pub trigger: Trigger,
    pub payload: Bytes,
    pub content_type: Option<String>,
    pub traceparent: Option<String>,
    pub now: i64,
}

impl OwnedEvent {
    pub(crate) fn as_new(&self) -> NewEvent<'_> {
        NewEvent {
            id: &self.id,
            function: &self.function,
            trigger: self.trigger,
            payload: &self.payload,
            content_type: self.content_type.as_deref(),
            traceparent: self.traceparent.as_deref(),
            now: self.now,
        }
    }
}

struct Submit {
    event: OwnedEvent,
    idempotency_key: Option<String>,
    done: oneshot::Sender<anyhow::Result<(String, bool)>>,
}

pub(crate) struct Events {
    store: Store,
    /// To the writer, which commits the submits waiting at once in one transaction.
    submits: mpsc::Sender<Submit>,
    pub config: AsyncConfig,
    /// Wakes the dispatcher: new events, or a retry that may be due before it planned to look.
    wake: Notify,
    /// Ids of events that changed, for readers waiting on them.
    changes: broadcast::Sender<Arc<str>>,
    /// Attempts running at once at most: the workers, within the server's async share.
    workers: usize,
}

impl Events {
    /// `async_limit`: what asynchronous attempts may use of the server's concurrency.
    pub(crate) fn new(store: Store, config: AsyncConfig, async_limit: usize) -> Self {
        let workers = config.workers.clamp(1, async_limit);
        let (submits, queued) = mpsc::channel(SUBMIT_QUEUE);
        tokio::spawn(write_submits(store.clone(), queued));
        Self {
            store,
            submits,
            config,
            wake: Notify::new(),
            changes: broadcast::channel(1024).0,
            workers,
        }
    }

    /// Stores an event (committed when this returns) and wakes the dispatcher; `true` when
    /// the idempotency key matched an earlier event, whose id is returned.
    pub(crate) async fn submit(
        &self,
        event: OwnedEvent,
        idempotency_key: Option<String>,
    ) -> anyhow::Result<(String, bool)> {
        let (done, answer) = oneshot::channel();
        let submit = Submit {
            event,
            idempotency_key,
            done,
        };
        self.submits
            .send(submit)
            .await
            .map_err(|_| anyhow::anyhow!("the event writer has stopped"))?;
        let (id, replayed) = answer
            .await
            .map_err(|_| anyhow::anyhow!("the event writer dropped a submit"))??;
        if !replayed {
            self.wake.notify_one();
            self.changed(&id);
        }
        Ok((id, replayed))
    }

    /// Stores several events at once (all or none) and wakes the dispatcher.
    pub(crate) async fn submit_all(&self, events: &[NewEvent<'_>]) -> anyhow::Result<()> {
        self.store.submit_events(events).await?;
        self.wake.notify_one();
        for e in events {
            self.changed(e.id);
        }
        Ok(())
    }

    /// Tells the dispatcher to look at the queue now.
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Tells readers waiting on event `id` that it changed.
    pub(crate) fn changed(&self, id: &str) {
        // No receiver is fine: nobody is waiting on any event.
        let _ = self.changes.send(id.into());
    }

    /// Status changes from now on (subscribe before reading the event, so none is missed).
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.changes.subscribe()
    }

    /// Attempts the dispatcher runs at once.
    fn workers(&self) -> usize {
        self.workers
    }
}

/// Group commit: takes the submits waiting now (while one transaction commits, the next
/// batch gathers) and stores them in one transaction. If a batch fails, its submits are
/// tried one by one, so one bad event does not fail the others.
async fn write_submits(store: Store, mut queued: mpsc::Receiver<Submit>) {
    while let Some(first) = queued.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_SUBMIT_BATCH {
            match queued.try_recv() {
                Ok(s) => batch.push(s),
                Err(_) => break,
            }
        }
        let events: Vec<_> = batch
            .iter()
            .map(|s| (s.event.as_new(), s.idempotency_key.as_deref()))
            .collect();
        match store.submit_events_once(&events).await {
            Ok(stored) => {
                for (submit, result) in batch.into_iter().zip(stored) {
                    let _ = submit.done.send(Ok(result));
                }
            }
            Err(_) => {
                for submit in batch {
                    let key = submit.idempotency_key.as_deref();
                    let result = store.submit_event(&submit.event.as_new(), key).await;
                    let _ = submit.done.send(result);
                }
            }
        }
    }
}
