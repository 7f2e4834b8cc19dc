//! kumo's domain model and the rules on it: function names, configuration and its limits,
//! durations, routes, invocation outcomes. Pure data and validation, no I/O, so every other
//! crate (server, CLI, store, runtime) agrees on one definition.

mod config;
mod duration;
mod name;
mod outcome;
mod records;
mod route;

pub use config::{
    ConfigError, DEFAULT_MAX_INSTANCE_REQUESTS, DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT, FunctionConfig,
    Instances, MAX_MEMORY_MB, MAX_TIMEOUT, MIN_MEMORY_MB,
};
pub use duration::{format_duration, parse_duration};
pub use name::{NameError, Target, validate_name};
pub use outcome::{ErrorKind, FunctionKind, Outcome, billed_ms};
pub use records::{FunctionRecord, InvocationRecord, LogRecord, format_timestamp};
pub use route::{Route, RouteError};

/// Now, as milliseconds since the Unix epoch (the unit of every timestamp in kumo's records).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
