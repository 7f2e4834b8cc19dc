//! The Lambda Runtime API (2018-06-01) of one execution environment: what the runtime in the
//! environment calls to take its next invocation and answer it. The state lives in
//! [`Exchange`]; the HTTP server only translates.

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, oneshot};

/// Lambda's limit on a synchronous response.
pub const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024;
const PREFIX: &str = "/2018-06-01/runtime/";

/// One invocation handed to the runtime.
#[derive(Debug, Clone)]
pub struct Job {
    pub request_id: String,
    pub payload: Bytes,
    /// Epoch milliseconds.
    pub deadline_ms: i64,
    pub function_arn: String,
    /// `Root=1-...;Parent=...;Sampled=1`, from the invocation's traceparent.
    pub trace_id: Option<String>,
    pub client_context: Option<String>,
}

/// How the runtime answered an invocation.
#[derive(Debug, PartialEq)]
pub enum Answer {
    Response(Bytes),
    /// `/error`: the error type (header, else the body's `errorType`) and the body.
    Error {
        error_type: Option<String>,
        body: Bytes,
    },
    /// A response over [`MAX_RESPONSE_BYTES`].
    TooLarge,
}

/// A refusal of the Runtime API, with the status and `errorType` AWS's emulator gives.
#[derive(Debug, PartialEq)]
pub struct Refusal {
    pub status: u16,
    pub error_type: &'static str,
    pub message: String,
}

fn invalid_transition(message: impl Into<String>) -> Refusal {
    Refusal {
        status: 403,
        error_type: "InvalidStateTransition",
        message: message.into(),
    }
}

/// The hand-over between kumo (which gives jobs and waits for answers) and the runtime
/// (which asks for the next job and answers it). No I/O.
#[derive(Default)]
pub struct Exchange {
    state: Mutex<State>,
    /// Notified once the runtime first asks for a job (its init is done) or reports an init
    /// error.
    pub init_done: Notify,
    /// How many times the runtime has asked for a job, and a wake-up at each.
    next_calls: std::sync::atomic::AtomicU64,
    asked: Notify,
}

#[derive(Default)]
struct State {
    initialized: bool,
    init_error: Option<Bytes>,
    /// A `/next` waiting for a job.
    waiting: Option<oneshot::Sender<Job>>,
    /// A job waiting for a `/next`.
    queued: Option<(Job, oneshot::Sender<Answer>)>,
    /// The job the runtime has, and where its answer goes.
    running: Option<(String, oneshot::Sender<Answer>)>,
    /// Request ids already answered (the last few), told apart from unknown ones.
    answered: Vec<String>,
}

impl Exchange {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Each method leaves the state consistent, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the runtime has finished its init (asked for its first job).
    pub fn initialized(&self) -> bool {
        self.state().initialized
    }

    /// The body of the runtime's `/init/error`, if it sent one.
    pub fn init_error(&self) -> Option<Bytes> {
        self.state().init_error.clone()
    }

    /// How many times the runtime has asked for a job so far.
    pub fn next_calls(&self) -> u64 {
        self.next_calls.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits until the runtime has asked for a job more than `seen` times.
    pub async fn asked_more_than(&self, seen: u64) {
        loop {
            let asked = self.asked.notified();
            if self.next_calls() > seen {
                return;
            }
            asked.await;
        }
    }

    /// kumo gives a job; the answer comes on the returned channel. One job at a time.
    pub fn give(&self, job: Job) -> oneshot::Receiver<Answer> {
        let (answer, answered) = oneshot::channel();
        let mut state = self.state();
        match state.waiting.take() {
            Some(next) => {
                state.running = Some((job.request_id.clone(), answer));
                if let Err(job) = next.send(job) {
                    // That `/next` went away: the job waits for the following one.
                    let (_, answer) = state.running.take().expect("set just above");
                    state.queued = Some((job, answer));
                }
            }
            None => state.queued = Some((job, answer)),
        }
        answered
    }

    /// The runtime asks for its next job (`GET /invocation/next`).
    pub fn next(&self) -> Result<oneshot::Receiver<Job>, Refusal> {
        let mut state = self.state();
        if let Some((id, _)) = &state.running {
            return Err(invalid_transition(format!(
                "invocation {id} has not been answered yet"
            )));
        }
        if state.waiting.as_ref().is_some_and(|w| !w.is_closed()) {
            return Err(invalid_transition("another /next is already waiting"));
        }
        if !state.initialized {
            state.initialized = true;
            self.init_done.notify_one();
        }
        self.next_calls
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.asked.notify_waiters();
        let (give, take) = oneshot::channel();
        match state.queued.take() {
            Some((job, answer)) => {
                state.running = Some((job.request_id.clone(), answer));
                let _ = give.send(job);
            }
            None => state.waiting = Some(give),
        }
        Ok(take)
    }

    /// The runtime answers invocation `id` (`/response` or `/error`).
    pub fn answer(&self, id: &str, answer: Answer) -> Result<(), Refusal> {
        let mut state = self.state();
        match state.running.take() {
            Some((running, sender)) if running == id => {
                let _ = sender.send(answer);
                state.answered.push(running);
                if state.answered.len() > 16 {
                    state.answered.remove(0);
                }
                Ok(())
            }
            other => {
                state.running = other;
                if state.answered.iter().any(|a| a == id) {
                    Err(invalid_transition(format!(
                        "invocation {id} was already answered"
                    )))
                } else {
                    Err(Refusal {
                        status: 400,
                        error_type: "InvalidRequestID",
                        message: format!("no invocation has request id {id}"),
                    })
                }
            }
        }
    }

    /// The runtime reports that its init failed (`/init/error`).
    pub fn init_failed(&self, body: Bytes) -> Result<(), Refusal> {
        let mut state = self.state();
        if state.initialized || state.init_error.is_some() {
            return Err(invalid_transition("init is already over"));
        }
        state.init_error = Some(body);
        self.init_done.notify_one();
        Ok(())
    }
}

type Response = http::Response<Full<Bytes>>;

fn json_response(status: u16, body: serde_json::Value) -> Response {
    let mut response = http::Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn refused(refusal: Refusal) -> Response {
    json_response(
        refusal.status,
        serde_json::json!({"errorMessage": refusal.message, "errorType": refusal.error_type}),
    )
}

fn accepted() -> Response {
    json_response(202, serde_json::json!({"status": "OK"}))
}

/// Serves the Runtime API on `listener` (inside the environment's network namespace) until
/// the task is aborted.
pub async fn serve(listener: tokio::net::TcpListener, exchange: Arc<Exchange>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let exchange = exchange.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let exchange = exchange.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(&exchange, request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(exchange: &Exchange, request: http::Request<Incoming>) -> Response {
    let path = request.uri().path().to_string();
    let Some(rest) = path.strip_prefix(PREFIX) else {
        return refused(not_found(&path));
    };
    let method = request.method().clone();
    match (method, rest.split('/').collect::<Vec<_>>().as_slice()) {
        (http::Method::GET, ["invocation", "next"]) => match exchange.next() {
            Ok(job) => match job.await {
                Ok(job) => next_response(job),
                // The environment is going away.
                Err(_) => refused(invalid_transition("the environment is shutting down")),
            },
            Err(refusal) => refused(refusal),
        },
        (http::Method::POST, ["invocation", id, kind @ ("response" | "error")]) => {
            let id = id.to_string();
            let error = *kind == "error";
            let error_type = request
                .headers()
                .get("lambda-runtime-function-error-type")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = Limited::new(request.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await;
            match body {
                Ok(body) => {
                    let body = body.to_bytes();
                    let answer = if error {
                        Answer::Error { error_type, body }
                    } else {
                        Answer::Response(body)
                    };
                    exchange
                        .answer(&id, answer)
                        .map_or_else(refused, |()| accepted())
                }
                Err(_) => {
                    let _ = exchange.answer(&id, Answer::TooLarge);
                    refused(Refusal {
                        status: 413,
                        error_type: "RequestEntityTooLarge",
                        message: format!(
                            "the response is more than {MAX_RESPONSE_BYTES} bytes (Lambda's limit)"
                        ),
                    })
                }
            }
        }
        (http::Method::POST, ["init", "error"]) => {
            let body = Limited::new(request.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            exchange
                .init_failed(body)
                .map_or_else(refused, |()| accepted())
        }
        _ => refused(not_found(&path)),
    }
}

fn not_found(path: &str) -> Refusal {
    Refusal {
        status: 404,
        error_type: "NotFound",
        message: format!("{path} is not part of the Runtime API"),
    }
}

fn next_response(job: Job) -> Response {
    let mut response = http::Response::new(Full::new(job.payload));
    let headers = response.headers_mut();
    let mut set = |name: &'static str, value: &str| {
        if let Ok(value) = http::HeaderValue::from_bytes(value.as_bytes()) {
            headers.insert(name, value);
        }
    };
    set("content-type", "application/json");
    set("lambda-runtime-aws-request-id", &job.request_id);
    set("lambda-runtime-deadline-ms", &job.deadline_ms.to_string());
    set("lambda-runtime-invoked-function-arn", &job.function_arn);
    if let Some(trace) = &job.trace_id {
        set("lambda-runtime-trace-id", trace);
    }
    if let Some(context) = &job.client_context {
        set("lambda-runtime-client-context", context);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn kumo_can_wait_for_the_runtime_to_ask_again() {
        let exchange = Exchange::default();
        let _first = exchange.next().unwrap();
        let answered = exchange.give(job("r1"));
        let seen = exchange.next_calls();
        assert_eq!(seen, 1);
        exchange.answer("r1", Answer::TooLarge).unwrap();
        assert_eq!(answered.await.unwrap(), Answer::TooLarge);
        let waiting = exchange.asked_more_than(seen);
        let again = async {
            tokio::task::yield_now().await;
            // The runtime's next `/next` (its job channel is not needed here).
            drop(exchange.next().unwrap());
        };
        tokio::time::timeout(std::time::Duration::from_secs(5), async {
            tokio::join!(waiting, again)
        })
        .await
        .expect("the wait ends at the runtime's next /next");
        assert_eq!(exchange.next_calls(), 2);
    }

    fn job(id: &str) -> Job {
        Job {
            request_id: id.into(),
            payload: Bytes::from_static(b"{}"),
            deadline_ms: 0,
            function_arn: "arn".into(),
            trace_id: None,
            client_context: None,
        }
    }

    #[tokio::test]
    async fn a_job_goes_to_the_next_call_and_its_answer_comes_back() {
        let exchange = Exchange::default();
        // Given before the runtime asks: queued.
        let answered = exchange.give(job("a"));
        assert!(!exchange.initialized());
        let taken = exchange.next().unwrap().await.unwrap();
        assert!(exchange.initialized());
        assert_eq!(taken.request_id, "a");
        // Asking again before answering is a wrong transition.
        assert_eq!(exchange.next().unwrap_err().status, 403);
        assert_eq!(
            exchange
                .answer("zzz", Answer::Response(Bytes::new()))
                .unwrap_err()
                .status,
            400
        );
        exchange
            .answer("a", Answer::Response(Bytes::from_static(b"1")))
            .unwrap();
        assert_eq!(
            answered.await.unwrap(),
            Answer::Response(Bytes::from_static(b"1"))
        );
        // Answering twice: 403; an unknown id: 400.
        assert_eq!(
            exchange
                .answer("a", Answer::Response(Bytes::new()))
                .unwrap_err()
                .status,
            403
        );

        // Asked before given: the waiting call gets it.
        let next = exchange.next().unwrap();
        let answered = exchange.give(job("b"));
        assert_eq!(next.await.unwrap().request_id, "b");
        exchange
            .answer(
                "b",
                Answer::Error {
                    error_type: Some("E".into()),
                    body: Bytes::new(),
                },
            )
            .unwrap();
        assert!(matches!(answered.await.unwrap(), Answer::Error { .. }));
        assert_eq!(exchange.init_failed(Bytes::new()).unwrap_err().status, 403);
    }

    #[test]
    fn an_init_error_is_taken_once_before_the_first_job() {
        let exchange = Exchange::default();
        exchange.init_failed(Bytes::from_static(b"boom")).unwrap();
        assert_eq!(exchange.init_error().unwrap(), "boom");
        assert!(exchange.init_failed(Bytes::new()).is_err());
    }
}
