//! Running one invocation: a fresh store with its limits, the guest's stdio captured, the
//! request handed over the guest's interface, and the outcome classified.

use crate::Runtime;
use crate::capture::Capture;
use crate::compile::Loaded;
use crate::host::{ComponentHost, MemoryLimit, ModuleHost};
use crate::kv::KvAccess;
use crate::objects::ObjectAccess;
use crate::outbound::{Outbound, OutboundGrants};
use crate::warm::{HttpInstance, WarmPool};
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use kumo_core::{ErrorKind, LogStream};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::{I32Exit, WasiCtxBuilder};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// Guest output kept as logs per stream and invocation (Lambda keeps 256 KiB per event).
const LOG_CAP: usize = 1024 * 1024;

/// One invocation's input, already bounded by the caller (body size) and resolved (limits).
#[derive(Clone)]
pub struct Invocation {
    pub method: http::Method,
    /// Path and query the guest sees, e.g. `/items/3?x=1`.
    pub path_and_query: String,
    /// What the guest sees; a `traceparent` here is also `TRACEPARENT` for a command.
    pub headers: http::HeaderMap,
    pub body: Bytes,
    /// The invocation's own `traceparent`, carried into the function calls, object writes and
    /// events the guest causes (whether or not the guest is shown it).
    pub traceparent: Option<http::HeaderValue>,
    /// The function's environment variables, shared by its invocations.
    pub env: Arc<[(String, String)]>,
    /// Variables for this invocation only, after the function's, for commands (which have no
    /// headers: an event's id reaches them this way). A wasi:http guest never gets them: its
    /// instance may be reused, and its environment would keep the first invocation's values;
    /// it gets the same facts as request headers.
    pub invocation_env: Vec<(String, String)>,
    pub memory_bytes: usize,
    pub timeout: Duration,
    pub max_response_bytes: usize,
    /// Hosts the guest may send HTTP requests to.
    pub allow_outbound: Arc<[String]>,
    /// The function's namespace: the buckets the guest names (key-value and objects) and
    /// the functions it calls are that namespace's.
    pub namespace: Arc<str>,
    /// The key-value buckets the guest may open, and their store.
    pub kv: KvAccess,
    /// The object buckets the guest may use.
    pub objects: Arc<[String]>,
    /// Function calls between the outside request and this invocation (0: none).
    pub call_depth: u32,
}

#[derive(Debug)]
pub struct Response {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// Why an invocation failed: the API error kind, a message for the caller, and the full detail
/// (a trap's wasm backtrace, say) for the logs.
#[derive(Debug)]
pub struct Failure {
    pub kind: ErrorKind,
    pub message: String,
    pub detail: Option<String>,
}

impl Failure {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            detail: None,
        }
    }

    /// A trap or host error raised while the guest ran. A `proc_exit(0)` is no failure.
    fn from_guest_error(e: wasmtime::Error) -> Result<(), Self> {
        match e.downcast_ref::<I32Exit>() {
            Some(I32Exit(0)) => Ok(()),
            Some(I32Exit(code)) => Err(Self::new(
                ErrorKind::FunctionError,
                format!("the function exited with status {code}"),
            )),
            None if e.is::<wasmtime::PoolConcurrencyLimitError>() => Err(Self::new(
                ErrorKind::Throttled,
                "every instance slot of the server is in use",
            )),
            None => Err(Self {
                kind: ErrorKind::FunctionError,
                message: format!("the function failed: {}", e.root_cause()),
                detail: Some(format!("{e:?}")),
            }),
        }
    }
}

#[derive(Debug, Clone)]
pub struct LogLine {
    pub stream: LogStream,
    pub line: String,
}

pub struct Execution {
    pub result: Result<Response, Failure>,
    pub logs: Vec<LogLine>,
    /// A reused instance failed this request without answering, so the function's warm pool
    /// fell back to fresh instances; the request was run again in a fresh one.
    pub fell_back: bool,
    /// A reused instance (one that had served before) returned without a response.
    reused_without_response: bool,
}

/// The failure of a wasi:http guest that returned without sending a response.
const NO_RESPONSE: &str = "the function returned without sending a response";

impl Runtime {
    /// Runs one invocation: in a fresh instance, or, for a wasi-http function given a `warm`
    /// pool, in a warm instance from it (which goes back after a success). Never panics on
    /// guest behaviour: every trap, exit, limit and malformed response ends up in
    /// `Execution::result`.
    ///
    /// Some components can serve only one request per instance (componentize-js's
    /// StarlingMonkey returns without a response from the second on). Until an instance of the
    /// function has served a second request, the invocation is kept; if a reused instance then
    /// returns without a response, the pool falls back to fresh instances for good and the
    /// request runs again in a fresh one, so the caller never sees that failure.
    pub async fn execute(
        &self,
        loaded: &Loaded,
        warm: Option<&WarmPool>,
        inv: Invocation,
    ) -> Execution {
        let on_trial = warm.filter(|w| w.on_trial());
        let kept = on_trial.map(|_| inv.clone());
        let first = self.execute_once(loaded, warm, inv).await;
        let (Some(warm), Some(inv)) = (on_trial, kept) else {
            return first;
        };
        if !first.reused_without_response {
            return first;
        }
        warm.fall_back();
        let mut again = self.execute_once(loaded, None, inv).await;
        let mut logs = first.logs;
        logs.push(LogLine {
            stream: LogStream::Kumo,
            line: "a reused instance returned without a response; this function is served \
                   with fresh instances from now on, and the request ran again in one"
                .to_string(),
        });
        logs.append(&mut again.logs);
        again.logs = logs;
        again.fell_back = true;
        again
    }

    async fn execute_once(
        &self,
        loaded: &Loaded,
        warm: Option<&WarmPool>,
        inv: Invocation,
    ) -> Execution {
        let is_command = !matches!(loaded, Loaded::Http(_));
        let timeout = inv.timeout;
        let memory_mib = inv.memory_bytes / (1024 * 1024);

        // A wasi-http instance, warm or new, with the captures and memory flag it writes to.
        let http_instance = match loaded {
            Loaded::Http(_) => Some(
                warm.and_then(WarmPool::take)
                    .unwrap_or_else(|| self.new_http_instance(&inv)),
            ),
            _ => None,
        };
        let (stdout, stderr, memory_hit) = match &http_instance {
            Some(i) => (i.stdout.clone(), i.stderr.clone(), i.memory_hit.clone()),
            None => (
                // A command's stdout is its response body, so it is capped at the response
                // limit (+1 byte to tell "exactly at the limit" from "over it").
                Capture::new(inv.max_response_bytes + 1),
                Capture::new(LOG_CAP),
                Arc::default(),
            ),
        };
        memory_hit.store(false, Ordering::Relaxed);

        let reused_without_response = std::sync::atomic::AtomicBool::new(false);
        let run = async {
            match (loaded, http_instance) {
                (Loaded::Http(pre), Some(mut instance)) => {
                    // A warm instance keeps its store: this request's depth and trace go in, and
                    // its yield deadline starts from now. Left at the tick of its last yield,
                    // any tick since then made the request yield at its first check however
                    // short it was; the task then waited behind every other request, which took
                    // more instances meanwhile (15% of requests at c=64, ~45 instances in use).
                    instance.store.data_mut().hooks = self.outbound(&inv);
                    instance.store.set_epoch_deadline(1);
                    let reused = instance.served > 0;
                    let (result, instance) = run_http(pre.clone(), instance, inv).await;
                    if let Some(warm) = warm {
                        if reused && result.is_ok() {
                            warm.prove();
                        }
                        if let Some(instance) = instance {
                            warm.put(instance);
                        }
                    }
                    let no_response = matches!(&result, Err(f) if f.message == NO_RESPONSE);
                    reused_without_response.store(reused && no_response, Ordering::Relaxed);
                    result
                }
                (Loaded::Http(_), None) => unreachable!("an http function has an instance"),
                (Loaded::Command(pre), _) => {
                    let limits = MemoryLimit::with_flag(inv.memory_bytes, memory_hit.clone());
                    let wasi = command_wasi(&inv, &stdout, &stderr).build();
                    let host = ComponentHost::new(
                        wasi,
                        limits,
                        self.outbound(&inv),
                        inv.kv.clone(),
                        self.object_access(&inv),
                        inv.namespace.clone(),
                    );
                    let mut store = self.new_store(host, |h| &mut h.limits);
                    let run = async {
                        let command = pre.instantiate_async(&mut store).await?;
                        command.wasi_cli_run().call_run(&mut store).await
                    };
                    match run.await {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(())) => Err(Failure::new(
                            ErrorKind::FunctionError,
                            "the command returned an error status",
                        )),
                        Err(e) => Failure::from_guest_error(e),
                    }
                    .and_then(|()| command_response(&stdout, inv.max_response_bytes))
                }
                (Loaded::Module(pre), _) => {
                    let host = ModuleHost {
                        wasi: command_wasi(&inv, &stdout, &stderr).build_p1(),
                        limits: MemoryLimit::with_flag(inv.memory_bytes, memory_hit.clone()),
                    };
                    let mut store = self.new_store(host, |h| &mut h.limits);
                    let run = async {
                        let instance = pre.instantiate_async(&mut store).await?;
                        let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
                        start.call_async(&mut store, ()).await
                    };
                    match run.await {
                        Ok(()) => Ok(()),
                        Err(e) => Failure::from_guest_error(e),
                    }
                    .and_then(|()| command_response(&stdout, inv.max_response_bytes))
                }
            }
        };

        let mut result = match tokio::time::timeout(timeout, run).await {
            Ok(result) => result,
            Err(_) => Err(Failure::new(
                ErrorKind::Timeout,
                format!(
                    "the function ran past its timeout of {}",
                    kumo_core::format_duration(timeout)
                ),
            )),
        };
        if let Err(failure) = &mut result
            && failure.kind == ErrorKind::FunctionError
            && memory_hit.load(Ordering::Relaxed)
        {
            failure.kind = ErrorKind::OutOfMemory;
            failure.message = format!("the function exceeded its memory limit of {memory_mib} MiB");
        }

        let mut logs = Vec::new();
        if !is_command {
            push_lines(&mut logs, LogStream::Stdout, &stdout);
        }
        push_lines(&mut logs, LogStream::Stderr, &stderr);
        if let Err(failure) = &result {
            let line = failure
                .detail
                .clone()
                .unwrap_or_else(|| failure.message.clone());
            logs.push(LogLine {
                stream: LogStream::Kumo,
                line: format!("{}: {line}", failure.kind.code()),
            });
        }
        Execution {
            result,
            logs,
            fell_back: false,
            reused_without_response: reused_without_response.into_inner(),
        }
    }

    /// The per-request cost of a fresh instance without running the guest: a new store with its
    /// limits, instantiation, and dropping it all again. For benchmarks and diagnostics.
    pub async fn time_instantiation(
        &self,
        loaded: &Loaded,
        memory_bytes: usize,
    ) -> anyhow::Result<Duration> {
        let start = std::time::Instant::now();
        let component_host = || {
            ComponentHost::new(
                WasiCtxBuilder::new().build(),
                MemoryLimit::new(memory_bytes),
                Outbound::default(),
                KvAccess::default(),
                ObjectAccess::default(),
                Arc::from(kumo_core::DEFAULT_NAMESPACE),
            )
        };
        match loaded {
            Loaded::Http(pre) => {
                let mut store = self.new_store(component_host(), |h| &mut h.limits);
                pre.instantiate_async(&mut store).await?;
            }
            Loaded::Command(pre) => {
                let mut store = self.new_store(component_host(), |h| &mut h.limits);
                pre.instantiate_async(&mut store).await?;
            }
            Loaded::Module(pre) => {
                let host = ModuleHost {
                    wasi: WasiCtxBuilder::new().build_p1(),
                    limits: MemoryLimit::new(memory_bytes),
                };
                let mut store = self.new_store(host, |h| &mut h.limits);
                pre.instantiate_async(&mut store).await?;
            }
        }
        Ok(start.elapsed())
    }

    /// A new, not yet instantiated wasi-http instance: its store, limits and captured stdio.
    fn new_http_instance(&self, inv: &Invocation) -> HttpInstance {
        let (stdout, stderr) = (Capture::new(LOG_CAP), Capture::new(LOG_CAP));
        let limits = MemoryLimit::new(inv.memory_bytes);
        let memory_hit = limits.hit_flag();
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            // Instance-scoped values only: with `instances = "reuse"` this context serves
            // many invocations.
            .envs(&inv.env)
            .build();
        let host = ComponentHost::new(
            wasi,
            limits,
            self.outbound(inv),
            inv.kv.clone(),
            self.object_access(inv),
            inv.namespace.clone(),
        );
        let store = self.new_store(host, |h| &mut h.limits);
        HttpInstance::new(store, stdout, stderr, memory_hit)
    }

    /// The wasi:http hooks of one invocation.
    fn outbound(&self, inv: &Invocation) -> Outbound {
        Outbound {
            grants: OutboundGrants::new(inv.allow_outbound.clone()),
            breakers: self.breakers.clone(),
            calls: self.calls.clone(),
            depth: inv.call_depth,
            namespace: inv.namespace.clone(),
            traceparent: inv.traceparent.clone(),
        }
    }

    /// The object storage of one invocation: its grants and how much it may read at once.
    fn object_access(&self, inv: &Invocation) -> ObjectAccess {
        ObjectAccess {
            storage: self.object_storage.clone(),
            buckets: inv.objects.clone(),
            max_read_bytes: inv.memory_bytes as u64,
        }
    }

    fn new_store<T: Send + 'static>(
        &self,
        data: T,
        limiter: fn(&mut T) -> &mut MemoryLimit,
    ) -> Store<T> {
        let mut store = Store::new(&self.engine, data);
        store.limiter(move |data| limiter(data) as &mut dyn wasmtime::ResourceLimiter);
        // Yield to the executor at every epoch tick: keeps other tasks running beside a busy
        // guest and gives the timeout a point at which to drop it.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Yield(1)));
        store
    }
}

/// The WASI context of a command: the payload on stdin, stdout and stderr captured, and the
/// trace context, which a wasi-http guest gets as a header, as `TRACEPARENT`.
fn command_wasi(inv: &Invocation, stdout: &Capture, stderr: &Capture) -> WasiCtxBuilder {
    let mut wasi = WasiCtxBuilder::new();
    wasi.stdin(MemoryInputPipe::new(inv.body.clone()))
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .envs(&inv.env)
        .envs(&inv.invocation_env);
    if let Some(traceparent) = inv.headers.get("traceparent").and_then(|v| v.to_str().ok()) {
        wasi.env("TRACEPARENT", traceparent);
    }
    wasi
}

/// A command's response: its stdout as the body, unless it wrote more than the limit.
fn command_response(stdout: &Capture, max_bytes: usize) -> Result<Response, Failure> {
    let (body, _) = stdout.take();
    if body.len() > max_bytes {
        return Err(Failure::new(
            ErrorKind::PayloadTooLarge,
            format!("the function's output is larger than the limit of {max_bytes} bytes"),
        ));
    }
    Ok(Response {
        status: http::StatusCode::OK,
        headers: http::HeaderMap::new(),
        body: Bytes::from(body),
    })
}

/// Hands the request to a wasi:http handler and collects its whole response (bounded).
/// The guest's call is driven beside the wait for the response, as the response head can
/// arrive before it finishes writing the body; it is dropped with this future (timeout). The
/// instance is handed back only when everything succeeded, so a failed one is never reused.
async fn run_http(
    pre: ProxyPre<ComponentHost>,
    mut instance: HttpInstance,
    inv: Invocation,
) -> (Result<Response, Failure>, Option<HttpInstance>) {
    let internal = |e: wasmtime::Error| Failure::new(ErrorKind::Internal, format!("{e:#}"));
    let authority = inv
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<http::uri::Authority>().ok())
        .unwrap_or_else(|| http::uri::Authority::from_static("localhost"));
    // From its parts: the authority is parsed once and the path is not copied.
    let body = Full::new(inv.body).map_err(|never| -> wasmtime_wasi_http::Error { match never {} });
    let request = http::Uri::builder()
        .scheme(http::uri::Scheme::HTTP)
        .authority(authority)
        .path_and_query(inv.path_and_query)
        .build()
        .and_then(|uri| {
            http::Request::builder()
                .method(inv.method)
                .uri(uri)
                .body(body)
        });
    let mut request = match request {
        Ok(request) => request,
        Err(e) => {
            let failure = Failure::new(ErrorKind::InvalidRequest, format!("bad request: {e}"));
            return (Err(failure), Some(instance));
        }
    };
    *request.headers_mut() = inv.headers;

    let (sender, mut receiver) = tokio::sync::oneshot::channel();
    let http = instance.store.data_mut();
    let resources = http
        .http()
        .new_incoming_request(Scheme::Http, request)
        .and_then(|request| Ok((request, http.http().new_response_outparam(sender)?)));
    let (request, outparam) = match resources {
        Ok(resources) => resources,
        Err(e) => return (Err(internal(e)), None),
    };
    let call = std::pin::pin!(async move {
        let proxy = match instance.proxy.take() {
            Some(proxy) => proxy,
            None => pre.instantiate_async(&mut instance.store).await?,
        };
        proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut instance.store, request, outparam)
            .await?;
        instance.proxy = Some(proxy);
        instance.served += 1;
        Ok(instance)
    });
    let mut guest = Guest::new(call);

    // The guest runs in this task, beside the wait for its response and the collection of the
    // body it streams. It may end before its response arrives (it never sent one, or it kept
    // the response handle alive); then its result is all there is.
    // The guest first: the response it sends while running is then taken in this same poll,
    // where receiver-first would find it empty, yield, and queue the task behind every other
    // request (each holding its instance meanwhile).
    let sent = tokio::select! {
        biased;
        ended = guest.call.as_mut() => {
            guest.ended = Some(ended);
            receiver.try_recv().ok()
        }
        sent = &mut receiver => sent.ok(),
    };
    let response = match sent {
        Some(Ok(response)) => response,
        Some(Err(code)) => {
            let failure = Failure::new(
                ErrorKind::FunctionError,
                format!("the function answered with an error: {code:?}"),
            );
            return (Err(failure), None);
        }
        None => {
            let result = guest
                .finish()
                .await
                .and_then(|_| Err(Failure::new(ErrorKind::FunctionError, NO_RESPONSE)));
            return (result, None);
        }
    };
    let (parts, body) = response.into_parts();
    let collected = guest
        .drive_until(collect_limited(body, inv.max_response_bytes))
        .await;
    let body = match collected {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            let failure = Failure::new(
                ErrorKind::PayloadTooLarge,
                format!(
                    "the function's response body is larger than the limit of {} bytes",
                    inv.max_response_bytes
                ),
            );
            return (Err(failure), None);
        }
        Err(BodyError::Stream(e)) => {
            let result = guest.finish().await.and_then(|_| {
                Err(Failure::new(
                    ErrorKind::FunctionError,
                    format!("the function's response body failed: {e}"),
                ))
            });
            return (result, None);
        }
    };
    match guest.finish().await {
        Ok(instance) => (
            Ok(Response {
                status: parts.status,
                headers: parts.headers,
                body,
            }),
            instance,
        ),
        Err(failure) => (Err(failure), None),
    }
}

/// The guest's call, driven by the invocation's own task (no task per request, and no box:
/// it lives in the request's future); dropping it (a timeout) drops the call and the
/// instance with it.
struct Guest<'a, F: Future<Output = wasmtime::Result<HttpInstance>>> {
    call: Pin<&'a mut F>,
    ended: Option<wasmtime::Result<HttpInstance>>,
}

impl<'a, F: Future<Output = wasmtime::Result<HttpInstance>>> Guest<'a, F> {
    fn new(call: Pin<&'a mut F>) -> Self {
        Self { call, ended: None }
    }

    /// Waits for `other` while the guest keeps running (until it ends). For what the guest
    /// feeds (its body), so `other` completes once the guest has.
    async fn drive_until<T>(&mut self, other: impl Future<Output = T>) -> T {
        let mut other = std::pin::pin!(other);
        loop {
            tokio::select! {
                biased;
                out = &mut other => return out,
                ended = self.call.as_mut(), if self.ended.is_none() => self.ended = Some(ended),
            }
        }
    }

    /// The guest's outcome once it ends: the instance, unless the guest exited (status 0) and
    /// so cannot serve again.
    async fn finish(mut self) -> Result<Option<HttpInstance>, Failure> {
        let ended = match self.ended.take() {
            Some(ended) => ended,
            None => self.call.as_mut().await,
        };
        match ended {
            Ok(instance) => Ok(Some(instance)),
            Err(e) => Failure::from_guest_error(e).map(|()| None),
        }
    }
}

enum BodyError {
    TooLarge,
    Stream(wasmtime_wasi_http::Error),
}

async fn collect_limited(mut body: HyperOutgoingBody, max: usize) -> Result<Bytes, BodyError> {
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(BodyError::Stream)?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > max {
                return Err(BodyError::TooLarge);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

fn push_lines(logs: &mut Vec<LogLine>, stream: LogStream, capture: &Capture) {
    let (bytes, overflowed) = capture.take();
    let text = String::from_utf8_lossy(&bytes);
    let (kept, dropped) = lines_within_cap(&text);
    logs.extend(kept.iter().map(|line| LogLine {
        stream,
        line: line.to_string(),
    }));
    if dropped > 0 {
        logs.push(LogLine {
            stream: LogStream::Kumo,
            line: format!(
                "{dropped} more {} lines were dropped: a stream keeps {} KiB per invocation, \
                 counting {LINE_OVERHEAD} bytes for each line",
                stream.as_str(),
                LOG_CAP / 1024
            ),
        });
    } else if overflowed {
        logs.push(LogLine {
            stream: LogStream::Kumo,
            line: format!(
                "{} output past {} KiB was dropped",
                stream.as_str(),
                LOG_CAP / 1024
            ),
        });
    }
}

/// What a stored line costs beyond its text (its time, stream and framing in a log chunk,
/// rounded up): charged against the cap, so a flood of tiny lines stores no more than one
/// stream's cap, not a row's worth of overhead per byte.
const LINE_OVERHEAD: usize = 32;

/// The lines of `text` that fit in [`LOG_CAP`] with their overhead, and how many did not.
fn lines_within_cap(text: &str) -> (Vec<&str>, usize) {
    let mut budget = LOG_CAP;
    let mut kept = Vec::new();
    let mut dropped = 0;
    for line in text.lines() {
        let cost = line.len() + LINE_OVERHEAD;
        if dropped == 0 && cost <= budget {
            budget -= cost;
            kept.push(line);
        } else {
            dropped += 1;
        }
    }
    (kept, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_count_their_overhead_against_the_cap() {
        let (kept, dropped) = lines_within_cap("a\nb\n");
        assert_eq!((kept, dropped), (vec!["a", "b"], 0));
        let flood = "x\n".repeat(100_000);
        let (kept, dropped) = lines_within_cap(&flood);
        assert_eq!(kept.len(), LOG_CAP / (1 + LINE_OVERHEAD));
        assert_eq!(kept.len() + dropped, 100_000);
        // One long line that fits is kept whole.
        let long = "y".repeat(LOG_CAP - LINE_OVERHEAD);
        assert_eq!(lines_within_cap(&long), (vec![long.as_str()], 0));
    }
}
