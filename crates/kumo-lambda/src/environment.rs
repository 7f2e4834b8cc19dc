//! One execution environment: a sandboxed runtime process, its Runtime API and its output.
//! It runs one invocation at a time and is frozen between them.

use crate::output::Output;
use crate::runtime_api::{self, Answer, Exchange, Job};
use kumo_sandbox::{Exit, Sandbox, StartError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// After a refused (too large) response, how long the runtime gets to log the refusal and
/// ask for its next job before the invocation's output is taken.
const TRAILING_OUTPUT: Duration = Duration::from_secs(2);

/// How an environment could not start or could not finish an invocation.
#[derive(Debug)]
pub(crate) enum Ended {
    /// The runtime process exited (or was killed by the kernel).
    Exited(Exit),
    Timeout,
    /// The runtime reported `/init/error` (its body).
    InitError(bytes::Bytes),
    InitTimeout,
    Start(StartError),
}

pub(crate) struct Environment {
    sandbox: Sandbox,
    exchange: Arc<Exchange>,
    output: Arc<Output>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// When it was last used (for keep-alive).
    pub(crate) idle_since: Instant,
    /// How long its sandbox took to start (to the program's exec), of its init time.
    pub(crate) sandbox_start: Duration,
    /// Its share of the embedder's memory budget, held while it lives (none: not counted,
    /// as for a provisioned environment started ahead of any invocation).
    pub(crate) memory: Option<Box<dyn Send + Sync>>,
}

impl Drop for Environment {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Environment {
    /// Starts the sandbox and waits for the runtime's init (its first `/next`), at most
    /// `init_timeout`. The output of the init is kept for the first invocation.
    pub(crate) async fn start(
        runtime: &crate::LambdaRuntime,
        spec: &kumo_sandbox::Spec,
        limits: &kumo_sandbox::Limits,
        identity: &str,
        egress: Option<&crate::Egress>,
        init_timeout: Duration,
    ) -> Result<Self, (Ended, Vec<String>)> {
        let id = uuid::Uuid::now_v7().simple().to_string();
        let clock = Instant::now();
        let mut sandbox =
            Sandbox::start(&runtime.helper, spec, limits, runtime.cgroups.as_ref(), &id)
                .await
                .map_err(|e| (Ended::Start(e), Vec::new()))?;
        let sandbox_start = clock.elapsed();
        let exchange = Arc::new(Exchange::default());
        let output = Arc::new(Output::new(sandbox.output.take().expect("set by start")));
        // In the order the spec asked for them: the Runtime API's, kumo's API's (when the
        // server gives one), the egress proxy's (when the function has grants).
        let mut listeners = Vec::new();
        for listener in sandbox.take_listeners() {
            let listener = listener
                .set_nonblocking(true)
                .and_then(|()| tokio::net::TcpListener::from_std(listener))
                .map_err(|e| (Ended::Start(StartError::Sandbox(e.to_string())), Vec::new()))?;
            listeners.push(listener);
        }
        let mut listeners = listeners.into_iter();
        let api = listeners
            .next()
            .expect("the Runtime API's port was asked for");
        let mut tasks = vec![
            tokio::spawn(runtime_api::serve(api, exchange.clone())),
            tokio::spawn({
                let output = output.clone();
                async move { output.follow().await }
            }),
        ];
        if let Some(endpoint) = runtime.endpoint()
            && let Some(listener) = listeners.next()
        {
            tasks.push(endpoint.serve(listener, identity));
        }
        if let (Some(egress), Some(listener)) = (egress, listeners.next()) {
            tasks.push(tokio::spawn(crate::egress::serve(listener, egress.clone())));
        }
        let environment = Self {
            sandbox,
            exchange,
            output,
            tasks,
            idle_since: Instant::now(),
            sandbox_start,
            memory: None,
        };
        let init = tokio::select! {
            biased;
            // A notification sent before this wait began is kept for it.
            () = environment.exchange.init_done.notified() => match environment.exchange.init_error() {
                Some(body) => Err(Ended::InitError(body)),
                None => Ok(()),
            },
            // A runtime that reported its init error and then exited (as they do) may be seen
            // exiting first: its report still says why.
            exit = environment.sandbox.exited() => match environment.exchange.init_error() {
                Some(body) => Err(Ended::InitError(body)),
                None => Err(Ended::Exited(exit)),
            },
            () = tokio::time::sleep(init_timeout) => Err(Ended::InitTimeout),
        };
        match init {
            Ok(()) => Ok(environment),
            Err(ended) => {
                environment.sandbox.kill();
                let _ = tokio::time::timeout(Duration::from_secs(1), environment.sandbox.exited())
                    .await;
                Err((ended, environment.output.take()))
            }
        }
    }

    /// Runs one invocation, at most `timeout`. After a failure the environment must not be
    /// used again (it is killed when dropped).
    pub(crate) async fn invoke(&self, job: Job, timeout: Duration) -> Result<Answer, Ended> {
        let _ = self.sandbox.thaw();
        let answered = self.exchange.give(job);
        tokio::select! {
            // An answer given just before the runtime exited is still its answer.
            biased;
            answer = answered => match answer {
                Ok(Answer::TooLarge) => {
                    // The runtime learns of the refusal only now and may log it: its output
                    // until it asks for the next job (or a short while) is this invocation's.
                    let seen = self.exchange.next_calls();
                    let _ = tokio::time::timeout(
                        TRAILING_OUTPUT,
                        self.exchange.asked_more_than(seen),
                    )
                    .await;
                    Ok(Answer::TooLarge)
                }
                Ok(answer) => Ok(answer),
                Err(_) => Err(Ended::Exited(self.sandbox.exited().await)),
            },
            exit = self.sandbox.exited() => Err(Ended::Exited(exit)),
            () = tokio::time::sleep(timeout) => {
                self.sandbox.kill();
                Err(Ended::Timeout)
            }
        }
    }

    /// Stops it until the next invocation (nothing runs between invocations, as in Lambda).
    pub(crate) fn freeze(&self) {
        if let Err(e) = self.sandbox.freeze() {
            tracing::warn!("cannot freeze an idle environment: {e}");
        }
    }

    /// The output since the last call.
    pub(crate) fn take_output(&self) -> Vec<String> {
        self.output.take()
    }

    /// The most memory the environment has used, in MiB.
    pub(crate) fn max_memory_mb(&self) -> Option<u64> {
        self.sandbox.memory_peak().map(|b| b.div_ceil(1024 * 1024))
    }
}
