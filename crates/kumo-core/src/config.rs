//! A function's configuration and its limits.

use crate::duration::{format_duration, parse_duration};
use crate::event::{Destination, validate_topic};
use crate::kv::{ObjectTrigger, validate_bucket};
use crate::route::Route;
use crate::schedule::Schedule;
use crate::spec::Spec;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::time::Duration;
use thiserror::Error;

pub const DEFAULT_MEMORY_MB: u32 = 128;
/// Wasm32 linear memory cannot address more than 4 GiB.
pub const MAX_MEMORY_MB: u32 = 4096;
pub const MIN_MEMORY_MB: u32 = 16;
/// A Lambda function's `/tmp` (Lambda's ephemeral storage), in MiB: the default and least,
/// and the most.
pub(crate) const MIN_EPHEMERAL_MB: u32 = 512;
pub(crate) const MAX_EPHEMERAL_MB: u32 = 10_240;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Lambda's limit; longer work belongs in a workflow.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Requests one reused instance serves before it is replaced, by default.
pub const DEFAULT_MAX_INSTANCE_REQUESTS: u32 = 1000;
/// Retries of a failed asynchronous invocation, by default (Lambda's).
pub const DEFAULT_MAX_RETRIES: u32 = 2;
pub const MAX_RETRIES: u32 = 10;
/// How long an asynchronous event may wait and be retried before it goes to the dead letters.
pub const DEFAULT_MAX_EVENT_AGE: Duration = Duration::from_secs(6 * 3600);
pub const MAX_EVENT_AGE: Duration = Duration::from_secs(6 * 3600);

/// How a wasi-http function's instances serve requests. Commands always run fresh.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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

impl Instances {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fresh => "fresh",
            Self::Reuse => "reuse",
        }
    }
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

/// Who may call a function over HTTP (its `/fn/` path and routes), like Lambda function
/// URLs' `NONE` / `AWS_IAM`. The invoke API always needs a token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FunctionAuth {
    /// Anyone who reaches the server (an HTTP function is meant to be called).
    #[default]
    Public,
    /// Only callers with a token whose role may invoke.
    Token,
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("{field}: {message}")]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

/// Everything about a function except its code. The JSON form is the `config` part of a deploy
/// and the `config` field of the function resource; every field is optional on input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct FunctionConfig {
    /// Cap on the guest's linear memory, in MiB.
    pub memory_mb: u32,
    /// Wall-clock limit of one invocation.
    #[serde(
        serialize_with = "serialize_duration",
        deserialize_with = "deserialize_timeout"
    )]
    #[schema(value_type = String, example = "30s")]
    pub timeout: Duration,
    /// Invocations of this function running at once; more are throttled (429).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    /// Keep the function loaded from deploy (and start-up) on and never unload it, so it sees
    /// no cold start; this many slots of the server's concurrency are kept for it alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provisioned_concurrency: Option<u32>,
    /// Custom data-plane paths besides `/fn/{name}`: `/hello` (exact) or `/hello/*` (prefix).
    #[schema(value_type = Vec<String>)]
    pub routes: Vec<Spec<Route>>,
    /// The host its `routes` answer on (the request's `Host`, without a port), e.g.
    /// `shop.example.com`; none: any host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Environment variables visible to the guest.
    pub env: BTreeMap<String, String>,
    /// `fresh` (default) or `reuse`.
    pub instances: Instances,
    /// With `instances = "reuse"`: requests one instance serves before it is replaced.
    pub max_instance_requests: u32,
    /// Asynchronous invocations: retries after a failed attempt (0 = one attempt only).
    pub max_retries: u32,
    /// Asynchronous invocations: an event older than this is not tried again.
    #[serde(
        serialize_with = "serialize_duration",
        deserialize_with = "deserialize_event_age"
    )]
    #[schema(value_type = String, example = "6h")]
    pub max_event_age: Duration,
    /// Where the outcome of an asynchronous invocation that succeeded goes: an `http(s)://`
    /// URL (POSTed to) or the name of a function (invoked asynchronously).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub on_success: Option<Spec<Destination>>,
    /// Same, for an invocation that failed for good (it is in the dead letters).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub on_failure: Option<Spec<Destination>>,
    /// A cron expression (5 fields, UTC) or `rate(N unit)`: each tick is one asynchronous
    /// invocation.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub schedule: Option<Spec<Schedule>>,
    /// Topics whose messages this function receives, each as an asynchronous invocation.
    pub topics: Vec<String>,
    /// Hosts (`host` or `host:port`) the guest may send HTTP requests to; none by default.
    pub allow_outbound: Vec<String>,
    /// Key-value buckets the guest may open (`wasi:keyvalue`); none by default.
    pub kv: Vec<String>,
    /// Object buckets the guest may use (`kumo:objects`); none by default.
    pub objects: Vec<String>,
    /// What the function's routes, schedule, topics and object trigger invoke: a version
    /// number or an alias (`prod`); none means `$LATEST`. Lets a release move with its alias
    /// while new code is deployed to `$LATEST`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub triggers_use: Option<String>,
    /// Invoke the function asynchronously for each object written to (or deleted from) a
    /// bucket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_object: Option<ObjectTrigger>,
    /// Who may call it over HTTP.
    pub auth: FunctionAuth,
    /// Secrets (`kumo secret set`) the guest gets as environment variables of the same name.
    /// A published version keeps the names; the values are read when the version is loaded.
    pub secrets: Vec<String>,
    /// A Lambda function's runtime (its code is then a zip package, not wasm).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<crate::LambdaRuntimeName>,
    /// A Lambda function's handler (`module.function` for python3; passed as `_HANDLER`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handler: Option<String>,
    /// A Lambda function's `/tmp`, in MiB (Lambda's ephemeral storage: 512 by default, up to
    /// 10240). It is memory (tmpfs), counted against `memory_mb`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ephemeral_storage_mb: Option<u32>,
}

impl Default for FunctionConfig {
    fn default() -> Self {
        Self {
            memory_mb: DEFAULT_MEMORY_MB,
            timeout: DEFAULT_TIMEOUT,
            max_concurrency: None,
            provisioned_concurrency: None,
            routes: Vec::new(),
            host: None,
            env: BTreeMap::new(),
            instances: Instances::Fresh,
            max_instance_requests: DEFAULT_MAX_INSTANCE_REQUESTS,
            max_retries: DEFAULT_MAX_RETRIES,
            max_event_age: DEFAULT_MAX_EVENT_AGE,
            on_success: None,
            on_failure: None,
            schedule: None,
            topics: Vec::new(),
            allow_outbound: Vec::new(),
            kv: Vec::new(),
            objects: Vec::new(),
            triggers_use: None,
            on_object: None,
            auth: FunctionAuth::Public,
            secrets: Vec::new(),
            runtime: None,
            handler: None,
            ephemeral_storage_mb: None,
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
        if self.max_retries > MAX_RETRIES {
            return fail(
                "max_retries",
                format!("{} is more than {MAX_RETRIES}", self.max_retries),
            );
        }
        if self.max_event_age < Duration::from_secs(1) || self.max_event_age > MAX_EVENT_AGE {
            return fail(
                "max_event_age",
                format!(
                    "{} is outside 1s..={}",
                    format_duration(self.max_event_age),
                    format_duration(MAX_EVENT_AGE)
                ),
            );
        }
        for topic in &self.topics {
            if let Err(e) = validate_topic(topic) {
                return fail("topics", e);
            }
        }
        for host in &self.allow_outbound {
            if host.is_empty() || host.contains(['/', ' ', '@']) {
                return fail(
                    "allow_outbound",
                    format!("{host:?} is not a host or host:port"),
                );
            }
        }
        for bucket in &self.kv {
            if let Err(e) = validate_bucket(bucket) {
                return fail("kv", e);
            }
        }
        for bucket in &self.objects {
            if let Err(e) = validate_bucket(bucket) {
                return fail("objects", e);
            }
        }
        if let Some(qualifier) = &self.triggers_use
            && let Err(e) = crate::Qualifier::parse(qualifier)
        {
            return fail("triggers_use", e);
        }
        if let Some(trigger) = &self.on_object {
            if let Err(e) = validate_bucket(&trigger.bucket) {
                return fail("on_object", e);
            }
            if trigger.events.is_empty() {
                return fail(
                    "on_object",
                    "events must name at least one of put, delete".into(),
                );
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
        if let Some(host) = &self.host
            && let Err(e) = crate::route::validate_host(host)
        {
            return fail("host", e);
        }
        if let Some((key, _)) = self.env.iter().find(|(_, v)| v.contains('\0')) {
            return fail("env", format!("the value of {key:?} contains NUL"));
        }
        self.validate_lambda()?;
        for name in &self.secrets {
            crate::validate_secret_name(name).or_else(|e| fail("secrets", e))?;
            if self.env.contains_key(name) {
                return fail(
                    "secrets",
                    format!("{name:?} is also in env; a variable comes from one"),
                );
            }
        }
        Ok(())
    }

    fn validate_lambda(&self) -> Result<(), ConfigError> {
        let fail = |field: &str, message: String| ConfigError {
            field: field.to_string(),
            message,
        };
        match self.runtime {
            None if self.handler.is_some() => Err(fail(
                "handler",
                "a handler is for Lambda functions; set runtime too".into(),
            )),
            None if self.ephemeral_storage_mb.is_some() => Err(fail(
                "ephemeral_storage_mb",
                "ephemeral storage is for Lambda functions; set runtime too".into(),
            )),
            None => Ok(()),
            Some(_)
                if self
                    .ephemeral_storage_mb
                    .is_some_and(|mb| !(MIN_EPHEMERAL_MB..=MAX_EPHEMERAL_MB).contains(&mb)) =>
            {
                Err(fail(
                    "ephemeral_storage_mb",
                    format!(
                        "{} is outside {MIN_EPHEMERAL_MB}..={MAX_EPHEMERAL_MB} (MiB)",
                        self.ephemeral_storage_mb.unwrap_or_default()
                    ),
                ))
            }
            Some(runtime) => {
                crate::validate_handler(runtime, self.handler.as_deref())
                    .map_err(|e| fail("handler", e))?;
                if self.instances == Instances::Reuse {
                    return Err(fail(
                        "instances",
                        "a Lambda function's environments are always reused; leave instances unset"
                            .into(),
                    ));
                }
                Ok(())
            }
        }
    }

    pub fn memory_bytes(&self) -> usize {
        self.memory_mb as usize * 1024 * 1024
    }

    /// A Lambda function's `/tmp` in bytes.
    pub fn ephemeral_storage_bytes(&self) -> u64 {
        u64::from(self.ephemeral_storage_mb.unwrap_or(MIN_EPHEMERAL_MB)) * 1024 * 1024
    }
}

fn serialize_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_duration(*d))
}

fn deserialize_event_age<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(|e| serde::de::Error::custom(format!("max_event_age: {e}")))
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
            (r#"{"env":{"A=B":"x"}}"#, "env"),
            (r#"{"max_retries":11}"#, "max_retries"),
            (r#"{"max_event_age":"7h"}"#, "max_event_age"),
            (r#"{"topics":["a b"]}"#, "topics"),
            (r#"{"allow_outbound":["http://x/"]}"#, "allow_outbound"),
            (r#"{"kv":["Orders"]}"#, "kv"),
            (r#"{"objects":["a/b"]}"#, "objects"),
            (r#"{"triggers_use":"Prod"}"#, "triggers_use"),
            (r#"{"on_object":{"bucket":"up","events":[]}}"#, "on_object"),
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
        // Routes, schedules and destinations are parsed as the config is read, once.
        for (json, says) in [
            (r#"{"routes":["nope"]}"#, "route"),
            (r#"{"on_failure":"ftp://x"}"#, "destination"),
            (r#"{"schedule":"61 * * * *"}"#, "schedule"),
        ] {
            let err = serde_json::from_str::<FunctionConfig>(json).unwrap_err();
            assert!(err.to_string().starts_with(says), "{json}: {err}");
        }
    }

    #[test]
    fn ephemeral_storage_is_for_lambda_functions_within_lambdas_range() {
        let lambda = FunctionConfig {
            runtime: Some(crate::LambdaRuntimeName::Provided),
            ..FunctionConfig::default()
        };
        assert_eq!(lambda.ephemeral_storage_bytes(), 512 << 20);
        for (mb, ok) in [(512, true), (10_240, true), (511, false), (10_241, false)] {
            let config = FunctionConfig {
                ephemeral_storage_mb: Some(mb),
                ..lambda.clone()
            };
            assert_eq!(config.validate().is_ok(), ok, "{mb}");
        }
        let wasm = FunctionConfig {
            ephemeral_storage_mb: Some(1024),
            ..FunctionConfig::default()
        };
        assert_eq!(wasm.validate().unwrap_err().field, "ephemeral_storage_mb");
    }
}
