//! End-to-end tests: the real `kumo` binary serving on an ephemeral port with a temporary data
//! directory, real wasm built from the repository's guests, driven over HTTP and through the CLI.

mod auth;
mod calls;
mod cli;
mod cluster;
mod crash;
mod deploy;
mod disk;
mod events;
mod harness;
mod instances;
mod invoke;
mod kv;
mod lambda;
mod lambda_api;
mod lifecycle;
mod limits;
mod metrics;
mod namespaces;
mod objects;
mod openapi;
mod persistence;
mod pressure;
mod secrets;
mod tracing;
mod triggers;
mod usage;
mod versions;
mod workflows;
