//! kumo-store
