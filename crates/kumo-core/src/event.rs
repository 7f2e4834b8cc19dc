//! Asynchronous invocations: an event's life (queued → running → succeeded, or failed and
//! retried, or dead), the retry schedule, destinations and the CloudEvents envelope.

use crate::name::validate_name;
use crate::records::format_timestamp;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Longest wait between two attempts, whatever the backoff says.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(5 * 60);

/// Where an asynchronous event is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    /// Waiting for its first attempt (or for a redrive's).
    Queued,
    /// An attempt is running.
    Running,
    /// The last attempt failed; another is due at `next_attempt_at`.
    Failed,
    Succeeded,
    /// Out of retries or too old: in the function's dead letters until redriven.
    Dead,
}

impl EventStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Failed => "failed",
            Self::Succeeded => "succeeded",
            Self::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Queued,
            Self::Running,
            Self::Failed,
            Self::Succeeded,
            Self::Dead,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }

    /// Nothing more happens to the event unless someone redrives it.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Dead)
    }
}

/// What made an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// `invoke?mode=async`.
    Async,
    Schedule,
    Topic,
    /// A destination of another function's event.
    Destination,
    /// An object written to or deleted from a bucket (`on_object`).
    Storage,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Async => "async",
            Self::Schedule => "schedule",
            Self::Topic => "topic",
            Self::Destination => "destination",
            Self::Storage => "storage",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Async,
            Self::Schedule,
            Self::Topic,
            Self::Destination,
            Self::Storage,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

impl crate::ParseText for Destination {
    const WHAT: &'static str = "destination";
    fn parse_text(text: &str) -> Result<Self, String> {
        Self::parse(text)
    }
}

/// The result of the attempt that succeeded, as much of it as is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EventResult {
    pub status: u16,
    /// The response body as text (invalid UTF-8 replaced), cut at the kept length.
    pub body: String,
    pub truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EventError {
    #[schema(value_type = String)]
    pub code: EventErrorCode,
    pub message: String,
}

/// Why an event's attempt failed, as its `error.code` says (text on the wire and in the
/// store).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventErrorCode {
    /// The attempt failed as an invocation does (`timeout`, `function_error`, ...).
    Invocation(crate::ErrorKind),
    /// The function answered with a 5xx status.
    ErrorStatus,
    /// Older than its `max_event_age`: not tried again.
    TooOld,
    /// Out of attempts before this one ran (a server stop cut the last one short, or an alias
    /// now picks a version that allows fewer retries).
    RetriesExhausted,
    /// The attempt was running when the server stopped.
    Interrupted,
}

impl EventErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invocation(kind) => kind.code(),
            Self::ErrorStatus => "error_status",
            Self::TooOld => "event_too_old",
            Self::RetriesExhausted => "retries_exhausted",
            Self::Interrupted => "interrupted",
        }
    }

    pub fn parse(code: &str) -> Option<Self> {
        [
            Self::ErrorStatus,
            Self::TooOld,
            Self::RetriesExhausted,
            Self::Interrupted,
        ]
        .into_iter()
        .find(|c| c.as_str() == code)
        .or_else(|| crate::ErrorKind::parse(code).map(Self::Invocation))
    }
}

impl Serialize for EventErrorCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown event error {text:?}")))
    }
}

impl std::fmt::Display for EventErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// An asynchronous invocation as `GET /invocations/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EventRecord {
    pub id: String,
    pub function: String,
    pub status: EventStatus,
    pub trigger: Trigger,
    /// Attempts started so far (an attempt cut short by a server crash counts).
    pub attempts: u32,
    /// Unix epoch milliseconds.
    pub created_at: i64,
    pub updated_at: i64,
    /// When the next attempt may start (queued or failed events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<i64>,
    /// The request id of the latest attempt: its record and logs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<EventResult>,
    /// Why the latest attempt failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<EventError>,
}

/// The wait before attempt `failed + 1` after `failed` failures: `base`, doubling each time,
/// at most [`MAX_RETRY_DELAY`], then "equal jitter" (a random point in its upper half) so
/// events that failed together do not come back together. `jitter` is uniform in [0, 1).
pub fn retry_delay(base: Duration, failed: u32, jitter: f64) -> Duration {
    let doubled = base.saturating_mul(1u32 << failed.saturating_sub(1).min(20));
    let delay = doubled.min(MAX_RETRY_DELAY);
    delay.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// Where the outcome of an asynchronous invocation goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// POSTed to, as JSON.
    Url(String),
    /// Invoked asynchronously with the outcome as its payload.
    Function(String),
}

impl Destination {
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(rest) = s
            .strip_prefix("http://")
            .or_else(|| s.strip_prefix("https://"))
        {
            let host = rest.split('/').next().unwrap_or_default();
            if host.is_empty() || s.contains(char::is_whitespace) {
                return Err(format!("{s:?} is not a usable URL"));
            }
            return Ok(Self::Url(s.to_string()));
        }
        if s.contains("://") {
            return Err(format!("{s:?}: only http:// and https:// URLs are allowed"));
        }
        // A function, `$LATEST` or qualified: `audit`, `audit:3`, `audit:prod`.
        let target = crate::Target::parse(s)
            .map_err(|e| format!("{s:?} is neither an http(s) URL nor a function: {e}"))?;
        if let Some(qualifier) = &target.qualifier {
            crate::Qualifier::parse(qualifier).map_err(|e| format!("{s:?}: {e}"))?;
        }
        Ok(Self::Function(s.to_string()))
    }
}

/// A topic name follows the rules of function names.
pub fn validate_topic(topic: &str) -> Result<(), String> {
    validate_name(topic).map_err(|e| format!("invalid topic {topic:?}: {}", e.why))
}

/// A CloudEvents 1.0 envelope in structured JSON mode. `data` is the payload as JSON when it
/// is JSON, as a string when it is UTF-8 text, and base64 in `data_base64` otherwise.
pub struct CloudEvent<'a> {
    pub id: &'a str,
    pub source: String,
    pub kind: &'a str,
    pub time_ms: i64,
    pub subject: Option<&'a str>,
    pub traceparent: Option<&'a str>,
    pub data: &'a [u8],
}

/// The content type of a structured-mode CloudEvent.
pub const CLOUDEVENTS_JSON: &str = "application/cloudevents+json";

impl CloudEvent<'_> {
    pub fn to_json(&self) -> Vec<u8> {
        let mut event = serde_json::json!({
            "specversion": "1.0",
            "id": self.id,
            "source": self.source,
            "type": self.kind,
            "time": format_timestamp(self.time_ms),
        });
        let fields = event
            .as_object_mut()
            .expect("a json! object literal is an object");
        if let Some(subject) = self.subject {
            fields.insert("subject".into(), subject.into());
        }
        if let Some(tp) = self.traceparent {
            fields.insert("traceparent".into(), tp.into());
        }
        if let Ok(json) = serde_json::from_slice::<serde_json::Value>(self.data) {
            fields.insert("datacontenttype".into(), "application/json".into());
            fields.insert("data".into(), json);
        } else if let Ok(text) = std::str::from_utf8(self.data) {
            fields.insert("datacontenttype".into(), "text/plain".into());
            fields.insert("data".into(), text.into());
        } else {
            fields.insert("data_base64".into(), base64(self.data).into());
        }
        serde_json::to_vec(&event).expect("a JSON value always serializes")
    }
}

/// Standard base64 with padding (RFC 4648), for payloads that are not text.
pub fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// What asynchronous attempts may use of a concurrency of `n`: all but `reserve_percent`
/// (rounded up), and at least 1, or events would never run.
pub fn async_share(n: usize, reserve_percent: u8) -> usize {
    let kept = (n * usize::from(reserve_percent)).div_ceil(100);
    n.saturating_sub(kept).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_error_codes_are_text() {
        for code in [
            EventErrorCode::Invocation(crate::ErrorKind::Timeout),
            EventErrorCode::ErrorStatus,
            EventErrorCode::TooOld,
            EventErrorCode::RetriesExhausted,
            EventErrorCode::Interrupted,
        ] {
            assert_eq!(EventErrorCode::parse(code.as_str()), Some(code));
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(serde_json::from_str::<EventErrorCode>(&json).unwrap(), code);
        }
        assert_eq!(
            EventErrorCode::parse("timeout").unwrap().as_str(),
            "timeout"
        );
        assert_eq!(EventErrorCode::parse("nope"), None);
    }

    #[test]
    fn the_async_share_keeps_the_sync_reserve() {
        assert_eq!(async_share(10, 20), 8);
        assert_eq!(async_share(4, 20), 3);
        assert_eq!(async_share(1, 20), 1);
        assert_eq!(async_share(1000, 0), 1000);
        assert_eq!(async_share(3, 100), 1);
    }

    #[test]
    fn retry_delay_doubles_up_to_the_cap_with_jitter_in_the_upper_half() {
        let base = Duration::from_secs(1);
        assert_eq!(retry_delay(base, 1, 1.0), Duration::from_secs(1));
        assert_eq!(retry_delay(base, 2, 1.0), Duration::from_secs(2));
        assert_eq!(retry_delay(base, 3, 1.0), Duration::from_secs(4));
        assert_eq!(retry_delay(base, 3, 0.0), Duration::from_secs(2));
        assert_eq!(retry_delay(base, 30, 1.0), MAX_RETRY_DELAY);
    }

    #[test]
    fn destinations_are_urls_or_function_names() {
        assert_eq!(
            Destination::parse("http://127.0.0.1:9/x"),
            Ok(Destination::Url("http://127.0.0.1:9/x".into()))
        );
        assert_eq!(
            Destination::parse("audit"),
            Ok(Destination::Function("audit".into()))
        );
        assert!(Destination::parse("ftp://x").is_err());
        assert!(Destination::parse("http:///x").is_err());
        assert!(Destination::parse("Not A Name").is_err());
        assert_eq!(
            Destination::parse("audit:prod"),
            Ok(Destination::Function("audit:prod".into()))
        );
        assert!(Destination::parse("audit:Prod").is_err());
    }

    #[test]
    fn cloudevents_carry_json_text_or_base64() {
        let event = |data: &[u8]| {
            let json = CloudEvent {
                id: "e1",
                source: "kumo/topic/orders".into(),
                kind: "dev.kumo.topic.message",
                time_ms: 0,
                subject: None,
                traceparent: None,
                data,
            }
            .to_json();
            serde_json::from_slice::<serde_json::Value>(&json).unwrap()
        };
        let e = event(br#"{"n":1}"#);
        assert_eq!(e["specversion"], "1.0");
        assert_eq!(e["id"], "e1");
        assert_eq!(e["data"]["n"], 1);
        assert_eq!(event(b"plain")["data"], "plain");
        assert_eq!(event(&[0xff, 0, 1])["data_base64"], "/wAB");
    }

    #[test]
    fn base64_pads() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
    }
}
