//! What kind of function a binary is, how an invocation ended, and how it is billed.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The runtime a binary needs, detected from its exports at deploy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum FunctionKind {
    /// A component exporting `wasi:http/incoming-handler@0.2.x`.
    WasiHttp,
    /// A WASI 0.2 command component (`wasi:cli/run`) or a wasip1 core module with `_start`:
    /// the payload is its stdin, its stdout the response body.
    WasiCommand,
    /// A Lambda deployment package (zip) run by a sandboxed native process that speaks the
    /// Lambda Runtime API.
    Lambda,
}

impl FunctionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WasiHttp => "wasi-http",
            Self::WasiCommand => "wasi-command",
            Self::Lambda => "lambda",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "wasi-http" => Some(Self::WasiHttp),
            "wasi-command" => Some(Self::WasiCommand),
            "lambda" => Some(Self::Lambda),
            _ => None,
        }
    }
}

/// How an invocation ended, as recorded and reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Error,
    Timeout,
    OutOfMemory,
    Throttled,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
            Self::Timeout => "timeout",
            Self::OutOfMemory => "out_of_memory",
            Self::Throttled => "throttled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Ok,
            Self::Error,
            Self::Timeout,
            Self::OutOfMemory,
            Self::Throttled,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
    }
}

/// The stable error codes of the API (`{"error": {"code": ..}}` and `x-kumo-error`), with the
/// HTTP status each one maps to. The table in design.md is the contract. Serialized as its
/// code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    FunctionNotFound,
    /// No token, or one that is not valid (unknown, revoked, expired).
    Unauthorized,
    /// A valid token whose role does not allow the request.
    Forbidden,
    /// An invocation id that names no recorded invocation.
    InvocationNotFound,
    /// A control-API path or method that does not exist.
    NotFound,
    MethodNotAllowed,
    InvalidFunction,
    InvalidRequest,
    Conflict,
    /// A namespace's quota (functions, stored bytes, queued events) would be exceeded.
    QuotaExceeded,
    /// A key-value key that does not exist.
    KeyNotFound,
    /// An object that does not exist.
    ObjectNotFound,
    /// A conditional write whose `If-Match` / `If-None-Match` does not hold.
    PreconditionFailed,
    PayloadTooLarge,
    /// A request body that stalled longer than the body idle timeout.
    RequestTimeout,
    Throttled,
    /// A chain of function-to-function calls nested deeper than the limit.
    CallDepthExceeded,
    Timeout,
    OutOfMemory,
    FunctionError,
    /// The disk is (nearly) full: new data is refused until space returns.
    InsufficientStorage,
    /// The server cannot take this now (too many connections, records it cannot store yet).
    Unavailable,
    Internal,
}

impl ErrorKind {
    const ALL: [Self; 23] = [
        Self::FunctionNotFound,
        Self::Unauthorized,
        Self::Forbidden,
        Self::InvocationNotFound,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::InvalidFunction,
        Self::InvalidRequest,
        Self::Conflict,
        Self::QuotaExceeded,
        Self::KeyNotFound,
        Self::ObjectNotFound,
        Self::PreconditionFailed,
        Self::PayloadTooLarge,
        Self::RequestTimeout,
        Self::Throttled,
        Self::CallDepthExceeded,
        Self::Timeout,
        Self::OutOfMemory,
        Self::FunctionError,
        Self::InsufficientStorage,
        Self::Unavailable,
        Self::Internal,
    ];

    /// The kind whose [`Self::code`] is `code`.
    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.code() == code)
    }

    pub fn code(self) -> &'static str {
        match self {
            Self::FunctionNotFound => "function_not_found",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::InvocationNotFound => "invocation_not_found",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::InvalidFunction => "invalid_function",
            Self::InvalidRequest => "invalid_request",
            Self::Conflict => "conflict",
            Self::QuotaExceeded => "quota_exceeded",
            Self::KeyNotFound => "key_not_found",
            Self::ObjectNotFound => "object_not_found",
            Self::PreconditionFailed => "precondition_failed",
            Self::PayloadTooLarge => "payload_too_large",
            Self::RequestTimeout => "request_timeout",
            Self::Throttled => "throttled",
            Self::CallDepthExceeded => "call_depth_exceeded",
            Self::Timeout => "timeout",
            Self::OutOfMemory => "out_of_memory",
            Self::FunctionError => "function_error",
            Self::InsufficientStorage => "insufficient_storage",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            Self::FunctionNotFound
            | Self::InvocationNotFound
            | Self::NotFound
            | Self::KeyNotFound
            | Self::ObjectNotFound => 404,
            Self::Unauthorized => 401,
            Self::Forbidden => 403,
            Self::MethodNotAllowed => 405,
            Self::InvalidFunction | Self::InvalidRequest => 400,
            Self::Conflict | Self::QuotaExceeded => 409,
            Self::PreconditionFailed => 412,
            Self::PayloadTooLarge => 413,
            Self::RequestTimeout => 408,
            Self::Throttled => 429,
            Self::CallDepthExceeded => 508,
            Self::Timeout => 504,
            Self::OutOfMemory | Self::FunctionError => 502,
            Self::InsufficientStorage => 507,
            Self::Unavailable => 503,
            Self::Internal => 500,
        }
    }

    /// The outcome recorded for an invocation that failed this way.
    pub fn outcome(self) -> Outcome {
        match self {
            Self::Timeout => Outcome::Timeout,
            Self::OutOfMemory => Outcome::OutOfMemory,
            Self::Throttled => Outcome::Throttled,
            _ => Outcome::Error,
        }
    }
}

/// Billed duration: whole milliseconds, rounded up (Lambda's 1 ms granularity), at least 1 ms.
pub fn billed_ms(d: Duration) -> u64 {
    let ms = d.as_nanos().div_ceil(1_000_000);
    u64::try_from(ms).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kinds_serialize_and_parse_as_their_codes() {
        for kind in ErrorKind::ALL {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.code()));
            assert_eq!(ErrorKind::parse(kind.code()), Some(kind));
        }
        assert_eq!(ErrorKind::parse("nope"), None);
    }

    #[test]
    fn billing_rounds_up() {
        assert_eq!(billed_ms(Duration::from_micros(1)), 1);
        assert_eq!(billed_ms(Duration::from_millis(3)), 3);
        assert_eq!(billed_ms(Duration::from_micros(3_001)), 4);
        assert_eq!(billed_ms(Duration::ZERO), 1);
    }

    #[test]
    fn outcomes_round_trip() {
        for o in [Outcome::Ok, Outcome::OutOfMemory, Outcome::Throttled] {
            assert_eq!(Outcome::parse(o.as_str()), Some(o));
        }
    }
}
