//! The workflow engine: runs executions of ASL state machines durably. The pure core
//! (`kumo_asl::execution`) decides each transition; here each one is persisted (one
//! transaction: threads, history, counters) before its tasks run through the Invoker.
//!
//! An execution is driven by one node at a time, under a lease it renews. The node that
//! starts an execution drives it at once; otherwise the scheduler claims executions that are
//! due (a wait or retry delay ended, a callback or stop signal came, a lease expired because
//! a node died). A driver holds the execution while tasks run and gives it back, with the
//! time it is next due, when nothing remains but waiting. A claimed execution first fails
//! the tasks a dead driver left running (`States.TaskFailed`, which its `Retry` may retry):
//! tasks run at least once per attempt, as Step Functions Standard runs them.

use crate::AppState;
use crate::error::ApiError;
use crate::invoker::InvocationRequest;
use kumo_asl::AslError;
use kumo_asl::context::Execution;
use kumo_asl::definition::StateMachine;
use kumo_asl::execution::{Changes, Entropy, Invoke, Outcome, Run, Thread};
use kumo_core::ErrorKind;
use kumo_store::prelude::*;
use kumo_store::{ExecutionEnd, ExecutionRecord, ExecutionSave, Store};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinSet;

mod driver;
mod triggers;
mod writer;

use driver::drive;
pub(crate) use triggers::{Started, publish, reload_triggers};
use triggers::{Triggered, fire_schedules};
use writer::{WriteRequest, write_batches};

/// How long a driver's lease lasts, and how often it is renewed.
const LEASE: Duration = Duration::from_secs(15);
const RENEW_EVERY: Duration = Duration::from_secs(5);
/// A driver holding an execution looks for signals at least this often.
const POLL: Duration = Duration::from_secs(1);
/// At most this many executions are driven by one node at once.
const MAX_DRIVEN: usize = 512;
/// A history entry's detail is cut to this many bytes (inputs and outputs can be large).
const MAX_DETAIL_BYTES: usize = 8 * 1024;
/// The most transitions one execution makes (Step Functions Standard's history holds 25,000
/// events): a machine that loops forever fails instead.
const MAX_TRANSITIONS: i64 = 25_000;

/// The executions this node drives, each with the bell that wakes its driver; and the
/// workflows' triggers.
pub(crate) struct Engine {
    driven: Mutex<HashMap<String, Arc<Notify>>>,
    /// Workflows with a schedule or topics, rebuilt from the store on every change.
    triggered: Mutex<Arc<Vec<Triggered>>>,
    /// Wakes the scheduler (a signal for an execution no driver here holds).
    claim_now: Notify,
    /// The executions someone waits for (`?wait=`), each told of its end alone.
    waited: Mutex<HashMap<String, watch::Sender<bool>>>,
    /// Transitions to write: the drivers' saves go in batches, one transaction each (group
    /// commit), so many executions' steps share one commit.
    saves: mpsc::UnboundedSender<WriteRequest>,
    /// Taken by the writer when the engine starts.
    saves_to_write: Mutex<Option<mpsc::UnboundedReceiver<WriteRequest>>>,
}

impl Default for Engine {
    fn default() -> Self {
        let (saves, saves_to_write) = mpsc::unbounded_channel();
        Self {
            driven: Mutex::default(),
            triggered: Mutex::default(),
            claim_now: Notify::new(),
            waited: Mutex::default(),
            saves,
            saves_to_write: Mutex::new(Some(saves_to_write)),
        }
    }
}

impl Engine {
    /// Wakes the driver of `id` if it is here, else the scheduler (which claims it, if no
    /// other node drives it).
    pub(crate) fn wake(&self, id: &str) {
        let bell = self.driven.lock().expect("engine lock").get(id).cloned();
        match bell {
            Some(bell) => bell.notify_one(),
            None => self.claim_now.notify_one(),
        }
    }

    /// A receiver that turns true when execution `id` ends here.
    fn end_of(&self, id: &str) -> watch::Receiver<bool> {
        let mut waited = self.waited.lock().expect("engine lock");
        waited
            .entry(id.to_string())
            .or_insert_with(|| watch::channel(false).0)
            .subscribe()
    }

    /// Tells the waiters of `id` it ended.
    fn ended(&self, id: &str) {
        if let Some(end) = self.waited.lock().expect("engine lock").remove(id) {
            let _ = end.send(true);
        }
    }

    /// Forgets a wait that is over, unless others still wait.
    fn stop_waiting(&self, id: &str) {
        let mut waited = self.waited.lock().expect("engine lock");
        if waited.get(id).is_some_and(|end| end.receiver_count() == 0) {
            waited.remove(id);
        }
    }

    /// Shared, not copied: the scheduler and every publish read it.
    fn triggered(&self) -> Arc<Vec<Triggered>> {
        self.triggered.lock().expect("engine lock").clone()
    }
}

/// The lease owner of this node: the one node of SQLite is always `local`, so a restart takes
/// back at once what the last run held.
fn owner(state: &AppState) -> &str {
    match state.store {
        Store::Sqlite(_) => "local",
        Store::Postgres(_) => &state.node.id,
    }
}

struct Random;

impl Entropy for Random {
    fn random(&mut self) -> f64 {
        fastrand::f64()
    }
    fn secret(&mut self) -> String {
        uuid::Uuid::new_v4().simple().to_string()
    }
}

/// Claims due executions and renews the leases of those driven here, until `stop`; then
/// gives back every lease (their running tasks are retried where they are claimed next).
pub(crate) async fn run(state: Arc<AppState>, mut stop: watch::Receiver<bool>) {
    let owner = owner(&state).to_string();
    if let Err(e) = state.store.release_executions(&owner).await {
        tracing::error!("giving back the executions of an earlier run: {e:#}");
    }
    if let Err(e) = reload_triggers(&state).await {
        tracing::error!("reading the workflows' triggers: {e:#}");
    }
    let saves = state
        .workflows
        .saves_to_write
        .lock()
        .expect("engine lock")
        .take();
    let writer = saves.map(|saves| tokio::spawn(write_batches(state.clone(), saves)));
    let mut renew = tokio::time::interval(RENEW_EVERY);
    let mut drivers = JoinSet::new();
    loop {
        let now = kumo_core::now_ms();
        let tick_due = fire_schedules(&state, now).await;
        let free =
            MAX_DRIVEN.saturating_sub(state.workflows.driven.lock().expect("engine lock").len());
        if free > 0 {
            let lease_until = now + LEASE.as_millis() as i64;
            match state
                .store
                .claim_executions(&owner, now, lease_until, free as u32)
                .await
            {
                Ok(claimed) => {
                    for record in claimed {
                        let state = state.clone();
                        drivers.spawn(async move { drive(&state, record, None).await });
                    }
                }
                Err(e) => tracing::error!("claiming executions: {e:#}"),
            }
        }
        // Until the next execution is due (at least a few ms: one whose lease ends this very
        // millisecond is not claimable yet), or a poll when this node drives all it may.
        let next = match free {
            0 => None,
            _ => state.store.next_execution_due().await.ok().flatten(),
        };
        let next = next.map_or(tick_due, |due| due.min(tick_due));
        let ms = (next - kumo_core::now_ms()).clamp(5, POLL.as_millis() as i64);
        let wait = Duration::from_millis(ms as u64);
        tokio::select! {
            _ = stop.changed() => break,
            _ = state.workflows.claim_now.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = renew.tick() => {
                let ids: Vec<String> = state.workflows.driven.lock().expect("engine lock").keys().cloned().collect();
                if !ids.is_empty() {
                    let until = kumo_core::now_ms() + LEASE.as_millis() as i64;
                    if let Err(e) = state.store.extend_execution_leases(&owner, &ids, until).await {
                        tracing::error!("renewing execution leases: {e:#}");
                    }
                }
            }
            Some(_) = drivers.join_next(), if !drivers.is_empty() => {}
        }
    }
    drivers.abort_all();
    while drivers.join_next().await.is_some() {}
    if let Some(writer) = writer {
        writer.abort();
    }
    if let Err(e) = state.store.release_executions(&owner).await {
        tracing::error!("giving back executions at shutdown: {e:#}");
    }
}

/// Starts an execution of workflow `workflow` (its key) with `definition` and drives it
/// here. With a `name` the workflow has an execution of already, that execution is the
/// answer when it had the same input (a retried start), else 409.
pub(crate) async fn start(
    state: &Arc<AppState>,
    workflow: &str,
    definition: &str,
    name: Option<String>,
    input: Value,
) -> Result<(ExecutionRecord, bool), ApiError> {
    let machine = parse(definition)?;
    let id = uuid::Uuid::now_v7().to_string();
    let now = kumo_core::now_ms();
    let input_text = input.to_string();
    let record = ExecutionRecord {
        id: id.clone(),
        workflow: workflow.to_string(),
        name: name.clone().unwrap_or_else(|| id.clone()),
        definition: definition.to_string(),
        status: "running".into(),
        input: input_text.clone(),
        output: None,
        error: None,
        cause: None,
        trace_id: crate::trace::TraceContext::continue_or_start(None).trace_id,
        started_at: now,
        stopped_at: None,
        deadline: machine.timeout_seconds.map(|s| now + s as i64 * 1000),
        transitions: 0,
        redrives: 0,
    };
    // The first steps up to the first tasks go in the start's own transaction, when that is
    // all they do (no end, nothing else due at once): one transaction less per execution.
    let start_time = rfc3339(now);
    let exec = Execution {
        id: &record.id,
        name: &record.name,
        start_time: &start_time,
        input: &input,
        state_machine: kumo_core::split_key(workflow).1,
    };
    let (mut run, mut changes) = Run::start(&machine, input.clone(), now);
    run.settle(&exec, now, &mut Random, &mut changes);
    let settled = run.outcome().is_none()
        && !changes.invoke.is_empty()
        && run.next_wake().is_none_or(|w| w > now);
    if !settled {
        (run, changes) = Run::start(&machine, input.clone(), now);
    }
    let first_tasks = std::mem::take(&mut changes.invoke);
    changes.history.insert(
        0,
        kumo_asl::execution::Event {
            kind: "ExecutionStarted",
            thread: String::new(),
            state: String::new(),
            detail: json!({"input": run_input(&input_text)}),
        },
    );
    let save = saved(&run, &changes, now, Some(now), false, None);
    let lease_until = now + LEASE.as_millis() as i64;
    let start = Some((record.clone(), lease_until));
    if !writer::write(state, start, &record.id, owner(state), save).await? {
        let name = record.name;
        let existing = state
            .store
            .find_execution(workflow, &name)
            .await?
            .ok_or_else(|| anyhow::anyhow!("execution {name:?} vanished as it was started"))?;
        if existing.input != input_text {
            return Err(ApiError::new(
                ErrorKind::Conflict,
                format!("the workflow has an execution named {name:?} with another input"),
            ));
        }
        return Ok((existing, false));
    }
    let mut started = record.clone();
    started.transitions = i64::from(changes.transitions);
    let threads = run.threads.clone();
    let state = state.clone();
    tokio::spawn(async move { drive(&state, started, Some((threads, first_tasks))).await });
    Ok((record, true))
}

/// Unix ms as the context object shows times.
fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A stored or given input as JSON for the history.
fn run_input(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

pub(crate) fn parse(definition: &str) -> Result<StateMachine, ApiError> {
    let value: Value = serde_json::from_str(definition)
        .map_err(|e| ApiError::bad_request(format!("the definition is not JSON: {e}")))?;
    StateMachine::parse(&value).map_err(|problems| {
        let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
        ApiError::bad_request(format!("the definition is not valid: {}", list.join("; ")))
    })
}

/// What one transition writes.
fn saved(
    run: &Run,
    changes: &Changes,
    now: i64,
    due_at: Option<i64>,
    release: bool,
    end: Option<ExecutionEnd>,
) -> ExecutionSave {
    let threads = changes
        .touched
        .iter()
        .map(|id| {
            let doc = run
                .threads
                .get(id)
                .map(|t| serde_json::to_string(t).unwrap_or_default());
            (id.clone(), doc)
        })
        .collect();
    let history = changes
        .history
        .iter()
        .map(|e| {
            let mut detail = e.detail.to_string();
            if detail.len() > MAX_DETAIL_BYTES {
                detail = json!({"truncated": true, "bytes": detail.len()}).to_string();
            }
            (
                now,
                e.kind.to_string(),
                e.thread.clone(),
                e.state.clone(),
                detail,
            )
        })
        .collect();
    ExecutionSave {
        threads,
        history,
        transitions: changes.transitions,
        end,
        due_at,
        release,
        signals_done: None,
    }
}

/// Runs a failed, stopped or timed-out execution again from the state it ended in, driven
/// here; its timeout counts from now. 409 for any other.
pub(crate) async fn redrive(
    state: &Arc<AppState>,
    mut record: ExecutionRecord,
) -> Result<ExecutionRecord, ApiError> {
    let not_redrivable = || {
        ApiError::new(
            ErrorKind::Conflict,
            format!(
                "execution {} is {}: only a failed, aborted or timed-out one can be redriven",
                record.id, record.status
            ),
        )
    };
    let machine = parse(&record.definition)?;
    let mut threads = BTreeMap::new();
    for (id, doc) in state.store.execution_threads(&record.id).await? {
        let thread: Thread = serde_json::from_str(&doc).map_err(anyhow::Error::from)?;
        threads.insert(id, thread);
    }
    let mut run = Run::resume(&machine, threads);
    let now = kumo_core::now_ms();
    let Some(mut changes) = run.redrive(now) else {
        return Err(not_redrivable());
    };
    changes.history.push(kumo_asl::execution::Event {
        kind: "ExecutionRedriven",
        thread: String::new(),
        state: String::new(),
        detail: json!({"redrives": record.redrives + 1}),
    });
    let deadline = machine.timeout_seconds.map(|s| now + s as i64 * 1000);
    let save = saved(&run, &changes, now, Some(now), false, None);
    let lease_until = now + LEASE.as_millis() as i64;
    let owner = owner(state);
    if !state
        .store
        .redrive_execution(&record.id, owner, lease_until, deadline, &save)
        .await?
    {
        return Err(not_redrivable());
    }
    record.status = "running".into();
    record.deadline = deadline;
    record.redrives += 1;
    (record.output, record.error, record.cause, record.stopped_at) = (None, None, None, None);
    let threads = run.threads.clone();
    let driven = record.clone();
    let state = state.clone();
    tokio::spawn(async move { drive(&state, driven, Some((threads, Vec::new()))).await });
    Ok(record)
}

/// Asks a running execution to stop (its driver ends it as `aborted`); false if it is not
/// running.
pub(crate) async fn stop(
    state: &AppState,
    id: &str,
    error: Option<&str>,
    cause: Option<&str>,
) -> Result<bool, ApiError> {
    let body =
        json!({"error": error.unwrap_or("States.Aborted"), "cause": cause.unwrap_or("stopped")});
    let stopped = state
        .store
        .signal_execution(id, "", "stop", &body.to_string(), kumo_core::now_ms())
        .await?;
    if stopped {
        state.workflows.wake(id);
    }
    Ok(stopped)
}

/// What a task token's holder says: the task's output, its failure, or a heartbeat.
pub(crate) enum Callback {
    Success(Value),
    Failure { error: String, cause: String },
    Heartbeat,
}

/// Passes a callback to the task waiting for `token` in an execution of namespace
/// `namespace`. The same 404 for a token that is malformed, of another namespace, or of a
/// task that no longer waits (it ended, timed out, or was stopped).
pub(crate) async fn callback(
    state: &AppState,
    namespace: &str,
    token: &str,
    callback: Callback,
) -> Result<(), ApiError> {
    let gone = || {
        ApiError::new(
            ErrorKind::NotFound,
            "no task waits for this token (it ended, timed out or was stopped, or the token is not one)",
        )
    };
    let (execution, thread, secret) = kumo_asl::execution::parse_token(token).ok_or_else(gone)?;
    let record = state
        .store
        .get_execution(&execution)
        .await?
        .ok_or_else(gone)?;
    if !kumo_core::in_namespace(&record.workflow, namespace) || record.status != "running" {
        return Err(gone());
    }
    let waiting = state
        .store
        .execution_threads(&execution)
        .await?
        .into_iter()
        .find(|(id, _)| *id == thread)
        .and_then(|(_, doc)| serde_json::from_str::<Thread>(&doc).ok())
        .is_some_and(|t| matches!(&t.phase, kumo_asl::execution::Phase::Callback { secret: s, .. } if *s == secret));
    if !waiting {
        return Err(gone());
    }
    let (kind, body) = match callback {
        Callback::Success(output) => ("success", json!({"secret": secret, "output": output})),
        Callback::Failure { error, cause } => (
            "failure",
            json!({"secret": secret, "error": error, "cause": cause}),
        ),
        Callback::Heartbeat => ("heartbeat", json!({"secret": secret})),
    };
    let now = kumo_core::now_ms();
    if !state
        .store
        .signal_execution(&execution, &thread, kind, &body.to_string(), now)
        .await?
    {
        return Err(gone());
    }
    state.workflows.wake(&execution);
    Ok(())
}

/// The execution once it ended, or as it is after `timeout` (or when the server begins to
/// stop).
pub(crate) async fn wait_for_end(
    state: &AppState,
    id: &str,
    timeout: Duration,
) -> Result<Option<ExecutionRecord>, ApiError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut end = state.workflows.end_of(id);
    let mut stopping = state.stopping.clone();
    let record = loop {
        let record = state.store.get_execution(id).await?;
        if record.as_ref().is_none_or(|r| r.status != "running") {
            break record;
        }
        // Another node may end it: look again now and then, whatever this node hears.
        tokio::select! {
            _ = end.wait_for(|ended| *ended) => {}
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = tokio::time::sleep_until(deadline) => break record,
            _ = stopping.wait_for(|s| *s) => break record,
        }
    };
    drop(end);
    state.workflows.stop_waiting(id);
    Ok(record)
}
