//! A guest's outbound HTTP (`wasi:http/outgoing-handler`): requests to
//! `http://NAME.fn.internal/...` are function calls served in-process by the embedder
//! ([`FunctionCalls`]); anything else goes out only to granted hosts, through a circuit breaker
//! per destination ([`Breakers`]).

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};
use wasmtime_wasi_http::{Error, WasiBody, WasiHttpHooks};

/// Host suffix of function calls: `http://NAME.fn.internal/path`.
pub const INTERNAL_HOST_SUFFIX: &str = ".fn.internal";

/// Connect and first-byte timeouts of an outbound request whose guest set none (the
/// invocation's own timeout still bounds it).
const OUTBOUND_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const OUTBOUND_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest request body a guest sends to another function (the data plane's default),
/// and the most read from a refused request.
const MAX_CALL_BODY_BYTES: usize = 6 * 1024 * 1024;

/// One function calling another, as the embedder receives it.
pub struct FunctionCall {
    pub function: String,
    pub method: http::Method,
    pub path_and_query: String,
    /// The guest's headers, with the caller's `traceparent` added if the guest set none.
    pub headers: http::HeaderMap,
    pub body: Bytes,
    /// Calls between the outside request and this one (1 for a call from an invocation
    /// that was not itself called).
    pub depth: u32,
}

pub type CallFuture = Pin<Box<dyn Future<Output = http::Response<Bytes>> + Send>>;

/// Serves function calls (the server's Invoker). Failures come back as responses (with the
/// status and `x-kumo-error` the data plane would give), so the guest can read them.
pub trait FunctionCalls: Send + Sync {
    fn call(&self, call: FunctionCall) -> CallFuture;
}

/// Where function calls go; set once by the embedder, after the runtime exists.
pub(crate) type CallsSlot = Arc<OnceLock<Arc<dyn FunctionCalls>>>;

/// Hosts (`host` or `host:port`) a function may send requests to.
#[derive(Clone, Default)]
pub struct OutboundGrants {
    allowed: Arc<[String]>,
}

impl OutboundGrants {
    pub fn new(allowed: Arc<[String]>) -> Self {
        Self { allowed }
    }

    pub fn allows(&self, uri: &http::Uri) -> bool {
        let Some(host) = uri.host() else {
            return false;
        };
        let host_port = destination(uri);
        self.allowed
            .iter()
            .any(|grant| grant.eq_ignore_ascii_case(host) || grant.eq_ignore_ascii_case(&host_port))
    }
}

/// `host:port` of a URI, with the scheme's default port.
fn destination(uri: &http::Uri) -> String {
    let default_port = if uri.scheme_str() == Some("https") {
        443
    } else {
        80
    };
    format!(
        "{}:{}",
        uri.host().unwrap_or("").to_ascii_lowercase(),
        uri.port_u16().unwrap_or(default_port)
    )
}

/// When a destination's breaker opens and how long it stays open.
#[derive(Debug, Clone, Copy)]
pub struct BreakerConfig {
    /// Consecutive failures (transport errors, timeouts, 5xx) that open the breaker.
    pub failures: u32,
    /// How long an open breaker fails requests fast before letting one probe through.
    pub cooldown: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failures: 5,
            cooldown: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    /// One probe request is in flight; others still fail fast.
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

struct Breaker {
    state: BreakerState,
    consecutive_failures: u32,
    open_until: Instant,
}

/// The circuit breakers of every outbound destination (`host:port`), shared by all functions:
/// a destination that keeps failing fails fast for everyone until a probe succeeds.
#[derive(Clone, Default)]
pub struct Breakers {
    config: BreakerConfig,
    by_destination: Arc<Mutex<HashMap<String, Breaker>>>,
}

impl Breakers {
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            by_destination: Arc::default(),
        }
    }

    fn map(&self) -> MutexGuard<'_, HashMap<String, Breaker>> {
        // Each entry is consistent between statements, so a poisoned lock is still usable.
        self.by_destination
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Every destination seen, with its breaker's state.
    pub fn states(&self) -> Vec<(String, BreakerState)> {
        let mut states: Vec<_> = self
            .map()
            .iter()
            .map(|(d, b)| (d.clone(), b.state))
            .collect();
        states.sort_by(|a, b| a.0.cmp(&b.0));
        states
    }

    /// May a request to `destination` go out now? An open breaker past its cool-down lets
    /// this one request through as the probe.
    fn admit(&self, destination: &str) -> bool {
        let mut map = self.map();
        let breaker = map.entry(destination.to_string()).or_insert(Breaker {
            state: BreakerState::Closed,
            consecutive_failures: 0,
            open_until: Instant::now(),
        });
        match breaker.state {
            BreakerState::Closed => true,
            BreakerState::Open if Instant::now() >= breaker.open_until => {
                breaker.state = BreakerState::HalfOpen;
                true
            }
            BreakerState::Open | BreakerState::HalfOpen => false,
        }
    }

    /// Admits one request (or connection) to `destination` (`host:port`), or none while
    /// its breaker is open: the caller records the outcome on the returned call.
    pub fn call(&self, destination: &str) -> Option<BreakerCall> {
        self.admit(destination).then(|| BreakerCall {
            breakers: self.clone(),
            destination: destination.to_string(),
            recorded: false,
        })
    }

    fn record(&self, destination: &str, success: bool) {
        let mut map = self.map();
        let Some(breaker) = map.get_mut(destination) else {
            return;
        };
        if success {
            breaker.state = BreakerState::Closed;
            breaker.consecutive_failures = 0;
            return;
        }
        breaker.consecutive_failures = breaker.consecutive_failures.saturating_add(1);
        if breaker.state == BreakerState::HalfOpen
            || breaker.consecutive_failures >= self.config.failures
        {
            if breaker.state != BreakerState::Open {
                tracing::warn!(
                    "outbound circuit to {destination} open after {} consecutive failures",
                    breaker.consecutive_failures
                );
            }
            breaker.state = BreakerState::Open;
            breaker.open_until = Instant::now() + self.config.cooldown;
        }
    }
}

/// Records the outcome of one admitted request; a request dropped before it ended (the
/// invocation timed out) counts as a failure, so a half-open probe never stays in flight.
pub struct BreakerCall {
    breakers: Breakers,
    destination: String,
    recorded: bool,
}

impl BreakerCall {
    pub fn record(mut self, success: bool) {
        self.recorded = true;
        self.breakers.record(&self.destination, success);
    }
}

impl Drop for BreakerCall {
    fn drop(&mut self) {
        if !self.recorded {
            self.breakers.record(&self.destination, false);
        }
    }
}

/// The wasi:http hooks of one invocation: its grants, the shared breakers, and where function
/// calls go with this invocation's call depth and trace context.
#[derive(Clone, Default)]
pub struct Outbound {
    pub grants: OutboundGrants,
    pub breakers: Breakers,
    pub calls: CallsSlot,
    /// The depth of this invocation (0: not called by a function).
    pub depth: u32,
    /// The caller's namespace: `NAME.fn.internal` is its function `NAME`.
    pub namespace: Arc<str>,
    pub traceparent: Option<http::HeaderValue>,
}

type ResponseIo = Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>;
type SendFuture = Box<
    dyn Future<Output = wasmtime_wasi_http::Result<(http::Response<WasiBody>, ResponseIo)>> + Send,
>;

impl Outbound {
    fn call_function(&self, function: String, request: http::Request<WasiBody>) -> SendFuture {
        let Some(calls) = self.calls.get().cloned() else {
            return refuse(request, Error::HttpRequestDenied);
        };
        let depth = self.depth.saturating_add(1);
        let traceparent = self.traceparent.clone();
        let namespace = self.namespace.clone();
        Box::new(async move {
            let (parts, body) = request.into_parts();
            let body = Limited::new(body, MAX_CALL_BODY_BYTES)
                .collect()
                .await
                .map_err(|_| Error::HttpRequestBodySize(None))?
                .to_bytes();
            let mut headers = parts.headers;
            if let Some(traceparent) = traceparent {
                headers.entry("traceparent").or_insert(traceparent);
            }
            let call = FunctionCall {
                function: kumo_core::scoped(&namespace, &function),
                method: parts.method,
                path_and_query: parts
                    .uri
                    .path_and_query()
                    .map_or("/".to_string(), |p| p.to_string()),
                headers,
                body,
                depth,
            };
            let response = calls.call(call).await;
            let response = response.map(|body| {
                Full::new(body)
                    .map_err(|never| -> Error { match never {} })
                    .boxed_unsync()
            });
            Ok((response, Box::new(async { Ok(()) }) as ResponseIo))
        })
    }
}

/// Fails a request with `error` once the guest has written its body: dropping the body at
/// once would fail the guest's write first, and the guest would see a reset, not the error.
fn refuse(request: http::Request<WasiBody>, error: Error) -> SendFuture {
    Box::new(async move {
        let _ = Limited::new(request.into_body(), MAX_CALL_BODY_BYTES)
            .collect()
            .await;
        Err(error)
    })
}

/// `NAME` of `NAME.fn.internal`.
/// The target of `NAME.fn.internal` (`NAME`), or of `QUALIFIER.NAME.fn.internal`
/// (`NAME:QUALIFIER`: a version or an alias; a host name cannot carry the `:`).
fn called_function(uri: &http::Uri) -> Option<String> {
    let host = uri.host()?.to_ascii_lowercase();
    let labels = host.strip_suffix(INTERNAL_HOST_SUFFIX)?;
    match labels.split_once('.') {
        Some((qualifier, name)) if !qualifier.is_empty() && !name.is_empty() => {
            Some(format!("{name}:{qualifier}"))
        }
        Some(_) => None,
        None => (!labels.is_empty()).then(|| labels.to_string()),
    }
}

impl WasiHttpHooks for Outbound {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: ResponseIo,
    ) -> SendFuture {
        if let Some(function) = called_function(request.uri()) {
            return self.call_function(function, request);
        }
        if !self.grants.allows(request.uri()) {
            return refuse(request, Error::HttpRequestDenied);
        }
        let destination = destination(request.uri());
        if !self.breakers.admit(&destination) {
            return refuse(request, Error::DestinationUnavailable);
        }
        let attempt = BreakerCall {
            breakers: self.breakers.clone(),
            destination,
            recorded: false,
        };
        let mut options = options.unwrap_or_default();
        options.connect_timeout = options.connect_timeout.or(Some(OUTBOUND_CONNECT_TIMEOUT));
        options.first_byte_timeout = options
            .first_byte_timeout
            .or(Some(OUTBOUND_FIRST_BYTE_TIMEOUT));
        Box::new(async move {
            let sent = wasmtime_wasi_http::default_send_request(request, Some(options)).await;
            attempt
                .record(matches!(&sent, Ok((response, _)) if !response.status().is_server_error()));
            let (response, io) = sent?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as ResponseIo,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_match_a_host_or_a_host_and_port() {
        let grants =
            OutboundGrants::new(vec!["api.example.com".into(), "127.0.0.1:9000".into()].into());
        let allows = |uri: &str| grants.allows(&uri.parse().unwrap());
        assert!(allows("https://api.example.com/x"));
        assert!(allows("http://API.example.com:8080/"));
        assert!(allows("http://127.0.0.1:9000/"));
        assert!(!allows("http://127.0.0.1:9001/"));
        assert!(!allows("http://127.0.0.1/"));
        assert!(!allows("http://example.com/"));
        assert!(!OutboundGrants::default().allows(&"http://a/".parse().unwrap()));
    }

    #[test]
    fn internal_hosts_name_a_function() {
        let called = |uri: &str| called_function(&uri.parse().unwrap());
        assert_eq!(called("http://orders.fn.internal/x"), Some("orders".into()));
        assert_eq!(
            called("http://Orders.FN.internal:80/"),
            Some("orders".into())
        );
        assert_eq!(
            called("http://prod.orders.fn.internal/"),
            Some("orders:prod".into())
        );
        assert_eq!(
            called("http://3.orders.fn.internal/"),
            Some("orders:3".into())
        );
        assert_eq!(called("http://fn.internal/"), None);
        assert_eq!(called("http://.orders.fn.internal/"), None);
        assert_eq!(called("http://orders.example.com/"), None);
    }

    #[test]
    fn a_breaker_opens_after_failures_and_closes_after_a_good_probe() {
        let breakers = Breakers::new(BreakerConfig {
            failures: 2,
            cooldown: Duration::from_millis(20),
        });
        let d = "api:80";
        assert!(breakers.admit(d));
        breakers.record(d, false);
        assert!(breakers.admit(d));
        breakers.record(d, false);
        assert_eq!(breakers.states(), [(d.to_string(), BreakerState::Open)]);
        assert!(!breakers.admit(d), "open: fails fast");
        std::thread::sleep(Duration::from_millis(25));
        assert!(breakers.admit(d), "the probe goes through");
        assert!(!breakers.admit(d), "only one probe at a time");
        breakers.record(d, false);
        assert_eq!(
            breakers.states()[0].1,
            BreakerState::Open,
            "a failed probe reopens"
        );
        std::thread::sleep(Duration::from_millis(25));
        assert!(breakers.admit(d));
        breakers.record(d, true);
        assert_eq!(breakers.states()[0].1, BreakerState::Closed);
        assert!(breakers.admit(d));
    }
}
