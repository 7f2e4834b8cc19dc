//! Crash leftovers: files that no committed row names (an upload cut off by a kill, a commit
//! that failed, a temporary file whose rename never came). Only files not written to for a
//! while are removed, so a write in progress is never touched.

use std::path::Path;
use std::time::{Duration, SystemTime};

/// Removes the files directly in `dir` for which `leftover(name)` holds and that were last
/// modified at least `min_age` ago; returns how many. A missing `dir` has none.
pub fn remove_stale_files(
    dir: &Path,
    min_age: Duration,
    leftover: impl Fn(&str) -> bool,
) -> std::io::Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let now = SystemTime::now();
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        let meta = entry.metadata()?;
        if !meta.is_file() || !leftover(name) {
            continue;
        }
        let age = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .unwrap_or_default();
        if age < min_age {
            continue;
        }
        match std::fs::remove_file(entry.path()) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_old_leftovers_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.tmp-1"), b"").unwrap();
        std::fs::write(dir.path().join("kept"), b"x").unwrap();
        std::fs::create_dir(dir.path().join("sub.tmp-2")).unwrap();
        let is_temp = |name: &str| name.contains(".tmp-");
        // Too young to be a leftover.
        assert_eq!(
            remove_stale_files(dir.path(), Duration::from_secs(60), is_temp).unwrap(),
            0
        );
        assert_eq!(
            remove_stale_files(dir.path(), Duration::ZERO, is_temp).unwrap(),
            1
        );
        assert!(dir.path().join("kept").exists());
        assert!(dir.path().join("sub.tmp-2").is_dir());
        let missing = dir.path().join("missing");
        assert_eq!(
            remove_stale_files(&missing, Duration::ZERO, is_temp).unwrap(),
            0
        );
    }
}
