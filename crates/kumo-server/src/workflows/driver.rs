//! One execution's driver: signals and answers in, `Run::settle`, one save per transition,
//! then the tasks through the Invoker.

use super::*;

/// Drives one execution until it ends, waits for nothing but time or signals (then gives it
/// back), or loses its lease. `first`: its threads and first tasks as a start or redrive here
/// stored them; None: read from the store (a claim).
pub(super) async fn drive(
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
        writer::write(self.state, None, &self.record.id, &self.owner, save).await
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
