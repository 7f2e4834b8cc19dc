//! The dispatcher: takes due events from the queue as workers free up, runs one attempt of
//! each through the Invoker, and records how it ended.

use super::destination::{self, DestinationEvent};
use super::{ATTEMPT_HEADER, EVENT_ID_HEADER};
use crate::AppState;
use crate::invoker::InvocationRequest;
use kumo_core::{
    ErrorKind, EventError, EventErrorCode, EventResult, FunctionRecord, async_share,
    format_duration, retry_delay,
};
use kumo_store::prelude::*;
use kumo_store::{ClaimedEvent, Completion};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

/// How long a claimed event stays leased to its attempt without a renewal. The node renews
/// the leases of its running attempts every [`RENEW_EVERY`], so only the events of a node
/// that is gone (or cut off from the store) are claimed again, by any node, soon after.
const LEASE: Duration = Duration::from_secs(15);
const RENEW_EVERY: Duration = Duration::from_secs(5);
/// How long the dispatcher sleeps at most when it knows of nothing due.
const IDLE_POLL: Duration = Duration::from_secs(1);
/// On shutdown, how long attempts in flight get to finish; those still running are handed
/// back (due at once, for another node or the next start).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Response bodies kept with a succeeded event.
const RESULT_KEEP_BYTES: usize = 64 * 1024;

/// The running attempts' leases: event id to attempt number.
#[derive(Clone, Default)]
struct Leases(Arc<Mutex<HashMap<String, u32>>>);

impl Leases {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Holds the lease of `event` until the returned guard drops.
    fn hold(&self, event: &ClaimedEvent) -> HeldLease {
        self.map().insert(event.id.clone(), event.attempt);
        HeldLease {
            leases: self.clone(),
            id: event.id.clone(),
        }
    }
}

struct HeldLease {
    leases: Leases,
    id: String,
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        self.leases.map().remove(&self.id);
    }
}

/// Renews the leases of the attempts running here, for as long as they run.
async fn renew_leases(state: Arc<AppState>, leases: Leases) {
    let mut ticks = tokio::time::interval(RENEW_EVERY);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let held: Vec<(String, u32)> = leases
            .map()
            .iter()
            .map(|(id, attempt)| (id.clone(), *attempt))
            .collect();
        if held.is_empty() {
            continue;
        }
        let lease_end = kumo_core::now_ms() + LEASE.as_millis() as i64;
        if let Err(e) = state.store.extend_leases(&held, lease_end).await {
            tracing::warn!("renewing the leases of running events: {e:#}");
        }
    }
}

/// Runs until `stop` turns true, then waits (a while) for the attempts in flight and hands
/// back those still running.
pub(crate) async fn dispatch(state: Arc<AppState>, mut stop: watch::Receiver<bool>) {
    let events = &state.events;
    let workers = events.workers();
    let free = Arc::new(Semaphore::new(workers));
    let leases = Leases::default();
    let renewer = tokio::spawn(renew_leases(state.clone(), leases.clone()));
    match state
        .store
        .release_interrupted_events(kumo_core::now_ms())
        .await
    {
        Ok(0) => {}
        Ok(n) => tracing::warn!(events = n, "attempts cut short by the last stop run again"),
        Err(e) => tracing::error!("releasing interrupted events: {e:#}"),
    }
    loop {
        let first = tokio::select! {
            permit = free.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stop.wait_for(|s| *s) => break,
        };
        let mut permits = vec![first];
        while let Ok(p) = free.clone().try_acquire_owned() {
            permits.push(p);
        }
        let now = kumo_core::now_ms();
        let lease_end = now + LEASE.as_millis() as i64;
        let limit = u32::try_from(permits.len()).unwrap_or(u32::MAX);
        let claimed = match state.store.claim_events(now, lease_end, limit).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("claiming events: {e:#}");
                tokio::time::sleep(IDLE_POLL).await;
                continue;
            }
        };
        let got = claimed.len();
        for (event, permit) in claimed.into_iter().zip(permits.drain(..got)) {
            let held = leases.hold(&event);
            tokio::spawn(attempt(state.clone(), event, (permit, held)));
        }
        drop(permits);
        if got > 0 {
            continue;
        }
        let wait = match state.store.next_due().await {
            Ok(Some(due)) => {
                Duration::from_millis((due - kumo_core::now_ms()).max(0) as u64).min(IDLE_POLL)
            }
            _ => IDLE_POLL,
        };
        tokio::select! {
            () = events.wake.notified() => {}
            () = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    let all = u32::try_from(workers).unwrap_or(u32::MAX);
    if tokio::time::timeout(SHUTDOWN_GRACE, free.acquire_many(all))
        .await
        .is_err()
    {
        // Handed back: due again at once, for another node or the next start.
        match state
            .store
            .release_interrupted_events(kumo_core::now_ms())
            .await
        {
            Ok(n) => tracing::warn!(
                events = n,
                "stopping with asynchronous attempts still running; they run again"
            ),
            Err(e) => tracing::error!("handing back running events: {e:#}"),
        }
    }
    renewer.abort();
}

/// One attempt of one event, holding a worker.
async fn attempt(
    state: Arc<AppState>,
    event: ClaimedEvent,
    _held: (OwnedSemaphorePermit, HeldLease),
) {
    let now = kumo_core::now_ms();
    // An alias is resolved once: the version that runs is the one whose retries, age limit
    // and destinations apply.
    let resolved = match state.invoker.pick(&event.function) {
        Ok(target) => state.invoker.function(&target).await.map(|f| (target, f)),
        Err(e) => Err(e),
    };
    let (target, function) = match resolved {
        Ok(resolved) => resolved,
        Err(e) if e.kind == ErrorKind::FunctionNotFound => {
            let error = EventError {
                code: EventErrorCode::Invocation(e.kind),
                message: e.message,
            };
            // No destination: the function that had them is gone.
            return finish(
                &state,
                &event,
                None,
                Completion::Dead {
                    request_id: None,
                    error,
                },
            )
            .await;
        }
        Err(_) => {
            // The store failed (and logged it): try again later.
            let due_at = now + 1000;
            return finish(&state, &event, None, Completion::Deferred { due_at }).await;
        }
    };
    let config = &function.config;
    let age = now - event.enqueued_at;
    if age > config.max_event_age.as_millis() as i64 {
        let error = EventError {
            code: EventErrorCode::TooOld,
            message: format!(
                "the event waited {} (max_event_age {}) and is not tried again",
                format_duration(Duration::from_millis(age as u64)),
                format_duration(config.max_event_age)
            ),
        };
        let completion = Completion::Dead {
            request_id: None,
            error,
        };
        return finish(&state, &event, Some(&function), completion).await;
    }
    if event.attempt > config.max_retries + 1 {
        let error = EventError {
            code: EventErrorCode::RetriesExhausted,
            // A server stop cut the last attempt short, or an alias now picks a version
            // that allows fewer retries than were made.
            message: format!(
                "{} attempts were made; max_retries {} allows {}",
                event.attempt - 1,
                config.max_retries,
                config.max_retries + 1
            ),
        };
        let completion = Completion::Dead {
            request_id: None,
            error,
        };
        return finish(&state, &event, Some(&function), completion).await;
    }
    // A function's max_concurrency bounds its asynchronous attempts across every node.
    if let Some(n) = config.max_concurrency {
        let cap = async_share(n as usize, state.events.config.sync_reserve_percent);
        let admitted = state
            .store
            .admit_attempt(&event.id, event.attempt, &function.name, cap, now)
            .await;
        match admitted {
            Ok(true) => {}
            Ok(false) => return finish(&state, &event, None, defer(now)).await,
            Err(e) => {
                tracing::error!("admitting an asynchronous attempt: {e:#}");
                return finish(&state, &event, None, defer(now + 1000)).await;
            }
        }
    }
    let invoked = state.invoker.invoke(&target, request_for(&event)).await;
    let now = kumo_core::now_ms();
    let request_id = invoked.request_id;
    let error = match invoked.result {
        // Not run at all (no slot, or no room for its record): it runs later.
        Err(e) if matches!(e.kind, ErrorKind::Throttled | ErrorKind::Unavailable) => {
            return finish(&state, &event, None, defer(now)).await;
        }
        Ok(response) if response.status.as_u16() < 500 => {
            let result = kept_result(response.status.as_u16(), &response.body);
            let completion = Completion::Succeeded { request_id, result };
            return finish(&state, &event, Some(&function), completion).await;
        }
        Ok(response) => EventError {
            code: EventErrorCode::ErrorStatus,
            message: format!(
                "the function answered {}: {}",
                response.status,
                String::from_utf8_lossy(&response.body[..response.body.len().min(200)])
            ),
        },
        Err(e) => EventError {
            code: EventErrorCode::Invocation(e.kind),
            message: e.message,
        },
    };
    let completion = if event.attempt <= config.max_retries {
        let delay = retry_delay(
            state.events.config.retry_base_delay,
            event.attempt,
            fastrand::f64(),
        );
        state.invoker.metrics.retried(&event.function);
        Completion::Retry {
            request_id: Some(request_id),
            error,
            due_at: now + delay.as_millis() as i64,
        }
    } else {
        Completion::Dead {
            request_id: Some(request_id),
            error,
        }
    };
    finish(&state, &event, Some(&function), completion).await;
}

/// The event as a request: `POST /` with the payload, its id and attempt in headers (and in
/// environment variables, for commands) and the trace context it came with.
fn request_for(event: &ClaimedEvent) -> InvocationRequest {
    let mut headers = http::HeaderMap::new();
    let mut put = |name: &'static str, value: &str| {
        if let Ok(v) = http::HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    };
    put(EVENT_ID_HEADER, &event.id);
    put(ATTEMPT_HEADER, &event.attempt.to_string());
    if let Some(ct) = &event.content_type {
        put("content-type", ct);
    }
    if let Some(tp) = &event.traceparent {
        put("traceparent", tp);
    }
    InvocationRequest {
        method: http::Method::POST,
        path_and_query: "/".to_string(),
        headers,
        body: event.payload.clone().into(),
        env: vec![
            ("KUMO_EVENT_ID".to_string(), event.id.clone()),
            ("KUMO_ATTEMPT".to_string(), event.attempt.to_string()),
        ],
        call_depth: 0,
        source: kumo_core::Source::Event(event.trigger),
        peer: None,
        tail_logs: false,
    }
}

/// No capacity now: back in the queue shortly, without counting as an attempt.
fn defer(now: i64) -> Completion {
    Completion::Deferred {
        due_at: now + 100 + fastrand::i64(0..200),
    }
}

fn kept_result(status: u16, body: &[u8]) -> EventResult {
    let kept = &body[..body.len().min(RESULT_KEEP_BYTES)];
    EventResult {
        status,
        body: String::from_utf8_lossy(kept).into_owned(),
        truncated: kept.len() < body.len(),
    }
}

/// Records the attempt's end, with the destination's event if it has one, and tells whoever
/// waits. `function` is None when no destination applies.
async fn finish(
    state: &AppState,
    event: &ClaimedEvent,
    function: Option<&FunctionRecord>,
    completion: Completion,
) {
    let now = kumo_core::now_ms();
    let outcome = function.and_then(|f| DestinationEvent::of(f, event, &completion));
    let follow_up = outcome.as_ref().and_then(|o| o.function_event(now));
    let new_event = follow_up.as_ref().map(|f| f.as_new());
    let stored = state
        .store
        .complete_event(
            &event.id,
            event.attempt,
            &completion,
            now,
            new_event.as_ref(),
        )
        .await;
    match stored {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(event = %event.id, "an attempt ended after losing its lease; its end is ignored");
            return;
        }
        Err(e) => {
            // The lease will run out and the event be tried again: at least once.
            tracing::error!(event = %event.id, "recording an attempt's end: {e:#}");
            return;
        }
    }
    state.events.changed(&event.id);
    if let Some(e) = &follow_up {
        state.events.changed(&e.id);
    }
    // A retry or a destination's event may be due before the dispatcher planned to look.
    state.events.wake.notify_one();
    if let Some(outcome) = outcome {
        destination::deliver_to_url(outcome);
    }
}
