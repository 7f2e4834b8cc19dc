//! kumo-server
