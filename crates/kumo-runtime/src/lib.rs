//! kumo-runtime
