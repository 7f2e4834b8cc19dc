//! Tracing: W3C trace context on every invocation, and span export over OTLP.
//!
//! Each invocation is one span. Its trace id comes from the caller's `traceparent` (or a new
//! trace starts), its parent is the caller's span, and a function the guest calls, an event it
//! causes or an object it writes continues the same trace (the host adds the invocation's
//! `traceparent`). The guest itself is shown that `traceparent` when the trace reaches beyond
//! kumo: the request carried one, or spans are exported. Async submits, topic messages,
//! object changes and schedule ticks store a `traceparent` with their events (starting a trace
//! when the request had none), so every attempt and retry of an event shares one trace id.
//!
//! Spans are exported when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (OTLP over HTTP with JSON, to
//! `{endpoint}/v1/traces`, batched on the exporter's own thread); otherwise they are only
//! visible as the trace id in records and logs.

use kumo_core::InvocationRecord;
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState,
    Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use std::time::{Duration, UNIX_EPOCH};

/// One invocation's place in a trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// The caller's span (16 hex digits), if it sent one.
    pub parent_span_id: Option<String>,
    /// This invocation's span.
    pub span_id: String,
}

impl TraceContext {
    /// Continues the trace of a `traceparent` header value, or starts a new one.
    pub fn continue_or_start(traceparent: Option<&str>) -> Self {
        let (trace_id, parent_span_id) = match traceparent.and_then(parse_traceparent) {
            Some((trace, parent)) => (trace, Some(parent)),
            None => (random_trace_id(), None),
        };
        Self {
            trace_id,
            parent_span_id,
            span_id: random_span_id(),
        }
    }

    /// The `traceparent` naming this invocation's span (what the guest and its calls see).
    /// The same trace as AWS X-Ray writes it (`Lambda-Runtime-Trace-Id`, `_X_AMZN_TRACE_ID`):
    /// `Root=1-{8 hex}-{24 hex};Parent={span};Sampled=1`.
    pub fn xray(&self) -> String {
        let (epoch, rest) = self.trace_id.split_at(8.min(self.trace_id.len()));
        format!("Root=1-{epoch}-{rest};Parent={};Sampled=1", self.span_id)
    }

    pub fn traceparent(&self) -> String {
        // Built per invocation: pushes instead of `format!`.
        let mut value = String::with_capacity(55);
        for part in ["00-", &self.trace_id, "-", &self.span_id, "-01"] {
            value.push_str(part);
        }
        value
    }
}

/// A `traceparent` to store with an event: the request's if valid (each attempt is then a
/// child of the submitter's span), else one starting a new trace.
pub(crate) fn traceparent_for_event(traceparent: Option<&str>) -> String {
    match traceparent {
        Some(given) if parse_traceparent(given).is_some() => given.trim().to_string(),
        _ => TraceContext::continue_or_start(None).traceparent(),
    }
}

/// `(trace id, parent span id)` of a valid version-00 `traceparent`.
fn parse_traceparent(value: &str) -> Option<(String, String)> {
    let mut parts = value.trim().split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let valid = version == "00"
        && parts.next().is_none()
        && hex(trace, 32)
        && hex(parent, 16)
        && hex(flags, 2)
        && trace.bytes().any(|b| b != b'0')
        && parent.bytes().any(|b| b != b'0');
    valid.then(|| (trace.to_string(), parent.to_string()))
}

/// A random trace id (32 hex digits), never all zero (invalid in W3C trace context). Made
/// for every invocation: the full range is cheaper than `1..`.
fn random_trace_id() -> String {
    let mut id = 0;
    while id == 0 {
        id = fastrand::u128(..);
    }
    lower_hex(&id.to_be_bytes())
}

/// A random span id (16 hex digits), never all zero.
fn random_span_id() -> String {
    let mut id = 0;
    while id == 0 {
        id = fastrand::u64(..);
    }
    lower_hex(&id.to_be_bytes())
}

/// `bytes` (at most 16) as lowercase hex, through a stack buffer: `hex::encode` and
/// `format!` build the string a char at a time.
fn lower_hex(bytes: &[u8]) -> String {
    let mut buf = [0u8; 32];
    let out = &mut buf[..bytes.len() * 2];
    hex::encode_to_slice(bytes, out).expect("the buffer holds two digits per byte");
    String::from_utf8_lossy(out).into_owned()
}

/// The span exporter, when one is configured.
pub struct Tracing {
    exporter: Option<(SdkTracerProvider, SdkTracer)>,
}

impl Tracing {
    /// Exports over OTLP/HTTP (JSON) when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
    pub fn from_env() -> anyhow::Result<Self> {
        if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_none() {
            return Ok(Self { exporter: None });
        }
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(Resource::builder().with_service_name("kumo").build())
            .build();
        let tracer = provider.tracer("kumo");
        tracing::info!("exporting invocation spans over OTLP");
        Ok(Self {
            exporter: Some((provider, tracer)),
        })
    }

    /// Whether spans leave kumo (an OTLP endpoint is set).
    pub fn exports(&self) -> bool {
        self.exporter.is_some()
    }

    /// Exports one invocation's span (nothing happens without an exporter).
    pub fn export(&self, trace: &TraceContext, record: &InvocationRecord) {
        let Some((_, tracer)) = &self.exporter else {
            return;
        };
        let (Ok(trace_id), Ok(span_id)) = (
            TraceId::from_hex(&trace.trace_id),
            SpanId::from_hex(&trace.span_id),
        ) else {
            return;
        };
        let parent = match trace
            .parent_span_id
            .as_deref()
            .and_then(|p| SpanId::from_hex(p).ok())
        {
            Some(parent) => Context::new().with_remote_span_context(SpanContext::new(
                trace_id,
                parent,
                TraceFlags::SAMPLED,
                true,
                TraceState::default(),
            )),
            None => Context::new(),
        };
        let start = UNIX_EPOCH + Duration::from_millis(record.started_at.max(0) as u64);
        let end = start + Duration::from_secs_f64(record.duration_ms.max(0.0) / 1000.0);
        let status = match &record.error_code {
            Some(code) => Status::error(code.code()),
            None => Status::Ok,
        };
        let span = tracer
            .span_builder(format!("invoke {}", record.function))
            .with_trace_id(trace_id)
            .with_span_id(span_id)
            .with_kind(SpanKind::Server)
            .with_start_time(start)
            .with_status(status)
            .with_attributes([
                KeyValue::new("faas.name", record.function.clone()),
                KeyValue::new("faas.version", record.version.to_string()),
                KeyValue::new("faas.invocation_id", record.request_id.clone()),
                KeyValue::new("faas.coldstart", record.cold),
                KeyValue::new("faas.trigger", record.trigger.as_str()),
                KeyValue::new("kumo.outcome", record.outcome.as_str()),
                KeyValue::new("http.response.status_code", i64::from(record.status)),
            ])
            .start_with_context(tracer, &parent);
        opentelemetry::trace::Span::end_with_timestamp(&mut { span }, end);
    }

    /// Sends the spans still buffered (blocking; call from a blocking thread).
    pub fn shutdown(&self) {
        if let Some((provider, _)) = &self.exporter
            && let Err(e) = provider.shutdown()
        {
            tracing::warn!("exporting the last spans: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_lowercase_hex() {
        assert_eq!(lower_hex(&[0x0a, 0xff, 0x10]), "0aff10");
        assert_eq!(lower_hex(&[0xab; 16]), "ab".repeat(16));
    }

    #[test]
    fn traceparents_continue_or_start_traces() {
        let given = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let continued = TraceContext::continue_or_start(Some(given));
        assert_eq!(continued.trace_id, "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(
            continued.parent_span_id.as_deref(),
            Some("b7ad6b7169203331")
        );
        assert_ne!(continued.span_id, "b7ad6b7169203331");
        assert_eq!(
            continued.traceparent(),
            format!(
                "00-0af7651916cd43dd8448eb211c80319c-{}-01",
                continued.span_id
            )
        );
        for bad in [
            "garbage",
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
        ] {
            let started = TraceContext::continue_or_start(Some(bad));
            assert_eq!(started.parent_span_id, None, "{bad}");
            assert_eq!(started.trace_id.len(), 32);
            // A started trace is itself valid to continue.
            assert!(parse_traceparent(&started.traceparent()).is_some(), "{bad}");
        }
    }
}
