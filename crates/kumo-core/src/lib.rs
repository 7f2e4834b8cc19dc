//! kumo's domain model and the rules on it: function names, configuration and its limits,
//! durations, routes, invocation outcomes. Pure data and validation, no I/O, so every other
//! crate (server, CLI, store, runtime) agrees on one definition.

mod auth;
mod cluster;
mod config;
mod duration;
mod event;
mod kv;
mod lambda;
mod limits;
mod metering;
mod name;
mod namespace;
mod outcome;
mod records;
mod route;
mod schedule;
mod spec;
mod versions;
mod workflow;

pub use auth::{
    Action, AuditEntry, Role, SecretInfo, TOKEN_PREFIX, TokenRecord, audited, bearer, function_may,
    is_token_secret, required, validate_secret_name, validate_token_name,
};
pub use cluster::{HEARTBEAT_INTERVAL, NODE_TIMEOUT, NodeRecord};
pub use config::{
    ConfigError, DEFAULT_MAX_EVENT_AGE, DEFAULT_MAX_INSTANCE_REQUESTS, DEFAULT_MAX_RETRIES,
    DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT, FunctionAuth, FunctionConfig, Instances, MAX_EVENT_AGE,
    MAX_MEMORY_MB, MAX_RETRIES, MAX_TIMEOUT, MIN_MEMORY_MB,
};
pub use duration::{format_duration, parse_duration};
pub use event::{
    CLOUDEVENTS_JSON, CloudEvent, Destination, EventError, EventErrorCode, EventRecord,
    EventResult, EventStatus, MAX_RETRY_DELAY, Trigger, async_share, base64, retry_delay,
    validate_topic,
};
pub use kv::{
    CounterError, Expect, KV_LIST_PAGE, KeyPage, KvEntry, KvWrite, MAX_KV_KEY_BYTES,
    MAX_KV_VALUE_BYTES, ObjectEvent, ObjectInfo, ObjectTrigger, incremented, parse_counter,
    validate_bucket, validate_key,
};
pub use lambda::{LambdaRuntimeName, validate_handler};
pub use limits::{default_max_connections, default_memory_budget, function_share, parse_size};
pub use metering::{Prices, Source, UsageBy, UsageReport, UsageRow, WorkflowUsage, gb_seconds};
pub use name::{NameError, Target, validate_name};
pub use namespace::{
    Adding, ApiScope, DEFAULT_NAMESPACE, NamespaceInfo, NamespaceRecord, NamespaceUse, Quotas,
    api_scope, in_namespace, key_of_url_name, may_enter, namespace_of, scoped, split_key, url_name,
    validate_namespace,
};
pub use outcome::{ErrorKind, FunctionKind, Outcome, billed_ms};
pub use records::{
    FunctionRecord, InvocationRecord, LogRecord, LogStream, OutputLine, format_timestamp,
};
pub use route::{Route, RouteError, hosts_overlap, request_host, validate_host};
pub use schedule::Schedule;
pub use spec::{ParseText, Spec};
pub use versions::{
    AliasRecord, Canary, LATEST, Qualifier, RanVersion, VersionRecord, validate_alias,
    validate_canary,
};

/// Now, as milliseconds since the Unix epoch (the unit of every timestamp in kumo's records).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
pub use workflow::WorkflowTriggers;
