//! A function's execution environments: warm ones are reused one invocation at a time, more
//! are started when all are busy (admission caps how many invocations run at once), a failed
//! one is dropped (killed), idle ones are reaped after the keep-alive. Each invocation's logs
//! carry Lambda's `START`, `END` and `REPORT` lines.

use crate::LambdaRuntime;
use crate::environment::{Ended, Environment};
use crate::runtime_api::{Answer, Job};
use bytes::Bytes;
use kumo_core::{ErrorKind, LambdaRuntimeName};
use kumo_runtime::Failure;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Lambda's limit on a function's init.
const INIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Processes and threads an environment may hold (Lambda's limit).
const MAX_PIDS: u32 = 1024;
/// Memory at which an environment gets one full CPU's weight (Lambda's 1,769 MB per vCPU).
const MB_PER_CPU: u64 = 1769;
/// The port of the Runtime API inside each environment.
const RUNTIME_API_PORT: u16 = 9001;
/// Where the environment reaches kumo's own API (`AWS_ENDPOINT_URL`).
const ENDPOINT_PORT: u16 = 9009;
/// The user and group functions run as (Lambda's `sbx_user1051`).
const SANDBOX_UID: u32 = 993;
const SANDBOX_GID: u32 = 990;
/// Where kumo's runtime files for python3 (awslambdaric) appear inside an environment.
const PYTHON_RUNTIME_DIR: &str = "/var/runtime";

/// Lambda's defaults for variables a function may set itself.
const OVERRIDABLE_ENV: [(&str, &str); 4] = [
    ("PATH", "/usr/local/bin:/usr/bin:/bin:/opt/bin"),
    ("LANG", "en_US.UTF-8"),
    ("TZ", ":UTC"),
    (
        "LD_LIBRARY_PATH",
        "/var/task/lib:/var/task:/opt/lib:/lib64:/usr/lib64",
    ),
];

/// What a function's environments are made from.
#[derive(Debug, Clone)]
pub struct Function {
    /// As the function knows itself (`AWS_LAMBDA_FUNCTION_NAME`).
    pub name: String,
    /// As kumo knows it (its store key): who its requests to kumo's API come from.
    pub identity: String,
    /// `$LATEST` or a version number.
    pub version: String,
    pub memory_mb: u32,
    pub runtime: LambdaRuntimeName,
    pub handler: Option<String>,
    /// The unpacked package.
    pub package: PathBuf,
    /// The function's variables (config and secrets), after Lambda's own.
    pub env: Vec<(String, String)>,
    pub region: String,
    /// Bytes `/tmp` may hold.
    pub tmp_bytes: u64,
    /// Where it may connect (`allow_outbound`), through the egress proxy; none: nowhere.
    pub egress: Option<crate::Egress>,
}

/// One invocation's input.
pub struct Invocation {
    pub request_id: String,
    pub payload: Bytes,
    pub timeout: Duration,
    pub trace_id: Option<String>,
    pub client_context: Option<String>,
    /// The invocation's share of the embedder's memory budget: the environment keeps it
    /// while it waits idle afterwards, and gives it back when it is stopped.
    pub memory: Option<Box<dyn Send + Sync>>,
}

/// An idle environment checked out for one invocation.
pub struct Warm(Environment);

/// How an invocation went.
pub struct Outcome {
    /// The function's answer, or why there is none. A function error keeps the runtime's
    /// error document in `Failure::detail`.
    pub result: Result<Bytes, Failure>,
    /// Output lines, between Lambda's `START` and `REPORT` lines.
    pub logs: Vec<String>,
    /// Set when this invocation started an environment (a cold start): its init time.
    pub init: Option<Duration>,
    /// Of `init`, the time the sandbox took to start (the rest is the runtime's own init).
    pub sandbox_start: Option<Duration>,
}

pub struct Pool {
    runtime: Arc<LambdaRuntime>,
    function: Function,
    idle: Mutex<Vec<Environment>>,
}

impl Pool {
    pub fn new(runtime: Arc<LambdaRuntime>, function: Function) -> Self {
        Self {
            runtime,
            function,
            idle: Mutex::default(),
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Environment>> {
        // A Vec pushed and popped whole: consistent, so a poisoned lock is still usable.
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Warm environments waiting for an invocation.
    pub fn idle_count(&self) -> usize {
        self.idle().len()
    }

    /// Drops (kills) environments idle for longer than `keep_alive`; returns how many.
    pub fn reap(&self, keep_alive: Duration) -> usize {
        let mut idle = self.idle();
        let before = idle.len();
        idle.retain(|e| e.idle_since.elapsed() < keep_alive);
        before - idle.len()
    }

    /// Starts an environment now and keeps it warm (provisioned concurrency).
    pub async fn prewarm(&self) -> Result<(), String> {
        let environment = Environment::start(
            &self.runtime,
            &self.spec(),
            &self.limits(),
            &self.function.identity,
            self.function.egress.as_ref(),
            INIT_TIMEOUT,
        )
        .await
        .map_err(|(ended, _)| self.failure(ended).message)?;
        environment.freeze();
        self.idle().push(environment);
        Ok(())
    }

    /// Takes an idle environment for the next invocation, if there is one. It keeps its
    /// share of the memory budget, so that invocation needs none of its own. Given back
    /// with [`Self::check_in`] when the invocation does not happen after all.
    pub fn check_out(&self) -> Option<Warm> {
        self.idle().pop().map(Warm)
    }

    /// Puts an environment taken by [`Self::check_out`] back, unused.
    pub fn check_in(&self, warm: Warm) {
        self.idle().push(warm.0);
    }

    /// Runs `invocation` in `warm` (from [`Self::check_out`]), else in a new environment
    /// that keeps `invocation.memory` for as long as it lives.
    pub async fn invoke(&self, invocation: Invocation, warm: Option<Warm>) -> Outcome {
        let mut logs = Vec::new();
        let (mut environment, init) = match warm {
            Some(Warm(environment)) => (environment, None),
            None => {
                let clock = Instant::now();
                match Environment::start(
                    &self.runtime,
                    &self.spec(),
                    &self.limits(),
                    &self.function.identity,
                    self.function.egress.as_ref(),
                    INIT_TIMEOUT,
                )
                .await
                {
                    Ok(environment) => {
                        logs.extend(environment.take_output());
                        (environment, Some(clock.elapsed()))
                    }
                    Err((ended, output)) => {
                        logs.extend(output);
                        let failure = self.failure(ended);
                        logs.push(format!("INIT_REPORT Init Duration: {:.2} ms\tPhase: init\tStatus: error\tError Type: {}", ms(clock.elapsed()), failure.message));
                        return Outcome {
                            result: Err(failure),
                            logs,
                            init: Some(clock.elapsed()),
                            sandbox_start: None,
                        };
                    }
                }
            }
        };
        if invocation.memory.is_some() {
            environment.memory = invocation.memory;
        }
        let id = invocation.request_id.clone();
        logs.push(format!(
            "START RequestId: {id} Version: {}",
            self.function.version
        ));
        let job = Job {
            request_id: id.clone(),
            payload: invocation.payload,
            deadline_ms: kumo_core::now_ms() + invocation.timeout.as_millis() as i64,
            function_arn: self.arn(),
            trace_id: invocation.trace_id,
            client_context: invocation.client_context,
        };
        let clock = Instant::now();
        let answer = environment.invoke(job, invocation.timeout).await;
        let duration = clock.elapsed();
        // Only an environment that answered is used again (a function error is an answer).
        let answered = matches!(answer, Ok(Answer::Response(_) | Answer::Error { .. }));
        logs.extend(environment.take_output());
        let result = match answer {
            Ok(Answer::Response(body)) => Ok(body),
            Ok(Answer::Error { error_type, body }) => Err(function_error(error_type, body)),
            Ok(Answer::TooLarge) => Err(Failure {
                kind: ErrorKind::FunctionError,
                message: format!(
                    "the function's response is more than {} bytes (Lambda's limit)",
                    crate::runtime_api::MAX_RESPONSE_BYTES
                ),
                detail: None,
            }),
            Err(ended) => Err(self.failure(ended)),
        };
        logs.push(format!("END RequestId: {id}"));
        let mut report = format!(
            "REPORT RequestId: {id}\tDuration: {:.2} ms\tBilled Duration: {} ms\tMemory Size: {} MB",
            ms(duration),
            kumo_core::billed_ms(duration),
            self.function.memory_mb
        );
        if let Some(used) = environment.max_memory_mb() {
            report.push_str(&format!("\tMax Memory Used: {used} MB"));
        }
        if let Some(init) = init {
            report.push_str(&format!("\tInit Duration: {:.2} ms", ms(init)));
        }
        if let Err(failure) = &result
            && failure.kind != ErrorKind::FunctionError
        {
            report.push_str(&format!("\tStatus: {}", failure.kind.code()));
        }
        logs.push(report);
        let sandbox_start = init.map(|_| environment.sandbox_start);
        if answered {
            environment.freeze();
            environment.idle_since = Instant::now();
            self.idle().push(environment);
        }
        Outcome {
            result,
            logs,
            init,
            sandbox_start,
        }
    }

    fn arn(&self) -> String {
        let qualifier = match self.function.version.as_str() {
            "$LATEST" => String::new(),
            version => format!(":{version}"),
        };
        format!(
            "arn:aws:lambda:{}:000000000000:function:{}{qualifier}",
            self.function.region, self.function.name
        )
    }

    fn limits(&self) -> kumo_sandbox::Limits {
        let memory_mb = u64::from(self.function.memory_mb);
        kumo_sandbox::Limits {
            memory_bytes: memory_mb * 1024 * 1024,
            pids: MAX_PIDS,
            cpu_weight: (memory_mb * 100 / MB_PER_CPU).clamp(1, 10_000) as u32,
        }
    }

    fn spec(&self) -> kumo_sandbox::Spec {
        let function = &self.function;
        let handler = function.handler.clone().unwrap_or_default();
        // Lambda's reserved variables, which the function's own cannot override.
        let mut env: Vec<(String, String)> = [
            ("LAMBDA_TASK_ROOT", "/var/task"),
            ("LAMBDA_RUNTIME_DIR", PYTHON_RUNTIME_DIR),
            ("AWS_EXECUTION_ENV", "AWS_Lambda_kumo"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let today = chrono::DateTime::from_timestamp_millis(kumo_core::now_ms())
            .map(|t| t.format("%Y/%m/%d").to_string())
            .unwrap_or_default();
        env.extend([
            (
                "AWS_LAMBDA_RUNTIME_API".into(),
                format!("127.0.0.1:{RUNTIME_API_PORT}"),
            ),
            ("AWS_LAMBDA_FUNCTION_NAME".into(), function.name.clone()),
            (
                "AWS_LAMBDA_FUNCTION_VERSION".into(),
                function.version.clone(),
            ),
            (
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE".into(),
                function.memory_mb.to_string(),
            ),
            (
                "AWS_LAMBDA_LOG_GROUP_NAME".into(),
                format!("/aws/lambda/{}", function.name),
            ),
            (
                "AWS_LAMBDA_LOG_STREAM_NAME".into(),
                format!(
                    "{today}/[{}]{}",
                    function.version,
                    uuid::Uuid::now_v7().simple()
                ),
            ),
            ("AWS_REGION".into(), function.region.clone()),
            ("AWS_DEFAULT_REGION".into(), function.region.clone()),
            ("_HANDLER".into(), handler.clone()),
        ]);
        if self.runtime.endpoint().is_some() {
            // kumo's API, reached as this function (the connection says who it is): SDKs
            // need some credentials to sign with, and these are only that.
            let url = format!("http://127.0.0.1:{ENDPOINT_PORT}");
            let api = match kumo_core::split_key(&function.identity) {
                (kumo_core::DEFAULT_NAMESPACE, _) => format!("{url}/api/v1"),
                (namespace, _) => format!("{url}/api/v1/namespaces/{namespace}"),
            };
            env.extend([
                ("AWS_ENDPOINT_URL".to_string(), url.clone()),
                ("KUMO_URL".to_string(), url),
                ("KUMO_API_URL".to_string(), api),
                ("AWS_ACCESS_KEY_ID".to_string(), "KUMOFUNCTION".to_string()),
                (
                    "AWS_SECRET_ACCESS_KEY".to_string(),
                    "the-connection-is-the-credential".to_string(),
                ),
            ]);
        }
        if function.egress.is_some() {
            // The one way out; the runtime's own API stays direct.
            let proxy = format!("http://127.0.0.1:{}", crate::egress::EGRESS_PORT);
            for name in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
                env.push((name.into(), proxy.clone()));
            }
            for name in ["NO_PROXY", "no_proxy"] {
                env.push((name.into(), "localhost,127.0.0.1".into()));
            }
        }
        let mut binds = Vec::new();
        let (program, args) = match function.runtime {
            LambdaRuntimeName::Provided => ("/var/task/bootstrap".into(), Vec::new()),
            LambdaRuntimeName::Python3 => {
                binds.push((self.runtime.python_dir(), PathBuf::from(PYTHON_RUNTIME_DIR)));
                env.push((
                    "PYTHONPATH".into(),
                    format!("/var/task:{PYTHON_RUNTIME_DIR}"),
                ));
                env.push(("PYTHONUNBUFFERED".into(), "1".into()));
                (
                    PathBuf::from("/usr/bin/python3"),
                    vec!["-m".to_string(), "awslambdaric".to_string(), handler],
                )
            }
        };
        let given = |name: &str| function.env.iter().any(|(k, _)| k == name);
        let reserved = env.clone();
        env.extend(
            function
                .env
                .iter()
                .filter(|(k, _)| !reserved.iter().any(|(r, _)| r == k))
                .cloned(),
        );
        // Defaults the function may set itself.
        env.extend(
            OVERRIDABLE_ENV
                .iter()
                .filter(|(k, _)| !given(k))
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        kumo_sandbox::Spec {
            program,
            args,
            env,
            code_dir: function.package.clone(),
            runtime_root: kumo_sandbox::Spec::host_runtime_root(),
            binds,
            scratch: self.runtime.scratch.clone(),
            tmp_bytes: function.tmp_bytes,
            uid: SANDBOX_UID,
            gid: SANDBOX_GID,
            // In the order Environment::start takes them.
            listen: [
                Some(RUNTIME_API_PORT),
                self.runtime.endpoint().map(|_| ENDPOINT_PORT),
                function.egress.as_ref().map(|_| crate::egress::EGRESS_PORT),
            ]
            .into_iter()
            .flatten()
            .collect(),
            hostname: "kumo".into(),
            user_namespace: self.runtime.isolation().user_namespace(),
        }
    }

    fn failure(&self, ended: Ended) -> Failure {
        let (kind, message) = match ended {
            Ended::Exited(exit) if exit.oom_killed => (
                ErrorKind::OutOfMemory,
                format!(
                    "Runtime.OutOfMemory: the function used more than its {} MB",
                    self.function.memory_mb
                ),
            ),
            Ended::Exited(exit) => (
                ErrorKind::FunctionError,
                match (exit.code, exit.signal) {
                    (Some(code), _) => {
                        format!("Runtime.ExitError: the runtime exited with status {code}")
                    }
                    (_, Some(signal)) => {
                        format!("Runtime.ExitError: the runtime was killed by signal {signal}")
                    }
                    _ => "Runtime.ExitError: the runtime ended".to_string(),
                },
            ),
            Ended::Timeout => (ErrorKind::Timeout, "the function timed out".to_string()),
            Ended::InitTimeout => (
                ErrorKind::Timeout,
                format!(
                    "Runtime.InitTimeout: init did not finish within {} s",
                    INIT_TIMEOUT.as_secs()
                ),
            ),
            Ended::InitError(body) => (
                ErrorKind::FunctionError,
                format!("Runtime.InitError: {}", describe_error(&body)),
            ),
            Ended::Start(kumo_sandbox::StartError::Program(e)) => (
                ErrorKind::FunctionError,
                format!("Runtime.InvalidEntrypoint: {e}"),
            ),
            Ended::Start(kumo_sandbox::StartError::Sandbox(e)) => {
                tracing::error!(function = %self.function.name, "cannot start an execution environment: {e}");
                (
                    ErrorKind::Internal,
                    "the function's execution environment could not be started".to_string(),
                )
            }
        };
        Failure {
            kind,
            message,
            detail: None,
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `errorType: errorMessage` from a runtime's error document (or its text).
fn describe_error(body: &[u8]) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let field = |name: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(name))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    match (field("errorType"), field("errorMessage")) {
        (Some(t), Some(m)) => format!("{t}: {m}"),
        (None, Some(m)) => m,
        (Some(t), None) => t,
        (None, None) => String::from_utf8_lossy(body).chars().take(1024).collect(),
    }
}

/// A function error: the runtime answered `/error`. Its document is kept as the detail.
fn function_error(error_type: Option<String>, body: Bytes) -> Failure {
    let mut message = describe_error(&body);
    if message.is_empty() {
        message = error_type.unwrap_or_else(|| "the function failed".into());
    }
    let document = if serde_json::from_slice::<serde_json::Value>(&body).is_ok() {
        String::from_utf8_lossy(&body).into_owned()
    } else {
        serde_json::json!({"errorMessage": message, "errorType": "Unhandled"}).to_string()
    };
    Failure {
        kind: ErrorKind::FunctionError,
        message,
        detail: Some(document),
    }
}
