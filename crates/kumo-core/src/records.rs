//! The platform's records as stored and as served by the API (one definition for both).

use crate::{ErrorKind, FunctionConfig, FunctionKind, Outcome, RanVersion, Source};
use serde::{Deserialize, Serialize};

/// A deployed function (`$LATEST`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FunctionRecord {
    pub name: String,
    pub kind: FunctionKind,
    /// sha256 of the code, hex; the code's identity in the blob store and compile cache.
    pub code_sha256: String,
    pub code_size: u64,
    pub config: FunctionConfig,
    /// Unix epoch milliseconds.
    pub created_at: i64,
    pub updated_at: i64,
    /// Set by the server, never stored: the config asks for `instances = "reuse"`, but an
    /// instance of this code failed its second request without answering, so the server
    /// serves it with fresh instances (until a redeploy or restart).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reuse_fell_back: bool,
}

impl FunctionRecord {
    /// What its triggers (routes, schedule, topics, object events) invoke: `NAME`, or
    /// `NAME:QUALIFIER` with `triggers_use`.
    pub fn trigger_target(&self) -> String {
        match &self.config.triggers_use {
            Some(qualifier) => format!("{}:{qualifier}", self.name),
            None => self.name.clone(),
        }
    }
}

/// One invocation, failed ones included.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InvocationRecord {
    pub request_id: String,
    pub function: String,
    /// Unix epoch milliseconds.
    pub started_at: i64,
    pub duration_ms: f64,
    /// Whole milliseconds, rounded up: what a pay-per-use bill counts (0 when throttled).
    pub billed_ms: u64,
    pub memory_mb: u32,
    pub outcome: Outcome,
    /// The API error code when the invocation failed (`timeout`, `function_error`, ...).
    pub error_code: Option<ErrorKind>,
    pub error_message: Option<String>,
    /// HTTP status of the response the caller got.
    pub status: u16,
    /// The function was not in memory and had to be loaded first (a cold start).
    pub cold: bool,
    /// How long that load took; not part of `duration_ms`.
    pub init_ms: Option<f64>,
    /// The version that ran: `$LATEST` or a published version's number.
    #[schema(value_type = String)]
    pub version: RanVersion,
    /// How it was invoked: `http`, `invoke`, `call`, `async`, `schedule`, `topic`,
    /// `destination` or `storage`.
    #[schema(value_type = String)]
    pub trigger: Source,
    /// Memory × billed duration (0 for a throttled invocation, which never ran).
    pub gb_seconds: f64,
    /// The W3C trace id (32 hex digits) of the trace the invocation belongs to.
    pub trace_id: String,
}

/// One line a guest wrote (or kumo wrote about an invocation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogRecord {
    /// Increasing; a cursor for paging and following.
    pub id: i64,
    pub function: String,
    pub request_id: String,
    /// Unix epoch milliseconds.
    pub ts: i64,
    pub stream: LogStream,
    pub line: String,
    /// The invocation's trace id.
    pub trace_id: String,
}

/// Where a line of an invocation's output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    Stdout,
    Stderr,
    /// Lines kumo adds about the invocation (a trap's detail, truncation).
    Kumo,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
            Self::Kumo => "kumo",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Stdout, Self::Stderr, Self::Kumo]
            .into_iter()
            .find(|stream| stream.as_str() == s)
    }
}

impl std::fmt::Display for LogStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// A line of an invocation's output as it is recorded with the invocation, whose function,
/// request id, trace id and start time (its `ts`) it takes; a [`LogRecord`] when read back.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputLine {
    pub stream: LogStream,
    pub line: String,
}

/// Milliseconds since the Unix epoch as RFC 3339 UTC (`2026-11-22T20:23:53.123Z`).
pub fn format_timestamp(ms: i64) -> String {
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        // Beyond chrono's range (±262,000 years): no record carries such a time.
        None => format!("{ms} ms since the epoch"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_format_as_rfc3339() {
        assert_eq!(format_timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_timestamp(1_795_379_033_123),
            "2026-11-22T20:23:53.123Z"
        );
        assert_eq!(
            format_timestamp(951_782_400_000),
            "2000-02-29T00:00:00.000Z"
        );
    }
}
