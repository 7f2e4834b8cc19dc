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
    triggered: Mutex<Vec<Triggered>>,
    /// Wakes the scheduler (a signal for an execution no driver here holds).
    claim_now: Notify,
    /// The executions someone waits for (`?wait=`), each told of its end alone.
    waited: Mutex<HashMap<String, watch::Sender<bool>>>,
    /// Transitions to write: the drivers' saves go in batches, one transaction each (group
    /// commit), so many executions' steps share one commit.
    saves: mpsc::UnboundedSender<SaveRequest>,
    /// Taken by the writer when the engine starts.
    saves_to_write: Mutex<Option<mpsc::UnboundedReceiver<SaveRequest>>>,
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

/// One execution's transition for the writer, and where its outcome goes.
struct SaveRequest {
    id: String,
    owner: String,
    save: ExecutionSave,
    done: oneshot::Sender<anyhow::Result<bool>>,
}

/// The most transitions one commit writes.
const MAX_BATCH: usize = 64;

/// Writes the drivers' transitions: whatever is waiting (up to a batch) in one transaction.
async fn write_saves(state: Arc<AppState>, mut requests: mpsc::UnboundedReceiver<SaveRequest>) {
    while let Some(first) = requests.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match requests.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        let items: Vec<(&str, &str, &ExecutionSave)> = batch
            .iter()
            .map(|r| (r.id.as_str(), r.owner.as_str(), &r.save))
            .collect();
        match state.store.save_executions(&items).await {
            Ok(saved) => {
                for (request, saved) in batch.into_iter().zip(saved) {
                    let _ = request.done.send(Ok(saved));
                }
            }
            Err(e) => {
                let message = format!("{e:#}");
                for request in batch {
                    let _ = request.done.send(Err(anyhow::anyhow!("{message}")));
                }
            }
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

    fn triggered(&self) -> Vec<Triggered> {
        self.triggered.lock().expect("engine lock").clone()
    }
}

/// A workflow that starts on a schedule or on topics' messages.
#[derive(Clone)]
struct Triggered {
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
    *state.workflows.triggered.lock().expect("engine lock") = table;
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
    for t in state.workflows.triggered() {
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
async fn fire_schedules(state: &Arc<AppState>, now: i64) -> i64 {
    let mut next_wake = now + POLL.as_millis() as i64;
    for t in state.workflows.triggered() {
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
    let writer = saves.map(|saves| tokio::spawn(write_saves(state.clone(), saves)));
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
    if !state
        .store
        .create_execution(&record, &save, owner(state), lease_until)
        .await?
    {
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

/// Drives one execution until it ends, waits for nothing but time or signals (then gives it
/// back), or loses its lease. `threads`: as just started; None: read from the store.
async fn drive(
    state: &Arc<AppState>,
    record: ExecutionRecord,
    first: Option<(BTreeMap<String, Thread>, Vec<Invoke>)>,
) {
    let bell = Arc::new(Notify::new());
    state
        .workflows
        .driven
        .lock()
        .expect("engine lock")
        .insert(record.id.clone(), bell.clone());
    if let Err(e) = Driver::new(state, &record, bell).run(first).await {
        tracing::error!(execution = %record.id, "driving an execution: {e:#}");
    }
    state
        .workflows
        .driven
        .lock()
        .expect("engine lock")
        .remove(&record.id);
}

struct Driver<'a> {
    state: &'a Arc<AppState>,
    record: &'a ExecutionRecord,
    bell: Arc<Notify>,
    owner: String,
    start_time: String,
    input: Value,
}

/// A task's end: (thread, task number, result).
type TaskEnd = (String, u64, Result<Value, AslError>);

impl<'a> Driver<'a> {
    fn new(state: &'a Arc<AppState>, record: &'a ExecutionRecord, bell: Arc<Notify>) -> Self {
        let start_time = rfc3339(record.started_at);
        Self {
            state,
            record,
            bell,
            owner: owner(state).to_string(),
            start_time,
            input: run_input(&record.input),
        }
    }

    fn execution(&self) -> Execution<'_> {
        Execution {
            id: &self.record.id,
            name: &self.record.name,
            start_time: &self.start_time,
            input: &self.input,
            state_machine: kumo_core::split_key(&self.record.workflow).1,
        }
    }

    /// `first`: the threads and tasks of an execution just started (or redriven) here,
    /// stored already; None: read them from the store, after a dead driver.
    async fn run(
        &self,
        first: Option<(BTreeMap<String, Thread>, Vec<Invoke>)>,
    ) -> anyhow::Result<()> {
        let machine = match parse(&self.record.definition) {
            Ok(machine) => machine,
            Err(e) => {
                let end = self.end("failed", None, Some(("States.Runtime", &e.message)));
                let save = ExecutionSave {
                    end: Some(end),
                    ..Default::default()
                };
                self.save(save).await?;
                return Ok(());
            }
        };
        let exec = self.execution();
        let mut first_tasks = Vec::new();
        let (mut run, mut changes) = match first {
            Some((threads, tasks)) => {
                first_tasks = tasks;
                (Run::resume(&machine, threads), Changes::default())
            }
            None => {
                let mut threads = BTreeMap::new();
                for (id, doc) in self.state.store.execution_threads(&self.record.id).await? {
                    threads.insert(id, serde_json::from_str(&doc)?);
                }
                let mut run = Run::resume(&machine, threads);
                let changes = run.recover(&exec, kumo_core::now_ms(), &mut Random);
                (run, changes)
            }
        };
        let mut transitions = self.record.transitions;
        let mut tasks: JoinSet<TaskEnd> = JoinSet::new();
        // Signals are read when the bell rang, when a wait ended, and at least every POLL;
        // not after every task's answer.
        let (mut look, mut looked) = (true, std::time::Instant::now());
        loop {
            let now = kumo_core::now_ms();
            let (invokes, wake) = if !first_tasks.is_empty() {
                // Stored with the start: run them at once.
                let wake = [run.next_wake(), self.record.deadline]
                    .into_iter()
                    .flatten()
                    .min();
                (std::mem::take(&mut first_tasks), wake)
            } else {
                let signals = match look || looked.elapsed() >= POLL {
                    true => {
                        (look, looked) = (false, std::time::Instant::now());
                        self.state.store.execution_signals(&self.record.id).await?
                    }
                    false => Vec::new(),
                };
                let mut stopped = None;
                let signals_done = signals.last().map(|s| s.id);
                for signal in signals {
                    let body: Value = serde_json::from_str(&signal.body).unwrap_or(Value::Null);
                    let result = match signal.kind.as_str() {
                        "stop" => {
                            stopped = Some(body);
                            continue;
                        }
                        "success" => Some(Ok(body["output"].clone())),
                        "failure" => Some(Err(AslError {
                            error: body["error"].as_str().unwrap_or("States.TaskFailed").into(),
                            cause: body["cause"].as_str().unwrap_or_default().into(),
                        })),
                        _ => None,
                    };
                    let secret = body["secret"].as_str().unwrap_or_default();
                    run.callback(
                        &signal.thread,
                        secret,
                        result,
                        &exec,
                        now,
                        &mut Random,
                        &mut changes,
                    );
                }
                run.settle(&exec, now, &mut Random, &mut changes);
                transitions += i64::from(changes.transitions);
                let mut abort = |status: &str, error: &str, cause: &str| {
                    let asl = AslError {
                        error: error.into(),
                        cause: cause.into(),
                    };
                    run.abort(asl, &mut changes);
                    Some(self.end(status, None, Some((error, cause))))
                };
                let end = if let Some(body) = stopped {
                    let error = body["error"].as_str().unwrap_or("States.Aborted");
                    let cause = body["cause"].as_str().unwrap_or("stopped");
                    abort("aborted", error, cause)
                } else if self.record.deadline.is_some_and(|d| d <= now) {
                    abort(
                        "timed_out",
                        "States.Timeout",
                        "the execution ran past its TimeoutSeconds",
                    )
                } else if transitions > MAX_TRANSITIONS {
                    let cause =
                        format!("the execution made more than {MAX_TRANSITIONS} transitions");
                    abort("failed", "States.Runtime", &cause)
                } else {
                    match run.outcome() {
                        Some(Outcome::Succeeded { output }) => {
                            Some(self.end("succeeded", Some(output.to_string()), None))
                        }
                        Some(Outcome::Failed { error, cause }) => {
                            Some(self.end("failed", None, Some((error, cause))))
                        }
                        None => None,
                    }
                };
                let invokes = std::mem::take(&mut changes.invoke);
                let wake = [run.next_wake(), self.record.deadline]
                    .into_iter()
                    .flatten()
                    .min();
                let idle = end.is_none()
                    && invokes.is_empty()
                    && tasks.is_empty()
                    && wake.is_none_or(|w| w > now);
                let ended = end.is_some();
                // While held, it is due at once: if this node dies, another claims it as soon as
                // the lease runs out.
                let due_at = if idle { wake } else { wake.or(Some(now)) };
                let mut save = saved(&run, &changes, now, due_at, idle, end);
                save.signals_done = signals_done;
                changes = Changes::default();
                if !self.save(save).await? {
                    tracing::warn!(execution = %self.record.id, "lost the execution's lease; another node drives it");
                    return Ok(());
                }
                if ended {
                    self.state.workflows.ended(&self.record.id);
                    return Ok(());
                }
                if idle {
                    return Ok(());
                }
                (invokes, wake)
            };
            for invoke in invokes {
                let state = self.state.clone();
                let record = self.record.clone();
                tasks.spawn(async move { run_task(&state, &record, invoke).await });
            }
            if wake.is_some_and(|w| w <= kumo_core::now_ms()) {
                continue; // more is due at once (a settle's budget ran out)
            }
            let sleep = wake.map_or(POLL, |w| {
                Duration::from_millis(
                    (w - kumo_core::now_ms()).clamp(0, POLL.as_millis() as i64) as u64
                )
            });
            tokio::select! {
                Some(ended) = tasks.join_next() => {
                    let now = kumo_core::now_ms();
                    let mut apply = |(thread, task, result): TaskEnd| {
                        run.task_ended(&thread, task, result, &exec, now, &mut Random, &mut changes);
                    };
                    if let Ok(end) = ended {
                        apply(end);
                    }
                    // Take every other answer already in, for one transaction.
                    while let Some(Some(Ok(end))) = tasks.join_next().now_or_never() {
                        apply(end);
                    }
                }
                _ = self.bell.notified() => look = true,
                _ = tokio::time::sleep(sleep) => look = true,
            }
        }
    }

    /// Writes one transition (in the writer's next batch); false once the lease is another's.
    async fn save(&self, save: ExecutionSave) -> anyhow::Result<bool> {
        let (done, outcome) = oneshot::channel();
        let request = SaveRequest {
            id: self.record.id.clone(),
            owner: self.owner.clone(),
            save,
            done,
        };
        self.state
            .workflows
            .saves
            .send(request)
            .map_err(|_| anyhow::anyhow!("the workflow writer has stopped"))?;
        outcome
            .await
            .map_err(|_| anyhow::anyhow!("the workflow writer has stopped"))?
    }

    fn end(
        &self,
        status: &str,
        output: Option<String>,
        error: Option<(&str, &str)>,
    ) -> ExecutionEnd {
        ExecutionEnd {
            status: status.to_string(),
            output,
            error: error.map(|(e, _)| e.to_string()),
            cause: error.map(|(_, c)| c.to_string()),
            at: kumo_core::now_ms(),
        }
    }
}

use futures::FutureExt as _;

/// Runs one task through the Invoker, as an invocation with trigger `workflow` that carries
/// the execution's trace.
async fn run_task(state: &Arc<AppState>, record: &ExecutionRecord, invoke: Invoke) -> TaskEnd {
    let result = call(state, record, &invoke).await;
    (invoke.thread, invoke.task, result)
}

async fn call(
    state: &Arc<AppState>,
    record: &ExecutionRecord,
    invoke: &Invoke,
) -> Result<Value, AslError> {
    let call = kumo_asl::task::call(&invoke.resource, &invoke.input)?;
    let namespace = kumo_core::namespace_of(&record.workflow);
    let mut target = kumo_core::scoped(namespace, &call.function);
    if let Some(qualifier) = &call.qualifier {
        target = format!("{target}:{qualifier}");
    }
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    let trace = crate::trace::TraceContext::continue_or_start(None);
    let traceparent = format!("00-{}-{}-01", record.trace_id, trace.span_id);
    if let Ok(value) = http::HeaderValue::from_str(&traceparent) {
        headers.insert("traceparent", value);
    }
    let request = InvocationRequest {
        method: http::Method::POST,
        path_and_query: "/".to_string(),
        headers,
        body: bytes::Bytes::from(call.payload.to_string()),
        env: vec![
            ("KUMO_EXECUTION_ID".into(), record.id.clone()),
            ("KUMO_STATE".into(), invoke.state.clone()),
        ],
        call_depth: 0,
        source: kumo_core::Source::Workflow,
        peer: None,
        tail_logs: false,
    };
    let invocation = state.invoker.invoke(&target, request);
    let invoked = match invoke.timeout_seconds {
        Some(seconds) => match tokio::time::timeout(Duration::from_secs(seconds), invocation).await
        {
            Ok(invoked) => invoked,
            Err(_) => {
                return Err(AslError {
                    error: "States.Timeout".into(),
                    cause: format!("the task ran longer than its TimeoutSeconds ({seconds})"),
                });
            }
        },
        None => invocation.await,
    };
    match invoked.result {
        Ok(response) if response.status.is_client_error() || response.status.is_server_error() => {
            let message = format!("the function answered {}", response.status);
            Err(kumo_asl::task::error(
                "function_error",
                &message,
                Some(&response.body),
            ))
        }
        Ok(response) => Ok(kumo_asl::task::result(
            &invoke.resource,
            kumo_asl::task::answer(&response.body),
        )),
        Err(e) => Err(kumo_asl::task::error(
            e.kind.code(),
            &e.message,
            invoked.error_document.as_deref().map(str::as_bytes),
        )),
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
