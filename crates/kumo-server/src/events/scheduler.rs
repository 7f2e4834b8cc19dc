//! Schedules: each function with a `schedule` gets one asynchronous invocation per tick. The
//! latest tick of each schedule is stored with the tick's event in one transaction, so a tick
//! fires once: never twice, and not lost across a restart. Ticks missed while the server was
//! down fire once on start (the latest of them); the others are counted as missed and logged.

use crate::AppState;
use kumo_core::{
    CLOUDEVENTS_JSON, CloudEvent, FunctionRecord, Schedule, Trigger, format_timestamp,
};
use kumo_store::NewEvent;
use kumo_store::prelude::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// The scheduler looks at least this often (a deploy wakes it at once).
const POLL: Duration = Duration::from_secs(1);
/// Counting missed cron ticks stops here (the count is then a lower bound).
const MAX_COUNTED_TICKS: u32 = 100_000;

/// The schedules of the deployed functions, rebuilt on every deploy and delete.
#[derive(Default)]
pub(crate) struct Schedules {
    table: Mutex<Vec<Scheduled>>,
    changed: Notify,
}

#[derive(Clone)]
struct Scheduled {
    function: String,
    /// What each tick invokes (the function, or `function:qualifier`).
    target: String,
    expression: String,
    schedule: Schedule,
}

impl Schedules {
    pub(crate) fn rebuild(&self, functions: &[FunctionRecord]) {
        let table = functions
            .iter()
            .filter_map(|f| {
                let spec = f.config.schedule.as_ref()?;
                Some(Scheduled {
                    function: f.name.clone(),
                    target: f.trigger_target(),
                    expression: spec.as_str().to_string(),
                    schedule: spec.value().clone(),
                })
            })
            .collect();
        *self.table.lock().unwrap_or_else(|p| p.into_inner()) = table;
        self.changed.notify_one();
    }

    fn snapshot(&self) -> Vec<Scheduled> {
        self.table.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Fires due ticks until `stop` turns true.
pub(crate) async fn run(state: Arc<AppState>, mut stop: watch::Receiver<bool>) {
    // The latest tick of each schedule, as stored (read once per function).
    let mut last: HashMap<String, i64> = HashMap::new();
    loop {
        let now = kumo_core::now_ms();
        let mut next_wake = now + POLL.as_millis() as i64;
        for s in state.schedules.snapshot() {
            match tick(&state, &s, &mut last, now).await {
                Ok(Some(next)) => next_wake = next_wake.min(next),
                Ok(None) => {}
                Err(e) => tracing::error!(function = %s.function, "schedule: {e:#}"),
            }
        }
        let wait = Duration::from_millis((next_wake - kumo_core::now_ms()).max(0) as u64);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            // A deploy or delete may have moved a schedule: read the stored ticks again.
            () = state.schedules.changed.notified() => last.clear(),
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Fires the schedule's latest due tick, if any; returns when its next tick is due.
async fn tick(
    state: &AppState,
    s: &Scheduled,
    last: &mut HashMap<String, i64>,
    now: i64,
) -> anyhow::Result<Option<i64>> {
    let latest = match last.get(&s.function) {
        Some(t) => *t,
        None => match state.store.last_tick(&s.function).await? {
            Some(t) => t,
            None => {
                // A new schedule starts ticking from now.
                state.store.fire_tick(&s.function, now, None).await?;
                now
            }
        },
    };
    last.insert(s.function.clone(), latest);
    let Some(mut due) = s.schedule.next_after(latest) else {
        return Ok(None);
    };
    if due > now {
        return Ok(Some(due));
    }
    let mut missed = 0u32;
    while let Some(next) = s.schedule.next_after(due) {
        if next > now || missed >= MAX_COUNTED_TICKS {
            break;
        }
        due = next;
        missed += 1;
    }
    if missed > 0 {
        tracing::warn!(
            function = %s.function,
            missed,
            "schedule ticks missed while the server was down; the latest fires now"
        );
    }
    let id = uuid::Uuid::now_v7().to_string();
    // Each tick starts its own trace, which its retries continue.
    let traceparent = crate::trace::traceparent_for_event(None);
    let data = serde_json::json!({
        "schedule": s.expression,
        "scheduled_time": format_timestamp(due),
        "missed_ticks": missed,
    });
    let data = serde_json::to_vec(&data).unwrap_or_default();
    let payload = CloudEvent {
        id: &id,
        source: format!("kumo/schedules/{}", s.function),
        kind: "dev.kumo.schedule.tick",
        time_ms: due,
        subject: None,
        traceparent: Some(&traceparent),
        data: &data,
    }
    .to_json();
    let event = NewEvent {
        id: &id,
        function: &s.target,
        trigger: Trigger::Schedule,
        payload: &payload,
        content_type: Some(CLOUDEVENTS_JSON),
        traceparent: Some(&traceparent),
        now,
    };
    if state
        .store
        .fire_tick(&s.function, due, Some(&event))
        .await?
    {
        state.events.wake();
    }
    last.insert(s.function.clone(), due);
    Ok(s.schedule.next_after(due))
}
