//! Request ids and event ids are UUIDv7, whose text begins with the creation time in
//! milliseconds (48 bits, as 8 + 4 hex digits): they sort by time, so "created before T"
//! is a range of ids and needs no index of its own.

/// The smallest UUIDv7 text created at `ms`: ids below it are older.
pub(crate) fn uuid_floor(ms: i64) -> String {
    let ms = ms.max(0) as u64 & 0xffff_ffff_ffff;
    uuid::Builder::from_unix_timestamp_millis(ms, &[0; 10])
        .into_uuid()
        .to_string()
}

/// When a UUIDv7 text was created (Unix ms); None for any other text, upper-case included
/// (ids are compared as text, and kumo writes them in lower case).
pub(crate) fn uuid_ms(id: &str) -> Option<i64> {
    if id.len() != 36 || id.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let uuid = uuid::Uuid::try_parse(id).ok()?;
    if uuid.get_version_num() != 7 {
        return None;
    }
    let (secs, nanos) = uuid.get_timestamp()?.to_unix();
    i64::try_from(secs * 1000 + u64::from(nanos / 1_000_000)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uuid_at(ms: i64) -> String {
        uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            (ms / 1000) as u64,
            ((ms % 1000) * 1_000_000) as u32,
        ))
        .to_string()
    }

    #[test]
    fn uuid_floors_order_like_uuid_v7() {
        let at = 1_795_379_033_123;
        let id = uuid_at(at);
        assert!(uuid_floor(at) <= id, "{} > {id}", uuid_floor(at));
        assert!(uuid_floor(at + 1) > id);
        assert!(uuid_floor(at - 1) < id);
    }

    #[test]
    fn the_time_of_a_uuid_v7_and_of_nothing_else() {
        let at = 1_795_379_033_123;
        assert_eq!(uuid_ms(&uuid_at(at)), Some(at));
        assert_eq!(uuid_ms(&uuid_floor(at)), Some(at));
        assert_eq!(uuid_ms("67e55044-10b1-426f-9247-bb680e5fe0c8"), None);
        assert_eq!(uuid_ms(&uuid_at(at).to_uppercase()), None);
        assert_eq!(uuid_ms("r1"), None);
        assert_eq!(uuid_ms(&"é".repeat(18)), None);
    }
}
