//! test-programs
