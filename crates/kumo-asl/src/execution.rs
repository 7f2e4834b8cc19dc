//! One execution as a pure state machine: its threads (the top-level machine, each running
//! branch of a Parallel and item of a Map), what each waits for, and what an event (time
//! passing, a task's answer, a callback) changes and asks to do. The server persists each
//! [`Changes`] before performing its [`Invoke`]s, so a crash at any point resumes from the
//! store: a task that was running is failed as `States.TaskFailed` and goes to its `Retry`
//! ([`Run::recover`]), a completed one is never run again.
//!
//! Thread ids are paths: the root is `""`, child `i` of thread `T` is `T/i` (branch `i` of
//! the Parallel, or item `i` of the Map, that `T` is in).

use crate::AslError;
use crate::context::{self, Execution};
use crate::definition::{Kind, Resource, StateMachine};
use crate::step::{self, Recovery, Step};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// The top-level thread.
pub const ROOT: &str = "";

/// The most transitions one [`Run::settle`] makes: a machine that loops through `Pass` and
/// `Choice` states without a task gives the caller a chance to persist and to stop it.
const SETTLE_BUDGET: u32 = 1_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thread {
    /// The state the thread is in.
    pub state: String,
    /// That state's input.
    pub input: Value,
    pub phase: Phase,
    /// How often each of the state's retriers has retried.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retried: Vec<u32>,
    /// When the state was entered (unix ms).
    pub entered_ms: i64,
    /// The root's counts the tasks the execution has scheduled: each task's number, so a
    /// late answer of an earlier task is never taken for a later one's.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub tasks: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    /// Enter the state once `due_ms` has come (now, or after a retry's delay).
    Enter { due_ms: i64 },
    /// A `Wait` state: at `until_ms`, go on as `then` says.
    Waiting { until_ms: i64, then: Step },
    /// Task number `task` runs.
    Task { task: u64 },
    /// A callback task (`.waitForTaskToken`) waits for its token, whose secret part is
    /// `secret`, until its deadlines (`TimeoutSeconds`, `HeartbeatSeconds`).
    Callback {
        task: u64,
        secret: String,
        timeout_ms: Option<i64>,
        heartbeat_ms: Option<i64>,
        heartbeat_seconds: Option<u64>,
    },
    /// A Parallel's branches or a Map's items run as child threads; `pending` are the inputs
    /// of those not started yet (a Map's `MaxConcurrency`).
    Children {
        total: usize,
        started: usize,
        ended: usize,
        failed: usize,
        pending: VecDeque<Value>,
        max_concurrency: u32,
    },
    /// The thread ended (a child waits here for its parent to gather it).
    Ended { outcome: Outcome },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    Succeeded { output: Value },
    Failed { error: String, cause: String },
}

/// A task to run: the caller runs it after persisting the changes that asked for it, and
/// reports its end with [`Run::task_ended`].
#[derive(Debug, Clone, PartialEq)]
pub struct Invoke {
    pub thread: String,
    pub state: String,
    /// Its number in the execution (what [`Run::task_ended`] takes).
    pub task: u64,
    /// 1, then 2 on its first retry, ...
    pub attempt: u32,
    pub resource: Resource,
    pub input: Value,
    pub timeout_seconds: Option<u64>,
    /// The task token of a callback task.
    pub token: Option<String>,
}

/// One entry of an execution's history.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `StateEntered`, `StateExited`, `TaskScheduled`, `TaskSucceeded`, `StateFailed` (a
    /// task's or a state's error), `RetryScheduled`, `ErrorCaught`, `WaitStarted`,
    /// `BranchesStarted`, `ThreadFailed` (nothing took the error).
    pub kind: &'static str,
    pub thread: String,
    pub state: String,
    pub detail: Value,
}

/// What one event changed and asks for.
#[derive(Debug, Default)]
pub struct Changes {
    /// Threads written or removed: each is saved as the run has it, or deleted if it has none.
    pub touched: BTreeSet<String>,
    pub history: Vec<Event>,
    /// States entered.
    pub transitions: u32,
    pub invoke: Vec<Invoke>,
}

/// Randomness the language needs: retry jitter and callback secrets.
pub trait Entropy {
    /// In [0, 1).
    fn random(&mut self) -> f64;
    /// A fresh unguessable secret for a task token.
    fn secret(&mut self) -> String;
}

/// An execution's threads, with its machine.
pub struct Run<'m> {
    pub machine: &'m StateMachine,
    pub threads: BTreeMap<String, Thread>,
    /// Threads to advance now (not persisted: [`Run::settle`] finds them again from their
    /// phases).
    ready: VecDeque<String>,
}

impl<'m> Run<'m> {
    /// A new execution: the root thread enters the machine's first state.
    pub fn start(machine: &'m StateMachine, input: Value, now_ms: i64) -> (Self, Changes) {
        let mut run = Self::resume(machine, BTreeMap::new());
        run.spawn(ROOT.to_string(), &machine.start_at, input, now_ms);
        let mut changes = Changes::default();
        changes.touched.insert(ROOT.to_string());
        (run, changes)
    }

    /// An execution as the store kept it.
    pub fn resume(machine: &'m StateMachine, threads: BTreeMap<String, Thread>) -> Self {
        Self {
            machine,
            threads,
            ready: VecDeque::new(),
        }
    }

    /// The root's end, once the execution ended.
    pub fn outcome(&self) -> Option<&Outcome> {
        match &self.threads.get(ROOT)?.phase {
            Phase::Ended { outcome } => Some(outcome),
            _ => None,
        }
    }

    /// The earliest time something is due (a wait, a retry, a callback's deadline).
    pub fn next_wake(&self) -> Option<i64> {
        self.threads
            .values()
            .filter_map(|t| match &t.phase {
                Phase::Enter { due_ms } => Some(*due_ms),
                Phase::Waiting { until_ms, .. } => Some(*until_ms),
                Phase::Callback {
                    timeout_ms,
                    heartbeat_ms,
                    ..
                } => match (timeout_ms, heartbeat_ms) {
                    (Some(a), Some(b)) => Some(*a.min(b)),
                    (a, b) => a.or(*b),
                },
                _ => None,
            })
            .min()
    }

    /// The tasks that were running when the node driving the execution stopped: each fails
    /// as `States.TaskFailed`, so its `Retry` decides whether it runs again.
    pub fn recover(&mut self, exec: &Execution, now: i64, entropy: &mut dyn Entropy) -> Changes {
        let mut changes = Changes::default();
        let running: Vec<(String, u64)> = self
            .threads
            .iter()
            .filter_map(|(id, t)| match t.phase {
                Phase::Task { task } => Some((id.clone(), task)),
                _ => None,
            })
            .collect();
        for (id, task) in running {
            let error = AslError {
                error: "States.TaskFailed".into(),
                cause: "the node running the task stopped before it answered".into(),
            };
            self.task_ended(&id, task, Err(error), exec, now, entropy, &mut changes);
        }
        changes
    }

    /// Advances every thread that is due by `now` until each waits for something (a task,
    /// a callback, a time) or the budget of transitions is spent (then something is still
    /// due now: call again).
    pub fn settle(
        &mut self,
        exec: &Execution,
        now: i64,
        entropy: &mut dyn Entropy,
        changes: &mut Changes,
    ) {
        let due: Vec<String> = self
            .threads
            .iter()
            .filter(|(_, t)| match &t.phase {
                Phase::Enter { due_ms } => *due_ms <= now,
                Phase::Waiting { until_ms, .. } => *until_ms <= now,
                Phase::Callback {
                    timeout_ms,
                    heartbeat_ms,
                    ..
                } => timeout_ms.is_some_and(|t| t <= now) || heartbeat_ms.is_some_and(|t| t <= now),
                _ => false,
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            if !self.ready.contains(&id) {
                self.ready.push_back(id);
            }
        }
        let budget = changes.transitions + SETTLE_BUDGET;
        while changes.transitions < budget {
            let Some(id) = self.ready.pop_front() else {
                break;
            };
            let Some(thread) = self.threads.get(&id) else {
                continue; // gathered or stopped since it was queued
            };
            match thread.phase.clone() {
                Phase::Enter { due_ms } if due_ms <= now => {
                    self.enter(&id, exec, now, entropy, changes)
                }
                Phase::Waiting { until_ms, then } if until_ms <= now => {
                    self.follow(&id, then, exec, now, entropy, changes)
                }
                Phase::Callback {
                    timeout_ms,
                    heartbeat_ms,
                    ..
                } => {
                    let error = if timeout_ms.is_some_and(|t| t <= now) {
                        "States.Timeout"
                    } else if heartbeat_ms.is_some_and(|t| t <= now) {
                        "States.HeartbeatTimeout"
                    } else {
                        continue;
                    };
                    let error = AslError {
                        error: error.into(),
                        cause: "no callback came in time".into(),
                    };
                    self.failed(&id, error, exec, now, entropy, changes);
                }
                _ => {}
            }
        }
    }

    /// Task number `task` of thread `id` ended. Ignored (false) unless the thread still
    /// waits for that task (a stopped branch's task may answer late). A callback task's own call only
    /// matters when it fails.
    #[allow(clippy::too_many_arguments)] // each is one part of the event
    pub fn task_ended(
        &mut self,
        id: &str,
        task: u64,
        result: Result<Value, AslError>,
        exec: &Execution,
        now: i64,
        entropy: &mut dyn Entropy,
        changes: &mut Changes,
    ) -> bool {
        let Some(thread) = self.threads.get(id) else {
            return false;
        };
        let callback = match &thread.phase {
            Phase::Task { task: t } if *t == task => false,
            Phase::Callback { task: t, .. } if *t == task => true,
            _ => return false,
        };
        match result {
            Ok(_) if callback => return false,
            Ok(output) => {
                self.record(id, "TaskSucceeded", json!({"output": output}), changes);
                self.succeeded(id, output, exec, now, entropy, changes);
            }
            Err(error) => self.failed(id, error, exec, now, entropy, changes),
        }
        true
    }

    /// A callback for thread `id`, whose token carried `secret`: its result, or (`None`) a
    /// heartbeat. False when no callback of that token waits.
    #[allow(clippy::too_many_arguments)] // each is one part of the event
    pub fn callback(
        &mut self,
        id: &str,
        secret: &str,
        result: Option<Result<Value, AslError>>,
        exec: &Execution,
        now: i64,
        entropy: &mut dyn Entropy,
        changes: &mut Changes,
    ) -> bool {
        let Some(thread) = self.threads.get_mut(id) else {
            return false;
        };
        let Phase::Callback {
            secret: expected,
            heartbeat_ms,
            heartbeat_seconds,
            ..
        } = &mut thread.phase
        else {
            return false;
        };
        if !constant_time_eq(expected.as_bytes(), secret.as_bytes()) {
            return false;
        }
        match result {
            None => {
                if let Some(seconds) = heartbeat_seconds {
                    *heartbeat_ms = Some(now + *seconds as i64 * 1000);
                }
                changes.touched.insert(id.to_string());
            }
            Some(Ok(output)) => {
                self.record(id, "TaskSucceeded", json!({"output": output}), changes);
                self.succeeded(id, output, exec, now, entropy, changes);
            }
            Some(Err(error)) => self.failed(id, error, exec, now, entropy, changes),
        }
        true
    }

    /// Ends every thread (a stop, the execution's timeout): nothing runs on. The root keeps
    /// the state it was in, so a redrive can start there again.
    pub fn abort(&mut self, error: AslError, changes: &mut Changes) {
        changes.touched.extend(self.threads.keys().cloned());
        self.threads.retain(|id, _| id == ROOT);
        self.ready.clear();
        if let Some(root) = self.threads.get_mut(ROOT)
            && !matches!(root.phase, Phase::Ended { .. })
        {
            root.phase = Phase::Ended {
                outcome: Outcome::Failed {
                    error: error.error,
                    cause: error.cause,
                },
            };
        }
    }

    /// An execution that failed (or was stopped, or timed out) runs again from the state it
    /// ended in, with that state's input and fresh retry counts (a Parallel or Map starts
    /// all its branches again). None if it did not end unsuccessfully.
    pub fn redrive(&mut self, now: i64) -> Option<Changes> {
        let root = self.threads.get_mut(ROOT)?;
        if !matches!(
            root.phase,
            Phase::Ended {
                outcome: Outcome::Failed { .. }
            }
        ) {
            return None;
        }
        root.phase = Phase::Enter { due_ms: now };
        root.retried.clear();
        root.entered_ms = now;
        self.ready.push_back(ROOT.to_string());
        let mut changes = Changes::default();
        changes.touched.insert(ROOT.to_string());
        Some(changes)
    }

    /// A thread in the machine's state `state`.
    fn spawn(&mut self, id: String, state: &str, input: Value, now: i64) {
        let thread = Thread {
            state: state.to_string(),
            input,
            phase: Phase::Enter { due_ms: now },
            retried: Vec::new(),
            entered_ms: now,
            tasks: 0,
        };
        self.threads.insert(id.clone(), thread);
        self.ready.push_back(id);
    }

    /// The machine thread `id` runs in: the top one, or a branch or item processor.
    fn machine_of(&self, id: &str) -> Result<&'m StateMachine, AslError> {
        let Some((parent, index)) = id.rsplit_once('/') else {
            return Ok(self.machine);
        };
        let lost = || AslError::runtime(format!("thread {id:?} has no parent state"));
        let parent_machine = self.machine_of(parent)?;
        let parent_state = self.threads.get(parent).ok_or_else(lost)?;
        let state = parent_machine
            .states
            .get(&parent_state.state)
            .ok_or_else(lost)?;
        match &state.kind {
            Kind::Parallel { branches } => index
                .parse::<usize>()
                .ok()
                .and_then(|i| branches.get(i))
                .ok_or_else(lost),
            Kind::Map { processor, .. } => Ok(processor),
            _ => Err(lost()),
        }
    }

    fn context(&self, id: &str, exec: &Execution, token: Option<&str>) -> Value {
        let thread = &self.threads[id];
        let entered = chrono::DateTime::from_timestamp_millis(thread.entered_ms)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let retries = thread.retried.iter().sum::<u32>();
        context::context(exec, &thread.state, &entered, retries, token)
    }

    fn record(&self, id: &str, kind: &'static str, detail: Value, changes: &mut Changes) {
        let state = self.threads.get(id).map(|t| t.state.clone());
        changes.history.push(Event {
            kind,
            thread: id.to_string(),
            state: state.unwrap_or_default(),
            detail,
        });
    }

    fn exited(&self, id: &str, output: &Value, changes: &mut Changes) {
        self.record(id, "StateExited", json!({"output": output}), changes);
    }

    /// Enters the thread's state.
    fn enter(
        &mut self,
        id: &str,
        exec: &Execution,
        now: i64,
        entropy: &mut dyn Entropy,
        changes: &mut Changes,
    ) {
        changes.transitions += 1;
        changes.touched.insert(id.to_string());
        let thread = &self.threads[id];
        self.record(id, "StateEntered", json!({"input": thread.input}), changes);
        let machine = match self.machine_of(id) {
            Ok(machine) => machine,
            Err(error) => return self.end_with(id, error, exec, now, entropy, changes),
        };
        // A callback task's Parameters see its token as `$$.Task.Token`.
        let callback = matches!(
            machine.states.get(&thread.state).map(|s| &s.kind),
            Some(Kind::Task {
                resource: Resource::Callback { .. },
                ..
            })
        );
        let secret = callback.then(|| entropy.secret());
        let token = secret.as_ref().map(|secret| token(exec.id, id, secret));
        let context = self.context(id, exec, token.as_deref());
        match step::enter(machine, &thread.state, &thread.input, &context, now) {
            Ok(Step::Task {
                resource,
                input,
                timeout_seconds,
                heartbeat_seconds,
            }) => {
                let callback = secret.zip(token);
                let invoke = (resource, input, timeout_seconds, heartbeat_seconds);
                self.schedule(id, invoke, callback, now, changes)
            }
            Ok(step) => self.follow(id, step, exec, now, entropy, changes),
            Err(error) => self.failed(id, error, exec, now, entropy, changes),
        }
    }

    /// Thread `id` starts a task: (resource, input, timeout, heartbeat), and for a callback
    /// task its (secret, token).
    fn schedule(
        &mut self,
        id: &str,
        (resource, input, timeout_seconds, heartbeat_seconds): (
            Resource,
            Value,
            Option<u64>,
            Option<u64>,
        ),
        callback: Option<(String, String)>,
        now: i64,
        changes: &mut Changes,
    ) {
        let task = match self.threads.get_mut(ROOT) {
            Some(root) => {
                root.tasks += 1;
                root.tasks
            }
            None => 0,
        };
        changes.touched.insert(ROOT.to_string());
        let thread = self.threads.get_mut(id).expect("scheduled threads exist");
        let attempt = thread.retried.iter().sum::<u32>() + 1;
        thread.phase = match &callback {
            Some((secret, _)) => Phase::Callback {
                task,
                secret: secret.clone(),
                timeout_ms: timeout_seconds.map(|s| now + s as i64 * 1000),
                heartbeat_ms: heartbeat_seconds.map(|s| now + s as i64 * 1000),
                heartbeat_seconds,
            },
            None => Phase::Task { task },
        };
        let state = thread.state.clone();
        self.record(
            id,
            "TaskScheduled",
            json!({"attempt": attempt, "input": input}),
            changes,
        );
        changes.invoke.push(Invoke {
            thread: id.to_string(),
            state,
            task,
            attempt,
            resource,
            input,
            timeout_seconds,
            token: callback.map(|(_, token)| token),
        });
    }

    /// Does what a step says for thread `id`.
    fn follow(
        &mut self,
        id: &str,
        step: Step,
        exec: &Execution,
        now: i64,
        entropy: &mut dyn Entropy,
        changes: &mut Changes,
    ) {
        changes.touched.insert(id.to_string());
        match step {
            Step::Next { state, input } => {
                self.exited(id, &input, changes);
                let thread = self.threads.get_mut(id).expect("followed threads exist");
                *thread = Thread {
                    state,
                    input,
                    phase: Phase::Enter { due_ms: now },
                    retried: Vec::new(),
                    entered_ms: now,
                    tasks: thread.tasks,
                };
                self.ready.push_back(id.to_string());
            }
            Step::Succeed { output } => {
                self.exited(id, &output, changes);
                self.end(
                    id,
                    Outcome::Succeeded { output },
                    exec,
                    now,
                    entropy,
                    changes,
                );
            }
            Step::Fail { error, cause } => {
                self.end(
                    id,
                    Outcome::Failed { error, cause },
                    exec,
                    now,
                    entropy,
                    changes,
                );
            }
            // Only entering a state starts a task (see `enter`).
            Step::Task {
                resource,
                input,
                timeout_seconds,
                heartbeat_seconds,
            } => {
                let invoke = (resource, input, timeout_seconds, heartbeat_seconds);
                self.schedule(id, invoke, None, now, changes)
            }
            Step::Wait { until_ms, then } => {
                if until_ms <= now {
                    return self.follow(id, *then, exec, now, entropy, changes);
                }
                self.record(id, "WaitStarted", json!({"until_ms": until_ms}), changes);
                let thread = self.threads.get_mut(id).expect("followed threads exist");
                thread.phase = Phase::Waiting {
                    until_ms,
                    then: *then,
                };
            }
            Step::Parallel { input } => {
                let branches = match self
                    .machine_of(id)
                    .map(|m| &m.states[&self.threads[id].state].kind)
                {
                    Ok(Kind::Parallel { branches }) => branches.len(),
                    _ => 0,
                };
                let pending = std::iter::repeat_n(input, branches).collect();
                self.fork(id, pending, 0, exec, now, entropy, changes);
            }
            Step::Map {
                items,
                max_concurrency,
            } => self.fork(
                id,
                items.into(),
                max_concurrency,
                exec,
                now,
                entropy,
                changes,
            ),
        }
    }

    /// Starts a Parallel's branches or a Map's items.
    #[allow(clippy::too_many_arguments)] // each is one part of the event
    fn fork(
        &mut self,
        id: &str,
        pending: VecDeque<Value>,
        max_concurrency: u32,
        exec: &Execution,
        now: i64,
        entropy: &mut dyn Entropy,
        changes: &mut Changes,
    ) {
        let total = pending.len();
        self.record(id, "BranchesStarted", json!({"count": total}), changes);
        if total == 0 {
            return self.gathered(id, Vec::new(), exec, now, entropy, changes);
        }
        let thread = self.threads.get_mut(id).expect("forked threads exist");
        thread.phase = Phase::Children {
            total,
            started: 0,
            ended: 0,
            failed: 0,
            pending,
            max_concurrency,
        };
        self.start_children(id, now, changes);
    }

    /// Starts as many pending children as the concurrency allows.
    fn start_children(&mut self, id: &str, now: i64, changes: &mut Changes) {
        loop {
            let Phase::Children {
                started,
                ended,
                pending,
                max_concurrency,
                ..
            } = &mut self.threads.get_mut(id).expect("parents exist").phase
            else {
                return;
            };
            let running = *started - *ended;
            if *max_concurrency > 0 && running >= *max_concurrency as usize {
                return;
            }
            let Some(input) = pending.pop_front() else {
                return;
            };
            let child = format!("{id}/{started}");
            *started += 1;
            let Ok(machine) = self.child_machine(id, &child) else {
                return;
            };
            changes.touched.insert(child.clone());
            self.spawn(child, &machine.start_at, input, now);
        }
    }

    /// The machine child `child` of `parent` runs (before the child exists).
    fn child_machine(&self, parent: &str, child: &str) -> Result<&'m StateMachine, AslError> {
        let machine = self.machine_of(parent)?;
        let state = &machine.states[&self.threads[parent].state];
        let index = child.rsplit('/').next().unwrap_or_default();
        match &state.kind {
            Kind::Parallel { branches } => index
                .parse::<usize>()
                .ok()
                .and_then(|i| branches.get(i))
                .ok_or_else(|| AslError::runtime("no such branch")),
            Kind::Map { processor, .. } => Ok(processor),
            _ => Err(AslError::runtime("not a Parallel or Map state")),
        }
    }

    /// The work of thread `id`'s state gave `result`.
    fn succeeded(
        &mut self,
        id: &str,
        result: Value,
        exec: &Execution,
        now: i64,
        entropy: &mut dyn Entropy,
        changes: &mut Changes,
    ) {
        let thread = &self.threads[id];
        let step = self.machine_of(id).and_then(|machine| {
            let context = self.context(id, exec, None);
            step::after_result(machine, &thread.state, &thread.input, result, &context)
        });
        match step {
            Ok(step) => self.follow(id, step, exec, now, entropy, changes),
            Err(error) => self.end_with(id, error, exec, now, entropy, changes),
        }
    }

    /// The work of thread `id`'s state failed: retry, catch, or end the thread.
    fn failed(
        &mut self,
        id: &str,
        error: AslError,
        exec: &Execution,
        now: i64,
        entropy: &mut dyn Entropy,
        changes: &mut Changes,
    ) {
        changes.touched.insert(id.to_string());
        self.record(
            id,
            "StateFailed",
            json!({"error": error.error, "cause": error.cause}),
            changes,
        );
        let thread = &self.threads[id];
        let recovery = self.machine_of(id).and_then(|machine| {
            step::after_error(
                machine,
                &thread.state,
                &thread.input,
                &error,
                &thread.retried,
                entropy.random(),
            )
        });
        match recovery {
            Ok(Recovery::Retry { retrier, delay_ms }) => {
                self.record(id, "RetryScheduled", json!({"delay_ms": delay_ms}), changes);
                let thread = self.threads.get_mut(id).expect("failed threads exist");
                if thread.retried.len() <= retrier {
                    thread.retried.resize(retrier + 1, 0);
                }
                thread.retried[retrier] += 1;
                let due_ms = now + delay_ms as i64;
                thread.phase = Phase::Enter { due_ms };
                if delay_ms == 0 {
                    self.ready.push_back(id.to_string());
                }
            }
            Ok(Recovery::Catch(step)) => {
                let next = match &step {
                    Step::Next { state, .. } => state.clone(),
                    _ => String::new(),
                };
                self.record(
                    id,
                    "ErrorCaught",
                    json!({"error": error.error, "next": next}),
                    changes,
                );
                self.follow(id, step, exec, now, entropy, changes);
            }
            Ok(Recovery::Fail(step)) => self.follow(id, step, exec, now, entropy, changes),
            Err(e) => self.end_with(id, e, exec, now, entropy, changes),
        }
    }

    fn end_with(
        &mut self,
        id: &str,
        error: AslError,
        exec: &Execution,
        now: i64,
        entropy: &mut dyn Entropy,
        changes: &mut Changes,
    ) {
        let outcome = Outcome::Failed {
            error: error.error,
            cause: error.cause,
        };
        self.end(id, outcome, exec, now, entropy, changes);
    }

    /// Thread `id` ended: the execution ends with the root; a child's parent gathers it.
    fn end(
        &mut self,
        id: &str,
        outcome: Outcome,
        exec: &Execution,
        now: i64,
        entropy: &mut dyn Entropy,
        changes: &mut Changes,
    ) {
        changes.touched.insert(id.to_string());
        if let Outcome::Failed { error, cause } = &outcome {
            self.record(
                id,
                "ThreadFailed",
                json!({"error": error, "cause": cause}),
                changes,
            );
        }
        let failed = matches!(outcome, Outcome::Failed { .. });
        let thread = self.threads.get_mut(id).expect("ended threads exist");
        thread.phase = Phase::Ended {
            outcome: outcome.clone(),
        };
        let Some((parent, _)) = id.rsplit_once('/') else {
            return;
        };
        let parent = parent.to_string();
        let Some(Thread {
            phase:
                Phase::Children {
                    total,
                    ended,
                    failed: failures,
                    ..
                },
            state,
            ..
        }) = self.threads.get_mut(&parent)
        else {
            return;
        };
        *ended += 1;
        *failures += usize::from(failed);
        let (total, ended, failures, state) = (*total, *ended, *failures, state.clone());
        let machine = match self.machine_of(&parent) {
            Ok(machine) => machine,
            Err(error) => return self.end_with(&parent, error, exec, now, entropy, changes),
        };
        // A Parallel fails with its first failed branch; a Map once more items failed than it
        // tolerates. Either way the other children stop.
        let early = match (&machine.states[&state].kind, &outcome) {
            (Kind::Parallel { .. }, Outcome::Failed { error, cause }) => Some(AslError {
                error: error.clone(),
                cause: cause.clone(),
            }),
            (Kind::Map { tolerated, .. }, Outcome::Failed { .. })
                if tolerated.exceeded(failures, total) =>
            {
                Some(AslError {
                    error: "States.ExceedToleratedFailureThreshold".into(),
                    cause: format!("{failures} of {total} items of Map state {state:?} failed"),
                })
            }
            _ => None,
        };
        if let Some(error) = early {
            self.take_children(&parent, changes);
            return self.failed(&parent, error, exec, now, entropy, changes);
        }
        if ended == total {
            let outcomes = self.take_children(&parent, changes);
            return self.gathered(&parent, outcomes, exec, now, entropy, changes);
        }
        self.start_children(&parent, now, changes);
    }

    /// Removes a parent's children, giving their outcomes in order.
    fn take_children(
        &mut self,
        parent: &str,
        changes: &mut Changes,
    ) -> Vec<Result<Value, AslError>> {
        let prefix = format!("{parent}/");
        let children: Vec<String> = self
            .threads
            .range(prefix.clone()..)
            .take_while(|(id, _)| id.starts_with(&prefix))
            .map(|(id, _)| id.clone())
            .collect();
        let mut direct: Vec<(usize, Result<Value, AslError>)> = Vec::new();
        for child in children {
            let thread = self.threads.remove(&child).expect("listed children exist");
            changes.touched.insert(child.clone());
            let Ok(index) = child[prefix.len()..].parse::<usize>() else {
                continue; // a grandchild
            };
            if let Phase::Ended { outcome } = thread.phase {
                direct.push((
                    index,
                    match outcome {
                        Outcome::Succeeded { output } => Ok(output),
                        Outcome::Failed { error, cause } => Err(AslError { error, cause }),
                    },
                ));
            }
        }
        direct.sort_by_key(|(index, _)| *index);
        direct.into_iter().map(|(_, outcome)| outcome).collect()
    }

    /// A Parallel's or Map's children all ended with `outcomes`.
    fn gathered(
        &mut self,
        id: &str,
        outcomes: Vec<Result<Value, AslError>>,
        exec: &Execution,
        now: i64,
        entropy: &mut dyn Entropy,
        changes: &mut Changes,
    ) {
        let thread = &self.threads[id];
        let gathered = self
            .machine_of(id)
            .and_then(|machine| step::gather(machine, &thread.state, outcomes));
        match gathered {
            Ok(Ok(result)) => self.succeeded(id, result, exec, now, entropy, changes),
            Ok(Err(error)) => self.failed(id, error, exec, now, entropy, changes),
            Err(error) => self.end_with(id, error, exec, now, entropy, changes),
        }
    }
}

/// A callback task's token: which execution and thread it answers, and the secret that
/// proves the caller got it from the task. Opaque to its holders.
pub fn token(execution: &str, thread: &str, secret: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("{execution}|{thread}|{secret}"))
}

/// A token's (execution, thread, secret), if it is one.
pub fn parse_token(token: &str) -> Option<(String, String, String)> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let mut parts = text.splitn(3, '|');
    let (execution, thread, secret) = (parts.next()?, parts.next()?, parts.next()?);
    Some((execution.into(), thread.into(), secret.into()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;
    impl Entropy for Fixed {
        fn random(&mut self) -> f64 {
            0.5
        }
        fn secret(&mut self) -> String {
            "s3cret".into()
        }
    }

    fn exec() -> Execution<'static> {
        static INPUT: Value = Value::Null;
        Execution {
            id: "e1",
            name: "e1",
            start_time: "2026-12-08T00:00:00Z",
            input: &INPUT,
            state_machine: "m",
        }
    }

    fn machine(definition: Value) -> StateMachine {
        StateMachine::parse(&definition).unwrap()
    }

    /// Drives a run as the server does, but every task answers at once through `answer`
    /// (function name, input) and time jumps to whatever is due next; returns the outcome
    /// and every task invoked, in order.
    fn drive(
        machine: &StateMachine,
        input: Value,
        answer: &mut dyn FnMut(&str, &Value) -> Result<Value, AslError>,
    ) -> (Outcome, Vec<(String, Value)>) {
        let (mut run, mut changes) = Run::start(machine, input, 0);
        let mut now = 0;
        let mut calls = Vec::new();
        for _ in 0..1000 {
            run.settle(&exec(), now, &mut Fixed, &mut changes);
            let invokes = std::mem::take(&mut changes.invoke);
            if let Some(outcome) = run.outcome() {
                return (outcome.clone(), calls);
            }
            if invokes.is_empty() {
                now = run.next_wake().expect("something is due");
                continue;
            }
            for invoke in invokes {
                let call = crate::task::call(&invoke.resource, &invoke.input).unwrap();
                calls.push((call.function.clone(), call.payload.clone()));
                let result = answer(&call.function, &call.payload);
                answered(
                    &mut run,
                    &invoke.thread,
                    invoke.task,
                    result,
                    now,
                    &mut changes,
                );
            }
        }
        panic!("the run did not end")
    }

    /// A task's answer, then whatever it makes due (as the server does).
    #[allow(clippy::too_many_arguments)]
    fn answered(
        run: &mut Run,
        thread: &str,
        task: u64,
        result: Result<Value, AslError>,
        now: i64,
        changes: &mut Changes,
    ) -> bool {
        let taken = run.task_ended(thread, task, result, &exec(), now, &mut Fixed, changes);
        run.settle(&exec(), now, &mut Fixed, changes);
        taken
    }

    fn failure(name: &str) -> AslError {
        AslError {
            error: name.into(),
            cause: "on purpose".into(),
        }
    }

    #[test]
    fn tasks_run_in_order_and_each_state_entered_is_a_transition() {
        let m = machine(json!({"StartAt": "A", "States": {
            "A": {"Type": "Task", "Resource": "kumo:function:a", "ResultPath": "$.a", "Next": "B"},
            "B": {"Type": "Pass", "Result": 2, "ResultPath": "$.b", "Next": "C"},
            "C": {"Type": "Task", "Resource": "kumo:function:c", "End": true}
        }}));
        let (mut run, mut changes) = Run::start(&m, json!({"x": 1}), 0);
        run.settle(&exec(), 0, &mut Fixed, &mut changes);
        assert_eq!(changes.transitions, 1);
        assert_eq!(changes.invoke.len(), 1);
        let a = changes.invoke.remove(0);
        assert_eq!((a.state.as_str(), a.attempt), ("A", 1));
        answered(
            &mut run,
            &a.thread,
            a.task,
            Ok(json!("ra")),
            1,
            &mut changes,
        );
        assert_eq!(changes.transitions, 3, "B and C entered");
        let c = changes.invoke.remove(0);
        assert_eq!(c.input, json!({"x": 1, "a": "ra", "b": 2}));
        // A late or repeated answer of A changes nothing.
        assert!(!answered(
            &mut run,
            &a.thread,
            a.task,
            Ok(json!(0)),
            2,
            &mut changes
        ));
        answered(
            &mut run,
            &c.thread,
            c.task,
            Ok(json!({"done": true})),
            2,
            &mut changes,
        );
        assert_eq!(
            run.outcome(),
            Some(&Outcome::Succeeded {
                output: json!({"done": true})
            })
        );
        let kinds: Vec<&str> = changes.history.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                "StateEntered",
                "TaskScheduled",
                "TaskSucceeded",
                "StateExited",
                "StateEntered",
                "StateExited",
                "StateEntered",
                "TaskScheduled",
                "TaskSucceeded",
                "StateExited"
            ]
        );
    }

    #[test]
    fn a_retry_waits_its_backoff_then_a_catch_takes_what_retries_did_not_fix() {
        let m = machine(json!({"StartAt": "Pay", "States": {
            "Pay": {"Type": "Task", "Resource": "kumo:function:pay",
                    "Retry": [{"ErrorEquals": ["Busy"], "IntervalSeconds": 2, "MaxAttempts": 2, "BackoffRate": 3}],
                    "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Refund"}],
                    "End": true},
            "Refund": {"Type": "Pass", "End": true}
        }}));
        let (mut run, mut changes) = Run::start(&m, json!({"order": 1}), 0);
        run.settle(&exec(), 0, &mut Fixed, &mut changes);
        let first = changes.invoke.remove(0);
        answered(
            &mut run,
            &first.thread,
            first.task,
            Err(failure("Busy")),
            10,
            &mut changes,
        );
        assert_eq!(run.next_wake(), Some(10 + 2_000));
        run.settle(&exec(), 2_009, &mut Fixed, &mut changes);
        assert!(changes.invoke.is_empty(), "not before its delay");
        run.settle(&exec(), 2_010, &mut Fixed, &mut changes);
        let second = changes.invoke.remove(0);
        assert_eq!(second.attempt, 2);
        answered(
            &mut run,
            &second.thread,
            second.task,
            Err(failure("Busy")),
            3_000,
            &mut changes,
        );
        assert_eq!(run.next_wake(), Some(3_000 + 6_000), "2 s × 3");
        run.settle(&exec(), 9_000, &mut Fixed, &mut changes);
        let third = changes.invoke.remove(0);
        answered(
            &mut run,
            &third.thread,
            third.task,
            Err(failure("Busy")),
            9_500,
            &mut changes,
        );
        run.settle(&exec(), 9_500, &mut Fixed, &mut changes);
        assert_eq!(
            run.outcome(),
            Some(&Outcome::Succeeded {
                output: json!({"order": 1, "error": {"Error": "Busy", "Cause": "on purpose"}})
            })
        );
    }

    #[test]
    fn a_parallel_fails_with_its_first_failed_branch_and_stops_the_others() {
        let m = machine(
            json!({"StartAt": "Fork", "States": {"Fork": {"Type": "Parallel", "End": true,
            "Branches": [
                {"StartAt": "Slow", "States": {"Slow": {"Type": "Task", "Resource": "kumo:function:slow", "End": true}}},
                {"StartAt": "Bad", "States": {"Bad": {"Type": "Task", "Resource": "kumo:function:bad", "End": true}}}
            ]}}}),
        );
        let (mut run, mut changes) = Run::start(&m, json!({}), 0);
        run.settle(&exec(), 0, &mut Fixed, &mut changes);
        let invokes = std::mem::take(&mut changes.invoke);
        assert_eq!(invokes.len(), 2, "both branches run at once");
        let (slow, bad) = (&invokes[0], &invokes[1]);
        assert_eq!((slow.thread.as_str(), bad.thread.as_str()), ("/0", "/1"));
        answered(
            &mut run,
            &bad.thread,
            bad.task,
            Err(failure("Broken")),
            1,
            &mut changes,
        );
        assert_eq!(
            run.outcome(),
            Some(&Outcome::Failed {
                error: "Broken".into(),
                cause: "on purpose".into()
            })
        );
        assert_eq!(run.threads.len(), 1, "the branches are gone");
        assert!(!answered(
            &mut run,
            &slow.thread,
            slow.task,
            Ok(json!(1)),
            2,
            &mut changes
        ));
    }

    #[test]
    fn a_map_keeps_to_its_concurrency_and_fails_past_its_tolerance() {
        let definition = |tolerated: u64| {
            machine(
                json!({"StartAt": "Each", "States": {"Each": {"Type": "Map", "End": true,
                    "MaxConcurrency": 2, "ToleratedFailureCount": tolerated,
                    "ItemProcessor": {"StartAt": "Do", "States": {"Do": {"Type": "Task", "Resource": "kumo:function:do", "End": true}}}
                }}}),
            )
        };
        let m = definition(1);
        let (mut run, mut changes) = Run::start(&m, json!([1, 2, 3, 4]), 0);
        run.settle(&exec(), 0, &mut Fixed, &mut changes);
        let mut running = std::mem::take(&mut changes.invoke);
        assert_eq!(running.len(), 2);
        let mut most = 0;
        while let Some(invoke) = running.pop() {
            let result = match invoke.input {
                Value::Number(n) if n.as_u64() == Some(3) => Err(failure("Odd")),
                other => Ok(json!({"item": other})),
            };
            answered(
                &mut run,
                &invoke.thread,
                invoke.task,
                result,
                1,
                &mut changes,
            );
            running.append(&mut changes.invoke);
            most = most.max(running.len());
        }
        assert!(most <= 2, "at most two items ran at once");
        assert_eq!(
            run.outcome(),
            Some(&Outcome::Succeeded {
                output: json!([{"item": 1}, {"item": 2}, {"Error": "Odd", "Cause": "on purpose"}, {"item": 4}])
            }),
            "one failure is tolerated; the outputs keep the items' order"
        );

        let m = definition(0);
        let mut answer = |_: &str, input: &Value| match input.as_u64() {
            Some(2) => Err(failure("Odd")),
            _ => Ok(input.clone()),
        };
        let (outcome, _) = drive(&m, json!([1, 2, 3]), &mut answer);
        assert!(
            matches!(&outcome, Outcome::Failed { error, .. } if error == "States.ExceedToleratedFailureThreshold"),
            "{outcome:?}"
        );
        let (outcome, calls) = drive(&m, json!([]), &mut answer);
        assert_eq!(outcome, Outcome::Succeeded { output: json!([]) });
        assert!(calls.is_empty());
    }

    #[test]
    fn a_callback_ends_with_its_token_and_times_out_without_a_heartbeat() {
        let m = machine(json!({"StartAt": "Approve", "States": {"Approve": {
            "Type": "Task", "Resource": "kumo:function:ask.waitForTaskToken",
            "Parameters": {"token.$": "$$.Task.Token"}, "HeartbeatSeconds": 5, "End": true}}}));
        let (mut run, mut changes) = Run::start(&m, json!({}), 0);
        run.settle(&exec(), 0, &mut Fixed, &mut changes);
        let ask = changes.invoke.remove(0);
        let token = ask.token.clone().unwrap();
        assert_eq!(ask.input, json!({"token": token}));
        let (execution, thread, secret) = parse_token(&token).unwrap();
        assert_eq!((execution.as_str(), thread.as_str()), ("e1", ROOT));
        // The function's own answer does not end the task; a wrong secret is refused.
        assert!(!run.task_ended(
            &thread,
            ask.task,
            Ok(json!("asked")),
            &exec(),
            1,
            &mut Fixed,
            &mut changes
        ));
        assert!(!run.callback(
            &thread,
            "guess",
            Some(Ok(json!(1))),
            &exec(),
            1,
            &mut Fixed,
            &mut changes
        ));
        // A heartbeat moves the deadline.
        assert!(run.callback(
            &thread,
            &secret,
            None,
            &exec(),
            4_000,
            &mut Fixed,
            &mut changes
        ));
        assert_eq!(run.next_wake(), Some(9_000));
        run.settle(&exec(), 8_999, &mut Fixed, &mut changes);
        assert!(run.outcome().is_none());
        run.settle(&exec(), 9_000, &mut Fixed, &mut changes);
        assert!(
            matches!(run.outcome(), Some(Outcome::Failed { error, .. }) if error == "States.HeartbeatTimeout")
        );

        let (mut run, mut changes) = Run::start(&m, json!({}), 0);
        run.settle(&exec(), 0, &mut Fixed, &mut changes);
        assert!(run.callback(
            ROOT,
            "s3cret",
            Some(Ok(json!({"ok": true}))),
            &exec(),
            1,
            &mut Fixed,
            &mut changes
        ));
        run.settle(&exec(), 1, &mut Fixed, &mut changes);
        assert_eq!(
            run.outcome(),
            Some(&Outcome::Succeeded {
                output: json!({"ok": true})
            })
        );
    }

    #[test]
    fn threads_saved_mid_run_resume_and_a_lost_task_goes_to_its_retry() {
        let m = machine(json!({"StartAt": "A", "States": {
            "A": {"Type": "Task", "Resource": "kumo:function:a", "Next": "B"},
            "B": {"Type": "Task", "Resource": "kumo:function:b", "End": true,
                  "Retry": [{"ErrorEquals": ["States.TaskFailed"], "IntervalSeconds": 1}]}
        }}));
        let (mut run, mut changes) = Run::start(&m, json!({}), 0);
        run.settle(&exec(), 0, &mut Fixed, &mut changes);
        let a = changes.invoke.remove(0);
        answered(&mut run, &a.thread, a.task, Ok(json!("a")), 1, &mut changes);
        assert_eq!(changes.invoke.remove(0).state, "B");
        // The node stops while B runs; another reads what was stored.
        let stored: BTreeMap<String, String> = run
            .threads
            .iter()
            .map(|(id, t)| (id.clone(), serde_json::to_string(t).unwrap()))
            .collect();
        let threads = stored
            .into_iter()
            .map(|(id, doc)| (id, serde_json::from_str(&doc).unwrap()))
            .collect();
        let mut resumed = Run::resume(&m, threads);
        let mut changes = resumed.recover(&exec(), 5, &mut Fixed);
        assert_eq!(resumed.next_wake(), Some(1_005));
        resumed.settle(&exec(), 1_005, &mut Fixed, &mut changes);
        let again = changes.invoke.remove(0);
        assert_eq!(
            (again.state.as_str(), again.attempt, again.input),
            ("B", 2, json!("a"))
        );
        answered(
            &mut resumed,
            &again.thread,
            again.task,
            Ok(json!("b")),
            1_006,
            &mut changes,
        );
        assert_eq!(
            resumed.outcome(),
            Some(&Outcome::Succeeded { output: json!("b") })
        );
    }

    #[test]
    fn a_redrive_starts_again_in_the_state_that_failed() {
        let m = machine(json!({"StartAt": "A", "States": {
            "A": {"Type": "Pass", "Result": 1, "ResultPath": "$.a", "Next": "B"},
            "B": {"Type": "Task", "Resource": "kumo:function:b", "End": true}
        }}));
        let (mut run, mut changes) = Run::start(&m, json!({}), 0);
        run.settle(&exec(), 0, &mut Fixed, &mut changes);
        let b = changes.invoke.remove(0);
        answered(
            &mut run,
            &b.thread,
            b.task,
            Err(failure("Down")),
            1,
            &mut changes,
        );
        assert!(matches!(run.outcome(), Some(Outcome::Failed { .. })));
        let mut changes = run.redrive(2).unwrap();
        run.settle(&exec(), 2, &mut Fixed, &mut changes);
        let again = changes.invoke.remove(0);
        assert_eq!(
            (again.state.as_str(), again.input.clone()),
            ("B", json!({"a": 1}))
        );
        assert_eq!(changes.transitions, 1, "A is not run again");
        answered(
            &mut run,
            &again.thread,
            again.task,
            Ok(json!(2)),
            3,
            &mut changes,
        );
        assert_eq!(
            run.outcome(),
            Some(&Outcome::Succeeded { output: json!(2) })
        );
        assert!(run.redrive(4).is_none(), "a success is not redriven");

        // A stop keeps the state it stopped in.
        let (mut run, mut changes) = Run::start(&m, json!({}), 0);
        run.settle(&exec(), 0, &mut Fixed, &mut changes);
        run.abort(failure("States.Aborted"), &mut changes);
        assert_eq!(run.threads[ROOT].state, "B");
        assert!(run.redrive(1).is_some());
    }

    #[test]
    fn a_loop_without_tasks_yields_after_its_budget() {
        let m = machine(json!({"StartAt": "Spin", "States": {
            "Spin": {"Type": "Pass", "Next": "Again"},
            "Again": {"Type": "Choice", "Choices": [{"Variable": "$.stop", "IsPresent": true, "Next": "Done"}], "Default": "Spin"},
            "Done": {"Type": "Succeed"}
        }}));
        let (mut run, mut changes) = Run::start(&m, json!({}), 0);
        run.settle(&exec(), 0, &mut Fixed, &mut changes);
        assert_eq!(changes.transitions, SETTLE_BUDGET);
        assert!(run.outcome().is_none());
        assert_eq!(run.next_wake(), Some(0), "still due: the caller decides");
    }

    #[test]
    fn waits_and_nested_branches_end_where_the_language_says() {
        let m = machine(json!({"StartAt": "Pause", "States": {
            "Pause": {"Type": "Wait", "Seconds": 3, "Next": "Fork"},
            "Fork": {"Type": "Parallel", "Next": "Done", "Branches": [
                {"StartAt": "Each", "States": {"Each": {"Type": "Map", "End": true,
                    "ItemProcessor": {"StartAt": "Double", "States": {"Double": {"Type": "Task", "Resource": "kumo:function:double", "End": true}}}}}},
                {"StartAt": "Name", "States": {"Name": {"Type": "Pass", "Result": "n", "End": true}}}
            ]},
            "Done": {"Type": "Pass", "End": true}
        }}));
        let mut answer = |_: &str, input: &Value| Ok(json!(input.as_u64().unwrap() * 2));
        let (outcome, calls) = drive(&m, json!([1, 2]), &mut answer);
        assert_eq!(
            outcome,
            Outcome::Succeeded {
                output: json!([[2, 4], "n"])
            }
        );
        assert_eq!(calls.len(), 2);
        let (mut run, mut changes) = Run::start(&m, json!([]), 0);
        run.settle(&exec(), 0, &mut Fixed, &mut changes);
        assert_eq!(run.next_wake(), Some(3_000));
    }
}
