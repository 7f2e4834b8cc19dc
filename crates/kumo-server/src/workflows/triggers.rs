//! What starts executions besides the API: the workflows' schedules and topics.

use super::*;

/// A workflow that starts on a schedule or on topics' messages.
pub(super) struct Triggered {
    /// Its key.
    workflow: String,
    definition: String,
    triggers: kumo_core::WorkflowTriggers,
}

/// Reads the workflows' triggers from the store (at start, after a deploy or delete, and on
/// any change another node made).
pub(crate) async fn reload_triggers(state: &AppState) -> anyhow::Result<()> {
    let table = state
        .store
        .list_workflows()
        .await?
        .into_iter()
        .filter_map(|w| {
            let triggers: kumo_core::WorkflowTriggers = serde_json::from_str(&w.triggers).ok()?;
            (!triggers.is_empty()).then_some(Triggered {
                workflow: w.name,
                definition: w.definition,
                triggers,
            })
        })
        .collect();
    *state.workflows.triggered.lock().expect("engine lock") = Arc::new(table);
    Ok(())
}

/// An execution a topic message started.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Started {
    workflow: String,
    execution: String,
}

/// A topic message (its id and body) starts one execution of every workflow subscribed to
/// `topic` (a key), named after the message, with the message as input (its JSON, or its
/// text); the executions started.
pub(crate) async fn publish(
    state: &Arc<AppState>,
    topic: &str,
    message_id: &str,
    body: &[u8],
) -> Result<Vec<Started>, ApiError> {
    let namespace = kumo_core::namespace_of(topic);
    let topic_name = kumo_core::split_key(topic).1;
    let mut started = Vec::new();
    for t in state.workflows.triggered().iter() {
        let subscribed = kumo_core::in_namespace(&t.workflow, namespace)
            && t.triggers.topics.iter().any(|s| s == topic_name);
        if !subscribed {
            continue;
        }
        let input =
            json!({"topic": topic_name, "id": message_id, "message": kumo_asl::task::answer(body)});
        let name = format!("topic-{message_id}");
        let (record, _) = start(state, &t.workflow, &t.definition, Some(name), input).await?;
        started.push(Started {
            workflow: kumo_core::split_key(&t.workflow).1.to_string(),
            execution: record.id,
        });
    }
    Ok(started)
}

/// Starts the executions of the schedules' due ticks: each tick once (its execution is named
/// after it, and recorded as fired after it started, so a crash in between starts nothing
/// twice); ticks missed while the server was down start once, the latest.
pub(super) async fn fire_schedules(state: &Arc<AppState>, now: i64) -> i64 {
    let mut next_wake = now + POLL.as_millis() as i64;
    for t in state.workflows.triggered().iter() {
        let Some(spec) = &t.triggers.schedule else {
            continue;
        };
        let schedule = spec.value();
        // Ticks are kept per schedule key; `@` keeps them apart from the functions'.
        let key = format!("@workflow/{}", t.workflow);
        let fired = async {
            let Some(latest) = state.store.last_tick(&key).await? else {
                state.store.fire_tick(&key, now, None).await?; // a new schedule ticks from now
                return anyhow::Ok(schedule.next_after(now));
            };
            let Some(mut due) = schedule.next_after(latest) else {
                return Ok(None);
            };
            if due > now {
                return Ok(Some(due));
            }
            while let Some(next) = schedule.next_after(due).filter(|n| *n <= now) {
                due = next;
            }
            let input = json!({"schedule": spec.as_str(), "scheduled_time": kumo_core::format_timestamp(due)});
            let name = format!("schedule-{due}");
            start(state, &t.workflow, &t.definition, Some(name), input)
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            state.store.fire_tick(&key, due, None).await?;
            Ok(schedule.next_after(due))
        };
        match fired.await {
            Ok(Some(next)) => next_wake = next_wake.min(next),
            Ok(None) => {}
            Err(e) => tracing::error!(workflow = %t.workflow, "schedule: {e:#}"),
        }
    }
    next_wake
}
