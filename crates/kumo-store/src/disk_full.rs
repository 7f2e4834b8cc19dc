//! Telling a full disk apart from other storage failures, whichever layer met it: SQLite
//! through sqlx or rusqlite (`SQLITE_FULL`), or the filesystem (`ENOSPC`, `EDQUOT`).

/// SQLite's result code for "database or disk is full".
const SQLITE_FULL: i32 = 13;

/// Whether `error`, or anything it was caused by, says the disk is full.
pub fn is_disk_full(error: &anyhow::Error) -> bool {
    error.chain().any(is_full)
}

fn is_full(e: &(dyn std::error::Error + 'static)) -> bool {
    if let Some(io) = e.downcast_ref::<std::io::Error>() {
        return matches!(
            io.kind(),
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
        );
    }
    if let Some(sqlx::Error::Database(db)) = e.downcast_ref::<sqlx::Error>() {
        // The primary result code, whatever extended code came with it.
        return db
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .is_some_and(|c| c & 0xff == SQLITE_FULL);
    }
    if let Some(sqlx::Error::Io(io)) = e.downcast_ref::<sqlx::Error>() {
        return is_full(io);
    }
    if let Some(rusqlite::Error::SqliteFailure(failure, _)) = e.downcast_ref::<rusqlite::Error>() {
        return failure.code == rusqlite::ErrorCode::DiskFull;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_found_anywhere_in_the_chain() {
        let enospc = std::io::Error::from_raw_os_error(28);
        let wrapped = anyhow::Error::from(enospc).context("writing object");
        assert!(is_disk_full(&wrapped));
        let sqlite = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(SQLITE_FULL),
            Some("database or disk is full".into()),
        );
        assert!(is_disk_full(&anyhow::Error::from(sqlite).context("saving")));
        let other = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        assert!(!is_disk_full(&anyhow::Error::from(other)));
        assert!(!is_disk_full(&anyhow::anyhow!("database or disk is full")));
    }
}
