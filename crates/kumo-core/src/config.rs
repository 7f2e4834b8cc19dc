//! A function's configuration and its limits.

use crate::duration::{format_duration, parse_duration};
use crate::route::Route;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::time::Duration;
use thiserror::Error;

pub const DEFAULT_MEMORY_MB: u32 = 128;
/// Wasm32 linear memory cannot address more than 4 GiB.
pub const MAX_MEMORY_MB: u32 = 4096;
pub const MIN_MEMORY_MB: u32 = 16;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Lambda's limit; longer work belongs in a workflow.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Requests one reused instance serves before it is replaced, by default.
pub const DEFAULT_MAX_INSTANCE_REQUESTS: u32 = 1000;

/// How a wasi-http function's instances serve requests. Commands always run fresh.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Instances {
    /// A new instance per request: nothing a request leaves in memory reaches the next.
    #[default]
    Fresh,
    /// Like Lambda's warm execution environments: an instance serves one request after
    /// another and keeps its memory between them; it is replaced after a failure, after
    /// `max_instance_requests` requests, or when idle.
    Reuse,
}

impl std::str::FromStr for Instances {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fresh" => Ok(Self::Fresh),
            "reuse" => Ok(Self::Reuse),
            _ => Err(format!("{s:?} is not fresh or reuse")),
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("{field}: {message}")]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

/// Everything about a function except its code. The JSON form is the `config` part of a deploy
/// and the `config` field of the function resource; every field is optional on input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FunctionConfig {
    /// Cap on the guest's linear memory, in MiB.
    pub memory_mb: u32,
    /// Wall-clock limit of one invocation.
    #[serde(
        serialize_with = "serialize_timeout",
        deserialize_with = "deserialize_timeout"
    )]
    pub timeout: Duration,
    /// Invocations of this function running at once; more are throttled (429).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    /// Keep the function loaded from deploy (and start-up) on and never unload it, so it sees
    /// no cold start; this many slots of the server's concurrency are kept for it alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provisioned_concurrency: Option<u32>,
    /// Custom data-plane paths besides `/fn/{name}`: `/hello` (exact) or `/hello/*` (prefix).
    pub routes: Vec<String>,
    /// Environment variables visible to the guest.
    pub env: BTreeMap<String, String>,
    /// `fresh` (default) or `reuse`.
    pub instances: Instances,
    /// With `instances = "reuse"`: requests one instance serves before it is replaced.
    pub max_instance_requests: u32,
}

impl Default for FunctionConfig {
    fn default() -> Self {
        Self {
            memory_mb: DEFAULT_MEMORY_MB,
            timeout: DEFAULT_TIMEOUT,
            max_concurrency: None,
            provisioned_concurrency: None,
            routes: Vec::new(),
            env: BTreeMap::new(),
            instances: Instances::Fresh,
            max_instance_requests: DEFAULT_MAX_INSTANCE_REQUESTS,
        }
    }
}

impl FunctionConfig {
    /// Checks every field against its limits; the error names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |field: &str, message: String| {
            Err(ConfigError {
                field: field.to_string(),
                message,
            })
        };
        if !(MIN_MEMORY_MB..=MAX_MEMORY_MB).contains(&self.memory_mb) {
            return fail(
                "memory_mb",
                format!(
                    "{} is outside {MIN_MEMORY_MB}..={MAX_MEMORY_MB}",
                    self.memory_mb
                ),
            );
        }
        if self.timeout < Duration::from_millis(1) || self.timeout > MAX_TIMEOUT {
            return fail(
                "timeout",
                format!(
                    "{} is outside 1ms..={}",
                    format_duration(self.timeout),
                    format_duration(MAX_TIMEOUT)
                ),
            );
        }
        if self.max_concurrency == Some(0) {
            return fail("max_concurrency", "must be at least 1".to_string());
        }
        match (self.provisioned_concurrency, self.max_concurrency) {
            (Some(0), _) => {
                return fail("provisioned_concurrency", "must be at least 1".to_string());
            }
            (Some(p), Some(m)) if p > m => {
                return fail(
                    "provisioned_concurrency",
                    format!("{p} is more than max_concurrency {m}"),
                );
            }
            _ => {}
        }
        if self.max_instance_requests == 0 {
            return fail("max_instance_requests", "must be at least 1".to_string());
        }
        for route in &self.routes {
            if let Err(e) = Route::parse(route) {
                return fail("routes", e.to_string());
            }
        }
        for key in self.env.keys() {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                return fail(
                    "env",
                    format!("{key:?} is not a valid variable name (empty, or has '=' or NUL)"),
                );
            }
        }
        if let Some((key, _)) = self.env.iter().find(|(_, v)| v.contains('\0')) {
            return fail("env", format!("the value of {key:?} contains NUL"));
        }
        Ok(())
    }

    pub fn memory_bytes(&self) -> usize {
        self.memory_mb as usize * 1024 * 1024
    }
}

fn serialize_timeout<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_duration(*d))
}

fn deserialize_timeout<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(|e| serde::de::Error::custom(format!("timeout: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> FunctionConfig {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn defaults_fill_missing_fields() {
        let c = config("{}");
        assert_eq!(c, FunctionConfig::default());
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn json_round_trips() {
        let c = config(
            r#"{"memory_mb":64,"timeout":"5s","max_concurrency":3,"routes":["/a/*"],"env":{"K":"v"},"instances":"reuse","max_instance_requests":5}"#,
        );
        assert_eq!(c.timeout, Duration::from_secs(5));
        assert_eq!(c.instances, Instances::Reuse);
        let again: FunctionConfig =
            serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn limits_name_the_field() {
        let cases = [
            (r#"{"memory_mb":8}"#, "memory_mb"),
            (r#"{"memory_mb":5000}"#, "memory_mb"),
            (r#"{"timeout":"16m"}"#, "timeout"),
            (r#"{"timeout":"0ms"}"#, "timeout"),
            (r#"{"max_concurrency":0}"#, "max_concurrency"),
            (
                r#"{"provisioned_concurrency":0}"#,
                "provisioned_concurrency",
            ),
            (
                r#"{"provisioned_concurrency":3,"max_concurrency":2}"#,
                "provisioned_concurrency",
            ),
            (r#"{"max_instance_requests":0}"#, "max_instance_requests"),
            (r#"{"routes":["nope"]}"#, "routes"),
            (r#"{"env":{"A=B":"x"}}"#, "env"),
        ];
        for (json, field) in cases {
            let err = config(json).validate().unwrap_err();
            assert_eq!(err.field, field, "{json}");
        }
    }

    #[test]
    fn unknown_fields_and_bad_durations_are_rejected() {
        let err = serde_json::from_str::<FunctionConfig>(r#"{"memroy_mb":64}"#).unwrap_err();
        assert!(err.to_string().contains("memroy_mb"), "{err}");
        let err = serde_json::from_str::<FunctionConfig>(r#"{"timeout":"5 parsecs"}"#).unwrap_err();
        assert!(err.to_string().contains("timeout"), "{err}");
        let err = serde_json::from_str::<FunctionConfig>(r#"{"instances":"warm"}"#).unwrap_err();
        assert!(err.to_string().contains("fresh"), "{err}");
    }
}
