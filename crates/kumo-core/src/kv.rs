//! Rules of the key-value store and object storage: bucket names, keys, value sizes, list
//! pages, object metadata.

use crate::validate_name;
use serde::{Deserialize, Serialize};

/// The largest value one key holds (DynamoDB allows 400 KB an item; Spin does not cap).
pub const MAX_KV_VALUE_BYTES: usize = 1024 * 1024;
/// The longest key, in bytes of UTF-8.
pub const MAX_KV_KEY_BYTES: usize = 1024;
/// Keys per page of a listing, unless the caller asks for fewer.
pub const KV_LIST_PAGE: u32 = 1000;

/// One page of a bucket's keys, in byte order; `cursor` (the page's last key) continues the
/// listing and is absent on the last page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KeyPage {
    pub keys: Vec<String>,
    pub cursor: Option<String>,
}

/// A stored object's metadata, as the object API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ObjectInfo {
    pub bucket: String,
    pub key: String,
    pub size: u64,
    /// Changes on every write (no quotes).
    pub etag: String,
    pub content_type: String,
    /// Unix ms of the write.
    pub updated_at: i64,
}

/// What happened to an object, for `on_object` triggers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ObjectEvent {
    /// Written (created or replaced).
    Put,
    Delete,
}

impl ObjectEvent {
    /// The CloudEvents `type` of the event.
    pub fn cloud_event_type(self) -> &'static str {
        match self {
            Self::Put => "dev.kumo.object.created",
            Self::Delete => "dev.kumo.object.deleted",
        }
    }
}

/// `on_object = { bucket = "uploads", events = ["put"] }`: each such change of an object in
/// the bucket is an asynchronous invocation of the function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ObjectTrigger {
    pub bucket: String,
    #[serde(default = "default_object_events")]
    pub events: Vec<ObjectEvent>,
}

fn default_object_events() -> Vec<ObjectEvent> {
    vec![ObjectEvent::Put]
}

/// A bucket is named like a function: `[a-z0-9-]`, 1 to 63 characters.
pub fn validate_bucket(bucket: &str) -> Result<(), String> {
    validate_name(bucket).map_err(|e| format!("invalid bucket {bucket:?}: {}", e.why))
}

/// A key is any UTF-8 text of 1 to 1024 bytes without control characters.
pub fn validate_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_KV_KEY_BYTES {
        return Err(format!(
            "a key must be 1 to {MAX_KV_KEY_BYTES} bytes long (got {})",
            key.len()
        ));
    }
    if key.chars().any(char::is_control) {
        return Err(format!("key {key:?} contains a control character"));
    }
    Ok(())
}

/// The integer `increment` works on: the value is its decimal text, as the HTTP API shows it.
pub fn parse_counter(value: &[u8]) -> Result<i64, String> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.trim().parse::<i64>().ok())
        .ok_or_else(|| "the value is not a decimal integer, so it cannot be incremented".into())
}

/// A key's value with the etag of the write that put it there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvEntry {
    pub value: Vec<u8>,
    pub etag: String,
    pub updated_at: i64,
}

/// What a conditional write expects the key to hold now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect<'a> {
    /// Write whatever is there (a plain set).
    Anything,
    /// Only if the key does not exist (`If-None-Match: *`, compare-and-swap on an absent key).
    Absent,
    /// Only if the key exists (`If-Match: *`).
    Present,
    /// Only if the key holds the write with this etag (`If-Match`).
    Etag(&'a str),
}

/// How a (conditional) write ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvWrite {
    Written {
        etag: String,
        created: bool,
    },
    /// The key did not hold what the write expected; nothing changed.
    Conflict,
}

/// Why an increment was refused (nothing was written).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CounterError {
    #[error("{0}")]
    NotACounter(String),
    #[error("the counter would overflow a 64-bit integer")]
    Overflow,
}

/// The counter after adding `delta` to what the key holds (`None`: absent, so 0).
pub fn incremented(current: Option<&[u8]>, delta: i64) -> Result<i64, CounterError> {
    let current = match current {
        Some(value) => parse_counter(value).map_err(CounterError::NotACounter)?,
        None => 0,
    };
    current.checked_add(delta).ok_or(CounterError::Overflow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_buckets_follow_the_rules() {
        assert!(validate_bucket("orders").is_ok());
        assert!(validate_bucket("Orders").is_err());
        assert!(validate_key("done/0192-a b").is_ok());
        assert!(validate_key("").is_err());
        assert!(validate_key("a\nb").is_err());
        assert!(validate_key(&"k".repeat(MAX_KV_KEY_BYTES + 1)).is_err());
        assert_eq!(parse_counter(b"-42"), Ok(-42));
        assert!(parse_counter(b"4x").is_err());
    }

    #[test]
    fn increments_add_to_decimal_counters_only() {
        assert_eq!(incremented(None, 5), Ok(5));
        assert_eq!(incremented(Some(b"-2"), 7), Ok(5));
        assert!(matches!(
            incremented(Some(b"x"), 1),
            Err(CounterError::NotACounter(_))
        ));
        let max = i64::MAX.to_string();
        assert_eq!(
            incremented(Some(max.as_bytes()), 1),
            Err(CounterError::Overflow)
        );
    }
}
